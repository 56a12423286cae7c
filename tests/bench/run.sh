#!/usr/bin/env bash
# `make bench`: measurements, never pass/fail tests. Runs the release binary
# against a throwaway PostgreSQL and the fake API and prints a table.
#   Scenario "slow APIs": N connectors (one store each, one request each)
#   whose API takes D ms; `once` wall time against the ideal
#   ceil(N / max_concurrent_fetches) x D.
set -euo pipefail

WORK=$(mktemp -d /tmp/ksi-salesd-bench.XXXXXX)
chmod 755 "$WORK"
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
BIN=$ROOT/build/ksi-salesd
cleanup() {
	fake_stop
	pg_stop
	rm -rf "$WORK"
}
trap cleanup EXIT

pg_start
fake_start "$ROOT/build/fakeapi"
"$BIN" migrate 2>/dev/null

printf '%-34s %8s %10s %10s %8s\n' scenario inflight "wall (s)" "ideal (s)" ratio
slow_apis() {
	local n=$1 delay_ms=$2 inflight=$3
	sql "SET client_min_messages = warning; TRUNCATE ksi_sales.connectors, ksi_sales.stores, ksi_sales.sales_hourly CASCADE" >/dev/null
	sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, initial_backfill)
	     SELECT 'slow-' || i, '$FAKE_URL/delay/$delay_ms/sales', '1 hour' FROM generate_series(1, $n) AS i;
	     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
	     SELECT name, id, '0001' FROM ksi_sales.connectors" >/dev/null
	printf '[daemon]\nmax_concurrent_fetches = %s\nmax_per_host = %s\n[log]\nlevel = warning\n' \
		"$inflight" "$inflight" >"$WORK/bench.conf"
	local t0 t1
	t0=$(date +%s.%N)
	"$BIN" once -c "$WORK/bench.conf"
	t1=$(date +%s.%N)
	awk -v n="$n" -v d="$delay_ms" -v k="$inflight" -v t0="$t0" -v t1="$t1" 'BEGIN {
		ideal = int((n + k - 1) / k) * d / 1000.0
		printf "%-34s %8d %10.2f %10.2f %8.2f\n", n " APIs x " d " ms", k, t1 - t0, ideal, (t1 - t0) / ideal }'
}
slow_apis 40 1000 32
slow_apis 40 1000 40
slow_apis 500 200 64
