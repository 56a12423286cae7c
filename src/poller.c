/* poll: drives one connector's poll through its windows (SPEC §5), one
 * request at a time in window order, and `once` over many connectors. */
#include "poll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "http.h"
#include "isotime.h"
#include "log.h"
#include "validate.h"
#include "window.h"

struct poll_job {
	struct http *http;
	struct db *db;
	const struct connector *c;
	poll_done_fn done;
	void *user;
	struct win_span *spans;
	size_t nspans, span;
	size_t *ends; /* code batches of the current span */
	size_t nbatches, batch;
	char from[ISO_FORMAT_LEN], to[ISO_FORMAT_LEN];
	struct poll_result result;
};

static void job_finish(struct poll_job *j)
{
	const struct connector *c = j->c;
	struct poll_result *r = &j->result;
	if (r->ok)
		log_info("poll", c->name, "polled %zu request%s: %zu records, %zu upserted, %zu refused",
			 r->requests, r->requests == 1 ? "" : "s", r->records, r->upserted, r->rejected);
	else
		log_warning("poll", c->name, "poll failed (%s): %s", run_outcome_name(r->outcome), r->error);
	j->done(j, r, j->user);
	free(j->spans);
	free(j->ends);
	free(j);
}

/* Writes a failed or refused request's run row (or a config error with no
 * window) and ends the poll. */
static void fail_request(struct poll_job *j, enum run_outcome outcome, const char *error, long status,
			 double started, double finished, size_t bytes, bool has_window)
{
	const struct connector *c = j->c;
	struct poll_result *r = &j->result;
	r->ok = false;
	r->outcome = outcome;
	snprintf(r->error, sizeof(r->error), "%s", error);
	struct db_run run = {
		.connector_id = c->id,
		.has_window = has_window,
		.window_from = has_window ? j->spans[j->span].from : 0,
		.window_to = has_window ? j->spans[j->span].to : 0,
		.codes_requested = has_window && j->nbatches
					   ? j->ends[j->batch] - (j->batch ? j->ends[j->batch - 1] : 0)
					   : 0,
		.started_at = started,
		.finished_at = finished,
		.http_status = status,
		.outcome = outcome,
		.bytes = bytes,
		.error = error,
	};
	long upserted;
	char why[512];
	if (db_write_run(j->db, &run, &upserted, why, sizeof(why)) != 0) {
		r->db_failed = true;
		log_error("poll", c->name, "could not record the failed run: %s", why);
	}
	job_finish(j);
}

static enum run_outcome outcome_of(const struct http_response *resp)
{
	switch (resp->outcome) {
	case HTTP_OUTCOME_OK:
		return RUN_OK;
	case HTTP_OUTCOME_STATUS:
		return resp->status == 401 || resp->status == 403 ? RUN_AUTH_FAILED : RUN_HTTP_ERROR;
	case HTTP_OUTCOME_REDIRECT:
		return RUN_REDIRECTED;
	case HTTP_OUTCOME_TOO_LARGE:
		return RUN_TOO_LARGE;
	case HTTP_OUTCOME_TIMEOUT:
		return RUN_TIMEOUT;
	case HTTP_OUTCOME_NETWORK:
		break;
	}
	return RUN_NETWORK_ERROR;
}

static void next_request(struct poll_job *j);

