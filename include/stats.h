/* stats: what every poll and every request ended with, counted in one
 * place (the poller, whoever started the poll: the daemon, backfill, once,
 * a backfill request), and the gauges `run` keeps for /metrics: database
 * errors and the last snapshot of the connectors' states read from the
 * database. Plain counters and fixed histogram buckets, owned by the loop
 * thread that runs the polls: no locks, no allocation on the hot path.
 * What /metrics serves and what once prints as its summary. */
#ifndef KSI_STATS_H
#define KSI_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h" /* enum run_outcome */

#define STATS_OUTCOMES (RUN_CONFIG_ERROR + 1)
/* Upper bounds, in seconds, of the poll-duration histogram's buckets; a
 * last, implicit bucket is +Inf. Chosen around what a poll costs: one
 * request of a healthy API (0.1 - 1 s) up to a backfill of many windows. */
#define STATS_DURATION_BUCKETS 10
extern const double stats_duration_bounds[STATS_DURATION_BUCKETS];
/* The same for one request: from a fast API on the same network (10 ms)
 * up to the default request_timeout (30 s) and twice that. */
#define STATS_REQUEST_BUCKETS 12
extern const double stats_request_bounds[STATS_REQUEST_BUCKETS];

/* A Prometheus-style cumulative histogram over stats_request_bounds: le[i]
 * counts the observations <= bounds[i]; count all of them (the +Inf
 * bucket). */
struct stats_histogram {
	uint64_t le[STATS_REQUEST_BUCKETS];
	uint64_t count;
	double sum;
};

/* How one poll ended. */
struct stats_poll {
	enum run_outcome outcome; /* RUN_OK when every request succeeded */
	double seconds;           /* from the poll's start to its end */
	uint64_t upserted, refused, bytes;
};

/* How one request ended: once its write is done, whatever it held (a
 * result, or a failure's fetch_runs row). */
struct stats_request {
	/* As written to fetch_runs.outcome when the write committed;
	 * RUN_DB_ERROR when it failed (nothing of it was written). */
	enum run_outcome outcome;
	bool lease_lost; /* the write was refused: another daemon holds the lease */
	bool sent;       /* it reached the network (a config_error did not) */
	double seconds;  /* its HTTP exchange, when sent */
};

/* The connectors' states as the database last said (SPEC §4,
 * connector_health's states), read every claim interval by `run`. */
enum stats_connector_state {
	STATS_CONN_OK,
	STATS_CONN_FAILING,
	STATS_CONN_NEVER_POLLED,
	STATS_CONN_NO_STORES,
	STATS_CONN_DISABLED,
	STATS_CONN_STATES,
};
extern const char *const stats_connector_state_names[STATS_CONN_STATES];

/* Freshness thresholds: a connector is stale at a threshold when it is
 * enabled, has stores, and its synced_until is older than now - threshold
 * (or it has none: nothing of it was ever committed). The last threshold
 * is each connector's own lookback. */
#define STATS_STALE_THRESHOLDS 4
#define STATS_STALE_LOOKBACK (STATS_STALE_THRESHOLDS - 1)
extern const char *const stats_stale_names[STATS_STALE_THRESHOLDS];
extern const int64_t stats_stale_seconds[STATS_STALE_LOOKBACK]; /* the fixed ones */

struct stats_connectors {
	bool valid;      /* false until the first snapshot */
	double taken_at; /* epoch seconds of the last successful snapshot */
	int64_t by_state[STATS_CONN_STATES];
	bool has_oldest;            /* some enabled connector with stores has a synced_until */
	double oldest_synced_until; /* epoch seconds, the least of those */
	int64_t stale[STATS_STALE_THRESHOLDS];
};

struct stats {
	uint64_t polls[STATS_OUTCOMES]; /* by outcome, polls with a lost lease aside */
	uint64_t polls_lease_lost;      /* ended by a lost lease: results discarded */
	uint64_t records_upserted, records_refused;
	uint64_t bytes;
	/* Cumulative, as Prometheus histograms are: duration_le[i] counts the
	 * polls that took <= stats_duration_bounds[i]; duration_count all. */
	uint64_t duration_le[STATS_DURATION_BUCKETS];
	uint64_t duration_count;
	double duration_sum;
	/* Requests, by outcome; lease-lost writes aside, as polls. */
	uint64_t requests[STATS_OUTCOMES];
	uint64_t requests_lease_lost;
	struct stats_histogram request_seconds; /* over stats_request_bounds */
	/* Database operations that failed: writes (not lease losses), claims,
	 * renewals, snapshots, and lost connections. */
	uint64_t db_errors;
	struct stats_connectors connectors; /* `run` only */
};

/* A zeroed struct stats is ready to use; this says so. */
void stats_init(struct stats *s);

/* Counts one finished poll. s may be NULL (nothing counted). */
void stats_poll_done(struct stats *s, const struct stats_poll *p, int lease_lost);

/* Counts one request whose write is done (a write that failed other than
 * by a lost lease is also a database error). s may be NULL. */
void stats_request_done(struct stats *s, const struct stats_request *r);

/* Counts one failed database operation. s may be NULL. */
void stats_db_error(struct stats *s);

/* Polls counted, whatever their outcome. */
uint64_t stats_polls_total(const struct stats *s);

/* Requests counted, whatever their outcome. */
uint64_t stats_requests_total(const struct stats *s);

#endif
