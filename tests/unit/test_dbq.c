/* dbq against a real PostgreSQL (tests/integration/dbq.sh starts one and
 * sets KSI_SALESD_DATABASE_URL): the maintenance lane runs beside the job
 * thread, so a long maintenance statement does not hold up a claim, and a
 * maintenance failure comes back with PostgreSQL's reason; writes that
 * arrive spread out over a few milliseconds still share a batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ev.h>

#include "db.h"
#include "dbq.h"

static bool connected;
static int order;

/* One job: its statement, then how it ended. The same pointer is the run
 * function's and the done callback's argument. */
struct job {
	const char *sql;
	bool done;
	int rc;
	int at; /* completion order, from 1 */
	char err[512];
};

static void on_event(enum dbq_event ev, const char *detail, void *user)
{
	(void)detail, (void)user;
	if (ev == DBQ_CONNECTED)
		connected = true;
}

static int run_sql(struct db *db, void *arg, char *err, size_t errlen)
{
	const struct job *j = arg;
	return db_exec(db, j->sql, err, errlen);
}

static void on_done(int rc, const char *err, void *arg)
{
	struct job *j = arg;
	j->done = true;
	j->rc = rc;
	j->at = ++order;
	snprintf(j->err, sizeof(j->err), "%s", err);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop, (void)w, (void)revents;
}

/* Runs the loop until *flag or 30 s pass: the dbq's ev_async wakes it, and
 * a tick bounds each wait so that the deadline is checked. */
static void run_until(struct ev_loop *loop, const bool *flag)
{
	ev_tstamp deadline = ev_time() + 30;
	ev_timer tick;
	ev_timer_init(&tick, on_tick, 0.1, 0.1);
	ev_timer_start(loop, &tick);
	while (!*flag && ev_time() < deadline)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	assert_true(*flag);
}

static struct dbq *start(struct ev_loop *loop)
{
	struct dbq *q;
	connected = false;
	order = 0;
	assert_int_equal(dbq_new(loop, getenv("KSI_SALESD_DATABASE_URL"), on_event, NULL, &q), 0);
	run_until(loop, &connected);
	return q;
}

static void test_lane_must_be_started(void **state)
{
	(void)state;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct dbq *q = start(loop);
	struct job m = {.sql = "SELECT 1"};
	assert_int_equal(dbq_submit_maintenance(q, run_sql, on_done, &m), -1);
	dbq_free(q);
	ev_loop_destroy(loop);
}

static void test_long_maintenance_does_not_hold_up_jobs(void **state)
{
	(void)state;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct dbq *q = start(loop);
	assert_int_equal(dbq_start_maintenance(q), 0);
	assert_int_equal(dbq_start_maintenance(q), 0); /* idempotent */
	struct job m = {.sql = "SELECT pg_sleep(1.5)"}, j = {.sql = "SELECT 1"};
	assert_int_equal(dbq_submit_maintenance(q, run_sql, on_done, &m), 0);
	assert_int_equal(dbq_submit(q, run_sql, on_done, &j), 0);
	run_until(loop, &m.done);
	assert_true(j.done);
	assert_int_equal(j.rc, 0);
	assert_int_equal(m.rc, 0);
	if (j.at > m.at)
		fail_msg(
		    "the job waited for the maintenance statement (job ended %d, maintenance %d)",
		    j.at, m.at);
	dbq_free(q);
	ev_loop_destroy(loop);
}

static void test_maintenance_failure_is_reported(void **state)
{
	(void)state;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct dbq *q = start(loop);
	assert_int_equal(dbq_start_maintenance(q), 0);
	struct job a = {.sql = "SELECT 1/0"}, b = {.sql = "SELECT 2"};
	assert_int_equal(dbq_submit_maintenance(q, run_sql, on_done, &a), 0);
	assert_int_equal(dbq_submit_maintenance(q, run_sql, on_done, &b), 0);
	run_until(loop, &b.done);
	assert_int_equal(a.rc, -1);
	if (!strstr(a.err, "division by zero"))
		fail_msg("want PostgreSQL's reason, got: %s", a.err);
	/* In order, and the lane goes on after a failure. */
	assert_int_equal(a.at, 1);
	assert_int_equal(b.at, 2);
	assert_int_equal(b.rc, 0);
	dbq_free(q);
	ev_loop_destroy(loop);
}

/* Writes (empty ones: a transaction with nothing in it) submitted from the
 * loop, one every interval seconds, or all at once when interval is 0. */
#define NWRITES 64
struct spread {
	struct dbq *q;
	struct db_write w[NWRITES];
	size_t n, submitted, finished;
	bool all_done;
};

static void on_write_done(int rc, const char *err, void *arg)
{
	struct spread *sp = arg;
	assert_int_equal(rc, 0);
	(void)err;
	if (++sp->finished == sp->n)
		sp->all_done = true;
}

static void submit_next(struct spread *sp)
{
	size_t i = sp->submitted++;
	assert_int_equal(dbq_submit_write(sp->q, &sp->w[i], (int64_t)i + 1, 1, on_write_done, sp),
	                 0);
}

static void on_spread_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct spread *sp = w->data;
	(void)revents;
	submit_next(sp);
	if (sp->submitted == sp->n)
		ev_timer_stop(loop, w);
}

/* Batches run for n writes submitted interval seconds apart. */
static size_t batches_for(size_t n, double interval)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct spread sp = {.q = start(loop), .n = n};
	size_t before = dbq_write_batches(sp.q);
	ev_timer t;
	if (interval > 0) {
		ev_timer_init(&t, on_spread_tick, interval, interval);
		t.data = &sp;
		ev_timer_start(loop, &t);
	} else {
		while (sp.submitted < n)
			submit_next(&sp);
	}
	run_until(loop, &sp.all_done);
	size_t batches = dbq_write_batches(sp.q) - before;
	dbq_free(sp.q);
	ev_loop_destroy(loop);
	return batches;
}

/* Sixteen writes a quarter of a millisecond apart, an idle database:
 * without gathering most go alone (measured: 8 and 11 batches). Up to three
 * allows for a loaded machine's late timers. */
static void test_spread_writes_share_a_batch(void **state)
{
	(void)state;
	size_t b = batches_for(16, 0.00025);
	if (b > 3)
		fail_msg("16 writes 0.25 ms apart ran as %zu batches", b);
}

/* DBQ_GATHER_WRITES at once go together, without waiting out the delay. */
static void test_many_writes_at_once_are_one_batch(void **state)
{
	(void)state;
	size_t b = batches_for(DBQ_GATHER_WRITES, 0);
	if (b > 2)
		fail_msg("%d writes at once ran as %zu batches", DBQ_GATHER_WRITES, b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_spread_writes_share_a_batch),
	    cmocka_unit_test(test_many_writes_at_once_are_one_batch),
	    cmocka_unit_test(test_lane_must_be_started),
	    cmocka_unit_test(test_long_maintenance_does_not_hold_up_jobs),
	    cmocka_unit_test(test_maintenance_failure_is_reported),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
