/* test_db_oom: the writer when memory runs out (issue 5), against a real
 * PostgreSQL. db_write_run — one request's sales rows, fetch_runs row,
 * rejected_records and synced_until advance in one statement — is made to
 * fail its Nth allocation for N = 1, 2, … until a write needs no more. Each
 * write must return -1 with "out of memory …" and leave the database exactly
 * as it was (no sales, no run, no refusal, synced_until and the lease
 * untouched, the connection idle, not inside a transaction), or succeed
 * with the complete result; it must never crash, and must leave nothing
 * allocated (LeakSanitizer, checked after every N and again at exit). The
 * write that no failure reached must produce exactly the expected rows.
 * db_connect, db_load_connector_by_name and db_claim get the same treatment.
 * db_write_batch is judged write by write: each of a batch's writes either
 * commits whole or leaves its connector untouched, and says which.
 *
 * Only allocations made by our own objects (db.o, sbuf.o, …) go through the
 * wrappers (-Wl,--wrap=malloc,calloc,realloc,strdup applies to references
 * resolved at static link time): libpq's, cJSON's and libc's internal ones
 * live in shared libraries and are not intercepted. A libpq allocation
 * failure surfaces as a failed PQexec*, which the suites for database
 * errors cover.
 *
 * Needs a database: KSI_TEST_DATABASE_URL holds its conninfo, migrated,
 * with the connectors and stores tests/integration/db_oom.sh inserts (that
 * script runs this binary). Without it the binary says it skipped and exits
 * 77; `make unit` does not run it. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
/* The test reads the tables through its own connection: db.h has no
 * general query, and the check must not go through the code under test. */
#include <libpq-fe.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "connector.h"
#include "db.h"
#include "validate.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

static bool armed;              /* count (and fail) only inside the call under test */
static long fail_at;            /* fail the allocation with this number */
static long count;              /* allocations made since arm() */
static const char *failed_kind; /* which function the failed one was */

static bool should_fail(const char *kind)
{
	if (!armed || ++count != fail_at)
		return false;
	failed_kind = kind;
	errno = ENOMEM;
	return true;
}

void *__wrap_malloc(size_t n)
{
	return should_fail("malloc") ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
	return should_fail("calloc") ? NULL : __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
	return should_fail("realloc") ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	return should_fail("strdup") ? NULL : __real_strdup(s);
}

static void arm(long n)
{
	count = 0;
	fail_at = n;
	failed_kind = "none";
	armed = true;
}

/* Returns how many allocations the call made (the failed one included). */
static long disarm(void)
{
	armed = false;
	fail_at = 0;
	return count;
}

#define URL_VAR "KSI_TEST_DATABASE_URL"
#define CONNECTOR_NAME "oom" /* inserted by db_oom.sh, with the stores below */
#define OWNER "test_db_oom:1:oom"
#define MAX_N 100000 /* more allocations than this: something loops */

/* The stores' codes as db_oom.sh links them, in strcmp order. The third
 * needs quoting in an array literal. */
static const char *const codes[] = {"0001", "0002", "quo\"te\\back"};
enum { NCODES = 3 };

static PGconn *chk; /* the test's own connection, for looking */
static struct db *db;
static int64_t connector_id;

/* ---- looking at the database ---- */

static PGresult *query(const char *sql, int nparams, const char *const *params, int rows)
{
	PGresult *res = PQexecParams(chk, sql, nparams, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
		print_error("query failed: %s\n%s\n", PQresultErrorMessage(res), sql);
		PQclear(res);
		fail();
	}
	if (rows >= 0 && PQntuples(res) != rows) {
		print_error("query returned %d rows, expected %d:\n%s\n", PQntuples(res), rows,
		            sql);
		PQclear(res);
		fail();
	}
	return res;
}

