/* sbuf: a growable NUL-terminated string. One failed allocation marks it
 * failed and makes every later append a no-op, so a caller checks once, at
 * the end (sbuf_take or `failed`). */
#ifndef KSI_SBUF_H
#define KSI_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct sbuf {
	char *data; /* NULL until the first append */
	size_t len, cap;
	bool failed;
};

void sbuf_add(struct sbuf *b, const char *s, size_t n);
void sbuf_puts(struct sbuf *b, const char *s);
void sbuf_addc(struct sbuf *b, char c);
/* Formatted append of any length. */
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the text over ("" when nothing was added); NULL when an allocation
 * failed (the buffer is freed then). The sbuf is empty afterwards. */
char *sbuf_take(struct sbuf *b);

#endif
