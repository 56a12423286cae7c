/* requests: connection_tests and backfill_requests rows, run by the daemon
 * on its loop (see requests.h for the life of a row). */
#include "requests.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <ev.h>

#include "config.h"
#include "connector.h"
#include "db.h"
#include "dbq.h"
#include "http.h"
#include "isotime.h"
#include "log.h"
#include "poller.h"
#include "probe.h"
#include "window.h"

/* Connection tests in flight per daemon: each makes four requests, and
 * polls share the same max_concurrent_fetches. */
#define MAX_TESTS 4
/* A test by endpoint_url has no connector row: the connectors table's
 * default request_timeout. */
#define URL_TEST_TIMEOUT_S 30
/* At most one progress write per second per backfill. */
#define PROGRESS_INTERVAL 1.0

struct requests;

/* One connection_tests row, from its claim to its write-back. */
struct test {
	struct requests *rq;
	LIST_ENTRY(test) link; /* in requests.tests */
	int64_t id, attempt;
	char *log_name;      /* the connector's name, or NULL (by endpoint_url) */
	char what[340];      /* "connection test 12 (http://host/path)", for logs */
	struct probe *probe; /* while the requests run */
	/* The outcome, written by end_test_in_thread. */
	enum db_request_end end;
	bool passed;
	char *report; /* JSON */
	bool written;
};

struct test_claim {
	struct requests *rq;
	size_t limit;
	struct db_conn_test *v;
	size_t n;
};

/* The backfill this daemon runs, from its claim to its write-back. */
struct backfill {
	struct requests *rq;
	int64_t id, attempt;
	int64_t connector_id, epoch;        /* the connector's lease */
	struct connector c;                 /* owned; the poll points to it */
	struct poll_job *pj;                /* while polling */
	int64_t span_from;                  /* where this claim starts (resumed: done_until) */
	int64_t base_windows, base_records; /* committed by earlier claims */
	struct db_backfill_progress now;    /* the latest progress */
	struct db_backfill_progress sent;   /* the one being written */
	struct db_backfill_progress last;   /* written by requests_abandon */
	bool dirty;                         /* now has not been written */
	bool writing;                       /* a progress write is in flight */
	double last_write;                  /* ev_now of the last progress write */
	enum db_request_end end;
	char error[1024];
};

struct backfill_claim {
	struct requests *rq;
	struct db_backfill row;
	bool claimed;
};

struct renewal {
	struct requests *rq;
	int64_t *tests;
	size_t ntests;
	int64_t backfill_id;
};

struct requests {
	struct requests_env env;
	LIST_HEAD(tests, test) tests; /* running connection tests */
	size_t ntests;
	struct test_claim *test_claim; /* in the database thread */
	bool tests_again;              /* asked for meanwhile */
	struct backfill_claim *backfill_claim;
	struct backfill *bf;
	bool stopping;
	struct renewal *renewal; /* in the database thread */
	ev_timer renew_timer, progress_timer;
};

static void claim_tests(struct requests *rq);
static void claim_backfill(struct requests *rq);

static int64_t lease_s(const struct requests *rq)
{
	return rq->env.cfg->lease_ms / 1000;
}

static void check_idle(struct requests *rq)
{
	if (rq->stopping && !requests_busy(rq) && rq->env.idle)
		rq->env.idle(rq->env.user);
}

/* A failed claim: worth a warning only while the database is up (the
 * daemon reports outages itself). */
static void claim_failed(struct requests *rq, const char *what, const char *err)
{
	if (dbq_connected(rq->env.dbq))
		log_warning("requests", NULL, "claiming %s: %s", what, err);
	else
		log_debug("requests", NULL, "claiming %s: %s", what, err);
}

/* ---- connection tests ------------------------------------------------------ */

static void test_free(struct test *t)
{
	if (!t)
		return;
	probe_free(t->probe);
	free(t->log_name);
	free(t->report);
	free(t);
}

static void test_unlink_free(struct test *t)
{
	struct requests *rq = t->rq;
	LIST_REMOVE(t, link);
	rq->ntests--;
	test_free(t);
}