/* The one value of a one-row query ("(null)" for NULL). */
static void query1(char *out, size_t outlen, const char *sql, int nparams,
                   const char *const *params)
{
	PGresult *res = query(sql, nparams, params, 1);
	snprintf(out, outlen, "%s", PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
	PQclear(res);
}

/* Several statements, no parameters. */
static void exec_chk(const char *sql)
{
	PGresult *res = PQexec(chk, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		print_error("statement failed: %s\n%s\n", PQresultErrorMessage(res), sql);
		PQclear(res);
		fail();
	}
	PQclear(res);
}

/* Everything a write could touch, as one comparable line: every row of
 * the three tables (hashed) and every connector's state row as text
 * (synced_until, lease owner, expiry and epoch). */
static void snapshot(char *out, size_t outlen)
{
	query1(out, outlen,
	       "SELECT 'sales ' || (SELECT count(*) || ' ' ||"
	       "  md5(coalesce(string_agg(h::text, ';' ORDER BY h.store_id, h.hour), ''))"
	       "  FROM ksi_sales.sales_hourly h)"
	       " || ' | runs ' || (SELECT count(*) || ' ' ||"
	       "  md5(coalesce(string_agg(r::text, ';' ORDER BY r.id), '')) FROM "
	       "ksi_sales.fetch_runs r)"
	       " || ' | rejected ' || (SELECT count(*) || ' ' ||"
	       "  md5(coalesce(string_agg(x::text, ';' ORDER BY x.id), '')) FROM "
	       "ksi_sales.rejected_records x)"
	       " || ' | state ' || (SELECT coalesce(string_agg(s::text, ';' ORDER BY "
	       "s.connector_id), '')"
	       "  FROM ksi_sales.connector_state s)",
	       0, NULL);
}

/* The connection under test is idle: not left inside a transaction (a
 * forgotten BEGIN would hide every later write from other sessions and
 * hold its locks). Sessions of closed connections may linger as idle. */
/* n: the allocation that failed; 0: none did. */
static const char *failing(long n)
{
	static char buf[64];
	if (n == 0)
		return "with no allocation failing";
	snprintf(buf, sizeof(buf), "allocation %ld failing", n);
	return buf;
}

static void check_idle(const char *what, long n)
{
	char v[256];
	query1(v, sizeof(v),
	       "SELECT CASE WHEN count(*) = 0 THEN 'no session of ksi-salesd'"
	       " ELSE coalesce(string_agg(state, ', ') FILTER (WHERE state <> 'idle'), 'idle') END"
	       " FROM pg_stat_activity WHERE application_name = 'ksi-salesd'",
	       0, NULL);
	if (strcmp(v, "idle") != 0)
		fail_msg("%s, %s: the connection under test is not idle: %s", what, failing(n), v);
}

static void check_no_leak(const char *what, long n)
{
#if defined(__SANITIZE_ADDRESS__)
	if (__lsan_do_recoverable_leak_check() != 0)
		fail_msg("%s, %s: memory leaked (report above)", what, failing(n));
#else
	(void)what;
	(void)n;
#endif
}

/* ---- the driver ---- */

struct scenario {
	const char *name;
	void (*reset)(void);                   /* to the state the call starts from */
	int (*call)(char *err, size_t errlen); /* the call under test */
	void (*after_failure)(void);           /* checks and frees what a -1 leaves */
	void (*verify)(void);                  /* a 0: the complete result; frees it */
};

/* Runs s->call with its Nth allocation failing, N = 1, 2, … until a call
 * makes fewer than N: that one ran with no failure and must succeed.
 * Returns how many allocations it makes. */
static long every_allocation_fails_in_turn(const struct scenario *s)
{
	char before[2048], after[2048], err[1024];
	s->reset();
	snapshot(before, sizeof(before));
	for (long n = 1; n <= MAX_N; n++) {
		err[0] = '\0';
		arm(n);
		int rc = s->call(err, sizeof(err));
		long made = disarm();
		if (made < n) {
			if (rc != 0)
				fail_msg("%s: with no allocation failing it failed (%d): %s",
				         s->name, rc, err);
			s->verify();
			check_idle(s->name, 0);
			check_no_leak(s->name, 0);
			print_message("%s: %ld allocations, each failed once\n", s->name, made);
			return made;
		}
		if (rc == 0) {
			/* The failed allocation was tolerated: the result must be
			 * whole all the same. */
			print_message(
			    "%s: allocation %ld (%s) failing was tolerated; checking the result\n",
			    s->name, n, failed_kind);
			s->verify();
			s->reset();
			snapshot(before, sizeof(before));
		} else if (rc == -1) {
			if (!strstr(err, "out of memory"))
				fail_msg("%s, allocation %ld (%s) failing: the error does not say "
				         "\"out of memory\": \"%s\"",
				         s->name, n, failed_kind, err);
			s->after_failure();
			snapshot(after, sizeof(after));
			if (strcmp(before, after) != 0)
				fail_msg("%s, allocation %ld (%s) failing changed the database:\n"
				         "    before: %s\n    after:  %s",
				         s->name, n, failed_kind, before, after);
		} else {
			fail_msg("%s, allocation %ld failing: returned %d", s->name, n, rc);
		}
		check_idle(s->name, n);
		check_no_leak(s->name, n);
	}
	fail_msg("%s: still allocating after %d failures", s->name, MAX_N);
	return 0;
}

static void nothing(void)
{
}

/* ---- db_connect ---- */

static struct db *connected;

static int call_connect(char *err, size_t errlen)
{
	return db_connect(getenv(URL_VAR), &connected, err, errlen);
}

static void connect_failed(void)
{
	assert_null(connected);
}

static void connect_verify(void)
{
	assert_non_null(connected);
	assert_true(db_ok(connected));
	db_close(connected);
	connected = NULL;
}

static void test_connect(void **state)
{
	(void)state;
	static const struct scenario s = {"db_connect", nothing, call_connect, connect_failed,
	                                  connect_verify};
	assert_true(every_allocation_fails_in_turn(&s) >= 1);
}

/* ---- db_load_connector_by_name: loading copies every string ---- */

static struct connector loaded;

static int call_load(char *err, size_t errlen)
{
	return db_load_connector_by_name(db, CONNECTOR_NAME, &loaded, err, errlen);
}

static void load_failed(void)
{
	/* Nothing half-loaded is handed out. */
	assert_null(loaded.name);
	assert_null(loaded.codes);
	assert_int_equal(loaded.ncodes, 0);
}

static void load_verify(void)
{
	assert_int_equal(loaded.id, connector_id);
	assert_string_equal(loaded.name, CONNECTOR_NAME);
	assert_string_equal(loaded.endpoint_url, "http://127.0.0.1:9/sales");
	assert_non_null(loaded.bearer_token);
	assert_string_equal(loaded.timezone, "Europe/Madrid");
	assert_int_equal(loaded.ncodes, NCODES);
	for (size_t i = 0; i < NCODES; i++)
		assert_string_equal(loaded.codes[i], codes[i]);
	connector_free(&loaded);
}

static void test_load_connector(void **state)
{
	(void)state;
	static const struct scenario s = {"db_load_connector_by_name", nothing, call_load,
	                                  load_failed, load_verify};
	assert_true(every_allocation_fails_in_turn(&s) >= 1 + 4 + 1 + NCODES);
}

/* ---- db_claim: the lease and the load commit together or not at all ---- */

static struct connector *claimed;
static size_t nclaimed;
static char claim_epoch_before[32];

static void claim_reset(void)
{
	char sid[32];
	snprintf(sid, sizeof(sid), "%" PRId64, connector_id);
	const char *p[] = {sid};
	PQclear(
	    query("UPDATE ksi_sales.connector_state SET lease_owner = NULL, lease_expires = NULL"
	          " WHERE connector_id = $1::bigint",
	          1, p, -1));
	query1(claim_epoch_before, sizeof(claim_epoch_before),
	       "SELECT lease_epoch FROM ksi_sales.connector_state WHERE connector_id = $1::bigint",
	       1, p);
}

static int call_claim(char *err, size_t errlen)
{
	return db_claim(db, OWNER, 600, 10, true, 0, &claimed, &nclaimed, err, errlen);
}

static void claim_failed(void)
{
	assert_null(claimed);
	assert_int_equal(nclaimed, 0);
}

static void claim_verify(void)
{
	assert_int_equal(nclaimed, 1);
	assert_int_equal(claimed[0].id, connector_id);
	assert_int_equal(claimed[0].lease_epoch, strtoll(claim_epoch_before, NULL, 10) + 1);
	assert_int_equal(claimed[0].ncodes, NCODES);
	for (size_t i = 0; i < NCODES; i++)
		assert_string_equal(claimed[0].codes[i], codes[i]);
	char v[128], sid[32];
	snprintf(sid, sizeof(sid), "%" PRId64, connector_id);
	const char *p[] = {sid};
	query1(v, sizeof(v),
	       "SELECT lease_owner || ' ' || lease_epoch || ' ' || (lease_expires > now())"
	       " FROM ksi_sales.connector_state WHERE connector_id = $1::bigint",
	       1, p);
	char want[128];
	snprintf(want, sizeof(want), "%s %lld true", OWNER,
	         strtoll(claim_epoch_before, NULL, 10) + 1);
	assert_string_equal(v, want);
	connectors_free(claimed, nclaimed);
	claimed = NULL;
	nclaimed = 0;
	claim_reset();
}

static void test_claim(void **state)
{
	(void)state;
	static const struct scenario s = {"db_claim", claim_reset, call_claim, claim_failed,
	                                  claim_verify};
	assert_true(every_allocation_fails_in_turn(&s) >= 1 + 1 + 4 + 1 + NCODES);
}

/* ---- db_write_run ---- */

#define H0 INT64_C(1675814400) /* 2023-02-08T00:00:00Z */
#define HOUR 3600
#define STARTED 1675836000.25
#define FINISHED 1675836001.5

/* Sorted by (code, hour), as the validator hands them over. */
static struct val_record records[] = {
    {0, H0, 25},        {0, H0 + HOUR, 0},     {0, H0 + 5 * HOUR, 2147483647},
    {1, H0, 7},         {1, H0 + 2 * HOUR, 1}, {1, H0 + 3 * HOUR, 1000000},
    {2, H0 + HOUR, 12}, {2, H0 + 4 * HOUR, 3},
};
enum { NRECORDS = sizeof(records) / sizeof(records[0]) };

static char detail0[] = "time \"2023-02-08T00:30:00Z\" is not on the hour: the integration guide "
                        "wants every time at hh:00:00 with an offset";
static char json0[] =
    "{\"time\":\"2023-02-08T00:30:00Z\",\"ext_ref_code\":\"0001\",\"num_tickets\":1}";
static char detail1[] = "ext_ref_code \"00\\09\" (caf\xc3\xa9,\ttab,\nnewline) was not requested: "
                        "only the codes asked for may come back";
static char json1[] =
    "{\"time\":\"2023-02-08T01:00:00Z\",\"ext_ref_code\":\"00\\\\09\",\"num_tickets\":4}";
static char detail3[] = "ext_ref_code is longer than 200 bytes";
static char json3[1600]; /* filled in by setup: a long record, several doublings */

static struct val_refusal refusals[] = {
    {VAL_TIME_NOT_ON_HOUR, 2, detail0, json0},
    {VAL_UNKNOWN_CODE, 5, detail1, json1},
    {VAL_NOT_OBJECT, 7, NULL, NULL}, /* stored as "" */
    {VAL_STRING_TOO_LONG, 10, detail3, json3},
};
enum { NREFUSALS = sizeof(refusals) / sizeof(refusals[0]) };
static const char *const reason_names[NREFUSALS] = {"time_not_on_hour", "unknown_ext_ref_code",
                                                    "not_an_object", "string_too_long"};

static struct val_result result = {
    .received = NRECORDS + NREFUSALS,
    .records = records,
    .nrecords = NRECORDS,
    .refusals = refusals,
    .nrefusals = NREFUSALS,
};

static struct db_run run;
static int64_t lease_epoch;
static long upserted;

static void write_reset(void)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
	         "DELETE FROM ksi_sales.rejected_records; DELETE FROM ksi_sales.fetch_runs;"
	         " DELETE FROM ksi_sales.sales_hourly;"
	         " UPDATE ksi_sales.connector_state SET synced_until = to_timestamp(%" PRId64 ")"
	         " WHERE connector_id = %" PRId64,
	         H0, connector_id);
	exec_chk(sql);
}

