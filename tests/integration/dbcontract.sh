#!/usr/bin/env bash
# Integration tests of the database contract of issue 10 against the real
# binary, a throwaway PostgreSQL and the fake API:
#   - time zones: one rule for every zone column (SPEC §4, migration 0005),
#     and what the upgrade does with the rows written before it;
#   - a pinned search_path: neither a role's search_path nor a session's
#     can make the daemon or the schema's functions call another now();
#   - a lost lease raises its own SQLSTATE, KS001 (issue 11, migration 0006);
#   - exit codes (SPEC §6, README): a read-only database, a missing
#     privilege, a migration that fails or whose COMMIT fails.
#   dbcontract.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"
pg_start || { echo "could not start PostgreSQL" >&2; exit 1; }
fake_start "$FAKE" --token "$TOKEN" || { cat "$WORK/fake.out" >&2; exit 1; }
printf '[daemon]\nlease = 10s\nmax_per_host = 64\n[log]\nlevel = info\n' >"$WORK/test.conf"

# sql_err QUERY [psql options]: the error psql prints, with its SQLSTATE
# (empty when none).
# shellcheck disable=SC2069 # stderr to the caller, stdout dropped: on purpose
sql_err() { sql "\\set VERBOSITY verbose
$1" "${@:2}" 2>&1 >/dev/null; }
url_for() { local u=${CONNINFO/dbname=postgres/dbname=$1}; echo "${u/user=postgres/user=$2}"; }

BAD_ZONES=(utc europe/madrid CEST JST UTC+3 Z +05:30 localtime '<+03>-3')
GOOD_ZONES=(UTC Europe/Madrid America/Argentina/Buenos_Aires Etc/GMT+3)

echo "# upgrade: rows written under 0004 with zones the new rule refuses"
# What `migrate` does before the numbered files (src/db_conn.c), then 0001-0004:
# a database that has run them, as a live one has.
sql "CREATE SCHEMA ksi_sales;
     CREATE TABLE ksi_sales.schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                               applied_at timestamptz NOT NULL DEFAULT now())" >/dev/null
for f in "$ROOT"/src/migrations/000[1-4]_*.sql; do
	sql "SET client_min_messages = warning; $(cat "$f")" >/dev/null || echo "could not apply $f" >&2
	base=$(basename "$f" .sql)
	sql "INSERT INTO ksi_sales.schema_migrations VALUES (${base%%_*}, '$base')" >/dev/null
done
i=0
for z in "${BAD_ZONES[@]}" UTC; do
	i=$((i + 1))
	sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, timezone) VALUES ('old$i', '$FAKE_URL/sales', :'token', :'z');
	     INSERT INTO ksi_sales.stores (name, timezone) VALUES ('old$i', :'z');
	     INSERT INTO ksi_sales.connection_tests (endpoint_url, codes, timezone) VALUES ('$FAKE_URL/sales', '{A1}', :'z')" \
		-v token="$TOKEN" -v z="$z" >/dev/null || echo "0004 refused zone $z" >&2
done
sql "UPDATE ksi_sales.connector_state SET next_poll = now() + interval '1 day'" >/dev/null
ksi migrate 2>"$WORK/upgrade.log"
check "migrate from 0004 exits 0 with zones it cannot fix" 0 $?
log=$(cat "$WORK/upgrade.log")
check "case-only differences are corrected in every table; the rest are left as they were" \
	"connectors: UTC Europe/Madrid CEST JST UTC+3 Z +05:30 localtime <+03>-3 UTC|stores: same|connection_tests: same" \
	"connectors: $(sql "SELECT string_agg(timezone, ' ' ORDER BY id) FROM ksi_sales.connectors")|stores: $(
		[ "$(sql "SELECT string_agg(timezone, ' ' ORDER BY id) FROM ksi_sales.stores")" = \
		  "$(sql "SELECT string_agg(timezone, ' ' ORDER BY id) FROM ksi_sales.connectors")" ] && echo same)|connection_tests: $(
		[ "$(sql "SELECT string_agg(timezone, ' ' ORDER BY id) FROM ksi_sales.connection_tests")" = \
		  "$(sql "SELECT string_agg(timezone, ' ' ORDER BY id) FROM ksi_sales.connectors")" ] && echo same)"
