/* daemon: claims, polls and schedules connectors on one libev loop; runs
 * the request tables through the requests module from the same claim
 * cycle (`run` only); serves /metrics when asked (`run` only); reports to
 * systemd; handles SIGTERM, SIGINT and SIGHUP as loop events. */
#include "daemon.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <systemd/sd-daemon.h>

#include "cli.h"
#include "config.h"
#include "connector.h"
#include "db.h"
#include "dbq.h"
#include "http.h"
#include "janitor.h"
#include "log.h"
#include "metrics.h"
#include "poller.h"
#include "requests.h"
#include "retention.h"
#include "schedule.h"
#include "stats.h"

/* In `run`, claim at most this many connectors per slot of
 * max_concurrent_fetches: enough queued to keep every slot busy. */
#define CLAIM_PER_SLOT 4
/* Polls started at once per slot: enough that a slot never waits for a
 * poll to start while one write is being committed. */
#define POLLING_PER_SLOT 4

struct daemon;

/* Where a claimed connector's job is. Every job is on d->jobs from its
 * claim until it ends (and is freed):
 *
 *   WAITING -> POLLING    start_waiting: handed to poll_start (pj set by it)
 *   WAITING -> ENDED      drop_waiting: stopping; add_job: a deferred job
 *                         whose lease a newer claim took
 *   POLLING -> ENDED      start_waiting: poll_start ran out of memory
 *   POLLING -> FINISHING  on_polled: its end (next_poll, failures) is being
 *                         written on its own (finish set, or out of memory
 *                         recording it): the poll's last write failed or
 *                         carried no end
 *   POLLING -> ENDED      on_polled: the end rode in the poll's last write
 *                         (on_poll_end), or the lease was lost
 *   FINISHING -> ENDED    on_finished: the end was written, or not
 *   any -> ENDED          daemon_main: leaving (dbq and http freed first)
 *
 * Only a WAITING job is on the wait queue (d->waiting), and only if it is
 * not deferred; only a POLLING one has a poll (pj, NULL again from
 * on_polled on) and counts in npolling. The lease is not released here:
 * it goes with the end's write (db_finish) or expires.
 *
 * One connector is polled by one job at a time (add_job): a claim that
 * returns a connector already a job here either holds the very lease that
 * job holds (same epoch: the database lost the commit of that job's claim,
 * a crash with synchronous_commit off) and is dropped, or a newer one (the
 * job's lease expired while the process was stopped, and its writes will
 * be refused) and waits, deferred, off the queue, until that job ended.
 * Both found by the chaos soak (seed 101). */
enum job_state {
	JOB_WAITING, /* claimed, on the wait queue: not started yet */
	JOB_POLLING,
	JOB_FINISHING,
	JOB_ENDED, /* about to be freed */
};

static const char *const job_state_names[] = {
    [JOB_WAITING] = "waiting",
    [JOB_POLLING] = "polling",
    [JOB_FINISHING] = "finishing",
    [JOB_ENDED] = "ended",
};

/* The transitions drawn above: job_moves[from][to]. */
static const bool job_moves[][JOB_ENDED + 1] = {
    [JOB_WAITING] = {[JOB_POLLING] = true, [JOB_ENDED] = true},
    [JOB_POLLING] = {[JOB_FINISHING] = true, [JOB_ENDED] = true},
    [JOB_FINISHING] = {[JOB_ENDED] = true},
    [JOB_ENDED] = {false},
};

/* One claimed connector, from its claim until its lease is released. */
struct job {
	struct daemon *d;
	enum job_state state;      /* changed by job_set_state only */
	LIST_ENTRY(job) link;      /* in d->jobs */
	STAILQ_ENTRY(job) waiting; /* in d->waiting, while WAITING */
	struct connector c;        /* owned */
	struct poll_job *pj;       /* while polling */
	int64_t started;           /* when the poll started: the next is timed from it */
	struct finish *finish;     /* the poll's end, while it is written */
	bool deferred;             /* WAITING for an older job of c to end */
};

/* The end of a poll as a batched write (allocated only then: `once` holds
 * thousands of claimed jobs). */
struct finish {
	struct db_finish fin;
	struct db_write write;
};

struct claim {
	struct daemon *d;
	size_t limit;
	int64_t after_id; /* once: claim ids above this */
	struct connector *v;
	size_t n;
	long leased_elsewhere;   /* once: connectors another process polls now */
	enum db_error_kind kind; /* why the claim failed */
};

#define JANITOR_FIRST_S 60.0 /* after start: not while everything starts at once */

struct daemon {
	struct ev_loop *loop;
	struct cfg *cfg;
	const struct daemon_options *opt;
	struct http *http;
	struct dbq *dbq;
	struct requests *rq;        /* connection_tests, backfill_requests (`run` only) */
	struct janitor *janitor;    /* periodic maintenance (`run` only) */
	struct metrics *metrics;    /* /metrics ([metrics] listen, `run` only) */
	bool snapshotting;          /* a connectors' snapshot in the database thread */
	struct retention retention; /* the janitor's retention task */
	char owner[160];

