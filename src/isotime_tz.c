/* isotime_tz: IANA zone offsets without the C library's TZ: a TZif reader,
 * POSIX TZ rules (RFC 8536), zone names and the zone cache. Same module as
 * isotime.c (callers see one API, include/isotime.h); split off because
 * zones are a concern of their own (SPEC §4, §5; why: include/isotime.h). */
#include "isotime.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "isotime_internal.h"

#define ZONEINFO_DIR "/usr/share/zoneinfo"
#define ZONE_NAME_MAX 255 /* longest IANA name is ~30 bytes; this only bounds the path */

/* ---- Time zones: a TZif reader and POSIX TZ rules (RFC 8536) ---- */

#define TZ_DEFAULT_RULE_TIME 7200 /* POSIX: transitions at 02:00 unless said */
#define TZ_MAX_RULE_HOURS 167     /* RFC 8536 §3.3.1: v3 times, -167..167 h */
#define TZ_MAX_FOOTER 256         /* zic writes a few dozen bytes */
#define TZIF_HEADER_LEN 44

/* A POSIX rule's date: Jn (1..365, February 29 never counted), n (0..365,
 * counted) or Mm.w.d (day d of week w of month m, week 5 meaning the last). */
enum tz_date_kind { TZ_DATE_JULIAN1, TZ_DATE_JULIAN0, TZ_DATE_MWD };

struct tz_date {
	enum tz_date_kind kind;
	int n, month, week, wday;
	int32_t time; /* seconds after local midnight, -167 h .. 167 h */
};

struct tz_rule {
	int32_t std_off, dst_off;  /* seconds east of UTC */
	bool has_dst;              /* false: std_off all year */
	struct tz_date start, end; /* DST starts (in standard time), ends (in DST) */
};

struct iso_tz {
	size_t ntrans;
	int64_t *trans;    /* transition instants, strictly ascending */
	int32_t *offs;     /* offset from trans[i] on */
	int32_t first_off; /* before trans[0] (time type 0, RFC 8536 §3.2) */
	bool has_rule;     /* the footer's rule rules from the last transition on */
	struct tz_rule rule;
};

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t year_of(int64_t epoch)
{
	int64_t y;
	int m, d;

	civil_from_days(floor_div(epoch, SECS_PER_DAY), &y, &m, &d);
	return y;
}

/* Up to max_digits digits as an int: a bounded count, so no overflow. */
static bool cur_number(struct cursor *c, size_t max_digits, int *out)
{
	size_t n = 0;
	int v = 0;
	char ch;

	while (n < max_digits && cur_peek(c, &ch) && is_digit(ch)) {
		v = v * 10 + (ch - '0');
		cur_skip(c);
		n++;
	}
	*out = v;
	return n > 0;
}

/* A zone abbreviation: three or more letters, or <…> holding three or more
 * of [A-Za-z0-9+-] (POSIX.1-2017 §8.3). Only its form matters here. */
static bool posix_name(struct cursor *c)
{
	size_t n = 0;
	char ch;

	if (cur_take(c, '<')) {
		while (cur_peek(c, &ch) && ch != '>') {
			if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			      is_digit(ch) || ch == '+' || ch == '-'))
				return false;
			cur_skip(c);
			n++;
		}
		return n >= 3 && cur_take(c, '>');
	}
	while (cur_peek(c, &ch) && ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z'))) {
		cur_skip(c);
		n++;
	}
	return n >= 3;
}

/* [+-]h[h[h]][:mm[:ss]] as seconds, hours at most max_hours. */
static bool posix_hms(struct cursor *c, int max_hours, int32_t *out)
{
	int sign = 1, h, m = 0, s = 0;

	if (cur_take(c, '-'))
		sign = -1;
	else
		(void)cur_take(c, '+');
	if (!cur_number(c, max_hours > 99 ? 3 : 2, &h) || h > max_hours)
		return false;
	if (cur_take(c, ':')) {
		if (!cur_digits(c, 2, &m) || m > 59)
			return false;
		if (cur_take(c, ':') && (!cur_digits(c, 2, &s) || s > 59))
			return false;
	}
	*out = sign * (h * SECS_PER_HOUR + m * 60 + s);
	return true;
}

