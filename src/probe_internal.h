/* probe_internal: what the files of the probe module share and nothing
 * else sees. struct probe and its requests (struct ask), planned and run in
 * probe.c, read by the report (probe_report.c) and the command
 * (probe_command.c); the request names; the report writers the command
 * calls. It lives in src/, not include/, like db_internal.h; its non-static
 * names carry the prefix probei_ (probe, internal). */
#ifndef KSI_PROBE_INTERNAL_H
#define KSI_PROBE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "connector.h"
#include "isotime.h"
#include "probe.h"

#define PROBEI_LIST_MAX 10 /* codes named in one line */

/* "main", "noauth", "plus", "utc": indexed by enum probe_ask. */
extern const char *const probei_ask_names[PROBE_NASKS];

static inline const char *probei_plural(size_t n)
{
	return n == 1 ? "" : "s";
}

/* One request of the probe. */
struct ask {
	struct probe *p;
	enum probe_ask which;
	int64_t from, to;                                  /* [from, to), epoch seconds */
	char from_s[ISO_FORMAT_LEN], to_s[ISO_FORMAT_LEN]; /* fromTime, toTime as sent */
	char *url;
};

struct probe {
	struct connector c; /* the target (owned): loaded, or made from options or a row */
	bool from_db;
	char where[300]; /* the endpoint for people: no query, no user info */
	size_t nasked;   /* codes in the requests: the first URL-sized batch */
	int64_t from;    /* the main window's start */
	struct ask asks[PROBE_NASKS];
	struct probe_answer answers[PROBE_NASKS];
	size_t pending;    /* requests started and not answered yet */
	bool start_failed; /* a request could not be started (out of memory) */
	bool oom;          /* an answer could not be judged (out of memory) */
	probe_done_fn done;
	void *user;
	struct probe_report report; /* judged once every answer is in */
};

/* The report as text (stdout) and as the --json document. */
void probei_print_text(const struct probe *p);
void probei_print_json(FILE *f, const struct probe *p);

#endif
