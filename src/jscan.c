/* jscan: the raw-JSON scanner under the validator. It walks the bytes of a
 * response body, as sent, for what cJSON cannot tell the validator: where
 * each list element and object member starts and ends, what RFC 8259
 * refuses but cJSON lets through, what a string or a key holds before
 * cJSON decodes it (NUL, invalid UTF-8, lone surrogate escapes), and a copy
 * of the body cJSON can parse when it holds lone surrogates. Pure: bytes
 * in, offsets and facts out; no I/O, no globals. It knows JSON, not the
 * guide: what the facts mean for a record is validate.c's to decide. */
#include "jscan.h"

#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 --------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 table 3-7: no
 * overlongs, no surrogates, nothing above U+10FFFF), or 0 when there is none.
 * *cp receives the code point. */
size_t jscan_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xBF;
	size_t len, i;
	uint32_t v;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		v = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0; /* overlong below */
		else if (c == 0xED)
			hi = 0x9F; /* UTF-16 surrogates above */
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		v = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		unsigned char b = s[i];

		if (b < lo || b > hi)
			return 0;
		lo = 0x80;
		hi = 0xBF;
		v = (v << 6) | (b & 0x3F);
	}
	*cp = v;
	return len;
}

/* ---- raw JSON scanning ---------------------------------------------------
 * These walk text cJSON already accepted, so structure, escapes and literals
 * are known good; they only bound-check to stay safe. */

