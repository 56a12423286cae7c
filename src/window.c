/* window: plans the hour-aligned spans one poll asks for (SPEC §5) and splits
 * store codes over requests when the URL would pass 8,000 bytes (SPEC §2). */
#include "window.h"

#include <stdlib.h>
#include <string.h>

#include "isotime.h"

#define WIN_HOUR 3600
/* A plan longer than this is a configuration mistake (100,000 one-hour spans
 * is over 11 years), refused before it turns into that many requests. */
#define WIN_MAX_SPANS 100000
#define WIN_CODE_PARAM_LEN 15 /* strlen("&ext_ref_codes=") */
/* Instants a plan may start or end near: a day inside years 0001..9999, so
 * whatever the hour floor, the end of the hour and the zone's offset add,
 * every bound is one iso_format() can write into a URL. */
#define WIN_MIN_EPOCH (-62135596800LL + 86400) /* 0001-01-02T00:00:00Z */
#define WIN_MAX_EPOCH (253402300799LL - 86400) /* 9999-12-30T23:59:59Z */

/* A zone's hour grid is the set of instants t where t + offset(t) is a
 * whole hour: what SPEC §2 calls the start of an hour in the zone at that
 * instant. Where the offset changes by a whole hour the grid is every hour;
 * where it changes by 30 or 45 minutes (Australia/Lord_Howe, Asia/Kathmandu
 * in 1986) one local hour lasts 90 or 105 minutes, and an instant found with
 * the offset of t may not be on the grid at all: the period of t's offset is
 * checked, and the search moves to the period before (or after) when the
 * lattice point falls outside it. Each step crosses one change of offset. */
#define WIN_GRID_STEPS 8

static int64_t mod_hour(int64_t x)
{
	int64_t r = x % WIN_HOUR;

	return r < 0 ? r + WIN_HOUR : r; /* C's % truncates toward zero */
}

int win_hour_floor(int64_t t, const char *zone, int64_t *out)
{
	const struct iso_tz *tz;

	if (iso_zone_load(zone, &tz) != 0)
		return -1;
	for (int i = 0; i < WIN_GRID_STEPS; i++) {
		int32_t offset;
		int64_t cand, since;

		if (iso_tz_offset(tz, t, &offset) != 0)
			return -1;
		cand = t - mod_hour(t + offset);
		since = iso_tz_prev_change(tz, t);
		/* [since, t] has this offset throughout: a lattice point in it
		 * is on the grid, and the latest one. */
		if (cand >= since) {
			*out = cand;
			return 0;
		}
		t = since - 1;
	}
	return -1;
}

int win_hour_next(int64_t t, const char *zone, int64_t *out)
{
	const struct iso_tz *tz;

	if (iso_zone_load(zone, &tz) != 0 || t >= ISO_TZ_MAX_EPOCH)
		return -1;
	t++; /* the first grid instant >= t */
	for (int i = 0; i < WIN_GRID_STEPS; i++) {
		int32_t offset;
		int64_t cand, until;

		if (iso_tz_offset(tz, t, &offset) != 0)
			return -1;
		cand = t + mod_hour(-(t + offset));
		until = iso_tz_next_change(tz, t);
		if (cand < until) {
			*out = cand;
			return 0;
		}
		t = until;
	}
	return -1;
}

/* Appends one span, growing the array by doubling. */
static int push_span(struct win_span **spans, size_t *n, size_t *cap, int64_t from, int64_t to)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		struct win_span *grown;

		if (ncap > WIN_MAX_SPANS)
			ncap = WIN_MAX_SPANS;
		if (*n >= ncap)
			return -1;
		grown = realloc(*spans, ncap * sizeof(**spans));
		if (!grown)
			return -1;
		*spans = grown;
		*cap = ncap;
	}
	(*spans)[*n].from = from;
	(*spans)[*n].to = to;
	(*n)++;
	return 0;
}

int win_plan_span(int64_t from, int64_t to, int64_t max_window, const char *zone,
                  struct win_span **spans, size_t *n)
{
	int64_t start, end, step, cur;
	struct win_span *out = NULL;
	size_t count = 0, cap = 0;