static bool posix_date(struct cursor *c, struct tz_date *d)
{
	char ch;

	memset(d, 0, sizeof(*d));
	if (cur_take(c, 'J')) {
		d->kind = TZ_DATE_JULIAN1;
		if (!cur_number(c, 3, &d->n) || d->n < 1 || d->n > 365)
			return false;
	} else if (cur_take(c, 'M')) {
		d->kind = TZ_DATE_MWD;
		if (!cur_number(c, 2, &d->month) || d->month < 1 || d->month > 12 ||
		    !cur_take(c, '.') || !cur_number(c, 1, &d->week) || d->week < 1 ||
		    d->week > 5 || !cur_take(c, '.') || !cur_number(c, 1, &d->wday) || d->wday > 6)
			return false;
	} else {
		d->kind = TZ_DATE_JULIAN0;
		if (!cur_number(c, 3, &d->n) || d->n > 365)
			return false;
	}
	d->time = TZ_DEFAULT_RULE_TIME;
	if (cur_take(c, '/') && !posix_hms(c, TZ_MAX_RULE_HOURS, &d->time))
		return false;
	/* Nothing may follow but the next field. */
	return !cur_peek(c, &ch) || ch == ',';
}

static bool posix_rule(const char *s, size_t len, struct tz_rule *r)
{
	struct cursor c = {s, len};
	int32_t west;
	char ch;

	memset(r, 0, sizeof(*r));
	/* POSIX offsets count hours west of Greenwich: "CET-1" is UTC+1. */
	/* POSIX allows 24 h; ISO 8601's ±HH:MM cannot write it, and TZif
	 * types are held to the same limit: at most 23:59:59. */
	if (!posix_name(&c) || !posix_hms(&c, 24, &west) || west <= -SECS_PER_DAY ||
	    west >= SECS_PER_DAY)
		return false;
	r->std_off = -west;
	if (c.left == 0)
		return true;
	if (!posix_name(&c))
		return false;
	r->dst_off = r->std_off + SECS_PER_HOUR;
	if (cur_peek(&c, &ch) && ch != ',') {
		if (!posix_hms(&c, 24, &west))
			return false;
		r->dst_off = -west;
	}
	if (c.left == 0) {
		/* No dates: POSIX leaves the rule to the implementation; this is
		 * tzcode's default (US rules since 2007). zic always writes one. */
		r->start = (struct tz_date){TZ_DATE_MWD, 0, 3, 2, 0, TZ_DEFAULT_RULE_TIME};
		r->end = (struct tz_date){TZ_DATE_MWD, 0, 11, 1, 0, TZ_DEFAULT_RULE_TIME};
	} else if (!cur_take(&c, ',') || !posix_date(&c, &r->start) || !cur_take(&c, ',') ||
	           !posix_date(&c, &r->end) || c.left != 0) {
		return false;
	}
	/* Also the default std + 1 h ("XXX-23YYY"). */
	if (r->dst_off <= -SECS_PER_DAY || r->dst_off >= SECS_PER_DAY)
		return false;
	/* A "DST" with the standard offset changes nothing: treating it as
	 * none keeps every rule transition a real change of offset. */
	r->has_dst = r->dst_off != r->std_off;
	return true;
}

/* Days since 1970-01-01 of the local date d names in year. */
static int64_t rule_day(const struct tz_date *d, int64_t year)
{
	int64_t jan1 = iso_days_from_civil(year, 1, 1);

	switch (d->kind) {
	case TZ_DATE_JULIAN1:
		return jan1 + d->n - 1 + (is_leap(year) && d->n >= 60);
	case TZ_DATE_JULIAN0:
		return jan1 + d->n;
	case TZ_DATE_MWD:
	default: {
		int64_t first = iso_days_from_civil(year, (unsigned)d->month, 1);
		int64_t wd = ((first + 4) % 7 + 7) % 7; /* 1970-01-01 was a Thursday */
		int64_t day = (d->wday - wd + 7) % 7 + 7 * (d->week - 1);

		/* Week 5 is the last such weekday, whatever the month's length. */
		while (day >= days_in_month(year, d->month))
			day -= 7;
		return first + day;
	}
	}
}

/* The instants DST starts and ends in year (either may fall in the year
 * before or after with v3's out-of-range times). */
static void rule_year(const struct tz_rule *r, int64_t year, int64_t *start, int64_t *end)
{
	*start = rule_day(&r->start, year) * SECS_PER_DAY + r->start.time - r->std_off;
	*end = rule_day(&r->end, year) * SECS_PER_DAY + r->end.time - r->dst_off;
}

/* The rule's offset at t: the state set by the latest of the rule's
 * transitions at or before t, over enough years to cover any time field.
 * At equal instants a start wins, so all-year DST ("J1/0,J365/25": each
 * year's end is the next year's start) stays DST. */
