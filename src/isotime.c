/* isotime: parses and writes ISO 8601 instants with pure calendar arithmetic,
 * and asks glibc for IANA zone offsets (SPEC §2, §5). */
#include "isotime.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ZONEINFO_DIR "/usr/share/zoneinfo"
#define ZONE_NAME_MAX 255 /* longest IANA name is ~30 bytes; this only bounds the path */

#define SECS_PER_DAY 86400
#define SECS_PER_HOUR 3600

/* Range iso_format() writes: local times in years 0001..9999, the same years
 * iso_parse() accepts, so the output is always the fixed 25-byte form. */
#define FORMAT_MIN_LOCAL (-62135596800LL) /* 0001-01-01T00:00:00 */
#define FORMAT_MAX_LOCAL (253402300799LL) /* 9999-12-31T23:59:59 */

/* A bounded reader over s[0..len): every access checks what is left, so the
 * input never needs a NUL and nothing past len is ever read. */
struct cursor {
	const char *p;
	size_t left;
};

static bool cur_peek(const struct cursor *c, char *ch)
{
	if (c->left == 0)
		return false;
	*ch = *c->p;
	return true;
}

static void cur_skip(struct cursor *c)
{
	c->p++;
	c->left--;
}

static bool cur_take(struct cursor *c, char want)
{
	char ch;

	if (!cur_peek(c, &ch) || ch != want)
		return false;
	cur_skip(c);
	return true;
}

static bool is_digit(char ch)
{
	/* Not isdigit(): that depends on the locale and on a cast to unsigned char. */
	return ch >= '0' && ch <= '9';
}

/* Exactly n ASCII digits (n <= 4 here, so no overflow). */
static bool cur_digits(struct cursor *c, size_t n, int *out)
{
	int v = 0;

	if (c->left < n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(c->p[i]))
			return false;
		v = v * 10 + (c->p[i] - '0');
	}
	c->p += n;
	c->left -= n;
	*out = v;
	return true;
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (m == 2 && is_leap(y))
		return 29;
	return days[m - 1];
}

int64_t iso_days_from_civil(int64_t year, unsigned month, unsigned day)
{
	/* Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms": count in
	 * 400-year eras of a calendar whose year starts on 1 March, so the leap
	 * day is the last day of the year. */
	int64_t m = month, d = day;
	int64_t y = year - (m <= 2);
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;                                   /* [0, 399] */
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */

	return era * 146097 + doe - 719468;
}

/* The inverse of iso_days_from_civil(), same source. */
static void civil_from_days(int64_t z, int64_t *year, int *month, int *day)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;                                      /* [0, 146096] */
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
	int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
	int m = (int)(mp < 10 ? mp + 3 : mp - 9);

	*day = (int)(doy - (153 * mp + 2) / 5 + 1);
	*month = m;
	*year = yoe + era * 400 + (m <= 2);
}

/* The offset after the seconds: Z, ±HH:MM, ±HHMM or ±HH, then end of input. */
static bool parse_offset(struct cursor *c, int32_t *offset)
{
	char ch;
	int sign, hh, mm = 0;

	if (!cur_peek(c, &ch))
		return false;
	cur_skip(c);
	if (ch == 'Z' || ch == 'z') {
		*offset = 0;
		return c->left == 0;
	}
	if (ch == '+')
		sign = 1;
	else if (ch == '-')
		sign = -1;
	else
		return false;
	if (!cur_digits(c, 2, &hh))
		return false;
	if (c->left > 0) {
		/* ±HH:MM or ±HHMM; a dangling ':' fails in cur_digits(). */
		(void)cur_take(c, ':');
		if (!cur_digits(c, 2, &mm))
			return false;
	}
	if (c->left != 0 || hh > 23 || mm > 59)
		return false;
	*offset = sign * (hh * SECS_PER_HOUR + mm * 60);
	return true;
}

enum iso_status iso_parse(const char *s, size_t len, struct iso_instant *out)
{
	struct cursor c = {s, len};
	int year, month, day, hour, minute, second = 0;
	bool nonzero = false;
	int32_t offset;
	char ch;

