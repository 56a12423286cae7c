/* poller: drives one connector's poll through its windows (SPEC §5), one
 * request at a time in window order, and `once` over many connectors. */
#include "poller.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "dbq.h"
#include "http.h"
#include "isotime.h"
#include "log.h"
#include "validate.h"
#include "window.h"

struct poll_job {
	struct poll_spec spec;
	struct http *http;
	struct dbq *dbq;
	const struct connector *c;
	const char *lease_owner;
	poll_done_fn done;
	void *user;
	struct poll_progress progress;
	struct win_span *spans;
	size_t nspans, span;
	size_t *ends; /* code batches of the current span */
	size_t nbatches, batch;
	char from[ISO_FORMAT_LEN], to[ISO_FORMAT_LEN];
	struct poll_result result;
	/* The write in progress: what it writes lives here until it is done. */
	struct db_run run;
	struct val_result v;
	char run_error[1024];
	long upserted;
	bool last_write; /* the poll ends once this write is done */
};

static void job_finish(struct poll_job *j)
{
	const struct connector *c = j->c;
	struct poll_result *r = &j->result;
	if (r->ok)
		log_info("poll", c->name, "polled %zu request%s: %zu records, %zu upserted, %zu refused",
			 r->requests, r->requests == 1 ? "" : "s", r->records, r->upserted, r->rejected);
	j->done(r, j->user);
	poll_free(j);
}

static void next_request(struct poll_job *j);

/* Database thread: the one-statement write of SPEC §5. */
static int write_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct poll_job *j = arg;
	return db_write_run(db, &j->run, &j->upserted, err, errlen);
}

/* Loop: the write of j->run is done. */
static void on_written(int rc, const char *err, void *arg)
{
	struct poll_job *j = arg;
	const struct connector *c = j->c;
	struct poll_result *r = &j->result;
	if (rc != 0) {
		/* Nothing of this request was committed: the window did not
		 * advance and the next poll fetches it again. */
		r->ok = false;
		if (db_error_is_lease_lost(err)) {
			r->lease_lost = true;
			snprintf(r->error, sizeof(r->error), "lease lost, result discarded: %s", err);
			log_warning("poll", c->name, "%s", r->error);
		} else {
			r->db_failed = true;
			r->outcome = RUN_DB_ERROR;
			snprintf(r->error, sizeof(r->error), "writing window %s … %s: %s", j->from, j->to, err);
			log_error("poll", c->name, "%s", r->error);
		}
		job_finish(j);
		return;
	}
	if (j->last_write) {
		job_finish(j);
		return;
	}
	const struct val_result *v = &j->v;
	r->outcome = RUN_OK;
	r->records += v->received;
	r->upserted += (size_t)j->upserted;
	r->rejected += v->nrefusals;
	if (v->nrefusals > 0)
		log_warning("poll", c->name, "window %s … %s: %zu of %zu records refused; first, #%zu: %s: %s",
			    j->from, j->to, v->nrefusals, v->received, v->refusals[0].index,
			    val_reason_name(v->refusals[0].reason), v->refusals[0].detail);
	log_debug("poll", c->name, "window %s … %s: HTTP %ld, %zu records, %ld upserted, %zu refused, %.3f s",
		  j->from, j->to, j->run.http_status, v->received, j->upserted, v->nrefusals,
		  j->run.finished_at - j->run.started_at);
	val_result_free(&j->v);
	memset(&j->v, 0, sizeof(j->v));
	if (j->spec.progress) {
		struct poll_progress *p = &j->progress;
		p->records = r->records;
		p->upserted = r->upserted;
		p->rejected = r->rejected;
		if (j->batch + 1 == j->nbatches) {
			p->windows_done++;
			p->hours_done += (j->spans[j->span].to - j->spans[j->span].from) / 3600;
		}
		j->spec.progress(p, j->user);
	}
	j->batch++;
	next_request(j);
}

static void submit_write(struct poll_job *j)
{
	if (dbq_submit(j->dbq, write_in_thread, on_written, j) != 0) {
		j->result.ok = false;
		j->result.db_failed = true;
		snprintf(j->result.error, sizeof(j->result.error), "out of memory queueing a write");
		job_finish(j);
	}
}

/* Records a failed or refused request (or a config error with no window)
 * in fetch_runs, and ends the poll once that is written. */
