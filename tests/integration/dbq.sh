#!/usr/bin/env bash
# The database queue against a real PostgreSQL: runs the cmocka binary
# build/san/test_dbq (the maintenance lane beside the job thread).
#   dbq.sh BINARY FAKEAPI [TEST_DBQ]
# BINARY only runs `migrate`; FAKEAPI is not used. TEST_DBQ (default
# build/san/test_dbq) is the sanitizer build in every case.
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"
T=${3:-$ROOT/build/san/test_dbq}
[ -x "$T" ] || { echo "dbq: $T is missing: make build/san/test_dbq" >&2; exit 1; }

pg_start || { echo "could not start PostgreSQL" >&2; exit 1; }
ksi migrate 2>"$WORK/migrate.log" || { cat "$WORK/migrate.log" >&2; exit 1; }
"$T"
