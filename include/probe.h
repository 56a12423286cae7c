/* probe: `ksi-salesd test-connection` (SPEC §6), the integration guide's
 * "Test connection". It asks one customer API a few questions with the
 * daemon's own URL builder, HTTP module and validator, judges the answers
 * check by check and reports. It writes nothing to the database.
 *
 * Three layers: the judging is pure (answers in, checks out) and exposed
 * for the unit tests (src/probe_judge.c); a probe is planned (probe_plan)
 * and run on any loop's http (probe_start), which is how the daemon runs
 * connection_tests rows (src/probe.c); probe_command is the command around
 * them, on a loop of its own (src/probe_command.c), and its report is
 * src/probe_report.c's. */
#ifndef KSI_PROBE_H
#define KSI_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "config.h"
#include "connector.h"
#include "http.h"
#include "validate.h"

/* The command: returns an enum exit_code. 0 every required check passed,
 * 1 one failed, 2 usage or configuration error, 3 database unreachable. */
int probe_command(const struct cli *cli, struct cfg *cfg);

/* Splits "0001,0002" on commas into *codes (malloc'd, free with
 * probe_codes_free), sorted with strcmp, duplicates removed. Each code is
 * 1 … VAL_MAX_STRING_BYTES bytes. -1 with a reason for a person. */
int probe_parse_codes(const char *list, char ***codes, size_t *n, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void probe_codes_free(char **codes, size_t n);

enum probe_status { PROBE_PASS, PROBE_FAIL, PROBE_WARN, PROBE_INFO };
const char *probe_status_name(enum probe_status s); /* "PASS", "FAIL", … */

/* The requests one probe makes, all for the same instants, concurrently. */
enum probe_ask {
	PROBE_ASK_MAIN,   /* with the token, the window in the connector's zone */
	PROBE_ASK_NOAUTH, /* the same URL without any Authorization header */
	PROBE_ASK_PLUS,   /* with the token, the window written in +09:00 */
	PROBE_ASK_UTC,    /* with the token, the window written in +00:00 */
	PROBE_NASKS,
};

/* One answer, kept after the HTTP callback returns. */
struct probe_answer {
	bool answered; /* the transfer finished (whatever its outcome) */
	enum http_outcome outcome;
	long status;    /* HTTP status, 0 when no answer */
	double elapsed; /* seconds, from the transfer's start */
	size_t bytes;   /* decoded */
	bool gzip;
	char error[1024]; /* for outcomes other than OK; never the token */
	bool validated;   /* a 2xx answer was judged: v is set */
	struct val_result v;
};

/* Copies what r says into a and, for a 2xx answer, judges its body against
 * req with val_validate. -1 only when memory ran out. */
int probe_answer_set(struct probe_answer *a, const struct http_response *r,
                     const struct val_request *req) __attribute__((warn_unused_result));
void probe_answer_free(struct probe_answer *a);

/* What the answers are judged against. */
struct probe_setup {
	const char *const *codes; /* the codes the requests asked, sorted */
	size_t ncodes;
	bool has_token;      /* false: the connector has no bearer_token */
	int64_t timeout_ms;  /* request_timeout */
	const char *zone;    /* the connector's zone */
	int32_t zone_offset; /* its offset at the window's start, seconds */
};

#define PROBE_EVIDENCE_LEN 4096
#define PROBE_MAX_CHECKS 8

struct probe_check {
	const char *name; /* "auth", "bare_list", … (stable, for --json) */
	bool required;    /* a FAIL here makes the verdict FAIL */
	enum probe_status status;
	char evidence[PROBE_EVIDENCE_LEN]; /* for a person; may quote the API */
};

struct probe_report {
	struct probe_check checks[PROBE_MAX_CHECKS];
	size_t nchecks;
};

/* Judges the answers (indexed by enum probe_ask), check by check. Pure. */
void probe_judge(const struct probe_setup *s, const struct probe_answer answers[PROBE_NASKS],
                 struct probe_report *out);

/* FAIL when a required check failed; else WARN when a check warned; else
 * PASS. Exit 1 for FAIL, 0 otherwise. */
enum probe_status probe_verdict(const struct probe_report *r);

/* Writes s to f as a JSON string literal, quotes included: '"', '\' and
 * control bytes escaped, bytes that are not UTF-8 written as U+FFFD, and
 * mask (the token, when not NULL or empty) and its fragments masked first
 * (mask.h). */
void probe_json_string(FILE *f, const char *s, const char *mask);

/* ---- one probe, planned then run on a loop ---------------------------- */

struct probe;

/* What to probe. */
struct probe_target {
	/* URL, token, zone, codes (sorted with strcmp, distinct) and
	 * request_timeout; the name when named. probe_plan takes it over. */
	struct connector c;
	bool named;       /* a row of ksi_sales.connectors: the report names it */
	bool has_window;  /* [from, to) below; else the 24 hours up to the start
	                   * of the current hour in c's zone */
	int64_t from, to; /* epoch seconds, whole hours of c's zone */
	/* What the caller calls from and to, for errors ("--from", "time_from"),
	 * and their values as written (NULL: written in c's zone). */
	const char *from_label, *to_label;
	const char *from_text, *to_text;
};

/* Plans a probe of t->c (moved into the probe: t->c is zeroed, whatever the
 * outcome). 0, or -1 with a reason for a person in err: no codes, a URL,
 * zone or token the daemon cannot use, a window not on whole hours, a code
 * too long for a URL, out of memory. */
int probe_plan(struct probe_target *t, struct probe **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* error is NULL when every request was answered and judged, else why the
 * probe could not run. p stays the caller's (it may free it here). */
typedef void (*probe_done_fn)(struct probe *p, const char *error, void *user);

/* Starts the requests on http (so on its loop), all at once. done is called
 * exactly once, from the loop, never from inside probe_start. -1 on out of
 * memory before any request started (no callback then). */
int probe_start(struct probe *p, struct http *http, probe_done_fn done, void *user)
    __attribute__((warn_unused_result));

/* After done with no error: the verdict, and the report as the --json
 * document (malloc'd; NULL on out of memory), the token and its
 * fragments masked wherever they would appear (mask.h). */
enum probe_status probe_result(const struct probe *p);
char *probe_report_json(const struct probe *p);

/* Frees p: only once no callback can reach it (done has run, or http is
 * freed). Accepts NULL. */
void probe_free(struct probe *p);

#endif
