/* db_requests: the request tables the daemon executes (SPEC §6):
 * connection_tests and backfill_requests. Claimed rows are leased (0004):
 * every write-back names the owner and the claim's attempt, so a daemon
 * that lost a row changes nothing (the UPDATE matches no row) instead of
 * overwriting the outcome of the one that took it over. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

/* The rows a claim may take: pending ones, and running ones whose lease
 * has expired (their daemon crashed, was killed, or lost the database for
 * longer than the lease). The status IN (...) term lets the partial
 * indexes *_open (0003) answer it. */
#define CLAIMABLE_REQUEST                                                                          \
	" status IN ('pending', 'running')"                                                        \
	" AND (status = 'pending' OR lease_expires IS NULL OR lease_expires <= now())"

void db_conn_tests_free(struct db_conn_test *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++) {
		connector_free(&v[i].c);
		for (size_t k = 0; k < v[i].ncodes; k++)
			free(v[i].codes[k]);
		free(v[i].codes);
	}
	free(v);
}

/* Loads the connector of a test row, enabled or not (a connector may be
 * tested before it is enabled). Missing (deleted meanwhile): c keeps only
 * its id. */
static int load_test_connector(struct db *db, struct connector *c, char *err, size_t errlen)
{
	char ids[40];
	snprintf(ids, sizeof(ids), "{%" PRId64 "}", c->id);
	struct connector *v = NULL;
	size_t n = 0;
	if (dbi_load_connectors(db, ids, false, &v, &n, err, errlen) != 0)
		return -1;
	if (n == 1) {
		*c = v[0]; /* moved */
		free(v);
	} else {
		connectors_free(v, n);
	}
	return 0;
}

/* Gives each test its row's codes: rows of (test id, code), grouped by id. */
static int attach_test_codes(struct db_conn_test *v, size_t n, const PGresult *res)
{
	int rows = PQntuples(res);
	for (int i = 0; i < rows;) {
		int64_t id = dbi_int64(res, i, 0);
		int j = i;
		while (j < rows && dbi_int64(res, j, 0) == id)
			j++;
		for (size_t k = 0; k < n; k++) {
			if (v[k].id != id)
				continue;
			v[k].codes = calloc((size_t)(j - i), sizeof(char *));
			if (!v[k].codes)
				return -1;
			bool oom = false;
			for (int r = i; r < j && !oom; r++) {
				v[k].codes[v[k].ncodes] = dbi_dup(res, r, 1, &oom);
				if (!oom)
					v[k].ncodes++;
			}
			if (oom)
				return -1;
		}
		i = j;
	}
	return 0;
}

/* Fills v[0..rows) from the claim's rows, and ids with their ids as a
 * bigint[] literal. False when out of memory. */
static bool read_tests(const PGresult *res, struct db_conn_test *v, size_t rows, struct sbuf *ids)
{
	bool oom = false;
	sbuf_addc(ids, '{');
	for (size_t i = 0; i < rows; i++) {
		struct db_conn_test *t = &v[i];
		int r = (int)i;
		t->id = dbi_int64(res, r, 0);
		t->attempt = dbi_int64(res, r, 1);
		t->by_connector = !PQgetisnull(res, r, 2);
		if (t->by_connector) {
			t->c.id = dbi_int64(res, r, 2);
		} else {
			t->c.endpoint_url = dbi_dup(res, r, 3, &oom);
			t->c.bearer_token = dbi_dup(res, r, 4, &oom);
			oom |= !dbi_keep_token(res, r, 8, 9, &t->c);
			t->c.timezone = dbi_dup(res, r, 5, &oom);
		}
		t->has_from = !PQgetisnull(res, r, 6);
		t->from = t->has_from ? dbi_int64(res, r, 6) : 0;
		t->has_to = !PQgetisnull(res, r, 7);
		t->to = t->has_to ? dbi_int64(res, r, 7) : 0;
		sbuf_printf(ids, i ? ",%" PRId64 : "%" PRId64, t->id);
	}
	sbuf_addc(ids, '}');
	return !oom && !ids->failed;
}

/* The claimed tests' codes and connectors, inside the claim's
 * transaction. */