static int32_t rule_offset(const struct tz_rule *r, int64_t t)
{
	int64_t best = INT64_MIN, y = year_of(t);
	bool dst = false;

	if (!r->has_dst)
		return r->std_off;
	for (int64_t yy = y - 2; yy <= y + 1; yy++) {
		int64_t s, e;

		rule_year(r, yy, &s, &e);
		if (e <= t && e > best) {
			best = e;
			dst = false;
		}
		if (s <= t && s >= best) {
			best = s;
			dst = true;
		}
	}
	return dst ? r->dst_off : r->std_off;
}

/* The index of the last transition at or before t, or -1. */
static ptrdiff_t trans_index(const struct iso_tz *tz, int64_t t)
{
	size_t lo = 0, hi = tz->ntrans; /* answer in [lo, hi) is > t */

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (tz->trans[mid] <= t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (ptrdiff_t)lo - 1;
}

static int32_t tz_offset_at(const struct iso_tz *tz, int64_t t)
{
	ptrdiff_t i;

	if (tz->ntrans == 0)
		return tz->has_rule ? rule_offset(&tz->rule, t) : tz->first_off;
	if (tz->has_rule && t >= tz->trans[tz->ntrans - 1])
		return rule_offset(&tz->rule, t);
	i = trans_index(tz, t);
	return i < 0 ? tz->first_off : tz->offs[i];
}

static bool in_range(int64_t t)
{
	return t >= ISO_TZ_MIN_EPOCH && t <= ISO_TZ_MAX_EPOCH;
}

int iso_tz_offset(const struct iso_tz *tz, int64_t epoch, int32_t *offset)
{
	if (tz == NULL || !in_range(epoch))
		return -1;
	*offset = tz_offset_at(tz, epoch);
	return 0;
}

/* Where the footer's rule takes over: the last transition, or the start of
 * time when there is no table. */
static int64_t rule_from(const struct iso_tz *tz)
{
	return tz->ntrans ? tz->trans[tz->ntrans - 1] : INT64_MIN;
}

/* The first instant > t where the table or the rule switches (the offset
 * may not change there), or INT64_MAX. */
static int64_t candidate_after(const struct iso_tz *tz, int64_t t)
{
	int64_t best = INT64_MAX;
	ptrdiff_t i = trans_index(tz, t);

	if ((size_t)(i + 1) < tz->ntrans)
		best = tz->trans[i + 1];
	if (tz->has_rule && tz->rule.has_dst) {
		int64_t from = t > rule_from(tz) ? t : rule_from(tz);
		int64_t y = year_of(from);

		/* A (corrupt) table may end beyond the range answered. */
		if (from > ISO_TZ_MAX_EPOCH)
			return best;
		for (int64_t yy = y - 1; yy <= y + 2; yy++) {
			int64_t s, e;

			rule_year(&tz->rule, yy, &s, &e);
			if (s > from && s < best)
				best = s;
			if (e > from && e < best)
				best = e;
		}
	}
	return best;
}

/* The last instant <= t where the table or the rule switches, or INT64_MIN. */
static int64_t candidate_at_or_before(const struct iso_tz *tz, int64_t t)
{
	int64_t best = INT64_MIN;
	ptrdiff_t i = trans_index(tz, t);

	if (i >= 0)
		best = tz->trans[i];
	if (tz->has_rule && tz->rule.has_dst && t > rule_from(tz)) {
		int64_t y = year_of(t);

		for (int64_t yy = y - 2; yy <= y + 1; yy++) {
			int64_t s, e;

			rule_year(&tz->rule, yy, &s, &e);
			if (s <= t && s > rule_from(tz) && s > best)
				best = s;
			if (e <= t && e > rule_from(tz) && e > best)
				best = e;
		}
	}
	return best;
}

int64_t iso_tz_next_change(const struct iso_tz *tz, int64_t after)
{
	if (tz == NULL || after >= ISO_TZ_MAX_EPOCH)
		return INT64_MAX;
	if (after < ISO_TZ_MIN_EPOCH)
		after = ISO_TZ_MIN_EPOCH;
	/* Each step passes one table entry or one rule transition, and every
	 * rule transition changes the offset: bounded by the table's size. */
	for (size_t steps = 0; steps <= tz->ntrans + 2; steps++) {
		int64_t c = candidate_after(tz, after);

		if (c > ISO_TZ_MAX_EPOCH)
			return INT64_MAX;
		if (tz_offset_at(tz, c) != tz_offset_at(tz, c - 1))
			return c;
		after = c;
	}
	return INT64_MAX;
}

int64_t iso_tz_prev_change(const struct iso_tz *tz, int64_t at)
{
	if (tz == NULL || at <= ISO_TZ_MIN_EPOCH)
		return INT64_MIN;
	if (at > ISO_TZ_MAX_EPOCH)
		at = ISO_TZ_MAX_EPOCH;
	for (size_t steps = 0; steps <= tz->ntrans + 2; steps++) {
		int64_t c = candidate_at_or_before(tz, at);

		if (c <= ISO_TZ_MIN_EPOCH)
			return INT64_MIN;
		if (tz_offset_at(tz, c) != tz_offset_at(tz, c - 1))
			return c;
		at = c - 1;
	}
	return INT64_MIN;
}

void iso_tz_free(struct iso_tz *tz)
{
	if (tz == NULL)
		return;
	free(tz->trans);
	free(tz->offs);
	free(tz);
}

int iso_tz_parse_posix(const char *s, size_t len, struct iso_tz **out)
{
	struct iso_tz *tz;
	struct tz_rule rule;

	*out = NULL;
	if (s == NULL || !posix_rule(s, len, &rule))
		return -1;
	tz = calloc(1, sizeof(*tz));
	if (!tz)
		return -1;
	tz->has_rule = true;
	tz->rule = rule;
	tz->first_off = rule.std_off;
	*out = tz;
	return 0;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* One TZif header: the six counts (RFC 8536 §3.1), and the length of the
 * data block that follows for time fields of time_size bytes. */
struct tzif_header {
	char version;
	uint64_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
	uint64_t block_len;
};

static bool tzif_header(const unsigned char *p, size_t left, size_t time_size,
                        struct tzif_header *h)
{
	if (left < TZIF_HEADER_LEN || memcmp(p, "TZif", 4) != 0)
		return false;
	h->version = (char)p[4];
	if (h->version != 0 && h->version != '2' && h->version != '3' && h->version != '4')
		return false;
	h->isutcnt = be32(p + 20);
	h->isstdcnt = be32(p + 24);
	h->leapcnt = be32(p + 28);
	h->timecnt = be32(p + 32);
	h->typecnt = be32(p + 36);
	h->charcnt = be32(p + 40);
	/* Counts are at most 2^32 - 1, so none of this overflows 64 bits. */
	h->block_len = h->timecnt * (time_size + 1) + h->typecnt * 6 + h->charcnt +
	               h->leapcnt * (time_size + 4) + h->isstdcnt + h->isutcnt;
	return h->block_len <= left - TZIF_HEADER_LEN;
}

/* The header of the data this reader uses: the only block of a v1 file, the
 * 64-bit block after the 32-bit one of v2+. *p and *time_size are set to
 * that block's header and time width. False when either header is bad or
 * the counts break RFC 8536 §3.1's rules. */
static bool tzif_data_header(const unsigned char **p, const unsigned char *end,
                             struct tzif_header *h, size_t *time_size)
{
	*time_size = 4;
	if (!tzif_header(*p, (size_t)(end - *p), 4, h))
		return false;
	if (h->version != 0) {
		/* v2+: skip the 32-bit block for the 64-bit one after it. */
		*p += TZIF_HEADER_LEN + h->block_len;
		if (!tzif_header(*p, (size_t)(end - *p), 8, h) || h->version == 0)
			return false;
		*time_size = 8;
	}
	/* RFC 8536 §3.1's rules, and none of its leap-second files: their
	 * instants count leap seconds, which POSIX epochs never do. */
	return !(h->typecnt == 0 || h->typecnt > 256 || h->charcnt == 0 || h->leapcnt != 0 ||
	         (h->isstdcnt != 0 && h->isstdcnt != h->typecnt) ||
	         (h->isutcnt != 0 && h->isutcnt != h->typecnt));
}

/* The local time types' offsets (ttinfo, RFC 8536 §3.2) into type_off. */
static bool tzif_types(const unsigned char *types, const struct tzif_header *h,
                       int32_t type_off[256])
{
	for (size_t i = 0; i < h->typecnt; i++) {
		int32_t off = (int32_t)be32(types + 6 * i);

		/* Beyond ±24 h no ISO 8601 offset can write it; desigidx
		 * must point inside the abbreviations. */
		if (off <= -SECS_PER_DAY || off >= SECS_PER_DAY || types[6 * i + 4] > 1 ||
		    types[6 * i + 5] >= h->charcnt)
			return false;
		type_off[i] = off;
	}
	return true;
}

/* The transition table into tz: times (then their type indices) as the
 * block holds them, strictly ascending, each with its type's offset. False
 * on a bad table or out of memory; what was allocated is tz's to free. */
static bool tzif_transitions(struct iso_tz *tz, const unsigned char *times, size_t time_size,
                             const struct tzif_header *h, const int32_t *type_off)
{
	const unsigned char *idx = times + h->timecnt * time_size;

	if (h->timecnt > 0) {
		tz->trans = malloc(h->timecnt * sizeof(*tz->trans));
		tz->offs = malloc(h->timecnt * sizeof(*tz->offs));
		if (!tz->trans || !tz->offs)
			return false;
	}
	for (size_t i = 0; i < h->timecnt; i++) {
		int64_t t = time_size == 8 ? be64(times + 8 * i) : (int32_t)be32(times + 4 * i);

		if (idx[i] >= h->typecnt || (i > 0 && t <= tz->trans[i - 1]))
			return false;
		tz->trans[i] = t;
		tz->offs[i] = type_off[idx[i]];
	}
	tz->ntrans = h->timecnt;
	return true;
}

/* The footer of v2+ at after: "\n" TZ-string "\n" (RFC 8536 §3.3); an
 * empty string means no rule, the last type then holds for ever. */
static bool tzif_footer(struct iso_tz *tz, const unsigned char *after, const unsigned char *end)
{
	const unsigned char *nl;
	size_t flen;

	if (after >= end || *after != '\n')
		return false;
	after++;
	nl = memchr(after, '\n',
	            (size_t)(end - after) < TZ_MAX_FOOTER + 1 ? (size_t)(end - after)
	                                                      : TZ_MAX_FOOTER + 1);
	if (!nl)
		return false;
	flen = (size_t)(nl - after);
	if (flen > 0) {
		if (!posix_rule((const char *)after, flen, &tz->rule))
			return false;
		tz->has_rule = true;
	}
	return true;
}

int iso_tz_parse_tzif(const void *buf, size_t len, struct iso_tz **out)
{
	const unsigned char *p = buf, *end;
	struct tzif_header h;
	size_t time_size;
	int32_t type_off[256];
	struct iso_tz *tz;

	*out = NULL;
	if (buf == NULL || len > ISO_TZIF_MAX_BYTES)
		return -1;
	end = p + len; /* after the NULL check: NULL + 0 is undefined */
	if (!tzif_data_header(&p, end, &h, &time_size))
		return -1;
	/* The data block: times, type indices, types, abbreviations, then
	 * the leap (none), standard/wall and UT/local indicators. */
	const unsigned char *times = p + TZIF_HEADER_LEN;
	const unsigned char *types = times + h.timecnt * (time_size + 1);
	const unsigned char *after = types + h.typecnt * 6 + h.charcnt + h.isstdcnt + h.isutcnt;

	if (!tzif_types(types, &h, type_off))
		return -1;
	tz = calloc(1, sizeof(*tz));
	if (!tz)
		return -1;
	tz->first_off = type_off[0];
	/* v1 files have no footer: the table alone. */
	if (!tzif_transitions(tz, times, time_size, &h, type_off) ||
	    (time_size == 8 && !tzif_footer(tz, after, end))) {
		iso_tz_free(tz);
		return -1;
	}
	*out = tz;
	return 0;
}

/* ---- Zone names and the cache ---- */

static bool zone_name_ok(const char *zone)
{
	static const char *const refused[] = {"localtime", "posixrules", "Factory"};
	size_t len = strlen(zone);
	const char *comp = zone;

	if (len == 0 || len > ZONE_NAME_MAX)
		return false;
	/* "localtime" is the host's setting, not an IANA zone (a connector
	 * would change meaning on another machine); "posixrules" is zic's
	 * default-rule file and "Factory" a placeholder ("-00"). posix/ and
	 * right/ are copies of the tree, right/ counting leap seconds. */
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (strcmp(zone, refused[i]) == 0)
			return false;
	if (strncmp(zone, "posix/", 6) == 0 || strncmp(zone, "right/", 6) == 0)
		return false;
	/* Components of [A-Za-z0-9_+-] between single slashes: no absolute
	 * path, no "." or "..", no hidden file, no empty component. A POSIX
	 * string ("UTC+3", "<+03>-3", "+05:30") passes this only when a file
	 * of that name exists, and none does. */
	for (;;) {
		const char *slash = strchr(comp, '/');
		size_t n = slash ? (size_t)(slash - comp) : strlen(comp);

		if (n == 0 || comp[0] == '.')
			return false;
		for (size_t i = 0; i < n; i++) {
			char ch = comp[i];

			if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			      is_digit(ch) || ch == '_' || ch == '+' || ch == '-'))
				return false;
		}
		if (!slash)
			return true;
		comp = slash + 1;
	}
}

