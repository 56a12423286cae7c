#!/usr/bin/env bash
# Integration tests of `ksi-salesd test-connection`: the real binary against
# the fake customer API playing a guide-following API and the usual customer
# bugs, and a throwaway PostgreSQL for --connector (which must write nothing).
#   probe.sh BINARY FAKEAPI
# With KSI_WRAP set (e.g. "valgrind --error-exitcode=99 ..."), every run of
# the binary goes through it.
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"

unset KSI_SALESD_TOKEN


pg_start || { echo "could not start PostgreSQL" >&2; exit 1; }
fake_start "$FAKE" --token "$TOKEN" || { cat "$WORK/fake.out" >&2; exit 1; }

cat >"$WORK/test.conf" <<CONF
[http]
connect_timeout = 2s
[log]
level = info
CONF
printf '%s\n' "$TOKEN" >"$WORK/token"
chmod 600 "$WORK/token"


# probe ARGS...: runs test-connection (token from a file), sets RC, OUT, ERR;
# everything it prints is kept in all.txt for the token check.
RUN=0
probe() {
	RUN=$((RUN + 1))
	ksi test-connection -c "$WORK/test.conf" "$@" >"$WORK/out.$RUN" 2>"$WORK/err.$RUN"
	RC=$?
	OUT=$(cat "$WORK/out.$RUN")
	ERR=$(cat "$WORK/err.$RUN")
	cat "$WORK/out.$RUN" "$WORK/err.$RUN" >>"$WORK/all.txt"
}
probe_url() {
	local path=$1
	shift
	probe --url "$FAKE_URL/$path" --token-file "$WORK/token" "$@"
}

# status_of CHECK: the status printed on CHECK's line of the text report.
status_of() {
	awk -v c="$1" '$2 == c { print $1 }' <<<"$OUT"
}
# verdict_of: PASS, WARN or FAIL from the text report's last line.
verdict_of() {
	sed -n 's/^verdict: \([A-Z]*\):.*/\1/p' <<<"$OUT"
}
# json_field KEY: OUT parsed by PostgreSQL as JSON (so it must be valid).
json_field() {
	sql "SELECT :'doc'::json->>'$1'" -v doc="$OUT" 2>&1
}

REQUIRED="auth bare_list records all_codes plus_offset latency"

ksi migrate 2>"$WORK/migrate.log"
check "migrate exits 0" 0 $?

echo "# (a) an API that follows the guide"
probe_url sales --codes 0002,0001,0003
check "exits 0" 0 "$RC"
for c in $REQUIRED; do
	check "$c is PASS" PASS "$(status_of "$c")"
done
check "gzip is INFO" INFO "$(status_of gzip)"
check "the verdict is PASS" PASS "$(verdict_of)"
check_contains "the auth evidence shows both answers" "HTTP 200 with the token, HTTP 401 without one" "$OUT"
check_contains "the window is the 24 hours before the current hour, in UTC" \
	"$(date -u -d '-24 hours' +%Y-%m-%dT%H:00:00+00:00) … $(date -u -d '-1 hour' +%Y-%m-%dT%H:59:59+00:00) (UTC)" "$OUT"
GOOD_TEXT=$OUT
probe_url sales --codes 0002,0001,0003 --json
check "--json exits 0 too" 0 "$RC"
check "--json parses and has the same verdict" PASS "$(json_field verdict)"
check "--json names the endpoint" "$FAKE_URL/sales" "$(json_field endpoint)"
check "--json lists every check" "auth bare_list records all_codes plus_offset latency gzip" \
	"$(sql "SELECT string_agg(c->>'name', ' ') FROM json_array_elements(:'doc'::json->'checks') c" -v doc="$OUT")"
check "--json: every required check PASS" "PASS" \
	"$(sql "SELECT string_agg(DISTINCT c->>'status', ',') FROM json_array_elements(:'doc'::json->'checks') c
	        WHERE (c->>'required')::boolean" -v doc="$OUT")"
check_contains "the '+09:00' window travels as %2B09%3A00" "%2B09%3A00" "$(cat "$WORK/fake.log")"

echo "# credentials: the no-token probe sends none; user:password@ in a URL is refused, never sent"
# The fake API's log says auth=no only when no Authorization header came.
n0=$(wc -l <"$WORK/fake.log")
probe_url sales --codes 0001
REQS=$(tail -n +"$((n0 + 1))" "$WORK/fake.log")
check "the probe made its requests" 0 "$RC"
check "exactly one request carries no Authorization header (the no-token probe)" 1 "$(grep -c ' auth=no ' <<<"$REQS")"
check "every other request carries the bearer token and nothing else" \
	"$(($(wc -l <<<"$REQS") - 1))" "$(grep -c ' auth=yes ' <<<"$REQS")"
