/* Unit tests for stats: every finished poll counted once, by outcome, with
 * its records and bytes, and in the right cumulative duration buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counts_by_outcome),
	    cmocka_unit_test(test_buckets_are_cumulative),
	    cmocka_unit_test(test_null_and_unknown_outcome),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
