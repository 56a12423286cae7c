/* test_window: poll planning (hour floors in odd and DST zones, spans that
 * tile the window exactly) and the split of store codes over URLs, as tables.
 * Instants are written as ISO strings read with iso_parse(), whose epochs
 * test_isotime checks against `date -u`; zone transitions are from zdump. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isotime.h"
#include "window.h"

#define HOUR 3600
#define DAY 86400

static int64_t at(const char *s)
{
	struct iso_instant t;

	if (iso_parse(s, strlen(s), &t) != ISO_OK)
		fail_msg("test bug: cannot parse \"%s\"", s);
	return t.epoch;
}

/* ---- win_hour_floor ---- */

struct floor_case {
	const char *zone;
	const char *t;
	const char *want;
};

static void test_hour_floor(void **state)
{
	static const struct floor_case cases[] = {
	    {"UTC", "2023-06-15T10:17:00Z", "2023-06-15T10:00:00Z"},
	    {"UTC", "2023-06-15T10:00:00Z", "2023-06-15T10:00:00Z"},
	    {"UTC", "2023-06-15T10:59:59Z", "2023-06-15T10:00:00Z"},
	    /* Before 1970: the floor, not truncation toward zero. */
	    {"UTC", "1969-12-31T23:59:59Z", "1969-12-31T23:00:00Z"},
	    {"UTC", "1969-12-31T23:00:00Z", "1969-12-31T23:00:00Z"},
	    /* +05:30: hours start at :30 UTC. */
	    {"Asia/Kolkata", "2023-06-15T10:17:00Z", "2023-06-15T09:30:00Z"},
	    {"Asia/Kolkata", "2023-06-15T09:29:59Z", "2023-06-15T08:30:00Z"},
	    {"Asia/Kolkata", "2023-06-15T09:30:00Z", "2023-06-15T09:30:00Z"},
	    /* +05:45: hours start at :15 UTC. */
	    {"Asia/Kathmandu", "2023-06-15T10:17:00Z", "2023-06-15T10:15:00Z"},
	    {"Asia/Kathmandu", "2023-06-15T10:14:59Z", "2023-06-15T09:15:00Z"},
	    {"America/Santiago", "2023-02-08T03:59:59Z", "2023-02-08T03:00:00Z"},
	    /* Madrid's spring switch: 03:00+02:00 is an hour start. */
	    {"Europe/Madrid", "2023-03-26T01:00:00Z", "2023-03-26T01:00:00Z"},
	    {"Europe/Madrid", "2023-03-26T00:59:59Z", "2023-03-26T00:00:00Z"},
	    /* Lord Howe's 30-minute step back (15:00Z, 02:00+11:00 becomes
	     * 01:30+10:30): 14:30Z would be 01:30+11:00, no hour start, so
	     * the hour holding 15:10Z starts at 14:00Z and lasts 90 minutes. */
	    {"Australia/Lord_Howe", "2023-04-01T15:10:00Z", "2023-04-01T14:00:00Z"},
	    {"Australia/Lord_Howe", "2023-04-01T14:59:59Z", "2023-04-01T14:00:00Z"},
	    {"Australia/Lord_Howe", "2023-04-01T15:29:59Z", "2023-04-01T14:00:00Z"},
	    {"Australia/Lord_Howe", "2023-04-01T15:30:00Z", "2023-04-01T15:30:00Z"},
	    /* Its step forward (15:30Z, 02:00+10:30 becomes 02:30+11:00). */
	    {"Australia/Lord_Howe", "2023-09-30T15:45:00Z", "2023-09-30T14:30:00Z"},
	    {"Australia/Lord_Howe", "2023-09-30T16:00:00Z", "2023-09-30T16:00:00Z"},
	    /* Kathmandu, 1986: +05:30 becomes +05:45 at 18:30Z. */
	    {"Asia/Kathmandu", "1985-12-31T18:40:00Z", "1985-12-31T17:30:00Z"},
	    {"Asia/Kathmandu", "1985-12-31T19:15:00Z", "1985-12-31T19:15:00Z"},
	    /* Santiago's autumn (03:00Z, 00:00-03 becomes 23:00-04). */
	    {"America/Santiago", "2023-04-02T03:30:00Z", "2023-04-02T03:00:00Z"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct floor_case *c = &cases[i];
		int64_t got = 0;

		if (win_hour_floor(at(c->t), c->zone, &got) != 0)
			fail_msg("win_hour_floor(%s, %s) failed", c->t, c->zone);
		if (got != at(c->want))
			fail_msg("win_hour_floor(%s, %s): %lld, want %s", c->t, c->zone,
			         (long long)got, c->want);
	}
	int64_t out = 42;
	assert_int_equal(win_hour_floor(0, "Mars/Base", &out), -1);
	assert_int_equal(win_hour_floor(0, NULL, &out), -1);
}

/* The end of the hour holding t: the first hour start after it. */
static void test_hour_next(void **state)
{
	static const struct floor_case cases[] = {
	    {"UTC", "2023-06-15T10:17:00Z", "2023-06-15T11:00:00Z"},
	    {"UTC", "2023-06-15T10:00:00Z", "2023-06-15T11:00:00Z"},
	    {"UTC", "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z"},
	    {"Asia/Kolkata", "2023-06-15T09:29:59Z", "2023-06-15T09:30:00Z"},
	    {"Europe/Madrid", "2023-03-26T00:00:00Z", "2023-03-26T01:00:00Z"},
	    {"Europe/Madrid", "2023-10-29T00:30:00Z", "2023-10-29T01:00:00Z"},
	    {"Australia/Lord_Howe", "2023-04-01T14:00:00Z", "2023-04-01T15:30:00Z"},
	    {"Australia/Lord_Howe", "2023-04-01T15:00:00Z", "2023-04-01T15:30:00Z"},
	    {"Australia/Lord_Howe", "2023-09-30T14:30:00Z", "2023-09-30T16:00:00Z"},
	    {"Asia/Kathmandu", "1985-12-31T17:30:00Z", "1985-12-31T19:15:00Z"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct floor_case *c = &cases[i];
		int64_t got = 0;

		if (win_hour_next(at(c->t), c->zone, &got) != 0)
			fail_msg("win_hour_next(%s, %s) failed", c->t, c->zone);
		if (got != at(c->want))
			fail_msg("win_hour_next(%s, %s): %lld, want %s", c->t, c->zone,
			         (long long)got, c->want);
	}
	int64_t out = 42;
	assert_int_equal(win_hour_next(0, "Mars/Base", &out), -1);
}

/* ---- win_plan ---- */

/* What every plan must be, whatever the inputs: starts at want_from, ends at
 * want_to, spans adjacent and non-empty (so oldest first, no gap, no
 * overlap), none longer than max_step, every boundary on an hour of the
 * zone at that instant. */
static void check_tiling(const char *name, const struct win_span *s, size_t n, int64_t want_from,
                         int64_t want_to, int64_t max_step, const char *zone)
{
	if (n == 0)
		fail_msg("%s: no spans", name);
	if (s[0].from != want_from)
		fail_msg("%s: first span from %lld, want %lld", name, (long long)s[0].from,
		         (long long)want_from);
	if (s[n - 1].to != want_to)
		fail_msg("%s: last span to %lld, want %lld", name, (long long)s[n - 1].to,
		         (long long)want_to);
	for (size_t i = 0; i < n; i++) {
		int32_t off_from, off_to;

		int64_t next_hour = 0;

		/* Longer than max_step only when it is one local hour (the
		 * 90-minute hour of a 30-minute switch). */
		assert_int_equal(win_hour_next(s[i].from, zone, &next_hour), 0);
		if (s[i].to <= s[i].from ||
		    (s[i].to - s[i].from > max_step && s[i].to != next_hour))
			fail_msg("%s: span %zu [%lld, %lld) empty or longer than %lld", name, i,
			         (long long)s[i].from, (long long)s[i].to, (long long)max_step);
		if (i + 1 < n && s[i].to != s[i + 1].from)
			fail_msg("%s: span %zu ends at %lld but span %zu starts at %lld", name, i,
			         (long long)s[i].to, i + 1, (long long)s[i + 1].from);
		assert_int_equal(iso_zone_offset(zone, s[i].from, &off_from), 0);
		assert_int_equal(iso_zone_offset(zone, s[i].to, &off_to), 0);
		if ((s[i].from + off_from) % HOUR != 0 || (s[i].to + off_to) % HOUR != 0)
			fail_msg("%s: span %zu [%lld, %lld) not on %s hours", name, i,
			         (long long)s[i].from, (long long)s[i].to, zone);
	}
}

struct plan_case {
	const char *name;
	const char *zone;
	const char *now;
	const char *synced_until; /* NULL: a new connector */
	int64_t lookback, initial_backfill, max_window;
	/* The spans wanted, as fromTime strings then the final toTime + 1s,
	 * written in the zone's offset: what goes on the wire. */
	const char *bounds[12];
};

static void test_plan_table(void **state)
{
	static const struct plan_case cases[] = {
	    {"new connector, 7 days in 24h pieces",
	     "UTC",
	     "2023-06-15T10:17:00Z",
	     NULL,
	     3 * HOUR,
	     7 * DAY,
	     24 * HOUR,
	     {"2023-06-08T10:00:00+00:00", "2023-06-09T10:00:00+00:00", "2023-06-10T10:00:00+00:00",
	      "2023-06-11T10:00:00+00:00", "2023-06-12T10:00:00+00:00", "2023-06-13T10:00:00+00:00",
	      "2023-06-14T10:00:00+00:00", "2023-06-15T10:00:00+00:00",
	      "2023-06-15T11:00:00+00:00"}},
	    {"synced recently: lookback wins",
	     "UTC",
	     "2023-06-15T10:17:00Z",
	     "2023-06-15T09:00:00Z",
	     3 * HOUR,
	     7 * DAY,
	     24 * HOUR,
	     {"2023-06-15T07:00:00+00:00", "2023-06-15T11:00:00+00:00"}},
	    {"synced long ago: synced_until wins",
	     "UTC",
	     "2023-06-15T10:17:00Z",
	     "2023-06-14T22:00:00Z",
	     3 * HOUR,
	     7 * DAY,
	     6 * HOUR,
	     {"2023-06-14T22:00:00+00:00", "2023-06-15T04:00:00+00:00", "2023-06-15T10:00:00+00:00",
	      "2023-06-15T11:00:00+00:00"}},
	    {"synced_until off the hour is floored",
	     "UTC",
	     "2023-06-15T10:17:00Z",
	     "2023-06-15T05:42:00Z",
	     3 * HOUR,
	     7 * DAY,
	     24 * HOUR,
	     {"2023-06-15T05:00:00+00:00", "2023-06-15T11:00:00+00:00"}},
	    {"synced_until at the end of the current hour",
	     "UTC",
	     "2023-06-15T10:17:00Z",
	     "2023-06-15T11:00:00Z",
	     3 * HOUR,
	     7 * DAY,
	     24 * HOUR,
	     {"2023-06-15T07:00:00+00:00", "2023-06-15T11:00:00+00:00"}},
	    {"synced_until far in the future",
	     "UTC",
	     "2023-06-15T10:17:00Z",
	     "2031-01-01T00:00:00Z",
	     3 * HOUR,
	     7 * DAY,
	     24 * HOUR,
	     {"2023-06-15T07:00:00+00:00", "2023-06-15T11:00:00+00:00"}},
	    {"lookback 0: only the open hour",
	     "UTC",
	     "2023-06-15T10:17:00Z",
	     "2023-06-15T11:00:00Z",
	     0,
	     7 * DAY,
	     24 * HOUR,
	     {"2023-06-15T10:00:00+00:00", "2023-06-15T11:00:00+00:00"}},
	    {"now exactly on the hour still covers that hour",
	     "UTC",
	     "2023-06-15T10:00:00Z",
	     "2023-06-15T10:00:00Z",
	     0,
	     7 * DAY,
	     24 * HOUR,
	     {"2023-06-15T10:00:00+00:00", "2023-06-15T11:00:00+00:00"}},
	    {"max_window 90 min rounds down to 1h",
	     "UTC",
	     "2023-06-15T10:17:00Z",
	     "2023-06-15T09:00:00Z",
	     3 * HOUR,
	     7 * DAY,
	     90 * 60,
	     {"2023-06-15T07:00:00+00:00", "2023-06-15T08:00:00+00:00", "2023-06-15T09:00:00+00:00",
	      "2023-06-15T10:00:00+00:00", "2023-06-15T11:00:00+00:00"}},
	    {"max_window under an hour is one hour",
	     "UTC",
	     "2023-06-15T10:17:00Z",
	     "2023-06-15T09:00:00Z",
	     HOUR + 1,
	     7 * DAY,
	     1,
	     {"2023-06-15T09:00:00+00:00", "2023-06-15T10:00:00+00:00",
	      "2023-06-15T11:00:00+00:00"}},
	    {"max_window 2h59m rounds down to 2h",
	     "UTC",
	     "2023-06-15T10:17:00Z",
	     NULL,
	     0,
	     5 * HOUR,
	     3 * HOUR - 60,
	     {"2023-06-15T05:00:00+00:00", "2023-06-15T07:00:00+00:00", "2023-06-15T09:00:00+00:00",
	      "2023-06-15T11:00:00+00:00"}},
	    {"Santiago, the spec's example offset",
	     "America/Santiago",
	     "2023-02-08T03:30:00Z",
	     NULL,
	     0,
	     HOUR,
	     24 * HOUR,
	     {"2023-02-07T23:00:00-03:00", "2023-02-08T01:00:00-03:00"}},
	    {"Asia/Kolkata: hours at :30 UTC",
	     "Asia/Kolkata",
	     "2023-06-15T10:17:00Z",
	     NULL,
	     3 * HOUR,
	     DAY,
	     24 * HOUR,
	     {"2023-06-14T15:00:00+05:30", "2023-06-15T15:00:00+05:30",
	      "2023-06-15T16:00:00+05:30"}},
	    {"Asia/Kathmandu: hours at :15 UTC",
	     "Asia/Kathmandu",
	     "2023-06-15T10:17:00Z",
	     "2023-06-15T11:15:00Z",
	     HOUR,
	     DAY,
	     24 * HOUR,
	     {"2023-06-15T15:00:00+05:45", "2023-06-15T17:00:00+05:45"}},
	    /* 2023-03-26 01:00Z: 02:00+01:00 becomes 03:00+02:00. The span
	     * over the switch is 6 real hours but 7 on the wall clock. */
	    {"Europe/Madrid across the spring switch",
	     "Europe/Madrid",
	     "2023-03-26T12:17:00Z",
	     NULL,
	     3 * HOUR,
	     DAY,
	     6 * HOUR,
	     {"2023-03-25T13:00:00+01:00", "2023-03-25T19:00:00+01:00", "2023-03-26T01:00:00+01:00",
	      "2023-03-26T08:00:00+02:00", "2023-03-26T14:00:00+02:00",
	      "2023-03-26T15:00:00+02:00"}},
	    /* 2023-10-29 01:00Z: 03:00+02:00 becomes 02:00+01:00. */
	    {"Europe/Madrid across the autumn switch",
	     "Europe/Madrid",
	     "2023-10-29T12:17:00Z",
	     NULL,
	     3 * HOUR,
	     DAY,
	     6 * HOUR,
	     {"2023-10-28T14:00:00+02:00", "2023-10-28T20:00:00+02:00", "2023-10-29T02:00:00+02:00",
	      "2023-10-29T07:00:00+01:00", "2023-10-29T13:00:00+01:00",
	      "2023-10-29T14:00:00+01:00"}},
	    /* 2023-04-01 15:00Z: 02:00+11:00 becomes 01:30+10:30. The span over
	     * it is cut at the first hour of the new offset (5.5 h) so every
	     * later boundary is still on the wall-clock hour. */
	    {"Australia/Lord_Howe across a 30-minute switch",
	     "Australia/Lord_Howe",
	     "2023-04-01T20:17:00Z",
	     NULL,
	     0,
	     12 * HOUR,
	     6 * HOUR,
	     {"2023-04-01T19:00:00+11:00", "2023-04-02T01:00:00+11:00", "2023-04-02T06:00:00+10:30",
	      "2023-04-02T07:00:00+10:30"}},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct plan_case *c = &cases[i];
		struct win_params p = {
		    .now = at(c->now),
		    .has_synced = c->synced_until != NULL,
		    .synced_until = c->synced_until ? at(c->synced_until) : 0,
		    .lookback = c->lookback,
		    .initial_backfill = c->initial_backfill,
		    .max_window = c->max_window,
		    .zone = c->zone,
		};
		struct win_span *s = NULL;
		size_t n = 0, want_n = 0;
		int64_t step = c->max_window / HOUR * HOUR;

		while (want_n + 1 < 12 && c->bounds[want_n + 1])
			want_n++;
		if (win_plan(&p, &s, &n) != 0)
			fail_msg("%s: win_plan failed", c->name);
		check_tiling(c->name, s, n, at(c->bounds[0]), at(c->bounds[want_n]),
		             step < HOUR ? HOUR : step, c->zone);
		if (n != want_n)
			fail_msg("%s: %zu spans, want %zu", c->name, n, want_n);
		for (size_t k = 0; k < n; k++) {
			char from[ISO_FORMAT_LEN], last[ISO_FORMAT_LEN];

			assert_int_equal(iso_format_in_zone(s[k].from, c->zone, from), 0);
			assert_int_equal(iso_format_in_zone(s[k].to, c->zone, last), 0);
			if (strcmp(from, c->bounds[k]) != 0 || strcmp(last, c->bounds[k + 1]) != 0)
				fail_msg("%s: span %zu is [%s, %s), want [%s, %s)", c->name, k,
				         from, last, c->bounds[k], c->bounds[k + 1]);
		}
		free(s);
	}
}

/* ---- win_plan_span: explicit spans (backfill, backfill requests) ---- */

struct span_case {
	const char *name;
	const char *zone;
	const char *from, *to; /* as an operator gives them: --from, --to */
	int64_t max_window;
	const char *bounds[12]; /* fromTime of each piece, then the end (toTime + 1 s) */
};

static void test_plan_span_table(void **state)
{
	static const struct span_case cases[] = {
	    /* The bug of issue 10: after the step back, 24 h from 00:00+11:00
	     * is 23:30+10:30, no hour start; the cut is at 23:00+10:30. */
	    {"Lord_Howe autumn, 24h pieces",
	     "Australia/Lord_Howe",
	     "2023-04-01T00:00:00+11:00",
	     "2023-04-03T00:00:00+10:30",
	     24 * HOUR,
	     {"2023-04-01T00:00:00+11:00", "2023-04-02T00:00:00+11:00", "2023-04-02T23:00:00+10:30",
	      "2023-04-03T00:00:00+10:30"}},
	    {"Lord_Howe spring, 6h pieces",
	     "Australia/Lord_Howe",
	     "2023-09-30T20:00:00+10:30",
	     "2023-10-01T12:00:00+11:00",
	     6 * HOUR,
	     {"2023-09-30T20:00:00+10:30", "2023-10-01T01:00:00+10:30", "2023-10-01T07:00:00+11:00",
	      "2023-10-01T12:00:00+11:00"}},
	    /* 01:00+10:30 to 03:00+11:00 is one 90-minute hour: it goes whole. */
	    {"Lord_Howe spring, 1h pieces",
	     "Australia/Lord_Howe",
	     "2023-10-01T00:00:00+10:30",
	     "2023-10-01T05:00:00+11:00",
	     HOUR,
	     {"2023-10-01T00:00:00+10:30", "2023-10-01T01:00:00+10:30", "2023-10-01T03:00:00+11:00",
	      "2023-10-01T04:00:00+11:00", "2023-10-01T05:00:00+11:00"}},
	    {"Lord_Howe autumn, 1h pieces",
	     "Australia/Lord_Howe",
	     "2023-04-02T00:00:00+11:00",
	     "2023-04-02T04:00:00+10:30",
	     HOUR,
	     {"2023-04-02T00:00:00+11:00", "2023-04-02T01:00:00+11:00", "2023-04-02T02:00:00+10:30",
	      "2023-04-02T03:00:00+10:30", "2023-04-02T04:00:00+10:30"}},
	    {"Madrid spring, 24h pieces",
	     "Europe/Madrid",
	     "2023-03-25T00:00:00+01:00",
	     "2023-03-27T00:00:00+02:00",
	     24 * HOUR,
	     {"2023-03-25T00:00:00+01:00", "2023-03-26T00:00:00+01:00",
	      "2023-03-27T00:00:00+02:00"}},
	    {"Madrid autumn, 24h pieces",
	     "Europe/Madrid",
	     "2023-10-28T00:00:00+02:00",
	     "2023-10-30T00:00:00+01:00",
	     24 * HOUR,
	     {"2023-10-28T00:00:00+02:00", "2023-10-29T00:00:00+02:00", "2023-10-29T23:00:00+01:00",
	      "2023-10-30T00:00:00+01:00"}},
	    {"Santiago autumn, 24h pieces",
	     "America/Santiago",
	     "2023-04-01T00:00:00-03:00",
	     "2023-04-03T00:00:00-04:00",
	     24 * HOUR,
	     {"2023-04-01T00:00:00-03:00", "2023-04-01T23:00:00-04:00", "2023-04-02T23:00:00-04:00",
	      "2023-04-03T00:00:00-04:00"}},
	    {"Santiago spring, 24h pieces",
	     "America/Santiago",
	     "2023-09-02T00:00:00-04:00",
	     "2023-09-04T00:00:00-03:00",
	     24 * HOUR,
	     {"2023-09-02T00:00:00-04:00", "2023-09-03T01:00:00-03:00",
	      "2023-09-04T00:00:00-03:00"}},
	    /* Santiago's summer time across the new year: no switch there. */
	    {"Santiago new year, 24h pieces",
	     "America/Santiago",
	     "2023-12-31T00:00:00-03:00",
	     "2024-01-02T00:00:00-03:00",
	     24 * HOUR,
	     {"2023-12-31T00:00:00-03:00", "2024-01-01T00:00:00-03:00",
	      "2024-01-02T00:00:00-03:00"}},
	    {"Kathmandu +05:30 to +05:45, 3h pieces",
	     "Asia/Kathmandu",
	     "1985-12-31T20:00:00+05:30",
	     "1986-01-01T04:00:00+05:45",
	     3 * HOUR,
	     {"1985-12-31T20:00:00+05:30", "1985-12-31T23:00:00+05:30", "1986-01-01T02:00:00+05:45",
	      "1986-01-01T04:00:00+05:45"}},
	    /* Mid-hour bounds widen to whole hours: here one of 105 minutes. */
	    {"Kathmandu, mid-hour bounds, 1h pieces",
	     "Asia/Kathmandu",
	     "1985-12-31T23:40:00+05:30",
	     "1986-01-01T00:20:00+05:45",
	     HOUR,
	     {"1985-12-31T23:00:00+05:30", "1986-01-01T01:00:00+05:45"}},
	    {"Kathmandu today, 24h pieces",
	     "Asia/Kathmandu",
	     "2023-06-15T00:00:00+05:45",
	     "2023-06-16T12:00:00+05:45",
	     24 * HOUR,
	     {"2023-06-15T00:00:00+05:45", "2023-06-16T00:00:00+05:45",
	      "2023-06-16T12:00:00+05:45"}},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct span_case *c = &cases[i];
		struct win_span *s = NULL;
		size_t n = 0, want_n = 0;

		while (want_n + 1 < 12 && c->bounds[want_n + 1])
			want_n++;
		if (win_plan_span(at(c->from), at(c->to), c->max_window, c->zone, &s, &n) != 0)
			fail_msg("%s: win_plan_span failed", c->name);
		check_tiling(c->name, s, n, at(c->bounds[0]), at(c->bounds[want_n]), c->max_window,
		             c->zone);
		if (n != want_n)
			fail_msg("%s: %zu spans, want %zu", c->name, n, want_n);
		for (size_t k = 0; k < n; k++) {
			char from[ISO_FORMAT_LEN], last[ISO_FORMAT_LEN];

			assert_int_equal(iso_format_in_zone(s[k].from, c->zone, from), 0);
			assert_int_equal(iso_format_in_zone(s[k].to, c->zone, last), 0);
			if (strcmp(from, c->bounds[k]) != 0 || strcmp(last, c->bounds[k + 1]) != 0)
				fail_msg("%s: span %zu is [%s, %s), want [%s, %s)", c->name, k,
				         from, last, c->bounds[k], c->bounds[k + 1]);
		}
		free(s);
	}
}

/* Every start, every length and every max_window around the switches of
 * the four zones: the pieces always tile exactly the hours asked, on the
 * zone's grid (check_tiling), whatever the table above forgot. */
static void test_plan_span_sweep(void **state)
{
	static const struct {
		const char *zone, *switch_at;
	} sw[] = {
	    {"Australia/Lord_Howe", "2023-04-01T15:00:00Z"},
	    {"Australia/Lord_Howe", "2023-09-30T15:30:00Z"},
	    {"Europe/Madrid", "2023-03-26T01:00:00Z"},
	    {"Europe/Madrid", "2023-10-29T01:00:00Z"},
	    {"America/Santiago", "2023-04-02T03:00:00Z"},
	    {"America/Santiago", "2023-09-03T04:00:00Z"},
	    {"Asia/Kathmandu", "1985-12-31T18:30:00Z"},
	};
	static const int64_t lengths[] = {1, 1800, HOUR, 5400, 5 * HOUR, DAY + 1800};
	static const int64_t windows[] = {1, HOUR, 2 * HOUR + 600, 5 * HOUR, DAY};
	size_t plans = 0;

	(void)state;
	for (size_t z = 0; z < sizeof(sw) / sizeof(sw[0]); z++) {
		for (int64_t from = at(sw[z].switch_at) - 6 * HOUR;
		     from <= at(sw[z].switch_at) + 2 * HOUR; from += 900) {
			for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
				for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
					int64_t to = from + lengths[l], want_from, want_to;
					struct win_span *s = NULL;
					size_t n = 0;
					char name[128];

					snprintf(name, sizeof(name), "%s [%lld, %lld) window %lld",
					         sw[z].zone, (long long)from, (long long)to,
					         (long long)windows[w]);
					assert_int_equal(
					    win_hour_floor(from, sw[z].zone, &want_from), 0);
					assert_int_equal(
					    win_hour_next(to - 1, sw[z].zone, &want_to), 0);
					if (win_plan_span(from, to, windows[w], sw[z].zone, &s,
					                  &n) != 0)
						fail_msg("%s: refused", name);
					check_tiling(name, s, n, want_from, want_to,
					             windows[w] < HOUR ? HOUR
					                               : windows[w] / HOUR * HOUR,
					             sw[z].zone);
					free(s);
					plans++;
				}
			}
		}
	}
	assert_true(plans > 5000);
}

