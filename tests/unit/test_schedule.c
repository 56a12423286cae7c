/* test_schedule: spread of successful polls over the interval, backoff
 * after failures, Retry-After honoured and clamped (SPEC §6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "schedule.h"

static void test_offset_is_fixed_and_within_interval(void **state)
{
	(void)state;
	for (int64_t id = 1; id < 2000; id++) {
		int64_t o = sched_offset(id, 900);
		if (o < 0 || o >= 900)
			fail_msg("offset of connector %lld is %lld", (long long)id, (long long)o);
		assert_int_equal(o, sched_offset(id, 900));
	}
}

/* 1,000 connectors must not pile into a few minutes of a 15-minute
 * interval: every minute gets some, none gets more than three times its
 * share. */
static void test_offsets_spread_over_the_interval(void **state)
{
	(void)state;
	int per_minute[15] = {0};
	for (int64_t id = 1; id <= 1000; id++)
		per_minute[sched_offset(id, 900) / 60]++;
	for (int m = 0; m < 15; m++)
		if (per_minute[m] == 0 || per_minute[m] > 3 * 1000 / 15)
			fail_msg("minute %d of the interval has %d of 1000 connectors", m,
			         per_minute[m]);
}

/* A small deterministic generator, so a failing case can be replayed. */
static uint64_t lcg_state = 88172645463325252ull;
static uint64_t next_random(void)
{
	lcg_state ^= lcg_state << 13;
	lcg_state ^= lcg_state >> 7;
	lcg_state ^= lcg_state << 17;
	return lcg_state;
}

static int64_t floor_mod(int64_t a, int64_t m)
{
	int64_t r = a % m;
	return r < 0 ? r + m : r;
}

static int64_t random_interval(void)
{
	static const int64_t common[] = {60, 61, 90, 120, 300, 599, 600, 601, 900, 3600, 86400};
	uint64_t r = next_random();
	if (r % 2)
		return common[(r >> 8) % (sizeof(common) / sizeof(common[0]))];
	return 60 + (int64_t)((r >> 8) % 200000);
}

/* SPEC §4, "time between successful polls", as a property over many
 * (start, id, interval, rnd): the next poll is at least the interval less
 * the jitter after this one's start, on the connector's grid plus a jitter
 * in [0, jitter_max], and less than two intervals away. */
static void test_success_property(void **state)
{
	(void)state;
	for (int i = 0; i < 200000; i++) {
		int64_t interval = random_interval();
		int64_t started = 1700000000 + (int64_t)(next_random() % 100000000);
		int64_t id = (int64_t)(next_random() % 100000) + 1;
		uint32_t rnd = (uint32_t)next_random();
		int64_t jmax = sched_jitter_max(interval);
		int64_t next = sched_after_success(started, id, interval, 0, rnd);
		int64_t past_slot = floor_mod(next - sched_offset(id, interval), interval);
		if (next - started < interval - jmax || next - started >= 2 * interval ||
		    past_slot > jmax)
			fail_msg(
			    "started %lld, id %lld, interval %lld, rnd %u: next %+lld s, %lld s "
			    "after its slot (jitter_max %lld)",
			    (long long)started, (long long)id, (long long)interval, rnd,
			    (long long)(next - started), (long long)past_slot, (long long)jmax);
	}
}

/* With a slack for the claim's latency: still on the grid plus jitter and
 * under two intervals, and at least the interval less jitter and slack
 * after the start (so at least the interval less the jitter after the
 * moment the poll was due, which is at most slack before its start). */
static void test_success_property_with_slack(void **state)
{
	(void)state;
	for (int i = 0; i < 200000; i++) {
		int64_t interval = random_interval();
		int64_t slack = (int64_t)(next_random() % (uint64_t)(interval / 2 + 1));
		int64_t started = 1700000000 + (int64_t)(next_random() % 100000000);
		int64_t id = (int64_t)(next_random() % 100000) + 1;
		uint32_t rnd = (uint32_t)next_random();
		int64_t jmax = sched_jitter_max(interval);
		int64_t next = sched_after_success(started, id, interval, slack, rnd);
		int64_t past_slot = floor_mod(next - sched_offset(id, interval), interval);
		if (next - started < interval - jmax - slack || next - started >= 2 * interval ||
		    past_slot > jmax)
			fail_msg("started %lld, id %lld, interval %lld, slack %lld, rnd %u: next "
			         "%+lld s, "
			         "%lld s after its slot",
			         (long long)started, (long long)id, (long long)interval,
			         (long long)slack, rnd, (long long)(next - started),
			         (long long)past_slot);
	}
}

/* The case measured with three daemons: a new or changed connector polled
 * at once, seconds before its grid slot, was polled again at that slot
 * (gaps of 7-28 s with a 1-minute interval). */
