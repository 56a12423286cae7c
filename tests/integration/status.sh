#!/usr/bin/env bash
# Integration tests of `status` for monitoring (issue 13 item 5): 160
# connectors in every state (ok and failing polled by `once` against the
# fake API, never polled, one of them past due, no stores, disabled). The
# table fits 80 columns (counted in display columns, not bytes), the summary
# line says what SQL says, --wide shows everything, the exit code says
# whether any connector needs a look, and --json's states are identifiers.
#   status.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"
pg_start || exit 1
fake_start "$FAKE" --token "$TOKEN" || exit 1
printf '[daemon]\nmax_concurrent_fetches = 32\nmax_per_host = 64\n[log]\nlevel = warning\n' >"$WORK/test.conf"
ksi migrate 2>/dev/null || exit 1
# The width is chosen by the tests below, never by the caller's shell.
unset COLUMNS

# width: the widest line of stdin in display columns (East Asian wide 2,
# combining marks 0); exits 2 when stdin is not valid UTF-8.
width() {
	python3 -c '
import sys, unicodedata
try:
    text = sys.stdin.buffer.read().decode("utf-8")
except UnicodeDecodeError as e:
    print("not UTF-8:", e); sys.exit(2)
def cols(line):
    return sum(0 if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf")
               else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in line)
print(max([cols(l) for l in text.replace("\r", "").split("\n")] + [0]))'
}

# A name of two-byte, wide and combining characters, longer than the
# CONNECTOR column at 80: é×8, 日本市場, ü×6, e + combining acute.
UNAME="$(printf 'caf\xc3\xa9-\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9-\xe6\x97\xa5\xe6\x9c\xac\xe5\xb8\x82\xe5\xa0\xb4-\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc-cafe\xcc\x81-norte')"
# An unknown path segment: the fake's 404 names it, a long error.
LONGSEG=$(printf 'segment%.0s' $(seq 1 25))

# 100 ok (one with the UTF-8 name), 40 failing (one with a long error),
# 5 without stores, 5 disabled; polled once. Then 10 never polled.
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
     SELECT CASE WHEN i = 1 THEN :'uname' ELSE 'shop-' || lpad(i::text, 3, '0') END,
            '$FAKE_URL/sales', '$TOKEN', '2 hours' FROM generate_series(1, 100) i;
     INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
     SELECT 'down-' || lpad(i::text, 2, '0'),
            CASE WHEN i = 1 THEN '$FAKE_URL/$LONGSEG/sales' ELSE '$FAKE_URL/status/500/sales' END,
            '$TOKEN', '2 hours' FROM generate_series(1, 40) i;
     INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token)
     SELECT 'empty-' || i, '$FAKE_URL/sales', '$TOKEN' FROM generate_series(1, 5) i;
     INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, enabled)
     SELECT 'off-' || i, '$FAKE_URL/sales', '$TOKEN', false FROM generate_series(1, 5) i;
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT c.name || '-A1', c.id, 'A1' FROM ksi_sales.connectors c WHERE c.name NOT LIKE 'empty-%'" \
	-v uname="$UNAME" >/dev/null || exit 1
once
check "once polls the 140 connectors with stores: 40 fail (exit 1)" "1 140" \
	"$RC $(sql "SELECT count(DISTINCT connector_id) FROM ksi_sales.fetch_runs")"
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token)
     SELECT 'new-' || lpad(i::text, 2, '0'), '$FAKE_URL/sales', '$TOKEN' FROM generate_series(1, 10) i;
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT c.name || '-A1', c.id, 'A1' FROM ksi_sales.connectors c WHERE c.name LIKE 'new-%';
     -- Added a day ago and still never polled: no daemon is polling it.
     UPDATE ksi_sales.connectors SET created_at = now() - interval '1 day' WHERE name = 'new-01'" >/dev/null
check "the states, as the view counts them" \
	"disabled 5,failing 40,never polled 10,no stores linked 5,ok 100" \
	"$(sql "SELECT string_agg(state || ' ' || n, ',' ORDER BY state) FROM
	        (SELECT state, count(*) AS n FROM ksi_sales.connector_health GROUP BY state) s")"

echo "# the default table: 80 columns when stdout is not a terminal"
ksi status -c "$WORK/test.conf" >"$WORK/s.out" 2>"$WORK/s.err"
check "status exits 1 while connectors fail" "1" "$?"
check "nothing on stderr" "" "$(cat "$WORK/s.err")"
check "every line is at most 80 display columns (and valid UTF-8)" "80" "$(width <"$WORK/s.out")"
# Each line is a screen row: the table has one line per connector.
nsum=$(grep -n '^CONNECTOR ' "$WORK/s.out" | cut -d: -f1)
# The table ends at the blank line before the partitions of the audit tables.
check "one header and one line per connector after the summary" "$((nsum + 160))" "$(sed '/^$/,$d' "$WORK/s.out" | wc -l)"
check "then a blank line, and the audit tables' partitions (a new installation: kept from the start)" \
	"fetch_runs: 9 partitions, kept from the start (one partition up to $(date -u +%Y-%m-%d) 00:00Z), next boundary $(date -u -d '+1 day' +%Y-%m-%d) 00:00Z" \
	"$(sed '1,/^$/d' "$WORK/s.out" | tr -s ' \n' '  ' | sed 's/, partitions until.*//')"
