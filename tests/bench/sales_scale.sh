#!/usr/bin/env bash
# `make bench`, the sales_hourly-at-scale scenario (README "Performance",
# issue 15): a year of hourly rows for as many stores as make
# BENCH_SALES_ROWS (100,000,000 by default: about 11,400 stores, 5 per
# connector), generated with SQL (not through the API), then the queries the
# Grafana dashboard and the views run, each timed 3 times (the median), and
# what the daily rollup costs the write path.
#   sales_scale.sh BINARY
#   Environment: BENCH_SALES_ROWS (100000000); BENCH_SALES_DIR (unset: a
#   temporary cluster, removed at the end; set: the cluster lives in that
#   directory and is kept, stopped, and a later run with the same directory
#   reuses its rows: it only migrates (new migrations apply) and measures).
# Needs about 110 bytes of disk per row (11 GB at 100 million) and, on two
# shared cores, about an hour at 100 million (the load; measuring: minutes).
# Prints a table and writes build/bench/sales_scale.csv.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(realpath "$1")
ROWS=${BENCH_SALES_ROWS:-100000000}
STORES=$(((ROWS + 8759) / 8760))
OUT=$ROOT/build/bench
mkdir -p "$OUT"
if [ -n "${BENCH_SALES_DIR:-}" ]; then
	WORK=$(mkdir -p "$BENCH_SALES_DIR" && realpath "$BENCH_SALES_DIR")
else
	WORK=$(mktemp -d /tmp/ksi-salesd-sales-scale.XXXXXX)
