/* validate_record: the guide's record rules (SPEC §3) on one element of the
 * list, in their order, and the duplicate rule across the list: each
 * record accepted with its (code, hour, tickets), or refused with the first
 * rule it broke and a message a person can act on. Pure, like the rest of
 * the validator; validate.c's opening comment holds the decisions these
 * rules implement. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "isotime.h"
#include "jscan.h"
#include "mask.h"
#include "sbuf.h"
#include "validate_internal.h"

#define TICKETS_MAX 2147483647

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

/* One guide field of an object element. */
struct field {
	const char *name;
	const cJSON *item; /* the first member with this key, NULL when none */
	size_t vs, ve;     /* raw value text */
	size_t at[2];      /* where the key's first two copies start (their quote) */
	size_t copies;     /* members with this key */
};

enum { F_TIME, F_CODE, F_TICKETS, NFIELDS }; /* the guide's fields, in its order */

/* One object element as its rules learn it. */
struct record {
	struct field fs[NFIELDS];
	struct jscan_member lone_key; /* the first key holding a lone surrogate escape, */
	size_t lone_at;               /* and where that escape starts; SIZE_MAX when none */
	struct iso_instant t;         /* time, once rule_time_format parsed it */
};

/* The connector zone's offset at epoch; false when the zone has none. */
static bool grid_offset(struct grid *g, int64_t epoch, int32_t *offset)
{
	size_t i = (size_t)(((uint64_t)epoch / 900) % VALI_GRID_SLOTS);

	if (!g->slot[i].filled || g->slot[i].epoch != epoch) {
		g->slot[i].filled = true;
		g->slot[i].epoch = epoch;
		g->slot[i].ok = iso_zone_offset(g->zone, epoch, &g->slot[i].offset) == 0;
	}
	*offset = g->slot[i].offset;
	return g->slot[i].ok;
}

static void sb_raw(struct sbuf *sb, const struct element *e, size_t vs, size_t ve)
{
	vali_excerpt(sb, e->mask, e->b + vs, ve - vs, VALI_EXCERPT_BYTES, false);
}

