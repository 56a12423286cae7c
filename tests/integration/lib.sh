# Shared by the integration tests, the demo, bench and soak: a throwaway
# PostgreSQL, the fake customer API, and assertions that name what they
# expected. Sourced by bash scripts. A test suite starts with
# `suite_start "$@"`; the others set $WORK (a scratch directory) themselves.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# ok, not_ok, check, check_contains, check_absent; PASSED and FAILED.
# shellcheck source=tests/lib/tap.sh
. "$ROOT/tests/lib/tap.sh"

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds
# or the deadline passes (no fixed sleeps as synchronisation).
wait_for() {
	local what=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $deadline ]; then
			echo "timed out after ${secs}s waiting for: $what" >&2
			return 1
		fi
		sleep 0.05
	done
}

# suite_start BINARY FAKEAPI: what every integration suite starts with:
# absolute paths (BIN, FAKE), a scratch directory (WORK), a canary token
# (TOKEN: it must end up nowhere but connectors.bearer_token), sanitizers
# that stop at the first error, and cleanup on exit of the fake API,
# PostgreSQL, the scratch directory and every process in PIDS.
suite_start() {
	BIN=$(realpath "$1")
	FAKE=$(realpath "$2")
	WORK=$(mktemp -d "/tmp/ksi-salesd-$(basename "$0" .sh).XXXXXX")
	chmod 755 "$WORK"
	TOKEN="canary-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	PIDS=()
	trap suite_cleanup EXIT
}

suite_cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	fake_stop
	pg_stop
	rm -rf "$WORK"
}

# ksi ARGS...: the binary under test, through $KSI_WRAP when set (`make
# valgrind` sets it to a valgrind command line).
# shellcheck disable=SC2086 # KSI_WRAP is a command line, split on purpose
ksi() { ${KSI_WRAP:-} "$BIN" "$@"; }

# once [args...]: runs `ksi-salesd once -c $WORK/test.conf`, keeps its log
# (LOG, also appended to $WORK/all.log) and exit code (RC).
RUN=0
once() {
	RUN=$((RUN + 1))
	LOG=$WORK/once-$RUN.log
	ksi once -c "$WORK/test.conf" "$@" 2>"$LOG"
	RC=$?
	cat "$LOG" >>"$WORK/all.log"
}

# daemon_conf FILE [SHUTDOWN_GRACE] [CLAIM_INTERVAL]: a configuration for
# daemons under test: short leases, debug logs, no per-host limit in the
# way (every fake API is on 127.0.0.1).
daemon_conf() {
	cat >"$1" <<CONF
[daemon]
lease = 10s
claim_interval = ${3:-2s}
shutdown_grace = ${2:-5s}
max_per_host = 64
[log]
level = debug
CONF
}

