#!/usr/bin/env bash
# Integration tests of the data lifecycle (migrations 0009-0012 and the
# janitor's retention), against the real binary, a throwaway PostgreSQL and
# the fake customer API:
#   1. the in-place migration of a populated database while a daemon polls:
#      no row lost, every refused record still names its run, views work,
#      and the daemon's writes go on while the migration validates;
#   2. retention drops exactly the partitions entirely older than the
#      retention, never today's, and creates a week ahead;
#   3. two janitors at once: one works, the other skips (advisory lock);
#   4. a long reader of an expired partition: the janitor gives up and
#      retries next cycle, while inserts proceed.
#   retention.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"

pg_start || { echo "could not start PostgreSQL" >&2; exit 1; }
fake_start "$FAKE" --token "$TOKEN" || { cat "$WORK/fake.out" >&2; exit 1; }

JANITOR_LOCK_KEY=7233879461275471170 # src/db_maint.c
# The rows where the daily rollup (sales_daily) and the fleet's days
# (sales_daily_fleet) differ from the same sums made from sales_hourly.
ROLLUP_DIFF="SELECT count(*) FROM (
  (SELECT store_id, day, num_tickets, hours_reported FROM ksi_sales.sales_daily
   EXCEPT SELECT h.store_id, (h.hour AT TIME ZONE s.timezone)::date, sum(h.num_tickets), count(*)
   FROM ksi_sales.sales_hourly h JOIN ksi_sales.stores s ON s.id = h.store_id GROUP BY 1, 2)
  UNION ALL
  (SELECT h.store_id, (h.hour AT TIME ZONE s.timezone)::date, sum(h.num_tickets), count(*)
   FROM ksi_sales.sales_hourly h JOIN ksi_sales.stores s ON s.id = h.store_id GROUP BY 1, 2
   EXCEPT SELECT store_id, day, num_tickets, hours_reported FROM ksi_sales.sales_daily)) d"
FLEET_DIFF="WITH live AS (SELECT (h.hour AT TIME ZONE s.timezone)::date AS day, count(DISTINCT h.store_id) AS stores,
                             sum(h.num_tickets) AS tickets, count(*) AS hours
                      FROM ksi_sales.sales_hourly h JOIN ksi_sales.stores s ON s.id = h.store_id GROUP BY 1),
             fleet AS (SELECT day, stores_reported, num_tickets, hours_reported FROM ksi_sales.sales_daily_fleet)
  SELECT count(*) FROM ((SELECT * FROM fleet EXCEPT ALL SELECT * FROM live)
                        UNION ALL (SELECT * FROM live EXCEPT ALL SELECT * FROM fleet)) d"


# ---------------------------------------------------------------------------
echo "# 1. in place: a database at version 8, populated, with a daemon polling"
# What `migrate` does before the numbered files (src/db_conn.c), then 0001-0008:
# the schema a deployed database has today.
sql "CREATE SCHEMA ksi_sales;
     CREATE TABLE ksi_sales.schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                               applied_at timestamptz NOT NULL DEFAULT now())" >/dev/null
for f in "$ROOT"/src/migrations/000[1-8]_*.sql; do
	sql "SET client_min_messages = warning; $(cat "$f")" >/dev/null || echo "could not apply $f" >&2
	base=$(basename "$f" .sql)
	sql "INSERT INTO ksi_sales.schema_migrations VALUES (${base%%_*}, '$base')" >/dev/null
done
# 40 connectors of 3 stores whose API also sends refused records (bad), and
# 60 days of history: 100,000 runs, 20,000 refused records naming them.
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill, poll_interval)
     SELECT 'c' || i, '$FAKE_URL/bad/sales', :'token', '6 hours', '1 minute' FROM generate_series(1, 40) i;
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT c.name || '-' || k, c.id, 'S' || k FROM ksi_sales.connectors c, generate_series(1, 3) k;
     INSERT INTO ksi_sales.fetch_runs (connector_id, window_from, window_to, started_at, finished_at, outcome, error)
     SELECT 1 + i % 40, t, t + interval '1 hour', t, t + interval '1 second',
            CASE WHEN i % 10 = 0 THEN 'http_error' ELSE 'ok' END, CASE WHEN i % 10 = 0 THEN 'HTTP 500' END
     FROM generate_series(1, 100000) i, LATERAL (SELECT now() - interval '60 days' + i * interval '51 seconds' AS t) x;
     INSERT INTO ksi_sales.rejected_records (run_id, connector_id, position, reason, detail, record, created_at)
     SELECT r.id, r.connector_id, 0, 'time_not_on_hour', 'old', '{}', r.finished_at
     FROM ksi_sales.fetch_runs r WHERE r.id % 5 = 0;
     VACUUM ANALYZE ksi_sales.fetch_runs; VACUUM ANALYZE ksi_sales.rejected_records" -v token="$TOKEN" >/dev/null
