/* validate: judges one response body against the integration guide (SPEC §2,
 * §3): the whole response refused, or each record accepted or refused with a
 * reason a person can act on. Pure: no I/O, no globals.
 *
 * cJSON decides what the values are; a small scanner over the raw bytes
 * decides what cJSON cannot see, because cJSON is lenient: it skips any byte
 * <= 0x20 as white space, accepts "01", "1." and "-.5" as numbers, keeps raw
 * control bytes and invalid UTF-8 inside strings, and decodes \u0000 to a NUL
 * that silently truncates valuestring; it reads a \u escape without four hex
 * digits as U+0000. The raw text also gives each refused record's JSON text
 * and the exact decimal text of num_tickets.
 *
 * Decisions (SPEC is silent on these):
 * - What cJSON lets through but RFC 8259 does not (a control byte between
 *   tokens, "01", a bad \u escape) refuses the whole response as not valid
 *   JSON, like JSON followed by other text. Raw bytes inside strings do not:
 *   the string rules judge those, and only in time and ext_ref_code; other
 *   fields are ignored whatever they hold.
 * - cJSON's own limit refuses the whole response too: nesting over 1000
 *   levels. A UTF-8 byte order mark is skipped, as cJSON does and RFC 8259
 *   §8.1 allows.
 * - Lone UTF-16 surrogate escapes ("\ud800" without its partner) are legal
 *   RFC 8259 grammar but cJSON refuses them, so cJSON is given a copy where
 *   each one's four hex digits read FFFD: the same length, so every byte
 *   offset still points at the text as sent, which is what the record judge
 *   and the messages read. In an ignored value they are ignored; in time or
 *   ext_ref_code they refuse the record (invalid_string).
 * - "A key the daemon reads" is every key of a record object (not the keys
 *   nested in an ignored value): the daemon compares each one, unescaped, to
 *   time, ext_ref_code and num_tickets, so a key holding a lone surrogate
 *   refuses its record (invalid_string) — it may be one of the three cut in
 *   half, and the daemon does not guess. That comes before duplicate_key and
 *   missing_field.
 * - Keys are compared after unescaping ("\u0074ime" is time; "time\u0000"
 *   is not). time, ext_ref_code or num_tickets given twice refuses the record
 *   (duplicate_key); other keys given twice are ignored, like their values.
 * - A record's hour must start an hour in the connector's zone at that
 *   instant, (epoch + offset) % 3600 == 0, else time_not_on_hour naming the
 *   zone: 17:00+05:30 is 11:30Z, off a UTC connector's grid, while
 *   Australia/Lord_Howe's hours start at :30 UTC and Asia/Kathmandu's at :15.
 * - Byte positions in messages count from 0, like hexdump's offsets, from
 *   the first byte of the body (a byte order mark included). */
#include "validate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "jscan.h"
#include "isotime.h"
#include "mask.h"
#include "sbuf.h"

#define EXCERPT_BYTES 40 /* longest quoted value or body excerpt in a message */
#define LIST_MAX 5       /* keys, codes or elements named in one message */
#define TICKETS_MAX 2147483647

static const char ellipsis[] = "\xE2\x80\xA6"; /* U+2026 */

const char *val_reason_name(enum val_reason r)
{
	switch (r) {
	case VAL_NOT_OBJECT:
		return "not_an_object";
	case VAL_MISSING_FIELD:
		return "missing_field";
	case VAL_WRONG_TYPE:
		return "wrong_type";
	case VAL_STRING_NUL:
		return "string_has_nul";
	case VAL_STRING_INVALID_UTF8:
		return "string_invalid_utf8";
	case VAL_STRING_TOO_LONG:
		return "string_too_long";
	case VAL_TIME_NO_OFFSET:
		return "time_without_offset";
	case VAL_TIME_UNPARSEABLE:
		return "time_unparseable";
	case VAL_TIME_NOT_ON_HOUR:
		return "time_not_on_hour";
	case VAL_TIME_OUTSIDE_WINDOW:
		return "time_outside_window";
	case VAL_TIME_IN_FUTURE:
		return "time_in_future";
	case VAL_UNKNOWN_CODE:
		return "unknown_ext_ref_code";
	case VAL_TICKETS_NEGATIVE:
		return "num_tickets_negative";
	case VAL_TICKETS_FRACTIONAL:
		return "num_tickets_fractional";
	case VAL_TICKETS_TOO_LARGE:
		return "num_tickets_too_large";
	case VAL_DUPLICATE:
		return "duplicate";
	case VAL_STRING_INVALID:
		return "invalid_string";
	case VAL_DUPLICATE_KEY:
		return "duplicate_key";
	}
	return "unknown";
}

/* Appends s[0..n) made safe to log and to store in a PostgreSQL text column:
 * the token and its fragments masked first (mask.h: before the cut, so a
 * token straddling it shows none of itself), then printable ASCII as is,
 * well-formed UTF-8 from U+00A0 up as is unless ascii_only, every other
 * byte as \xNN. At most max (<= EXCERPT_BYTES) bytes of it, then "…". Each
 * byte of the masked text takes at least one byte of the excerpt, so
 * max + 1 masked bytes are all it can need, the last only to know that
 * more follows. */