/* Reads and parses ZONEINFO_DIR/zone; NULL when missing, not a regular
 * file, too big or not a valid TZif file. */
static struct iso_tz *zone_read(const char *zone)
{
	char path[sizeof(ZONEINFO_DIR) + 1 + ZONE_NAME_MAX + 1];
	unsigned char *buf = NULL;
	struct iso_tz *tz = NULL;
	struct stat st;
	size_t got = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", ZONEINFO_DIR, zone);
	/* Symlinks are followed on purpose: tzdata ships aliases as symlinks
	 * (UTC -> Etc/UTC). O_NONBLOCK so a FIFO cannot hang the open; fstat
	 * on the open descriptor so the file checked is the file read. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    st.st_size > ISO_TZIF_MAX_BYTES)
		goto out;
	/* One byte more than the cap, so a file grown since fstat is seen. */
	buf = malloc(ISO_TZIF_MAX_BYTES + 1);
	if (!buf)
		goto out;
	for (;;) {
		ssize_t n = read(fd, buf + got, ISO_TZIF_MAX_BYTES + 1 - got);

		if (n < 0)
			goto out;
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > ISO_TZIF_MAX_BYTES)
			goto out;
	}
	if (iso_tz_parse_tzif(buf, got, &tz) != 0)
		tz = NULL;
