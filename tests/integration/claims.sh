#!/usr/bin/env bash
# Integration tests of a daemon's claims against its own polls: one
# connector is polled by one job of a daemon at a time, whatever its
# claims return. Three orderings the chaos soak found (seed 101), each
# forced here rather than waited for by luck:
#  1. the database comes back while a claim is in flight: the release of
#     stale leases that follows must keep that claim's leases;
#  2. a claim grants again the lease a running poll holds (same epoch: the
#     database lost the commit of that poll's claim, a crash with
#     synchronous_commit off): the claim is dropped, the poll goes on;
#  3. a claim takes a connector whose running poll's lease expired (as
#     while the process was SIGSTOPped): that poll's writes are refused,
#     and the new claim polls only once it ended;
#  4. a daemon frozen inside its write transaction (SIGSTOP, a paused VM)
#     holds row locks every claim skips: its session is ended after 10 s
#     idle in the transaction, so another daemon takes the connector over
#     once its lease expired, and the frozen one's write is rolled back.
#   claims.sh BINARY FAKEAPI
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
# Slow answers (3 s): a poll is still in flight while the test changes its
# lease under it, or while the release after a reconnect runs.
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill, poll_interval)
     VALUES ('slow', '$FAKE_URL/delay/3000/sales', '$TOKEN', '2 hours', '1 hour');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'Store of slow', id, '0001' FROM ksi_sales.connectors WHERE name = 'slow'" >/dev/null
daemon_conf "$WORK/d.conf" 5s 1s

sql_is() { [ "$(sql "$2")" = "$1" ]; }
# idle_after N: slow has N ok runs or more, and its lease is released.
idle_after() {
	sql_is t "SELECT (SELECT count(*) FROM ksi_sales.fetch_runs WHERE outcome = 'ok') >= $1
	                 AND (SELECT lease_owner IS NULL FROM ksi_sales.connector_state)"
}
leased() { sql_is t "SELECT lease_owner IS NOT NULL FROM ksi_sales.connector_state"; }
ok_runs() { sql "SELECT count(*) FROM ksi_sales.fetch_runs WHERE outcome = 'ok'"; }
refusals() { grep -c 'role "ksi_race" is not permitted to log in' "$PG_DIR/server.log"; }
more_refusals() { [ "$(refusals)" -ge "$1" ]; }
slow_requests() { grep -c '^GET /delay/3000/sales' "$WORK/fake.log"; }
epoch() { sql "SELECT lease_epoch FROM ksi_sales.connector_state"; }

# mark: where a section starts in the daemon's log, the fake's log and
# fetch_runs; since_mark: the daemon's log from there on.
mark() {
	LINES0=$(wc -l <"$WORK/main.log")
	REQUESTS0=$(slow_requests)
	LAST_RUN=$(sql "SELECT coalesce(max(id), 0) FROM ksi_sales.fetch_runs")
	EPOCH0=$(epoch)
}
since_mark() { tail -n +"$((LINES0 + 1))" "$WORK/main.log"; }
# polls_at_once: the most polls of slow the daemon's log shows running at
# once since the mark (job transitions, as the chaos checker reads them).
polls_at_once() {
	since_mark | awk '/connector slow: job .* -> polling/ { n++; if (n > m) m = n }
	                  /connector slow: job .* -> ended/ { n = 0 } END { print m + 0 }'
}
# The fake counts the requests it is handling when one arrives.
api_at_once() {
	tail -n +"$((REQUESTS0 + 1))" <(grep '^GET /delay/3000/sales' "$WORK/fake.log") |
		sed -n 's/.* inflight=\([0-9]*\).*/\1/p' | sort -n | tail -n 1
}
# runs_since: "ROWS OK_ROWS" of fetch_runs since the mark.
runs_since() {
	sql "SELECT count(*) || ' ' || count(*) FILTER (WHERE outcome = 'ok')
	     FROM ksi_sales.fetch_runs WHERE id > $LAST_RUN"
}

start_daemon main "$WORK/d.conf" "$DURL" || exit 1
wait_for "slow's first poll" 20 idle_after 1 || { not_ok "slow's first poll"; exit 1; }

echo "# 1. the database comes back while a claim is in flight"
mark
sql "ALTER ROLE ksi_race NOLOGIN;
     SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'ksi_race'" >/dev/null
