#!/usr/bin/env bash
# Integration tests of migration 0003: the dashboard views, the request
# tables, the least-privilege roles and the Grafana dashboard's SQL, against
# the real binary, a throwaway PostgreSQL and the fake customer API.
#   views.sh BINARY FAKEAPI
# Needs only bash, sed, awk and psql (jq, when installed, cross-checks the
# dashboard parsing). Checks that need the daemon's upsert to maintain
# sales_hourly.revisions are skipped, and say so, until src/db_write.c does.
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"

DASHBOARD=$ROOT/etc/grafana/ksi-sales.json



pg_start || { echo "could not start PostgreSQL" >&2; exit 1; }
fake_start "$FAKE" --token "$TOKEN" || { cat "$WORK/fake.out" >&2; exit 1; }
cat >"$WORK/test.conf" <<CONF
[daemon]
max_per_host = 64
[http]
connect_timeout = 2s
[log]
level = debug
CONF

# sql_err QUERY [psql options]: the error psql prints (empty when none).
# shellcheck disable=SC2069 # stderr to the caller, stdout dropped: on purpose
sql_err() { sql "$@" 2>&1 >/dev/null; }
url_for() { local u=${CONNINFO/dbname=postgres/dbname=$1}; echo "${u/user=postgres/user=$2}"; }

echo "# migrate as a database owner without CREATEROLE (before the roles exist)"
sql "CREATE ROLE ksi_owner LOGIN; CREATE DATABASE owned OWNER ksi_owner" >/dev/null
OWNED=$(url_for owned ksi_owner)
ksi migrate -d "$OWNED" 2>"$WORK/owned.log"
check "migrate without CREATEROLE still succeeds" 0 $?
check_contains "it warns that the roles were not created" "not created: ksi_owner lacks CREATEROLE" "$(cat "$WORK/owned.log")"
check_contains "it says what an administrator runs" "CREATE ROLE ksi_salesd_daemon NOLOGIN; CREATE ROLE ksi_salesd_dashboard NOLOGIN;" "$(cat "$WORK/owned.log")"
check "no role was created" "0" "$(sql "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'ksi_salesd_%'")"

echo "# upgrade: rows written under 0002 get first_seen = last_changed = fetched_at"
# What `migrate` does before the numbered files (src/db_conn.c), then 0001-0002.
sql "CREATE SCHEMA ksi_sales;
     CREATE TABLE ksi_sales.schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                               applied_at timestamptz NOT NULL DEFAULT now())" >/dev/null
for f in "$ROOT"/src/migrations/0001_*.sql "$ROOT"/src/migrations/0002_*.sql; do
	sql "$(cat "$f")" >/dev/null || echo "could not apply $f" >&2
	base=$(basename "$f" .sql)
	sql "INSERT INTO ksi_sales.schema_migrations VALUES (${base%%_*}, '$base')" >/dev/null
done
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, enabled) VALUES ('legacy', '$FAKE_URL/sales', false);
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code) SELECT 'Legacy', id, 'L1' FROM ksi_sales.connectors;
     INSERT INTO ksi_sales.stores (name) VALUES ('Unlinked');
     INSERT INTO ksi_sales.sales_hourly (store_id, hour, num_tickets, ext_ref_code, connector_id, fetched_at)
     SELECT s.id, h, 5, 'L1', s.connector_id, h + interval '2 hours'
     FROM ksi_sales.stores s, generate_series(timestamptz '2024-03-01 00:00Z', '2024-03-01 05:00Z', '1 hour') h
     WHERE s.name = 'Legacy'" >/dev/null
ksi migrate 2>"$WORK/migrate.log"
check "migrate from 0002 to 0003 exits 0" 0 $?
check "the roles were created, NOLOGIN" "ksi_salesd_daemon false|ksi_salesd_dashboard false" \
	"$(sql "SELECT string_agg(rolname || ' ' || rolcanlogin, '|' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'ksi_salesd_%'")"
check "existing rows: first_seen = last_changed = fetched_at, revisions 0" "6 true" \
	"$(sql "SELECT count(*) || ' ' || bool_and(first_seen = fetched_at AND last_changed = fetched_at AND revisions = 0)
	        FROM ksi_sales.sales_hourly")"
check "existing links: linked_at an hour before the first value received; none when unlinked" \
	"Legacy 2024-03-01 01:00:00+00|Unlinked " \
	"$(sql "SELECT string_agg(name || ' ' || coalesce(linked_at::text, ''), '|' ORDER BY name) FROM ksi_sales.stores")"
ksi migrate 2>"$WORK/migrate2.log"
check_contains "a second migrate is up to date" "up to date" "$(cat "$WORK/migrate2.log")"
sql "DELETE FROM ksi_sales.sales_hourly; DELETE FROM ksi_sales.stores; DELETE FROM ksi_sales.connectors" >/dev/null

echo "# an administrator creates the roles later: grant_role_privileges() as the owner"
psql "$OWNED" -X -q -v ON_ERROR_STOP=1 -c "SELECT ksi_sales.grant_role_privileges()" >/dev/null
check "the owner applies the grants once the roles exist" 0 $?
check "the owned database now grants the dashboard role its reads, not bearer_token" "true false false" \
	"$(psql "$OWNED" -X -A -t -c "SELECT has_table_privilege('ksi_salesd_dashboard', 'ksi_sales.sales_daily', 'SELECT') || ' ' ||
	   has_column_privilege('ksi_salesd_dashboard', 'ksi_sales.connectors', 'bearer_token', 'SELECT') || ' ' ||
	   has_table_privilege('ksi_salesd_daemon', 'ksi_sales.sales_hourly', 'DELETE')")"

echo "# connectors and stores: UTC, Asia/Kolkata, a failing start, an empty API"
sql "CREATE ROLE ksi_daemon_login LOGIN IN ROLE ksi_salesd_daemon;
     CREATE ROLE grafana_login LOGIN IN ROLE ksi_salesd_dashboard" >/dev/null
DAEMON_URL=$(url_for postgres ksi_daemon_login)
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill, timezone, max_window) VALUES
       ('utc', '$FAKE_URL/sales', '$TOKEN', '15 days', 'UTC', '24 hours'),
       ('kolkata', '$FAKE_URL/sales', '$TOKEN', '3 days', 'Asia/Kolkata', '24 hours'),
       ('gappy', '$FAKE_URL/status/500/sales', '$TOKEN', '30 hours', 'UTC', '6 hours'),
       ('quiet', '$FAKE_URL/empty/sales', '$TOKEN', '6 hours', 'UTC', '24 hours');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code, timezone)
     SELECT v.name, c.id, v.code, v.tz
     FROM (VALUES ('U1', 'utc', 'U1', 'UTC'), ('U2', 'utc', 'U2', 'UTC'),
                  ('K1', 'kolkata', 'K1', 'Asia/Kolkata'), ('K2', 'kolkata', 'K2', 'UTC'),
                  ('G1', 'gappy', 'G1', 'UTC'), ('Q1', 'quiet', 'Q1', 'UTC')) AS v(name, conn, code, tz)
     JOIN ksi_sales.connectors c ON c.name = v.conn" >/dev/null
