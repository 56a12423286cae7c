#!/usr/bin/env bash
# `make bench`: measurements, never pass/fail tests (README "Performance").
# One run, on a throwaway PostgreSQL and the fake API on this machine:
#   slow APIs     N connectors x 5 stores whose API answers in 200 ms, 64
#                 transfers in flight, N = 250 ... 2000: `once` against
#                 the ideal ceil(N / 64) x 0.2 s; the peer on N = 2000.
#   at scale      10,000 connectors x 5 stores, 100 ms, 512 in flight, 3 times,
#                 every connector on one host (127.0.0.1): libcurl reuses a
#                 few connections across all "customers".
#   one host per connector (the production topology: no connection survives
#                 between two customers): connector i is at its own loopback
#                 address 127.1.(i/256).(i%256), at 2,500, 5,000 and 10,000
#                 connectors x 100 ms, 512 in flight (the growth rows), and
#                 over HTTPS at 2,500 (a throwaway CA, trusted by [http] ca_file).
#   big backfill  1 connector x 1,000 stores x 30 days (720,000 records)
#                 with `backfill`, against the floor (the same rows through
#                 psql's \copy and one INSERT ... ON CONFLICT) and the peer.
#   idle          `run` over 2,000 connectors none of which is due, 60 s.
# CPU is user + system of the client process alone (daemon or peer), from
# GNU time, as is peak RSS. Prints a table; writes build/bench/results.csv
# and, when gnuplot is installed, build/bench/cycle.png. Every `once` row is
# also measured per poll (build/bench/per_poll.csv, second table): the
# daemon's CPU, PostgreSQL's (all the cluster's processes), the fake API's,
# statements and transactions, and the fake's count of connections and of
# the distinct addresses they reached.
#
# Everything runs in a private network namespace (as root, `unshare --net
# --mount`), where lo is the only interface: the fake API listens on
# 0.0.0.0, so each of 127.0.0.0/8's addresses is a separate host to libcurl
# and no traffic can leave the machine. Where unshare is not allowed, the
# bench says so and runs every row on one host (127.0.0.1), labelled.
#   Environment: BENCH_IDLE_SECONDS (60), BENCH_DURABLE (1: fsync on),
#   BENCH_NETNS (1; 0: one host for every row), BENCH_PERF (0; 1: after the
#   table, `perf record -g` one more 10,000-host cycle and print the top of
#   its report: build/bench/perf-10000.data; https: a 2,500-host HTTPS
#   cycle instead, build/bench/perf-https.data), BENCH_ONLY (all rows; or a
#   comma-separated list of slow, idle, peer, scale, hosts, https, backfill:
#   only those rows and their targets, for quick iterations), BENCH_HOSTS
#   (the growth rows' sizes, "2500 5000 10000").
set -euo pipefail

# The peer's libraries and the plotter come from Debian, like every other
# dependency (PyPI is not used). Before the network namespace: apt needs
# the network.
PY=/usr/bin/python3
if ! "$PY" -c 'import requests, psycopg2' 2>/dev/null || ! command -v gnuplot >/dev/null; then
	if [ "$(id -u)" = 0 ]; then
		apt-get install -y -q python3-requests python3-psycopg2 gnuplot-nox >/dev/null 2>&1 ||
			{ apt-get update -q >/dev/null && apt-get install -y -q python3-requests python3-psycopg2 gnuplot-nox >/dev/null; } ||
			echo "bench: could not install python3-requests python3-psycopg2 gnuplot-nox" >&2
	fi
fi
if [ "${BENCH_PERF:-0}" != 0 ] && ! command -v perf >/dev/null && [ "$(id -u)" = 0 ]; then
	apt-get install -y -q linux-perf >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get install -y -q linux-perf >/dev/null; } ||
		echo "bench: could not install linux-perf" >&2
fi

# Into the private network namespace: the script runs again inside it.
if [ -z "${BENCH_IN_NETNS:-}" ]; then
	if [ "${BENCH_NETNS:-1}" != 1 ]; then
		export BENCH_IN_NETNS=no
	elif [ "$(id -u)" = 0 ] && unshare --net --mount true 2>/dev/null; then
		BENCH_IN_NETNS=yes exec unshare --net --mount -- bash "$0" "$@"
	else
		echo "bench: no private network namespace (needs root and unshare --net --mount):" \
			"every row runs on one host, 127.0.0.1; the one-host-per-connector rows are labelled so" >&2
		export BENCH_IN_NETNS=no
	fi
fi
if [ "$BENCH_IN_NETNS" = yes ]; then
	ip link set lo up
	HOSTS=many STATS_ADDR=127.0.0.2 FAKE_BIND=0.0.0.0
else
	# Without the namespace the fake keeps to 127.0.0.1: one host for all.
	HOSTS=one STATS_ADDR=127.0.0.1 FAKE_BIND=127.0.0.1
fi

