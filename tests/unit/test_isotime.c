/* test_isotime: ISO 8601 parsing and writing, and IANA zone offsets, as tables
 * of {input, want}. Every expected epoch was computed independently with
 * `date -u -d <input> +%s`, and every zone offset and transition instant
 * with `zdump -v <zone>` (tzdata 2025b), not with the code under test. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isotime.h"

/* Parses s[0..len) from a heap copy of exactly len bytes with no NUL after
 * it, so AddressSanitizer catches any read past len. */
static enum iso_status parse_exact(const char *s, size_t len, struct iso_instant *out)
{
	char *copy = malloc(len ? len : 1);
	enum iso_status st;

	assert_non_null(copy);
	memcpy(copy, s, len);
	st = iso_parse(copy, len, out);
	free(copy);
	return st;
}

struct parse_ok_case {
	const char *in;
	int64_t epoch;
	int32_t offset;
	int minute;
	int second;
	bool fraction_nonzero;
};

static void test_parse_ok(void **state)
{
	static const struct parse_ok_case cases[] = {
	    {"2023-02-08T03:00:00Z", 1675825200, 0, 0, 0, false},
	    {"2023-02-08T03:00:00+00:00", 1675825200, 0, 0, 0, false},
	    {"2023-02-08T03:00:00-00:00", 1675825200, 0, 0, 0, false},
	    {"2023-02-08T00:00:00-03:00", 1675825200, -10800, 0, 0, false},
	    {"2023-06-15T12:00:00+05:30", 1686810600, 19800, 0, 0, false},
	    {"2023-06-15T12:00:00+05:45", 1686809700, 20700, 0, 0, false},
	    {"2023-06-15T12:00:00-09:30", 1686864600, -34200, 0, 0, false},
	    {"2023-06-15T12:00:00+0530", 1686810600, 19800, 0, 0, false},
	    {"2023-06-15T12:00:00-0930", 1686864600, -34200, 0, 0, false},
	    {"2023-02-08T00:00:00-03", 1675825200, -10800, 0, 0, false},
	    {"2023-02-08T03:00:00+00", 1675825200, 0, 0, 0, false},
	    {"2023-06-15T12:00:00+23:59", 1686744060, 86340, 0, 0, false},
	    {"2023-06-15T12:00:00-23:59", 1686916740, -86340, 0, 0, false},
	    {"2023-02-08T03:00Z", 1675825200, 0, 0, 0, false},
	    {"2023-02-08T03:00:00.000Z", 1675825200, 0, 0, 0, false},
	    {"2023-02-08T03:00:00.0-03:00", 1675836000, -10800, 0, 0, false},
	    {"2023-02-08T03:00:00.5Z", 1675825200, 0, 0, 0, true},
	    {"2023-02-08T03:00:00.000000001Z", 1675825200, 0, 0, 0, true},
	    {"2023-02-08T03:00:00.999+00:00", 1675825200, 0, 0, 0, true},
	    {"2023-02-08t03:00:00z", 1675825200, 0, 0, 0, false},
	    {"2023-06-15T10:17:00Z", 1686824220, 0, 17, 0, false},
	    {"2023-06-15T10:17:42.25Z", 1686824262, 0, 17, 42, true},
	    {"2000-02-29T23:59:59Z", 951868799, 0, 59, 59, false},
	    {"2000-03-01T00:00:00Z", 951868800, 0, 0, 0, false},
	    {"2024-02-29T12:00:00Z", 1709208000, 0, 0, 0, false},
	    {"1970-01-01T00:00:00Z", 0, 0, 0, 0, false},
	    {"1969-12-31T23:59:59Z", -1, 0, 59, 59, false},
	    {"1970-01-01T00:00:00+01:00", -3600, 3600, 0, 0, false},
	    {"1900-03-01T00:00:00Z", -2203891200, 0, 0, 0, false},
	    {"2038-01-19T03:14:08Z", 2147483648, 0, 14, 8, false},
	    {"2100-03-01T00:00:00Z", 4107542400, 0, 0, 0, false},
	    {"0001-01-01T00:00:00Z", -62135596800, 0, 0, 0, false},
	    {"9999-12-31T23:59:59Z", 253402300799, 0, 59, 59, false},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct parse_ok_case *c = &cases[i];
		struct iso_instant t;
		enum iso_status st = parse_exact(c->in, strlen(c->in), &t);

		if (st != ISO_OK)
			fail_msg("iso_parse(\"%s\"): status %d, want ISO_OK", c->in, (int)st);
		if (t.epoch != c->epoch || t.offset != c->offset || t.minute != c->minute ||
		    t.second != c->second || t.fraction_nonzero != c->fraction_nonzero)
			fail_msg("iso_parse(\"%s\"): epoch %lld offset %d min %d sec %d frac %d; "
			         "want %lld %d %d %d %d",
			         c->in, (long long)t.epoch, (int)t.offset, t.minute, t.second,
			         (int)t.fraction_nonzero, (long long)c->epoch, (int)c->offset,
			         c->minute, c->second, (int)c->fraction_nonzero);
	}
}

struct parse_status_case {
	const char *in;
	size_t len; /* 0: strlen(in) */
	enum iso_status want;
};

