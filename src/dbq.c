/* dbq: the database threads, fed through queues, answering through an
 * ev_async (see dbq.h for why). */
#include "dbq.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "db.h"
#include "log.h"

struct item {
	STAILQ_ENTRY(item) link; /* in exactly one of the dbq's queues */
	dbq_run_fn run;          /* a job (or maintenance), or: */
	struct db_write *write;  /* a write (batched), or neither: an event */
	int64_t key;             /* a write's batching key: one per batch */
	size_t weight;           /* a write's size, for DBQ_WRITE_BATCH_RECORDS */
	long long queued_ms;     /* a write's submission (mono_ms), for gathering */
	dbq_done_fn done;
	void *arg;
	int rc;
	enum dbq_event event;
	char err[1024];
};

STAILQ_HEAD(items, item);

/* One connection and the thread that owns it. */
struct worker {
	struct dbq *q;
	pthread_t thread;
	bool started;
	double deadline; /* seconds a job of this worker may run before its socket is cut */
	/* Read by the loop without the lock. */
	atomic_int sock;             /* the connection's socket, -1 if none */
	atomic_llong job_started_ms; /* when the running job started, 0 if idle */
};

struct dbq {
	struct ev_loop *loop;
	char *conninfo;
	dbq_event_fn on_event;
	void *user;
	int wake_fd; /* eventfd: wakes the main thread (work queued, stop) */
	ev_async async;
	ev_timer deadline;

	pthread_mutex_t lock;
	pthread_cond_t writes_cv; /* wakes the writer threads */
	pthread_cond_t maint_cv;  /* wakes the maintenance thread */
	struct items todo;        /* jobs: loop -> job thread */
	struct items writes;      /* writes: loop -> any thread */
	size_t nwrites, wweight;  /* in writes: how many, their weight */
	atomic_size_t batches;    /* write batches run so far */
	struct items done;        /* threads -> loop */
	struct items maint_jobs;  /* maintenance: loop -> its thread */
	bool stop;

	/* workers[0] is the job thread: jobs, LISTEN, events, and writes;
	 * the others only write, when they can connect. maint runs the
	 * maintenance lane once dbq_start_maintenance started it. */
	struct worker workers[DBQ_CONNECTIONS];
	struct worker maint;
	atomic_bool connected; /* the main thread's connection */
	size_t pending;        /* loop only */
};

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Takes the first item of a queue, or NULL. */
static struct item *pop(struct items *qu)
{
	struct item *it = STAILQ_FIRST(qu);
	if (it)
		STAILQ_REMOVE_HEAD(qu, link);
	return it;
}

/* Thread side: hands an item back to the loop. */
static void post(struct dbq *q, struct item *it)
{
	pthread_mutex_lock(&q->lock);
	STAILQ_INSERT_TAIL(&q->done, it, link);
	pthread_mutex_unlock(&q->lock);
	ev_async_send(q->loop, &q->async);
}

static void post_event(struct dbq *q, enum dbq_event ev, const char *detail)
{
	struct item *it = calloc(1, sizeof(*it));
	if (!it)
		return; /* an event lost to OOM is recovered by the periodic claim */
	it->event = ev;
	snprintf(it->err, sizeof(it->err), "%s", detail ? detail : "");
	post(q, it);
}

/* Waits until the wake fd or the database socket is readable, or ms pass. */
static void wait_for(struct dbq *q, int sock, int ms)
{
	struct pollfd p[2] = {{.fd = q->wake_fd, .events = POLLIN}, {.fd = sock, .events = POLLIN}};
	if (poll(p, sock >= 0 ? 2 : 1, ms) > 0 && (p[0].revents & POLLIN)) {
		uint64_t v;
		ssize_t r = read(q->wake_fd, &v, sizeof(v));
		(void)r; /* the count does not matter, only the wake-up */
	}
}

