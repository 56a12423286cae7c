/* isotime: ISO 8601 instants and IANA time-zone offsets (SPEC §2, §4, §5).
 *
 * Pure arithmetic, plus a TZif reader of its own for zone offsets. Why not
 * the C library: glibc only answers for the zone in the TZ variable, and
 * switching TZ (setenv + tzset) in a process whose database threads read the
 * environment (libpq's PG* defaults) is undefined behaviour. So nothing here
 * reads or writes the environment, and every function is thread-safe.
 *
 * The reader (RFC 8536) takes the 64-bit data of TZif v2, v3 and v4 files
 * (v1 files' 32-bit data when that is all there is) and, for instants after
 * the last transition, the POSIX TZ rule of the footer
 * ("std offset [dst [offset] [,start[/time],end[/time]]]", with Jn, n and
 * Mm.w.d dates and v3's -167..167 hour times): Debian's slim files list no
 * transitions past the present and leave every future one to the footer.
 * Each file is bounded (ISO_TZIF_MAX_BYTES), every count is checked against
 * the bytes present, and files with leap-second records (right/) are refused.
 * A zone is read once and kept for the life of the process, in a cache behind
 * a mutex; entries are never freed, so a pointer from iso_zone_load() stays
 * valid. A tzdata upgrade is therefore seen at the next restart.
 *
 * Zone names (SPEC §4, daemon side): a canonical IANA name in exact case
 * that is a TZif file under /usr/share/zoneinfo. Refused: empty names,
 * absolute paths, components other than [A-Za-z0-9_+-] (so "..", "." and
 * hidden files), "localtime", "posixrules", "Factory", anything under
 * "posix/" or "right/", POSIX strings ("UTC+3", "<+03>-3", "+05:30"),
 * abbreviations that are not files ("CEST") and files that are not TZif.
 * "UTC" is also known without the file, so the default zone works on a host
 * without tzdata. */
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

/* A zone's rules, read from a TZif file or a POSIX TZ string. Opaque. */
struct iso_tz;

#define ISO_TZIF_MAX_BYTES (256 * 1024) /* tzdata's largest file is under 4 KiB */
/* Instants the zone functions answer for: about ±34,000 years around 1970,
 * far beyond anything a window can hold, and no arithmetic can overflow. */
#define ISO_TZ_MIN_EPOCH (-(INT64_C(1) << 40))
#define ISO_TZ_MAX_EPOCH (INT64_C(1) << 40)

/* Parses a TZif file held in buf[0..len) into *out (iso_tz_free() it).
 * Never reads past len; -1 on anything malformed, truncated, over
 * ISO_TZIF_MAX_BYTES, with leap seconds, or on out of memory. */
int iso_tz_parse_tzif(const void *buf, size_t len, struct iso_tz **out)
    __attribute__((warn_unused_result));

/* Parses a POSIX TZ rule string s[0..len) (a TZif footer, e.g.
 * "CET-1CEST,M3.5.0,M10.5.0/3") into a zone with no transition table.
 * -1 when it is not one. */
int iso_tz_parse_posix(const char *s, size_t len, struct iso_tz **out)
    __attribute__((warn_unused_result));

void iso_tz_free(struct iso_tz *tz);

/* Offset (seconds east of UTC) in effect at epoch. -1 when epoch is outside
 * [ISO_TZ_MIN_EPOCH, ISO_TZ_MAX_EPOCH]. */
int iso_tz_offset(const struct iso_tz *tz, int64_t epoch, int32_t *offset)
    __attribute__((warn_unused_result));

/* The first instant T > after at which the offset changes (offset(T) !=
 * offset(T - 1)), or INT64_MAX when there is none within range. Transitions
 * that change only the abbreviation or the DST flag are not changes. */
int64_t iso_tz_next_change(const struct iso_tz *tz, int64_t after);

/* The last instant T <= at at which the offset changes, or INT64_MIN. */
int64_t iso_tz_prev_change(const struct iso_tz *tz, int64_t at);

/* True when zone follows the rule above and its file parses. */
bool iso_zone_valid(const char *zone);

/* The cached rules of a valid zone (read on first use). -1 otherwise. */
int iso_zone_load(const char *zone, const struct iso_tz **out) __attribute__((warn_unused_result));

/* Offset (seconds east of UTC) in effect in zone at epoch, DST included.
 * Returns -1 for an invalid zone or an epoch out of range. */
int iso_zone_offset(const char *zone, int64_t epoch, int32_t *offset)
    __attribute__((warn_unused_result));

/* iso_format() with zone's offset at that instant. Returns -1 for an invalid zone. */
int iso_format_in_zone(int64_t epoch, const char *zone, char buf[ISO_FORMAT_LEN])
    __attribute__((warn_unused_result));

/* Days since 1970-01-01 of a proleptic Gregorian date (no range check). */
int64_t iso_days_from_civil(int64_t year, unsigned month, unsigned day);

#endif