static void test_parse_refused(void **state)
{
	static const struct parse_status_case cases[] = {
	    /* Well-formed local times without an offset. */
	    {"2023-02-08T00:00:00", 0, ISO_NO_OFFSET},
	    {"2023-02-08T00:00", 0, ISO_NO_OFFSET},
	    {"2023-02-08T00:00:00.5", 0, ISO_NO_OFFSET},
	    {"2024-02-29T23:59:59", 0, ISO_NO_OFFSET},
	    /* No offset but a bad calendar: unparseable, not "no offset". */
	    {"2023-02-30T00:00:00", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T24:00:00", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00.", 0, ISO_UNPARSEABLE},
	    /* Shape. */
	    {"", 0, ISO_UNPARSEABLE},
	    {"garbage", 0, ISO_UNPARSEABLE},
	    {"<html><body>", 0, ISO_UNPARSEABLE},
	    {"2023-02-08", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00Z", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:Z", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T0:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-02-08 00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-02-0800:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-2-08T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"23-02-08T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"+2023-02-08T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"20230208T000000Z", 0, ISO_UNPARSEABLE},
	    {" 2023-02-08T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00.Z", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00,5Z", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00.5.5Z", 0, ISO_UNPARSEABLE},
	    /* Trailing bytes. */
	    {"2023-02-08T00:00:00Zx", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00ZZ", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00+03:00 ", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00Z\n", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00 ", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00\xc2\xa0", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00Z\0", 21, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00U", 0, ISO_UNPARSEABLE},
	    /* Offsets. */
	    {"2023-02-08T00:00:00+24:00", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00+05:60", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00+5:30", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00+05:3", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00+05:", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00+053", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00+05:30:00", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00+0", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00+", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00-", 0, ISO_UNPARSEABLE},
	    {"2023-02-08T00:00:00+a5:00", 0, ISO_UNPARSEABLE},
	    /* Calendar ranges. */
	    {"2023-02-29T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-02-30T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"1900-02-29T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2100-02-29T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-04-31T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-13-01T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-00-10T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-01-00T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-01-32T00:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-01-01T24:00:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-01-01T23:60:00Z", 0, ISO_UNPARSEABLE},
	    {"2023-01-01T23:59:60Z", 0, ISO_UNPARSEABLE},
	    {"0000-01-01T00:00:00Z", 0, ISO_UNPARSEABLE},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct parse_status_case *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		struct iso_instant t;
		enum iso_status st;

		memset(&t, 0x5a, sizeof(t));
		st = parse_exact(c->in, len, &t);
		if (st != c->want)
			fail_msg("iso_parse(\"%s\", %zu): status %d, want %d", c->in, len, (int)st,
			         (int)c->want);
		/* Documented: on anything but ISO_OK the result is zeroed. */
		if (t.epoch != 0 || t.offset != 0 || t.minute != 0 || t.second != 0 ||
		    t.fraction_nonzero)
			fail_msg("iso_parse(\"%s\"): result not zeroed on status %d", c->in,
			         (int)st);
	}
}

/* The bytes after len would change the answer if they were read. */
static void test_parse_len_bounded(void **state)
{
	static const struct parse_status_case cases[] = {
	    {"2023-02-08T03:00:00Zjunk", 20, ISO_OK},
	    {"2023-02-08T03:00:00Z", 19, ISO_NO_OFFSET},
	    {"2023-02-08T03:00:00.5Z", 19, ISO_NO_OFFSET},
	    {"2023-02-08T03:00:00+05:30", 25, ISO_OK},
	    {"2023-02-08T03:00:00+05:30", 22, ISO_OK},
	    {"2023-02-08T03:00:00+05:30", 24, ISO_UNPARSEABLE},
	    {"2023-02-08T03:00:00Z", 10, ISO_UNPARSEABLE},
	    {"2023-02-08T03:00:00Z", 0, ISO_UNPARSEABLE},
	};
	struct iso_instant t;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct parse_status_case *c = &cases[i];
		enum iso_status st = parse_exact(c->in, c->len, &t);

		if (st != c->want)
			fail_msg("iso_parse(\"%s\", len %zu): status %d, want %d", c->in, c->len,
			         (int)st, (int)c->want);
	}
	/* "+05:30" cut to "+05": the offset is what was inside len. */
	assert_int_equal(parse_exact("2023-02-08T03:00:00+05:30", 22, &t), ISO_OK);
	assert_int_equal(t.offset, 5 * 3600);
	assert_int_equal(t.epoch, 1675825200 - 5 * 3600);
	/* Also straight from a longer buffer, as the JSON parser will call it. */
	assert_int_equal(iso_parse("2023-02-08T03:00:00Z, \"x\"", 20, &t), ISO_OK);
	assert_int_equal(t.epoch, 1675825200);
	assert_int_equal(iso_parse(NULL, 25, &t), ISO_UNPARSEABLE);
}

struct on_hour_case {
	const char *in;
	bool want;
};

static void test_on_hour(void **state)
{
	static const struct on_hour_case cases[] = {
	    {"2023-02-08T03:00:00Z", true},
	    {"2023-02-08T03:00Z", true},
	    {"2023-02-08T03:00:00.000Z", true},
	    {"2023-02-08T00:00:00-03:00", true},
	    /* On the hour in its own offset, though 06:30 UTC. */
	    {"2023-06-15T12:00:00+05:30", true},
	    {"2023-06-15T06:30:00Z", false},
	    {"2023-02-08T03:00:00.001Z", false},
	    {"2023-02-08T03:00:01Z", false},
	    {"2023-02-08T03:01:00Z", false},
	    {"2023-02-08T03:59:59Z", false},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct iso_instant t;

		if (iso_parse(cases[i].in, strlen(cases[i].in), &t) != ISO_OK)
			fail_msg("iso_parse(\"%s\") failed", cases[i].in);
		if (iso_on_hour(&t) != cases[i].want)
			fail_msg("iso_on_hour(\"%s\"): %d, want %d", cases[i].in,
			         (int)!cases[i].want, (int)cases[i].want);
	}
}

struct format_case {
	int64_t epoch;
	int32_t offset;
	const char *want;
};

static void test_format(void **state)
{
	static const struct format_case cases[] = {
	    {1675825200, -10800, "2023-02-08T00:00:00-03:00"},
	    {1675825200, 0, "2023-02-08T03:00:00+00:00"},
	    {1686810600, 19800, "2023-06-15T12:00:00+05:30"},
	    {1686809700, 20700, "2023-06-15T12:00:00+05:45"},
	    {1686864600, -34200, "2023-06-15T12:00:00-09:30"},
	    {1686824262, 0, "2023-06-15T10:17:42+00:00"},
	    {1686744060, 86340, "2023-06-15T12:00:00+23:59"},
	    {1686916740, -86340, "2023-06-15T12:00:00-23:59"},
	    {0, 0, "1970-01-01T00:00:00+00:00"},
	    {-1, 0, "1969-12-31T23:59:59+00:00"},
	    {0, 3600, "1970-01-01T01:00:00+01:00"},
	    {0, -3600, "1969-12-31T23:00:00-01:00"},
	    {951868799, 0, "2000-02-29T23:59:59+00:00"},
	    {951868800, 0, "2000-03-01T00:00:00+00:00"},
	    {-2203891200, 0, "1900-03-01T00:00:00+00:00"},
	    {-62135596800, 0, "0001-01-01T00:00:00+00:00"},
	    {253402300799, 0, "9999-12-31T23:59:59+00:00"},
	    /* An LMT offset with seconds (-04:42:45) is written truncated to
	     * whole minutes with the local time at that offset: same instant. */
	    {0, -16965, "1969-12-31T19:18:00-04:42"},
	    /* Out of the supported range: empty rather than a surprise. */
	    {-62135596801, 0, ""},
	    {253402300800, 0, ""},
	    {253402300799, 60, ""},
	    {0, 86400, ""},
	    {0, -86400, ""},
	    {INT64_MAX, 0, ""},
	    {INT64_MIN, -3600, ""},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct format_case *c = &cases[i];
		char buf[ISO_FORMAT_LEN];
		struct iso_instant t;

		memset(buf, 'x', sizeof(buf));
		iso_format(c->epoch, c->offset, buf);
		if (strcmp(buf, c->want) != 0)
			fail_msg("iso_format(%lld, %d): \"%.*s\", want \"%s\"", (long long)c->epoch,
			         (int)c->offset, (int)sizeof(buf), buf, c->want);
		if (!c->want[0])
			continue;
		/* Round trip: what we write, we read back as the same instant. */
		if (iso_parse(buf, strlen(buf), &t) != ISO_OK || t.epoch != c->epoch ||
		    t.offset != c->offset / 60 * 60)
			fail_msg("round trip of \"%s\": epoch %lld offset %d", buf,
			         (long long)t.epoch, (int)t.offset);
	}
}

/* Round trip across the whole supported range at many offsets: catches any
 * disagreement between the calendar conversions in both directions. */
static void test_format_round_trip_sweep(void **state)
{
	static const int32_t offsets[] = {0, 3600, -10800, 19800, 20700, -34200, 50400, -43200};
	const int64_t lo = -62135596800 + 86400, hi = 253402300799 - 86400;
	size_t checked = 0;

	(void)state;
	/* A step that is not a multiple of a day, so times of day vary too. */
	for (int64_t e = lo; e <= hi; e += 86400LL * 97 + 3727) {
		for (size_t k = 0; k < sizeof(offsets) / sizeof(offsets[0]); k++) {
			char buf[ISO_FORMAT_LEN];
			struct iso_instant t;

			iso_format(e, offsets[k], buf);
			if (iso_parse(buf, strlen(buf), &t) != ISO_OK || t.epoch != e ||
			    t.offset != offsets[k])
				fail_msg("round trip of %lld at %d: \"%s\" read back as %lld",
				         (long long)e, (int)offsets[k], buf, (long long)t.epoch);
			checked++;
		}
	}
	assert_true(checked > 100000);
}

struct civil_case {
	int64_t year;
	unsigned month, day;
	int64_t want;
};

static void test_days_from_civil(void **state)
{
	static const struct civil_case cases[] = {
	    {1970, 1, 1, 0},         {1969, 12, 31, -1},
	    {2023, 2, 8, 19396},     {2000, 2, 29, 11016},
	    {2000, 3, 1, 11017},     {2100, 3, 1, 47541},
	    {1900, 3, 1, -25508},    {1, 1, 1, -719162},
	    {0, 1, 1, -719528}, /* MySQL's TO_DAYS('1970-01-01') */
	    {9999, 12, 31, 2932896},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct civil_case *c = &cases[i];
		int64_t got = iso_days_from_civil(c->year, c->month, c->day);

		if (got != c->want)
			fail_msg("iso_days_from_civil(%lld, %u, %u): %lld, want %lld",
			         (long long)c->year, c->month, c->day, (long long)got,
			         (long long)c->want);
	}
}

struct zone_case {
	const char *zone;
	int64_t epoch;
	int32_t offset;
	const char *formatted;
};

static void test_zone_offsets(void **state)
{
	static const struct zone_case cases[] = {
	    /* Europe/Madrid: winter, summer, and an instant either side of
	     * both 2023 transitions (2023-03-26 01:00Z, 2023-10-29 01:00Z). */
	    {"Europe/Madrid", 1673784000, 3600, "2023-01-15T13:00:00+01:00"},
	    {"Europe/Madrid", 1689422400, 7200, "2023-07-15T14:00:00+02:00"},
	    {"Europe/Madrid", 1679792399, 3600, "2023-03-26T01:59:59+01:00"},
	    {"Europe/Madrid", 1679792400, 7200, "2023-03-26T03:00:00+02:00"},
	    {"Europe/Madrid", 1698541199, 7200, "2023-10-29T02:59:59+02:00"},
	    {"Europe/Madrid", 1698541200, 3600, "2023-10-29T02:00:00+01:00"},
	    /* America/Santiago: southern summer time, transitions 2023-04-02
	     * 03:00Z (to -04) and 2023-09-03 04:00Z (to -03). */
	    {"America/Santiago", 1673784000, -10800, "2023-01-15T09:00:00-03:00"},
	    {"America/Santiago", 1689422400, -14400, "2023-07-15T08:00:00-04:00"},
	    {"America/Santiago", 1675825200, -10800, "2023-02-08T00:00:00-03:00"},
	    {"America/Santiago", 1680404399, -10800, "2023-04-01T23:59:59-03:00"},
	    {"America/Santiago", 1680404400, -14400, "2023-04-01T23:00:00-04:00"},
	    {"America/Santiago", 1693713599, -14400, "2023-09-02T23:59:59-04:00"},
	    {"America/Santiago", 1693713600, -10800, "2023-09-03T01:00:00-03:00"},
	    {"Asia/Kolkata", 1686810600, 19800, "2023-06-15T12:00:00+05:30"},
	    {"Asia/Kathmandu", 1686809700, 20700, "2023-06-15T12:00:00+05:45"},
	    /* Australia/Lord_Howe moves by 30 minutes: 2023-04-01 15:00Z. */
	    {"Australia/Lord_Howe", 1680361199, 39600, "2023-04-02T01:59:59+11:00"},
	    {"Australia/Lord_Howe", 1680361200, 37800, "2023-04-02T01:30:00+10:30"},
	    {"UTC", 1675825200, 0, "2023-02-08T03:00:00+00:00"},
	    {"Etc/UTC", 1675825200, 0, "2023-02-08T03:00:00+00:00"},
	    /* POSIX sign convention: Etc/GMT+3 is three hours west. */
	    {"Etc/GMT+3", 1675825200, -10800, "2023-02-08T00:00:00-03:00"},
	    /* An alias shipped as a symlink. */
	    {"US/Eastern", 1673784000, -18000, "2023-01-15T07:00:00-05:00"},
	    /* Lord_Howe's spring: 02:00+10:30 becomes 02:30+11:00. */
	    {"Australia/Lord_Howe", 1696087799, 37800, "2023-10-01T01:59:59+10:30"},
	    {"Australia/Lord_Howe", 1696087800, 39600, "2023-10-01T02:30:00+11:00"},
	    /* Santiago's summer time spans the new year: -03 either side. */
	    {"America/Santiago", 1704063600, -10800, "2023-12-31T20:00:00-03:00"},
	    {"America/Santiago", 1704078000, -10800, "2024-01-01T00:00:00-03:00"},
	    /* Kathmandu's 1986 move from +05:30 to +05:45. */
	    {"Asia/Kathmandu", 504901799, 19800, "1985-12-31T23:59:59+05:30"},
	    {"Asia/Kathmandu", 504901800, 20700, "1986-01-01T00:15:00+05:45"},
	    /* 2100, past every file's last transition: the footer's rule. */
	    {"Europe/Madrid", 4109878799, 3600, "2100-03-28T01:59:59+01:00"},
	    {"Europe/Madrid", 4109878800, 7200, "2100-03-28T03:00:00+02:00"},
	    {"Europe/Madrid", 4128627600, 3600, "2100-10-31T02:00:00+01:00"},
	    {"Australia/Lord_Howe", 4110447600, 37800, "2100-04-04T01:30:00+10:30"},
	    {"Australia/Lord_Howe", 4126174200, 39600, "2100-10-03T02:30:00+11:00"},
	    {"America/Santiago", 4123799999, -14400, "2100-09-04T23:59:59-04:00"},
	    {"America/Santiago", 4123800000, -10800, "2100-09-05T01:00:00-03:00"},
	    {"Asia/Kathmandu", 4123800000, 20700, "2100-09-05T09:45:00+05:45"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct zone_case *c = &cases[i];
		char buf[ISO_FORMAT_LEN];
		int32_t off = 12345;

		if (!iso_zone_valid(c->zone))
			fail_msg("iso_zone_valid(\"%s\"): false, want true", c->zone);
		if (iso_zone_offset(c->zone, c->epoch, &off) != 0 || off != c->offset)
			fail_msg("iso_zone_offset(\"%s\", %lld): %d, want %d", c->zone,
			         (long long)c->epoch, (int)off, (int)c->offset);
		if (iso_format_in_zone(c->epoch, c->zone, buf) != 0 ||
		    strcmp(buf, c->formatted) != 0)
			fail_msg("iso_format_in_zone(%lld, \"%s\"): \"%s\", want \"%s\"",
			         (long long)c->epoch, c->zone, buf, c->formatted);
	}
}

/* The daemon's zone rule (SPEC §4): a canonical IANA name, exact case, that
 * is a TZif file under /usr/share/zoneinfo. */
struct zone_rule_case {
	const char *zone;
	bool valid;
};

static void test_zone_rule(void **state)
{
	static const struct zone_rule_case cases[] = {
	    {"UTC", true},
	    {"Etc/UTC", true},
	    {"Etc/GMT+3", true}, /* a file, with POSIX's inverted sign */
	    {"Etc/GMT-14", true},
	    {"EST", true}, /* an abbreviation that tzdata ships as a file */
	    {"Europe/Madrid", true},
	    {"America/Argentina/Buenos_Aires", true},
	    {"America/Port-au-Prince", true},
	    {"US/Eastern", true}, /* a backward link: PostgreSQL lists it too */
	    {"", false},
	    {"/etc/localtime", false},
	    {"/usr/share/zoneinfo/UTC", false},
	    {"../etc/passwd", false},
	    {"Europe/../Europe/Madrid", false},
	    {"Europe/./Madrid", false},
	    {"./UTC", false},
	    {".hidden", false},
	    {"Europe/.Madrid", false},
	    {"Europe/", false},
	    {"Europe", false}, /* a directory */
	    {"Europe//Madrid", false},
	    {"Europe/Madrid/", false},
	    {"Europe/Madrid\n", false},
	    {"Europe/Madrid ", false},
	    {"Europe/Madrid;rm", false},
	    {"Europe\\Madrid", false},
	    {"Mars/Base", false},
	    {"utc", false}, /* wrong case */
	    {"europe/madrid", false},
	    {"UTC ", false},
	    {"localtime", false},
	    {"posixrules", false},
	    {"Factory", false},
	    {"posix/Europe/Madrid", false},
	    {"right/Europe/Madrid", false},
	    {"right/UTC", false},
	    {"UTC+3", false}, /* POSIX strings */
	    {"<+03>-3", false},
	    {"+05:30", false},
	    {"EST5EDT,M3.2.0,M11.1.0", false},
	    {":Europe/Madrid", false},
	    {"CEST", false},        /* an abbreviation that is no file */
	    {"leapseconds", false}, /* regular files under zoneinfo, not TZif */
	    {"zone.tab", false},
	    {"tzdata.zi", false},
	    {"+VERSION", false},
	};
	char long_name[400];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct zone_rule_case *c = &cases[i];
		char buf[ISO_FORMAT_LEN] = "untouched";
		int32_t off = 12345;

		if (iso_zone_valid(c->zone) != c->valid)
			fail_msg("iso_zone_valid(\"%s\"): %d, want %d", c->zone, !c->valid,
			         c->valid);
		if (c->valid)
			continue;
		if (iso_zone_offset(c->zone, 0, &off) != -1 || off != 12345)
			fail_msg("iso_zone_offset(\"%s\"): accepted or wrote %d", c->zone,
			         (int)off);
		if (iso_format_in_zone(0, c->zone, buf) != -1 || buf[0] != '\0')
			fail_msg("iso_format_in_zone(\"%s\"): accepted or left \"%s\"", c->zone,
			         buf);
	}
	memset(long_name, 'A', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_false(iso_zone_valid(long_name));
	assert_false(iso_zone_valid(NULL));
}

/* ---- POSIX TZ rules, as TZif footers carry them ---- */

struct posix_case {
	const char *rule;
	int64_t epoch;
	int32_t offset;
};

static void test_posix_rules(void **state)
{
	static const struct posix_case cases[] = {
	    /* Europe/Madrid's footer: last Sundays, 02:00 and 03:00 local. */
	    {"CET-1CEST,M3.5.0,M10.5.0/3", 1679792399, 3600},
	    {"CET-1CEST,M3.5.0,M10.5.0/3", 1679792400, 7200},
	    {"CET-1CEST,M3.5.0,M10.5.0/3", 1698541199, 7200},
	    {"CET-1CEST,M3.5.0,M10.5.0/3", 1698541200, 3600},
	    /* Southern hemisphere, 30-minute DST, <> names, hh:mm offsets. */
	    {"<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", 1680361199, 39600},
	    {"<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", 1680361200, 37800},
	    {"<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", 1696087799, 37800},
	    {"<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", 1696087800, 39600},
	    /* Santiago: "/24", the end of a Saturday, in -04 then -03. */
	    {"<-04>4<-03>,M9.1.6/24,M4.1.6/24", 1680404399, -10800},
	    {"<-04>4<-03>,M9.1.6/24,M4.1.6/24", 1680404400, -14400},
	    {"<-04>4<-03>,M9.1.6/24,M4.1.6/24", 1693713599, -14400},
	    {"<-04>4<-03>,M9.1.6/24,M4.1.6/24", 1693713600, -10800},
	    {"<-04>4<-03>,M9.1.6/24,M4.1.6/24", 1704063600, -10800},
	    /* A default DST offset (std + 1 h). */
	    {"EST5EDT,M3.2.0,M11.1.0", 1678604399, -18000},
	    {"EST5EDT,M3.2.0,M11.1.0", 1678604400, -14400},
	    /* No dates: tzcode's default, the US rules. */
	    {"EST5EDT", 1678604399, -18000},
	    {"EST5EDT", 1678604400, -14400},
	    /* No DST at all; minutes in the offset. */
	    {"<+0545>-5:45", 1686809700, 20700},
	    {"UTC0", 1686809700, 0},
	    {"<-00>0", 0, 0},
	    /* Jn never counts February 29: J60 is March 1 in 2024 too. */
	    {"XXX3YYY,J60/2,J300/2", 1709269199, -10800},
	    {"XXX3YYY,J60/2,J300/2", 1709269200, -7200},
	    /* n counts it: day 59 (from 0) is February 29 in 2024. */
	    {"XXX3YYY,59/2,300/2", 1709182799, -10800},
	    {"XXX3YYY,59/2,300/2", 1709182800, -7200},
	    /* v3: negative times (America/Nuuk: 22:00 the day before). */
	    {"<-02>2<-01>,M3.5.0/-1,M10.5.0/0", 1679792399, -7200},
	    {"<-02>2<-01>,M3.5.0/-1,M10.5.0/0", 1679792400, -3600},
	    /* v3: times of ±167 h move a transition by a week. */
	    {"<+00>0<+01>,M3.5.0/-167,M10.5.0/167", 1679187599, 0},
	    {"<+00>0<+01>,M3.5.0/-167,M10.5.0/167", 1679187600, 3600},
	    {"<+00>0<+01>,M3.5.0/-167,M10.5.0/167", 1699135199, 3600},
	    {"<+00>0<+01>,M3.5.0/-167,M10.5.0/167", 1699135200, 0},
	    /* v3: all-year DST, each year's end the next year's start. */
	    {"EST5EDT,0/0,J365/25", 1672531200, -14400},
	    {"EST5EDT,0/0,J365/25", 1688169600, -14400},
	    {"EST5EDT,0/0,J365/25", 1735686000, -14400},
	    {"EST5EDT,0/0,J365/25", 1704085200, -14400}, /* 2024-01-01T05:00Z, the seam */
	};
	static const char *const refused[] = {
	    "",
	    "UTC",
	    "EST",
	    "EST5EDT,M3.2.0",
	    "EST5EDT,M3.2.0,",
	    "EST5EDT,M13.1.0,M11.1.0",
	    "EST5EDT,M3.6.0,M11.1.0",
	    "EST5EDT,M3.2.7,M11.1.0",
	    "EST5EDT,M0.2.0,M11.1.0",
	    "EST25",
	    "XXX24",
	    "XXX-24",
	    "XXX0YYY-24",
	    "XXX-23YYY",
	    "EST5EDT25",
	    "<+03",
	    "<+3>-3",
	    "AB3",
	    "EST5EDT,J0,J365",
	    "EST5EDT,366,1",
	    "EST5EDT,M3.2.0/168,M11.1.0",
	    "EST5EDT,M3.2.0,M11.1.0x",
	    "EST5EDT,M3.2.0,M11.1.0/",
	    ":Europe/Madrid",
	    "EST5:60",
	    "EST5:00:60",
	    "EST 5",
	    "EST5EDT,M3.2.0/1:2,M11.1.0",
	    "<+03>-3\n",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct posix_case *c = &cases[i];
		struct iso_tz *tz = NULL;
		int32_t off = 12345;

		if (iso_tz_parse_posix(c->rule, strlen(c->rule), &tz) != 0)
			fail_msg("iso_tz_parse_posix(\"%s\") refused it", c->rule);
		if (iso_tz_offset(tz, c->epoch, &off) != 0 || off != c->offset)
			fail_msg("\"%s\" at %lld: %d, want %d", c->rule, (long long)c->epoch,
			         (int)off, (int)c->offset);
		iso_tz_free(tz);
	}
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		struct iso_tz *tz = (struct iso_tz *)&tz;
		size_t len = strlen(refused[i]);
		char *exact = malloc(len ? len : 1); /* no NUL after: ASan sees overreads */

		assert_non_null(exact);
		memcpy(exact, refused[i], len);
		if (iso_tz_parse_posix(exact, len, &tz) != -1 || tz != NULL)
			fail_msg("iso_tz_parse_posix(\"%s\") accepted it", refused[i]);
		free(exact);
	}
}

/* ---- The TZif reader on bytes ---- */

static unsigned char *read_zone_file(const char *zone, size_t *len)
{
	char path[256];
	unsigned char *buf = malloc(ISO_TZIF_MAX_BYTES);
	FILE *f;

	assert_non_null(buf);
	snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", zone);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot read %s", path);
	*len = fread(buf, 1, ISO_TZIF_MAX_BYTES, f);
	fclose(f);
	return buf;
}

/* Parses buf[0..len) from a heap copy of exactly len bytes. */
static int parse_tzif_exact(const unsigned char *buf, size_t len, struct iso_tz **out)
{
	unsigned char *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, buf, len);
	rc = iso_tz_parse_tzif(copy, len, out);
	free(copy);
	return rc;
}

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* Offsets of the v2 header's counts in a file whose v1 block is empty but
 * for one type and one abbreviation byte, as zic -b slim writes. */
