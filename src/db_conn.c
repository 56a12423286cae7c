/* db_conn: the db module's connection (SPEC §4): connecting and the
 * session settings, running a statement and classifying its failure by
 * SQLSTATE (dbi_query, the one place that calls PQexec/PQexecParams),
 * migrations and the schema check, LISTEN and the socket the daemon waits
 * on. Every statement is parameterised; values travel as text. */
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"
#include "log.h"
#include "migrations.h"

/* Any constant works: it only has to be the same for every migrating host. */
#define MIGRATE_LOCK_KEY "7233879461275471169"

void dbi_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	size_t n = strlen(err);
	while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
		err[--n] = '\0';
}

/* What a failed statement's SQLSTATE says about the cause. A result
 * without one is libpq's own: the connection failed. */
static enum db_error_kind kind_of(const struct db *db, const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	if (res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY))
		return DB_ERR_NONE;
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (!state || PQstatus(db->conn) != CONNECTION_OK)
		return DB_ERR_UNREACHABLE;
	/* 08: connection exception; 57P01-57P03: the server is shutting down
	 * or cannot accept connections now. */
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0)
		return DB_ERR_UNREACHABLE;
	if (strcmp(state, "25006") == 0) /* read_only_sql_transaction */
		return DB_ERR_READ_ONLY;
	if (strcmp(state, "42501") == 0) /* insufficient_privilege */
		return DB_ERR_PRIVILEGE;
	return DB_ERR_OTHER;
}

/* undefined_table, invalid_schema_name, undefined_function,
 * undefined_column, undefined_object: the schema is not the one this binary
 * migrates to. */
static bool missing_object(const char *sqlstate)
{
	static const char *const states[] = {"42P01", "3F000", "42883", "42703", "42704"};
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		if (strcmp(sqlstate, states[i]) == 0)
			return true;
	return false;
}

/* Keeps what the outcome of a statement says about the cause of a failure:
 * the error's kind, and whether it was a lost lease (by its SQLSTATE, never
 * its text). */
static void note_outcome(struct db *db, const PGresult *res)
{
	db->kind = kind_of(db, res);
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	snprintf(db->sqlstate, sizeof(db->sqlstate), "%s",
	         db->kind != DB_ERR_NONE && state ? state : "");
	db->lease_lost =
	    db->kind == DB_ERR_OTHER && strcmp(db->sqlstate, DBI_SQLSTATE_LEASE_LOST) == 0;
}

PGresult *dbi_query(struct db *db, enum dbi_want want, const char *what, const char *sql, int n,
                    const char *const *params, char *err, size_t errlen)
{
	PGresult *res = n == 0 ? PQexec(db->conn, sql)
	                       : PQexecParams(db->conn, sql, n, NULL, params, NULL, NULL, 0);
	note_outcome(db, res);
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_TUPLES_OK || (want == DBI_DONE && st == PGRES_COMMAND_OK))
		return res;
	/* No result at all: libpq could not even allocate one. */
	const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(db->conn);
	/* Errors with a remedy (dbi_add_remedy) are one line: the server's
	 * primary message and the SQLSTATE, without "ERROR:" or its context
	 * lines; the remedy follows. */
	char line[512];
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (primary && (db->kind == DB_ERR_PRIVILEGE || missing_object(db->sqlstate))) {
		snprintf(line, sizeof(line), "%s (SQLSTATE %s)", primary, db->sqlstate);
		msg = line;
	}
	if (what)
		dbi_set_err(err, errlen, "%s: %s", what, msg);
	else
		dbi_set_err(err, errlen, "%s", msg);
	PQclear(res);
	return NULL;
}

int dbi_exec(struct db *db, const char *what, const char *sql, int n, const char *const *params,
             char *err, size_t errlen)
{
	PGresult *res = dbi_query(db, DBI_DONE, what, sql, n, params, err, errlen);
	PQclear(res);
	return res ? 0 : -1;
}

void dbi_end_quietly(struct db *db, const char *sql)
{
	PQclear(PQexec(db->conn, sql));
}

