/* test_isotime: ISO 8601 parsing and writing, and IANA zone offsets, as tables
 * of {input, want}. Every expected epoch was computed independently with
 * `date -u -d <input> +%s`, and every zone offset and transition instant
 * with `zdump -v <zone>` (tzdata 2025b), not with the code under test. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void test_zone_invalid(void **state)
{
	static const char *const zones[] = {
	    "Mars/Base",
	    "../etc/passwd",
	    "/etc/localtime",
	    "/usr/share/zoneinfo/UTC",
	    "",
	    "Europe/",
	    "Europe",
	    "Europe//Madrid",
	    "Europe/Madrid/",
	    "Europe/./Madrid",
	    "./UTC",
	    "Europe/../Europe/Madrid",
	    "Europe/Madrid\n",
	    "Europe/Madrid ",
	    "utc",
	    "UTC ",
	    "localtime",
	    "leapseconds", /* a regular file under zoneinfo, but not TZif */
	    "zone.tab",
	    "Europe/Madrid;rm",
	    "Europe\\Madrid",
	};
	char long_name[400];

	(void)state;
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		char buf[ISO_FORMAT_LEN] = "untouched";
		int32_t off = 12345;

		if (iso_zone_valid(zones[i]))
			fail_msg("iso_zone_valid(\"%s\"): true, want false", zones[i]);
		if (iso_zone_offset(zones[i], 0, &off) != -1 || off != 12345)
			fail_msg("iso_zone_offset(\"%s\"): accepted or wrote %d", zones[i],
			         (int)off);
		if (iso_format_in_zone(0, zones[i], buf) != -1 || buf[0] != '\0')
			fail_msg("iso_format_in_zone(\"%s\"): accepted or left \"%s\"", zones[i],
			         buf);
	}
	memset(long_name, 'A', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_false(iso_zone_valid(long_name));
	assert_false(iso_zone_valid(NULL));
}

static void expect_tz(const char *want)
{
	const char *got = getenv("TZ");

	if (want == NULL && got != NULL)
		fail_msg("TZ is \"%s\", want unset", got);
	if (want != NULL && (got == NULL || strcmp(got, want) != 0))
		fail_msg("TZ is \"%s\", want \"%s\"", got ? got : "(unset)", want);
}

static void test_zone_restores_tz(void **state)
{
	struct tm tm;
	time_t jan = 1673784000; /* 2023-01-15T12:00:00Z */
	int32_t off;

	(void)state;
	assert_int_equal(setenv("TZ", "America/New_York", 1), 0);
	tzset();
	assert_int_equal(iso_zone_offset("Asia/Kolkata", 0, &off), 0);
	assert_int_equal(off, 19800);
	expect_tz("America/New_York");
	/* The C library's own view is back too, not just the variable. */
	assert_non_null(localtime_r(&jan, &tm));
	assert_int_equal(tm.tm_gmtoff, -18000);

	/* A refused zone leaves TZ alone as well. */
	assert_int_equal(iso_zone_offset("Mars/Base", 0, &off), -1);
	expect_tz("America/New_York");

	assert_int_equal(unsetenv("TZ"), 0);
	tzset();
	assert_int_equal(iso_zone_offset("Europe/Madrid", jan, &off), 0);
	assert_int_equal(off, 3600);
	expect_tz(NULL);
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
	    cmocka_unit_test(test_zone_invalid),
	    cmocka_unit_test(test_zone_restores_tz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