WORK=$(mktemp -d /tmp/ksi-salesd-bench.XXXXXX)
chmod 755 "$WORK"
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
BIN=$ROOT/build/ksi-salesd
PEER=$ROOT/tests/bench/peer.py
OUT=$ROOT/build/bench
mkdir -p "$OUT"
DAEMON_PID='' TLS_PID=''
cleanup() {
	[ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
	[ -n "$TLS_PID" ] && kill "$TLS_PID" 2>/dev/null && wait "$TLS_PID" 2>/dev/null
	fake_stop
	pg_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
T_START=$SECONDS

# only ROW: whether BENCH_ONLY (empty: every row) selects ROW.
only() { [ -z "${BENCH_ONLY:-}" ] || [[ ",$BENCH_ONLY," == *",$1,"* ]]; }

HAVE_PEER=yes
"$PY" -c 'import requests, psycopg2' 2>/dev/null || HAVE_PEER=

# PostgreSQL as an operator runs it (durable commits), not the tests'
# fsync=off cluster: the floor is measured on the same server anyway.
if [ "${BENCH_DURABLE:-1}" = 1 ]; then
	export PG_EXTRA_OPTS="-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c shared_buffers=256MB -c max_wal_size=4GB"
fi
# pg_stat_statements (shipped with the server) counts statements per poll.
export PG_EXTRA_OPTS="${PG_EXTRA_OPTS:-} -c shared_preload_libraries=pg_stat_statements"
pg_start
TOKEN="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
fake_start "$ROOT/build/fakeapi" --token "$TOKEN" --bind "$FAKE_BIND"
FAKE_PORT=$(cat "$WORK/fake.port")
"$BIN" migrate 2>/dev/null
HAVE_PGSS=yes
sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null 2>&1 || HAVE_PGSS=
PG_PM=$(head -n 1 "$PG_DIR/data/postmaster.pid")
# The cluster's processes when no client is connected (checkpointer,
# walwriter, autovacuum launcher...): a run has ended for PostgreSQL when
# its backends have exited and been reaped.
PG_IDLE_CHILDREN=$(pgrep -c -P "$PG_PM")

# The HTTPS fake API: a throwaway CA (ECDSA P-256) made now; the fake makes
# each address's certificate from it (one subjectAltName each: see
# tests/fakeapi/README.md) and the daemon trusts it through [http] ca_file.
TLS=$WORK/tls
mkdir -p "$TLS"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/CN=ksi-salesd bench CA" -addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign" -keyout "$TLS/ca.key" -out "$TLS/ca.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS/server.key" 2>/dev/null
chmod 644 "$TLS"/*
"$ROOT/build/fakeapi" --port 0 --port-file "$WORK/tls.port" --bind "$FAKE_BIND" --token "$TOKEN" \
	--tls-ca-cert "$TLS/ca.pem" --tls-ca-key "$TLS/ca.key" --tls-key "$TLS/server.key" \
	>"$WORK/tls.out" 2>&1 &
TLS_PID=$!
wait_for "the HTTPS fake API to listen" 10 test -s "$WORK/tls.port"
TLS_PORT=$(cat "$WORK/tls.port")

CSV=$OUT/results.csv
echo "scenario,connectors,stores,inflight,wall_s,reference_s,ratio,records,records_per_s,cpu_s,cpu_s_per_million,peak_rss_mib,machine_busy_pct" >"$CSV"
PCSV=$OUT/per_poll.csv
echo "scenario,hosts,polls,wall_ratio,daemon_ms,pg_ms,fake_ms,peak_rss_mib,statements,transactions,rows_written,connections,addresses,resumed" >"$PCSV"
printf '%-48s %6s %8s %9s %7s %8s %10s %7s %9s %8s %6s\n' scenario inflight "wall s" "ideal s" ratio records "records/s" "CPU s" "CPU s/M" "RSS MiB" "busy%"

# busy_ticks: the machine's non-idle CPU ticks so far (all cores, /proc/stat).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# timed CMD...: runs CMD under GNU time; sets WALL, CPU (user + system of
# CMD), RSS (peak, MiB) and BUSY (the whole machine's CPU use meanwhile, in
# % of all its cores: PostgreSQL and the fake API run here too).
timed() {
	local b0 b1 user sys kib
	b0=$(busy_ticks)
	/usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$@"
	b1=$(busy_ticks)
	read -r WALL user sys kib <"$WORK/time"
	CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
	RSS=$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }')
	BUSY=$(awk -v t="$((b1 - b0))" -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" -v w="$WALL" \
		'BEGIN { printf "%.0f", (w > 0) ? 100 * t / hz / n / w : 0 }')
}

# row NAME CONNECTORS STORES INFLIGHT REFERENCE_S RECORDS: prints and records
# one measurement (WALL, CPU, RSS from the last `timed`). The ratio is
# wall / reference (a cycle against its ideal), or for a floor reference,
# records/s against the floor's records/s.
row() {
	local name=$1 n=$2 stores=$3 k=$4 ref=$5 records=$6
	awk -v name="$name" -v n="$n" -v st="$stores" -v k="$k" -v w="$WALL" -v ref="$ref" -v rec="$records" \
		-v cpu="$CPU" -v rss="$RSS" -v busy="${BUSY:-0}" -v csv="$CSV" 'BEGIN {
		ratio = (ref > 0) ? w / ref : 0
		rps = (w > 0) ? rec / w : 0
		cpm = (rec > 0) ? cpu / rec * 1e6 : 0
		sref = (ref > 0) ? sprintf("%.2f", ref) : "-"
		sratio = (ref > 0) ? sprintf("%.2f", ratio) : "-"
		printf "%-48s %6s %8.2f %9s %7s %8d %10.0f %7.2f %9.2f %8.1f %6s\n", name, k, w, sref, sratio, rec, rps, cpu, cpm, rss, busy
		printf "%s,%d,%d,%d,%.3f,%.3f,%.3f,%d,%.0f,%.3f,%.3f,%.1f,%s\n", name, n, st, k, w, ref, ratio, rec, rps, cpu, cpm, rss, busy >> csv
	}'
}

reset_db() {
	sql "SET client_min_messages = warning;
	     TRUNCATE ksi_sales.connectors, ksi_sales.stores, ksi_sales.sales_hourly, ksi_sales.fetch_runs,
	              ksi_sales.connector_state CASCADE" >/dev/null
}

# many_apis N DELAY_MS [TOPOLOGY]: N connectors x 5 stores on the fake API
# taking DELAY_MS. TOPOLOGY: one (every connector at 127.0.0.1, the
# default), many (connector i at 127.1.(i/256).(i%256)), tls (the same over
# HTTPS). Without the network namespace, many and tls are on one host too.
many_apis() {
	local url="'$FAKE_URL/delay/$2/sales'"
	case "${3:-one}:$HOSTS" in
	many:many) url="'http://' || host || ':$FAKE_PORT/delay/$2/sales'" ;;
	tls:many) url="'https://' || host || ':$TLS_PORT/delay/$2/sales'" ;;
	tls:one) url="'https://127.0.0.1:$TLS_PORT/delay/$2/sales'" ;;
	esac
	reset_db
	sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token, initial_backfill)
	     SELECT 'api-' || i, $url, '$TOKEN', '1 hour'
	     FROM generate_series(1, $1) AS i, LATERAL (SELECT '127.1.' || i / 256 || '.' || i % 256 AS host) AS h;
	     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
	     SELECT c.name || '-' || j, c.id, 'S' || j FROM ksi_sales.connectors c, generate_series(1, 5) AS j;
	     VACUUM ANALYZE" >/dev/null
}

# conf INFLIGHT: the per-host limit is raised to the global one for the rows
# where every connector is on one host (127.0.0.1); with one host per
# connector it never binds. The daemon trusts the bench's CA.
conf() {
	printf '[daemon]\nmax_concurrent_fetches = %s\nmax_per_host = %s\n[http]\nca_file = %s\n[log]\nlevel = warning\n' \
		"$1" "$1" "$TLS/ca.pem" >"$WORK/bench.conf"
}

records() { sql "SELECT coalesce(sum(records_received), 0) FROM ksi_sales.fetch_runs"; }

# pg_ticks: CPU ticks (user + system) of the whole cluster: every live
# process of the postmaster's, plus the postmaster's cutime/cstime, which
# holds the CPU of every child it has reaped (backends that exited).
pg_ticks() {
	{
		cat "/proc/$PG_PM/stat"
		for c in $(pgrep -P "$PG_PM"); do cat "/proc/$c/stat" 2>/dev/null || true; done
	} | awk '{ sub(/^.*\) /, ""); t += $12 + $13; if (NR == 1) t += $14 + $15 } END { print t }'
}
pid_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
pg_idle() { [ "$(pgrep -c -P "$PG_PM")" -le "$PG_IDLE_CHILDREN" ]; }

# pg_counts: transactions committed, rows inserted + updated in ksi_sales,
# statements run (pg_stat_statements; 0 without it), space-separated.
pg_counts() {
	local st=0
	[ -n "$HAVE_PGSS" ] && st="(SELECT coalesce(sum(calls), 0) FROM pg_stat_statements)"
	sql "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())
	            || ' ' || (SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0) FROM pg_stat_user_tables
	                       WHERE schemaname = 'ksi_sales') || ' ' || $st"
}

# fake_stats PID PORT SCHEME [reset]: "connections requests addresses
# resumed" from that fake's GET /stats (with reset, zeroed after reading).
fake_stats() {
	local q=
	[ "${4:-}" = reset ] && q="?reset=1"
	curl -s --cacert "$TLS/ca.pem" "$3://$STATS_ADDR:$2/stats$q" |
		sed 's/.*"connections":\([0-9]*\),"requests":\([0-9]*\),"addresses":\([0-9]*\),.*"resumed":\([0-9]*\).*/\1 \2 \3 \4/'
}

# daemon_cycle N DELAY_MS INFLIGHT NAME [TOPOLOGY]: one `once` over N
# connectors (many_apis), as a row of both tables.
daemon_cycle() {
	local n=$1 d=$2 k=$3 name=$4 topo=${5:-one}
	local fpid=$FAKE_PID fport=$FAKE_PORT scheme=http hosts=1
	if [ "$topo" = tls ]; then fpid=$TLS_PID fport=$TLS_PORT scheme=https; fi
	if [ "$topo" != one ]; then
		if [ "$HOSTS" = many ]; then hosts=$n; else name="$name (one host: no netns)"; fi
	fi
	many_apis "$n" "$d" "$topo"
	conf "$k"
	local c0 c1 f0 pg0 pg1 fk0 fk1
	wait_for "PostgreSQL to settle" 10 pg_idle || true
	fake_stats "$fpid" "$fport" "$scheme" reset >/dev/null
	c0=$(pg_counts) pg0=$(pg_ticks) fk0=$(pid_ticks "$fpid")
	timed "$BIN" once -c "$WORK/bench.conf"
	# The run's backends flush their statistics as they exit: wait for it.
	wait_for "the run's PostgreSQL backends to exit" 10 pg_idle || true
	pg1=$(pg_ticks) fk1=$(pid_ticks "$fpid")
	c1=$(pg_counts)
	f0=$(fake_stats "$fpid" "$fport" "$scheme")
	local ideal
	ideal=$(awk -v n="$n" -v k="$k" -v d="$d" 'BEGIN { print int((n + k - 1) / k) * d / 1000 }')
	row "$name" "$n" 5 "$k" "$ideal" "$(records)"
	# Per poll. The counts include one psql transaction and statement of
	# the bench's own, and the fake's one /stats connection (at STATS_ADDR,
	# a host of its own inside the namespace); they are taken off.
	local polls
	polls=$(sql "SELECT count(DISTINCT connector_id) FROM ksi_sales.fetch_runs")
	awk -v name="$name" -v hosts="$hosts" -v polls="$polls" -v w="$WALL" -v ideal="$ideal" \
		-v cpu="$CPU" -v rss="$RSS" -v pg="$((pg1 - pg0))" -v fk="$((fk1 - fk0))" \
		-v hz="$(getconf CLK_TCK)" -v c0="$c0" -v c1="$c1" -v f="$f0" -v own_addr="$([ "$HOSTS" = many ] && echo 1 || echo 0)" \
		-v pgss="${HAVE_PGSS:+1}" -v csv="$PCSV" 'BEGIN {
		split(c0, a, " "); split(c1, b, " "); split(f, s, " ")
		p = (polls > 0) ? polls : 1
		st = pgss ? sprintf("%.2f", (b[3] - a[3] - 1) / p) : "-"
		printf "%s,%d,%d,%.2f,%.3f,%.3f,%.3f,%.1f,%s,%.2f,%.1f,%.2f,%d,%d\n", name, hosts, polls,
			w / ideal, cpu * 1000 / p, pg / hz * 1000 / p, fk / hz * 1000 / p, rss, st,
			(b[1] - a[1] - 1) / p, (b[2] - a[2]) / p, (s[1] - 1) / p, s[3] - own_addr, s[4] >> csv
	}'
}

