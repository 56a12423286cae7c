#!/usr/bin/env bash
# Tokens encrypted at rest (issue 17, README Security): the trigger encrypts
# what operators write, a CHECK keeps plaintext out with triggers disabled,
# the daemon decrypts with its private keys (two during a rotation), a
# missing or wrong key fails only its connectors (config_error naming the
# key), and the canary token is nowhere: pg_dump, the cluster's files and
# WAL, the server log of a good and a failed INSERT done the documented way,
# the daemon's logs.
#   crypt.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"

# Every statement and every error's statement is logged, verbosely: what
# the operator's role settings must then keep the token out of.
export PG_EXTRA_OPTS="-c log_statement=all -c log_min_error_statement=error -c log_error_verbosity=verbose"
pg_start || { echo "could not start PostgreSQL" >&2; exit 1; }
SERVER_LOG=$PG_DIR/server.log
fake_start "$FAKE" --token "$TOKEN" || { cat "$WORK/fake.out" >&2; exit 1; }
# The token stored before any key exists (in clear, by design): not the
# canary, whose absence from the files is checked below. Its own fake API.
PRE="pre-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
"$FAKE" --port 0 --port-file "$WORK/fake2.port" --log "$WORK/fake2.log" --token "$PRE" \
	>"$WORK/fake2.out" 2>&1 &
PIDS+=("$!")
wait_for "the second fake API" 10 test -s "$WORK/fake2.port" || exit 1
FAKE2_URL="http://127.0.0.1:$(cat "$WORK/fake2.port")"

conf() { # conf KEYFILES
	printf '[daemon]\nmax_per_host = 64\n[log]\nlevel = debug\n[tokens]\nkey_file = %s\n' "$1" \
		>"$WORK/test.conf"
}
conf ""

ksi migrate 2>"$WORK/migrate.log" || { cat "$WORK/migrate.log" >&2; exit 1; }
check "pgcrypto is installed in ksi_sales_crypto by the migration" "ksi_sales_crypto" \
	"$(sql "SELECT extnamespace::regnamespace FROM pg_extension WHERE extname = 'pgcrypto'")"

# The documented operator role: nothing it sends is logged.
sql "CREATE ROLE ops LOGIN SUPERUSER;
     ALTER ROLE ops SET log_statement = 'none';
     ALTER ROLE ops SET log_min_error_statement = 'panic';
     ALTER ROLE ops SET log_error_verbosity = 'terse';" >/dev/null
OPS="${CONNINFO/user=postgres/user=ops}"
ops_sql() { # ops_sql QUERY: as ops, the token in the psql variable :'token'
	psql "$OPS" -X -q -A -t -v ON_ERROR_STOP=1 -v token="$TOKEN" <<<"$1"
}

echo "# before any key: tokens in clear, as before"
sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, lookback, initial_backfill)
     VALUES ('clear', '$FAKE2_URL/sales', '$PRE', '2 hours', '2 hours');
     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
     SELECT 'clear', id, '0001' FROM ksi_sales.connectors WHERE name = 'clear'" >/dev/null
check "without a key the token stays in bearer_token" "$PRE" \
	"$(sql "SELECT bearer_token FROM ksi_sales.connectors WHERE name = 'clear'")"
once
check "once polls the plaintext token (exit 0)" 0 "$RC"
check "the daemon says once that tokens are stored in clear" 1 \
	"$(grep -c 'stored in clear' "$LOG")"

echo "# keygen"
ksi keygen --out "$WORK/k1.asc" >"$WORK/k1.sql" 2>"$WORK/keygen1.log"
check "keygen exits 0" 0 "$?"
check "the private key file is mode 600" 600 "$(stat -c %a "$WORK/k1.asc")"
check_contains "keygen prints the public key" "BEGIN PGP PUBLIC KEY BLOCK" "$(cat "$WORK/k1.sql")"
check_absent "keygen prints no private key" "PRIVATE KEY" "$(cat "$WORK/k1.sql")"
before=$(md5sum <"$WORK/k1.asc")
ksi keygen --out "$WORK/k1.asc" >/dev/null 2>&1
check "keygen refuses to overwrite a key file (exit 1)" 1 "$?"
check "the existing key file is unchanged" "$before" "$(md5sum <"$WORK/k1.asc")"
K1=$(sed -n "s/.*activate_token_key('\([0-9A-F]*\)').*/\1/p" "$WORK/k1.sql")
# The documented way: the public key in a psql variable.
sed -n '/BEGIN PGP PUBLIC/,/END PGP PUBLIC/p' "$WORK/k1.sql" >"$WORK/k1.pub"
sql "INSERT INTO ksi_sales.token_keys (public_key) VALUES (:'pub');
     SELECT ksi_sales.activate_token_key(:'id');" -v pub="$(cat "$WORK/k1.pub")" -v id="$K1" >/dev/null
check "token_keys.key_id is the id keygen printed (pgp_key_id)" "$K1" \
	"$(sql "SELECT key_id FROM ksi_sales.token_keys WHERE active")"
