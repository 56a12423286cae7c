/* Unit tests for the janitor, with a link-time fake of dbq's maintenance
 * lane: tasks run in order, one at a time, a failure is counted and does
 * not stop the cycle, and a cycle still running is never started twice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <ev.h>

#include "janitor.h"

/* ---- the fake lane ---- */
static int lane_started;
static struct {
	dbq_run_fn run;
	dbq_done_fn done;
	void *arg;
} queued[16];
static size_t nqueued;
static int submit_fails;

int dbq_start_maintenance(struct dbq *q)
{
	(void)q;
	lane_started++;
	return 0;
}

int dbq_submit_maintenance(struct dbq *q, dbq_run_fn run, dbq_done_fn done, void *arg)
{
	(void)q;
	if (submit_fails) {
		submit_fails--;
		return -1;
	}
	assert_true(nqueued < 16);
	queued[nqueued].run = run;
	queued[nqueued].done = done;
	queued[nqueued].arg = arg;
	nqueued++;
	return 0;
}

/* What ran on the "lane": the task's own arg (a name), and what prepare
 * saw before the task was queued. */
static const char *ran;
static int prepared;

static int task_a(struct db *db, void *arg, char *err, size_t errlen)
{
	(void)db, (void)err, (void)errlen;
	ran = arg;
	return 0;
}

static int task_b(struct db *db, void *arg, char *err, size_t errlen)
{
	(void)db, (void)err, (void)errlen;
	ran = arg;
	return 0;
}

static void prepare_count(void *arg)
{
	assert_string_equal(arg, "a");
	prepared++;
}

/* Runs job i as the lane would and names the task that ran. */
static const char *run_job(size_t i)
{
	ran = NULL;
	char err[64];
	assert_int_equal(queued[i].run(NULL, queued[i].arg, err, sizeof(err)), 0);
	return ran;
}

/* Completes the oldest queued job as the lane would, from the loop. */
static void complete(size_t i, int rc, const char *err)
{
	queued[i].done(rc, rc == 0 ? "" : err, queued[i].arg);
}

/* Runs the loop until n jobs are queued or 5 s pass (the timer fires). */
static void run_until_queued(struct ev_loop *loop, size_t n)
{
	ev_tstamp deadline = ev_time() + 5;
	while (nqueued < n && ev_time() < deadline)
		ev_run(loop, EVRUN_ONCE);
	assert_int_equal(nqueued, n);
}

static void reset(void)
{
	nqueued = 0;
	lane_started = 0;
	prepared = 0;
	submit_fails = 0;
	memset(queued, 0, sizeof(queued));
}

static void test_tasks_in_order_one_at_a_time(void **state)
{
	(void)state;
	reset();
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	const struct janitor_task tasks[] = {{"a", task_a, (void *)"a", prepare_count},
	                                     {"b", task_b, (void *)"b", NULL}};
	struct janitor *j;
	assert_int_equal(janitor_new(loop, NULL, tasks, 2, 0.001, 0.01, &j), 0);
	assert_int_equal(lane_started, 1);
	run_until_queued(loop, 1);
	/* a's prepare ran on the loop before it was queued, and a gets its arg. */
	assert_int_equal(prepared, 1);
	assert_string_equal(run_job(0), "a");
	/* b waits for a, however often the timer fires meanwhile. */
	ev_tstamp until = ev_time() + 0.05;
	while (ev_time() < until)
		ev_run(loop, EVRUN_NOWAIT);
	assert_int_equal(nqueued, 1);
	complete(0, -1, "lock_timeout");
	assert_int_equal(nqueued, 2);
	assert_string_equal(run_job(1), "b");
	assert_int_equal(janitor_failures(j), 1);
	assert_int_equal(janitor_cycles(j), 0);
	complete(1, 0, NULL);
	assert_int_equal(janitor_cycles(j), 1);
	/* The next cycle starts with a again. */
	run_until_queued(loop, 3);
	assert_string_equal(run_job(2), "a");
	assert_int_equal(prepared, 2);
	janitor_free(j);
	ev_loop_destroy(loop);
}

static void test_no_tasks_no_lane(void **state)
{
	(void)state;
	reset();
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct janitor *j;
	assert_int_equal(janitor_new(loop, NULL, NULL, 0, 0.001, 0.01, &j), 0);
	assert_int_equal(lane_started, 0);
	/* Nothing keeps the loop alive: it returns at once. */
	ev_run(loop, 0);
	assert_int_equal(nqueued, 0);
	janitor_free(j);
	ev_loop_destroy(loop);
}

static void test_submit_failure_skips_to_next_task(void **state)
{
	(void)state;
	reset();
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	const struct janitor_task tasks[] = {{"a", task_a, (void *)"a", NULL},
	                                     {"b", task_b, (void *)"b", NULL}};
	struct janitor *j;
	assert_int_equal(janitor_new(loop, NULL, tasks, 2, 0.001, 10, &j), 0);
	submit_fails = 1;
	run_until_queued(loop, 1);
	assert_string_equal(run_job(0), "b");
	assert_int_equal(janitor_failures(j), 1);
	janitor_free(j);
	ev_loop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tasks_in_order_one_at_a_time),
	    cmocka_unit_test(test_no_tasks_no_lane),
	    cmocka_unit_test(test_submit_failure_skips_to_next_task),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
