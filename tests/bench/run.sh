#!/usr/bin/env bash
# `make bench`: measurements, never pass/fail tests (README "Performance").
# One run, on a throwaway PostgreSQL and the fake API on this machine:
#   slow APIs     N connectors x 5 stores whose API answers in 200 ms, 64
#                 transfers in flight, N = 250 ... 2000: `once` against
#                 the ideal ceil(N / 64) x 0.2 s; the peer on N = 2000.
#   at scale      10,000 connectors x 5 stores, 100 ms, 512 in flight, 3 times.
#   big backfill  1 connector x 1,000 stores x 30 days (720,000 records)
#                 with `backfill`, against the floor (the same rows through
#                 psql's \copy and one INSERT ... ON CONFLICT) and the peer.
#   idle          `run` over 2,000 connectors none of which is due, 60 s.
# CPU is user + system of the client process alone (daemon or peer), from
# GNU time, as is peak RSS. Prints a table; writes build/bench/results.csv
# and, when gnuplot is installed, build/bench/cycle.png.
#   Environment: BENCH_IDLE_SECONDS (60), BENCH_DURABLE (1: fsync on).
set -euo pipefail

WORK=$(mktemp -d /tmp/ksi-salesd-bench.XXXXXX)
chmod 755 "$WORK"
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
BIN=$ROOT/build/ksi-salesd
PEER=$ROOT/tests/bench/peer.py
OUT=$ROOT/build/bench
PY=/usr/bin/python3
mkdir -p "$OUT"
DAEMON_PID=
cleanup() {
	[ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
	fake_stop
	pg_stop
	rm -rf "$WORK"
}
trap cleanup EXIT

# The peer's libraries and the plotter come from Debian, like every other
# dependency (PyPI is not used).
if ! "$PY" -c 'import requests, psycopg2' 2>/dev/null || ! command -v gnuplot >/dev/null; then
	if [ "$(id -u)" = 0 ]; then
		apt-get install -y -q python3-requests python3-psycopg2 gnuplot-nox >/dev/null 2>&1 ||
			{ apt-get update -q >/dev/null && apt-get install -y -q python3-requests python3-psycopg2 gnuplot-nox >/dev/null; } ||
			echo "bench: could not install python3-requests python3-psycopg2 gnuplot-nox" >&2
	fi
fi
HAVE_PEER=yes
"$PY" -c 'import requests, psycopg2' 2>/dev/null || HAVE_PEER=

# PostgreSQL as an operator runs it (durable commits), not the tests'
# fsync=off cluster: the floor is measured on the same server anyway.
if [ "${BENCH_DURABLE:-1}" = 1 ]; then
	export PG_EXTRA_OPTS="-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c shared_buffers=256MB -c max_wal_size=4GB"
fi
pg_start
TOKEN="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
fake_start "$ROOT/build/fakeapi" --token "$TOKEN"
"$BIN" migrate 2>/dev/null

CSV=$OUT/results.csv
echo "scenario,connectors,stores,inflight,wall_s,reference_s,ratio,records,records_per_s,cpu_s,cpu_s_per_million,peak_rss_mib,machine_busy_pct" >"$CSV"
printf '%-30s %6s %8s %9s %7s %8s %10s %7s %9s %8s %6s\n' scenario inflight "wall s" "ideal s" ratio records "records/s" "CPU s" "CPU s/M" "RSS MiB" "busy%"

# busy_ticks: the machine's non-idle CPU ticks so far (all cores, /proc/stat).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# timed CMD...: runs CMD under GNU time; sets WALL, CPU (user + system of
# CMD), RSS (peak, MiB) and BUSY (the whole machine's CPU use meanwhile, in
# % of all its cores: PostgreSQL and the fake API run here too).
timed() {
	local b0 b1 user sys kib
	b0=$(busy_ticks)
	/usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$@"
	b1=$(busy_ticks)
	read -r WALL user sys kib <"$WORK/time"
	CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
	RSS=$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }')
	BUSY=$(awk -v t="$((b1 - b0))" -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" -v w="$WALL" \
		'BEGIN { printf "%.0f", (w > 0) ? 100 * t / hz / n / w : 0 }')
}

# row NAME CONNECTORS STORES INFLIGHT REFERENCE_S RECORDS: prints and records
# one measurement (WALL, CPU, RSS from the last `timed`). The ratio is
# wall / reference (a cycle against its ideal), or for a floor reference,
# records/s against the floor's records/s.
row() {
	local name=$1 n=$2 stores=$3 k=$4 ref=$5 records=$6
	awk -v name="$name" -v n="$n" -v st="$stores" -v k="$k" -v w="$WALL" -v ref="$ref" -v rec="$records" \
		-v cpu="$CPU" -v rss="$RSS" -v busy="${BUSY:-0}" -v csv="$CSV" 'BEGIN {
		ratio = (ref > 0) ? w / ref : 0
		rps = (w > 0) ? rec / w : 0
		cpm = (rec > 0) ? cpu / rec * 1e6 : 0
		sref = (ref > 0) ? sprintf("%.2f", ref) : "-"
		sratio = (ref > 0) ? sprintf("%.2f", ratio) : "-"
		printf "%-30s %6s %8.2f %9s %7s %8d %10.0f %7.2f %9.2f %8.1f %6s\n", name, k, w, sref, sratio, rec, rps, cpu, cpm, rss, busy
		printf "%s,%d,%d,%d,%.3f,%.3f,%.3f,%d,%.0f,%.3f,%.3f,%.1f,%s\n", name, n, st, k, w, ref, ratio, rec, rps, cpu, cpm, rss, busy >> csv
	}'
}

