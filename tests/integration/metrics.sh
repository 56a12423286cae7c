#!/usr/bin/env bash
# Integration tests of /metrics ([metrics] listen): the daemon serves the
# Prometheus text format, `promtool check metrics` finds nothing to say of
# a real scrape, a real Prometheus (Debian's package) scrapes it and its
# query API agrees with fetch_runs, the endpoint shrugs off 1,000
# concurrent scrapes and malformed requests while polls keep completing,
# and only `run` listens.
#   metrics.sh BINARY FAKEAPI
set -uo pipefail

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
suite_start "$@"

for tool in prometheus promtool python3; do
	command -v "$tool" >/dev/null || { echo "metrics.sh needs $tool (make deps)" >&2; exit 1; }
done

pg_start || exit 1
fake_start "$FAKE" --token "$TOKEN" || exit 1
ksi migrate 2>/dev/null || { echo "migrate failed" >&2; exit 1; }

# A short claim interval: the connectors' snapshot is read every claim.
daemon_conf "$WORK/d.conf" 5s 500ms
printf '[metrics]\nlisten = 127.0.0.1:0\n' >>"$WORK/d.conf"

add_connector() { # NAME PATH [INTERVAL]
	sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill, poll_interval)
	     VALUES ('$1', '$FAKE_URL/$2', '$TOKEN', '3 hours', '${3:-1 hour}');
	     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
	     SELECT 'Store of $1', id, '0001' FROM ksi_sales.connectors WHERE name = '$1'" >/dev/null
}
runs() { sql "SELECT count(*) FROM ksi_sales.fetch_runs"; }
runs_of() { sql "SELECT count(*) FROM ksi_sales.fetch_runs r JOIN ksi_sales.connectors c ON c.id = r.connector_id WHERE c.name = '$1'"; }
runs_ge() { [ "$(runs_of "$1")" -ge "$2" ]; }

# scrape_port LOG: the port the daemon said it serves metrics on.
scrape_port() { sed -n 's|.*serving Prometheus metrics on http://.*:\([0-9]*\)/metrics.*|\1|p' "$1" | head -1; }
scrape() { curl -sS --max-time 10 "http://127.0.0.1:$PORT/metrics"; }

echo "# only run listens"
cp "$WORK/d.conf" "$WORK/test.conf"
once
check "once exits 0 with nothing to poll" 0 "$RC"
check_absent "once serves no metrics" "serving Prometheus metrics" "$(cat "$LOG")"

echo "# a scrape"
add_connector good1 sales
add_connector good2 sales
add_connector bad status/500
add_connector lonely sales
sql "DELETE FROM ksi_sales.stores WHERE name = 'Store of lonely'" >/dev/null
add_connector off sales
sql "UPDATE ksi_sales.connectors SET enabled = false WHERE name = 'off'" >/dev/null
start_daemon main
PORT=$(scrape_port "$WORK/main.log")
if [ -n "$PORT" ]; then ok "run logs the address it serves metrics on (port $PORT)"
else not_ok "run logs the address it serves metrics on" "$(cat "$WORK/main.log")"; exit 1; fi
wait_for "the three connectors with stores to be polled" 20 runs_ge bad 1
wait_for "good1 to be polled" 20 runs_ge good1 1
wait_for "good2 to be polled" 20 runs_ge good2 1

headers=$(curl -sS -o "$WORK/scrape.txt" -D - "http://127.0.0.1:$PORT/metrics")
check_contains "200 with the text format's content type" "Content-Type: text/plain; version=0.0.4; charset=utf-8" "$headers"
body=$(cat "$WORK/scrape.txt")
check_contains "build_info names the version" 'ksi_salesd_build_info{version="' "$body"
for m in ksi_salesd_polls_total ksi_salesd_requests_total ksi_salesd_request_duration_seconds \
	ksi_salesd_poll_duration_seconds ksi_salesd_records_total ksi_salesd_transfers_in_flight \
	ksi_salesd_db_connected ksi_salesd_db_errors_total ksi_salesd_leases_held ksi_salesd_connectors \
	ksi_salesd_connectors_stale process_cpu_seconds_total process_resident_memory_bytes process_open_fds process_max_fds \
	process_start_time_seconds process_virtual_memory_bytes; do
	check_contains "the scrape has $m" "# TYPE $m " "$body"