static void sb_excerpt(struct sbuf *sb, const struct mask *mk, const char *src, size_t srclen,
                       size_t max, bool ascii_only)
{
	char masked[EXCERPT_BYTES + 2];
	if (max > EXCERPT_BYTES)
		max = EXCERPT_BYTES;
	long m = mask_copy(mk, src, srclen, masked, max + 2);
	const char *s = masked;
	size_t n = m < 0 ? strlen(masked) : (size_t)m;
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, used = 0;

	while (i < n) {
		char esc[5];
		const char *piece;
		size_t plen, step;
		uint32_t cp;

		if (u[i] >= 0x20 && u[i] < 0x7F) {
			piece = s + i;
			plen = step = 1;
		} else if (u[i] >= 0x80 && !ascii_only &&
		           (step = jscan_utf8_seq(u + i, n - i, &cp)) > 0 && cp >= 0xA0) {
			piece = s + i;
			plen = step;
		} else {
			snprintf(esc, sizeof(esc), "\\x%02X", u[i]);
			piece = esc;
			plen = 4;
			step = 1;
		}
		if (used + plen > max) {
			sbuf_puts(sb, ellipsis);
			return;
		}
		sbuf_add(sb, piece, plen);
		used += plen;
		i += step;
	}
}

/* ---- num_tickets, judged on its exact decimal text ------------------------
 * Not on the double cJSON made of it: 2147483647.00000001 rounds to an
 * integer, 1e-400 to zero, and neither is one. */

enum tickets {
	TICKETS_OK,
	TICKETS_NEGATIVE,
	TICKETS_TOO_LARGE,
	TICKETS_FRACTIONAL,
};

/* s[0..n) is a number RFC 8259 allows (jscan_strict_check made sure). The order of
 * the answers is a decision: negative first (so -1.5 and -1e999 are
 * "negative", the fix a person needs first), then too large (so 1e999 and
 * 2147483647.5 are "too large"), then fractional. -0 is 0. */
static enum tickets tickets_judge(const char *s, size_t n, int32_t *value)
{
	size_t i = 0, int_at, nint, frac_at = 0, nfrac = 0, ndig, first, last, k;
	bool neg = false, exp_neg = false, frac;
	int64_t exp = 0, point;
	uint64_t v = 0;

	if (i < n && s[i] == '-') {
		neg = true;
		i++;
	}
	int_at = i;
	while (i < n && jscan_is_digit(s[i]))
		i++;
	nint = i - int_at;
	if (i < n && s[i] == '.') {
		frac_at = ++i;
		while (i < n && jscan_is_digit(s[i]))
			i++;
		nfrac = i - frac_at;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			exp_neg = s[i++] == '-';
		/* Saturate: beyond a million the answer no longer changes. */
		while (i < n && jscan_is_digit(s[i])) {
			if (exp < 1000000)
				exp = exp * 10 + (s[i] - '0');
			i++;
		}
		if (exp_neg)
			exp = -exp;
	}
#define DIGIT(j) ((j) < nint ? s[int_at + (j)] : s[frac_at + (j)-nint])
	ndig = nint + nfrac;
	for (first = 0; first < ndig && DIGIT(first) == '0'; first++)
		;
	if (first == ndig) {
		*value = 0;
		return TICKETS_OK;
	}
	if (neg)
		return TICKETS_NEGATIVE;
	for (last = ndig - 1; DIGIT(last) == '0'; last--)
		;
	/* Digits before the decimal point, counted from the first non-zero. */
	point = (int64_t)nint + exp - (int64_t)first;
	if (point > 10)
		return TICKETS_TOO_LARGE;
	if (point <= 0)
		return TICKETS_FRACTIONAL;
	for (k = 0; k < (size_t)point; k++) {
		size_t j = first + k;

		v = v * 10 + (uint64_t)(j <= last ? DIGIT(j) - '0' : 0);
	}
#undef DIGIT
	frac = last - first + 1 > (size_t)point;
	/* 2147483647.5 is above the largest allowed too. */
	if (v > TICKETS_MAX || (v == TICKETS_MAX && frac))
		return TICKETS_TOO_LARGE;
	if (frac)
		return TICKETS_FRACTIONAL;
	*value = (int32_t)v;
	return TICKETS_OK;
}

/* ---- judging one element -------------------------------------------------- */

/* What became of one list element. */
struct outcome {
	char *detail; /* owned until moved into a refusal */
	int64_t hour;
	size_t code;
	int32_t tickets;
	int32_t offset;
	enum val_reason reason;
	bool refused;
	bool keyed; /* time and code passed: a (code, hour) key for duplicates */
};

/* One element as the judge sees it. */
struct element {
	const char *b; /* the whole body, as sent */
	struct jscan_span span;
	const cJSON *item;
	const struct val_request *req;
	struct grid *grid;
	const struct mask *mask; /* the token's: every quote of the body passes it */
};

/* One guide field of an object element. */
struct field {
	const char *name;
	const cJSON *item; /* the first member with this key, NULL when none */
	size_t vs, ve;     /* raw value text */
	size_t at[2];      /* where the key's first two copies start (their quote) */
	size_t copies;     /* members with this key */
};

/* ---- the connector's hour grid -------------------------------------------
 * iso_zone_offset() reads the zone's rules on every call; a response holds
 * few distinct hours, so each val_validate() call remembers the offsets it
 * asked for, in a small table indexed by quarter hour. */

