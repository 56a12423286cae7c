/* requests: the request tables `ksi-salesd run` executes (README "Test
 * connection and backfill as rows"): connection_tests, run with the same
 * probe as `ksi-salesd test-connection`, a few at a time; and
 * backfill_requests, one at a time per daemon, under the connector's lease,
 * through the poller with an explicit span. Everything runs on the
 * daemon's loop, its http and its database thread.
 *
 * Rows are leased (migration 0004) and renewed while they run. A row whose
 * daemon crashed is claimed again by any daemon once its lease expires; a
 * backfill claimed again resumes at done_until, the end of the windows it
 * had committed. On SIGTERM nothing more is claimed; what still runs at the
 * end of shutdown_grace is abandoned, and db_release_all puts its rows back
 * to pending (a backfill keeps its progress and resumes). */
#ifndef KSI_REQUESTS_H
#define KSI_REQUESTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct cfg;
struct http;
struct dbq;
struct requests;
struct stats;

struct requests_env {
	struct ev_loop *loop;
	struct http *http;
	struct dbq *dbq;
	const struct cfg *cfg; /* lease; must outlive the requests */
	const char *owner;     /* the daemon's lease owner, "host:pid:nonce" */
	struct stats *stats;   /* where backfill polls' ends are counted; NULL: nowhere */
	/* Called once nothing runs any more after requests_stop. */
	void (*idle)(void *user);
	void *user;
};

int requests_new(const struct requests_env *env, struct requests **out)
    __attribute__((warn_unused_result));

/* A claim cycle: looks for pending rows (and rows whose lease expired).
 * Claims already in the database thread are coalesced. Accepts NULL. */
void requests_claim(struct requests *rq);

/* SIGTERM: claims nothing more; what runs goes on. Accepts NULL. */
void requests_stop(struct requests *rq);

/* Something runs or is being claimed. Accepts NULL (false). */
bool requests_busy(const struct requests *rq);

/* The end of the grace: writes the running backfill's latest progress, so
 * that it resumes there once db_release_all has put it back to pending.
 * Accepts NULL. */
void requests_abandon(struct requests *rq);

/* The connector whose lease the running backfill holds (to keep when stale
 * leases are released, and to renew). False when no backfill runs. */
bool requests_leased_connector(const struct requests *rq, int64_t *connector_id);

/* Frees everything, running work included: only once no callback can
 * reach it (the http and the database thread freed). Accepts NULL. */
void requests_free(struct requests *rq);

#endif