BEFORE_RUNS=$(sql "SELECT count(*) || ' ' || max(id) || ' ' || sum(id) FROM ksi_sales.fetch_runs")
BEFORE_REJ=$(sql "SELECT count(*) || ' ' || max(id) || ' ' || sum(run_id) FROM ksi_sales.rejected_records")
read -r _ MAX_RUN _ <<<"$BEFORE_RUNS"
read -r _ MAX_REJ _ <<<"$BEFORE_REJ"

# The daemon under test is this binary: its write statement is the one of
# schema 8 (src/db_write.c does not change with 0009-0012), so it stands in
# for the daemon a deployment runs before upgrading. Its start-up check wants
# the latest version: schema_migrations says so while it starts, no longer after.
LATEST=$(find "$ROOT/src/migrations" -name '[0-9][0-9][0-9][0-9]_*.sql' | wc -l)
sql "INSERT INTO ksi_sales.schema_migrations SELECT v, 'pretend' FROM generate_series(9, $LATEST) v" >/dev/null
daemon_conf "$WORK/d.conf" 5s 1s
printf '[retention]\njanitor_interval = 1d\n' >>"$WORK/d.conf"
start_daemon old "$WORK/d.conf"
sql "DELETE FROM ksi_sales.schema_migrations WHERE name = 'pretend'" >/dev/null
polled_since() { [ "$(sql "SELECT count(*) FROM ksi_sales.fetch_runs WHERE id > $1")" -ge "$2" ]; }
wait_for "the daemon's first polls" 60 polled_since "$MAX_RUN" 40

# While migrate runs: every connector due at once (the daemon polls them
# all), and a writer that inserts into fetch_runs as fast as it can, each
# insert allowed 1 s (statement_timeout): a long lock would fail it.
PGBENCH=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)/pgbench
cat >"$WORK/writer.sql" <<'SQL'
INSERT INTO ksi_sales.fetch_runs (connector_id, started_at, finished_at, outcome) VALUES (1, now(), now(), 'ok');
SQL
MID=$(sql "SELECT max(id) FROM ksi_sales.fetch_runs")
sql "UPDATE ksi_sales.connectors SET lookback = lookback + interval '1 second'" >/dev/null
(cd "$WORK" && PGOPTIONS="-c statement_timeout=1000" "$PGBENCH" -n -f writer.sql -T 12 --log \
	--log-prefix=writer "$CONNINFO" >"$WORK/writer.out" 2>&1) &
WRITER_PID=$!
writer_runs() { [ "$(sql "SELECT count(*) FROM ksi_sales.fetch_runs WHERE id > $MID AND window_from IS NULL")" -gt 100 ]; }
wait_for "the writer to start" 10 writer_runs
START_MS=$(date +%s%3N)
ksi migrate 2>"$WORK/migrate.log"
check "migrate from 8 to the latest under a polling daemon and a writer exits 0" 0 $?
MIGRATE_MS=$(($(date +%s%3N) - START_MS))
check "the writer was inserting throughout the migration" "t" "$(kill -0 "$WRITER_PID" && echo t)"
wait "$WRITER_PID"
check_contains "the writer's inserts all succeeded" "number of failed transactions: 0" "$(cat "$WORK/writer.out")"
check_absent "no writer was aborted by a 1 s wait" "aborted" "$(cat "$WORK/writer.out")"
MAX_US=$(cat "$WORK"/writer.[0-9]* | awk '$3 > m { m = $3 } END { print m + 0 }')
N_TX=$(cat "$WORK"/writer.[0-9]* | wc -l)
ok "migrate took $MIGRATE_MS ms; the writer's $N_TX inserts meanwhile waited at most $((MAX_US / 1000)) ms"
check "the slowest insert during the migration took under 1 s" "t" "$([ "$MAX_US" -lt 1000000 ] && echo t)"
check "0009, 0010 and 0011 each committed in a transaction of its own" "3" \
	"$(sql "SELECT count(DISTINCT applied_at) FROM ksi_sales.schema_migrations WHERE version IN (9, 10, 11)")"
