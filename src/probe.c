/* probe: `ksi-salesd test-connection` (SPEC §6) and the daemon's
 * connection_tests rows. Four requests for the same instants run at once on
 * a libev loop (the command's own, or the daemon's): the daemon's request
 * (with the token, in the connector's zone), the same URL without any
 * Authorization header, and the window written in +09:00 and in +00:00. The
 * answers go through the daemon's validator; probe_judge turns them into
 * checks. Nothing is written to the database here. */
#include "probe.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "connector.h"
#include "db.h"
#include "isotime.h"
#include "jsonw.h"
#include "mask.h"
#include "log.h"
#include "window.h"

#define NREASONS (VAL_DUPLICATE + 1)
#define LIST_MAX 10            /* codes named in one line */
#define DEFAULT_TIMEOUT_S 30   /* --url: the connectors table's default */
#define PLUS_ZONE "Asia/Tokyo" /* +09:00 all year: a whole-hour '+' offset */
#define PLUS_OFFSET (9 * 3600)

static const char misread[] = "a window written with a '+' offset is misread (the '+' probably "
                              "became a space; decode %2B before form-decoding)";

/* ---- codes --------------------------------------------------------------- */

static int code_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void probe_codes_free(char **codes, size_t n)
{
	if (!codes)
		return;
	for (size_t i = 0; i < n; i++)
		free(codes[i]);
	free(codes);
}

int probe_parse_codes(const char *list, char ***codes, size_t *n, char *err, size_t errlen)
{
	*codes = NULL;
	*n = 0;
	if (!list || !*list) {
		snprintf(err, errlen,
		         "--codes is empty: give the store codes, e.g. --codes 0001,0002");
		return -1;
	}
	size_t cap = 1;
	for (const char *p = list; *p; p++)
		cap += *p == ',';
	char **v = calloc(cap, sizeof(*v));
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	size_t k = 0;
	for (const char *p = list;; p++) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == 0 || len > VAL_MAX_STRING_BYTES) {
			snprintf(
			    err, errlen,
			    "--codes: code #%zu is %s (each is 1 to %d bytes, separated by commas)",
			    k + 1, len ? "too long" : "empty", VAL_MAX_STRING_BYTES);
			probe_codes_free(v, k);
			return -1;
		}
		if (!(v[k] = strndup(p, len))) {
			snprintf(err, errlen, "out of memory");
			probe_codes_free(v, k);
			return -1;
		}
		k++;
		if (!end)
			break;
		p = end;
	}
	/* The daemon's order (SPEC §2: sorted), and the validator's. */
	qsort(v, k, sizeof(*v), code_cmp);
	size_t u = 0;
	for (size_t i = 0; i < k; i++) {
		if (u > 0 && strcmp(v[u - 1], v[i]) == 0) {
			free(v[i]);
			continue;
		}
		v[u++] = v[i];
	}
	*codes = v;
	*n = u;
	return 0;
}

/* ---- answers -------------------------------------------------------------- */

int probe_answer_set(struct probe_answer *a, const struct http_response *r,
                     const struct val_request *req)
{
	probe_answer_free(a);
	a->answered = true;
	a->outcome = r->outcome;
	a->status = r->status;
	a->elapsed = r->finished_at - r->started_at;
	a->bytes = r->bytes;
	a->gzip = r->gzip;
	snprintf(a->error, sizeof(a->error), "%s", r->error);
	if (r->outcome != HTTP_OUTCOME_OK)
		return 0;
	if (val_validate(r->body, r->len, req, &a->v) != 0) {
		val_result_free(&a->v);
		memset(&a->v, 0, sizeof(a->v));
		return -1;
	}
	a->validated = true;
	return 0;
}

void probe_answer_free(struct probe_answer *a)
{
	if (!a)
		return;
	val_result_free(&a->v);
	memset(a, 0, sizeof(*a));
}

/* ---- judging (pure) ----------------------------------------------------- */

const char *probe_status_name(enum probe_status s)
{
	switch (s) {
	case PROBE_PASS:
		return "PASS";
	case PROBE_FAIL:
		return "FAIL";
	case PROBE_WARN:
		return "WARN";
	case PROBE_INFO:
		break;
	}
	return "INFO";
}

static struct probe_check *add_check(struct probe_report *r, const char *name, bool required)
{
	struct probe_check *c = &r->checks[r->nchecks++];
	memset(c, 0, sizeof(*c));
	c->name = name;
	c->required = required;
	c->status = PROBE_PASS;
	return c;
}

/* Appends to the evidence; a cut is made on a UTF-8 character boundary and
 * marked with "…", after which nothing more is added. */
__attribute__((format(printf, 2, 3))) static void ev_add(struct probe_check *c, const char *fmt,
                                                         ...)
{
	static const char more[] = "…";
	size_t size = sizeof(c->evidence);
	size_t len = strlen(c->evidence);
	if (len + sizeof(more) >= size)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(c->evidence + len, size - len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n < size - len)
		return;
	/* Cut before a continuation byte backs off at most 3 bytes, so the
	 * length stays within sizeof(more) of the end: later calls return. */
	size_t cut = size - sizeof(more);
	while (cut > len && ((unsigned char)c->evidence[cut] & 0xC0) == 0x80)
		cut--;
	memcpy(c->evidence + cut, more, sizeof(more));
}

static bool answered_2xx(const struct probe_answer *a)
{
	return a->answered && a->outcome == HTTP_OUTCOME_OK;
}

/* A 2xx answer accepted as a whole: its records can be read. */
static bool got_list(const struct probe_answer *a)
{
	return answered_2xx(a) && a->validated && !a->v.refused;
}

/* Why an answer gave no list, for a person. */
static const char *why_not(const struct probe_answer *a)
{
	if (!a->answered)
		return "no answer";
	if (a->outcome != HTTP_OUTCOME_OK)
		return a->error;
	if (a->validated && a->v.refused)
		return a->v.error;
	return "out of memory judging it";
}

