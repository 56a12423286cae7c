#!/bin/sh
# Checks systemd/ksi-salesd.service offline, without a running systemd (works
# in a container where systemd is not PID 1):
#   1. every directive in the unit has a comment line right above it and a
#      row in systemd/README.md;
#   2. `systemd-analyze verify` prints nothing at all (any warning fails);
#   3. `systemd-analyze security --offline=true` rates it 2.0 or lower.
# Usage: tests/systemd/check.sh [BINARY]   (default build/ksi-salesd)
# BINARY replaces ExecStart's path, since verify insists that it exists.
# KSI_UNIT=FILE checks another copy of the unit, such as the one the package
# installed (tests/deb/install.sh: KSI_UNIT=/lib/systemd/system/... with
# BINARY /usr/bin/ksi-salesd, so nothing in it changes).
# Needs systemd-analyze (Debian package `systemd`) and /bin/kill (`procps`),
# which ExecReload= names.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UNIT=${KSI_UNIT:-$ROOT/systemd/ksi-salesd.service}
MAX_EXPOSURE=2.0
# shellcheck source=tests/lib/tap.sh
. "$ROOT/tests/lib/tap.sh"
indent() { sed 's/^/    /'; }
# The table rows of `security` that still score (last field a number), without the mark.
exposed() {
	printf '%s\n' "$1" | awk '$NF ~ /^[0-9]+\.[0-9]+$/ && !/Overall/ { $1 = ""; sub(/^ +/, ""); print }' |
		sed 's/  */ /g' | indent
}

bin=${1:-$ROOT/build/ksi-salesd}
case $bin in
/*) ;;
*) bin=$(pwd)/$bin ;;
esac
if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
	echo "check.sh: $bin is not an executable file (run make first)" >&2
	exit 2
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "check.sh: systemd-analyze not found: apt-get install systemd" >&2
	exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ksi-salesd-systemd.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
# Readable by anyone, so the checks behave the same for root and others.
chmod 755 "$tmp"
# The copy keeps the unit's name (verify and security derive the unit from it).
copy=$tmp/ksi-salesd.service
# Only the path changes: `ExecStart=/usr/local/bin/ksi-salesd run` keeps `run`.
# | & \ mean something to sed's replacement; space and % to systemd.
if printf '%s' "$bin" | grep -q '[|&\\ %]'; then
	printf 'check.sh: unsupported character (one of | & \\ %% space) in %s\n' "$bin" >&2
	exit 2
fi
sed "s|^ExecStart=[^ ]*|ExecStart=$bin|" "$UNIT" >"$copy" || exit 2
chmod 644 "$copy"
if ! grep -qxF "ExecStart=$bin run" "$copy"; then
	echo "check.sh: no 'ExecStart=... run' line found in $UNIT" >&2
	exit 2
fi

# Plain output on stderr, whatever the caller's environment: no colours, no
# pager, no source locations, never to the journal or kmsg (the default when
# stderr is a journal stream, e.g. a CI runner started as a service), and
# nothing below notice (debug/info chatter about the missing manager).
SYSTEMD_LOG_LEVEL=notice
SYSTEMD_LOG_TARGET=console
SYSTEMD_LOG_COLOR=0
SYSTEMD_LOG_LOCATION=0
SYSTEMD_LOG_TIME=0
SYSTEMD_COLORS=0
SYSTEMD_PAGER='cat'
export SYSTEMD_LOG_LEVEL SYSTEMD_LOG_TARGET SYSTEMD_LOG_COLOR SYSTEMD_LOG_LOCATION \
	SYSTEMD_LOG_TIME SYSTEMD_COLORS SYSTEMD_PAGER
unset SYSTEMD_UNIT_PATH

# 1. Every directive is explained by the comment line right above it.
uncommented=$(awk '
	/^[A-Za-z][A-Za-z0-9]*=/ && prev !~ /^#/ { print FILENAME ":" NR ": " $0 }
	{ prev = $0 }' "$UNIT")
if [ -z "$uncommented" ]; then
	ok "every directive has a comment"
else
	not_ok "every directive has a comment"
	echo "$uncommented" | indent
fi

# 1b. ... and has its one-line row in systemd/README.md's table.
undocumented=$(for key in $(sed -n 's/^\([A-Za-z][A-Za-z0-9]*\)=.*/\1/p' "$UNIT" | sort -u); do
	grep -q "^| .*\`$key=" "$ROOT/systemd/README.md" || echo "$key="
done)
if [ -z "$undocumented" ]; then
	ok "every directive has a row in systemd/README.md"
else
	not_ok "every directive has a row in systemd/README.md"
	echo "$undocumented" | indent
fi

# 2. verify: any output at all (a warning, an unknown key, a missing
# command) fails, even though verify itself exits 0 for warnings.
# --man=no: no man pages to look up; --generators=no: this host's generators
# are irrelevant; --recursive-errors=no: judge this unit, not the host's units.
out=$(cd "$tmp" && systemd-analyze verify --no-pager --man=no --generators=no \
	--recursive-errors=no ./ksi-salesd.service 2>&1)
rc=$?
if [ $rc -eq 0 ] && [ -z "$out" ]; then
	ok "systemd-analyze verify: no output"
else
	not_ok "systemd-analyze verify (exit $rc)"
	printf '%s\n' "$out" | indent
	case $out in
	*/bin/kill*) echo "    (ExecReload= needs /bin/kill: apt-get install procps)" ;;
	esac
fi

# 3. security: parse "→ Overall exposure level for ksi-salesd.service: 1.1 OK 🙂".
out=$(cd "$tmp" && systemd-analyze security --no-pager --offline=true ./ksi-salesd.service 2>&1)
rc=$?
score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9]*\.[0-9]\).*/\1/p' | head -n 1)
if [ -z "$score" ]; then
	not_ok "systemd-analyze security: no overall exposure level found (exit $rc)"
	printf '%s\n' "$out" | tail -n 20 | indent
elif awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s + 0 <= m + 0) }'; then
	ok "systemd-analyze security: exposure $score (at most $MAX_EXPOSURE)"
	# What is still exposed, for the record.
	exposed "$out"
else
	not_ok "systemd-analyze security: exposure $score is above $MAX_EXPOSURE"
	exposed "$out"
fi

echo "systemd: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