check_contains "a correction is reported naming table, id, old and new value" \
	'ksi_sales.connectors.timezone of id 2: "europe/madrid" corrected to "Europe/Madrid"' "$log"
check_contains "a value left alone is reported with why" \
	'ksi_sales.stores.timezone of id 4 left as it is: "JST" is a time zone abbreviation' "$log"
check_contains "... and how to fix it" "UPDATE ksi_sales.stores SET timezone = 'Europe/Madrid' WHERE id = 4;" "$log"
check_contains "one summary line" "ksi_sales time zones: 6 corrected, 21 left for an operator to fix" "$log"
check "one warning per row that breaks the rule (9 zones x 3 tables) and the summary" 28 \
	"$(grep -c 'WARNING: ksi_sales' "$WORK/upgrade.log")"
check_absent "the upgrade log never shows a token" "$TOKEN" "$log"
check "a connector whose zone was corrected is due at once (its settings changed); the others keep their schedule" \
	"1 2" "$(sql "SELECT string_agg(connector_id::text, ' ' ORDER BY connector_id) FROM ksi_sales.connector_state WHERE next_poll IS NULL")"
sql "DELETE FROM ksi_sales.connection_tests; DELETE FROM ksi_sales.stores; DELETE FROM ksi_sales.connectors" >/dev/null

echo "# time zones: the database refuses what SPEC §4 refuses, in every zone column"
# Every table with a column whose name says zone has the check.
check "the zone columns are exactly connectors, stores and connection_tests .timezone" \
	"connection_tests.timezone connectors.timezone stores.timezone" \
	"$(sql "SELECT string_agg(table_name || '.' || column_name, ' ' ORDER BY table_name) FROM information_schema.columns
	        WHERE table_schema = 'ksi_sales' AND column_name ~ '(zone|tz)' AND table_name IN
	              (SELECT table_name FROM information_schema.tables WHERE table_schema = 'ksi_sales' AND table_type = 'BASE TABLE')")"
insert_zone() { # TABLE ZONE: the INSERT, with the token in the row
	case $1 in
	connectors) echo "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, timezone) VALUES ('z', '$FAKE_URL/sales', '$TOKEN', :'z')" ;;
	stores) echo "INSERT INTO ksi_sales.stores (name, timezone) VALUES ('z', :'z')" ;;
	connection_tests) echo "INSERT INTO ksi_sales.connection_tests (endpoint_url, bearer_token, codes, timezone) VALUES ('$FAKE_URL/sales', '$TOKEN', '{A1}', :'z')" ;;
	esac
}
for t in connectors stores connection_tests; do
	for z in "${BAD_ZONES[@]}"; do
		out=$(sql_err "BEGIN; $(insert_zone "$t" "$z"); ROLLBACK;" -v z="$z")
		case "$out" in
		*"ERROR:  23514: ksi_sales.$t.timezone: "*"\"$z\""*) ok "$t.timezone '$z' is refused: check_violation, column and value named" ;;
		*) not_ok "$t.timezone '$z' is refused: check_violation, column and value named" "actual: $out" ;;
		esac
		check_absent "... without printing the row's token" "$TOKEN" "$out"
	done
	for z in "${GOOD_ZONES[@]}"; do
		out=$(sql_err "BEGIN; $(insert_zone "$t" "$z"); ROLLBACK;" -v z="$z")
		check "$t.timezone '$z' is accepted" "" "$out"
	done
	out=$(sql_err "BEGIN; $(insert_zone "$t" UTC); UPDATE ksi_sales.$t SET timezone = 'utc'; ROLLBACK;" -v z=UTC)
	check_contains "an UPDATE to a refused zone is refused too ($t)" "ksi_sales.$t.timezone" "$out"
done
out=$(sql_err "$(insert_zone connectors europe/madrid)" -v z=europe/madrid)
check_contains "a case-only difference names the canonical spelling" \
	'time zone "europe/madrid" must be written exactly "Europe/Madrid"' "$out"
