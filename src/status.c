/* status: the `status` command's output (SPEC §6). The rows come from the
 * database layer (db_health_table, db_health_json) as text; this module
 * only lays them out, so it never sees libpq. */
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

static const char *const heads[] = {"CONNECTOR",    "STATE",        "STORES",
                                    "LAST OUTCOME", "LAST SUCCESS", "FAILURES",
                                    "SYNCED UNTIL", "ROWS 24H",     "LAST ERROR"};
enum { NCOLS = sizeof(heads) / sizeof(heads[0]) };

/* One line: every column padded to its width but the last, two spaces
 * between them. */
static void print_row(const char *const *cells, const int *width)
{
	for (int c = 0; c < NCOLS; c++)
		printf("%-*s%s", c == NCOLS - 1 ? 0 : width[c], cells[c],
		       c == NCOLS - 1 ? "\n" : "  ");
}

static void print_table(const struct db_table *t)
{
	int width[NCOLS];
	for (int c = 0; c < NCOLS; c++) {
		width[c] = (int)strlen(heads[c]);
		for (size_t r = 0; r < t->nrows; r++) {
			int w = (int)strlen(t->cells[r * NCOLS + (size_t)c]);
			if (w > width[c])
				width[c] = w;
		}
	}
	print_row(heads, width);
	for (size_t r = 0; r < t->nrows; r++)
		print_row((const char *const *)&t->cells[r * NCOLS], width);
	if (t->nrows == 0)
		printf("(no connectors: add one with INSERT INTO ksi_sales.connectors ...)\n");
}

int status_print(struct db *db, bool json, char *err, size_t errlen)
{
	if (json) {
		char *doc;
		if (db_health_json(db, &doc, err, errlen) != 0)
			return -1;
		printf("%s\n", doc);
		free(doc);
		return 0;
	}
	struct db_table t;
	if (db_health_table(db, &t, err, errlen) != 0)
		return -1;
	if (t.ncols != NCOLS) { /* the query and heads disagree: a bug */
		snprintf(err, errlen, "status: %zu columns read, %d expected", t.ncols, (int)NCOLS);
		db_table_free(&t);
		return -1;
	}
	print_table(&t);
	db_table_free(&t);
	return 0;
}
