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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "db.h"
#include "log.h"
#include "validate.h"

struct item {
	struct item *next;
	dbq_run_fn run;         /* a job, or: */
	struct db_write *write; /* a write (batched), or neither: an event */
	dbq_done_fn done;
	void *arg;
	int rc;
	enum dbq_event event;
	char err[1024];
};

/* One connection and the thread that owns it. */
struct worker {
	struct dbq *q;
	pthread_t thread;
	bool started;
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
	pthread_cond_t writes_cv;               /* wakes the writer threads */
	struct item *todo_head, *todo_tail;     /* jobs: loop -> main thread */
	struct item *writes_head, *writes_tail; /* writes: loop -> any thread */
	struct item *done_head, *done_tail;     /* threads -> loop */
	bool stop;

	/* workers[0] is the main thread: jobs, LISTEN, events, and writes;
	 * the others only write, when they can connect. */
	struct worker workers[DBQ_CONNECTIONS];
	atomic_bool connected; /* the main thread's connection */
	size_t pending;        /* loop only */
};

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void push(struct item **head, struct item **tail, struct item *it)
{
	it->next = NULL;
	if (*tail)
		(*tail)->next = it;
	else
		*head = it;
	*tail = it;
}

static struct item *pop(struct item **head, struct item **tail)
{
	struct item *it = *head;
	if (it) {
		*head = it->next;
		if (!*head)
			*tail = NULL;
	}
	return it;
}

/* Thread side: hands an item back to the loop. */
static void post(struct dbq *q, struct item *it)
{
	pthread_mutex_lock(&q->lock);
	push(&q->done_head, &q->done_tail, it);
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

static size_t write_records(const struct db_write *w)
{
	return w->run && w->run->result ? w->run->result->nrecords : 0;
}

static int64_t write_connector(const struct db_write *w)
{
	return w->run ? w->run->connector_id : w->finish ? w->finish->connector_id : -1;
}

/* With the lock held: takes the writes at the head of the queue, up to
 * DBQ_WRITE_BATCH of them and about DBQ_WRITE_BATCH_RECORDS records, and
 * stops before a second write of a connector already taken (db_write_batch
 * wants distinct connectors; another thread may take that one). */
static size_t take_writes(struct dbq *q, struct item **items)
{
	size_t n = 0, records = 0;
	while (n < DBQ_WRITE_BATCH && q->writes_head) {
		const struct db_write *w = q->writes_head->write;
		if (n > 0 && records + write_records(w) > DBQ_WRITE_BATCH_RECORDS)
			break;
		bool again = false;
		for (size_t i = 0; i < n && !again; i++)
			again = write_connector(items[i]->write) == write_connector(w);
		if (again)
			break;
		records += write_records(w);
		items[n++] = pop(&q->writes_head, &q->writes_tail);
	}
	return n;
}

/* Thread side: runs n writes as one batch (db NULL: fails them with the
 * reason) and hands each back. */
static void run_writes(struct dbq *q, struct worker *wk, struct db *db, struct item **items, size_t n,
		       const char *dberr)
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
			snprintf(w[i]->err, sizeof(w[i]->err), "database unavailable: %.900s", dberr);
			snprintf(items[i]->err, sizeof(items[i]->err), "%s", w[i]->err);
		}
		post(q, items[i]);
	}
}