done
check_contains "lease-lost polls have an outcome of their own" 'ksi_salesd_polls_total{outcome="lease_lost"} 0' "$body"
check_contains "db_connected is 1" "ksi_salesd_db_connected 1" "$body"
check_absent "no label per connector" 'good1' "$body"
check_absent "the token is nowhere" "$TOKEN" "$body"
lint=$(promtool check metrics <"$WORK/scrape.txt" 2>&1)
check "promtool check metrics has nothing to say of a real scrape" "0:" "$?:$lint"

echo "# the connectors, from the database every claim interval"
metric() { grep -F "$1 " "$WORK/scrape.txt" | grep -v '^#' | awk '{print $2}'; }
# snapshot_is: the scrape's connector counts are as the database has them.
snapshot_is() {
	scrape >"$WORK/scrape.txt" || return 1
	[ "$(metric 'ksi_salesd_connectors{state="ok"}')" = 2 ] &&
		[ "$(metric 'ksi_salesd_connectors{state="failing"}')" = 1 ] &&
		[ "$(metric 'ksi_salesd_connectors{state="never_polled"}')" = 0 ] &&
		[ "$(metric 'ksi_salesd_connectors{state="no_stores"}')" = 1 ] &&
		[ "$(metric 'ksi_salesd_connectors{state="disabled"}')" = 1 ]
}
if wait_for "the snapshot to count 2 ok, 1 failing, 1 without stores, 1 disabled" 10 snapshot_is; then
	ok "connectors{state}: 2 ok, 1 failing, 0 never_polled, 1 no_stores, 1 disabled"
else not_ok "connectors{state}" "$(grep ksi_salesd_connectors "$WORK/scrape.txt")"; fi
# Freshness: good1/good2 synced to the end of this hour; bad never
# synced, so stale at every threshold.
check "connectors_stale{threshold=1h} counts the one never synced" 1 "$(metric 'ksi_salesd_connectors_stale{threshold="1h"}')"
check "connectors_stale{threshold=lookback} too" 1 "$(metric 'ksi_salesd_connectors_stale{threshold="lookback"}')"
sql "UPDATE ksi_sales.connector_state s SET synced_until = now() - interval '7 hours'
     FROM ksi_sales.connectors c WHERE c.id = s.connector_id AND c.name = 'good1'" >/dev/null
