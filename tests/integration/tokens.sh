#!/usr/bin/env bash
# Token hygiene (SPEC §3): an API that echoes the bearer token — in an error
# page across the 160-byte excerpt, in a redirect's Location path, in a
# record it gets refused for — gets it into no table, no log and no
# test-connection report, not even a fragment of 6 bytes or more.
#   tokens.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"

pg_start || { echo "could not start PostgreSQL" >&2; exit 1; }
fake_start "$FAKE" --token "$TOKEN" || { cat "$WORK/fake.out" >&2; exit 1; }
cat >"$WORK/test.conf" <<CONF
[daemon]
max_per_host = 64
[log]
level = debug
CONF

ksi migrate 2>"$WORK/migrate.log" || { cat "$WORK/migrate.log" >&2; exit 1; }
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, lookback, initial_backfill)
     VALUES ('echo-page', '$FAKE_URL/status/500/echotoken/sales', '$TOKEN', '2 hours', '2 hours'),
            ('echo-redirect', '$FAKE_URL/redirect/echotoken/sales', '$TOKEN', '2 hours', '2 hours'),
            ('echo-record', '$FAKE_URL/echotoken/sales', '$TOKEN', '2 hours', '2 hours');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT c.name, c.id, '0001' FROM ksi_sales.connectors c;" >/dev/null

echo "# once, against an API that echoes the token"
once
check "once exits 1 (two connectors fail)" 1 "$RC"
check_contains "the fake saw the token echoed back (its error page)" "auth=yes" "$(cat "$WORK/fake.log")"

page=$(sql "SELECT error FROM ksi_sales.fetch_runs r JOIN ksi_sales.connectors c ON c.id = r.connector_id
            WHERE c.name = 'echo-page'")
check_contains "the error page's excerpt is kept, masked" "echo:***" "$page"
check_no_fragment "no token fragment in the error page's fetch_runs.error" "$page"

redirect=$(sql "SELECT error FROM ksi_sales.fetch_runs r JOIN ksi_sales.connectors c ON c.id = r.connector_id
                WHERE c.name = 'echo-redirect'")
check_contains "the redirect's target path is named, masked" "/login/***" "$redirect"
check_no_fragment "no token fragment in the redirect's fetch_runs.error" "$redirect"

record=$(sql "SELECT reason || ' ' || record FROM ksi_sales.rejected_records r
              JOIN ksi_sales.connectors c ON c.id = r.connector_id WHERE c.name = 'echo-record'")
check_contains "the record quoting the token is refused for its time" "time_unparseable" "$record"
check_contains "its JSON text is kept, the token masked" '"echo":"***"' "$record"
check_no_fragment "no token fragment in rejected_records" "$record"
check "the echo-record connector's other rows are written" 1 \
	"$(sql "SELECT (count(*) > 0)::int FROM ksi_sales.sales_hourly h
	        JOIN ksi_sales.connectors c ON c.id = h.connector_id WHERE c.name = 'echo-record'")"

check_no_fragment "no token fragment in any fetch_runs column" \
	"$(sql "SELECT r::text FROM ksi_sales.fetch_runs r")"
check_no_fragment "no token fragment in any rejected_records column" \
	"$(sql "SELECT r::text FROM ksi_sales.rejected_records r")"
check_no_fragment "no token fragment in connector_health" \
	"$(sql "SELECT h::text FROM ksi_sales.connector_health h")"
check_no_fragment "no token fragment in once's log" "$(cat "$WORK"/once-*.log)"

echo "# once's summary, from the stats every poll's end reports to"
summary=$(grep "records: " "$WORK/once-1.log")
check_contains "once's summary counts the records its polls upserted" \
	"records: $(sql "SELECT sum(records_upserted) FROM ksi_sales.fetch_runs") upserted" "$summary"
check_contains "and the records refused" \
	"$(sql "SELECT sum(records_rejected) FROM ksi_sales.fetch_runs") refused" "$summary"

echo "# test-connection, against the same APIs"
for c in echo-page echo-redirect echo-record; do
	ksi test-connection -c "$WORK/test.conf" --connector "$c" >"$WORK/tc-$c.txt" 2>&1
	ksi test-connection -c "$WORK/test.conf" --connector "$c" --json >"$WORK/tc-$c.json" 2>&1
	check_no_fragment "no token fragment in test-connection's report for $c" "$(cat "$WORK/tc-$c.txt")"
	check_no_fragment "no token fragment in test-connection --json for $c" "$(cat "$WORK/tc-$c.json")"
done
check_contains "test-connection shows the masked redirect target" "/login/***" "$(cat "$WORK/tc-echo-redirect.txt")"

echo "tokens: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
