/* jscan: the raw-JSON scanner the validator reads a body with (see
 * jscan.c). A private header in src/, reached only by validate.c and the
 * fuzz targets that link it. */
#ifndef KSI_JSCAN_H
#define KSI_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct span {
	size_t start;
	size_t end;
};
enum strict_fault {
	STRICT_OK,
	STRICT_CONTROL,  /* a byte cJSON took for white space */
	STRICT_NUMBER,   /* a number RFC 8259 does not allow */
	STRICT_ESCAPE,   /* \u not followed by four hex digits */
	STRICT_TRAILING, /* text after the top-level value */
};

/* One member of an object as raw text: the key between its quotes, the value. */
struct member {
	size_t ks, ke; /* key text, quotes excluded */
	size_t vs, ve; /* value text */
};

struct str_facts {
	bool nul;          /* a raw NUL byte or a \u0000 escape */
	bool bad_utf8;     /* a byte that starts no well-formed UTF-8 sequence */
	unsigned bad_byte; /* the first such byte */
	size_t lone;       /* offset of the first lone surrogate escape, or SIZE_MAX */
	size_t decoded;    /* bytes once escapes are decoded */
};

/* What a record's key says, compared after unescaping. */
struct key_facts {
	int field;   /* index into the guide's three fields, or -1 */
	size_t lone; /* offset of the first lone surrogate escape, or SIZE_MAX */
};

size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp);
bool is_digit(char c);
bool is_number_char(char c);
size_t skip_ws(const char *b, size_t pos, size_t len);
size_t skip_bom(const char *b, size_t len);
enum strict_fault strict_check(const char *b, size_t len, size_t *where);
bool member_next(const char *b, size_t *pos, size_t end, struct member *m);
void str_inspect(const char *s, size_t n, struct str_facts *f);
void key_inspect(const char *s, size_t n, const char *const names[3], struct key_facts *k);
char *patch_lone_surrogates(char *b, size_t len);
int element_spans(const char *b, size_t len, struct span **out, size_t *n);

#endif