static void fail_request(struct poll_job *j, enum run_outcome outcome, const char *error, long status,
			 double started, double finished, size_t bytes, bool has_window)
{
	const struct connector *c = j->c;
	struct poll_result *r = &j->result;
	r->ok = false;
	r->outcome = outcome;
	snprintf(r->error, sizeof(r->error), "%s", error);
	snprintf(j->run_error, sizeof(j->run_error), "%s", error);
	log_debug("poll", c->name, "%s: %s", run_outcome_name(outcome), error);
	j->run = (struct db_run){
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
		.error = j->run_error,
		.lease_owner = j->lease_owner,
		.lease_epoch = c->lease_epoch,
	};
	j->last_write = true;
	submit_write(j);
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

static void on_response(const struct http_response *resp, void *user)
{
	struct poll_job *j = user;
	const struct connector *c = j->c;
	struct poll_result *r = &j->result;
	const struct win_span *span = &j->spans[j->span];
	size_t first = j->batch ? j->ends[j->batch - 1] : 0;
	size_t ncodes = j->ends[j->batch] - first;
	const char *const *codes = (const char *const *)c->codes + first;
	log_debug("poll", c->name, "answer: HTTP %ld, %zu bytes in %.3f s", resp->status, resp->bytes,
		  resp->finished_at - resp->started_at);
	/* SPEC §6 honours Retry-After on 429 and 503 only. */
	r->retry_after = resp->status == 429 || resp->status == 503 ? resp->retry_after : -1;

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
	memset(&j->v, 0, sizeof(j->v));
	if (val_validate(resp->body, resp->len, &vreq, &j->v) != 0) {
		val_result_free(&j->v);
		memset(&j->v, 0, sizeof(j->v));
		fail_request(j, RUN_INVALID_RESPONSE, "out of memory judging the response", resp->status,
			     resp->started_at, resp->finished_at, resp->bytes, true);
		return;
	}
	if (j->v.refused) {
		char error[1024];
		char where[300];
		http_url_describe(c->endpoint_url, where, sizeof(where));
		snprintf(error, sizeof(error), "response from %s refused: %s", where, j->v.error);
		val_result_free(&j->v);
		memset(&j->v, 0, sizeof(j->v));
		fail_request(j, RUN_INVALID_RESPONSE, error, resp->status, resp->started_at, resp->finished_at,
			     resp->bytes, true);
		return;
	}

	j->run = (struct db_run){
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
		.result = &j->v,
		.codes = codes,
		/* The window is done only when every code batch of it is; a
		 * backfill leaves synced_until to the regular polls. */
		.advance = j->batch + 1 == j->nbatches && !j->spec.has_span,
		.advance_to = span->to,
		.lease_owner = j->lease_owner,
		.lease_epoch = c->lease_epoch,
	};
	submit_write(j);
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

/* Ends a poll that could not start (bad configuration), from the loop. */
static void fail_before_start(struct poll_job *j, const char *error, bool has_window)
{
	double t = (double)time(NULL);
	fail_request(j, RUN_CONFIG_ERROR, error, 0, t, t, 0, has_window);
}

void poll_free(struct poll_job *j)
{
	if (!j)
		return;
	val_result_free(&j->v);
	free(j->spans);
	free(j->ends);
	free(j);
}

/* Splits [from, to) into max_window pieces on the zone's hours. */
static int plan_explicit_span(struct poll_job *j, int64_t from, int64_t to)
{
	const struct connector *c = j->c;
	int64_t step = c->max_window / 3600 * 3600;
	if (step < 3600)
		step = 3600;
	size_t n = (size_t)((to - from + step - 1) / step);
	if (to <= from || n == 0 || n > 100000)
		return -1;
	j->spans = calloc(n, sizeof(*j->spans));
	if (!j->spans)
		return -1;
	for (size_t i = 0; i < n; i++) {
		j->spans[i].from = from + (int64_t)i * step;
		j->spans[i].to = j->spans[i].from + step < to ? j->spans[i].from + step : to;
	}
	j->nspans = n;
	return 0;
}

int poll_start(const struct poll_spec *spec, struct poll_job **out)
{
	struct poll_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -1;
	*out = j;
	j->spec = *spec;
	j->http = spec->http;
	j->dbq = spec->dbq;
	j->c = spec->c;
	j->lease_owner = spec->lease_owner;
	j->done = spec->done;
	j->user = spec->user;
	j->result.retry_after = -1;
	const struct connector *c = j->c;

	char err[512];
	if (connector_check(c, err, sizeof(err)) != 0) {
		fail_before_start(j, err, false);
		return 0;
	}
	if (spec->has_span) {
		if (plan_explicit_span(j, spec->span_from, spec->span_to) != 0) {
			fail_before_start(j, "the backfill span cannot be planned", false);
			return 0;
		}
	} else {
		struct win_params wp = {
			.now = spec->now,
			.has_synced = c->has_synced,
			.synced_until = c->synced_until,
			.lookback = c->lookback,
			.initial_backfill = c->initial_backfill,
			.max_window = c->max_window,
			.zone = c->timezone,
		};
		if (win_plan(&wp, &j->spans, &j->nspans) != 0) {
			fail_before_start(j, "its window cannot be planned (check timezone and intervals)", false);
			return 0;
		}
	}
	j->progress.windows_total = j->nspans;
	j->progress.hours_total = (j->spans[j->nspans - 1].to - j->spans[0].from) / 3600;
	if (plan_span(j, err, sizeof(err)) != 0) {
		fail_before_start(j, err, true);
		return 0;
	}
	log_debug("poll", c->name, "polling from %s in %zu window%s", j->from, j->nspans,
		  j->nspans == 1 ? "" : "s");
	next_request(j);
	return 0;
}
