/* db_lease: loading connectors, and the leases that say which daemon polls
 * one (SPEC §5): claims (FOR UPDATE SKIP LOCKED), renewal and release. A
 * lease's epoch fences the writes made under it (ksi_sales.lease_check,
 * db_write.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"
#include "tokens.h"

static int cmp_connector_id(const void *key, const void *elem)
{
	int64_t id = *(const int64_t *)key;
	const struct connector *c = elem;
	return id < c->id ? -1 : id > c->id;
}

bool dbi_keep_token(const PGresult *res, int row, int col_enc, int col_key, struct connector *c)
{
	if (PQgetisnull(res, row, col_enc))
		return true;
	size_t len = 0;
	unsigned char *ct =
	    PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, col_enc), &len);
	if (!ct)
		return false;
	c->token_ct = malloc(len ? len : 1);
	bool oom = false;
	c->token_key = dbi_dup(res, row, col_key, &oom);
	if (c->token_ct)
		memcpy(c->token_ct, ct, len);
	c->token_ct_len = len;
	PQfreemem(ct);
	return c->token_ct && !oom;
}

bool dbi_decrypt_tokens(struct connector *v, size_t n)
{
	bool ok = true;
	for (size_t i = 0; i < n; i++) {
		struct connector *c = &v[i];
		if (!c->token_ct)
			continue;
		char why[512];
		char *plain = NULL;
		if (tokens_decrypt(c->token_ct, c->token_ct_len, c->token_key, &plain, why,
		                   sizeof(why)) == 0) {
			/* The trigger leaves bearer_token NULL beside a ciphertext;
			 * were both set, the encrypted one is the one written last. */
			tokens_wipe(c->bearer_token);
			c->bearer_token = plain;
		} else {
			c->token_error = strdup(why);
			ok &= c->token_error != NULL;
		}
		free(c->token_ct);
		free(c->token_key);
		c->token_ct = NULL;
		c->token_key = NULL;
		c->token_ct_len = 0;
	}
	return ok;
}

/* Fills v[0..rows) from the connectors query's result. */
static bool read_connectors(const PGresult *res, struct connector *v, int rows)
{
	bool oom = false;
	for (int i = 0; i < rows; i++) {
		struct connector *c = &v[i];
		c->id = dbi_int64(res, i, 0);
		c->name = dbi_dup(res, i, 1, &oom);
		c->endpoint_url = dbi_dup(res, i, 2, &oom);
		c->bearer_token = dbi_dup(res, i, 3, &oom);
		c->timezone = dbi_dup(res, i, 4, &oom);
		c->poll_interval = dbi_int64(res, i, 5);
		c->lookback = dbi_int64(res, i, 6);
		c->initial_backfill = dbi_int64(res, i, 7);
		c->max_window = dbi_int64(res, i, 8);
		c->request_timeout = dbi_int64(res, i, 9);
		c->has_synced = !PQgetisnull(res, i, 10);
		c->synced_until = c->has_synced ? dbi_int64(res, i, 10) : 0;
		c->lease_epoch = dbi_int64(res, i, 11);
		c->failures = (unsigned)dbi_int64(res, i, 12);
		oom |= !dbi_keep_token(res, i, 13, 14, c);
	}
	return !oom;
}

/* Gives each connector of v[0..rows) (sorted by id) its codes, from rows of
 * (connector id, code) ordered by connector: count, then fill, per
 * connector. */
static bool read_codes(const PGresult *res, struct connector *v, int rows)
{
	int srows = PQntuples(res);
	for (int i = 0; i < srows;) {
		int64_t id = dbi_int64(res, i, 0);
		int j = i;
		while (j < srows && dbi_int64(res, j, 0) == id)
			j++;
		struct connector *c = bsearch(&id, v, (size_t)rows, sizeof(*v), cmp_connector_id);
		if (c) {
			c->codes = calloc((size_t)(j - i), sizeof(char *));
			if (!c->codes)
				return false;
			for (int k = i; k < j; k++) {
				bool oom = false;
				c->codes[c->ncodes] = dbi_dup(res, k, 1, &oom);
				if (oom)
					return false;
				c->ncodes++;
			}
		}
		i = j;
	}
	return true;
}