once -d "$DAEMON_URL"
check "first once, as a login of ksi_salesd_daemon, fails only because gappy fails" "1 gappy" \
	"$RC $(sql "SELECT string_agg(DISTINCT c.name, ',') FROM ksi_sales.fetch_runs r JOIN ksi_sales.connectors c ON c.id = r.connector_id WHERE r.outcome <> 'ok'")"
check_absent "the daemon role had every privilege it needed" "permission denied" "$(cat "$LOG")"

# Second poll: gappy is fixed with a shorter backfill (its first 10 hours stay
# unfetched), U3 is linked to utc after utc's first poll, utc answers [].
sql "UPDATE ksi_sales.connectors SET endpoint_url = '$FAKE_URL/sales', initial_backfill = '20 hours' WHERE name = 'gappy';
     UPDATE ksi_sales.connectors SET endpoint_url = '$FAKE_URL/empty/sales' WHERE name = 'utc';
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code) SELECT 'U3', id, 'U3' FROM ksi_sales.connectors WHERE name = 'utc'" >/dev/null
sql "CREATE TABLE public.snap1 AS SELECT * FROM ksi_sales.sales_hourly" >/dev/null
once -d "$DAEMON_URL"
check "second once, as the daemon role, exits 0" 0 "$RC"
check_absent "no permission error in its log" "permission denied" "$(cat "$LOG")"
ksi status -d "$DAEMON_URL" >"$WORK/status.out" 2>&1
check "status works as the daemon role" 0 $?

conn() { echo "(SELECT id FROM ksi_sales.connectors WHERE name = '$1')"; }
store() { echo "(SELECT id FROM ksi_sales.stores WHERE name = '$1')"; }

echo "# sales_hourly_local"
check "one row per sales_hourly row, with store and connector names" "t" \
	"$(sql "SELECT (SELECT count(*) FROM ksi_sales.sales_hourly_local WHERE store_name IS NOT NULL AND connector IS NOT NULL)
	             = (SELECT count(*) FROM ksi_sales.sales_hourly)")"
check "Kolkata store: local_hour = hour + 05:30, on the local hour" "t" \
	"$(sql "SELECT count(*) > 60 AND bool_and(local_hour = (hour AT TIME ZONE 'UTC') + interval '5 hours 30 minutes'
	                                     AND extract(minute FROM local_hour) = 0)
	        FROM ksi_sales.sales_hourly_local WHERE store_name = 'K1'")"
check "local_day, weekday (ISO) and hour_of_day follow local_hour" "t" \
	"$(sql "SELECT bool_and(local_day = local_hour::date AND weekday = extract(isodow FROM local_hour)
	                        AND hour_of_day = extract(hour FROM local_hour) AND hour_of_day BETWEEN 0 AND 23)
	        FROM ksi_sales.sales_hourly_local")"
check "a UTC store of the Kolkata connector: its own zone, hours at :30" "t" \
	"$(sql "SELECT count(*) > 0 AND bool_and(local_hour = hour AT TIME ZONE 'UTC' AND extract(minute FROM local_hour) = 30)
	        FROM ksi_sales.sales_hourly_local WHERE store_name = 'K2'")"
check "a known hour: 2 of the fake's values, verbatim" "t" \
	"$(sql "SELECT bool_and(l.num_tickets = h.num_tickets AND l.ext_ref_code = h.ext_ref_code AND l.connector = 'kolkata')
	        FROM ksi_sales.sales_hourly_local l JOIN ksi_sales.sales_hourly h USING (store_id, hour)
	        WHERE l.store_name IN ('K1', 'K2')")"

echo "# coverage"
# An independent oracle: the same status computed hour by hour with EXISTS.
check "every row's status matches an hour-by-hour EXISTS over fetch_runs" "t" \
	"$(sql "SELECT count(*) > 0 AND bool_and(v.status = CASE
	          WHEN EXISTS (SELECT 1 FROM ksi_sales.sales_hourly h WHERE h.store_id = v.store_id AND h.hour = v.hour) THEN 'reported'
	          WHEN EXISTS (SELECT 1 FROM ksi_sales.fetch_runs f JOIN ksi_sales.stores s ON s.id = v.store_id
	                       WHERE f.connector_id = v.connector_id AND f.outcome = 'ok'
	                         AND f.started_at >= coalesce(s.linked_at, '-infinity')
	                         AND f.window_from <= v.hour AND f.window_to >= v.hour + interval '1 hour') THEN 'zero_or_no_sales'
	          ELSE 'not_fetched' END)
	        FROM ksi_sales.coverage v")"