static void test_plan_span_refused(void **state)
{
	const int64_t t = 1686824220; /* 2023-06-15T10:17:00Z */
	static struct win_span dummy;
	struct win_span *s = &dummy;
	size_t n = 99;

	(void)state;
	assert_int_equal(win_plan_span(t, t, DAY, "UTC", &s, &n), -1); /* empty */
	assert_int_equal(win_plan_span(t, t - 1, DAY, "UTC", &s, &n), -1);
	assert_int_equal(win_plan_span(t, t + DAY, 0, "UTC", &s, &n), -1);
	assert_int_equal(win_plan_span(t, t + DAY, DAY, "Mars/Base", &s, &n), -1);
	assert_int_equal(win_plan_span(t, t + 20 * 365 * DAY, HOUR, "UTC", &s, &n), -1);
	assert_int_equal(win_plan_span(INT64_MIN, t, DAY, "UTC", &s, &n), -1);
	assert_int_equal(win_plan_span(t, INT64_MAX, DAY, "UTC", &s, &n), -1);
	assert_null(s);
	assert_int_equal(n, 0);
}

/* The Madrid autumn case as the customer sees it: toTime is the last second
 * of the window, in the offset in force at that second. */
static void test_plan_wire_times(void **state)
{
	struct win_params p = {
	    .now = at("2023-10-29T12:17:00Z"),
	    .lookback = 3 * HOUR,
	    .initial_backfill = DAY,
	    .max_window = 6 * HOUR,
	    .zone = "Europe/Madrid",
	};
	struct win_span *s;
	size_t n;
	char to_time[ISO_FORMAT_LEN];

	(void)state;
	assert_int_equal(win_plan(&p, &s, &n), 0);
	assert_int_equal(n, 5);
	/* Span 2 holds the repeated 02:00 hour: ends 06:59:59 local, +01:00. */
	assert_int_equal(iso_format_in_zone(s[2].to - 1, p.zone, to_time), 0);
	assert_string_equal(to_time, "2023-10-29T06:59:59+01:00");
	assert_int_equal(s[2].to - s[2].from, 6 * HOUR);
	free(s);
}

