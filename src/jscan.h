/* jscan: the raw-JSON scanner the validator reads a body with (jscan.c says
 * what it sees that cJSON does not). Offsets count bytes from the start of
 * the body as sent. A private header in src/, not include/, like
 * db_internal.h: only validate.c (and the fuzz targets that link the
 * validator's sources) reach it, and a header outside the include path
 * cannot be picked up by another module by accident. */
#ifndef KSI_JSCAN_H
#define KSI_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSCAN_KEY_MAX 16 /* jscan_key_inspect's names are shorter than this */

/* A value's raw text: body[start..end). */
struct jscan_span {
	size_t start;
	size_t end;
};

/* What jscan_strict_check found that cJSON let through. */
enum jscan_fault {
	JSCAN_OK,
	JSCAN_CONTROL,  /* a byte cJSON took for white space */
	JSCAN_NUMBER,   /* a number RFC 8259 does not allow */
	JSCAN_ESCAPE,   /* \u not followed by four hex digits */
	JSCAN_TRAILING, /* text after the top-level value */
};

/* One member of an object as raw text: the key between its quotes, the value. */
struct jscan_member {
	size_t ks, ke; /* key text, quotes excluded */
	size_t vs, ve; /* value text */
};

/* What one string's raw text holds (jscan_str_inspect). */
struct jscan_str_facts {
	bool nul;          /* a raw NUL byte or a \u0000 escape */
	bool bad_utf8;     /* a byte that starts no well-formed UTF-8 sequence */
	unsigned bad_byte; /* the first such byte */
	size_t lone;       /* offset of the first lone surrogate escape, or SIZE_MAX */
	size_t decoded;    /* bytes once escapes are decoded */
};

/* What a key says, compared after unescaping (jscan_key_inspect). */
struct jscan_key_facts {
	int field;   /* index into the names it was compared with, or -1 */
	size_t lone; /* offset of the first lone surrogate escape, or SIZE_MAX */
};

/* Bytes and characters. */
size_t jscan_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp);
bool jscan_is_digit(char c);
bool jscan_is_number_char(char c); /* a byte cJSON hands to strtod */

/* Positions in b[0..len). */
size_t jscan_skip_ws(const char *b, size_t pos, size_t len);
size_t jscan_skip_bom(const char *b, size_t len);

/* The whole body (cJSON accepted it): the first fault, its offset in *where. */
enum jscan_fault jscan_strict_check(const char *b, size_t len, size_t *where);

/* The top-level list's elements, in order (*out to free); -1 out of memory. */
int jscan_element_spans(const char *b, size_t len, struct jscan_span **out, size_t *n)
    __attribute__((warn_unused_result));
/* The next member of an object; false at its end. */
bool jscan_member_next(const char *b, size_t *pos, size_t end, struct jscan_member *m);

/* A string's raw text, s[0..n) between its quotes. */
void jscan_str_inspect(const char *s, size_t n, struct jscan_str_facts *f);
/* A key's raw text against names (ASCII, no NUL, under JSCAN_KEY_MAX bytes). */
void jscan_key_inspect(const char *s, size_t n, const char *const *names, size_t nnames,
                       struct jscan_key_facts *k);

/* The text cJSON is to parse: b, or a same-length copy with each lone
 * surrogate escape read as \uFFFD (free it when it is not b); NULL: out of
 * memory. */
char *jscan_patch_lone_surrogates(char *b, size_t len) __attribute__((warn_unused_result));

#endif
