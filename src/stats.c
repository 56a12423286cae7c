/* stats: counters and fixed-bucket histograms of finished polls and
 * requests, and the gauges /metrics serves (see stats.h). Nothing here
 * allocates or locks. */
#include "stats.h"

#include <string.h>

const double stats_duration_bounds[STATS_DURATION_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1,
                                                              2.5,  5,   10,   30,  120};
const double stats_request_bounds[STATS_REQUEST_BUCKETS] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                            1,    2.5,   5,    10,  30,   60};

/* The states' names as connector_health writes them, spaces made '_' (a
 * label value an operator types in PromQL). */
const char *const stats_connector_state_names[STATS_CONN_STATES] = {
    [STATS_CONN_OK] = "ok",
    [STATS_CONN_FAILING] = "failing",
    [STATS_CONN_NEVER_POLLED] = "never_polled",
    [STATS_CONN_NO_STORES] = "no_stores",
    [STATS_CONN_DISABLED] = "disabled",
};

/* 1 h: a poll or two missed at the default interval; 6 h: twice the
 * default lookback, so hours have gone unchecked; 24 h: a day of data
 * missing from the dashboards. */
const char *const stats_stale_names[STATS_STALE_THRESHOLDS] = {"1h", "6h", "24h", "lookback"};
const int64_t stats_stale_seconds[STATS_STALE_LOOKBACK] = {3600, 6 * 3600, 24 * 3600};

void stats_init(struct stats *s)
{
	memset(s, 0, sizeof(*s));
}

/* A clock that stepped back must not make a negative duration. */
static void observe(uint64_t *le, const double *bounds, size_t n, uint64_t *count, double *sum,
                    double secs)
{
	if (!(secs > 0))
		secs = 0;
	for (size_t i = 0; i < n; i++)
		if (secs <= bounds[i])
			le[i]++;
	(*count)++;
	*sum += secs;
}

static unsigned outcome_index(enum run_outcome o)
{
	return (unsigned)o < STATS_OUTCOMES ? (unsigned)o : RUN_CONFIG_ERROR;
}

void stats_poll_done(struct stats *s, const struct stats_poll *p, int lease_lost)
{
	if (!s)
		return;
	/* A poll whose lease was lost has no outcome of its own (its last
	 * request may well have been ok): it is counted apart. */
	if (lease_lost)
		s->polls_lease_lost++;
	else
		s->polls[outcome_index(p->outcome)]++;
	s->records_upserted += p->upserted;
	s->records_refused += p->refused;
	s->bytes += p->bytes;
	observe(s->duration_le, stats_duration_bounds, STATS_DURATION_BUCKETS, &s->duration_count,
	        &s->duration_sum, p->seconds);
}

void stats_request_done(struct stats *s, const struct stats_request *r)
{
	if (!s)
		return;
	if (r->lease_lost) {
		s->requests_lease_lost++;
	} else {
		s->requests[outcome_index(r->outcome)]++;
		if (r->outcome == RUN_DB_ERROR)
			s->db_errors++;
	}
	if (r->sent)
		observe(s->request_seconds.le, stats_request_bounds, STATS_REQUEST_BUCKETS,
		        &s->request_seconds.count, &s->request_seconds.sum, r->seconds);
}

void stats_db_error(struct stats *s)
{
	if (s)
		s->db_errors++;
}

uint64_t stats_polls_total(const struct stats *s)
{
	uint64_t n = s->polls_lease_lost;
	for (size_t i = 0; i < STATS_OUTCOMES; i++)
		n += s->polls[i];
	return n;
}

uint64_t stats_requests_total(const struct stats *s)
{
	uint64_t n = s->requests_lease_lost;
	for (size_t i = 0; i < STATS_OUTCOMES; i++)
		n += s->requests[i];
	return n;
}