static void test_unscheduled_poll_just_before_a_slot(void **state)
{
	(void)state;
	const int64_t interval = 60, id = 42, slack = 2;
	int64_t slot =
	    1700000000 - floor_mod(1700000000 - sched_offset(id, interval), interval) + interval;
	for (int64_t before = 1; before < interval; before++)
		for (uint32_t rnd = 0; rnd < 8; rnd++) {
			int64_t next = sched_after_success(slot - before, id, interval, slack, rnd);
			/* Less the slack only when it started within jitter
			 * and slack after the slot before (on time for it). */
			if (next - (slot - before) <
			    interval - sched_jitter_max(interval) -
			        (before >= interval - 3 - slack ? slack : 0))
				fail_msg("a poll %lld s before its slot: next %lld s later",
				         (long long)before, (long long)(next - (slot - before)));
		}
}

/* A connector polled on schedule, each poll starting up to the slack
 * after it was due, keeps one poll per slot: no slot skipped, none polled
 * twice, every gap at least the interval less jitter and slack. */
static void test_scheduled_polls_keep_every_slot(void **state)
{
	(void)state;
	static const int64_t intervals[] = {60, 120, 300, 900, 3600};
	for (size_t k = 0; k < sizeof(intervals) / sizeof(intervals[0]); k++) {
		const int64_t interval = intervals[k], id = 7, slack = 10;
		const int64_t offset = sched_offset(id, interval);
		int64_t due = sched_after_success(1700000000, id, interval, slack, 0);
		int64_t started = due + (int64_t)(next_random() % (slack + 1));
		int64_t slot = (due - offset) / interval;
		for (int n = 0; n < 10000; n++) {
			int64_t next_due = sched_after_success(started, id, interval, slack,
			                                       (uint32_t)next_random());
			int64_t next_started = next_due + (int64_t)(next_random() % (slack + 1));
			int64_t next_slot = (next_due - offset) / interval;
			if (next_slot != slot + 1 ||
			    next_started - started < interval - sched_jitter_max(interval) - slack)
				fail_msg("interval %lld, poll %d: slot %lld after %lld, %lld s "
				         "after the last",
				         (long long)interval, n, (long long)next_slot,
				         (long long)slot, (long long)(next_started - started));
			slot = next_slot;
			started = next_started;
		}
	}
}

static void test_backoff_doubles_from_30s_to_1h(void **state)
{
	(void)state;
	static const struct {
		unsigned failures;
		int64_t base;
	} table[] = {{1, 30},   {2, 60},   {3, 120},   {4, 240},    {5, 480},
	             {7, 1920}, {8, 3600}, {20, 3600}, {1000, 3600}};
	const int64_t now = 1700000000;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		int64_t lo = sched_after_failure(now, table[i].failures, false, -1, 0) - now;
		int64_t hi =
		    sched_after_failure(now, table[i].failures, false, -1, 0xffffffffu) - now;
		int64_t want_lo = table[i].base - table[i].base / 5;
		int64_t want_hi = table[i].base + table[i].base / 5 > 3600
		                      ? 3600
		                      : table[i].base + table[i].base / 5;
		if (lo < want_lo || hi > want_hi || lo > hi)
			fail_msg("failure %u: delay %lld..%lld, want %lld..%lld", table[i].failures,
			         (long long)lo, (long long)hi, (long long)want_lo,
			         (long long)want_hi);
	}
}

static void test_auth_failures_retry_slowly(void **state)
{
	(void)state;
	int64_t d = sched_after_failure(0, 1, true, -1, 0);
	assert_true(d >= 480 && d <= 720);
}

static void test_retry_after_is_honoured_and_clamped(void **state)
{
	(void)state;
	const int64_t now = 1700000000;
	assert_int_equal(sched_after_failure(now, 1, false, 120, 12345), now + 120);
	assert_int_equal(sched_after_failure(now, 9, false, 120, 0), now + 120);
	assert_int_equal(sched_after_failure(now, 1, false, 0, 0), now + 1);
	assert_int_equal(sched_after_failure(now, 1, false, 86400, 0), now + 3600);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_offset_is_fixed_and_within_interval),
	    cmocka_unit_test(test_offsets_spread_over_the_interval),
	    cmocka_unit_test(test_success_property),
	    cmocka_unit_test(test_success_property_with_slack),
	    cmocka_unit_test(test_unscheduled_poll_just_before_a_slot),
	    cmocka_unit_test(test_scheduled_polls_keep_every_slot),
	    cmocka_unit_test(test_backoff_doubles_from_30s_to_1h),
	    cmocka_unit_test(test_auth_failures_retry_slowly),
	    cmocka_unit_test(test_retry_after_is_honoured_and_clamped),
	};
	return cmocka_run_group_tests_name("schedule", tests, NULL, NULL);
}