# per_poll_row NAME HOSTS POLLS WALL IDEAL CPU_TICKS PG_TICKS FAKE_TICKS RSS C0 C1 F:
# one row of per_poll.csv from counts taken around a cycle of `run` (C0,
# C1: pg_counts before and after; F: fake_stats after a reset).
per_poll_row() {
	awk -v name="$1" -v hosts="$2" -v polls="$3" -v w="$4" -v ideal="$5" -v cpu="$6" -v pg="$7" \
		-v fk="$8" -v rss="$9" -v c0="${10}" -v c1="${11}" -v f="${12}" -v hz="$(getconf CLK_TCK)" \
		-v own_addr="$([ "$HOSTS" = many ] && echo 1 || echo 0)" -v pgss="${HAVE_PGSS:+1}" -v csv="$PCSV" 'BEGIN {
		split(c0, a, " "); split(c1, b, " "); split(f, s, " ")
		st = pgss ? sprintf("%.2f", (b[3] - a[3] - 1) / polls) : "-"
		printf "%s,%d,%d,%.2f,%.3f,%.3f,%.3f,%.1f,%s,%.2f,%.1f,%.2f,%d,%d\n", name, hosts, polls,
			w / ideal, cpu / hz * 1000 / polls, pg / hz * 1000 / polls, fk / hz * 1000 / polls, rss, st,
			(b[1] - a[1] - 1) / polls, (b[2] - a[2]) / polls, (s[1] - 1) / polls, s[3] - own_addr, s[4] >> csv
	}'
}

