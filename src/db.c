/* db: PostgreSQL access for ksi-salesd (SPEC §4, §5). The only module that
 * includes libpq-fe.h. Every statement is parameterised; values travel as
 * text, timestamps as epoch seconds turned into timestamptz by the server,
 * arrays as array literals built here with their quoting rules. */
#include "db.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "log.h"
#include "migrations.h"
#include "sbuf.h"

/* Any constant works: it only has to be the same for every migrating host. */
#define MIGRATE_LOCK_KEY "7233879461275471169"

struct db {
	PGconn *conn;
	enum db_error_kind kind; /* of the last statement run through sql_exec/sql_params */
};

/* Appends s as one quoted element of a text[] literal: "a\"b". */
static void sbuf_add_array_text(struct sbuf *b, const char *s)
{
	sbuf_addc(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			sbuf_addc(b, '\\');
		sbuf_addc(b, *s);
	}
	sbuf_addc(b, '"');
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	/* libpq messages end in a newline; the caller adds its own context. */
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

/* PQexec and PQexecParams, keeping what the outcome says about the cause
 * (db_error_kind). ROLLBACKs after a failure go to PQexec directly, so that
 * they do not hide the failure's kind. */
static PGresult *sql_exec(struct db *db, const char *sql)
{
	PGresult *res = PQexec(db->conn, sql);
	db->kind = kind_of(db, res);
	return res;
}

static PGresult *sql_params(struct db *db, const char *sql, int n, const Oid *types, const char *const *values,
			    const int *lengths, const int *formats, int result_format)
{
	PGresult *res = PQexecParams(db->conn, sql, n, types, values, lengths, formats, result_format);
	db->kind = kind_of(db, res);
	return res;
}

enum db_error_kind db_error_kind(const struct db *db)
{
	return db->kind;
}

/* Appends to err what the operator can do about a read-only database or a
 * missing privilege (db->kind), for the daemon's commands or for migrate. */
static void add_remedy(const struct db *db, bool migrating, char *err, size_t errlen)
{
	size_t len = strlen(err);
	if (len >= errlen)
		return;
	const char *user = PQuser(db->conn);
	if (db->kind == DB_ERR_READ_ONLY)
		snprintf(err + len, errlen - len,
			 " (the database is read-only for role %s: a hot standby, or default_transaction_read_only: "
			 "connect to the primary; with several hosts, add target_session_attrs=read-write)",
			 user);
	else if (db->kind == DB_ERR_PRIVILEGE && migrating)
		snprintf(err + len, errlen - len,
			 " (role %s may not do this: run `ksi-salesd migrate` as the owner of the ksi_sales schema, "
			 "a role that may create schemas in this database the first time)",
			 user);
	else if (db->kind == DB_ERR_PRIVILEGE)
		snprintf(err + len, errlen - len,
			 " (role %s lacks a privilege on ksi_sales: GRANT ksi_salesd_daemon TO %s; if it has it, "
			 "run SELECT ksi_sales.grant_role_privileges(); as the schema owner)",
			 user, user);
}

/* Runs a statement that returns no rows of interest; -1 with the server's
 * message in err on failure. */
static int exec_simple(struct db *db, const char *sql, char *err, size_t errlen)
{
	PGresult *res = sql_exec(db, sql);
	ExecStatusType st = PQresultStatus(res);
	int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : -1;
	if (rc != 0)
		set_err(err, errlen, "%s", PQresultErrorMessage(res));
	PQclear(res);
	return rc;
}

/* The server's notices and warnings (a RAISE WARNING in a migration, "terminating
 * connection due to administrator command") go to our log, one line each,
 * instead of libpq's raw stderr. */
static void on_notice(void *arg, const PGresult *res)
{
	(void)arg;
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	bool warn = severity && strcmp(severity, "NOTICE") != 0 && strcmp(severity, "INFO") != 0 &&
		    strcmp(severity, "LOG") != 0 && strncmp(severity, "DEBUG", 5) != 0;
	log_msg(warn ? LOG_LEVEL_WARNING : LOG_LEVEL_DEBUG, "db", NULL, "PostgreSQL %s: %s%s%s%s",
		severity ? severity : "notice", msg ? msg : "", hint ? " (hint: " : "", hint ? hint : "",
		hint ? ")" : "");
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
	const char *vals[] = {timeout ? timeout : "ksi-salesd", conninfo && *conninfo ? conninfo : NULL,
			      "ksi-salesd", NULL};
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	if (!conn) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		set_err(err, errlen, "%s", PQerrorMessage(conn));
		PQfinish(conn);
		return -1;
	}
	struct db *db = calloc(1, sizeof(*db));
	if (!db) {
		PQfinish(conn);
		set_err(err, errlen, "out of memory");
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
	 * be searched first for tables. */
	if (exec_simple(db, "SET TIME ZONE 'UTC'; SET search_path = pg_catalog, ksi_sales, pg_temp", err,
			errlen) != 0) {
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

int db_migrate(struct db *db, int *applied, char *err, size_t errlen)
{
	*applied = 0;
	char why[1024];
	/* The migrations applied in this transaction, to be logged once it
	 * has committed: a COMMIT can still fail (a deferred constraint, the
	 * connection), and then nothing was applied. */
	size_t done[64];
	size_t ndone = 0;
	if (exec_simple(db, "BEGIN", why, sizeof(why)) != 0)
		goto fail;
	/* Serialises concurrent `migrate` runs (two hosts deploying at once):
	 * the second waits, then finds everything applied. */
	if (exec_simple(db, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")", why,
	                sizeof(why)) != 0 ||
	    exec_simple(db, "SET LOCAL client_min_messages = warning", why, sizeof(why)) != 0)
		goto rollback;
	/* CREATE SCHEMA IF NOT EXISTS needs the right to create schemas in the
	 * database even when the schema exists: a schema owner that an
	 * administrator created it for may lack that right. */
	PGresult *res = sql_exec(db, "SELECT to_regnamespace('ksi_sales') IS NULL");
	bool missing =
	    PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		set_err(why, sizeof(why), "%s", PQresultErrorMessage(res));
		PQclear(res);
		goto rollback;
	}
	PQclear(res);
	if ((missing &&
	     exec_simple(db, "CREATE SCHEMA IF NOT EXISTS ksi_sales", why, sizeof(why)) != 0) ||
	    exec_simple(db,
	                "CREATE TABLE IF NOT EXISTS ksi_sales.schema_migrations ("
	                " version integer PRIMARY KEY, name text NOT NULL,"
	                " applied_at timestamptz NOT NULL DEFAULT now())",
	                why, sizeof(why)) != 0)
		goto rollback;

	res = sql_exec(db, "SELECT coalesce(max(version), 0) FROM ksi_sales.schema_migrations");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		set_err(why, sizeof(why), "%s", PQresultErrorMessage(res));
		PQclear(res);
		goto rollback;
	}
	long current = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (current > latest_known_version()) {
		set_err(why, sizeof(why),
		        "the database schema is at version %ld, newer than this binary knows (%d): "
		        "upgrade ksi-salesd",
		        current, latest_known_version());
		PQclear(PQexec(db->conn, "ROLLBACK"));
		db->kind = DB_ERR_SCHEMA;
		goto fail;
	}

	for (size_t i = 0; i < migrations_count; i++) {
		const struct migration *m = &migrations[i];
		if (m->version <= current)
			continue;
		if (ndone == sizeof(done) / sizeof(done[0])) {
			set_err(why, sizeof(why),
			        "more than %zu migrations to apply at once: apply them in steps",
			        ndone);
			db->kind = DB_ERR_OTHER;
			goto rollback;
		}
		res = sql_exec(db, m->sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK &&
		    PQresultStatus(res) != PGRES_TUPLES_OK) {
			set_err(why, sizeof(why), "migration %s: %s", m->name,
			        PQresultErrorMessage(res));
			PQclear(res);
			goto rollback;
		}
		PQclear(res);
		char version[16];
		snprintf(version, sizeof(version), "%d", m->version);
		const char *params[] = {version, m->name};
		res = sql_params(
		    db, "INSERT INTO ksi_sales.schema_migrations (version, name) VALUES ($1, $2)",
		    2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			set_err(why, sizeof(why), "recording migration %s: %s", m->name,
			        PQresultErrorMessage(res));
			PQclear(res);
			goto rollback;
		}
		PQclear(res);
		done[ndone++] = i;
	}
	if (exec_simple(db, "COMMIT", why, sizeof(why)) != 0) {
		set_err(err, errlen, "committing the migrations: %s (nothing was applied)", why);
		add_remedy(db, true, err, errlen);
		return -1;
	}
	for (size_t k = 0; k < ndone; k++)
		log_info("db", NULL, "applied migration %s", migrations[done[k]].name);
	*applied = (int)ndone;
	return 0;

rollback:
	/* Keep the first error; the rollback's own outcome changes nothing
	 * (PQexec directly: db->kind keeps the failure's kind). */
	PQclear(PQexec(db->conn, "ROLLBACK"));
fail:
	*applied = 0;
	set_err(err, errlen, "%s", why);
	add_remedy(db, true, err, errlen);
	return -1;
}

int db_check_schema(struct db *db, char *err, size_t errlen)
{
	PGresult *res = sql_exec(db, "SELECT coalesce(max(version), 0) FROM ksi_sales.schema_migrations");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (state && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0)) {
			set_err(err, errlen, "the ksi_sales schema is missing: run `ksi-salesd migrate`");
			db->kind = DB_ERR_SCHEMA;
		} else {
			set_err(err, errlen, "%s", PQresultErrorMessage(res));
			add_remedy(db, false, err, errlen);
		}
		PQclear(res);
		return -1;
	}
	long current = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	db->kind = current == latest_known_version() ? DB_ERR_NONE : DB_ERR_SCHEMA;
	if (current < latest_known_version()) {
		set_err(err, errlen, "the ksi_sales schema is at version %ld, this binary needs %d: "
			"run `ksi-salesd migrate`", current, latest_known_version());
		return -1;
	}
	if (current > latest_known_version()) {
		set_err(err, errlen, "the ksi_sales schema is at version %ld, newer than this binary "
			"knows (%d): upgrade ksi-salesd", current, latest_known_version());
		return -1;
	}
	return 0;
}