static const char *plural(size_t n)
{
	return n == 1 ? "" : "s";
}

static void judge_auth(const struct probe_setup *s, const struct probe_answer *a,
                       struct probe_report *r)
{
	const struct probe_answer *m = &a[PROBE_ASK_MAIN], *n = &a[PROBE_ASK_NOAUTH];
	struct probe_check *c = add_check(r, "auth", true);
	bool n_refused = n->answered && n->outcome == HTTP_OUTCOME_STATUS &&
	                 (n->status == 401 || n->status == 403);
	if (!s->has_token) {
		c->status = PROBE_FAIL;
		ev_add(
		    c,
		    "the connector has no bearer_token: the guide requires 'Authorization: Bearer "
		    "<token>'");
		if (answered_2xx(n))
			ev_add(c, "; the API answers without a token: anyone can read this "
			          "customer's sales");
		return;
	}
	if (!answered_2xx(m)) {
		c->status = PROBE_FAIL;
		if (m->answered && (m->status == 401 || m->status == 403))
			ev_add(c,
			       "the API refused the token: %s: check the token the customer gave",
			       m->error);
		else
			ev_add(c, "the request with the token got no 2xx answer: %s", why_not(m));
		return;
	}
	if (answered_2xx(n)) {
		c->status = PROBE_FAIL;
		ev_add(
		    c,
		    "answers without a token: anyone can read this customer's sales (HTTP %ld with "
		    "the token, HTTP %ld without any Authorization header): it must answer 401 or "
		    "403",
		    m->status, n->status);
		return;
	}
	if (n_refused) {
		ev_add(c, "HTTP %ld with the token, HTTP %ld without one", m->status, n->status);
		return;
	}
	c->status = PROBE_WARN;
	if (n->answered && n->outcome == HTTP_OUTCOME_STATUS)
		ev_add(
		    c,
		    "HTTP %ld with the token; without one HTTP %ld, not 401 or 403: a wrong token "
		    "would show as http_error instead of auth_failed",
		    m->status, n->status);
	else
		ev_add(c, "HTTP %ld with the token; without one no clear refusal (401 or 403): %s",
		       m->status, why_not(n));
}

static void judge_bare_list(const struct probe_answer *a, struct probe_report *r)
{
	const struct probe_answer *m = &a[PROBE_ASK_MAIN];
	struct probe_check *c = add_check(r, "bare_list", true);
	if (!answered_2xx(m)) {
		c->status = PROBE_FAIL;
		ev_add(c, "not judged: the request with the token got no 2xx answer (see auth)");
	} else if (!m->validated) {
		c->status = PROBE_FAIL;
		ev_add(c, "not judged: out of memory");
	} else if (m->v.refused) {
		c->status = PROBE_FAIL;
		ev_add(c, "the answer is refused as a whole: %s", m->v.error);
	} else {
		ev_add(c, "a bare JSON list of %zu element%s, %zu bytes", m->v.received,
		       plural(m->v.received), m->bytes);
	}
}

/* What a refusal reason means for the customer, in the guide's terms. */
static const char *reason_advice(enum val_reason reason)
{
	switch (reason) {
	case VAL_NOT_OBJECT:
		return "returns list elements that are not objects: each must be an object with "
		       "time, "
		       "ext_ref_code and num_tickets";
	case VAL_MISSING_FIELD:
		return "leaves fields out: every record needs time, ext_ref_code and num_tickets";
	case VAL_WRONG_TYPE:
		return "sends fields of the wrong type: time and ext_ref_code are strings, "
		       "num_tickets a "
		       "JSON number";
	case VAL_STRING_NUL:
		return "sends strings with a NUL character";
	case VAL_STRING_INVALID_UTF8:
		return "sends strings that are not UTF-8";
	case VAL_STRING_TOO_LONG:
		return "sends strings over 200 bytes";
	case VAL_TIME_NO_OFFSET:
		return "returns times without an offset (like 2023-02-08T00:00:00): the guide "
		       "requires Z "
		       "or ±HH:MM";
	case VAL_TIME_UNPARSEABLE:
		return "returns times that are not ISO 8601 date-times";
	case VAL_TIME_NOT_ON_HOUR:
		return "returns times that are not the start of an hour: one record per hour, "
		       "minutes "
		       "and seconds zero";
	case VAL_TIME_OUTSIDE_WINDOW:
		return "returns hours outside the requested window: only fromTime up to toTime";
	case VAL_TIME_IN_FUTURE:
		return "returns hours that have not started yet: no future hours";
	case VAL_UNKNOWN_CODE:
		return "returns codes that were not requested: only the requested ext_ref_codes "
		       "may come "
		       "back, exactly as sent";
	case VAL_TICKETS_NEGATIVE:
		return "returns negative num_tickets";
	case VAL_TICKETS_FRACTIONAL:
		return "returns num_tickets with a fraction: whole numbers only";
	case VAL_TICKETS_TOO_LARGE:
		return "returns num_tickets over 2147483647";
	case VAL_STRING_INVALID:
		return "sends lone UTF-16 surrogate escapes (like \\ud800) in time, ext_ref_code or a key";
	case VAL_DUPLICATE_KEY:
		return "gives time, ext_ref_code or num_tickets twice in one record";
	case VAL_DUPLICATE:
		break;
	}
	return "returns the same code and hour more than once: one record per code and hour";
}

/* A required check that needs the main answer's list fails, pointing at
 * the check that explains why, when there is no list to read. */
static bool judgeable(const struct probe_answer *m, struct probe_check *c)
{
	if (got_list(m))
		return true;
	c->status = PROBE_FAIL;
	ev_add(c, "not judged: no list to read (see %s)", answered_2xx(m) ? "bare_list" : "auth");
	return false;
}