static void *main_thread(void *arg)
{
	struct worker *wk = arg;
	struct dbq *q = wk->q;
	struct db *db = NULL;
	char err[1024] = "";
	double backoff = 0.5;
	long long next_attempt = 0;
	bool was_connected = false;
	struct item *items[DBQ_WRITE_BATCH];

	for (;;) {
		pthread_mutex_lock(&q->lock);
		bool stop = q->stop;
		bool work = q->todo_head || q->writes_head;
		pthread_mutex_unlock(&q->lock);
		if (stop)
			break;

		if (!db && (work || mono_ms() >= next_attempt)) {
			if (db_connect(q->conninfo, &db, err, sizeof(err)) == 0 &&
			    db_listen(db, err, sizeof(err)) == 0) {
				atomic_store(&wk->sock, db_socket(db));
				atomic_store(&q->connected, true);
				backoff = 0.5;
				was_connected = true;
				post_event(q, DBQ_CONNECTED, NULL);
			} else {
				db_close(db);
				db = NULL;
				if (atomic_exchange(&q->connected, false) || !was_connected) {
					was_connected = true; /* report the first failure once */
					post_event(q, DBQ_DISCONNECTED, err);
				}
				next_attempt = mono_ms() + (long long)(backoff * 1000);
				backoff = backoff * 2 > 30 ? 30 : backoff * 2;
			}
		}

		/* Jobs first (claims, leases), then writes. */
		pthread_mutex_lock(&q->lock);
		struct item *job = pop(&q->todo_head, &q->todo_tail);
		size_t n = job ? 0 : take_writes(q, items);
		pthread_mutex_unlock(&q->lock);

		if (job) {
			if (db) {
				atomic_store(&wk->job_started_ms, mono_ms());
				job->rc = job->run(db, job->arg, job->err, sizeof(job->err));
				atomic_store(&wk->job_started_ms, 0);
			} else {
				job->rc = -1;
				snprintf(job->err, sizeof(job->err), "database unavailable: %s", err);
			}
			post(q, job);
		} else if (n > 0) {
			run_writes(q, wk, db, items, n, err);
		} else if (db) {
			int k = db_take_notifications(db);
			if (k > 0)
				post_event(q, DBQ_NOTIFIED, NULL);
		}

		if (db && !db_ok(db)) {
			snprintf(err, sizeof(err), "connection lost");
			db_close(db);
			db = NULL;
			atomic_store(&wk->sock, -1);
			atomic_store(&q->connected, false);
			post_event(q, DBQ_DISCONNECTED, err);
			next_attempt = mono_ms() + 500;
			continue;
		}
		if (!job && n == 0) {
			long long wait = db ? 60000 : next_attempt - mono_ms();
			wait_for(q, db ? db_socket(db) : -1, wait < 0 ? 0 : wait > 60000 ? 60000 : (int)wait);
		}
	}
	atomic_store(&wk->sock, -1);
	db_close(db);
	return NULL;
}

/* A writer: one more connection that takes writes off the queue while the
 * main thread does too, so a second core of PostgreSQL works on them. It
 * is only an accelerator: while it cannot connect it leaves every write to
 * the main thread, which reports the database's failures. */
static void *writer_thread(void *arg)
{
	struct worker *wk = arg;
	struct dbq *q = wk->q;
	struct db *db = NULL;
	char err[1024];
	double backoff = 0.5;
	long long next_attempt = 0;
	struct item *items[DBQ_WRITE_BATCH];

	pthread_mutex_lock(&q->lock);
	for (;;) {
		if (q->stop)
			break;
		long long now = mono_ms();
		if (!q->writes_head || (!db && now < next_attempt)) {
			struct timespec until;
			clock_gettime(CLOCK_MONOTONIC, &until);
			long long ms = q->writes_head ? next_attempt - now : 60000;
			until.tv_sec += ms / 1000;
			until.tv_nsec += (ms % 1000) * 1000000;
			if (until.tv_nsec >= 1000000000) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&q->writes_cv, &q->lock, &until);
			continue;
		}
		if (!db) {
			pthread_mutex_unlock(&q->lock);
			if (db_connect(q->conninfo, &db, err, sizeof(err)) == 0) {
				atomic_store(&wk->sock, db_socket(db));
				backoff = 0.5;
			} else {
				db_close(db);
				db = NULL;
				next_attempt = mono_ms() + (long long)(backoff * 1000);
				backoff = backoff * 2 > 30 ? 30 : backoff * 2;
			}
			pthread_mutex_lock(&q->lock);
			continue;
		}
		/* A connection the server closed while it was idle (a restart)
		 * is replaced before it can fail a write. */
		pthread_mutex_unlock(&q->lock);
		bool alive = db_alive(db);
		pthread_mutex_lock(&q->lock);
		if (!alive) {
			db_close(db);
			db = NULL;
			atomic_store(&wk->sock, -1);
			next_attempt = 0;
			continue;
		}
		size_t n = take_writes(q, items);
		pthread_mutex_unlock(&q->lock);
		if (n > 0)
			run_writes(q, wk, db, items, n, NULL);
		if (!db_ok(db)) {
			db_close(db);
			db = NULL;
			atomic_store(&wk->sock, -1);
			next_attempt = mono_ms() + 500;
		}
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	atomic_store(&wk->sock, -1);
	db_close(db);
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
		struct item *it = pop(&q->done_head, &q->done_tail);
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
	for (size_t i = 0; i < DBQ_CONNECTIONS; i++) {
		struct worker *wk = &q->workers[i];
		long long started = atomic_load(&wk->job_started_ms);
		int sock = atomic_load(&wk->sock);
		if (started && sock >= 0 && mono_ms() - started > (long long)(DBQ_JOB_DEADLINE * 1000)) {
			log_warning("db", NULL, "a query has run for over %.0f s: closing the connection",
				    DBQ_JOB_DEADLINE);
			shutdown(sock, SHUT_RDWR);
		}
	}
}