#define SLIM_V1_LEN (44 + 6 + 1)

/* A slim TZif v2 file: no transitions, one type, the given footer. */
static size_t make_slim(unsigned char *buf, size_t cap, int32_t type_off, const char *footer)
{
	size_t n = 0, flen = strlen(footer);

	assert_true(cap >= 2 * SLIM_V1_LEN + flen + 2);
	for (int block = 0; block < 2; block++) {
		memset(buf + n, 0, 44);
		memcpy(buf + n, "TZif2", 5);
		put_be32(buf + n + 36, 1); /* typecnt */
		put_be32(buf + n + 40, 1); /* charcnt */
		n += 44;
		put_be32(buf + n, (uint32_t)type_off);
		buf[n + 4] = 0;
		buf[n + 5] = 0;
		buf[n + 6] = '\0'; /* the abbreviation "" */
		n += 7;
	}
	buf[n++] = '\n';
	memcpy(buf + n, footer, flen);
	n += flen;
	buf[n++] = '\n';
	return n;
}

static void test_tzif_real_and_slim(void **state)
{
	unsigned char slim[256];
	struct iso_tz *tz = NULL;
	int32_t off;
	size_t len;
	unsigned char *buf = read_zone_file("Europe/Madrid", &len);

	(void)state;
	assert_int_equal(parse_tzif_exact(buf, len, &tz), 0);
	assert_int_equal(iso_tz_offset(tz, 1679792399, &off), 0);
	assert_int_equal(off, 3600);
	assert_int_equal(iso_tz_offset(tz, 4109878800, &off), 0);
	assert_int_equal(off, 7200);
	/* Changes found both ways, from the table and from the footer. */
	assert_int_equal(iso_tz_next_change(tz, 1672531200), 1679792400);
	assert_int_equal(iso_tz_prev_change(tz, 1688169600), 1679792400);
	assert_int_equal(iso_tz_prev_change(tz, 1679792400), 1679792400);
	assert_int_equal(iso_tz_next_change(tz, 4109878799), 4109878800);
	assert_int_equal(iso_tz_prev_change(tz, 4128627600), 4128627600);
	iso_tz_free(tz);
	free(buf);

	/* A slim file: every instant comes from the footer. */
	len = make_slim(slim, sizeof(slim), 3600, "CET-1CEST,M3.5.0,M10.5.0/3");
	assert_int_equal(parse_tzif_exact(slim, len, &tz), 0);
	assert_int_equal(iso_tz_offset(tz, 1679792400, &off), 0);
	assert_int_equal(off, 7200);
	assert_int_equal(iso_tz_next_change(tz, 1672531200), 1679792400);
	iso_tz_free(tz);
	/* An empty footer: time type 0 for ever, and no change anywhere. */
	len = make_slim(slim, sizeof(slim), -10800, "");
	assert_int_equal(parse_tzif_exact(slim, len, &tz), 0);
	assert_int_equal(iso_tz_offset(tz, 1679792400, &off), 0);
	assert_int_equal(off, -10800);
	assert_true(iso_tz_next_change(tz, 0) == INT64_MAX);
	assert_true(iso_tz_prev_change(tz, 0) == INT64_MIN);
	iso_tz_free(tz);
	/* Out of the answered range. */
	assert_int_equal(iso_zone_offset("UTC", ISO_TZ_MAX_EPOCH + 1, &off), -1);
	assert_int_equal(iso_zone_offset("UTC", INT64_MIN, &off), -1);
}

