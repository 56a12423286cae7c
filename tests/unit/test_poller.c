/* test_poller: one poll of a three-window connector, driven by hand. The
 * poller's neighbours across module boundaries (http's submit and URL
 * helpers, dbq's write queue, db's outcome names) are replaced at link time
 * by the fakes below, which only record what was asked; the test then answers the fetches and
 * completes the writes in the order each scenario chooses, from its own driver, after submit
 * returned, as the loop would. A table of scenarios: every answer ok, a failing request, a refused
 * response, a failed write, a lost lease, a backfill with two writes in flight completed newest
 * first, an answer that comes after a write failed; then the state transitions in the debug log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "db.h"
#include "dbq.h"
#include "http.h"
#include "isotime.h"
#include "log.h"
#include "poller.h"
#include "stats.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define T0 1675814400LL /* 2023-02-08T00:00:00Z: long past, so no hour is in the future */
#define HOUR 3600
#define WINDOWS 3
#define MAX_EVENTS 16

/* ---- the fakes --------------------------------------------------------------- */

/* What the poller asked of http and dbq, in order. */
struct fake_fetch {
	char *url;
	http_done_fn done;
	void *user;
	bool answered;
};

struct fake_write {
	struct db_write *w;
	dbq_done_fn done;
	void *arg;
	bool completed;
	/* What the write held when submitted (w->run lives until done). */
	int64_t key;
	size_t weight;
	int64_t window_from;
	enum run_outcome outcome;
	bool advance;
	int64_t advance_to;
	size_t nrecords;
	char error[1024];
	const char *lease_owner;
	int64_t lease_epoch;
	bool finish; /* it carries the poll's end (poll_spec.end) */
	int rc;      /* as completed */
};

static struct {
	struct fake_fetch fetches[MAX_EVENTS];
	size_t nfetches;
	struct fake_write writes[MAX_EVENTS];
	size_t nwrites;
	size_t write_attempts;   /* dbq_submit_write calls, refused ones included */
	size_t refuse_write;     /* dbq_submit_write number (from 1) that fails; 0: none */
	size_t bytes;            /* of every answer given */
	size_t fetches_max;      /* most fetches in flight at once */
	size_t writes_max;       /* most writes in flight at once */
	bool fetch_during_write; /* a fetch was in flight while a write was */
} fake;

static size_t fetches_in_flight(void)
{
	size_t n = 0;
	for (size_t i = 0; i < fake.nfetches; i++)
		n += !fake.fetches[i].answered;
	return n;
}

static size_t writes_in_flight(void)
{
	size_t n = 0;
	for (size_t i = 0; i < fake.nwrites; i++)
		n += !fake.writes[i].completed;
	return n;
}

/* After every submit: the high-water marks the scenarios check. */
static void note_in_flight(void)
{
	size_t f = fetches_in_flight(), w = writes_in_flight();
	if (f > fake.fetches_max)
		fake.fetches_max = f;
	if (w > fake.writes_max)
		fake.writes_max = w;
	if (f > 0 && w > 0)
		fake.fetch_during_write = true;
}

int http_submit(struct http *h, const struct http_request *req)
{
	(void)h;
	assert_true(fake.nfetches < MAX_EVENTS);
	struct fake_fetch *f = &fake.fetches[fake.nfetches++];
	f->url = strdup(req->url);
	assert_non_null(f->url);
	f->done = req->done;
	f->user = req->user;
	f->answered = false;
	note_in_flight();
	return 0;
}

int http_build_url(const char *endpoint, const char *from_time, const char *to_time,
                   const char *const *codes, size_t ncodes, char **out, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	char *url = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&url, &len);
	assert_non_null(f);
	fprintf(f, "%s?fromTime=%s&toTime=%s", endpoint, from_time, to_time);
	for (size_t i = 0; i < ncodes; i++)
		fprintf(f, "&ext_ref_codes=%s", codes[i]);
	assert_int_equal(fclose(f), 0);
	*out = url;
	return 0;
}