	/* Zeroed unless ISO_OK, so no caller can use half-parsed fields. */
	memset(out, 0, sizeof(*out));
	if (s == NULL)
		return ISO_UNPARSEABLE;
	if (!cur_digits(&c, 4, &year) || !cur_take(&c, '-') || !cur_digits(&c, 2, &month) ||
	    !cur_take(&c, '-') || !cur_digits(&c, 2, &day))
		return ISO_UNPARSEABLE;
	/* Lower-case 't' as RFC 3339 §5.6 allows, like lower-case 'z'. */
	if (!cur_take(&c, 'T') && !cur_take(&c, 't'))
		return ISO_UNPARSEABLE;
	if (!cur_digits(&c, 2, &hour) || !cur_take(&c, ':') || !cur_digits(&c, 2, &minute))
		return ISO_UNPARSEABLE;
	if (cur_take(&c, ':')) {
		if (!cur_digits(&c, 2, &second))
			return ISO_UNPARSEABLE;
		/* Only '.' as the decimal sign (the guide's form), at least one digit,
		 * any number of them: only "is it zero" matters. */
		if (cur_take(&c, '.')) {
			size_t n = 0;

			while (cur_peek(&c, &ch) && is_digit(ch)) {
				nonzero = nonzero || ch != '0';
				cur_skip(&c);
				n++;
			}
			if (n == 0)
				return ISO_UNPARSEABLE;
		}
	}
	/* Years 0001..9999: four digits, and year 0 has no agreed meaning in
	 * ISO 8601 without a prior arrangement. Seconds stop at 59: no leap
	 * second can be represented in an epoch anyway. */
	if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
	    hour > 23 || minute > 59 || second > 59)
		return ISO_UNPARSEABLE;
	if (c.left == 0)
		return ISO_NO_OFFSET;
	if (!parse_offset(&c, &offset))
		return ISO_UNPARSEABLE;

	out->epoch = iso_days_from_civil(year, (unsigned)month, (unsigned)day) * SECS_PER_DAY +
	             hour * SECS_PER_HOUR + minute * 60 + second - offset;
	out->offset = offset;
	out->minute = minute;
	out->second = second;
	out->fraction_nonzero = nonzero;
	return ISO_OK;
}

bool iso_on_hour(const struct iso_instant *t)
{
	return t->minute == 0 && t->second == 0 && !t->fraction_nonzero;
}

void iso_format(int64_t epoch, int32_t offset, char buf[ISO_FORMAT_LEN])
{
	int64_t local, days, secs, year;
	int month, day, off_min;

	buf[0] = '\0';
	/* Historical zones (LMT) have offsets with seconds, which ±HH:MM cannot
	 * carry: write the offset truncated to whole minutes and the local time
	 * at that offset, so the string still names exactly this instant. */
	off_min = offset / 60;
	if (off_min <= -24 * 60 || off_min >= 24 * 60)
		return;
	/* Outside years 0001..9999 the result would not be the fixed-width
	 * form anyone expects; leave "" (callers only pass parsed or clock
	 * instants) rather than a string a server might misread. */
	if (__builtin_add_overflow(epoch, (int64_t)off_min * 60, &local) ||
	    local < FORMAT_MIN_LOCAL || local > FORMAT_MAX_LOCAL)
		return;
	days = local / SECS_PER_DAY;
	secs = local % SECS_PER_DAY;
	if (secs < 0) { /* C division truncates toward zero; we need the floor */
		secs += SECS_PER_DAY;
		days--;
	}
	civil_from_days(days, &year, &month, &day);
	/* Always true given the range check above; spelt out so gcc's
	 * -Wformat-truncation can see every field's width. */
	if (year < 1 || year > 9999 || month < 1 || month > 12 || day < 1 || day > 31)
		return;
	int abs_min = off_min < 0 ? -off_min : off_min;
	snprintf(buf, ISO_FORMAT_LEN, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", (int)year, month,
	         day, (int)(secs / SECS_PER_HOUR), (int)(secs / 60 % 60), (int)(secs % 60),
	         off_min < 0 ? '-' : '+', abs_min / 60, abs_min % 60);
}