static void judge_records(const struct probe_answer *a, struct probe_report *r)
{
	const struct probe_answer *m = &a[PROBE_ASK_MAIN];
	struct probe_check *c = add_check(r, "records", true);
	if (!judgeable(m, c))
		return;
	const struct val_result *v = &m->v;
	if (v->nrefusals == 0) {
		if (v->received == 0) {
			c->status = PROBE_WARN;
			ev_add(c, "the list is empty: no record to check (pick a window with "
			          "sales: --from, "
			          "--to)");
		} else {
			ev_add(c, "all %zu record%s accepted", v->received, plural(v->received));
		}
		return;
	}
	c->status = PROBE_FAIL;
	ev_add(c, "%zu of %zu record%s refused", v->nrefusals, v->received, plural(v->received));
	/* Each reason once, in the order it first appears, with its count and
	 * the first example's detail. */
	bool seen[NREASONS] = {false};
	for (size_t i = 0; i < v->nrefusals; i++) {
		const struct val_refusal *f = &v->refusals[i];
		if ((unsigned)f->reason >= NREASONS || seen[f->reason])
			continue;
		seen[f->reason] = true;
		size_t count = 0;
		for (size_t k = i; k < v->nrefusals; k++)
			count += v->refusals[k].reason == f->reason;
		ev_add(c, "; %s ×%zu: %s (first, element #%zu: %s)", val_reason_name(f->reason),
		       count, reason_advice(f->reason), f->index, f->detail);
	}
}

static void judge_all_codes(const struct probe_setup *s, const struct probe_answer *a,
                            struct probe_report *r)
{
	const struct probe_answer *m = &a[PROBE_ASK_MAIN];
	struct probe_check *c = add_check(r, "all_codes", true);
	if (!judgeable(m, c))
		return;
	if (s->ncodes < 2) {
		c->status = PROBE_INFO;
		ev_add(
		    c,
		    "one code asked: give two or more (--codes) to check that every ext_ref_codes "
		    "parameter is honoured");
		return;
	}
	const struct val_result *v = &m->v;
	if (v->nrecords == 0) {
		c->status = PROBE_WARN;
		if (v->received == 0)
			ev_add(c, "the list is empty: cannot tell whether every code is honoured "
			          "(pick a window "
			          "with sales)");
		else
			ev_add(c, "not judged: no record was accepted (see records)");
		return;
	}
	/* Records are sorted by code index: count the distinct ones. */
	size_t present = 0;
	for (size_t i = 0; i < v->nrecords; i++)
		present += i == 0 || v->records[i].code != v->records[i - 1].code;
	if (present == s->ncodes) {
		ev_add(c, "all %zu requested codes answered", s->ncodes);
		return;
	}
	if (present == 1 && v->records[0].code == s->ncodes - 1) {
		c->status = PROBE_FAIL;
		ev_add(c,
		       "honours only the last ext_ref_codes parameter: repeat the parameter once "
		       "per store "
		       "and return all of them (asked for %zu codes, records came only for \"%s\", "
		       "the last)",
		       s->ncodes, s->codes[s->ncodes - 1]);
		return;
	}
	c->status = PROBE_WARN;
	ev_add(c, "no records for %zu of %zu codes (a store may have no sales in the window): ",
	       s->ncodes - present, s->ncodes);
	size_t k = 0, listed = 0;
	for (size_t i = 0; i < s->ncodes; i++) {
		while (k < v->nrecords && v->records[k].code < i)
			k++;
		if (k < v->nrecords && v->records[k].code == i)
			continue;
		if (listed < LIST_MAX)
			ev_add(c, "%s\"%s\"", listed ? ", " : "", s->codes[i]);
		listed++;
	}
	if (listed > LIST_MAX)
		ev_add(c, " and %zu more", listed - LIST_MAX);
}

static int record_cmp(const struct val_record *x, const struct val_record *y)
{
	if (x->code != y->code)
		return x->code < y->code ? -1 : 1;
	if (x->hour != y->hour)
		return x->hour < y->hour ? -1 : 1;
	return 0;
}

static void judge_plus_offset(const struct probe_setup *s, const struct probe_answer *a,
                              struct probe_report *r)
{
	const struct probe_answer *p = &a[PROBE_ASK_PLUS], *u = &a[PROBE_ASK_UTC];
	struct probe_check *c = add_check(r, "plus_offset", true);
	if (!got_list(u)) {
		c->status = PROBE_FAIL;
		ev_add(c, "not judged: the window written in +00:00 got no usable answer: %s",
		       why_not(u));
		return;
	}
	if (!got_list(p)) {
		c->status = PROBE_FAIL;
		ev_add(c, "%s: the same window written in +09:00 got no usable answer: %s", misread,
		       why_not(p));
		return;
	}
	const struct val_result *pv = &p->v, *uv = &u->v;
	/* Both lists are sorted by (code, hour): walk them together to the
	 * first key whose record is missing on one side or has other tickets. */
	struct val_record key = {0};
	bool differ = false, in_plus = false, in_utc = false;
	int32_t plus_tickets = 0, utc_tickets = 0;
	for (size_t i = 0, j = 0; !differ && (i < pv->nrecords || j < uv->nrecords);) {
		const struct val_record *x = i < pv->nrecords ? &pv->records[i] : NULL;
		const struct val_record *y = j < uv->nrecords ? &uv->records[j] : NULL;
		int cmp = !x ? 1 : !y ? -1 : record_cmp(x, y);
		if (cmp == 0 && x->num_tickets == y->num_tickets) {
			i++;
			j++;
			continue;
		}
		differ = true;
		key = cmp <= 0 ? *x : *y; /* !x gives cmp 1, !y gives -1 */
		if ((in_plus = cmp <= 0))
			plus_tickets = x->num_tickets;
		if ((in_utc = cmp >= 0))
			utc_tickets = y->num_tickets;
	}
	if (!differ && pv->nrefusals == uv->nrefusals) {
		if (pv->nrecords == 0) {
			c->status = PROBE_WARN;
			ev_add(c, "nothing to compare: neither the +09:00 nor the +00:00 answer "
			          "has an accepted "
			          "record");
		} else {
			ev_add(c,
			       "the same %zu record%s (code, hour, num_tickets) with the window "
			       "written in "
			       "+09:00 and in +00:00",
			       pv->nrecords, plural(pv->nrecords));
		}
		return;
	}
	c->status = PROBE_FAIL;
	ev_add(c,
	       "%s: for the same instants, +09:00 gave %zu accepted record%s (%zu refused), +00:00 "
	       "gave %zu "
	       "(%zu refused)",
	       misread, pv->nrecords, plural(pv->nrecords), pv->nrefusals, uv->nrecords,
	       uv->nrefusals);
	if (differ) {
		char hour[ISO_FORMAT_LEN];
		iso_format(key.hour, 0, hour);
		ev_add(c, "; first difference, \"%s\" at %s: ", s->codes[key.code], hour);
		if (in_plus)
			ev_add(c, "%d tickets", (int)plus_tickets);
		else
			ev_add(c, "no record");
		ev_add(c, " with +09:00, ");
		if (in_utc)
			ev_add(c, "%d tickets", (int)utc_tickets);
		else
			ev_add(c, "no record");
		ev_add(c, " with +00:00");
	} else if (pv->nrefusals > 0) {
		ev_add(c, "; first refused with +09:00, element #%zu: %s", pv->refusals[0].index,
		       pv->refusals[0].detail);
	}
}