void http_url_describe(const char *url, const char *secret, char *buf, size_t len)
{
	(void)secret;
	snprintf(buf, len, "%.*s", (int)strcspn(url, "?"), url);
}

int http_url_check(const char *url, char *err, size_t errlen)
{
	(void)url;
	(void)err;
	(void)errlen;
	return 0;
}

static void expect_end_record(const struct db_finish *f);

int dbq_submit_write(struct dbq *q, struct db_write *w, int64_t key, size_t weight,
                     dbq_done_fn done, void *arg)
{
	(void)q;
	if (++fake.write_attempts == fake.refuse_write)
		return -1;
	assert_true(fake.nwrites < MAX_EVENTS);
	struct fake_write *fw = &fake.writes[fake.nwrites++];
	*fw = (struct fake_write){.w = w, .done = done, .arg = arg, .key = key, .weight = weight};
	assert_non_null(w->run);
	fw->window_from = w->run->window_from;
	fw->outcome = w->run->outcome;
	fw->advance = w->run->advance;
	fw->advance_to = w->run->advance_to;
	fw->nrecords = w->run->result ? w->run->result->nrecords : 0;
	snprintf(fw->error, sizeof(fw->error), "%s", w->run->error ? w->run->error : "");
	fw->lease_owner = w->run->lease_owner;
	fw->lease_epoch = w->run->lease_epoch;
	fw->finish = w->finish != NULL;
	if (w->finish)
		expect_end_record(w->finish);
	note_in_flight();
	return 0;
}

/* db_write.c's: the names stored in fetch_runs.outcome. */
const char *run_outcome_name(enum run_outcome o)
{
	static const char *const names[] = {
	    [RUN_OK] = "ok",
	    [RUN_HTTP_ERROR] = "http_error",
	    [RUN_AUTH_FAILED] = "auth_failed",
	    [RUN_REDIRECTED] = "redirected",
	    [RUN_TOO_LARGE] = "too_large",
	    [RUN_INVALID_RESPONSE] = "invalid_response",
	    [RUN_TIMEOUT] = "timeout",
	    [RUN_NETWORK_ERROR] = "network_error",
	    [RUN_DB_ERROR] = "db_error",
	    [RUN_CONFIG_ERROR] = "config_error",
	};
	return (size_t)o < ARRAY_LEN(names) ? names[o] : "unknown";
}

/* ---- scenarios ---------------------------------------------------------------- */

/* How the API answers request k. */
enum answer {
	ANSWER_OK,   /* 200, one record per code in the window's hour */
	ANSWER_500,  /* HTTP 500 */
	ANSWER_HTML, /* 200 with an HTML page: refused by the validator */
};

/* How the database takes request k's write. */
enum write_result {
	WRITE_OK,
	WRITE_FAILS,      /* a statement error: nothing committed */
	WRITE_LEASE_LOST, /* the lease check refused it */
};

/* What the driver does next when both a fetch and a write are pending. */
enum order {
	ANSWERS_FIRST,      /* answer fetches at once; complete the oldest write */
	WRITES_FIRST,       /* complete the oldest write before answering */
	NEWEST_WRITE_FIRST, /* answer fetches at once; complete the newest write */
};

struct scenario {
	const char *name;
	bool backfill; /* an explicit span of the same three hours */
	enum order order;
	enum answer answers[WINDOWS];
	enum write_result writes[WINDOWS];
	size_t refuse_write; /* dbq_submit_write number (from 1) that runs out of memory */
	/* What must happen. */
	size_t fetched;      /* requests sent, oldest window first */
	const char *written; /* outcomes of the writes submitted, in order */
	size_t writes_max;   /* most writes in flight at once */
	bool fetch_ahead;    /* a fetch was in flight while a write was */
	bool ok, db_failed, lease_lost;
	enum run_outcome outcome; /* poll_result.outcome */
	size_t records, upserted; /* poll_result; requests == fetched, bytes == every answer's */
	const char *error;        /* poll_result.error contains it ("" when ok) */
	enum run_outcome counted; /* the stats outcome the poll was counted under */
	size_t progress;          /* progress reports, each after its writes completed */
};