static void on_response(const struct http_response *resp, void *user)
{
	struct poll_job *j = user;
	const struct connector *c = j->c;
	struct poll_result *r = &j->result;
	const struct win_span *span = &j->spans[j->span];
	size_t first = j->batch ? j->ends[j->batch - 1] : 0;
	size_t ncodes = j->ends[j->batch] - first;
	const char *const *codes = (const char *const *)c->codes + first;
	r->retry_after = resp->retry_after;

	enum run_outcome outcome = outcome_of(resp);
	if (outcome != RUN_OK) {
		fail_request(j, outcome, resp->error, resp->status, resp->started_at, resp->finished_at,
			     resp->bytes, true);
		return;
	}

	struct val_request vreq = {
		.codes = codes,
		.ncodes = ncodes,
		.from = span->from,
		.to = span->to,
		.now = (int64_t)time(NULL),
	};
	struct val_result v = {0};
	if (val_validate(resp->body, resp->len, &vreq, &v) != 0) {
		val_result_free(&v);
		fail_request(j, RUN_INVALID_RESPONSE, "out of memory judging the response", resp->status,
			     resp->started_at, resp->finished_at, resp->bytes, true);
		return;
	}
	if (v.refused) {
		char error[1024];
		char where[300];
		http_url_describe(c->endpoint_url, where, sizeof(where));
		snprintf(error, sizeof(error), "response from %s refused: %s", where, v.error);
		val_result_free(&v);
		fail_request(j, RUN_INVALID_RESPONSE, error, resp->status, resp->started_at,
			     resp->finished_at, resp->bytes, true);
		return;
	}

	bool last_batch = j->batch + 1 == j->nbatches;
	struct db_run run = {
		.connector_id = c->id,
		.has_window = true,
		.window_from = span->from,
		.window_to = span->to,
		.codes_requested = ncodes,
		.started_at = resp->started_at,
		.finished_at = resp->finished_at,
		.http_status = resp->status,
		.outcome = RUN_OK,
		.bytes = resp->bytes,
		.result = &v,
		.codes = codes,
		/* The window is done only when every code batch of it is. */
		.advance = last_batch,
		.advance_to = span->to,
	};
	long upserted = 0;
	char why[512];
	if (db_write_run(j->db, &run, &upserted, why, sizeof(why)) != 0) {
		val_result_free(&v);
		r->db_failed = true;
		r->ok = false;
		r->outcome = RUN_DB_ERROR;
		snprintf(r->error, sizeof(r->error), "writing window %s … %s: %s", j->from, j->to, why);
		/* Leave a trace if the database still answers (a constraint,
		 * not a lost connection). */
		struct db_run failed = run;
		failed.outcome = RUN_DB_ERROR;
		failed.error = r->error;
		failed.result = NULL;
		failed.advance = false;
		if (db_write_run(j->db, &failed, &upserted, why, sizeof(why)) != 0)
			log_debug("poll", c->name, "could not record the db_error run: %s", why);
		job_finish(j);
		return;
	}
	r->outcome = RUN_OK;
	r->records += v.received;
	r->upserted += (size_t)upserted;
	r->rejected += v.nrefusals;
	if (v.nrefusals > 0)
		log_warning("poll", c->name, "window %s … %s: %zu of %zu records refused; first, #%zu: %s: %s",
			    j->from, j->to, v.nrefusals, v.received, v.refusals[0].index,
			    val_reason_name(v.refusals[0].reason), v.refusals[0].detail);
	log_debug("poll", c->name, "window %s … %s: HTTP %ld, %zu records, %ld upserted, %zu refused, %.3f s",
		  j->from, j->to, resp->status, v.received, upserted, v.nrefusals,
		  resp->finished_at - resp->started_at);
	val_result_free(&v);
	j->batch++;
	next_request(j);
}

/* Prepares the code batches of span j->span: as many codes per request as
 * keep the URL within WIN_MAX_URL_BYTES. */
static int plan_span(struct poll_job *j, char *err, size_t errlen)
{
	const struct connector *c = j->c;
	const struct win_span *span = &j->spans[j->span];
	if (iso_format_in_zone(span->from, c->timezone, j->from) != 0 ||
	    iso_format_in_zone(span->to - 1, c->timezone, j->to) != 0) {
		snprintf(err, errlen, "timezone \"%s\" cannot be used", c->timezone);
		return -1;
	}
	char *base = NULL;
	if (http_build_url(c->endpoint_url, j->from, j->to, NULL, 0, &base, err, errlen) != 0)
		return -1;
	size_t base_len = strlen(base);
	free(base);
	free(j->ends);
	j->ends = NULL;
	j->nbatches = 0;
	if (win_split_codes((const char *const *)c->codes, c->ncodes, base_len, WIN_MAX_URL_BYTES, &j->ends,
			    &j->nbatches) != 0) {
		snprintf(err, errlen, "a store code cannot fit in a URL of %d bytes", WIN_MAX_URL_BYTES);
		return -1;
	}
	j->batch = 0;
	return 0;
}