	LIST_HEAD(jobs, job) jobs;
	size_t njobs;
	/* Claimed but not started: `once` claims every connector at once, and
	 * a started poll costs a few KiB, so at most POLLING_PER_SLOT per
	 * transfer slot run at a time. */
	STAILQ_HEAD(waiting_jobs, job) waiting;
	size_t npolling;
	struct claim *claiming;          /* a claim in the database thread */
	LIST_HEAD(stales, stale) stales; /* stale-lease releases in the database thread */
	bool claim_again;                /* something asked for a claim meanwhile */
	bool release_after_claim;        /* reconnected while a claim was in flight */
	bool renewing;
	bool db_down; /* reported once per outage */
	bool stopping;
	bool releasing;
	bool once_claimed;
	int64_t once_after; /* once: the highest id claimed so far */
	size_t once_total;  /* once: connectors claimed so far */

	size_t polls_ok, polls_failed;
	struct stats stats; /* every poll's end, daemon's and backfill requests' alike */
	struct stats_connectors snapshot; /* the database thread's, until on_snapshot */
	bool db_failed;                   /* a claim or a write failed for the database's sake */
	bool db_refused; /* ... because the role lacks a privilege (once exits 2) */

	ev_timer claim_timer, renew_timer, watchdog_timer, grace_timer, status_timer, start_timer;
	ev_timer release_timer; /* gives up on releasing leases (database stuck) */
	ev_signal sigterm, sigint, sighup;
};

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static void update_status(struct daemon *d)
{
	sd_notifyf(0,
	           "STATUS=%s%zu connector%s polling, %zu transfer%s in flight, %zu polls ok and "
	           "%zu failed "
	           "since start; database %s",
	           d->stopping ? "stopping: " : "", d->njobs, d->njobs == 1 ? "" : "s",
	           http_in_flight(d->http), http_in_flight(d->http) == 1 ? "" : "s", d->polls_ok,
	           d->polls_failed, dbq_connected(d->dbq) ? "up" : "unreachable");
}

/* ---- ending ---------------------------------------------------------------- */

static void on_released(int rc, const char *err, void *arg)
{
	struct daemon *d = arg;
	if (rc != 0)
		log_warning("daemon", NULL,
		            "could not release leases (they expire by themselves): %s", err);
	ev_break(d->loop, EVBREAK_ALL);
}

static int release_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct daemon *d = arg;
	return db_release_all(db, d->owner, err, errlen);
}

static void on_release_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	log_warning("daemon", NULL,
	            "the database did not answer: leaving without releasing leases "
	            "(they expire by themselves)");
	ev_break(loop, EVBREAK_ALL);
}

/* Releases every lease we hold and leaves the loop when that is done, or
 * after a few seconds if the database does not answer: a stuck database
 * must not keep SIGTERM from working. */
static void release_and_exit(struct daemon *d)
{
	if (d->releasing)
		return;
	d->releasing = true;
	ev_timer_set(&d->release_timer, 3., 0.);
	ev_timer_start(d->loop, &d->release_timer);
	if (dbq_submit(d->dbq, release_in_thread, on_released, d) != 0)
		ev_break(d->loop, EVBREAK_ALL);
}

static void maybe_done(struct daemon *d)
{
	if (d->njobs > 0 || d->claiming || requests_busy(d->rq))
		return;
	if (d->stopping || (d->opt->once && d->once_claimed))
		release_and_exit(d);
}

/* ---- one connector --------------------------------------------------------- */

/* The one place a job changes state: the transitions drawn at enum
 * job_state, asserted with what each state implies, and logged at debug
 * level. */
static void job_set_state(struct job *j, enum job_state to)
{
	enum job_state from = j->state;
	assert(job_moves[from][to]);
	assert(to != JOB_FINISHING || !j->pj);
	j->state = to;
	if (log_enabled(LOG_LEVEL_DEBUG))
		log_debug("daemon", j->c.name, "job %s -> %s", job_state_names[from],
		          job_state_names[to]);
}

/* The job of connector id here that is not deferred, or the deferred
 * one, or NULL. */
static struct job *job_of(struct daemon *d, int64_t id, bool deferred)
{
	struct job *j;
	LIST_FOREACH(j, &d->jobs, link)
	if (j->c.id == id && j->deferred == deferred)
		return j;
	return NULL;
}

/* Ends a job in any state: the caller has taken it off the wait queue and
 * freed its poll, if it had them. A claim of the same connector deferred
 * behind it joins the queue (the caller starts it), unless stopping. */
static void job_unlink_free(struct job *j)
{
	struct daemon *d = j->d;
	job_set_state(j, JOB_ENDED);
	LIST_REMOVE(j, link);
	d->njobs--;
	struct job *next = j->deferred ? NULL : job_of(d, j->c.id, true);
	if (next && !d->stopping) {
		next->deferred = false;
		STAILQ_INSERT_TAIL(&d->waiting, next, waiting);
	}
	connector_free(&j->c);
	free(j->finish);
	free(j);
}