out:
	free(buf);
	close(fd);
	return tz;
}

/* Parsed zones, by name. Entries are immutable and never freed, so a
 * pointer handed out stays valid without the lock. Invalid names are not
 * remembered: an operator may install the zone later. */
struct zone_entry {
	struct zone_entry *next;
	struct iso_tz *tz;
	char name[];
};

static pthread_mutex_t zone_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct zone_entry *zone_cache;
static const struct iso_tz utc_builtin; /* all zero: offset 0, no rule */

int iso_zone_load(const char *zone, const struct iso_tz **out)
{
	const struct iso_tz *found = NULL;
	struct zone_entry *e;
	size_t len;

	*out = NULL;
	if (zone == NULL || !zone_name_ok(zone))
		return -1;
	len = strlen(zone);
	pthread_mutex_lock(&zone_cache_lock);
	for (e = zone_cache; e; e = e->next) {
		if (strcmp(e->name, zone) == 0) {
			found = e->tz;
			break;
		}
	}
	if (!found) {
		/* Read under the lock: a few KiB once per zone, and two
		 * threads never parse the same file twice. */
		struct iso_tz *tz = zone_read(zone);

		e = tz ? malloc(sizeof(*e) + len + 1) : NULL;
		if (e) {
			memcpy(e->name, zone, len + 1);
			e->tz = tz;
			e->next = zone_cache;
			zone_cache = e;
			found = tz;
		} else {
			iso_tz_free(tz);
		}
	}
	pthread_mutex_unlock(&zone_cache_lock);
	/* UTC is the default of every zone column: known even on a host
	 * without tzdata, as PostgreSQL knows it. */
	if (!found && strcmp(zone, "UTC") == 0)
		found = &utc_builtin;
	*out = found;
	return found ? 0 : -1;
}

bool iso_zone_valid(const char *zone)
{
	const struct iso_tz *tz;

	return iso_zone_load(zone, &tz) == 0;
}

int iso_zone_offset(const char *zone, int64_t epoch, int32_t *offset)
{
	const struct iso_tz *tz;

	if (iso_zone_load(zone, &tz) != 0)
		return -1;
	return iso_tz_offset(tz, epoch, offset);
}

int iso_format_in_zone(int64_t epoch, const char *zone, char buf[ISO_FORMAT_LEN])
{
	int32_t offset;

	buf[0] = '\0';
	if (iso_zone_offset(zone, epoch, &offset) != 0)
		return -1;
	iso_format(epoch, offset, buf);
	/* iso_format() leaves "" for instants outside years 0001..9999. */
	return buf[0] ? 0 : -1;
}