/* Corrupt and truncated files are refused, never read past their end. */
static void test_tzif_corrupt(void **state)
{
	static const char *const zones[] = {"UTC", "Europe/Madrid", "Australia/Lord_Howe",
	                                    "America/Santiago", "Asia/Kathmandu"};
	unsigned char slim[256], *bad;
	struct iso_tz *tz;
	size_t len;

	(void)state;
	for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
		unsigned char *buf = read_zone_file(zones[z], &len);

		tz = NULL;
		assert_int_equal(parse_tzif_exact(buf, len, &tz), 0);
		iso_tz_free(tz);
		/* Every truncation loses at least the footer's last newline. */
		for (size_t cut = 0; cut < len; cut++) {
			tz = (struct iso_tz *)&tz;
			if (parse_tzif_exact(buf, cut, &tz) != -1 || tz != NULL)
				fail_msg("%s cut to %zu of %zu bytes: accepted", zones[z], cut,
				         len);
		}
		free(buf);
	}

	size_t slen = make_slim(slim, sizeof(slim), 3600, "CET-1CEST,M3.5.0,M10.5.0/3");
	bad = malloc(sizeof(slim));
	assert_non_null(bad);
	struct {
		const char *what;
		size_t at;
		uint32_t be32; /* written at `at` unless byte is set */
		int byte;      /* >= 0: one byte written instead */
	} edits[] = {
	    {"bad magic", 0, 0, 'X'},
	    {"unknown version", 4, 0, '9'},
	    {"v2 header's magic", SLIM_V1_LEN, 0, 'X'},
	    {"v2 header says version 1", SLIM_V1_LEN + 4, 0, 0},
	    {"huge timecnt", SLIM_V1_LEN + 32, 0xffffffffu, -1},
	    {"timecnt past the end", SLIM_V1_LEN + 32, 20, -1},
	    {"no types", SLIM_V1_LEN + 36, 0, -1},
	    {"257 types", SLIM_V1_LEN + 36, 257, -1},
	    {"no abbreviation bytes", SLIM_V1_LEN + 40, 0, -1},
	    {"leap seconds", SLIM_V1_LEN + 28, 1, -1},
	    {"isstdcnt neither 0 nor typecnt", SLIM_V1_LEN + 24, 2, -1},
	    {"offset of 25 hours", SLIM_V1_LEN + 44, 90000, -1},
	    {"offset of INT32_MIN", SLIM_V1_LEN + 44, 0x80000000u, -1},
	    {"isdst of 2", SLIM_V1_LEN + 48, 0, 2},
	    {"abbreviation index out of range", SLIM_V1_LEN + 49, 0, 1},
	    {"footer without its newline", 2 * SLIM_V1_LEN, 0, 'X'},
	    {"footer not a rule", 2 * SLIM_V1_LEN + 1, 0, '!'},
	    {"v1 header's counts past the end", 32, 1000, -1},
	};
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		memcpy(bad, slim, slen);
		if (edits[i].byte >= 0)
			bad[edits[i].at] = (unsigned char)edits[i].byte;
		else
			put_be32(bad + edits[i].at, edits[i].be32);
		tz = (struct iso_tz *)&tz;
		if (parse_tzif_exact(bad, slen, &tz) != -1 || tz != NULL)
			fail_msg("%s: accepted", edits[i].what);
	}
	free(bad);

	/* Transitions out of order, and a type index out of range: a v1 file
	 * with two transitions and one type. */
	unsigned char v1[44 + 2 * 4 + 2 + 6 + 1] = {0};
	memcpy(v1, "TZif", 4);
	put_be32(v1 + 32, 2);
	put_be32(v1 + 36, 1);
	put_be32(v1 + 40, 1);
	put_be32(v1 + 44, 100);
	put_be32(v1 + 48, 200);
	put_be32(v1 + 54, 3600);
	tz = NULL;
	assert_int_equal(parse_tzif_exact(v1, sizeof(v1), &tz), 0);
	int32_t off;
	assert_int_equal(iso_tz_offset(tz, 150, &off), 0);
	assert_int_equal(off, 3600);
	iso_tz_free(tz);
	put_be32(v1 + 48, 100); /* equal to the one before */
	assert_int_equal(parse_tzif_exact(v1, sizeof(v1), &tz), -1);
	put_be32(v1 + 48, 200);
	v1[53] = 1; /* type 1 of 1 */
	assert_int_equal(parse_tzif_exact(v1, sizeof(v1), &tz), -1);
	/* Over the size cap, whatever it holds. */
	assert_int_equal(iso_tz_parse_tzif(v1, ISO_TZIF_MAX_BYTES + 1, &tz), -1);
	assert_int_equal(iso_tz_parse_tzif(NULL, 0, &tz), -1);
}