/* 100,000 spans is the most a plan may hold; one more is refused. */
static void test_plan_span_limit(void **state)
{
	struct win_params p = {
	    .now = at("2023-06-15T10:00:00Z"),
	    .lookback = 0,
	    .max_window = HOUR,
	    .zone = "UTC",
	};
	struct win_span *s = NULL;
	size_t n = 0;

	(void)state;
	/* From now - 99,999 h to the end of the current hour: 100,000 hours. */
	p.initial_backfill = 99999LL * HOUR;
	assert_int_equal(win_plan(&p, &s, &n), 0);
	assert_int_equal(n, 100000);
	check_tiling("100,000 spans", s, n, p.now - 99999LL * HOUR, p.now + HOUR, HOUR, "UTC");
	free(s);

	p.initial_backfill = 100000LL * HOUR;
	assert_int_equal(win_plan(&p, &s, &n), -1);
	assert_null(s);
	assert_int_equal(n, 0);
}

struct bad_plan_case {
	const char *name;
	struct win_params p;
};

static void test_plan_refused(void **state)
{
	const int64_t now = 1686824220; /* 2023-06-15T10:17:00Z */
	const struct bad_plan_case cases[] = {
	    {"negative lookback", {now, true, now, -1, DAY, DAY, "UTC"}},
	    {"zero initial_backfill", {now, false, 0, HOUR, 0, DAY, "UTC"}},
	    {"negative initial_backfill", {now, false, 0, HOUR, -DAY, DAY, "UTC"}},
	    {"zero initial_backfill, even when synced", {now, true, now, HOUR, 0, DAY, "UTC"}},
	    {"zero max_window", {now, false, 0, HOUR, DAY, 0, "UTC"}},
	    {"negative max_window", {now, false, 0, HOUR, DAY, -HOUR, "UTC"}},
	    {"unknown zone", {now, false, 0, HOUR, DAY, DAY, "Mars/Base"}},
	    {"path as zone", {now, false, 0, HOUR, DAY, DAY, "../etc/passwd"}},
	    {"empty zone", {now, false, 0, HOUR, DAY, DAY, ""}},
	    {"NULL zone", {now, false, 0, HOUR, DAY, DAY, NULL}},
	    {"absurd backfill: 20 years in 1h pieces",
	     {now, false, 0, HOUR, 20 * 365 * DAY, HOUR, "UTC"}},
	    {"synced_until at INT64_MIN", {now, true, INT64_MIN, HOUR, DAY, DAY, "UTC"}},
	    {"now - backfill overflows", {INT64_MIN + 10, false, 0, HOUR, DAY, DAY, "UTC"}},
	    {"now - lookback overflows", {INT64_MIN + 10, true, 0, INT64_MAX, DAY, DAY, "UTC"}},
	    {"now near INT64_MAX", {INT64_MAX - 10, true, INT64_MAX, 0, DAY, DAY, "UTC"}},
	    {"now after year 9999", {253402300800, false, 0, HOUR, DAY, DAY, "UTC"}},
	    {"start before year 1", {-62135596800 + HOUR, false, 0, HOUR, DAY, DAY, "UTC"}},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		static struct win_span dummy;
		struct win_span *s = &dummy;
		size_t n = 99;

		if (win_plan(&cases[i].p, &s, &n) != -1)
			fail_msg("%s: accepted (%zu spans)", cases[i].name, n);
		if (s != NULL || n != 0)
			fail_msg("%s: outputs not cleared on failure", cases[i].name);
	}
}