summary=$(head -n $((nsum - 1)) "$WORK/s.out" | tr -s ' \n' '  ' | sed 's/ $//')
want=$(sql "SELECT count(*) || ' connectors: '
               || count(*) FILTER (WHERE state = 'ok') || ' ok, '
               || count(*) FILTER (WHERE state = 'failing') || ' failing, '
               || count(*) FILTER (WHERE state = 'never polled') || ' never polled ('
               || count(*) FILTER (WHERE state = 'never polled'
                                   AND connector_id = (SELECT id FROM ksi_sales.connectors WHERE name = 'new-01'))
               || ' overdue), '
               || count(*) FILTER (WHERE state = 'no stores linked') || ' no stores, '
               || count(*) FILTER (WHERE state = 'disabled') || ' disabled'
            FROM ksi_sales.connector_health")
check "the summary comes first and its counts are SQL's" "$want" "$summary"
check "which reads" "160 connectors: 100 ok, 40 failing, 10 never polled (1 overdue), 5 no stores, 5 disabled" "$summary"
check "failing connectors first, then the overdue one" "down-01 new-01" \
	"$(sed -n "$((nsum + 1))p;$((nsum + 41))p" "$WORK/s.out" | awk '{ print $1 }' | tr '\n' ' ' | sed 's/ $//')"
check_contains "the overdue one says when it was due" "no poll yet, due by" "$(grep '^new-01 ' "$WORK/s.out")"
header=$(sed -n "${nsum}p" "$WORK/s.out")
# Shortening LAST ERROR and CONNECTOR is not enough here: STORES, LAST
# OUTCOME, ROWS 24H, SYNCED UNTIL and FAILURES go, in that order.
check "at 80 columns: CONNECTOR, STATE, LAST SUCCESS, LAST ERROR" \
	"CONNECTOR STATE LAST SUCCESS LAST ERROR" "$(echo "$header" | tr -s ' ')"
longerr=$(sql "SELECT last_error FROM ksi_sales.connector_health WHERE name = 'down-01'")
check "the long error is over 150 characters" "t" "$([ ${#longerr} -gt 150 ] && echo t)"
check_absent "and is not printed whole at 80 columns" "$longerr" "$(cat "$WORK/s.out")"
check_contains "but cut with an ellipsis" "…" "$(grep '^down-01 ' "$WORK/s.out")"

echo "# a multi-byte UTF-8 name is cut between characters"
uline=$(grep '^caf' "$WORK/s.out")
check_contains "its line has an ellipsis" "…" "$uline"
check_absent "not the whole name" "$UNAME" "$uline"
check_contains "the end of the name is kept (cut in the middle)" "-norte " "$uline"
check "the line is valid UTF-8 and fits" "t" "$(w=$(printf '%s\n' "$uline" | width) && [ "$w" -le 80 ] && echo t)"

echo "# --wide: every column in full"
ksi status -c "$WORK/test.conf" --wide >"$WORK/w.out" 2>/dev/null
check "status --wide exits 1 too" "1" "$?"
check_contains "the long error in full" "$longerr" "$(cat "$WORK/w.out")"
check_contains "the whole UTF-8 name" "$UNAME" "$(cat "$WORK/w.out")"
check "every column" "CONNECTOR STATE STORES LAST OUTCOME LAST SUCCESS FAILURES SYNCED UNTIL ROWS 24H LAST ERROR" \
	"$(grep '^CONNECTOR ' "$WORK/w.out" | tr -s ' ')"
check "still one line per connector" "$((160 + 2))" "$(sed '/^$/,$d' "$WORK/w.out" | wc -l)"
check "and wider than 80 columns" "t" "$([ "$(width <"$WORK/w.out")" -gt 80 ] && echo t)"

echo "# the width: \$COLUMNS, else the terminal"
COLUMNS=120 ksi status -c "$WORK/test.conf" >"$WORK/c.out" 2>/dev/null
check "COLUMNS=120: the widest line is 120 columns" "120" "$(width <"$WORK/c.out")"
COLUMNS=200 ksi status -c "$WORK/test.conf" >"$WORK/c.out" 2>/dev/null
check "COLUMNS=200: lines fit 200" "t" "$([ "$(width <"$WORK/c.out")" -le 200 ] && echo t)"
check "and the summary is one line" "2" "$(grep -n '^CONNECTOR ' "$WORK/c.out" | cut -d: -f1)"
COLUMNS=abc ksi status -c "$WORK/test.conf" >"$WORK/c.out" 2>/dev/null
check "COLUMNS=abc is ignored: 80" "80" "$(width <"$WORK/c.out")"
if script -qec "true" /dev/null >/dev/null 2>&1; then
	script -qec "stty cols 60; '$BIN' status -c '$WORK/test.conf'; echo \"rc=\$?\"" /dev/null \
		>"$WORK/t.out" 2>&1 </dev/null
	check "under a terminal 60 columns wide, lines fit 60" "t" \
		"$(w=$(grep -v '^rc=' "$WORK/t.out" | width) && [ "$w" -le 60 ] && [ "$w" -ge 50 ] && echo t)"
	check "and the table is all there" "161 rc=1" \
		"$(grep -c -E '^(CONNECTOR|shop-|down-|new-|empty-|off-|caf)' "$WORK/t.out") $(grep -o 'rc=[0-9]*' "$WORK/t.out" | tr -d '\r')"
	script -qec "stty cols 200; '$BIN' status -c '$WORK/test.conf'" /dev/null >"$WORK/t.out" 2>&1 </dev/null
	check "under a terminal 200 columns wide, the table is wider than 80" "t" \
		"$(w=$(width <"$WORK/t.out") && [ "$w" -gt 80 ] && [ "$w" -le 200 ] && echo t)"
else
	echo "# skipped: script(1) cannot run a pseudo-terminal here"
fi

echo "# exit codes"
ksi status -c "$WORK/test.conf" --no-fail >/dev/null 2>&1
check "--no-fail exits 0 with connectors failing" "0" "$?"
ksi status -c "$WORK/test.conf" --json >"$WORK/j.out" 2>/dev/null
check "--json exits 1 too" "1" "$?"
ksi status -c "$WORK/test.conf" --json --no-fail >/dev/null 2>&1
check "--json --no-fail exits 0" "0" "$?"
ksi status -c "$WORK/test.conf" --no-fail -d "host=/nonexistent dbname=x connect_timeout=2" >/dev/null 2>&1
check "--no-fail does not hide an unreachable database (3)" "3" "$?"
ksi status --wide --bogus >/dev/null 2>&1
check "a bad option exits 2" "2" "$?"
ksi once --no-fail >/dev/null 2>&1
check "--no-fail is status's only: once refuses it (2)" "2" "$?"

echo "# --json"
json=$(cat "$WORK/j.out")
check "one JSON list of 160, failing first" "160 down-01 failing" \
	"$(sql "SELECT json_array_length(:'doc') || ' ' || (:'doc'::json->0->>'name') || ' ' || (:'doc'::json->0->>'state')" -v doc="$json")"
check "states are identifiers without spaces" "disabled 5,failing 40,never_polled 10,no_stores 5,ok 100" \
	"$(sql "SELECT string_agg(s || ' ' || n, ',' ORDER BY s) FROM
	        (SELECT e->>'state' AS s, count(*) AS n FROM json_array_elements(:'doc') e GROUP BY 1) x" -v doc="$json")"
check "healthy is false exactly for the failing and the overdue" "41 true" \
	"$(sql "SELECT count(*) FILTER (WHERE NOT (e->>'healthy')::bool) || ' '
	        || bool_and((e->>'overdue')::bool = (e->>'name' = 'new-01'))
	        FROM json_array_elements(:'doc') e" -v doc="$json")"
check "the view's columns are all there" "t" \
	"$(sql "SELECT bool_and(e::jsonb ?& (SELECT array_agg(column_name::text) FROM information_schema.columns
	                                      WHERE table_schema = 'ksi_sales' AND table_name = 'connector_health'))
	        FROM json_array_elements(:'doc') e" -v doc="$json")"
check "the UTF-8 name comes through whole" "1" \
	"$(sql "SELECT count(*) FROM json_array_elements(:'doc') e WHERE e->>'name' = :'uname'" -v doc="$json" -v uname="$UNAME")"

echo "# all healthy: 0"
# The operator stops polling the broken customers; the 9 new connectors
# added just now are not due yet, so they are not a failure.
sql "UPDATE ksi_sales.connectors SET enabled = false WHERE name LIKE 'down-%' OR name = 'new-01'" >/dev/null
ksi status -c "$WORK/test.conf" >"$WORK/h.out" 2>&1
check "status exits 0 when none is failing or overdue" "0" "$?"
check "and says so first" "160 connectors: 100 ok, 0 failing, 9 never polled, 5 no stores, 46 disabled" \
	"$(head -1 "$WORK/h.out")"
ksi status -c "$WORK/test.conf" --json >/dev/null 2>&1
check "status --json exits 0 as well" "0" "$?"
sql "UPDATE ksi_sales.connectors SET created_at = now() - interval '20 minutes', poll_interval = '1 minute',
     request_timeout = '10 seconds' WHERE name = 'new-02'" >/dev/null
ksi status -c "$WORK/test.conf" >"$WORK/h.out" 2>&1
check "never polled 20 minutes after being added with poll_interval 1 min is overdue: 1" "1" "$?"
check_contains "and the summary says why" "9 never polled (1 overdue)" "$(head -1 "$WORK/h.out")"

echo "# the token"
check_absent "never in any output" "$TOKEN" "$(cat "$WORK"/*.out "$WORK"/*.err "$WORK"/*.log)"

echo
echo "status: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
