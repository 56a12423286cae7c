/* window: the sliding time window of a poll (SPEC §5) and the split of store
 * codes over requests when a URL would grow too long (SPEC §2). Pure: a clock
 * value and settings in, owned arrays out. */
#ifndef KSI_WINDOW_H
#define KSI_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIN_MAX_URL_BYTES 8000 /* SPEC §2: split codes beyond this */

/* One request's time span: [from, to), both on hour boundaries of the
 * connector's zone. fromTime is `from`, toTime is `to - 1` (the last second). */
struct win_span {
	int64_t from;
	int64_t to;
};

struct win_params {
	int64_t now;              /* epoch seconds */
	bool has_synced;          /* false for a connector never synced */
	int64_t synced_until;     /* end of the last committed window, if has_synced */
	int64_t lookback;         /* seconds, >= 0 */
	int64_t initial_backfill; /* seconds, > 0 */
	int64_t max_window;       /* seconds; rounded down to whole hours, at least one */
	const char *zone;         /* IANA zone the hours are aligned in */
};

/* The zone's hour grid: instants t where t + offset(t) is a whole hour, the
 * offset being the one in force at t (SPEC §2). Where an offset changes by
 * 30 or 45 minutes, one local hour lasts 90 or 105 minutes. */

/* Start of the local hour containing t: the latest grid instant <= t.
 * -1 on invalid zone or t out of range. */
int win_hour_floor(int64_t t, const char *zone, int64_t *out) __attribute__((warn_unused_result));

/* End of the local hour containing t: the first grid instant > t. */
int win_hour_next(int64_t t, const char *zone, int64_t *out) __attribute__((warn_unused_result));

/* Plans one poll: from min(synced_until, now - lookback) — or now -
 * initial_backfill for a new connector — floored to its hour, to the end of
 * the current hour, cut as win_plan_span() cuts.
 * *spans is malloc'd (caller frees); *n >= 1 on success. -1 on invalid zone,
 * nonsensical parameters or out of memory. */
int win_plan(const struct win_params *p, struct win_span **spans, size_t *n)
    __attribute__((warn_unused_result));

/* Plans an explicit span (backfill, backfill requests): the local hours that
 * start in [from, to), i.e. from win_hour_floor(from) to win_hour_next(to - 1),
 * in contiguous pieces, oldest first, each cut at a local hour start so every
 * fromTime is the start of a local hour and every toTime the last second of
 * one. A piece is at most max_window (whole hours, at least one) — except a
 * single local hour longer than that (90 minutes in Lord_Howe with a
 * max_window of 1 hour), which goes whole. Same returns as win_plan(). */
int win_plan_span(int64_t from, int64_t to, int64_t max_window, const char *zone,
                  struct win_span **spans, size_t *n) __attribute__((warn_unused_result));

/* Bytes value takes once percent-encoded as a query value (RFC 3986
 * unreserved characters stay, every other byte becomes %XX). */
size_t win_query_value_len(const char *value);

/* Splits codes[0..n) (already sorted) into consecutive batches so that
 * base_len plus, per code, strlen("&ext_ref_codes=") + its encoded length
 * stays <= max_len. *ends is malloc'd: batch i is codes [ends[i-1], ends[i])
 * (ends[-1] taken as 0). -1 when one code cannot fit even alone, when n is
 * 0, or on out of memory. */
int win_split_codes(const char *const *codes, size_t n, size_t base_len, size_t max_len,
                    size_t **ends, size_t *nbatches) __attribute__((warn_unused_result));

#endif