/* ---- win_query_value_len ---- */

struct qlen_case {
	const char *value;
	size_t want;
};

static void test_query_value_len(void **state)
{
	static const struct qlen_case cases[] = {
	    {"", 0},
	    {"0001", 4},
	    {"AZaz09-._~", 10},
	    {"a b", 5},
	    {"+", 3},
	    {"%", 3},
	    {"/?&=#", 15},
	    {"\xc3\xa9", 6},                   /* é in UTF-8: every byte */
	    {"2023-02-08T00:00:00+05:30", 33}, /* 3 colons and a plus */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t got = win_query_value_len(cases[i].value);

		if (got != cases[i].want)
			fail_msg("win_query_value_len(\"%s\"): %zu, want %zu", cases[i].value, got,
			         cases[i].want);
	}
}

/* ---- win_split_codes ---- */

/* The test's own percent-encoder, to cost a code independently. */
static size_t encoded_len(const char *v)
{
	char buf[1024];
	size_t o = 0;

	for (; *v; v++) {
		unsigned char ch = (unsigned char)*v;

		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~",
		           ch))
			buf[o++] = (char)ch;
		else
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%%%02X", ch);
		assert_true(o < sizeof(buf) - 4);
	}
	return o;
}

static size_t code_cost(const char *code)
{
	return strlen("&ext_ref_codes=") + encoded_len(code);
}