static bool zone_name_ok(const char *zone)
{
	size_t len = strlen(zone);
	const char *comp = zone;

	if (len == 0 || len > ZONE_NAME_MAX || zone[0] == '/')
		return false;
	/* "localtime" under zoneinfo points at the host's /etc/localtime: a
	 * host setting, not an IANA zone, so a connector could change meaning
	 * when moved to another machine. */
	if (strcmp(zone, "localtime") == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = zone[i];

		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || is_digit(ch) ||
		      ch == '/' || ch == '_' || ch == '+' || ch == '-'))
			return false;
	}
	/* The character set already excludes '.', so ".." cannot occur; the
	 * component check stays as defence should that set ever widen, and
	 * refuses empty components ("Europe/", "Europe//Madrid"). */
	for (;;) {
		const char *slash = strchr(comp, '/');
		size_t n = slash ? (size_t)(slash - comp) : strlen(comp);

		if (n == 0 || (n == 1 && comp[0] == '.') ||
		    (n == 2 && comp[0] == '.' && comp[1] == '.'))
			return false;
		if (!slash)
			return true;
		comp = slash + 1;
	}
}

bool iso_zone_valid(const char *zone)
{
	char path[sizeof(ZONEINFO_DIR) + 1 + ZONE_NAME_MAX + 1];
	char magic[4];
	struct stat st;
	bool ok;
	int fd;

	if (zone == NULL)
		return false;
	if (strcmp(zone, "UTC") == 0)
		return true;
	if (!zone_name_ok(zone))
		return false;
	snprintf(path, sizeof(path), "%s/%s", ZONEINFO_DIR, zone);
	/* Symlinks are followed on purpose: tzdata ships aliases as symlinks
	 * (UTC -> Etc/UTC). O_NONBLOCK so a FIFO cannot hang the open; fstat
	 * on the open descriptor so the file checked is the file read. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return false;
	ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	     read(fd, magic, sizeof(magic)) == (ssize_t)sizeof(magic) &&
	     memcmp(magic, "TZif", sizeof(magic)) == 0;
	close(fd);
	return ok;
}

/* Puts TZ back as it was: the saved copy, or unset. */
static void restore_tz(char *saved)
{
	/* Nothing useful can be done if this fails (ENOMEM): the offset we
	 * computed is still right, and the daemon never relies on TZ itself. */
	if (saved)
		(void)setenv("TZ", saved, 1);
	else
		(void)unsetenv("TZ");
	tzset();
}

int iso_zone_offset(const char *zone, int64_t epoch, int32_t *offset)
{
	char tzval[1 + sizeof(ZONEINFO_DIR) + 1 + ZONE_NAME_MAX + 1];
	const char *old;
	char *saved = NULL;
	struct tm tm;
	time_t t = (time_t)epoch;
	bool ok;

	/* Validate first: glibc silently falls back to UTC for an unknown TZ. */
	if (!iso_zone_valid(zone) || (int64_t)t != epoch)
		return -1;
	if (strcmp(zone, "UTC") == 0) {
		*offset = 0;
		return 0;
	}
	/* ":/absolute/path" makes glibc read exactly the file iso_zone_valid()
	 * checked, whatever TZDIR says (tzset(3)). No cache of the last zone:
	 * glibc re-reads the file whenever TZ changes, and TZ must be restored
	 * after every call, so a cache would save little. */
	snprintf(tzval, sizeof(tzval), ":%s/%s", ZONEINFO_DIR, zone);
	old = getenv("TZ");
	if (old) {
		/* Copied: setenv() may free the string getenv() returned. */
		saved = strdup(old);
		if (!saved)
			return -1;
	}
	if (setenv("TZ", tzval, 1) != 0) {
		free(saved);
		return -1;
	}
	tzset();
	ok = localtime_r(&t, &tm) != NULL;
	restore_tz(saved);
	free(saved);
	if (!ok || tm.tm_gmtoff <= -SECS_PER_DAY || tm.tm_gmtoff >= SECS_PER_DAY)
		return -1;
	*offset = (int32_t)tm.tm_gmtoff;
	return 0;
}

int iso_format_in_zone(int64_t epoch, const char *zone, char buf[ISO_FORMAT_LEN])
{
	int32_t offset;

	buf[0] = '\0';
	if (iso_zone_offset(zone, epoch, &offset) != 0)
		return -1;
	iso_format(epoch, offset, buf);
	/* iso_format() leaves "" for instants outside years 0001..9999. */
	return buf[0] ? 0 : -1;
}
