#!/usr/bin/env bash
# Integration tests of the operators' tools: backfill and status.
#   tools.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"
pg_start || exit 1
fake_start "$FAKE" --token "$TOKEN" || exit 1
printf '[daemon]\nlease = 10s\n[log]\nlevel = info\n' >"$WORK/t.conf"
ksi migrate 2>/dev/null || exit 1

sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, timezone, max_window)
     VALUES ('chain', '$FAKE_URL/sales', '$TOKEN', 'Europe/Madrid', '24 hours'),
            ('down', '$FAKE_URL/status/500/sales', '$TOKEN', 'UTC', '24 hours');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT c.name || k, c.id, k FROM ksi_sales.connectors c, unnest(ARRAY['A1', 'A2']) AS k" >/dev/null
CHAIN="(SELECT id FROM ksi_sales.connectors WHERE name = 'chain')"
FROM=$(date -u -d '10 days ago' +%Y-%m-%dT00:00:00+01:00)
TO=$(date -u -d '7 days ago' +%Y-%m-%dT00:00:00+01:00)
runs() { sql "SELECT count(*) FROM ksi_sales.fetch_runs"; }

echo "# backfill"
ksi backfill -c "$WORK/t.conf" --connector chain --from "$FROM" --to "$TO" 2>"$WORK/b1.log"
check "backfill of 3 days exits 0" 0 $?
check "every hour from --from up to, not including, --to, for both stores" \
	"144 $(date -u -d "$FROM" '+%Y-%m-%d %H:00:00+00') $(date -u -d "$TO 1 hour ago" '+%Y-%m-%d %H:00:00+00')" \
	"$(sql "SELECT count(*) || ' ' || min(hour) || ' ' || max(hour) FROM ksi_sales.sales_hourly WHERE connector_id = $CHAIN")"
check "in max_window requests, oldest first" "3 true" \
	"$(sql "SELECT count(*) || ' ' || bool_and(prev IS NULL OR prev = window_from) FROM
	        (SELECT window_from, lag(window_to) OVER (ORDER BY started_at, id) AS prev FROM ksi_sales.fetch_runs WHERE connector_id = $CHAIN) w")"
check "a backfill leaves synced_until to the regular polls" "" \
	"$(sql "SELECT synced_until FROM ksi_sales.connector_state WHERE connector_id = $CHAIN")"
check "the lease is released afterwards" "" \
	"$(sql "SELECT lease_owner FROM ksi_sales.connector_state WHERE connector_id = $CHAIN")"
check_contains "progress lines when stderr is not a terminal" "3/3 windows, 72/72 hours" "$(cat "$WORK/b1.log")"
before=$(sql "SELECT md5(string_agg(store_id || ':' || hour || ':' || num_tickets, ',' ORDER BY store_id, hour)) FROM ksi_sales.sales_hourly")
ksi backfill -c "$WORK/t.conf" --connector chain --from "$FROM" --to "$TO" 2>/dev/null
check "a second run succeeds and changes nothing" "0 $before" \
	"$? $(sql "SELECT md5(string_agg(store_id || ':' || hour || ':' || num_tickets, ',' ORDER BY store_id, hour)) FROM ksi_sales.sales_hourly")"

echo "# backfill waits for a daemon's lease"
sql "UPDATE ksi_sales.connector_state SET lease_owner = 'other-daemon', lease_expires = now() + interval '2 seconds'
     WHERE connector_id = $CHAIN" >/dev/null
ksi backfill -c "$WORK/t.conf" --connector chain --from "$FROM" --to "$TO" 2>"$WORK/b2.log"
check "it waits for the lease to expire, then runs" "0" "$?"
check_contains "and says whom it waited for" "being polled by other-daemon" "$(cat "$WORK/b2.log")"