check "one row per linked store and hour, from the first window to the last" "t" \
	"$(sql "SELECT bool_and(n = extract(epoch FROM last_to - first_from) / 3600 AND n = distinct_hours)
	        FROM (SELECT v.store_id, count(*) AS n, count(DISTINCT v.hour) AS distinct_hours,
	                     (SELECT min(window_from) FROM ksi_sales.fetch_runs f WHERE f.connector_id = v.connector_id) AS first_from,
	                     (SELECT greatest(max(window_to), max(st.synced_until)) FROM ksi_sales.fetch_runs f
	                      JOIN ksi_sales.connector_state st USING (connector_id) WHERE f.connector_id = v.connector_id) AS last_to
	              FROM ksi_sales.coverage v GROUP BY v.store_id, v.connector_id) x")"
check "stores: every linked store of a polled connector, nothing else" "G1,K1,K2,Q1,U1,U2,U3" \
	"$(sql "SELECT string_agg(DISTINCT store_name, ',' ORDER BY store_name) FROM ksi_sales.coverage")"
check "utc U1 (15 days): every hour reported" "reported" \
	"$(sql "SELECT string_agg(DISTINCT status, ',') FROM ksi_sales.coverage WHERE store_name = 'U1'")"
check "kolkata K1: hours on the +05:30 grid (:30 UTC), every one reported" "true reported" \
	"$(sql "SELECT bool_and(extract(minute FROM hour AT TIME ZONE 'UTC') = 30) || ' ' || string_agg(DISTINCT status, ',')
	        FROM ksi_sales.coverage WHERE store_name = 'K1'")"
check "kolkata K1: as many hours as sales rows" "t" \
	"$(sql "SELECT (SELECT count(*) FROM ksi_sales.coverage WHERE store_name = 'K1')
	             = (SELECT count(*) FROM ksi_sales.sales_hourly WHERE store_id = $(store K1))")"
gappy_runs() { sql "SELECT $1 FROM ksi_sales.fetch_runs WHERE connector_id = $(conn gappy) AND $2"; }
FAIL_FROM=$(gappy_runs "min(window_from)" "outcome <> 'ok'")
FAIL_TO=$(gappy_runs "max(window_to)" "outcome <> 'ok'")
OK_FROM=$(gappy_runs "min(window_from)" "outcome = 'ok'")
check "gappy: coverage starts at the failed first window" "t" \
	"$(sql "SELECT min(hour) = '$FAIL_FROM' FROM ksi_sales.coverage WHERE store_name = 'G1'")"
check "gappy: the failed window's 6 hours are not_fetched" "6 not_fetched" \
	"$(sql "SELECT count(*) || ' ' || string_agg(DISTINCT status, ',') FROM ksi_sales.coverage
	        WHERE store_name = 'G1' AND hour >= '$FAIL_FROM' AND hour < '$FAIL_TO'")"
check "gappy: every hour before the first ok window is not_fetched (about 10)" "t" \
	"$(sql "SELECT count(*) = extract(epoch FROM timestamptz '$OK_FROM' - '$FAIL_FROM') / 3600 AND count(*) BETWEEN 10 AND 11
	               AND bool_and(status = 'not_fetched')
	        FROM ksi_sales.coverage WHERE store_name = 'G1' AND hour < '$OK_FROM'")"
check "gappy: from the first ok window on, every hour reported" "t" \
	"$(sql "SELECT count(*) >= 20 AND bool_and(status = 'reported') FROM ksi_sales.coverage
	        WHERE store_name = 'G1' AND hour >= '$OK_FROM'")"
check "gappy: the last hour ends at synced_until" "t" \
	"$(sql "SELECT max(v.hour) + interval '1 hour' = st.synced_until FROM ksi_sales.coverage v
	        JOIN ksi_sales.connector_state st USING (connector_id) WHERE v.store_name = 'G1' GROUP BY st.synced_until")"
check "quiet (API answers []): every hour zero_or_no_sales" "true zero_or_no_sales" \
	"$(sql "SELECT (count(*) >= 6) || ' ' || string_agg(DISTINCT status, ',') FROM ksi_sales.coverage WHERE store_name = 'Q1'")"
check "U3, linked after utc's first poll: hours the second (empty) poll covered are zero_or_no_sales" "t" \
	"$(sql "SELECT count(*) >= 4 AND bool_and(v.hour >= r.window_from AND v.hour < r.window_to)
	        FROM ksi_sales.coverage v,
	             (SELECT min(window_from) AS window_from, max(window_to) AS window_to FROM ksi_sales.fetch_runs
	              WHERE connector_id = $(conn utc) AND started_at >= (SELECT linked_at FROM ksi_sales.stores WHERE name = 'U3')) r
	        WHERE v.store_name = 'U3' AND v.status = 'zero_or_no_sales'")"
check "U3: every earlier hour (before its link) is not_fetched, none reported" "true 0" \
	"$(sql "SELECT (count(*) FILTER (WHERE status = 'not_fetched') >= 300) || ' ' || count(*) FILTER (WHERE status = 'reported')
	        FROM ksi_sales.coverage WHERE store_name = 'U3'")"
check "a filter on store_id gives the same rows as the whole view" "t" \
	"$(sql "SELECT (SELECT count(*) FROM ksi_sales.coverage WHERE store_id = $(store G1))
	             = (SELECT count(*) FROM (SELECT * FROM ksi_sales.coverage OFFSET 0) x WHERE x.store_id = $(store G1))")"

echo "# revisions kept by the daemon's upsert"
check "a re-read with unchanged values adds no revision" "0" \
	"$(sql "SELECT count(*) FROM ksi_sales.sales_hourly WHERE revisions > 0")"
check "a new row: first_seen = last_changed = fetched_at" "t" \
	"$(sql "SELECT bool_and(first_seen = fetched_at AND last_changed = fetched_at) FROM ksi_sales.sales_hourly h
	        WHERE NOT EXISTS (SELECT 1 FROM public.snap1 s WHERE s.store_id = h.store_id AND s.hour = h.hour)")"
