/* jsonw: writes JSON strings for every JSON the daemon prints (log lines,
 * test-connection's --json report): the one escaper, so a byte that is
 * not UTF-8 or a control byte is handled the same everywhere. */
#ifndef KSI_JSONW_H
#define KSI_JSONW_H

#include <stddef.h>
#include <stdio.h>

/* Length of the well-formed UTF-8 sequence at p (1 for ASCII), or 0 when
 * the bytes there are not one: overlong forms, surrogates, code points
 * above U+10FFFF and cut sequences are not. p must be NUL-terminated (a
 * NUL ends any sequence). */
size_t jsonw_utf8_seq(const unsigned char *p);

/* Writes s as a JSON string literal, quotes included: '"' and '\' escaped,
 * control bytes as \n, \t or \u00XX, and each byte that does not start a
 * well-formed UTF-8 sequence as \ufffd, so the output is always valid
 * JSON in valid UTF-8. s NULL writes "". */
void jsonw_string(FILE *f, const char *s);

#endif
