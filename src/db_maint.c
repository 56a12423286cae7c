/* db_maint: the maintenance statements the janitor runs on dbq's
 * maintenance lane: retention of fetch_runs and rejected_records by
 * partition (migration 0011). The decisions live in SQL functions owned by
 * the schema's owner (ksi_sales.retention_plan, which an operator can run as
 * a dry run, and the SECURITY DEFINER retention_create and retention_drop,
 * since the daemon's role may not create or drop tables); this file runs
 * them with the session's limits, under the janitors' advisory lock, one
 * transaction per action, and says what each did and how long it took.
 * The plan it runs is the one `ksi-salesd janitor --dry-run` prints
 * (db_maint_retention_plan), read by the same statement. Also the fold of
 * the fleet rollup's deltas (migration 0014). */
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

void db_retention_actions_free(struct db_retention_actions *a)
{
	if (!a)
		return;
	free(a->v);
	a->v = NULL;
	a->n = 0;
}

/* Copies a cell into a fixed field; false when it does not fit (a name
 * longer than any retention_plan makes: a bug, said rather than cut). */
static bool copy_cell(char *dst, size_t len, const PGresult *res, int row, int col)
{
	return (size_t)snprintf(dst, len, "%s", PQgetvalue(res, row, col)) < len;
}

/* UTC text as db.h describes it; -infinity for MINVALUE. */
#define UTC_TEXT(col)                                                                              \
	"CASE WHEN " col " = '-infinity' THEN '-infinity'"                                         \
	" ELSE to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI\"Z\"') END"

/* The plan: ksi_sales.retention_plan in its own order, with, for a drop,
 * the partition's size and row estimate from the catalog (no scan: cheap
 * however large the partition). */
static int read_plan(struct db *db, const char *const keep[2], struct db_retention_actions *out,
                     char *err, size_t errlen)
{
	PGresult *res = dbi_query(
	    db, DBI_ROWS, "planning retention",
	    "SELECT p.action, p.parent, p.partition, " UTC_TEXT("p.range_from") ", " UTC_TEXT(
	        "p.range_to") ","
	                      " CASE WHEN p.action = 'drop' THEN pg_total_relation_size(c.oid) END,"
	                      " CASE WHEN p.action = 'drop' AND c.reltuples >= 0"
	                      "  THEN c.reltuples::bigint END"
	                      " FROM ksi_sales.retention_plan($1::interval, $2::interval)"
	                      "  WITH ORDINALITY AS p(action, parent, partition, range_from,"
	                      "   range_to, n)"
	                      " LEFT JOIN pg_class c ON c.relname = p.partition"
	                      "  AND c.relnamespace = 'ksi_sales'::regnamespace"
	                      " ORDER BY p.n",
	    2, keep, err, errlen);
	if (!res)
		return -1;
	size_t n = (size_t)PQntuples(res);
	struct db_retention_action *v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		PQclear(res);
		dbi_set_err(err, errlen, "planning retention: out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		int r = (int)i;
		struct db_retention_action *a = &v[i];
		a->drop = strcmp(PQgetvalue(res, r, 0), "drop") == 0;
		if (!copy_cell(a->parent, sizeof(a->parent), res, r, 1) ||
		    !copy_cell(a->partition, sizeof(a->partition), res, r, 2) ||
		    !copy_cell(a->range_from, sizeof(a->range_from), res, r, 3) ||
		    !copy_cell(a->range_to, sizeof(a->range_to), res, r, 4)) {
			dbi_set_err(err, errlen, "planning retention: a name too long: %s",
			            PQgetvalue(res, r, 2));
			PQclear(res);
			free(v);
			return -1;
		}
		a->bytes = PQgetisnull(res, r, 5) ? -1 : dbi_int64(res, r, 5);
		a->rows = PQgetisnull(res, r, 6) ? -1 : dbi_int64(res, r, 6);
		a->result = DB_RETENTION_PLANNED;
	}
	PQclear(res);
	*out = (struct db_retention_actions){.v = v, .n = n};
	return 0;
}

int db_maint_retention_plan(struct db *db, const struct db_retention *r,
                            struct db_retention_actions *out, char *err, size_t errlen)
{
	*out = (struct db_retention_actions){0};
	char runs_keep[32], rejected_keep[32];
	const char *keep[] = {
	    keep_param(r->fetch_runs_keep_s, runs_keep, sizeof(runs_keep)),
	    keep_param(r->rejected_records_keep_s, rejected_keep, sizeof(rejected_keep))};
	return read_plan(db, keep, out, err, errlen);
}

int db_maint_retention(struct db *db, const struct db_retention *r, struct db_retention_report *out,
                       struct db_retention_actions *done, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (done)
		*done = (struct db_retention_actions){0};
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
	const char *keep[] = {
	    keep_param(r->fetch_runs_keep_s, runs_keep, sizeof(runs_keep)),
	    keep_param(r->rejected_records_keep_s, rejected_keep, sizeof(rejected_keep))};
	struct db_retention_actions plan;
	int rc = read_plan(db, keep, &plan, err, errlen);
	if (rc != 0)
		goto unlock;
	for (size_t i = 0; i < plan.n; i++) {
		struct db_retention_action *a = &plan.v[i];
		const char *action = a->drop ? "drop" : "create";
		char why[512] = "";
		int64_t t0 = now_ms();
		int result = run_action(db, action, a->parent, a->partition, a->range_from,
		                        strcmp(a->parent, "fetch_runs") == 0 ? keep[0] : keep[1],
		                        why, sizeof(why));
		a->ms = now_ms() - t0;
		if (a->ms > out->max_ms)
			out->max_ms = a->ms;
		if (result == 1) {
			a->result = DB_RETENTION_DONE;
			if (a->drop)
				out->dropped++;
			else
				out->created++;
			log_info("janitor", NULL, "%s partition %s (%s to %s) in %" PRId64 " ms",
			         a->drop ? "dropped expired" : "created", a->partition,
			         a->range_from, a->range_to, a->ms);
		} else if (result == 0) {
			a->result = DB_RETENTION_BUSY;
			out->busy++;
			log_warning("janitor", NULL,
			            "%s of partition %s given up after %" PRId64
			            " ms: its table is in use (writers go first); next cycle",
			            action, a->partition, a->ms);
		} else {
			a->result = DB_RETENTION_FAILED;
			if (rc == 0) {
				/* The first failure is the one reported; the other
				 * actions are still tried (one bad partition must not
				 * stop the rest). */
				rc = -1;
				snprintf(err, errlen, "%s", why);
			}
		}
	}
	if (done)
		*done = plan;
	else
		db_retention_actions_free(&plan);
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

int db_maint_fleet_fold(struct db *db, int64_t *folded, char *err, size_t errlen)
{
	*folded = 0;
	PGresult *res = dbi_query(db, DBI_ROWS, "folding the fleet rollup",
	                          "SELECT ksi_sales.sales_fleet_compact()", 0, NULL, err, errlen);
	if (!res)
		return -1;
	*folded = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}
