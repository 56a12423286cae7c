#!/usr/bin/env bash
# Integration tests of the request tables `ksi-salesd run` executes:
# connection_tests (the probe of test-connection, run by the daemon) and
# backfill_requests (a backfill under the connector's lease, with progress),
# including a SIGTERM that abandons a backfill and a restart that resumes
# it, and rows left 'running' by a crashed daemon. Every wait is for a
# condition, with a deadline.
#   requests.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"



pg_start || exit 1
fake_start "$FAKE" --token "$TOKEN" || exit 1
ksi migrate 2>/dev/null || { echo "migrate failed" >&2; exit 1; }

# claim_interval is long on purpose: a request picked up within seconds
# was woken by its INSERT's NOTIFY, not by the periodic claim.
daemon_conf "$WORK/d.conf" 5s 30s
daemon_conf "$WORK/short.conf" 1s 30s

# Conditions for wait_for: each runs its query again every time it is called.
sql_is() { [ "$(sql "$2")" = "$1" ]; }
finished() { sql_is 1 "SELECT count(*) FROM ksi_sales.$1 WHERE id = $2 AND status IN ('done', 'failed')"; }
picked_up() { sql_is 1 "SELECT count(*) FROM ksi_sales.$1 WHERE id = $2 AND status <> 'pending'"; }
polled_and_free() {
	sql_is 1 "SELECT count(*) FROM ksi_sales.connector_state s JOIN ksi_sales.connectors c ON c.id = s.connector_id
	          WHERE c.name = '$1' AND s.lease_owner IS NULL
	            AND EXISTS (SELECT 1 FROM ksi_sales.fetch_runs r WHERE r.connector_id = c.id)"
}
windows_done_ge() { [ "$(sql "SELECT coalesce(windows_done, 0) FROM ksi_sales.backfill_requests WHERE id = $1")" -ge "$2" ]; }
# test_field ID EXPR: one value of connection test ID.
test_field() { sql "SELECT $2 FROM ksi_sales.connection_tests WHERE id = $1"; }
bf_field() { sql "SELECT $2 FROM ksi_sales.backfill_requests WHERE id = $1"; }

add_connector() { # NAME PATH [initial_backfill] [max_window]
	sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill, poll_interval, max_window)
	     VALUES ('$1', '$FAKE_URL/$2', '$TOKEN', '${3:-3 hours}', '1 hour', '${4:-24 hours}');
	     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
	     SELECT 'Store ' || code || ' of $1', c.id, code
	     FROM ksi_sales.connectors c, unnest(ARRAY['0001', '0002', '0003']) AS code WHERE c.name = '$1'" >/dev/null
}
conn() { echo "(SELECT id FROM ksi_sales.connectors WHERE name = '$1')"; }

add_connector good sales
add_connector down status/500/sales
start_daemon main
wait_for "good's first poll" 20 polled_and_free good
wait_for "down's first poll" 20 polled_and_free down

echo "# connection_tests: a configured connector that follows the guide"
runs_before=$(sql "SELECT count(*) FROM ksi_sales.fetch_runs")
t0=$SECONDS
id=$(sql "INSERT INTO ksi_sales.connection_tests (connector_id) SELECT $(conn good) RETURNING id")
if wait_for "test $id to be picked up" 5 picked_up connection_tests "$id"; then
	ok "a test inserted while the daemon runs is picked up within 5 s ($((SECONDS - t0)) s; claim_interval is 30 s)"
else not_ok "a test inserted while the daemon runs is picked up within 5 s"; fi
wait_for "test $id to finish" 30 finished connection_tests "$id"
check "status done, passed" "done|true" "$(test_field "$id" "status || '|' || passed")"
check "the report's verdict is PASS" "PASS" "$(test_field "$id" "report->>'verdict'")"
check "the report has the checks of test-connection" "auth,bare_list,records,all_codes,plus_offset,latency,gzip" \
	"$(test_field "$id" "(SELECT string_agg(c->>'name', ',') FROM jsonb_array_elements(report->'checks') AS c)")"
