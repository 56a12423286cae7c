/* schedule: next poll times — a fixed per-connector offset plus jitter for
 * successes, exponential backoff with jitter for failures (SPEC §6). */
#include "schedule.h"

int64_t sched_offset(int64_t connector_id, int64_t interval)
{
	if (interval <= 0)
		return 0;
	/* A multiplicative hash spreads consecutive ids far apart. */
	uint64_t h = (uint64_t)connector_id * 0x9E3779B97F4A7C15ull;
	return (int64_t)((h >> 17) % (uint64_t)interval);
}

static int64_t floor_mod(int64_t a, int64_t m)
{
	int64_t r = a % m;
	return r < 0 ? r + m : r;
}

int64_t sched_jitter_max(int64_t interval)
{
	if (interval <= 0)
		interval = 60;
	return interval / 20 < 30 ? interval / 20 : 30;
}

int64_t sched_after_success(int64_t started, int64_t connector_id, int64_t interval, int64_t slack,
                            uint32_t rnd)
{
	if (interval <= 0)
		interval = 60;
	int64_t jitter_max = sched_jitter_max(interval);
	if (slack < 0)
		slack = 0;
	if (slack > interval / 2)
		slack = interval / 2;
	int64_t offset = sched_offset(connector_id, interval);
	/* SPEC §4: poll_interval is the time between successful polls. The
	 * first grid point strictly after now (as before) put an unscheduled
	 * poll (a new or changed connector, a success after backoff) seconds
	 * before its next slot; the first at or after the poll's start plus
	 * the interval less the jitter keeps every gap at least that long.
	 * The start is taken slack earlier because a claim comes up to slack
	 * after the poll was due: a poll on time for its slot then keeps the
	 * next slot instead of skipping one. */
	int64_t from = started - slack + interval - jitter_max;
	int64_t next = from + floor_mod(offset - from, interval);
	if (jitter_max > 0)
		next += (int64_t)(rnd % (uint32_t)(jitter_max + 1));
	return next;
}

int64_t sched_after_failure(int64_t now, unsigned failures, bool auth_failed, long retry_after,
                            uint32_t rnd)
{
	if (retry_after >= 0) {
		long s = retry_after < 1                   ? 1
		         : retry_after > SCHED_BACKOFF_MAX ? SCHED_BACKOFF_MAX
		                                           : retry_after;
		return now + s;
	}
	int64_t delay = SCHED_BACKOFF_MIN;
	for (unsigned i = 1; i < failures && delay < SCHED_BACKOFF_MAX; i++)
		delay *= 2;
	if (auth_failed && delay < SCHED_AUTH_BACKOFF_MIN)
		delay = SCHED_AUTH_BACKOFF_MIN;
	if (delay > SCHED_BACKOFF_MAX)
		delay = SCHED_BACKOFF_MAX;
	/* ±20% so that connectors failing together do not retry together. */
	int64_t span = delay * 2 / 5;
	delay = delay - delay / 5 + (int64_t)(rnd % (uint32_t)(span + 1));
	if (delay > SCHED_BACKOFF_MAX)
		delay = SCHED_BACKOFF_MAX;
	return now + delay;
}