static int64_t get_int64(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static char *dup_value(const PGresult *res, int row, int col, bool *oom)
{
	if (PQgetisnull(res, row, col))
		return NULL;
	char *s = strdup(PQgetvalue(res, row, col));
	if (!s)
		*oom = true;
	return s;
}

static int cmp_connector_id(const void *key, const void *elem)
{
	int64_t id = *(const int64_t *)key;
	const struct connector *c = elem;
	return id < c->id ? -1 : id > c->id;
}

/* Loads enabled connectors (any, when !enabled_only; only those in ids, a
 * bigint[] literal, unless NULL) with their codes. Runs inside the caller's
 * transaction, so codes and connectors come from one snapshot. */
static int load_connectors(struct db *db, const char *ids, bool enabled_only, struct connector **out, size_t *n,
			   char *err, size_t errlen)
{
	*out = NULL;
	*n = 0;
	const char *params[] = {ids, enabled_only ? "true" : "false"};
	PGresult *cres = sql_params(db,
		"SELECT c.id, c.name, c.endpoint_url, c.bearer_token, c.timezone,"
		" extract(epoch FROM c.poll_interval)::bigint,"
		" extract(epoch FROM c.lookback)::bigint,"
		" extract(epoch FROM c.initial_backfill)::bigint,"
		" extract(epoch FROM c.max_window)::bigint,"
		" extract(epoch FROM c.request_timeout)::bigint,"
		" extract(epoch FROM st.synced_until)::bigint,"
		" coalesce(st.lease_epoch, 0), coalesce(st.failures, 0)"
		" FROM ksi_sales.connectors c"
		" LEFT JOIN ksi_sales.connector_state st ON st.connector_id = c.id"
		" WHERE (c.enabled OR NOT $2::boolean) AND ($1::bigint[] IS NULL OR c.id = ANY ($1::bigint[]))"
		" ORDER BY c.id",
		2, NULL, params, NULL, NULL, 0);
	/* COLLATE "C" sorts by bytes, the order strcmp and the validator use. */
	PGresult *sres = sql_params(db,
		"SELECT s.connector_id, s.ext_ref_code FROM ksi_sales.stores s"
		" JOIN ksi_sales.connectors c ON c.id = s.connector_id"
		" WHERE (c.enabled OR NOT $2::boolean) AND s.ext_ref_code IS NOT NULL"
		" AND ($1::bigint[] IS NULL OR c.id = ANY ($1::bigint[]))"
		" ORDER BY s.connector_id, s.ext_ref_code COLLATE \"C\"",
		2, NULL, params, NULL, NULL, 0);
	int rc = -1;
	struct connector *v = NULL;
	int rows = 0;
	if (PQresultStatus(cres) != PGRES_TUPLES_OK || PQresultStatus(sres) != PGRES_TUPLES_OK) {
		set_err(err, errlen, "loading connectors: %s",
			PQresultErrorMessage(PQresultStatus(cres) != PGRES_TUPLES_OK ? cres : sres));
		goto out;
	}
	rows = PQntuples(cres);
	v = calloc(rows ? (size_t)rows : 1, sizeof(*v));
	if (!v)
		goto oom;
	bool oom = false;
	for (int i = 0; i < rows; i++) {
		struct connector *c = &v[i];
		c->id = get_int64(cres, i, 0);
		c->name = dup_value(cres, i, 1, &oom);
		c->endpoint_url = dup_value(cres, i, 2, &oom);
		c->bearer_token = dup_value(cres, i, 3, &oom);
		c->timezone = dup_value(cres, i, 4, &oom);
		c->poll_interval = get_int64(cres, i, 5);
		c->lookback = get_int64(cres, i, 6);
		c->initial_backfill = get_int64(cres, i, 7);
		c->max_window = get_int64(cres, i, 8);
		c->request_timeout = get_int64(cres, i, 9);
		c->has_synced = !PQgetisnull(cres, i, 10);
		c->synced_until = c->has_synced ? get_int64(cres, i, 10) : 0;
		c->lease_epoch = get_int64(cres, i, 11);
		c->failures = (unsigned)get_int64(cres, i, 12);
	}
	if (oom)
		goto oom;
	/* Stores come ordered by connector: count, then fill, per connector. */
	int srows = PQntuples(sres);
	for (int i = 0; i < srows;) {
		int64_t id = get_int64(sres, i, 0);
		int j = i;
		while (j < srows && get_int64(sres, j, 0) == id)
			j++;
		struct connector *c = bsearch(&id, v, (size_t)rows, sizeof(*v), cmp_connector_id);
		if (c) {
			c->codes = calloc((size_t)(j - i), sizeof(char *));
			if (!c->codes)
				goto oom;
			for (int k = i; k < j; k++) {
				c->codes[c->ncodes] = dup_value(sres, k, 1, &oom);
				if (oom)
					goto oom;
				c->ncodes++;
			}
		}
		i = j;
	}
	*out = v;
	*n = (size_t)rows;
	v = NULL;
	rc = 0;
	goto out;
oom:
	set_err(err, errlen, "out of memory loading connectors");
out:
	connectors_free(v, (size_t)rows);
	PQclear(cres);
	PQclear(sres);
	return rc;
}

int db_load_connector_by_name(struct db *db, const char *name, struct connector *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	char why[1024];
	const char *params[] = {name};
	if (exec_simple(db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", why, sizeof(why)) != 0) {
		set_err(err, errlen, "%s", why);
		return -1;
	}
	PGresult *res = sql_params(db,
		"SELECT '{' || id || '}', enabled FROM ksi_sales.connectors WHERE name = $1", 1, NULL, params, NULL,
		NULL, 0);
	int rc = -1;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		set_err(err, errlen, "%s", PQresultErrorMessage(res));
	} else if (PQntuples(res) == 0) {
		set_err(err, errlen, "no connector is named \"%s\"", name);
		rc = 1;
	} else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
		set_err(err, errlen, "connector \"%s\" is disabled", name);
		rc = 1;
	} else {
		struct connector *v = NULL;
		size_t n = 0;
		if (load_connectors(db, PQgetvalue(res, 0, 0), true, &v, &n, err, errlen) == 0 && n == 1) {
			*out = v[0];
			free(v);
			rc = 0;
		} else {
			connectors_free(v, n);
		}
	}
	PQclear(res);
	PQclear(PQexec(db->conn, "COMMIT"));
	return rc;
}