enum db_error_kind db_error_kind(const struct db *db)
{
	return db->kind;
}

void dbi_add_remedy(const struct db *db, bool migrating, char *err, size_t errlen)
{
	size_t len = strlen(err);
	if (len >= errlen)
		return;
	const char *user = PQuser(db->conn);
	if (db->kind == DB_ERR_READ_ONLY)
		snprintf(err + len, errlen - len,
		         " (the database is read-only for role %s: a hot standby, or "
		         "default_transaction_read_only: connect to the primary; with several "
		         "hosts, add "
		         "target_session_attrs=read-write)",
		         user);
	else if (db->kind == DB_ERR_PRIVILEGE && migrating)
		snprintf(
		    err + len, errlen - len,
		    ": role %s may not change the schema: run `ksi-salesd migrate` as the owner "
		    "of the ksi_sales schema (the first time, a role that may create schemas in "
		    "this database; README, Roles)",
		    user);
	else if (db->kind == DB_ERR_PRIVILEGE)
		snprintf(
		    err + len, errlen - len,
		    ": role %s lacks a privilege on ksi_sales: GRANT ksi_salesd_daemon TO %s; "
		    "if it has it, run SELECT ksi_sales.grant_role_privileges(); as the schema "
		    "owner, or `ksi-salesd migrate` if the schema is older than this binary "
		    "(README, Roles)",
		    user, user);
	else if (missing_object(db->sqlstate))
		snprintf(err + len, errlen - len,
		         ": the ksi_sales schema is not the one this binary expects: run "
		         "`ksi-salesd migrate` as the schema owner (README, Roles)");
}

/* The server's notices and warnings (a RAISE WARNING in a migration,
 * "terminating connection due to administrator command") go to our log, one
 * line each, instead of libpq's raw stderr. */
static void on_notice(void *arg, const PGresult *res)
{
	(void)arg;
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	bool warn = severity && strcmp(severity, "NOTICE") != 0 && strcmp(severity, "INFO") != 0 &&
	            strcmp(severity, "LOG") != 0 && strncmp(severity, "DEBUG", 5) != 0;
	log_msg(warn ? LOG_LEVEL_WARNING : LOG_LEVEL_DEBUG, "db", NULL, "PostgreSQL %s: %s%s%s%s",
	        severity ? severity : "notice", msg ? msg : "", hint ? " (hint: " : "",
	        hint ? hint : "", hint ? ")" : "");
}

int db_connect(const char *conninfo, struct db **out, char *err, size_t errlen)
{
	*out = NULL;
	/* expand_dbname lets `dbname` carry a whole conninfo string or URI;
	 * the fallback name shows the daemon in pg_stat_activity. A database
	 * host that drops packets must not hold a connection attempt (and so
	 * a shutdown) for the kernel's minutes: 10 s unless the conninfo or
	 * PGCONNECT_TIMEOUT says otherwise (keywords before dbname are
	 * overridden by what it expands to). */
	const char *timeout = getenv("PGCONNECT_TIMEOUT") ? NULL : "10";
	const char *keys[] = {timeout ? "connect_timeout" : "fallback_application_name", "dbname",
	                      "fallback_application_name", NULL};
	const char *vals[] = {timeout ? timeout : "ksi-salesd",
	                      conninfo && *conninfo ? conninfo : NULL, "ksi-salesd", NULL};
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	if (!conn) {
		dbi_set_err(err, errlen, "out of memory");
		return -1;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		dbi_set_err(err, errlen, "%s", PQerrorMessage(conn));
		PQfinish(conn);
		return -1;
	}
	struct db *db = calloc(1, sizeof(*db));
	if (!db) {
		PQfinish(conn);
		dbi_set_err(err, errlen, "out of memory");
		return -1;
	}
	db->conn = conn;
	PQsetNoticeReceiver(conn, on_notice, NULL);
	/* Timestamps cross the wire as epoch seconds, but text output of
	 * timestamptz (status) should not depend on the server's setting.
	 * The search_path is ours too: our SQL calls now() and friends
	 * unqualified, and a role or database whose search_path puts another
	 * schema first (ALTER ROLE ... SET search_path = evil, pg_catalog)
	 * would otherwise supply them. A SET after connecting, not
	 * options=-csearch_path in the conninfo: it cannot clash with options
	 * the operator gives there, and poolers that refuse startup options
	 * (PgBouncer) pass it. It overrides ALTER ROLE/DATABASE settings, which
	 * apply at session start. pg_temp last, explicitly: unlisted it would
	 * be searched first for tables.
	 * idle_in_transaction_session_timeout: no code here keeps a
	 * transaction open across anything but its own statements, so a
	 * session idle in one for 10 s (the shortest lease) belongs to a
	 * frozen process (SIGSTOP, a paused VM). Its row locks on
	 * connector_state would keep every other daemon from taking over its
	 * connectors, even once their leases expired, for as long as it stays
	 * frozen; the server ends the session instead, its transaction rolls
	 * back whole, and the process finds its connection gone when it wakes
	 * (claims.sh, section 4). */
	if (dbi_exec(db, NULL,
	             "SET TIME ZONE 'UTC'; SET search_path = pg_catalog, ksi_sales, pg_temp;"
	             " SET idle_in_transaction_session_timeout = '10s'",
	             0, NULL, err, errlen) != 0) {
		db_close(db);
		return -1;
	}
	*out = db;
	return 0;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	PQfinish(db->conn);
	free(db);
}