static int call_write(char *err, size_t errlen)
{
	upserted = -1;
	return db_write_run(db, &run, &upserted, err, errlen);
}

static void write_failed(void)
{
	assert_int_equal(upserted, 0);
}

/* The one fetch_runs row, as "connector from to codes started finished
 * status outcome received upserted rejected bytes error". */
static void check_run_row(const char *want)
{
	char v[512], started[32], finished[32];
	snprintf(started, sizeof(started), "%.6f", STARTED);
	snprintf(finished, sizeof(finished), "%.6f", FINISHED);
	const char *p[] = {started, finished};
	query1(v, sizeof(v),
	       "SELECT concat_ws(' ', connector_id, coalesce(extract(epoch FROM "
	       "window_from)::bigint::text, '-'),"
	       " coalesce(extract(epoch FROM window_to)::bigint::text, '-'), codes_requested,"
	       " started_at = to_timestamp($1::float8), finished_at = to_timestamp($2::float8),"
	       " coalesce(http_status::text, '-'), outcome, records_received, records_upserted,"
	       " records_rejected, bytes, coalesce(error, '-'))"
	       " FROM ksi_sales.fetch_runs",
	       2, p);
	assert_string_equal(v, want);
}

static void check_synced_until(int64_t want)
{
	char v[64], sid[32], w[64];
	snprintf(sid, sizeof(sid), "%" PRId64, connector_id);
	snprintf(w, sizeof(w), "%" PRId64 " %s %" PRId64, want, OWNER, lease_epoch);
	const char *p[] = {sid};
	query1(v, sizeof(v),
	       "SELECT extract(epoch FROM synced_until)::bigint || ' ' || lease_owner || ' ' || "
	       "lease_epoch"
	       " FROM ksi_sales.connector_state WHERE connector_id = $1::bigint",
	       1, p);
	assert_string_equal(v, w); /* advanced (or not), the lease untouched */
}