check_contains "each step is logged applied" "applied migration 0011_audit_partitions" "$(cat "$WORK/migrate.log")"
wait_for "the daemon's polls made due before the migration" 60 polled_since "$MID" 40

check "fetch_runs is partitioned by started_at" "p" \
	"$(sql "SELECT relkind FROM pg_class WHERE oid = 'ksi_sales.fetch_runs'::regclass")"
check "rejected_records is partitioned by created_at" "p" \
	"$(sql "SELECT relkind FROM pg_class WHERE oid = 'ksi_sales.rejected_records'::regclass")"
check "the old fetch_runs is its first partition, up to its bound" "1" \
	"$(sql "SELECT count(*) FROM ksi_sales.audit_partitions() WHERE partition = 'fetch_runs_legacy' AND range_from = '-infinity'")"
check "no row of fetch_runs from before the migration lost or changed" "$BEFORE_RUNS" \
	"$(sql "SELECT count(*) || ' ' || max(id) || ' ' || sum(id) FROM ksi_sales.fetch_runs WHERE id <= $MAX_RUN")"
check "no row of rejected_records from before lost or changed" "$BEFORE_REJ" \
	"$(sql "SELECT count(*) || ' ' || max(id) || ' ' || sum(run_id) FROM ksi_sales.rejected_records WHERE id <= $MAX_REJ")"
check "every refused record still names a run that exists" "0" \
	"$(sql "SELECT count(*) FROM ksi_sales.rejected_records j WHERE NOT EXISTS
	        (SELECT 1 FROM ksi_sales.fetch_runs r WHERE r.id = j.run_id)")"
check "ids are unique across partitions" "0" \
	"$(sql "SELECT count(*) - count(DISTINCT id) FROM ksi_sales.fetch_runs")"
check "the daemon's refused records arrived too (its API sends bad ones)" "t" \
	"$(sql "SELECT count(*) > 0 FROM ksi_sales.rejected_records WHERE id > $MAX_REJ")"
AFTER=$(sql "SELECT max(id) FROM ksi_sales.fetch_runs")
sql "UPDATE ksi_sales.connectors SET lookback = lookback + interval '1 second'" >/dev/null
wait_for "the daemon's writes after the migration" 60 polled_since "$AFTER" 40
check "the identity carries on after the swap" "t" \
	"$(sql "SELECT min(id) > $AFTER FROM ksi_sales.fetch_runs WHERE id > $AFTER")"
check "connector_health: every connector ok" "40 ok" \
	"$(sql "SELECT count(*) || ' ' || string_agg(DISTINCT state, ',') FROM ksi_sales.connector_health")"
check "sales_daily (from the rollup) equals sales_hourly summed per store and local day" "0" \
	"$(sql "$ROLLUP_DIFF")"
check "sales_daily_fleet equals sales_hourly summed per local day" "0" "$(sql "$FLEET_DIFF")"
check "coverage reads the new table" "t" \
	"$(sql "SELECT count(*) > 0 FROM ksi_sales.coverage WHERE connector = 'c1' AND status = 'reported'")"
STATUS=$(ksi status -c "$WORK/d.conf" 2>&1)
check_contains "status works on the partitioned tables" "c40" "$STATUS"
check "the daemon's role may still write both tables" "true true" \
	"$(sql "SELECT has_table_privilege('ksi_salesd_daemon', 'ksi_sales.fetch_runs', 'INSERT') || ' ' ||
	        has_table_privilege('ksi_salesd_daemon', 'ksi_sales.rejected_records', 'INSERT')")"
check "the dashboard role may not call the janitor's functions" "false false" \
	"$(sql "SELECT has_function_privilege('ksi_salesd_dashboard', 'ksi_sales.retention_drop(text, interval, interval, integer)', 'EXECUTE') || ' ' ||
	        has_function_privilege('ksi_salesd_dashboard', 'ksi_sales.retention_create(text, timestamptz)', 'EXECUTE')")"
check_absent "no write of the daemon failed during the migration" "writing window" "$(cat "$WORK/old.log")"
check_absent "no write of the daemon was refused as a lost lease" "lease lost" "$(cat "$WORK/old.log")"
kill -TERM "$PID_old"
wait "$PID_old"
check "the daemon stops cleanly" 0 $?

