/* poller: drives one connector's poll through its windows (SPEC §5), in
 * window order. Whoever starts it (the daemon's `run` and `once`, the
 * backfill command, a backfill request), every poll ends in job_finish,
 * which reports it to stats.
 *
 * A poll is a pipeline of requests: while one request's result is being
 * written, the next is fetched (one fetch at a time: a customer's API is
 * never asked twice at once). Writes commit in request order, one at a
 * time, so synced_until never passes a window that did not commit. A
 * backfill (an explicit span, synced_until untouched) lets two writes run
 * at once on the database's two connections; its requests are still
 * retired in order, so the progress it reports (and a backfill request's
 * done_until) only ever covers hours all committed. */
#include "poller.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "dbq.h"
#include "http.h"
#include "isotime.h"
#include "log.h"
#include "mask.h"
#include "stats.h"
#include "validate.h"
#include "window.h"

/* Writes in flight per poll, and requests between fetch and retirement. */
#define WRITES_POLL 1
#define WRITES_SPAN 2
#define SLOTS (WRITES_SPAN + 1)

/* Where a slot is in its life. A request holds a slot from its answer (or
 * its failure) until it is retired, in request order:
 *
 *   FREE -> READY       slot_take: answered, or a failure recorded
 *   READY -> WRITING    submit_write: queued in dbq
 *   READY -> WRITTEN    submit_write: could not even be queued (rc -1)
 *   WRITING -> WRITTEN  on_written: dbq called back with rc
 *   WRITTEN -> FREE     pump: retired (every earlier request was)
 *   READY -> FREE       pump: dropped, the poll is ending
 *
 * A WRITING slot is never freed: dbq holds a pointer to it until its done
 * runs. Whether the write is a result or a failure's fetch_runs row is not a
 * state: both travel the same way (slot.failure tells them apart). */
enum slot_state {
	SLOT_FREE, /* zero: a cleared slot is free */
	SLOT_READY,
	SLOT_WRITING,
	SLOT_WRITTEN,
};

static const char *const slot_state_names[] = {
    [SLOT_FREE] = "free",
    [SLOT_READY] = "ready",
    [SLOT_WRITING] = "writing",
    [SLOT_WRITTEN] = "written",
};

/* The transitions drawn above: slot_moves[from][to]. */
static const bool slot_moves[][SLOT_WRITTEN + 1] = {
    [SLOT_FREE] = {[SLOT_READY] = true},
    [SLOT_READY] = {[SLOT_WRITING] = true, [SLOT_WRITTEN] = true, [SLOT_FREE] = true},
    [SLOT_WRITING] = {[SLOT_WRITTEN] = true},
    [SLOT_WRITTEN] = {[SLOT_FREE] = true},
};

/* One request, from its answer until it is retired. */
struct slot {
	struct poll_job *j;
	enum slot_state state; /* changed by slot_set_state only */
	int rc;                /* of its write, once WRITTEN */
	size_t seq;            /* request number within the poll */
	size_t span;           /* its window */
	bool window_done;      /* the last code batch of its window */
	bool failure;          /* a failed request: the poll ends once it is written */
	bool carries_end;      /* its write carries the poll's end (poll_spec.end) */
	char from[ISO_FORMAT_LEN], to[ISO_FORMAT_LEN];
	struct db_run run;
	struct db_write write; /* of run; its rc and err once written */
	struct val_result v;
};

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
	size_t nspans;
	/* The next request to fetch: window span, code batch. */
	size_t span;
	size_t *ends; /* code batches of that window */
	size_t nbatches, batch;
	char from[ISO_FORMAT_LEN], to[ISO_FORMAT_LEN];
	bool fetching;    /* a request is in flight */
	bool no_more;     /* every request was fetched, or one failed */
	bool ending;      /* a write failed or a failure was recorded */
	bool plan_failed; /* the window at the fetch position cannot be planned */
	char plan_err[512];
	size_t seq_fetch;  /* next request number to hand out */
	size_t seq_retire; /* next request number to retire */
	size_t writing;    /* writes in flight */
	size_t max_writes;
	struct slot slots[SLOTS];
	char run_error[1024]; /* of the failed request that ends the poll */
	struct poll_result result;
	double started;       /* ev_time() at poll_start */
	struct db_finish end; /* the starter's record of the poll's end, when asked */
};