/* The connector's own '+HH:30' or '+HH:45' offset was on the wire already. */
static void judge_zone_offset(const struct probe_setup *s, struct probe_report *r)
{
	int32_t off = s->zone_offset;
	if (off <= 0 || off % 3600 == 0)
		return;
	struct probe_check *c = add_check(r, "zone_offset", false);
	c->status = PROBE_INFO;
	ev_add(
	    c,
	    "the connector's zone %s is +%02d:%02d: the main request already sent its window with "
	    "that offset (%%2B%02d%%3A%02d), so records and all_codes cover it",
	    s->zone, (int)(off / 3600), (int)(off % 3600 / 60), (int)(off / 3600),
	    (int)(off % 3600 / 60));
}

static void judge_latency(const struct probe_setup *s, const struct probe_answer *a,
                          struct probe_report *r)
{
	const struct probe_answer *m = &a[PROBE_ASK_MAIN];
	struct probe_check *c = add_check(r, "latency", true);
	double limit_s = (double)s->timeout_ms / 1000.0;
	long ms = (long)(m->elapsed * 1000.0 + 0.5);
	if (m->answered && m->outcome == HTTP_OUTCOME_TIMEOUT) {
		c->status = PROBE_FAIL;
		ev_add(c, "no answer within request_timeout (%g s): %s", limit_s, m->error);
	} else if (!m->answered || m->status == 0) {
		c->status = PROBE_FAIL;
		ev_add(c, "no answer to time: %s", why_not(m));
	} else if ((double)ms > (double)s->timeout_ms / 2.0) {
		c->status = PROBE_WARN;
		ev_add(
		    c,
		    "%ld ms, over half of request_timeout (%g s): ask for a faster API, or shorten "
		    "max_window or raise request_timeout",
		    ms, limit_s);
	} else {
		ev_add(c, "%ld ms (request_timeout %g s)", ms, limit_s);
	}
}

static void judge_gzip(const struct probe_answer *a, struct probe_report *r)
{
	const struct probe_answer *m = &a[PROBE_ASK_MAIN];
	struct probe_check *c = add_check(r, "gzip", false);
	c->status = PROBE_INFO;
	if (!m->answered || m->status == 0)
		ev_add(c, "offered (Accept-Encoding: gzip); no answer");
	else if (m->gzip)
		ev_add(c, "offered and used: %zu bytes once decoded", m->bytes);
	else
		ev_add(c, "offered (Accept-Encoding: gzip), not used: %zu bytes uncompressed",
		       m->bytes);
}

void probe_judge(const struct probe_setup *s, const struct probe_answer answers[PROBE_NASKS],
                 struct probe_report *out)
{
	memset(out, 0, sizeof(*out));
	judge_auth(s, answers, out);
	judge_bare_list(answers, out);
	judge_records(answers, out);
	judge_all_codes(s, answers, out);
	judge_plus_offset(s, answers, out);
	judge_zone_offset(s, out);
	judge_latency(s, answers, out);
	judge_gzip(answers, out);
}

enum probe_status probe_verdict(const struct probe_report *r)
{
	enum probe_status v = PROBE_PASS;
	for (size_t i = 0; i < r->nchecks; i++) {
		if (r->checks[i].required && r->checks[i].status == PROBE_FAIL)
			return PROBE_FAIL;
		if (r->checks[i].status == PROBE_WARN)
			v = PROBE_WARN;
	}
	return v;
}

/* ---- output ----------------------------------------------------------------- */


/* s with the token and its fragments masked (mask.h): malloc'd, or NULL on
 * out of memory, when the caller prints a placeholder instead. */
static char *masked_copy(const char *s, const char *secret)
{
	size_t n = strlen(s);
	char *out = malloc(n + 1);
	if (out && mask_copy_secret(secret, s, n, out, n + 1) < 0) {
		free(out);
		out = NULL;
	}
	return out;
}

void probe_json_string(FILE *f, const char *s, const char *mask)
{
	char *copy = masked_copy(s ? s : "", mask);
	jsonw_string(f, copy ? copy : "(withheld: out of memory while masking)");
	free(copy);
}

/* Text output: one line per check, so control bytes become spaces. */
static void put_text(FILE *f, const char *s, const char *mask)
{
	char *copy = masked_copy(s ? s : "", mask);
	for (const char *p = copy ? copy : "(withheld: out of memory while masking)"; *p;) {
		unsigned char c = (unsigned char)*p++;
		fputc(c < 0x20 || c == 0x7f ? ' ' : c, f);
	}
	free(copy);
}