reset_db() {
	sql "SET client_min_messages = warning;
	     TRUNCATE ksi_sales.connectors, ksi_sales.stores, ksi_sales.sales_hourly, ksi_sales.fetch_runs,
	              ksi_sales.connector_state CASCADE" >/dev/null
}

# many_apis N DELAY_MS: N connectors x 5 stores on the fake API taking DELAY_MS.
many_apis() {
	reset_db
	sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
	     SELECT 'api-' || i, '$FAKE_URL/delay/$2/sales', '$TOKEN', '1 hour' FROM generate_series(1, $1) AS i;
	     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
	     SELECT c.name || '-' || j, c.id, 'S' || j FROM ksi_sales.connectors c, generate_series(1, 5) AS j;
	     VACUUM ANALYZE" >/dev/null
}

# conf INFLIGHT: every connector is on one host (127.0.0.1), so the per-host
# limit is raised to the global one.
conf() {
	printf '[daemon]\nmax_concurrent_fetches = %s\nmax_per_host = %s\n[log]\nlevel = warning\n' "$1" "$1" >"$WORK/bench.conf"
}

records() { sql "SELECT coalesce(sum(records_received), 0) FROM ksi_sales.fetch_runs"; }

# daemon_cycle N DELAY_MS INFLIGHT NAME
daemon_cycle() {
	local n=$1 d=$2 k=$3
	many_apis "$n" "$d"
	conf "$k"
	timed "$BIN" once -c "$WORK/bench.conf"
	row "$4" "$n" 5 "$k" "$(awk -v n="$n" -v k="$k" -v d="$d" 'BEGIN { print int((n + k - 1) / k) * d / 1000 }')" "$(records)"
}

# -- many slow APIs, and the curve of cycle time against connector count --
for n in 250 500 1000 2000; do
	daemon_cycle "$n" 200 64 "slow APIs: $n x 200 ms"
done
SLOW_CPU=$CPU SLOW_WALL=$WALL SLOW_RSS=$RSS