n0=$(wc -l <"$WORK/fake.log")
probe --url "${FAKE_URL/http:\/\//http://ksiuser:ksipass@}/sales" --token-file "$WORK/token" --codes 0001
check "a URL with user:password@: exits 2" 2 "$RC"
check_contains "a URL with user:password@: says why" "endpoint_url holds credentials" "$ERR"
check_absent "a URL with user:password@: the password is never printed" "ksipass" "$OUT$ERR"
check "a URL with user:password@: no request reached the API (no Basic credentials either)" \
	"$n0" "$(wc -l <"$WORK/fake.log")"
check "no request ever carried Basic credentials" 0 "$(grep -c ' auth=basic ' "$WORK/fake.log")"

probe_url sales --codes 0001,0002 --from 2024-03-01T00:00:00+01:00 --to 2024-03-01T12:00:00+01:00
check "--from/--to: exits 0" 0 "$RC"
check_contains "--from/--to: the window asked is the one given" \
	"2024-02-29T23:00:00+00:00 … 2024-03-01T10:59:59+00:00" "$OUT"
check_contains "--from/--to: 12 hours of 2 codes" "all 24 records accepted" "$OUT"

# bad_api NAME PATH CODES NEEDLE CHECK: exit 1, CHECK is FAIL, the report
# names the problem, and --json says FAIL as well.
bad_api() {
	local name=$1 path=$2 codes=$3 needle=$4 failing=$5
	echo "# $name"
	probe_url "$path" --codes "$codes"
	check "$name: exits 1" 1 "$RC"
	check "$name: $failing is FAIL" FAIL "$(status_of "$failing")"
	check "$name: the verdict is FAIL" FAIL "$(verdict_of)"
	check_contains "$name: the report names the problem" "$needle" "$OUT"
	probe_url "$path" --codes "$codes" --json
	check "$name: --json exits 1" 1 "$RC"
	check "$name: --json parses and says FAIL" FAIL "$(json_field verdict)"
	check "$name: --json has $failing FAIL" FAIL \
		"$(sql "SELECT c->>'status' FROM json_array_elements(:'doc'::json->'checks') c
		        WHERE c->>'name' = '$failing'" -v doc="$OUT")"
}
bad_api "(b) only the last code honoured" lastcode/sales 0001,0002,0003 \
	"honours only the last ext_ref_codes parameter: repeat the parameter once per store" all_codes
bad_api "(c) '+' read as a space" plusspace/sales 0001,0002 \
	"a window written with a '+' offset is misread (the '+' probably became a space" plus_offset
bad_api "(d) no token needed" noauth/sales 0001,0002 \
	"answers without a token: anyone can read this customer's sales" auth
bad_api "(e) times without an offset" localtime/sales 0001,0002 \
	"returns times without an offset" records
check_contains "(e) the report shows the first example" 'time_without_offset ×48' "$OUT"

echo "# an API that refuses the token"
probe --url "$FAKE_URL/sales" --token wrong-token --codes 0001
check "a refused token: exits 1" 1 "$RC"
check "a refused token: auth is FAIL" FAIL "$(status_of auth)"
check_contains "a refused token: says so" "the API refused the token" "$OUT"

echo "# --connector: loaded from the database, nothing written"
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, timezone, request_timeout)
     VALUES ('acme', '$FAKE_URL/sales', :'token', 'Europe/Madrid', '10 seconds'),
            ('kolkata', '$FAKE_URL/sales', :'token', 'Asia/Kolkata', '10 seconds');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT c.name || ' ' || code, c.id, code
     FROM ksi_sales.connectors c, unnest(ARRAY['0001', '0002']) AS code;" -v token="$TOKEN" >/dev/null
COUNTS="SELECT (SELECT count(*) FROM ksi_sales.fetch_runs) || ' ' || (SELECT count(*) FROM ksi_sales.sales_hourly)
        || ' ' || (SELECT count(*) FROM ksi_sales.rejected_records)
        || ' ' || (SELECT count(*) FROM ksi_sales.connector_state WHERE synced_until IS NOT NULL)"
