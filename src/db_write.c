/* db_write: the write path (SPEC §4, §5): a request's result — its sales
 * rows, fetch_runs row, refused records and the advance of synced_until —
 * in one statement, the ends of polls, and batches of both in one
 * transaction. Every write made under a lease is fenced by
 * ksi_sales.lease_check; a write it refuses says so in db_write.lease_lost,
 * from the error's SQLSTATE. Arrays travel as array literals built here. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

static const char *const outcome_names[] = {
    [RUN_OK] = "ok",
    [RUN_HTTP_ERROR] = "http_error",
    [RUN_AUTH_FAILED] = "auth_failed",
    [RUN_REDIRECTED] = "redirected",
    [RUN_TOO_LARGE] = "too_large",
    [RUN_INVALID_RESPONSE] = "invalid_response",
    [RUN_TIMEOUT] = "timeout",
    [RUN_NETWORK_ERROR] = "network_error",
    [RUN_DB_ERROR] = "db_error",
    [RUN_CONFIG_ERROR] = "config_error",
};

const char *run_outcome_name(enum run_outcome o)
{
	return (size_t)o < sizeof(outcome_names) / sizeof(outcome_names[0]) ? outcome_names[o]
	                                                                    : "unknown";
}

/* One statement, hence one transaction, for any number of requests'
 * results (each of a different connector): the upserts, the run rows,
 * their refusals and the advances of synced_until commit together or not
 * at all (data-modifying CTEs always run to completion, read or not). Every
 * run's lease is checked first (fencing: lease_check raises SQLSTATE
 * KS001, which aborts the whole statement). Rows are upserted in (store_id, hour) order so
 * concurrent writers lock in the same order and cannot deadlock. The runs
 * come as parallel arrays numbered by k (their ordinality); records and
 * refusals name their run by k. */
static const char write_runs_sql[] =
    "WITH runs AS ("
    "  SELECT r.*, ksi_sales.lease_check(r.connector_id, r.owner, r.epoch) AS held"
    "  FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::integer[], $5::float8[],"
    "   $6::float8[], $7::integer[], $8::text[], $9::integer[], $10::integer[], $11::bigint[],"
    "   $12::text[], $13::bigint[], $14::text[], $15::bigint[]) WITH ORDINALITY"
    "   AS r(connector_id, window_from, window_to, codes, started, finished, status, outcome,"
    "   received, rejected, bytes, error, advance_to, owner, epoch, k)"
    "), incoming AS ("
    "  SELECT r.connector_id, r.finished, u.code, to_timestamp(u.hour) AS hour, u.n"
    "  FROM unnest($16::integer[], $17::text[], $18::bigint[], $19::integer[]) AS u(k, code, hour, "
    "n)"
    "  JOIN runs r ON r.k = u.k"
    "), upserted AS ("
    "  INSERT INTO ksi_sales.sales_hourly AS h"
    "   (store_id, hour, num_tickets, ext_ref_code, connector_id, fetched_at, first_seen, "
    "last_changed)"
    "  SELECT s.id, i.hour, i.n, i.code, i.connector_id, to_timestamp(i.finished),"
    "   to_timestamp(i.finished), to_timestamp(i.finished)"
    "  FROM incoming i JOIN ksi_sales.stores s"
    "   ON s.connector_id = i.connector_id AND s.ext_ref_code = i.code"
    /* Redundant, but it lets the planner read only these connectors'
     * stores through the index instead of hashing every store. */
    "   AND s.connector_id = ANY ($1::bigint[])"
    "  ORDER BY s.id, i.hour"
    "  ON CONFLICT (store_id, hour) DO UPDATE SET num_tickets = EXCLUDED.num_tickets,"
    "   ext_ref_code = EXCLUDED.ext_ref_code, connector_id = EXCLUDED.connector_id,"
    "   fetched_at = EXCLUDED.fetched_at,"
    /* Revision tracking: how late a connector's data settles. */
    "   revisions = h.revisions + (h.num_tickets <> EXCLUDED.num_tickets)::integer,"
    "   last_changed = CASE WHEN h.num_tickets <> EXCLUDED.num_tickets"
    "    THEN EXCLUDED.fetched_at ELSE h.last_changed END"
    "  RETURNING h.connector_id"
    "), counts AS ("
    "  SELECT r.k, count(u.connector_id) AS n FROM runs r"
    "  LEFT JOIN upserted u ON u.connector_id = r.connector_id GROUP BY r.k"
    "), run_rows AS ("
    "  INSERT INTO ksi_sales.fetch_runs (connector_id, window_from, window_to, codes_requested,"
    "   started_at, finished_at, http_status, outcome, records_received, records_upserted,"
    "   records_rejected, bytes, error)"
    "  SELECT r.connector_id, to_timestamp(r.window_from), to_timestamp(r.window_to), r.codes,"
    "   to_timestamp(r.started), to_timestamp(r.finished), r.status, r.outcome, r.received,"
    "   c.n, r.rejected, r.bytes, r.error"
    "  FROM runs r JOIN counts c ON c.k = r.k ORDER BY r.k RETURNING id, connector_id"
    "), rejected AS ("
    "  INSERT INTO ksi_sales.rejected_records"
    "   (run_id, connector_id, position, reason, detail, record)"
    "  SELECT rr.id, r.connector_id, f.pos, f.reason, f.detail, f.record"
    "  FROM unnest($20::integer[], $21::integer[], $22::text[], $23::text[], $24::text[])"
    "   AS f(k, pos, reason, detail, record)"
    "  JOIN runs r ON r.k = f.k JOIN run_rows rr ON rr.connector_id = r.connector_id"
    "), advanced AS ("
    /* Never backwards, and never over a hole: a window that does not
     * start at or before synced_until (an earlier window's commit was lost,
     * e.g. by a crash with asynchronous commit) leaves synced_until where
     * it is, so the next poll fetches the hole again. */
    "  UPDATE ksi_sales.connector_state st"
    "  SET synced_until = greatest(st.synced_until, to_timestamp(r.advance_to))"
    "  FROM runs r WHERE st.connector_id = r.connector_id AND r.advance_to IS NOT NULL"
    "   AND (st.synced_until IS NULL OR st.synced_until >= to_timestamp(r.window_from))"
    "), created AS ("
    "  INSERT INTO ksi_sales.connector_state (connector_id, synced_until)"
    "  SELECT r.connector_id, to_timestamp(r.advance_to) FROM runs r"
    "  WHERE r.advance_to IS NOT NULL ORDER BY r.connector_id"
    "  ON CONFLICT (connector_id) DO NOTHING"
    ")"
    /* Each run's rows written and its fetch_runs id (for the log). */
    " SELECT c.k, c.n, rr.id FROM counts c JOIN runs r ON r.k = c.k"
    "  JOIN run_rows rr ON rr.connector_id = r.connector_id ORDER BY c.k";