#define OK3                                                                                        \
	{                                                                                          \
		ANSWER_OK, ANSWER_OK, ANSWER_OK                                                    \
	}
#define WOK3                                                                                       \
	{                                                                                          \
		WRITE_OK, WRITE_OK, WRITE_OK                                                       \
	}

static const struct scenario scenarios[] = {
    {"three windows, all ok", false, ANSWERS_FIRST, OK3, WOK3, 0, .fetched = 3,
     .written = "ok ok ok", .writes_max = 1, .fetch_ahead = true, .ok = true, .outcome = RUN_OK,
     .records = 6, .upserted = 6, .error = "", .counted = RUN_OK, .progress = 3},
    {"three windows, all ok, each write done before the next answer", false, WRITES_FIRST, OK3,
     WOK3, 0, .fetched = 3, .written = "ok ok ok", .writes_max = 1, .fetch_ahead = true, .ok = true,
     .outcome = RUN_OK, .records = 6, .upserted = 6, .error = "", .counted = RUN_OK, .progress = 3},
    {"HTTP 500 in window 2",
     false,
     ANSWERS_FIRST,
     {ANSWER_OK, ANSWER_500, ANSWER_OK},
     WOK3,
     0,
     .fetched = 2,
     .written = "ok http_error",
     .writes_max = 1,
     .fetch_ahead = true,
     .outcome = RUN_HTTP_ERROR,
     .records = 2,
     .upserted = 2,
     .error = "HTTP 500",
     .counted = RUN_HTTP_ERROR,
     .progress = 1},
    {"HTML page in window 2",
     false,
     ANSWERS_FIRST,
     {ANSWER_OK, ANSWER_HTML, ANSWER_OK},
     WOK3,
     0,
     .fetched = 2,
     .written = "ok invalid_response",
     .writes_max = 1,
     .fetch_ahead = true,
     .outcome = RUN_INVALID_RESPONSE,
     .records = 2,
     .upserted = 2,
     /* The validator's reason, after where the answer came from. */
     .error = "refused: response is not JSON but an HTML page",
     .counted = RUN_INVALID_RESPONSE,
     .progress = 1},
    {"write of window 2 fails",
     false,
     ANSWERS_FIRST,
     OK3,
     {WRITE_OK, WRITE_FAILS, WRITE_OK},
     0,
     .fetched = 3,
     .written = "ok ok",
     .writes_max = 1,
     .fetch_ahead = true,
     .db_failed = true,
     .outcome = RUN_DB_ERROR,
     .records = 2,
     .upserted = 2,
     .error = "could not write",
     .counted = RUN_DB_ERROR,
     .progress = 1},
    /* dbq cannot even queue it: the poll ends before fetching ahead. */
    {"write of window 1 runs out of memory in the queue", false, ANSWERS_FIRST, OK3, WOK3, 1,
     .fetched = 1, .written = "", .writes_max = 0, .fetch_ahead = false, .db_failed = true,
     .outcome = RUN_DB_ERROR, .error = "out of memory queueing a write", .counted = RUN_DB_ERROR},
    /* An answer that arrives after an earlier write failed is dropped:
     * counted in requests and bytes, but no write, so no fetch_runs row
     * (the next poll fetches that window again). */
    {"answer of window 2 after the write of window 1 failed",
     false,
     WRITES_FIRST,
     OK3,
     {WRITE_FAILS, WRITE_OK, WRITE_OK},
     0,
     .fetched = 2,
     .written = "ok",
     .writes_max = 1,
     .fetch_ahead = true,
     .db_failed = true,
     .outcome = RUN_DB_ERROR,
     .error = "could not write",
     .counted = RUN_DB_ERROR},
    /* The poll's result is discarded and window 3, answered meanwhile, is
     * not written; the outcome stays that of the last request retired (ok),
     * and stats count the poll apart, as one whose lease was lost. */
    {"lease lost on the write of window 2",
     false,
     ANSWERS_FIRST,
     OK3,
     {WRITE_OK, WRITE_LEASE_LOST, WRITE_OK},
     0,
     .fetched = 3,
     .written = "ok ok",
     .writes_max = 1,
     .fetch_ahead = true,
     .lease_lost = true,
     .outcome = RUN_OK,
     .records = 2,
     .upserted = 2,
     .error = "lease lost, result discarded",
     .counted = RUN_OK,
     .progress = 1},
    /* Two writes in flight; windows 2 and 3 commit before window 1, yet
     * progress (a backfill request's done_until) waits for window 1. */
    {"backfill, writes completed newest first", true, NEWEST_WRITE_FIRST, OK3, WOK3, 0,
     .fetched = 3, .written = "ok ok ok", .writes_max = 2, .fetch_ahead = true, .ok = true,
     .outcome = RUN_OK, .records = 6, .upserted = 6, .error = "", .counted = RUN_OK, .progress = 3},
    {"backfill, HTTP 500 in window 2",
     true,
     NEWEST_WRITE_FIRST,
     {ANSWER_OK, ANSWER_500, ANSWER_OK},
     WOK3,
     0,
     .fetched = 2,
     .written = "ok http_error",
     .writes_max = 2,
     .fetch_ahead = true,
     .outcome = RUN_HTTP_ERROR,
     .records = 2,
     .upserted = 2,
     .error = "HTTP 500",
     .counted = RUN_HTTP_ERROR,
     .progress = 1},
};