static void claim(struct daemon *d);
static void release_stale(struct daemon *d);
static void start_waiting(struct daemon *d);

static void on_finished(int rc, const char *err, void *arg)
{
	struct job *j = arg;
	struct daemon *d = j->d;
	assert(j->state == JOB_FINISHING);
	if (rc != 0) {
		stats_db_error(&d->stats);
		log_debug("daemon", j->c.name,
		          "could not record the next poll (the lease will expire): %s", err);
	}
	job_unlink_free(j);
	start_waiting(d);
	update_status(d);
	if (!d->opt->once)
		claim(d);
	maybe_done(d);
}

static void on_polled(const struct poll_result *r, void *user);
static bool on_poll_end(bool ok, enum run_outcome outcome, long retry_after, struct db_finish *fin,
                        void *user);

/* Starts claimed polls while fewer than POLLING_PER_SLOT per slot run. */
static void start_waiting(struct daemon *d)
{
	size_t limit = (size_t)d->cfg->max_concurrent_fetches * POLLING_PER_SLOT;
	struct job *j;
	while (!d->stopping && d->npolling < limit && (j = STAILQ_FIRST(&d->waiting))) {
		assert(j->state == JOB_WAITING);
		STAILQ_REMOVE_HEAD(&d->waiting, waiting);
		struct poll_spec spec = {
		    .http = d->http,
		    .dbq = d->dbq,
		    .c = &j->c,
		    .lease_owner = d->owner,
		    .now = now_s(),
		    .stats = &d->stats,
		    .end = on_poll_end,
		    .done = on_polled,
		    .user = j,
		};
		j->started = spec.now;
		/* Polling before poll_start returns: when memory runs out even for
		 * queueing a write, its done (on_polled) runs from inside it, and
		 * the job may be gone when it returns. */
		d->npolling++;
		job_set_state(j, JOB_POLLING);
		if (poll_start(&spec, &j->pj) != 0) {
			log_error("daemon", j->c.name, "out of memory: not polled now");
			d->npolling--;
			job_unlink_free(j);
		}
	}
}

/* Stopping: claimed polls not started yet are dropped, deferred ones too
 * (their leases go with all the others in db_release_all). */
static void drop_waiting(struct daemon *d)
{
	struct job *j, *next;
	while ((j = STAILQ_FIRST(&d->waiting))) {
		STAILQ_REMOVE_HEAD(&d->waiting, waiting);
		job_unlink_free(j);
	}
	for (j = LIST_FIRST(&d->jobs); j; j = next) {
		next = LIST_NEXT(j, link);
		if (j->deferred)
			job_unlink_free(j);
	}
}

/* The end of j's poll as the database records it: the next poll and the
 * consecutive failures (the lease is released with it). ok: every request
 * succeeded; db_failed: a write failed, so nothing of the poll counts as
 * the API's failure. */
static void plan_end(struct job *j, bool ok, bool db_failed, enum run_outcome outcome,
                     long retry_after, struct db_finish *fin)
{
	struct daemon *d = j->d;
	const struct connector *c = &j->c;
	int64_t now = now_s(), next_poll;
	uint32_t rnd = arc4random();
	unsigned failures;
	if (ok) {
		failures = 0;
		/* From the poll's start, so that two polls are never closer than
		 * the interval less its jitter; a claim comes up to one
		 * claim_interval after the poll was due, which the slot allows. */
		next_poll = sched_after_success(j->started, c->id, c->poll_interval,
		                                (d->cfg->claim_interval_ms + 999) / 1000, rnd);
	} else if (db_failed) {
		failures = c->failures;
		next_poll = now + SCHED_BACKOFF_MIN;
	} else {
		failures = c->failures + 1;
		next_poll = sched_after_failure(now, failures, outcome == RUN_AUTH_FAILED,
		                                retry_after, rnd);
	}
	*fin = (struct db_finish){.owner = d->owner,
	                          .connector_id = c->id,
	                          .epoch = c->lease_epoch,
	                          .next_poll = next_poll,
	                          .failures = failures};
}

/* poll_spec.end: the poll's last write carries its end (one trip). */
static bool on_poll_end(bool ok, enum run_outcome outcome, long retry_after, struct db_finish *fin,
                        void *user)
{
	plan_end(user, ok, false, outcome, retry_after, fin);
	return true;
}

/* The log fields of a poll's end: its outcome, the failed request's HTTP
 * status, the poll's duration. No fetch_runs.id: the write does not return
 * it. */
#define POLL_FIELDS(c, r)                                                                          \
	(&(const struct log_fields){.connector = (c)->name,                                        \
	                            .outcome = run_outcome_name((r)->ok ? RUN_OK : (r)->outcome),  \
	                            .http_status = (r)->http_status,                               \
	                            .timed = true,                                                 \
	                            .seconds = (r)->seconds})