out=$(sql_err "$(insert_zone stores utc)" -v z=utc)
check_contains "... 'utc' -> 'UTC'" 'must be written exactly "UTC"' "$out"
out=$(sql_err "$(insert_zone stores UTC+3)" -v z=UTC+3)
check_contains "a POSIX string says why it misleads" "UTC+3 is 3 hours behind UTC" "$out"
out=$(sql_err "$(insert_zone stores CEST)" -v z=CEST)
check_contains "an abbreviation says it is one" '"CEST" is a time zone abbreviation' "$out"
check_contains "the error carries the column in its fields (COLUMN NAME)" "COLUMN NAME:  timezone" "$out"
out=$(sql_err "$(insert_zone stores CET)" -v z=CET)
check_contains "CET, a zone to the daemon but a fixed +01 to AT TIME ZONE, is refused, saying why" \
	"fixed-offset abbreviation to PostgreSQL's AT TIME ZONE" "$out"
out=$(sql_err "$(insert_zone stores 'Mars/Olympus')" -v z=Mars/Olympus)
check_contains "an unknown name is unknown" 'unknown time zone "Mars/Olympus"' "$out"

# The fast path (PostgreSQL's zone loader) against the rule as stated:
# exactly pg_timezone_names minus the exclusions, exact case. CET, EET, MET
# and WET are excluded because AT TIME ZONE reads them as abbreviations.
check "every name of pg_timezone_names is judged as the rule says (accepted unless excluded)" "0" \
	"$(sql "SELECT count(*) FROM pg_timezone_names n, ksi_sales.timezone_check(n.name) c
	        WHERE (c.problem IS NULL) = (n.name IN ('localtime', 'posixrules', 'Factory', 'CET', 'EET', 'MET', 'WET')
	                                     OR n.name ~ '^(posix|right)/')")"
check "every such name in lower case is refused, naming it as the canonical spelling" "0" \
	"$(sql "SELECT count(*) FROM pg_timezone_names n, ksi_sales.timezone_check(lower(n.name)) c
	        WHERE lower(n.name) <> n.name AND n.name !~ '^(posix|right)/'
	          AND n.name NOT IN ('localtime', 'posixrules', 'Factory', 'CET', 'EET', 'MET', 'WET')
	          AND (c.problem IS NULL OR c.canonical IS DISTINCT FROM n.name)")"
check "POSIX strings with a '/' (a rule, a quoted name) are refused; EST5EDT, a zone file with digits, is not" \
	"POSIX POSIX accepted" \
	"$(sql "SELECT string_agg(CASE WHEN c.problem IS NULL THEN 'accepted' WHEN c.problem LIKE '%POSIX%' THEN 'POSIX' ELSE c.problem END, ' ' ORDER BY o)
	        FROM unnest(ARRAY['EST5EDT,M3.2.0/2,M11.1.0/2', '<A/B>3', 'EST5EDT']) WITH ORDINALITY AS z(name, o),
	             ksi_sales.timezone_check(z.name) c")"
check "the check leaves the session's TimeZone as it was" "America/Santiago" \
	"$(sql "SET TimeZone = 'America/Santiago'; SELECT (ksi_sales.timezone_check('europe/madrid')).canonical; SHOW TimeZone" | tail -n 1)"

echo "# search_path: pinned in every function, and in the daemon's sessions"
check "every function of ksi_sales pins search_path = pg_catalog, ksi_sales, pg_temp" "" \
	"$(sql "SELECT string_agg(p.proname, ' ') FROM pg_proc p WHERE p.pronamespace = 'ksi_sales'::regnamespace
	        AND NOT ('search_path=pg_catalog, ksi_sales, pg_temp' = ANY (coalesce(p.proconfig, '{}')))")"
sql "CREATE SCHEMA evil; GRANT USAGE ON SCHEMA evil TO PUBLIC;
     CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS \$\$SELECT timestamptz '1999-01-01 00:00Z'\$\$;
     CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS \$\$SELECT timestamptz '2999-01-01 00:00Z'\$\$;
     CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE sql AS \$\$SELECT\$\$;
     CREATE ROLE ksi_daemon_login LOGIN IN ROLE ksi_salesd_daemon;
     ALTER ROLE ksi_daemon_login SET search_path = evil, pg_catalog" >/dev/null
