#!/usr/bin/env bash
# The chaos soak (README "Chaos soak"): three `ksi-salesd run` daemons
# sharing one throwaway PostgreSQL poll six connectors on the versioned
# fake API while a schedule drawn from SEED (tests/chaos/schedule.py)
# restarts PostgreSQL, kills, stops and reloads daemons, holds locks, makes
# the API fail and changes stores and connectors with SQL. Then quiet: the
# faults stop, every connector must catch up within a deadline, and
# tests/chaos/check.py judges the database against every value the fake
# served. Prints the seed first and the verdict last; exits 0 on PASS.
#   run.sh BINARY FAKEAPI SEED DURATION_SECONDS
set -uo pipefail

SEED=${3:?usage: run.sh BINARY FAKEAPI SEED DURATION}
DURATION=${4:?usage: run.sh BINARY FAKEAPI SEED DURATION}
echo "chaos: seed $SEED, ${DURATION}s of faults (replay: make chaos SEED=$SEED DURATION=$DURATION)"
PHASE_T=$SECONDS

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
suite_start "$1" "$2"
HERE=$ROOT/tests/chaos
NDAEMONS=3
NCONN=10
LEASE=10
# Keep the scratch directory of a failed run for debugging.
KEEP=${CHAOS_KEEP:-}
# ASan's quarantine would make RSS grow for the first 256 MiB freed.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=16
chaos_cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; done
	if [ -n "$KEEP" ]; then
		for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
		fake_stop
		[ -n "${PG_DIR:-}" ] && sh "$ROOT/tests/lib/pg.sh" restart "$PG_DIR" fast 2>/dev/null
		echo "chaos: kept $WORK (PostgreSQL still running there: tests/lib/pg.sh stop $PG_DIR)"
		return
	fi
	suite_cleanup
}
trap chaos_cleanup EXIT

pg_start || exit 1
fake_start "$FAKE" --token "$TOKEN" --versioned "$SEED" --values "$WORK/values.log" \
	--version-period 7000 --version-horizon 10800 || exit 1
ksi migrate 2>"$WORK/migrate.log" || { cat "$WORK/migrate.log"; exit 1; }
sql "$(cat "$HERE/setup.sql")" >/dev/null || exit 1
# Connector i is tag/i at the fake, so the fake's log names the connector.
# Odd ones are slow (1 s an answer, 30 s timeout): a daemon stopped in the
# middle of their request still gets the answer when it is continued.
add_connector() {
	local i=$1 gz timeout
	if [ $((i % 2)) = 0 ]; then gz=gzip/ timeout=3; else gz=delay/1000/ timeout=30; fi
	sql "INSERT INTO ksi_sales.connectors (id, name, endpoint_url, bearer_token, poll_interval,
	         lookback, initial_backfill, max_window, request_timeout)
	     VALUES ($i, 'chaos-$i', '$FAKE_URL/${gz}tag/$i/sales', :'tok', '1 minute', '2 hours',
	             '8 hours', '1 hour', '$timeout seconds');
	     INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
	     SELECT 'c$i-s' || k, $i, lpad(k::text, 4, '0') FROM generate_series(1, 2 + $i % 3) AS k" \
		-v tok="$TOKEN" >/dev/null
}
for i in $(seq 1 $NCONN); do add_connector "$i" || exit 1; done

# One configuration per daemon: a good one, and a bad one swapped in for a
# SIGHUP (the daemon must keep the running configuration).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
write_conf() {
	cat >"$WORK/d$1.conf" <<CONF
[daemon]
lease = ${LEASE}s
claim_interval = 1s
shutdown_grace = 3s
max_per_host = 64
[log]
level = ${2:-debug}
format = json
[metrics]
listen = 127.0.0.1:${MPORT[$1]}
CONF
}
declare -a MPORT DPID
for d in $(seq 0 $((NDAEMONS - 1))); do
	MPORT[d]=$(free_port)
	write_conf "$d"
done
GEN=0
# start_d SLOT: a fresh daemon in that slot; its log is $WORK/dSLOT-GEN.log.
start_d() {
	GEN=$((GEN + 1))
	local log=$WORK/d$1-$GEN.log
	"$BIN" run -c "$WORK/d$1.conf" 2>"$log" &
	DPID[$1]=$!
	PIDS+=("${DPID[$1]}")
	echo "${DPID[$1]} $1 $log" >>"$WORK/daemons"
	wait_for "daemon $1 to start" 30 grep -q "running as" "$log"
}
for d in $(seq 0 $((NDAEMONS - 1))); do start_d "$d" || exit 1; done

# RSS of every live daemon every 2 s (a measurement, not a synchronisation).
(
	while :; do
		while read -r pid _ _; do
			r=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null) &&
				echo "$SECONDS $pid $r"
		done <"$WORK/daemons"
		sleep 2
	done
) >"$WORK/rss" 2>/dev/null &
RSSPID=$!
PIDS+=("$RSSPID")

