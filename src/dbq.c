/* dbq: one database thread fed through a queue, answering through an
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

struct item {
	struct item *next;
	dbq_run_fn run; /* NULL: an event, not a job */
	dbq_done_fn done;
	void *arg;
	int rc;
	enum dbq_event event;
	char err[1024];
};

struct dbq {
	struct ev_loop *loop;
	char *conninfo;
	dbq_event_fn on_event;
	void *user;
	pthread_t thread;
	bool started;
	int wake_fd; /* eventfd: a job was queued or stop was asked */
	ev_async async;
	ev_timer deadline;

	pthread_mutex_t lock;
	struct item *todo_head, *todo_tail; /* loop -> thread */
	struct item *done_head, *done_tail; /* thread -> loop */
	bool stop;

	/* Read by the loop without the lock. */
	atomic_int sock;              /* the connection's socket, -1 if none */
	atomic_llong job_started_ms;  /* when the running job started, 0 if idle */
	atomic_bool connected;
	size_t pending; /* loop only */
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

static void *thread_main(void *arg)
{
	struct dbq *q = arg;
	struct db *db = NULL;
	char err[1024] = "";
	double backoff = 0.5;
	long long next_attempt = 0;
	bool was_connected = false;

	for (;;) {
		pthread_mutex_lock(&q->lock);
		bool stop = q->stop;
		struct item *job = stop ? NULL : pop(&q->todo_head, &q->todo_tail);
		pthread_mutex_unlock(&q->lock);
		if (stop)
			break;

		if (!db && (job || mono_ms() >= next_attempt)) {
			if (db_connect(q->conninfo, &db, err, sizeof(err)) == 0 &&
			    db_listen(db, err, sizeof(err)) == 0) {
				atomic_store(&q->sock, db_socket(db));
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

		if (job) {
			if (db) {
				atomic_store(&q->job_started_ms, mono_ms());
				job->rc = job->run(db, job->arg, job->err, sizeof(job->err));
				atomic_store(&q->job_started_ms, 0);
			} else {
				job->rc = -1;
				snprintf(job->err, sizeof(job->err), "database unavailable: %s", err);
			}
			post(q, job);
		} else if (db) {
			int n = db_take_notifications(db);
			if (n > 0)
				post_event(q, DBQ_NOTIFIED, NULL);
		}

		if (db && !db_ok(db)) {
			snprintf(err, sizeof(err), "connection lost");
			db_close(db);
			db = NULL;
			atomic_store(&q->sock, -1);
			atomic_store(&q->connected, false);
			post_event(q, DBQ_DISCONNECTED, err);
			next_attempt = mono_ms() + 500;
			continue;
		}
		if (!job) {
			long long wait = db ? 60000 : next_attempt - mono_ms();
			wait_for(q, db ? db_socket(db) : -1, wait < 0 ? 0 : wait > 60000 ? 60000 : (int)wait);
		}
	}
	atomic_store(&q->sock, -1);
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
		if (it->run) {
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
	long long started = atomic_load(&q->job_started_ms);
	int sock = atomic_load(&q->sock);
	if (started && sock >= 0 && mono_ms() - started > (long long)(DBQ_JOB_DEADLINE * 1000)) {
		log_warning("db", NULL, "a query has run for over %.0f s: closing the connection", DBQ_JOB_DEADLINE);
		shutdown(sock, SHUT_RDWR);
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
	atomic_init(&q->sock, -1);
	atomic_init(&q->job_started_ms, 0);
	atomic_init(&q->connected, false);
	if (!q->conninfo || q->wake_fd < 0 || pthread_mutex_init(&q->lock, NULL) != 0) {
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
	if (pthread_create(&q->thread, NULL, thread_main, q) != 0) {
		dbq_free(q);
		return -1;
	}
	q->started = true;
	*out = q;
	return 0;
}

int dbq_submit(struct dbq *q, dbq_run_fn run, dbq_done_fn done, void *arg)
{
	struct item *it = calloc(1, sizeof(*it));
	if (!it)
		return -1;
	it->run = run;
	it->done = done;
	it->arg = arg;
	pthread_mutex_lock(&q->lock);
	push(&q->todo_head, &q->todo_tail, it);
	pthread_mutex_unlock(&q->lock);
	q->pending++;
	uint64_t one = 1;
	ssize_t w = write(q->wake_fd, &one, sizeof(one));
	(void)w; /* a full eventfd counter still wakes the thread */
	return 0;
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
	if (q->started) {
		pthread_mutex_lock(&q->lock);
		q->stop = true;
		pthread_mutex_unlock(&q->lock);
		uint64_t one = 1;
		ssize_t w = write(q->wake_fd, &one, sizeof(one));
		(void)w;
		int sock = atomic_load(&q->sock);
		if (atomic_load(&q->job_started_ms) && sock >= 0)
			shutdown(sock, SHUT_RDWR);
		pthread_join(q->thread, NULL);
	}
	ev_ref(q->loop);
	ev_ref(q->loop);
	ev_async_stop(q->loop, &q->async);
	ev_timer_stop(q->loop, &q->deadline);
	struct item *it;
	while ((it = pop(&q->todo_head, &q->todo_tail)))
		free(it);
	while ((it = pop(&q->done_head, &q->done_tail)))
		free(it);
	pthread_mutex_destroy(&q->lock);
	close(q->wake_fd);
	free(q->conninfo);
	free(q);
}
