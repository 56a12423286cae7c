/* Unit tests for stats: every finished poll counted once, by outcome, with
 * its records and bytes, and in the right cumulative duration buckets;
 * requests likewise, by the outcome fetch_runs records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stats.h"

static void test_counts_by_outcome(void **state)
{
	(void)state;
	struct stats s;
	stats_init(&s);
	stats_poll_done(
	    &s,
	    &(struct stats_poll){.outcome = RUN_OK, .seconds = 0.2, .upserted = 24, .bytes = 900},
	    0);
	stats_poll_done(
	    &s, &(struct stats_poll){.outcome = RUN_OK, .seconds = 3, .upserted = 6, .refused = 2},
	    0);
	stats_poll_done(&s, &(struct stats_poll){.outcome = RUN_TIMEOUT, .seconds = 30}, 0);
	stats_poll_done(&s, &(struct stats_poll){.outcome = RUN_DB_ERROR, .seconds = 1}, 1);
	assert_int_equal(s.polls[RUN_OK], 2);
	assert_int_equal(s.polls[RUN_TIMEOUT], 1);
	assert_int_equal(s.polls[RUN_DB_ERROR], 0); /* lease lost: counted apart */
	assert_int_equal(s.polls[RUN_HTTP_ERROR], 0);
	assert_int_equal(s.polls_lease_lost, 1);
	stats_poll_done(&s, &(struct stats_poll){.outcome = RUN_OK}, 1);
	assert_int_equal(s.polls[RUN_OK], 2);
	assert_int_equal(s.polls_lease_lost, 2);
	assert_int_equal(stats_polls_total(&s), 5);
	assert_int_equal(s.records_upserted, 30);
	assert_int_equal(s.records_refused, 2);
	assert_int_equal(s.bytes, 900);
	assert_int_equal(s.duration_count, 5);
	assert_true(s.duration_sum > 34.19 && s.duration_sum < 34.21);
}

/* Cumulative buckets: a poll of d seconds is in every bucket whose bound is
 * >= d, including a bound equal to d (Prometheus' "le"). */
static void test_buckets_are_cumulative(void **state)
{
	(void)state;
	const struct {
		double seconds;
		size_t
		    first; /* the first bucket that counts it; STATS_DURATION_BUCKETS: +Inf only */
	} cases[] = {
	    {0, 0},
	    {0.05, 0},
	    {0.051, 1},
	    {1, 4},
	    {1.0001, 5},
	    {120, 9},
	    {121, STATS_DURATION_BUCKETS},
	    {-3, 0},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(*cases); c++) {
		struct stats s;
		stats_init(&s);
		stats_poll_done(
		    &s, &(struct stats_poll){.outcome = RUN_OK, .seconds = cases[c].seconds}, 0);
		for (size_t i = 0; i < STATS_DURATION_BUCKETS; i++)
			if (s.duration_le[i] != (i >= cases[c].first))
				fail_msg("%g s: bucket le=%g holds %ju, want %d", cases[c].seconds,
				         stats_duration_bounds[i], (uintmax_t)s.duration_le[i],
				         i >= cases[c].first);
		assert_int_equal(s.duration_count, 1);
	}
	for (size_t i = 1; i < STATS_DURATION_BUCKETS; i++)
		assert_true(stats_duration_bounds[i] > stats_duration_bounds[i - 1]);
}

static void test_null_and_unknown_outcome(void **state)
{
	(void)state;
	stats_poll_done(NULL, &(struct stats_poll){.outcome = RUN_OK},
	                0); /* no crash, nothing counted */
	struct stats s;
	stats_init(&s);
	stats_poll_done(&s, &(struct stats_poll){.outcome = (enum run_outcome)99}, 0);
	assert_int_equal(stats_polls_total(&s), 1);
}

/* Requests are counted by the outcome fetch_runs records; a failed write
 * is a db_error (and a database error), a lease-lost write is apart and no
 * database error; only requests that were sent are timed. */
static void test_requests(void **state)
{
	(void)state;
	struct stats s;
	stats_init(&s);
	stats_request_done(
	    &s, &(struct stats_request){.outcome = RUN_OK, .sent = true, .seconds = 0.2});
	stats_request_done(
	    &s, &(struct stats_request){.outcome = RUN_HTTP_ERROR, .sent = true, .seconds = 0.02});
	stats_request_done(
	    &s, &(struct stats_request){.outcome = RUN_DB_ERROR, .sent = true, .seconds = 1});
	stats_request_done(
	    &s, &(struct stats_request){
	            .outcome = RUN_OK, .lease_lost = true, .sent = true, .seconds = 100});
	stats_request_done(&s, &(struct stats_request){.outcome = RUN_CONFIG_ERROR});
	stats_request_done(NULL, &(struct stats_request){.outcome = RUN_OK});
	assert_int_equal(s.requests[RUN_OK], 1);
	assert_int_equal(s.requests[RUN_HTTP_ERROR], 1);
	assert_int_equal(s.requests[RUN_DB_ERROR], 1);
	assert_int_equal(s.requests[RUN_CONFIG_ERROR], 1);
	assert_int_equal(s.requests_lease_lost, 1);
	assert_int_equal(stats_requests_total(&s), 5);
	assert_int_equal(s.db_errors, 1);
	stats_db_error(&s);
	stats_db_error(NULL);
	assert_int_equal(s.db_errors, 2);
	/* Sent: four, the config_error was not. */
	assert_int_equal(s.request_seconds.count, 4);
	assert_true(s.request_seconds.sum > 101.21 && s.request_seconds.sum < 101.23);
	/* 0.02 s is in le=0.025 and up; 0.2 s from le=0.25; 1 s from le=1;
	 * 100 s only in +Inf. */
	const struct {
		double le;
		uint64_t want;
	} buckets[] = {{0.01, 0}, {0.025, 1}, {0.1, 1}, {0.25, 2}, {0.5, 2}, {1, 3}, {60, 3}};
	for (size_t b = 0; b < sizeof(buckets) / sizeof(*buckets); b++) {
		size_t i = 0;
		while (i < STATS_REQUEST_BUCKETS && stats_request_bounds[i] != buckets[b].le)
			i++;
		assert_true(i < STATS_REQUEST_BUCKETS);
		if (s.request_seconds.le[i] != buckets[b].want)
			fail_msg("bucket le=%g holds %ju, want %ju", buckets[b].le,
			         (uintmax_t)s.request_seconds.le[i], (uintmax_t)buckets[b].want);
	}
	for (size_t i = 1; i < STATS_REQUEST_BUCKETS; i++)
		assert_true(stats_request_bounds[i] > stats_request_bounds[i - 1]);
}

/* Label values: one per state and threshold, each a PromQL-friendly word. */
static void test_names(void **state)
{
	(void)state;
	for (size_t i = 0; i < STATS_CONN_STATES; i++) {
		assert_non_null(stats_connector_state_names[i]);
		assert_null(strchr(stats_connector_state_names[i], ' '));
	}
	assert_string_equal(stats_stale_names[STATS_STALE_LOOKBACK], "lookback");
	for (size_t i = 1; i < STATS_STALE_LOOKBACK; i++)
		assert_true(stats_stale_seconds[i] > stats_stale_seconds[i - 1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counts_by_outcome),
	    cmocka_unit_test(test_buckets_are_cumulative),
	    cmocka_unit_test(test_null_and_unknown_outcome),
	    cmocka_unit_test(test_requests),
	    cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