/* What one scenario's poll reported. */
static struct {
	const struct scenario *sc;
	size_t ndone;
	struct poll_result result;
	size_t nprogress;
	size_t progress_windows[MAX_EVENTS];
	const char *progress_early; /* why a progress report came before its writes */
} seen;

static void on_done(const struct poll_result *r, void *user)
{
	(void)user;
	seen.ndone++;
	seen.result = *r;
}

/* poll_spec.end, the daemon's: what the poll's last write is to carry. */
static struct {
	size_t asked;
	bool ok;
	enum run_outcome outcome;
	size_t at_write; /* writes submitted before it was asked */
} end_seen;

static bool on_end(bool ok, enum run_outcome outcome, long retry_after, struct db_finish *fin,
                   void *user)
{
	(void)user, (void)retry_after;
	end_seen.asked++;
	end_seen.ok = ok;
	end_seen.outcome = outcome;
	end_seen.at_write = fake.nwrites;
	*fin = (struct db_finish){
	    .owner = "host:1:cafe", .connector_id = 42, .epoch = 7, .next_poll = 99};
	return true;
}

static void expect_end_record(const struct db_finish *f)
{
	assert_true(f->connector_id == 42 && f->epoch == 7 && f->next_poll == 99);
}

/* Progress may only cover windows whose writes all completed. */
static void on_progress(const struct poll_progress *p, void *user)
{
	(void)user;
	if (seen.nprogress < MAX_EVENTS)
		seen.progress_windows[seen.nprogress] = p->windows_done;
	seen.nprogress++;
	for (size_t i = 0; i < p->windows_done; i++)
		if (i >= fake.nwrites || !fake.writes[i].completed)
			seen.progress_early = "a window reported done before its write completed";
}

/* The hour of window k in the poll's URL format (connector zone UTC). */
static void iso_hour(int64_t t, char buf[ISO_FORMAT_LEN])
{
	assert_int_equal(iso_format_in_zone(t, "UTC", buf), 0);
}