/* Nothing here reads the environment: TZ and TZDIR change nothing, and
 * are left as they were. */
static void test_zone_ignores_environment(void **state)
{
	int32_t off;

	(void)state;
	assert_int_equal(setenv("TZ", "America/New_York", 1), 0);
	assert_int_equal(setenv("TZDIR", "/nonexistent", 1), 0);
	assert_int_equal(iso_zone_offset("Asia/Kolkata", 0, &off), 0);
	assert_int_equal(off, 19800);
	assert_int_equal(iso_zone_offset("Europe/Madrid", 1673784000, &off), 0);
	assert_int_equal(off, 3600);
	assert_string_equal(getenv("TZ"), "America/New_York");
	assert_string_equal(getenv("TZDIR"), "/nonexistent");
	assert_int_equal(unsetenv("TZ"), 0);
	assert_int_equal(unsetenv("TZDIR"), 0);
}

/* Many threads loading and asking the same zones at once: each answer is
 * right (the cache hands out whole entries only). ASan would see a race
 * that corrupts the list as a use after free or a leak. */
#define CONCURRENT_THREADS 8
static const struct zone_case concurrent_cases[] = {
    {"Europe/Madrid", 1679792400, 7200, NULL},
    {"America/Santiago", 1693713600, -10800, NULL},
    {"Australia/Lord_Howe", 1680361200, 37800, NULL},
    {"Asia/Kathmandu", 504901800, 20700, NULL},
    {"Europe/Lisbon", 1673784000, 0, NULL},
    {"Pacific/Chatham", 1673784000, 49500, NULL},
};

