/* status: the `status` command (SPEC §6): connector_health on stdout,
 * failing connectors first, as a summary line and a table that fits the
 * terminal, or as one JSON document; its exit code says whether every
 * connector is healthy. status.c reads and prints; status_layout.c is the
 * pure part (widths, cuts, the summary), unit-tested with a width. */
#ifndef KSI_STATUS_H
#define KSI_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;
struct sbuf;

struct status_opts {
	bool json;    /* one JSON list instead of the table */
	bool wide;    /* every column in full, whatever the width */
	bool no_fail; /* read by main: exit 0 even when some are unhealthy */
};

/* Prints the status read through db; *unhealthy is the number of
 * connectors failing or never polled past their due time, *short_tables
 * the number of audit tables whose partitions run out within
 * STATUS_AHEAD_MIN_S (README, `status`). -1 with err (db_error_kind says
 * why) when it could not be read; nothing is printed then. */
int status_print(struct db *db, const struct status_opts *opts, size_t *unhealthy,
                 size_t *short_tables, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* ---- the layout (status_layout.c): pure, no I/O ---- */

/* connector_health's states, in the summary's order. */
enum status_state {
	STATUS_OK,
	STATUS_FAILING,
	STATUS_NEVER_POLLED,
	STATUS_NO_STORES,
	STATUS_DISABLED,
	STATUS_NSTATES
};

/* The identifier `status --json` and the table's query use ("no_stores"),
 * and the words the table and the summary print ("no stores"). */
const char *status_state_id(enum status_state s);
const char *status_state_words(enum status_state s);
/* The state of an identifier; -1 for an unknown one. */
int status_state_parse(const char *id);

/* The table's columns, in order. */
enum status_col {
	SCOL_CONNECTOR,
	SCOL_STATE,
	SCOL_STORES,
	SCOL_OUTCOME,
	SCOL_SUCCESS,
	SCOL_FAILURES,
	SCOL_SYNCED,
	SCOL_ROWS,
	SCOL_ERROR,
	STATUS_NCOLS
};

/* Display columns of the NUL-terminated UTF-8 text s as the layout prints
 * it: a code point is 1 column, 2 for East Asian wide and fullwidth ones,
 * 0 for combining marks and zero-width ones; a control character or a
 * byte that is not well-formed UTF-8 is printed as '?', 1 column. */
size_t status_text_width(const char *s);

/* Appends the summary line(s): "160 connectors: 112 ok, 44 failing, ...",
 * counts[] per state, zero counts left out except ok and failing; overdue
 * (never polled past due) is said after never polled. Items that do not
 * fit width continue on the next line, indented; width 0: one line. */
void status_summary(const size_t counts[STATUS_NSTATES], size_t overdue, size_t width,
                    struct sbuf *out);

/* One audit table's partitions, as db_partitions_table reads them (db.h):
 * text as read, "" for none. */
struct status_partitions {
	const char *table;         /* "fetch_runs" */
	const char *partitions;    /* how many */
	const char *oldest;        /* the oldest day (month) kept */
	const char *legacy_until;  /* when one partition holds everything before */
	const char *next_boundary; /* the end of the partition taking rows now */
	const char *covered_until; /* the end of the partitions contiguous from now */
	int64_t ahead_s;           /* seconds from now to covered_until; -1: no partition now */
};

/* How far ahead partitions must exist before status warns (and exits 1):
 * a janitor creates them 7 days ahead every janitor_interval (1 h), so
 * under 2 days none has run for 5 days; that leaves 2 to act before writes
 * fail (README, `status`). */
#define STATUS_AHEAD_MIN_S (2 * 86400)

/* Whether p needs a look: no partition takes rows now, or they end in
 * under STATUS_AHEAD_MIN_S. */
bool status_partitions_short(const struct status_partitions *p);

/* Appends, per table, a line "fetch_runs: 38 partitions, oldest kept
 * 2026-11-01, next boundary 2026-12-03 00:00Z, partitions until 2026-12-10
 * 00:00Z (7 days ahead)", wrapped at width as the summary is, and for a
 * table that needs a look a "warning: ..." line after it. */
void status_partitions(const struct status_partitions *p, size_t n, size_t width, struct sbuf *out);

/* The warning about p on one line, without "warning:" (nothing when p needs
 * none): for the log when status prints JSON. */
void status_partitions_warning(const struct status_partitions *p, struct sbuf *out);

/* Appends the table: a header and one line per row, cells row-major
 * (cells[r * STATUS_NCOLS + c]). width 0 prints every column in full;
 * otherwise no line is wider than width: LAST ERROR and CONNECTOR are
 * shortened first (widest first, with "…"), then columns are dropped
 * (README, `status`). */
void status_table(const char *const *cells, size_t nrows, size_t width, struct sbuf *out);

#endif