echo "# backfill refuses bad input, writing nothing"
n=$(runs)
ksi backfill -c "$WORK/t.conf" --connector chain --from "$TO" --to "$FROM" 2>"$WORK/e.log"
check "--from after --to exits 2" "2" "$?"
check_contains "and says so" "--from must be before --to" "$(cat "$WORK/e.log")"
ksi backfill -c "$WORK/t.conf" --connector chain --from "2024-01-01T00:00:00" --to "$TO" 2>"$WORK/e.log"
check "a time without offset exits 2" "2" "$?"
check_contains "and says an offset is needed" "has no offset" "$(cat "$WORK/e.log")"
ksi backfill -c "$WORK/t.conf" --connector nosuch --from "$FROM" --to "$TO" 2>"$WORK/e.log"
check "an unknown connector exits 2" "2" "$?"
check_contains "and names it" "no connector is named \"nosuch\"" "$(cat "$WORK/e.log")"
ksi backfill -c "$WORK/t.conf" --connector chain --from 2020-01-01T00:00:00Z --to 2021-06-01T00:00:00Z 2>"$WORK/e.log"
check "a span over a year without --yes exits 2" "2" "$?"
check_contains "and asks for --yes" "--yes" "$(cat "$WORK/e.log")"
ksi backfill -c "$WORK/t.conf" --from "$FROM" --to "$TO" 2>/dev/null
check "a missing --connector exits 2" "2" "$?"
check "nothing was written by the refused runs" "$n" "$(runs)"
ksi backfill -c "$WORK/t.conf" --connector down --from "$FROM" --to "$TO" 2>"$WORK/e.log"
check "a failing API makes backfill exit 1" "1" "$?"
check_contains "with the API's error" "HTTP 500" "$(cat "$WORK/e.log")"

echo "# status"
out=$(ksi status -c "$WORK/t.conf" 2>&1)
check "status exits 1: a connector is failing" "1" "$?"
check "a summary line first" "2 connectors: 1 ok, 1 failing" "$(echo "$out" | sed -n 1p)"
check "then the table's header" "CONNECTOR" "$(echo "$out" | sed -n 2p | awk '{ print $1 }')"
check "failing connectors come first" "down" "$(echo "$out" | sed -n 3p | awk '{ print $1 }')"
ksi status -c "$WORK/t.conf" --no-fail >/dev/null 2>&1
check "status --no-fail exits 0" "0" "$?"
json=$(ksi status -c "$WORK/t.conf" --json 2>/dev/null)
check "status --json is one JSON list, failing first" "down failing 2" \
	"$(sql "SELECT (:'doc'::json->0->>'name') || ' ' || (:'doc'::json->0->>'state') || ' ' || json_array_length(:'doc'::json)" -v doc="$json")"
check "--json says which are healthy" "false true" \
	"$(sql "SELECT (:'doc'::json->0->>'healthy') || ' ' || (:'doc'::json->1->>'healthy')" -v doc="$json")"
check_absent "status never shows the token" "$TOKEN" "$out $json"
echo "# --help: each command's own usage"
for cmd in run once test-connection backfill status janitor migrate; do
	out=$(ksi "$cmd" --help 2>&1)
	rc=$?
	want="usage: ksi-salesd $cmd"
	[ "$cmd" = run ] && want="usage: ksi-salesd [run]"
	if [ $rc -eq 0 ] && [[ $out == "$want"* ]]; then
		ok "$cmd --help exits 0 and starts with \"$want\""
	else not_ok "$cmd --help exits 0 and starts with \"$want\"" "exit $rc" "${out%%$'\n'*}"; fi
done
check_contains "backfill --help names its own options" "--yes" "$(ksi backfill --help)"
check_absent "status --help does not list backfill's options" "--yes" "$(ksi status --help)"
check_contains "--help without a command lists the commands" "test-connection" "$(ksi --help)"
ksi frobnicate --help >/dev/null 2>&1
check "--help of an unknown command exits 2" 2 $?