/* The parameters of write_runs_sql, each an array literal built in an sbuf. */
enum {
	W_CONNECTOR,
	W_FROM,
	W_TO,
	W_CODES,
	W_STARTED,
	W_FINISHED,
	W_STATUS,
	W_OUTCOME,
	W_RECEIVED,
	W_REJECTED,
	W_BYTES,
	W_ERROR,
	W_ADVANCE,
	W_OWNER,
	W_EPOCH,
	W_REC_K,
	W_REC_CODE,
	W_REC_HOUR,
	W_REC_N,
	W_REF_K,
	W_REF_POS,
	W_REF_REASON,
	W_REF_DETAIL,
	W_REF_RECORD,
	W_NPARAMS
};

/* Appends one element to an array literal: the separator, then v. */
static void arr_next(struct sbuf *b)
{
	sbuf_addc(b, b->len == 0 ? '{' : ',');
}
static void arr_int(struct sbuf *b, int64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%" PRId64, v);
	arr_next(b);
	sbuf_add(b, num, (size_t)n);
}
static void arr_float(struct sbuf *b, double v)
{
	arr_next(b);
	sbuf_printf(b, "%.6f", v);
}
/* NULL becomes SQL NULL; anything else a quoted element. */
static void arr_text(struct sbuf *b, const char *s)
{
	arr_next(b);
	if (s)
		dbi_add_array_text(b, s);
	else
		sbuf_puts(b, "NULL");
}
static void arr_null(struct sbuf *b)
{
	arr_next(b);
	sbuf_puts(b, "NULL");
}