static int end_test_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct test *t = arg;
	return db_end_conn_test(db, t->rq->env.owner, t->id, t->attempt, t->end, t->passed,
	                        t->report, &t->written, err, errlen);
}

static void on_test_written(int rc, const char *err, void *arg)
{
	struct test *t = arg;
	struct requests *rq = t->rq;
	if (rc != 0)
		log_warning("requests", t->log_name,
		            "%s: could not record the outcome (the test runs again once "
		            "its lease expires): %s",
		            t->what, err);
	else if (!t->written)
		log_warning("requests", t->log_name,
		            "%s: another daemon took the row over: outcome discarded", t->what);
	test_unlink_free(t);
	if (!rq->stopping)
		claim_tests(rq); /* more may be waiting */
	check_idle(rq);
}

static void write_test(struct test *t)
{
	if (dbq_submit(t->rq->env.dbq, end_test_in_thread, on_test_written, t) != 0)
		on_test_written(-1, "out of memory", t);
}

/* {"error": reason}: the report of a test that could not run. */
static char *error_report(const char *reason)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	fputs("{\"error\":", f);
	probe_json_string(f, reason, NULL);
	fputs("}", f);
	bool failed = ferror(f) != 0;
	if (fclose(f) != 0 || failed) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* The test could not run: status failed, the reason in report. */
static void fail_test(struct test *t, const char *reason)
{
	log_event(LOG_LEVEL_WARNING, "requests",
	          &(struct log_fields){.connector = t->log_name, .outcome = "failed"},
	          "%s could not run: %s", t->what, reason);
	t->end = DB_REQUEST_FAILED;
	t->passed = false;
	free(t->report);
	t->report = error_report(reason);
	if (!t->report) {
		/* Without a report the row would fail its write again and again:
		 * leave it to expire and be claimed again. */
		log_error("requests", t->log_name, "%s: out of memory", t->what);
		test_unlink_free(t);
		return;
	}
	write_test(t);
}

static void on_probed(struct probe *p, const char *error, void *user)
{
	struct test *t = user;
	if (error) {
		fail_test(t, error);
		return;
	}
	enum probe_status verdict = probe_result(p);
	t->end = DB_REQUEST_DONE;
	t->passed = verdict != PROBE_FAIL;
	t->report = probe_report_json(p);
	/* Called from the probe's last answer, which touches nothing of p
	 * after this: freed here, the token with it. */
	probe_free(t->probe);
	t->probe = NULL;
	if (!t->report) {
		fail_test(t, "out of memory writing the report");
		return;
	}
	log_event(LOG_LEVEL_INFO, "requests",
	          &(struct log_fields){.connector = t->log_name, .outcome = "done"},
	          "%s: done, verdict %s", t->what, probe_status_name(verdict));
	write_test(t);
}