static void next_request(struct poll_job *j)
{
	const struct connector *c = j->c;
	char err[512];
	if (j->batch == j->nbatches) {
		j->span++;
		if (j->span == j->nspans) {
			j->result.ok = true;
			job_finish(j);
			return;
		}
		if (plan_span(j, err, sizeof(err)) != 0) {
			double t = (double)time(NULL);
			fail_request(j, RUN_CONFIG_ERROR, err, 0, t, t, 0, true);
			return;
		}
	}
	size_t first = j->batch ? j->ends[j->batch - 1] : 0;
	char *url = NULL;
	if (http_build_url(c->endpoint_url, j->from, j->to, (const char *const *)c->codes + first,
			   j->ends[j->batch] - first, &url, err, sizeof(err)) != 0) {
		double t = (double)time(NULL);
		fail_request(j, RUN_CONFIG_ERROR, err, 0, t, t, 0, true);
		return;
	}
	struct http_request req = {
		.url = url,
		.token = c->bearer_token,
		.timeout_ms = c->request_timeout * 1000,
		.log_name = c->name,
		.done = on_response,
		.user = j,
	};
	j->result.requests++;
	int rc = http_submit(j->http, &req);
	free(url);
	if (rc != 0) {
		double t = (double)time(NULL);
		fail_request(j, RUN_NETWORK_ERROR, "out of memory starting the request", 0, t, t, 0, true);
	}
}

int poll_start(struct http *http, struct db *db, const struct connector *c, int64_t now, poll_done_fn done,
	       void *user)
{
	struct poll_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -1;
	j->http = http;
	j->db = db;
	j->c = c;
	j->done = done;
	j->user = user;
	j->result.retry_after = -1;

	char err[512];
	double t = (double)now;
	if (connector_check(c, err, sizeof(err)) != 0) {
		fail_request(j, RUN_CONFIG_ERROR, err, 0, t, t, 0, false);
		return 0;
	}
	struct win_params wp = {
		.now = now,
		.has_synced = c->has_synced,
		.synced_until = c->synced_until,
		.lookback = c->lookback,
		.initial_backfill = c->initial_backfill,
		.max_window = c->max_window,
		.zone = c->timezone,
	};
	if (win_plan(&wp, &j->spans, &j->nspans) != 0) {
		fail_request(j, RUN_CONFIG_ERROR, "its window cannot be planned (check timezone and intervals)",
			     0, t, t, 0, false);
		return 0;
	}
	if (plan_span(j, err, sizeof(err)) != 0) {
		fail_request(j, RUN_CONFIG_ERROR, err, 0, t, t, 0, true);
		return 0;
	}
	log_debug("poll", c->name, "polling from %s in %zu window%s", j->from, j->nspans,
		  j->nspans == 1 ? "" : "s");
	next_request(j);
	return 0;
}

/* ---- once ----------------------------------------------------------------- */

struct poll_all_state {
	struct ev_loop *loop;
	struct poll_summary *sum;
	size_t pending;
};

static void on_connector_done(struct poll_job *job, const struct poll_result *r, void *user)
{
	struct poll_all_state *st = user;
	(void)job;
	struct poll_summary *s = st->sum;
	if (r->ok)
		s->ok++;
	else
		s->failed++;
	s->db_failed |= r->db_failed;
	s->requests += r->requests;
	s->records += r->records;
	s->upserted += r->upserted;
	s->rejected += r->rejected;
	if (--st->pending == 0)
		ev_break(st->loop, EVBREAK_ONE);
}

int poll_all(struct ev_loop *loop, struct http *http, struct db *db, const struct connector *v, size_t n,
	     struct poll_summary *sum)
{
	memset(sum, 0, sizeof(*sum));
	struct poll_all_state st = {.loop = loop, .sum = sum};
	int64_t now = (int64_t)time(NULL);
	int rc = 0;
	/* Hold one extra count so that a connector finishing synchronously
	 * cannot end the loop before every one has started. */
	st.pending = 1;
	for (size_t i = 0; i < n; i++) {
		sum->connectors++;
		if (v[i].ncodes == 0) {
			/* SPEC §2: not polled, not a failure; its health says so. */
			sum->skipped_no_stores++;
			log_info("poll", v[i].name, "no store linked: not polled");
			continue;
		}
		st.pending++;
		if (poll_start(http, db, &v[i], now, on_connector_done, &st) != 0) {
			st.pending--;
			sum->failed++;
			rc = -1;
		}
	}
	if (--st.pending > 0)
		ev_run(loop, 0);
	return rc;
}
