#!/usr/bin/env bash
# `make demo`: the real daemon against a throwaway PostgreSQL and the bundled
# fake customer API. Adds a demo connector with three stores using plain SQL
# (the integration guide's steps), runs `ksi-salesd once`, shows the result.
set -euo pipefail

WORK=$(mktemp -d /tmp/ksi-salesd-demo.XXXXXX)
chmod 755 "$WORK"
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/integration/lib.sh"
BIN=$ROOT/build/ksi-salesd
TOKEN="demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

cleanup() {
	fake_stop
	pg_stop
	rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Starting a throwaway PostgreSQL and the fake customer API"
pg_start
fake_start "$ROOT/build/fakeapi" --token "$TOKEN"
echo "PostgreSQL: $CONNINFO"
echo "fake API:   $FAKE_URL/sales (expects Authorization: Bearer <token>)"

say "ksi-salesd migrate"
"$BIN" migrate

say "Steps 1-4 of the integration guide, as SQL"
cat <<SQL | tee "$WORK/setup.sql"
-- 1-2. the customer's API and its token: one connector
INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, timezone, initial_backfill)
VALUES ('demo-retail', '$FAKE_URL/sales', '<token>', 'Europe/Madrid', '2 days');
-- 3. link each KSI store to its code at the customer ("Sales configuration")
INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code, timezone)
SELECT s.name, c.id, s.code, 'Europe/Madrid'
FROM ksi_sales.connectors c,
     (VALUES ('Madrid Centro', '0001'), ('Barcelona Diagonal', '0002'), ('Valencia Puerto', '0003')) AS s(name, code)
WHERE c.name = 'demo-retail';
SQL
# The token goes in through a psql variable, so it is not echoed above.
sed "s/'<token>'/:'token'/" "$WORK/setup.sql" | psql "$CONNINFO" -X -q -v ON_ERROR_STOP=1 -v token="$TOKEN"

say "Test connection (the guide's button): the demo API, then a broken one"
printf '%s\n' "$TOKEN" >"$WORK/token"
"$BIN" test-connection --connector demo-retail || true
echo
echo "... and an API that honours only the last ext_ref_codes (exit 1 is expected):"
"$BIN" test-connection --url "$FAKE_URL/lastcode/sales" --token-file "$WORK/token" --codes 0001,0002,0003 || true

say "4. ksi-salesd run: the daemon, until the connector is polled, then SIGTERM"
# With Prometheus metrics on a free loopback port ([metrics] listen).
printf '[daemon]\nclaim_interval = 1s\n[metrics]\nlisten = 127.0.0.1:0\n' >"$WORK/demo.conf"
"$BIN" run -c "$WORK/demo.conf" 2>"$WORK/run.log" &
DAEMON=$!
polled() { [ "$(psql "$CONNINFO" -XAtc "SELECT count(*) FROM ksi_sales.connector_health WHERE state = 'ok' AND polled_by IS NULL")" = 1 ]; }
wait_for "the daemon to poll demo-retail" 30 polled || { cat "$WORK/run.log"; exit 1; }
METRICS_URL=$(sed -n 's|.*serving Prometheus metrics on \(http://[^ ]*\).*|\1|p' "$WORK/run.log" | head -1)
counted() { curl -sf "$METRICS_URL" | grep -q 'ksi_salesd_connectors{state="ok"} 1'; }
wait_for "the metrics to count demo-retail as ok" 10 counted || true

say "A Prometheus scrape: curl $METRICS_URL (samples only, process_* left out)"
curl -sf "$METRICS_URL" | grep '^ksi_salesd_' | grep -v -e '_bucket{' -e 'outcome="[a-z_]*"} 0$'
kill -TERM "$DAEMON"
wait "$DAEMON"
cat "$WORK/run.log"

say "Ingested hours: the last four per store (ksi_sales.sales_hourly)"
psql "$CONNINFO" -X -q -P footer=off -c "
SELECT s.name AS store, h.ext_ref_code AS code,
       to_char(h.hour AT TIME ZONE s.timezone, 'YYYY-MM-DD HH24:MI') AS local_hour,
       h.num_tickets
FROM ksi_sales.sales_hourly h JOIN ksi_sales.stores s ON s.id = h.store_id
WHERE h.hour >= date_trunc('hour', now()) - interval '3 hours'
ORDER BY s.name, h.hour"

say "Tickets per store and local day (ksi_sales.sales_daily)"
psql "$CONNINFO" -X -q -P footer=off -c "SELECT store_name, day, num_tickets, hours_reported FROM ksi_sales.sales_daily ORDER BY store_name, day"

say "ksi-salesd status"
# Exit 1 means a connector needs attention (monitoring reads it); the demo
# shows the code rather than stopping on it.
rc=0
"$BIN" status || rc=$?
echo "(status exited $rc: 0 all healthy, 1 a connector needs attention)"

say "Coverage: fetched hours versus hours never fetched (ksi_sales.coverage)"
psql "$CONNINFO" -X -q -P footer=off -c "SELECT store_name, status, count(*) AS hours FROM ksi_sales.coverage GROUP BY 1, 2 ORDER BY 1, 2"

say "Requests made (ksi_sales.fetch_runs)"
psql "$CONNINFO" -X -q -P footer=off -c "
SELECT id, window_from, window_to, http_status, outcome, records_received AS received,
       records_upserted AS upserted, records_rejected AS rejected, duration
FROM ksi_sales.fetch_runs ORDER BY id"
echo
echo "Done. Everything above lived in $WORK and is removed now."