# https_resumed: what resuming TLS sessions saves. One daemon (`run`, so its
# per-host session shares live on) polls the 2,500 HTTPS hosts, then all of
# them again at once (made due, NOTIFY): the first cycle makes full
# handshakes, the second resumes each host's session. Two rows of the
# per-poll table, from the same process.
https_resumed() {
	local n=2500 name="https run: 2500 hosts" hosts=1 t0 t1 pg0 pg1 fk0 fk1 c0 c1 cpu0 cpu1 f rss
	if [ "$HOSTS" = many ]; then hosts=$n; else name="$name (one host: no netns)"; fi
	many_apis "$n" 100 tls
	printf '[daemon]\nmax_concurrent_fetches = 512\nmax_per_host = 512\n[http]\nca_file = %s\n[log]\nlevel = info\n' \
		"$TLS/ca.pem" >"$WORK/resume.conf"
	wait_for "PostgreSQL to settle" 10 pg_idle || true
	ok_runs() { [ "$(sql "SELECT count(*) FROM ksi_sales.fetch_runs")" -ge "$1" ]; }
	local cycle
	for cycle in 1 2; do
		fake_stats "$TLS_PID" "$TLS_PORT" https reset >/dev/null
		c0=$(pg_counts) pg0=$(pg_ticks) fk0=$(pid_ticks "$TLS_PID") t0=$(date +%s.%N)
		if [ "$cycle" = 1 ]; then
			"$BIN" run -c "$WORK/resume.conf" 2>"$WORK/resume.log" &
			DAEMON_PID=$!
			cpu0=0
		else
			cpu0=$(pid_ticks "$DAEMON_PID")
			sql "UPDATE ksi_sales.connector_state SET next_poll = now(); NOTIFY ksi_sales_config, 'connectors'" >/dev/null
		fi
		wait_for "cycle $cycle of the HTTPS daemon" 300 ok_runs $((cycle * n)) || true
		t1=$(date +%s.%N) cpu1=$(pid_ticks "$DAEMON_PID") pg1=$(pg_ticks) fk1=$(pid_ticks "$TLS_PID")
		c1=$(pg_counts)
		f=$(fake_stats "$TLS_PID" "$TLS_PORT" https)
		rss=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$DAEMON_PID/status")
		per_poll_row "$name (cycle $cycle)" "$hosts" "$n" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
			"$(awk -v n="$n" 'BEGIN { print int((n + 511) / 512) * 0.1 }')" "$((cpu1 - cpu0))" "$((pg1 - pg0))" \
			"$((fk1 - fk0))" "$rss" "$c0" "$c1" "$f"
	done
	kill "$DAEMON_PID"
	wait "$DAEMON_PID" || true
	DAEMON_PID=
}

