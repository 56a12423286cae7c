/* fuzz_validate: libFuzzer target for the validator. The input is a
 * response body exactly as libcurl hands it over (not NUL-terminated);
 * beyond "no crash, no leak, no undefined behaviour" it checks the
 * validator's promises: accepted records sorted, unique, inside the window,
 * on the connector's hour grid and well-formed; every refusal carries valid UTF-8 without NUL. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

static const char *const codes[] = {"0001", "0002", "A", "caf\xc3\xa9"};

/* Well-formed UTF-8 with no NUL, as PostgreSQL's text columns need. */
static int utf8_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		int n = *p < 0x80             ? 1
		        : (*p & 0xe0) == 0xc0 ? 2
		        : (*p & 0xf0) == 0xe0 ? 3
		        : (*p & 0xf8) == 0xf0 ? 4
		                              : 0;
		if (n == 0 || (n == 2 && *p < 0xc2))
			return 0;
		for (int i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		p += n;
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size bytes, so ASan catches any read past it. */
	char *body = malloc(size ? size : 1);
	if (!body)
		return 0;
	memcpy(body, data, size);
	struct val_request req = {
	    .codes = codes,
	    .ncodes = 4,
	    .from = 1675814400, /* 2023-02-08T00:00:00Z */
	    .to = 1675814400 + 48 * 3600,
	    .now = 1675814400 + 47 * 3600 + 1800,
	    .zone = "UTC",
	};
	struct val_result r = {0};
	if (val_validate(body, size, &req, &r) == 0) {
		if (r.refused) {
			if (!r.error || !utf8_ok(r.error) || r.nrecords || r.nrefusals ||
			    r.whole == VAL_WHOLE_NONE)
				abort();
		} else {
			for (size_t i = 0; i < r.nrecords; i++) {
				const struct val_record *x = &r.records[i];
				if (x->code >= req.ncodes || x->hour < req.from ||
				    x->hour >= req.to || x->num_tickets < 0)
					abort();
				if (x->hour % 3600 != 0)
					abort(); /* off the UTC connector's hour grid */
				if (i && (r.records[i - 1].code > x->code ||
				          (r.records[i - 1].code == x->code &&
				           r.records[i - 1].hour >= x->hour)))
					abort(); /* unsorted or duplicated */
			}
			for (size_t i = 0; i < r.nrefusals; i++)
				if (!r.refusals[i].detail || !r.refusals[i].json ||
				    !utf8_ok(r.refusals[i].detail) ||
				    !utf8_ok(r.refusals[i].json) ||
				    strlen(r.refusals[i].json) > VAL_MAX_JSON_BYTES)
					abort();
			if (r.nrecords + r.nrefusals > r.received)
				abort();
		}
	}
	val_result_free(&r);
	free(body);
	return 0;
}