#define GRID_SLOTS 256

struct grid {
	const char *zone;
	struct {
		int64_t epoch;
		int32_t offset;
		bool filled;
		bool ok;
	} slot[GRID_SLOTS];
};

/* The connector zone's offset at epoch; false when the zone has none. */
static bool grid_offset(struct grid *g, int64_t epoch, int32_t *offset)
{
	size_t i = (size_t)(((uint64_t)epoch / 900) % GRID_SLOTS);

	if (!g->slot[i].filled || g->slot[i].epoch != epoch) {
		g->slot[i].filled = true;
		g->slot[i].epoch = epoch;
		g->slot[i].ok = iso_zone_offset(g->zone, epoch, &g->slot[i].offset) == 0;
	}
	*offset = g->slot[i].offset;
	return g->slot[i].ok;
}

static const char *type_name(const cJSON *item)
{
	if (cJSON_IsString(item))
		return "a string";
	if (cJSON_IsNumber(item))
		return "a number";
	if (cJSON_IsTrue(item))
		return "true";
	if (cJSON_IsFalse(item))
		return "false";
	if (cJSON_IsNull(item))
		return "null";
	if (cJSON_IsArray(item))
		return "a list";
	if (cJSON_IsObject(item))
		return "an object";
	return "an unknown value";
}

static void sb_raw(struct sbuf *sb, const struct element *e, size_t vs, size_t ve)
{
	sb_excerpt(sb, e->mask, e->b + vs, ve - vs, EXCERPT_BYTES, false);
}

/* What a value is, and as sent unless that says it all: a string ("25"). */
static void sb_got(struct sbuf *sb, const struct element *e, const cJSON *item, size_t vs,
                   size_t ve)
{
	sbuf_puts(sb, type_name(item));
	if (cJSON_IsBool(item) || cJSON_IsNull(item))
		return;
	sbuf_puts(sb, " (");
	sb_raw(sb, e, vs, ve);
	sbuf_puts(sb, ")");
}

/* Writes an instant at the record's own offset, the way its sender reads it. */
static void sb_instant(struct sbuf *sb, int64_t epoch, int32_t offset)
{
	char buf[ISO_FORMAT_LEN];

	iso_format(epoch, offset, buf);
	if (buf[0] == '\0')
		iso_format(epoch, 0, buf);
	if (buf[0] == '\0')
		sbuf_printf(sb, "epoch %lld", (long long)epoch);
	else
		sbuf_puts(sb, buf);
}

static int code_cmp(const void *key, const void *elem)
{
	return strcmp(key, *(const char *const *)elem);
}

/* Walks the record's members: each guide field's first copy (its cJSON item
 * and raw text), how many copies each has, and the first key holding a lone
 * surrogate escape (*lone_key, its escape at *lone_at; SIZE_MAX when none).
 * cJSON keeps members in text order, so the k-th child is the k-th member. */
static void read_members(const struct element *e, struct field fs[3], struct jscan_member *lone_key,
                         size_t *lone_at)
{
	const char *const names[3] = {fs[0].name, fs[1].name, fs[2].name};
	size_t pos = e->span.start + 1;
	const cJSON *c;
	struct jscan_member m;

	*lone_at = SIZE_MAX;
	for (c = e->item->child; c && jscan_member_next(e->b, &pos, e->span.end, &m); c = c->next) {
		struct jscan_key_facts k;
		struct field *f;

		jscan_key_inspect(e->b + m.ks, m.ke - m.ks, names, 3, &k);
		if (k.lone != SIZE_MAX && *lone_at == SIZE_MAX) {
			*lone_key = m;
			*lone_at = m.ks + k.lone;
		}
		if (k.field < 0)
			continue;
		f = &fs[k.field];
		if (f->copies < 2)
			f->at[f->copies] = m.ks - 1;
		if (f->copies++ == 0) {
			f->item = c;
			f->vs = m.vs;
			f->ve = m.ve;
		}
	}
}

/* Appends the 6-byte escape at b[at] as sent, e.g. \ud800. */
static void sb_escape(struct sbuf *sb, const struct mask *mk, const char *b, size_t at)
{
	sb_excerpt(sb, mk, b + at, 6, EXCERPT_BYTES, true);
}

/* The string rules (SPEC §3) on one field's raw bytes; true when it passes. */
static bool check_string(const struct element *e, const struct field *f, struct outcome *o,
                         struct sbuf *sb)
{
	struct jscan_str_facts facts;