# -- many slow APIs, and the curve of cycle time against connector count --
SLOW_RSS="" IDLE_RSS="" SCALE_RSS="" HOSTS_RSS="" BF_RSS=""
if only slow; then
	for n in 250 500 1000 2000; do
		daemon_cycle "$n" 200 64 "slow APIs: $n x 200 ms"
	done
	SLOW_CPU=$CPU SLOW_WALL=$WALL SLOW_RSS=$RSS
fi

if only idle; then
# -- idle: 2,000 connectors, none due within the hour --
# (After a poll each connector's next one is spread over its interval, so
# some would be due within any minute: those are work, not idling.)
sql "UPDATE ksi_sales.connector_state SET next_poll = now() + interval '1 hour'" >/dev/null
# The minute after start-up has settled (its connections, LISTEN, first
# claims): from 5 s after READY to 5 s + BENCH_IDLE_SECONDS. CPU time of all
# the daemon's threads, in nanoseconds (/proc/PID/task/*/schedstat).
IDLE_S=${BENCH_IDLE_SECONDS:-60}
printf '[daemon]\nmax_concurrent_fetches = 64\nmax_per_host = 64\n[log]\nlevel = info\n' >"$WORK/idle.conf"
"$BIN" run -c "$WORK/idle.conf" 2>"$WORK/idle.log" &
DAEMON_PID=$!
wait_for "the daemon to start" 20 grep -q "running as" "$WORK/idle.log"
cpu_ns() { cat /proc/"$DAEMON_PID"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'; }
sleep 5 # part of the measurement's definition (start-up excluded), not a synchronisation
t0=$(cpu_ns) b0=$(busy_ticks)
sleep "$IDLE_S" # the measurement interval itself
t1=$(cpu_ns) b1=$(busy_ticks)
IDLE_RSS=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$DAEMON_PID/status")
kill "$DAEMON_PID"
wait "$DAEMON_PID" || true
DAEMON_PID=
IDLE_CPU=$(awk -v a="$t0" -v b="$t1" -v s="$IDLE_S" 'BEGIN { printf "%.4f", (b - a) / 1e9 * 60 / s }')
WALL=$IDLE_S RSS=$IDLE_RSS
CPU=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
BUSY=$(awk -v t="$((b1 - b0))" -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" -v w="$IDLE_S" 'BEGIN { printf "%.0f", 100 * t / hz / n / w }')
row "idle: 2000, none due" 2000 5 64 0 0
fi

# -- the peer on the slow APIs --
if [ -n "$HAVE_PEER" ] && only peer; then
	many_apis 2000 200
	timed "$PY" "$PEER" poll --threads 64 >/dev/null
	PEER_SLOW_CPU=$CPU PEER_SLOW_WALL=$WALL
	row "peer: slow APIs 2000 x 200 ms" 2000 5 64 6.4 "$(records)"
fi

# -- at scale: three cycles (the busiest scenario varies most); the target
# takes their median --
SCALE_WALLS= SCALE_RATIO=
if only scale; then
	SCALE_RSS=0
	for i in 1 2 3; do
		daemon_cycle 10000 100 512 "at scale: 10000 x 100 ms ($i/3)"
		SCALE_WALLS="$SCALE_WALLS $WALL"
		SCALE_RSS=$(awk -v a="$SCALE_RSS" -v b="$RSS" 'BEGIN { print (b > a) ? b : a }')
	done
	# shellcheck disable=SC2086 # one wall per line
	SCALE_RATIO=$(printf '%s\n' $SCALE_WALLS | sort -n | sed -n 2p | awk '{ printf "%.2f", $1 / 2.0 }')
fi

# -- one host per connector: the growth rows, then HTTPS --
if only hosts; then
	for n in ${BENCH_HOSTS:-2500 5000 10000}; do
		daemon_cycle "$n" 100 512 "hosts: $n x 100 ms" many
	done
	HOSTS_RSS=$RSS
fi
if only https; then
	daemon_cycle 2500 100 512 "https hosts: 2500 x 100 ms" tls
	https_resumed
fi

if only backfill; then
# -- big backfill: daemon, floor, peer --
STORES=1000 DAYS=30
TO=$(date -u +%Y-%m-%dT%H:00:00+00:00)
FROM=$(date -u -d "$(date -u +%Y-%m-%dT%H:00:00) $DAYS days ago" +%Y-%m-%dT%H:00:00+00:00)
backfill_db() {
	reset_db
	sql "INSERT INTO ksi_sales.connectors (name, endpoint_url, bearer_token) VALUES ('chain', '$FAKE_URL/sales', '$TOKEN');
	     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
	     SELECT 'store ' || i, (SELECT id FROM ksi_sales.connectors), 'S' || lpad(i::text, 4, '0')
	     FROM generate_series(1, $STORES) AS i;
	     VACUUM ANALYZE" >/dev/null
}
backfill_db
printf '[log]\nlevel = warning\n' >"$WORK/backfill.conf"
timed "$BIN" backfill -c "$WORK/backfill.conf" --connector chain --from "$FROM" --to "$TO" </dev/null 2>"$WORK/backfill.log"
BF_WALL=$WALL BF_CPU=$CPU BF_RSS=$RSS BF_BUSY=$BUSY
BF_RECORDS=$(sql "SELECT count(*) FROM ksi_sales.sales_hourly")

# The floor: the very rows the daemon wrote, loaded by psql in one COPY and
# merged in one statement, into the same empty table.
sql "\copy (SELECT ext_ref_code, extract(epoch FROM hour)::bigint, num_tickets FROM ksi_sales.sales_hourly) TO '$WORK/rows.csv' CSV"
chmod 644 "$WORK/rows.csv"
sql "TRUNCATE ksi_sales.sales_hourly; CHECKPOINT" >/dev/null
cat >"$WORK/floor.sql" <<SQL
BEGIN;
CREATE TEMP TABLE incoming (code text, hour bigint, n integer) ON COMMIT DROP;
\copy incoming FROM '$WORK/rows.csv' CSV
INSERT INTO ksi_sales.sales_hourly AS h (store_id, hour, num_tickets, ext_ref_code, connector_id, fetched_at)
SELECT s.id, to_timestamp(i.hour), i.n, i.code, s.connector_id, now()
FROM incoming i JOIN ksi_sales.stores s ON s.ext_ref_code = i.code
 AND s.connector_id = (SELECT id FROM ksi_sales.connectors WHERE name = 'chain')
ON CONFLICT (store_id, hour) DO UPDATE SET num_tickets = EXCLUDED.num_tickets,
 ext_ref_code = EXCLUDED.ext_ref_code, connector_id = EXCLUDED.connector_id, fetched_at = EXCLUDED.fetched_at;
COMMIT;
SQL
timed psql "$CONNINFO" -X -q -v ON_ERROR_STOP=1 -f "$WORK/floor.sql"
FLOOR_WALL=$WALL FLOOR_BUSY=$BUSY
[ "$(sql "SELECT count(*) FROM ksi_sales.sales_hourly")" = "$BF_RECORDS" ] ||
	echo "bench: the floor loaded a different number of rows" >&2
WALL=$BF_WALL CPU=$BF_CPU RSS=$BF_RSS BUSY=$BF_BUSY
# The ratio column for the backfill is the daemon's records/s over the
# floor's: wall(floor) / wall(daemon).
BF_RATIO=$(awk -v f="$FLOOR_WALL" -v d="$BF_WALL" 'BEGIN { printf "%.2f", f / d }')
row "backfill: 1000 stores x 30 d" 1 "$STORES" 1 0 "$BF_RECORDS"
WALL=$FLOOR_WALL CPU=0 RSS=0 BUSY=$FLOOR_BUSY
row "floor: \\copy + one upsert" 1 "$STORES" 1 0 "$BF_RECORDS"

if [ -n "$HAVE_PEER" ]; then
	backfill_db
	sql "CHECKPOINT" >/dev/null
	timed "$PY" "$PEER" backfill --connector chain --from "$FROM" --to "$TO" >/dev/null
	PEER_BF_WALL=$WALL PEER_BF_CPU=$CPU
	row "peer: backfill" 1 "$STORES" 1 0 "$(sql "SELECT count(*) FROM ksi_sales.sales_hourly")"
fi
fi

# -- the targets, as ratios from this run --
echo
echo "targets (issue 6), from this run:"
# target NAME VALUE OP LIMIT: one line, or none when VALUE is empty (its
# rows were not run: BENCH_ONLY).
target() {
	[ -n "$2" ] || return 0
	awk -v n="$1" -v v="$2" -v op="$3" -v l="$4" 'BEGIN {
		met = (op == "<=") ? v <= l : v >= l
		printf "  %-58s %8s  (target %s %s)  %s\n", n, v, op, l, met ? "met" : "NOT MET" }'
}
# div A B FORMAT: A / B, or nothing when either is missing.
div() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { printf f, a / b }' || true; }
target "slow APIs 2000 x 200 ms, cycle / ideal" "$(div "${SLOW_WALL:-}" 6.4 %.2f)" "<=" 1.15
target "slow APIs, daemon CPU / peer CPU" "$(div "${SLOW_CPU:-}" "${PEER_SLOW_CPU:-}" %.3f)" "<=" 0.25
target "at scale 10000 x 100 ms, 512 in flight, cycle / ideal (median of 3)" "$SCALE_RATIO" "<=" 1.3
target "big backfill, daemon records/s / floor records/s" "${BF_RATIO:-}" ">=" 0.75
target "big backfill, daemon records/s / peer records/s" "$(div "${PEER_BF_WALL:-}" "${BF_WALL:-}" %.2f)" ">=" 2
target "big backfill, daemon CPU / peer CPU" "$(div "${BF_CPU:-}" "${PEER_BF_CPU:-}" %.3f)" "<=" 0.333
# (HTTPS has its own RSS target below, issue 12's.)
target "peak RSS, any plain HTTP scenario (MiB)" \
	"$(printf '%s\n' "$SLOW_RSS" "$SCALE_RSS" "$BF_RSS" "$IDLE_RSS" "$HOSTS_RSS" | sed '/^$/d' | sort -n | tail -1)" "<=" 64
target "idle CPU (s per minute)" "${IDLE_CPU:-}" "<=" 0.05

# -- per poll: every `once` row of this run --
echo
echo "per poll (CPU in ms of CPU time per poll; PostgreSQL: all the cluster's processes):"
printf '%-48s %6s %6s %6s %7s %6s %6s %6s %6s %6s %6s %6s %6s %6s %7s\n' scenario hosts polls "ratio" \
	daemon PG "d+PG" fake "RSS" stmts xacts rows conns addrs resumed
tail -n +2 "$PCSV" | awk -F, '{
	printf "%-48s %6d %6d %6.2f %7.3f %6.3f %6.3f %6.3f %6.1f %6s %6.2f %6.1f %6.2f %6d %7d\n",
		$1, $2, $3, $4, $5, $6, $5 + $6, $7, $8, $9, $10, $11, $12, $13, $14 }'