static void job_finish(struct poll_job *j)
{
	const struct connector *c = j->c;
	struct poll_result *r = &j->result;
	if (r->ok)
		log_event(LOG_LEVEL_INFO, "poll",
		          &(struct log_fields){.connector = c->name,
		                               .outcome = run_outcome_name(RUN_OK),
		                               .timed = true,
		                               .seconds = ev_time() - j->started},
		          "polled %zu request%s: %zu records, %zu upserted, %zu refused",
		          r->requests, r->requests == 1 ? "" : "s", r->records, r->upserted,
		          r->rejected);
	/* The one place every poll ends, whoever started it. */
	r->seconds = ev_time() - j->started;
	stats_poll_done(j->spec.stats,
	                &(struct stats_poll){.outcome = r->ok ? RUN_OK : r->outcome,
	                                     .seconds = r->seconds,
	                                     .upserted = r->upserted,
	                                     .refused = r->rejected,
	                                     .bytes = r->bytes},
	                r->lease_lost);
	j->done(r, j->user);
	poll_free(j);
}

static void pump(struct poll_job *j);

/* The one place a slot changes state: the transitions drawn at enum
 * slot_state, asserted, and logged at debug level. */
static void slot_set_state(struct slot *s, enum slot_state to)
{
	enum slot_state from = s->state;
	assert(slot_moves[from][to]);
	s->state = to;
	/* Several times per request: build nothing unless it is printed. */
	if (log_enabled(LOG_LEVEL_DEBUG))
		log_debug("poll", s->j->c->name, "request %zu (window %s … %s): %s -> %s", s->seq,
		          s->from, s->to, slot_state_names[from], slot_state_names[to]);
}

/* Frees a slot that is READY (dropped) or WRITTEN (retired). */
static void slot_clear(struct slot *s)
{
	slot_set_state(s, SLOT_FREE);
	val_result_free(&s->v);
	struct poll_job *j = s->j;
	memset(s, 0, sizeof(*s)); /* state stays SLOT_FREE (zero) */
	s->j = j;
}

/* A free slot for request seq (there is one: pump fetches only then). */
static struct slot *slot_take(struct poll_job *j)
{
	for (size_t i = 0; i < SLOTS; i++)
		if (j->slots[i].state == SLOT_FREE) {
			struct slot *s = &j->slots[i];
			s->seq = j->seq_fetch++;
			s->span = j->span;
			snprintf(s->from, sizeof(s->from), "%s", j->from);
			snprintf(s->to, sizeof(s->to), "%s", j->to);
			slot_set_state(s, SLOT_READY);
			return s;
		}
	return NULL;
}

static struct slot *slot_seq(struct poll_job *j, size_t seq)
{
	for (size_t i = 0; i < SLOTS; i++)
		if (j->slots[i].state != SLOT_FREE && j->slots[i].seq == seq)
			return &j->slots[i];
	return NULL;
}

static size_t slots_used(const struct poll_job *j)
{
	size_t n = 0;
	for (size_t i = 0; i < SLOTS; i++)
		n += j->slots[i].state != SLOT_FREE;
	return n;
}

/* Loop: a slot's write is done; it is retired when every earlier one is. */
static void on_written(int rc, const char *err, void *arg)
{
	struct slot *s = arg;
	struct poll_job *j = s->j;
	(void)err; /* the same as s->write.err */
	j->writing--;
	s->rc = rc;
	slot_set_state(s, SLOT_WRITTEN);
	pump(j);
}

/* The log fields of a written request (slot s): its HTTP status and
 * duration. fetch_runs.id is not among them: the write does not return it. */