check "a re-read with the same values keeps first_seen and last_changed" "t" \
	"$(sql "SELECT count(*) > 0 AND bool_and(h.first_seen = s.first_seen AND h.last_changed = s.last_changed)
	        FROM ksi_sales.sales_hourly h JOIN public.snap1 s USING (store_id, hour)
	        WHERE h.fetched_at > s.fetched_at")"
# Third poll: kolkata's values change (seed) over an 8-hour lookback.
sql "CREATE TABLE public.snap2 AS SELECT * FROM ksi_sales.sales_hourly" >/dev/null
sql "UPDATE ksi_sales.connectors SET endpoint_url = '$FAKE_URL/seed/7/sales', lookback = '8 hours' WHERE name = 'kolkata'" >/dev/null
once -d "$DAEMON_URL"
check "third once (new values for kolkata) exits 0" 0 "$RC"
sql "UPDATE ksi_sales.connectors SET lookback = '3 hours' WHERE name = 'kolkata'" >/dev/null
CHANGED=$(sql "SELECT count(*) FROM ksi_sales.sales_hourly h JOIN public.snap2 s USING (store_id, hour) WHERE h.num_tickets <> s.num_tickets")
check "the seed changed 8 or 9 hours of each kolkata store" "t" "$(sql "SELECT $CHANGED BETWEEN 16 AND 18")"
check "revisions = 1 exactly where the value changed, 0 elsewhere" "t" \
	"$(sql "SELECT bool_and(h.revisions = CASE WHEN h.num_tickets <> s.num_tickets THEN 1 ELSE 0 END)
	        FROM ksi_sales.sales_hourly h JOIN public.snap2 s USING (store_id, hour)")"
check "a changed value: last_changed = fetched_at, first_seen kept" "t" \
	"$(sql "SELECT count(*) > 0 AND bool_and(h.last_changed = h.fetched_at AND h.first_seen = s.first_seen AND h.last_changed > s.last_changed)
	        FROM ksi_sales.sales_hourly h JOIN public.snap2 s USING (store_id, hour) WHERE h.num_tickets <> s.num_tickets")"
check "sales_revisions lists the changed hours, lateness = last_changed - end of hour" "$CHANGED true" \
	"$(sql "SELECT count(*) || ' ' || bool_and(settle_lateness = last_changed - hour - interval '1 hour' AND connector = 'kolkata')
	        FROM ksi_sales.sales_revisions")"
check "settle_lateness counts kolkata's revised hours" "$CHANGED" \
	"$(sql "SELECT hours_revised FROM ksi_sales.settle_lateness WHERE connector = 'kolkata'")"
check "settle_lateness: the oldest re-read hour changed 6 to 8 hours after it ended" "t" \
	"$(sql "SELECT max BETWEEN interval '6 hours' AND interval '8 hours' AND p50 <= p90 AND p90 <= p99 AND p99 <= max
	        FROM ksi_sales.settle_lateness WHERE connector = 'kolkata'")"
check "settle_lateness: suggests 7 or 8 hours, more than the 3-hour lookback" "true true true" \
	"$(sql "SELECT (suggested_lookback IN (interval '7 hours', interval '8 hours')) || ' ' || lookback_too_short || ' ' || lateness_censored
	        FROM ksi_sales.settle_lateness WHERE connector = 'kolkata'")"
check "settle_lateness: a connector without revisions suggests 1 hour, not too short" "0 01:00:00 false" \
	"$(sql "SELECT hours_revised || ' ' || suggested_lookback || ' ' || lookback_too_short FROM ksi_sales.settle_lateness WHERE connector = 'quiet'")"

echo "# settle_lateness and sales_weekly_trend: exact arithmetic on known rows"
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, enabled, lookback, poll_interval)
     VALUES ('synthetic', '$FAKE_URL/sales', false, '1 hour', '15 minutes');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code, timezone)
     VALUES ('SYN', $(conn synthetic), 'S1', 'UTC'), ('SYNW', $(conn synthetic), 'S2', 'Asia/Kolkata');
     -- 100 hours revised 1..100 minutes after they ended, 1 revised while still open,
     -- 50 never revised that first arrived 30 minutes late.
     INSERT INTO ksi_sales.sales_hourly (store_id, hour, num_tickets, ext_ref_code, connector_id, fetched_at,
                                         first_seen, last_changed, revisions)
     SELECT $(store SYN), t.hour, 1, 'S1', $(conn synthetic), t.changed, t.first, t.changed, t.revs
     FROM (SELECT date_trunc('hour', now()) - (i + 2) * interval '1 hour' AS hour, i,
                  CASE WHEN i <= 101 THEN 1 ELSE 0 END AS revs FROM generate_series(1, 151) AS i) h,
          LATERAL (SELECT h.hour, h.revs,
                          h.hour + CASE WHEN h.i <= 100 THEN interval '1 hour 1 minute' ELSE interval '1 hour 30 minutes' END,
                          CASE WHEN h.i <= 100 THEN h.hour + interval '1 hour' + h.i * interval '1 minute'
                               WHEN h.i = 101 THEN h.hour + interval '30 minutes'
                               ELSE h.hour + interval '1 hour 30 minutes' END) AS t(hour, revs, first, changed);
     UPDATE ksi_sales.sales_hourly SET first_seen = last_changed - interval '20 minutes'
     WHERE store_id = $(store SYN) AND last_changed < hour + interval '1 hour'" >/dev/null
check "hours reported, revised, revised after close, appeared late" "151 101 100 50" \
	"$(sql "SELECT hours_reported || ' ' || hours_revised || ' ' || revised_after_close || ' ' || appeared_late
	        FROM ksi_sales.settle_lateness WHERE connector = 'synthetic'")"