/* What a value is, and as sent unless that says it all: a string ("25"). */
static void sb_got(struct sbuf *sb, const struct element *e, const cJSON *item, size_t vs,
                   size_t ve)
{
	sbuf_puts(sb, vali_type_name(item));
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
 * surrogate escape (r->lone_key, its escape at r->lone_at). cJSON keeps
 * members in text order, so the k-th child is the k-th member. */
static void read_members(const struct element *e, struct record *r)
{
	const char *const names[NFIELDS] = {r->fs[F_TIME].name, r->fs[F_CODE].name,
	                                    r->fs[F_TICKETS].name};
	size_t pos = e->span.start + 1;
	const cJSON *c;
	struct jscan_member m;

	for (c = e->item->child; c && jscan_member_next(e->b, &pos, e->span.end, &m); c = c->next) {
		struct jscan_key_facts k;
		struct field *f;

		jscan_key_inspect(e->b + m.ks, m.ke - m.ks, names, NFIELDS, &k);
		if (k.lone != SIZE_MAX && r->lone_at == SIZE_MAX) {
			r->lone_key = m;
			r->lone_at = m.ks + k.lone;
		}
		if (k.field < 0)
			continue;
		f = &r->fs[k.field];
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
	vali_excerpt(sb, mk, b + at, 6, VALI_EXCERPT_BYTES, true);
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

/* ---- the record rules, one step each --------------------------------------
 * Each rule reads one element (e) and what earlier rules learnt of it (r);
 * true when it passes, else o->reason set and the message written to sb. */

static bool rule_object(const struct element *e, struct record *r, struct outcome *o,
                        struct sbuf *sb)
{
	(void)r;
	if (cJSON_IsObject(e->item))
		return true;
	o->reason = VAL_NOT_OBJECT;
	sbuf_puts(sb, "element is ");
	sb_got(sb, e, e->item, e->span.start, e->span.end);
	sbuf_puts(sb, ", not an object: the guide requires an object with time, "
	              "ext_ref_code and num_tickets");
	return false;
}

/* Every key is text: a lone surrogate may hide one of the three. */
static bool rule_keys_text(const struct element *e, struct record *r, struct outcome *o,
                           struct sbuf *sb)
{
	if (r->lone_at == SIZE_MAX)
		return true;
	o->reason = VAL_STRING_INVALID;
	sbuf_puts(sb, "key \"");
	vali_excerpt(sb, e->mask, e->b + r->lone_key.ks, r->lone_key.ke - r->lone_key.ks,
	             VALI_EXCERPT_BYTES, false);
	sbuf_puts(sb, "\" holds a lone UTF-16 surrogate escape ");
	sb_escape(sb, e->mask, e->b, r->lone_at);
	sbuf_printf(sb,
	            " at byte %zu: it may be time, ext_ref_code or num_tickets cut short, "
	            "and the daemon does not guess; the guide requires keys that are text",
	            r->lone_at);
	return false;
}

static bool rule_keys_once(const struct element *e, struct record *r, struct outcome *o,
                           struct sbuf *sb)
{
	const struct field *f;

	(void)e;
	for (f = r->fs; f < r->fs + NFIELDS; f++) {
		if (f->copies < 2)
			continue;
		o->reason = VAL_DUPLICATE_KEY;
		sbuf_printf(
		    sb,
		    "key %s appears %zu times in this record (at bytes %zu and %zu%s%s): the "
		    "guide allows each field once, and the daemon does not guess which is "
		    "right",
		    f->name, f->copies, f->at[0], f->at[1], f->copies > 2 ? ", " : "",
		    f->copies > 2 ? VALI_ELLIPSIS : "");
		return false;
	}
	return true;
}

/* Every missing field is named: a person fixes them at once. */
static bool rule_fields_present(const struct element *e, struct record *r, struct outcome *o,
                                struct sbuf *sb)
{
	size_t i, nmissing = 0;

	(void)e;
	for (i = 0; i < NFIELDS; i++) {
		if (r->fs[i].copies)
			continue;
		sbuf_puts(sb, nmissing++ ? ", " : "missing ");
		sbuf_puts(sb, r->fs[i].name);
	}
	if (!nmissing)
		return true;
	o->reason = VAL_MISSING_FIELD;
	sbuf_puts(sb, ": the guide requires time, ext_ref_code and num_tickets in every record");
	return false;
}

/* Of wrong types, the first is named. A field that is null is there, of
 * the wrong type, not missing. */
static bool rule_field_types(const struct element *e, struct record *r, struct outcome *o,
                             struct sbuf *sb)
{
	static const char *const want[NFIELDS] = {
	    [F_TIME] = ": the guide requires a string with an ISO 8601 date-time and offset, "
	               "e.g. \"2023-02-08T00:00:00-03:00\"",
	    [F_CODE] = ": the guide requires a string, one of the codes requested, e.g. \"0001\"",
	    [F_TICKETS] = ": the guide requires a JSON number without quotes, e.g. 25",
	};
	size_t i;

	for (i = 0; i < NFIELDS; i++) {
		const struct field *f = &r->fs[i];

		if (i == F_TICKETS ? cJSON_IsNumber(f->item) : cJSON_IsString(f->item))
			continue;
		o->reason = VAL_WRONG_TYPE;
		sbuf_printf(sb, "%s is ", f->name);
		sb_got(sb, e, f->item, f->vs, f->ve);
		sbuf_puts(sb, want[i]);
		return false;
	}
	return true;
}

static bool rule_time_text(const struct element *e, struct record *r, struct outcome *o,
                           struct sbuf *sb)
{
	return check_string(e, &r->fs[F_TIME], o, sb);
}

static bool rule_code_text(const struct element *e, struct record *r, struct outcome *o,
                           struct sbuf *sb)
{
	return check_string(e, &r->fs[F_CODE], o, sb);
}

/* An ISO 8601 date-time with an offset, on the hour in that offset. */
static bool rule_time_format(const struct element *e, struct record *r, struct outcome *o,
                             struct sbuf *sb)
{
	const struct field *tf = &r->fs[F_TIME];
	/* No NUL (rule_time_text), so valuestring holds the whole decoded text. */
	enum iso_status st = iso_parse(tf->item->valuestring, strlen(tf->item->valuestring), &r->t);

	if (st == ISO_OK && iso_on_hour(&r->t))
		return true;
	sbuf_puts(sb, "time ");
	sb_raw(sb, e, tf->vs, tf->ve);
	if (st == ISO_NO_OFFSET) {
		o->reason = VAL_TIME_NO_OFFSET;
		sbuf_puts(sb, " has no UTC offset: the guide requires an offset or Z, e.g. "
		              "\"2023-02-08T00:00:00-03:00\"");
	} else if (st != ISO_OK) {
		o->reason = VAL_TIME_UNPARSEABLE;
		sbuf_puts(sb, " is not an ISO 8601 date-time: the guide requires e.g. "
		              "\"2023-02-08T00:00:00-03:00\"");
	} else {
		o->reason = VAL_TIME_NOT_ON_HOUR;
		sbuf_puts(sb, " is not the start of an hour: the guide requires minutes, "
		              "seconds and any fraction to be zero");
	}
	return false;
}

/* On the hour in its own offset, but on the connector's grid? */
static bool rule_time_grid(const struct element *e, struct record *r, struct outcome *o,
                           struct sbuf *sb)
{
	const struct field *tf = &r->fs[F_TIME];
	int64_t epoch = r->t.epoch, local, start;
	int32_t zone_offset;
	bool known = grid_offset(e->grid, epoch, &zone_offset);

	if (known && (epoch + zone_offset) % 3600 == 0)
		return true;
	o->reason = VAL_TIME_NOT_ON_HOUR;
	sbuf_puts(sb, "time ");
	sb_raw(sb, e, tf->vs, tf->ve);
	if (!known) {
		sbuf_printf(sb,
		            " cannot be placed on the connector's hours: its zone %s has no known "
		            "offset then on this host",
		            e->grid->zone);
		return false;
	}
	sbuf_puts(sb, " is ");
	sb_instant(sb, epoch, zone_offset);
	sbuf_printf(sb,
	            " in the connector's zone %s, not the start of an hour there: the guide "
	            "requires the connector's hours, e.g. ",
	            e->grid->zone);
	/* The hour it falls in, floor division for instants before 1970. */
	local = epoch + zone_offset;
	start = local - ((local % 3600) + 3600) % 3600 - zone_offset;
	sb_instant(sb, start, zone_offset);
	return false;
}

/* From here on the record has its hour (duplicates are keyed by it). */
static bool rule_time_window(const struct element *e, struct record *r, struct outcome *o,
                             struct sbuf *sb)
{
	const struct val_request *req = e->req;

	o->hour = r->t.epoch;
	o->offset = r->t.offset;
	if (r->t.epoch >= req->from && r->t.epoch < req->to)
		return true;
	o->reason = VAL_TIME_OUTSIDE_WINDOW;
	sbuf_puts(sb, "time ");
	sb_raw(sb, e, r->fs[F_TIME].vs, r->fs[F_TIME].ve);
	sbuf_puts(sb, " is outside the requested window: from ");
	sb_instant(sb, req->from, r->t.offset);
	sbuf_puts(sb, " up to, not including, ");
	sb_instant(sb, req->to, r->t.offset);
	return false;
}

static bool rule_time_started(const struct element *e, struct record *r, struct outcome *o,
                              struct sbuf *sb)
{
	if (r->t.epoch <= e->req->now)
		return true;
	o->reason = VAL_TIME_IN_FUTURE;
	sbuf_puts(sb, "time ");
	sb_raw(sb, e, r->fs[F_TIME].vs, r->fs[F_TIME].ve);
	sbuf_puts(sb, " is an hour that has not started yet (now is ");
	sb_instant(sb, e->req->now, r->t.offset);
	sbuf_puts(sb, ")");
	return false;
}

/* Exact bytes: "0001" is not "1" (SPEC §2). Time and code passed: the
 * record is keyed for the duplicate rule, whatever num_tickets says. */
static bool rule_code_requested(const struct element *e, struct record *r, struct outcome *o,
                                struct sbuf *sb)
{
	const struct val_request *req = e->req;
	const struct field *cf = &r->fs[F_CODE];
	const char *const *hit = req->ncodes ? bsearch(cf->item->valuestring, req->codes,
	                                               req->ncodes, sizeof(*req->codes), code_cmp)
	                                     : NULL;
	size_t i;

	if (hit) {
		o->code = (size_t)(hit - req->codes);
		o->keyed = true;
		return true;
	}
	o->reason = VAL_UNKNOWN_CODE;
	sbuf_puts(sb, "ext_ref_code ");
	sb_raw(sb, e, cf->vs, cf->ve);
	sbuf_puts(sb, " was not requested: the request asked for ");
	if (req->ncodes == 0)
		sbuf_puts(sb, "no codes");
	for (i = 0; i < req->ncodes && i < VALI_LIST_MAX; i++) {
		sbuf_puts(sb, i ? ", \"" : "\"");
		vali_excerpt(sb, e->mask, req->codes[i], strlen(req->codes[i]), VALI_EXCERPT_BYTES,
		             false);
		sbuf_puts(sb, "\"");
	}
	if (req->ncodes > VALI_LIST_MAX)
		sbuf_printf(sb, " and %zu more", req->ncodes - VALI_LIST_MAX);
	sbuf_puts(sb, " (exact match)");
	return false;
}

static bool rule_tickets(const struct element *e, struct record *r, struct outcome *o,
                         struct sbuf *sb)
{
	const struct field *f = &r->fs[F_TICKETS];
	enum tickets t = tickets_judge(e->b + f->vs, f->ve - f->vs, &o->tickets);

	if (t == TICKETS_OK)
		return true;
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
	return false;
}

/* SPEC §3's record rules in their order: the first that fails is the
 * reason. The string rules run on time, then ext_ref_code: NUL, then UTF-8,
 * then a lone surrogate, then length (check_string). */
static bool (*const rules[])(const struct element *, struct record *, struct outcome *,
                             struct sbuf *) = {
    rule_object,         /* not_an_object */
    rule_keys_text,      /* invalid_string (a key) */
    rule_keys_once,      /* duplicate_key */
    rule_fields_present, /* missing_field */
    rule_field_types,    /* wrong_type */
    rule_time_text,      /* string_has_nul, string_invalid_utf8, invalid_string, string_too_long */
    rule_code_text,      /* the same, on ext_ref_code */
    rule_time_format,    /* time_without_offset, time_unparseable, time_not_on_hour */
    rule_time_grid,      /* time_not_on_hour (the connector's hours) */
    rule_time_window,    /* time_outside_window */
    rule_time_started,   /* time_in_future */
    rule_code_requested, /* unknown_ext_ref_code */
    rule_tickets,        /* num_tickets_negative, num_tickets_too_large, num_tickets_fractional */
};

/* Leaves o->detail set when refused. Returns -1 out of memory. */
int vali_judge(const struct element *e, struct outcome *o)
{
	struct record r = {
	    .fs = {[F_TIME] = {.name = "time"},
	           [F_CODE] = {.name = "ext_ref_code"},
	           [F_TICKETS] = {.name = "num_tickets"}},
	    .lone_at = SIZE_MAX,
	};
	struct sbuf sb = {0};
	size_t i;

	memset(o, 0, sizeof(*o));
	o->refused = true;
	if (cJSON_IsObject(e->item))
		read_members(e, &r);
	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		if (!rules[i](e, &r, o, &sb)) {
			o->detail = sbuf_take(&sb);
			return o->detail ? 0 : -1;
		}
	}
	o->refused = false;
	return 0;
}

static int key_cmp(const void *pa, const void *pb)
{
	const struct key *a = pa, *b = pb;

	if (a->code != b->code)
		return a->code < b->code ? -1 : 1;
	if (a->hour != b->hour)
		return a->hour < b->hour ? -1 : 1;
	return (a->index > b->index) - (a->index < b->index);
}

/* Sorts keys into (code, hour) order, then refuses every copy of a
 * (code, hour) seen more than once: the daemon does not guess which is
 * right. A copy already refused for num_tickets keeps that reason (it is the
 * first rule it broke) but still counts as a copy, so its twin is refused
 * too. */
int vali_mark_duplicates(struct key *keys, size_t nkeys, struct outcome *outs,
                         const struct val_request *req, const struct mask *mk)
{
	size_t g = 0;

	/* Sorting, not comparing pairs: 100,000 records stay well under a second. */
	qsort(keys, nkeys, sizeof(*keys), key_cmp);

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
				vali_excerpt(&sb, mk, code, strlen(code), VALI_EXCERPT_BYTES,
				             false);
				sbuf_puts(&sb, "\" and hour ");
				sb_instant(&sb, o->hour, o->offset);
				sbuf_printf(&sb, " appear %zu times in this response (", end - g);
				for (j = g; j < end && named < VALI_LIST_MAX; j++) {
					if (j == i)
						continue;
					if (named++)
						sbuf_puts(&sb, ", ");
					else
						sbuf_puts(&sb, end - g > 2 ? "also elements "
						                           : "also element ");
					sbuf_printf(&sb, "%zu", keys[j].index);
				}
				if (end - g - 1 > VALI_LIST_MAX)
					sbuf_puts(&sb, VALI_ELLIPSIS);
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
