/* dbq against a real PostgreSQL (tests/integration/dbq.sh starts one and
 * sets KSI_SALESD_DATABASE_URL): the maintenance lane runs beside the job
 * thread, so a long maintenance statement does not hold up a claim, and a
 * maintenance failure comes back with PostgreSQL's reason. */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lane_must_be_started),
	    cmocka_unit_test(test_long_maintenance_does_not_hold_up_jobs),
	    cmocka_unit_test(test_maintenance_failure_is_reported),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