#define REQUEST_FIELDS(c, s, outcome_name)                                                         \
	(&(const struct log_fields){.connector = (c)->name,                                        \
	                            .outcome = (outcome_name),                                     \
	                            .http_status = (s)->run.http_status,                           \
	                            .timed = true,                                                 \
	                            .seconds = (s)->run.finished_at - (s)->run.started_at,         \
	                            .run_id = (s)->write.run_id})

/* Takes stock of the oldest written request. Returns false when the poll
 * must end. */
static bool retire(struct poll_job *j, struct slot *s)
{
	const struct connector *c = j->c;
	struct poll_result *r = &j->result;
	r->end_written = s->rc == 0 && s->carries_end;
	if (s->rc != 0) {
		/* Nothing of this request was committed: the window did not
		 * advance and the next poll fetches it again. */
		r->ok = false;
		if (s->write.lease_lost) {
			r->lease_lost = true;
			snprintf(r->error, sizeof(r->error), "lease lost, result discarded: %.900s",
			         s->write.err);
			log_event(LOG_LEVEL_WARNING, "poll", REQUEST_FIELDS(c, s, "lease_lost"),
			          "%s", r->error);
		} else {
			r->db_failed = true;
			r->db_kind = s->write.kind;
			r->outcome = RUN_DB_ERROR;
			snprintf(r->error, sizeof(r->error), "writing window %s … %s: %.900s",
			         s->from, s->to, s->write.err);
			log_event(LOG_LEVEL_ERROR, "poll",
			          REQUEST_FIELDS(c, s, run_outcome_name(RUN_DB_ERROR)), "%s",
			          r->error);
		}
		return false;
	}
	if (s->failure) {
		/* Recorded. r->error says what failed; the outcome is set again
		 * here because an earlier request retired after this one was
		 * answered (fetch ahead) set it to ok. */
		r->outcome = s->run.outcome;
		return false;
	}
	const struct val_result *v = &s->v;
	r->outcome = RUN_OK;
	r->records += v->received;
	r->upserted += (size_t)s->write.upserted;
	r->rejected += v->nrefusals;
	if (v->nrefusals > 0)
		log_event(LOG_LEVEL_WARNING, "poll", REQUEST_FIELDS(c, s, NULL),
		          "window %s … %s: %zu of %zu records refused; first, #%zu: %s: %s",
		          s->from, s->to, v->nrefusals, v->received, v->refusals[0].index,
		          val_reason_name(v->refusals[0].reason), v->refusals[0].detail);
	log_event(LOG_LEVEL_DEBUG, "poll", REQUEST_FIELDS(c, s, run_outcome_name(RUN_OK)),
	          "window %s … %s: HTTP %ld, %zu records, %ld upserted, %zu refused, %.3f s",
	          s->from, s->to, s->run.http_status, v->received, s->write.upserted, v->nrefusals,
	          s->run.finished_at - s->run.started_at);
	if (j->spec.progress) {
		struct poll_progress *p = &j->progress;
		p->records = r->records;
		p->upserted = r->upserted;
		p->rejected = r->rejected;
		if (s->window_done) {
			p->windows_done++;
			p->hours_done += (j->spans[s->span].to - j->spans[s->span].from) / 3600;
		}
		j->spec.progress(p, j->user);
	}
	return true;
}

/* True when s's write is the poll's last if it commits: a failed request
 * (which ends the poll), or the last request when every one was fetched.
 * Earlier writes have all committed by then (one write in flight at a
 * time for a poll; a failed one ends the poll before this is asked). */
static bool last_write(const struct poll_job *j, const struct slot *s)
{
	return s->failure || (j->no_more && !j->fetching && s->seq + 1 == j->seq_fetch);
}