/* Counts and logs how the poll ended, once per poll. */
static void note_poll(struct job *j, const struct poll_result *r)
{
	struct daemon *d = j->d;
	const struct connector *c = &j->c;
	if (r->ok) {
		d->polls_ok++;
		if (c->failures > 0)
			log_event(LOG_LEVEL_INFO, "daemon", POLL_FIELDS(c, r),
			          "recovered after %u failed poll%s", c->failures,
			          c->failures == 1 ? "" : "s");
		return;
	}
	d->polls_failed++;
	if (r->lease_lost)
		return;
	d->db_failed |= r->db_failed;
	d->db_refused |= r->db_failed && exit_for_db(r->db_kind) == EXIT_USAGE;
	/* A failure is logged when it starts (and by every `once`); while it
	 * repeats, only at debug level. */
	if (d->opt->once || c->failures == 0)
		log_event(LOG_LEVEL_WARNING, "daemon", POLL_FIELDS(c, r), "poll failed (%s): %s",
		          run_outcome_name(r->outcome), r->error);
	else
		log_event(LOG_LEVEL_DEBUG, "daemon", POLL_FIELDS(c, r),
		          "still failing (%u times): %s", c->failures + 1, r->error);
}

static void on_polled(const struct poll_result *r, void *user)
{
	struct job *j = user;
	struct daemon *d = j->d;
	assert(j->state == JOB_POLLING && j->pj);
	j->pj = NULL;
	d->npolling--;
	start_waiting(d);
	note_poll(j, r);

	if (r->lease_lost || r->end_written) {
		/* Another daemon has it now, or the end is already recorded (it
		 * rode in the poll's last write): nothing more to write. */
		job_unlink_free(j);
		start_waiting(d);
		update_status(d);
		if (!d->opt->once && r->end_written)
			claim(d);
		maybe_done(d);
		return;
	}
	/* Recorded on its own (the poll's last write failed, or carried no
	 * end), batched with other polls' writes. */
	job_set_state(j, JOB_FINISHING);
	j->finish = calloc(1, sizeof(*j->finish));
	if (!j->finish) {
		on_finished(-1, "out of memory", j);
		return;
	}
	plan_end(j, r->ok, r->db_failed, r->outcome, r->retry_after, &j->finish->fin);
	j->finish->write = (struct db_write){.finish = &j->finish->fin};
	if (dbq_submit_write(d->dbq, &j->finish->write, j->c.id, 0, on_finished, j) != 0)
		on_finished(-1, "out of memory", j);
}

/* ---- claiming ------------------------------------------------------------- */

static int claim_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct claim *cl = arg;
	struct daemon *d = cl->d;
	int rc = db_claim(db, d->owner, d->cfg->lease_ms / 1000, cl->limit, d->opt->once,
	                  cl->after_id, &cl->v, &cl->n, err, errlen);
	cl->kind = rc != 0 ? db_error_kind(db) : DB_ERR_NONE;
	/* `once` polls every connector, but not one a daemon (or a killed
	 * run, until its lease expires) holds: say so rather than skip it
	 * silently (after its last claim). */
	if (rc == 0 && d->opt->once && cl->n < cl->limit &&
	    db_count_leased_elsewhere(db, d->owner, &cl->leased_elsewhere, err, errlen) != 0)
		cl->leased_elsewhere = 0;
	return rc;
}

/* A claimed connector becomes a job (c moved into it), one at a time per
 * connector (see enum job_state). */
static void add_job(struct daemon *d, struct connector *c)
{
	struct job *running = job_of(d, c->id, false);
	if (running && running->c.lease_epoch == c->lease_epoch) {
		/* Our own lease, granted again: the job already polling holds it. */
		log_warning("daemon", c->name,
		            "claimed again under the lease a poll in progress holds (epoch %" PRId64
		            "; the database lost a commit?): polled once",
		            c->lease_epoch);
		connector_free(c);
		return;
	}
	struct job *j = calloc(1, sizeof(*j));
	if (!j) {
		log_error("daemon", c->name, "out of memory: not polled now");
		connector_free(c);
		return;
	}
	j->d = d;
	j->c = *c; /* moved */
	memset(c, 0, sizeof(*c));
	if (running) {
		/* The running job's lease is lost (its writes will be refused);
		 * this newer claim polls once it ended. A claim deferred before
		 * this one holds an older lease still: it is lost too. */
		log_info("daemon", j->c.name,
		         "claimed again (epoch %" PRId64 ") while a poll under a lease since lost "
		         "(epoch %" PRId64 ") runs: polled once that one ends",
		         j->c.lease_epoch, running->c.lease_epoch);
		struct job *older = job_of(d, j->c.id, true);
		if (older)
			job_unlink_free(older);
		j->deferred = true;
	}
	LIST_INSERT_HEAD(&d->jobs, j, link);
	d->njobs++;
	if (!j->deferred)
		STAILQ_INSERT_TAIL(&d->waiting, j, waiting);
}