echo "  ratio: wall / ideal; daemon, PG, fake: CPU per poll of the daemon, of PostgreSQL and of the"
echo "  fake API; RSS: the daemon's peak (MiB); hosts: distinct addresses the connectors' URLs name;"
echo "  conns: TCP connections the fake API accepted per poll (1.00: none shared); addrs: distinct"
echo "  addresses they reached; resumed: requests on a resumed TLS session; stmts:"
echo "  pg_stat_statements calls (BEGIN/COMMIT included); xacts: commits; rows: rows inserted +"
echo "  updated in ksi_sales."

# -- the targets of issue 12, from this run --
pp() { # SCENARIO FIELD: a field of per_poll.csv
	awk -F, -v n="$1" -v f="$2" '$1 == n { print $f }' "$PCSV"
}
echo
if [ "$HOSTS" = many ]; then
	H2500="hosts: 2500 x 100 ms" H10000="hosts: 10000 x 100 ms" HTTPS="https hosts: 2500 x 100 ms"
	echo "targets (issue 12), from this run:"
	target "daemon CPU per poll, 10000 hosts / 2500 hosts" \
		"$(div "$(pp "$H10000" 5)" "$(pp "$H2500" 5)" %.2f)" "<=" 1.15
	target "daemon CPU per poll, 10000 hosts, plain HTTP (ms)" "$(pp "$H10000" 5)" "<=" 0.25
	if [ -n "$(pp "$H10000" 5)" ]; then
		target "daemon + PostgreSQL CPU per poll, 10000 hosts (ms)" \
			"$(awk -v a="$(pp "$H10000" 5)" -v b="$(pp "$H10000" 6)" 'BEGIN { printf "%.3f", a + b }')" "<=" 0.8
	fi
	target "10000 hosts x 100 ms, 512 in flight: cycle / ideal" "$(pp "$H10000" 4)" "<=" 2.0
	target "HTTPS 2500 hosts: daemon CPU per poll (ms)" "$(pp "$HTTPS" 5)" "<=" 1.0
	target "HTTPS 2500 hosts, 512 in flight: peak RSS (MiB)" "$(pp "$HTTPS" 8)" "<=" 64
	R1="https run: 2500 hosts (cycle 1)" R2="https run: 2500 hosts (cycle 2)"
	if [ -n "$(pp "$R2" 5)" ]; then
		target "HTTPS, sessions resumed (run, cycle 2): daemon CPU per poll (ms)" "$(pp "$R2" 5)" "<=" 1.0
		echo "  resumption saves $(awk -v a="$(pp "$R1" 5)" -v b="$(pp "$R2" 5)" 'BEGIN { printf "%.3f ms (%.0f %%)", a - b, 100 * (a - b) / a }') of the daemon's CPU per poll" \
			"($(pp "$R2" 14) of $(pp "$R2" 3) requests resumed)"
	fi
	echo "  (and every issue 6 target above)"