check "p50 p90 p99 max of lateness (0 while the hour was open)" "00:50:00 01:30:00 01:39:00 01:40:00" \
	"$(sql "SELECT p50 || ' ' || p90 || ' ' || p99 || ' ' || max FROM ksi_sales.settle_lateness WHERE connector = 'synthetic'")"
check "suggested lookback: p99 rounded up to whole hours; longer than 1 hour; censored" "02:00:00 true true" \
	"$(sql "SELECT suggested_lookback || ' ' || lookback_too_short || ' ' || lateness_censored
	        FROM ksi_sales.settle_lateness WHERE connector = 'synthetic'")"
check "sales_revisions shows a negative lateness for a change while the hour was open" "-00:30:00" \
	"$(sql "SELECT min(settle_lateness) FROM ksi_sales.sales_revisions WHERE store_name = 'SYN'")"
# Local ISO weeks in Asia/Kolkata: Sunday 20:00 UTC is Monday 01:30 there.
sql "INSERT INTO ksi_sales.sales_hourly (store_id, hour, num_tickets, ext_ref_code, connector_id)
     SELECT $(store SYNW), v.hour::timestamptz, v.n, 'S2', $(conn synthetic)
     FROM (VALUES ('2023-01-02 04:30Z', 100), ('2023-01-08 20:00Z', 60), ('2023-01-10 05:30Z', 90),
                  ('2023-01-16 04:30Z', 0), ('2023-01-23 04:30Z', 30), ('2023-02-06 04:30Z', 10)) AS v(hour, n)" >/dev/null
check "week over week: totals, previous week, change; NULL without a previous week or from 0" \
	"2023-01-02 2023-W01 100 - - t|2023-01-09 2023-W02 150 100 50.0 t|2023-01-16 2023-W03 0 150 -100.0 t|2023-01-23 2023-W04 30 0 - t|2023-02-06 2023-W06 10 - - t" \
	"$(sql "SELECT string_agg(concat_ws(' ', week, iso_week, num_tickets, coalesce(prev_week_tickets::text, '-'),
	                                    coalesce(change_pct::text, '-'), complete), '|' ORDER BY week)
	        FROM ksi_sales.sales_weekly_trend WHERE store_name = 'SYNW'")"
check "week_start is the local Monday midnight" "2023-01-01 18:30:00+00" \
	"$(sql "SELECT min(week_start) FROM ksi_sales.sales_weekly_trend WHERE store_name = 'SYNW'")"
check "week over week on the daemon's data matches sums over explicit local week bounds" "t" \
	"$(sql "WITH w AS (SELECT t.*, s.timezone FROM ksi_sales.sales_weekly_trend t JOIN ksi_sales.stores s ON s.id = t.store_id
	                  WHERE s.name IN ('U1', 'U2', 'K1', 'K2')),
	             sums AS (SELECT w.store_id, w.week,
	                      (SELECT sum(num_tickets) FROM ksi_sales.sales_hourly h WHERE h.store_id = w.store_id
	                         AND h.hour >= w.week::timestamp AT TIME ZONE w.timezone
	                         AND h.hour < (w.week + 7)::timestamp AT TIME ZONE w.timezone) AS t,
	                      (SELECT sum(num_tickets) FROM ksi_sales.sales_hourly h WHERE h.store_id = w.store_id
	                         AND h.hour >= (w.week - 7)::timestamp AT TIME ZONE w.timezone
	                         AND h.hour < w.week::timestamp AT TIME ZONE w.timezone) AS p
	                      FROM w)
	        SELECT count(*) >= 8 AND bool_and(w.num_tickets = s.t AND w.prev_week_tickets IS NOT DISTINCT FROM s.p
	               AND w.change_pct IS NOT DISTINCT FROM round(100.0 * (s.t - s.p) / nullif(s.p, 0), 1))
	        FROM w JOIN sums s USING (store_id, week)")"