static void on_claimed(int rc, const char *err, void *arg)
{
	struct claim *cl = arg;
	struct daemon *d = cl->d;
	d->claiming = NULL;
	if (rc != 0) {
		stats_db_error(&d->stats);
		if (!d->db_down)
			log_error("daemon", NULL, "claiming connectors: %s", err);
		d->db_failed = true;
		d->db_refused |= exit_for_db(cl->kind) == EXIT_USAGE;
		if (d->opt->once)
			d->once_claimed = true;
		free(cl);
		if (d->release_after_claim) {
			d->release_after_claim = false;
			release_stale(d); /* and then claims */
		}
		maybe_done(d);
		return;
	}
	/* `once` claims in chunks of as many polls as run at a time, so the
	 * first transfers start at once, not after claiming thousands. */
	bool more = cl->n == cl->limit;
	if (d->opt->once) {
		for (size_t i = 0; i < cl->n; i++)
			if (cl->v[i].id > d->once_after)
				d->once_after = cl->v[i].id;
		d->once_total += cl->n;
		d->once_claimed = !more;
	}
	if (d->opt->once && !more) {
		log_info("daemon", NULL, "polling %zu connector%s", d->once_total,
		         d->once_total == 1 ? "" : "s");
		if (cl->leased_elsewhere > 0)
			log_warning(
			    "daemon", NULL,
			    "%ld connector%s left alone: another ksi-salesd holds %s lease (see "
			    "connector_health.polled_by)",
			    cl->leased_elsewhere, cl->leased_elsewhere == 1 ? "" : "s",
			    cl->leased_elsewhere == 1 ? "its" : "their");
	}
	for (size_t i = 0; i < cl->n; i++)
		add_job(d, &cl->v[i]);
	start_waiting(d);
	free(cl->v);
	free(cl);
	update_status(d);
	if (d->release_after_claim) {
		/* Now that this claim's connectors are jobs, the release keeps
		 * them; it claims again itself. */
		d->release_after_claim = false;
		d->claim_again = false;
		release_stale(d);
	} else if (d->claim_again || more) {
		d->claim_again = false;
		claim(d);
	}
	maybe_done(d);
}

static void claim(struct daemon *d)
{
	if (d->stopping || (d->opt->once && (d->once_claimed || d->claiming)))
		return;
	if (d->claiming) {
		d->claim_again = true;
		return;
	}
	size_t want = (size_t)d->cfg->max_concurrent_fetches * CLAIM_PER_SLOT;
	size_t limit = d->opt->once ? want : (want > d->njobs ? want - d->njobs : 0);
	if (limit == 0)
		return;
	struct claim *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return; /* the claim timer tries again */
	cl->d = d;
	cl->limit = limit;
	cl->after_id = d->once_after;
	d->claiming = cl;
	if (dbq_submit(d->dbq, claim_in_thread, on_claimed, cl) != 0) {
		d->claiming = NULL;
		free(cl);
	}
}

/* ---- timers and events ---------------------------------------------------- */

/* A claim cycle: due connectors, and the request tables. */
static void claim_cycle(struct daemon *d)
{
	claim(d);
	requests_claim(d->rq);
}

/* ---- /metrics -------------------------------------------------------------- */

static int snapshot_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct daemon *d = arg;
	/* Written by the database thread while the loop waits for on_snapshot
	 * (snapshotting): the loop reads it only after dbq handed it back. */
	struct stats_connectors snap;
	if (db_connector_snapshot(db, &snap, err, errlen) != 0)
		return -1;
	snap.taken_at = (double)time(NULL);
	d->snapshot = snap;
	return 0;
}

static void on_snapshot(int rc, const char *err, void *arg)
{
	struct daemon *d = arg;
	d->snapshotting = false;
	if (rc != 0) {
		stats_db_error(&d->stats);
		log_debug("daemon", NULL, "counting connectors for /metrics: %s", err);
		return; /* the last snapshot stays, with its time */
	}
	d->stats.connectors = d->snapshot;
}

/* The connectors by state and freshness, for /metrics: read once per claim
 * cycle, never per scrape. */
static void read_snapshot(struct daemon *d)
{
	if (!d->metrics || d->snapshotting || d->stopping)
		return;
	d->snapshotting = true;
	if (dbq_submit(d->dbq, snapshot_in_thread, on_snapshot, d) != 0)
		d->snapshotting = false;
}

static void metrics_gauges(struct metrics_gauges *g, void *user)
{
	struct daemon *d = user;
	g->transfers_in_flight = http_in_flight(d->http);
	/* Every job holds its connector's lease from its claim to its end; a
	 * running backfill request holds one more. */
	g->leases_held = d->njobs + (requests_leased_connector(d->rq, NULL) ? 1 : 0);
	g->db_connected = dbq_connected(d->dbq);
}

static void on_claim_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	claim_cycle(w->data);
	read_snapshot(w->data);
}

static int renew_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct daemon *d = arg;
	return db_renew(db, d->owner, d->cfg->lease_ms / 1000, err, errlen);
}

static void on_renewed(int rc, const char *err, void *arg)
{
	struct daemon *d = arg;
	d->renewing = false;
	if (rc != 0) {
		stats_db_error(&d->stats);
		log_debug("daemon", NULL, "renewing leases: %s", err);
	}
}