/* One thread's connection, reconnected with backoff (DBQ_RETRY_MIN_S
 * doubling to DBQ_RETRY_MAX_S) by the one function every thread uses. */
struct link {
	struct db *db;
	double backoff;
	long long next_attempt; /* mono_ms; 0: at once */
	char err[1024];         /* why the last attempt or the connection failed */
};

/* Connects l when it is down and an attempt is due (or now is true);
 * with listen, LISTEN is set up too. Returns whether l is connected now,
 * and sets *changed when it just connected. */
static bool link_up(struct worker *wk, struct link *l, bool listen, bool now, bool *changed)
{
	*changed = false;
	if (l->db)
		return true;
	if (!now && mono_ms() < l->next_attempt)
		return false;
	if (db_connect(wk->q->conninfo, &l->db, l->err, sizeof(l->err)) == 0 &&
	    (!listen || db_listen(l->db, l->err, sizeof(l->err)) == 0)) {
		atomic_store(&wk->sock, db_socket(l->db));
		l->backoff = DBQ_RETRY_MIN_S;
		*changed = true;
		return true;
	}
	db_close(l->db);
	l->db = NULL;
	if (l->backoff < DBQ_RETRY_MIN_S)
		l->backoff = DBQ_RETRY_MIN_S;
	l->next_attempt = mono_ms() + (long long)(l->backoff * 1000);
	l->backoff = l->backoff * 2 > DBQ_RETRY_MAX_S ? DBQ_RETRY_MAX_S : l->backoff * 2;
	return false;
}

/* Drops l's connection; the next attempt comes after retry_ms. */
static void link_down(struct worker *wk, struct link *l, const char *why, long long retry_ms)
{
	if (why)
		snprintf(l->err, sizeof(l->err), "%s", why);
	db_close(l->db);
	l->db = NULL;
	atomic_store(&wk->sock, -1);
	l->next_attempt = mono_ms() + retry_ms;
}

/* With the lock held: how long the queued writes should wait for more, in
 * ms: 0 to take them now, -1 when there are none. Writes that arrive
 * spread out (polls ending one by one) would each go alone to an idle
 * thread; waiting until DBQ_GATHER_WRITES (or DBQ_GATHER_RECORDS of
 * weight) are queued or the oldest has waited DBQ_GATHER_MS keeps batches
 * full (issue 12: statements and commits per poll) for at most that
 * delay. */
static long long gather_ms(struct dbq *q)
{
	if (STAILQ_EMPTY(&q->writes))
		return -1;
	if (q->stop || q->nwrites >= DBQ_GATHER_WRITES || q->wweight >= DBQ_GATHER_RECORDS)
		return 0;
	long long age = mono_ms() - STAILQ_FIRST(&q->writes)->queued_ms;
	return age >= DBQ_GATHER_MS ? 0 : DBQ_GATHER_MS - age;
}

/* With the lock held: takes the writes at the head of the queue, up to
 * DBQ_WRITE_BATCH of them and about DBQ_WRITE_BATCH_RECORDS of weight, and
 * stops before a second write of a key already taken (db_write_batch
 * wants distinct connectors; another thread may take that one). The
 * queue knows writes only by the key and weight given at submit. */
static size_t take_writes(struct dbq *q, struct item **items)
{
	size_t n = 0, weight = 0;
	while (n < DBQ_WRITE_BATCH && !STAILQ_EMPTY(&q->writes)) {
		const struct item *it = STAILQ_FIRST(&q->writes);
		if (n > 0 && weight + it->weight > DBQ_WRITE_BATCH_RECORDS)
			break;
		bool again = false;
		for (size_t i = 0; i < n && !again; i++)
			again = items[i]->key == it->key;
		if (again)
			break;
		weight += it->weight;
		items[n++] = pop(&q->writes);
		q->nwrites--;
		q->wweight -= it->weight;
	}
	if (n > 0)
		atomic_fetch_add(&q->batches, 1);
	return n;
}