static void submit_write(struct poll_job *j, struct slot *s)
{
	/* The one-statement write of SPEC §5, batched with other polls' writes;
	 * the last one also carries the poll's end, when the starter says so. */
	s->write = (struct db_write){.run = &s->run};
	if (j->spec.end && !j->spec.has_span && last_write(j, s) &&
	    j->spec.end(!s->failure, s->failure ? s->run.outcome : RUN_OK, j->result.retry_after,
	                &j->end, j->user)) {
		s->write.finish = &j->end;
		s->carries_end = true;
	}
	size_t weight = s->run.result ? s->run.result->nrecords : 0;
	if (dbq_submit_write(j->dbq, &s->write, s->run.connector_id, weight, on_written, s) != 0) {
		s->rc = -1;
		snprintf(s->write.err, sizeof(s->write.err), "out of memory queueing a write");
		slot_set_state(s, SLOT_WRITTEN);
		return;
	}
	j->writing++;
	slot_set_state(s, SLOT_WRITING);
}

static void fetch_next(struct poll_job *j);

/* Every written slot passes here once, in request order: its request is
 * counted under what fetch_runs says of it (db_error when nothing of it
 * was written). */
static void count_request(struct poll_job *j, const struct slot *s)
{
	stats_request_done(j->spec.stats, &(struct stats_request){
	                                      .outcome = s->rc == 0 ? s->run.outcome : RUN_DB_ERROR,
	                                      .lease_lost = s->rc != 0 && s->write.lease_lost,
	                                      .sent = s->run.outcome != RUN_CONFIG_ERROR,
	                                      .seconds = s->run.finished_at - s->run.started_at});
}

/* Moves the poll along after any event: retires written requests in
 * order, submits writes in order, fetches ahead, and ends the poll once
 * nothing is in flight and nothing is left (or a failure ended it). */
static void pump(struct poll_job *j)
{
	struct slot *s;
	while ((s = slot_seq(j, j->seq_retire)) && s->state == SLOT_WRITTEN) {
		count_request(j, s);
		if (!j->ending && !retire(j, s))
			j->ending = true;
		slot_clear(s);
		j->seq_retire++;
	}
	if (j->ending) {
		/* Requests answered but not yet written are dropped: the next
		 * poll fetches them again. */
		for (size_t i = 0; i < SLOTS; i++)
			if (j->slots[i].state == SLOT_READY)
				slot_clear(&j->slots[i]);
	}
	for (size_t seq = j->seq_retire;
	     !j->ending && j->writing < j->max_writes && seq < j->seq_fetch; seq++) {
		s = slot_seq(j, seq);
		if (s && s->state == SLOT_READY) {
			submit_write(j, s);
			if (s->state == SLOT_WRITTEN) { /* could not even be queued */
				pump(j);
				return;
			}
		}
	}
	if (!j->ending && !j->no_more && !j->fetching && slots_used(j) <= j->max_writes) {
		fetch_next(j); /* which calls pump again if it could not start */
		return;
	}
	if (!j->fetching && j->writing == 0 && slots_used(j) == 0 && (j->ending || j->no_more)) {
		if (!j->ending)
			j->result.ok = true;
		job_finish(j);
	}
}

/* Records a failed or refused request (or a config error with no window)
 * in fetch_runs; the poll ends once that is written. */