static void on_renew_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	(void)loop;
	(void)revents;
	/* A running backfill holds its connector's lease too. */
	if ((d->njobs == 0 && !requests_leased_connector(d->rq, NULL)) || d->renewing)
		return;
	d->renewing = true;
	if (dbq_submit(d->dbq, renew_in_thread, on_renewed, d) != 0)
		d->renewing = false;
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	/* Sent from the loop itself: a stuck loop stops feeding the watchdog. */
	sd_notify(0, "WATCHDOG=1");
}

static void on_status_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	update_status(w->data);
}

/* Releases leases left from polls whose results were lost with the
 * connection, so those connectors are due again at once rather than when
 * the lease expires. Jobs still running keep theirs. */
struct stale {
	struct daemon *d;
	LIST_ENTRY(stale) link; /* in d->stales until its callback ran */
	int64_t *keep;
	size_t nkeep;
};

static void stale_free(struct stale *st)
{
	LIST_REMOVE(st, link);
	free(st->keep);
	free(st);
}

static int release_stale_in_thread(struct db *db, void *arg, char *err, size_t errlen)
{
	struct stale *st = arg;
	return db_release_stale(db, st->d->owner, st->keep, st->nkeep, err, errlen);
}

static void on_stale_released(int rc, const char *err, void *arg)
{
	struct stale *st = arg;
	struct daemon *d = st->d;
	if (rc != 0) {
		stats_db_error(&d->stats);
		log_debug("daemon", NULL, "releasing stale leases: %s", err);
	}
	stale_free(st);
	claim(d);
}

static void release_stale(struct daemon *d)
{
	struct stale *st = calloc(1, sizeof(*st));
	if (!st)
		return;
	st->d = d;
	st->keep = calloc(d->njobs + 1, sizeof(int64_t));
	if (!st->keep) {
		free(st);
		return;
	}
	struct job *j;
	LIST_FOREACH(j, &d->jobs, link)
	st->keep[st->nkeep++] = j->c.id;
	if (requests_leased_connector(d->rq, &st->keep[st->nkeep]))
		st->nkeep++;
	if (dbq_submit(d->dbq, release_stale_in_thread, on_stale_released, st) != 0) {
		free(st->keep);
		free(st);
		return;
	}
	LIST_INSERT_HEAD(&d->stales, st, link);
}

static void on_db_event(enum dbq_event ev, const char *detail, void *user)
{
	struct daemon *d = user;
	switch (ev) {
	case DBQ_CONNECTED:
		update_status(d);
		if (d->db_down) {
			log_info("daemon", NULL, "database connection restored");
			d->db_down = false;
			/* A claim still in flight (the database runs it first) would
			 * return connectors that are not jobs yet: the release would
			 * free their leases and the next claim take them again, a
			 * second poll of a connector already being polled (found by
			 * the chaos soak). So the release waits for that claim. */
			if (d->claiming)
				d->release_after_claim = true;
			else
				release_stale(d); /* and then claims */
		} else {
			log_debug("daemon", NULL, "database connected");
			claim(d);
		}
		requests_claim(d->rq);
		break;
	case DBQ_DISCONNECTED:
		stats_db_error(&d->stats);
		if (!d->db_down)
			log_error("daemon", NULL, "database unavailable (retrying): %s", detail);
		d->db_down = true;
		update_status(d);
		break;
	case DBQ_NOTIFIED:
		/* A connector, a store or a request row was written. */
		log_debug("daemon", NULL, "configuration changed");
		claim_cycle(d);
		break;
	}
}

static void on_grace(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	(void)loop;
	(void)revents;
	log_warning("daemon", NULL,
	            "shutdown_grace passed: abandoning %zu poll%s (their windows are fetched "
	            "again next time)",
	            d->njobs, d->njobs == 1 ? "" : "s");
	/* Requests still running go back to pending with the leases
	 * (db_release_all); a backfill first records how far it got. */
	requests_abandon(d->rq);
	release_and_exit(d);
}

static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;
	(void)revents;
	if (d->stopping) {
		log_warning("daemon", NULL, "second stop signal: exiting now");
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	d->stopping = true;
	drop_waiting(d);
	requests_stop(d->rq);
	sd_notify(0, "STOPPING=1");
	ev_timer_stop(loop, &d->claim_timer);
	log_info("daemon", NULL, "stopping: waiting up to %.1f s for %zu poll%s in progress",
	         d->cfg->shutdown_grace_ms / 1000.0, d->njobs, d->njobs == 1 ? "" : "s");
	update_status(d);
	ev_timer_set(&d->grace_timer, d->cfg->shutdown_grace_ms / 1000.0, 0.);
	ev_timer_start(loop, &d->grace_timer);
	maybe_done(d);
}