static void write_records_verify(void)
{
	assert_int_equal(upserted, NRECORDS);

	/* The sales rows: exactly the records, under the right stores. */
	char finished[32];
	snprintf(finished, sizeof(finished), "%.6f", FINISHED);
	const char *p[] = {finished};
	PGresult *res =
	    query("SELECT s.ext_ref_code, extract(epoch FROM h.hour)::bigint, h.num_tickets,"
	          " h.ext_ref_code = s.ext_ref_code AND h.connector_id = s.connector_id"
	          "  AND h.fetched_at = to_timestamp($1::float8) AND h.first_seen = h.fetched_at"
	          "  AND h.last_changed = h.fetched_at AND h.revisions = 0"
	          " FROM ksi_sales.sales_hourly h JOIN ksi_sales.stores s ON s.id = h.store_id"
	          " ORDER BY s.ext_ref_code COLLATE \"C\", h.hour",
	          1, p, NRECORDS);
	for (int i = 0; i < NRECORDS; i++) {
		assert_string_equal(PQgetvalue(res, i, 0), codes[records[i].code]);
		assert_int_equal(strtoll(PQgetvalue(res, i, 1), NULL, 10), records[i].hour);
		assert_int_equal(strtoll(PQgetvalue(res, i, 2), NULL, 10), records[i].num_tickets);
		assert_string_equal(PQgetvalue(res, i, 3), "t");
	}
	PQclear(res);

	char want[512];
	snprintf(want, sizeof(want),
	         "%" PRId64 " %" PRId64 " %" PRId64 " 3 t t 200 ok %d %d %d 4321 -", connector_id,
	         H0, H0 + 6 * HOUR, NRECORDS + NREFUSALS, NRECORDS, NREFUSALS);
	check_run_row(want);

	/* The refusals, byte for byte, tied to that run. */
	res = query(
	    "SELECT x.run_id = r.id AND x.connector_id = r.connector_id, x.position, x.reason,"
	    " x.detail, x.record"
	    " FROM ksi_sales.rejected_records x JOIN ksi_sales.fetch_runs r ON true ORDER BY x.id",
	    0, NULL, NREFUSALS);
	for (int i = 0; i < NREFUSALS; i++) {
		assert_string_equal(PQgetvalue(res, i, 0), "t");
		assert_int_equal(strtoll(PQgetvalue(res, i, 1), NULL, 10), refusals[i].index);
		assert_string_equal(PQgetvalue(res, i, 2), reason_names[i]);
		assert_string_equal(PQgetvalue(res, i, 3),
		                    refusals[i].detail ? refusals[i].detail : "");
		assert_string_equal(PQgetvalue(res, i, 4),
		                    refusals[i].json ? refusals[i].json : "");
	}
	PQclear(res);

	check_synced_until(H0 + 6 * HOUR);
}

static void write_error_verify(void)
{
	assert_int_equal(upserted, 0);
	char want[512];
	snprintf(want, sizeof(want),
	         "%" PRId64 " %" PRId64 " %" PRId64 " 3 t t 503 http_error 0 0 0 120 %s",
	         connector_id, H0, H0 + 6 * HOUR, run.error);
	check_run_row(want);
	char v[64];
	query1(v, sizeof(v),
	       "SELECT (SELECT count(*) FROM ksi_sales.sales_hourly) || ' ' ||"
	       " (SELECT count(*) FROM ksi_sales.rejected_records)",
	       0, NULL);
	assert_string_equal(v, "0 0");
	check_synced_until(H0); /* a failed request advances nothing */
}

static void claim_lease(void)
{
	char holder[256], err[1024];
	claim_reset();
	if (db_claim_connector(db, OWNER, 600, connector_id, &lease_epoch, holder, sizeof(holder),
	                       err, sizeof(err)) != 0)
		fail_msg("could not take the lease: %s %s", err, holder);
}

static void release_lease(void)
{
	char err[1024];
	if (db_release_lease(db, OWNER, connector_id, lease_epoch, err, sizeof(err)) != 0)
		fail_msg("could not release the lease: %s", err);
}

static void base_run(void)
{
	memset(&run, 0, sizeof(run));
	run.connector_id = connector_id;
	run.has_window = true;
	run.window_from = H0;
	run.window_to = H0 + 6 * HOUR;
	run.codes_requested = NCODES;
	run.started_at = STARTED;
	run.finished_at = FINISHED;
	run.codes = codes;
	/* Under a lease, fenced, as the daemon writes. */
	run.lease_owner = OWNER;
	run.lease_epoch = lease_epoch;
}

static void test_write_run_records(void **state)
{
	(void)state;
	claim_lease();
	base_run();
	run.http_status = 200;
	run.outcome = RUN_OK;
	run.bytes = 4321;
	run.result = &result;
	run.advance = true;
	run.advance_to = H0 + 6 * HOUR;
	static const struct scenario s = {"db_write_run (records and refusals)", write_reset,
	                                  call_write, write_failed, write_records_verify};
	/* Every array parameter (codes, hours, tickets; positions, reasons,
	 * details, records) allocates at least once, and the longer ones grow. */
	assert_true(every_allocation_fails_in_turn(&s) > 7);
	release_lease();
}

static void test_write_run_error(void **state)
{
	(void)state;
	claim_lease();
	base_run();
	run.http_status = 503;
	run.outcome = RUN_HTTP_ERROR;
	run.bytes = 120;
	run.error = "HTTP 503 from the API: \"busy\"";
	static const struct scenario s = {"db_write_run (a failed request)", write_reset,
	                                  call_write, write_failed, write_error_verify};
	/* Even with no records its array parameters are built on the heap. */
	assert_true(every_allocation_fails_in_turn(&s) > 0);
	release_lease();
}

/* ---- db_write_batch: each write of a batch commits whole or leaves nothing ----
 *
 * A batch is tried as one transaction; when that fails (here: an allocation,
 * or a run whose lease is stale) it is rolled back and every write is done
 * again on its own. With the Nth allocation failing, wherever it falls,
 * each write must either have committed completely (its sales rows, run row,
 * refusals and synced_until under its lease; or, for the end of a poll, the
 * lease released and next_poll and failures set), with rc 0 and no error, or
 * have left its connector exactly as it was, with rc -1 and "out of memory"
 * (or, for the stale run, "lease on connector … lost") in its err. Nothing
 * else in the database may change, and the connection ends idle with
 * nothing leaked. */

/* The connectors db_oom.sh inserts for the batches, disabled so that
 * db_claim and db_load_connector_by_name above still find "oom" alone (the
 * writer does not look at enabled). Every one has a store "0001": a record
 * matched to a store by its code alone would land in another connector's. */
enum { BA, BB, BC, BD, NBCONN };
static struct {
	const char *name;
	int64_t id;    /* looked up by setup */
	int64_t epoch; /* its lease's, as batch_reset sets it */
} bconn[NBCONN] = {{"oom_a", 0, 101}, {"oom_b", 0, 202}, {"oom_c", 0, 303}, {"oom_d", 0, 404}};

#define LEASE_UNTIL INT64_C(4102444800) /* 2100-01-01: held throughout the test */
#define NEXT_POLL0 (H0 - HOUR)          /* every batch connector's next_poll … */
#define FAILURES0 3                     /* … and failures before a batch */
#define NEXT_POLL_DONE (H0 + 86400)     /* what the end of a poll sets */
#define FAILURES_DONE 5u

/* One request's result as a batch writes it: under its connector's lease,
 * status 200, synced_until advancing to the end of its window. */
