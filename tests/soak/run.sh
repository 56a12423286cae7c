#!/usr/bin/env bash
# `make soak` (by hand, not in make check): the release daemon for a while
# against 500 connectors on the fake API — most fine, some failing, some
# slow — sampling its memory, open descriptors and CPU every 30 s.
#   SOAK_SECONDS (default 600)
set -euo pipefail

WORK=$(mktemp -d /tmp/ksi-salesd-soak.XXXXXX)
chmod 755 "$WORK"
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
BIN=$ROOT/build/ksi-salesd
SECS=${SOAK_SECONDS:-600}
cleanup() {
	[ -n "${DPID:-}" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
	fake_stop
	pg_stop
	rm -rf "$WORK"
}
trap cleanup EXIT

pg_start
fake_start "$ROOT/build/fakeapi"
"$BIN" migrate 2>/dev/null
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, initial_backfill, max_window, poll_interval)
     SELECT 'soak-' || i,
            '$FAKE_URL/' || CASE WHEN i % 10 = 0 THEN 'status/500/' WHEN i % 10 = 1 THEN 'delay/5000/'
                                 WHEN i % 10 = 2 THEN 'bad/' ELSE '' END || 'sales',
            '1 day', '6 hours', '1 minute'
     FROM generate_series(1, 500) AS i;
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT c.name || '/' || k, c.id, lpad(k::text, 4, '0') FROM ksi_sales.connectors c, generate_series(1, 5) AS k"
printf '[daemon]\nmax_concurrent_fetches = 64\nmax_per_host = 64\n[log]\nlevel = warning\n' >"$WORK/soak.conf"
"$BIN" run -c "$WORK/soak.conf" 2>"$WORK/soak.log" &
DPID=$!

printf '%6s %10s %6s %10s %8s %8s\n' "t (s)" "RSS (KiB)" fds "CPU (s)" "runs" "rows"
start=$SECONDS
while [ $((SECONDS - start)) -le "$SECS" ]; do
	rss=$(awk '/VmRSS/ { print $2 }' "/proc/$DPID/status")
	fds=$(ls "/proc/$DPID/fd" | wc -l)
	cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$DPID/stat")
	printf '%6d %10s %6s %10s %8s %8s\n' $((SECONDS - start)) "$rss" "$fds" "$cpu" \
		"$(sql 'SELECT count(*) FROM ksi_sales.fetch_runs')" "$(sql 'SELECT count(*) FROM ksi_sales.sales_hourly')"
	sleep 30 # sampling period of a measurement
done
echo "log lines: $(wc -l <"$WORK/soak.log") (warnings and errors)"
sql "SELECT outcome, count(*) FROM ksi_sales.fetch_runs GROUP BY 1 ORDER BY 2 DESC"
