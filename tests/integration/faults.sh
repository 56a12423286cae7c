#!/usr/bin/env bash
# Fault suite: a fault in the middle of a run, then a normal run; the final
# tables must equal those of a fault-free run of the same scenario.
#   faults.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"
SKIPPED=0
pg_start || exit 1
fake_start "$FAKE" --token "$TOKEN" || exit 1
printf '[daemon]\nlease = 10s\nmax_per_host = 64\n[log]\nlevel = warning\n' >"$WORK/f.conf"

# setup_db NAME [API_BASE_URL]: a database with the scenario: 300 stores,
# 3 days in 6-hour windows, an API taking 300 ms per request, so a run lasts
# long enough to be cut.
setup_db() {
	sql "CREATE DATABASE $1" >/dev/null
	local url="${CONNINFO/dbname=postgres/dbname=$1}"
	ksi migrate -d "$url" 2>/dev/null || return 1
	psql "$url" -X -q -v ON_ERROR_STOP=1 -c "
		INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill, max_window)
		VALUES ('chain', '${2:-$FAKE_URL}/delay/300/sales', '$TOKEN', '3 days', '6 hours');
		INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
		SELECT 'S' || i, 1, 'S' || lpad(i::text, 4, '0') FROM generate_series(1, 300) AS i"
}
url_of() { echo "${CONNINFO/dbname=postgres/dbname=$1}"; }
q() { psql "$(url_of "$1")" -X -A -t -q -c "$2"; }
# The data from the reference's second hour to its last: a later run may
# reach one hour more, and a scenario that starts after the clock passed an
# hour begins its backfill one hour later than the reference did.
snapshot() {
	q "$1" "SELECT count(*) || ' ' || md5(string_agg(ext_ref_code || '@' || hour || '=' || num_tickets, ',' ORDER BY ext_ref_code, hour))
	        FROM ksi_sales.sales_hourly WHERE hour > '$FIRST' AND hour <= '$2'"
}
ok_runs_at_least() { [ "$(q "$1" "SELECT count(*) FROM ksi_sales.fetch_runs WHERE outcome = 'ok'")" -ge "$2" ]; }
# Every committed run's records are all there: nothing half-written.
consistent() {
	q "$1" "SELECT (SELECT coalesce(sum(records_upserted), 0) FROM ksi_sales.fetch_runs WHERE outcome = 'ok') >=
	               (SELECT count(*) FROM ksi_sales.sales_hourly)
	        AND (SELECT count(*) FROM ksi_sales.sales_hourly h JOIN ksi_sales.fetch_runs r
	             ON r.outcome = 'ok' AND h.hour >= r.window_from AND h.hour < r.window_to) > 0"
}
lease_free() { [ "$(q "$1" "SELECT count(*) FROM ksi_sales.connector_state WHERE lease_expires > now()")" = 0 ]; }
# Each ok run's rows all carry its time, nothing more nor less (valid while
# no hour has been written twice, as before any rerun here).
runs_whole() {
	q "$1" "SELECT count(*) FROM ksi_sales.fetch_runs r WHERE r.outcome = 'ok' AND r.records_upserted <>
	        (SELECT count(*) FROM ksi_sales.sales_hourly h WHERE h.fetched_at = r.finished_at)"
}
# lock_sales DB: another session takes a lock the daemon's one-statement
# write (SPEC §5) needs and keeps it until it is terminated, so that a fault
# lands in the middle of a transaction every time (LOCKER: its psql).
lock_sales() {
	PGAPPNAME=faults-locker psql "$(url_of "$1")" -X -q -c \
		"BEGIN; LOCK TABLE ksi_sales.sales_hourly IN EXCLUSIVE MODE; SELECT pg_sleep(600)" >/dev/null 2>&1 &
	LOCKER=$!
	PIDS+=("$LOCKER")
	wait_for "the lock on $1 to be held" 10 lock_held "$1" || not_ok "the lock on $1 is held"
}
lock_held() {
	[ "$(q "$1" "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	             WHERE a.application_name = 'faults-locker' AND l.granted AND l.mode = 'ExclusiveLock'
	               AND l.relation = 'ksi_sales.sales_hourly'::regclass")" = 1 ]
}
# The backend of a write that waits for that lock (its query calls lease_check).
waiting_write() {
	q "$1" "SELECT pid FROM pg_stat_activity WHERE datname = '$1' AND pid <> pg_backend_pid()
	        AND wait_event_type = 'Lock' AND query LIKE '%lease_check%'"
}
write_waits() { [ -n "$(waiting_write "$1")" ]; }