bool db_ok(const struct db *db)
{
	return db && PQstatus(db->conn) == CONNECTION_OK;
}

static int latest_known_version(void)
{
	return migrations_count ? migrations[migrations_count - 1].version : 0;
}

/* READ COMMITTED whatever default_transaction_isolation says: a migration
 * that fills a table from another after locking it (0012's rollup, 0014's
 * fleet days) must read what writers committed up to the lock, not a
 * snapshot taken before it. */
#define MIGRATE_BEGIN "BEGIN ISOLATION LEVEL READ COMMITTED"

/* Inside migrate's transaction: takes the lock, creates the schema and
 * schema_migrations if missing, and reads the version applied so far. */
static int migrate_begin(struct db *db, long *current, char *why, size_t whylen)
{
	/* Serialises concurrent `migrate` runs (two hosts deploying at once):
	 * the second waits, then finds everything applied. */
	if (dbi_exec(db, NULL, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")", 0, NULL, why,
	             whylen) != 0 ||
	    dbi_exec(db, NULL, "SET LOCAL client_min_messages = warning", 0, NULL, why, whylen) !=
	        0)
		return -1;
	/* CREATE SCHEMA IF NOT EXISTS needs the right to create schemas in the
	 * database even when the schema exists: a schema owner that an
	 * administrator created it for may lack that right. */
	PGresult *res = dbi_query(db, DBI_ROWS, NULL, "SELECT to_regnamespace('ksi_sales') IS NULL",
	                          0, NULL, why, whylen);
	if (!res)
		return -1;
	bool missing = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if ((missing && dbi_exec(db, NULL, "CREATE SCHEMA IF NOT EXISTS ksi_sales", 0, NULL, why,
	                         whylen) != 0) ||
	    dbi_exec(db, NULL,
	             "CREATE TABLE IF NOT EXISTS ksi_sales.schema_migrations ("
	             " version integer PRIMARY KEY, name text NOT NULL,"
	             " applied_at timestamptz NOT NULL DEFAULT now())",
	             0, NULL, why, whylen) != 0)
		return -1;
	res = dbi_query(db, DBI_ROWS, NULL,
	                "SELECT coalesce(max(version), 0) FROM ksi_sales.schema_migrations", 0,
	                NULL, why, whylen);
	if (!res)
		return -1;
	*current = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}

