/* probe_judge: the pure layer of the probe (SPEC §6). The answers to one
 * probe's four requests go in (probe_answer_set runs the daemon's validator
 * on a 2xx body), checks with evidence for a person come out (probe_judge),
 * and a verdict (probe_verdict). No I/O, no clock, no globals: the unit
 * tests judge hand-made answers here. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "isotime.h"
#include "probe_internal.h"

#define NREASONS (VAL_DUPLICATE + 1)

static const char misread[] = "a window written with a '+' offset is misread (the '+' probably "
                              "became a space; decode %2B before form-decoding)";

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
		       probei_plural(m->v.received), m->bytes);
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
		return "sends lone UTF-16 surrogate escapes (like \\ud800) in time, ext_ref_code "
		       "or a key";
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
			ev_add(c, "all %zu record%s accepted", v->received,
			       probei_plural(v->received));
		}
		return;
	}
	c->status = PROBE_FAIL;
	ev_add(c, "%zu of %zu record%s refused", v->nrefusals, v->received,
	       probei_plural(v->received));
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
		if (listed < PROBEI_LIST_MAX)
			ev_add(c, "%s\"%s\"", listed ? ", " : "", s->codes[i]);
		listed++;
	}
	if (listed > PROBEI_LIST_MAX)
		ev_add(c, " and %zu more", listed - PROBEI_LIST_MAX);
}

static int record_cmp(const struct val_record *x, const struct val_record *y)
{
	if (x->code != y->code)
		return x->code < y->code ? -1 : 1;
	if (x->hour != y->hour)
		return x->hour < y->hour ? -1 : 1;
	return 0;
}

/* The first key (code, hour) whose record is missing from one of two
 * lists, or has other tickets there. */
struct difference {
	struct val_record key;
	bool in_plus, in_utc;
	int32_t plus_tickets, utc_tickets;
};

/* Both lists are sorted by (code, hour): walks them together. false when
 * they hold the same records. */
static bool first_difference(const struct val_result *pv, const struct val_result *uv,
                             struct difference *d)
{
	memset(d, 0, sizeof(*d));
	for (size_t i = 0, j = 0; i < pv->nrecords || j < uv->nrecords;) {
		const struct val_record *x = i < pv->nrecords ? &pv->records[i] : NULL;
		const struct val_record *y = j < uv->nrecords ? &uv->records[j] : NULL;
		int cmp = !x ? 1 : !y ? -1 : record_cmp(x, y);
		if (cmp == 0 && x->num_tickets == y->num_tickets) {
			i++;
			j++;
			continue;
		}
		d->key = cmp <= 0 ? *x : *y; /* !x gives cmp 1, !y gives -1 */
		if ((d->in_plus = cmp <= 0))
			d->plus_tickets = x->num_tickets;
		if ((d->in_utc = cmp >= 0))
			d->utc_tickets = y->num_tickets;
		return true;
	}
	return false;
}

/* "; first difference, "0001" at …: 3 tickets with +09:00, no record with
 * +00:00". */
static void ev_difference(struct probe_check *c, const struct probe_setup *s,
                          const struct difference *d)
{
	char hour[ISO_FORMAT_LEN];
	iso_format(d->key.hour, 0, hour);
	ev_add(c, "; first difference, \"%s\" at %s: ", s->codes[d->key.code], hour);
	if (d->in_plus)
		ev_add(c, "%d tickets", (int)d->plus_tickets);
	else
		ev_add(c, "no record");
	ev_add(c, " with +09:00, ");
	if (d->in_utc)
		ev_add(c, "%d tickets", (int)d->utc_tickets);
	else
		ev_add(c, "no record");
	ev_add(c, " with +00:00");
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
	struct difference d;
	bool differ = first_difference(pv, uv, &d);
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
			       pv->nrecords, probei_plural(pv->nrecords));
		}
		return;
	}
	c->status = PROBE_FAIL;
	ev_add(c,
	       "%s: for the same instants, +09:00 gave %zu accepted record%s (%zu refused), +00:00 "
	       "gave %zu "
	       "(%zu refused)",
	       misread, pv->nrecords, probei_plural(pv->nrecords), pv->nrefusals, uv->nrecords,
	       uv->nrefusals);
	if (differ) {
		ev_difference(c, s, &d);
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