	/* vs..ve includes the quotes (jscan_member_next cannot fail on text cJSON
	 * accepted; the guard only keeps the arithmetic safe). */
	if (f->ve - f->vs < 2)
		return true;
	jscan_str_inspect(e->b + f->vs + 1, f->ve - f->vs - 2, &facts);
	if (facts.nul) {
		o->reason = VAL_STRING_NUL;
		sbuf_printf(sb, "%s ", f->name);
		sb_raw(sb, e, f->vs, f->ve);
		sbuf_puts(sb, " contains a NUL character (raw or \\u0000): the guide requires text "
		              "without NUL");
	} else if (facts.bad_utf8) {
		o->reason = VAL_STRING_INVALID_UTF8;
		sbuf_printf(sb, "%s ", f->name);
		sb_raw(sb, e, f->vs, f->ve);
		sbuf_printf(sb, " is not valid UTF-8 (byte 0x%02X): the guide requires UTF-8 text",
		            facts.bad_byte);
	} else if (facts.lone != SIZE_MAX) {
		size_t at = f->vs + 1 + facts.lone;

		o->reason = VAL_STRING_INVALID;
		sbuf_printf(sb, "%s ", f->name);
		sb_raw(sb, e, f->vs, f->ve);
		sbuf_puts(sb, " holds a lone UTF-16 surrogate escape ");
		sb_escape(sb, e->mask, e->b, at);
		sbuf_printf(sb,
		            " at byte %zu, which is no character: the guide requires text "
		            "(a surrogate escape only as a pair, e.g. \\ud83d\\ude00)",
		            at);
	} else if (facts.decoded > VAL_MAX_STRING_BYTES) {
		o->reason = VAL_STRING_TOO_LONG;
		sbuf_printf(sb, "%s ", f->name);
		sb_raw(sb, e, f->vs, f->ve);
		sbuf_printf(sb, " is %zu bytes long: the guide allows at most %d", facts.decoded,
		            VAL_MAX_STRING_BYTES);
	} else {
		return true;
	}
	return false;
}

static void judge_tickets(const struct element *e, const struct field *f, struct outcome *o,
                          struct sbuf *sb)
{
	enum tickets t = tickets_judge(e->b + f->vs, f->ve - f->vs, &o->tickets);

	if (t == TICKETS_OK)
		return;
	o->refused = true;
	sbuf_puts(sb, "num_tickets ");
	sb_raw(sb, e, f->vs, f->ve);
	if (t == TICKETS_NEGATIVE) {
		o->reason = VAL_TICKETS_NEGATIVE;
		sbuf_puts(sb, " is negative");
	} else if (t == TICKETS_TOO_LARGE) {
		o->reason = VAL_TICKETS_TOO_LARGE;
		sbuf_puts(sb, " is too large");
	} else {
		o->reason = VAL_TICKETS_FRACTIONAL;
		sbuf_puts(sb, " has a fractional part");
	}
	sbuf_printf(sb, ": the guide requires a whole number from 0 to %d", TICKETS_MAX);
}

/* Applies SPEC §3's record rules in order; the first that fails is the
 * reason. Leaves o->detail set when refused. Returns -1 out of memory.
 * A field that is null is there, of the wrong type, not missing. Every missing
 * field is named (a person fixes them at once); of wrong types, the first. The
 * string rules run on time, then ext_ref_code: NUL, then UTF-8, then length. */