DAEMON=$(url_for postgres ksi_daemon_login)
check "the daemon's role really gets evil.now()" "1999" \
	"$(psql "$DAEMON" -X -A -t -c "SELECT extract(year FROM now())")"
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill, timezone)
     VALUES ('evil1', '$FAKE_URL/sales', '$TOKEN', '3 hours', 'Europe/Madrid'),
            ('evil2', '$FAKE_URL/sales', '$TOKEN', '3 hours', 'UTC');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT c.name || k, c.id, k FROM ksi_sales.connectors c, unnest(ARRAY['A1', 'A2']) AS k" >/dev/null
once -d "$DAEMON"
check "once as a role with search_path = evil, pg_catalog exits 0" 0 "$RC"
check_absent "... and loses no lease" "lease" "$(cat "$LOG")"
check "... with both connectors ok and their rows written" "2 ok true" \
	"$(sql "SELECT count(DISTINCT connector_id) || ' ' || string_agg(DISTINCT outcome, ',') || ' ' ||
	               bool_and(records_upserted > 0) FROM ksi_sales.fetch_runs")"
check "... the leases it took were released (next poll in the future, not 1999)" "2" \
	"$(sql "SELECT count(*) FROM ksi_sales.connector_state WHERE lease_owner IS NULL AND next_poll > now()")"
EVIL="SET search_path = evil, pg_catalog;"
check "a trigger under a session's evil path still uses pg_catalog.clock_timestamp() (stores.linked_at)" "t" \
	"$(sql "$EVIL INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
	        SELECT 'E3', id, 'E3' FROM ksi_sales.connectors WHERE name = 'evil1';
	        SELECT abs(extract(epoch FROM linked_at - pg_catalog.now())) < 60 FROM ksi_sales.stores WHERE name = 'E3'")"
check_contains "... and pg_catalog.pg_notify() (a config change still wakes the daemons)" 'payload "stores"' \
	"$(sql "LISTEN ksi_sales_config; $EVIL UPDATE ksi_sales.stores SET name = 'E3' WHERE name = 'E3';" 2>&1)"
check "lease_check under an evil path compares with the real clock" "t" \
	"$(sql "UPDATE ksi_sales.connector_state SET lease_owner = 'me', lease_expires = now() + interval '1 minute'
	        WHERE connector_id = (SELECT id FROM ksi_sales.connectors WHERE name = 'evil1');
	        $EVIL SELECT ksi_sales.lease_check(connector_id, 'me', lease_epoch) FROM ksi_sales.connector_state
	        WHERE lease_owner = 'me'" 2>&1)"
sql "UPDATE ksi_sales.connector_state SET lease_owner = NULL, lease_expires = NULL" >/dev/null

echo "# a lost lease: its own SQLSTATE (0006), what the daemon recognises it by"
EVIL1=$(sql "SELECT id FROM ksi_sales.connectors WHERE name = 'evil1'")
sql "UPDATE ksi_sales.connector_state SET lease_owner = 'me', lease_expires = now() + interval '1 minute'
     WHERE connector_id = $EVIL1" >/dev/null
check_contains "lease_check with another owner raises SQLSTATE KS001, the message unchanged" \
	"ERROR:  KS001: lease on connector $EVIL1 lost (owner someone-else, epoch" \
	"$(sql_err "SELECT ksi_sales.lease_check($EVIL1, 'someone-else', lease_epoch)
	            FROM ksi_sales.connector_state WHERE connector_id = $EVIL1")"
check_contains "... and so with the owner but an older epoch" "ERROR:  KS001: lease on connector $EVIL1 lost" \
	"$(sql_err "SELECT ksi_sales.lease_check($EVIL1, 'me', lease_epoch - 1)
	            FROM ksi_sales.connector_state WHERE connector_id = $EVIL1")"
sql "UPDATE ksi_sales.connector_state SET lease_expires = now() - interval '1 second' WHERE connector_id = $EVIL1" >/dev/null
check_contains "... and so with an expired lease" "ERROR:  KS001: lease on connector $EVIL1 lost (owner me" \
	"$(sql_err "SELECT ksi_sales.lease_check($EVIL1, 'me', lease_epoch)
	            FROM ksi_sales.connector_state WHERE connector_id = $EVIL1")"
