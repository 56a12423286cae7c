#!/usr/bin/env bash
# Integration tests of HTTPS (SPEC §2, §7): the real binary against the fake
# API serving TLS with a certificate from a throwaway CA made here.
#   - without [http] ca_file the certificate is refused: a network_error
#     run whose error says TLS, and nothing written;
#   - with ca_file pointing at the CA the poll succeeds;
#   - a poll of several windows makes one connection, a poll of one window
#     leaves none open (issue 12: a connection is kept only for a request
#     known to follow);
#   - a daemon's second poll of a host resumes its TLS session, but not
#     after a reload to another ca_file, and a session is never offered to
#     another host:port.
#   https.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"

pg_start || { echo "could not start PostgreSQL" >&2; exit 1; }
ksi migrate 2>"$WORK/migrate.log" || { cat "$WORK/migrate.log" >&2; exit 1; }

# A throwaway CA (ECDSA P-256); the fake makes each address's certificate
# from it, naming that address only (tests/fakeapi/README.md).
TLS=$WORK/tls
mkdir -p "$TLS"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/CN=ksi-salesd test CA" -addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign" -keyout "$TLS/ca.key" -out "$TLS/ca.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS/server.key" 2>/dev/null
TLS_OPTS=(--tls-ca-cert "$TLS/ca.pem" --tls-ca-key "$TLS/ca.key" --tls-key "$TLS/server.key")
fake_start "$FAKE" --token "$TOKEN" "${TLS_OPTS[@]}" || { cat "$WORK/fake.out" >&2; exit 1; }
PORT=$(cat "$WORK/fake.port")
URL="https://127.0.0.1:$PORT/sales"

# A second HTTPS API on another port: another host:port to libcurl.
"$FAKE" --port 0 --port-file "$WORK/other.port" --log "$WORK/other.log" --token "$TOKEN" "${TLS_OPTS[@]}" \
	>"$WORK/other.out" 2>&1 &
OTHER_PID=$!
PIDS+=("$OTHER_PID")
wait_for "the second HTTPS fake API to listen" 10 test -s "$WORK/other.port" || exit 1
OTHER_PORT=$(cat "$WORK/other.port")

# snap PORT: "connections requests resumed" so far from that fake's
# /stats (its own connection and request included). since PORT SNAP: what
# happened after SNAP, this /stats and SNAP's own taken off. Differences,
# not ?reset=1: a reset zeroes the counts when its own answer is done,
# which races with a connection that follows at once.
snap() {
	curl -s --cacert "$TLS/ca.pem" "https://127.0.0.1:$1/stats" |
		sed 's/.*"connections":\([0-9]*\),"requests":\([0-9]*\),.*"resumed":\([0-9]*\).*/\1 \2 \3/'
}
since() {
	local a
	a=$(snap "$1")
	awk -v a="$a" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
		print x[1] - y[1] - 1, x[2] - y[2] - 1, x[3] - y[3] }'
}

conf() { # FILE [ca_file]
	{
		printf '[daemon]\nmax_per_host = 8\nlease = 10s\nclaim_interval = 1s\n'
		printf '[http]\nconnect_timeout = 2s\n'
		[ -n "${2:-}" ] && printf 'ca_file = %s\n' "$2"
		printf '[log]\nlevel = debug\n'
	} >"$1"
}
# `once` reads test.conf: untrusted first, then trusted.
conf "$WORK/test.conf"
conf "$WORK/trusted.conf" "$TLS/ca.pem"

sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
     VALUES ('secure', '$URL', '$TOKEN', '1 hour');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'secure store', id, 'S1' FROM ksi_sales.connectors WHERE name = 'secure'" >/dev/null
due() { # NAME: makes the connector due now
	sql "UPDATE ksi_sales.connector_state SET next_poll = now(), failures = 0
	     WHERE connector_id = (SELECT id FROM ksi_sales.connectors WHERE name = '$1')" >/dev/null
}
last_run() { # NAME: outcome|error of its last run
	sql "SELECT outcome || '|' || coalesce(error, '') FROM ksi_sales.fetch_runs
	     WHERE connector_id = (SELECT id FROM ksi_sales.connectors WHERE name = '$1')
	     ORDER BY id DESC LIMIT 1"
}

echo "# without ca_file: the certificate is refused"
once
check "once exits 1: a connector failed" 1 "$RC"
run=$(last_run secure)
check "the run is a network_error" network_error "${run%%|*}"
check_contains "its error says it is TLS, on which URL" "TLS error on $URL" "$run"
check_contains "its error says why (the certificate)" "certificate" "$run"
check "nothing is written" 0 "$(sql "SELECT count(*) FROM ksi_sales.sales_hourly")"
check "synced_until does not move" 0 "$(sql "SELECT count(synced_until) FROM ksi_sales.connector_state")"

