/* isotime: parses and writes ISO 8601 instants with pure calendar arithmetic
 * (SPEC §2, §4, §5; why: include/isotime.h). Zones: src/isotime_tz.c. */
#include "isotime.h"

#include <stdio.h>
#include <string.h>

#include "isotime_internal.h"

/* Range iso_format() writes: local times in years 0001..9999, the same years
 * iso_parse() accepts, so the output is always the fixed 25-byte form. */
#define FORMAT_MIN_LOCAL (-62135596800LL) /* 0001-01-01T00:00:00 */
#define FORMAT_MAX_LOCAL (253402300799LL) /* 9999-12-31T23:59:59 */

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
