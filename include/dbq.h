/* dbq: the database, off the event loop. libpq's calls block, and the
 * loop must keep fetching, feeding the watchdog and hearing SIGTERM while
 * PostgreSQL is slow or gone. So a job thread owns a connection and runs
 * jobs (claims, leases, the request tables) in the order they were queued;
 * each job's completion comes back to the loop through an ev_async. The
 * same thread LISTENs for configuration changes while idle, reconnects
 * with backoff, and re-issues LISTEN after every reconnect.
 *
 * Writes (db_write_batch: requests' results and ends of polls) have a
 * queue of their own: the writes queued together run as one batch, taken
 * by the job thread between jobs or by a writer thread with a second
 * connection, so PostgreSQL works on them with two cores. The queue is
 * blind to what a write holds: the submitter gives its batching key (no
 * two writes of one key in a batch) and its weight (records).
 *
 * Maintenance (the janitor's jobs) has a lane of its own, started on
 * demand: one more thread and connection, so a long maintenance statement
 * neither waits behind nor holds up claims and leases, and has its own,
 * longer deadline.
 *
 * Why threads and not libpq's asynchronous API on the loop: the blocking
 * db module is reused as it is (one tested write path for `once`, `run`
 * and the tools), and the only shared state is a few short queues. A job
 * stuck longer than DBQ_JOB_DEADLINE (a backend that stopped answering)
 * has its socket shut down from the loop, which fails the job and makes
 * the thread reconnect. */
#ifndef KSI_DBQ_H
#define KSI_DBQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct db;
struct db_write;
struct dbq;

/* Reconnection backoff: the first retry after this many seconds, doubling
 * up to the maximum. `run` waits for the database at start the same way. */
#define DBQ_RETRY_MIN_S 0.5
#define DBQ_RETRY_MAX_S 30.0
#define DBQ_JOB_DEADLINE 30.0 /* seconds a single job may take */
/* Seconds a maintenance job may take before its socket is cut: long
 * enough for a partition's detach and drop, short enough that a backend
 * that stopped answering is noticed within the hour. A maintenance job
 * bounds its own statements with lock_timeout / statement_timeout. */
#define DBQ_MAINTENANCE_DEADLINE 3600.0
/* Writes queued back to back run as one batch (db_write_batch) of at most
 * this many writes and, beyond the first, this many records. */
#define DBQ_WRITE_BATCH 256
/* Connections: the main thread's (every job, LISTEN, and writes) and
 * writers' (writes only), so PostgreSQL works on writes with more than one
 * core. At most one write per connector is in flight at a time, except a
 * backfill's, whose windows do not overlap. */
#define DBQ_CONNECTIONS 2
#define DBQ_WRITE_BATCH_RECORDS 100000
/* Writes wait to be batched until this many are queued (or
 * DBQ_GATHER_RECORDS of weight), or the oldest has waited DBQ_GATHER_MS
 * milliseconds: polls that end one by one still share a transaction, for a
 * few milliseconds of latency. A write of a thousand records (a backfill's)
 * pays for its own transaction and does not wait. */
#define DBQ_GATHER_WRITES 64
#define DBQ_GATHER_RECORDS 1000
#define DBQ_GATHER_MS 5

/* Runs in the database thread. Returns 0 or -1 with err set. */
typedef int (*dbq_run_fn)(struct db *db, void *arg, char *err, size_t errlen);
/* Runs on the loop with the job's result. err is "" on success. */
typedef void (*dbq_done_fn)(int rc, const char *err, void *arg);

enum dbq_event {
	DBQ_CONNECTED,    /* (re)connected; LISTEN is in place */
	DBQ_DISCONNECTED, /* the connection failed; detail says why */
	DBQ_NOTIFIED,     /* a configuration change was notified */
};
typedef void (*dbq_event_fn)(enum dbq_event ev, const char *detail, void *user);

/* Starts the thread, which connects at once. Events arrive on the loop. */
int dbq_new(struct ev_loop *loop, const char *conninfo, dbq_event_fn on_event, void *user,
            struct dbq **out) __attribute__((warn_unused_result));

/* Queues a job. While the database is unreachable, jobs fail at once with
 * the reason (after one connection attempt). -1 on out of memory. */
int dbq_submit(struct dbq *q, dbq_run_fn run, dbq_done_fn done, void *arg)
    __attribute__((warn_unused_result));

/* Queues a write (see db_write_batch). w must live until done runs; done
 * gets w's rc and err. Writes queued one after another commit together,
 * except two of the same key (the connector's id), and up to about
 * DBQ_WRITE_BATCH_RECORDS of weight (the write's records). */
int dbq_submit_write(struct dbq *q, struct db_write *w, int64_t key, size_t weight,
                     dbq_done_fn done, void *arg) __attribute__((warn_unused_result));

/* Starts the maintenance lane (a thread that connects when work comes).
 * Idempotent. -1 when the thread could not start. */
int dbq_start_maintenance(struct dbq *q) __attribute__((warn_unused_result));

/* Queues a maintenance job on that lane: jobs there run one at a time, in
 * order, beside the job thread's. -1 on out of memory or when the lane was
 * not started (no callback then). */
int dbq_submit_maintenance(struct dbq *q, dbq_run_fn run, dbq_done_fn done, void *arg)
    __attribute__((warn_unused_result));

/* Write batches (transactions of queued writes) run so far. */
size_t dbq_write_batches(const struct dbq *q);

/* Jobs submitted whose done has not run yet. */
size_t dbq_pending(const struct dbq *q);
bool dbq_connected(const struct dbq *q);

/* Stops the thread (a job in progress is cut off by closing its socket),
 * joins it, drops jobs not yet done without calling them. Accepts NULL. */
void dbq_free(struct dbq *q);

#endif
