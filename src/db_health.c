/* db_health: the reads of the connector_health view that the `status`
 * command prints (status.c): as a table of text cells, or as one JSON
 * document built by the server, with whether each connector is healthy. */
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

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

int db_health_table(struct db *db, struct db_table *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	PGresult *res = dbi_query(
	    db, DBI_ROWS, NULL,
	    "SELECT h.name, " STATE_ID ", " OVERDUE ", h.stores::text,"
	    " coalesce(h.last_outcome, '-'),"
	    " coalesce(to_char(h.last_success, 'YYYY-MM-DD HH24:MI:SS\"Z\"'), '-'),"
	    " h.consecutive_failures::text,"
	    " coalesce(to_char(h.synced_until, 'YYYY-MM-DD HH24:MI\"Z\"'), '-'),"
	    " h.rows_last_24h::text,"
	    " coalesce(h.last_error, CASE WHEN " OVERDUE " THEN 'no poll yet, due by '"
	    " || to_char(" DUE_BY ", 'YYYY-MM-DD HH24:MI\"Z\"') END, '')" FROM_HEALTH HEALTH_ORDER,
	    0, NULL, err, errlen);
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

void db_table_free(struct db_table *t)
{
	if (!t)
		return;
	free(t->cells);
	memset(t, 0, sizeof(*t));
}
