/* db_health: the reads of the connector_health view that the `status`
 * command prints (status.c): as a table of text cells, or as one JSON
 * document built by the server, with whether each connector is healthy;
 * the partitions of the audit tables (db_partitions_table); and the counts by state and freshness
 * that /metrics serves (db_connector_snapshot). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"
#include "stats.h"

/* connector_health's state as an identifier without spaces (README,
 * `status --json`). The view's own words ("no stores linked") are a
 * public contract (SPEC §4) and stay; only what status prints changes.
 * replace() keeps any later state an identifier too. */
#define STATE_ID                                                                                   \
	"CASE h.state WHEN 'no stores linked' THEN 'no_stores'"                                    \
	" ELSE replace(h.state, ' ', '_') END"
/* When a connector never polled is overdue: a running daemon polls a new
 * connector within seconds (NOTIFY), and its first request writes a
 * fetch_runs row within request_timeout; `once` from cron runs at least
 * every poll_interval. Five minutes more absorb a busy claim queue. Past
 * that, no daemon is polling it: a failure for monitoring (README). */
#define DUE_BY "(c.created_at + c.poll_interval + c.request_timeout + interval '5 minutes')"
#define OVERDUE "(h.state = 'never polled' AND now() > " DUE_BY ")"
#define UNHEALTHY "(h.state = 'failing' OR " OVERDUE ")"
/* Only the schedule's columns of connectors are read, never bearer_token. */
#define FROM_HEALTH                                                                                \
	" FROM ksi_sales.connector_health h JOIN ksi_sales.connectors c ON c.id = h.connector_id"
#define HEALTH_ORDER " ORDER BY h.state = 'failing' DESC, " OVERDUE " DESC, h.name"