int dbi_load_connectors(struct db *db, const char *ids, bool enabled_only, struct connector **out,
                        size_t *n, char *err, size_t errlen)
{
	*out = NULL;
	*n = 0;
	const char *params[] = {ids, enabled_only ? "true" : "false"};
	PGresult *cres =
	    dbi_query(db, DBI_ROWS, "loading connectors",
	              "SELECT c.id, c.name, c.endpoint_url, c.bearer_token, c.timezone,"
	              " extract(epoch FROM c.poll_interval)::bigint,"
	              " extract(epoch FROM c.lookback)::bigint,"
	              " extract(epoch FROM c.initial_backfill)::bigint,"
	              " extract(epoch FROM c.max_window)::bigint,"
	              " extract(epoch FROM c.request_timeout)::bigint,"
	              " extract(epoch FROM st.synced_until)::bigint,"
	              " coalesce(st.lease_epoch, 0), coalesce(st.failures, 0),"
	              " c.bearer_token_enc, c.bearer_token_key"
	              " FROM ksi_sales.connectors c"
	              " LEFT JOIN ksi_sales.connector_state st ON st.connector_id = c.id"
	              " WHERE (c.enabled OR NOT $2::boolean) AND ($1::bigint[] IS NULL OR c.id = "
	              "ANY ($1::bigint[]))"
	              " ORDER BY c.id",
	              2, params, err, errlen);
	if (!cres)
		return -1;
	/* COLLATE "C" sorts by bytes, the order strcmp and the validator use. */
	PGresult *sres =
	    dbi_query(db, DBI_ROWS, "loading connectors",
	              "SELECT s.connector_id, s.ext_ref_code FROM ksi_sales.stores s"
	              " JOIN ksi_sales.connectors c ON c.id = s.connector_id"
	              " WHERE (c.enabled OR NOT $2::boolean) AND s.ext_ref_code IS NOT NULL"
	              " AND ($1::bigint[] IS NULL OR c.id = ANY ($1::bigint[]))"
	              " ORDER BY s.connector_id, s.ext_ref_code COLLATE \"C\"",
	              2, params, err, errlen);
	int rc = -1;
	int rows = sres ? PQntuples(cres) : 0;
	struct connector *v = NULL;
	if (!sres)
		goto out;
	v = calloc(rows ? (size_t)rows : 1, sizeof(*v));
	if (!v || !read_connectors(cres, v, rows) || !read_codes(sres, v, rows)) {
		dbi_set_err(err, errlen, "out of memory loading connectors");
		goto out;
	}
	*out = v;
	*n = (size_t)rows;
	v = NULL;
	rc = 0;
out:
	connectors_free(v, (size_t)rows);
	PQclear(cres);
	PQclear(sres);
	return rc;
}

int db_load_connector_by_name(struct db *db, const char *name, struct connector *out, char *err,
                              size_t errlen)
{
	memset(out, 0, sizeof(*out));
	const char *params[] = {name};
	if (dbi_exec(db, NULL, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err,
	             errlen) != 0)
		return -1;
	PGresult *res =
	    dbi_query(db, DBI_ROWS, NULL,
	              "SELECT '{' || id || '}', enabled FROM ksi_sales.connectors WHERE name = $1",
	              1, params, err, errlen);
	int rc = -1; /* err says why when !res */
	if (res && PQntuples(res) == 0) {
		dbi_set_err(err, errlen, "no connector is named \"%s\"", name);
		rc = 1;
	} else if (res && strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
		dbi_set_err(err, errlen, "connector \"%s\" is disabled", name);
		rc = 1;
	} else if (res) {
		struct connector *v = NULL;
		size_t n = 0;
		if (dbi_load_connectors(db, PQgetvalue(res, 0, 0), true, &v, &n, err, errlen) ==
		        0 &&
		    n == 1) {
			*out = v[0];
			free(v);
			rc = 0;
		} else {
			connectors_free(v, n);
		}
	}
	PQclear(res);
	dbi_end_quietly(db, "COMMIT");
	if (rc == 0 && !dbi_decrypt_tokens(out, 1)) {
		connector_free(out);
		dbi_set_err(err, errlen, "out of memory decrypting the token");
		rc = -1;
	}
	return rc;
}