struct bresult {
	int conn; /* in bconn */
	const char *const *codes;
	size_t ncodes;
	const char *const *reasons; /* the refusals' reason names */
	struct val_result *result;
	int64_t from, to;
	double started, finished;
	size_t bytes;
};

/* oom_a: the records and refusals of db_write_run above (its stores have
 * the same codes as oom's). */
static const struct bresult result_a = {.conn = BA,
                                        .codes = codes,
                                        .ncodes = NCODES,
                                        .reasons = reason_names,
                                        .result = &result,
                                        .from = H0,
                                        .to = H0 + 6 * HOUR,
                                        .started = STARTED,
                                        .finished = FINISHED,
                                        .bytes = 4321};

/* oom_b: a code with a comma and braces (quoted in an array literal). Every
 * window starts at synced_until (H0): one starting later would leave it alone
 * (a hole is never skipped). */
static const char *const codes_b[] = {"0001", "b,2 {x}"};
static struct val_record records_b[] = {
    {0, H0 + 2 * HOUR, 5},
    {0, H0 + 7 * HOUR, 0},
    {1, H0 + 2 * HOUR, 99},
};
static char detail_b[] = "num_tickets -1 is negative: the guide wants a count of tickets";
static char json_b[] =
    "{\"time\":\"2023-02-08T04:00:00Z\",\"ext_ref_code\":\"b,2 {x}\",\"num_tickets\":-1}";
static struct val_refusal refusals_b[] = {
    {VAL_TICKETS_NEGATIVE, 1, detail_b, json_b},
    {VAL_NOT_OBJECT, 3, NULL, NULL},
};
static const char *const reasons_b[] = {"num_tickets_negative", "not_an_object"};
static struct val_result result_b_val = {
    .received = 5, .records = records_b, .nrecords = 3, .refusals = refusals_b, .nrefusals = 2};
static const struct bresult result_b = {.conn = BB,
                                        .codes = codes_b,
                                        .ncodes = 2,
                                        .reasons = reasons_b,
                                        .result = &result_b_val,
                                        .from = H0,
                                        .to = H0 + 8 * HOUR,
                                        .started = STARTED + 60,
                                        .finished = FINISHED + 60,
                                        .bytes = 987};

/* oom_d: records and no refusal, next to runs with refusals. */
static const char *const codes_d[] = {"0001", "d\"4"};
static struct val_record records_d[] = {
    {0, H0, 1},
    {1, H0 + HOUR, 2},
};
static struct val_result result_d_val = {.received = 2, .records = records_d, .nrecords = 2};
static const struct bresult result_d = {.conn = BD,
                                        .codes = codes_d,
                                        .ncodes = 2,
                                        .reasons = NULL,
                                        .result = &result_d_val,
                                        .from = H0,
                                        .to = H0 + 3 * HOUR,
                                        .started = STARTED + 120,
                                        .finished = FINISHED + 120,
                                        .bytes = 55};

/* One write of a batch: a result, or (result NULL) the end of conn's poll.
 * stale: made under the epoch before the lease's current one (a daemon that
 * lost the lease and does not know it yet): it must fail, alone. */
struct bwrite {
	int conn;
	const struct bresult *result;
	bool stale;
	bool with_end; /* the result carries its poll's end (one transaction) */
};
enum { MAXBATCH = 4 };

static char bctx[512]; /* which scenario, allocation and write is being checked */

static void expect_str(const char *what, const char *got, const char *want)
{
	if (strcmp(got, want) != 0)
		fail_msg("%s: %s:\n    got:  \"%s\"\n    want: \"%s\"", bctx, what, got, want);
}

static void batch_reset(void)
{
	exec_chk("DELETE FROM ksi_sales.rejected_records; DELETE FROM ksi_sales.fetch_runs;"
	         " DELETE FROM ksi_sales.sales_hourly");
	for (int c = 0; c < NBCONN; c++) {
		char id[32], ep[32], su[32], lu[32], np[32], fl[16];
		snprintf(id, sizeof(id), "%" PRId64, bconn[c].id);
		snprintf(ep, sizeof(ep), "%" PRId64, bconn[c].epoch);
		snprintf(su, sizeof(su), "%" PRId64, H0);
		snprintf(lu, sizeof(lu), "%" PRId64, LEASE_UNTIL);
		snprintf(np, sizeof(np), "%" PRId64, NEXT_POLL0);
		snprintf(fl, sizeof(fl), "%d", FAILURES0);
		const char *p[] = {id, OWNER, ep, su, lu, np, fl};
		PGresult *res = query(
		    "UPDATE ksi_sales.connector_state SET synced_until = to_timestamp($4::bigint),"
		    " lease_owner = $2, lease_epoch = $3::bigint,"
		    " lease_expires = to_timestamp($5::bigint),"
		    " next_poll = to_timestamp($6::bigint), failures = $7::integer"
		    " WHERE connector_id = $1::bigint",
		    7, p, -1);
		bool one = strcmp(PQcmdTuples(res), "1") == 0;
		PQclear(res);
		if (!one)
			fail_msg("no connector_state row for %s", bconn[c].name);
	}
}

/* Everything a write could touch of the connectors in ids (a bigint[]
 * literal), or with in false of every other connector, as one line. */
static void snapshot_of(char *out, size_t outlen, const char *ids, bool in)
{
	const char *p[] = {ids, in ? "true" : "false"};
	query1(out, outlen,
	       "SELECT 'sales ' || (SELECT count(*) || ' ' ||"
	       "  md5(coalesce(string_agg(h::text, ';' ORDER BY h.store_id, h.hour), ''))"
	       "  FROM ksi_sales.sales_hourly h WHERE (h.connector_id = ANY ($1::bigint[])) = "
	       "$2::boolean)"
	       " || ' | runs ' || (SELECT count(*) || ' ' ||"
	       "  md5(coalesce(string_agg(r::text, ';' ORDER BY r.id), '')) FROM "
	       "ksi_sales.fetch_runs r"
	       "  WHERE (r.connector_id = ANY ($1::bigint[])) = $2::boolean)"
	       " || ' | rejected ' || (SELECT count(*) || ' ' ||"
	       "  md5(coalesce(string_agg(x::text, ';' ORDER BY x.id), '')) FROM "
	       "ksi_sales.rejected_records x"
	       "  WHERE (x.connector_id = ANY ($1::bigint[])) = $2::boolean)"
	       " || ' | state ' || (SELECT coalesce(string_agg(s::text, ';' ORDER BY "
	       "s.connector_id), '')"
	       "  FROM ksi_sales.connector_state s WHERE (s.connector_id = ANY ($1::bigint[])) = "
	       "$2::boolean)",
	       2, p);
}