int db_claim(struct db *db, const char *owner, int64_t lease_s, size_t limit, bool ignore_schedule,
	     int64_t after_id, struct connector **out, size_t *n, char *err, size_t errlen)
{
	*out = NULL;
	*n = 0;
	char why[1024];
	char lease[32], lim[32], after[32];
	snprintf(lease, sizeof(lease), "%" PRId64, lease_s);
	snprintf(lim, sizeof(lim), "%zu", limit);
	snprintf(after, sizeof(after), "%" PRId64, ignore_schedule ? after_id : INT64_MIN);
	const char *params[] = {owner, lease, lim, ignore_schedule ? "true" : "false", after};
	if (exec_simple(db, "BEGIN", why, sizeof(why)) != 0) {
		set_err(err, errlen, "%s", why);
		return -1;
	}
	/* SKIP LOCKED: daemons claiming at the same moment take disjoint
	 * sets instead of queueing behind each other. A lease still running
	 * (another daemon's, or ours for a poll in flight) is left alone. */
	PGresult *res = sql_params(db,
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
		"  ORDER BY CASE WHEN $4::boolean THEN NULL ELSE s.next_poll END NULLS FIRST, s.connector_id"
		"  LIMIT $3::bigint FOR UPDATE OF s SKIP LOCKED) due"
		" WHERE st.connector_id = due.connector_id"
		" RETURNING st.connector_id",
		5, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		set_err(err, errlen, "claiming connectors: %s", PQresultErrorMessage(res));
		add_remedy(db, false, err, errlen);
		PQclear(res);
		PQclear(PQexec(db->conn, "ROLLBACK"));
		return -1;
	}
	int rc = 0;
	int rows = PQntuples(res);
	if (rows > 0) {
		struct sbuf ids = {0};
		sbuf_addc(&ids, '{');
		for (int i = 0; i < rows; i++) {
			if (i)
				sbuf_addc(&ids, ',');
			sbuf_add(&ids, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
		}
		sbuf_addc(&ids, '}');
		if (ids.failed) {
			set_err(err, errlen, "out of memory claiming connectors");
			rc = -1;
		} else {
			rc = load_connectors(db, ids.data, true, out, n, err, errlen);
		}
		free(ids.data);
	}
	PQclear(res);
	if (rc == 0 && exec_simple(db, "COMMIT", why, sizeof(why)) != 0) {
		set_err(err, errlen, "claiming connectors: %s", why);
		connectors_free(*out, *n);
		*out = NULL;
		*n = 0;
		return -1;
	}
	if (rc != 0)
		PQclear(PQexec(db->conn, "ROLLBACK"));
	return rc;
}

int db_claim_connector(struct db *db, const char *owner, int64_t lease_s, int64_t connector_id, int64_t *epoch,
		       char *holder, size_t holderlen, char *err, size_t errlen)
{
	char id[32], lease[32];
	snprintf(id, sizeof(id), "%" PRId64, connector_id);
	snprintf(lease, sizeof(lease), "%" PRId64, lease_s);
	const char *params[] = {owner, lease, id};
	PGresult *res = sql_params(db,
		"UPDATE ksi_sales.connector_state"
		" SET lease_owner = $1, lease_expires = now() + make_interval(secs => $2::bigint),"
		"  lease_epoch = lease_epoch + 1"
		" WHERE connector_id = $3::bigint AND (lease_expires IS NULL OR lease_expires <= now())"
		" RETURNING lease_epoch",
		3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		set_err(err, errlen, "claiming the connector: %s", PQresultErrorMessage(res));
		add_remedy(db, false, err, errlen);
		PQclear(res);
		return -1;
	}
	if (PQntuples(res) == 1) {
		*epoch = get_int64(res, 0, 0);
		PQclear(res);
		return 0;
	}
	PQclear(res);
	const char *p1[] = {id};
	res = sql_params(db,
		"SELECT coalesce(lease_owner, '?') || ' until '"
		" || to_char(lease_expires, 'YYYY-MM-DD HH24:MI:SS\"Z\"')"
		" FROM ksi_sales.connector_state WHERE connector_id = $1::bigint",
		1, NULL, p1, NULL, NULL, 0);
	snprintf(holder, holderlen, "%s",
		 PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "?");
	PQclear(res);
	return 1;
}

int db_release_lease(struct db *db, const char *owner, int64_t connector_id, int64_t epoch, char *err,
		     size_t errlen)
{
	char id[32], ep[32];
	snprintf(id, sizeof(id), "%" PRId64, connector_id);
	snprintf(ep, sizeof(ep), "%" PRId64, epoch);
	const char *params[] = {id, owner, ep};
	PGresult *res = sql_params(db,
		"UPDATE ksi_sales.connector_state SET lease_owner = NULL, lease_expires = NULL"
		" WHERE connector_id = $1::bigint AND lease_owner = $2 AND lease_epoch = $3::bigint",
		3, NULL, params, NULL, NULL, 0);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc != 0)
		set_err(err, errlen, "releasing the lease: %s", PQresultErrorMessage(res));
	PQclear(res);
	return rc;
}