static int code_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* With connector_id, the row's codes narrow the connector's: each must be
 * one of them. A code that is not is refused rather than dropped (or sent
 * with the connector's token to ask about a store it does not have). */
static int narrow_codes(struct connector *c, struct db_conn_test *row, char *err, size_t errlen)
{
	size_t missing = 0, o = 0;
	for (size_t i = 0; i < row->ncodes; i++) {
		if (bsearch(&row->codes[i], c->codes, c->ncodes, sizeof(char *), code_cmp))
			continue;
		if (missing++ == 0)
			o = (size_t)snprintf(err, errlen,
			                     "codes not linked to connector \"%s\": ", c->name);
		if (o < errlen)
			o += (size_t)snprintf(err + o, errlen - o, "%s%s", missing > 1 ? ", " : "",
			                      row->codes[i]);
	}
	if (missing) {
		if (o < errlen)
			snprintf(err + o, errlen - o,
			         " (link the stores first, or test by endpoint_url)");
		return -1;
	}
	for (size_t i = 0; i < c->ncodes; i++)
		free(c->codes[i]);
	free(c->codes);
	c->codes = row->codes; /* moved */
	c->ncodes = row->ncodes;
	row->codes = NULL;
	row->ncodes = 0;
	return 0;
}

/* Turns a claimed row into a probe target; -1 with a reason when it
 * cannot run. */
static int make_target(struct db_conn_test *row, struct probe_target *tg, char *err, size_t errlen)
{
	struct connector *c = &row->c;
	if (row->has_from != row->has_to) {
		snprintf(err, errlen,
		         "give both time_from and time_to, or neither (the 24 hours up to the "
		         "start of the current hour)");
		return -1;
	}
	if (row->by_connector) {
		if (!c->endpoint_url) {
			snprintf(err, errlen, "connector %" PRId64 " no longer exists", c->id);
			return -1;
		}
		if (row->ncodes > 0 && narrow_codes(c, row, err, errlen) != 0)
			return -1;
		if (c->ncodes == 0) {
			snprintf(err, errlen,
			         "connector \"%s\" has no store linked: link one "
			         "(ksi_sales.stores) or give codes",
			         c->name);
			return -1;
		}
		tg->named = true;
	} else {
		c->codes = row->codes; /* moved */
		c->ncodes = row->ncodes;
		row->codes = NULL;
		row->ncodes = 0;
		c->request_timeout = URL_TEST_TIMEOUT_S;
	}
	tg->c = *c; /* moved */
	memset(c, 0, sizeof(*c));
	tg->has_window = row->has_from;
	tg->from = row->from;
	tg->to = row->to;
	tg->from_label = "time_from";
	tg->to_label = "time_to";
	return 0;
}

static void start_test(struct requests *rq, struct db_conn_test *row)
{
	struct test *t = calloc(1, sizeof(*t));
	if (!t) {
		log_error("requests", NULL,
		          "out of memory: connection test %" PRId64 " runs again once its "
		          "lease expires",
		          row->id);
		return;
	}
	t->rq = rq;
	t->id = row->id;
	t->attempt = row->attempt;
	LIST_INSERT_HEAD(&rq->tests, t, link);
	rq->ntests++;
	if (row->c.name)
		t->log_name = strdup(row->c.name); /* NULL on OOM: logs just lack it */
	char where[300] = "";
	if (row->c.endpoint_url)
		http_url_describe(row->c.endpoint_url, row->c.bearer_token, where, sizeof(where));
	snprintf(t->what, sizeof(t->what), "connection test %" PRId64 "%s%s%s", t->id,
	         *where ? " (" : "", where, *where ? ")" : "");

	char err[1024];
	struct probe_target tg = {0};
	if (make_target(row, &tg, err, sizeof(err)) != 0) {
		fail_test(t, err);
		return;
	}
	if (probe_plan(&tg, &t->probe, err, sizeof(err)) != 0) {
		fail_test(t, err);
		return;
	}
	if (probe_start(t->probe, rq->env.http, on_probed, t) != 0) {
		fail_test(t, "out of memory starting the requests");
		return;
	}
	log_info("requests", t->log_name, "%s: running", t->what);
}

static int claim_tests_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct test_claim *cl = arg;
	struct requests *rq = cl->rq;
	return db_claim_conn_tests(db, rq->env.owner, lease_s(rq), cl->limit, &cl->v, &cl->n, err,
	                           errlen);
}

static void test_claim_free(struct test_claim *cl)
{
	if (!cl)
		return;
	db_conn_tests_free(cl->v, cl->n);
	free(cl);
}

static void on_tests_claimed(int rc, const char *err, void *arg)
{
	struct test_claim *cl = arg;
	struct requests *rq = cl->rq;
	rq->test_claim = NULL;
	if (rc != 0) {
		claim_failed(rq, "connection tests", err);
	} else if (rq->stopping) {
		/* Claimed as SIGTERM came: db_release_all puts them back. */
	} else {
		for (size_t i = 0; i < cl->n; i++)
			start_test(rq, &cl->v[i]);
		if (cl->n == cl->limit)
			rq->tests_again = true;
	}
	test_claim_free(cl);
	if (rq->tests_again && !rq->stopping) {
		rq->tests_again = false;
		claim_tests(rq);
	}
	check_idle(rq);
}