static int complete_tests(struct db *db, struct db_conn_test *v, size_t rows, const char *ids,
                          char *err, size_t errlen)
{
	/* The rows' own codes, distinct, in strcmp order (COLLATE "C"). */
	PGresult *codes =
	    dbi_query(db, DBI_ROWS, "claiming connection tests",
	              "SELECT DISTINCT t.id, u.code COLLATE \"C\""
	              " FROM ksi_sales.connection_tests t, unnest(t.codes) AS u(code)"
	              " WHERE t.id = ANY ($1::bigint[]) AND u.code IS NOT NULL ORDER BY 1, 2",
	              1, (const char *[]){ids}, err, errlen);
	if (!codes)
		return -1;
	int rc = attach_test_codes(v, rows, codes);
	PQclear(codes);
	if (rc != 0) {
		dbi_set_err(err, errlen, "out of memory claiming connection tests");
		return -1;
	}
	for (size_t i = 0; i < rows; i++)
		if (v[i].by_connector && load_test_connector(db, &v[i].c, err, errlen) != 0)
			return -1;
	return 0;
}

int db_claim_conn_tests(struct db *db, const char *owner, int64_t lease_s, size_t limit,
                        struct db_conn_test **out, size_t *n, char *err, size_t errlen)
{
	*out = NULL;
	*n = 0;
	char lease[32], lim[32];
	snprintf(lease, sizeof(lease), "%" PRId64, lease_s);
	snprintf(lim, sizeof(lim), "%zu", limit);
	const char *params[] = {owner, lease, lim};
	if (dbi_exec(db, "claiming connection tests", "BEGIN", 0, NULL, err, errlen) != 0)
		return -1;
	PGresult *res = dbi_query(
	    db, DBI_ROWS, "claiming connection tests",
	    "UPDATE ksi_sales.connection_tests t"
	    " SET status = 'running', started_at = now(), lease_owner = $1,"
	    "  lease_expires = now() + make_interval(secs => $2::bigint), attempts = t.attempts + 1"
	    " FROM (SELECT id FROM ksi_sales.connection_tests WHERE" CLAIMABLE_REQUEST
	    "  ORDER BY requested_at, id LIMIT $3::bigint FOR UPDATE SKIP LOCKED) due"
	    " WHERE t.id = due.id"
	    " RETURNING t.id, t.attempts, t.connector_id, t.endpoint_url, t.bearer_token, "
	    "t.timezone,"
	    "  floor(extract(epoch FROM t.time_from))::bigint, floor(extract(epoch FROM "
	    "t.time_to))::bigint, t.bearer_token_enc, t.bearer_token_key",
	    3, params, err, errlen);
	size_t rows = res ? (size_t)PQntuples(res) : 0;
	struct db_conn_test *v = NULL;
	struct sbuf ids = {0};
	int rc = -1;
	if (!res || rows == 0) {
		rc = res ? 0 : -1;
		goto out;
	}
	v = calloc(rows, sizeof(*v));
	if (!v || !read_tests(res, v, rows, &ids)) {
		dbi_set_err(err, errlen, "out of memory claiming connection tests");
		goto out;
	}
	if (complete_tests(db, v, rows, ids.data, err, errlen) != 0 ||
	    dbi_exec(db, "claiming connection tests", "COMMIT", 0, NULL, err, errlen) != 0)
		goto out;
	for (size_t i = 0; i < rows; i++)
		if (!dbi_decrypt_tokens(&v[i].c, 1)) {
			/* Committed: the tests' leases expire and they are tried again. */
			dbi_set_err(err, errlen, "out of memory decrypting tokens");
			db_conn_tests_free(v, rows);
			free(ids.data);
			PQclear(res);
			return -1;
		}
	*out = v;
	*n = rows;
	v = NULL;
	rc = 0;
out:
	if (rc != 0)
		dbi_end_quietly(db, "ROLLBACK");
	else if (rows == 0)
		dbi_end_quietly(db, "COMMIT");
	db_conn_tests_free(v, rows);
	free(ids.data);
	PQclear(res);
	return rc;
}