static void fail_request(struct poll_job *j, struct slot *s, enum run_outcome outcome,
                         const char *error, long status, double started, double finished,
                         size_t bytes, bool has_window)
{
	const struct connector *c = j->c;
	struct poll_result *r = &j->result;
	r->ok = false;
	r->outcome = outcome;
	r->http_status = status;
	/* Every failure's text reaches fetch_runs and the log from here: one
	 * last pass of the mask over the whole, whatever it was built from. */
	(void)mask_copy_secret(c->bearer_token, error, strlen(error), j->run_error,
	                       sizeof(j->run_error));
	snprintf(r->error, sizeof(r->error), "%s", j->run_error);
	log_event(LOG_LEVEL_DEBUG, "poll",
	          &(struct log_fields){.connector = c->name,
	                               .outcome = run_outcome_name(outcome),
	                               .http_status = status,
	                               .timed = true,
	                               .seconds = finished - started},
	          "%s: %s", run_outcome_name(outcome), j->run_error);
	s->failure = true;
	s->run = (struct db_run){
	    .connector_id = c->id,
	    .has_window = has_window,
	    .window_from = has_window ? j->spans[s->span].from : 0,
	    .window_to = has_window ? j->spans[s->span].to : 0,
	    .codes_requested = has_window && j->batch < j->nbatches
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
	j->no_more = true;
}

static enum run_outcome outcome_of(const struct http_response *resp)
{
	switch (resp->outcome) {
	case HTTP_OUTCOME_OK:
		return RUN_OK;
	case HTTP_OUTCOME_STATUS:
		return resp->status == 401 || resp->status == 403 ? RUN_AUTH_FAILED
		                                                  : RUN_HTTP_ERROR;
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

/* Steps the fetch position past the request just answered. */
static void advance_position(struct poll_job *j);

/* The codes of the request at the fetch position (its window's batch). */
static const char *const *batch_codes(const struct poll_job *j, size_t *n)
{
	size_t first = j->batch ? j->ends[j->batch - 1] : 0;
	*n = j->ends[j->batch] - first;
	return (const char *const *)j->c->codes + first;
}

/* Judges a 2xx answer into s->v against what was asked. False when it is
 * refused whole (or memory ran out judging it): the failure is then
 * recorded in s. */
static bool judge_answer(struct poll_job *j, struct slot *s, const struct http_response *resp)
{
	const struct connector *c = j->c;
	const struct win_span *span = &j->spans[j->span];
	size_t ncodes;
	const char *const *codes = batch_codes(j, &ncodes);
	struct val_request vreq = {
	    .codes = codes,
	    .ncodes = ncodes,
	    .from = span->from,
	    .to = span->to,
	    .now = (int64_t)time(NULL),
	    .zone = c->timezone,
	    .secret = c->bearer_token,
	};
	char error[1024];
	if (val_validate(resp->body, resp->len, &vreq, &s->v) != 0) {
		snprintf(error, sizeof(error), "out of memory judging the response");
	} else if (s->v.refused) {
		char where[300];
		http_url_describe(c->endpoint_url, c->bearer_token, where, sizeof(where));
		snprintf(error, sizeof(error), "response from %s refused: %s", where, s->v.error);
	} else {
		return true;
	}
	val_result_free(&s->v);
	memset(&s->v, 0, sizeof(s->v));
	fail_request(j, s, RUN_INVALID_RESPONSE, error, resp->status, resp->started_at,
	             resp->finished_at, resp->bytes, true);
	return false;
}

/* The write of a judged answer (SPEC §5): its records, its fetch_runs row
 * and, when it completes its window, the advance of synced_until. */
static void prepare_write(struct poll_job *j, struct slot *s, const struct http_response *resp)
{
	const struct connector *c = j->c;
	const struct win_span *span = &j->spans[j->span];
	size_t ncodes;
	const char *const *codes = batch_codes(j, &ncodes);
	s->window_done = j->batch + 1 == j->nbatches;
	s->run = (struct db_run){
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
	    .result = &s->v,
	    .codes = codes,
	    /* The window is done only when every code batch of it is; a
	     * backfill leaves synced_until to the regular polls. */
	    .advance = s->window_done && !j->spec.has_span,
	    .advance_to = span->to,
	    .lease_owner = j->lease_owner,
	    .lease_epoch = c->lease_epoch,
	};
}

static void on_response(const struct http_response *resp, void *user)
{
	struct poll_job *j = user;
	const struct connector *c = j->c;
	struct poll_result *r = &j->result;
	j->fetching = false;
	r->bytes += resp->bytes;
	log_event(LOG_LEVEL_DEBUG, "poll",
	          &(struct log_fields){.connector = c->name,
	                               .http_status = resp->status,
	                               .timed = true,
	                               .seconds = resp->finished_at - resp->started_at},
	          "answer: HTTP %ld, %zu bytes in %.3f s", resp->status, resp->bytes,
	          resp->finished_at - resp->started_at);
	if (j->ending) { /* an earlier write failed: this answer is dropped */
		pump(j);
		return;
	}
	struct slot *s = slot_take(j);
	/* SPEC §6 honours Retry-After on 429 and 503 only. */
	r->retry_after = resp->status == 429 || resp->status == 503 ? resp->retry_after : -1;
	enum run_outcome outcome = outcome_of(resp);
	if (outcome != RUN_OK)
		fail_request(j, s, outcome, resp->error, resp->status, resp->started_at,
		             resp->finished_at, resp->bytes, true);
	else if (judge_answer(j, s, resp)) {
		prepare_write(j, s, resp);
		advance_position(j);
	}
	pump(j);
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
	if (win_split_codes((const char *const *)c->codes, c->ncodes, base_len, WIN_MAX_URL_BYTES,
	                    &j->ends, &j->nbatches) != 0) {
		snprintf(err, errlen, "a store code cannot fit in a URL of %d bytes",
		         WIN_MAX_URL_BYTES);
		return -1;
	}
	j->batch = 0;
	return 0;
}

static int plan_span(struct poll_job *j, char *err, size_t errlen);

static void advance_position(struct poll_job *j)
{
	char err[512];
	if (++j->batch < j->nbatches)
		return;
	if (++j->span == j->nspans) {
		j->no_more = true;
		return;
	}
	if (plan_span(j, err, sizeof(err)) != 0) {
		/* Recorded as this window's failed request when its turn comes. */
		j->plan_failed = true;
		snprintf(j->plan_err, sizeof(j->plan_err), "%s", err);
	}
}

/* Starts the request at the fetch position. */
static void fetch_next(struct poll_job *j)
{
	const struct connector *c = j->c;
	char err[512];
	if (j->plan_failed) {
		double t = (double)time(NULL);
		fail_request(j, slot_take(j), RUN_CONFIG_ERROR, j->plan_err, 0, t, t, 0, true);
		pump(j);
		return;
	}
	size_t first = j->batch ? j->ends[j->batch - 1] : 0;
	char *url = NULL;
	if (http_build_url(c->endpoint_url, j->from, j->to, (const char *const *)c->codes + first,
	                   j->ends[j->batch] - first, &url, err, sizeof(err)) != 0) {
		double t = (double)time(NULL);
		fail_request(j, slot_take(j), RUN_CONFIG_ERROR, err, 0, t, t, 0, true);
		pump(j);
		return;
	}
	struct http_request req = {
	    .url = url,
	    .token = c->bearer_token,
	    .timeout_ms = c->request_timeout * 1000,
	    .log_name = c->name,
	    .more = j->batch + 1 < j->nbatches || j->span + 1 < j->nspans,
	    .done = on_response,
	    .user = j,
	};
	j->result.requests++;
	j->fetching = true;
	int rc = http_submit(j->http, &req);
	free(url);
	if (rc != 0) {
		double t = (double)time(NULL);
		j->fetching = false;
		fail_request(j, slot_take(j), RUN_NETWORK_ERROR,
		             "out of memory starting the request", 0, t, t, 0, true);
		pump(j);
	}
}

/* Ends a poll that could not start (bad configuration), from the loop. */
static void fail_before_start(struct poll_job *j, const char *error, bool has_window)
{
	double t = (double)time(NULL);
	fail_request(j, slot_take(j), RUN_CONFIG_ERROR, error, 0, t, t, 0, has_window);
	pump(j);
}

void poll_free(struct poll_job *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < SLOTS; i++)
		val_result_free(&j->slots[i].v);
	free(j->spans);
	free(j->ends);
	free(j);
}

/* Splits [from, to) into max_window pieces on the zone's hours. */
static int plan_explicit_span(struct poll_job *j, int64_t from, int64_t to)
{
	/* Cut on the connector's local hours (window.c), not every max_window
	 * seconds: after a 30-minute switch the latter is no hour start. */
	return win_plan_span(from, to, j->c->max_window, j->c->timezone, &j->spans, &j->nspans);
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
	j->started = ev_time();
	j->max_writes = spec->has_span ? WRITES_SPAN : WRITES_POLL;
	for (size_t i = 0; i < SLOTS; i++)
		j->slots[i].j = j;
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
			fail_before_start(
			    j, "its window cannot be planned (check timezone and intervals)",
			    false);
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
	pump(j);
	return 0;
}