# once_in_background DB: starts `once` on DB (log $WORK/DB1.log) and returns
# once it committed a few windows, its pid in OPID.
once_in_background() {
	ksi once -c "$WORK/f.conf" -d "$(url_of "$1")" 2>"$WORK/${1}1.log" &
	OPID=$!
	PIDS+=("$OPID")
	wait_for "a few windows to commit" 30 ok_runs_at_least "$1" 3
}

setup_db ref || exit 1
ksi once -c "$WORK/f.conf" -d "$(url_of ref)" 2>"$WORK/ref.log"
check "the fault-free reference run exits 0" 0 $?
FIRST=$(q ref "SELECT min(hour) FROM ksi_sales.sales_hourly")
LAST=$(q ref "SELECT max(hour) FROM ksi_sales.sales_hourly")
REF=$(snapshot ref "$LAST")
echo "    reference: ${REF%% *} rows after $FIRST up to $LAST"

echo "# kill -9 of once in the middle of its run"
setup_db killed || exit 1
once_in_background killed
kill -9 "$OPID"
wait "$OPID" 2>/dev/null
committed=$(q killed "SELECT count(*) FROM ksi_sales.fetch_runs WHERE outcome = 'ok'")
echo "    killed after $committed committed requests"
check "what was committed is whole" "t" "$(consistent killed)"
ksi once -c "$WORK/f.conf" -d "$(url_of killed)" 2>"$WORK/early.log"
check_contains "a once while the dead run's lease lasts says what it leaves alone" \
	"1 connector left alone: another ksi-salesd holds its lease" "$(cat "$WORK/early.log")"
wait_for "the dead run's lease to expire" 20 lease_free killed
ksi once -c "$WORK/f.conf" -d "$(url_of killed)" 2>"$WORK/killed2.log"
check "the next run exits 0" 0 $?
check "the tables equal the fault-free run's" "$REF" "$(snapshot killed "$LAST")"

for mode in fast immediate; do
echo "# PostgreSQL restarted ($mode) in the middle of a write"
db=crashed_$mode
setup_db "$db" || exit 1
# The test cluster runs with synchronous_commit off, which an immediate
# shutdown turns into lost commits: this database keeps what it acknowledged.
sql "ALTER DATABASE $db SET synchronous_commit = on" >/dev/null
check "commits are durable in this database" "on" "$(q "$db" "SHOW synchronous_commit")"
once_in_background "$db"
# The restart must find a write in progress (not, say, an HTTP request).
lock_sales "$db"
if wait_for "once's write to wait for the lock" 20 write_waits "$db"; then
	ok "once's write waits for the lock"
else not_ok "once's write waits for the lock"; fi
sh "$ROOT/tests/lib/pg.sh" restart "$PG_DIR" "$mode"
wait "$LOCKER" 2>/dev/null
wait "$OPID"
rc=$?
check "the interrupted run reports a database failure (exit 3)" 3 "$rc"
[ "$rc" = 3 ] || tail -n 40 "$WORK/${db}1.log" | sed 's/^/    /'
check "what was committed is whole" "t" "$(consistent "$db")"
check "every committed run's rows are all there" "0" "$(runs_whole "$db")"
wait_for "the lease to expire" 20 lease_free "$db"
ksi once -c "$WORK/f.conf" -d "$(url_of "$db")" 2>"$WORK/${db}2.log"
check "the next run exits 0" 0 $?
check "the tables equal the fault-free run's" "$REF" "$(snapshot "$db" "$LAST")"
done

echo "# kill -9 of the daemon while its write waits for a lock"
# The lock holds the daemon's write inside PostgreSQL when the kill comes.
setup_db dkill || exit 1
daemon_conf "$WORK/d.conf"
start_daemon dk "$WORK/d.conf" "$(url_of dkill)"
wait_for "a few windows to commit" 30 ok_runs_at_least dkill 2
lock_sales dkill
if wait_for "the daemon's write to wait for the lock" 20 write_waits dkill; then
	ok "the daemon's write waits for the lock"
