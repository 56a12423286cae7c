/* schedule: when a connector is polled next (SPEC §6). Pure: the caller
 * passes the clock and a random number. */
#ifndef KSI_SCHEDULE_H
#define KSI_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

#define SCHED_BACKOFF_MIN 30       /* seconds: first retry after a failure */
#define SCHED_BACKOFF_MAX 3600     /* seconds: backoff and Retry-After ceiling */
#define SCHED_AUTH_BACKOFF_MIN 600 /* 401/403 is configuration: retry slowly */

/* A connector's fixed place within its interval, from its id: polls of many
 * connectors spread over the interval instead of all starting at :00. */
int64_t sched_offset(int64_t connector_id, int64_t interval);

/* The jitter added to a slot: 5% of the interval, at most 30 s. */
int64_t sched_jitter_max(int64_t interval);

/* After a success of a poll that started at started: the first slot of
 * the connector's grid (k * interval + offset) at or after
 * started - slack + interval - sched_jitter_max, plus a jitter in
 * [0, sched_jitter_max]; so less than 2 * interval away, and never closer
 * than interval less the jitter to the time the poll was due (SPEC §4).
 * slack is how much later than its due time a poll may start (the
 * claim's latency): without it, a poll on time for its slot but claimed
 * late would skip the next slot. */
int64_t sched_after_success(int64_t started, int64_t connector_id, int64_t interval, int64_t slack,
                            uint32_t rnd);

/* After the failures-th consecutive failure (>= 1) at now: exponential
 * backoff from 30 s doubling to 1 h, with ±20% jitter; at least 10 min for
 * an authentication failure; exactly Retry-After (clamped to 1 s … 1 h)
 * when the server sent one (retry_after >= 0). */
int64_t sched_after_failure(int64_t now, unsigned failures, bool auth_failed, long retry_after,
                            uint32_t rnd);

#endif