ev() { echo "$(date +%s.%N) $*" >>"$WORK/events"; }
ev start
# SQL an operator might run while polls run.
op_sql() {
	local op=$1 c=$2 n=${3:-0}
	case $op in
	link) sql "INSERT INTO ksi_sales.stores (name, connector_id, ext_ref_code)
	           VALUES ('c$c-new-$n', $c, 'N$n') ON CONFLICT DO NOTHING" ;;
	unlink) sql "UPDATE ksi_sales.stores SET connector_id = NULL, ext_ref_code = NULL
	             WHERE id = (SELECT id FROM ksi_sales.stores WHERE connector_id = $c
	                         ORDER BY id OFFSET $((n % 3)) LIMIT 1)
	               AND (SELECT count(*) FROM ksi_sales.stores WHERE connector_id = $c) > 1" ;;
	recode) sql "UPDATE ksi_sales.stores SET ext_ref_code = 'R$n'
	             WHERE id = (SELECT id FROM ksi_sales.stores WHERE connector_id = $c
	                         ORDER BY id OFFSET $((n % 3)) LIMIT 1)" ;;
	# A setting changed (it makes the connector due at once).
	touch) sql "UPDATE ksi_sales.connectors SET request_timeout = request_timeout
	            + CASE WHEN extract(epoch FROM request_timeout)::int % 2 = 0 THEN interval '1 second'
	                   ELSE interval '-1 second' END WHERE id = $c" ;;
	# A new connector, whose first request will fail (fault $n).
	newconn)
		curl -sf "$FAKE_URL/control/fault?kind=$n&tag=$c&arg=7000" >/dev/null
		add_connector "$c" ;;
	disable) sql "UPDATE ksi_sales.connectors SET enabled = false WHERE id = $c" ;;
	enable) sql "UPDATE ksi_sales.connectors SET enabled = true WHERE id = $c" ;;
	esac
}
# A session that holds a lock for SECS (the workload: it sleeps in SQL).
op_lock() {
	PGAPPNAME=chaos-locker psql "$CONNINFO" -X -q -c \
		"BEGIN; LOCK TABLE ksi_sales.$1 IN EXCLUSIVE MODE; SELECT pg_sleep($2)" >/dev/null 2>&1 &
}
# The daemon (its pid) polling connector C now, if any.
lease_holder() {
	local pid
	pid=$(sql "SELECT split_part(lease_owner, ':', 2) FROM ksi_sales.connector_state
	           WHERE connector_id = $1 AND lease_expires > now()")
	[ -n "$pid" ] && [ -d "/proc/$pid" ] && echo "$pid"
}
# SIGSTOP for longer than the lease, in the middle of a slow request: slow
# connector C is made due (an operator's change), the daemon that polls it
# is stopped, and once its lease has expired C is made due again, so
# another daemon polls it and commits newer values before the stopped one
# wakes up with its old answer.
op_stop() {
	local c=$1 pid=
	op_sql touch "$c" >/dev/null 2>&1
	wait_for "a daemon to poll connector $c" 10 lease_holder "$c" && pid=$(lease_holder "$c")
	[ -n "$pid" ] || pid=${DPID[$((c % NDAEMONS))]}
	# (It may have been killed meanwhile: then nothing is stopped.)
	kill -STOP "$pid" 2>/dev/null
	ev "stopped $pid $c"
	# Continued by a background timer: the schedule goes on meanwhile.
	(
		sleep $((LEASE + 1))
		# Stopped in the middle of a write, the daemon holds the row
		# locks of its transaction until it is continued: this touch
		# must not wait for them, or nothing ever continues it (seed 101
		# hung so).
		PGOPTIONS='-c lock_timeout=2s' op_sql touch "$c" >/dev/null 2>&1
		sleep "$(python3 -c "print(max(0, $2 - $LEASE - 1))")"
		kill -CONT "$pid" 2>/dev/null
		echo "$(date +%s.%N) cont $pid" >>"$WORK/events"
	) &
	STOPPERS+=($!)
}
op_kill() {
	local pid=${DPID[$1]}
	kill -CONT "$pid" 2>/dev/null
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	ev "killed $pid"
	start_d "$1" || echo "chaos: daemon $1 did not restart" >>"$WORK/problems"
}
op_sighup() {
	if [ "$2" = bad ]; then
		cp "$WORK/d$1.conf" "$WORK/good.conf"
		printf '[daemon]\nlease = forever\n' >>"$WORK/d$1.conf"
		# The daemon reads the file when it handles the signal: wait for
		# it to say the reload failed before the good file comes back.
		local log n
		log=$(daemon_log "$1")
		n=$(grep -c "reload failed" "$log")
		kill -HUP "${DPID[$1]}"
		wait_for "daemon $1 to refuse the bad configuration" 10 more_failed_reloads "$log" "$n" ||
			echo "daemon $1 (stopped?) did not report the bad reload within 10 s" >>"$WORK/notes"
		mv "$WORK/good.conf" "$WORK/d$1.conf"
	else
		kill -HUP "${DPID[$1]}"
	fi
}
more_failed_reloads() { [ "$(grep -c "reload failed" "$1")" -gt "$2" ]; }
daemon_log() { awk -v s="$1" '$2 == s { l = $3 } END { print l }' "$WORK/daemons"; }

# Where the wall time goes, phase by phase (printed before the verdict).
PHASES=
phase() { PHASES="$PHASES $1 $((SECONDS - PHASE_T))s"; PHASE_T=$SECONDS; }
phase setup
STOPPERS=()
python3 "$HERE/schedule.py" "$SEED" "$DURATION" "$NDAEMONS" "$NCONN" >"$WORK/schedule"
echo "chaos: $(wc -l <"$WORK/schedule") faults scheduled"
T0=$(date +%s.%N)
while read -r at kind a b c e; do
	# Wait until the fault's time: the pace of the workload.
	delay=$(python3 -c "import time; print(max(0, $T0 + $at - time.time()))")
	sleep "$delay"
	ev "$kind $a $b $c $e"
	case $kind in
	api) curl -sf "$FAKE_URL/control/fault?kind=$a&tag=$b&arg=$c&count=$e" >/dev/null ;;
	sql) op_sql "$a" "$b" "$c" >/dev/null 2>>"$WORK/sql.err" ;;
	lock) op_lock "$a" "$b" ;;
	sighup) op_sighup "$a" "$b" ;;
	stop) op_stop "$a" "$b" ;;
	kill) op_kill "$a" ;;
	pgfast) sh "$ROOT/tests/lib/pg.sh" restart "$PG_DIR" fast ;;
	pgimmediate) sh "$ROOT/tests/lib/pg.sh" restart "$PG_DIR" immediate ;;
	esac
