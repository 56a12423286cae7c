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

/* Start of the hour containing t, in zone's local time. -1 on invalid zone. */
int win_hour_floor(int64_t t, const char *zone, int64_t *out)
	__attribute__((warn_unused_result));

/* Plans one poll: from min(synced_until, now - lookback) — or now -
 * initial_backfill for a new connector — floored to its hour, to the end of
 * the current hour, in pieces of at most max_window, oldest first.
 * *spans is malloc'd (caller frees); *n >= 1 on success. -1 on invalid zone,
 * nonsensical parameters or out of memory. */
int win_plan(const struct win_params *p, struct win_span **spans, size_t *n)
	__attribute__((warn_unused_result));

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
