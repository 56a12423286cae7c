/* poll: one poll of one connector (SPEC §5): plans its windows, fetches
 * them through http oldest first, judges each answer with the validator
 * and writes each request's result with db in one transaction. A failed
 * request ends the poll: later windows wait for the next one, so
 * synced_until never skips a gap. */
#ifndef KSI_POLL_H
#define KSI_POLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connector.h"
#include "db.h"

struct ev_loop;
struct http;
struct db;

struct poll_result {
	bool ok;                  /* every request succeeded and was committed */
	bool db_failed;           /* a write failed (database trouble) */
	enum run_outcome outcome; /* of the last request made */
	long retry_after;         /* from the failing answer, -1 when absent */
	size_t requests, records, upserted, rejected;
	char error[1024]; /* when !ok */
};

struct poll_job;
typedef void (*poll_done_fn)(struct poll_job *job, const struct poll_result *r, void *user);

/* Starts polling c (which must outlive the job) as of `now`. `done` is
 * called exactly once, from the loop or, for a connector that cannot be
 * polled at all (bad configuration), before poll_start returns; the job
 * is freed right after `done` returns. -1 on out of memory (no callback). */
int poll_start(struct http *http, struct db *db, const struct connector *c, int64_t now,
	       poll_done_fn done, void *user) __attribute__((warn_unused_result));

/* Totals of poll_all. */
struct poll_summary {
	size_t connectors, skipped_no_stores, ok, failed;
	size_t requests, records, upserted, rejected;
	bool db_failed;
};

/* Polls every connector of v at once (http limits the concurrency) and
 * runs the loop until all are done: `ksi-salesd once`. */
int poll_all(struct ev_loop *loop, struct http *http, struct db *db, const struct connector *v,
	     size_t n, struct poll_summary *sum) __attribute__((warn_unused_result));

#endif
