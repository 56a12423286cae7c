#!/usr/bin/env bash
# Integration test of a reconnect that lands while a claim is in flight
# (found by the chaos soak, seed 101): after the database comes back, the
# daemon releases the leases of polls it lost with the connection, and that
# release must keep the leases of the claim that brought the connection
# back. Forced, not waited for by luck: the daemon's role is refused at
# login long enough that its reconnect backoff grows past claim_interval,
# so the attempt that succeeds is the one a claim makes, and the database
# runs that claim before the release the reconnect asks for.
#   reconnect.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"

pg_start || exit 1
fake_start "$FAKE" --token "$TOKEN" || exit 1
ksi migrate 2>/dev/null || { echo "migrate failed" >&2; exit 1; }

# A role of the daemon's own, so that its logins can be refused while the
# test's own sessions (postgres) go on.
sql "CREATE ROLE ksi_race LOGIN SUPERUSER" >/dev/null || exit 1
DURL=${CONNINFO/user=postgres/user=ksi_race}
# Slow answers (1 s): the first poll after the reconnect is still in flight
# when the release runs, as in the soak.
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill, poll_interval)
     VALUES ('slow', '$FAKE_URL/delay/1000/sales', '$TOKEN', '2 hours', '1 hour');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'Store of slow', id, '0001' FROM ksi_sales.connectors WHERE name = 'slow'" >/dev/null
daemon_conf "$WORK/d.conf" 5s 1s

sql_is() { [ "$(sql "$2")" = "$1" ]; }
# idle_after N: slow has N ok runs or more, and its lease is released.
idle_after() {
	sql_is t "SELECT (SELECT count(*) FROM ksi_sales.fetch_runs WHERE outcome = 'ok') >= $1
	                 AND (SELECT lease_owner IS NULL FROM ksi_sales.connector_state)"
}
refusals() { grep -c 'role "ksi_race" is not permitted to log in' "$PG_DIR/server.log"; }
more_refusals() { [ "$(refusals)" -ge "$1" ]; }
slow_requests() { grep -c '^GET /delay/1000/sales' "$WORK/fake.log"; }
epoch() { sql "SELECT lease_epoch FROM ksi_sales.connector_state"; }

start_daemon main "$WORK/d.conf" "$DURL" || exit 1
wait_for "slow's first poll" 20 idle_after 1 || { not_ok "slow's first poll"; exit 1; }

echo "# the database comes back while a claim is in flight"
last_run=$(sql "SELECT max(id) FROM ksi_sales.fetch_runs")
epoch0=$(epoch)
sql "ALTER ROLE ksi_race NOLOGIN;
     SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'ksi_race'" >/dev/null
wait_for "the daemon to notice" 10 grep -q "database unavailable" "$WORK/main.log"
# Due at once, while the daemon cannot see it: the claim that reconnects
# takes it.
sql "UPDATE ksi_sales.connector_state SET next_poll = now()" >/dev/null
# Every claim (1 s apart) tries to connect and doubles the backoff: after
# six refusals the daemon's own next attempt is 16 s or more away, so the
# one that succeeds is a claim's.
base=$(refusals)
wait_for "six refused logins" 20 more_refusals $((base + 6))
requests0=$(slow_requests)
lines0=$(wc -l <"$WORK/main.log")
sql "ALTER ROLE ksi_race LOGIN" >/dev/null
wait_for "the daemon to reconnect" 10 grep -q "database connection restored" "$WORK/main.log"
if wait_for "slow's poll after the reconnect" 30 idle_after 2; then ok "slow is polled after the reconnect"
else not_ok "slow is polled after the reconnect"; fi
# A second poll, had the release freed the claim's lease, would have
# started milliseconds after the first, so it would hold the lease until
# after the first ended: idle_after has waited for it too.

after=$(tail -n +"$((lines0 + 1))" "$WORK/main.log")
check "one poll of slow after the reconnect (one 'job waiting -> polling')" 1 \
	"$(grep -c 'connector slow: job waiting -> polling' <<<"$after")"
check "one claim: the lease epoch advanced by one" "$((epoch0 + 1))" "$(epoch)"
# Fenced off, the first poll's writes would have failed and its requests
# left no row.
check "one fetch_runs row per request the API saw, every one ok" \
	"$(($(slow_requests) - requests0)) ok" \
	"$(sql "SELECT count(*) || ' ' || CASE WHEN bool_and(outcome = 'ok') THEN 'ok' ELSE 'not ok' END
	        FROM ksi_sales.fetch_runs WHERE id > $last_run")"
check "no write refused for a lost lease" 0 "$(grep -c 'lease lost' <<<"$after")"

# shellcheck disable=SC2154 # set by start_daemon
kill -TERM "$PID_main"
wait "$PID_main"
check "SIGTERM exits 0" 0 $?
check_absent "the token is in no daemon log" "$TOKEN" "$(cat "$WORK/main.log")"

echo "reconnect: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