int db_count_leased_elsewhere(struct db *db, const char *owner, long *n, char *err, size_t errlen)
{
	const char *params[] = {owner};
	PGresult *res = sql_params(db,
		"SELECT count(*) FROM ksi_sales.connector_state s"
		" JOIN ksi_sales.connectors c ON c.id = s.connector_id"
		" WHERE c.enabled AND s.lease_expires > now() AND s.lease_owner <> $1"
		" AND EXISTS (SELECT 1 FROM ksi_sales.stores x WHERE x.connector_id = c.id)",
		1, NULL, params, NULL, NULL, 0);
	int rc = PQresultStatus(res) == PGRES_TUPLES_OK ? 0 : -1;
	if (rc == 0)
		*n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	else
		set_err(err, errlen, "%s", PQresultErrorMessage(res));
	PQclear(res);
	return rc;
}

int db_renew(struct db *db, const char *owner, int64_t lease_s, char *err, size_t errlen)
{
	char lease[32];
	snprintf(lease, sizeof(lease), "%" PRId64, lease_s);
	const char *params[] = {owner, lease};
	PGresult *res = sql_params(db,
		"UPDATE ksi_sales.connector_state"
		" SET lease_expires = now() + make_interval(secs => $2::bigint)"
		" WHERE lease_owner = $1 AND lease_expires > now()",
		2, NULL, params, NULL, NULL, 0);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc != 0)
		set_err(err, errlen, "renewing leases: %s", PQresultErrorMessage(res));
	PQclear(res);
	return rc;
}

int db_release_all(struct db *db, const char *owner, char *err, size_t errlen)
{
	const char *params[] = {owner};
	/* One statement: connector leases released, and the request rows
	 * still running put back to pending for the next daemon (a backfill
	 * resumes at its done_until). */
	PGresult *res = sql_params(db,
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
		1, NULL, params, NULL, NULL, 0);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc != 0)
		set_err(err, errlen, "releasing leases: %s", PQresultErrorMessage(res));
	PQclear(res);
	return rc;
}

int db_release_stale(struct db *db, const char *owner, const int64_t *keep, size_t nkeep, char *err,
		     size_t errlen)
{
	struct sbuf ids = {0};
	sbuf_addc(&ids, '{');
	for (size_t i = 0; i < nkeep; i++)
		sbuf_printf(&ids, i ? ",%" PRId64 : "%" PRId64, keep[i]);
	sbuf_addc(&ids, '}');
	if (ids.failed) {
		free(ids.data);
		set_err(err, errlen, "out of memory");
		return -1;
	}
	const char *params[] = {owner, ids.data};
	PGresult *res = sql_params(db,
		"UPDATE ksi_sales.connector_state SET lease_owner = NULL, lease_expires = NULL"
		" WHERE lease_owner = $1 AND NOT (connector_id = ANY ($2::bigint[]))",
		2, NULL, params, NULL, NULL, 0);
	free(ids.data);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc != 0)
		set_err(err, errlen, "releasing stale leases: %s", PQresultErrorMessage(res));
	PQclear(res);
	return rc;
}

int db_listen(struct db *db, char *err, size_t errlen)
{
	return exec_simple(db, "LISTEN " DB_NOTIFY_CHANNEL, err, errlen);
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
	PGresult *res = PQexec(db->conn, sql);
	ExecStatusType st = PQresultStatus(res);
	int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
	if (rc != 0)
		snprintf(err, errlen, "%s", PQerrorMessage(db->conn));
	PQclear(res);
	return rc;
}

bool db_error_is_lease_lost(const char *err)
{
	return err && strstr(err, "lease on connector") != NULL;
}

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
	return (size_t)o < sizeof(outcome_names) / sizeof(outcome_names[0]) ? outcome_names[o] : "unknown";
}

