/* db_tokens: the database side of encrypted tokens (migration 0007): a
 * new public key made active (`ksi-salesd keygen --install`), and whether
 * tokens are still stored in clear (the daemon says so at start). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

int db_install_token_key(struct db *db, const char *public_armored, const char *key_id,
                         long *left_behind, char *err, size_t errlen)
{
	*left_behind = 0;
	const char *params[] = {key_id, public_armored};
	/* One transaction: the key is never in the table without being
	 * active, and the plaintext tokens are encrypted with it at once. */
	if (dbi_exec(db, "installing the token key", "BEGIN", 0, NULL, err, errlen) != 0)
		return -1;
	if (dbi_exec(db, "installing the token key",
	             "INSERT INTO ksi_sales.token_keys (key_id, public_key) VALUES ($1, $2)", 2,
	             params, err, errlen) != 0) {
		dbi_end_quietly(db, "ROLLBACK");
		return -1;
	}
	PGresult *res =
	    dbi_query(db, DBI_ROWS, "activating the token key",
	              "SELECT ksi_sales.activate_token_key($1)", 1, params, err, errlen);
	if (!res) {
		dbi_end_quietly(db, "ROLLBACK");
		return -1;
	}
	*left_behind = (long)dbi_int64(res, 0, 0);
	PQclear(res);
	return dbi_exec(db, "installing the token key", "COMMIT", 0, NULL, err, errlen);
}

int db_token_storage(struct db *db, bool *has_key, long *in_clear, char *err, size_t errlen)
{
	PGresult *res =
	    dbi_query(db, DBI_ROWS, "reading how tokens are stored",
	              "SELECT EXISTS (SELECT 1 FROM ksi_sales.token_keys WHERE active),"
	              " (SELECT count(*) FROM ksi_sales.connectors WHERE bearer_token IS NOT NULL)",
	              0, NULL, err, errlen);
	if (!res)
		return -1;
	*has_key = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	*in_clear = (long)dbi_int64(res, 0, 1);
	PQclear(res);
	return 0;
}

int db_rotation_begin(struct db *db, char active_id[17], char **public_armored,
                      struct db_old_token **rows, size_t *n, char *err, size_t errlen)
{
	*public_armored = NULL;
	*rows = NULL;
	*n = 0;
	if (dbi_exec(db, "rotating tokens", "BEGIN", 0, NULL, err, errlen) != 0)
		return -1;
	/* No connector becomes due for being re-encrypted (0008). */
	if (dbi_exec(db, "rotating tokens", "SET LOCAL ksi_sales.rotating_tokens = on", 0, NULL,
	             err, errlen) != 0)
		goto fail;
	PGresult *res =
	    dbi_query(db, DBI_ROWS, "reading the active token key",
	              "SELECT key_id, public_key FROM ksi_sales.token_keys WHERE active", 0, NULL,
	              err, errlen);
	if (!res)
		goto fail;
	if (PQntuples(res) == 0) {
		PQclear(res);
		dbi_end_quietly(db, "ROLLBACK");
		return 1;
	}
	snprintf(active_id, 17, "%s", PQgetvalue(res, 0, 0));
	*public_armored = strdup(PQgetvalue(res, 0, 1));
	PQclear(res);
	const char *p[] = {active_id};
	res =
	    dbi_query(db, DBI_ROWS, "reading the tokens under older keys",
	              "SELECT * FROM (SELECT false, id, bearer_token_enc, bearer_token_key"
	              " FROM ksi_sales.connectors WHERE bearer_token_key <> $1 FOR UPDATE) c"
	              " UNION ALL"
	              " SELECT * FROM (SELECT true, id, bearer_token_enc, bearer_token_key"
	              " FROM ksi_sales.connection_tests"
	              " WHERE bearer_token_key <> $1 AND bearer_token_enc IS NOT NULL FOR UPDATE) t"
	              " ORDER BY 1, 2",
	              1, p, err, errlen);
	if (!res || !*public_armored)
		goto fail_res;
	size_t m = (size_t)PQntuples(res);
	*rows = calloc(m ? m : 1, sizeof(**rows));
	if (!*rows)
		goto fail_res;
	for (size_t i = 0; i < m; i++) {
		struct db_old_token *t = &(*rows)[i];
		t->test = strcmp(PQgetvalue(res, (int)i, 0), "t") == 0;
		t->id = dbi_int64(res, (int)i, 1);
		t->ct = PQunescapeBytea((const unsigned char *)PQgetvalue(res, (int)i, 2), &t->len);
		snprintf(t->key_id, sizeof(t->key_id), "%s", PQgetvalue(res, (int)i, 3));
		*n = i + 1;
		if (!t->ct)
			goto fail_res;
	}
	PQclear(res);
	return 0;
fail_res:
	if (res) /* the query went through: memory ran out */
		dbi_set_err(err, errlen, "out of memory reading the tokens");
	PQclear(res);
fail:
	dbi_end_quietly(db, "ROLLBACK");
	free(*public_armored);
	*public_armored = NULL;
	for (size_t i = 0; *rows && i < *n; i++)
		PQfreemem((*rows)[i].ct);
	free(*rows);
	*rows = NULL;
	*n = 0;
	return -1;
}

int db_rotation_store(struct db *db, const struct db_old_token *row, const unsigned char *ct,
                      size_t len, const char *key_id, char *err, size_t errlen)
{
	/* bytea as hex text: "\x" and two digits a byte. */
	char *hex = malloc(2 * len + 3);
	if (!hex) {
		dbi_set_err(err, errlen, "out of memory storing a token");
		return -1;
	}
	hex[0] = '\\';
	hex[1] = 'x';
	for (size_t i = 0; i < len; i++)
		snprintf(hex + 2 + 2 * i, 3, "%02x", ct[i]);
	char id[32];
	snprintf(id, sizeof(id), "%" PRId64, row->id);
	const char *p[] = {id, hex, key_id};
	int rc = dbi_exec(
	    db, "storing a re-encrypted token",
	    row->test ? "UPDATE ksi_sales.connection_tests SET bearer_token_enc = $2::bytea,"
	                " bearer_token_key = $3 WHERE id = $1::bigint"
	              : "UPDATE ksi_sales.connectors SET bearer_token_enc = $2::bytea,"
	                " bearer_token_key = $3 WHERE id = $1::bigint",
	    3, p, err, errlen);
	free(hex);
	return rc;
}

int db_rotation_end(struct db *db, bool commit, struct db_old_token *rows, size_t n, char *err,
                    size_t errlen)
{
	for (size_t i = 0; i < n; i++)
		PQfreemem(rows[i].ct);
	free(rows);
	if (!commit) {
		dbi_end_quietly(db, "ROLLBACK");
		return 0;
	}
	return dbi_exec(db, "rotating tokens", "COMMIT", 0, NULL, err, errlen);
}