check "activating the key encrypted the plaintext token" "|t|$K1" \
	"$(sql "SELECT bearer_token, bearer_token_enc IS NOT NULL, bearer_token_key FROM ksi_sales.connectors WHERE name = 'clear'")"

echo "# the trigger, and the CHECK with triggers disabled"
ops_sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, lookback, initial_backfill)
         VALUES ('enc', '$FAKE_URL/sales', :'token', '2 hours', '2 hours');
         INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
         SELECT 'enc', id, '0001' FROM ksi_sales.connectors WHERE name = 'enc'" >/dev/null
check "INSERT: bearer_token NULL, ciphertext under the active key" "|t|$K1" \
	"$(sql "SELECT bearer_token, bearer_token_enc IS NOT NULL, bearer_token_key FROM ksi_sales.connectors WHERE name = 'enc'")"
ct1=$(sql "SELECT md5(bearer_token_enc) FROM ksi_sales.connectors WHERE name = 'enc'")
ops_sql "UPDATE ksi_sales.connectors SET bearer_token = :'token' WHERE name = 'enc'" >/dev/null
check "UPDATE: bearer_token NULL again" "" \
	"$(sql "SELECT bearer_token FROM ksi_sales.connectors WHERE name = 'enc'")"
ct2=$(sql "SELECT md5(bearer_token_enc) FROM ksi_sales.connectors WHERE name = 'enc'")
[ "$ct1" != "$ct2" ] && ok "UPDATE: a new ciphertext" || not_ok "UPDATE: a new ciphertext" "unchanged"
out=$(psql "$CONNINFO" -X -q -A -t -v ON_ERROR_STOP=1 2>&1 <<SQL
SET session_replication_role = replica;
INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token) VALUES ('bypass', 'http://x/', 'not-the-canary');
SQL
)
check_contains "with triggers disabled the CHECK refuses a plaintext token" "connectors_bearer_token_encrypted" "$out"
check "no row was stored" 0 "$(sql "SELECT count(*) FROM ksi_sales.connectors WHERE name = 'bypass'")"
ops_sql "INSERT INTO ksi_sales.connection_tests (endpoint_url, bearer_token, codes)
         VALUES ('$FAKE_URL/sales', :'token', '{0001}')" >/dev/null
check "connection_tests: the token is encrypted too" "|t|$K1" \
	"$(sql "SELECT bearer_token, bearer_token_enc IS NOT NULL, bearer_token_key FROM ksi_sales.connection_tests")"

echo "# a failed INSERT done the documented way"
ops_sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token)
         VALUES ('bad', 'ftp://nowhere', :'token')" >/dev/null 2>"$WORK/failed.out"
check_contains "the failed INSERT failed (the endpoint check)" "endpoint_url must be" "$(cat "$WORK/failed.out")"

echo "# polls with encrypted tokens"
conf "$WORK/k1.asc"
once
check "once with key k1: both connectors polled (exit 0)" 0 "$RC"
check "the fake API received the canary token" 1 "$(grep -c 'auth=yes' "$WORK/fake.log" | awk '{print ($1>0)}')"
check_absent "no 'stored in clear' warning once a key is active" "stored in clear" "$(cat "$LOG")"

echo "# rotation: two keys"
ksi keygen --out "$WORK/k2.asc" --install >/dev/null 2>"$WORK/keygen2.log"
check "keygen --install exits 0" 0 "$?"
check_contains "keygen --install says 3 tokens (2 connectors, 1 connection test) remain under older keys" "3 tokens remain" "$(cat "$WORK/keygen2.log")"
K2=$(sql "SELECT key_id FROM ksi_sales.token_keys WHERE active")
[ "$K2" != "$K1" ] && ok "the new key is the active one" || not_ok "the new key is the active one"
ops_sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, lookback, initial_backfill)
         VALUES ('new', '$FAKE_URL/sales', :'token', '2 hours', '2 hours');
         INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
         SELECT 'new', id, '0001' FROM ksi_sales.connectors WHERE name = 'new'" >/dev/null
check "a token written now is under the new key" "$K2" \
	"$(sql "SELECT bearer_token_key FROM ksi_sales.connectors WHERE name = 'new'")"
conf "$WORK/k1.asc, $WORK/k2.asc"
once
check "once with both keys: every connector polled (exit 0)" 0 "$RC"
check_contains "the daemon loaded two private keys" "token private keys loaded from 2 files" "$(cat "$LOG")"