/* ---- one probe: planned, then run on a loop ------------------------------ */

static const char *const ask_names[PROBE_NASKS] = {"main", "noauth", "plus", "utc"};

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

/* The main window: [t->from, t->to) in whole hours of zone, or the 24 hours
 * up to the start of the current hour. */
static int plan_window(const struct probe_target *t, const char *zone, int64_t *from, int64_t *to,
                       char *err, size_t errlen)
{
	const char *fl = t->from_label ? t->from_label : "from";
	const char *tl = t->to_label ? t->to_label : "to";
	if (t->has_window) {
		int64_t f, e;
		if (t->from >= t->to) {
			snprintf(err, errlen, "%s must be before %s", fl, tl);
			return -1;
		}
		if (win_hour_floor(t->from, zone, &f) != 0 ||
		    win_hour_floor(t->to, zone, &e) != 0) {
			snprintf(err, errlen, "timezone \"%s\" cannot be used", zone);
			return -1;
		}
		if (f != t->from || e != t->to) {
			char when[64] = "";
			bool bad_from = f != t->from;
			const char *text = bad_from ? t->from_text : t->to_text;
			if (text)
				snprintf(when, sizeof(when), "%s", text);
			else if (iso_format_in_zone(bad_from ? t->from : t->to, zone, when) != 0)
				when[0] = '\0';
			snprintf(err, errlen,
			         "%s %s is not the start of an hour in %s (the zone fromTime and "
			         "toTime are written in): the window is whole hours, from %s up to, "
			         "not including, %s",
			         bad_from ? fl : tl, when, zone, fl, tl);
			return -1;
		}
		*from = t->from;
		*to = t->to;
		return 0;
	}
	int64_t end, start;
	if (win_hour_floor((int64_t)time(NULL), zone, &end) != 0 ||
	    win_hour_floor(end - 24 * 3600, zone, &start) != 0) {
		snprintf(err, errlen, "timezone \"%s\" cannot be used", zone);
		return -1;
	}
	*from = start;
	*to = end;
	return 0;
}

/* Writes fromTime/toTime of an ask: in zone, or at a fixed offset when the
 * zone is missing from this host's tz database. */
static int format_ask(struct ask *a, const char *zone, int32_t fallback)
{
	if (iso_format_in_zone(a->from, zone, a->from_s) != 0 ||
	    iso_format_in_zone(a->to - 1, zone, a->to_s) != 0) {
		if (fallback < 0)
			return -1;
		iso_format(a->from, fallback, a->from_s);
		iso_format(a->to - 1, fallback, a->to_s);
	}
	return 0;
}

static int plan_asks(struct probe *p, int64_t from, int64_t to, char *err, size_t errlen)
{
	const struct connector *c = &p->c;
	/* The +09:00 / +00:00 pair asks the same instants on whole UTC hours
	 * (the same as the main window unless the zone is +HH:30 or +HH:45). */
	int64_t ufrom, uto;
	if (win_hour_floor(from, "UTC", &ufrom) != 0 || win_hour_floor(to - 1, "UTC", &uto) != 0) {
		snprintf(err, errlen, "the window cannot be planned");
		return -1;
	}
	uto += 3600;
	for (int i = 0; i < PROBE_NASKS; i++) {
		struct ask *a = &p->asks[i];
		a->p = p;
		a->which = (enum probe_ask)i;
		bool main_window = i == PROBE_ASK_MAIN || i == PROBE_ASK_NOAUTH;
		a->from = main_window ? from : ufrom;
		a->to = main_window ? to : uto;
		int rc = i == PROBE_ASK_PLUS  ? format_ask(a, PLUS_ZONE, PLUS_OFFSET)
		         : i == PROBE_ASK_UTC ? format_ask(a, "UTC", 0)
		                              : format_ask(a, c->timezone, -1);
		if (rc != 0) {
			snprintf(err, errlen, "timezone \"%s\" cannot be used", c->timezone);
			return -1;
		}
	}
	/* As many codes as fit one URL of the daemon's limit, measured on the
	 * longest of the encodings ('+' travels as %2B). */
	size_t base_len = 0;
	for (int i = 0; i < PROBE_NASKS; i++) {
		char *base = NULL;
		if (http_build_url(c->endpoint_url, p->asks[i].from_s, p->asks[i].to_s, NULL, 0,
		                   &base, err, errlen) != 0)
			return -1;
		if (strlen(base) > base_len)
			base_len = strlen(base);
		free(base);
	}
	size_t *ends = NULL, nbatches = 0;
	if (win_split_codes((const char *const *)c->codes, c->ncodes, base_len, WIN_MAX_URL_BYTES,
	                    &ends, &nbatches) != 0) {
		snprintf(err, errlen, "a store code cannot fit in a URL of %d bytes",
		         WIN_MAX_URL_BYTES);
		return -1;
	}
	p->nasked = ends[0];
	free(ends);
	for (int i = 0; i < PROBE_NASKS; i++) {
		struct ask *a = &p->asks[i];
		if (http_build_url(c->endpoint_url, a->from_s, a->to_s,
		                   (const char *const *)c->codes, p->nasked, &a->url, err,
		                   errlen) != 0)
			return -1;
	}
	return 0;
}