int db_end_conn_test(struct db *db, const char *owner, int64_t id, int64_t attempt,
                     enum db_request_end end, bool passed, const char *report, bool *written,
                     char *err, size_t errlen)
{
	*written = false;
	char sid[32], sattempt[32], what[64];
	snprintf(sid, sizeof(sid), "%" PRId64, id);
	snprintf(sattempt, sizeof(sattempt), "%" PRId64, attempt);
	snprintf(what, sizeof(what), "recording connection test %s", sid);
	const char *params[] = {sid,
	                        owner,
	                        sattempt,
	                        end == DB_REQUEST_DONE ? "done" : "failed",
	                        end == DB_REQUEST_DONE ? (passed ? "true" : "false") : NULL,
	                        report};
	/* One UPDATE: the outcome, and the operator's token gone with it. */
	PGresult *res =
	    end == DB_REQUEST_REQUEUE
	        ? dbi_query(
	              db, DBI_DONE, what,
	              "UPDATE ksi_sales.connection_tests"
	              " SET status = 'pending', started_at = NULL, lease_owner = NULL, "
	              "lease_expires = NULL"
	              " WHERE id = $1::bigint AND lease_owner = $2 AND attempts = $3::integer",
	              3, params, err, errlen)
	        : dbi_query(
	              db, DBI_DONE, what,
	              "UPDATE ksi_sales.connection_tests"
	              " SET status = $4, passed = $5::boolean, report = $6::jsonb, finished_at = "
	              "now(),"
	              "  bearer_token = NULL, bearer_token_enc = NULL, bearer_token_key = NULL,"
	              "  lease_owner = NULL, lease_expires = NULL"
	              " WHERE id = $1::bigint AND lease_owner = $2 AND attempts = $3::integer",
	              6, params, err, errlen);
	if (!res)
		return -1;
	/* No row: the test is no longer this claim's (fencing). */
	*written = strcmp(PQcmdTuples(res), "1") == 0;
	PQclear(res);
	return 0;
}

/* Inside the claim's transaction: takes the lease of the first candidate
 * (id, connector_id) whose connector is free. *chosen is its row, or -1
 * when every connector is held. */
static int lease_first_free(struct db *db, const char *owner, int64_t lease_s, const PGresult *cand,
                            int *chosen, int64_t *epoch, char *err, size_t errlen)
{
	*chosen = -1;
	for (int i = 0; i < PQntuples(cand); i++) {
		char holder[256];
		int got = db_claim_connector(db, owner, lease_s, dbi_int64(cand, i, 1), epoch,
		                             holder, sizeof(holder), err, errlen);
		if (got < 0)
			return -1;
		if (got == 0) {
			*chosen = i;
			return 0;
		}
	}
	return 0;
}

/* Marks request out->id running under this claim and reads it and its
 * connector (enabled ones only, like `ksi-salesd backfill`) into out. */
static int take_backfill(struct db *db, const char *owner, const char *lease,
                         struct db_backfill *out, char *err, size_t errlen)
{
	char sid[32], what[64];
	snprintf(sid, sizeof(sid), "%" PRId64, out->id);
	snprintf(what, sizeof(what), "claiming backfill request %s", sid);
	const char *params[] = {sid, owner, lease};
	PGresult *res = dbi_query(
	    db, DBI_ROWS, what,
	    "UPDATE ksi_sales.backfill_requests"
	    " SET status = 'running', started_at = now(), finished_at = NULL, error = NULL,"
	    "  lease_owner = $2, lease_expires = now() + make_interval(secs => $3::bigint),"
	    "  attempts = attempts + 1"
	    " WHERE id = $1::bigint"
	    " RETURNING attempts, floor(extract(epoch FROM time_from))::bigint,"
	    "  floor(extract(epoch FROM time_to))::bigint, floor(extract(epoch FROM "
	    "done_until))::bigint,"
	    "  coalesce(windows_done, 0), coalesce(records, 0)",
	    3, params, err, errlen);
	if (!res)
		return -1;
	if (PQntuples(res) != 1) {
		dbi_set_err(err, errlen, "%s: it is gone", what);
		PQclear(res);
		return -1;
	}
	out->attempt = dbi_int64(res, 0, 0);
	out->from = dbi_int64(res, 0, 1);
	out->to = dbi_int64(res, 0, 2);
	out->has_done_until = !PQgetisnull(res, 0, 3);
	out->done_until = out->has_done_until ? dbi_int64(res, 0, 3) : 0;
	out->windows_done = dbi_int64(res, 0, 4);
	out->records = dbi_int64(res, 0, 5);
	PQclear(res);
	char ids[40];
	snprintf(ids, sizeof(ids), "{%" PRId64 "}", out->connector_id);
	struct connector *v = NULL;
	size_t n = 0;
	if (dbi_load_connectors(db, ids, true, &v, &n, err, errlen) != 0)
		return -1;
	if (n == 1) {
		out->c = v[0]; /* moved */
		out->c.lease_epoch = out->lease_epoch;
		out->connector_enabled = true;
		free(v);
	} else {
		connectors_free(v, n);
	}
	return 0;
}

