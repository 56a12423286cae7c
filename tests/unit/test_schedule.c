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
			fail_msg("minute %d of the interval has %d of 1000 connectors", m, per_minute[m]);
}

static void test_success_lands_on_the_grid_after_now(void **state)
{
	(void)state;
	const int64_t now = 1700000123, interval = 900;
	for (int64_t id = 1; id < 50; id++) {
		int64_t next = sched_after_success(now, id, interval, 0);
		assert_true(next > now);
		assert_true(next <= now + interval);
		assert_int_equal((next - sched_offset(id, interval)) % interval, 0);
		/* Jitter adds at most 5% (capped at 30 s). */
		int64_t jittered = sched_after_success(now, id, interval, 0xffffffffu);
		assert_true(jittered >= next && jittered <= next + 30);
	}
	/* The next poll after the next one is one interval later. */
	int64_t a = sched_after_success(now, 7, interval, 0);
	assert_int_equal(sched_after_success(a, 7, interval, 0), a + interval);
}

static void test_backoff_doubles_from_30s_to_1h(void **state)
{
	(void)state;
	static const struct {
		unsigned failures;
		int64_t base;
	} table[] = {{1, 30}, {2, 60}, {3, 120}, {4, 240}, {5, 480}, {7, 1920}, {8, 3600}, {20, 3600}, {1000, 3600}};
	const int64_t now = 1700000000;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		int64_t lo = sched_after_failure(now, table[i].failures, false, -1, 0) - now;
		int64_t hi = sched_after_failure(now, table[i].failures, false, -1, 0xffffffffu) - now;
		int64_t want_lo = table[i].base - table[i].base / 5;
		int64_t want_hi = table[i].base + table[i].base / 5 > 3600 ? 3600 : table[i].base + table[i].base / 5;
		if (lo < want_lo || hi > want_hi || lo > hi)
			fail_msg("failure %u: delay %lld..%lld, want %lld..%lld", table[i].failures, (long long)lo,
				 (long long)hi, (long long)want_lo, (long long)want_hi);
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
		cmocka_unit_test(test_success_lands_on_the_grid_after_now),
		cmocka_unit_test(test_backoff_doubles_from_30s_to_1h),
		cmocka_unit_test(test_auth_failures_retry_slowly),
		cmocka_unit_test(test_retry_after_is_honoured_and_clamped),
	};
	return cmocka_run_group_tests_name("schedule", tests, NULL, NULL);
}