BEFORE=$(sql "$COUNTS")
probe --connector acme
check "--connector: exits 0" 0 "$RC"
check "--connector: the verdict is PASS" PASS "$(verdict_of)"
check_contains "--connector: names the connector" "(connector acme)" "$OUT"
check_contains "--connector: the window is written in the connector's zone" "(Europe/Madrid), 2 codes: 0001, 0002" "$OUT"
check_contains "--connector: the request_timeout is the connector's" "(request_timeout 10 s)" "$OUT"
probe --connector kolkata --json
check "--connector in a +05:30 zone: exits 0" 0 "$RC"
check "--connector in a +05:30 zone: --json says PASS" PASS "$(json_field verdict)"
check "--connector in a +05:30 zone: an INFO line says so" INFO \
	"$(sql "SELECT c->>'status' FROM json_array_elements(:'doc'::json->'checks') c
	        WHERE c->>'name' = 'zone_offset'" -v doc="$OUT")"
check "--connector writes nothing (fetch_runs, sales_hourly, rejected_records, synced_until)" \
	"$BEFORE" "$(sql "$COUNTS")"
ksi test-connection -c "$WORK/test.conf" --connector acme -d "host=$WORK/nowhere dbname=x" \
	>"$WORK/unreach.out" 2>"$WORK/unreach.err"
check "--connector with the database unreachable: exits 3" 3 $?
check_contains "--connector with the database unreachable: says so" "database unreachable" \
	"$(cat "$WORK/unreach.err")"

echo "# usage errors: exit 2, a clear message, no report"
# usage_error NAME NEEDLE ARGS...
usage_error() {
	local name=$1 needle=$2
	shift 2
	probe "$@"
	check "$name: exits 2" 2 "$RC"
	check_contains "$name: says why" "$needle" "$ERR"
	check "$name: prints no report" "" "$OUT"
}
usage_error "an unknown connector" 'no connector is named "nope"' --connector nope
usage_error "--from after --to" "is not before --to" --url "$FAKE_URL/sales" --token-file "$WORK/token" \
	--codes 0001 --from 2024-03-02T00:00:00Z --to 2024-03-01T00:00:00Z
usage_error "a time without an offset" "--from 2024-03-01T00:00:00 has no UTC offset" --url "$FAKE_URL/sales" \
	--token-file "$WORK/token" --codes 0001 --from 2024-03-01T00:00:00 --to 2024-03-02T00:00:00Z
usage_error "--url without --codes" "--url needs --codes" --url "$FAKE_URL/sales" --token-file "$WORK/token"
usage_error "neither --connector nor --url" "give --connector NAME, or --url URL"
usage_error "--url without a token" "--url needs a token" --url "$FAKE_URL/sales" --codes 0001
usage_error "an empty code" "code #2 is empty" --url "$FAKE_URL/sales" --token-file "$WORK/token" --codes 0001,,0002
usage_error "--from not on the hour" "is not the start of an hour" --url "$FAKE_URL/sales" \
	--token-file "$WORK/token" --codes 0001 --from 2024-03-01T00:30:00Z --to 2024-03-02T00:00:00Z

echo "# the token stays secret"
# A plain command, not the ksi function: $! must be the binary itself, not a
# subshell (whose arguments would hide nothing). Never under KSI_WRAP either:
# valgrind keeps its own copy of the arguments, which the binary cannot wipe.
"$BIN" test-connection -c "$WORK/test.conf" --url "$FAKE_URL/delay/3000/sales" --codes 0001 \
	--token "$TOKEN" >"$WORK/ps.out" 2>"$WORK/ps.err" &
BG_PID=$!
PIDS+=("$BG_PID")
if wait_for "test-connection to reach the fake API" 20 grep -q "/delay/3000/sales" "$WORK/fake.log"; then
	ARGS=$(ps -o args= -p "$BG_PID")
	check_contains "ps shows test-connection running" "test-connection" "$ARGS"
	check_absent "--token does not show in ps" "$TOKEN" "$ARGS"
else
	not_ok "test-connection reached the fake API"
fi
wait "$BG_PID"
check "the delayed test-connection exits 0" 0 $?
cat "$WORK/ps.out" "$WORK/ps.err" >>"$WORK/all.txt"
check_contains "the delayed test-connection waited for the answer" "PASS  latency" "$(cat "$WORK/ps.out")"
check_absent "the token never appears in stdout or stderr ($RUN runs)" "$TOKEN" "$(cat "$WORK/all.txt")"

echo "# the guide-following report"
printf '%s\n' "$GOOD_TEXT" | sed 's/^/#   /'

echo "probe: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