static bool is_ws(char c)
{
	/* RFC 8259 white space only, not cJSON's "any byte <= 0x20". */
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool jscan_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

bool jscan_is_number_char(char c)
{
	/* The bytes cJSON hands to strtod. */
	return jscan_is_digit(c) || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E';
}

size_t jscan_skip_ws(const char *b, size_t pos, size_t len)
{
	while (pos < len && is_ws(b[pos]))
		pos++;
	return pos;
}

/* pos at the opening quote; returns the position after the closing one. */
static size_t skip_string(const char *b, size_t pos, size_t len)
{
	pos++;
	while (pos < len) {
		if (b[pos] == '\\')
			pos += 2;
		else if (b[pos] == '"')
			return pos + 1;
		else
			pos++;
	}
	return len;
}

/* End of the RFC 8259 number at pos, or pos when there is none. */
static size_t number_end(const char *b, size_t pos, size_t len)
{
	size_t p = pos;

	if (p < len && b[p] == '-')
		p++;
	if (p < len && b[p] == '0') {
		p++;
	} else if (p < len && b[p] >= '1' && b[p] <= '9') {
		while (p < len && jscan_is_digit(b[p]))
			p++;
	} else {
		return pos;
	}
	if (p < len && b[p] == '.') {
		p++;
		if (p >= len || !jscan_is_digit(b[p]))
			return pos;
		while (p < len && jscan_is_digit(b[p]))
			p++;
	}
	if (p < len && (b[p] == 'e' || b[p] == 'E')) {
		p++;
		if (p < len && (b[p] == '+' || b[p] == '-'))
			p++;
		if (p >= len || !jscan_is_digit(b[p]))
			return pos;
		while (p < len && jscan_is_digit(b[p]))
			p++;
	}
	return p;
}

/* pos at the first byte of a value; returns the position after it. */
static size_t skip_value(const char *b, size_t pos, size_t len)
{
	size_t depth = 0;

	if (pos >= len)
		return len;
	switch (b[pos]) {
	case '"':
		return skip_string(b, pos, len);
	case 't':
	case 'n':
		return pos + 4 < len ? pos + 4 : len;
	case 'f':
		return pos + 5 < len ? pos + 5 : len;
	case '[':
	case '{':
		break;
	default: {
		size_t e = number_end(b, pos, len);

		return e > pos ? e : pos + 1;
	}
	}
	while (pos < len) {
		char c = b[pos];

		if (c == '"') {
			pos = skip_string(b, pos, len);
			continue;
		}
		pos++;
		if (c == '[' || c == '{') {
			depth++;
		} else if (c == ']' || c == '}') {
			if (--depth == 0)
				return pos;
		}
	}
	return len;
}

size_t jscan_skip_bom(const char *b, size_t len)
{
	/* cJSON skips a UTF-8 byte order mark, as RFC 8259 §8.1 allows. */
	return len >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
}

static bool is_hex(char c)
{
	return jscan_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* skip_string(), and *bad set to the first \u escape without four hex
 * digits: cJSON 1.7.15 reads those as U+0000 instead of refusing them. */
static size_t scan_string(const char *b, size_t pos, size_t len, size_t *bad)
{
	pos++;
	while (pos < len) {
		if (b[pos] == '"')
			return pos + 1;
		if (b[pos] != '\\') {
			pos++;
			continue;
		}
		if (pos + 1 < len && b[pos + 1] == 'u' && *bad == SIZE_MAX &&
		    !(pos + 5 < len && is_hex(b[pos + 2]) && is_hex(b[pos + 3]) &&
		      is_hex(b[pos + 4]) && is_hex(b[pos + 5])))
			*bad = pos;
		pos += 2;
	}
	return len;
}

/* What cJSON let through that RFC 8259 does not: the body is then not JSON
 * (SPEC §3: "JSON followed by anything but white space" included). Bytes
 * inside strings are the per-record string rules' business, not this. */
enum jscan_fault jscan_strict_check(const char *b, size_t len, size_t *where)
{
	size_t pos = jscan_skip_bom(b, len), depth = 0;
	bool done = false;

	while (pos < len) {
		char c = b[pos];
		size_t start = pos;

		if (is_ws(c)) {
			pos++;
			continue;
		}
		*where = pos;
		if (done)
			return JSCAN_TRAILING;
		if (c == '[' || c == '{') {
			depth++;
			pos++;
			continue;
		}
		if (c == ',' || c == ':') {
			pos++;
			continue;
		}
		if (c == ']' || c == '}') {
			depth--;
			pos++;
		} else if (c == '"') {
			size_t bad = SIZE_MAX;

			pos = scan_string(b, pos, len, &bad);
			if (bad != SIZE_MAX) {
				*where = bad;
				return JSCAN_ESCAPE;
			}
		} else if (c == 't' || c == 'f' || c == 'n') {
			pos = skip_value(b, pos, len);
		} else if (c == '-' || jscan_is_digit(c)) {
			pos = number_end(b, pos, len);
			if (pos == start || (pos < len && jscan_is_number_char(b[pos])))
				return JSCAN_NUMBER;
		} else {
			return JSCAN_CONTROL;
		}
		if (depth == 0)
			done = true;
	}
	return JSCAN_OK;
}

/* Reads the member at *pos (just after '{' or a ','); false at the end of
 * the object. Text cJSON accepted never makes it fail otherwise. */
bool jscan_member_next(const char *b, size_t *pos, size_t end, struct jscan_member *m)
{
	size_t p = jscan_skip_ws(b, *pos, end);

	if (p < end && b[p] == ',')
		p = jscan_skip_ws(b, p + 1, end);
	if (p >= end || b[p] != '"')
		return false;
	m->ks = p + 1;
	p = skip_string(b, p, end);
	m->ke = p > m->ks ? p - 1 : m->ks;
	p = jscan_skip_ws(b, p, end);
	if (p >= end || b[p] != ':')
		return false;
	m->vs = p = jscan_skip_ws(b, p + 1, end);
	m->ve = p = skip_value(b, p, end);
	*pos = p;
	return true;
}

/* ---- what one string field holds ------------------------------------------ */

static unsigned hex4(const char *s)
{
	unsigned v = 0;
	int i;

	for (i = 0; i < 4; i++) {
		char c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
	}
	return v;
}

/* True when s[i..n) starts with \u and four hex digits; *cu gets them. */
static bool u_escape(const char *s, size_t i, size_t n, unsigned *cu)
{
	if (i + 6 > n || s[i] != '\\' || s[i + 1] != 'u' || !is_hex(s[i + 2]) ||
	    !is_hex(s[i + 3]) || !is_hex(s[i + 4]) || !is_hex(s[i + 5]))
		return false;
	*cu = hex4(s + i + 2);
	return true;
}

/* The \u escape at s[i] (already read as cu) with what follows: 12 bytes
 * for a surrogate pair, 6 for any other escape; *lone says whether it is a
 * surrogate without its partner (RFC 8259 §7 allows it, UTF-8 cannot hold
 * it). */
static size_t u_escape_len(const char *s, size_t i, size_t n, unsigned cu, bool *lone)
{
	unsigned lo;

	*lone = false;
	if (cu >= 0xD800 && cu <= 0xDBFF && u_escape(s, i + 6, n, &lo) && lo >= 0xDC00 &&
	    lo <= 0xDFFF)
		return 12;
	*lone = cu >= 0xD800 && cu <= 0xDFFF;
	return 6;
}

/* s[0..n) is the raw text between the quotes. */
void jscan_str_inspect(const char *s, size_t n, struct jscan_str_facts *f)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	memset(f, 0, sizeof(*f));
	f->lone = SIZE_MAX;
	while (i < n) {
		unsigned cu;

		if (u_escape(s, i, n, &cu)) {
			bool lone;
			size_t step = u_escape_len(s, i, n, cu, &lone);

			if (cu == 0)
				f->nul = true;
			if (lone && f->lone == SIZE_MAX)
				f->lone = i;
			/* A pair is one 4-byte character; cJSON reads a lone
			 * surrogate (patched) as U+FFFD, 3 bytes. */
			f->decoded += step == 12   ? 4
			              : lone       ? 3
			              : cu < 0x80  ? 1
			              : cu < 0x800 ? 2
			                           : 3;
			i += step;
			continue;
		}
		if (s[i] == '\\' && i + 1 < n) {
			f->decoded++;
			i += 2;
			continue;
		}
		if (u[i] == 0) {
			f->nul = true;
			f->decoded++;
			i++;
			continue;
		}
		uint32_t cp;
		size_t step = jscan_utf8_seq(u + i, n - i, &cp);

		if (step == 0) {
			if (!f->bad_utf8) {
				f->bad_utf8 = true;
				f->bad_byte = u[i];
			}
			step = 1;
		}
		f->decoded += step;
		i += step;
	}
}

/* ---- keys ------------------------------------------------------------------ */

void jscan_key_inspect(const char *s, size_t n, const char *const *names, size_t nnames,
                       struct jscan_key_facts *k)
{
	char dec[JSCAN_KEY_MAX] = {0}; /* a longer key is none of the names */
	size_t i = 0, len = 0, f;
	bool fits = true;

	k->field = -1;
	k->lone = SIZE_MAX;
	while (i < n) {
		unsigned cu;
		char c;

		if (u_escape(s, i, n, &cu)) {
			bool lone;

			i += u_escape_len(s, i, n, cu, &lone);
			if (lone && k->lone == SIZE_MAX)
				k->lone = i - 6;
			if (cu == 0 || cu >= 0x80 || lone)
				fits = false; /* no name holds NUL or non-ASCII */
			c = (char)cu;
		} else if (s[i] == '\\' && i + 1 < n) {
			static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
			const char *at = memchr(from, s[i + 1], sizeof(from) - 1);

			c = at ? to[at - from] : s[i + 1];
			i += 2;
		} else {
			c = s[i++];
		}
		if (len < sizeof(dec))
			dec[len] = c;
		len++;
	}
	if (!fits || len > sizeof(dec))
		return;
	for (f = 0; f < nnames; f++) {
		if (strlen(names[f]) == len && memcmp(names[f], dec, len) == 0)
			k->field = (int)f;
	}
}

/* ---- lone surrogates, for cJSON ------------------------------------------ */

/* Returns the text cJSON is to parse: b itself, or (when b holds a lone
 * surrogate escape inside a string) a copy where each one's hex digits read
 * FFFD. Same length, so offsets match; hex for hex keeps the grammar the same
 * wherever the scan stands, even in text that is not JSON. NULL: out of
 * memory. len counts b's terminating NUL out. */
char *jscan_patch_lone_surrogates(char *b, size_t len)
{
	size_t pos = jscan_skip_bom(b, len);
	bool in_str = false;
	char *copy = b;

	while (pos < len) {
		unsigned cu;
		bool lone;
		size_t step;

		if (b[pos] == '"') {
			in_str = !in_str;
			pos++;
			continue;
		}
		if (!in_str || b[pos] != '\\') {
			pos++;
			continue;
		}
		if (!u_escape(b, pos, len, &cu)) {
			pos += 2;
			continue;
		}
		step = u_escape_len(b, pos, len, cu, &lone);
		if (lone) {
			if (copy == b) {
				copy = malloc(len + 1);
				if (!copy)
					return NULL;
				memcpy(copy, b, len + 1);
			}
			memcpy(copy + pos + 2, "FFFD", 4);
		}
		pos += step;
	}
	return copy;
}

/* Raw spans of the top-level list's elements, in order. */
int jscan_element_spans(const char *b, size_t len, struct jscan_span **out, size_t *n)
{
	size_t pos = jscan_skip_ws(b, jscan_skip_bom(b, len), len) + 1, cap = 0;
	struct jscan_span *spans = NULL;

	*n = 0;
	for (;;) {
		pos = jscan_skip_ws(b, pos, len);
		if (pos >= len || b[pos] == ']')
			break;
		if (*n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct jscan_span *grown = reallocarray(spans, ncap, sizeof(*spans));

			if (!grown) {
				free(spans);
				return -1;
			}
			spans = grown;
			cap = ncap;
		}
		spans[*n].start = pos;
		pos = skip_value(b, pos, len);
		spans[*n].end = pos;
		(*n)++;
		pos = jscan_skip_ws(b, pos, len);
		if (pos < len && b[pos] == ',')
			pos++;
	}
	*out = spans;
	return 0;
}