static void claim_tests(struct requests *rq)
{
	if (rq->stopping)
		return;
	if (rq->test_claim) {
		rq->tests_again = true;
		return;
	}
	if (rq->ntests >= MAX_TESTS)
		return; /* a finished test claims the next */
	struct test_claim *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return; /* the next claim cycle tries again */
	cl->rq = rq;
	cl->limit = MAX_TESTS - rq->ntests;
	rq->test_claim = cl;
	if (dbq_submit(rq->env.dbq, claim_tests_in_thread, on_tests_claimed, cl) != 0) {
		rq->test_claim = NULL;
		free(cl);
	}
}

/* ---- backfills ------------------------------------------------------------- */

static void backfill_free(struct backfill *b)
{
	if (!b)
		return;
	poll_free(b->pj);
	connector_free(&b->c);
	free(b);
}

static int progress_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct backfill *b = arg;
	return db_backfill_progress(db, b->rq->env.owner, b->id, b->attempt, &b->sent, err, errlen);
}

static void write_progress(struct backfill *b);

static void on_progress_written(int rc, const char *err, void *arg)
{
	struct backfill *b = arg;
	b->writing = false;
	if (rc != 0)
		log_debug("requests", b->c.name,
		          "backfill request %" PRId64 ": recording progress: %s", b->id, err);
	if (b->dirty && b->pj)
		write_progress(b);
}

/* Writes the latest progress now, or when PROGRESS_INTERVAL has passed
 * since the last write; one write in flight at a time. */
static void write_progress(struct backfill *b)
{
	struct requests *rq = b->rq;
	if (b->writing || !b->dirty)
		return;
	double wait = b->last_write + PROGRESS_INTERVAL - ev_now(rq->env.loop);
	if (wait > 0) {
		if (!ev_is_active(&rq->progress_timer)) {
			ev_timer_set(&rq->progress_timer, wait, 0.);
			ev_timer_start(rq->env.loop, &rq->progress_timer);
		}
		return;
	}
	b->sent = b->now;
	b->dirty = false;
	b->writing = true;
	b->last_write = ev_now(rq->env.loop);
	if (dbq_submit(rq->env.dbq, progress_in_thread, on_progress_written, b) != 0) {
		b->writing = false;
		b->dirty = true; /* the next progress tries again */
	}
}

static void on_progress_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct requests *rq = w->data;
	(void)loop;
	(void)revents;
	if (rq->bf && rq->bf->pj)
		write_progress(rq->bf);
}

static void on_backfill_progress(const struct poll_progress *p, void *user)
{
	struct backfill *b = user;
	/* Windows commit in order from span_from: the hours done so far end
	 * where a claim after a crash or a stop resumes. */
	b->now.windows_total = b->base_windows + (int64_t)p->windows_total;
	b->now.windows_done = b->base_windows + (int64_t)p->windows_done;
	b->now.records = b->base_records + (int64_t)p->upserted;
	b->now.has_done_until = p->hours_done > 0;
	b->now.done_until = b->span_from + p->hours_done * 3600;
	b->dirty = true;
	write_progress(b);
}

static int end_backfill_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct backfill *b = arg;
	return db_end_backfill(db, b->rq->env.owner, b->id, b->attempt, b->end,
	                       b->end == DB_REQUEST_FAILED ? b->error : NULL, &b->now,
	                       b->connector_id, b->epoch, err, errlen);
}

static void on_backfill_written(int rc, const char *err, void *arg)
{
	struct backfill *b = arg;
	struct requests *rq = b->rq;
	if (rc != 0)
		log_warning("requests", b->c.name,
		            "backfill request %" PRId64 ": could not record the outcome "
		            "(it runs again once its lease expires): %s",
		            b->id, err);
	rq->bf = NULL;
	backfill_free(b);
	if (!rq->stopping)
		claim_backfill(rq); /* the next in line */
	check_idle(rq);
}

/* Records the outcome and releases the connector's lease. */
static void end_backfill(struct backfill *b, enum db_request_end end, const char *error)
{
	struct requests *rq = b->rq;
	ev_timer_stop(rq->env.loop, &rq->progress_timer);
	b->end = end;
	snprintf(b->error, sizeof(b->error), "%s", error ? error : "");
	if (end == DB_REQUEST_DONE)
		b->now.windows_done = b->now.windows_total;
	if (dbq_submit(rq->env.dbq, end_backfill_in_thread, on_backfill_written, b) != 0)
		on_backfill_written(-1, "out of memory", b);
}

