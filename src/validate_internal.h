/* validate_internal: what the files of the validate module share and
 * nothing else sees: one element as the record judge sees it and what
 * became of it (validate_record.c), the words every message uses
 * (validate.c). It lives in src/, not include/, like db_internal.h. */
#ifndef KSI_VALIDATE_INTERNAL_H
#define KSI_VALIDATE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "jscan.h"
#include "mask.h"
#include "sbuf.h"
#include "validate.h"

#define EXCERPT_BYTES 40 /* longest quoted value or body excerpt in a message */
#define LIST_MAX 5       /* keys, codes or elements named in one message */

static const char ellipsis[] = "\xE2\x80\xA6"; /* U+2026 */

/* ---- judging one element -------------------------------------------------- */

/* What became of one list element. */
struct outcome {
	char *detail; /* owned until moved into a refusal */
	int64_t hour;
	size_t code;
	int32_t tickets;
	int32_t offset;
	enum val_reason reason;
	bool refused;
	bool keyed; /* time and code passed: a (code, hour) key for duplicates */
};

/* One element as the judge sees it. */
struct element {
	const char *b; /* the whole body, as sent */
	struct jscan_span span;
	const cJSON *item;
	const struct val_request *req;
	struct grid *grid;
	const struct mask *mask; /* the token's: every quote of the body passes it */
};

/* ---- the connector's hour grid -------------------------------------------
 * iso_zone_offset() reads the zone's rules on every call; a response holds
 * few distinct hours, so each val_validate() call remembers the offsets it
 * asked for, in a small table indexed by quarter hour. */

#define GRID_SLOTS 256

struct grid {
	const char *zone;
	struct {
		int64_t epoch;
		int32_t offset;
		bool filled;
		bool ok;
	} slot[GRID_SLOTS];
};

/* ---- duplicates ----------------------------------------------------------- */

struct key {
	size_t code;
	int64_t hour;
	size_t index;
};

void sb_excerpt(struct sbuf *sb, const struct mask *mk, const char *src, size_t srclen, size_t max,
                bool ascii_only);
const char *type_name(const cJSON *item);
int key_cmp(const void *pa, const void *pb);
int judge(const struct element *e, struct outcome *o);
int mark_duplicates(const struct key *keys, size_t nkeys, struct outcome *outs,
                    const struct val_request *req, const struct mask *mk);

#endif