check "the report names the connector and the codes asked" "good|3" \
	"$(test_field "$id" "(report->>'connector') || '|' || jsonb_array_length(report->'codes')")"
check "started_at and finished_at are set, the lease is gone, bearer_token NULL" "t" \
	"$(test_field "$id" "started_at IS NOT NULL AND finished_at >= started_at AND lease_owner IS NULL AND bearer_token IS NULL")"
check "a probe writes nothing else (no fetch_runs row)" "$runs_before" "$(sql "SELECT count(*) FROM ksi_sales.fetch_runs")"

echo "# connection_tests: endpoint_url rows, with the operator's token"
last=$(sql "INSERT INTO ksi_sales.connection_tests (endpoint_url, bearer_token, codes)
            VALUES ('$FAKE_URL/lastcode/sales', '$TOKEN', '{0003,0001,0002}') RETURNING id")
noauth=$(sql "INSERT INTO ksi_sales.connection_tests (endpoint_url, bearer_token, codes)
              VALUES ('$FAKE_URL/noauth/sales', '$TOKEN', '{0001,0002}') RETURNING id")
wait_for "the lastcode test to finish" 30 finished connection_tests "$last"
wait_for "the noauth test to finish" 30 finished connection_tests "$noauth"
check "lastcode: done, not passed, verdict FAIL" "done|false|FAIL" "$(test_field "$last" "status || '|' || passed || '|' || (report->>'verdict')")"
check "lastcode: the all_codes check fails" "FAIL" \
	"$(test_field "$last" "(SELECT c->>'status' FROM jsonb_array_elements(report->'checks') AS c WHERE c->>'name' = 'all_codes')")"
check_contains "lastcode: the report names the only-the-last problem" "honours only the last ext_ref_codes parameter" \
	"$(test_field "$last" "report::text")"
check "lastcode: the three codes were asked, sorted" '["0001", "0002", "0003"]' "$(test_field "$last" "report->'codes'")"
check "noauth: done, not passed" "done|false" "$(test_field "$noauth" "status || '|' || passed")"
check_contains "noauth: the auth check says anyone can read the sales" "anyone can read" \
	"$(test_field "$noauth" "(SELECT c->>'evidence' FROM jsonb_array_elements(report->'checks') AS c WHERE c->>'name' = 'auth')")"
check "the operator's token is cleared once the tests ran" "0" \
	"$(sql "SELECT count(*) FROM ksi_sales.connection_tests WHERE bearer_token IS NOT NULL")"

echo "# connection_tests that cannot run: failed, the reason in report"
bad=$(sql "INSERT INTO ksi_sales.connection_tests (connector_id, codes) SELECT $(conn good), '{0001,9999}' RETURNING id")
half=$(sql "INSERT INTO ksi_sales.connection_tests (connector_id, time_from) SELECT $(conn good), now() - interval '1 day' RETURNING id")
wait_for "the bad-codes test to finish" 30 finished connection_tests "$bad"
wait_for "the half-window test to finish" 30 finished connection_tests "$half"
check "a code not linked to the connector: failed, passed NULL" "failed|" "$(test_field "$bad" "status || '|' || coalesce(passed::text, '')")"
check_contains "... the reason names the code" "not linked to connector \"good\": 9999" "$(test_field "$bad" "report->>'error'")"
check_contains "time_from without time_to: failed with the reason" "give both time_from and time_to" \
	"$(test_field "$half" "report->>'error'")"

echo "# backfill_requests: three days, ten days ago"
synced_before=$(sql "SELECT synced_until FROM ksi_sales.connector_state WHERE connector_id = $(conn good)")
FROM="date_trunc('day', now() - interval '10 days')"
t0=$SECONDS
bf=$(sql "INSERT INTO ksi_sales.backfill_requests (connector_id, time_from, time_to)
          SELECT $(conn good), $FROM, $FROM + interval '3 days' RETURNING id")
if wait_for "backfill $bf to be picked up" 5 picked_up backfill_requests "$bf"; then
	ok "a backfill inserted while the daemon runs is picked up within 5 s ($((SECONDS - t0)) s)"
else not_ok "a backfill inserted while the daemon runs is picked up within 5 s"; fi
wait_for "backfill $bf to finish" 60 finished backfill_requests "$bf"
check "status done, no error, windows_done = windows_total = 3, records > 0" "done||3|3|true" \
	"$(bf_field "$bf" "status || '|' || coalesce(error, '') || '|' || windows_done || '|' || windows_total || '|' || (records > 0)")"
check "records counts the rows upserted (3 stores x 72 hours)" "216" "$(bf_field "$bf" records)"
check "every hour of the span is stored for each store" "3 stores x 72 hours" \
	"$(sql "SELECT count(DISTINCT h.store_id) || ' stores x ' || min(n) || ' hours' FROM (
	          SELECT h.store_id, count(*) OVER (PARTITION BY h.store_id) AS n FROM ksi_sales.sales_hourly h
	          WHERE h.connector_id = $(conn good) AND h.hour >= $FROM AND h.hour < $FROM + interval '3 days') h")"
check "synced_until is left to the regular polls" "$synced_before" \
	"$(sql "SELECT synced_until FROM ksi_sales.connector_state WHERE connector_id = $(conn good)")"
check "the connector's lease is released, the row's lease gone" "t" \
	"$(sql "SELECT s.lease_owner IS NULL AND r.lease_owner IS NULL AND r.finished_at IS NOT NULL
	        FROM ksi_sales.connector_state s, ksi_sales.backfill_requests r WHERE s.connector_id = $(conn good) AND r.id = $bf")"

echo "# backfill_requests: an API that fails"
bfdown=$(sql "INSERT INTO ksi_sales.backfill_requests (connector_id, time_from, time_to)
              SELECT $(conn down), $FROM, $FROM + interval '1 day' RETURNING id")
wait_for "backfill $bfdown to finish" 60 finished backfill_requests "$bfdown"
check "status failed" "failed" "$(bf_field "$bfdown" status)"
check_contains "the error is the HTTP error" "HTTP 500" "$(bf_field "$bfdown" error)"
check "down's lease is released" "" "$(sql "SELECT lease_owner FROM ksi_sales.connector_state WHERE connector_id = $(conn down)")"

echo "# a crashed daemon's running rows are taken over once their lease expires"
dead_bf=$(sql "INSERT INTO ksi_sales.backfill_requests (connector_id, time_from, time_to, status, started_at, lease_owner, lease_expires, attempts)
               SELECT $(conn good), $FROM - interval '1 day', $FROM, 'running', now() - interval '1 hour', 'dead:1:x', now() - interval '1 minute', 1
               RETURNING id")
dead_test=$(sql "INSERT INTO ksi_sales.connection_tests (connector_id, status, started_at, lease_owner, lease_expires, attempts)
                 SELECT $(conn good), 'running', now() - interval '1 hour', 'dead:1:x', now() - interval '1 minute', 1
                 RETURNING id")
wait_for "the orphaned backfill to finish" 60 finished backfill_requests "$dead_bf"
wait_for "the orphaned test to finish" 30 finished connection_tests "$dead_test"
check "the orphaned backfill is done by this daemon, claimed a second time" "done|2" "$(bf_field "$dead_bf" "status || '|' || attempts")"
check "the orphaned test is done, claimed a second time" "done|2" "$(test_field "$dead_test" "status || '|' || attempts")"
live=$(sql "INSERT INTO ksi_sales.connection_tests (connector_id, status, started_at, lease_owner, lease_expires)
            SELECT $(conn good), 'running', now(), 'alive:1:x', now() + interval '1 hour' RETURNING id")
# Another claim round (a NOTIFY) must leave a live lease alone.
probe2=$(sql "INSERT INTO ksi_sales.connection_tests (connector_id) SELECT $(conn good) RETURNING id")
wait_for "the next test to finish" 30 finished connection_tests "$probe2"
check "a running row whose lease is live is not taken" "running|alive:1:x" "$(test_field "$live" "status || '|' || lease_owner")"
sql "DELETE FROM ksi_sales.connection_tests WHERE id = $live" >/dev/null

echo "# SIGTERM abandons a running backfill at the end of the grace; a restart resumes it"
kill -TERM "$PID_main"
wait "$PID_main"
check "SIGTERM exits 0" 0 $?
add_connector slow delay/1500/sales "1 hour" "1 hour"
start_daemon short "$WORK/short.conf"
wait_for "slow's first poll" 20 polled_and_free slow
slowbf=$(sql "INSERT INTO ksi_sales.backfill_requests (connector_id, time_from, time_to)
              SELECT $(conn slow), $FROM, $FROM + interval '8 hours' RETURNING id")
wait_for "two windows of the slow backfill" 30 windows_done_ge "$slowbf" 2
t0=$SECONDS
kill -TERM "$PID_short"
wait "$PID_short"
check "SIGTERM during a backfill exits 0" 0 $?
check "... within the grace (1 s) and the release timeout, not after the backfill" "yes" "$([ $((SECONDS - t0)) -le 5 ] && echo yes)"
check "the abandoned backfill is pending again, with no lease and its progress kept" "pending|||true|true" \
	"$(bf_field "$slowbf" "status || '|' || coalesce(lease_owner, '') || '|' || coalesce(started_at::text, '') || '|' ||
	                        (windows_done >= 2) || '|' || (done_until = $FROM + windows_done * interval '1 hour')")"
check "no connector lease is left behind" "0" "$(sql "SELECT count(*) FROM ksi_sales.connector_state WHERE lease_owner IS NOT NULL")"
abandoned_at=$(bf_field "$slowbf" windows_done)
start_daemon resumed "$WORK/short.conf"
wait_for "the slow backfill to finish after the restart" 60 finished backfill_requests "$slowbf"
check "resumed: done, windows_done = windows_total = 8, claimed twice" "done|8|8|2" \
	"$(bf_field "$slowbf" "status || '|' || windows_done || '|' || windows_total || '|' || attempts")"
check "every hour of the span is stored for each store" "24" \
	"$(sql "SELECT count(*) FROM ksi_sales.sales_hourly WHERE connector_id = $(conn slow) AND hour >= $FROM AND hour < $FROM + interval '8 hours'")"
check "records counts every row upserted over both runs" "24" "$(bf_field "$slowbf" records)"
# A window whose commit raced the stop may be fetched again (an upsert):
# at most one.
fetched=$(sql "SELECT count(*) FROM ksi_sales.fetch_runs WHERE connector_id = $(conn slow) AND outcome = 'ok' AND window_from < $FROM + interval '8 hours'")
check "the restart fetched only what was not committed ($abandoned_at windows were; $fetched requests in all)" "yes" \
	"$([ "$fetched" -ge 8 ] && [ "$fetched" -le 9 ] && echo yes)"
kill -TERM "$PID_resumed"
wait "$PID_resumed"
check "SIGTERM with nothing running exits 0" 0 $?

echo "# secrets"
check "the token is in no connection_tests row" "0" \
	"$(sql "SELECT count(*) FROM ksi_sales.connection_tests t WHERE t::text LIKE '%$TOKEN%'")"
check "the token is in no other table but connectors" "0" \
	"$(sql "SELECT count(*) FROM (SELECT error AS t FROM ksi_sales.fetch_runs UNION ALL
	        SELECT error FROM ksi_sales.backfill_requests UNION ALL
	        SELECT record || detail FROM ksi_sales.rejected_records) x WHERE t LIKE '%$TOKEN%'")"
check_absent "the token is in no daemon log" "$TOKEN" "$(cat "$WORK"/*.log)"

echo
echo "requests: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
