/* validate: judges one response body against the integration guide (SPEC §2,
 * §3): the whole response refused, or each record accepted or refused with a
 * reason a person can act on. Pure: no I/O, no globals.
 *
 * cJSON decides what the values are; a small scanner over the raw bytes
 * (jscan.c) decides what cJSON cannot see, because cJSON is lenient: it skips any byte
 * <= 0x20 as white space, accepts "01", "1." and "-.5" as numbers, keeps raw
 * control bytes and invalid UTF-8 inside strings, and decodes \u0000 to a NUL
 * that silently truncates valuestring; it reads a \u escape without four hex
 * digits as U+0000. The raw text also gives each refused record's JSON text
 * and the exact decimal text of num_tickets.
 *
 * Three files: this one reads the whole response (cJSON, what refuses it
 * whole, the list, the result); validate_record.c holds the rules each
 * record meets, in their order, and the duplicate rule; jscan.c is the
 * scanner, which knows JSON and not the guide. validate_internal.h is what
 * the first two share.
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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "jscan.h"
#include "mask.h"
#include "sbuf.h"
#include "validate_internal.h"

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
 * byte as \xNN. At most max (<= VALI_EXCERPT_BYTES) bytes of it, then "…". Each
 * byte of the masked text takes at least one byte of the excerpt, so
 * max + 1 masked bytes are all it can need, the last only to know that
 * more follows. */
void vali_excerpt(struct sbuf *sb, const struct mask *mk, const char *src, size_t srclen,
                  size_t max, bool ascii_only)
{
	char masked[VALI_EXCERPT_BYTES + 2];
	if (max > VALI_EXCERPT_BYTES)
		max = VALI_EXCERPT_BYTES;
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
			sbuf_puts(sb, VALI_ELLIPSIS);
			return;
		}
		sbuf_add(sb, piece, plen);
		used += plen;
		i += step;
	}
}

const char *vali_type_name(const cJSON *item)
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
	vali_excerpt(&sb, mk, buf + p, len - p, VALI_EXCERPT_BYTES, true);
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
		sbuf_puts(&sb, vali_type_name(root));
	for (c = cJSON_IsObject(root) ? root->child : NULL; c; c = c->next, i++) {
		if (i == VALI_LIST_MAX) {
			sbuf_printf(&sb, ", %s", VALI_ELLIPSIS);
			break;
		}
		if (i)
			sbuf_puts(&sb, ", ");
		vali_excerpt(&sb, mk, c->string, strlen(c->string), VALI_EXCERPT_BYTES, false);
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
		vali_excerpt(&sb, mk, buf + at, len - at < 6 ? len - at : 6, VALI_EXCERPT_BYTES,
		             true);
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
		vali_excerpt(&sb, mk, buf + at, e - at, VALI_EXCERPT_BYTES, true);
		sbuf_printf(&sb,
		            "' at byte %zu (JSON numbers have no leading zeros and a digit on "
		            "each side of the point)",
		            at);
	}
	return refuse(out, VAL_WHOLE_NOT_JSON, &sb);
}

/* Moves the outcomes of the n elements into *out: accepted records in
 * keys' (code, hour) order, refusals in response order with their JSON
 * text. On -1 (out of memory) the caller frees what *out holds. */
static int collect(const char *buf, const struct jscan_span *spans, struct outcome *outs, size_t n,
                   const struct key *keys, size_t nkeys, const struct mask *mk,
                   struct val_result *out)
{
	size_t i, nref = 0, nrec;

	for (i = 0; i < n; i++)
		nref += outs[i].refused;
	nrec = n - nref;
	if (nrec && !(out->records = calloc(nrec, sizeof(*out->records))))
		return -1;
	if (nref && !(out->refusals = calloc(nref, sizeof(*out->refusals))))
		return -1;
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
			return -1;
	}
	return 0;
}

/* Judges the list; the caller frees what *out holds on failure. */
static int judge_list(const char *buf, size_t len, const cJSON *root, const struct val_request *req,
                      const struct mask *mk, struct val_result *out)
{
	struct jscan_span *spans = NULL;
	struct outcome *outs = NULL;
	struct key *keys = NULL;
	size_t n = 0, i, nkeys = 0;
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

		if (vali_judge(&e, &outs[i]) != 0)
			goto done;
		if (outs[i].keyed)
			keys[nkeys++] = (struct key){outs[i].code, outs[i].hour, i};
	}
	if (vali_mark_duplicates(keys, nkeys, outs, req, mk) != 0)
		goto done;
	rc = collect(buf, spans, outs, n, keys, nkeys, mk, out);
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
