/* stats: counters and a fixed-bucket histogram of finished polls (see
 * stats.h). Nothing here allocates or locks. */
#include "stats.h"

#include <string.h>

const double stats_duration_bounds[STATS_DURATION_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1,
                                                              2.5,  5,   10,   30,  120};

void stats_init(struct stats *s)
{
	memset(s, 0, sizeof(*s));
}

void stats_poll_done(struct stats *s, const struct stats_poll *p, int lease_lost)
{
	if (!s)
		return;
	/* A poll whose lease was lost has no outcome of its own (its last
	 * request may well have been ok): it is counted apart. */
	unsigned o =
	    (unsigned)p->outcome < STATS_OUTCOMES ? (unsigned)p->outcome : RUN_CONFIG_ERROR;
	if (lease_lost)
		s->polls_lease_lost++;
	else
		s->polls[o]++;
	s->records_upserted += p->upserted;
	s->records_refused += p->refused;
	s->bytes += p->bytes;
	/* A clock that stepped back must not make a negative duration. */
	double secs = p->seconds > 0 ? p->seconds : 0;
	for (size_t i = 0; i < STATS_DURATION_BUCKETS; i++)
		if (secs <= stats_duration_bounds[i])
			s->duration_le[i]++;
	s->duration_count++;
	s->duration_sum += secs;
}

uint64_t stats_polls_total(const struct stats *s)
{
	uint64_t n = s->polls_lease_lost;
	for (size_t i = 0; i < STATS_OUTCOMES; i++)
		n += s->polls[i];
	return n;
}