fi
chmod 755 "$WORK"
cleanup() {
	if [ -n "${BENCH_SALES_DIR:-}" ]; then
		sh "$ROOT/tests/lib/pg.sh" halt "$WORK/pg" || true
		echo "bench: kept the cluster in $WORK/pg (BENCH_SALES_DIR=$WORK reuses it)"
	else
		sh "$ROOT/tests/lib/pg.sh" stop "$WORK/pg"
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
# Durable, as production: fsync on (pg.sh turns it off for tests); pg.sh's
# full_page_writes=off stays, which shortens the load and changes no read.
export PG_EXTRA_OPTS="-c fsync=on -c synchronous_commit=on -c shared_buffers=1GB -c max_wal_size=8GB \
	-c work_mem=64MB -c maintenance_work_mem=512MB -c jit=off"
REUSE=false
if [ -f "$WORK/loaded" ]; then
	REUSE=true
	CONNINFO=$(sh "$ROOT/tests/lib/pg.sh" resume "$WORK/pg")
else
	CONNINFO=$(sh "$ROOT/tests/lib/pg.sh" start "$WORK/pg")
fi
psql_() { psql "$CONNINFO" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
now_ms() { date +%s%3N; }

"$BIN" migrate -d "$CONNINFO" 2>/dev/null
LOAD_MS=0 VACUUM_MS=0 FILL_MS=0
OTHER_RUNS="INSERT INTO ksi_sales.fetch_runs (connector_id, window_from, window_to, codes_requested, started_at, finished_at, outcome, error)
  SELECT c.id, t - interval '3 hours', t, 5, t, t + interval '1 second',
         CASE WHEN (c.id + extract(epoch FROM t)::bigint / 900) % 20 = 0 THEN 'http_error' ELSE 'ok' END,
         CASE WHEN (c.id + extract(epoch FROM t)::bigint / 900) % 20 = 0 THEN 'HTTP 500' END
  FROM ksi_sales.connectors c,
       generate_series(date_trunc('hour', now()) - interval '30 days', now() - interval '1 minute', interval '15 minutes') t
  WHERE c.id > 1;
  UPDATE ksi_sales.connector_state SET synced_until = date_trunc('hour', now()) WHERE connector_id > 1;
  INSERT INTO ksi_sales.connector_state (connector_id, synced_until)
  SELECT id, date_trunc('hour', now()) FROM ksi_sales.connectors WHERE id > 1 ON CONFLICT (connector_id) DO NOTHING;
  ANALYZE ksi_sales.fetch_runs"
if ! $REUSE; then
	echo "sales_hourly at scale: $STORES stores x 8,760 hours = $((STORES * 8760)) rows"

	# Stores, 5 per connector, in a few zones; a year of hours ending now.
	psql_ -c "INSERT INTO ksi_sales.connectors (name, endpoint_url, enabled)
	          SELECT 'c' || i, 'http://127.0.0.1:9/sales', false FROM generate_series(1, ($STORES + 4) / 5) i;
	          INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code, timezone)
	          SELECT 's' || i, (i + 4) / 5, lpad(i::text, 6, '0'),
	                 (ARRAY['Europe/Madrid', 'UTC', 'America/Santiago', 'Asia/Kolkata'])[1 + i % 4]
	          FROM generate_series(1, $STORES) i"

	# The load, a month of every store per statement (hour-major, as polls
	# write), with the rollup's triggers off: they are measured on their own
	# below, and the rollup is filled afterwards the way migration 0012 does.
	psql_ -c "ALTER TABLE ksi_sales.sales_hourly DISABLE TRIGGER USER"
	T0=$(now_ms)
	END=$(psql_ -c "SELECT date_trunc('hour', now())")
	for m in $(seq 0 11); do
		psql_ -c "INSERT INTO ksi_sales.sales_hourly
		            (store_id, hour, num_tickets, ext_ref_code, connector_id, fetched_at, first_seen, last_changed)
		          SELECT s.id, h, (s.id * 7 + extract(epoch FROM h)::bigint / 3600 * 13) % 40, s.ext_ref_code,
		                 s.connector_id, h + interval '1 hour', h + interval '1 hour', h + interval '1 hour'
		          FROM generate_series(timestamptz '$END' - interval '8760 hours' + $m * interval '730 hours',
		                               least(timestamptz '$END' - interval '8760 hours' + ($m + 1) * interval '730 hours',
		                                     timestamptz '$END') - interval '1 hour', interval '1 hour') h
		          CROSS JOIN ksi_sales.stores s"
		printf '.'
	done
	echo
	LOAD_MS=$(($(now_ms) - T0))
	T0=$(now_ms)
	psql_ -c "VACUUM ANALYZE ksi_sales.sales_hourly"
	VACUUM_MS=$(($(now_ms) - T0))
	T0=$(now_ms)
	psql_ -c "TRUNCATE ksi_sales.sales_daily_rollup;
	          INSERT INTO ksi_sales.sales_daily_rollup (store_id, day, num_tickets, hours_reported)
	          SELECT h.store_id, (h.hour AT TIME ZONE s.timezone)::date, sum(h.num_tickets), count(*)
	          FROM ksi_sales.sales_hourly h JOIN ksi_sales.stores s ON s.id = h.store_id GROUP BY 1, 2;
	          ANALYZE ksi_sales.sales_daily_rollup"
	FILL_MS=$(($(now_ms) - T0))
	psql_ -c "ALTER TABLE ksi_sales.sales_hourly ENABLE TRIGGER USER"
	# coverage reads fetch_runs: one connector's 90 days of 15-minute polls.
	psql_ -c "SELECT ksi_sales.retention_create('fetch_runs', d)
	          FROM generate_series(date_trunc('day', now()) - interval '91 days', date_trunc('day', now()) - interval '1 day', interval '1 day') d;
	          INSERT INTO ksi_sales.connector_state (connector_id, synced_until) VALUES (1, date_trunc('hour', now()))
	          ON CONFLICT (connector_id) DO UPDATE SET synced_until = EXCLUDED.synced_until;
	          INSERT INTO ksi_sales.fetch_runs (connector_id, window_from, window_to, codes_requested, started_at, finished_at, outcome)
	          SELECT 1, t - interval '3 hours', t, 5, t, t + interval '1 second', 'ok'
	          FROM generate_series(date_trunc('hour', now()) - interval '90 days', date_trunc('hour', now()) - interval '1 hour', interval '15 minutes') t;
	          UPDATE ksi_sales.stores SET linked_at = now() - interval '1 year' WHERE connector_id = 1;
	          ANALYZE ksi_sales.fetch_runs" >/dev/null
	# connector_health reads every connector's latest runs: the others get
	# the 30 days a default retention keeps, 5 % of them failed.
	psql_ -c "$OTHER_RUNS" >/dev/null
	touch "$WORK/loaded"
fi
SIZE=$(psql_ -c "SELECT pg_size_pretty(pg_total_relation_size('ksi_sales.sales_hourly')) || ' (rollup ' ||
                        pg_size_pretty(pg_total_relation_size('ksi_sales.sales_daily_rollup')) || ')'")
N=$(psql_ -c "SELECT reltuples::bigint FROM pg_class WHERE oid = 'ksi_sales.sales_hourly'::regclass")

# time_query NAME SQL: the median of 3 runs after one to warm the cache, in
# ms, from psql's \timing (the server's work and the transfer of the rows).
# ONCE=1 time_query ...: one run, for the queries that read the whole table
# (minutes at 100 million rows; a warm cache cannot hold it anyway).
RESULTS=()
time_query() {
	local name=$1 sql=$2 t
	if [ -n "${ONCE:-}" ]; then
		t=$(printf '\\timing on\n%s;\n' "$sql" | psql "$CONNINFO" -X -q -o /dev/null 2>&1 |
			sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
	else
		t=$(printf '\\timing on\n%s;\n%s;\n%s;\n%s;\n' "$sql" "$sql" "$sql" "$sql" |
			psql "$CONNINFO" -X -q -o /dev/null 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' |
			tail -n 3 | sort -g | sed -n 2p)
	fi
	RESULTS+=("$name|$t")
	printf '  %-60s %10s ms\n' "$name" "$t"
}

STORE=$(((STORES + 1) / 2))
CONN=$(((STORE + 4) / 5))
DAY=$(psql_ -c "SELECT (now() - interval '2 days')::date")
# The Grafana panels' SQL with the time macros expanded ($__timeFilter(hour)
# = hour BETWEEN from AND to), over the last 90 (or 7) days.
RANGE90="hour BETWEEN now() - interval '90 days' AND now()"
RANGE7="hour BETWEEN now() - interval '7 days' AND now()"
# sales_daily as 0001 defined it, aggregating sales_hourly on every read.
LIVE_DAILY="(SELECT h.store_id, s.name AS store_name, (h.hour AT TIME ZONE s.timezone)::date AS day,
             sum(h.num_tickets)::bigint AS num_tickets, count(*) AS hours_reported
             FROM ksi_sales.sales_hourly h JOIN ksi_sales.stores s ON s.id = h.store_id
             GROUP BY h.store_id, s.name, (h.hour AT TIME ZONE s.timezone)::date)"
echo "queries ($N rows; sales_hourly $SIZE):"
time_query "one store, 90 days by hour (sales_hourly_local)" \
	"SELECT hour AS time, store_name AS metric, num_tickets FROM ksi_sales.sales_hourly_local WHERE $RANGE90 AND connector_id IN ($CONN) AND store_id IN ($STORE) ORDER BY 1"
time_query "one store, 90 days by day (sales_daily, rollup)" \
	"SELECT d.day::timestamp AT TIME ZONE s.timezone AS time, d.store_name AS metric, d.num_tickets FROM ksi_sales.sales_daily d JOIN ksi_sales.stores s ON s.id = d.store_id WHERE d.store_id IN ($STORE) AND d.day BETWEEN (now() - interval '90 days')::date - 1 AND now()::date + 1 ORDER BY 1"
time_query "one store, 90 days by day (live aggregate, before)" \
	"SELECT d.day, d.num_tickets FROM $LIVE_DAILY d WHERE d.store_id IN ($STORE) AND d.day BETWEEN (now() - interval '90 days')::date - 1 AND now()::date + 1 ORDER BY 1"
time_query "one connector, 7 days by hour (sales_hourly_local)" \
	"SELECT hour AS time, store_name AS metric, num_tickets FROM ksi_sales.sales_hourly_local WHERE $RANGE7 AND connector_id IN ($CONN) ORDER BY 1"
time_query "coverage, one connector, 7 days" \
	"SELECT status, count(*) AS hours FROM ksi_sales.coverage WHERE hour BETWEEN now() - interval '7 days' AND now() AND connector_id IN (1) GROUP BY status ORDER BY status"
time_query "all stores, one day (sales_daily, rollup)" \
	"SELECT store_id, store_name, num_tickets FROM ksi_sales.sales_daily WHERE day = '$DAY'"
ONCE=1 time_query "all stores, one day (live aggregate, before)" \
	"SELECT store_id, store_name, num_tickets FROM $LIVE_DAILY d WHERE day = '$DAY'"
time_query "all stores, 90 days by day (sales_daily_fleet, rollup)" \
	"SELECT day, stores_reported, num_tickets FROM ksi_sales.sales_daily_fleet WHERE day >= (now() - interval '90 days')::date ORDER BY day"
ONCE=1 time_query "all stores, 90 days by day (live aggregate, before)" \
	"SELECT day, sum(num_tickets) FROM $LIVE_DAILY d WHERE day >= (now() - interval '90 days')::date GROUP BY day ORDER BY day"

# The other panels of the dashboard, per store, per connector and fleet-wide.
time_query "one store, 90 days by week (sales_weekly_trend)" \
	"SELECT iso_week, store_name, num_tickets, prev_week_tickets, change_pct, hours_reported, complete FROM ksi_sales.sales_weekly_trend WHERE week_start BETWEEN now() - interval '90 days' AND now() AND store_id IN ($STORE) ORDER BY week DESC, store_name"
time_query "one connector, lookback evidence (settle_lateness)" \
	"SELECT * FROM ksi_sales.settle_lateness WHERE connector_id IN ($CONN)"
time_query "all connectors, health (connector_health)" \
	"SELECT name AS connector, state, stores, consecutive_failures, last_outcome, last_error, last_success, last_attempt, next_poll, synced_until, rows_last_24h, polled_by FROM ksi_sales.connector_health ORDER BY state = 'failing' DESC, consecutive_failures DESC, name"
time_query "all stores, the latest of 90 days ranked (sales_daily)" \
	"SELECT d.day, d.store_name, d.num_tickets, d.hours_reported FROM ksi_sales.sales_daily d WHERE d.day = (SELECT max(f.day) FROM ksi_sales.sales_daily_fleet f WHERE f.day BETWEEN (now() - interval '90 days')::date AND now()::date) ORDER BY d.num_tickets DESC, d.store_name"

# What the rollup costs a write: the daemon's kind of upsert (a poll's
# re-read of 3 hours of 5 stores, counts changed; and a backfill-sized
# statement: 1,000 stores x 30 days, changed), with the triggers and
# without. Each in a transaction rolled back, so the table stays the same.
UPSERT_POLL="INSERT INTO ksi_sales.sales_hourly AS h (store_id, hour, num_tickets, ext_ref_code, connector_id, fetched_at)
  SELECT s.id, t, 41, s.ext_ref_code, s.connector_id, now() FROM ksi_sales.stores s,
  generate_series(date_trunc('hour', now()) - interval '3 hours', date_trunc('hour', now()) - interval '1 hour', interval '1 hour') t
  WHERE s.connector_id = $CONN ORDER BY s.id, t
  ON CONFLICT (store_id, hour) DO UPDATE SET num_tickets = EXCLUDED.num_tickets, fetched_at = EXCLUDED.fetched_at,
  revisions = h.revisions + (h.num_tickets <> EXCLUDED.num_tickets)::integer"
BIG=$((STORES < 1000 ? STORES : 1000))
UPSERT_BACKFILL="INSERT INTO ksi_sales.sales_hourly AS h (store_id, hour, num_tickets, ext_ref_code, connector_id, fetched_at)
  SELECT s.id, t, 41, s.ext_ref_code, s.connector_id, now() FROM ksi_sales.stores s,
  generate_series(date_trunc('hour', now()) - interval '30 days', date_trunc('hour', now()) - interval '1 hour', interval '1 hour') t
  WHERE s.id <= $BIG ORDER BY s.id, t
  ON CONFLICT (store_id, hour) DO UPDATE SET num_tickets = EXCLUDED.num_tickets, fetched_at = EXCLUDED.fetched_at,
  revisions = h.revisions + (h.num_tickets <> EXCLUDED.num_tickets)::integer"
time_write() {
	local name=$1 sql=$2 t
	t=$(for _ in 1 2 3 4; do printf 'BEGIN;\n\\timing on\n%s;\n\\timing off\nROLLBACK;\n' "$sql"; done |
		psql "$CONNINFO" -X -q -o /dev/null 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' |
		tail -n 3 | sort -g | sed -n 2p)
	RESULTS+=("$name|$t")
	printf '  %-60s %10s ms\n' "$name" "$t"
}
echo "writes (rolled back):"
time_write "a poll's upsert, 5 stores x 3 hours, with the rollup" "$UPSERT_POLL"
time_write "a backfill's upsert, $BIG stores x 30 days, with the rollup" "$UPSERT_BACKFILL"
psql_ -c "ALTER TABLE ksi_sales.sales_hourly DISABLE TRIGGER USER"
time_write "a poll's upsert, 5 stores x 3 hours, without" "$UPSERT_POLL"
time_write "a backfill's upsert, $BIG stores x 30 days, without" "$UPSERT_BACKFILL"
psql_ -c "ALTER TABLE ksi_sales.sales_hourly ENABLE TRIGGER USER"

# A lever measured and not taken: BRIN on hour. It serves a fleet-wide
# query on raw hours (no dashboard panel runs one: they read the rollup),
# and here at its best, since the load wrote the table hour-major; a
# backfill in production writes a connector's months at once and widens
# the block ranges. What it costs the writes is measured with it in place.
FLEET_HOURS="SELECT hour, sum(num_tickets) FROM ksi_sales.sales_hourly
  WHERE hour >= '$DAY'::timestamptz AND hour < '$DAY'::timestamptz + interval '1 day' GROUP BY 1 ORDER BY 1"
echo "a lever not taken, BRIN on hour:"
ONCE=1 time_query "all stores, one day by hour (sales_hourly, no BRIN)" "$FLEET_HOURS"
T0=$(now_ms)
psql_ -c "CREATE INDEX sales_hourly_hour_brin ON ksi_sales.sales_hourly USING brin (hour)"
BRIN_MS=$(($(now_ms) - T0))
RESULTS+=("CREATE INDEX ... USING brin (hour)|$BRIN_MS")
printf '  %-60s %10s ms (%s)\n' "CREATE INDEX ... USING brin (hour)" "$BRIN_MS" \
	"$(psql_ -c "SELECT pg_size_pretty(pg_relation_size('ksi_sales.sales_hourly_hour_brin'))")"
time_query "all stores, one day by hour (sales_hourly, BRIN)" "$FLEET_HOURS"
time_write "a poll's upsert, 5 stores x 3 hours, rollup and BRIN" "$UPSERT_POLL"
time_write "a backfill's upsert, $BIG stores x 30 days, rollup and BRIN" "$UPSERT_BACKFILL"
psql_ -c "DROP INDEX ksi_sales.sales_hourly_hour_brin"

if ! $REUSE; then
	echo "load: $((LOAD_MS / 1000)) s for $N rows; VACUUM ANALYZE $((VACUUM_MS / 1000)) s;" \
		"rollup fill (migration 0012) $FILL_MS ms"
fi
{
	echo "rows,name,ms"
	for r in "${RESULTS[@]}"; do echo "$N,\"${r%%|*}\",${r##*|}"; done
	if ! $REUSE; then
		echo "$N,\"load\",$LOAD_MS"
		echo "$N,\"rollup fill\",$FILL_MS"
	fi
} >"$OUT/sales_scale.csv"
echo "bench: wrote $OUT/sales_scale.csv"