check "no other function of ksi_sales raises class KS" "lease_check" \
	"$(sql "SELECT string_agg(proname, ' ') FROM pg_proc WHERE pronamespace = 'ksi_sales'::regnamespace
	        AND prosrc ~ 'ERRCODE *= *''KS'")"
sql "UPDATE ksi_sales.connector_state SET lease_owner = NULL, lease_expires = NULL" >/dev/null

echo "# exit codes: a read-only database"
sql "CREATE ROLE ksi_ro LOGIN IN ROLE ksi_salesd_daemon; ALTER ROLE ksi_ro SET default_transaction_read_only = on" >/dev/null
RO=$(url_for postgres ksi_ro)
once -d "$RO"
check "once against a read-only database exits 3 (as unreachable: no write can succeed)" 3 "$RC"
check_contains "... and says what to do" "target_session_attrs=read-write" "$(cat "$LOG")"
ksi status -c "$WORK/test.conf" -d "$RO" >/dev/null 2>"$WORK/e.log"
check "status only reads: it works on a read-only database" 0 $?
ksi backfill -c "$WORK/test.conf" -d "$RO" --connector evil1 --from "$(date -u -d '2 days ago' +%Y-%m-%dT00:00:00Z)" \
	--to "$(date -u -d '1 day ago' +%Y-%m-%dT00:00:00Z)" 2>"$WORK/e.log"
check "backfill against a read-only database exits 3" 3 $?
sql "CREATE DATABASE ro_fresh" >/dev/null
ksi migrate -d "$(url_for ro_fresh postgres) options='-c default_transaction_read_only=on'" 2>"$WORK/e.log"
check "migrate against a read-only database exits 3" 3 $?
check_contains "... saying the database is read-only" "the database is read-only for role postgres" "$(cat "$WORK/e.log")"

echo "# exit codes: a role that lacks a privilege"
# Claims (UPDATE connector_state) allowed, writes of sales_hourly not.
sql "CREATE ROLE ksi_nowrite LOGIN; GRANT USAGE ON SCHEMA ksi_sales TO ksi_nowrite;
     GRANT SELECT ON ALL TABLES IN SCHEMA ksi_sales TO ksi_nowrite;
     GRANT UPDATE ON ksi_sales.connector_state, ksi_sales.connection_tests, ksi_sales.backfill_requests TO ksi_nowrite;
     GRANT INSERT, UPDATE ON ksi_sales.fetch_runs, ksi_sales.rejected_records TO ksi_nowrite;
     GRANT USAGE ON ALL SEQUENCES IN SCHEMA ksi_sales TO ksi_nowrite;
     CREATE ROLE ksi_noclaim LOGIN; GRANT USAGE ON SCHEMA ksi_sales TO ksi_noclaim;
     GRANT SELECT ON ksi_sales.schema_migrations, ksi_sales.connectors, ksi_sales.stores TO ksi_noclaim" >/dev/null
once -d "$(url_for postgres ksi_nowrite)"
check "once whose writes are refused (no INSERT on sales_hourly) exits 2" 2 "$RC"
check_contains "... naming the grant to give" "GRANT ksi_salesd_daemon TO ksi_nowrite" "$(cat "$LOG")"
once -d "$(url_for postgres ksi_noclaim)"
check "once whose claims are refused (no UPDATE on connector_state) exits 2" 2 "$RC"
check_contains "... naming the grant to give" "GRANT ksi_salesd_daemon TO ksi_noclaim" "$(cat "$LOG")"
ksi status -c "$WORK/test.conf" -d "$(url_for postgres ksi_noclaim)" >/dev/null 2>"$WORK/e.log"
check "status without SELECT on connector_health exits 2" 2 $?
check_contains "... naming the grant to give" "GRANT ksi_salesd_daemon TO ksi_noclaim" "$(cat "$WORK/e.log")"
check "... in one line" 1 "$(wc -l <"$WORK/e.log")"
check_contains "... with the server's words and the SQLSTATE" \
	"permission denied for view connector_health (SQLSTATE 42501): role ksi_noclaim lacks a privilege on ksi_sales" \
	"$(cat "$WORK/e.log")"
