/* fuzz_isotime: libFuzzer target for the ISO 8601 parser. Bytes are not
 * NUL-terminated; a parsed instant must format and parse back to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isotime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size ? size : 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	struct iso_instant t;
	if (iso_parse(s, size, &t) == ISO_OK) {
		char buf[ISO_FORMAT_LEN];
		iso_format(t.epoch, t.offset, buf);
		struct iso_instant back;
		/* The formatted form drops fractions and the seconds of odd
		 * offsets, but it must name the same second. */
		if (buf[0] &&
		    (iso_parse(buf, strlen(buf), &back) != ISO_OK || back.epoch != t.epoch))
			abort();
	}
	free(s);
	return 0;
}