static int judge(const struct element *e, struct outcome *o)
{
	const struct val_request *req = e->req;
	struct field fs[3] = {{.name = "time"}, {.name = "ext_ref_code"}, {.name = "num_tickets"}};
	struct field *tf = &fs[0], *cf = &fs[1], *nf = &fs[2];
	struct sbuf sb = {0};
	struct iso_instant t;
	enum iso_status st;
	const char *const *hit;
	struct jscan_member lone_key;
	size_t i, nmissing = 0, lone_at;
	int32_t zone_offset;

	memset(o, 0, sizeof(*o));
	o->refused = true;
	if (!cJSON_IsObject(e->item)) {
		o->reason = VAL_NOT_OBJECT;
		sbuf_puts(&sb, "element is ");
		sb_got(&sb, e, e->item, e->span.start, e->span.end);
		sbuf_puts(&sb, ", not an object: the guide requires an object with time, "
		               "ext_ref_code and num_tickets");
		goto refused;
	}
	read_members(e, fs, &lone_key, &lone_at);
	if (lone_at != SIZE_MAX) {
		o->reason = VAL_STRING_INVALID;
		sbuf_puts(&sb, "key \"");
		sb_excerpt(&sb, e->mask, e->b + lone_key.ks, lone_key.ke - lone_key.ks,
		           EXCERPT_BYTES, false);
		sbuf_puts(&sb, "\" holds a lone UTF-16 surrogate escape ");
		sb_escape(&sb, e->mask, e->b, lone_at);
		sbuf_printf(&sb,
		            " at byte %zu: it may be time, ext_ref_code or num_tickets cut short, "
		            "and the daemon does not guess; the guide requires keys that are text",
		            lone_at);
		goto refused;
	}
	for (i = 0; i < 3; i++) {
		if (fs[i].copies < 2)
			continue;
		o->reason = VAL_DUPLICATE_KEY;
		sbuf_printf(
		    &sb,
		    "key %s appears %zu times in this record (at bytes %zu and %zu%s%s): the "
		    "guide allows each field once, and the daemon does not guess which is "
		    "right",
		    fs[i].name, fs[i].copies, fs[i].at[0], fs[i].at[1],
		    fs[i].copies > 2 ? ", " : "", fs[i].copies > 2 ? ellipsis : "");
		goto refused;
	}
	for (i = 0; i < 3; i++) {
		if (fs[i].copies)
			continue;
		sbuf_puts(&sb, nmissing++ ? ", " : "missing ");
		sbuf_puts(&sb, fs[i].name);
	}
	if (nmissing) {
		o->reason = VAL_MISSING_FIELD;
		sbuf_puts(&sb, ": the guide requires time, ext_ref_code and num_tickets in every "
		               "record");
		goto refused;
	}
	for (i = 0; i < 3; i++) {
		bool ok = i < 2 ? cJSON_IsString(fs[i].item) : cJSON_IsNumber(fs[i].item);

		if (ok)
			continue;
		o->reason = VAL_WRONG_TYPE;
		sbuf_printf(&sb, "%s is ", fs[i].name);
		sb_got(&sb, e, fs[i].item, fs[i].vs, fs[i].ve);
		if (i == 0)
			sbuf_puts(&sb, ": the guide requires a string with an ISO 8601 date-time "
			               "and offset, e.g. \"2023-02-08T00:00:00-03:00\"");
		else if (i == 1)
			sbuf_puts(&sb, ": the guide requires a string, one of the codes requested, "
			               "e.g. \"0001\"");
		else
			sbuf_puts(&sb,
			          ": the guide requires a JSON number without quotes, e.g. 25");
		goto refused;
	}
	if (!check_string(e, tf, o, &sb) || !check_string(e, cf, o, &sb))
		goto refused;

	/* No NUL, so valuestring holds the whole decoded text. */
	st = iso_parse(tf->item->valuestring, strlen(tf->item->valuestring), &t);
	if (st != ISO_OK || !iso_on_hour(&t)) {
		sbuf_puts(&sb, "time ");
		sb_raw(&sb, e, tf->vs, tf->ve);
		if (st == ISO_NO_OFFSET) {
			o->reason = VAL_TIME_NO_OFFSET;
			sbuf_puts(&sb,
			          " has no UTC offset: the guide requires an offset or Z, e.g. "
			          "\"2023-02-08T00:00:00-03:00\"");
		} else if (st != ISO_OK) {
			o->reason = VAL_TIME_UNPARSEABLE;
			sbuf_puts(&sb, " is not an ISO 8601 date-time: the guide requires e.g. "
			               "\"2023-02-08T00:00:00-03:00\"");
		} else {
			o->reason = VAL_TIME_NOT_ON_HOUR;
			sbuf_puts(&sb, " is not the start of an hour: the guide requires minutes, "
			               "seconds and any fraction to be zero");
		}
		goto refused;
	}
	/* On the hour in its own offset, but on the connector's grid? */
	if (!grid_offset(e->grid, t.epoch, &zone_offset) || (t.epoch + zone_offset) % 3600 != 0) {
		o->reason = VAL_TIME_NOT_ON_HOUR;
		sbuf_puts(&sb, "time ");
		sb_raw(&sb, e, tf->vs, tf->ve);
		if (!grid_offset(e->grid, t.epoch, &zone_offset)) {
			sbuf_printf(&sb,
			            " cannot be placed on the connector's hours: its zone %s has "
			            "no known offset then on this host",
			            e->grid->zone);
			goto refused;
		}
		sbuf_puts(&sb, " is ");
		sb_instant(&sb, t.epoch, zone_offset);
		sbuf_printf(&sb,
		            " in the connector's zone %s, not the start of an hour there: the "
		            "guide requires the connector's hours, e.g. ",
		            e->grid->zone);
		/* The hour it falls in, floor division for instants before 1970. */
		int64_t local = t.epoch + zone_offset;
		int64_t start = local - ((local % 3600) + 3600) % 3600 - zone_offset;
		sb_instant(&sb, start, zone_offset);
		goto refused;
	}
	o->hour = t.epoch;
	o->offset = t.offset;
	if (t.epoch < req->from || t.epoch >= req->to) {
		o->reason = VAL_TIME_OUTSIDE_WINDOW;
		sbuf_puts(&sb, "time ");
		sb_raw(&sb, e, tf->vs, tf->ve);
		sbuf_puts(&sb, " is outside the requested window: from ");
		sb_instant(&sb, req->from, t.offset);
		sbuf_puts(&sb, " up to, not including, ");
		sb_instant(&sb, req->to, t.offset);
		goto refused;
	}
	if (t.epoch > req->now) {
		o->reason = VAL_TIME_IN_FUTURE;
		sbuf_puts(&sb, "time ");
		sb_raw(&sb, e, tf->vs, tf->ve);
		sbuf_puts(&sb, " is an hour that has not started yet (now is ");
		sb_instant(&sb, req->now, t.offset);
		sbuf_puts(&sb, ")");
		goto refused;
	}
	/* Exact bytes: "0001" is not "1" (SPEC §2). */
	hit = req->ncodes ? bsearch(cf->item->valuestring, req->codes, req->ncodes,
	                            sizeof(*req->codes), code_cmp)
	                  : NULL;
	if (!hit) {
		o->reason = VAL_UNKNOWN_CODE;
		sbuf_puts(&sb, "ext_ref_code ");
		sb_raw(&sb, e, cf->vs, cf->ve);
		sbuf_puts(&sb, " was not requested: the request asked for ");
		if (req->ncodes == 0)
			sbuf_puts(&sb, "no codes");
		for (i = 0; i < req->ncodes && i < LIST_MAX; i++) {
			sbuf_puts(&sb, i ? ", \"" : "\"");
			sb_excerpt(&sb, e->mask, req->codes[i], strlen(req->codes[i]),
			           EXCERPT_BYTES, false);
			sbuf_puts(&sb, "\"");
		}
		if (req->ncodes > LIST_MAX)
			sbuf_printf(&sb, " and %zu more", req->ncodes - LIST_MAX);
		sbuf_puts(&sb, " (exact match)");
		goto refused;
	}
	o->code = (size_t)(hit - req->codes);
	o->keyed = true;
	o->refused = false;
	judge_tickets(e, nf, o, &sb);
	if (!o->refused)
		return 0;
refused:
	o->detail = sbuf_take(&sb);
	return o->detail ? 0 : -1;
}

