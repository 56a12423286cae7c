/* db_maint: the maintenance statements the janitor runs on dbq's
 * maintenance lane: retention of fetch_runs and rejected_records by
 * partition (migration 0011). The decisions live in SQL functions owned by
 * the schema's owner (ksi_sales.retention_plan, which an operator can run as
 * a dry run, and the SECURITY DEFINER retention_create and retention_drop,
 * since the daemon's role may not create or drop tables); this file runs
 * them with the session's limits, under the janitors' advisory lock, one
 * transaction per action, and says what each did and how long it took. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db_internal.h"
#include "log.h"

/* Any constant other than migrate's: the same on every daemon. */
#define JANITOR_LOCK_KEY "7233879461275471170"

/* A statement waits at most this long for a lock (creating a partition
 * waits for SHARE UPDATE EXCLUSIVE on the parent, which no reader or writer
 * holds, and a moment of SHARE ROW EXCLUSIVE on connectors); dropping waits
 * less, per attempt, inside ksi_sales.retention_drop. */
#define JANITOR_LOCK_TIMEOUT "1s"
/* No maintenance statement should take long: a drop is a catalog change. */
#define JANITOR_STATEMENT_TIMEOUT "5min"
/* SQLSTATE lock_not_available: lock_timeout (or NOWAIT) gave up. */
#define SQLSTATE_LOCK_NOT_AVAILABLE "55P03"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "N seconds", or NULL (keep forever) for 0. */
static const char *keep_param(int64_t keep_s, char *buf, size_t len)
{
	if (keep_s <= 0)
		return NULL;
	snprintf(buf, len, "%" PRId64 " seconds", keep_s);
	return buf;
}

/* Runs one planned action; 1 when done, 0 when given up for a lock, -1 on
 * another failure (err set). */
static int run_action(struct db *db, const char *action, const char *parent, const char *partition,
                      const char *range_from, const char *keep, char *err, size_t errlen)
{
	PGresult *res;
	if (strcmp(action, "create") == 0) {
		const char *params[] = {parent, range_from};
		res = dbi_query(db, DBI_ROWS, partition,
		                "SELECT ksi_sales.retention_create($1, $2::timestamptz)", 2, params,
		                err, errlen);
	} else {
		const char *params[] = {partition, keep};
		res = dbi_query(db, DBI_ROWS, partition,
		                "SELECT ksi_sales.retention_drop($1, $2::interval)", 2, params, err,
		                errlen);
	}
	if (!res)
		return strcmp(db->sqlstate, SQLSTATE_LOCK_NOT_AVAILABLE) == 0 ? 0 : -1;
	/* create: false when it exists already (nothing to do, not busy);
	 * drop: false when it gave up waiting for its locks. */
	bool yes = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (strcmp(action, "create") == 0)
		return 1;
	return yes ? 1 : 0;
}

int db_maint_retention(struct db *db, const struct db_retention *r, struct db_retention_report *out,
                       char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	int64_t start = now_ms();
	const char *limits[] = {JANITOR_LOCK_TIMEOUT, JANITOR_STATEMENT_TIMEOUT};
	if (dbi_exec(db, "setting the janitor's timeouts",
	             "SELECT set_config('lock_timeout', $1, false),"
	             " set_config('statement_timeout', $2, false)",
	             2, limits, err, errlen) != 0)
		return -1;
	PGresult *res =
	    dbi_query(db, DBI_ROWS, "taking the janitors' lock",
	              "SELECT pg_try_advisory_lock(" JANITOR_LOCK_KEY ")", 0, NULL, err, errlen);
	if (!res)
		return -1;
	bool locked = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!locked) {
		out->skipped = true;
		out->ms = now_ms() - start;
		return 0;
	}

	char runs_keep[32], rejected_keep[32];
	const char *plan_params[] = {
	    keep_param(r->fetch_runs_keep_s, runs_keep, sizeof(runs_keep)),
	    keep_param(r->rejected_records_keep_s, rejected_keep, sizeof(rejected_keep))};
	int rc = 0;
	res = dbi_query(db, DBI_ROWS, "planning retention",
	                "SELECT action, parent, partition, range_from, range_to"
	                " FROM ksi_sales.retention_plan($1::interval, $2::interval)",
	                2, plan_params, err, errlen);
	if (!res) {
		rc = -1;
		goto unlock;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *action = PQgetvalue(res, i, 0);
		const char *parent = PQgetvalue(res, i, 1);
		const char *partition = PQgetvalue(res, i, 2);
		const char *keep =
		    strcmp(parent, "fetch_runs") == 0 ? plan_params[0] : plan_params[1];
		char why[512] = "";
		int64_t t0 = now_ms();
		int done = run_action(db, action, parent, partition, PQgetvalue(res, i, 3), keep,
		                      why, sizeof(why));
		int64_t took = now_ms() - t0;
		if (took > out->max_ms)
			out->max_ms = took;
		if (done == 1) {
			bool create = strcmp(action, "create") == 0;
			if (create)
				out->created++;
			else
				out->dropped++;
			log_info("janitor", NULL, "%s partition %s (%s to %s) in %" PRId64 " ms",
			         create ? "created" : "dropped expired", partition,
			         PQgetvalue(res, i, 3), PQgetvalue(res, i, 4), took);
		} else if (done == 0) {
			out->busy++;
			log_warning("janitor", NULL,
			            "%s of partition %s given up after %" PRId64
			            " ms: its table is in use (writers go first); next cycle",
			            action, partition, took);
		} else if (rc == 0) {
			/* The first failure is the one reported; the other actions
			 * are still tried (one bad partition must not stop the
			 * rest). */
			rc = -1;
			snprintf(err, errlen, "%s", why);
		}
	}
	PQclear(res);
unlock:;
	char ignored[256];
	/* After a lost connection the lock is gone with the session. */
	if (dbi_exec(db, NULL, "SELECT pg_advisory_unlock(" JANITOR_LOCK_KEY ")", 0, NULL, ignored,
	             sizeof(ignored)) != 0 &&
	    rc == 0)
		log_debug("janitor", NULL, "releasing the janitors' lock: %s", ignored);
	out->ms = now_ms() - start;
	return rc;
}
