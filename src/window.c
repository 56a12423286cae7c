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

int win_hour_floor(int64_t t, const char *zone, int64_t *out)
{
	int32_t offset;
	int64_t local, rem;

	if (iso_zone_offset(zone, t, &offset) != 0)
		return -1;
	if (__builtin_add_overflow(t, (int64_t)offset, &local))
		return -1;
	/* C's % truncates toward zero; hours before 1970 need the floor. */
	rem = local % WIN_HOUR;
	if (rem < 0)
		rem += WIN_HOUR;
	/* The same offset both ways, so the result is in (t - 3600, t]: on
	 * the hour of a +05:30 or +05:45 zone means :30 or :15 UTC. */
	if (__builtin_sub_overflow(t, rem, out))
		return -1;
	return 0;
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

int win_plan(const struct win_params *p, struct win_span **spans, size_t *n)
{
	int64_t raw, start, cur_hour, end, step, from;
	struct win_span *out = NULL;
	size_t count = 0, cap = 0;

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
	if (win_hour_floor(raw, p->zone, &start) != 0 ||
	    win_hour_floor(p->now, p->zone, &cur_hour) != 0 ||
	    __builtin_add_overflow(cur_hour, (int64_t)WIN_HOUR, &end))
		return -1;
	step = p->max_window / WIN_HOUR * WIN_HOUR;
	if (step < WIN_HOUR)
		step = WIN_HOUR;
	/* start <= raw <= now < end, all inside years 0001..9999: positive,
	 * no overflow. Counted before allocating anything; push_span() keeps
	 * the same limit should a zone's odd offsets cut spans shorter. */
	int64_t total = end - start;
	if (total / step + (total % step != 0) > WIN_MAX_SPANS)
		return -1;

	for (from = start; from < end;) {
		int64_t to;

		if (end - from <= step) {
			to = end;
		} else {
			/* Floored again rather than taken as from + step: identical
			 * when the zone's offset changes by whole hours (almost all
			 * zones), and still on a local hour when it changes by 30
			 * minutes (Australia/Lord_Howe). floor(x) > x - 3600 and
			 * step >= 3600, so to > from: the loop always advances. */
			if (win_hour_floor(from + step, p->zone, &to) != 0)
				goto fail;
		}
		if (push_span(&out, &count, &cap, from, to) != 0)
			goto fail;
		from = to;
	}
	*spans = out;
	*n = count;
	return 0;
fail:
	free(out);
	return -1;
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