/* Thread side: runs n writes as one batch (db NULL: fails them with the
 * reason) and hands each back. */
static void run_writes(struct dbq *q, struct worker *wk, struct db *db, struct item **items,
                       size_t n, const char *dberr)
{
	struct db_write *w[DBQ_WRITE_BATCH];
	for (size_t i = 0; i < n; i++)
		w[i] = items[i]->write;
	if (db) {
		atomic_store(&wk->job_started_ms, mono_ms());
		db_write_batch(db, w, n);
		atomic_store(&wk->job_started_ms, 0);
	}
	for (size_t i = 0; i < n; i++) {
		if (db) {
			items[i]->rc = w[i]->rc;
			snprintf(items[i]->err, sizeof(items[i]->err), "%s", w[i]->err);
		} else {
			w[i]->rc = items[i]->rc = -1;
			snprintf(w[i]->err, sizeof(w[i]->err), "database unavailable: %.900s",
			         dberr);
			snprintf(items[i]->err, sizeof(items[i]->err), "%s", w[i]->err);
		}
		post(q, items[i]);
	}
}

/* Runs one job on l's connection (or fails it with why the database is
 * unavailable) and hands it back. */
static void run_job(struct dbq *q, struct worker *wk, struct link *l, struct item *job)
{
	if (l->db) {
		atomic_store(&wk->job_started_ms, mono_ms());
		job->rc = job->run(l->db, job->arg, job->err, sizeof(job->err));
		atomic_store(&wk->job_started_ms, 0);
	} else {
		job->rc = -1;
		snprintf(job->err, sizeof(job->err), "database unavailable: %.900s", l->err);
	}
	post(q, job);
}

/* The job thread: claims, leases, the request tables, in order; writes
 * when no job waits; LISTEN and the connection events in between. */
static void *job_thread(void *arg)
{
	struct worker *wk = arg;
	struct dbq *q = wk->q;
	struct link l = {0};
	bool was_connected = false;
	struct item *items[DBQ_WRITE_BATCH];

	for (;;) {
		pthread_mutex_lock(&q->lock);
		bool stop = q->stop;
		bool work = !STAILQ_EMPTY(&q->todo) || !STAILQ_EMPTY(&q->writes);
		pthread_mutex_unlock(&q->lock);
		if (stop)
			break;

		bool connected_now;
		bool up = link_up(wk, &l, true, work, &connected_now);
		if (connected_now) {
			atomic_store(&q->connected, true);
			was_connected = true;
			post_event(q, DBQ_CONNECTED, NULL);
		} else if (!up && l.next_attempt > mono_ms() &&
		           (atomic_exchange(&q->connected, false) || !was_connected)) {
			was_connected = true; /* report the first failure once */
			post_event(q, DBQ_DISCONNECTED, l.err);
		}

		/* Jobs first (claims, leases), then writes, once gathered. */
		pthread_mutex_lock(&q->lock);
		struct item *job = pop(&q->todo);
		long long gather = job ? -1 : gather_ms(q);
		size_t n = gather == 0 ? take_writes(q, items) : 0;
		pthread_mutex_unlock(&q->lock);

		if (job) {
			run_job(q, wk, &l, job);
		} else if (n > 0) {
			run_writes(q, wk, l.db, items, n, l.err);
		} else if (l.db) {
			int k = db_take_notifications(l.db);
			if (k > 0)
				post_event(q, DBQ_NOTIFIED, NULL);
		}

		if (l.db && !db_ok(l.db)) {
			link_down(wk, &l, "connection lost", 500);
			atomic_store(&q->connected, false);
			post_event(q, DBQ_DISCONNECTED, l.err);
			continue;
		}
		if (!job && n == 0) {
			long long wait = l.db ? 60000 : l.next_attempt - mono_ms();
			if (gather > 0 && gather < wait)
				wait = gather;
			wait_for(q, l.db ? db_socket(l.db) : -1,
			         wait < 0       ? 0
			         : wait > 60000 ? 60000
			                        : (int)wait);
		}
	}
	link_down(wk, &l, NULL, 0);
	return NULL;
}