/* One statement, hence one transaction, for any number of requests'
 * results (each of a different connector): the upserts, the run rows,
 * their refusals and the advances of synced_until commit together or not
 * at all (data-modifying CTEs always run to completion, read or not). Every
 * run's lease is checked first (fencing: lease_check raises, which aborts
 * the whole statement). Rows are upserted in (store_id, hour) order so
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
	"  FROM unnest($16::integer[], $17::text[], $18::bigint[], $19::integer[]) AS u(k, code, hour, n)"
	"  JOIN runs r ON r.k = u.k"
	"), upserted AS ("
	"  INSERT INTO ksi_sales.sales_hourly AS h"
	"   (store_id, hour, num_tickets, ext_ref_code, connector_id, fetched_at, first_seen, last_changed)"
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
	" SELECT k, n FROM counts ORDER BY k";

/* The parameters of write_runs_sql, each an array literal built in an sbuf. */
enum {
	W_CONNECTOR, W_FROM, W_TO, W_CODES, W_STARTED, W_FINISHED, W_STATUS, W_OUTCOME, W_RECEIVED,
	W_REJECTED, W_BYTES, W_ERROR, W_ADVANCE, W_OWNER, W_EPOCH,
	W_REC_K, W_REC_CODE, W_REC_HOUR, W_REC_N,
	W_REF_K, W_REF_POS, W_REF_REASON, W_REF_DETAIL, W_REF_RECORD,
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
		sbuf_add_array_text(b, s);
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

/* Writes runs[0..n) in one statement (see write_runs_sql): all or nothing.
 * upserted[i] gets run i's rows written. */
static int write_runs(struct db *db, const struct db_run *const *runs, size_t n, long *upserted, char *err,
		      size_t errlen)
{
	struct sbuf a[W_NPARAMS] = {0};
	const char *p[W_NPARAMS];
	for (size_t i = 0; i < n; i++) {
		upserted[i] = 0;
		add_run(a, runs[i], (int64_t)i + 1);
	}
	int rc = -1;
	bool failed = false;
	for (int i = 0; i < W_NPARAMS; i++) {
		sbuf_puts(&a[i], a[i].len ? "}" : "{}");
		failed |= a[i].failed;
		p[i] = a[i].data;
	}
	if (failed) {
		set_err(err, errlen, "out of memory building the write");
		goto out;
	}
	PGresult *res = sql_params(db, write_runs_sql, W_NPARAMS, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && (size_t)PQntuples(res) == n) {
		for (size_t i = 0; i < n; i++)
			upserted[i] = strtol(PQgetvalue(res, (int)i, 1), NULL, 10);
		rc = 0;
	} else {
		set_err(err, errlen, "%s", PQresultErrorMessage(res));
	}
	PQclear(res);
out:
	for (int i = 0; i < W_NPARAMS; i++)
		free(a[i].data);
	return rc;
}

int db_write_run(struct db *db, const struct db_run *run, long *upserted, char *err, size_t errlen)
{
	return write_runs(db, &run, 1, upserted, err, errlen);
}

/* Ends the polls of w[0..n) that are poll ends, in one statement: each
 * lease is released (only if still its owner's, that epoch) and the
 * connector's next poll and consecutive failures set. */
static int finish_many(struct db *db, struct db_write *const *w, size_t n, char *err, size_t errlen)
{
	struct sbuf a[5] = {0};
	const char *p[5];
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		const struct db_finish *f = w[i]->finish;
		if (!f)
			continue;
		arr_int(&a[0], f->connector_id);
		arr_text(&a[1], f->owner);
		arr_int(&a[2], f->epoch);
		arr_int(&a[3], f->next_poll);
		arr_int(&a[4], f->failures);
		m++;
	}
	if (m == 0)
		return 0;
	int rc = -1;
	bool failed = false;
	for (int i = 0; i < 5; i++) {
		sbuf_puts(&a[i], "}");
		failed |= a[i].failed;
		p[i] = a[i].data;
	}
	if (failed) {
		set_err(err, errlen, "out of memory building the write");
		goto out;
	}
	PGresult *res = sql_params(db,
		"UPDATE ksi_sales.connector_state st SET lease_owner = NULL, lease_expires = NULL,"
		"  next_poll = to_timestamp(u.next_poll), failures = u.failures"
		" FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::integer[])"
		"  AS u(connector_id, owner, epoch, next_poll, failures)"
		" WHERE st.connector_id = u.connector_id AND st.lease_owner = u.owner"
		"  AND st.lease_epoch = u.epoch",
		5, NULL, p, NULL, NULL, 0);
	rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc != 0)
		set_err(err, errlen, "releasing the leases: %s", PQresultErrorMessage(res));
	PQclear(res);
out:
	for (int i = 0; i < 5; i++)
		free(a[i].data);
	return rc;
}