int dbq_new(struct ev_loop *loop, const char *conninfo, dbq_event_fn on_event, void *user, struct dbq **out)
{
	*out = NULL;
	struct dbq *q = calloc(1, sizeof(*q));
	if (!q)
		return -1;
	q->loop = loop;
	q->on_event = on_event;
	q->user = user;
	q->conninfo = strdup(conninfo ? conninfo : "");
	q->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	atomic_init(&q->connected, false);
	for (size_t i = 0; i < DBQ_CONNECTIONS; i++) {
		q->workers[i].q = q;
		atomic_init(&q->workers[i].sock, -1);
		atomic_init(&q->workers[i].job_started_ms, 0);
	}
	pthread_condattr_t ca;
	bool cond_ok = pthread_condattr_init(&ca) == 0 && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
		       pthread_cond_init(&q->writes_cv, &ca) == 0;
	if (!q->conninfo || q->wake_fd < 0 || !cond_ok || pthread_mutex_init(&q->lock, NULL) != 0) {
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
	/* The loop must not count the deadline timer as work keeping it
	 * alive: `once` ends its loop when nothing else is pending. */
	ev_unref(loop);
	ev_unref(loop);
	for (size_t i = 0; i < DBQ_CONNECTIONS; i++) {
		struct worker *wk = &q->workers[i];
		if (pthread_create(&wk->thread, NULL, i == 0 ? main_thread : writer_thread, wk) != 0) {
			dbq_free(q);
			return -1;
		}
		wk->started = true;
	}
	*out = q;
	return 0;
}

static int submit(struct dbq *q, dbq_run_fn run, struct db_write *w, dbq_done_fn done, void *arg)
{
	struct item *it = calloc(1, sizeof(*it));
	if (!it)
		return -1;
	it->run = run;
	it->write = w;
	it->done = done;
	it->arg = arg;
	pthread_mutex_lock(&q->lock);
	if (w) {
		push(&q->writes_head, &q->writes_tail, it);
		pthread_cond_signal(&q->writes_cv);
	} else {
		push(&q->todo_head, &q->todo_tail, it);
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
	return submit(q, run, NULL, done, arg);
}

int dbq_submit_write(struct dbq *q, struct db_write *w, dbq_done_fn done, void *arg)
{
	return submit(q, NULL, w, done, arg);
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
	pthread_mutex_unlock(&q->lock);
	uint64_t one = 1;
	ssize_t w = write(q->wake_fd, &one, sizeof(one));
	(void)w;
	/* A query in progress is cut off: its thread must not keep us. */
	for (size_t i = 0; i < DBQ_CONNECTIONS; i++) {
		int sock = atomic_load(&q->workers[i].sock);
		if (atomic_load(&q->workers[i].job_started_ms) && sock >= 0)
			shutdown(sock, SHUT_RDWR);
	}
	for (size_t i = 0; i < DBQ_CONNECTIONS; i++)
		if (q->workers[i].started)
			pthread_join(q->workers[i].thread, NULL);
	ev_ref(q->loop);
	ev_ref(q->loop);
	ev_async_stop(q->loop, &q->async);
	ev_timer_stop(q->loop, &q->deadline);
	struct item *it;
	while ((it = pop(&q->todo_head, &q->todo_tail)))
		free(it);
	while ((it = pop(&q->writes_head, &q->writes_tail)))
		free(it);
	while ((it = pop(&q->done_head, &q->done_tail)))
		free(it);
	pthread_cond_destroy(&q->writes_cv);
	pthread_mutex_destroy(&q->lock);
	close(q->wake_fd);
	free(q->conninfo);
	free(q);
}