echo "# connection_tests and backfill_requests"
out=$(sql_err "INSERT INTO ksi_sales.connection_tests (endpoint_url, bearer_token) VALUES ('https://api.example/sales', '$TOKEN')")
check_contains "a test without codes is refused, naming what is missing" "give connector_id, or endpoint_url and codes" "$out"
check_absent "... without printing the token" "$TOKEN" "$out"
out=$(sql_err "INSERT INTO ksi_sales.connection_tests (endpoint_url, bearer_token, codes, status) VALUES ('https://api.example/sales', '$TOKEN', '{A1}', NULL)")
check_contains "a NULL status is refused by the trigger" "status must be pending, running, done or failed" "$out"
check_absent "... not by NOT NULL, which would print the row and the token" "$TOKEN" "$out"
out=$(sql_err "INSERT INTO ksi_sales.connection_tests (endpoint_url, bearer_token, codes) VALUES ('ftp://api.example/', '$TOKEN', '{A1}')")
check_contains "a non-http URL is refused" "endpoint_url must be an http:// or https:// URL" "$out"
out=$(sql_err "INSERT INTO ksi_sales.connection_tests (endpoint_url, bearer_token, codes) VALUES ('https://api.example/', '$TOKEN', '{A1,\"\"}')")
check_contains "an empty code is refused" "codes must be a list of 1 or more codes" "$out"
out=$(sql_err "INSERT INTO ksi_sales.connection_tests (connector_id, bearer_token) VALUES ($(conn utc), '$TOKEN')")
check_contains "a token next to connector_id is refused" "leave bearer_token NULL" "$out"
check_absent "... without printing it" "$TOKEN" "$out"
out=$(sql_err "INSERT INTO ksi_sales.connection_tests (connector_id, time_from, time_to) VALUES ($(conn utc), '2024-01-02', '2024-01-01')")
check_contains "time_from after time_to is refused" "time_from must be before time_to" "$out"
out=$(sql_err "INSERT INTO ksi_sales.connection_tests (endpoint_url, bearer_token, codes, timezone) VALUES ('https://api.example/', '$TOKEN', '{A1}', 'Mars/Olympus')")
check_contains "an unknown zone is refused" 'unknown time zone "Mars/Olympus"' "$out"
out=$(sql "LISTEN ksi_sales_config;
	INSERT INTO ksi_sales.connection_tests (endpoint_url, bearer_token, codes) VALUES ('https://api.example/sales', '$TOKEN', '{A1,A2}');
	INSERT INTO ksi_sales.connection_tests (connector_id) VALUES ($(conn utc));" 2>&1)
check_contains "a new test wakes the daemons (NOTIFY ksi_sales_config, connection_tests)" 'payload "connection_tests"' "$out"
check "new tests are pending, requested now, in UTC by default" "2 pending UTC true" \
	"$(sql "SELECT count(*) || ' ' || string_agg(DISTINCT status, ',') || ' ' || string_agg(DISTINCT timezone, ',') || ' ' ||
	               bool_and(requested_at > now() - interval '1 minute') FROM ksi_sales.connection_tests")"
out=$(sql_err "UPDATE ksi_sales.connection_tests SET status = 'finished' WHERE connector_id IS NULL")
check_contains "an unknown status is refused on update, naming the row by id" "connection_tests id " "$out"
check_absent "... without the token" "$TOKEN" "$out"
check "the daemon may record the result and clear the token" "done true " \
	"$(sql "BEGIN; SET LOCAL ROLE ksi_salesd_daemon;
	        UPDATE ksi_sales.connection_tests SET status = 'done', passed = true, bearer_token = NULL,
	               started_at = now(), finished_at = now(), report = '{\"records\": 2}' WHERE connector_id IS NULL
	        RETURNING status || ' ' || passed || ' ' || coalesce(bearer_token, ''); COMMIT;")"
out=$(sql "LISTEN ksi_sales_config;
	INSERT INTO ksi_sales.backfill_requests (connector_id, time_from, time_to) VALUES ($(conn utc), '2020-01-01Z', '2023-01-01Z')" 2>&1)
check_contains "a backfill request of exactly 3 calendar years is accepted and wakes the daemons" 'payload "backfill_requests"' "$out"
out=$(sql_err "INSERT INTO ksi_sales.backfill_requests (connector_id, time_from, time_to) VALUES ($(conn utc), '2020-01-01Z', '2023-01-01 01:00Z')")
check_contains "longer than 3 years is refused" "backfill_requests_at_most_3_years" "$out"
out=$(sql_err "INSERT INTO ksi_sales.backfill_requests (connector_id, time_from, time_to) VALUES ($(conn utc), '2024-01-02Z', '2024-01-02Z')")
check_contains "an empty span is refused" "backfill_requests_from_before_to" "$out"
out=$(sql_err "INSERT INTO ksi_sales.backfill_requests (time_from, time_to) VALUES ('2024-01-01Z', '2024-01-02Z')")
check_contains "a connector is required" 'null value in column "connector_id"' "$out"
out=$(sql_err "UPDATE ksi_sales.backfill_requests SET windows_total = 3, windows_done = 4")
check_contains "progress beyond the total is refused" "backfill_requests_windows_done_bounded" "$out"
check "the daemon may record progress" "running 1/3" \
	"$(sql "BEGIN; SET LOCAL ROLE ksi_salesd_daemon;
	        UPDATE ksi_sales.backfill_requests SET status = 'running', started_at = now(), windows_total = 3, windows_done = 1
	        RETURNING status || ' ' || windows_done || '/' || windows_total; COMMIT;")"
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url) VALUES ('doomed', 'https://api.example/');
     INSERT INTO ksi_sales.connection_tests (connector_id) VALUES ($(conn doomed));
     INSERT INTO ksi_sales.backfill_requests (connector_id, time_from, time_to) VALUES ($(conn doomed), '2024-01-01Z', '2024-01-02Z');
     DELETE FROM ksi_sales.connectors WHERE name = 'doomed'" >/dev/null
check "deleting a connector deletes its requests" "2 1" \
	"$(sql "SELECT (SELECT count(*) FROM ksi_sales.connection_tests) || ' ' || (SELECT count(*) FROM ksi_sales.backfill_requests)")"

echo "# roles"
dash() { sql "SET ROLE ksi_salesd_dashboard; $1"; }
out=$(sql_err "SET ROLE ksi_salesd_dashboard; SELECT bearer_token FROM ksi_sales.connectors")
check_contains "dashboard: SELECT bearer_token is denied" "permission denied for table connectors" "$out"
out=$(sql_err "SET ROLE ksi_salesd_dashboard; SELECT * FROM ksi_sales.connectors")
check_contains "dashboard: SELECT * FROM connectors is denied (it includes bearer_token)" "permission denied for table connectors" "$out"
check "dashboard: every other column of connectors is readable" "t" \
	"$(dash "SELECT count(*) > 0 FROM (SELECT id, name, endpoint_url, enabled, lookback, timezone, created_at FROM ksi_sales.connectors) c")"
check "dashboard: connector_health is readable" "t" "$(dash "SELECT count(*) > 0 FROM ksi_sales.connector_health")"
for v in $(sql "SELECT viewname FROM pg_views WHERE schemaname = 'ksi_sales' ORDER BY 1"); do
	check "dashboard: view $v is readable" "ok" "$(dash "SELECT 'ok' FROM (SELECT * FROM ksi_sales.$v LIMIT 1) x UNION SELECT 'ok'" 2>&1)"
done
check "dashboard: sales_hourly, stores, fetch_runs, rejected_records readable" "ok" \
	"$(dash "SELECT 'ok' FROM (SELECT 1 FROM ksi_sales.sales_hourly UNION ALL SELECT 1 FROM ksi_sales.stores UNION ALL
	          SELECT 1 FROM ksi_sales.fetch_runs UNION ALL SELECT 1 FROM ksi_sales.rejected_records) x LIMIT 1" 2>&1)"
for t in connection_tests backfill_requests connector_state; do
	check_contains "dashboard: $t is not readable" "permission denied for table $t" \
		"$(sql_err "SET ROLE ksi_salesd_dashboard; SELECT 1 FROM ksi_sales.$t")"
done
check_contains "dashboard: no write" "permission denied for table sales_hourly" \
	"$(sql_err "BEGIN; SET LOCAL ROLE ksi_salesd_dashboard; UPDATE ksi_sales.sales_hourly SET num_tickets = 0; ROLLBACK")"
check "no view reads bearer_token (view_column_usage)" "0" \
	"$(sql "SELECT count(*) FROM information_schema.view_column_usage
	        WHERE table_schema = 'ksi_sales' AND column_name = 'bearer_token'")"
check "no view has a bearer_token column" "0" \
	"$(sql "SELECT count(*) FROM information_schema.columns c JOIN information_schema.views v
	        ON v.table_schema = c.table_schema AND v.table_name = c.table_name
	        WHERE c.table_schema = 'ksi_sales' AND c.column_name = 'bearer_token'")"
check_contains "daemon: DELETE is denied" "permission denied for table sales_hourly" \
	"$(sql_err "BEGIN; SET LOCAL ROLE ksi_salesd_daemon; DELETE FROM ksi_sales.sales_hourly; ROLLBACK")"
check_contains "daemon: TRUNCATE is denied" "permission denied for table sales_hourly" \
	"$(sql_err "BEGIN; SET LOCAL ROLE ksi_salesd_daemon; TRUNCATE ksi_sales.sales_hourly; ROLLBACK")"
check_contains "daemon: CREATE TABLE in the schema is denied" "permission denied for schema ksi_sales" \
	"$(sql_err "BEGIN; SET LOCAL ROLE ksi_salesd_daemon; CREATE TABLE ksi_sales.x (i int); ROLLBACK")"
check_contains "daemon: changing a connector is denied" "permission denied for table connectors" \
	"$(sql_err "BEGIN; SET LOCAL ROLE ksi_salesd_daemon; UPDATE ksi_sales.connectors SET enabled = false; ROLLBACK")"
check "daemon: INSERT into sales_hourly is allowed" "INSERT 0 1" \
	"$(psql "$CONNINFO" -X -v ON_ERROR_STOP=1 2>&1 <<SQL | grep INSERT
BEGIN;
SET LOCAL ROLE ksi_salesd_daemon;
INSERT INTO ksi_sales.sales_hourly (store_id, hour, num_tickets, ext_ref_code, connector_id)
VALUES ($(store U3), '2001-01-01Z', 1, 'U3', $(conn utc));
ROLLBACK;
SQL
)"
check "daemon: its writes keep the rollups (a trigger fires without EXECUTE on its function)" "1 1" \
	"$(psql "$CONNINFO" -X -q -A -t -v ON_ERROR_STOP=1 2>&1 <<SQL | tail -1