echo "# with ca_file: trusted"
due secure
s0=$(snap "$PORT")
cp "$WORK/trusted.conf" "$WORK/test.conf"
once
check "once exits 0" 0 "$RC"
check "the run is ok" "ok|" "$(last_run secure)"
check "its hours are written" 2 "$(sql "SELECT count(*) FROM ksi_sales.sales_hourly")"
check "one connection for one request" "1 1 0" "$(since "$PORT" "$s0")"

echo "# a poll of several windows keeps its connection for the next one"
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill, max_window)
     VALUES ('windows', '$URL', '$TOKEN', '4 hours', '1 hour');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'windows store', id, 'W1' FROM ksi_sales.connectors WHERE name = 'windows';
     UPDATE ksi_sales.connectors SET enabled = false WHERE name = 'secure'" >/dev/null
s0=$(snap "$PORT")
once
nreq=$(sql "SELECT count(*) FILTER (WHERE r.outcome = 'ok') || ' ' || count(*)
            FROM ksi_sales.fetch_runs r JOIN ksi_sales.connectors c ON c.id = r.connector_id
            WHERE c.name = 'windows'")
# 4 hours back and the current one, an hour a window.
check "the poll made 5 requests, all ok" "5 5" "$nreq"
check "over one connection (no handshake after the first)" "1 5 0" "$(since "$PORT" "$s0")"

echo "# a daemon resumes a host's TLS session at its next poll"
sql "UPDATE ksi_sales.connectors SET enabled = (name = 'secure');
     UPDATE ksi_sales.connector_state SET next_poll = now() + interval '1 hour'" >/dev/null
due secure
nruns() { sql "SELECT count(*) FROM ksi_sales.fetch_runs WHERE outcome = 'ok'"; }
runs_over() { [ "$(nruns)" -gt "$1" ]; } # wait_for runs it again each time
before=$(nruns)
s0=$(snap "$PORT")
start_daemon d "$WORK/trusted.conf"
wait_for "the first poll" 20 runs_over "$before"
due secure
sql "NOTIFY ksi_sales_config, 'connectors'" >/dev/null
wait_for "the second poll" 20 runs_over "$((before + 1))"
check "two polls, two connections (none kept between polls), one resumed" "2 2 1" "$(since "$PORT" "$s0")"
check "both polls ok" 2 "$(($(nruns) - before))"

echo "# a reload to another ca_file drops the sessions made under the old trust store"
reloads() { grep -c "configuration reloaded" "$WORK/d.log"; }
reloaded_over() { [ "$(reloads)" -gt "$1" ]; }
# poll_again: makes secure due, waits for its poll, prints what the fake saw.
poll_again() {
	local n s
	n=$(nruns) s=$(snap "$PORT")
	due secure
	sql "NOTIFY ksi_sales_config, 'connectors'" >/dev/null
	wait_for "another poll" 20 runs_over "$n"
	since "$PORT" "$s"
}
cp "$TLS/ca.pem" "$TLS/ca2.pem"
conf "$WORK/trusted.conf" "$TLS/ca2.pem"
r=$(reloads)
kill -HUP "$PID_d"
wait_for "the reload" 10 reloaded_over "$r"
check "after ca_file changed, a full handshake" "1 1 0" "$(poll_again)"
r=$(reloads)
kill -HUP "$PID_d"
wait_for "the reload" 10 reloaded_over "$r"
check "after a reload with the same ca_file, the session resumes" "1 1 1" "$(poll_again)"

echo "# a session is offered to its own host:port only"
s0=$(snap "$OTHER_PORT")
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
     VALUES ('other', 'https://127.0.0.1:$OTHER_PORT/sales', '$TOKEN', '1 hour');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'other store', id, 'O1' FROM ksi_sales.connectors WHERE name = 'other'" >/dev/null
sql "NOTIFY ksi_sales_config, 'connectors'" >/dev/null
other_ok() { [ "$(last_run other)" = "ok|" ]; }
wait_for "the other connector's poll" 20 other_ok
check "the other host's first poll is a full handshake" "1 1 0" "$(since "$OTHER_PORT" "$s0")"

kill -TERM "$PID_d"
wait "$PID_d"
check "the daemon exits 0 on SIGTERM (no leak under ASan)" 0 $?
check_absent "the token is in no log" "$TOKEN" "$(cat "$WORK"/*.log)"

echo
echo "https: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
