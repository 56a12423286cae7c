/* poller: one poll of one connector (SPEC §5): plans its windows, fetches
 * them through http oldest first (the next one while the previous one is
 * written), judges each answer with the validator and writes each
 * request's result through dbq atomically, in request order, under the
 * connector's lease. A failed request ends the poll: later windows wait
 * for the next one, so synced_until never skips a gap. Every poll's end is
 * counted in the starter's stats (stats.h). (Named poller, not poll:
 * <poll.h> is a system header.) */
#ifndef KSI_POLLER_H
#define KSI_POLLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connector.h"
#include "db.h"

struct http;
struct dbq;

struct poll_result {
	bool ok;                    /* every request succeeded and was committed */
	bool db_failed;             /* a write failed: nothing of it was committed */
	enum db_error_kind db_kind; /* why, when db_failed */
	bool lease_lost;            /* a write was refused: another daemon holds it */
	enum run_outcome outcome;   /* of the last request made */
	long http_status;           /* of the failed request's answer, 0 when none */
	long retry_after;           /* from the failing answer, -1 when absent */
	size_t requests, records, upserted, rejected;
	size_t bytes;     /* decoded bytes of every answer */
	double seconds;   /* from poll_start to the end */
	bool end_written; /* poll_spec.end's record committed with the last write */
	char error[1024]; /* when !ok */
};

struct poll_job;
struct stats;
typedef void (*poll_done_fn)(const struct poll_result *r, void *user);

/* The end of a poll as its starter records it (the daemon: the next poll,
 * consecutive failures, the lease released). Asked for when the poll's
 * last write is submitted, for the poll as it ends if that write commits:
 * ok, or the failed request's outcome and Retry-After. Filling *fin and
 * returning true makes that write carry it in the same transaction, one
 * trip instead of two; poll_result.end_written says whether it committed
 * (if not, nothing of that write did, and the starter records the end on
 * its own). */
typedef bool (*poll_end_fn)(bool ok, enum run_outcome outcome, long retry_after,
                            struct db_finish *fin, void *user);

/* Progress of a poll, after each committed request. */
struct poll_progress {
	size_t windows_done, windows_total; /* windows fully committed */
	int64_t hours_done, hours_total;
	size_t records, upserted, rejected;
};
typedef void (*poll_progress_fn)(const struct poll_progress *p, void *user);

/* What to poll and how. */
struct poll_spec {
	struct http *http;
	struct dbq *dbq;
	const struct connector *c; /* must outlive the job */
	const char
	    *lease_owner; /* writes are fenced by (lease_owner, c->lease_epoch); NULL: none */
	int64_t now;
	/* The window (SPEC §5) unless has_span: then exactly the hours
	 * [span_from, span_to) (backfill), and synced_until is left alone. */
	bool has_span;
	int64_t span_from, span_to;
	struct stats *stats;       /* every poll's end is counted here; NULL: not counted */
	poll_progress_fn progress; /* optional */
	poll_end_fn end;           /* optional; not asked for an explicit span */
	poll_done_fn done;
	void *user;
};

/* Starts a poll. `done` is called exactly once, from the loop, and the job
 * frees itself right after; *out (set first) identifies the job until then.
 * One exception: when even queueing a write runs out of memory, done runs
 * from inside poll_start. -1 on out of memory (no callback). */
int poll_start(const struct poll_spec *spec, struct poll_job **out)
    __attribute__((warn_unused_result));

/* Frees a job whose done has not run, without calling it: only once no
 * callback can reach it any more (http and dbq freed). */
void poll_free(struct poll_job *j);

#endif