int db_claim_backfill(struct db *db, const char *owner, int64_t lease_s, struct db_backfill *out,
                      bool *claimed, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	*claimed = false;
	char lease[32];
	snprintf(lease, sizeof(lease), "%" PRId64, lease_s);
	const char *what = "claiming backfill requests";
	if (dbi_exec(db, what, "BEGIN", 0, NULL, err, errlen) != 0)
		return -1;
	/* The oldest requests whose connector is free: a request whose
	 * connector is being polled (by any daemon, this one included) stays
	 * pending for a later claim. Candidates are locked, so two daemons
	 * never take the same one. */
	PGresult *cand = dbi_query(
	    db, DBI_ROWS, what,
	    "SELECT id, connector_id FROM ksi_sales.backfill_requests WHERE" CLAIMABLE_REQUEST
	    " ORDER BY requested_at, id LIMIT 16 FOR UPDATE SKIP LOCKED",
	    0, NULL, err, errlen);
	int chosen = -1;
	int rc = -1;
	if (!cand || lease_first_free(db, owner, lease_s, cand, &chosen, &out->lease_epoch, err,
	                              errlen) != 0)
		goto out;
	rc = 0;
	if (chosen < 0)
		goto out;
	out->id = dbi_int64(cand, chosen, 0);
	out->connector_id = dbi_int64(cand, chosen, 1);
	rc = -1;
	if (take_backfill(db, owner, lease, out, err, errlen) != 0 ||
	    dbi_exec(db, what, "COMMIT", 0, NULL, err, errlen) != 0)
		goto out;
	rc = 0;
	if (!dbi_decrypt_tokens(&out->c, 1)) {
		/* Committed: the request's lease expires and it is taken again. */
		dbi_set_err(err, errlen, "out of memory decrypting the token");
		db_backfill_free(out);
		PQclear(cand);
		return -1;
	}
	*claimed = true;
out:
	if (rc != 0 || !*claimed)
		dbi_end_quietly(db, rc != 0 ? "ROLLBACK" : "COMMIT");
	if (!*claimed)
		db_backfill_free(out);
	PQclear(cand);
	return rc;
}

void db_backfill_free(struct db_backfill *b)
{
	if (!b)
		return;
	connector_free(&b->c);
	memset(b, 0, sizeof(*b));
}

/* The parameters of a progress write: $1 id, $2 owner, $3 attempt, then
 * $4 windows_total, $5 windows_done, $6 records, $7 done_until. */
struct progress_params {
	char id[32], attempt[32], total[32], done[32], records[32], until[32];
	const char *p[7];
};

static void set_progress_params(struct progress_params *pp, int64_t id, const char *owner,
                                int64_t attempt, const struct db_backfill_progress *p)
{
	snprintf(pp->id, sizeof(pp->id), "%" PRId64, id);
	snprintf(pp->attempt, sizeof(pp->attempt), "%" PRId64, attempt);
	snprintf(pp->total, sizeof(pp->total), "%" PRId64, p->windows_total);
	snprintf(pp->done, sizeof(pp->done), "%" PRId64, p->windows_done);
	snprintf(pp->records, sizeof(pp->records), "%" PRId64, p->records);
	snprintf(pp->until, sizeof(pp->until), "%" PRId64, p->done_until);
	const char *v[] = {pp->id,
	                   owner,
	                   pp->attempt,
	                   pp->total,
	                   pp->done,
	                   pp->records,
	                   p->has_done_until ? pp->until : NULL};
	memcpy(pp->p, v, sizeof(v));
}