# ---------------------------------------------------------------------------
echo "# 2. retention: exactly the expired partitions, never today's"
sql "CREATE DATABASE fresh" >/dev/null
FRESH=${CONNINFO/dbname=postgres/dbname=fresh}
fsql() { psql "$FRESH" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
ksi migrate -d "$FRESH" 2>>"$WORK/migrate.log"
check "a new installation: one partition for all before today, then days" "fetch_runs_before -infinity|fetch_runs_p$(date -u +%Y%m%d)" \
	"$(fsql -c "SELECT string_agg(partition || CASE WHEN range_from = '-infinity' THEN ' -infinity' ELSE '' END, '|' ORDER BY range_from)
	            FROM (SELECT * FROM ksi_sales.audit_partitions() WHERE parent = 'fetch_runs' ORDER BY range_from LIMIT 2) p")"
# As if installed 41 days ago: daily (monthly) partitions instead.
fsql -c "DROP TABLE ksi_sales.fetch_runs_before; DROP TABLE ksi_sales.rejected_records_before"
fsql -c "INSERT INTO ksi_sales.connectors (name, endpoint_url) VALUES ('r', '$FAKE_URL/sales')" >/dev/null
fsql -c "$AGED_PARTITIONS" >/dev/null
# A partition of the week ahead is missing (as if the janitor had not run).
fsql -c "DROP TABLE ksi_sales.fetch_runs_p$(date -u -d '+3 days' +%Y%m%d)"
# What must remain, computed apart from retention_plan: days whose end is
# after the UTC midnight 30 days ago; months whose end is after the UTC
# midnight 90 days ago.
WANT_DAYS=$(fsql -c "SELECT count(*) FROM generate_series(date_trunc('day', now()) - interval '40 days', date_trunc('day', now()) - interval '1 day', interval '1 day') d
                     WHERE d + interval '1 day' > date_trunc('day', now() - interval '30 days')")
WANT_MONTHS=$(fsql -c "SELECT count(*) FROM generate_series(date_trunc('month', now()) - interval '6 months', date_trunc('month', now()) - interval '1 month', interval '1 month') d
                       WHERE d + interval '1 month' > date_trunc('day', now() - interval '90 days')")
check_contains "the dry run lists the partitions to drop and the one to create" \
	"create|fetch_runs|fetch_runs_p$(date -u -d '+3 days' +%Y%m%d)" \
	"$(fsql -c "SELECT action, parent, partition FROM ksi_sales.retention_plan('30 days', '90 days')")"

cat >"$WORK/j.conf" <<CONF
[retention]
fetch_runs = 30d
rejected_records = 90d
janitor_interval = 1s
[log]
level = debug
CONF
start_daemon janitor "$WORK/j.conf" "$FRESH"
plan_empty() { [ "$(fsql -c "SELECT count(*) FROM ksi_sales.retention_plan('30 days', '90 days')")" = 0 ]; }
wait_for "the janitor's first cycle" 30 plan_empty
check "fetch_runs: the past days kept are exactly those not entirely older than 30 days" "$WANT_DAYS" \
	"$(fsql -c "SELECT count(*) FROM ksi_sales.audit_partitions() WHERE parent = 'fetch_runs' AND range_to <= date_trunc('day', now())")"
check "fetch_runs: today's partition and its row are kept" "1" \
	"$(fsql -c "SELECT count(*) FROM ksi_sales.fetch_runs WHERE started_at >= date_trunc('day', now())")"
check "fetch_runs: every row of the last 30 days is kept, none older than its day's cut" "$((WANT_DAYS + 1)) true" \
	"$(fsql -c "SELECT count(*) || ' ' || bool_and(started_at >= date_trunc('day', now() - interval '30 days')) FROM ksi_sales.fetch_runs")"
check "rejected_records: the months kept are those not entirely older than 90 days" "$WANT_MONTHS" \
	"$(fsql -c "SELECT count(*) FROM ksi_sales.audit_partitions() WHERE parent = 'rejected_records' AND range_to <= date_trunc('month', now())")"
check "partitions exist a week ahead, the missing one created" "8 8" \
	"$(fsql -c "SELECT count(*) || ' ' || count(DISTINCT range_from) FROM ksi_sales.audit_partitions()
	            WHERE parent = 'fetch_runs' AND range_from >= date_trunc('day', now()) AND range_from <= now() + interval '7 days'")"
JLOG=$(cat "$WORK/janitor.log")
check_contains "each drop is logged with its time" "dropped expired partition fetch_runs_p" "$JLOG"
check_contains "each creation is logged" "created partition fetch_runs_p$(date -u -d '+3 days' +%Y%m%d)" "$JLOG"
check "retention_status: the oldest day kept and the next boundary" "true true" \
	"$(fsql -c "SELECT (oldest_from = date_trunc('day', now() - interval '30 days')) || ' ' || (next_boundary = date_trunc('day', now()) + interval '1 day')
	            FROM ksi_sales.retention_status WHERE table_name = 'fetch_runs'")"
NOT_EXPIRED=$(fsql -c "SELECT ksi_sales.retention_drop('fetch_runs_p$(date -u +%Y%m%d)', '30 days')" 2>&1)
check_contains "retention_drop refuses today's partition whatever it is asked" "is not older than the retention" "$NOT_EXPIRED"

# ---------------------------------------------------------------------------
echo "# 3. two janitors at once: the advisory lock"
hold_start janlock "$FRESH" "SELECT pg_advisory_lock($JANITOR_LOCK_KEY);"
lock_held() { [ "$(sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = ($JANITOR_LOCK_KEY::bigint & 4294967295)::oid AND granted")" -ge 1 ]; }
wait_for "the lock held by another janitor" 10 lock_held
GONE=fetch_runs_p$(date -u -d '+5 days' +%Y%m%d)
fsql -c "DROP TABLE ksi_sales.$GONE"
LINES=$(wc -l <"$WORK/janitor.log")
skipped() { tail -n +"$LINES" "$WORK/janitor.log" | grep -q "another daemon's janitor is at work"; }
wait_for "the janitor to skip its cycle" 20 skipped
check "while another janitor holds the lock, nothing is created" "" \
	"$(fsql -c "SELECT to_regclass('ksi_sales.$GONE')")"
hold_end janlock
start_daemon janitor2 "$WORK/j.conf" "$FRESH"
recreated() { [ -n "$(fsql -c "SELECT to_regclass('ksi_sales.$GONE')")" ]; }
wait_for "a janitor to create it once the lock is free" 20 recreated
# Two janitors, a cycle a second each, for three more cycles of both.
C1=$(grep -c "retention: " "$WORK/janitor.log"); C2=$(grep -c "retention: " "$WORK/janitor2.log")
cycles_done() { [ "$(grep -c "retention: " "$WORK/janitor.log")" -ge $((C1 + 3)) ] &&
	[ "$(grep -c "retention: \|another daemon's janitor" "$WORK/janitor2.log")" -ge $((C2 + 3)) ]; }
wait_for "three more cycles of both janitors" 30 cycles_done
check "the partition was created exactly once between the two" "1" \
	"$(cat "$WORK/janitor.log" "$WORK/janitor2.log" | grep -c "created partition $GONE")"
check_absent "no janitor failed" "retention failed" "$(cat "$WORK/janitor.log" "$WORK/janitor2.log")"
kill -TERM "$PID_janitor2"
wait "$PID_janitor2"

# ---------------------------------------------------------------------------
echo "# 4. a long reader of an expired partition: the janitor gives up, writers go on"
OLD_DAY=$(date -u -d '-35 days' +%Y-%m-%d)
OLD=fetch_runs_p$(date -u -d '-35 days' +%Y%m%d)
fsql -c "SELECT ksi_sales.retention_create('fetch_runs', '$OLD_DAY 00:00Z');
         INSERT INTO ksi_sales.fetch_runs (connector_id, started_at, finished_at, outcome)
         VALUES (1, '$OLD_DAY 12:00Z', '$OLD_DAY 12:00Z', 'ok')" >/dev/null
hold_start reader "$FRESH" "SELECT count(*) FROM ksi_sales.$OLD;"
reader_holds() { [ "$(fsql -c "SELECT count(*) FROM pg_locks WHERE relation = 'ksi_sales.$OLD'::regclass AND granted AND mode = 'AccessShareLock'")" -ge 1 ]; }
wait_for "the reader's lock on $OLD" 10 reader_holds
LINES=$(wc -l <"$WORK/janitor.log")
gave_up() { tail -n +"$LINES" "$WORK/janitor.log" | grep -q "drop of partition $OLD given up"; }
# Writers meanwhile: each insert must finish well within a second.
WRITES_OK=0
for i in 1 2 3 4 5 6 7 8 9 10; do
	fsql -c "SET statement_timeout = '1s'; INSERT INTO ksi_sales.fetch_runs (connector_id, started_at, finished_at, outcome) VALUES (1, now(), now(), 'ok')" >/dev/null &&
		WRITES_OK=$((WRITES_OK + 1))
	gave_up && [ "$i" -ge 3 ] && break
done
wait_for "the janitor to give up on $OLD" 30 gave_up
check "inserts went on while the janitor tried (none waited 1 s)" "$i" "$WRITES_OK"
check "the expired partition is still there while read" "ksi_sales.$OLD" "$(fsql -c "SELECT to_regclass('ksi_sales.$OLD')")"
check_contains "the give-up is a warning naming the next cycle" "its table is in use (writers go first); next cycle" \
	"$(tail -n +"$LINES" "$WORK/janitor.log")"
hold_end reader
dropped_old() { [ -z "$(fsql -c "SELECT to_regclass('ksi_sales.$OLD')")" ]; }
wait_for "the next cycle to drop $OLD" 30 dropped_old
ok "the next cycle dropped $OLD once the reader was done"
# The daemon's other janitor task: the fleet rollup's deltas folded.
LINES=$(wc -l <"$WORK/janitor.log")
fsql -c "INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code) VALUES ('fold', 1, 'FOLD');
         INSERT INTO ksi_sales.sales_hourly (store_id, hour, num_tickets, ext_ref_code, connector_id)
         SELECT id, timestamptz '2026-02-01 00:00Z' + k * interval '1 hour', 3, 'FOLD', 1
         FROM ksi_sales.stores, generate_series(0, 47) k WHERE name = 'fold'" >/dev/null
folded() { [ "$(fsql -c "SELECT count(*) FROM ksi_sales.sales_fleet_delta")" = 0 ] &&
	tail -n +"$LINES" "$WORK/janitor.log" | grep -q "fleet rollup: [1-9][0-9]* deltas folded"; }
wait_for "the daemon's janitor to fold the fleet deltas" 30 folded
check "... into the days: sales_daily_fleet reads them from sales_fleet_daily" "2026-02-01 1 72 24|2026-02-02 1 72 24" \
	"$(fsql -c "SELECT string_agg(day || ' ' || stores_reported || ' ' || num_tickets || ' ' || hours_reported, '|' ORDER BY day)
	            FROM ksi_sales.sales_fleet_daily WHERE day IN ('2026-02-01', '2026-02-02')")"
fsql -c "DELETE FROM ksi_sales.sales_hourly WHERE ext_ref_code = 'FOLD'; DELETE FROM ksi_sales.stores WHERE name = 'fold';
         SELECT ksi_sales.sales_fleet_compact()" >/dev/null
kill -TERM "$PID_janitor"
wait "$PID_janitor"
check "the janitor's daemon stops cleanly" 0 $?

# ---------------------------------------------------------------------------
echo "# 5. the daily rollup behind sales_daily, and the fleet's days, follow every kind of write"
fleet_diff() { fsql -c "$FLEET_DIFF"; }
fold() { fsql -c "SELECT ksi_sales.sales_fleet_compact()"; }
rollup_diff() { fsql -c "$ROLLUP_DIFF"; }
fsql -c "INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code, timezone)
         SELECT 'z' || k, 1, 'Z' || k, CASE k WHEN 1 THEN 'UTC' WHEN 2 THEN 'Asia/Kolkata' ELSE 'America/Santiago' END
         FROM generate_series(1, 3) k;
         INSERT INTO ksi_sales.sales_hourly (store_id, hour, num_tickets, ext_ref_code, connector_id)
         SELECT s.id, h, (extract(hour FROM h)::int * 7 + s.id::int) % 13, s.ext_ref_code, 1
         FROM ksi_sales.stores s, generate_series(timestamptz '2026-03-01 00:00Z', '2026-03-04 23:00Z', '1 hour') h" >/dev/null
check "after inserts (three zones)" "0" "$(rollup_diff)"
check "... and the fleet's days, from the deltas alone" "0 0" "$(fsql -c "SELECT count(*) FROM ksi_sales.sales_fleet_daily") $(fleet_diff)"
check "one rollup row per store and local day (4 UTC days are 5 local days in +05:30 and -03:00)" "14" "$(fsql -c "SELECT count(*) FROM ksi_sales.sales_daily")"
# The daemon's upsert: some hours again with new counts, some unchanged, some new.
fsql -c "INSERT INTO ksi_sales.sales_hourly AS h (store_id, hour, num_tickets, ext_ref_code, connector_id)
         SELECT s.id, t, CASE WHEN extract(hour FROM t)::int % 2 = 0 THEN 100 ELSE 5 END, s.ext_ref_code, 1
         FROM ksi_sales.stores s, generate_series(timestamptz '2026-03-04 12:00Z', '2026-03-05 06:00Z', '1 hour') t
         ON CONFLICT (store_id, hour) DO UPDATE SET num_tickets = EXCLUDED.num_tickets" >/dev/null
check "after an upsert that changes, keeps and adds hours" "0" "$(rollup_diff)"
check "... and the fleet's days" "0" "$(fleet_diff)"
N_DELTAS=$(fsql -c "SELECT count(*) FROM ksi_sales.sales_fleet_delta")
check "a fold moves every delta into the days, and they still agree" "$N_DELTAS 0 0" "$(fold) $(fsql -c "SELECT count(*) FROM ksi_sales.sales_fleet_delta") $(fleet_diff)"
fsql -c "DELETE FROM ksi_sales.sales_hourly WHERE hour >= '2026-03-03 00:00Z' AND hour < '2026-03-03 10:00Z';
         DELETE FROM ksi_sales.sales_hourly WHERE hour >= '2026-03-05 00:00Z'" >/dev/null
check "after deletes (a day left empty is removed)" "0" "$(rollup_diff)"
check "... and the fleet's days, folded and deltas together" "0" "$(fleet_diff)"
check "a day no store reports any more is gone from the folded days" "0 0" "$(fold >/dev/null; fsql -c "SELECT count(*) FROM ksi_sales.sales_fleet_daily WHERE stores_reported <= 0") $(fleet_diff)"
fsql -c "UPDATE ksi_sales.stores SET timezone = 'Pacific/Auckland' WHERE name = 'z1'" >/dev/null
check "after a store's zone changed" "0" "$(rollup_diff)"
check "... and the fleet's days" "0" "$(fleet_diff)"
# Two folds at once: the second waits for the first's DELETE and finds the
# deltas gone, so none is folded twice.
hold_start fold1 "$FRESH" "SELECT ksi_sales.sales_fleet_compact();"
fold >"$WORK/fold2.out" 2>&1 &
FOLD2=$!
fold2_waits() { [ "$(fsql -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%sales_fleet_compact%' AND wait_event_type = 'Lock'")" -ge 1 ]; }
wait_for "the second fold to wait for the first" 10 fold2_waits
hold_end fold1
wait "$FOLD2"
check "two folds at once: the second folds nothing, the days are still exact" "0 0" "$(cat "$WORK/fold2.out") $(fleet_diff)"
# Change-data capture publishes every table: the fold's DELETE must still
# work (the deltas have a replica identity, 0015).
fsql -c "CREATE PUBLICATION cdc FOR ALL TABLES" 2>/dev/null
fsql -c "UPDATE ksi_sales.sales_hourly SET num_tickets = num_tickets + 1 WHERE hour = '2026-03-01 05:00Z'" >/dev/null
check "with every table published, a fold still folds, and the days are exact" "t 0" \
	"$(fsql -c "SELECT ksi_sales.sales_fleet_compact() > 0" 2>&1) $(fleet_diff)"
fsql -c "DROP PUBLICATION cdc" >/dev/null
fsql -c "TRUNCATE ksi_sales.sales_hourly" >/dev/null
check "after TRUNCATE" "0 0" "$(fsql -c "SELECT count(*) || ' ' || $(rollup_diff | tr -d ' ') FROM ksi_sales.sales_daily")"
check "... and the fleet's days and deltas are empty too" "0 0" \
	"$(fsql -c "SELECT (SELECT count(*) FROM ksi_sales.sales_fleet_daily) || ' ' || (SELECT count(*) FROM ksi_sales.sales_fleet_delta)")"

echo "# retention: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
