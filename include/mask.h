/* mask: the one step every text passes before it can reach a log, a table,
 * a metric or test-connection's output (SPEC §3): it removes a secret (the
 * connector's bearer token) and every fragment of it MASK_MIN_FRAGMENT bytes
 * or longer, wherever they stand — an API that echoes half the token in an
 * error page, a redirect whose path holds it, a record that quotes it.
 *
 * Masking comes before any truncation: mask_copy() reads as far past the
 * cut as a fragment could reach, so a token straddling the cut is masked
 * whole, never left with its first bytes showing.
 *
 * Each maximal run of masked bytes becomes MASK_MARK. A mask is immutable
 * once built, so one mask may serve any number of calls. */
#ifndef KSI_MASK_H
#define KSI_MASK_H

#include <stdbool.h>
#include <stddef.h>

#define MASK_MIN_FRAGMENT 6 /* SPEC §3: shorter fragments are too common to mean anything */
#define MASK_MARK "***"

struct mask;

/* Builds the mask of secret (copied; the copy is wiped on free). A NULL or
 * empty secret gives a mask that changes nothing. A secret shorter than
 * MASK_MIN_FRAGMENT is masked only where it occurs whole. -1 on out of
 * memory. */
int mask_new(const char *secret, struct mask **out) __attribute__((warn_unused_result));

/* Wipes and frees. Accepts NULL. */
void mask_free(struct mask *m);

/* True when m masks nothing (no secret). Accepts NULL. */
bool mask_is_empty(const struct mask *m);

/* Masks text[0..*len) in place (the result is never longer) and updates
 * *len; writes no terminator. A NULL or empty mask changes nothing. -1 on
 * out of memory, with text unchanged: the caller must then withhold it. */
int mask_apply(const struct mask *m, char *text, size_t *len) __attribute__((warn_unused_result));

/* Writes the first dstsize - 1 bytes (at most) of the masked src[0..len)
 * to dst, NUL-terminated, exactly as if all of src had been masked and the
 * result then cut. Returns the bytes written; on out of memory dst gets
 * "(withheld: out of memory while masking)" and -1 is returned. dstsize
 * must be at least 1. The cut may split a UTF-8 sequence: callers that need
 * valid UTF-8 repair it after. */
long mask_copy(const struct mask *m, const char *src, size_t len, char *dst, size_t dstsize);

/* mask_copy() of the printf-formatted text: formats in full, masks, then
 * cuts to dstsize. Returns as mask_copy (and -1 when formatting failed). */
long mask_format(const struct mask *m, char *dst, size_t dstsize, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One-shot helpers for callers that hold only the secret: the mask is
 * built and freed inside. On out of memory the text is withheld as above. */
long mask_copy_secret(const char *secret, const char *src, size_t len, char *dst, size_t dstsize);

#endif
