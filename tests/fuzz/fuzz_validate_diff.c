/* fuzz_validate_diff: differential libFuzzer target. For any body, the
 * validator refuses it as "not JSON" (VAL_WHOLE_NOT_JSON) only when an
 * independent strict RFC 8259 parser also rejects it, and never judges
 * records of (or calls "JSON but not a list") a body that parser rejects.
 * Also: when both read a list, they count the same elements; when the
 * reference reads something else, the validator says "not a list".
 *
 * The reference is jansson (Debian libjansson-dev), linked into this target
 * only, never into the daemon. Of the Debian parsers it is the strict one:
 * it rejects white space beyond RFC 8259's four bytes (yajl takes \v and \f),
 * "1.", "-.5", NaN and raw control bytes in strings (json-c's "strict" mode
 * takes them), and invalid or overlong UTF-8 (yajl takes overlongs and
 * UTF-8-encoded surrogates). Where it is stricter than RFC 8259's grammar,
 * or where the validator decides differently on purpose, the difference is
 * listed here and handled explicitly, on a copy handed to jansson:
 *
 *  1. Lone surrogate escapes (\ud800): jansson rejects them ("invalid
 *     Unicode"), RFC 8259 §7's grammar allows them and so does the validator
 *     (SPEC §2). Handled: every \u escape of a surrogate (paired or not) or
 *     of U+0000 is rewritten \u0041 in the copy: four hex digits for four,
 *     so the grammar is unchanged.
 *  2. \u0000: jansson rejects it in keys even with JSON_ALLOW_NUL; the
 *     grammar allows it. Handled by the same rewrite.
 *  3. Numbers: jansson rejects integers beyond long long and reals beyond
 *     double (json_error_numeric_overflow); the grammar has no limit, and
 *     the validator judges num_tickets on its decimal text. Handled: each
 *     number token outside strings (RFC 8259 §6's grammar, longest match) is
 *     rewritten "0" plus spaces: a valid number for a valid number, in place.
 *  4. Raw bytes inside strings: control bytes (RFC 8259 §7 requires them
 *     escaped) and bytes that are not UTF-8 (§8.1). The validator does not
 *     refuse the body for these: the string rules refuse the record when it
 *     is time or ext_ref_code, and ignore them elsewhere (a decision in
 *     validate.c). Handled: inside strings, control bytes become a space and
 *     each byte starting no well-formed UTF-8 sequence becomes '?'.
 *  5. A UTF-8 byte order mark: the validator skips one (cJSON does; RFC 8259
 *     §8.1 lets a parser ignore it), jansson rejects it. Handled: the copy
 *     starts after it.
 *  6. Nesting depth: cJSON stops at 1000 levels (CJSON_NESTING_LIMIT), so the
 *     validator refuses deeper bodies as not JSON; jansson allows 2048.
 *     Handled: above 999 levels (counted outside strings) a "not JSON" from
 *     the validator is not compared.
 *  7. Top level not a list: jansson is given JSON_DECODE_ANY, so it parses
 *     any value; the validator's own "not a list" is compared against it.
 *  8. Size: the validator has no size limit (the HTTP layer enforces
 *     max_response_bytes before it); fuzz inputs are at most 8 KiB.
 *  9. Duplicate keys: both accept them at this level (jansson without
 *     JSON_REJECT_DUPLICATES); the validator judges them per record.
 * 10. Out of memory inside cJSON reads as "not JSON" to the validator; the
 *     fuzzer's memory limit is far above what 8 KiB needs.
 * 11. A jansson 2.14 bug found by this target: one raw NUL byte right after
 *     a number or literal is skipped ("0\0", "[0\0]" and "true\0" parse).
 *     RFC 8259 and the validator reject them. Handled: outside strings a
 *     raw NUL becomes 0x01 in the copy, which jansson rejects like RFC 8259.
 * The rewrites only ever replace a token by one of the same kind, and
 * whether a prefix can start a JSON text does not depend on what follows
 * it, so a body jansson rejects for another reason stays rejected, with
 * one trap this target found twice: a rewritten "0" glued to the bytes
 * before it ("--0" into "-0 ", "1.-0" into "0.0 "). So rewriting stops at
 * the first byte outside strings that is not JSON in any context: a '-'
 * starting no number, a '.' or '+' outside a number, or a number followed
 * directly by a digit, '.', 'e', 'E', '+' or '-'. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "validate.h"

#define CJSON_DEPTH_LIMIT 999 /* deepest nesting the validator is held to */

static const char *const codes[] = {"0001", "0002", "A", "caf\xc3\xa9"};

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0. Written here, not shared with
 * the validator, so a bug in one is not in both. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xBF;
	size_t len;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		lo = c == 0xE0 ? 0xA0 : 0x80;
		hi = c == 0xED ? 0x9F : 0xBF;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		lo = c == 0xF0 ? 0x90 : 0x80;
		hi = c == 0xF4 ? 0x8F : 0xBF;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

