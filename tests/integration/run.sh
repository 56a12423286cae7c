#!/usr/bin/env bash
# Integration tests: the real binary (built with ASan and UBSan) against a
# throwaway PostgreSQL and the fake customer API; asserts on the tables.
#   run.sh BINARY FAKEAPI
# With KSI_WRAP set (e.g. "valgrind --error-exitcode=99 ..."), every run of
# the binary goes through it: `make valgrind` uses that on the release build.
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"



# Every statement is logged with its application name, so the canary can
# be looked for in what the daemon sent.
export PG_EXTRA_OPTS="-c log_statement=all -c log_line_prefix='%a|'"
pg_start || { echo "could not start PostgreSQL" >&2; exit 1; }
fake_start "$FAKE" --token "$TOKEN" || { cat "$WORK/fake.out" >&2; exit 1; }

cat >"$WORK/test.conf" <<CONF
[daemon]
max_concurrent_fetches = 32
max_per_host = 64
[http]
max_response_bytes = 1MiB
connect_timeout = 2s
[log]
level = debug
CONF


# fake_answer FROM TO CODE...: what the fake API answers for a window,
# fetched with curl, to compare the tables against.
fake_answer() {
	local from=$1 to=$2 q
	shift 2
	q="fromTime=$(printf %s "$from" | sed 's/+/%2B/')&toTime=$(printf %s "$to" | sed 's/+/%2B/')"
	for c in "$@"; do q="$q&ext_ref_codes=$c"; done
	curl -sf -H "Authorization: Bearer $TOKEN" "$FAKE_URL/sales?$q"
}

echo "# migrate"
ksi migrate 2>"$WORK/migrate.log"
check "migrate on an empty database exits 0" 0 $?
VERSIONS=$(cd "$ROOT/src/migrations" && ls [0-9]*.sql | sed 's/_.*//; s/^0*//' | paste -sd, -)
NVERSIONS=$(cd "$ROOT/src/migrations" && ls [0-9]*.sql | wc -l)
check "migrate records every embedded version" "$VERSIONS" "$(sql "SELECT string_agg(version::text, ',' ORDER BY version) FROM ksi_sales.schema_migrations")"
ksi migrate 2>"$WORK/migrate2.log"
check "a second migrate exits 0" 0 $?
check_contains "a second migrate says it is up to date" "up to date" "$(cat "$WORK/migrate2.log")"

sql "CREATE DATABASE race" >/dev/null
RACE_URL="${CONNINFO/dbname=postgres/dbname=race}"
ksi migrate -d "$RACE_URL" 2>"$WORK/race1.log" & p1=$!
ksi migrate -d "$RACE_URL" 2>"$WORK/race2.log" & p2=$!
wait $p1; r1=$?
wait $p2; r2=$?
check "two migrate at once both succeed" "0 0" "$r1 $r2"
check "two migrate at once apply each version once" "$NVERSIONS" \
	"$(psql "$RACE_URL" -X -A -t -c 'SELECT count(*) FROM ksi_sales.schema_migrations')"

echo "# usage and configuration errors"
ksi frobnicate 2>/dev/null
check "an unknown command exits 2" 2 $?
printf '[daemon]\nlease = 5min\nmax_concurent_fetches = 3\n' >"$WORK/bad.conf"
ksi once -c "$WORK/bad.conf" 2>"$WORK/bad.log"
check "a bad config file exits 2" 2 $?
check_contains "the config error names file, line and key" "bad.conf:3" "$(cat "$WORK/bad.log")"
check_contains "the config error names the key" "max_concurent_fetches" "$(cat "$WORK/bad.log")"
ksi once -c "$WORK/missing.conf" 2>/dev/null
check "a missing -c file exits 2" 2 $?
ksi once -c "$WORK/test.conf" -d "host=$WORK/nowhere dbname=x" 2>"$WORK/unreach.log"
check "an unreachable database exits 3" 3 $?
ksi once -c "$WORK/test.conf" -d "$RACE_URL" 2>/dev/null
check "once on an empty migrated database exits 0" 0 $?
sql "CREATE DATABASE bare" >/dev/null
ksi once -c "$WORK/test.conf" -d "${CONNINFO/dbname=postgres/dbname=bare}" 2>"$WORK/bare.log"
check "once before migrate exits 2" 2 $?
check_contains "once before migrate says to run migrate" "ksi-salesd migrate" "$(cat "$WORK/bare.log")"
KSI_SALESD_DATABASE_URL="host=$WORK/nowhere dbname=x" ksi once -c "$WORK/test.conf" -d "$CONNINFO" 2>/dev/null
check "-d wins over KSI_SALESD_DATABASE_URL" 0 $?