static void snapshot_conn(char *out, size_t outlen, int c)
{
	char ids[48];
	snprintf(ids, sizeof(ids), "{%" PRId64 "}", bconn[c].id);
	snapshot_of(out, outlen, ids, true);
}

/* synced_until, lease owner, epoch and expiry, next_poll, failures. */
static void expect_state(int c, const char *want)
{
	char v[256], id[32];
	snprintf(id, sizeof(id), "%" PRId64, bconn[c].id);
	const char *p[] = {id};
	query1(
	    v, sizeof(v),
	    "SELECT concat_ws(' ', coalesce(extract(epoch FROM synced_until)::bigint::text, '-'),"
	    " coalesce(lease_owner, '-'), lease_epoch,"
	    " coalesce(extract(epoch FROM lease_expires)::bigint::text, '-'),"
	    " coalesce(extract(epoch FROM next_poll)::bigint::text, '-'), failures)"
	    " FROM ksi_sales.connector_state WHERE connector_id = $1::bigint",
	    1, p);
	expect_str("its connector_state row", v, want);
}

/* A result that committed: exactly its rows, all of them; with_end, the
 * lease released and the schedule set with them. */
static void verify_result(const struct bresult *r, long nupserted, bool with_end)
{
	const struct val_result *vr = r->result;
	char id[32], started[32], finished[32], want[1024], got[8192];
	snprintf(id, sizeof(id), "%" PRId64, bconn[r->conn].id);
	snprintf(started, sizeof(started), "%.6f", r->started);
	snprintf(finished, sizeof(finished), "%.6f", r->finished);

	if (nupserted != (long)vr->nrecords)
		fail_msg("%s: upserted %ld, want %zu", bctx, nupserted, vr->nrecords);

	/* The sales rows: exactly the records, in this connector's stores. */
	const char *p2[] = {id, finished};
	query1(
	    got, sizeof(got),
	    "SELECT coalesce(string_agg(concat_ws(' ', s.ext_ref_code, extract(epoch FROM "
	    "h.hour)::bigint,"
	    "  h.num_tickets, h.ext_ref_code = s.ext_ref_code AND s.connector_id = h.connector_id"
	    "  AND h.fetched_at = to_timestamp($2::float8) AND h.first_seen = h.fetched_at"
	    "  AND h.last_changed = h.fetched_at AND h.revisions = 0),"
	    "  E'\\n' ORDER BY s.ext_ref_code COLLATE \"C\", h.hour), '')"
	    " FROM ksi_sales.sales_hourly h JOIN ksi_sales.stores s ON s.id = h.store_id"
	    " WHERE h.connector_id = $1::bigint",
	    2, p2);
	char *w = want;
	size_t left = sizeof(want);
	want[0] = '\0';
	for (size_t i = 0; i < vr->nrecords; i++) {
		const struct val_record *rec = &vr->records[i];
		int k = snprintf(w, left, "%s%s %" PRId64 " %" PRId32 " t", i ? "\n" : "",
		                 r->codes[rec->code], rec->hour, rec->num_tickets);
		assert_true(k > 0 && (size_t)k < left);
		w += k;
		left -= (size_t)k;
	}
	expect_str("its sales rows", got, want);

	/* Its one fetch_runs row. */
	const char *p3[] = {id, started, finished};
	query1(got, sizeof(got),
	       "SELECT count(*) || ' ' || coalesce(string_agg(concat_ws(' ',"
	       " coalesce(extract(epoch FROM window_from)::bigint::text, '-'),"
	       " coalesce(extract(epoch FROM window_to)::bigint::text, '-'), codes_requested,"
	       " started_at = to_timestamp($2::float8), finished_at = to_timestamp($3::float8),"
	       " coalesce(http_status::text, '-'), outcome, records_received, records_upserted,"
	       " records_rejected, bytes, coalesce(error, '-')), ';'), '')"
	       " FROM ksi_sales.fetch_runs WHERE connector_id = $1::bigint",
	       3, p3);
	snprintf(want, sizeof(want), "1 %" PRId64 " %" PRId64 " %zu t t 200 ok %zu %zu %zu %zu -",
	         r->from, r->to, r->ncodes, vr->received, vr->nrecords, vr->nrefusals, r->bytes);
	expect_str("its fetch_runs row", got, want);

	/* Its refusals, byte for byte, tied to that run. */
	const char *p1[] = {id};
	PGresult *res = query(
	    "SELECT x.run_id = (SELECT r.id FROM ksi_sales.fetch_runs r"
	    "  WHERE r.connector_id = x.connector_id), x.position, x.reason, x.detail, x.record"
	    " FROM ksi_sales.rejected_records x WHERE x.connector_id = $1::bigint ORDER BY x.id",
	    1, p1, -1);
	if ((size_t)PQntuples(res) != vr->nrefusals) {
		int got_rows = PQntuples(res);
		PQclear(res);
		fail_msg("%s: %d rejected_records rows, want %zu", bctx, got_rows, vr->nrefusals);
	}
	for (size_t i = 0; i < vr->nrefusals; i++) {
		const struct val_refusal *f = &vr->refusals[i];
		char pos[32];
		snprintf(pos, sizeof(pos), "%zu", f->index);
		expect_str("a refusal's run", PQgetvalue(res, (int)i, 0), "t");
		expect_str("a refusal's position", PQgetvalue(res, (int)i, 1), pos);
		expect_str("a refusal's reason", PQgetvalue(res, (int)i, 2), r->reasons[i]);
		expect_str("a refusal's detail", PQgetvalue(res, (int)i, 3),
		           f->detail ? f->detail : "");
		expect_str("a refusal's record", PQgetvalue(res, (int)i, 4),
		           f->json ? f->json : "");
	}
	PQclear(res);

	/* synced_until advanced; the lease and the schedule untouched, or,
	 * with its poll's end, the lease released and the schedule set. */
	if (with_end)
		snprintf(want, sizeof(want), "%" PRId64 " - %" PRId64 " - %" PRId64 " %u", r->to,
		         bconn[r->conn].epoch, NEXT_POLL_DONE, FAILURES_DONE);
	else
		snprintf(want, sizeof(want),
		         "%" PRId64 " %s %" PRId64 " %" PRId64 " %" PRId64 " %d", r->to, OWNER,
		         bconn[r->conn].epoch, LEASE_UNTIL, NEXT_POLL0, FAILURES0);
	expect_state(r->conn, want);
}