else not_ok "the daemon's write waits for the lock"; fi
runs_before=$(q dkill "SELECT count(*) FROM ksi_sales.fetch_runs")
backend=$(waiting_write dkill)
# shellcheck disable=SC2154 # set by start_daemon
kill -9 "$PID_dk"
wait "$PID_dk" 2>/dev/null
check "the daemon died of SIGKILL" 137 $?
q dkill "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'faults-locker'" >/dev/null
wait "$LOCKER" 2>/dev/null
# PostgreSQL only learns of the dead client when it answers it.
backend_gone() { [ "$(q dkill "SELECT count(*) FROM pg_stat_activity WHERE pid = '${backend:-0}'")" = 0 ]; }
wait_for "the dead daemon's backend to end" 20 backend_gone || not_ok "the dead daemon's backend ends"
runs_after=$(q dkill "SELECT count(*) FROM ksi_sales.fetch_runs")
case $((runs_after - runs_before)) in
0) echo "    the dead daemon's blocked write did not commit ($runs_before runs)" ;;
1) echo "    the dead daemon's blocked write committed after the lock was released ($runs_after runs)" ;;
*) not_ok "the dead daemon's write commits as one statement or not at all" "runs before: $runs_before, after: $runs_after" ;;
esac
check "what was committed is whole" "t" "$(consistent dkill)"
check "every committed run's rows are all there" "0" "$(runs_whole dkill)"
wait_for "the dead daemon's lease to expire" 20 lease_free dkill
start_daemon dk2 "$WORK/d.conf" "$(url_of dkill)"
polled_and_free() {
	[ "$(q "$1" "SELECT count(*) FROM ksi_sales.connector_state WHERE lease_owner IS NULL AND next_poll > now()")" = 1 ]
}
wait_for "a new daemon to take the connector over and finish its poll" 60 polled_and_free dkill
# shellcheck disable=SC2154 # set by start_daemon
kill -TERM "$PID_dk2"
wait "$PID_dk2"
check "the new daemon exits 0 on SIGTERM" 0 $?
check "the new daemon's poll succeeded" "ok" \
	"$(q dkill "SELECT outcome FROM ksi_sales.fetch_runs ORDER BY id DESC LIMIT 1")"
check "the tables equal the fault-free run's" "$REF" "$(snapshot dkill "$LAST")"
check "what was committed is whole" "t" "$(consistent dkill)"

echo "# a host name that does not resolve: that connector fails, the other is polled"
# In a private mount namespace whose nsswitch.conf says `hosts: files`, glibc
# never asks DNS: the lookup fails without a query leaving the machine. An
# nscd would ask with the machine's own nsswitch.conf: its socket is hidden.
{
	grep -v '^hosts:' /etc/nsswitch.conf
	echo 'hosts: files'
} >"$WORK/nsswitch.conf"
BADHOST=no-such-host.invalid
# shellcheck disable=SC2016 # expanded by the inner sh
nodns() {
	unshare -m --propagation private sh -c '
		mount --bind "$0" /etc/nsswitch.conf || exit 97
		[ ! -e /var/run/nscd/socket ] || mount -t tmpfs tmpfs /var/run/nscd || exit 96
		[ "$(grep "^hosts:" /etc/nsswitch.conf)" = "hosts: files" ] || exit 98
		exec "$@"' "$WORK/nsswitch.conf" "$@"
}
skip=
if ! unshare -m true 2>"$WORK/unshare.err"; then
	skip="unshare -m fails: $(head -n 1 "$WORK/unshare.err")"
elif ! nodns true 2>"$WORK/unshare.err"; then
	skip="cannot bind-mount nsswitch.conf in a mount namespace: $(head -n 1 "$WORK/unshare.err")"
elif nodns getent hosts "$BADHOST" >/dev/null; then
	skip="$BADHOST resolves from /etc/hosts"
fi
if [ -n "$skip" ]; then
	SKIPPED=$((SKIPPED + 1))
	echo "SKIP: the unresolvable host scenario ($skip)"