/* Applies migration m and records it, inside migrate's transaction. */
static int migrate_apply(struct db *db, const struct migration *m, char *why, size_t whylen)
{
	char what[128];
	snprintf(what, sizeof(what), "migration %s", m->name);
	if (dbi_exec(db, what, m->sql, 0, NULL, why, whylen) != 0)
		return -1;
	char version[16];
	snprintf(version, sizeof(version), "%d", m->version);
	const char *params[] = {version, m->name};
	snprintf(what, sizeof(what), "recording migration %s", m->name);
	return dbi_exec(db, what,
	                "INSERT INTO ksi_sales.schema_migrations (version, name) VALUES ($1, $2)",
	                2, params, why, whylen);
}

/* Commits the migrations applied in the open transaction, logs them, and
 * (unless last) opens the next transaction, taking the lock again and
 * reading the version again: another host may have gone on meanwhile. On
 * failure *in_tx says whether a transaction is still open (to roll back). */
static int migrate_commit(struct db *db, const size_t *done, size_t *ndone, size_t *total,
                          bool last, long *current, bool *in_tx, char *why, size_t whylen)
{
	*in_tx = false; /* a failed COMMIT ends the transaction too */
	if (dbi_exec(db, NULL, "COMMIT", 0, NULL, why, whylen) != 0) {
		char cause[1024];
		snprintf(cause, sizeof(cause), "%s", why);
		dbi_set_err(why, whylen,
		            "committing the migrations: %s (those not logged as applied were not)",
		            cause);
		return -1;
	}
	for (size_t k = 0; k < *ndone; k++)
		log_info("db", NULL, "applied migration %s", migrations[done[k]].name);
	*total += *ndone;
	*ndone = 0;
	if (last)
		return 0;
	if (dbi_exec(db, NULL, MIGRATE_BEGIN, 0, NULL, why, whylen) != 0)
		return -1;
	*in_tx = true;
	return migrate_begin(db, current, why, whylen);
}

int db_migrate(struct db *db, int *applied, char *err, size_t errlen)
{
	*applied = 0;
	char why[1024];
	/* The migrations applied in this transaction, to be logged once it
	 * has committed: a COMMIT can still fail (a deferred constraint, the
	 * connection), and then nothing of this transaction was applied. */
	size_t done[64];
	size_t ndone = 0;
	size_t total = 0; /* committed in earlier transactions of this run */
	long current = 0;
	bool in_tx = true;
	if (dbi_exec(db, NULL, MIGRATE_BEGIN, 0, NULL, why, sizeof(why)) != 0)
		goto fail;
	if (migrate_begin(db, &current, why, sizeof(why)) != 0)
		goto rollback;
	if (current > latest_known_version()) {
		dbi_set_err(
		    why, sizeof(why),
		    "the database schema is at version %ld, newer than this binary knows (%d): "
		    "upgrade ksi-salesd",
		    current, latest_known_version());
		dbi_end_quietly(db, "ROLLBACK");
		db->kind = DB_ERR_SCHEMA;
		goto fail;
	}
	for (size_t i = 0; i < migrations_count; i++) {
		const struct migration *m = &migrations[i];
		/* A step of its own: what came before commits first. */
		if (m->own_transaction && ndone > 0 &&
		    migrate_commit(db, done, &ndone, &total, false, &current, &in_tx, why,
		                   sizeof(why)) != 0)
			goto rollback;
		if (m->version <= current)
			continue;
		if (ndone == sizeof(done) / sizeof(done[0])) {
			dbi_set_err(
			    why, sizeof(why),
			    "more than %zu migrations to apply at once: apply them in steps",
			    ndone);
			db->kind = DB_ERR_OTHER;
			goto rollback;
		}
		if (migrate_apply(db, m, why, sizeof(why)) != 0)
			goto rollback;
		done[ndone++] = i;
		if (m->own_transaction && migrate_commit(db, done, &ndone, &total, false, &current,
		                                         &in_tx, why, sizeof(why)) != 0)
			goto rollback;
	}
	if (migrate_commit(db, done, &ndone, &total, true, &current, &in_tx, why, sizeof(why)) != 0)
		goto fail;
	*applied = (int)total;
	return 0;

rollback:
	/* Keep the first error; the rollback's own outcome changes nothing
	 * (db->kind keeps the failure's kind). Migrations already committed
	 * in a transaction of their own stay applied (and were logged). */
	if (in_tx)
		dbi_end_quietly(db, "ROLLBACK");
fail:
	*applied = (int)total;
	dbi_set_err(err, errlen, "%s", why);
	dbi_add_remedy(db, true, err, errlen);
	return -1;
}

