/* fuzz_tzif: libFuzzer target for the TZif reader and the POSIX TZ rule
 * parser. Bytes are parsed as a TZif file, and (when short) as a footer
 * rule; a zone that parses must answer consistently: offsets within a day,
 * the offset constant from an instant up to the next change, and each change
 * found again from the other side. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isotime.h"

static void check_zone(const struct iso_tz *tz, const uint8_t *data, size_t size)
{
	int64_t probes[12] = {
	    INT64_MIN,  ISO_TZ_MIN_EPOCH, -2208988800,      -1,        0, 1000000000, 1700000000,
	    4102444800, 253402300799,     ISO_TZ_MAX_EPOCH, INT64_MAX, 0};

	/* One instant from the input itself, so the fuzzer can aim. */
	if (size >= 8) {
		uint64_t v;

		memcpy(&v, data + size - 8, 8);
		probes[11] = (int64_t)(v % (2 * (uint64_t)ISO_TZ_MAX_EPOCH)) - ISO_TZ_MAX_EPOCH;
	}
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		int64_t t = probes[i];
		int32_t off, off_end, off_next;

		if (iso_tz_offset(tz, t, &off) != 0) {
			if (t >= ISO_TZ_MIN_EPOCH && t <= ISO_TZ_MAX_EPOCH)
				abort(); /* in range must always answer */
			continue;
		}
		if (off <= -86400 || off >= 86400)
			abort();
		/* A few steps forward: strictly increasing, each a real change,
		 * nothing changing in between. */
		for (int step = 0; step < 4; step++) {
			int64_t next = iso_tz_next_change(tz, t);

			if (next == INT64_MAX)
				break;
			if (next <= t || iso_tz_offset(tz, next - 1, &off_end) != 0 ||
			    iso_tz_offset(tz, next, &off_next) != 0 || off_end != off ||
			    off_next == off || iso_tz_prev_change(tz, next) != next)
				abort();
			t = next;
			off = off_next;
		}
		int64_t prev = iso_tz_prev_change(tz, probes[i]);
		if (prev != INT64_MIN && prev > probes[i])
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size heap copy: ASan sees any read past the end. */
	uint8_t *copy = malloc(size ? size : 1);
	struct iso_tz *tz;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (iso_tz_parse_tzif(copy, size, &tz) == 0) {
		check_zone(tz, data, size);
		iso_tz_free(tz);
	}
	if (size <= 256 && iso_tz_parse_posix((const char *)copy, size, &tz) == 0) {
		check_zone(tz, data, size);
		iso_tz_free(tz);
	}
	free(copy);
	return 0;
}