int db_backfill_progress(struct db *db, const char *owner, int64_t id, int64_t attempt,
                         const struct db_backfill_progress *p, char *err, size_t errlen)
{
	struct progress_params pp = {0};
	set_progress_params(&pp, id, owner, attempt, p);
	return dbi_exec(
	    db, "recording backfill progress",
	    "UPDATE ksi_sales.backfill_requests"
	    " SET windows_total = $4::integer, windows_done = $5::integer, records = $6::integer,"
	    "  done_until = coalesce(to_timestamp($7::bigint), done_until)"
	    " WHERE id = $1::bigint AND lease_owner = $2 AND attempts = $3::integer",
	    7, pp.p, err, errlen);
}

int db_end_backfill(struct db *db, const char *owner, int64_t id, int64_t attempt,
                    enum db_request_end end, const char *error,
                    const struct db_backfill_progress *p, int64_t connector_id, int64_t epoch,
                    char *err, size_t errlen)
{
	struct progress_params pp = {0};
	set_progress_params(&pp, id, owner, attempt, p);
	const char *params[9];
	memcpy(params, pp.p, sizeof(pp.p));
	params[7] = end == DB_REQUEST_DONE     ? "done"
	            : end == DB_REQUEST_FAILED ? "failed"
	                                       : "pending";
	params[8] = error;
	char what[64];
	snprintf(what, sizeof(what), "recording backfill request %s", pp.id);
	if (dbi_exec(db, what, "BEGIN", 0, NULL, err, errlen) != 0)
		return -1;
	if (dbi_exec(
	        db, what,
	        "UPDATE ksi_sales.backfill_requests"
	        " SET status = $8, error = $9,"
	        "  started_at = CASE WHEN $8 = 'pending' THEN NULL ELSE started_at END,"
	        "  finished_at = CASE WHEN $8 = 'pending' THEN NULL ELSE now() END,"
	        "  windows_total = $4::integer, windows_done = $5::integer, records = $6::integer,"
	        "  done_until = coalesce(to_timestamp($7::bigint), done_until),"
	        "  lease_owner = NULL, lease_expires = NULL"
	        " WHERE id = $1::bigint AND lease_owner = $2 AND attempts = $3::integer",
	        9, params, err, errlen) != 0 ||
	    db_release_lease(db, owner, connector_id, epoch, err, errlen) != 0) {
		dbi_end_quietly(db, "ROLLBACK");
		return -1;
	}
	return dbi_exec(db, what, "COMMIT", 0, NULL, err, errlen);
}

int db_renew_requests(struct db *db, const char *owner, int64_t lease_s, const int64_t *tests,
                      size_t ntests, int64_t backfill_id, char *err, size_t errlen)
{
	char lease[32], bf[32];
	struct sbuf ids = {0};
	snprintf(lease, sizeof(lease), "%" PRId64, lease_s);
	snprintf(bf, sizeof(bf), "%" PRId64, backfill_id);
	dbi_add_ids(&ids, tests, ntests);
	if (ids.failed) {
		free(ids.data);
		dbi_set_err(err, errlen, "out of memory");
		return -1;
	}
	const char *params[] = {owner, lease, ids.data, backfill_id ? bf : NULL};
	/* Only the rows still running here: a row whose outcome could not be
	 * written is left to expire, and is then run again. */
	int rc =
	    dbi_exec(db, "renewing request leases",
	             "WITH tests AS ("
	             "  UPDATE ksi_sales.connection_tests SET lease_expires = now() + "
	             "make_interval(secs => $2::bigint)"
	             "  WHERE lease_owner = $1 AND status = 'running' AND id = ANY ($3::bigint[])"
	             ")"
	             " UPDATE ksi_sales.backfill_requests SET lease_expires = now() + "
	             "make_interval(secs => $2::bigint)"
	             " WHERE lease_owner = $1 AND status = 'running' AND id = $4::bigint",
	             4, params, err, errlen);
	free(ids.data);
	return rc;
}