int db_health_json(struct db *db, char **json, size_t *unhealthy, char *err, size_t errlen)
{
	*json = NULL;
	*unhealthy = 0;
	/* to_jsonb(h): every column of the view, later ones too, with the
	 * state replaced by its identifier. */
	PGresult *res = dbi_query(
	    db, DBI_ROWS, NULL,
	    "SELECT coalesce(json_agg(to_jsonb(h) || jsonb_build_object('state', " STATE_ID
	    ", 'overdue', " OVERDUE ", 'healthy', NOT " UNHEALTHY ")" HEALTH_ORDER "), '[]'),"
	    " count(*) FILTER (WHERE " UNHEALTHY ")" FROM_HEALTH,
	    0, NULL, err, errlen);
	if (!res) {
		dbi_add_remedy(db, false, err, errlen);
		return -1;
	}
	*json = strdup(PQgetvalue(res, 0, 0));
	*unhealthy = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	if (!*json) {
		dbi_set_err(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* Copies the result's cells into t, in one allocation: the cell pointers,
 * then their text. */
static int table_from(const PGresult *res, struct db_table *t)
{
	size_t nrows = (size_t)PQntuples(res), ncols = (size_t)PQnfields(res);
	size_t ncells = nrows * ncols, bytes = 0;
	for (size_t i = 0; i < ncells; i++)
		bytes += (size_t)PQgetlength(res, (int)(i / ncols), (int)(i % ncols)) + 1;
	char **cells = malloc(ncells * sizeof(*cells) + bytes + 1);
	if (!cells)
		return -1;
	char *text = (char *)(cells + ncells);
	for (size_t i = 0; i < ncells; i++) {
		int r = (int)(i / ncols), c = (int)(i % ncols);
		size_t len = (size_t)PQgetlength(res, r, c);
		memcpy(text, PQgetvalue(res, r, c), len + 1);
		cells[i] = text;
		text += len + 1;
	}
	*t = (struct db_table){.nrows = nrows, .ncols = ncols, .cells = cells};
	return 0;
}

/* Runs sql (no parameters) and copies its rows into out; -1 with err (and
 * the remedy for a privilege or schema error) on failure. */
static int query_table(struct db *db, const char *what, const char *sql, struct db_table *out,
                       char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	PGresult *res = dbi_query(db, DBI_ROWS, what, sql, 0, NULL, err, errlen);
	if (!res) {
		dbi_add_remedy(db, false, err, errlen);
		return -1;
	}
	int rc = table_from(res, out);
	PQclear(res);
	if (rc != 0)
		dbi_set_err(err, errlen, "out of memory");
	return rc;
}

int db_health_table(struct db *db, struct db_table *out, char *err, size_t errlen)
{
	return query_table(
	    db, NULL,
	    "SELECT h.name, " STATE_ID ", " OVERDUE ", h.stores::text,"
	    " coalesce(h.last_outcome, '-'),"
	    " coalesce(to_char(h.last_success, 'YYYY-MM-DD HH24:MI:SS\"Z\"'), '-'),"
	    " h.consecutive_failures::text,"
	    " coalesce(to_char(h.synced_until, 'YYYY-MM-DD HH24:MI\"Z\"'), '-'),"
	    " h.rows_last_24h::text,"
	    " coalesce(h.last_error, CASE WHEN " OVERDUE " THEN 'no poll yet, due by '"
	    " || to_char(" DUE_BY ", 'YYYY-MM-DD HH24:MI\"Z\"') END, '')" FROM_HEALTH HEALTH_ORDER,
	    out, err, errlen);
}

/* retention_status, one row per partitioned audit table, both always (a
 * table whose partitions were all dropped still has a row, to warn about).
 * How far ahead writes have a partition is not the view's created_until
 * (the last partition's end) but the end of the partitions that follow one
 * another from the one taking rows now: a missing day in the middle is
 * where writes start failing. Times in UTC minutes, as status prints every
 * time. */
static const char partitions_sql[] =
    "WITH RECURSIVE p AS ("
    "  SELECT parent, range_from, range_to FROM ksi_sales.audit_partitions()"
    "), cover(parent, until) AS ("
    "  SELECT parent, range_to FROM p WHERE range_from <= now() AND now() < range_to"
    "  UNION"
    "  SELECT c.parent, p.range_to FROM cover c JOIN p ON p.parent = c.parent"
    "   AND p.range_from <= c.until AND p.range_to > c.until"
    ")"
    " SELECT t.name, coalesce(s.partitions, 0)::text,"
    " coalesce(to_char(s.oldest_from AT TIME ZONE 'UTC',"
    "  CASE t.name WHEN 'fetch_runs' THEN 'YYYY-MM-DD' ELSE 'YYYY-MM' END), ''),"
    " coalesce(to_char(s.legacy_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI\"Z\"'), ''),"
    " coalesce(to_char(s.next_boundary AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI\"Z\"'), ''),"
    " coalesce(to_char(c.until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI\"Z\"'), ''),"
    " coalesce(floor(extract(epoch FROM c.until - now()))::bigint::text, '')"
    " FROM (VALUES (1, 'fetch_runs'), (2, 'rejected_records')) AS t(k, name)"
    " LEFT JOIN ksi_sales.retention_status s ON s.table_name = t.name"
    " LEFT JOIN (SELECT parent, max(until) AS until FROM cover GROUP BY parent) c"
    "  ON c.parent = t.name"
    " ORDER BY t.k";

int db_partitions_table(struct db *db, struct db_table *out, char *err, size_t errlen)
{
	return query_table(db, "reading retention_status", partitions_sql, out, err, errlen);
}

void db_table_free(struct db_table *t)
{
	if (!t)
		return;
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

/* The states as connector_health defines them (migration 0002: disabled,
 * no stores linked, never polled, ok from the last fetch_runs row, else
 * failing), without the view's per-connector counts of failures and rows,
 * which cost a scan each. Stale at a threshold: enabled, with stores, and
 * synced_until older than now - threshold, or never set (nothing of the
 * connector was ever committed); the last threshold is each connector's
 * own lookback. Columns follow enum stats_connector_state, then the
 * oldest synced_until (NULL when none), then stats_stale_names' order. */
int db_connector_snapshot(struct db *db, struct stats_connectors *out, char *err, size_t errlen)
{
	char t[STATS_STALE_LOOKBACK][24];
	const char *params[STATS_STALE_LOOKBACK];
	for (size_t i = 0; i < STATS_STALE_LOOKBACK; i++) {
		snprintf(t[i], sizeof(t[i]), "%" PRId64, stats_stale_seconds[i]);
		params[i] = t[i];
	}
	_Static_assert(STATS_STALE_LOOKBACK == 3 && STATS_CONN_STATES == 5,
	               "the statement's columns follow stats.h");
	PGresult *res = dbi_query(
	    db, DBI_ROWS, "counting connectors",
	    "WITH c AS ("
	    " SELECT c.enabled, c.lookback, st.synced_until,"
	    "  EXISTS (SELECT 1 FROM ksi_sales.stores s WHERE s.connector_id = c.id) AS has_stores,"
	    "  (SELECT r.outcome FROM ksi_sales.fetch_runs r WHERE r.connector_id = c.id"
	    "   ORDER BY r.started_at DESC, r.id DESC LIMIT 1) AS last_outcome"
	    " FROM ksi_sales.connectors c"
	    " LEFT JOIN ksi_sales.connector_state st ON st.connector_id = c.id)"
	    " SELECT"
	    " count(*) FILTER (WHERE enabled AND has_stores AND last_outcome = 'ok'),"
	    " count(*) FILTER (WHERE enabled AND has_stores AND last_outcome <> 'ok'),"
	    " count(*) FILTER (WHERE enabled AND has_stores AND last_outcome IS NULL),"
	    " count(*) FILTER (WHERE enabled AND NOT has_stores),"
	    " count(*) FILTER (WHERE NOT enabled),"
	    " extract(epoch FROM min(synced_until) FILTER (WHERE enabled AND has_stores))::float8,"
	    " count(*) FILTER (WHERE enabled AND has_stores AND (synced_until IS NULL"
	    "  OR synced_until < now() - make_interval(secs => $1::bigint))),"
	    " count(*) FILTER (WHERE enabled AND has_stores AND (synced_until IS NULL"
	    "  OR synced_until < now() - make_interval(secs => $2::bigint))),"
	    " count(*) FILTER (WHERE enabled AND has_stores AND (synced_until IS NULL"
	    "  OR synced_until < now() - make_interval(secs => $3::bigint))),"
	    " count(*) FILTER (WHERE enabled AND has_stores AND (synced_until IS NULL"
	    "  OR synced_until < now() - lookback))"
	    " FROM c",
	    STATS_STALE_LOOKBACK, params, err, errlen);
	if (!res)
		return -1;
	struct stats_connectors s;
	memset(&s, 0, sizeof(s));
	int col = 0;
	for (size_t i = 0; i < STATS_CONN_STATES; i++)
		s.by_state[i] = dbi_int64(res, 0, col++);
	s.has_oldest = !PQgetisnull(res, 0, col);
	if (s.has_oldest)
		s.oldest_synced_until = strtod(PQgetvalue(res, 0, col), NULL);
	col++;
	for (size_t i = 0; i < STATS_STALE_THRESHOLDS; i++)
		s.stale[i] = dbi_int64(res, 0, col++);
	PQclear(res);
	s.valid = true;
	*out = s;
	return 0;
}