/* Does w alone, as if it were the only write. */
static void write_one(struct db *db, struct db_write *w)
{
	db->kind = DB_ERR_NONE;
	if (w->run)
		w->rc = db_write_run(db, w->run, &w->upserted, w->err, sizeof(w->err));
	else if (w->finish)
		w->rc = finish_many(db, &w, 1, w->err, sizeof(w->err));
	else
		w->rc = 0;
	w->kind = w->rc != 0 ? db->kind : DB_ERR_NONE;
	if (w->rc != 0)
		add_remedy(db, false, w->err, sizeof(w->err));
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

void db_write_batch(struct db *db, struct db_write *const *w, size_t n)
{
	size_t nruns = 0;
	for (size_t i = 0; i < n; i++) {
		w[i]->rc = -1;
		w[i]->err[0] = '\0';
		w[i]->upserted = 0;
		nruns += w[i]->run != NULL;
	}
	if (n == 1 || !distinct_connectors(w, n))
		goto one_by_one;

	/* Together: one transaction, one statement for the results and one
	 * for the ends of polls. Any failure (a lost lease, a constraint, the
	 * connection) rolls all of it back, and each write is then tried on
	 * its own so only the one at fault fails. */
	const struct db_run **runs = calloc(nruns ? nruns : 1, sizeof(*runs));
	long *upserted = calloc(nruns ? nruns : 1, sizeof(*upserted));
	char err[1024];
	bool ok = runs && upserted && exec_simple(db, "BEGIN", err, sizeof(err)) == 0;
	if (ok) {
		size_t m = 0;
		for (size_t i = 0; i < n; i++)
			if (w[i]->run)
				runs[m++] = w[i]->run;
		ok = (m == 0 || write_runs(db, runs, m, upserted, err, sizeof(err)) == 0) &&
		     finish_many(db, w, n, err, sizeof(err)) == 0 && exec_simple(db, "COMMIT", err, sizeof(err)) == 0;
		if (!ok && PQtransactionStatus(db->conn) != PQTRANS_IDLE)
			(void)exec_simple(db, "ROLLBACK", err, sizeof(err));
		if (ok)
			for (size_t i = 0, k = 0; i < n; i++) {
				w[i]->rc = 0;
				if (w[i]->run)
					w[i]->upserted = upserted[k++];
			}
	}
	free(runs);
	free(upserted);
	if (ok)
		return;
one_by_one:
	for (size_t i = 0; i < n; i++)
		write_one(db, w[i]);
}

/* connector_health as one JSON document, built by the server. */
static int print_status_json(struct db *db, char *err, size_t errlen)
{
	PGresult *res = sql_exec(db,
		"SELECT coalesce(json_agg(h ORDER BY h.state = 'failing' DESC, h.name), '[]')"
		" FROM ksi_sales.connector_health h");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		set_err(err, errlen, "%s", PQresultErrorMessage(res));
		add_remedy(db, false, err, errlen);
		PQclear(res);
		return -1;
	}
	printf("%s\n", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

int db_print_status(struct db *db, bool json, char *err, size_t errlen)
{
	if (json)
		return print_status_json(db, err, errlen);
	PGresult *res = sql_exec(db,
		"SELECT name, state, stores::text, coalesce(last_outcome, '-'),"
		" coalesce(to_char(last_success, 'YYYY-MM-DD HH24:MI:SS\"Z\"'), '-'),"
		" consecutive_failures::text,"
		" coalesce(to_char(synced_until, 'YYYY-MM-DD HH24:MI\"Z\"'), '-'),"
		" rows_last_24h::text, coalesce(last_error, '')"
		" FROM ksi_sales.connector_health"
		" ORDER BY state = 'failing' DESC, name");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		set_err(err, errlen, "%s", PQresultErrorMessage(res));
		add_remedy(db, false, err, errlen);
		PQclear(res);
		return -1;
	}
	static const char *const heads[] = {"CONNECTOR", "STATE", "STORES", "LAST OUTCOME",
					    "LAST SUCCESS", "FAILURES", "SYNCED UNTIL", "ROWS 24H",
					    "LAST ERROR"};
	enum { NCOLS = sizeof(heads) / sizeof(heads[0]) };
	int width[NCOLS];
	int rows = PQntuples(res);
	for (int c = 0; c < NCOLS; c++) {
		width[c] = (int)strlen(heads[c]);
		for (int r = 0; r < rows; r++) {
			int w = PQgetlength(res, r, c);
			if (w > width[c])
				width[c] = w;
		}
	}
	for (int c = 0; c < NCOLS; c++)
		printf("%-*s%s", c == NCOLS - 1 ? 0 : width[c], heads[c], c == NCOLS - 1 ? "\n" : "  ");
	for (int r = 0; r < rows; r++)
		for (int c = 0; c < NCOLS; c++)
			printf("%-*s%s", c == NCOLS - 1 ? 0 : width[c], PQgetvalue(res, r, c),
			       c == NCOLS - 1 ? "\n" : "  ");
	if (rows == 0)
		printf("(no connectors: add one with INSERT INTO ksi_sales.connectors ...)\n");
	PQclear(res);
	return 0;
}

/* ---- requests the daemon executes (connection_tests, backfill_requests) ---- */

/* The rows a claim may take: pending ones, and running ones whose lease
 * has expired (their daemon crashed, was killed, or lost the database for
 * longer than the lease). The status IN (...) term lets the partial
 * indexes *_open (0003) answer it. */
#define CLAIMABLE_REQUEST                                                                  \
	" status IN ('pending', 'running')"                                                \
	" AND (status = 'pending' OR lease_expires IS NULL OR lease_expires <= now())"

/* Appends "{1,2,3}" to b. */
static void sbuf_add_ids(struct sbuf *b, const int64_t *ids, size_t n)
{
	sbuf_addc(b, '{');
	for (size_t i = 0; i < n; i++)
		sbuf_printf(b, i ? ",%" PRId64 : "%" PRId64, ids[i]);
	sbuf_addc(b, '}');
}

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
	if (load_connectors(db, ids, false, &v, &n, err, errlen) != 0)
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
		int64_t id = get_int64(res, i, 0);
		int j = i;
		while (j < rows && get_int64(res, j, 0) == id)
			j++;
		for (size_t k = 0; k < n; k++) {
			if (v[k].id != id)
				continue;
			v[k].codes = calloc((size_t)(j - i), sizeof(char *));
			if (!v[k].codes)
				return -1;
			bool oom = false;
			for (int r = i; r < j && !oom; r++) {
				v[k].codes[v[k].ncodes] = dup_value(res, r, 1, &oom);
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

int db_claim_conn_tests(struct db *db, const char *owner, int64_t lease_s, size_t limit,
			struct db_conn_test **out, size_t *n, char *err, size_t errlen)
{
	*out = NULL;
	*n = 0;
	char why[1024], lease[32], lim[32];
	snprintf(lease, sizeof(lease), "%" PRId64, lease_s);
	snprintf(lim, sizeof(lim), "%zu", limit);
	const char *params[] = {owner, lease, lim};
	if (exec_simple(db, "BEGIN", why, sizeof(why)) != 0) {
		set_err(err, errlen, "claiming connection tests: %s", why);
		return -1;
	}
	PGresult *res = sql_params(db,
		"UPDATE ksi_sales.connection_tests t"
		" SET status = 'running', started_at = now(), lease_owner = $1,"
		"  lease_expires = now() + make_interval(secs => $2::bigint), attempts = t.attempts + 1"
		" FROM (SELECT id FROM ksi_sales.connection_tests WHERE" CLAIMABLE_REQUEST
		"  ORDER BY requested_at, id LIMIT $3::bigint FOR UPDATE SKIP LOCKED) due"
		" WHERE t.id = due.id"
		" RETURNING t.id, t.attempts, t.connector_id, t.endpoint_url, t.bearer_token, t.timezone,"
		"  floor(extract(epoch FROM t.time_from))::bigint, floor(extract(epoch FROM t.time_to))::bigint",
		3, NULL, params, NULL, NULL, 0);
	PGresult *codes = NULL;
	struct db_conn_test *v = NULL;
	struct sbuf ids = {0};
	size_t rows = 0;
	int rc = -1;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		set_err(err, errlen, "claiming connection tests: %s", PQresultErrorMessage(res));
		goto out;
	}
	rows = (size_t)PQntuples(res);
	if (rows == 0) {
		rc = 0;
		goto out;
	}
	v = calloc(rows, sizeof(*v));
	if (!v)
		goto oom;
	bool oom = false;
	sbuf_addc(&ids, '{');
	for (size_t i = 0; i < rows; i++) {
		struct db_conn_test *t = &v[i];
		int r = (int)i;
		t->id = get_int64(res, r, 0);
		t->attempt = get_int64(res, r, 1);
		t->by_connector = !PQgetisnull(res, r, 2);
		if (t->by_connector) {
			t->c.id = get_int64(res, r, 2);
		} else {
			t->c.endpoint_url = dup_value(res, r, 3, &oom);
			t->c.bearer_token = dup_value(res, r, 4, &oom);
			t->c.timezone = dup_value(res, r, 5, &oom);
		}
		t->has_from = !PQgetisnull(res, r, 6);
		t->from = t->has_from ? get_int64(res, r, 6) : 0;
		t->has_to = !PQgetisnull(res, r, 7);
		t->to = t->has_to ? get_int64(res, r, 7) : 0;
		sbuf_printf(&ids, i ? ",%" PRId64 : "%" PRId64, t->id);
	}
	sbuf_addc(&ids, '}');
	if (oom || ids.failed)
		goto oom;
	/* The rows' own codes, distinct, in strcmp order (COLLATE "C"). */
	const char *p1[] = {ids.data};
	codes = sql_params(db,
		"SELECT DISTINCT t.id, u.code COLLATE \"C\""
		" FROM ksi_sales.connection_tests t, unnest(t.codes) AS u(code)"
		" WHERE t.id = ANY ($1::bigint[]) AND u.code IS NOT NULL ORDER BY 1, 2",
		1, NULL, p1, NULL, NULL, 0);
	if (PQresultStatus(codes) != PGRES_TUPLES_OK) {
		set_err(err, errlen, "claiming connection tests: %s", PQresultErrorMessage(codes));
		goto out;
	}
	if (attach_test_codes(v, rows, codes) != 0)
		goto oom;
	for (size_t i = 0; i < rows; i++)
		if (v[i].by_connector && load_test_connector(db, &v[i].c, err, errlen) != 0)
			goto out;
	if (exec_simple(db, "COMMIT", why, sizeof(why)) != 0) {
		set_err(err, errlen, "claiming connection tests: %s", why);
		goto out;
	}
	*out = v;
	*n = rows;
	v = NULL;
	rc = 0;
	goto out;
oom:
	set_err(err, errlen, "out of memory claiming connection tests");
out:
	if (rc != 0)
		PQclear(PQexec(db->conn, "ROLLBACK"));
	else if (rows == 0)
		PQclear(PQexec(db->conn, "COMMIT"));
	db_conn_tests_free(v, rows);
	free(ids.data);
	PQclear(res);
	PQclear(codes);
	return rc;
}

int db_end_conn_test(struct db *db, const char *owner, int64_t id, int64_t attempt, enum db_request_end end,
		     bool passed, const char *report, bool *written, char *err, size_t errlen)
{
	*written = false;
	char sid[32], sattempt[32];
	snprintf(sid, sizeof(sid), "%" PRId64, id);
	snprintf(sattempt, sizeof(sattempt), "%" PRId64, attempt);
	const char *params[] = {sid, owner, sattempt, end == DB_REQUEST_DONE ? "done" : "failed",
				end == DB_REQUEST_DONE ? (passed ? "true" : "false") : NULL, report};
	/* One UPDATE: the outcome, and the operator's token gone with it. */
	PGresult *res = end == DB_REQUEST_REQUEUE
		? sql_params(db,
			"UPDATE ksi_sales.connection_tests"
			" SET status = 'pending', started_at = NULL, lease_owner = NULL, lease_expires = NULL"
			" WHERE id = $1::bigint AND lease_owner = $2 AND attempts = $3::integer",
			3, NULL, params, NULL, NULL, 0)
		: sql_params(db,
			"UPDATE ksi_sales.connection_tests"
			" SET status = $4, passed = $5::boolean, report = $6::jsonb, finished_at = now(),"
			"  bearer_token = NULL, lease_owner = NULL, lease_expires = NULL"
			" WHERE id = $1::bigint AND lease_owner = $2 AND attempts = $3::integer",
			6, NULL, params, NULL, NULL, 0);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc != 0)
		set_err(err, errlen, "recording connection test %s: %s", sid, PQresultErrorMessage(res));
	else
		*written = strcmp(PQcmdTuples(res), "1") == 0;
	PQclear(res);
	return rc;
}

int db_claim_backfill(struct db *db, const char *owner, int64_t lease_s, struct db_backfill *out, bool *claimed,
		      char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	*claimed = false;
	char why[1024], lease[32];
	snprintf(lease, sizeof(lease), "%" PRId64, lease_s);
	if (exec_simple(db, "BEGIN", why, sizeof(why)) != 0) {
		set_err(err, errlen, "claiming backfill requests: %s", why);
		return -1;
	}
	/* The oldest requests whose connector is free: a request whose
	 * connector is being polled (by any daemon, this one included) stays
	 * pending for a later claim. Candidates are locked, so two daemons
	 * never take the same one. */
	PGresult *cand = sql_exec(db,
		"SELECT id, connector_id FROM ksi_sales.backfill_requests WHERE" CLAIMABLE_REQUEST
		" ORDER BY requested_at, id LIMIT 16 FOR UPDATE SKIP LOCKED");
	PGresult *res = NULL;
	int rc = -1;
	if (PQresultStatus(cand) != PGRES_TUPLES_OK) {
		set_err(err, errlen, "claiming backfill requests: %s", PQresultErrorMessage(cand));
		goto out;
	}
	int chosen = -1;
	int64_t epoch = 0;
	for (int i = 0; i < PQntuples(cand) && chosen < 0; i++) {
		char holder[256];
		int got = db_claim_connector(db, owner, lease_s, get_int64(cand, i, 1), &epoch, holder,
					     sizeof(holder), err, errlen);
		if (got < 0)
			goto out;
		if (got == 0)
			chosen = i;
	}
	if (chosen < 0) {
		rc = 0;
		goto out;
	}
	out->id = get_int64(cand, chosen, 0);
	out->connector_id = get_int64(cand, chosen, 1);
	out->lease_epoch = epoch;
	char sid[32];
	snprintf(sid, sizeof(sid), "%" PRId64, out->id);
	const char *params[] = {sid, owner, lease};
	res = sql_params(db,
		"UPDATE ksi_sales.backfill_requests"
		" SET status = 'running', started_at = now(), finished_at = NULL, error = NULL,"
		"  lease_owner = $2, lease_expires = now() + make_interval(secs => $3::bigint),"
		"  attempts = attempts + 1"
		" WHERE id = $1::bigint"
		" RETURNING attempts, floor(extract(epoch FROM time_from))::bigint,"
		"  floor(extract(epoch FROM time_to))::bigint, floor(extract(epoch FROM done_until))::bigint,"
		"  coalesce(windows_done, 0), coalesce(records, 0)",
		3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		set_err(err, errlen, "claiming backfill request %s: %s", sid, PQresultErrorMessage(res));
		goto out;
	}
	out->attempt = get_int64(res, 0, 0);
	out->from = get_int64(res, 0, 1);
	out->to = get_int64(res, 0, 2);
	out->has_done_until = !PQgetisnull(res, 0, 3);
	out->done_until = out->has_done_until ? get_int64(res, 0, 3) : 0;
	out->windows_done = get_int64(res, 0, 4);
	out->records = get_int64(res, 0, 5);
	/* Like `ksi-salesd backfill`: enabled connectors only. */
	char ids[40];
	snprintf(ids, sizeof(ids), "{%" PRId64 "}", out->connector_id);
	struct connector *v = NULL;
	size_t n = 0;
	if (load_connectors(db, ids, true, &v, &n, err, errlen) != 0)
		goto out;
	if (n == 1) {
		out->c = v[0]; /* moved */
		out->c.lease_epoch = epoch;
		out->connector_enabled = true;
		free(v);
	} else {
		connectors_free(v, n);
	}
	if (exec_simple(db, "COMMIT", why, sizeof(why)) != 0) {
		set_err(err, errlen, "claiming backfill requests: %s", why);
		goto out;
	}
	*claimed = true;
	rc = 0;
out:
	if (rc != 0 || !*claimed)
		PQclear(PQexec(db->conn, rc != 0 ? "ROLLBACK" : "COMMIT"));
	if (!*claimed)
		db_backfill_free(out);
	PQclear(cand);
	PQclear(res);
	return rc;
}

void db_backfill_free(struct db_backfill *b)
{
	if (!b)
		return;
	connector_free(&b->c);
	memset(b, 0, sizeof(*b));
}

/* Parameters $4… of a progress write: windows_total, windows_done,
 * records, done_until. */
struct progress_params {
	char total[32], done[32], records[32], until[32];
};

static void set_progress_params(struct progress_params *pp, const struct db_backfill_progress *p,
				const char **params)
{
	snprintf(pp->total, sizeof(pp->total), "%" PRId64, p->windows_total);
	snprintf(pp->done, sizeof(pp->done), "%" PRId64, p->windows_done);
	snprintf(pp->records, sizeof(pp->records), "%" PRId64, p->records);
	snprintf(pp->until, sizeof(pp->until), "%" PRId64, p->done_until);
	params[0] = pp->total;
	params[1] = pp->done;
	params[2] = pp->records;
	params[3] = p->has_done_until ? pp->until : NULL;
}

int db_backfill_progress(struct db *db, const char *owner, int64_t id, int64_t attempt,
			 const struct db_backfill_progress *p, char *err, size_t errlen)
{
	char sid[32], sattempt[32];
	struct progress_params pp = {0};
	snprintf(sid, sizeof(sid), "%" PRId64, id);
	snprintf(sattempt, sizeof(sattempt), "%" PRId64, attempt);
	const char *params[7] = {sid, owner, sattempt};
	set_progress_params(&pp, p, params + 3);
	PGresult *res = sql_params(db,
		"UPDATE ksi_sales.backfill_requests"
		" SET windows_total = $4::integer, windows_done = $5::integer, records = $6::integer,"
		"  done_until = coalesce(to_timestamp($7::bigint), done_until)"
		" WHERE id = $1::bigint AND lease_owner = $2 AND attempts = $3::integer",
		7, NULL, params, NULL, NULL, 0);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc != 0)
		set_err(err, errlen, "recording backfill progress: %s", PQresultErrorMessage(res));
	PQclear(res);
	return rc;
}

