#!/usr/bin/env bash
# `make bench-metrics`: what a scrape of /metrics costs the daemon, a
# measurement, never a pass/fail test (README, Observability). `run` (the
# release build) over 10,000 connectors with stores, none due (a third
# failing, a third never polled, a third ok and synced), so the loop is
# idle but the connectors' snapshot is that of 10,000. Then:
#   scrape   daemon CPU (user + system, /proc/PID/stat) over SCRAPES
#            sequential scrapes on one keep-alive connection, less its CPU
#            over the same wall time idle: CPU per scrape.
#   snapshot the connectors' snapshot statement (db_connector_snapshot's,
#            once per claim interval) on those 10,000: server time.
#   Environment: BENCH_SCRAPES (1000), BENCH_CONNECTORS (10000).
set -euo pipefail

WORK=$(mktemp -d /tmp/ksi-salesd-bench-metrics.XXXXXX)
chmod 755 "$WORK"
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
BIN=$ROOT/build/ksi-salesd
SCRAPES=${BENCH_SCRAPES:-1000}
N=${BENCH_CONNECTORS:-10000}
DAEMON_PID=
cleanup() {
	[ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
	pg_stop
	rm -rf "$WORK"
}
trap cleanup EXIT

pg_start
"$BIN" migrate 2>/dev/null
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token)
     SELECT 'c' || i, 'http://127.0.0.1:9/sales', 'token' FROM generate_series(1, $N) i;
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'store ' || id, id, '0001' FROM ksi_sales.connectors;
     INSERT INTO ksi_sales.fetch_runs (connector_id, started_at, finished_at, outcome)
     SELECT id, now(), now(), CASE WHEN id % 3 = 0 THEN 'ok' ELSE 'http_error' END
     FROM ksi_sales.connectors WHERE id % 3 <> 1;
     UPDATE ksi_sales.connector_state SET next_poll = now() + interval '1 day',
            synced_until = CASE WHEN connector_id % 3 = 0 THEN now() END;
     ANALYZE" >/dev/null

cat >"$WORK/d.conf" <<CONF
[metrics]
listen = 127.0.0.1:0
[log]
level = info
CONF
"$BIN" run -c "$WORK/d.conf" -d "$CONNINFO" 2>"$WORK/d.log" &
DAEMON_PID=$!
wait_for "the daemon to serve metrics" 20 grep -q "serving Prometheus metrics" "$WORK/d.log"
PORT=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$WORK/d.log" | head -1)
# snapshot_read: the first connectors' snapshot has landed.
snapshot_read() { curl -sf "http://127.0.0.1:$PORT/metrics" | grep -q "ksi_salesd_connectors{state=\"ok\"} $((N / 3))"; }
wait_for "the snapshot of $N connectors" 30 snapshot_read

# cpu_ticks: the daemon's utime + stime, in clock ticks.
cpu_ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$DAEMON_PID/stat"; }
TCK=$(getconf CLK_TCK)
scrape_all() {
	python3 - "$PORT" "$SCRAPES" <<'PY'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port)
size = 0
for _ in range(n):
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read()
    assert r.status == 200, r.status
    size = len(body)
print(size)
PY
}
t0=$(date +%s.%N)
c0=$(cpu_ticks)
size=$(scrape_all)
c1=$(cpu_ticks)
t1=$(date +%s.%N)
wall=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$t1")
# The same wall time idle (claims and snapshots go on): the baseline.
i0=$(cpu_ticks)
sleep "$wall" # a measurement interval, not synchronisation
i1=$(cpu_ticks)
snap_ms=$(psql "$CONNINFO" -X -q -A -t -c "EXPLAIN (ANALYZE, FORMAT JSON)
  WITH c AS (SELECT c.enabled, c.lookback, st.synced_until,
    EXISTS (SELECT 1 FROM ksi_sales.stores s WHERE s.connector_id = c.id) AS has_stores,
    (SELECT r.outcome FROM ksi_sales.fetch_runs r WHERE r.connector_id = c.id
     ORDER BY r.started_at DESC, r.id DESC LIMIT 1) AS last_outcome
   FROM ksi_sales.connectors c LEFT JOIN ksi_sales.connector_state st ON st.connector_id = c.id)
  SELECT count(*) FILTER (WHERE last_outcome = 'ok'), min(synced_until),
         count(*) FILTER (WHERE synced_until IS NULL OR synced_until < now() - lookback) FROM c" |
	python3 -c 'import json, sys; print(round(json.load(sys.stdin)[0]["Execution Time"], 1))')
python3 - "$SCRAPES" "$size" "$wall" "$c0" "$c1" "$i0" "$i1" "$TCK" "$N" "$snap_ms" <<'PY'
import sys
n, size, wall, c0, c1, i0, i1, tck, conns, snap = sys.argv[1:]
n, tck = int(n), float(tck)
busy = (float(c1) - float(c0)) / tck
idle = (float(i1) - float(i0)) / tck
per = max(busy - idle, 0) / n * 1000
print(f"{conns} connectors, {n} scrapes of {size} bytes in {float(wall):.2f} s wall")
print(f"daemon CPU: {busy:.2f} s scraping, {idle:.2f} s idle over the same time")
print(f"CPU per scrape: {per:.3f} ms (target < 1 ms; clock ticks of {1000 / tck:.0f} ms bound the precision to {1000 / tck / n * 2:.3f} ms)")
print(f"connectors' snapshot statement: {snap} ms on the server, once per claim interval")
PY