/* End of the RFC 8259 number starting at i, longest match, or i. */
static size_t number_end(const unsigned char *b, size_t i, size_t n)
{
	size_t p = i;

	if (p < n && b[p] == '-')
		p++;
	if (p < n && b[p] == '0')
		p++;
	else if (p < n && b[p] >= '1' && b[p] <= '9')
		while (p < n && is_digit(b[p]))
			p++;
	else
		return i;
	if (p + 1 < n && b[p] == '.' && is_digit(b[p + 1])) {
		p += 2;
		while (p < n && is_digit(b[p]))
			p++;
	}
	if (p < n && (b[p] == 'e' || b[p] == 'E')) {
		size_t q = p + 1;

		if (q < n && (b[q] == '+' || b[q] == '-'))
			q++;
		if (q < n && is_digit(b[q])) {
			while (q < n && is_digit(b[q]))
				q++;
			p = q;
		}
	}
	return p;
}

/* Applies differences 1 to 4 and 11 to b[0..n) in place; returns the deepest
 * nesting seen outside strings. */
static size_t rewrite_for_jansson(unsigned char *b, size_t n)
{
	size_t i = 0, depth = 0, deepest = 0;
	bool in_str = false;

	while (i < n) {
		unsigned char c = b[i];

		if (in_str) {
			if (c == '"') {
				in_str = false;
				i++;
			} else if (c == '\\') {
				if (i + 5 < n && b[i + 1] == 'u' && is_hex(b[i + 2]) &&
				    is_hex(b[i + 3]) && is_hex(b[i + 4]) && is_hex(b[i + 5])) {
					char hex[5] = {(char)b[i + 2], (char)b[i + 3],
					               (char)b[i + 4], (char)b[i + 5], 0};
					unsigned long cu = strtoul(hex, NULL, 16);

					if (cu == 0 || (cu >= 0xD800 && cu <= 0xDFFF))
						memcpy(b + i + 2, "0041", 4);
					i += 6;
				} else {
					i += 2; /* whatever follows: a bad escape stays bad */
				}
			} else if (c < 0x20) {
				b[i++] = ' ';
			} else {
				size_t len = utf8_len(b + i, n - i);

				if (len == 0) {
					b[i] = '?';
					len = 1;
				}
				i += len;
			}
			continue;
		}
		if (c == '"') {
			in_str = true;
			i++;
		} else if (c == 0) {
			b[i++] = 0x01; /* difference 11 */
		} else if (c == '-' || is_digit(c)) {
			size_t e = number_end(b, i, n);

			if (e == i) {
				/* A '-' that starts no number: the text is not JSON
				 * from here, and rewriting on could make "-" and
				 * the "0" of a later rewrite a number. */
				if (c == '-')
					return deepest;
				i++;
				continue;
			}
			/* A number glued to more number bytes is not JSON
			 * from here: stop before "1.-0" can become "0.0". */
			if (e < n && memchr("0123456789.eE+-", b[e], 15))
				return deepest;
			b[i] = '0';
			memset(b + i + 1, ' ', e - i - 1);
			i = e;
		} else if (c == '.' || c == '+') {
			return deepest; /* outside a number and a string: not JSON */
		} else {
			if (c == '[' || c == '{') {
				if (++depth > deepest)
					deepest = depth;
			} else if ((c == ']' || c == '}') && depth > 0) {
				depth--;
			}
			i++;
		}
	}
	return deepest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exactly size bytes, so ASan catches any read past them. */
	char *body = malloc(size ? size : 1);
	unsigned char *ref = malloc(size ? size : 1);
	struct val_request req = {
	    .codes = codes,
	    .ncodes = 4,
	    .from = 1675814400, /* 2023-02-08T00:00:00Z */
	    .to = 1675814400 + 48 * 3600,
	    .now = 1675814400 + 47 * 3600 + 1800,
	    .zone = "UTC",
	};
	struct val_result r = {0};
	size_t skip = 0, deepest;
	json_error_t jerr;
	json_t *root;

	if (!body || !ref) {
		free(body);
		free(ref);
		return 0;
	}
	memcpy(body, data, size);
	memcpy(ref, data, size);
	if (size >= 3 && memcmp(ref, "\xEF\xBB\xBF", 3) == 0)
		skip = 3; /* difference 5 */
	deepest = rewrite_for_jansson(ref + skip, size - skip);
	root = json_loadb((const char *)ref + skip, size - skip, JSON_DECODE_ANY, &jerr);

	if (val_validate(body, size, &req, &r) == 0) {
		bool ref_ok = root != NULL;

		if (r.refused != (r.whole != VAL_WHOLE_NONE))
			abort(); /* refused and the type of refusal disagree */
		if (r.whole == VAL_WHOLE_NOT_JSON && ref_ok && deepest <= CJSON_DEPTH_LIMIT)
			abort(); /* refused as not JSON what the reference parses */
		if (r.whole != VAL_WHOLE_NOT_JSON && !ref_ok)
			abort(); /* read as JSON what the reference rejects */
		if (r.whole == VAL_WHOLE_NOT_LIST && json_is_array(root))
			abort(); /* "not a list" of a list */
		if (r.whole == VAL_WHOLE_NONE && !json_is_array(root))
			abort(); /* judged records of something that is not a list */
		if (r.whole == VAL_WHOLE_NONE && r.received != json_array_size(root))
			abort(); /* the two disagree on the number of elements */
	}
	val_result_free(&r);
	json_decref(root);
	free(ref);
	free(body);
	return 0;
}