int db_end_backfill(struct db *db, const char *owner, int64_t id, int64_t attempt, enum db_request_end end,
		    const char *error, const struct db_backfill_progress *p, int64_t connector_id, int64_t epoch,
		    char *err, size_t errlen)
{
	char why[1024], sid[32], sattempt[32];
	struct progress_params pp = {0};
	snprintf(sid, sizeof(sid), "%" PRId64, id);
	snprintf(sattempt, sizeof(sattempt), "%" PRId64, attempt);
	const char *params[9] = {sid, owner, sattempt};
	set_progress_params(&pp, p, params + 3);
	params[7] = end == DB_REQUEST_DONE ? "done" : end == DB_REQUEST_FAILED ? "failed" : "pending";
	params[8] = error;
	if (exec_simple(db, "BEGIN", why, sizeof(why)) != 0) {
		set_err(err, errlen, "recording backfill request %s: %s", sid, why);
		return -1;
	}
	PGresult *res = sql_params(db,
		"UPDATE ksi_sales.backfill_requests"
		" SET status = $8, error = $9,"
		"  started_at = CASE WHEN $8 = 'pending' THEN NULL ELSE started_at END,"
		"  finished_at = CASE WHEN $8 = 'pending' THEN NULL ELSE now() END,"
		"  windows_total = $4::integer, windows_done = $5::integer, records = $6::integer,"
		"  done_until = coalesce(to_timestamp($7::bigint), done_until),"
		"  lease_owner = NULL, lease_expires = NULL"
		" WHERE id = $1::bigint AND lease_owner = $2 AND attempts = $3::integer",
		9, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		set_err(err, errlen, "recording backfill request %s: %s", sid, PQresultErrorMessage(res));
		PQclear(res);
		PQclear(PQexec(db->conn, "ROLLBACK"));
		return -1;
	}
	PQclear(res);
	if (db_release_lease(db, owner, connector_id, epoch, err, errlen) != 0) {
		PQclear(PQexec(db->conn, "ROLLBACK"));
		return -1;
	}
	if (exec_simple(db, "COMMIT", why, sizeof(why)) != 0) {
		set_err(err, errlen, "recording backfill request %s: %s", sid, why);
		return -1;
	}
	return 0;
}