BEGIN;
SET LOCAL ROLE ksi_salesd_daemon;
INSERT INTO ksi_sales.sales_hourly (store_id, hour, num_tickets, ext_ref_code, connector_id)
VALUES ($(store U3), '2001-01-01 12:00Z', 7, 'U3', $(conn utc));
RESET ROLE;
SELECT (SELECT count(*) FROM ksi_sales.sales_daily_rollup WHERE store_id = $(store U3) AND day = '2001-01-01')
       || ' ' || (SELECT count(*) FROM ksi_sales.sales_fleet_delta WHERE day = '2001-01-01');
ROLLBACK;
SQL
)"
# The rollups' trigger functions run as the owner: attached to a table of
# one's own and fired, they would empty or forge the rollups (0015).
for role in ksi_salesd_dashboard ksi_salesd_daemon; do
	check_contains "$role: attaching a rollup's trigger function to its own table is denied" \
		"permission denied for function ksi_sales.sales_rollup_truncate" \
		"$(sql_err "BEGIN; SET LOCAL ROLE $role; CREATE TEMP TABLE t (x int);
		            CREATE TRIGGER z AFTER TRUNCATE ON t EXECUTE FUNCTION ksi_sales.sales_rollup_truncate(); ROLLBACK")"
done
check "no trigger function of the schema is executable but by its owner" "0" \
	"$(sql "SELECT count(*) FROM pg_proc p CROSS JOIN (VALUES ('ksi_salesd_daemon'), ('ksi_salesd_dashboard'), ('public')) r(role)
	        WHERE p.pronamespace = 'ksi_sales'::regnamespace AND p.prorettype = 'trigger'::regtype
	          AND CASE WHEN r.role = 'public' THEN EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
	                                                      WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
	                   ELSE has_function_privilege(r.role, p.oid, 'EXECUTE') END")"
check "grant_role_privileges() is idempotent" "ok" \
	"$(sql "SELECT ksi_sales.grant_role_privileges(); SELECT ksi_sales.grant_role_privileges(); SELECT 'ok'" | tail -1)"

echo "# the Grafana dashboard"
# Each SQL string of the dashboard: panel targets' rawSql and query
# variables' query, one per line (the file keeps each string on one line).
# JSON escapes are undone: \" \\ \/ \n \t.
extract_sql() {
	sed -n -E 's/^[[:space:]]*"(rawSql|query)": "(.*)",?[[:space:]]*$/\2/p' "$1" |
		awk 'toupper($0) ~ /^(SELECT|WITH)[[:space:]]/' |
		awk '{
			out = ""
			for (i = 1; i <= length($0); i++) {
				c = substr($0, i, 1)
				if (c == "\\") {
					i++; d = substr($0, i, 1)
					if (d == "n") c = " "; else if (d == "t") c = " "; else c = d
				}
				out = out c
			}
			print out
		}'
}
extract_sql "$DASHBOARD" >"$WORK/panels.sql"
NQ=$(wc -l <"$WORK/panels.sql")
NEXPECT=$(($(grep -c '"rawSql"' "$DASHBOARD") + $(grep -c '"type": "query"' "$DASHBOARD")))
check "every panel target and query variable has its SQL extracted" "$NEXPECT" "$NQ"
if command -v jq >/dev/null; then
	jq -r '[(.templating.list[] | select(.type == "query") | .query), (.panels[].targets // [] | .[].rawSql // empty)] | .[]' \
		"$DASHBOARD" >"$WORK/panels.jq"
	check "the sed/awk extraction equals jq's" "" "$(diff "$WORK/panels.sql" "$WORK/panels.jq")"
	check "the dashboard's schemaVersion and variables" "38 datasource:datasource,prometheus:datasource,connector:query,store:query" \
		"$(jq -r '"\(.schemaVersion) " + ([.templating.list[] | "\(.name):\(.type)"] | join(","))' "$DASHBOARD")"
