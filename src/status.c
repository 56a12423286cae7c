/* status: the `status` command's output (SPEC §6). The rows come from the
 * database layer (db_health_table, db_health_json, db_partitions_table) as
 * text; this module
 * picks the width, counts the states and prints, and status_layout.c lays
 * the text out, so it never sees libpq. */
#include "status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "db.h"
#include "log.h"
#include "sbuf.h"

/* The columns db_health_table returns (db.h). */
enum {
	DCOL_NAME,
	DCOL_STATE,
	DCOL_OVERDUE,
	DCOL_STORES,
	DCOL_OUTCOME,
	DCOL_SUCCESS,
	DCOL_FAILURES,
	DCOL_SYNCED,
	DCOL_ROWS,
	DCOL_ERROR,
	DB_NCOLS
};

/* The width to fit (0: no limit). $COLUMNS first when it is a number, as
 * systemctl and journalctl do (and watch(1) sets it for its window), then
 * the terminal on stdout, then 80 — a pipe or a file gets 80 so that
 * `status | mail` reads the same as on a console. */
static size_t output_width(bool wide)
{
	if (wide)
		return 0;
	const char *env = getenv("COLUMNS");
	if (env && *env >= '1' && *env <= '9') {
		char *end;
		errno = 0;
		unsigned long n = strtoul(env, &end, 10);
		if (errno == 0 && *end == '\0' && n <= 100000)
			return n;
	}
	struct winsize ws;
	if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return 80;
}

/* The columns db_partitions_table returns (db.h). */
enum {
	PCOL_TABLE,
	PCOL_COUNT,
	PCOL_OLDEST,
	PCOL_LEGACY,
	PCOL_NEXT,
	PCOL_COVERED,
	PCOL_AHEAD,
	P_NCOLS
};

/* The partitions of the audit tables, read into t and p[] (pointing into
 * t's cells); *n rows, at most 2. */
static int read_partitions(struct db *db, struct db_table *t, struct status_partitions p[2],
                           size_t *n, char *err, size_t errlen)
{
	*n = 0;
	if (db_partitions_table(db, t, err, errlen) != 0)
		return -1;
	if (t->ncols != P_NCOLS || t->nrows > 2) { /* the query and this file disagree: a bug */
		snprintf(err, errlen, "status: partitions: %zu columns, %zu rows read", t->ncols,
		         t->nrows);
		db_table_free(t);
		return -1;
	}
	for (size_t r = 0; r < t->nrows; r++) {
		char *const *c = &t->cells[r * P_NCOLS];
		p[r] = (struct status_partitions){
		    .table = c[PCOL_TABLE],
		    .partitions = c[PCOL_COUNT],
		    .oldest = c[PCOL_OLDEST],
		    .legacy_until = c[PCOL_LEGACY],
		    .next_boundary = c[PCOL_NEXT],
		    .covered_until = c[PCOL_COVERED],
		    .ahead_s = *c[PCOL_AHEAD] ? strtoll(c[PCOL_AHEAD], NULL, 10) : -1,
		};
		/* A partition that ends this very second is not one ahead. */
		if (p[r].ahead_s < 0 && *c[PCOL_AHEAD])
			p[r].ahead_s = 0;
	}
	*n = t->nrows;
	return 0;
}

static size_t count_short(const struct status_partitions *p, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += status_partitions_short(&p[i]);
	return k;
}

/* --json stays one JSON list of connectors (README: consumers index it), so
 * a warning about partitions goes to the log, and to the exit code. */
static int print_json(struct db *db, size_t *unhealthy, size_t *short_tables, char *err,
                      size_t errlen)
{
	char *doc;
	if (db_health_json(db, &doc, unhealthy, err, errlen) != 0)
		return -1;
	struct db_table t;
	struct status_partitions p[2];
	size_t n;
	if (read_partitions(db, &t, p, &n, err, errlen) != 0) {
		free(doc);
		return -1;
	}
	printf("%s\n", doc);
	free(doc);
	*short_tables = count_short(p, n);
	for (size_t i = 0; i < n; i++) {
		struct sbuf w = {0};
		status_partitions_warning(&p[i], &w);
		if (w.len > 0 && !w.failed)
			log_warning("status", NULL, "%s", w.data);
		free(w.data);
	}
	db_table_free(&t);
	return 0;
}