/* ---- duplicates ----------------------------------------------------------- */

struct key {
	size_t code;
	int64_t hour;
	size_t index;
};

static int key_cmp(const void *pa, const void *pb)
{
	const struct key *a = pa, *b = pb;

	if (a->code != b->code)
		return a->code < b->code ? -1 : 1;
	if (a->hour != b->hour)
		return a->hour < b->hour ? -1 : 1;
	return (a->index > b->index) - (a->index < b->index);
}

/* Refuses every copy of a (code, hour) seen more than once: the daemon does
 * not guess which is right. A copy already refused for num_tickets keeps that
 * reason (it is the first rule it broke) but still counts as a copy, so its
 * twin is refused too. */
static int mark_duplicates(const struct key *keys, size_t nkeys, struct outcome *outs,
                           const struct val_request *req, const struct mask *mk)
{
	size_t g = 0;

	while (g < nkeys) {
		size_t end = g + 1, i, j;

		while (end < nkeys && keys[end].code == keys[g].code &&
		       keys[end].hour == keys[g].hour)
			end++;
		for (i = g; end - g > 1 && i < end; i++) {
			struct outcome *o = &outs[keys[i].index];
			struct sbuf sb = {0};
			size_t named = 0;

			if (o->refused) {
				sbuf_puts(&sb, o->detail);
				sbuf_printf(&sb,
				            " (and this code and hour appear %zu times in this "
				            "response)",
				            end - g);
			} else {
				const char *code = req->codes[keys[i].code];

				sbuf_puts(&sb, "ext_ref_code \"");
				sb_excerpt(&sb, mk, code, strlen(code), EXCERPT_BYTES, false);
				sbuf_puts(&sb, "\" and hour ");
				sb_instant(&sb, o->hour, o->offset);
				sbuf_printf(&sb, " appear %zu times in this response (", end - g);
				for (j = g; j < end && named < LIST_MAX; j++) {
					if (j == i)
						continue;
					if (named++)
						sbuf_puts(&sb, ", ");
					else
						sbuf_puts(&sb, end - g > 2 ? "also elements "
						                           : "also element ");
					sbuf_printf(&sb, "%zu", keys[j].index);
				}
				if (end - g - 1 > LIST_MAX)
					sbuf_puts(&sb, ellipsis);
				sbuf_puts(&sb, "): the guide allows one record per code and hour, "
				               "and the daemon does not guess which is right");
				o->reason = VAL_DUPLICATE;
				o->refused = true;
			}
			free(o->detail);
			o->detail = sbuf_take(&sb);
			if (!o->detail)
				return -1;
		}
		g = end;
	}
	return 0;
}

/* ---- a refused record's JSON text ---------------------------------------- */

/* The raw text, cut at VAL_MAX_JSON_BYTES on a character boundary. Inside
 * strings, raw control bytes become \u00XX (which is what they should have
 * been) and bytes that are not UTF-8 become U+FFFD, so the text is valid
 * UTF-8 without NUL, as a PostgreSQL text column needs. No "…" marker: the
 * column holds a prefix of what was sent, nothing else. */
static char *render_json(const char *body, struct jscan_span whole, const struct mask *mk)
{
	/* Masked first, then cut (SPEC §3). Each masked byte takes at least
	 * one byte of the result, so VAL_MAX_JSON_BYTES of them are enough. */
	char *b = malloc(VAL_MAX_JSON_BYTES + 1);
	if (!b)
		return NULL;
	long m =
	    mask_copy(mk, body + whole.start, whole.end - whole.start, b, VAL_MAX_JSON_BYTES + 1);
	if (m < 0) {
		free(b);
		return NULL;
	}
	struct jscan_span sp = {0, (size_t)m};
	const unsigned char *u = (const unsigned char *)b;
	struct sbuf sb = {0};
	bool in_str = false;
	size_t i = sp.start;

	while (i < sp.end) {
		char esc[7];
		const char *piece = b + i;
		size_t plen = 1, step = 1;
		uint32_t cp;

		if (!in_str) {
			if (b[i] == '"')
				in_str = true;
		} else if (b[i] == '\\' && i + 1 < sp.end) {
			plen = step = 2; /* cJSON made sure it is an ASCII escape */
		} else if (b[i] == '"') {
			in_str = false;
		} else if (u[i] < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04X", u[i]);
			piece = esc;
			plen = 6;
		} else if (u[i] >= 0x80) {
			plen = step = jscan_utf8_seq(u + i, sp.end - i, &cp);
			if (plen == 0) {
				piece = "\xEF\xBF\xBD";
				plen = 3;
				step = 1;
			}
		}
		if (sb.len + plen > VAL_MAX_JSON_BYTES)
			break;
		sbuf_add(&sb, piece, plen);
		i += step;
	}
	free(b);
	return sbuf_take(&sb);
}

/* ---- the whole response --------------------------------------------------- */

