/* tz_offsets: prints what isotime's TZif reader says, for tests/integration/tz.sh
 * to compare with PostgreSQL's AT TIME ZONE.
 *   tz_offsets valid            zone names on stdin; prints those iso_zone_valid()
 *                               accepts, and "refused NAME" on stderr for the rest
 *   tz_offsets points FROM TO   zone names on stdin; prints "zone<TAB>epoch<TAB>offset"
 *                               at T-1 and T for every change of offset T in
 *                               [FROM, TO), and twice a month in 1970..2037
 *                               (the 1st at 00:00 UTC, the 16th at 12:30), so
 *                               a change the reader misses still shows as a
 *                               wrong offset. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isotime.h"

static int print_point(const char *zone, const struct iso_tz *tz, int64_t t)
{
	int32_t off;

	if (iso_tz_offset(tz, t, &off) != 0) {
		fprintf(stderr, "tz_offsets: %s: no offset at %" PRId64 "\n", zone, t);
		return -1;
	}
	printf("%s\t%" PRId64 "\t%" PRId32 "\n", zone, t, off);
	return 0;
}

static int points(const char *zone, int64_t from, int64_t to, long *nchanges)
{
	const struct iso_tz *tz;
	int rc = 0;

	if (iso_zone_load(zone, &tz) != 0) {
		fprintf(stderr, "tz_offsets: %s: not a valid zone\n", zone);
		return -1;
	}
	for (int64_t t = iso_tz_next_change(tz, from - 1); t < to; t = iso_tz_next_change(tz, t)) {
		(*nchanges)++;
		rc |= print_point(zone, tz, t - 1);
		rc |= print_point(zone, tz, t);
	}
	for (int64_t y = 1970; y <= 2037; y++) {
		for (unsigned m = 1; m <= 12; m++) {
			int64_t first = iso_days_from_civil(y, m, 1) * 86400;
			int64_t mid = iso_days_from_civil(y, m, 16) * 86400 + 12 * 3600 + 1800;

			if (first >= from && first < to)
				rc |= print_point(zone, tz, first);
			if (mid >= from && mid < to)
				rc |= print_point(zone, tz, mid);
		}
	}
	return rc;
}

int main(int argc, char **argv)
{
	char line[512];
	long nzones = 0, nchanges = 0;
	int rc = 0;

	if (argc < 2 ||
	    (strcmp(argv[1], "valid") != 0 && (strcmp(argv[1], "points") != 0 || argc != 4))) {
		fprintf(stderr, "usage: tz_offsets valid | tz_offsets points FROM TO\n");
		return 2;
	}
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = '\0';
		if (strcmp(argv[1], "valid") == 0) {
			if (iso_zone_valid(line))
				printf("%s\n", line);
			else
				fprintf(stderr, "refused %s\n", line);
			continue;
		}
		nzones++;
		if (points(line, strtoll(argv[2], NULL, 10), strtoll(argv[3], NULL, 10),
		           &nchanges) != 0)
			rc = 1;
	}
	if (strcmp(argv[1], "points") == 0)
		fprintf(stderr, "tz_offsets: %ld zones, %ld changes of offset\n", nzones, nchanges);
	return rc;
}