	*spans = NULL;
	*n = 0;
	if (max_window <= 0 || from >= to || from < WIN_MIN_EPOCH || to - 1 > WIN_MAX_EPOCH ||
	    !iso_zone_valid(zone))
		return -1;
	/* The hours that start in [from, to): from the start of from's hour
	 * to the end of the hour holding to - 1. */
	if (win_hour_floor(from, zone, &start) != 0 || win_hour_next(to - 1, zone, &end) != 0)
		return -1;
	step = max_window / WIN_HOUR * WIN_HOUR;
	if (step < WIN_HOUR)
		step = WIN_HOUR;
	/* Counted before allocating anything (each piece but the last spans
	 * at least step - 1 h of real time, less only where a local hour is
	 * short); push_span() keeps the hard limit whatever the zone. */
	int64_t total = end - start;
	if (total / step + (total % step != 0) > WIN_MAX_SPANS)
		return -1;

	for (cur = start; cur < end;) {
		int64_t piece_end;

		if (end - cur <= step) {
			piece_end = end;
		} else {
			/* The last hour start within step, re-floored on the
			 * zone's grid rather than taken as cur + step: the same
			 * instant where offsets change by whole hours, still a
			 * local hour start across a 30-minute change. */
			if (win_hour_floor(cur + step, zone, &piece_end) != 0)
				goto fail;
			/* No hour start in (cur, cur + step]: one local hour is
			 * longer than max_window (Lord_Howe's 90-minute hour with
			 * a one-hour max_window). It goes whole, in one request:
			 * an hour cannot be asked for in parts. */
			if (piece_end <= cur && win_hour_next(cur, zone, &piece_end) != 0)
				goto fail;
		}
		if (push_span(&out, &count, &cap, cur, piece_end) != 0)
			goto fail;
		cur = piece_end;
	}
	*spans = out;
	*n = count;
	return 0;
fail:
	free(out);
	return -1;
}

int win_plan(const struct win_params *p, struct win_span **spans, size_t *n)
{
	int64_t raw;

	*spans = NULL;
	*n = 0;
	if (p == NULL || p->lookback < 0 || p->initial_backfill <= 0 || p->max_window <= 0 ||
	    !iso_zone_valid(p->zone))
		return -1;
	if (p->has_synced) {
		if (__builtin_sub_overflow(p->now, p->lookback, &raw))
			return -1;
		/* synced_until may lie ahead (a committed window ends at the end
		 * of the current hour): min() then picks now - lookback. */
		if (p->synced_until < raw)
			raw = p->synced_until;
	} else if (__builtin_sub_overflow(p->now, p->initial_backfill, &raw)) {
		return -1;
	}
	if (raw < WIN_MIN_EPOCH || p->now > WIN_MAX_EPOCH)
		return -1;
	/* Up to the end of the current hour: the hours that start in
	 * [raw, now + 1). raw <= now, so the span is never empty. */
	return win_plan_span(raw, p->now + 1, p->max_window, p->zone, spans, n);
}

static bool is_unreserved(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

size_t win_query_value_len(const char *value)
{
	size_t len = 0;

	for (const unsigned char *c = (const unsigned char *)value; *c; c++)
		len += is_unreserved(*c) ? 1 : 3;
	return len;
}

int win_split_codes(const char *const *codes, size_t n, size_t base_len, size_t max_len,
                    size_t **ends, size_t *nbatches)
{
	size_t *out, used, count = 0;

	*ends = NULL;
	*nbatches = 0;
	if (n == 0 || base_len > max_len)
		return -1;
	/* At most one batch per code; n * sizeof cannot overflow for an
	 * array of n pointers that already exists in memory. */
	out = malloc(n * sizeof(*out));
	if (!out)
		return -1;
	used = base_len;
	for (size_t i = 0; i < n; i++) {
		size_t cost;

		if (codes[i] == NULL)
			goto fail;
		cost = WIN_CODE_PARAM_LEN + win_query_value_len(codes[i]);
		/* Compared as "cost > room" so no sum can overflow. */
		if (cost > max_len - base_len)
			goto fail; /* does not fit even alone */
		if (i > 0 && cost > max_len - used) {
			out[count++] = i;
			used = base_len;
		}
		used += cost;
	}
	out[count++] = n;
	*ends = out;
	*nbatches = count;
	return 0;
fail:
	free(out);
	return -1;
}