check_contains "... and where to read more" "(README, Roles)" "$(cat "$WORK/e.log")"
check_absent "... without libpq's ERROR: prefix" "ERROR:" "$(cat "$WORK/e.log")"
echo "# a missing object: the remedy is to migrate"
sql "CREATE DATABASE dropped" >/dev/null
DROPPED=$(url_for dropped postgres)
ksi migrate -d "$DROPPED" 2>/dev/null
psql "$DROPPED" -X -q -c "DROP VIEW ksi_sales.connector_health CASCADE"
ksi status -c "$WORK/test.conf" -d "$DROPPED" >/dev/null 2>"$WORK/e.log"
check "status with connector_health dropped exits 1 (the command failed)" 1 $?
check_contains "... in one line with the SQLSTATE and the remedy" \
	"(SQLSTATE 42P01): the ksi_sales schema is not the one this binary expects: run \`ksi-salesd migrate\` as the schema owner" \
	"$(cat "$WORK/e.log")"
check "... one line" 1 "$(wc -l <"$WORK/e.log")"
sql "CREATE DATABASE unmigrated" >/dev/null
ksi status -c "$WORK/test.conf" -d "$(url_for unmigrated postgres)" >/dev/null 2>"$WORK/e.log"
check "status before any migrate exits 2" 2 $?
check_contains "... saying to migrate, with the SQLSTATE" \
	"the ksi_sales schema is missing (SQLSTATE 42P01): run \`ksi-salesd migrate\` as the role that is to own it" \
	"$(cat "$WORK/e.log")"
ksi backfill -c "$WORK/test.conf" -d "$(url_for postgres ksi_nowrite)" --connector evil2 \
	--from "$(date -u -d '2 days ago' +%Y-%m-%dT00:00:00Z)" --to "$(date -u -d '1 day ago' +%Y-%m-%dT00:00:00Z)" 2>"$WORK/e.log"
check "backfill whose writes are refused exits 2" 2 $?
sql "CREATE DATABASE daemon_fresh" >/dev/null
ksi migrate -d "$(url_for daemon_fresh ksi_daemon_login)" 2>"$WORK/e.log"
check "migrate as a role that may not create the schema exits 2" 2 $?
check_contains "... and says to run it as the owner" "run \`ksi-salesd migrate\` as the owner" "$(cat "$WORK/e.log")"

echo "# exit codes: a migration that fails, and one whose COMMIT fails"
sql "CREATE DATABASE clash; CREATE DATABASE latefail" >/dev/null
CLASH=$(url_for clash postgres)
psql "$CLASH" -X -q -c "CREATE SCHEMA ksi_sales; CREATE TABLE ksi_sales.connectors (id int)"
ksi migrate -d "$CLASH" 2>"$WORK/clash.log"
check "a migration that errors (an object in the way) makes migrate exit 1" 1 $?
check_contains "... naming the migration" "migration 0001_initial" "$(cat "$WORK/clash.log")"
check_absent "... and logs nothing applied" "applied" "$(cat "$WORK/clash.log")"
LATE=$(url_for latefail postgres)
# A deferred constraint trigger: every statement succeeds, the COMMIT fails.
psql "$LATE" -X -q -c "CREATE SCHEMA ksi_sales;
	CREATE TABLE ksi_sales.schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
	                                          applied_at timestamptz NOT NULL DEFAULT now());
	CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS \$\$
	BEGIN RAISE EXCEPTION 'refused at commit'; END \$\$;
	CREATE CONSTRAINT TRIGGER late AFTER INSERT ON ksi_sales.schema_migrations
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.refuse()"
ksi migrate -d "$LATE" 2>"$WORK/late.log"
check "a migrate whose COMMIT fails exits 1" 1 $?
check_contains "... saying the commit failed" "committing the migrations: ERROR:  refused at commit" "$(cat "$WORK/late.log")"
check_absent "... and never logged a migration as applied" "applied migration" "$(cat "$WORK/late.log")"
check "... and nothing was applied" "0" "$(psql "$LATE" -X -A -t -c "SELECT count(*) FROM ksi_sales.schema_migrations")"

check_absent "no log of this suite shows the token" "$TOKEN" "$(cat "$WORK"/*.log)"
echo
echo "dbcontract: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