else
	echo "targets (issue 12): not judged: no network namespace, so every row ran on one host"
fi
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr);" \
	"PostgreSQL $(psql "$CONNINFO" -X -A -t -c 'SHOW server_version'), fsync $(psql "$CONNINFO" -X -A -t -c 'SHOW fsync')"
echo "network: $([ "$HOSTS" = many ] && echo "private namespace, one loopback address per connector" ||
	echo "no namespace: every connector on 127.0.0.1")"
echo "csv: $CSV $PCSV"

if command -v gnuplot >/dev/null && grep '^slow APIs' "$CSV" >"$WORK/curve.csv"; then
	gnuplot <<PLOT
set terminal pngcairo size 800,500
set output '$OUT/cycle.png'
set datafile separator ','
set title 'ksi-salesd once: cycle time against connector count (API 200 ms, 64 in flight)'
set xlabel 'connectors'
set ylabel 'cycle (s)'
set key top left
plot '$WORK/curve.csv' using 2:5 with linespoints title 'measured', \
     '$WORK/curve.csv' using 2:6 with lines dashtype 2 title 'ideal ceil(N/64) x 0.2 s'
PLOT
	echo "plot: $OUT/cycle.png"
fi

# -- where the daemon's CPU goes at 10,000 hosts (BENCH_PERF=1) or over
# HTTPS (BENCH_PERF=https): one more cycle under perf, after the
# measurements so it disturbs none of them --
if [ "${BENCH_PERF:-0}" != 0 ]; then
	if command -v perf >/dev/null; then
		if [ "$BENCH_PERF" = https ]; then
			PERF_TAG=https
			many_apis 2500 100 tls
		else
			PERF_TAG=10000
			many_apis 10000 100 many
		fi
		conf 512
		# DWARF unwinding: Debian's libcurl has no frame pointers and no
		# symbols for its internal functions, but its .eh_frame lets perf
		# walk through them to the daemon's callers.
		perf record -q --call-graph dwarf,16384 -F 499 -o "$OUT/perf-$PERF_TAG.data" -- \
			"$BIN" once -c "$WORK/bench.conf" 2>"$WORK/perf.log"
		perf report -i "$OUT/perf-$PERF_TAG.data" --no-children -g none --sort dso,sym --stdio \
			>"$OUT/perf-$PERF_TAG.txt" 2>/dev/null || true
		echo
		echo "perf ($PERF_TAG, the daemon alone; callers: perf report -i $OUT/perf-$PERF_TAG.data --no-children):"
		grep -v -e '^#' -e '^$' "$OUT/perf-$PERF_TAG.txt" | sed -n 1,40p
	else
		echo "bench: BENCH_PERF is set but there is no perf (install linux-perf)" >&2
	fi
fi
echo
echo "bench: $((SECONDS - T_START)) s"