/* Every code in exactly one batch, in order; each batch within max_len; and
 * greedy: each batch but the last could not have taken the next code. */
static void check_batches(const char *name, const char *const *codes, size_t n, size_t base_len,
                          size_t max_len, const size_t *ends, size_t nb)
{
	size_t begin = 0;

	if (nb == 0 || ends[nb - 1] != n)
		fail_msg("%s: batches do not end at code %zu", name, n);
	for (size_t b = 0; b < nb; b++) {
		size_t sum = base_len;

		if (ends[b] <= begin)
			fail_msg("%s: batch %zu is empty or out of order", name, b);
		for (size_t i = begin; i < ends[b]; i++)
			sum += code_cost(codes[i]);
		if (sum > max_len)
			fail_msg("%s: batch %zu needs %zu bytes, over %zu", name, b, sum, max_len);
		if (b + 1 < nb && sum + code_cost(codes[ends[b]]) <= max_len)
			fail_msg("%s: batch %zu could have taken code %zu", name, b, ends[b]);
		begin = ends[b];
	}
}

struct split_case {
	const char *name;
	const char *codes[12];
	size_t base_len, max_len;
	size_t want_ends[12]; /* 0-terminated */
};

static void test_split_table(void **state)
{
	static const struct split_case cases[] = {
	    {"all fit in one URL", {"0001", "0002", "0003"}, 100, 8000, {3}},
	    /* 19 bytes a code: 50 + 3 * 19 = 107 fits three exactly. */
	    {"batches of three, exact fit",
	     {"0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010"},
	     50,
	     107,
	     {3, 6, 9, 10}},
	    {"one byte less: batches of two",
	     {"0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010"},
	     50,
	     106,
	     {2, 4, 6, 8, 10}},
	    {"one code per URL", {"0001", "0002", "0003"}, 81, 100, {1, 2, 3}},
	    /* "A B" and "C&D" cost 20 each encoded (18 if counted raw), "E"
	     * 16: 10 + 20 + 20 > 48, so the split falls after the first. */
	    {"percent-encoding counts", {"A B", "C&D", "E"}, 10, 48, {1, 3}},
	    /* "+1" costs 19 encoded (17 raw): two do not fit in 36. */
	    {"a '+' costs three", {"+1", "+2", "+3"}, 0, 36, {1, 2, 3}},
	    {"long and short codes mixed",
	     {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "b", "c", "d"},
	     20,
	     90,
	     {1, 4}},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct split_case *c = &cases[i];
		size_t n = 0, want_nb = 0, *ends = NULL, nb = 0;

		while (n < 12 && c->codes[n])
			n++;
		while (want_nb < 12 && c->want_ends[want_nb])
			want_nb++;
		if (win_split_codes(c->codes, n, c->base_len, c->max_len, &ends, &nb) != 0)
			fail_msg("%s: win_split_codes failed", c->name);
		check_batches(c->name, c->codes, n, c->base_len, c->max_len, ends, nb);
		if (nb != want_nb)
			fail_msg("%s: %zu batches, want %zu", c->name, nb, want_nb);
		for (size_t b = 0; b < nb; b++)
			if (ends[b] != c->want_ends[b])
				fail_msg("%s: batch %zu ends at %zu, want %zu", c->name, b, ends[b],
				         c->want_ends[b]);
		free(ends);
	}
}