int probe_plan(struct probe_target *t, struct probe **out, char *err, size_t errlen)
{
	*out = NULL;
	struct probe *p = calloc(1, sizeof(*p));
	if (!p) {
		connector_free(&t->c);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->c = t->c; /* moved */
	memset(&t->c, 0, sizeof(t->c));
	p->from_db = t->named;
	const struct connector *c = &p->c;
	char why[512];
	int64_t from = 0, to = 0;
	int rc = -1;
	if (c->ncodes == 0)
		snprintf(err, errlen, "no store code to ask for");
	else if (connector_check(c, why, sizeof(why)) != 0)
		snprintf(err, errlen, "%s%s%s%s", c->name ? "connector \"" : "",
		         c->name ? c->name : "", c->name ? "\": " : "", why);
	else if (plan_window(t, c->timezone, &from, &to, err, errlen) == 0 &&
	         plan_asks(p, from, to, err, errlen) == 0)
		rc = 0;
	if (rc != 0) {
		probe_free(p);
		return -1;
	}
	p->from = from;
	http_url_describe(c->endpoint_url, c->bearer_token, p->where, sizeof(p->where));
	*out = p;
	return 0;
}

/* Every answer is in: judge them, then tell the caller. */
static void probe_finish(struct probe *p)
{
	const char *error = NULL;
	if (p->start_failed) {
		error = "out of memory starting a request";
	} else if (p->oom) {
		error = "out of memory judging the answers";
	} else {
		int32_t offset = 0;
		if (iso_zone_offset(p->c.timezone, p->from, &offset) != 0)
			offset = 0;
		struct probe_setup setup = {
		    .codes = (const char *const *)p->c.codes,
		    .ncodes = p->nasked,
		    .has_token = p->c.bearer_token && *p->c.bearer_token,
		    .timeout_ms = p->c.request_timeout * 1000,
		    .zone = p->c.timezone,
		    .zone_offset = offset,
		};
		probe_judge(&setup, p->answers, &p->report);
	}
	p->done(p, error, p->user);
}

static void on_answer(const struct http_response *resp, void *user)
{
	struct ask *a = user;
	struct probe *p = a->p;
	struct val_request req = {
	    .codes = (const char *const *)p->c.codes,
	    .ncodes = p->nasked,
	    .from = a->from,
	    .to = a->to,
	    .now = (int64_t)time(NULL),
	    /* The +09:00 / +00:00 pair asks whole UTC hours (plan_asks): that is its grid. */
	    .zone = a->which == PROBE_ASK_PLUS || a->which == PROBE_ASK_UTC ? "UTC" : p->c.timezone,
	    .secret = p->c.bearer_token,
	};
	if (probe_answer_set(&p->answers[a->which], resp, &req) != 0)
		p->oom = true;
	log_debug("probe", p->c.name, "%s: HTTP %ld, %zu bytes in %.3f s", ask_names[a->which],
	          resp->status, resp->bytes, resp->finished_at - resp->started_at);
	/* Nothing of p is touched after done: the caller may free it there. */
	if (--p->pending == 0)
		probe_finish(p);
}

int probe_start(struct probe *p, struct http *http, probe_done_fn done, void *user)
{
	p->done = done;
	p->user = user;
	for (int i = 0; i < PROBE_NASKS; i++) {
		struct ask *a = &p->asks[i];
		struct http_request req = {
		    .url = a->url,
		    .token = i == PROBE_ASK_NOAUTH ? NULL : p->c.bearer_token,
		    .timeout_ms = p->c.request_timeout * 1000,
		    .log_name = p->c.name ? p->c.name : "test-connection",
		    .done = on_answer,
		    .user = a,
		};
		if (http_submit(http, &req) != 0) {
			if (p->pending == 0)
				return -1;
			/* Those started still answer; done then reports this. */
			p->start_failed = true;
			break;
		}
		p->pending++;
	}
	return 0;
}

enum probe_status probe_result(const struct probe *p)
{
	return probe_verdict(&p->report);
}

void probe_free(struct probe *p)
{
	if (!p)
		return;
	for (int i = 0; i < PROBE_NASKS; i++) {
		free(p->asks[i].url);
		probe_answer_free(&p->answers[i]);
	}
	connector_free(&p->c);
	free(p);
}

/* ---- reports ------------------------------------------------------------- */

static const char *outcome_name(const struct probe_answer *a)
{
	if (!a->answered)
		return "none";
	switch (a->outcome) {
	case HTTP_OUTCOME_OK:
		return "ok";
	case HTTP_OUTCOME_STATUS:
		return "status";
	case HTTP_OUTCOME_REDIRECT:
		return "redirect";
	case HTTP_OUTCOME_TOO_LARGE:
		return "too_large";
	case HTTP_OUTCOME_TIMEOUT:
		return "timeout";
	case HTTP_OUTCOME_NETWORK:
		break;
	}
	return "network";
}

static const char *verdict_summary(const struct probe_report *r, char *buf, size_t len)
{
	enum probe_status v = probe_verdict(r);
	if (v == PROBE_PASS)
		return "the API follows the integration guide";
	if (v == PROBE_WARN)
		return "every required check passed; read the warnings";
	size_t nfailed = 0, o = 0;
	for (size_t i = 0; i < r->nchecks; i++)
		nfailed += r->checks[i].required && r->checks[i].status == PROBE_FAIL;
	o += (size_t)snprintf(buf, len, "%zu required check%s failed (", nfailed, plural(nfailed));
	for (size_t i = 0, k = 0; i < r->nchecks && o < len; i++)
		if (r->checks[i].required && r->checks[i].status == PROBE_FAIL)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", k++ ? ", " : "",
			                      r->checks[i].name);
	if (o < len)
		snprintf(buf + o, len - o, "): the API does not follow the integration guide");
	return buf;
}