# hold_start NAME CONNINFO SQL: a psql session (in the background) that runs
# SQL inside an open transaction and keeps it open until hold_end NAME.
hold_start() {
	local name=$1 url=$2
	shift
	mkfifo "$WORK/$name.in"
	PGAPPNAME=hold_$name psql "$url" -X -q -v ON_ERROR_STOP=1 <"$WORK/$name.in" >"$WORK/$name.out" 2>&1 &
	PIDS+=("$!")
	eval "HOLD_PID_$name=$!"
	eval "exec {HOLD_FD_$name}>\"\$WORK/$name.in\""
	local fd_var="HOLD_FD_$name"
	printf 'BEGIN;\n%s\n' "$2" >&"${!fd_var}"
	# Its statement has run when its session waits, idle, in the transaction.
	holding() { [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hold_$1' AND state = 'idle in transaction'")" = 1 ]; }
	wait_for "$name to hold its locks" 20 holding "$name"
}
hold_end() {
	local fd_var="HOLD_FD_$1" pid_var="HOLD_PID_$1"
	printf 'COMMIT;\n' >&"${!fd_var}"
	eval "exec ${!fd_var}>&-"
	wait "${!pid_var}" 2>/dev/null
}

# AGED_PARTITIONS: SQL that makes a new installation look 40 days old
# (after its *_before tables are dropped, with connector 1 in place): daily
# partitions of fetch_runs for the 40 past days and monthly ones of
# rejected_records for the 6 past months, one row at noon each day (the
# first of each month) and one now. retention.sh and janitor.sh.
AGED_PARTITIONS="SELECT ksi_sales.retention_create('fetch_runs', d)
     FROM generate_series(date_trunc('day', now()) - interval '40 days', date_trunc('day', now()) - interval '1 day', interval '1 day') d;
     SELECT ksi_sales.retention_create('rejected_records', d)
     FROM generate_series(date_trunc('month', now()) - interval '6 months', date_trunc('month', now()) - interval '1 month', interval '1 month') d;
     INSERT INTO ksi_sales.fetch_runs (connector_id, started_at, finished_at, outcome)
     SELECT 1, d + interval '12 hours', d + interval '12 hours', 'ok'
     FROM generate_series(date_trunc('day', now()) - interval '40 days', date_trunc('day', now()) - interval '1 day', interval '1 day') d;
     INSERT INTO ksi_sales.fetch_runs (connector_id, started_at, finished_at, outcome) VALUES (1, now(), now(), 'ok');
     INSERT INTO ksi_sales.rejected_records (run_id, connector_id, position, reason, detail, record, created_at)
     SELECT 0, 1, 0, 'x', 'x', '{}', d
     FROM generate_series(date_trunc('month', now()) - interval '6 months', date_trunc('month', now()), interval '1 month') d"

# start_daemon NAME [CONF] [DATABASE]: starts `run` in the background (PID
# in PID_NAME, log in $WORK/NAME.log) and waits until it says it runs.
start_daemon() {
	local name=$1 conf=${2:-$WORK/d.conf} url=${3:-$CONNINFO}
	${KSI_WRAP:-} "$BIN" run -c "$conf" -d "$url" 2>"$WORK/$name.log" &
	local pid=$!
	PIDS+=("$pid")
	eval "PID_$name=$pid"
	wait_for "$name to start" 20 grep -q "running as" "$WORK/$name.log"
}

pg_start() {
	PG_DIR=$WORK/pg
	CONNINFO=$(sh "$ROOT/tests/lib/pg.sh" start "$PG_DIR") || return 1
	export KSI_SALESD_DATABASE_URL=$CONNINFO
}

pg_stop() {
	[ -n "${PG_DIR:-}" ] && sh "$ROOT/tests/lib/pg.sh" stop "$PG_DIR"
	PG_DIR=
}

# sql QUERY [psql options...]: one value per line, unaligned, no headers.
# The query goes in on standard input so that psql variables (-v name=...,
# used as :'name') are interpolated; -c would not.
sql() {
	local q=$1
	shift
	psql "$CONNINFO" -X -q -A -t -v ON_ERROR_STOP=1 "$@" <<<"$q"
}

# fake_start [fakeapi options...]: starts the fake API on a free port,
# sets FAKE_URL (http://127.0.0.1:PORT) and FAKE_PID.
fake_start() {
	local fake=$1
	shift
	rm -f "$WORK/fake.port"
	"$fake" --port 0 --port-file "$WORK/fake.port" --log "$WORK/fake.log" "$@" \
		>"$WORK/fake.out" 2>&1 &
	FAKE_PID=$!
	wait_for "the fake API to listen" 10 test -s "$WORK/fake.port" || return 1
	FAKE_URL="http://127.0.0.1:$(cat "$WORK/fake.port")"
}

fake_stop() {
	if [ -n "${FAKE_PID:-}" ]; then
		kill "$FAKE_PID" 2>/dev/null
		wait "$FAKE_PID" 2>/dev/null
	fi
	FAKE_PID=
}

# check_no_fragment NAME TEXT: no substring of $TOKEN of 6 bytes or more
# (SPEC §3: the token and every fragment of it that long are masked).
check_no_fragment() {
	local i frag
	for ((i = 0; i + 6 <= ${#TOKEN}; i++)); do
		frag=${TOKEN:i:6}
		case $2 in
		*"$frag"*)
			not_ok "$1" "holds the token fragment '$frag'" "actual: $2"
			return
			;;
		esac
	done
	ok "$1"
}