/* Waits on cv for at most ms, with the lock held. */
static void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *lock, long long ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	if (ms < 0)
		ms = 0;
	until.tv_sec += ms / 1000;
	until.tv_nsec += (ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(cv, lock, &until);
}

/* A writer: one more connection that takes writes off the queue while the
 * job thread does too, so a second core of PostgreSQL works on them. It
 * is only an accelerator: while it cannot connect it leaves every write to
 * the job thread, which reports the database's failures. */
static void *writer_thread(void *arg)
{
	struct worker *wk = arg;
	struct dbq *q = wk->q;
	struct link l = {0};
	struct item *items[DBQ_WRITE_BATCH];

	pthread_mutex_lock(&q->lock);
	for (;;) {
		if (q->stop)
			break;
		long long now = mono_ms();
		if (STAILQ_EMPTY(&q->writes) || (!l.db && now < l.next_attempt)) {
			cond_wait_ms(&q->writes_cv, &q->lock,
			             !STAILQ_EMPTY(&q->writes) ? l.next_attempt - now : 60000);
			continue;
		}
		long long gather = gather_ms(q);
		if (gather > 0) {
			cond_wait_ms(&q->writes_cv, &q->lock, gather);
			continue;
		}
		pthread_mutex_unlock(&q->lock);
		bool changed;
		/* A connection the server closed while it was idle (a restart)
		 * is replaced before it can fail a write. */
		if (l.db && !db_alive(l.db))
			link_down(wk, &l, "connection lost", 0);
		bool up = link_up(wk, &l, false, true, &changed);
		pthread_mutex_lock(&q->lock);
		if (!up)
			continue;
		size_t n = take_writes(q, items);
		pthread_mutex_unlock(&q->lock);
		if (n > 0)
			run_writes(q, wk, l.db, items, n, NULL);
		if (!db_ok(l.db))
			link_down(wk, &l, "connection lost", 500);
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	link_down(wk, &l, NULL, 0);
	return NULL;
}

/* The maintenance lane: one job at a time on a connection of its own, so
 * that a long maintenance statement neither holds up claims and leases on
 * the job thread nor is cut by DBQ_JOB_DEADLINE (its own deadline is
 * DBQ_MAINTENANCE_DEADLINE). Connects when work arrives, and fails that
 * work with the reason when it cannot. */
static void *maintenance_thread(void *arg)
{
	struct worker *wk = arg;
	struct dbq *q = wk->q;
	struct link l = {0};

	pthread_mutex_lock(&q->lock);
	for (;;) {
		if (q->stop)
			break;
		if (STAILQ_EMPTY(&q->maint_jobs)) {
			cond_wait_ms(&q->maint_cv, &q->lock, 60000);
			continue;
		}
		struct item *job = pop(&q->maint_jobs);
		pthread_mutex_unlock(&q->lock);
		bool changed;
		if (l.db && !db_alive(l.db))
			link_down(wk, &l, "connection lost", 0);
		(void)link_up(wk, &l, false, true, &changed);
		run_job(q, wk, &l, job);
		if (l.db && !db_ok(l.db))
			link_down(wk, &l, "connection lost", 0);
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	link_down(wk, &l, NULL, 0);
	return NULL;
}

/* Loop side: runs the done callbacks and events the thread posted. */
static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
	struct dbq *q = w->data;
	(void)loop;
	(void)revents;
	for (;;) {
		pthread_mutex_lock(&q->lock);
		struct item *it = pop(&q->done);
		pthread_mutex_unlock(&q->lock);
		if (!it)
			break;
		if (it->run || it->write) {
			q->pending--;
			it->done(it->rc, it->rc == 0 ? "" : it->err, it->arg);
		} else if (q->on_event) {
			q->on_event(it->event, it->err, q->user);
		}
		free(it);
	}
}

/* A job running too long means a database that stopped answering: cut
 * its socket so the blocked libpq call fails and the thread reconnects. */
static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct dbq *q = w->data;
	(void)loop;
	(void)revents;
	for (size_t i = 0; i <= DBQ_CONNECTIONS; i++) {
		struct worker *wk = i < DBQ_CONNECTIONS ? &q->workers[i] : &q->maint;
		long long started = atomic_load(&wk->job_started_ms);
		int sock = atomic_load(&wk->sock);
		if (started && sock >= 0 &&
		    mono_ms() - started > (long long)(wk->deadline * 1000)) {
			log_warning("db", NULL,
			            "a query has run for over %.0f s: closing the connection",
			            wk->deadline);
			shutdown(sock, SHUT_RDWR);
		}
	}
}