static void answer(const struct scenario *sc, size_t k)
{
	struct fake_fetch *f = &fake.fetches[k];
	char body[512], hour[ISO_FORMAT_LEN];
	struct http_response resp = {.outcome = HTTP_OUTCOME_OK,
	                             .status = 200,
	                             .retry_after = -1,
	                             .started_at = (double)T0 + 5 * HOUR,
	                             .finished_at = (double)T0 + 5 * HOUR + 0.25};
	switch (sc->answers[k]) {
	case ANSWER_OK:
		iso_hour(T0 + (int64_t)k * HOUR, hour);
		snprintf(body, sizeof(body),
		         "[{\"time\":\"%s\",\"ext_ref_code\":\"A1\",\"num_tickets\":%zu},"
		         "{\"time\":\"%s\",\"ext_ref_code\":\"B2\",\"num_tickets\":7}]",
		         hour, k + 1, hour);
		break;
	case ANSWER_500:
		resp.outcome = HTTP_OUTCOME_STATUS;
		resp.status = 500;
		snprintf(body, sizeof(body), "Internal Server Error");
		snprintf(resp.error, sizeof(resp.error), "HTTP 500 from http://api.test/sales");
		break;
	case ANSWER_HTML:
		snprintf(body, sizeof(body), "<html><body><h1>Maintenance</h1></body></html>");
		break;
	}
	resp.body = body;
	resp.len = resp.bytes = strlen(body);
	fake.bytes += resp.bytes;
	f->answered = true;
	f->done(&resp, f->user);
}

static void complete_ok(struct fake_write *fw)
{
	fw->w->rc = 0;
	fw->w->upserted = (long)fw->nrecords;
	fw->done(0, "", fw->arg);
}

static void complete_failed(struct fake_write *fw)
{
	fw->w->rc = -1;
	fw->w->kind = DB_ERR_OTHER;
	snprintf(fw->w->err, sizeof(fw->w->err), "could not write: ERROR:  deadlock detected");
	fw->done(-1, fw->w->err, fw->arg);
}

/* The lease check refused the write: db_write_batch says so by a flag (from
 * the error's SQLSTATE, KS001), the message is only for people. */
static void complete_lease_lost(struct fake_write *fw)
{
	fw->w->rc = -1;
	fw->w->kind = DB_ERR_OTHER;
	fw->w->lease_lost = true;
	snprintf(fw->w->err, sizeof(fw->w->err),
	         "ERROR:  lease on connector 42 is no longer held by this daemon");
	fw->done(-1, fw->w->err, fw->arg);
}

static void complete(const struct scenario *sc, size_t i)
{
	struct fake_write *fw = &fake.writes[i];
	fw->completed = true;
	fw->rc = sc->writes[i] == WRITE_OK ? 0 : -1;
	switch (sc->writes[i]) {
	case WRITE_OK:
		complete_ok(fw);
		break;
	case WRITE_FAILS:
		complete_failed(fw);
		break;
	case WRITE_LEASE_LOST:
		complete_lease_lost(fw);
		break;
	}
}

/* Fails the test naming the scenario and what differed. */
#define expect(cond, ...)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			print_error("scenario \"%s\": ", seen.sc->name);                           \
			fail_msg(__VA_ARGS__);                                                     \
		}                                                                                  \
	} while (0)

static struct connector make_connector(void)
{
	static char *codes[] = {"A1", "B2"};
	return (struct connector){
	    .id = 42,
	    .name = "shop",
	    .endpoint_url = "http://api.test/sales",
	    .bearer_token = "tok-0123456789",
	    .timezone = "UTC",
	    .poll_interval = 3600,
	    .lookback = 0,
	    .initial_backfill = 86400,
	    .max_window = HOUR,
	    .request_timeout = 30,
	    .has_synced = true,
	    .synced_until = T0,
	    .lease_epoch = 7,
	    .codes = codes,
	    .ncodes = 2,
	};
}

/* Drives the poll until its done ran: one event at a time, chosen by the
 * scenario's order, never from inside a submit. */
