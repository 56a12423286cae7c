#!/usr/bin/env bash
# Integration tests of what operators see and steer of the data lifecycle
# (issue 15 item 3), against the real binary and a throwaway PostgreSQL:
#   1. `status` shows, per audit table, the oldest period kept, the next
#      partition boundary and how far ahead partitions follow one another
#      (values computed apart in SQL), below the table;
#   2. `janitor --dry-run` prints exactly what retention_plan says, as text
#      and JSON, and changes nothing;
#   3. `janitor` while another session holds the janitors' lock exits 1 at
#      once with a clear message, having changed nothing;
#   4. `janitor` with [retention] fetch_runs = 2d drops the expired days and
#      creates the missing ones ahead, and says so;
#   5. `status` warns (and exits 1) when partitions run out within two days
#      or none takes rows now (inserts then fail: there is no DEFAULT
#      partition), and `janitor` puts it right;
#   6. usage and exit codes.
#   janitor.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"
pg_start || { echo "could not start PostgreSQL" >&2; exit 1; }
ksi migrate 2>/dev/null || exit 1
# The width is the tests', never the caller's shell's.
unset COLUMNS

JANITOR_LOCK_KEY=7233879461275471170 # src/db_maint.c

# The partitions of both tables, one name a line: what "changed nothing"
# compares.
partitions() {
	sql "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	     WHERE i.inhparent IN ('ksi_sales.fetch_runs'::regclass, 'ksi_sales.rejected_records'::regclass)
	     ORDER BY 1"
}
# A UTC time as the commands print it.
utc() { sql "SELECT to_char(($1) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI\"Z\"')"; }

# As if installed 40 days ago (retention.sh does the same): daily partitions
# for the 40 past days, monthly ones for the 6 past months, a row in each,
# analysed (the row estimates come from there). The partitions migrate made
# (today and the week ahead, this month and maybe the next) stay.
sql "DROP TABLE ksi_sales.fetch_runs_before; DROP TABLE ksi_sales.rejected_records_before;
     INSERT INTO ksi_sales.connectors (name, endpoint_url) VALUES ('r', 'http://127.0.0.1:9/sales');
     $AGED_PARTITIONS;
     ANALYZE ksi_sales.fetch_runs; ANALYZE ksi_sales.rejected_records" >/dev/null || exit 1
# The janitor missed a day: the partition 3 days ahead is gone, so writes
# have partitions only until then, whatever exists after it.
GAP=$(date -u -d '+3 days' +%Y%m%d)
sql "DROP TABLE ksi_sales.fetch_runs_p$GAP" >/dev/null

printf '[retention]\nfetch_runs = 30d\nrejected_records = 90d\n[log]\nlevel = info\n' >"$WORK/c30.conf"
printf '[retention]\nfetch_runs = 2d\nrejected_records = 90d\n[log]\nlevel = info\n' >"$WORK/c2.conf"

# ---------------------------------------------------------------------------
echo "# 1. status: oldest kept, next boundary, how far ahead"
ksi status -c "$WORK/c30.conf" >"$WORK/s.out" 2>"$WORK/s.err"
check "status exits 0: every connector healthy, partitions more than 2 days ahead" "0" "$?"
check "the summary is still the first line and the header the second" "1 connector: 0 ok, 0 failing, 1 no stores|CONNECTOR" \
	"$(sed -n 1p "$WORK/s.out")|$(sed -n 2p "$WORK/s.out" | awk '{ print $1 }')"
FLAT=$(tr -s ' \n' '  ' <"$WORK/s.out")
# Computed apart from the view: what this script created, by construction.
RUNS_N=$(sql "SELECT count(*) FROM pg_inherits WHERE inhparent = 'ksi_sales.fetch_runs'::regclass")
RUNS_OLDEST=$(date -u -d '-40 days' +%Y-%m-%d)
TOMORROW=$(utc "date_trunc('day', now()) + interval '1 day'")
GAP_AT=$(utc "date_trunc('day', now()) + interval '3 days'")
GAP_DAYS=$(sql "SELECT floor(extract(epoch FROM date_trunc('day', now()) + interval '3 days' - now()) / 86400)")
check_contains "fetch_runs: count, oldest day, next boundary, and partitions until the gap" \
	"fetch_runs: $RUNS_N partitions, oldest kept $RUNS_OLDEST, next boundary $TOMORROW, partitions until $GAP_AT ($GAP_DAYS days ahead)" "$FLAT"