echo "# a missing or wrong private key"
conf "$WORK/k2.asc"
once
check "once with k2 only exits 1" 1 "$RC"
check "the connectors under k1 fail with config_error naming k1" "clear|config_error|t
enc|config_error|t
new|ok|f" "$(sql "SELECT c.name, r.outcome, coalesce(r.error LIKE '%$K1%', false) FROM ksi_sales.fetch_runs r
                  JOIN ksi_sales.connectors c ON c.id = r.connector_id
                  WHERE r.id IN (SELECT max(id) FROM ksi_sales.fetch_runs GROUP BY connector_id) ORDER BY 1")"
ksi keygen --out "$WORK/k3.asc" >/dev/null 2>&1
conf "$WORK/k3.asc"
once
check "once with a wrong key: every connector fails (exit 1)" 1 "$RC"
check "all three fail with config_error" 3 \
	"$(sql "SELECT count(*) FROM ksi_sales.fetch_runs WHERE outcome = 'config_error' AND id IN (SELECT max(id) FROM ksi_sales.fetch_runs GROUP BY connector_id)")"
conf "$WORK/nonexistent.asc"
once
check "a key_file that cannot be read is a configuration error (exit 2)" 2 "$RC"
check_contains "and says which file" "nonexistent.asc" "$(cat "$LOG")"
conf "$WORK/k1.pub"
once
check "a public key file is refused as key_file (exit 2)" 2 "$RC"

echo "# rotate-tokens: every token moved to the active key, no connector made due"
sql "UPDATE ksi_sales.connector_state SET next_poll = now() + interval '1 day', failures = 2" >/dev/null
conf "$WORK/k2.asc"
ksi rotate-tokens -c "$WORK/test.conf" 2>"$WORK/rotate1.log"
check "rotate-tokens without k1's private key exits 1" 1 "$?"
check_contains "... naming the key it lacks" "$K1" "$(cat "$WORK/rotate1.log")"
check "... and moves nothing it cannot open" 3 \
	"$(sql "SELECT (SELECT count(*) FROM ksi_sales.connectors WHERE bearer_token_key = '$K1')
	             + (SELECT count(*) FROM ksi_sales.connection_tests WHERE bearer_token_key = '$K1')")"
conf "$WORK/k1.asc, $WORK/k2.asc"
ksi rotate-tokens -c "$WORK/test.conf" 2>"$WORK/rotate2.log"
check "rotate-tokens with both keys exits 0" 0 "$?"
check_contains "... saying what it moved" "3 tokens moved to key $K2" "$(cat "$WORK/rotate2.log")"
check "no token is left under an older key" 0 \
	"$(sql "SELECT (SELECT count(*) FROM ksi_sales.connectors WHERE bearer_token_key <> '$K2')
	             + (SELECT count(*) FROM ksi_sales.connection_tests WHERE bearer_token_key <> '$K2')")"
check "no connector became due, no failure count was reset" "0" \
	"$(sql "SELECT count(*) FROM ksi_sales.connector_state WHERE next_poll < now() + interval '23 hours' OR failures <> 2")"
check_absent "the canary is in no output of rotate-tokens" "$TOKEN" "$(cat "$WORK"/rotate*.log)"
conf "$WORK/k2.asc"
once
check "once with k2 alone, after the rotation: every connector polled (exit 0)" 0 "$RC"

echo "# requests with encrypted tokens: a running daemon decrypts them after its claim"
# The connection test inserted above and a backfill of 'enc', both under
# k2 now: each claim commits, then decrypts (src/db_requests.c).
BF=$(sql "INSERT INTO ksi_sales.backfill_requests (connector_id, time_from, time_to)
          SELECT id, date_trunc('hour', now()) - interval '6 hours', date_trunc('hour', now()) - interval '3 hours'
          FROM ksi_sales.connectors WHERE name = 'enc' RETURNING id")
start_daemon req "$WORK/test.conf" || exit 1
requests_done() { [ "$(sql "SELECT (SELECT count(*) FROM ksi_sales.connection_tests WHERE status IN ('done', 'failed'))
                              + (SELECT count(*) FROM ksi_sales.backfill_requests WHERE status IN ('done', 'failed'))")" = 2 ]; }
wait_for "the connection test and the backfill to finish" 60 requests_done
check "the connection test ran with the decrypted token: its auth check passes" "PASS" \
	"$(sql "SELECT c->>'status' FROM ksi_sales.connection_tests, jsonb_array_elements(report->'checks') AS c WHERE c->>'name' = 'auth'")"
check "the backfill ran with the decrypted token: done, every window, no error" "done|true|" \
	"$(sql "SELECT status || '|' || (windows_done = windows_total) || '|' || coalesce(error, '') FROM ksi_sales.backfill_requests WHERE id = $BF")"
# shellcheck disable=SC2154 # set by start_daemon
kill -TERM "$PID_req"
wait "$PID_req"
check "the daemon exits 0" 0 $?
check_absent "the canary is not in its log" "$TOKEN" "$(cat "$WORK/req.log")"

echo "# the canary"
check_absent "the canary is not in pg_dump" "$TOKEN" "$(pg_dump "$CONNINFO" 2>&1)"
sql "CHECKPOINT" >/dev/null
hits=$(grep -rlaF "$TOKEN" "$PG_DIR/data" 2>/dev/null | wc -l)
check "the canary is in no file of the cluster (tables, WAL) after CHECKPOINT" 0 "$hits"
check_absent "the canary is not in the server log (good and failed INSERTs as ops)" "$TOKEN" "$(cat "$SERVER_LOG")"
check_contains "(the server log does log statements: log_statement=all)" "INSERT INTO ksi_sales.token_keys" "$(cat "$SERVER_LOG")"
check_absent "the canary is in no log of the daemon" "$TOKEN" "$(cat "$WORK"/*.log)"

echo "crypt: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