static void drive(const struct scenario *sc)
{
	for (size_t steps = 0; seen.ndone == 0; steps++) {
		expect(steps < 4 * MAX_EVENTS, "the poll never ended");
		ssize_t fetch = -1, oldest = -1, newest = -1;
		for (size_t i = 0; i < fake.nfetches; i++)
			if (!fake.fetches[i].answered)
				fetch = (ssize_t)i;
		for (size_t i = 0; i < fake.nwrites; i++)
			if (!fake.writes[i].completed) {
				if (oldest < 0)
					oldest = (ssize_t)i;
				newest = (ssize_t)i;
			}
		expect(fetch >= 0 || oldest >= 0, "stalled: nothing in flight and no done");
		if (fetch >= 0 && (sc->order != WRITES_FIRST || oldest < 0))
			answer(sc, (size_t)fetch);
		else if (sc->order == NEWEST_WRITE_FIRST)
			complete(sc, (size_t)newest);
		else
			complete(sc, (size_t)oldest);
	}
}

/* Forgets what the fakes recorded (a failed scenario's too). */
static void fake_reset(void)
{
	for (size_t i = 0; i < fake.nfetches; i++)
		free(fake.fetches[i].url);
	memset(&fake, 0, sizeof(fake));
}

static void run_scenario(const struct scenario *sc)
{
	fake_reset();
	memset(&seen, 0, sizeof(seen));
	seen.sc = sc;
	fake.refuse_write = sc->refuse_write;
	struct connector c = make_connector();
	struct stats stats;
	stats_init(&stats);
	struct poll_spec spec = {
	    .c = &c,
	    .lease_owner = "host:1:cafe",
	    .now = T0 + 2 * HOUR + 1800, /* synced until T0: three windows to the hour's end */
	    .has_span = sc->backfill,
	    .span_from = T0,
	    .span_to = T0 + WINDOWS * HOUR,
	    .stats = &stats,
	    .progress = on_progress,
	    .end = on_end,
	    .done = on_done,
	};
	memset(&end_seen, 0, sizeof(end_seen));
	struct poll_job *pj = NULL;
	expect(poll_start(&spec, &pj) == 0, "poll_start failed");
	expect(seen.ndone == 0, "done ran from inside poll_start");
	expect(fake.nfetches == 1, "%zu fetches after poll_start, want 1", fake.nfetches);
	drive(sc);

	/* Fetches: one at a time, oldest window first. */
	expect(fake.nfetches == sc->fetched, "%zu fetches, want %zu", fake.nfetches, sc->fetched);
	expect(fake.fetches_max == 1, "%zu fetches in flight at once, want 1", fake.fetches_max);
	for (size_t k = 0; k < fake.nfetches; k++) {
		char from[ISO_FORMAT_LEN], want[ISO_FORMAT_LEN + 16];
		iso_hour(T0 + (int64_t)k * HOUR, from);
		snprintf(want, sizeof(want), "fromTime=%s&", from);
		expect(strstr(fake.fetches[k].url, want), "fetch %zu is %s, want %s", k,
		       fake.fetches[k].url, want);
	}
	expect(fake.fetch_during_write == sc->fetch_ahead, "fetch ahead %s, want %s",
	       fake.fetch_during_write ? "seen" : "not seen",
	       sc->fetch_ahead ? "seen" : "not seen");

	/* Writes: in request order, each of its own window, under the lease. */
	char written[256] = "";
	for (size_t i = 0; i < fake.nwrites; i++) {
		struct fake_write *fw = &fake.writes[i];
		size_t n = strlen(written);
		snprintf(written + n, sizeof(written) - n, "%s%s", i ? " " : "",
		         run_outcome_name(fw->outcome));
		expect(fw->window_from == T0 + (int64_t)i * HOUR,
		       "write %zu is of window %lld, want %lld", i, (long long)fw->window_from,
		       (long long)(T0 + (int64_t)i * HOUR));
		expect(fw->key == 42 && fw->lease_epoch == 7 && fw->lease_owner &&
		           strcmp(fw->lease_owner, "host:1:cafe") == 0,
		       "write %zu: key %lld, lease %s/%lld", i, (long long)fw->key,
		       fw->lease_owner ? fw->lease_owner : "(none)", (long long)fw->lease_epoch);
		expect(fw->weight == fw->nrecords, "write %zu weighs %zu, has %zu records", i,
		       fw->weight, fw->nrecords);
		bool advance = fw->outcome == RUN_OK && !sc->backfill;
		expect(fw->advance == advance, "write %zu advance %d, want %d", i, fw->advance,
		       advance);
		expect(!advance || fw->advance_to == T0 + (int64_t)(i + 1) * HOUR,
		       "write %zu advances to %lld", i, (long long)fw->advance_to);
		expect(fw->outcome == RUN_OK || strstr(fw->error, sc->error),
		       "write %zu's error \"%s\" lacks \"%s\"", i, fw->error, sc->error);
	}
	expect(strcmp(written, sc->written) == 0, "writes \"%s\", want \"%s\"", written,
	       sc->written);
	expect(fake.writes_max == sc->writes_max, "%zu writes in flight at once, want %zu",
	       fake.writes_max, sc->writes_max);

	/* The poll's end rides in its last write: asked once, for that write
	 * alone, with the poll's outcome; never for a backfill; written when
	 * that write committed. A poll ended by a failed write has no last
	 * write: its starter records the end on its own. */
	const struct poll_result *r = &seen.result;
	size_t carried = 0, carrier = 0;
	for (size_t i = 0; i < fake.nwrites; i++)
		if (fake.writes[i].finish)
			carried++, carrier = i;
	expect(carried == end_seen.asked && end_seen.asked <= 1,
	       "the end asked %zu times, carried by %zu writes", end_seen.asked, carried);
	if (sc->backfill)
		expect(end_seen.asked == 0, "the end asked for a backfill");
	if (carried) {
		expect(carrier == fake.nwrites - 1 && end_seen.at_write == carrier,
		       "the end rides in write %zu of %zu", carrier, fake.nwrites);
		expect(end_seen.ok == (fake.writes[carrier].outcome == RUN_OK) &&
		           end_seen.outcome == fake.writes[carrier].outcome,
		       "the end planned for %s, the write is %s",
		       run_outcome_name(end_seen.outcome),
		       run_outcome_name(fake.writes[carrier].outcome));
	}
	expect(r->end_written == (carried && fake.writes[carrier].rc == 0), "end_written %d",
	       r->end_written);
	if (!sc->backfill && !sc->db_failed && !sc->lease_lost)
		expect(r->end_written,
		       "a poll whose writes all committed did not write its end with them");

	/* The result. */
	expect(seen.ndone == 1, "done ran %zu times", seen.ndone);
	expect(r->ok == sc->ok && r->db_failed == sc->db_failed && r->lease_lost == sc->lease_lost,
	       "ok %d db_failed %d lease_lost %d, want %d %d %d", r->ok, r->db_failed,
	       r->lease_lost, sc->ok, sc->db_failed, sc->lease_lost);
	expect(r->outcome == sc->outcome, "outcome %s, want %s", run_outcome_name(r->outcome),
	       run_outcome_name(sc->outcome));
	expect(!sc->db_failed || r->db_kind == DB_ERR_OTHER || sc->refuse_write,
	       "db_kind %d, want the write's", r->db_kind);
	expect(r->requests == sc->fetched, "%zu requests, want %zu", r->requests, sc->fetched);
	expect(r->records == sc->records && r->upserted == sc->upserted,
	       "%zu records, %zu upserted, want %zu, %zu", r->records, r->upserted, sc->records,
	       sc->upserted);
	expect(r->bytes == fake.bytes, "%zu bytes, want %zu", r->bytes, fake.bytes);
	expect(strstr(r->error, sc->error), "error \"%s\" lacks \"%s\"", r->error, sc->error);
	expect(!strstr(r->error, "tok-0123456789"), "error shows the token: %s", r->error);
	expect(r->seconds >= 0, "seconds %f", r->seconds);

	/* Counted once, in the stats the spec named. */
	expect(stats_polls_total(&stats) == 1, "%llu polls counted, want 1",
	       (unsigned long long)stats_polls_total(&stats));
	/* A poll whose lease was lost is counted apart, under no outcome. */
	expect(stats.polls[sc->counted] == (sc->lease_lost ? 0u : 1u), "not counted as %s",
	       run_outcome_name(sc->counted));
	expect(stats.polls_lease_lost == sc->lease_lost, "%llu lease-lost polls counted",
	       (unsigned long long)stats.polls_lease_lost);
	expect(stats.records_upserted == sc->upserted && stats.bytes == fake.bytes,
	       "stats: %llu upserted, %llu bytes", (unsigned long long)stats.records_upserted,
	       (unsigned long long)stats.bytes);

	/* Every write's request counted once: committed ones under their own
	 * outcome, a failed one as db_error, a lease-lost one apart. A write
	 * the queue refused never reached the fake, and counts too. */
	size_t want_requests = fake.nwrites + (fake.nwrites == 0 && sc->db_failed);
	expect(stats_requests_total(&stats) == want_requests, "%llu requests counted, want %zu",
	       (unsigned long long)stats_requests_total(&stats), want_requests);
	expect(stats.requests_lease_lost == (sc->lease_lost ? 1u : 0u), "%llu lease-lost requests",
	       (unsigned long long)stats.requests_lease_lost);
	expect(stats.requests[RUN_DB_ERROR] == (sc->db_failed ? 1u : 0u), "%llu db_error requests",
	       (unsigned long long)stats.requests[RUN_DB_ERROR]);

	/* Progress: only over committed windows, in order. */
	expect(!seen.progress_early, "%s", seen.progress_early);
	expect(seen.nprogress == sc->progress, "%zu progress reports, want %zu", seen.nprogress,
	       sc->progress);
	for (size_t i = 0; i < seen.nprogress && i < MAX_EVENTS; i++)
		expect(seen.progress_windows[i] == i + 1, "progress report %zu says %zu windows", i,
		       seen.progress_windows[i]);

	fake_reset();
}

