/* janitor_layout: the report of `ksi-salesd janitor` laid out, as text or
 * JSON (include/janitor_command.h). Pure: the plan and its results in, text
 * out, so the unit tests drive it with any plan; janitor_command.c runs the
 * cycle and prints. */
#include "janitor_command.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

void janitor_layout_bytes(int64_t bytes, struct sbuf *out)
{
	static const char *const units[] = {"bytes", "kB", "MB", "GB", "TB"};
	if (bytes < 1024) {
		sbuf_printf(out, "%" PRId64 " bytes", bytes);
		return;
	}
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	/* 9.96 would print as "10.0": past 9.95 it is the whole number's. */
	if (v < 9.95)
		sbuf_printf(out, "%.1f %s", v, units[u]);
	else
		sbuf_printf(out, "%.0f %s", v, units[u]);
}

/* "30 days", "1 day", "forever". */
static void put_keep(struct sbuf *out, int64_t keep_s)
{
	if (keep_s <= 0)
		sbuf_puts(out, "forever");
	else if (keep_s % 86400 == 0)
		sbuf_printf(out, "%" PRId64 " day%s", keep_s / 86400, keep_s == 86400 ? "" : "s");
	else /* the configuration takes whole days only (cfg_parse_retention_ms) */
		sbuf_printf(out, "%" PRId64 " s", keep_s);
}

static const char *result_word(const struct db_retention_action *a, bool dry_run)
{
	switch (a->result) {
	case DB_RETENTION_PLANNED:
		return dry_run ? (a->drop ? "drop" : "create") : "not run";
	case DB_RETENTION_DONE:
		return a->drop ? "dropped" : "created";
	case DB_RETENTION_BUSY:
		return "busy";
	case DB_RETENTION_FAILED:
		return "failed";
	}
	return "?";
}

static const char *result_id(enum db_retention_result r)
{
	switch (r) {
	case DB_RETENTION_PLANNED:
		return "planned";
	case DB_RETENTION_DONE:
		return "done";
	case DB_RETENTION_BUSY:
		return "busy";
	case DB_RETENTION_FAILED:
		return "failed";
	}
	return "?";
}

/* The summary: counts of creates and drops (and the bytes dropped), in
 * the dry run's words or the run's. */
static void put_summary(const struct janitor_report *r, struct sbuf *out)
{
	const struct db_retention_actions *a = r->actions;
	sbuf_puts(out, r->dry_run ? "dry run, fetch_runs kept " : "fetch_runs kept ");
	put_keep(out, r->keep->fetch_runs_keep_s);
	sbuf_puts(out, ", rejected_records ");
	put_keep(out, r->keep->rejected_records_keep_s);
	sbuf_puts(out, ": ");
	if (r->skipped) {
		sbuf_puts(out, "another janitor holds the lock; nothing done\n");
		return;
	}
	size_t creates = 0, drops = 0, busy = 0, failed = 0;
	int64_t bytes = 0;
	for (size_t i = 0; i < a->n; i++) {
		const struct db_retention_action *x = &a->v[i];
		bool counts = r->dry_run || x->result == DB_RETENTION_DONE;
		busy += x->result == DB_RETENTION_BUSY;
		failed += x->result == DB_RETENTION_FAILED;
		if (!counts)
			continue;
		if (x->drop) {
			drops++;
			bytes += x->bytes > 0 ? x->bytes : 0;
		} else {
			creates++;
		}
	}
	if (a->n == 0) {
		sbuf_puts(out, r->dry_run ? "nothing to create or drop\n"
		                          : "nothing to create or drop; nothing changed\n");
		return;
	}
	sbuf_printf(out, r->dry_run ? "%zu to create, %zu to drop" : "%zu created, %zu dropped",
	            creates, drops);
	if (drops > 0) {
		sbuf_puts(out, " (");
		janitor_layout_bytes(bytes, out);
		sbuf_puts(out, ")");
	}
	if (busy > 0)
		sbuf_printf(out, ", %zu given up (table in use: run again)", busy);
	if (failed > 0)
		sbuf_printf(out, ", %zu failed", failed);
	sbuf_puts(out, r->dry_run ? "; nothing changed\n" : "\n");
}

enum { COL_ACTION, COL_PARTITION, COL_FROM, COL_TO, COL_ROWS, COL_SIZE, NCOLS };