/* Loads the connectors whose ids the claim returned, in its transaction. */
static int load_claimed(struct db *db, const PGresult *res, struct connector **out, size_t *n,
                        char *err, size_t errlen)
{
	int rows = PQntuples(res);
	if (rows == 0)
		return 0;
	struct sbuf ids = {0};
	sbuf_addc(&ids, '{');
	for (int i = 0; i < rows; i++) {
		if (i)
			sbuf_addc(&ids, ',');
		sbuf_add(&ids, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
	}
	sbuf_addc(&ids, '}');
	int rc = -1;
	if (ids.failed)
		dbi_set_err(err, errlen, "out of memory claiming connectors");
	else
		rc = dbi_load_connectors(db, ids.data, true, out, n, err, errlen);
	free(ids.data);
	return rc;
}

int db_claim(struct db *db, const char *owner, int64_t lease_s, size_t limit, bool ignore_schedule,
             int64_t after_id, struct connector **out, size_t *n, char *err, size_t errlen)
{
	*out = NULL;
	*n = 0;
	char lease[32], lim[32], after[32];
	snprintf(lease, sizeof(lease), "%" PRId64, lease_s);
	snprintf(lim, sizeof(lim), "%zu", limit);
	snprintf(after, sizeof(after), "%" PRId64, ignore_schedule ? after_id : INT64_MIN);
	const char *params[] = {owner, lease, lim, ignore_schedule ? "true" : "false", after};
	if (dbi_exec(db, NULL, "BEGIN", 0, NULL, err, errlen) != 0)
		return -1;
	/* SKIP LOCKED: daemons claiming at the same moment take disjoint
	 * sets instead of queueing behind each other. A lease still running
	 * (another daemon's, or ours for a poll in flight) is left alone. */
	PGresult *res = dbi_query(
	    db, DBI_ROWS, "claiming connectors",
	    "UPDATE ksi_sales.connector_state st"
	    " SET lease_owner = $1, lease_expires = now() + make_interval(secs => $2::bigint),"
	    "  lease_epoch = st.lease_epoch + 1"
	    " FROM (SELECT s.connector_id FROM ksi_sales.connector_state s"
	    "  JOIN ksi_sales.connectors c ON c.id = s.connector_id"
	    "  WHERE c.enabled AND ($4::boolean OR s.next_poll IS NULL OR s.next_poll <= now())"
	    "   AND s.connector_id > $5::bigint"
	    "   AND (s.lease_expires IS NULL OR s.lease_expires <= now())"
	    "   AND EXISTS (SELECT 1 FROM ksi_sales.stores x"
	    "               WHERE x.connector_id = c.id AND x.ext_ref_code IS NOT NULL)"
	    "  ORDER BY CASE WHEN $4::boolean THEN NULL ELSE s.next_poll END NULLS FIRST, "
	    "s.connector_id"
	    "  LIMIT $3::bigint FOR UPDATE OF s SKIP LOCKED) due"
	    " WHERE st.connector_id = due.connector_id"
	    " RETURNING st.connector_id",
	    5, params, err, errlen);
	if (!res) {
		dbi_add_remedy(db, false, err, errlen);
		dbi_end_quietly(db, "ROLLBACK");
		return -1;
	}
	int rc = load_claimed(db, res, out, n, err, errlen);
	PQclear(res);
	if (rc != 0) {
		dbi_end_quietly(db, "ROLLBACK");
		return -1;
	}
	bool ok = dbi_exec(db, "claiming connectors", "COMMIT", 0, NULL, err, errlen) == 0;
	/* After the COMMIT: the decryptions hold no lock (the leases keep the
	 * connectors ours). */
	if (ok && !dbi_decrypt_tokens(*out, *n)) {
		dbi_set_err(err, errlen, "out of memory decrypting tokens");
		ok = false;
	}
	if (!ok) {
		connectors_free(*out, *n);
		*out = NULL;
		*n = 0;
		return -1;
	}
	return 0;
}

int db_claim_connector(struct db *db, const char *owner, int64_t lease_s, int64_t connector_id,
                       int64_t *epoch, char *holder, size_t holderlen, char *err, size_t errlen)
{
	char id[32], lease[32];
	snprintf(id, sizeof(id), "%" PRId64, connector_id);
	snprintf(lease, sizeof(lease), "%" PRId64, lease_s);
	const char *params[] = {owner, lease, id};
	PGresult *res = dbi_query(
	    db, DBI_ROWS, "claiming the connector",
	    "UPDATE ksi_sales.connector_state"
	    " SET lease_owner = $1, lease_expires = now() + make_interval(secs => $2::bigint),"
	    "  lease_epoch = lease_epoch + 1"
	    " WHERE connector_id = $3::bigint AND (lease_expires IS NULL OR lease_expires <= now())"
	    " RETURNING lease_epoch",
	    3, params, err, errlen);
	if (!res) {
		dbi_add_remedy(db, false, err, errlen);
		return -1;
	}
	bool got = PQntuples(res) == 1;
	if (got)
		*epoch = dbi_int64(res, 0, 0);
	PQclear(res);
	if (got)
		return 0;
	/* Who holds it, for the message; a failure here only loses that. */
	char ignored[256];
	res = dbi_query(db, DBI_ROWS, NULL,
	                "SELECT coalesce(lease_owner, '?') || ' until '"
	                " || to_char(lease_expires, 'YYYY-MM-DD HH24:MI:SS\"Z\"')"
	                " FROM ksi_sales.connector_state WHERE connector_id = $1::bigint",
	                1, (const char *[]){id}, ignored, sizeof(ignored));
	snprintf(holder, holderlen, "%s", res && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "?");
	PQclear(res);
	return 1;
}

int db_release_lease(struct db *db, const char *owner, int64_t connector_id, int64_t epoch,
                     char *err, size_t errlen)
{
	char id[32], ep[32];
	snprintf(id, sizeof(id), "%" PRId64, connector_id);
	snprintf(ep, sizeof(ep), "%" PRId64, epoch);
	const char *params[] = {id, owner, ep};
	return dbi_exec(
	    db, "releasing the lease",
	    "UPDATE ksi_sales.connector_state SET lease_owner = NULL, lease_expires = NULL"
	    " WHERE connector_id = $1::bigint AND lease_owner = $2 AND lease_epoch = $3::bigint",
	    3, params, err, errlen);
}

int db_count_leased_elsewhere(struct db *db, const char *owner, long *n, char *err, size_t errlen)
{
	const char *params[] = {owner};
	PGresult *res =
	    dbi_query(db, DBI_ROWS, NULL,
	              "SELECT count(*) FROM ksi_sales.connector_state s"
	              " JOIN ksi_sales.connectors c ON c.id = s.connector_id"
	              " WHERE c.enabled AND s.lease_expires > now() AND s.lease_owner <> $1"
	              " AND EXISTS (SELECT 1 FROM ksi_sales.stores x WHERE x.connector_id = c.id)",
	              1, params, err, errlen);
	if (!res)
		return -1;
	*n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}

int db_renew(struct db *db, const char *owner, int64_t lease_s, char *err, size_t errlen)
{
	char lease[32];
	snprintf(lease, sizeof(lease), "%" PRId64, lease_s);
	const char *params[] = {owner, lease};
	return dbi_exec(db, "renewing leases",
	                "UPDATE ksi_sales.connector_state"
	                " SET lease_expires = now() + make_interval(secs => $2::bigint)"
	                " WHERE lease_owner = $1 AND lease_expires > now()",
	                2, params, err, errlen);
}

int db_release_all(struct db *db, const char *owner, char *err, size_t errlen)
{
	const char *params[] = {owner};
	/* One statement: connector leases released, and the request rows
	 * still running put back to pending for the next daemon (a backfill
	 * resumes at its done_until). */
	return dbi_exec(
	    db, "releasing leases",
	    "WITH tests AS ("
	    "  UPDATE ksi_sales.connection_tests SET status = 'pending', started_at = NULL,"
	    "   lease_owner = NULL, lease_expires = NULL"
	    "  WHERE lease_owner = $1 AND status = 'running'"
	    "), backfills AS ("
	    "  UPDATE ksi_sales.backfill_requests SET status = 'pending', started_at = NULL,"
	    "   lease_owner = NULL, lease_expires = NULL"
	    "  WHERE lease_owner = $1 AND status = 'running'"
	    ")"
	    " UPDATE ksi_sales.connector_state SET lease_owner = NULL, lease_expires = NULL"
	    " WHERE lease_owner = $1",
	    1, params, err, errlen);
}

int db_release_stale(struct db *db, const char *owner, const int64_t *keep, size_t nkeep, char *err,
                     size_t errlen)
{
	struct sbuf ids = {0};
	dbi_add_ids(&ids, keep, nkeep);
	if (ids.failed) {
		free(ids.data);
		dbi_set_err(err, errlen, "out of memory");
		return -1;
	}
	const char *params[] = {owner, ids.data};
	int rc =
	    dbi_exec(db, "releasing stale leases",
	             "UPDATE ksi_sales.connector_state SET lease_owner = NULL, lease_expires = NULL"
	             " WHERE lease_owner = $1 AND NOT (connector_id = ANY ($2::bigint[]))",
	             2, params, err, errlen);
	free(ids.data);
	return rc;
}