echo "# where the database URL comes from"
ksi status -c "$WORK/t.conf" -d "postgresq://ksi:s3cret@db/ksi" >/dev/null 2>"$WORK/scheme.log"
check "-d postgresq://... exits 2 (libpq would take it for a database name)" 2 $?
check_contains "... saying the scheme is unknown" 'unknown URI scheme "postgresq://"' "$(cat "$WORK/scheme.log")"
check_absent "... without the password" "s3cret" "$(cat "$WORK/scheme.log")"
printf '[database]\nurl = mysql://ksi:s3cret@db/ksi\n' >"$WORK/scheme.conf"
env -u KSI_SALESD_DATABASE_URL "$BIN" status -c "$WORK/scheme.conf" >/dev/null 2>"$WORK/scheme.log"
check "[database] url = mysql://... exits 2" 2 $?
check_contains "... naming the file and line" "scheme.conf:2: [database] url: unknown URI scheme" "$(cat "$WORK/scheme.log")"
# A URL of 600 bytes (TLS options) in the file: the old reader stopped at 198.
# (--no-fail: these read the table; some connectors here are failing.)
long_url="$CONNINFO application_name=ksi-salesd-$(printf 'x%.0s' $(seq 1 560))"
printf '[database]\nurl = %s\n' "$long_url" >"$WORK/long.conf"
env -u KSI_SALESD_DATABASE_URL "$BIN" status --no-fail -c "$WORK/long.conf" >/dev/null 2>"$WORK/long.log"
check "a ${#long_url}-byte [database] url line is read whole" 0 $?
printf '%s\n' "$CONNINFO" >"$WORK/database-url"
printf '[database]\nurl_file = %s\n' "$WORK/database-url" >"$WORK/file.conf"
env -u KSI_SALESD_DATABASE_URL "$BIN" status --no-fail -c "$WORK/file.conf" >"$WORK/file.out" 2>"$WORK/file.log"
check "status with the URL in [database] url_file exits 0" 0 $?
check_contains "... and prints the table" "chain" "$(cat "$WORK/file.out")"
mkdir -p "$WORK/creds"
printf '%s' "$CONNINFO" >"$WORK/creds/database-url"
printf 'host=%s/nowhere dbname=x\n' "$WORK" >"$WORK/database-url"
env -u KSI_SALESD_DATABASE_URL CREDENTIALS_DIRECTORY="$WORK/creds" "$BIN" status --no-fail -c "$WORK/file.conf" >/dev/null 2>"$WORK/cred.log"
check "\$CREDENTIALS_DIRECTORY/database-url wins over url_file" 0 $?
env -u KSI_SALESD_DATABASE_URL "$BIN" status -c "$WORK/file.conf" >/dev/null 2>"$WORK/unreach.log"
check "an unreachable database from url_file exits 3" 3 $?
check_contains "... saying where the URL came from" "(database URL from [database] url_file $WORK/database-url)" "$(cat "$WORK/unreach.log")"
env -u KSI_SALESD_DATABASE_URL -u CREDENTIALS_DIRECTORY PGHOST="$WORK/nowhere" "$BIN" status -c /dev/null >/dev/null 2>"$WORK/nourl.log"
check "no URL anywhere and libpq's defaults unreachable: exits 3" 3 $?
check_contains "... listing the sources tried" \
	'no database URL (tried -d, KSI_SALESD_DATABASE_URL, $CREDENTIALS_DIRECTORY/database-url (not set), [database] url_file and url in /dev/null)' \
	"$(cat "$WORK/nourl.log")"
rm -f "$WORK/database-url"
env -u KSI_SALESD_DATABASE_URL "$BIN" status -c "$WORK/file.conf" >/dev/null 2>"$WORK/nofile.log"
check "a url_file that does not exist exits 2" 2 $?
check_contains "... naming it" "[database] url_file: $WORK/database-url: No such file or directory" "$(cat "$WORK/nofile.log")"

check_absent "no tool log shows the token" "$TOKEN" "$(cat "$WORK"/*.log)"

echo
echo "tools: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
