/* janitor_command: `ksi-salesd janitor [--dry-run] [--json]` (README, Data
 * lifecycle): one janitor cycle of retention now, with the configuration
 * file's [retention], under the daemons' janitor lock (db_maint_retention),
 * or with --dry-run what it would do (db_maint_retention_plan), and what
 * came of each action printed. janitor_command.c reads and runs;
 * janitor_layout.c lays the report out (pure, tests/unit/test_janitor_layout.c). */
#ifndef KSI_JANITOR_COMMAND_H
#define KSI_JANITOR_COMMAND_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "config.h"
#include "db.h"
#include "sbuf.h"

#define JANITOR_USAGE                                                                              \
	"usage: ksi-salesd janitor [--dry-run] [--json] [-c FILE] [-d URL]\n"                      \
	"\n"                                                                                       \
	"Runs one cycle of the daemon's janitor now: creates the partitions of\n"                  \
	"fetch_runs and rejected_records up to a week ahead and drops those entirely\n"            \
	"older than [retention] fetch_runs and rejected_records of the configuration\n"            \
	"file, under the janitors' lock and with their lock_timeout, and prints what\n"            \
	"it did. For deployments without `run` (once or backfill from cron: run it\n"              \
	"daily), and to apply a changed retention without waiting for the next cycle.\n"           \
	"\n"                                                                                       \
	"  --dry-run            print what it would create and drop; change nothing\n"             \
	"  --json               the report as one JSON object\n"                                   \
	"Exit: 0 done (or planned), 1 another janitor holds the lock, or an action\n"              \
	"failed or was given up (its table in use), 2 usage, configuration, privilege\n"           \
	"or schema error, 3 database unreachable.\n"

int janitor_command(const struct cli *cli, struct cfg *cfg);

/* ---- the report (janitor_layout.c): pure, no I/O but the FILE given ---- */

/* What the report says above the actions. */
struct janitor_report {
	bool dry_run;
	bool skipped; /* another janitor held the lock: nothing done */
	const struct db_retention *keep;
	const struct db_retention_actions *actions;
};

/* "216 kB", "6.4 GB": bytes in binary units as pg_size_pretty names them,
 * one decimal below 10. */
void janitor_layout_bytes(int64_t bytes, struct sbuf *out);

/* The report as text: a summary line ("dry run, fetch_runs kept 30 days,
 * rejected_records 90 days: 2 to create, 31 to drop (6.4 GB); nothing
 * changed"), then, if any, a table of the actions: ACTION (create or drop;
 * once run: created, dropped, busy, failed, not run), PARTITION, FROM, TO,
 * ROWS (an estimate, "~1000"; "?" never analysed), SIZE. */
void janitor_layout_text(const struct janitor_report *r, struct sbuf *out);

/* The report as one JSON object on f: dry_run, skipped, the retentions in
 * days (null: forever), and actions, each with action, table, partition,
 * from, to (ISO 8601 UTC, "-infinity" for a partition holding everything
 * before its end), bytes and rows_estimate (null for a create or unknown),
 * result (planned, done, busy, failed). */
void janitor_layout_json(FILE *f, const struct janitor_report *r);

#endif