done <"$WORK/schedule"
# Until the chaos phase's end, then every stopped daemon continued.
sleep "$(python3 -c "import time; print(max(0, $T0 + $DURATION - time.time()))")"
# (A timer already reaped by an earlier wait has done its work.)
for p in "${STOPPERS[@]}"; do wait "$p" 2>/dev/null; done
# Faults stop: also those still queued at the fake for a connector that
# is backing off (each failure doubles its backoff, so a queue of three
# would keep it failing for minutes into the quiet phase).
ev "quiet $(curl -sf "$FAKE_URL/control/clear")"
phase faults
echo "chaos: quiet; waiting for every connector to catch up"

# Liveness: every enabled connector with stores synced into the current
# hour. The deadline allows for the longest backoff in force at the start
# of the quiet phase, plus two poll intervals.
backoff=$(sql "SELECT coalesce(ceil(extract(epoch FROM max(next_poll) - now())), 0)
              FROM ksi_sales.connector_state")
[ "${backoff:-0}" -lt 0 ] && backoff=0
LIVE=$((backoff + 120))
caught_up() {
	[ "$(sql "SELECT count(*) FROM ksi_sales.connectors c JOIN ksi_sales.connector_state s
	          ON s.connector_id = c.id
	          WHERE c.enabled AND EXISTS (SELECT 1 FROM ksi_sales.stores t WHERE t.connector_id = c.id)
	            AND (s.synced_until IS NULL OR s.synced_until <= date_trunc('hour', now()))")" = 0 ]
}
t_quiet=$SECONDS
if wait_for "every connector to catch up" "$LIVE" caught_up; then
	echo "liveness: caught up in $((SECONDS - t_quiet))s (deadline ${LIVE}s)" >"$WORK/liveness"
else
	echo "liveness: FAILED, not caught up within ${LIVE}s:" >"$WORK/liveness"
	sql "SELECT name, synced_until, last_outcome, next_poll FROM ksi_sales.connector_health" >>"$WORK/liveness"
fi
# Let every poll in flight finish before the daemons are scraped and stopped.
idle() { [ "$(sql "SELECT count(*) FROM ksi_sales.connector_state WHERE lease_expires > now()")" = 0 ]; }
phase liveness
wait_for "the daemons to be idle" 30 idle
# The process list, but the fake: it plays the customer, who knows the token.
# shellcheck disable=SC2009 # the whole listing is the point
ps -eo args | grep -v -F "$FAKE --port" >"$WORK/ps"
# /metrics of every live daemon.
while read -r pid slot log; do
	[ -d "/proc/$pid" ] && curl -sf "http://127.0.0.1:${MPORT[$slot]}/metrics" >"$log.metrics"
done <"$WORK/daemons"
kill "$RSSPID"
wait "$RSSPID" 2>/dev/null
# SIGTERM: each live daemon must exit 0 (and ASan find nothing).
while read -r pid slot log; do
	if [ -d "/proc/$pid" ]; then
		kill -TERM "$pid"
		wait "$pid"
		echo "$pid $?" >>"$WORK/exits"
	fi
done <"$WORK/daemons"
fake_stop
pg_dump "$CONNINFO" --data-only --exclude-table=ksi_sales.connectors >"$WORK/dump.sql" 2>/dev/null

phase teardown
echo "chaos: wall time:$PHASES"
python3 "$HERE/check.py" "$WORK" "$CONNINFO" "$TOKEN" "$SEED" "$DURATION"
rc=$?
[ $rc = 0 ] || KEEP=${KEEP:-1}
exit $rc