echo "# a connector with three stores, the guide's steps as SQL"
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
     VALUES ('acme', '$FAKE_URL/sales', '$TOKEN', '2 days');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'Acme ' || code, (SELECT id FROM ksi_sales.connectors WHERE name = 'acme'), code
     FROM unnest(ARRAY['0001', '0002', '0003']) AS code;
     INSERT INTO ksi_sales.connectors (name, endpoint_url) VALUES ('lonely', '$FAKE_URL/sales');
     INSERT INTO ksi_sales.connectors (name, endpoint_url, enabled) VALUES ('off', '$FAKE_URL/sales', false);
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'Off', id, '0001' FROM ksi_sales.connectors WHERE name = 'off';"
once
check "once exits 0 when every connector succeeds" 0 "$RC"
ACME="(SELECT id FROM ksi_sales.connectors WHERE name = 'acme')"
check "acme made 3 requests (49 hours in 24-hour windows), all ok" "3 ok" \
	"$(sql "SELECT count(*) || ' ' || string_agg(DISTINCT outcome, ',') FROM ksi_sales.fetch_runs WHERE connector_id = $ACME")"
check "the first window starts at the hour two days back" "t" \
	"$(sql "SELECT min(window_from) BETWEEN date_trunc('hour', min(started_at) - interval '2 days 1 minute')
	                               AND date_trunc('hour', min(started_at) - interval '2 days')
	        FROM ksi_sales.fetch_runs WHERE connector_id = $ACME")"
check "windows are contiguous, oldest first, at most 24 hours" "t" \
	"$(sql "SELECT bool_and(window_to - window_from <= interval '24 hours'
	                 AND (prev IS NULL OR prev = window_from))
	        FROM (SELECT window_from, window_to, lag(window_to) OVER (ORDER BY id) AS prev
	              FROM ksi_sales.fetch_runs WHERE connector_id = $ACME) w")"
check "synced_until is the end of the last window" "t" \
	"$(sql "SELECT st.synced_until = max(r.window_to) FROM ksi_sales.connector_state st
	        JOIN ksi_sales.fetch_runs r ON r.connector_id = st.connector_id
	        WHERE st.connector_id = $ACME GROUP BY st.synced_until")"
check "every store has every hour of the window" "3 stores x 49 hours" \
	"$(sql "SELECT count(DISTINCT store_id) || ' stores x ' || (count(*) / count(DISTINCT store_id)) || ' hours'
	        FROM ksi_sales.sales_hourly WHERE connector_id = $ACME")"