REJ_N=$(sql "SELECT count(*) FROM pg_inherits WHERE inhparent = 'ksi_sales.rejected_records'::regclass")
REJ_OLDEST=$(sql "SELECT to_char(date_trunc('month', now()) - interval '6 months', 'YYYY-MM')")
NEXT_MONTH=$(utc "date_trunc('month', now()) + interval '1 month'")
REJ_UNTIL=$(utc "date_trunc('month', now() + interval '7 days') + interval '1 month'")
REJ_DAYS=$(sql "SELECT floor(extract(epoch FROM date_trunc('month', now() + interval '7 days') + interval '1 month' - now()) / 86400)")
check_contains "rejected_records: count, oldest month, next boundary, how far ahead" \
	"rejected_records: $REJ_N partitions, oldest kept $REJ_OLDEST, next boundary $NEXT_MONTH, partitions until $REJ_UNTIL ($REJ_DAYS days ahead)" "$FLAT"
check_absent "no warning while partitions are 2 days ahead or more" "warning" "$(cat "$WORK/s.out" "$WORK/s.err")"
check "no line is wider than 80 columns" "0" "$(awk 'length($0) > 80' "$WORK/s.out" | wc -l)"
COLUMNS=200 ksi status -c "$WORK/c30.conf" >"$WORK/s200.out" 2>/dev/null
check "at 200 columns each table is one line" "2" "$(grep -c -E '^(fetch_runs|rejected_records): .* ahead\)$' "$WORK/s200.out")"