/* Adds run k (1-based) to the parameters. */
static void add_run(struct sbuf *a, const struct db_run *run, int64_t k)
{
	arr_int(&a[W_CONNECTOR], run->connector_id);
	if (run->has_window) {
		arr_int(&a[W_FROM], run->window_from);
		arr_int(&a[W_TO], run->window_to);
	} else {
		arr_null(&a[W_FROM]);
		arr_null(&a[W_TO]);
	}
	arr_int(&a[W_CODES], (int64_t)run->codes_requested);
	arr_float(&a[W_STARTED], run->started_at);
	arr_float(&a[W_FINISHED], run->finished_at);
	if (run->http_status > 0)
		arr_int(&a[W_STATUS], run->http_status);
	else
		arr_null(&a[W_STATUS]);
	arr_text(&a[W_OUTCOME], run_outcome_name(run->outcome));
	const struct val_result *r = run->outcome == RUN_OK ? run->result : NULL;
	arr_int(&a[W_RECEIVED], r ? (int64_t)r->received : 0);
	arr_int(&a[W_REJECTED], r ? (int64_t)r->nrefusals : 0);
	arr_int(&a[W_BYTES], (int64_t)run->bytes);
	arr_text(&a[W_ERROR], run->error);
	if (run->outcome == RUN_OK && run->advance)
		arr_int(&a[W_ADVANCE], run->advance_to);
	else
		arr_null(&a[W_ADVANCE]);
	arr_text(&a[W_OWNER], run->lease_owner);
	if (run->lease_owner)
		arr_int(&a[W_EPOCH], run->lease_epoch);
	else
		arr_null(&a[W_EPOCH]);

	for (size_t i = 0; r && i < r->nrecords; i++) {
		const struct val_record *rec = &r->records[i];
		arr_int(&a[W_REC_K], k);
		arr_text(&a[W_REC_CODE], run->codes[rec->code]);
		arr_int(&a[W_REC_HOUR], rec->hour);
		arr_int(&a[W_REC_N], rec->num_tickets);
	}
	size_t nrej = r ? r->nrefusals : 0;
	if (nrej > DB_MAX_REJECTED_ROWS)
		nrej = DB_MAX_REJECTED_ROWS;
	for (size_t i = 0; i < nrej; i++) {
		const struct val_refusal *f = &r->refusals[i];
		arr_int(&a[W_REF_K], k);
		arr_int(&a[W_REF_POS], (int64_t)f->index);
		arr_text(&a[W_REF_REASON], val_reason_name(f->reason));
		arr_text(&a[W_REF_DETAIL], f->detail ? f->detail : "");
		arr_text(&a[W_REF_RECORD], f->json ? f->json : "");
	}
}

/* Closes the array literals a[0..n), frees none; false when one of them ran
 * out of memory. */
static bool close_arrays(struct sbuf *a, const char **p, int n)
{
	bool failed = false;
	for (int i = 0; i < n; i++) {
		sbuf_puts(&a[i], a[i].len ? "}" : "{}");
		failed |= a[i].failed;
		p[i] = a[i].data;
	}
	return !failed;
}

static void free_arrays(struct sbuf *a, int n)
{
	for (int i = 0; i < n; i++)
		free(a[i].data);
}

/* What one run's write came to. */
struct run_out {
	long upserted;  /* rows written */
	int64_t run_id; /* its fetch_runs row */
};

/* Writes runs[0..n) in one statement (see write_runs_sql): all or nothing.
 * out[i] gets run i's rows written and fetch_runs id. */
static int write_runs(struct db *db, const struct db_run *const *runs, size_t n,
                      struct run_out *out, char *err, size_t errlen)
{
	struct sbuf a[W_NPARAMS] = {0};
	const char *p[W_NPARAMS];
	for (size_t i = 0; i < n; i++) {
		out[i] = (struct run_out){0};
		add_run(a, runs[i], (int64_t)i + 1);
	}
	int rc = -1;
	if (!close_arrays(a, p, W_NPARAMS)) {
		dbi_set_err(err, errlen, "out of memory building the write");
		goto out;
	}
	PGresult *res = dbi_query(db, DBI_ROWS, NULL, write_runs_sql, W_NPARAMS, p, err, errlen);
	if (res && (size_t)PQntuples(res) == n) {
		for (size_t i = 0; i < n; i++) {
			out[i].upserted = strtol(PQgetvalue(res, (int)i, 1), NULL, 10);
			out[i].run_id = strtoll(PQgetvalue(res, (int)i, 2), NULL, 10);
		}
		rc = 0;
	} else if (res) {
		dbi_set_err(err, errlen, "the write returned %d rows for %zu runs", PQntuples(res),
		            n);
	}
	PQclear(res);
out:
	free_arrays(a, W_NPARAMS);
	return rc;
}

int db_write_run(struct db *db, const struct db_run *run, long *upserted, char *err, size_t errlen)
{
	struct run_out out;
	int rc = write_runs(db, &run, 1, &out, err, errlen);
	*upserted = out.upserted;
	return rc;
}

/* The parameters of finish_many's statement. */
enum { F_CONNECTOR, F_OWNER, F_EPOCH, F_NEXT_POLL, F_FAILURES, F_NPARAMS };

/* Ends the polls of w[0..n) that are poll ends, in one statement: each
 * lease is released (only if still its owner's, that epoch) and the
 * connector's next poll and consecutive failures set. */