wait_for "the daemon to notice" 10 grep -q "database unavailable" "$WORK/main.log"
# Due at once, while the daemon cannot see it: the claim that reconnects
# takes it.
sql "UPDATE ksi_sales.connector_state SET next_poll = now()" >/dev/null
# Every claim (1 s apart) tries to connect and doubles the backoff: after
# six refusals the daemon's own next attempt is 16 s or more away, so the
# one that succeeds is a claim's, and the database runs that claim before
# the release the reconnect asks for.
base=$(refusals)
wait_for "six refused logins" 20 more_refusals $((base + 6))
sql "ALTER ROLE ksi_race LOGIN" >/dev/null
wait_for "the daemon to reconnect" 10 grep -q "database connection restored" "$WORK/main.log"
# A second poll, had the release freed the claim's lease, would have
# started milliseconds after the first and held the lease until after the
# first ended: idle_after waits for it too.
if wait_for "slow's poll after the reconnect" 30 idle_after 2; then ok "slow is polled after the reconnect"
else not_ok "slow is polled after the reconnect"; fi
check "one poll of slow after the reconnect (one 'job waiting -> polling')" 1 \
	"$(since_mark | grep -c 'connector slow: job waiting -> polling')"
check "one claim: the lease epoch advanced by one" "$((EPOCH0 + 1))" "$(epoch)"
# Fenced off, a first poll's writes would have been refused and its
# request left no row.
check "one fetch_runs row per request the API saw, every one ok" \
	"$(($(slow_requests) - REQUESTS0)) $(($(slow_requests) - REQUESTS0))" "$(runs_since)"
check "no write refused for a lost lease" 0 "$(since_mark | grep -c 'lease lost')"

echo "# 2. a claim grants again the lease a running poll holds (a commit lost)"
mark
sql "UPDATE ksi_sales.connector_state SET next_poll = now()" >/dev/null
wait_for "slow's poll to start" 10 leased
# The database as if the claim's commit were lost: the lease free again,
# the epoch back where it was. The next claim (1 s) grants the same epoch.
sql "UPDATE ksi_sales.connector_state
     SET lease_owner = NULL, lease_expires = NULL, lease_epoch = lease_epoch - 1" >/dev/null
if wait_for "slow's poll to end" 20 idle_after $(($(ok_runs) + 1)); then ok "the poll in progress ends"
else not_ok "the poll in progress ends"; fi
check "the second grant is seen and dropped (logged once)" 1 \
	"$(since_mark | grep -c 'claimed again under the lease a poll in progress holds')"
check "one poll of slow at a time (daemon's log)" 1 "$(polls_at_once)"
check "one request of slow at a time (the API's count)" 1 "$(api_at_once)"
check "one request, one fetch_runs row, ok" "1 1 1" "$(($(slow_requests) - REQUESTS0)) $(runs_since)"
check "the lease epoch is the one granted twice" "$((EPOCH0 + 1))" "$(epoch)"

echo "# 3. a claim takes a connector whose running poll's lease expired"
mark
sql "UPDATE ksi_sales.connector_state SET next_poll = now()" >/dev/null
wait_for "slow's poll to start" 10 leased
# As if the daemon had been stopped past its lease: expired, so the next
# claim (1 s) takes it under a new epoch.
sql "UPDATE ksi_sales.connector_state SET lease_expires = now() - interval '1 second'" >/dev/null
if wait_for "the new claim's poll to end" 30 idle_after $(($(ok_runs) + 1)); then ok "the new claim's poll ends"
else not_ok "the new claim's poll ends"; fi
check "the new claim waits for the poll under the lost lease (logged once)" 1 \
	"$(since_mark | grep -c 'polled once that one ends')"
check "the poll under the lost lease has its write refused" 1 "$(since_mark | grep -c 'lease lost')"
check "one poll of slow at a time (daemon's log)" 1 "$(polls_at_once)"
check "... two in all, one after the other" 2 "$(since_mark | grep -c 'connector slow: job waiting -> polling')"
check "one request of slow at a time (the API's count)" 1 "$(api_at_once)"
check "two requests, one fetch_runs row (the new claim's), ok" "2 1 1" "$(($(slow_requests) - REQUESTS0)) $(runs_since)"
check "the lease epoch advanced by two (the poll's claim, the new claim)" "$((EPOCH0 + 2))" "$(epoch)"

