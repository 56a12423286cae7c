/* isotime: ISO 8601 instants and IANA time-zone offsets (SPEC §2, §5).
 *
 * Pure arithmetic except iso_zone_offset(), which asks the C library for a
 * zone's rules by switching TZ for the duration of one call (glibc offers no
 * per-zone API); the daemon is single-threaded, so that is safe here. */
#ifndef KSI_ISOTIME_H
#define KSI_ISOTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ISO_FORMAT_LEN 32 /* "2023-02-08T00:00:00+05:30" plus NUL, with room */

enum iso_status {
	ISO_OK = 0,
	ISO_NO_OFFSET,   /* a well-formed local time with no Z or ±HH:MM */
	ISO_UNPARSEABLE, /* anything else that is not an ISO 8601 date-time */
};

/* One parsed date-time. */
struct iso_instant {
	int64_t epoch;         /* seconds since 1970-01-01T00:00:00Z (fraction dropped) */
	int32_t offset;        /* seconds east of UTC, as written (0 for Z) */
	int minute;            /* as written, in its own offset */
	int second;            /* as written, in its own offset */
	bool fraction_nonzero; /* a fractional second other than zero was written */
};

/* Parses "YYYY-MM-DDTHH:MM[:SS[.fff…]](Z|±HH:MM|±HHMM|±HH)" from s[0..len).
 * s need not be NUL-terminated. Calendar fields are range-checked (month
 * lengths and leap years included). */
enum iso_status iso_parse(const char *s, size_t len, struct iso_instant *out)
	__attribute__((warn_unused_result));

/* True when the instant is the start of an hour in its own offset: minutes,
 * seconds and any fraction zero. */
bool iso_on_hour(const struct iso_instant *t);

/* Writes epoch as local time at offset: "2023-02-08T00:00:00-03:00"
 * ("+00:00" for UTC, never "Z"). */
void iso_format(int64_t epoch, int32_t offset, char buf[ISO_FORMAT_LEN]);

/* True when zone names an IANA zone present under /usr/share/zoneinfo
 * (or "UTC"). Refuses absolute paths, "..", and anything not a TZif file. */
bool iso_zone_valid(const char *zone);

/* Offset (seconds east of UTC) in effect in zone at epoch, DST included.
 * Returns -1 for an invalid zone. */
int iso_zone_offset(const char *zone, int64_t epoch, int32_t *offset)
	__attribute__((warn_unused_result));

/* iso_format() with zone's offset at that instant. Returns -1 for an invalid zone. */
int iso_format_in_zone(int64_t epoch, const char *zone, char buf[ISO_FORMAT_LEN])
	__attribute__((warn_unused_result));

/* Days since 1970-01-01 of a proleptic Gregorian date (no range check). */
int64_t iso_days_from_civil(int64_t year, unsigned month, unsigned day);

#endif