# Compare every stored value with what the API says for the same window.
read -r WFROM WTO < <(sql "SELECT to_char(min(window_from), 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"'),
	to_char(max(window_to) - interval '1 second', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')
	FROM ksi_sales.fetch_runs WHERE connector_id = $ACME" -F ' ')
ANSWER=$(fake_answer "$WFROM" "$WTO" 0001 0002 0003)
check "the stored values equal the API's answer, record for record" "147 147" \
	"$(sql "SELECT json_array_length(:'answer'::json) || ' ' || count(*)
	        FROM json_array_elements(:'answer'::json) e
	        JOIN ksi_sales.stores s ON s.connector_id = $ACME AND s.ext_ref_code = e->>'ext_ref_code'
	        JOIN ksi_sales.sales_hourly h ON h.store_id = s.id AND h.hour = (e->>'time')::timestamptz
	             AND h.num_tickets = (e->>'num_tickets')::int" -v answer="$ANSWER")"
check "the request carried the token and percent-encoded offsets" "yes" \
	"$(grep -c 'fromTime=[^&]*%2B00%3A00' "$WORK/fake.log" >/dev/null && grep -q 'auth=yes' "$WORK/fake.log" && echo yes)"
check "a connector without stores is not polled" "0 no stores linked" \
	"$(sql "SELECT (SELECT count(*) FROM ksi_sales.fetch_runs r WHERE r.connector_id = h.connector_id) || ' ' || state
	        FROM ksi_sales.connector_health h WHERE name = 'lonely'")"
check "a disabled connector is not polled" "0 disabled" \
	"$(sql "SELECT (SELECT count(*) FROM ksi_sales.fetch_runs r WHERE r.connector_id = h.connector_id) || ' ' || state
	        FROM ksi_sales.connector_health h WHERE name = 'off'")"
check "connector_health shows acme ok with no failures" "ok|0|true" \
	"$(sql "SELECT state || '|' || consecutive_failures || '|' || (rows_last_24h > 0) FROM ksi_sales.connector_health WHERE name = 'acme'")"

echo "# a second once is idempotent"
snapshot() { sql "SELECT md5(string_agg(store_id || ':' || hour || ':' || num_tickets, ',' ORDER BY store_id, hour)) FROM ksi_sales.sales_hourly"; }
before=$(snapshot)
count_before=$(sql "SELECT count(*) FROM ksi_sales.sales_hourly")
once
check "the second once exits 0" 0 "$RC"
check "the second once changes no value and adds no row" "$before $count_before" "$(snapshot) $(sql 'SELECT count(*) FROM ksi_sales.sales_hourly')"
check "the second once re-reads only the lookback (3 hours + the open hour): one request" "1" \
	"$(sql "SELECT count(*) FROM ksi_sales.fetch_runs WHERE connector_id = $ACME AND started_at > (SELECT max(finished_at) FROM ksi_sales.fetch_runs WHERE id IN (SELECT id FROM ksi_sales.fetch_runs WHERE connector_id = $ACME ORDER BY id LIMIT 3))")"

echo "# a changed value is updated in place"
sql "UPDATE ksi_sales.connectors SET endpoint_url = '$FAKE_URL/seed/5/sales' WHERE name = 'acme'" >/dev/null
sql "CREATE TABLE public.before AS SELECT store_id, hour, num_tickets FROM ksi_sales.sales_hourly"
once
check "once with new values exits 0" 0 "$RC"
check "no row added" "$count_before" "$(sql 'SELECT count(*) FROM ksi_sales.sales_hourly')"
check "the re-read hours (lookback 3h + the open hour, 3 stores) changed in place" "12" \
	"$(sql "SELECT count(*) FROM ksi_sales.sales_hourly h JOIN public.before b USING (store_id, hour)
	        WHERE h.num_tickets <> b.num_tickets")"
check "the changed hours are the most recent ones" "t" \
	"$(sql "SELECT bool_and(h.hour >= date_trunc('hour', now()) - interval '3 hours')
	        FROM ksi_sales.sales_hourly h JOIN public.before b USING (store_id, hour)
	        WHERE h.num_tickets <> b.num_tickets")"

echo "# an empty list deletes nothing"
before=$(snapshot)
sql "UPDATE ksi_sales.connectors SET endpoint_url = '$FAKE_URL/empty/sales' WHERE name = 'acme'" >/dev/null
once
check "once with an empty answer exits 0" 0 "$RC"
check "an empty answer keeps every row and value" "$before" "$(snapshot)"
check "the empty answer is an ok run with 0 records" "ok 0" \
	"$(sql "SELECT outcome || ' ' || records_received FROM ksi_sales.fetch_runs WHERE connector_id = $ACME ORDER BY id DESC LIMIT 1")"
sql "UPDATE ksi_sales.connectors SET endpoint_url = '$FAKE_URL/sales' WHERE name = 'acme'" >/dev/null

echo "# refused responses: nothing written, window not advanced"
# name|path|request_timeout|expected outcome|text the error must contain
cases="wrapped|wrapped/sales|30s|invalid_response|an object with keys data, meta
broken|broken/sales|30s|invalid_response|not valid JSON
html|html/sales|30s|invalid_response|HTML page
trailing|trailing/sales|30s|invalid_response|followed by
status500|status/500/sales|30s|http_error|HTTP 500
status401|status/401/sales|30s|auth_failed|HTTP 401
redirect|redirect/sales|30s|redirected|/elsewhere/sales
huge|huge/2000000/sales|30s|too_large|max_response_bytes
slow|delay/3000/sales|1s|timeout|timeout
drip|drip/500/sales|2s|timeout|timeout
reset|reset/sales|30s|network_error|transfer closed
badurl|sales|30s|config_error|endpoint_url"
n=0
while IFS='|' read -r name path timeout _ _; do
	n=$((n + 1))
	url="$FAKE_URL/$path"
	[ "$name" = badurl ] && url="http://[::1/sales"
	sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill, request_timeout)
	     VALUES ('bad-$name', '$url', '$TOKEN', '2 hours', '$timeout');
	     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
	     SELECT 'Store of $name', id, 'B$n' FROM ksi_sales.connectors WHERE name = 'bad-$name'" >/dev/null
done <<<"$cases"
rows_before=$(sql "SELECT count(*) FROM ksi_sales.sales_hourly")
once
check "once exits 1 when a connector fails" 1 "$RC"
check "the good connector still succeeded in the same run" "ok" \
	"$(sql "SELECT outcome FROM ksi_sales.fetch_runs WHERE connector_id = $ACME ORDER BY id DESC LIMIT 1")"
while IFS='|' read -r name _ _ outcome text; do
	row=$(sql "SELECT r.outcome || '|' || coalesce(r.error, '') FROM ksi_sales.fetch_runs r
	           JOIN ksi_sales.connectors c ON c.id = r.connector_id WHERE c.name = 'bad-$name'")
	check "$name: one run with outcome $outcome" "$outcome" "${row%%|*}"
	check_contains "$name: the error says what was wrong" "$text" "$row"
	check "$name: nothing written, window not advanced, no refusals" "0|0|" \
		"$(sql "SELECT (SELECT count(*) FROM ksi_sales.sales_hourly h WHERE h.connector_id = c.id) || '|' ||
		               (SELECT count(*) FROM ksi_sales.rejected_records x WHERE x.connector_id = c.id) || '|' ||
		               coalesce((SELECT synced_until::text FROM ksi_sales.connector_state s WHERE s.connector_id = c.id), '')
		        FROM ksi_sales.connectors c WHERE c.name = 'bad-$name'")"
done <<<"$cases"
check_absent "the redirect error does not carry the target's query" "token=leak" \
	"$(sql "SELECT string_agg(error, ' ') FROM ksi_sales.fetch_runs")"
check "connector_health counts the failures" "failing 1" \
	"$(sql "SELECT state || ' ' || consecutive_failures FROM ksi_sales.connector_health WHERE name = 'bad-wrapped'")"
check "acme's rows were untouched by the failures" "$rows_before" \
	"$(sql "SELECT count(*) FROM ksi_sales.sales_hourly")"
sql "UPDATE ksi_sales.connectors SET enabled = false WHERE name LIKE 'bad-%'" >/dev/null

echo "# refused records: the rest is written, each refusal recorded"
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
     VALUES ('messy', '$FAKE_URL/bad/sales', '$TOKEN', '2 hours');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'Messy ' || code, (SELECT id FROM ksi_sales.connectors WHERE name = 'messy'), code
     FROM unnest(ARRAY['M1', 'M2']) AS code" >/dev/null
once
check "a response with bad records is still an ok run" 0 "$RC"
MESSY="(SELECT id FROM ksi_sales.connectors WHERE name = 'messy')"
reasons=$(sql "SELECT string_agg(DISTINCT reason, ',' ORDER BY reason) FROM ksi_sales.rejected_records WHERE connector_id = $MESSY")
for r in not_an_object missing_field wrong_type time_without_offset time_not_on_hour unknown_ext_ref_code \
	num_tickets_negative num_tickets_fractional duplicate; do
	check_contains "refusal recorded: $r" "$r" "$reasons"
done
check "both copies of a duplicated hour are refused" "2" \
	"$(sql "SELECT count(*) FROM ksi_sales.rejected_records WHERE connector_id = $MESSY AND reason = 'duplicate'")"
check "the duplicated hour is not stored" "0" \
	"$(sql "SELECT count(*) FROM ksi_sales.sales_hourly h JOIN ksi_sales.rejected_records r
	        ON r.connector_id = h.connector_id AND r.reason = 'duplicate'
	        AND h.ext_ref_code = (r.record::json->>'ext_ref_code') AND h.hour = (r.record::json->>'time')::timestamptz")"
check "every other hour is stored" "t" \
	"$(sql "SELECT count(*) > 0 AND count(*) = (SELECT sum(records_received - records_rejected) FROM ksi_sales.fetch_runs WHERE connector_id = $MESSY)
	        FROM ksi_sales.sales_hourly WHERE connector_id = $MESSY")"
check "fetch_runs counts received, upserted and refused" "t" \
	"$(sql "SELECT bool_and(records_received = records_upserted + records_rejected AND records_rejected >= 10)
	        FROM ksi_sales.fetch_runs WHERE connector_id = $MESSY")"
check "each refusal keeps the record's JSON text and a reason for a person" "t" \
	"$(sql "SELECT bool_and(length(record) > 0 AND length(detail) > 10) FROM ksi_sales.rejected_records WHERE connector_id = $MESSY")"
sql "UPDATE ksi_sales.connectors SET enabled = false WHERE name = 'messy'" >/dev/null

echo "# legal JSON the guide refuses record by record: lone surrogates, a repeated key, an off-grid hour"
# fakeapi's legal modifier (tests/fakeapi/README.md): the 6 normal records,
# the first with an ignored "note" holding a surrogate pair and a lone
# \ud800, then a lone \udc00 in ext_ref_code, a lone \ud800 in a key,
# num_tickets twice, and 17:00+05:30-style time off this UTC connector's grid.
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
     VALUES ('legal', '$FAKE_URL/legal/sales', '$TOKEN', '2 hours');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'Legal ' || code, (SELECT id FROM ksi_sales.connectors WHERE name = 'legal'), code
     FROM unnest(ARRAY['L1', 'L2']) AS code" >/dev/null
once
check "once exits 0: legal JSON refused record by record does not fail the run" 0 "$RC"
LEGAL="(SELECT id FROM ksi_sales.connectors WHERE name = 'legal')"
check "one ok run: 10 received, 6 upserted, 4 refused" "1 ok 10 6 4" \
	"$(sql "SELECT count(*) || ' ' || string_agg(outcome, ',') || ' ' || sum(records_received) || ' ' ||
	               sum(records_upserted) || ' ' || sum(records_rejected)
	        FROM ksi_sales.fetch_runs WHERE connector_id = $LEGAL")"
check "synced_until advanced to the end of the window: the connector is not stuck" "t" \
	"$(sql "SELECT st.synced_until IS NOT NULL AND st.synced_until = (SELECT max(window_to) FROM ksi_sales.fetch_runs r WHERE r.connector_id = st.connector_id)
	        FROM ksi_sales.connector_state st WHERE st.connector_id = $LEGAL")"
check "the good records are stored: 2 stores x 3 hours, all on the UTC hour" "6 true" \
	"$(sql "SELECT count(*) || ' ' || bool_and(extract(minute FROM hour AT TIME ZONE 'UTC') = 0)
	        FROM ksi_sales.sales_hourly WHERE connector_id = $LEGAL")"
read -r LFROM LTO < <(sql "SELECT to_char(window_from, 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"'),
	to_char(window_to - interval '1 second', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')
	FROM ksi_sales.fetch_runs WHERE connector_id = $LEGAL" -F ' ')
check "the record with a lone surrogate in an ignored field is stored, with the API's value" \
	"$(sql "SELECT :'answer'::json->0->>'num_tickets'" -v answer="$(fake_answer "$LFROM" "$LTO" L1)")" \
	"$(sql "SELECT h.num_tickets FROM ksi_sales.sales_hourly h JOIN ksi_sales.fetch_runs r ON r.connector_id = h.connector_id
	        WHERE h.connector_id = $LEGAL AND h.ext_ref_code = 'L1' AND h.hour = r.window_from")"
check "each refused record is recorded with its reason, in response order" \
	"6:invalid_string,7:invalid_string,8:duplicate_key,9:time_not_on_hour" \
	"$(sql "SELECT string_agg(position || ':' || reason, ',' ORDER BY position)
	        FROM ksi_sales.rejected_records WHERE connector_id = $LEGAL")"
legal_detail() { sql "SELECT detail FROM ksi_sales.rejected_records WHERE connector_id = $LEGAL AND position = $1"; }
check_contains "ext_ref_code's detail names the field, the escape and its byte" \
	'ext_ref_code "L1\udc00" holds a lone UTF-16 surrogate escape \udc00 at byte ' "$(legal_detail 6)"
check_contains "the key's detail names the key, the escape and its byte" \
	'key "num_t\ud800ickets" holds a lone UTF-16 surrogate escape \ud800 at byte ' "$(legal_detail 7)"
check_contains "the repeated key's detail names it and both places" \
	"key num_tickets appears 2 times in this record (at bytes " "$(legal_detail 8)"
check_contains "the off-grid hour's detail names the connector's zone" \
	"in the connector's zone UTC, not the start of an hour there" "$(legal_detail 9)"
check_contains "the refused record's JSON text is kept as sent" \
	'"num_t\ud800ickets":5' "$(sql "SELECT record FROM ksi_sales.rejected_records WHERE connector_id = $LEGAL AND position = 7")"
sql "UPDATE ksi_sales.connectors SET enabled = false WHERE name = 'legal'" >/dev/null

echo "# time zones: +05:30 and a negative offset"
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill, timezone)
     VALUES ('kolkata', '$FAKE_URL/sales', '$TOKEN', '5 hours', 'Asia/Kolkata'),
            ('santiago', '$FAKE_URL/sales', '$TOKEN', '5 hours', 'America/Santiago');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code, timezone)
     SELECT c.name, c.id, 'K1', c.timezone FROM ksi_sales.connectors c WHERE c.name IN ('kolkata', 'santiago')" >/dev/null
once
check "zoned connectors poll ok" 0 "$RC"
check "Asia/Kolkata hours start at :30 UTC (local hours)" "true 6" \
	"$(sql "SELECT bool_and(extract(minute FROM hour AT TIME ZONE 'UTC') = 30)::text || ' ' || count(*)
	        FROM ksi_sales.sales_hourly WHERE connector_id = (SELECT id FROM ksi_sales.connectors WHERE name = 'kolkata')")"
check "the +05:30 offset reached the API as %2B05%3A30" "yes" \
	"$(grep -q 'fromTime=[^&]*%2B05%3A30' "$WORK/fake.log" && echo yes)"
check "America/Santiago hours are stored" "6" \
	"$(sql "SELECT count(*) FROM ksi_sales.sales_hourly WHERE connector_id = (SELECT id FROM ksi_sales.connectors WHERE name = 'santiago')")"
check "sales_daily sums hours per local day" "t" \
	"$(sql "SELECT sum(num_tickets) = (SELECT sum(num_tickets) FROM ksi_sales.sales_hourly h JOIN ksi_sales.stores s ON s.id = h.store_id WHERE s.name = 'kolkata')
	        FROM ksi_sales.sales_daily WHERE store_name = 'kolkata'")"

echo "# many stores: codes split over requests"
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
     VALUES ('chain', '$FAKE_URL/gzip/sales', '$TOKEN', '1 hour');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'Chain ' || i, (SELECT id FROM ksi_sales.connectors WHERE name = 'chain'), 'CH' || lpad(i::text, 6, '0')
     FROM generate_series(1, 1500) AS i" >/dev/null
once
check "the chain polls ok" 0 "$RC"
CHAIN="(SELECT id FROM ksi_sales.connectors WHERE name = 'chain')"
check "1,500 codes went in several requests of the same window, each within 8,000 bytes" "t" \
	"$(sql "SELECT count(*) >= 2 AND count(DISTINCT window_from) = 1 AND sum(codes_requested) = 1500
	        FROM ksi_sales.fetch_runs WHERE connector_id = $CHAIN")"
maxlen=$(awk '/ext_ref_codes=CH/ { print length($2) }' "$WORK/fake.log" | sort -n | tail -1)
check "the longest URL path and query is under 8,000 bytes" "yes" "$([ "${maxlen:-99999}" -le 8000 ] && echo yes)"
check "every store of the chain got both hours" "3000" \
	"$(sql "SELECT count(*) FROM ksi_sales.sales_hourly WHERE connector_id = $CHAIN")"
check "gzip was offered (and the gzip answers decoded: the rows above)" "yes" \
	"$(grep -q 'gzip/sales?[^ ]* auth=yes gzip=yes' "$WORK/fake.log" && echo yes)"

echo "# concurrency: 40 slow APIs run side by side, never more than max_concurrent_fetches"
psql "$RACE_URL" -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
     SELECT 'slow-' || i, '$FAKE_URL/delay/1000/sales', '$TOKEN', '1 hour' FROM generate_series(1, 40) AS i;
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT name, id, 'S1' FROM ksi_sales.connectors WHERE name LIKE 'slow-%'"
: >"$WORK/fake.log"
once -d "$RACE_URL"
check "40 slow connectors poll ok" 0 "$RC"
peak=$(grep -o 'delay/1000/sales?[^ ]* .*inflight=[0-9]*' "$WORK/fake.log" | sed 's/.*inflight=//' | sort -n | tail -1)
check "32 requests were in flight at once (max_concurrent_fetches), never more" "32" "$peak"
check "each slow connector was fetched once" "40" "$(grep -c 'delay/1000/sales' "$WORK/fake.log")"

echo "# once claims in chunks of 4 polls per transfer slot: each connector exactly once"
sql "CREATE DATABASE chunks" >/dev/null
CHUNKS_URL="${CONNINFO/dbname=postgres/dbname=chunks}"
ksi migrate -d "$CHUNKS_URL" 2>/dev/null
psql "$CHUNKS_URL" -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
     SELECT 'chunk-' || i, '$FAKE_URL/sales', '$TOKEN', '1 hour' FROM generate_series(1, 30) AS i;
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT name, id, 'S1' FROM ksi_sales.connectors"
# 2 slots: claims of 8, so 30 connectors take four claims.
printf '[daemon]\nmax_concurrent_fetches = 2\nmax_per_host = 2\n[log]\nlevel = info\n' >"$WORK/chunks.conf"
ksi once -c "$WORK/chunks.conf" -d "$CHUNKS_URL" 2>"$WORK/chunks.log"
check "once over 30 connectors, 8 claimed at a time, exits 0" 0 $?
check "every connector polled exactly once" "30 30 1 1" \
	"$(psql "$CHUNKS_URL" -X -A -t -c "SELECT count(*) || ' ' || count(DISTINCT connector_id) || ' ' ||
	        min(n) || ' ' || max(n) FROM (SELECT connector_id, count(*) AS n FROM ksi_sales.fetch_runs
	        WHERE outcome = 'ok' GROUP BY connector_id) x")"
check_contains "it says how many it polled, all chunks together" "polling 30 connectors" "$(cat "$WORK/chunks.log")"

echo "# deny_networks is enforced on the address connected to"
printf '[http]\ndeny_networks = 127.0.0.0/8, ::1/128\n' >"$WORK/deny.conf"
sql "UPDATE ksi_sales.connectors SET enabled = (name = 'acme')" >/dev/null
requests_before=$(grep -c . "$WORK/fake.log")
ksi once -c "$WORK/deny.conf" 2>"$WORK/deny.log"
check "a connector whose host is in deny_networks fails" "1" "$?"
check_contains "with an error naming the forbidden address" "resolves to 127.0.0.1, which deny_networks forbids" \
	"$(sql "SELECT error FROM ksi_sales.fetch_runs WHERE connector_id = $ACME ORDER BY id DESC LIMIT 1")"
check "and no request reached the API" "$requests_before" "$(grep -c . "$WORK/fake.log")"

echo "# secrets"
check_absent "the token is in no log line" "$TOKEN" "$(cat "$WORK/all.log" "$WORK"/migrate*.log)"
check "the token is in no table but connectors" "0" \
	"$(sql "SELECT count(*) FROM (SELECT error AS t FROM ksi_sales.fetch_runs UNION ALL
	        SELECT record || detail FROM ksi_sales.rejected_records) x WHERE t LIKE '%$TOKEN%'")"

daemon_statements=$(grep -c '^ksi-salesd|' "$PG_DIR/server.log")
check "the statement log has the daemon's statements" "yes" "$([ "$daemon_statements" -gt 100 ] && echo yes)"
check "none of the daemon's statements carries the token" "0" "$(grep '^ksi-salesd|' "$PG_DIR/server.log" | grep -c -- "$TOKEN")"

echo
echo "integration: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