int dbq_new(struct ev_loop *loop, const char *conninfo, dbq_event_fn on_event, void *user,
            struct dbq **out)
{
	*out = NULL;
	struct dbq *q = calloc(1, sizeof(*q));
	if (!q)
		return -1;
	STAILQ_INIT(&q->todo);
	STAILQ_INIT(&q->writes);
	STAILQ_INIT(&q->done);
	STAILQ_INIT(&q->maint_jobs);
	q->loop = loop;
	q->on_event = on_event;
	q->user = user;
	q->conninfo = strdup(conninfo ? conninfo : "");
	q->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	atomic_init(&q->connected, false);
	atomic_init(&q->batches, 0);
	for (size_t i = 0; i <= DBQ_CONNECTIONS; i++) {
		struct worker *wk = i < DBQ_CONNECTIONS ? &q->workers[i] : &q->maint;
		wk->q = q;
		wk->deadline = i < DBQ_CONNECTIONS ? DBQ_JOB_DEADLINE : DBQ_MAINTENANCE_DEADLINE;
		atomic_init(&wk->sock, -1);
		atomic_init(&wk->job_started_ms, 0);
	}
	pthread_condattr_t ca;
	bool cond_ok = pthread_condattr_init(&ca) == 0 &&
	               pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
	               pthread_cond_init(&q->writes_cv, &ca) == 0;
	bool maint_ok = cond_ok && pthread_cond_init(&q->maint_cv, &ca) == 0;
	if (!q->conninfo || q->wake_fd < 0 || !maint_ok ||
	    pthread_mutex_init(&q->lock, NULL) != 0) {
		if (maint_ok)
			pthread_cond_destroy(&q->maint_cv);
		if (cond_ok)
			pthread_cond_destroy(&q->writes_cv);
		if (q->wake_fd >= 0)
			close(q->wake_fd);
		free(q->conninfo);
		free(q);
		return -1;
	}
	ev_async_init(&q->async, on_async);
	q->async.data = q;
	ev_async_start(loop, &q->async);
	ev_timer_init(&q->deadline, on_deadline, 1., 1.);
	q->deadline.data = q;
	ev_timer_start(loop, &q->deadline);
	/* Neither the async watcher nor the deadline timer is work that
	 * keeps the loop alive: `once` ends its loop when nothing else is
	 * pending (a job in the thread has its own pending watcher: the
	 * submitter's). */
	ev_unref(loop);
	ev_unref(loop);
	for (size_t i = 0; i < DBQ_CONNECTIONS; i++) {
		struct worker *wk = &q->workers[i];
		if (pthread_create(&wk->thread, NULL, i == 0 ? job_thread : writer_thread, wk) !=
		    0) {
			dbq_free(q);
			return -1;
		}
		wk->started = true;
	}
	*out = q;
	return 0;
}

enum lane { LANE_JOBS, LANE_WRITES, LANE_MAINTENANCE };