static void on_reload_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;
	(void)loop;
	(void)revents;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
	           (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
	struct cfg fresh;
	char err[1024];
	if (cfg_init(&fresh) != 0) {
		log_error("daemon", NULL,
		          "reload: out of memory; keeping the running configuration");
	} else if (cfg_load(&fresh, d->opt->config_path, d->opt->config_required, err,
	                    sizeof(err)) != 0) {
		log_error("daemon", NULL, "reload failed, keeping the running configuration: %s",
		          err);
		cfg_free(&fresh);
	} else {
		/* The database connection stays; a changed url takes a restart.
		 * The URL is resolved as at start (a url_file or the credential
		 * may hold it), only to compare. */
		const char *running = d->cfg->database_url ? d->cfg->database_url : "";
		struct cfg_url_sources src = {
		    .cli = d->opt->database_url_override,
		    .credentials_dir = getenv("CREDENTIALS_DIRECTORY"),
		    .config_path = d->opt->config_path,
		    .config_found = true,
		};
		char from[1024];
		if (cfg_resolve_database_url(&fresh, &src, from, sizeof(from), err, sizeof(err)) !=
		        0 ||
		    strcmp(running, fresh.database_url ? fresh.database_url : "") != 0)
			log_warning("daemon", NULL,
			            "reload: the database URL changed; it takes effect at restart");
		if (memcmp(&fresh.metrics_listen, &d->cfg->metrics_listen,
		           sizeof(fresh.metrics_listen)) != 0)
			log_warning("daemon", NULL,
			            "reload: [metrics] listen changed; it takes effect at restart");
		free(fresh.database_url);
		fresh.database_url = d->cfg->database_url;
		d->cfg->database_url = NULL;
		/* Swap contents: http keeps its pointer to d->cfg. */
		struct cfg old = *d->cfg;
		*d->cfg = fresh;
		cfg_free(&old);
		log_setup(d->cfg->log_level, d->cfg->log_format);
		log_info("daemon", NULL, "configuration reloaded from %s", d->opt->config_path);
		ev_timer_set(&d->claim_timer, d->cfg->claim_interval_ms / 1000.0,
		             d->cfg->claim_interval_ms / 1000.0);
		ev_timer_again(d->loop, &d->claim_timer);
	}
	sd_notify(0, "READY=1");
	update_status(d);
}

static void on_start(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	(void)loop;
	(void)revents;
	/* The loop runs: tell systemd, then look for work. */
	if (!d->opt->once) {
		sd_notify(0, "READY=1");
		log_info("daemon", NULL, "ksi-salesd %s running as %s", KSI_VERSION, d->owner);
	}
	update_status(d);
	claim_cycle(d);
	read_snapshot(d);
}

/* ---- main ------------------------------------------------------------------ */

static void on_requests_idle(void *user)
{
	maybe_done(user);
}

/* The loop, libcurl, the database threads and, for `run`, the request
 * tables and the janitor. -1 having logged why (nothing left started). */
static int start_parts(struct daemon *d)
{
	d->loop = ev_default_loop(EVFLAG_AUTO);
	if (!d->loop) {
		log_error("daemon", NULL, "cannot start the event loop");
		return -1;
	}
	if (http_new(d->loop, d->cfg, &d->http) != 0 ||
	    dbq_new(d->loop, d->cfg->database_url, on_db_event, d, &d->dbq) != 0) {
		log_error("daemon", NULL, "cannot start libcurl or the database thread");
		http_free(d->http);
		return -1;
	}
	struct requests_env renv = {
	    .loop = d->loop,
	    .http = d->http,
	    .dbq = d->dbq,
	    .cfg = d->cfg,
	    .owner = d->owner,
	    .stats = &d->stats,
	    .idle = on_requests_idle,
	    .user = d,
	};
	/* The janitor's tasks: retention (partitions ahead, expired ones
	 * dropped). Its first cycle a minute after start (sooner when the
	 * interval is shorter), then every [retention] janitor_interval. */
	retention_init(&d->retention, d->cfg);
	const struct janitor_task tasks[] = {retention_task(&d->retention), fleet_fold_task()};
	double every = d->cfg->janitor_interval_ms / 1000.0;
	if (!d->opt->once && (requests_new(&renv, &d->rq) != 0 ||
	                      janitor_new(d->loop, d->dbq, tasks, sizeof(tasks) / sizeof(tasks[0]),
	                                  every < JANITOR_FIRST_S ? every : JANITOR_FIRST_S, every,
	                                  &d->janitor) != 0)) {
		log_error("daemon", NULL, "out of memory");
		dbq_free(d->dbq);
		http_free(d->http);
		requests_free(d->rq);
		return -1;
	}
	/* An operator who asked for metrics relies on them for alerts: a port
	 * that cannot be had is a start-up error, as a bad config is. */
	if (!d->opt->once && d->cfg->metrics_listen.family != 0 &&
	    metrics_new(d->loop, &d->cfg->metrics_listen, &d->stats, metrics_gauges, d,
	                &d->metrics) != 0) {
		janitor_free(d->janitor);
		requests_free(d->rq);
		dbq_free(d->dbq);
		http_free(d->http);
		return -1;
	}
	return 0;
}

/* Timers (claims, renewals, the watchdog, systemd's status) and signal
 * watchers, as `run` or `once` needs them. */
