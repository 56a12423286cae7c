/* db_tokens: the database side of encrypted tokens (migration 0007): a
 * new public key made active (`ksi-salesd keygen --install`), and whether
 * tokens are still stored in clear (the daemon says so at start). */
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