static int refuse(struct val_result *out, enum val_whole whole, struct sbuf *sb)
{
	out->error = sbuf_take(sb);
	out->refused = out->error != NULL; /* -1 leaves *out zeroed */
	out->whole = out->error ? whole : VAL_WHOLE_NONE;
	return out->error ? 0 : -1;
}

static bool contains_nocase(const char *b, size_t len, const char *needle)
{
	size_t n = strlen(needle), i;

	for (i = 0; i + n <= len; i++) {
		if (strncasecmp(b + i, needle, n) == 0)
			return true;
	}
	return false;
}

/* cJSON refused parsed (buf as sent, lone surrogates patched): say what
 * buf looked like instead. */
static int refuse_not_json(struct val_result *out, const struct mask *mk, const char *buf,
                           const char *parsed, size_t len, size_t err_at)
{
	struct sbuf sb = {0};
	size_t p = jscan_skip_ws(buf, jscan_skip_bom(buf, len), len);
	const char *end = NULL;
	cJSON *root;

	if (p == len) {
		sbuf_puts(&sb, "response is an empty body (only white space): the guide requires "
		               "a bare JSON list, [] when there are no sales");
		return refuse(out, VAL_WHOLE_NOT_JSON, &sb);
	}
	if (buf[p] == '<') {
		bool html = contains_nocase(buf + p, len - p, "<html") ||
		            contains_nocase(buf + p, len - p, "<!doctype");

		sbuf_printf(&sb, "response is not JSON but %s: the guide requires a bare JSON list",
		            html ? "an HTML page" : "XML");
		return refuse(out, VAL_WHOLE_NOT_JSON, &sb);
	}
	/* Did a whole value parse, with something after it? */
	root = cJSON_ParseWithLengthOpts(parsed, len + 1, &end, 0);
	if (root) {
		cJSON_Delete(root);
		sbuf_printf(&sb,
		            "response is JSON followed by other text at byte %zu: the guide "
		            "requires a bare JSON list and nothing after it but white space",
		            jscan_skip_ws(buf, (size_t)(end - parsed), len));
		return refuse(out, VAL_WHOLE_NOT_JSON, &sb);
	}
	/* Looks like JSON that went wrong, or like something else entirely. */
	if (buf[p] == '[' || buf[p] == '{')
		sbuf_printf(&sb,
		            "response is not valid JSON (parsing stopped at byte %zu): ", err_at);
	else
		sbuf_puts(&sb, "response is not JSON but ");
	sbuf_puts(&sb, "text starting with '");
	sb_excerpt(&sb, mk, buf + p, len - p, EXCERPT_BYTES, true);
	sbuf_puts(&sb, "': the guide requires a bare JSON list");
	return refuse(out, VAL_WHOLE_NOT_JSON, &sb);
}

static int refuse_not_list(struct val_result *out, const struct mask *mk, const cJSON *root)
{
	struct sbuf sb = {0};
	const cJSON *c;
	size_t i = 0;

	sbuf_puts(&sb, "response is ");
	if (cJSON_IsObject(root) && !root->child)
		sbuf_puts(&sb, "an empty object");
	else if (cJSON_IsObject(root))
		sbuf_puts(&sb, "an object with keys ");
	else
		sbuf_puts(&sb, type_name(root));
	for (c = cJSON_IsObject(root) ? root->child : NULL; c; c = c->next, i++) {
		if (i == LIST_MAX) {
			sbuf_printf(&sb, ", %s", ellipsis);
			break;
		}
		if (i)
			sbuf_puts(&sb, ", ");
		sb_excerpt(&sb, mk, c->string, strlen(c->string), EXCERPT_BYTES, false);
	}
	sbuf_puts(&sb, ": the guide requires a bare list");
	return refuse(out, VAL_WHOLE_NOT_LIST, &sb);
}

static int refuse_strict(struct val_result *out, const struct mask *mk, const char *buf, size_t len,
                         enum jscan_fault fault, size_t at)
{
	struct sbuf sb = {0};

	if (fault == JSCAN_TRAILING) {
		sbuf_printf(&sb,
		            "response is JSON followed by other text at byte %zu: the guide "
		            "requires a bare JSON list and nothing after it but white space",
		            at);
	} else if (fault == JSCAN_ESCAPE) {
		sbuf_puts(&sb, "response is not valid JSON: escape '");
		sb_excerpt(&sb, mk, buf + at, len - at < 6 ? len - at : 6, EXCERPT_BYTES, true);
		sbuf_printf(&sb, "' at byte %zu is not \\u and four hex digits", at);
	} else if (fault == JSCAN_CONTROL) {
		sbuf_printf(&sb,
		            "response is not valid JSON: control byte 0x%02X outside a string "
		            "at byte %zu",
		            (unsigned char)buf[at], at);
	} else {
		size_t e = at;

		while (e < len && jscan_is_number_char(buf[e]))
			e++;
		sbuf_puts(&sb, "response is not valid JSON: malformed number '");
		sb_excerpt(&sb, mk, buf + at, e - at, EXCERPT_BYTES, true);
		sbuf_printf(&sb,
		            "' at byte %zu (JSON numbers have no leading zeros and a digit on "
		            "each side of the point)",
		            at);
	}
	return refuse(out, VAL_WHOLE_NOT_JSON, &sb);
}