/* The table's cells from the database's: the state in words, the rest
 * as read. Counts the states and the unhealthy. */
static int table_cells(const struct db_table *t, const char **cells, size_t counts[STATUS_NSTATES],
                       size_t *overdue, size_t *unhealthy, char *err, size_t errlen)
{
	for (size_t r = 0; r < t->nrows; r++) {
		char *const *in = &t->cells[r * DB_NCOLS];
		const char **out = &cells[r * STATUS_NCOLS];
		int s = status_state_parse(in[DCOL_STATE]);
		if (s < 0) { /* the view and this binary disagree: a bug */
			snprintf(err, errlen,
			         "status: connector_health has an unknown state \"%s\"",
			         in[DCOL_STATE]);
			return -1;
		}
		counts[s]++;
		bool late = strcmp(in[DCOL_OVERDUE], "t") == 0;
		*overdue += late;
		*unhealthy += late || s == STATUS_FAILING;
		out[SCOL_CONNECTOR] = in[DCOL_NAME];
		out[SCOL_STATE] = status_state_words((enum status_state)s);
		out[SCOL_STORES] = in[DCOL_STORES];
		out[SCOL_OUTCOME] = in[DCOL_OUTCOME];
		out[SCOL_SUCCESS] = in[DCOL_SUCCESS];
		out[SCOL_FAILURES] = in[DCOL_FAILURES];
		out[SCOL_SYNCED] = in[DCOL_SYNCED];
		out[SCOL_ROWS] = in[DCOL_ROWS];
		out[SCOL_ERROR] = in[DCOL_ERROR];
	}
	return 0;
}

static int print_table(struct db *db, bool wide, size_t *unhealthy, size_t *short_tables, char *err,
                       size_t errlen)
{
	struct db_table t, pt;
	struct status_partitions p[2];
	size_t np;
	if (db_health_table(db, &t, err, errlen) != 0)
		return -1;
	if (read_partitions(db, &pt, p, &np, err, errlen) != 0) {
		db_table_free(&t);
		return -1;
	}
	int rc = -1;
	const char **cells = NULL;
	struct sbuf out = {0};
	if (t.ncols != DB_NCOLS) { /* the query and this file disagree: a bug */
		snprintf(err, errlen, "status: %zu columns read, %d expected", t.ncols,
		         (int)DB_NCOLS);
		goto done;
	}
	cells = calloc(t.nrows ? t.nrows * STATUS_NCOLS : 1, sizeof(*cells));
	if (!cells) {
		snprintf(err, errlen, "status: out of memory");
		goto done;
	}
	size_t counts[STATUS_NSTATES] = {0}, overdue = 0;
	if (table_cells(&t, cells, counts, &overdue, unhealthy, err, errlen) != 0)
		goto done;
	size_t width = output_width(wide);
	status_summary(counts, overdue, width, &out);
	status_table(cells, t.nrows, width, &out);
	/* Below the table: the summary line and the table's header stay the
	 * first two lines that scripts read (README, `status`). */
	sbuf_addc(&out, '\n');
	status_partitions(p, np, width, &out);
	*short_tables = count_short(p, np);
	char *text = sbuf_take(&out);
	if (!text) {
		snprintf(err, errlen, "status: out of memory");
		goto done;
	}
	fputs(text, stdout);
	free(text);
	rc = 0;
done:
	free(out.data);
	free(cells);
	db_table_free(&t);
	db_table_free(&pt);
	return rc;
}

int status_print(struct db *db, const struct status_opts *opts, size_t *unhealthy,
                 size_t *short_tables, char *err, size_t errlen)
{
	*unhealthy = 0;
	*short_tables = 0;
	if (opts->json)
		return print_json(db, unhealthy, short_tables, err, errlen);
	return print_table(db, opts->wide, unhealthy, short_tables, err, errlen);
}