int db_check_schema(struct db *db, char *err, size_t errlen)
{
	PGresult *res = dbi_query(
	    db, DBI_ROWS, NULL, "SELECT coalesce(max(version), 0) FROM ksi_sales.schema_migrations",
	    0, NULL, err, errlen);
	if (!res) {
		/* undefined_table, invalid_schema_name */
		if (strcmp(db->sqlstate, "42P01") == 0 || strcmp(db->sqlstate, "3F000") == 0) {
			dbi_set_err(
			    err, errlen,
			    "the ksi_sales schema is missing (SQLSTATE %s): run `ksi-salesd "
			    "migrate` as the role that is to own it (README, Roles)",
			    db->sqlstate);
			db->kind = DB_ERR_SCHEMA;
		} else {
			dbi_add_remedy(db, false, err, errlen);
		}
		return -1;
	}
	long current = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	db->kind = current == latest_known_version() ? DB_ERR_NONE : DB_ERR_SCHEMA;
	if (current < latest_known_version()) {
		dbi_set_err(err, errlen,
		            "the ksi_sales schema is at version %ld, this binary needs %d: "
		            "run `ksi-salesd migrate`",
		            current, latest_known_version());
		return -1;
	}
	if (current > latest_known_version()) {
		dbi_set_err(err, errlen,
		            "the ksi_sales schema is at version %ld, newer than this binary "
		            "knows (%d): upgrade ksi-salesd",
		            current, latest_known_version());
		return -1;
	}
	return 0;
}

int db_listen(struct db *db, char *err, size_t errlen)
{
	return dbi_exec(db, NULL, "LISTEN " DB_NOTIFY_CHANNEL, 0, NULL, err, errlen);
}

int db_socket(const struct db *db)
{
	return db ? PQsocket(db->conn) : -1;
}

int db_take_notifications(struct db *db)
{
	if (!PQconsumeInput(db->conn))
		return -1;
	int n = 0;
	PGnotify *note;
	while ((note = PQnotifies(db->conn))) {
		n++;
		PQfreemem(note);
	}
	return n;
}

bool db_alive(struct db *db)
{
	/* Read whatever the server sent while we were idle: a FATAL
	 * "terminating connection" message, then the end of the stream, which
	 * libpq only notices on the read after the one that got the message. */
	for (int i = 0; i < 16 && PQstatus(db->conn) == CONNECTION_OK; i++) {
		struct pollfd p = {.fd = PQsocket(db->conn), .events = POLLIN};
		if (poll(&p, 1, 0) <= 0)
			break;
		if (!PQconsumeInput(db->conn))
			return false;
		PGnotify *note;
		while ((note = PQnotifies(db->conn)))
			PQfreemem(note);
	}
	return PQstatus(db->conn) == CONNECTION_OK;
}

int db_exec(struct db *db, const char *sql, char *err, size_t errlen)
{
	return dbi_exec(db, NULL, sql, 0, NULL, err, errlen);
}

int64_t dbi_int64(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

char *dbi_dup(const PGresult *res, int row, int col, bool *oom)
{
	if (PQgetisnull(res, row, col))
		return NULL;
	char *s = strdup(PQgetvalue(res, row, col));
	if (!s)
		*oom = true;
	return s;
}

void dbi_add_ids(struct sbuf *b, const int64_t *ids, size_t n)
{
	sbuf_addc(b, '{');
	for (size_t i = 0; i < n; i++)
		sbuf_printf(b, i ? ",%" PRId64 : "%" PRId64, ids[i]);
	sbuf_addc(b, '}');
}

void dbi_add_array_text(struct sbuf *b, const char *s)
{
	sbuf_addc(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			sbuf_addc(b, '\\');
		sbuf_addc(b, *s);
	}
	sbuf_addc(b, '"');
}
