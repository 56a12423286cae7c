/* log: one line per event, with the module and, where they apply, the
 * connector's name, the outcome, the HTTP status, the duration and the
 * fetch_runs id. Under systemd (stderr is the journal) each event is a
 * native journal entry with a priority and those as fields; elsewhere a
 * line on stderr, as text or JSON. Never pass a token. */
#ifndef KSI_LOG_H
#define KSI_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

/* Sets the level and format, and looks at stderr: the journal when
 * JOURNAL_STREAM names fd 2's device and inode (systemd.exec(5)), a
 * terminal, or anything else (a pipe, a file: text lines get timestamps).
 * Call it before any thread starts (and again on reload). */
void log_setup(enum log_level level, enum log_format format);
int log_enabled(enum log_level level);

/* What an event is about, beyond its message: the journal fields
 * CONNECTOR=, OUTCOME=, HTTP_STATUS=, DURATION_MS=, RUN_ID= and the JSON
 * keys of the same names. Zero (all of it, as a compound literal leaves
 * it) means "does not apply": so pass only what you have, e.g.
 * &(struct log_fields){.connector = c->name, .outcome = "http_error"}. */
struct log_fields {
	const char *connector; /* the connector's name */
	const char *outcome;   /* a run_outcome_name(), or another identifier */
	long http_status;      /* 0: no HTTP answer */
	bool timed;            /* seconds applies (a duration may be 0) */
	double seconds;        /* written as whole milliseconds */
	int64_t run_id;        /* fetch_runs.id; ids start at 1 */
};

/* fields may be NULL. */
void log_event(enum log_level level, const char *module, const struct log_fields *fields,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The common case: connector may be NULL. */
void log_msg(enum log_level level, const char *module, const char *connector, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_error(mod, conn, ...) log_msg(LOG_LEVEL_ERROR, mod, conn, __VA_ARGS__)
#define log_warning(mod, conn, ...) log_msg(LOG_LEVEL_WARNING, mod, conn, __VA_ARGS__)
#define log_info(mod, conn, ...) log_msg(LOG_LEVEL_INFO, mod, conn, __VA_ARGS__)
#define log_debug(mod, conn, ...) log_msg(LOG_LEVEL_DEBUG, mod, conn, __VA_ARGS__)

#endif
