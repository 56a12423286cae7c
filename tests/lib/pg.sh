#!/bin/sh
# Throwaway PostgreSQL for tests and the demo: a fresh cluster in DIR,
# listening only on a Unix socket in DIR (no TCP), trust auth, fsync off.
#   pg.sh start DIR   prints the conninfo to use ("host=DIR dbname=postgres user=postgres")
#   pg.sh stop DIR    stops it and removes DIR
#   pg.sh halt DIR    stops it (fast) and keeps DIR, for `resume`
#   pg.sh restart DIR [fast|immediate]
#   pg.sh resume DIR  starts the cluster a stopped run left in DIR (prints the conninfo)
# PG_EXTRA_OPTS adds server options at start, e.g. "-c log_statement=all".
# initdb refuses to run as root, so as root the cluster belongs to `postgres`.
set -eu

bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$bindir/initdb" ] || { echo "pg.sh: no PostgreSQL server found (install postgresql)" >&2; exit 1; }

as_owner() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd=$1
dir=$2

# Starts the cluster in $dir (waiting up to $1 s) and prints its conninfo.
server_start() {
	as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t "$1" \
		-o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=off \
		    -c full_page_writes=off -c synchronous_commit=off -c max_connections=200 \
		    ${PG_EXTRA_OPTS:-}" \
		start >/dev/null ||
		{ cat "$dir/server.log" >&2; exit 1; }
	echo "host=$dir dbname=postgres user=postgres"
}
case $cmd in
start)
	mkdir -p "$dir"
	[ "$(id -u)" = 0 ] && chown postgres: "$dir"
	as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync \
		-E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; exit 1; }
	server_start 60
	;;
resume)
	server_start 300 # a big cluster may replay WAL first
	;;
restart)
	as_owner "$bindir/pg_ctl" -D "$dir/data" -m "${3:-fast}" -w -t 60 restart \
		-o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=off" >/dev/null
	;;
halt)
	as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 300 stop >/dev/null
	;;
stop)
	if [ -d "$dir/data" ]; then
		as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$dir"
	;;
*)
	echo "usage: pg.sh start|resume|halt|stop|restart DIR" >&2
	exit 2
	;;
esac