static int finish_many(struct db *db, struct db_write *const *w, size_t n, char *err, size_t errlen)
{
	struct sbuf a[F_NPARAMS] = {0};
	const char *p[F_NPARAMS];
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		const struct db_finish *f = w[i]->finish;
		if (!f)
			continue;
		arr_int(&a[F_CONNECTOR], f->connector_id);
		arr_text(&a[F_OWNER], f->owner);
		arr_int(&a[F_EPOCH], f->epoch);
		arr_int(&a[F_NEXT_POLL], f->next_poll);
		arr_int(&a[F_FAILURES], f->failures);
		m++;
	}
	if (m == 0)
		return 0;
	int rc = -1;
	if (!close_arrays(a, p, F_NPARAMS))
		dbi_set_err(err, errlen, "out of memory building the write");
	else
		rc = dbi_exec(db, "releasing the leases",
		              "UPDATE ksi_sales.connector_state st SET lease_owner = NULL, "
		              "lease_expires = NULL,"
		              "  next_poll = to_timestamp(u.next_poll), failures = u.failures"
		              " FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], "
		              "$5::integer[])"
		              "  AS u(connector_id, owner, epoch, next_poll, failures)"
		              " WHERE st.connector_id = u.connector_id AND st.lease_owner = u.owner"
		              "  AND st.lease_epoch = u.epoch",
		              F_NPARAMS, p, err, errlen);
	free_arrays(a, F_NPARAMS);
	return rc;
}

static bool write_together(struct db *db, struct db_write *const *w, size_t n, size_t nruns,
                           char *err, size_t errlen);

/* Does w alone, as if it were the only write. A result that carries its
 * poll's end commits with it, in one transaction. */
static void write_one(struct db *db, struct db_write *w)
{
	db->kind = DB_ERR_NONE;
	db->lease_lost = false;
	struct run_out out = {0};
	if (w->run && w->finish) {
		w->rc = write_together(db, &w, 1, 1, w->err, sizeof(w->err)) ? 0 : -1;
	} else if (w->run) {
		w->rc = write_runs(db, &w->run, 1, &out, w->err, sizeof(w->err));
		w->upserted = out.upserted;
		w->run_id = w->rc == 0 ? out.run_id : 0;
	} else if (w->finish) {
		w->rc = finish_many(db, &w, 1, w->err, sizeof(w->err));
	} else {
		w->rc = 0;
	}
	w->kind = w->rc != 0 ? db->kind : DB_ERR_NONE;
	w->lease_lost = w->rc != 0 && db->lease_lost;
	if (w->rc != 0)
		dbi_add_remedy(db, false, w->err, sizeof(w->err));
}

/* Every write's connector differs from the others' (a connector's rows
 * twice in one INSERT … ON CONFLICT would be an error). */
static bool distinct_connectors(struct db_write *const *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n && w[i]->run; j++)
			if (w[j]->run && w[j]->run->connector_id == w[i]->run->connector_id)
				return false;
	return true;
}

/* w[0..n) together: one transaction, one statement for the results and one
 * for the ends of polls. False when any of it failed (a lost lease, a
 * constraint, the connection): then none of it was committed. */
static bool write_together(struct db *db, struct db_write *const *w, size_t n, size_t nruns,
                           char *err, size_t errlen)
{
	const struct db_run **runs = calloc(nruns ? nruns : 1, sizeof(*runs));
	struct run_out *out = calloc(nruns ? nruns : 1, sizeof(*out));
	if (!runs || !out)
		dbi_set_err(err, errlen, "out of memory building the write");
	bool ok = runs && out && dbi_exec(db, NULL, "BEGIN", 0, NULL, err, errlen) == 0;
	if (ok) {
		size_t m = 0;
		for (size_t i = 0; i < n; i++)
			if (w[i]->run)
				runs[m++] = w[i]->run;
		ok = (m == 0 || write_runs(db, runs, m, out, err, errlen) == 0) &&
		     finish_many(db, w, n, err, errlen) == 0 &&
		     dbi_exec(db, NULL, "COMMIT", 0, NULL, err, errlen) == 0;
		if (!ok && PQtransactionStatus(db->conn) != PQTRANS_IDLE)
			dbi_end_quietly(db, "ROLLBACK");
		if (ok)
			for (size_t i = 0, k = 0; i < n; i++) {
				w[i]->rc = 0;
				if (w[i]->run) {
					w[i]->upserted = out[k].upserted;
					w[i]->run_id = out[k++].run_id;
				}
			}
	}
	free(runs);
	free(out);
	return ok;
}

void db_write_batch(struct db *db, struct db_write *const *w, size_t n)
{
	size_t nruns = 0;
	for (size_t i = 0; i < n; i++) {
		w[i]->rc = -1;
		w[i]->err[0] = '\0';
		w[i]->upserted = 0;
		w[i]->run_id = 0;
		w[i]->lease_lost = false;
		nruns += w[i]->run != NULL;
	}
	/* Any failure of the batch is tried again write by write, so only the
	 * one at fault fails. */
	char err[1024];
	if (n > 1 && distinct_connectors(w, n) && write_together(db, w, n, nruns, err, sizeof(err)))
		return;
	for (size_t i = 0; i < n; i++)
		write_one(db, w[i]);
}