int db_renew_requests(struct db *db, const char *owner, int64_t lease_s, const int64_t *tests, size_t ntests,
		      int64_t backfill_id, char *err, size_t errlen)
{
	char lease[32], bf[32];
	struct sbuf ids = {0};
	snprintf(lease, sizeof(lease), "%" PRId64, lease_s);
	snprintf(bf, sizeof(bf), "%" PRId64, backfill_id);
	sbuf_add_ids(&ids, tests, ntests);
	if (ids.failed) {
		free(ids.data);
		set_err(err, errlen, "out of memory");
		return -1;
	}
	const char *params[] = {owner, lease, ids.data, backfill_id ? bf : NULL};
	/* Only the rows still running here: a row whose outcome could not be
	 * written is left to expire, and is then run again. */
	PGresult *res = sql_params(db,
		"WITH tests AS ("
		"  UPDATE ksi_sales.connection_tests SET lease_expires = now() + make_interval(secs => $2::bigint)"
		"  WHERE lease_owner = $1 AND status = 'running' AND id = ANY ($3::bigint[])"
		")"
		" UPDATE ksi_sales.backfill_requests SET lease_expires = now() + make_interval(secs => $2::bigint)"
		" WHERE lease_owner = $1 AND status = 'running' AND id = $4::bigint",
		4, NULL, params, NULL, NULL, 0);
	free(ids.data);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc != 0)
		set_err(err, errlen, "renewing request leases: %s", PQresultErrorMessage(res));
	PQclear(res);
	return rc;
}