/* The log fields of a backfill request's end: as a poll's (daemon.c). */
#define BACKFILL_FIELDS(b, r, outcome_name)                                                        \
	(&(const struct log_fields){.connector = (b)->c.name,                                      \
	                            .outcome = (outcome_name),                                     \
	                            .http_status = (r)->http_status,                               \
	                            .timed = true,                                                 \
	                            .seconds = (r)->seconds})

static void on_backfill_polled(const struct poll_result *r, void *user)
{
	struct backfill *b = user;
	b->pj = NULL; /* the poller frees itself after this */
	if (r->lease_lost) {
		/* We were stalled past our leases and another daemon holds the
		 * connector: back to pending (if the row is still ours), to
		 * resume at done_until once the connector is free. */
		log_event(LOG_LEVEL_WARNING, "requests", BACKFILL_FIELDS(b, r, "lease_lost"),
		          "backfill request %" PRId64 ": %s; it resumes later", b->id, r->error);
		end_backfill(b, DB_REQUEST_REQUEUE, NULL);
		return;
	}
	if (r->ok) {
		log_event(LOG_LEVEL_INFO, "requests",
		          BACKFILL_FIELDS(b, r, run_outcome_name(RUN_OK)),
		          "backfill request %" PRId64 ": done: %zu requests, %zu records, "
		          "%zu upserted, %zu refused",
		          b->id, r->requests, r->records, r->upserted, r->rejected);
		end_backfill(b, DB_REQUEST_DONE, NULL);
	} else {
		log_event(LOG_LEVEL_WARNING, "requests",
		          BACKFILL_FIELDS(b, r, run_outcome_name(r->outcome)),
		          "backfill request %" PRId64 " failed: %s", b->id, r->error);
		end_backfill(b, DB_REQUEST_FAILED, r->error);
	}
}

/* The hours the request still needs: [b->span_from, *to), or -1 with a
 * reason. Hours are the connector's (as `ksi-salesd backfill`); a span
 * reaching into the future stops at the end of the current hour. */
static int plan_span(struct backfill *b, const struct db_backfill *row, int64_t *to, char *err,
                     size_t errlen)
{
	const char *zone = b->c.timezone;
	int64_t first, last_end, current_end;
	/* Ends are next hour starts, not floors + 3600: across a 30-minute
	 * switch a local hour lasts 90 minutes (window.h). */
	if (win_hour_floor(row->from, zone, &first) != 0 ||
	    win_hour_next(row->to - 1, zone, &last_end) != 0 ||
	    win_hour_next((int64_t)time(NULL), zone, &current_end) != 0) {
		snprintf(err, errlen, "timezone \"%s\" cannot be used", zone);
		return -1;
	}
	*to = last_end < current_end ? last_end : current_end;
	if (first >= *to) {
		snprintf(err, errlen, "time_from is in the future: there is nothing to fetch yet");
		return -1;
	}
	b->span_from = first;
	int64_t resume;
	if (row->has_done_until && win_hour_floor(row->done_until, zone, &resume) == 0 &&
	    resume > first) {
		b->span_from = resume < *to ? resume : *to;
		b->base_windows = row->windows_done;
		b->base_records = row->records;
	}
	return 0;
}