# -- idle: 2,000 connectors, none due within the hour --
# (After a poll each connector's next one is spread over its interval, so
# some would be due within any minute: those are work, not idling.)
sql "UPDATE ksi_sales.connector_state SET next_poll = now() + interval '1 hour'" >/dev/null
# The minute after start-up has settled (its connections, LISTEN, first
# claims): from 5 s after READY to 5 s + BENCH_IDLE_SECONDS. CPU time of all
# the daemon's threads, in nanoseconds (/proc/PID/task/*/schedstat).
IDLE_S=${BENCH_IDLE_SECONDS:-60}
printf '[daemon]\nmax_concurrent_fetches = 64\nmax_per_host = 64\n[log]\nlevel = info\n' >"$WORK/idle.conf"
"$BIN" run -c "$WORK/idle.conf" 2>"$WORK/idle.log" &
DAEMON_PID=$!
wait_for "the daemon to start" 20 grep -q "running as" "$WORK/idle.log"
cpu_ns() { cat /proc/"$DAEMON_PID"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'; }
sleep 5 # part of the measurement's definition (start-up excluded), not a synchronisation
t0=$(cpu_ns) b0=$(busy_ticks)
sleep "$IDLE_S" # the measurement interval itself
t1=$(cpu_ns) b1=$(busy_ticks)
IDLE_RSS=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$DAEMON_PID/status")
kill "$DAEMON_PID"
wait "$DAEMON_PID" || true
DAEMON_PID=
IDLE_CPU=$(awk -v a="$t0" -v b="$t1" -v s="$IDLE_S" 'BEGIN { printf "%.4f", (b - a) / 1e9 * 60 / s }')
WALL=$IDLE_S RSS=$IDLE_RSS
CPU=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
BUSY=$(awk -v t="$((b1 - b0))" -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" -v w="$IDLE_S" 'BEGIN { printf "%.0f", 100 * t / hz / n / w }')
row "idle: 2000, none due" 2000 5 64 0 0

# -- the peer on the slow APIs --
if [ -n "$HAVE_PEER" ]; then
	many_apis 2000 200
	timed "$PY" "$PEER" poll --threads 64 >/dev/null
	PEER_SLOW_CPU=$CPU PEER_SLOW_WALL=$WALL
	row "peer: slow APIs 2000 x 200 ms" 2000 5 64 6.4 "$(records)"
fi

# -- at scale: three cycles (the busiest scenario varies most); the target
# takes their median --
SCALE_WALLS= SCALE_RSS=0
for i in 1 2 3; do
	daemon_cycle 10000 100 512 "at scale: 10000 x 100 ms ($i/3)"
	SCALE_WALLS="$SCALE_WALLS $WALL"
	SCALE_RSS=$(awk -v a="$SCALE_RSS" -v b="$RSS" 'BEGIN { print (b > a) ? b : a }')
done
SCALE_RATIO=$(printf '%s\n' $SCALE_WALLS | sort -n | sed -n 2p | awk '{ printf "%.2f", $1 / 2.0 }')

# -- big backfill: daemon, floor, peer --
STORES=1000 DAYS=30
TO=$(date -u +%Y-%m-%dT%H:00:00+00:00)
FROM=$(date -u -d "$(date -u +%Y-%m-%dT%H:00:00) $DAYS days ago" +%Y-%m-%dT%H:00:00+00:00)
backfill_db() {
	reset_db
	sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token) VALUES ('chain', '$FAKE_URL/sales', '$TOKEN');
	     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
	     SELECT 'store ' || i, (SELECT id FROM ksi_sales.connectors), 'S' || lpad(i::text, 4, '0')
	     FROM generate_series(1, $STORES) AS i;
	     VACUUM ANALYZE" >/dev/null
}
backfill_db
printf '[log]\nlevel = warning\n' >"$WORK/backfill.conf"
timed "$BIN" backfill -c "$WORK/backfill.conf" --connector chain --from "$FROM" --to "$TO" </dev/null 2>"$WORK/backfill.log"
BF_WALL=$WALL BF_CPU=$CPU BF_RSS=$RSS BF_BUSY=$BUSY
BF_RECORDS=$(sql "SELECT count(*) FROM ksi_sales.sales_hourly")

# The floor: the very rows the daemon wrote, loaded by psql in one COPY and
# merged in one statement, into the same empty table.
sql "\copy (SELECT ext_ref_code, extract(epoch FROM hour)::bigint, num_tickets FROM ksi_sales.sales_hourly) TO '$WORK/rows.csv' CSV"
chmod 644 "$WORK/rows.csv"
sql "TRUNCATE ksi_sales.sales_hourly; CHECKPOINT" >/dev/null
cat >"$WORK/floor.sql" <<SQL
BEGIN;
CREATE TEMP TABLE incoming (code text, hour bigint, n integer) ON COMMIT DROP;
\copy incoming FROM '$WORK/rows.csv' CSV
INSERT INTO ksi_sales.sales_hourly AS h (store_id, hour, num_tickets, ext_ref_code, connector_id, fetched_at)
SELECT s.id, to_timestamp(i.hour), i.n, i.code, s.connector_id, now()
FROM incoming i JOIN ksi_sales.stores s ON s.ext_ref_code = i.code
 AND s.connector_id = (SELECT id FROM ksi_sales.connectors WHERE name = 'chain')
ON CONFLICT (store_id, hour) DO UPDATE SET num_tickets = EXCLUDED.num_tickets,
 ext_ref_code = EXCLUDED.ext_ref_code, connector_id = EXCLUDED.connector_id, fetched_at = EXCLUDED.fetched_at;
COMMIT;
SQL
timed psql "$CONNINFO" -X -q -v ON_ERROR_STOP=1 -f "$WORK/floor.sql"
FLOOR_WALL=$WALL FLOOR_BUSY=$BUSY
[ "$(sql "SELECT count(*) FROM ksi_sales.sales_hourly")" = "$BF_RECORDS" ] ||
	echo "bench: the floor loaded a different number of rows" >&2
WALL=$BF_WALL CPU=$BF_CPU RSS=$BF_RSS BUSY=$BF_BUSY
# The ratio column for the backfill is the daemon's records/s over the
# floor's: wall(floor) / wall(daemon).
BF_RATIO=$(awk -v f="$FLOOR_WALL" -v d="$BF_WALL" 'BEGIN { printf "%.2f", f / d }')
row "backfill: 1000 stores x 30 d" 1 "$STORES" 1 0 "$BF_RECORDS"
WALL=$FLOOR_WALL CPU=0 RSS=0 BUSY=$FLOOR_BUSY
row "floor: \\copy + one upsert" 1 "$STORES" 1 0 "$BF_RECORDS"

if [ -n "$HAVE_PEER" ]; then
	backfill_db
	sql "CHECKPOINT" >/dev/null
	timed "$PY" "$PEER" backfill --connector chain --from "$FROM" --to "$TO" >/dev/null
	PEER_BF_WALL=$WALL PEER_BF_CPU=$CPU
	row "peer: backfill" 1 "$STORES" 1 0 "$(sql "SELECT count(*) FROM ksi_sales.sales_hourly")"
fi

# -- the targets, as ratios from this run --
echo
echo "targets (issue 6), from this run:"
target() { # NAME VALUE OP LIMIT
	awk -v n="$1" -v v="$2" -v op="$3" -v l="$4" 'BEGIN {
		met = (op == "<=") ? v <= l : v >= l
		printf "  %-58s %8s  (target %s %s)  %s\n", n, v, op, l, met ? "met" : "NOT MET" }'
}
target "slow APIs 2000 x 200 ms, cycle / ideal" "$(awk -v w="$SLOW_WALL" 'BEGIN { printf "%.2f", w / 6.4 }')" "<=" 1.15
[ -n "$HAVE_PEER" ] && target "slow APIs, daemon CPU / peer CPU" \
	"$(awk -v a="$SLOW_CPU" -v b="$PEER_SLOW_CPU" 'BEGIN { printf "%.3f", a / b }')" "<=" 0.25