/* An end of a poll that committed: the lease released, the schedule set,
 * nothing else. */
static void verify_finish(int c)
{
	char want[256], got[256], id[32];
	snprintf(id, sizeof(id), "%" PRId64, bconn[c].id);
	const char *p[] = {id};
	query1(
	    got, sizeof(got),
	    "SELECT (SELECT count(*) FROM ksi_sales.sales_hourly WHERE connector_id = $1::bigint) "
	    "|| ' ' ||"
	    " (SELECT count(*) FROM ksi_sales.fetch_runs WHERE connector_id = $1::bigint) || ' ' ||"
	    " (SELECT count(*) FROM ksi_sales.rejected_records WHERE connector_id = $1::bigint)",
	    1, p);
	expect_str("its sales, fetch_runs and rejected_records rows", got, "0 0 0");
	snprintf(want, sizeof(want), "%" PRId64 " - %" PRId64 " - %" PRId64 " %u", H0,
	         bconn[c].epoch, NEXT_POLL_DONE, FAILURES_DONE);
	expect_state(c, want);
}

static void batch_run(struct db_run *out, const struct bresult *r, bool stale)
{
	*out = (struct db_run){
	    .connector_id = bconn[r->conn].id,
	    .has_window = true,
	    .window_from = r->from,
	    .window_to = r->to,
	    .codes_requested = r->ncodes,
	    .started_at = r->started,
	    .finished_at = r->finished,
	    .http_status = 200,
	    .outcome = RUN_OK,
	    .bytes = r->bytes,
	    .result = r->result,
	    .codes = r->codes,
	    .advance = true,
	    .advance_to = r->to,
	    .lease_owner = OWNER,
	    .lease_epoch = bconn[r->conn].epoch - (stale ? 1 : 0),
	};
}

/* Runs the batch spec[0..n) with its Nth allocation failing, N = 1, 2, …
 * until a batch makes fewer than N, checking every write each time (see
 * above). Returns how many allocations the batch makes. */
static long batch_every_allocation_fails_in_turn(const char *name, const struct bwrite *spec,
                                                 size_t n)
{
	struct db_run runs[MAXBATCH];
	struct db_finish fins[MAXBATCH];
	struct db_write w[MAXBATCH];
	struct db_write *wp[MAXBATCH];
	char ids[256] = "{", before[MAXBATCH][2048], after[2048], rest_before[2048],
	     rest_after[2048];
	assert_true(n <= MAXBATCH);
	for (size_t i = 0; i < n; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		if (spec[i].result) {
			assert_int_equal(spec[i].result->conn, spec[i].conn);
			batch_run(&runs[i], spec[i].result, spec[i].stale);
			w[i].run = &runs[i];
		}
		if (!spec[i].result || spec[i].with_end) {
			fins[i] =
			    (struct db_finish){OWNER, bconn[spec[i].conn].id,
			                       bconn[spec[i].conn].epoch - (spec[i].stale ? 1 : 0),
			                       NEXT_POLL_DONE, FAILURES_DONE};
			w[i].finish = &fins[i];
		}
		wp[i] = &w[i];
		snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), "%s%" PRId64, i ? "," : "",
		         bconn[spec[i].conn].id);
	}
	snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), "}");

	int nstale = 0;
	for (size_t i = 0; i < n; i++)
		nstale += spec[i].stale;
	long cost_none = 0, cost_one = 0; /* failures that made no write fail, one */
	for (long fail_n = 1; fail_n <= MAX_N; fail_n++) {
		batch_reset();
		snapshot_of(rest_before, sizeof(rest_before), ids, false);
		for (size_t i = 0; i < n; i++) {
			snapshot_conn(before[i], sizeof(before[i]), spec[i].conn);
			w[i].rc = 12345; /* db_write_batch must set every one */
			snprintf(w[i].err, sizeof(w[i].err), "left from before the call");
			w[i].upserted = -12345;
			w[i].lease_lost = true; /* and this one */
		}
		arm(fail_n);
		db_write_batch(db, wp, n);
		long made = disarm();
		bool unfailed = made < fail_n;
		char at[96];
		if (unfailed)
			snprintf(at, sizeof(at), "%s", failing(0));
		else
			snprintf(at, sizeof(at), "allocation %ld (%s) failing", fail_n,
			         failed_kind);

		int ooms = 0, failed = 0;
		for (size_t i = 0; i < n; i++) {
			const struct bwrite *s = &spec[i];
			struct db_write *x = &w[i];
			int c = s->conn;
			snprintf(bctx, sizeof(bctx), "%s, %s, write %zu (%s of %s%s)", name, at,
			         i + 1,
			         !s->result    ? "the end of the poll"
			         : s->with_end ? "a result and the poll's end"
			                       : "a result",
			         bconn[c].name, s->stale ? ", stale lease" : "");
			if (x->rc == 0) {
				if (s->stale)
					fail_msg("%s: committed under a lease it does not hold",
					         bctx);
				expect_str("err of a write that committed", x->err, "");
				if (x->lease_lost)
					fail_msg("%s: committed, yet says its lease was lost",
					         bctx);
				if (s->result)
					verify_result(s->result, x->upserted, s->with_end);
				else
					verify_finish(c);
			} else if (x->rc == -1) {
				failed++;
				char lost[96];
				snprintf(lost, sizeof(lost), "lease on connector %" PRId64 " lost",
				         bconn[c].id);
				bool oom = strstr(x->err, "out of memory") != NULL;
				if (oom) {
					ooms++;
					if (unfailed)
						fail_msg("%s: says out of memory: \"%s\"", bctx,
						         x->err);
					if (x->lease_lost)
						fail_msg("%s: out of memory, yet says its lease "
						         "was lost",
						         bctx);
				} else if (!s->stale) {
					fail_msg(
					    "%s: failed without saying \"out of memory\": \"%s\"",
					    bctx, x->err);
				} else if (!strstr(x->err, lost)) {
					fail_msg("%s: the error says neither \"out of memory\" nor "
					         "\"%s\": \"%s\"",
					         bctx, lost, x->err);
				} else if (!x->lease_lost) {
					fail_msg("%s: \"%s\", yet lease_lost is not set (SQLSTATE "
					         "KS001)",
					         bctx, x->err);
				}
				if (x->upserted != 0)
					fail_msg("%s: failed, yet upserted is %ld", bctx,
					         x->upserted);
				snapshot_conn(after, sizeof(after), c);
				if (strcmp(before[i], after) != 0)
					fail_msg("%s: failed, yet changed its connector's rows:\n"
					         "    before: %s\n    after:  %s",
					         bctx, before[i], after);
			} else {
				fail_msg("%s: rc %d (and err \"%s\")", bctx, x->rc, x->err);
			}
		}
		if (ooms > 1)
			fail_msg("%s, %s: %d writes say out of memory, but one allocation failed",
			         name, at, ooms);
		snapshot_of(rest_after, sizeof(rest_after), ids, false);
		if (strcmp(rest_before, rest_after) != 0)
			fail_msg("%s, %s: the batch changed other connectors' rows:\n    before: "
			         "%s\n    after:  %s",
			         name, at, rest_before, rest_after);
		check_idle(name, unfailed ? 0 : fail_n);
		check_no_leak(name, unfailed ? 0 : fail_n);
		if (unfailed) {
			print_message("%s: %ld allocations, each failed once: %ld cost no write "
			              "(the batch was"
			              " done again one write at a time), %ld cost one write\n",
			              name, made, cost_none, cost_one);
			return made;
		}
		if (failed == nstale)
			cost_none++;
		else
			cost_one++;
	}
	fail_msg("%s: still allocating after %d failures", name, MAX_N);
	return 0;
}