static int submit(struct dbq *q, enum lane lane, struct item *proto)
{
	struct item *it = calloc(1, sizeof(*it));
	if (!it)
		return -1;
	*it = *proto;
	pthread_mutex_lock(&q->lock);
	switch (lane) {
	case LANE_WRITES:
		it->queued_ms = mono_ms();
		STAILQ_INSERT_TAIL(&q->writes, it, link);
		q->nwrites++;
		q->wweight += it->weight;
		pthread_cond_signal(&q->writes_cv);
		break;
	case LANE_MAINTENANCE:
		STAILQ_INSERT_TAIL(&q->maint_jobs, it, link);
		pthread_cond_signal(&q->maint_cv);
		break;
	case LANE_JOBS:
		STAILQ_INSERT_TAIL(&q->todo, it, link);
		break;
	}
	pthread_mutex_unlock(&q->lock);
	q->pending++;
	uint64_t one = 1;
	ssize_t n = write(q->wake_fd, &one, sizeof(one));
	(void)n; /* a full eventfd counter still wakes the thread */
	return 0;
}

int dbq_submit(struct dbq *q, dbq_run_fn run, dbq_done_fn done, void *arg)
{
	return submit(q, LANE_JOBS, &(struct item){.run = run, .done = done, .arg = arg});
}

int dbq_submit_write(struct dbq *q, struct db_write *w, int64_t key, size_t weight,
                     dbq_done_fn done, void *arg)
{
	return submit(
	    q, LANE_WRITES,
	    &(struct item){.write = w, .key = key, .weight = weight, .done = done, .arg = arg});
}

int dbq_start_maintenance(struct dbq *q)
{
	if (q->maint.started)
		return 0;
	if (pthread_create(&q->maint.thread, NULL, maintenance_thread, &q->maint) != 0)
		return -1;
	q->maint.started = true;
	return 0;
}

int dbq_submit_maintenance(struct dbq *q, dbq_run_fn run, dbq_done_fn done, void *arg)
{
	if (!q->maint.started)
		return -1;
	return submit(q, LANE_MAINTENANCE, &(struct item){.run = run, .done = done, .arg = arg});
}

size_t dbq_write_batches(const struct dbq *q)
{
	return atomic_load(&q->batches);
}

size_t dbq_pending(const struct dbq *q)
{
	return q->pending;
}

bool dbq_connected(const struct dbq *q)
{
	return atomic_load(&q->connected);
}

void dbq_free(struct dbq *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_broadcast(&q->writes_cv);
	pthread_cond_broadcast(&q->maint_cv);
	pthread_mutex_unlock(&q->lock);
	uint64_t one = 1;
	ssize_t w = write(q->wake_fd, &one, sizeof(one));
	(void)w;
	/* A query in progress is cut off: its thread must not keep us. */
	for (size_t i = 0; i <= DBQ_CONNECTIONS; i++) {
		struct worker *wk = i < DBQ_CONNECTIONS ? &q->workers[i] : &q->maint;
		int sock = atomic_load(&wk->sock);
		if (atomic_load(&wk->job_started_ms) && sock >= 0)
			shutdown(sock, SHUT_RDWR);
	}
	for (size_t i = 0; i <= DBQ_CONNECTIONS; i++) {
		struct worker *wk = i < DBQ_CONNECTIONS ? &q->workers[i] : &q->maint;
		if (wk->started)
			pthread_join(wk->thread, NULL);
	}
	ev_ref(q->loop);
	ev_ref(q->loop);
	ev_async_stop(q->loop, &q->async);
	ev_timer_stop(q->loop, &q->deadline);
	struct item *it;
	struct items *queues[] = {&q->todo, &q->writes, &q->done, &q->maint_jobs};
	for (size_t i = 0; i < sizeof(queues) / sizeof(*queues); i++)
		while ((it = pop(queues[i])))
			free(it);
	pthread_cond_destroy(&q->writes_cv);
	pthread_cond_destroy(&q->maint_cv);
	pthread_mutex_destroy(&q->lock);
	close(q->wake_fd);
	free(q->conninfo);
	free(q);
}