else
	echo "# jq not installed: the dashboard parsing is not cross-checked"
fi
# shellcheck disable=SC2016 # literal $ names, not expansions
check "only the macros and variables the dashboard may use" "" \
	"$(grep -o '\$[{]*[A-Za-z_]*' "$DASHBOARD" | sort -u |
		grep -v -x -e '\$__timeFilter' -e '\$__timeFrom' -e '\$__timeTo' -e '\$connector' -e '\$store' -e '\${datasource' \
			-e '\${prometheus' -e '\$__rate_interval')"
CONNECTOR_IDS=$(sql "SELECT string_agg(quote_literal(id), ',' ORDER BY id) FROM ksi_sales.connectors")
STORE_IDS=$(sql "SELECT string_agg(quote_literal(id), ',' ORDER BY id) FROM ksi_sales.stores")
FROM=$(sql "SELECT to_char(now() - interval '30 days', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
TO=$(sql "SELECT to_char(now(), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
GRAFANA_URL=$(url_for postgres grafana_login)
n=0
while IFS= read -r q; do
	n=$((n + 1))
	# As Grafana renders them: multi-value variables as quoted lists.
	q=$(printf '%s' "$q" | sed -E \
		-e "s/\\\$__timeFilter\(([^)]*)\)/(\1 BETWEEN now() - interval '30 days' AND now())/g" \
		-e "s/\\\$__timeFrom\(\)/'$FROM'/g" -e "s/\\\$__timeTo\(\)/'$TO'/g" \
		-e "s/\\\$connector/$CONNECTOR_IDS/g" -e "s/\\\$store/$STORE_IDS/g")
	case $q in *'$'*) not_ok "query $n: a macro or variable left unreplaced" "$q"; continue ;; esac
	out=$(psql "$GRAFANA_URL" -X -q -A -t -v ON_ERROR_STOP=1 \
		-c "SELECT count(*) FROM ($q) AS panel" 2>&1)
	if [[ $out =~ ^[0-9]+$ ]] && [ "$out" -gt 0 ]; then
		ok "query $n runs as the dashboard role and returns rows ($out): ${q:0:60}..."
	else
		not_ok "query $n runs as the dashboard role and returns rows" "$q" "$out"
	fi
done <"$WORK/panels.sql"

echo "# coverage on 50 stores x 90 days"
sql "CREATE DATABASE perf" >/dev/null
PERF=$(url_for perf postgres)
ksi migrate -d "$PERF" 2>"$WORK/perf-migrate.log"
check "migrate of a second database in the cluster (roles exist) exits 0" 0 $?
psql "$PERF" -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
INSERT INTO ksi_sales.connectors (name, endpoint_url) VALUES ('perf', 'https://api.example/sales');
INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
SELECT 'P' || i, 1, 'P' || i FROM generate_series(1, 50) AS i;
UPDATE ksi_sales.stores SET linked_at = now() - interval '100 days';
-- a poll every 15 minutes for 95 days (lookback 3 hours), 2% failed
INSERT INTO ksi_sales.fetch_runs (connector_id, window_from, window_to, codes_requested, started_at, finished_at, outcome)
SELECT 1, date_trunc('hour', t) - interval '3 hours', date_trunc('hour', t) + interval '1 hour', 50, t, t + interval '1 second',
       CASE WHEN random() < 0.02 THEN 'http_error' ELSE 'ok' END
FROM generate_series(now() - interval '95 days', now(), interval '15 minutes') AS t;
INSERT INTO ksi_sales.sales_hourly (store_id, hour, num_tickets, ext_ref_code, connector_id, fetched_at)
SELECT s.id, h, (random() * 50)::integer, s.ext_ref_code, 1, h + interval '65 minutes'
FROM ksi_sales.stores s, generate_series(date_trunc('hour', now() - interval '95 days'), now(), interval '1 hour') AS h
WHERE random() > 0.1;
UPDATE ksi_sales.connector_state SET synced_until = date_trunc('hour', now()) + interval '1 hour';
VACUUM ANALYZE;
SQL
ms=$(psql "$PERF" -X -A -t -c "EXPLAIN (ANALYZE, TIMING OFF) SELECT status, count(*) FROM ksi_sales.coverage GROUP BY status" |
	sed -n 's/^Execution Time: \([0-9.]*\) ms$/\1/p')
rows=$(psql "$PERF" -X -A -t -c "SELECT count(*) FROM ksi_sales.coverage")
echo "# coverage: $rows rows (50 stores x 90 days) in ${ms:-?} ms"
# Its speed is reported above, not asserted: speed belongs to make bench.
check "coverage of 50 stores x 90 days has one row per store and hour: 108,000" "108000" "$rows"

echo "# secrets"
check "the token is in no table but connectors and unrun connection_tests" "0" \
	"$(sql "SELECT count(*) FROM (SELECT error AS t FROM ksi_sales.fetch_runs UNION ALL
	        SELECT record || detail FROM ksi_sales.rejected_records UNION ALL
	        SELECT report::text FROM ksi_sales.connection_tests) x WHERE t LIKE '%$TOKEN%'")"

echo
echo "views: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