/* Judges the list; the caller frees what *out holds on failure. */
static int judge_list(const char *buf, size_t len, const cJSON *root, const struct val_request *req,
                      const struct mask *mk, struct val_result *out)
{
	struct jscan_span *spans = NULL;
	struct outcome *outs = NULL;
	struct key *keys = NULL;
	size_t n = 0, i, nkeys = 0, nref = 0, nrec = 0;
	const cJSON *item;
	struct grid *grid;
	int rc = -1;

	if (jscan_element_spans(buf, len, &spans, &n) != 0)
		return -1;
	grid = calloc(1, sizeof(*grid));
	if (!grid) {
		free(spans);
		return -1;
	}
	grid->zone = req->zone ? req->zone : "UTC";
	out->received = n;
	if (n == 0) {
		rc = 0;
		goto done;
	}
	outs = calloc(n, sizeof(*outs));
	keys = calloc(n, sizeof(*keys));
	if (!outs || !keys)
		goto done;
	for (i = 0, item = root->child; i < n && item; i++, item = item->next) {
		struct element e = {buf, spans[i], item, req, grid, mk};

		if (judge(&e, &outs[i]) != 0)
			goto done;
		if (outs[i].keyed)
			keys[nkeys++] = (struct key){outs[i].code, outs[i].hour, i};
	}
	/* Sorting, not comparing pairs: 100,000 records stay well under a second. */
	qsort(keys, nkeys, sizeof(*keys), key_cmp);
	if (mark_duplicates(keys, nkeys, outs, req, mk) != 0)
		goto done;
	for (i = 0; i < n; i++)
		nref += outs[i].refused;
	nrec = n - nref;
	if (nrec && !(out->records = calloc(nrec, sizeof(*out->records))))
		goto done;
	if (nref && !(out->refusals = calloc(nref, sizeof(*out->refusals))))
		goto done;
	/* keys is in (code, hour) order: the records' order too. */
	for (i = 0; i < nkeys; i++) {
		const struct outcome *o = &outs[keys[i].index];

		if (!o->refused)
			out->records[out->nrecords++] =
			    (struct val_record){o->code, o->hour, o->tickets};
	}
	for (i = 0; i < n; i++) {
		struct val_refusal *r;

		if (!outs[i].refused)
			continue;
		r = &out->refusals[out->nrefusals++];
		r->reason = outs[i].reason;
		r->index = i;
		r->detail = outs[i].detail;
		outs[i].detail = NULL;
		r->json = render_json(buf, spans[i], mk);
		if (!r->json)
			goto done;
	}
	rc = 0;
done:
	for (i = 0; outs && i < n; i++)
		free(outs[i].detail);
	free(outs);
	free(keys);
	free(spans);
	free(grid);
	return rc;
}

int val_validate(const char *body, size_t len, const struct val_request *req,
                 struct val_result *out)
{
	struct sbuf sb = {0};
	const char *end = NULL;
	enum jscan_fault fault;
	size_t at = 0;
	cJSON *root;
	char *buf, *parsed;
	struct mask *mk;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len == 0) {
		sbuf_puts(&sb, "response is an empty body: the guide requires a bare JSON list, [] "
		               "when there are no sales");
		return refuse(out, VAL_WHOLE_NOT_JSON, &sb);
	}
	if (len == SIZE_MAX)
		return -1;
	/* cJSON with require_null_terminated wants the terminator inside the
	 * given length: it must find it right after the value and white space. */
	/* Every quote of the body passes the token's mask (SPEC §3). */
	if (mask_new(req->secret, &mk) != 0)
		return -1;
	buf = malloc(len + 1);
	if (!buf) {
		mask_free(mk);
		return -1;
	}
	memcpy(buf, body, len);
	buf[len] = '\0';
	/* buf stays the text as sent, for everything the judge reads and
	 * quotes; cJSON reads parsed, where lone surrogates are patched. */
	parsed = jscan_patch_lone_surrogates(buf, len);
	if (!parsed) {
		free(buf);
		mask_free(mk);
		return -1;
	}
	root = cJSON_ParseWithLengthOpts(parsed, len + 1, &end, 1);
	if (!root) {
		/* cJSON reports running out of memory as a parse error too; the
		 * run is then refused as not JSON and retried, not lost. */
		rc = refuse_not_json(out, mk, buf, parsed, len, end ? (size_t)(end - parsed) : 0);
	} else if ((fault = jscan_strict_check(buf, len, &at)) != JSCAN_OK) {
		rc = refuse_strict(out, mk, buf, len, fault, at);
	} else if (!cJSON_IsArray(root)) {
		rc = refuse_not_list(out, mk, root);
	} else {
		rc = judge_list(buf, len, root, req, mk, out);
	}
	cJSON_Delete(root);
	if (parsed != buf)
		free(parsed);
	free(buf);
	mask_free(mk);
	if (rc != 0)
		val_result_free(out);
	return rc;
}

void val_result_free(struct val_result *r)
{
	size_t i;

	if (!r)
		return;
	free(r->error);
	free(r->records);
	for (i = 0; r->refusals && i < r->nrefusals; i++) {
		free(r->refusals[i].detail);
		free(r->refusals[i].json);
	}
	free(r->refusals);
	memset(r, 0, sizeof(*r));
}