static void test_write_batch(void **state)
{
	(void)state;
	/* The end of a poll between the two results: each result's upserted
	 * count must still reach its own write. */
	static const struct bwrite spec[] = {
	    {BA, &result_a, false, false},
	    {BC, NULL, false, false},
	    {BB, &result_b, false, false},
	};
	long made = batch_every_allocation_fails_in_turn(
	    "db_write_batch (two results and the end of a poll)", spec,
	    sizeof(spec) / sizeof(spec[0]));
	/* Two callocs, the results' 24 array parameters, the ends of polls' 5. */
	assert_true(made >= 2 + 24 + 5);
}

static void test_write_batch_stale_lease(void **state)
{
	(void)state;
	static const struct bwrite spec[] = {
	    {BA, &result_a, false, false},
	    {BB, &result_b, true, false},
	    {BC, NULL, false, false},
	    {BD, &result_d, false, false},
	};
	long made =
	    batch_every_allocation_fails_in_turn("db_write_batch (one result under a stale lease)",
	                                         spec, sizeof(spec) / sizeof(spec[0]));
	/* The batch's statement (two callocs, 24 arrays) fails on the stale
	 * lease; then each of the three results builds its own 24 arrays. */
	assert_true(made >= 2 + 24 + 3 * 24);
}

/* The poll's last result carries its end: alone (one write, its own
 * transaction) and in a batch. Either both commit or neither. */
static void test_write_result_with_end(void **state)
{
	(void)state;
	static const struct bwrite alone[] = {
	    {BA, &result_a, false, true},
	};
	long made = batch_every_allocation_fails_in_turn(
	    "db_write_batch (a result carrying its poll's end)", alone, 1);
	assert_true(made >= 2 + 24 + 5);
	static const struct bwrite batch[] = {
	    {BA, &result_a, false, true},
	    {BB, &result_b, false, false},
	};
	made = batch_every_allocation_fails_in_turn(
	    "db_write_batch (a result with its end, and another)", batch, 2);
	assert_true(made >= 2 + 24 + 5);
}

/* ---- fixture ---- */

static int setup(void **state)
{
	(void)state;
	const char *url = getenv(URL_VAR);
	const char *keys[] = {"dbname", "application_name", NULL};
	const char *vals[] = {url, "test_db_oom", NULL};
	chk = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(chk) != CONNECTION_OK) {
		print_error("connecting to %s: %s", url, PQerrorMessage(chk));
		return -1;
	}
	/* A lock left held by the code under test (a transaction it forgot
	 * to end) fails the test instead of hanging it. */
	exec_chk("SET TIME ZONE 'UTC'; SET lock_timeout = '10s'");
	char v[64];
	PGresult *res =
	    PQexec(chk, "SELECT id FROM ksi_sales.connectors WHERE name = '" CONNECTOR_NAME "'");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		print_error("no connector \"%s\" (run me from tests/integration/db_oom.sh): %s",
		            CONNECTOR_NAME, PQresultErrorMessage(res));
		PQclear(res);
		return -1;
	}
	snprintf(v, sizeof(v), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	connector_id = strtoll(v, NULL, 10);
	for (int c = 0; c < NBCONN; c++) {
		const char *p[] = {bconn[c].name};
		res = PQexecParams(chk, "SELECT id FROM ksi_sales.connectors WHERE name = $1", 1,
		                   NULL, p, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
			print_error(
			    "no connector \"%s\" (run me from tests/integration/db_oom.sh): %s",
			    bconn[c].name, PQresultErrorMessage(res));
			PQclear(res);
			return -1;
		}
		bconn[c].id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
	}
	char err[1024];
	if (db_connect(url, &db, err, sizeof(err)) != 0) {
		print_error("db_connect: %s", err);
		return -1;
	}
	/* A record of 1,500 bytes: its array grows through several doublings. */
	int n = snprintf(json3, sizeof(json3),
	                 "{\"time\":\"2023-02-08T03:00:00Z\",\"ext_ref_code\":\"");
	memset(json3 + n, 'x', 1400);
	snprintf(json3 + n + 1400, sizeof(json3) - (size_t)n - 1400, "\",\"num_tickets\":1}");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	db_close(db);
	PQfinish(chk);
	return 0;
}

int main(void)
{
	const char *url = getenv(URL_VAR);
	if (!url || !*url) {
		printf("test_db_oom: SKIPPED: needs a database in " URL_VAR
		       " (tests/integration/db_oom.sh runs it against a throwaway PostgreSQL)\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_connect),
	    cmocka_unit_test(test_load_connector),
	    cmocka_unit_test(test_claim),
	    cmocka_unit_test(test_write_run_records),
	    cmocka_unit_test(test_write_run_error),
	    cmocka_unit_test(test_write_batch),
	    cmocka_unit_test(test_write_batch_stale_lease),
	    cmocka_unit_test(test_write_result_with_end),
	};
	return cmocka_run_group_tests_name("db_oom", tests, setup, teardown);
}