/* One cmocka test per row, named after it. */
static void test_scenario(void **state)
{
	run_scenario(*state);
}

/* Runs the first scenario with the debug log on, stderr captured: every
 * slot transition is one line naming the connector. */
static void test_transitions_logged(void **state)
{
	(void)state;
	fflush(stderr);
	int saved = dup(2);
	FILE *cap = tmpfile();
	assert_true(saved >= 0 && cap);
	assert_true(dup2(fileno(cap), 2) >= 0);
	log_setup(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT);
	run_scenario(&scenarios[0]);
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
	fflush(stderr);
	assert_true(dup2(saved, 2) >= 0);
	close(saved);

	char *text = NULL;
	size_t len = 0;
	rewind(cap);
	ssize_t n = getdelim(&text, &len, '\0', cap);
	fclose(cap);
	assert_true(n > 0);
	static const char *const want[] = {
	    "debug: poll: connector shop: request 0 (window 2023-02-08T00:00:00",
	    "free -> ready",
	    "ready -> writing",
	    "writing -> written",
	    "written -> free",
	    "request 2 (window 2023-02-08T02:00:00",
	};
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		if (!strstr(text, want[i]))
			fail_msg("the debug log lacks \"%s\":\n%s", want[i], text);
	free(text);
}

int main(void)
{
	struct CMUnitTest tests[ARRAY_LEN(scenarios) + 1];
	for (size_t i = 0; i < ARRAY_LEN(scenarios); i++)
		tests[i] = (struct CMUnitTest){.name = scenarios[i].name,
		                               .test_func = test_scenario,
		                               .initial_state = (void *)&scenarios[i]};
	tests[ARRAY_LEN(scenarios)] = (struct CMUnitTest)cmocka_unit_test(test_transitions_logged);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
