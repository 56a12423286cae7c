/* stats: what every poll ended with, counted in one place (the poller's
 * end of a job, whoever started it: the daemon, backfill, once, a backfill
 * request). Plain counters and fixed histogram buckets, owned by the loop
 * thread that runs the polls: no locks, no allocation on the hot path.
 * What /metrics serves and what once prints as its summary. */
#ifndef KSI_STATS_H
#define KSI_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "db.h" /* enum run_outcome */

#define STATS_OUTCOMES (RUN_CONFIG_ERROR + 1)
/* Upper bounds, in seconds, of the poll-duration histogram's buckets; a
 * last, implicit bucket is +Inf. Chosen around what a poll costs: one
 * request of a healthy API (0.1 - 1 s) up to a backfill of many windows. */
#define STATS_DURATION_BUCKETS 10
extern const double stats_duration_bounds[STATS_DURATION_BUCKETS];

/* How one poll ended. */
struct stats_poll {
	enum run_outcome outcome; /* RUN_OK when every request succeeded */
	double seconds;           /* from the poll's start to its end */
	uint64_t upserted, refused, bytes;
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
};

/* A zeroed struct stats is ready to use; this says so. */
void stats_init(struct stats *s);

/* Counts one finished poll. s may be NULL (nothing counted). */
void stats_poll_done(struct stats *s, const struct stats_poll *p, int lease_lost);

/* Polls counted, whatever their outcome. */
uint64_t stats_polls_total(const struct stats *s);

#endif