static void start_backfill(struct requests *rq, struct db_backfill *row)
{
	struct backfill *b = calloc(1, sizeof(*b));
	if (!b) {
		log_error("requests", NULL,
		          "out of memory: backfill request %" PRId64 " runs again once its "
		          "lease expires",
		          row->id);
		return;
	}
	b->rq = rq;
	b->id = row->id;
	b->attempt = row->attempt;
	b->connector_id = row->connector_id;
	b->epoch = row->lease_epoch;
	b->c = row->c; /* moved */
	memset(&row->c, 0, sizeof(row->c));
	rq->bf = b;

	char err[1024];
	int64_t to = 0;
	if (!row->connector_enabled) {
		snprintf(err, sizeof(err), "connector %" PRId64 " is disabled", row->connector_id);
		end_backfill(b, DB_REQUEST_FAILED, err);
		return;
	}
	if (b->c.ncodes == 0) {
		snprintf(err, sizeof(err), "connector \"%s\" has no store linked to it", b->c.name);
		end_backfill(b, DB_REQUEST_FAILED, err);
		return;
	}
	if (plan_span(b, row, &to, err, sizeof(err)) != 0) {
		end_backfill(b, DB_REQUEST_FAILED, err);
		return;
	}
	/* windows_total at once, before the first window commits; the
	 * poller's count replaces it (the same split: max_window pieces in
	 * whole hours, at least one hour). */
	int64_t step = b->c.max_window / 3600 * 3600;
	if (step < 3600)
		step = 3600;
	b->now.windows_total = b->base_windows + (to - b->span_from + step - 1) / step;
	b->now.windows_done = b->base_windows;
	b->now.records = b->base_records;
	if (b->span_from >= to) {
		/* Everything was committed by an earlier claim. */
		end_backfill(b, DB_REQUEST_DONE, NULL);
		return;
	}
	b->dirty = true;
	write_progress(b);

	char f[ISO_FORMAT_LEN] = "", t[ISO_FORMAT_LEN] = "";
	if (iso_format_in_zone(b->span_from, b->c.timezone, f) != 0 ||
	    iso_format_in_zone(to, b->c.timezone, t) != 0)
		f[0] = t[0] = '\0';
	log_info("requests", b->c.name,
	         "backfill request %" PRId64 ": %s up to %s, %" PRId64 " hours%s", b->id, f, t,
	         (to - b->span_from) / 3600, b->base_windows > 0 ? " (resumed)" : "");
	struct poll_spec spec = {
	    .http = rq->env.http,
	    .dbq = rq->env.dbq,
	    .c = &b->c,
	    .lease_owner = rq->env.owner,
	    .now = (int64_t)time(NULL),
	    .has_span = true,
	    .span_from = b->span_from,
	    .span_to = to,
	    .stats = rq->env.stats,
	    .progress = on_backfill_progress,
	    .done = on_backfill_polled,
	    .user = b,
	};
	if (poll_start(&spec, &b->pj) != 0) {
		b->pj = NULL;
		end_backfill(b, DB_REQUEST_FAILED, "out of memory starting the backfill");
	}
}

static int claim_backfill_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct backfill_claim *cl = arg;
	struct requests *rq = cl->rq;
	return db_claim_backfill(db, rq->env.owner, lease_s(rq), &cl->row, &cl->claimed, err,
	                         errlen);
}

static void backfill_claim_free(struct backfill_claim *cl)
{
	if (!cl)
		return;
	db_backfill_free(&cl->row);
	free(cl);
}

static void on_backfill_claimed(int rc, const char *err, void *arg)
{
	struct backfill_claim *cl = arg;
	struct requests *rq = cl->rq;
	rq->backfill_claim = NULL;
	if (rc != 0)
		claim_failed(rq, "backfill requests", err);
	else if (cl->claimed && !rq->stopping)
		start_backfill(rq, &cl->row);
	/* Claimed as SIGTERM came: db_release_all puts it back. */
	backfill_claim_free(cl);
	check_idle(rq);
}

/* One backfill at a time per daemon: a long one must not hold every
 * fetch slot, and other daemons can take the next. */
static void claim_backfill(struct requests *rq)
{
	if (rq->stopping || rq->bf || rq->backfill_claim)
		return;
	struct backfill_claim *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return;
	cl->rq = rq;
	rq->backfill_claim = cl;
	if (dbq_submit(rq->env.dbq, claim_backfill_in_thread, on_backfill_claimed, cl) != 0) {
		rq->backfill_claim = NULL;
		free(cl);
	}
}

/* ---- leases ---------------------------------------------------------------- */

static int renew_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct renewal *r = arg;
	return db_renew_requests(db, r->rq->env.owner, lease_s(r->rq), r->tests, r->ntests,
	                         r->backfill_id, err, errlen);
}

static void renewal_free(struct renewal *r)
{
	if (!r)
		return;
	free(r->tests);
	free(r);
}

