/* db_internal: what the files of the db module share and nothing else
 * sees: struct db, the one way to run a statement (dbi_query, dbi_exec),
 * and the helpers for reading results. Included only by src/db_*.c, the
 * only files that include libpq-fe.h (STYLE habit 1). It lives in src/, not
 * include/: include/ holds one public header per module, and a header
 * outside the include path cannot be picked up by another module by
 * accident. Its non-static names carry the prefix dbi_ (db, internal), so a
 * reader can tell them from the public db_ interface. */
#ifndef KSI_DB_INTERNAL_H
#define KSI_DB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "connector.h"
#include "db.h"
#include "sbuf.h"

/* The SQLSTATE ksi_sales.lease_check raises when a write's lease is gone
 * (migration 0006): class KS, one PostgreSQL leaves to applications. */
#define DBI_SQLSTATE_LEASE_LOST "KS001"

struct db {
	PGconn *conn;
	/* What the last statement run through dbi_query/dbi_exec said, from
	 * its SQLSTATE: the kind of failure, and whether it was a lost lease. */
	enum db_error_kind kind;
	bool lease_lost;
	char sqlstate[6]; /* "" when it succeeded or libpq gave none */
};

/* What a statement must return to count as a success. */
enum dbi_want {
	DBI_DONE, /* PGRES_COMMAND_OK or PGRES_TUPLES_OK: any rows are not read */
	DBI_ROWS, /* PGRES_TUPLES_OK */
};

/* Runs sql, with params[0..n) as text (NULL: SQL NULL); n == 0 runs it with
 * PQexec, which allows several statements in one string (SET ...; SET ...,
 * a migration). Records the outcome in db (kind, lease_lost, sqlstate). On
 * success returns the result, the caller's to PQclear. On failure frees it
 * and returns NULL with err set to "what: PostgreSQL's message" (what NULL:
 * the message alone). */
PGresult *dbi_query(struct db *db, enum dbi_want want, const char *what, const char *sql, int n,
                    const char *const *params, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* dbi_query for a statement whose rows do not matter: 0, or -1 with err. */
int dbi_exec(struct db *db, const char *what, const char *sql, int n, const char *const *params,
             char *err, size_t errlen) __attribute__((warn_unused_result));

/* Ends the transaction (ROLLBACK after a failure, COMMIT of one that only
 * read) without recording its outcome: db keeps the kind of the failure
 * that led here, and the caller already has what it needs. */
void dbi_end_quietly(struct db *db, const char *sql);

/* snprintf into err, with libpq's trailing newline trimmed: the caller adds
 * its own context. */
void dbi_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends to err what the operator can do about a read-only database or a
 * missing privilege (db->kind), for the daemon's commands or for migrate. */
void dbi_add_remedy(const struct db *db, bool migrating, char *err, size_t errlen);

int64_t dbi_int64(const PGresult *res, int row, int col);
/* A copy of the value; NULL for SQL NULL, or with *oom set. */
char *dbi_dup(const PGresult *res, int row, int col, bool *oom);

/* A row's encrypted token (bytea at col_enc, its key id at col_key), if
 * any, copied into c (token_ct, token_key) for dbi_decrypt_tokens, which
 * the caller runs once its transaction has ended: an RSA decryption per
 * connector must not hold the transaction's locks, nor leave its session
 * idle in it (idle_in_transaction_session_timeout). False only when out
 * of memory. */
bool dbi_keep_token(const PGresult *res, int row, int col_enc, int col_key, struct connector *c);

/* Decrypts what dbi_keep_token kept, for v[0..n), into bearer_token, or
 * the reason it cannot be into token_error (the connector then fails with
 * config_error, the others go on). False only when out of memory. */
bool dbi_decrypt_tokens(struct connector *v, size_t n);

/* Appends "{1,2,3}", a bigint[] literal. */
void dbi_add_ids(struct sbuf *b, const int64_t *ids, size_t n);
/* Appends s as one quoted element of a text[] literal: "a\"b". */
void dbi_add_array_text(struct sbuf *b, const char *s);

/* Loads connectors (enabled ones only when enabled_only; only those in ids,
 * a bigint[] literal, unless NULL) with their codes. Runs inside the
 * caller's transaction, so codes and connectors come from one snapshot.
 * Their encrypted tokens are kept (dbi_keep_token): the caller decrypts
 * them after the transaction. */
int dbi_load_connectors(struct db *db, const char *ids, bool enabled_only, struct connector **out,
                        size_t *n, char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