else
	sql "CREATE DATABASE dns" >/dev/null
	ksi migrate -d "$(url_of dns)" 2>/dev/null || exit 1
	psql "$(url_of dns)" -X -q -v ON_ERROR_STOP=1 -c "
		INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
		VALUES ('nowhere', 'http://$BADHOST:${FAKE_URL##*:}/sales', '$TOKEN', '6 hours'),
		       ('good', '$FAKE_URL/sales', '$TOKEN', '6 hours');
		INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
		SELECT c.name || i, c.id, upper(left(c.name, 1)) || i
		FROM ksi_sales.connectors c, generate_series(1, 2) AS i" || exit 1
	# shellcheck disable=SC2086 # KSI_WRAP is a command line
	nodns ${KSI_WRAP:-} "$BIN" once -c "$WORK/f.conf" -d "$(url_of dns)" 2>"$WORK/dns.log"
	check "once exits 1" 1 $?
	row=$(q dns "SELECT count(*) || '|' || string_agg(outcome || '|' || coalesce(error, ''), ';')
	             FROM ksi_sales.fetch_runs r JOIN ksi_sales.connectors c ON c.id = r.connector_id
	             WHERE c.name = 'nowhere'")
	check "one run of the unresolvable connector, a network_error" "1|network_error" "$(echo "$row" | cut -d'|' -f1,2)"
	check_contains "its error names the host" "Could not resolve host: $BADHOST" "$row"
	echo "    error: ${row#*|network_error|}"
	check "nothing written for its stores, synced_until unchanged" "0 NULL" \
		"$(q dns "SELECT (SELECT count(*) FROM ksi_sales.sales_hourly h JOIN ksi_sales.stores s ON s.id = h.store_id
		                  WHERE s.connector_id = c.id) || ' ' ||
		                 coalesce((SELECT synced_until::text FROM ksi_sales.connector_state st
		                           WHERE st.connector_id = c.id), 'NULL')
		          FROM ksi_sales.connectors c WHERE c.name = 'nowhere'")"
	check "the good connector's runs are all ok" "t" \
		"$(q dns "SELECT count(*) > 0 AND bool_and(r.outcome = 'ok')
		          FROM ksi_sales.fetch_runs r JOIN ksi_sales.connectors c ON c.id = r.connector_id
		          WHERE c.name = 'good'")"
	# Every hour of both stores from its first window to synced_until.
	check "the good connector's rows are all there" "t" \
		"$(q dns "SELECT count(h.*) > 0 AND count(h.*) = 2 * extract(epoch FROM st.synced_until - min(r.window_from)) / 3600
		          FROM ksi_sales.connectors c JOIN ksi_sales.connector_state st ON st.connector_id = c.id
		          JOIN ksi_sales.fetch_runs r ON r.connector_id = c.id
		          LEFT JOIN ksi_sales.sales_hourly h ON h.connector_id = c.id AND h.hour >= r.window_from AND h.hour < r.window_to
		          WHERE c.name = 'good' GROUP BY st.synced_until")"
	check_contains "the log line names the connector and the host" "connector nowhere: " \
		"$(grep "$BADHOST" "$WORK/dns.log")"
fi

echo "# the API down for several runs (connection refused), then back"
# An API of its own, stopped and started again on the same port, so the
# connector row stays as it is.
down_fake_start() {
	rm -f "$WORK/down.port"
	"$FAKE" --port "$1" --token "$TOKEN" --port-file "$WORK/down.port" --log "$WORK/down-fake.log" \
		>>"$WORK/down-fake.out" 2>&1 &
	DOWN_PID=$!
	PIDS+=("$DOWN_PID")
	wait_for "the second fake API to listen" 10 test -s "$WORK/down.port"
}
down_fake_start 0 || exit 1
DOWN_PORT=$(cat "$WORK/down.port")
setup_db down "http://127.0.0.1:$DOWN_PORT" || exit 1
ksi once -c "$WORK/f.conf" -d "$(url_of down)" 2>"$WORK/down0.log" &
OPID=$!
PIDS+=("$OPID")
# The outage starts in the middle of a run, while a window's write waits
# for a lock: the next request, fetched meanwhile, fails before the write
# before it commits.
wait_for "a few windows to commit" 30 ok_runs_at_least down 3
lock_sales down
wait_for "once's write to wait for the lock" 20 write_waits down || not_ok "once's write waits for the lock"
kill "$DOWN_PID"
wait "$DOWN_PID"
q down "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'faults-locker'" >/dev/null
wait "$LOCKER" 2>/dev/null
wait "$OPID"
check "the run the outage cut exits 1" 1 $?
check_contains "it names the failure, not the window committed after it was fetched" \
	"poll failed (network_error)" "$(cat "$WORK/down0.log")"
check "what was committed is whole" "t" "$(consistent down)"
check "every committed run's rows are all there" "0" "$(runs_whole down)"
state() {
	q down "SELECT (SELECT count(*) FROM ksi_sales.sales_hourly) || ' ' || coalesce(synced_until::text, 'NULL')
	        FROM ksi_sales.connector_state"
}
before=$(state)
for i in 1 2 3; do
	last_run=$(q down "SELECT coalesce(max(id), 0) FROM ksi_sales.fetch_runs")
	ksi once -c "$WORK/f.conf" -d "$(url_of down)" 2>"$WORK/down$i.log"
	check "run $i during the outage exits 1" 1 $?
	check "run $i: no row written, synced_until unchanged" "$before" "$(state)"
	row=$(q down "SELECT count(*) || '|' || string_agg(outcome || '|' || coalesce(error, ''), ';')
	              FROM ksi_sales.fetch_runs WHERE id > $last_run")
	check "run $i: one fetch_runs row, a network_error" "1|network_error" "$(echo "$row" | cut -d'|' -f1,2)"
	check_contains "run $i: the error says the connection was refused" \
		"Failed to connect to 127.0.0.1 port $DOWN_PORT" "$row"
done
down_fake_start "$DOWN_PORT" || exit 1
ksi once -c "$WORK/f.conf" -d "$(url_of down)" 2>"$WORK/down-back.log"
check "the first run after the outage exits 0" 0 $?
check "the tables equal the fault-free run's" "$REF" "$(snapshot down "$LAST")"
check "what was committed is whole" "t" "$(consistent down)"

echo "# a commit lost in the middle of a poll (asynchronous commit, a failover): no hole is skipped"
setup_db lost || exit 1
once_in_background lost
# The last committed window vanishes as if its commit had been lost: its
# rows, its run and the advance of synced_until, in one transaction that
# holds the state row so the write in flight sees the moved-back value.
psql "$(url_of lost)" -X -q -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
BEGIN;
SELECT synced_until - interval '6 hours' AS hole FROM ksi_sales.connector_state FOR UPDATE \gset
DELETE FROM ksi_sales.sales_hourly WHERE hour >= :'hole' AND hour < :'hole'::timestamptz + interval '6 hours';
DELETE FROM ksi_sales.fetch_runs WHERE window_from = :'hole';
UPDATE ksi_sales.connector_state SET synced_until = :'hole';
COMMIT;
SQL
HOLE=$(q lost "SELECT synced_until FROM ksi_sales.connector_state")
wait "$OPID"
check "the interrupted run goes on and exits 0" 0 $?
check "synced_until stays at the hole: later windows do not advance past it" "$HOLE" \
	"$(q lost "SELECT synced_until FROM ksi_sales.connector_state")"
check "the hole is empty, later windows are written" "0 true" \
	"$(q lost "SELECT count(*) FILTER (WHERE hour >= '$HOLE' AND hour < '$HOLE'::timestamptz + interval '6 hours')
	              || ' ' || (max(hour) > '$HOLE'::timestamptz + interval '6 hours') FROM ksi_sales.sales_hourly")"
ksi once -c "$WORK/f.conf" -d "$(url_of lost)" 2>"$WORK/lost2.log"
check "the next run exits 0" 0 $?
check "it fetched the hole again: the tables equal the fault-free run's" "$REF" "$(snapshot lost "$LAST")"

check_absent "no log shows the token" "$TOKEN" "$(cat "$WORK"/*.log)"

echo
echo "faults: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ]