static void test_split_refused(void **state)
{
	static const char *const codes[] = {"0001", "0002", "0003"};
	static const char *const with_long[] = {"0001", "0002",
	                                        "a code far too long to fit in the URL", "0004"};
	size_t *ends = (size_t *)1, nb = 99;

	(void)state;
	/* No codes: a connector with no store is not polled, not split. */
	assert_int_equal(win_split_codes(codes, 0, 100, 8000, &ends, &nb), -1);
	assert_null(ends);
	assert_int_equal(nb, 0);
	/* 81 + 19 = 100 fits exactly; 82 + 19 does not. */
	assert_int_equal(win_split_codes(codes, 1, 81, 100, &ends, &nb), 0);
	assert_int_equal(nb, 1);
	free(ends);
	ends = (size_t *)1;
	assert_int_equal(win_split_codes(codes, 1, 82, 100, &ends, &nb), -1);
	assert_null(ends);
	/* A code that cannot fit in the middle of the list fails the whole split. */
	assert_int_equal(win_split_codes(with_long, 4, 20, 60, &ends, &nb), -1);
	assert_null(ends);
	assert_int_equal(nb, 0);
	/* A base URL already over the limit. */
	assert_int_equal(win_split_codes(codes, 3, 8001, 8000, &ends, &nb), -1);
	/* Sizes near SIZE_MAX must not wrap into a fit. */
	assert_int_equal(win_split_codes(codes, 3, SIZE_MAX - 5, SIZE_MAX, &ends, &nb), -1);
}