static void *concurrent_worker(void *arg)
{
	size_t start = (size_t)(uintptr_t)arg;

	for (size_t i = 0; i < 2000; i++) {
		const struct zone_case *c =
		    &concurrent_cases[(start + i) %
		                      (sizeof(concurrent_cases) / sizeof(concurrent_cases[0]))];
		int32_t off;

		if (iso_zone_offset(c->zone, c->epoch, &off) != 0 || off != c->offset)
			return (void *)1;
	}
	return NULL;
}

static void test_zone_concurrent(void **state)
{
	pthread_t threads[CONCURRENT_THREADS];

	(void)state;
	for (size_t i = 0; i < CONCURRENT_THREADS; i++)
		assert_int_equal(
		    pthread_create(&threads[i], NULL, concurrent_worker, (void *)(uintptr_t)i), 0);
	for (size_t i = 0; i < CONCURRENT_THREADS; i++) {
		void *res = (void *)2;

		assert_int_equal(pthread_join(threads[i], &res), 0);
		assert_null(res);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_ok),
	    cmocka_unit_test(test_parse_refused),
	    cmocka_unit_test(test_parse_len_bounded),
	    cmocka_unit_test(test_on_hour),
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_format_round_trip_sweep),
	    cmocka_unit_test(test_days_from_civil),
	    cmocka_unit_test(test_zone_offsets),
	    cmocka_unit_test(test_zone_rule),
	    cmocka_unit_test(test_posix_rules),
	    cmocka_unit_test(test_tzif_real_and_slim),
	    cmocka_unit_test(test_tzif_corrupt),
	    cmocka_unit_test(test_zone_ignores_environment),
	    cmocka_unit_test(test_zone_concurrent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
