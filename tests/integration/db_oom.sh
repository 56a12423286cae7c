#!/usr/bin/env bash
# Allocation-failure suite for the writer (issue 5): runs the cmocka binary
# build/san/test_db_oom against a throwaway PostgreSQL. It fails every
# allocation of db_write_run and db_write_batch (and of db_connect,
# db_load_connector_by_name, db_claim) in turn and checks for no crash, no
# leak, nothing half-written.
#   db_oom.sh BINARY FAKEAPI [TEST_DB_OOM]
# BINARY only runs `migrate` (through $KSI_WRAP, so under `make valgrind` the
# release binary migrates under valgrind); FAKEAPI is not used. TEST_DB_OOM
# (default build/san/test_db_oom) is the sanitizer build in every case:
# ASan/LSan do the leak checking, so it never runs under valgrind.
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"
OOM=${3:-$ROOT/build/san/test_db_oom}
[ -x "$OOM" ] || { echo "db_oom: $OOM is missing: make build/san/test_db_oom" >&2; exit 1; }

pg_start || { echo "could not start PostgreSQL" >&2; exit 1; }
ksi migrate 2>"$WORK/migrate.log" || { cat "$WORK/migrate.log" >&2; exit 1; }

# The connector and stores test_db_oom expects: three codes (one needing
# quotes in an array literal) and a store without a code.
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, timezone)
     VALUES ('oom', 'http://127.0.0.1:9/sales', :'token', 'Europe/Madrid');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'S' || c, (SELECT id FROM ksi_sales.connectors WHERE name = 'oom'), c
     FROM unnest(ARRAY['0002', :'odd', '0001']) AS c;
     INSERT INTO ksi_sales.stores (name) VALUES ('unlinked')" \
	-v token="$TOKEN" -v odd='quo"te\back' || exit 1

# The connectors test_db_oom's db_write_batch scenarios write for, each
# with its own stores, every one a "0001" (records must land in their own
# connector's store of that code). Disabled, so that db_claim and
# db_load_connector_by_name in the scenarios above still find 'oom' alone;
# the writer does not look at enabled.
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, timezone, enabled)
     SELECT n, 'http://127.0.0.1:9/sales', :'token', 'UTC', false
     FROM unnest(ARRAY['oom_a', 'oom_b', 'oom_c', 'oom_d']) AS n;
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT x.connector || ' ' || x.code, c.id, x.code
     FROM (VALUES ('oom_a', '0002'), ('oom_a', :'odd'), ('oom_a', '0001'),
                  ('oom_b', 'b,2 {x}'), ('oom_b', '0001'),
                  ('oom_c', '0001'),
                  ('oom_d', 'd\"4'), ('oom_d', '0001')) AS x(connector, code)
     JOIN ksi_sales.connectors c ON c.name = x.connector" \
	-v token="$TOKEN" -v odd='quo"te\back' || exit 1

echo "# every allocation of the writer fails in turn (test_db_oom)"
start=$SECONDS
KSI_TEST_DATABASE_URL=$CONNINFO "$OOM" >"$WORK/oom.out" 2>&1
rc=$?
sed 's/^/    /' "$WORK/oom.out"
echo "    ($((SECONDS - start))s)"
check "test_db_oom passes (no crash, no leak, nothing half-written)" 0 "$rc"
check_contains "db_write_run was driven through its allocations" \
	"db_write_run (records and refusals):" "$(cat "$WORK/oom.out")"
check_contains "db_write_batch was driven through its allocations" \
	"db_write_batch (two results and the end of a poll):" "$(cat "$WORK/oom.out")"
check_contains "db_write_batch with a stale lease was driven through its allocations" \
	"db_write_batch (one result under a stale lease):" "$(cat "$WORK/oom.out")"
check_absent "no sanitizer report" "Sanitizer" "$(cat "$WORK/oom.out")"
check_absent "no undefined behaviour" "runtime error:" "$(cat "$WORK/oom.out")"

echo
echo "db_oom: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