echo "# 4. a daemon frozen inside its write transaction"
start_daemon other "$WORK/d.conf" "$DURL" || exit 1
mark
OTHER0=$(wc -l <"$WORK/other.log")
# The write waits for this lock; the daemon is stopped while it waits, and
# the lock is let go: the write's statement completes, and its transaction
# stays open, idle, with its locks, for as long as the process is stopped.
hold_start table "$CONNINFO" "LOCK TABLE ksi_sales.sales_hourly IN EXCLUSIVE MODE;"
sql "UPDATE ksi_sales.connector_state SET next_poll = now()" >/dev/null
write_waits() { sql_is 1 "SELECT count(*) FROM pg_stat_activity WHERE usename = 'ksi_race' AND wait_event_type = 'Lock'"; }
wait_for "a daemon's write of slow to wait for the table" 20 write_waits
HOLDER=$(sql "SELECT split_part(lease_owner, ':', 2) FROM ksi_sales.connector_state")
case $HOLDER in
"$PID_main") TAKER=other ;;
"$PID_other") TAKER=main ;;
*) TAKER=none ;;
esac
check "slow's lease is held by one of the two daemons" "t" "$([ "$TAKER" != none ] && echo t)"
kill -STOP "$HOLDER"
hold_end table
frozen() { sql_is 1 "SELECT count(*) FROM pg_stat_activity WHERE usename = 'ksi_race' AND state = 'idle in transaction'"; }
wait_for "the stopped daemon's session to sit idle in its transaction" 10 frozen
FROZEN_BACKEND=$(sql "SELECT pid FROM pg_stat_activity WHERE usename = 'ksi_race' AND state = 'idle in transaction'")
# Without the timeout no claim could take slow (its row is locked) until
# the process woke up.
TAKER_LOG=$WORK/$TAKER.log
TAKER0=$([ "$TAKER" = other ] && echo "$OTHER0" || echo "$LINES0")
taken_over() { tail -n +"$((TAKER0 + 1))" "$TAKER_LOG" | grep -q 'connector slow: job waiting -> polling'; }
if wait_for "the other daemon to take slow over while the first is stopped" 40 taken_over; then
	ok "the other daemon takes slow over while the first is stopped"
else not_ok "the other daemon takes slow over while the first is stopped"; fi
check "the stopped daemon's session was ended by the server" 0 \
	"$(sql "SELECT count(*) FROM pg_stat_activity WHERE pid = ${FROZEN_BACKEND:-0}")"
taker_done() { tail -n +"$((TAKER0 + 1))" "$TAKER_LOG" | grep -q 'connector slow: job .* -> ended'; }
wait_for "the taker's poll to end" 30 taker_done
kill -CONT "$HOLDER"
WOKEN_LOG=$WORK/$([ "$TAKER" = other ] && echo main || echo other).log
WOKEN0=$([ "$TAKER" = other ] && echo "$LINES0" || echo "$OTHER0")
WOKEN_PID=$([ "$TAKER" = other ] && echo "$PID_main" || echo "$PID_other")
TAKER_PID=$([ "$TAKER" = other ] && echo "$PID_other" || echo "$PID_main")
# Awake, it finds its session ended: its poll's write fails and the job ends.
woken_done() { tail -n +"$((WOKEN0 + 1))" "$WOKEN_LOG" | grep -q 'connector slow: job .* -> ended'; }
if wait_for "the woken daemon's poll to end" 30 woken_done; then ok "the woken daemon's poll ends"
else not_ok "the woken daemon's poll ends"; tail -n 15 "$WOKEN_LOG" | sed 's/^/    /'; fi
# The frozen write never committed: its request has no row; the taker's has.
check "two requests, one fetch_runs row (the taker's), ok" "2 1 1" \
	"$(($(slow_requests) - REQUESTS0)) $(runs_since)"
kill -TERM "$TAKER_PID"
wait "$TAKER_PID"
check "SIGTERM exits 0 (the daemon that took over)" 0 $?
# Alone now, the woken daemon must poll slow again: its connections work.
BEFORE=$(ok_runs)
sql "UPDATE ksi_sales.connector_state SET next_poll = now()" >/dev/null
if wait_for "the woken daemon to poll slow again" 30 idle_after $((BEFORE + 1)); then ok "the woken daemon polls again"
else not_ok "the woken daemon polls again"; tail -n 15 "$WOKEN_LOG" | sed 's/^/    /'; fi
kill -TERM "$WOKEN_PID"
wait "$WOKEN_PID"
check "SIGTERM exits 0 (the woken daemon)" 0 $?
check_absent "the token is in no daemon log" "$TOKEN" "$(cat "$WORK/main.log" "$WORK/other.log")"

echo "claims: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