static void print_text(const struct probe *p)
{
	const struct probe_report *r = &p->report;
	const char *mask = p->c.bearer_token;
	const struct ask *m = &p->asks[PROBE_ASK_MAIN];
	printf("ksi-salesd test-connection: ");
	put_text(stdout, p->where, mask);
	if (p->from_db) {
		printf(" (connector ");
		put_text(stdout, p->c.name, mask);
		printf(")");
	}
	printf("\n  window %s … %s (%s), %zu code%s: ", m->from_s, m->to_s, p->c.timezone,
	       p->nasked, plural(p->nasked));
	for (size_t i = 0; i < p->nasked && i < LIST_MAX; i++) {
		printf("%s", i ? ", " : "");
		put_text(stdout, p->c.codes[i], mask);
	}
	if (p->nasked > LIST_MAX)
		printf(" and %zu more", p->nasked - LIST_MAX);
	if (p->nasked < p->c.ncodes)
		printf(" (the first %zu of %zu: the daemon splits the codes over several requests)",
		       p->nasked, p->c.ncodes);
	printf("\n");
	for (size_t i = 0; i < r->nchecks; i++) {
		const struct probe_check *c = &r->checks[i];
		printf("%-4s  %-11s  ", probe_status_name(c->status), c->name);
		put_text(stdout, c->evidence, mask);
		printf("\n");
	}
	char buf[512];
	printf("verdict: %s: %s\n", probe_status_name(probe_verdict(r)),
	       verdict_summary(r, buf, sizeof(buf)));
}

/* The --json document, also what a connection_tests row's report holds.
 * Every string goes through probe_json_string with the token as its mask. */
static void print_json(FILE *f, const struct probe *p)
{
	const struct probe_report *r = &p->report;
	const char *mask = p->c.bearer_token;
	const struct ask *m = &p->asks[PROBE_ASK_MAIN];
	fputs("{\"endpoint\":", f);
	probe_json_string(f, p->where, mask);
	fputs(",\"connector\":", f);
	if (p->from_db)
		probe_json_string(f, p->c.name, mask);
	else
		fputs("null", f);
	fputs(",\"timezone\":", f);
	probe_json_string(f, p->c.timezone, mask);
	fprintf(f, ",\"fromTime\":\"%s\",\"toTime\":\"%s\",\"codes\":[", m->from_s, m->to_s);
	for (size_t i = 0; i < p->nasked; i++) {
		if (i)
			fputc(',', f);
		probe_json_string(f, p->c.codes[i], mask);
	}
	fprintf(f, "],\"codes_total\":%zu,\n\"checks\":[", p->c.ncodes);
	for (size_t i = 0; i < r->nchecks; i++) {
		const struct probe_check *c = &r->checks[i];
		fprintf(f, "%s\n {\"name\":\"%s\",\"status\":\"%s\",\"required\":%s,\"evidence\":",
		        i ? "," : "", c->name, probe_status_name(c->status),
		        c->required ? "true" : "false");
		probe_json_string(f, c->evidence, mask);
		fputc('}', f);
	}
	fputs("],\n\"requests\":[", f);
	for (int i = 0; i < PROBE_NASKS; i++) {
		const struct ask *a = &p->asks[i];
		const struct probe_answer *x = &p->answers[i];
		fprintf(
		    f,
		    "%s\n "
		    "{\"name\":\"%s\",\"authorization\":%s,\"fromTime\":\"%s\",\"toTime\":\"%s\","
		    "\"outcome\":\"%s\",\"http_status\":%ld,\"ms\":%ld,\"bytes\":%zu,\"gzip\":%s",
		    i ? "," : "", ask_names[i], i == PROBE_ASK_NOAUTH ? "false" : "true", a->from_s,
		    a->to_s, outcome_name(x), x->status, (long)(x->elapsed * 1000.0 + 0.5),
		    x->bytes, x->gzip ? "true" : "false");
		if (x->validated && !x->v.refused)
			fprintf(f, ",\"received\":%zu,\"accepted\":%zu,\"refused\":%zu",
			        x->v.received, x->v.nrecords, x->v.nrefusals);
		if (x->validated && x->v.refused) {
			fputs(",\"error\":", f);
			probe_json_string(f, x->v.error, mask);
		} else if (x->answered && x->outcome != HTTP_OUTCOME_OK) {
			fputs(",\"error\":", f);
			probe_json_string(f, x->error, mask);
		}
		fputc('}', f);
	}
	char buf[512];
	enum probe_status v = probe_verdict(r);
	fprintf(f, "],\n\"verdict\":\"%s\",\"summary\":", probe_status_name(v));
	probe_json_string(f, verdict_summary(r, buf, sizeof(buf)), mask);
	fprintf(f, ",\"exit_code\":%d}\n", v == PROBE_FAIL ? EXIT_FAILED : EXIT_OK);
}

char *probe_report_json(const struct probe *p)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	print_json(f, p);
	bool failed = ferror(f) != 0;
	if (fclose(f) != 0 || failed) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- the command --------------------------------------------------------- */

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "ksi-salesd test-connection: %s\n", msg);
	return EXIT_USAGE;
}

/* --from / --to: ISO 8601 with an offset. */
static int parse_time(const char *opt, const char *s, int64_t *out)
{
	struct iso_instant t;
	switch (iso_parse(s, strlen(s), &t)) {
	case ISO_OK:
		if (t.fraction_nonzero)
			return usage_error("%s %s is not the start of an hour", opt, s);
		*out = t.epoch;
		return EXIT_OK;
	case ISO_NO_OFFSET:
		return usage_error(
		    "%s %s has no UTC offset: write Z or ±HH:MM, e.g. 2023-02-08T00:00:00-03:00",
		    opt, s);
	case ISO_UNPARSEABLE:
		break;
	}
	return usage_error(
	    "%s %s is not an ISO 8601 date-time with an offset, e.g. 2023-02-08T00:00:00-03:00",
	    opt, s);
}

/* The connector to test: from the database (--connector) or the command
 * line (--url, --codes, the token). */
