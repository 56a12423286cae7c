/* isotime_internal: what isotime.c (ISO 8601) and isotime_tz.c (zones) share:
 * the bounded cursor and the calendar helpers. Not an API: static inline, so
 * nothing is exported beyond include/isotime.h. */
#ifndef KSI_ISOTIME_INTERNAL_H
#define KSI_ISOTIME_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SECS_PER_DAY 86400
#define SECS_PER_HOUR 3600

/* A bounded reader over s[0..len): every access checks what is left, so the
 * input never needs a NUL and nothing past len is ever read. */
struct cursor {
	const char *p;
	size_t left;
};

static inline bool cur_peek(const struct cursor *c, char *ch)
{
	if (c->left == 0)
		return false;
	*ch = *c->p;
	return true;
}

static inline void cur_skip(struct cursor *c)
{
	c->p++;
	c->left--;
}

static inline bool cur_take(struct cursor *c, char want)
{
	char ch;

	if (!cur_peek(c, &ch) || ch != want)
		return false;
	cur_skip(c);
	return true;
}

static inline bool is_digit(char ch)
{
	/* Not isdigit(): that depends on the locale and on a cast to unsigned char. */
	return ch >= '0' && ch <= '9';
}

/* Exactly n ASCII digits (n <= 4 here, so no overflow). */
static inline bool cur_digits(struct cursor *c, size_t n, int *out)
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

static inline bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static inline int days_in_month(int64_t y, int m)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (m == 2 && is_leap(y))
		return 29;
	return days[m - 1];
}

/* The inverse of iso_days_from_civil() (isotime.c), from the same paper. */
static inline void civil_from_days(int64_t z, int64_t *year, int *month, int *day)
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

#endif