/* The real shape: 2,000 six-character codes against the 8,000-byte limit. */
static void test_split_realistic(void **state)
{
	const char *base =
	    "https://sales.example.com/api/v1/tickets?fromTime=2023-02-08T00%3A00%3A00-"
	    "03%3A00&toTime=2023-02-08T23%3A59%3A59-03%3A00";
	enum { N = 2000 };
	char *storage = malloc(N * 7);
	const char **codes = malloc(N * sizeof(*codes));
	size_t *ends, nb, base_len = strlen(base);
	size_t per, want_nb;

	(void)state;
	assert_non_null(storage);
	assert_non_null(codes);
	for (size_t i = 0; i < N; i++) {
		snprintf(storage + i * 7, 7, "%06zu", i + 1);
		codes[i] = storage + i * 7;
	}
	assert_int_equal(win_split_codes(codes, N, base_len, WIN_MAX_URL_BYTES, &ends, &nb), 0);
	check_batches("2,000 codes", codes, N, base_len, WIN_MAX_URL_BYTES, ends, nb);
	/* 21 bytes a code: (8000 - 120) / 21 = 375 per URL, 6 URLs. */
	per = (WIN_MAX_URL_BYTES - base_len) / 21;
	want_nb = (N + per - 1) / per;
	assert_int_equal(base_len, 120);
	assert_int_equal(per, 375);
	assert_int_equal(nb, want_nb);
	for (size_t b = 0; b < nb; b++)
		assert_int_equal(ends[b], (b + 1) * per < N ? (b + 1) * per : N);
	free(ends);
	free(codes);
	free(storage);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hour_floor),        cmocka_unit_test(test_hour_next),
	    cmocka_unit_test(test_plan_span_table),   cmocka_unit_test(test_plan_span_sweep),
	    cmocka_unit_test(test_plan_span_refused), cmocka_unit_test(test_plan_table),
	    cmocka_unit_test(test_plan_wire_times),   cmocka_unit_test(test_plan_span_limit),
	    cmocka_unit_test(test_plan_refused),      cmocka_unit_test(test_query_value_len),
	    cmocka_unit_test(test_split_table),       cmocka_unit_test(test_split_refused),
	    cmocka_unit_test(test_split_realistic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