stale_6h_is_2() { scrape >"$WORK/scrape.txt" && [ "$(metric 'ksi_salesd_connectors_stale{threshold="6h"}')" = 2 ]; }
if wait_for "good1, synced 7 h ago, to be stale at 6h" 10 stale_6h_is_2; then
	ok "a connector synced 7 h ago is stale at 1h, 6h and its lookback (3 h), not at 24h"
	check "... at 24h only the one never synced" 1 "$(metric 'ksi_salesd_connectors_stale{threshold="24h"}')"
	check "... at lookback both" 2 "$(metric 'ksi_salesd_connectors_stale{threshold="lookback"}')"
	oldest=$(metric ksi_salesd_oldest_synced_until_timestamp_seconds)
	want=$(sql "SELECT extract(epoch FROM synced_until)::float8 FROM ksi_sales.connector_state s
	            JOIN ksi_sales.connectors c ON c.id = s.connector_id WHERE c.name = 'good1'")
	check "oldest_synced_until is good1's" "$(printf '%.3f' "$want")" "$(printf '%.3f' "$oldest")"
else not_ok "connectors_stale{threshold=6h} is 2" "$(grep stale "$WORK/scrape.txt")"; fi

echo "# a real Prometheus scrapes it"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PROM_PORT=$(free_port)
mkdir -p "$WORK/prom"
cat >"$WORK/prom/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/etc/prometheus/ksi-salesd-alerts.yml
scrape_configs:
  - job_name: ksi-salesd
    static_configs:
      - targets: ['127.0.0.1:$PORT']
YML
prom_started=$SECONDS
prometheus --config.file="$WORK/prom/prometheus.yml" --storage.tsdb.path="$WORK/prom/data" \
	--web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prom/log" 2>&1 &
PIDS+=("$!")
PROM_URL="http://127.0.0.1:$PROM_PORT"
if wait_for "Prometheus to be ready" 30 curl -sf "$PROM_URL/-/ready"; then
	ok "Prometheus $(prometheus --version 2>&1 | awk 'NR == 1 {print $3}') is ready in $((SECONDS - prom_started)) s (deadline 30 s)"
else not_ok "Prometheus starts within 30 s" "$(tail -5 "$WORK/prom/log")"; exit 1; fi

# promql QUERY: the query's value, the values of several series summed
# ("" when there is none yet).
promql() {
	curl -sf "$PROM_URL/api/v1/query" --data-urlencode "query=$1" |
		python3 -c 'import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(int(sum(float(s["value"][1]) for s in r)) if r else "")'
}
# prom_is QUERY EXPECTED: for wait_for.
prom_is() { [ "$(promql "$1")" = "$2" ]; }

# More failures while Prometheus watches: bad is due again at once.
sql "UPDATE ksi_sales.connector_state s SET next_poll = now()
     FROM ksi_sales.connectors c WHERE c.id = s.connector_id AND c.name = 'bad'" >/dev/null
wait_for "bad to fail twice" 20 runs_ge bad 2
if wait_for "Prometheus to see the target up" 20 prom_is 'up{job="ksi-salesd"}' 1; then
	ok "Prometheus scrapes the daemon (up == 1)"
else not_ok "Prometheus scrapes the daemon" "$(curl -s "$PROM_URL/api/v1/targets")"; fi
# Each outcome's count in Prometheus equals fetch_runs' (this daemon wrote
# every row), once a scrape after the last poll has landed.
for outcome in ok http_error; do
	want=$(sql "SELECT count(*) FROM ksi_sales.fetch_runs WHERE outcome = '$outcome'")
	if wait_for "requests_total{outcome=$outcome} to reach $want" 20 \
		prom_is "ksi_salesd_requests_total{outcome=\"$outcome\"}" "$want"; then
		ok "Prometheus: requests_total{outcome=\"$outcome\"} = $want, as in fetch_runs"
	else not_ok "Prometheus: requests_total{outcome=\"$outcome\"} = fetch_runs' $want" \
		"got: $(promql "ksi_salesd_requests_total{outcome=\"$outcome\"}")"; fi
done
want=$(runs)
wait_for "every request in Prometheus" 20 prom_is 'sum(ksi_salesd_requests_total)' "$want"
check "Prometheus: sum(requests_total) = count(fetch_runs)" "$want" "$(promql 'sum(ksi_salesd_requests_total)')"
want=$(sql "SELECT coalesce(sum(records_upserted), 0) FROM ksi_sales.fetch_runs")
wait_for "records upserted in Prometheus" 20 prom_is 'ksi_salesd_records_total{result="upserted"}' "$want"
check "Prometheus: records_total{result=upserted} = sum(fetch_runs.records_upserted)" "$want" \
	"$(promql 'ksi_salesd_records_total{result="upserted"}')"
check "Prometheus: request_duration_seconds_count = requests sent" "$(runs)" \
	"$(promql 'ksi_salesd_request_duration_seconds_count')"
check "Prometheus: polls_total{outcome=http_error} = bad's failed polls" "$(runs_of bad)" \
	"$(promql 'ksi_salesd_polls_total{outcome="http_error"}')"
check "Prometheus: connectors{state=failing}" 1 "$(promql 'ksi_salesd_connectors{state="failing"}')"
check "Prometheus: the alert rules loaded" "ok" \
	"$(curl -sf "$PROM_URL/api/v1/rules" | python3 -c 'import json, sys
g = json.load(sys.stdin)["data"]["groups"]
print("ok" if g and all(r["health"] == "ok" for x in g for r in x["rules"]) else "bad")')"

# The dashboard's Prometheus row: every expression is valid PromQL and
# answers (as Grafana sends it, $__rate_interval made 1m).
bad_exprs=$(python3 - "$ROOT/etc/grafana/ksi-sales.json" "$PROM_URL" <<'PY'
import json, sys, urllib.parse, urllib.request
d = json.load(open(sys.argv[1]))
n = 0
for p in d["panels"]:
    for t in p.get("targets", []):
        if "expr" not in t:
            continue
        n += 1
        q = t["expr"].replace("$__rate_interval", "1m")
        url = sys.argv[2] + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
        try:
            r = json.load(urllib.request.urlopen(url))
            if r["status"] != "success":
                print(q)
        except Exception as e:
            print(q, e)
print("checked", n)
PY
)
check "the dashboard's PromQL (10 expressions) all run in Prometheus" "checked 10" "$bad_exprs"

echo "# 1,000 concurrent scrapes and malformed requests never stall polling"
# quick polls again and again while the endpoint is hammered: each must
# complete (a fetch_runs row) within its deadline.
add_connector quick sales
wait_for "quick's first poll" 20 runs_ge quick 1
python3 "$ROOT/tests/integration/metrics_hammer.py" 127.0.0.1 "$PORT" 1000 >"$WORK/hammer.json" 2>"$WORK/hammer.err" &
HAMMER=$!
PIDS+=("$HAMMER")
polled=0
for i in 1 2 3 4 5; do
	n=$(runs_of quick)
	sql "UPDATE ksi_sales.connector_state s SET next_poll = now()
	     FROM ksi_sales.connectors c WHERE c.id = s.connector_id AND c.name = 'quick'" >/dev/null
	wait_for "quick's poll $i during the hammering" 10 runs_ge quick $((n + 1)) && polled=$((polled + 1))
done
hammering=no
kill -0 "$HAMMER" 2>/dev/null && hammering=yes
check "5 polls completed, each within 10 s, while /metrics was hammered" 5 "$polled"
check "the hammering was still going when they were done" yes "$hammering"
wait "$HAMMER"
h=$(cat "$WORK/hammer.json")
field() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$WORK/hammer.json" "$1"; }
check "1000 of 1000 concurrent scrapes got 200 and a body" 1000 "$(field scrape_ok)"
check "a wrong path is 404" 404 "$(field not_found)"
check "POST is 405" 405 "$(field post)"
check "DELETE is 405" 405 "$(field delete)"
case $(field garbage) in 4*|None) ok "garbage gets a 4xx or a closed connection ($(field garbage))" ;;
*) not_ok "garbage gets a 4xx or a closed connection" "$h" ;; esac
case $(field huge) in 4*|None) ok "a 100 kB header gets a 4xx or a closed connection ($(field huge))" ;;
*) not_ok "a 100 kB header gets a 4xx or a closed connection" "$h" ;; esac
check "100 slowloris connections were all closed by the server" 100 "$(field slowloris_closed)"
after=$(field slowloris_closed_after)
if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 30 else 1)" "$after"; then
	ok "... within $after s (idle timeout 10 s)"