void janitor_layout_text(const struct janitor_report *r, struct sbuf *out)
{
	put_summary(r, out);
	const struct db_retention_actions *a = r->actions;
	if (r->skipped || a->n == 0)
		return;
	static const char *const heads[NCOLS] = {"ACTION", "PARTITION", "FROM",
	                                         "TO",     "ROWS",      "SIZE"};
	/* Every cell first (they are ASCII: names and times the plan made),
	 * then the widths. */
	struct sbuf *cells = calloc(a->n * NCOLS, sizeof(*cells));
	if (!cells) {
		out->failed = true;
		return;
	}
	size_t w[NCOLS];
	for (int c = 0; c < NCOLS; c++)
		w[c] = strlen(heads[c]);
	for (size_t i = 0; i < a->n; i++) {
		const struct db_retention_action *x = &a->v[i];
		struct sbuf *row = &cells[i * NCOLS];
		sbuf_puts(&row[COL_ACTION], result_word(x, r->dry_run));
		sbuf_puts(&row[COL_PARTITION], x->partition);
		sbuf_puts(&row[COL_FROM], x->range_from);
		sbuf_puts(&row[COL_TO], x->range_to);
		if (x->drop) {
			if (x->rows >= 0)
				sbuf_printf(&row[COL_ROWS], "~%" PRId64, x->rows);
			else
				sbuf_puts(&row[COL_ROWS], "?");
			if (x->bytes >= 0)
				janitor_layout_bytes(x->bytes, &row[COL_SIZE]);
		}
		for (int c = 0; c < NCOLS; c++) {
			if (row[c].failed)
				out->failed = true;
			if (row[c].len > w[c])
				w[c] = row[c].len;
		}
	}
	for (size_t i = 0; i <= a->n; i++) {
		/* Trailing spaces are left out: a create has no ROWS or SIZE. */
		int last = NCOLS - 1;
		while (i > 0 && last > 0 && cells[(i - 1) * NCOLS + (size_t)last].len == 0)
			last--;
		for (int c = 0; c <= last; c++) {
			const char *s = i == 0 ? heads[c] : cells[(i - 1) * NCOLS + (size_t)c].data;
			if (!s)
				s = "";
			if (c == last)
				sbuf_puts(out, s);
			else
				sbuf_printf(out, "%-*s  ", (int)w[c], s);
		}
		sbuf_addc(out, '\n');
	}
	for (size_t i = 0; i < a->n * NCOLS; i++)
		free(cells[i].data);
	free(cells);
}

/* A plan's time as ISO 8601: "2026-12-09 00:00Z" -> "2026-12-09T00:00Z". */
static void put_time(FILE *f, const char *t)
{
	char iso[32];
	snprintf(iso, sizeof(iso), "%s", t);
	char *sp = strchr(iso, ' ');
	if (sp)
		*sp = 'T';
	jsonw_string(f, iso);
}

static void put_days(FILE *f, int64_t keep_s)
{
	if (keep_s <= 0)
		fputs("null", f);
	else
		fprintf(f, "%" PRId64, keep_s / 86400);
}

void janitor_layout_json(FILE *f, const struct janitor_report *r)
{
	fprintf(f, "{\"dry_run\":%s,\"skipped\":%s,\"fetch_runs_keep_days\":",
	        r->dry_run ? "true" : "false", r->skipped ? "true" : "false");
	put_days(f, r->keep->fetch_runs_keep_s);
	fputs(",\"rejected_records_keep_days\":", f);
	put_days(f, r->keep->rejected_records_keep_s);
	fputs(",\"actions\":[", f);
	for (size_t i = 0; i < r->actions->n; i++) {
		const struct db_retention_action *x = &r->actions->v[i];
		fprintf(f, "%s{\"action\":\"%s\",\"table\":", i ? "," : "",
		        x->drop ? "drop" : "create");
		jsonw_string(f, x->parent);
		fputs(",\"partition\":", f);
		jsonw_string(f, x->partition);
		fputs(",\"from\":", f);
		put_time(f, x->range_from);
		fputs(",\"to\":", f);
		put_time(f, x->range_to);
		if (x->drop && x->bytes >= 0)
			fprintf(f, ",\"bytes\":%" PRId64, x->bytes);
		else
			fputs(",\"bytes\":null", f);
		if (x->drop && x->rows >= 0)
			fprintf(f, ",\"rows_estimate\":%" PRId64, x->rows);
		else
			fputs(",\"rows_estimate\":null", f);
		fprintf(f, ",\"result\":\"%s\"}", result_id(x->result));
	}
	fputs("]}\n", f);
}