target "at scale 10000 x 100 ms, 512 in flight, cycle / ideal (median of 3)" "$SCALE_RATIO" "<=" 1.3
target "big backfill, daemon records/s / floor records/s" "$BF_RATIO" ">=" 0.75
if [ -n "$HAVE_PEER" ]; then
	target "big backfill, daemon records/s / peer records/s" \
		"$(awk -v a="$BF_WALL" -v b="$PEER_BF_WALL" 'BEGIN { printf "%.2f", b / a }')" ">=" 2
	target "big backfill, daemon CPU / peer CPU" \
		"$(awk -v a="$BF_CPU" -v b="$PEER_BF_CPU" 'BEGIN { printf "%.3f", a / b }')" "<=" 0.333
fi
target "peak RSS, any scenario (MiB)" \
	"$(printf '%s\n' "$SLOW_RSS" "$SCALE_RSS" "$BF_RSS" "$IDLE_RSS" | sort -n | tail -1)" "<=" 64
target "idle CPU (s per minute)" "$IDLE_CPU" "<=" 0.05
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr);" \
	"PostgreSQL $(psql "$CONNINFO" -X -A -t -c 'SHOW server_version'), fsync $(psql "$CONNINFO" -X -A -t -c 'SHOW fsync')"
echo "csv: $CSV"

if command -v gnuplot >/dev/null; then
	grep '^slow APIs' "$CSV" >"$WORK/curve.csv"
	gnuplot <<PLOT
set terminal pngcairo size 800,500
set output '$OUT/cycle.png'
set datafile separator ','
set title 'ksi-salesd once: cycle time against connector count (API 200 ms, 64 in flight)'
set xlabel 'connectors'
set ylabel 'cycle (s)'
set key top left
plot '$WORK/curve.csv' using 2:5 with linespoints title 'measured', \
     '$WORK/curve.csv' using 2:6 with lines dashtype 2 title 'ideal ceil(N/64) x 0.2 s'
PLOT
	echo "plot: $OUT/cycle.png"
fi
