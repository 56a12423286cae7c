/* poller: one poll of one connector (SPEC §5): plans its windows, fetches
 * them through http oldest first, judges each answer with the validator
 * and writes each request's result through the database thread in one
 * transaction, under the connector's lease. A failed request ends the
 * poll: later windows wait for the next one, so synced_until never skips
 * a gap. (Named poller, not poll: <poll.h> is a system header.) */
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
	bool ok;                  /* every request succeeded and was committed */
	bool db_failed;           /* a write failed: nothing of it was committed */
	bool lease_lost;          /* a write was refused: another daemon holds it */
	enum run_outcome outcome; /* of the last request made */
	long retry_after;         /* from the failing answer, -1 when absent */
	size_t requests, records, upserted, rejected;
	char error[1024]; /* when !ok */
};

struct poll_job;
typedef void (*poll_done_fn)(const struct poll_result *r, void *user);

/* Starts polling c (which must outlive the job) as of `now`, writing under
 * the lease (lease_owner, c->lease_epoch); lease_owner NULL: no lease.
 * `done` is called exactly once, always from the loop; the job frees
 * itself right after. *out identifies the job until then. -1 on out of
 * memory (no callback). */
int poll_start(struct http *http, struct dbq *dbq, const struct connector *c, const char *lease_owner,
	       int64_t now, poll_done_fn done, void *user, struct poll_job **out)
	__attribute__((warn_unused_result));

/* Frees a job whose done has not run, without calling it: only once no
 * callback can reach it any more (http and dbq freed). */
void poll_free(struct poll_job *j);

#endif
