#!/usr/bin/env bash
# The TZif reader (src/isotime_tz.c) against PostgreSQL's AT TIME ZONE: for every
# zone in pg_timezone_names that the daemon's zone rule accepts, the offset
# at T-1 and T of every change of offset the reader knows of in 1970..2037,
# and twice a month (so a change the reader misses shows too). Both read
# Debian's /usr/share/zoneinfo, each with its own code.
#   tz.sh BINARY FAKEAPI   (the binary is not run; build/san/tz_offsets is)
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"

HELPER=$ROOT/build/san/tz_offsets
[ -x "$HELPER" ] || { echo "tz: build $HELPER first (make build/san/tz_offsets)" >&2; exit 1; }
pg_start || { echo "could not start PostgreSQL" >&2; exit 1; }

FROM=0           # 1970-01-01T00:00:00Z
TO=2145916800    # 2038-01-01T00:00:00Z
sql "SELECT name FROM pg_timezone_names ORDER BY name" >"$WORK/pg-zones"
"$HELPER" valid <"$WORK/pg-zones" >"$WORK/zones" 2>"$WORK/refused"
npg=$(wc -l <"$WORK/pg-zones")
nzones=$(wc -l <"$WORK/zones")
echo "# pg_timezone_names: $npg zones; the daemon's rule accepts $nzones, refuses $(wc -l <"$WORK/refused"):" \
	"$(sed 's/^refused //' "$WORK/refused" | sed -E 's#^(posix|right)/.*#\1/…#' | sort -u | tr '\n' ' ')"
# The rule refuses only what SPEC §4 excludes, never a zone PostgreSQL knows
# by its canonical name.
unexpected=$(sed 's/^refused //' "$WORK/refused" | grep -Ev '^(posix/|right/|posixrules$|Factory$|localtime$)')
check "every refused PostgreSQL zone is one SPEC §4 excludes" "" "$unexpected"

"$HELPER" points "$FROM" "$TO" <"$WORK/zones" >"$WORK/ours.tsv" 2>"$WORK/points.log"
check "the reader answers for every accepted zone" 0 $?
ninstants=$(wc -l <"$WORK/ours.tsv")
echo "# $(cat "$WORK/points.log"); $ninstants instants"

# PostgreSQL 15's AT TIME ZONE tries a name as an abbreviation before a
# zone: AT TIME ZONE 'CET' is a fixed +01 all year, while the zone CET (and
# SET timezone = 'CET') has summer time. For zone names that are also
# abbreviations, PostgreSQL's zone rules are reached as posix/NAME: the
# same tzdata zone under tzdata's posix/ tree.
start=$SECONDS
result=$(sql "
CREATE TEMP TABLE ours (zone text, e bigint, off integer);
\copy ours FROM '$WORK/ours.tsv'
CREATE TEMP TABLE abbrev_names AS
	SELECT DISTINCT n.name FROM pg_timezone_names n
	JOIN pg_timezone_abbrevs a ON lower(a.abbrev) = lower(n.name);
CREATE TEMP TABLE cmp AS
	SELECT zone, e, off,
	       extract(epoch FROM (to_timestamp(e) AT TIME ZONE pgzone)
	                        - (to_timestamp(e) AT TIME ZONE 'UTC'))::integer AS theirs,
	       pgzone <> zone AS via_posix
	FROM (SELECT o.*, CASE WHEN o.zone IN (SELECT name FROM abbrev_names)
	                       THEN 'posix/' || o.zone ELSE o.zone END AS pgzone
	      FROM ours o) x;
SELECT count(*) || ' compared, ' || count(*) FILTER (WHERE off <> theirs) || ' differ' FROM cmp;
SELECT string_agg(DISTINCT zone, ' ') FROM cmp WHERE via_posix;
SELECT count(*) FROM ours o JOIN abbrev_names a ON a.name = o.zone
WHERE o.off <> extract(epoch FROM (to_timestamp(o.e) AT TIME ZONE o.zone)
                               - (to_timestamp(o.e) AT TIME ZONE 'UTC'))::integer;
SELECT zone || ' at ' || e || ' (' || to_timestamp(e) AT TIME ZONE 'UTC' || 'Z): ours ' || off
       || ', PostgreSQL ' || theirs
FROM cmp WHERE off <> theirs ORDER BY zone, e LIMIT 20;")
echo "# PostgreSQL compared in $((SECONDS - start)) s"
mapfile -t lines <<<"$result"
echo "# compared as posix/NAME (also abbreviations in PostgreSQL): ${lines[1]}"
echo "# instants where AT TIME ZONE NAME (the abbreviation) differs from the zone: ${lines[2]}"
check "our offsets equal PostgreSQL's in $nzones zones" "$ninstants compared, 0 differ" "${lines[0]}"
[ "${#lines[@]}" -gt 3 ] && printf '    %s\n' "${lines[@]:3}"
# The comparison is only as good as its coverage.
[ "$nzones" -ge 500 ] && ok "over 500 zones compared ($nzones)" || not_ok "only $nzones zones compared"
for z in Australia/Lord_Howe Europe/Madrid America/Santiago Asia/Kathmandu; do
	check_contains "$z is among them" "$z" "$(grep -x "$z" "$WORK/zones")"
done

echo
echo "tz: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
