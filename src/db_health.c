/* db_health: the reads of the connector_health view that the `status`
 * command prints (status.c): as a table of text cells, or as one JSON
 * document built by the server. */
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"

int db_health_json(struct db *db, char **json, char *err, size_t errlen)
{
	*json = NULL;
	PGresult *res =
	    dbi_query(db, DBI_ROWS, NULL,
	              "SELECT coalesce(json_agg(h ORDER BY h.state = 'failing' DESC, h.name), '[]')"
	              " FROM ksi_sales.connector_health h",
	              0, NULL, err, errlen);
	if (!res) {
		dbi_add_remedy(db, false, err, errlen);
		return -1;
	}
	*json = strdup(PQgetvalue(res, 0, 0));
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
	PGresult *res =
	    dbi_query(db, DBI_ROWS, NULL,
	              "SELECT name, state, stores::text, coalesce(last_outcome, '-'),"
	              " coalesce(to_char(last_success, 'YYYY-MM-DD HH24:MI:SS\"Z\"'), '-'),"
	              " consecutive_failures::text,"
	              " coalesce(to_char(synced_until, 'YYYY-MM-DD HH24:MI\"Z\"'), '-'),"
	              " rows_last_24h::text, coalesce(last_error, '')"
	              " FROM ksi_sales.connector_health"
	              " ORDER BY state = 'failing' DESC, name",
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
