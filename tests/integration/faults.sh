#!/usr/bin/env bash
# Fault suite: a fault in the middle of a run, then a normal run; the final
# tables must equal those of a fault-free run of the same scenario.
#   faults.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"
pg_start || exit 1
fake_start "$FAKE" --token "$TOKEN" || exit 1
printf '[daemon]\nlease = 10s\nmax_per_host = 64\n[log]\nlevel = warning\n' >"$WORK/f.conf"

# A database with the scenario: 300 stores, 3 days in 6-hour windows, an API
# taking 300 ms per request, so a run lasts long enough to be cut.
setup_db() {
	sql "CREATE DATABASE $1" >/dev/null
	local url="${CONNINFO/dbname=postgres/dbname=$1}"
	ksi migrate -d "$url" 2>/dev/null || return 1
	psql "$url" -X -q -v ON_ERROR_STOP=1 -c "
		INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill, max_window)
		VALUES ('chain', '$FAKE_URL/delay/300/sales', '$TOKEN', '3 days', '6 hours');
		INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
		SELECT 'S' || i, 1, 'S' || lpad(i::text, 4, '0') FROM generate_series(1, 300) AS i"
}
url_of() { echo "${CONNINFO/dbname=postgres/dbname=$1}"; }
q() { psql "$(url_of "$1")" -X -A -t -q -c "$2"; }
# The data, up to the last hour the reference has (a later run may reach one hour more).
snapshot() {
	q "$1" "SELECT count(*) || ' ' || md5(string_agg(ext_ref_code || '@' || hour || '=' || num_tickets, ',' ORDER BY ext_ref_code, hour))
	        FROM ksi_sales.sales_hourly WHERE hour <= '$2'"
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

setup_db ref || exit 1
ksi once -c "$WORK/f.conf" -d "$(url_of ref)" 2>"$WORK/ref.log"
check "the fault-free reference run exits 0" 0 $?
LAST=$(q ref "SELECT max(hour) FROM ksi_sales.sales_hourly")
REF=$(snapshot ref "$LAST")
echo "    reference: ${REF%% *} rows up to $LAST"

echo "# kill -9 of once in the middle of its run"
setup_db killed || exit 1
ksi once -c "$WORK/f.conf" -d "$(url_of killed)" 2>"$WORK/killed1.log" &
OPID=$!
PIDS+=("$OPID")
wait_for "a few windows to commit" 30 ok_runs_at_least killed 3
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

echo "# PostgreSQL restarted (immediate) in the middle of the writes"
setup_db crashed || exit 1
ksi once -c "$WORK/f.conf" -d "$(url_of crashed)" 2>"$WORK/crashed1.log" &
OPID=$!
PIDS+=("$OPID")
wait_for "a few windows to commit" 30 ok_runs_at_least crashed 3
sh "$ROOT/tests/lib/pg.sh" restart "$PG_DIR" immediate
wait "$OPID"
rc=$?
check "the interrupted run reports a database failure (exit 3)" 3 "$rc"
check "what was committed is whole" "t" "$(consistent crashed)"
wait_for "the lease to expire" 20 lease_free crashed
ksi once -c "$WORK/f.conf" -d "$(url_of crashed)" 2>"$WORK/crashed2.log"
check "the next run exits 0" 0 $?
check "the tables equal the fault-free run's" "$REF" "$(snapshot crashed "$LAST")"
check_absent "no log shows the token" "$TOKEN" "$(cat "$WORK"/*.log)"

echo
echo "faults: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