static void on_renewed(int rc, const char *err, void *arg)
{
	struct renewal *r = arg;
	if (rc != 0)
		log_debug("requests", NULL, "renewing request leases: %s", err);
	r->rq->renewal = NULL;
	renewal_free(r);
}

static void on_renew_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct requests *rq = w->data;
	(void)loop;
	(void)revents;
	if (rq->renewal || (rq->ntests == 0 && !rq->bf))
		return;
	struct renewal *r = calloc(1, sizeof(*r));
	if (!r || !(r->tests = calloc(rq->ntests ? rq->ntests : 1, sizeof(int64_t)))) {
		free(r);
		return;
	}
	r->rq = rq;
	struct test *t;
	LIST_FOREACH(t, &rq->tests, link)
	r->tests[r->ntests++] = t->id;
	r->backfill_id = rq->bf ? rq->bf->id : 0;
	rq->renewal = r;
	if (dbq_submit(rq->env.dbq, renew_in_thread, on_renewed, r) != 0) {
		rq->renewal = NULL;
		renewal_free(r);
	}
}

/* ---- the module ------------------------------------------------------------ */

int requests_new(const struct requests_env *env, struct requests **out)
{
	*out = NULL;
	struct requests *rq = calloc(1, sizeof(*rq));
	if (!rq)
		return -1;
	rq->env = *env;
	double every = env->cfg->lease_ms / 3000.0;
	ev_timer_init(&rq->renew_timer, on_renew_timer, every, every);
	ev_timer_init(&rq->progress_timer, on_progress_timer, 0., 0.);
	rq->renew_timer.data = rq->progress_timer.data = rq;
	ev_timer_start(env->loop, &rq->renew_timer);
	*out = rq;
	return 0;
}

void requests_claim(struct requests *rq)
{
	if (!rq || rq->stopping)
		return;
	claim_tests(rq);
	claim_backfill(rq);
}

void requests_stop(struct requests *rq)
{
	if (!rq)
		return;
	rq->stopping = true;
}

bool requests_busy(const struct requests *rq)
{
	return rq && (rq->ntests > 0 || rq->bf || rq->test_claim || rq->backfill_claim);
}

static int last_progress_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct backfill *b = arg;
	return db_backfill_progress(db, b->rq->env.owner, b->id, b->attempt, &b->last, err, errlen);
}

static void on_last_progress_written(int rc, const char *err, void *arg)
{
	struct backfill *b = arg;
	if (rc != 0)
		log_warning("requests", b->c.name,
		            "backfill request %" PRId64 ": recording progress (it resumes "
		            "at the last recorded): %s",
		            b->id, err);
}

void requests_abandon(struct requests *rq)
{
	if (!rq || !rq->bf || !rq->bf->pj)
		return;
	struct backfill *b = rq->bf;
	log_info("requests", b->c.name,
	         "backfill request %" PRId64 ": abandoned at %" PRId64 " of %" PRId64
	         " windows; it resumes there",
	         b->id, b->now.windows_done, b->now.windows_total);
	/* Whatever the throttle, and even with a progress write in flight:
	 * queued before db_release_all puts the row back to pending. The
	 * backfill is not freed before exit, so b->last stays valid. */
	ev_timer_stop(rq->env.loop, &rq->progress_timer);
	b->last = b->now;
	b->dirty = false;
	if (dbq_submit(rq->env.dbq, last_progress_in_thread, on_last_progress_written, b) != 0)
		log_warning("requests", b->c.name, "out of memory recording progress");
}

bool requests_leased_connector(const struct requests *rq, int64_t *connector_id)
{
	if (!rq || !rq->bf)
		return false;
	if (connector_id)
		*connector_id = rq->bf->connector_id;
	return true;
}

void requests_free(struct requests *rq)
{
	if (!rq)
		return;
	ev_timer_stop(rq->env.loop, &rq->renew_timer);
	ev_timer_stop(rq->env.loop, &rq->progress_timer);
	while (!LIST_EMPTY(&rq->tests))
		test_unlink_free(LIST_FIRST(&rq->tests));
	backfill_free(rq->bf);
	test_claim_free(rq->test_claim);
	backfill_claim_free(rq->backfill_claim);
	renewal_free(rq->renewal);
	free(rq);
}
