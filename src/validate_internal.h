/* validate_internal: what the two files of the validate module share and
 * nothing else sees. validate.c reads the whole response and hands each
 * list element (struct element) to the record rules in validate_record.c,
 * which say what became of it (struct outcome); both write messages with
 * the same words (vali_excerpt, vali_type_name). It lives in src/, not
 * include/, like db_internal.h; its non-static names carry the prefix vali_
 * (validate, internal). */
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

#define VALI_EXCERPT_BYTES 40        /* longest quoted value or body excerpt in a message */
#define VALI_LIST_MAX 5              /* keys, codes or elements named in one message */
#define VALI_ELLIPSIS "\xE2\x80\xA6" /* U+2026, after a cut or a list */

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

#define VALI_GRID_SLOTS 256

struct grid {
	const char *zone;
	struct {
		int64_t epoch;
		int32_t offset;
		bool filled;
		bool ok;
	} slot[VALI_GRID_SLOTS];
};

/* A record's (code, hour), for finding duplicates; index is its element. */
struct key {
	size_t code;
	int64_t hour;
	size_t index;
};

/* validate.c: the words messages use. vali_excerpt appends src[0..srclen)
 * masked, then made safe and cut at max bytes (<= VALI_EXCERPT_BYTES). */
void vali_excerpt(struct sbuf *sb, const struct mask *mk, const char *src, size_t srclen,
                  size_t max, bool ascii_only);
const char *vali_type_name(const cJSON *item);

/* validate_record.c: one element against the record rules (-1: out of
 * memory), then the duplicate rule across the keyed ones (keys[0..nkeys),
 * left sorted by code, hour and element). */
int vali_judge(const struct element *e, struct outcome *o) __attribute__((warn_unused_result));
int vali_mark_duplicates(struct key *keys, size_t nkeys, struct outcome *outs,
                         const struct val_request *req, const struct mask *mk)
    __attribute__((warn_unused_result));

#endif