# ---------------------------------------------------------------------------
echo "# 2. janitor --dry-run: what retention_plan says, nothing changed"
BEFORE=$(partitions)
ksi janitor --dry-run -c "$WORK/c30.conf" >"$WORK/d.out" 2>"$WORK/d.err"
check "janitor --dry-run exits 0" "0" "$?"
check "after the dry run, the partitions are the same" "$BEFORE" "$(partitions)"
PLAN=$(sql "SELECT action || ' ' || partition || ' ' || to_char(range_from AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI\"Z\"')
                   || ' ' || to_char(range_to AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI\"Z\"')
            FROM ksi_sales.retention_plan('30 days', '90 days')")
check "its rows are retention_plan('30 days', '90 days')'s, in its order" "$PLAN" \
	"$(awk 'NR > 2 { print $1, $2, $3 " " $4, $5 " " $6 }' "$WORK/d.out")"
check_contains "the plan creates the missing day ahead" "create fetch_runs_p$GAP" "$PLAN"
NCREATE=$(sql "SELECT count(*) FROM ksi_sales.retention_plan('30 days', '90 days') WHERE action = 'create'")
NDROP=$(sql "SELECT count(*) FROM ksi_sales.retention_plan('30 days', '90 days') WHERE action = 'drop'")
check_contains "the summary counts them and says nothing changed" \
	"dry run, fetch_runs kept 30 days, rejected_records 90 days: $NCREATE to create, $NDROP to drop (" "$(head -1 "$WORK/d.out")"
check_contains "the summary ends saying nothing changed" "; nothing changed" "$(head -1 "$WORK/d.out")"
check "the header" "ACTION PARTITION FROM TO ROWS SIZE" "$(sed -n 2p "$WORK/d.out" | tr -s ' ')"
ksi janitor --dry-run --json -c "$WORK/c30.conf" >"$WORK/d.json" 2>/dev/null
check "janitor --dry-run --json exits 0" "0" "$?"
DOC=$(cat "$WORK/d.json")
check "--json: the same plan (times read back by PostgreSQL)" \
	"$(sql "SELECT string_agg(action || ' ' || partition || ' ' || range_from || ' ' || range_to, '|')
	        FROM ksi_sales.retention_plan('30 days', '90 days')")" \
	"$(sql "SELECT string_agg((e->>'action') || ' ' || (e->>'partition') || ' ' || (e->>'from')::timestamptz || ' ' || (e->>'to')::timestamptz, '|')
	        FROM json_array_elements(:'doc'::json->'actions') e" -v doc="$DOC")"
check "--json: each drop's bytes are pg_total_relation_size, its rows the one row it holds" "true true" \
	"$(sql "SELECT bool_and((e->>'bytes')::bigint = pg_total_relation_size(('ksi_sales.' || (e->>'partition'))::regclass))
	               || ' ' || bool_and((e->>'rows_estimate')::bigint = 1)
	        FROM json_array_elements(:'doc'::json->'actions') e WHERE e->>'action' = 'drop'" -v doc="$DOC")"
check "--json: dry_run, the retentions in days, every result planned" "true 30 90 planned" \
	"$(sql "SELECT (:'doc'::json->>'dry_run') || ' ' || (:'doc'::json->>'fetch_runs_keep_days') || ' '
	               || (:'doc'::json->>'rejected_records_keep_days') || ' '
	               || (SELECT string_agg(DISTINCT e->>'result', ',') FROM json_array_elements(:'doc'::json->'actions') e)" -v doc="$DOC")"
check "after the JSON dry run too, the partitions are the same" "$BEFORE" "$(partitions)"

# ---------------------------------------------------------------------------
echo "# 3. another session holds the janitors' lock: exit 1 at once"
PGAPPNAME=hold_lock psql "$CONNINFO" -X -q -c "SELECT pg_advisory_lock($JANITOR_LOCK_KEY)" \
	-c "SELECT pg_sleep(600)" >/dev/null 2>&1 &
HOLDER=$!
PIDS+=("$HOLDER")
lock_held() { [ "$(sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = ($JANITOR_LOCK_KEY::bigint & 4294967295)::oid AND granted")" -ge 1 ]; }
wait_for "the other session to hold the lock" 10 lock_held
T0=$SECONDS
timeout 60 "$BIN" janitor -c "$WORK/c2.conf" >"$WORK/l.out" 2>"$WORK/l.err"
RC=$?
check "janitor exits 1 while the lock is held" "1" "$RC"
check "and does not wait for it (under 5 s)" "t" "$([ $((SECONDS - T0)) -lt 5 ] && echo t)"
check_contains "the message names the lock and what to do" \
	"another janitor holds the janitors' lock (a daemon's, or another \`ksi-salesd janitor\`): nothing done; run it again in a moment" \
	"$(cat "$WORK/l.err")"
check "the report says nothing was done" "fetch_runs kept 2 days, rejected_records 90 days: another janitor holds the lock; nothing done" \
	"$(cat "$WORK/l.out")"
check "nothing was created or dropped" "$BEFORE" "$(partitions)"
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'hold_lock'" >/dev/null
wait "$HOLDER" 2>/dev/null

# ---------------------------------------------------------------------------
echo "# 4. janitor with fetch_runs = 2d: expired days dropped, the missing one created"
# Computed apart from retention_plan: daily partitions from the UTC midnight
# 2 days ago to a week ahead; the months whose end is after the UTC
# midnight 90 days ago, up to the month a week ahead.
WANT=$( (sql "SELECT 'fetch_runs_p' || to_char(d, 'YYYYMMDD') FROM generate_series(date_trunc('day', now() - interval '2 days'),
                                                                                 date_trunc('day', now() + interval '7 days'), interval '1 day') d"
	sql "SELECT 'rejected_records_p' || to_char(d, 'YYYYMM') FROM generate_series(date_trunc('month', now()) - interval '6 months',
	                                                                              date_trunc('month', now() + interval '7 days'), interval '1 month') d
	     WHERE d + interval '1 month' > date_trunc('day', now() - interval '90 days')") | LC_ALL=C sort)
ksi janitor -c "$WORK/c2.conf" >"$WORK/j.out" 2>"$WORK/j.err"
check "janitor exits 0" "0" "$?"
AFTER=$(partitions)
check "the partitions left are exactly those computed" "$WANT" "$(LC_ALL=C sort <<<"$AFTER")"
check "no row older than the UTC midnight 2 days ago is left; the newer ones are" "0 3" \
	"$(sql "SELECT count(*) FILTER (WHERE started_at < date_trunc('day', now() - interval '2 days')) || ' ' || count(*) FROM ksi_sales.fetch_runs")"
DROPPED=$(comm -23 <(LC_ALL=C sort <<<"$BEFORE") <(LC_ALL=C sort <<<"$AFTER"))
CREATED=$(comm -13 <(LC_ALL=C sort <<<"$BEFORE") <(LC_ALL=C sort <<<"$AFTER"))
check "the report lists each partition dropped" "$DROPPED" "$(awk '$1 == "dropped" { print $2 }' "$WORK/j.out" | LC_ALL=C sort)"
check "and each created (the missing day)" "$CREATED" "$(awk '$1 == "created" { print $2 }' "$WORK/j.out" | LC_ALL=C sort)"
check_contains "the day 3 days ahead is among those created" "fetch_runs_p$GAP" "$CREATED"
check_contains "the summary counts what was done" \
	"fetch_runs kept 2 days, rejected_records 90 days: $(grep -c . <<<"$CREATED") created, $(grep -c . <<<"$DROPPED") dropped (" \
	"$(head -1 "$WORK/j.out")"
check_contains "each action is logged too, as the daemon's janitor logs it" "created partition fetch_runs_p$GAP" "$(cat "$WORK/j.err")"
ksi janitor -c "$WORK/c2.conf" >"$WORK/j2.out" 2>/dev/null
check "run again: nothing to do, exit 0" "0 fetch_runs kept 2 days, rejected_records 90 days: nothing to create or drop; nothing changed" \
	"$? $(cat "$WORK/j2.out")"
ksi status -c "$WORK/c2.conf" >"$WORK/s2.out" 2>&1
check "status exits 0 afterwards" "0" "$?"
check_contains "status: the oldest day kept is 2 days ago, partitions a week ahead" \
	"oldest kept $(date -u -d '-2 days' +%Y-%m-%d), next boundary $TOMORROW, partitions until $(utc "date_trunc('day', now()) + interval '8 days'")" \
	"$(tr -s ' \n' '  ' <"$WORK/s2.out")"

# ---------------------------------------------------------------------------
echo "# 5. status warns when partitions run out; janitor puts it right"
for d in 1 2 3 4 5 6 7; do
	sql "DROP TABLE ksi_sales.fetch_runs_p$(date -u -d "+$d days" +%Y%m%d)" >/dev/null
done
ksi status -c "$WORK/c2.conf" >"$WORK/w.out" 2>&1
check "status exits 1 when fetch_runs has partitions for less than 2 days" "1" "$?"
HOURS=$(sql "SELECT floor(extract(epoch FROM date_trunc('day', now()) + interval '1 day' - now()) / 3600)")
check_contains "the warning says until when, how soon, what fails and what to run" \
	"warning: fetch_runs has partitions only until $TOMORROW ($HOURS h ahead): the daemon's writes fail after that; is a janitor running? ksi-salesd janitor creates them" \
	"$(tr -s ' \n' '  ' <"$WORK/w.out")"
check "no line of it is wider than 80 columns" "0" "$(awk 'length($0) > 80' "$WORK/w.out" | wc -l)"
ksi status -c "$WORK/c2.conf" --no-fail >/dev/null 2>&1
check "--no-fail exits 0 all the same" "0" "$?"
ksi status -c "$WORK/c2.conf" --json >"$WORK/w.json" 2>"$WORK/w.err"
check "--json exits 1 too" "1" "$?"
check "--json is still one JSON list" "array" "$(sql "SELECT json_typeof(:'doc'::json)" -v doc="$(cat "$WORK/w.json")")"
check_contains "--json: the warning goes to the log" "fetch_runs has partitions only until $TOMORROW" "$(cat "$WORK/w.err")"
sql "DROP TABLE ksi_sales.fetch_runs_p$(date -u +%Y%m%d)" >/dev/null
NOPART=$(sql "INSERT INTO ksi_sales.fetch_runs (connector_id, started_at, finished_at, outcome) VALUES (1, now(), now(), 'ok')" 2>&1)
check_contains "with no partition for now an insert fails (there is no DEFAULT partition)" "no partition of relation \"fetch_runs\" found for row" "$NOPART"
ksi status -c "$WORK/c2.conf" >"$WORK/n.out" 2>&1
check "status exits 1" "1" "$?"
FLAT=$(tr -s ' \n' '  ' <"$WORK/n.out")
check_absent "rejected_records, whose partitions are there, has no warning" "partition of rejected_records" "$FLAT"
check_contains "fetch_runs: no partition for now" "oldest kept $(date -u -d '-2 days' +%Y-%m-%d), no partition for now" "$FLAT"
check_contains "and the warning says the writes fail" \
	"warning: no partition of fetch_runs takes rows now: the daemon's writes fail; is a janitor running? ksi-salesd janitor creates them" "$FLAT"
ksi janitor -c "$WORK/c2.conf" >"$WORK/r.out" 2>/dev/null
check "janitor creates today's and the week's partitions again" "0 8" \
	"$? $(awk '$1 == "created" && $2 ~ /^fetch_runs_p/' "$WORK/r.out" | wc -l)"
ksi status -c "$WORK/c2.conf" >"$WORK/ok.out" 2>&1
check "status exits 0 again, without a warning" "0 0" "$? $(grep -c warning "$WORK/ok.out")"
sql "INSERT INTO ksi_sales.fetch_runs (connector_id, started_at, finished_at, outcome) VALUES (1, now(), now(), 'ok')" >/dev/null
check "and an insert succeeds" "0" "$?"

# ---------------------------------------------------------------------------
echo "# 6. usage and exit codes"
ksi janitor --wide >/dev/null 2>&1
check "janitor --wide (status's option) exits 2" "2" "$?"
ksi status --dry-run >/dev/null 2>&1
check "status --dry-run exits 2" "2" "$?"
ksi janitor now >/dev/null 2>&1
check "janitor with an argument exits 2" "2" "$?"
out=$(ksi janitor --help)
check "janitor --help exits 0 and starts with its usage" "0 usage: ksi-salesd janitor [--dry-run] [--json]" "$? ${out%% [-c*}"
check_contains "--help lists the command" "janitor          creates partitions ahead" "$(ksi --help)"
ksi janitor --dry-run -c "$WORK/c30.conf" -d "host=$WORK/nowhere dbname=x" >/dev/null 2>"$WORK/u.err"
check "janitor against an unreachable database exits 3" "3" "$?"
printf '[retention]\nfetch_runs = 12h\n' >"$WORK/bad.conf"
ksi janitor --dry-run -c "$WORK/bad.conf" >/dev/null 2>"$WORK/b.err"
check "a retention under a day in the file exits 2" "2" "$?"

echo "# janitor: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