static int load_target(struct probe_target *t, const struct cli *cli, const struct cfg *cfg)
{
	char err[1024];
	struct connector *c = &t->c;
	if (cli->connector && cli->url)
		return usage_error("give --connector NAME or --url URL, not both");
	if (!cli->connector && !cli->url)
		return usage_error(
		    "give --connector NAME, or --url URL --codes 0001,0002 with a token "
		    "(--token-file FILE, KSI_SALESD_TOKEN or --token)");
	if (cli->url) {
		if (!cli->codes)
			return usage_error(
			    "--url needs --codes 0001,0002 (the customer's store codes)");
		if (!cli->token || !*cli->token)
			return usage_error(
			    "--url needs a token: --token-file FILE, KSI_SALESD_TOKEN or --token");
		if (http_url_check(cli->url, err, sizeof(err)) != 0)
			return usage_error("--url: %s", err);
		c->endpoint_url = strdup(cli->url);
		c->bearer_token = strdup(cli->token);
		c->timezone = strdup("UTC");
		c->request_timeout = DEFAULT_TIMEOUT_S;
		if (!c->endpoint_url || !c->bearer_token || !c->timezone) {
			log_error("probe", NULL, "out of memory");
			return EXIT_FAILED;
		}
	} else {
		struct db *db = NULL;
		if (db_connect(cfg->database_url, &db, err, sizeof(err)) != 0) {
			log_error("probe", NULL, "database unreachable: %s", err);
			return EXIT_DB;
		}
		int rc = EXIT_OK;
		if (db_check_schema(db, err, sizeof(err)) != 0) {
			rc = db_ok(db) ? usage_error("%s", err) : EXIT_DB;
		} else {
			/* A read-only transaction: nothing is written. */
			int found =
			    db_load_connector_by_name(db, cli->connector, c, err, sizeof(err));
			if (found == 1) {
				rc = usage_error(
				    "%s (see: SELECT name, enabled FROM ksi_sales.connectors)",
				    err);
			} else if (found != 0) {
				log_error("probe", cli->connector, "loading the connector: %s",
				          err);
				rc = db_ok(db) ? EXIT_FAILED : EXIT_DB;
			}
		}
		db_close(db);
		if (rc != EXIT_OK)
			return rc;
		t->named = true;
		if (cli->token)
			fprintf(
			    stderr,
			    "ksi-salesd test-connection: the token given on the command line or in "
			    "KSI_SALESD_TOKEN is not used: --connector sends the connector's own "
			    "bearer_token\n");
	}
	if (cli->codes) {
		char **codes;
		size_t n;
		if (probe_parse_codes(cli->codes, &codes, &n, err, sizeof(err)) != 0)
			return usage_error("%s", err);
		probe_codes_free(c->codes, c->ncodes);
		c->codes = codes;
		c->ncodes = n;
	}
	if (c->ncodes == 0)
		return usage_error(
		    "connector \"%s\" has no store linked: link one (ksi_sales.stores) or give "
		    "--codes 0001,0002",
		    c->name);
	/* The rest (URL, zone, token, window) is checked by probe_plan. */
	return EXIT_OK;
}

/* --from and --to, both or neither: checked before the database is asked. */
static int parse_window(const struct cli *cli, struct probe_target *t)
{
	if (!cli->from != !cli->to)
		return usage_error("give both --from and --to, or neither (the last 24 hours)");
	t->from_label = "--from";
	t->to_label = "--to";
	t->from_text = cli->from;
	t->to_text = cli->to;
	if (!cli->from)
		return EXIT_OK;
	t->has_window = true;
	int rc = parse_time("--from", cli->from, &t->from);
	if (rc == EXIT_OK)
		rc = parse_time("--to", cli->to, &t->to);
	if (rc == EXIT_OK && t->from >= t->to)
		rc = usage_error("--from %s is not before --to %s", cli->from, cli->to);
	return rc;
}

/* The command's own loop: the probe runs on it alone. */
struct command_run {
	struct ev_loop *loop;
	bool done;
	char error[256];
};

static void on_probed(struct probe *p, const char *error, void *user)
{
	struct command_run *run = user;
	(void)p;
	run->done = true;
	if (error)
		snprintf(run->error, sizeof(run->error), "%s", error);
	ev_break(run->loop, EVBREAK_ALL);
}

static int fetch_all(struct probe *p, const struct cfg *cfg)
{
	struct command_run run = {0};
	struct http *http = NULL;
	run.loop = ev_loop_new(EVFLAG_AUTO);
	if (!run.loop || http_new(run.loop, cfg, &http) != 0) {
		log_error("probe", p->c.name, "cannot set up the event loop or libcurl");
		if (run.loop)
			ev_loop_destroy(run.loop);
		return EXIT_FAILED;
	}
	int rc = EXIT_OK;
	if (probe_start(p, http, on_probed, &run) != 0) {
		log_error("probe", p->c.name, "out of memory starting a request");
		rc = EXIT_FAILED;
	} else {
		ev_run(run.loop, 0);
	}
	http_free(http); /* aborts whatever is left, without callbacks */
	ev_loop_destroy(run.loop);
	if (rc == EXIT_OK && !run.done) {
		log_error("probe", p->c.name,
		          "the event loop stopped with %zu request%s unanswered", p->pending,
		          plural(p->pending));
		rc = EXIT_FAILED;
	} else if (rc == EXIT_OK && run.error[0]) {
		log_error("probe", p->c.name, "%s", run.error);
		rc = EXIT_FAILED;
	}
	return rc;
}

int probe_command(const struct cli *cli, struct cfg *cfg)
{
	struct probe_target t = {0};
	struct probe *p = NULL;
	/* Usage errors that need no database come first. */
	int rc = parse_window(cli, &t);
	if (rc == EXIT_OK)
		rc = load_target(&t, cli, cfg);
	if (rc == EXIT_OK) {
		char err[1024];
		if (probe_plan(&t, &p, err, sizeof(err)) != 0)
			rc = usage_error("%s", err);
	}
	if (rc == EXIT_OK)
		rc = fetch_all(p, cfg);
	if (rc == EXIT_OK) {
		if (cli->json)
			print_json(stdout, p);
		else
			print_text(p);
		fflush(stdout);
		rc = probe_result(p) == PROBE_FAIL ? EXIT_FAILED : EXIT_OK;
	}
	probe_free(p);
	connector_free(&t.c); /* what load_target made, when probe_plan did not take it */
	return rc;
}
