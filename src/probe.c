/* probe: one probe planned and run, for `ksi-salesd test-connection`
 * (SPEC §6) and the daemon's connection_tests rows. Four requests for the
 * same instants run at once on a libev loop (the command's own, or the
 * daemon's): the daemon's request (with the token, in the connector's
 * zone), the same URL without any Authorization header, and the window
 * written in +09:00 and in +00:00. The answers go through the daemon's
 * validator; probe_judge (probe_judge.c) turns them into checks. The report
 * is probe_report.c's, the command probe_command.c's. Nothing is written to
 * the database here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "connector.h"
#include "isotime.h"
#include "log.h"
#include "probe_internal.h"
#include "window.h"

#define PLUS_ZONE "Asia/Tokyo" /* +09:00 all year: a whole-hour '+' offset */
#define PLUS_OFFSET (9 * 3600)

const char *const probei_ask_names[PROBE_NASKS] = {"main", "noauth", "plus", "utc"};

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
			snprintf(
			    err, errlen,
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
	log_debug("probe", p->c.name, "%s: HTTP %ld, %zu bytes in %.3f s",
	          probei_ask_names[a->which], resp->status, resp->bytes,
	          resp->finished_at - resp->started_at);
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