static void start_watchers(struct daemon *d)
{
	const struct cfg *cfg = d->cfg;
	ev_timer_init(&d->start_timer, on_start, 0., 0.);
	ev_timer_init(&d->claim_timer, on_claim_timer, cfg->claim_interval_ms / 1000.0,
	              cfg->claim_interval_ms / 1000.0);
	ev_timer_init(&d->renew_timer, on_renew_timer, cfg->lease_ms / 3000.0,
	              cfg->lease_ms / 3000.0);
	ev_timer_init(&d->grace_timer, on_grace, 0., 0.);
	ev_timer_init(&d->release_timer, on_release_timeout, 0., 0.);
	ev_timer_init(&d->status_timer, on_status_timer, 5., 5.);
	ev_timer_init(&d->watchdog_timer, on_watchdog, 0., 0.);
	d->start_timer.data = d->claim_timer.data = d->renew_timer.data = d->grace_timer.data = d;
	d->status_timer.data = d->watchdog_timer.data = d->release_timer.data = d;
	ev_timer_start(d->loop, &d->start_timer);
	ev_timer_start(d->loop, &d->renew_timer);
	if (!d->opt->once) {
		ev_timer_start(d->loop, &d->claim_timer);
		ev_timer_start(d->loop, &d->status_timer);
		uint64_t usec = 0;
		if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
			ev_timer_set(&d->watchdog_timer, usec / 2e6, usec / 2e6);
			ev_timer_start(d->loop, &d->watchdog_timer);
		}
	}
	ev_signal_init(&d->sigterm, on_stop_signal, SIGTERM);
	ev_signal_init(&d->sigint, on_stop_signal, SIGINT);
	ev_signal_init(&d->sighup, on_reload_signal, SIGHUP);
	d->sigterm.data = d->sigint.data = d->sighup.data = d;
	ev_signal_start(d->loop, &d->sigterm);
	ev_signal_start(d->loop, &d->sigint);
	if (!d->opt->once)
		ev_signal_start(d->loop, &d->sighup);
}

/* What the run comes to: logged, and once's exit code: 2 when the role
 * lacks a privilege (no retry fixes that), 3 when the database failed us
 * otherwise, 1 when a connector failed. */
static int summarise(const struct daemon *d)
{
	if (!d->opt->once) {
		log_info("daemon", NULL, "stopped: %zu polls ok, %zu failed", d->polls_ok,
		         d->polls_failed);
		return EXIT_OK;
	}
	log_info("once", NULL, "%zu connector%s polled: %zu ok, %zu failed",
	         d->polls_ok + d->polls_failed, d->polls_ok + d->polls_failed == 1 ? "" : "s",
	         d->polls_ok, d->polls_failed);
	log_info("once", NULL,
	         "records: %" PRIu64 " upserted, %" PRIu64 " refused; %" PRIu64
	         " bytes; %.3f s polling",
	         d->stats.records_upserted, d->stats.records_refused, d->stats.bytes,
	         d->stats.duration_sum);
	return d->db_refused         ? EXIT_USAGE
	       : d->db_failed        ? EXIT_DB
	       : d->polls_failed > 0 ? EXIT_FAILED
	                             : EXIT_OK;
}

/* Nothing may call back into what is freed here: the thread and the
 * transfers are stopped first, then the jobs they referred to freed. */
static void stop_parts(struct daemon *d)
{
	metrics_free(d->metrics); /* its gauges read http and dbq */
	dbq_free(d->dbq);
	http_free(d->http);
	requests_free(d->rq);
	janitor_free(d->janitor);
	struct job *j;
	while ((j = LIST_FIRST(&d->jobs))) {
		poll_free(j->pj);
		job_unlink_free(j);
	}
	free(d->claiming);
	/* Left in the queue when the release timed out (database down). */
	while (!LIST_EMPTY(&d->stales))
		stale_free(LIST_FIRST(&d->stales));
	ev_timer *timers[] = {&d->start_timer,   &d->claim_timer,   &d->renew_timer,
	                      &d->grace_timer,   &d->release_timer, &d->status_timer,
	                      &d->watchdog_timer};
	for (size_t i = 0; i < sizeof(timers) / sizeof(*timers); i++)
		ev_timer_stop(d->loop, timers[i]);
	ev_signal_stop(d->loop, &d->sigterm);
	ev_signal_stop(d->loop, &d->sigint);
	ev_signal_stop(d->loop, &d->sighup);
	ev_loop_destroy(d->loop);
}

int daemon_main(struct cfg *cfg, const struct daemon_options *opt)
{
	struct daemon dd = {.cfg = cfg, .opt = opt};
	struct daemon *d = &dd;
	STAILQ_INIT(&d->waiting); /* the lists are empty when zeroed, this queue is not */
	char host[64] = "host";
	gethostname(host, sizeof(host) - 1);
	snprintf(d->owner, sizeof(d->owner), "%s:%ld:%08" PRIx32, host, (long)getpid(),
	         arc4random());
	if (start_parts(d) != 0)
		return 1;
	start_watchers(d);
	ev_run(d->loop, 0);
	int rc = summarise(d);
	stop_parts(d);
	return rc;
}