else not_ok "slowloris connections closed within 30 s" "$h"; fi
check "no client error" "[]" "$(field errors)"
check "the daemon still serves" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/metrics")"

echo "# the address"
start_daemon_fails() { # NAME CONF: run exits non-zero; its log in $WORK/NAME.log
	timeout 20 "$BIN" run -c "$2" -d "$CONNINFO" 2>"$WORK/$1.log"
}
sed "s/^listen = .*/listen = 127.0.0.1:$PORT/" "$WORK/d.conf" >"$WORK/taken.conf"
start_daemon_fails taken "$WORK/taken.conf"
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then ok "a port in use is a start-up error (exit $rc)"
else not_ok "a port in use is a start-up error" "exit $rc"; fi
check_contains "... that names [metrics] listen" "[metrics] listen" "$(cat "$WORK/taken.log")"
sed "s/^listen = .*/listen = [::1]:0/" "$WORK/d.conf" >"$WORK/v6.conf"
start_daemon v6 "$WORK/v6.conf"
V6PORT=$(scrape_port "$WORK/v6.log")
check "IPv6: [::1] serves /metrics" 200 "$(curl -s -o /dev/null -w '%{http_code}' -g "http://[::1]:$V6PORT/metrics")"
kill -TERM "$PID_v6"
wait "$PID_v6"
check "the IPv6 daemon exits 0 on SIGTERM" 0 "$?"

echo "# stopping"
kill -TERM "$PID_main"
wait "$PID_main"
check "run exits 0 on SIGTERM with metrics served" 0 "$?"
check_absent "no sanitizer report" "ERROR: AddressSanitizer" "$(cat "$WORK"/*.log)"
check_absent "no UBSan report" "runtime error" "$(cat "$WORK"/*.log)"

echo "# metrics: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
