#!/usr/bin/env bash
# The package's install test (issue 14): installs the .deb into this machine
# with dpkg -i, checks its files, the user, the installed unit (systemd-analyze
# verify and security), the man pages, runs the installed binary against a
# throwaway PostgreSQL (tests/lib/pg.sh) as the service's user, then purges
# the package and checks that nothing of it is left.
#   tests/deb/install.sh build/deb/ksi-salesd_VERSION_ARCH.deb
# Needs root and a machine where installing a package is fine (CI: .ci/run).
# Refuses to run when ksi-salesd is installed already: it would purge it.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEB=$(realpath "$1")
# shellcheck source=tests/lib/tap.sh
. "$ROOT/tests/lib/tap.sh"

if [ "$(id -u)" != 0 ]; then
	echo "install.sh: needs root (dpkg -i)" >&2
	exit 2
fi
if dpkg-query -W -f='${Status}' ksi-salesd 2>/dev/null | grep -q installed; then
	echo "install.sh: ksi-salesd is installed on this machine already; not touching it" >&2
	exit 2
fi
WORK=$(mktemp -d /tmp/ksi-salesd-deb.XXXXXX)
chmod 755 "$WORK" # the service's user reaches the PostgreSQL socket in it
PG_DIR=$WORK/pg
cleanup() {
	[ -d "$PG_DIR" ] && sh "$ROOT/tests/lib/pg.sh" stop "$PG_DIR"
	dpkg-query -W ksi-salesd >/dev/null 2>&1 && dpkg --purge ksi-salesd >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT

# What the file system holds, to compare after the purge (paths only; dpkg's
# own database, caches and logs change by design).
snapshot() {
	find /etc /usr /lib /var/lib -xdev \( -path /var/lib/dpkg -o -path /var/lib/apt \
		-o -path /var/cache -o -path /var/lib/systemd/deb-systemd-helper-masked \) -prune \
		-o -print 2>/dev/null | sort
}
snapshot >"$WORK/before"

echo "# install"
if dpkg -i "$DEB" >"$WORK/dpkg-i.log" 2>&1; then ok "dpkg -i $(basename "$DEB")"
else not_ok "dpkg -i $(basename "$DEB")" "$(tail -n 20 "$WORK/dpkg-i.log")"; fi
for f in /usr/bin/ksi-salesd /lib/systemd/system/ksi-salesd.service /usr/lib/sysusers.d/ksi-salesd.conf \
	/usr/share/man/man8/ksi-salesd.8.gz /usr/share/man/man5/ksi-salesd.conf.5.gz \
	/usr/share/ksi-salesd/grafana/ksi-sales.json /usr/share/ksi-salesd/ksi-salesd.conf \
	/usr/share/doc/ksi-salesd/copyright; do
	if [ -f "$f" ]; then ok "installed: $f"; else not_ok "installed: $f"; fi
done
# What etc/ holds beyond Grafana's dashboard (alert rules, when added) is installed too.
for f in "$ROOT"/etc/prometheus/*.yml "$ROOT"/etc/prometheus/*.yaml; do
	[ -f "$f" ] || continue
	t=/usr/share/ksi-salesd/${f#"$ROOT"/etc/}
	if [ -f "$t" ]; then ok "installed: $t"; else not_ok "installed: $t"; fi
done
check "the configuration file: 0640 root:_ksi-salesd" "640 root:_ksi-salesd" \
	"$(stat -c '%a %U:%G' /etc/ksi-salesd/ksi-salesd.conf 2>&1)"
check_contains "... and a conffile" "/etc/ksi-salesd/ksi-salesd.conf" "$(dpkg-query -W -f='${Conffiles}' ksi-salesd)"
uncommented=$(grep -Ev '^[[:space:]]*([;#].*)?$|^\[' /etc/ksi-salesd/ksi-salesd.conf)
check "... (no key set in it)" "" "$uncommented"
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd _ksi-salesd)
if [ -n "${uid:-}" ] && [ "$uid" -lt 1000 ]; then ok "the system user _ksi-salesd exists (uid $uid)"
else not_ok "the system user _ksi-salesd exists" "getent: $(getent passwd _ksi-salesd)"; fi
check "... with no home and no shell" "/ /usr/sbin/nologin" "${home:-} ${shell:-}"
check_contains "the unit runs the installed binary as that user" "ExecStart=/usr/bin/ksi-salesd run" \
	"$(cat /lib/systemd/system/ksi-salesd.service)"
check_contains "... User=_ksi-salesd" "User=_ksi-salesd" "$(cat /lib/systemd/system/ksi-salesd.service)"
check_contains "... which does not restart after exit 2 (configuration, privilege, schema)" \
	"RestartPreventExitStatus=2" "$(cat /lib/systemd/system/ksi-salesd.service)"
check "the unit is not enabled on install" "disabled" \
	"$(SYSTEMD_LOG_LEVEL=err systemctl is-enabled ksi-salesd.service 2>/dev/null || true)"

echo "# the installed unit"
if KSI_UNIT=/lib/systemd/system/ksi-salesd.service sh "$ROOT/tests/systemd/check.sh" /usr/bin/ksi-salesd \
	>"$WORK/unit.log" 2>&1; then
	ok "systemd-analyze verify and security (at most 2.0) on the installed unit"
	sed -n 's/^ok - systemd-analyze security: /    /p' "$WORK/unit.log"
else not_ok "systemd-analyze verify and security on the installed unit" "$(grep -v '^ok' "$WORK/unit.log")"; fi

echo "# the man pages"
for page in 8/ksi-salesd.8 5/ksi-salesd.conf.5; do
	out=$(MANWIDTH=80 man -l --warnings "/usr/share/man/man${page%%/*}/${page#*/}.gz" 2>&1 >/dev/null)
	check "man -l renders ${page#*/} without a warning" "" "$out"
done
check_contains "man ksi-salesd finds the page" "ksi-salesd - poll customers' sales APIs" "$(MANWIDTH=80 man ksi-salesd 2>/dev/null)"

echo "# the installed binary, as the service's user, against a throwaway PostgreSQL"
CONNINFO=$(sh "$ROOT/tests/lib/pg.sh" start "$PG_DIR") || { not_ok "PostgreSQL started"; exit 1; }
if /usr/bin/ksi-salesd migrate -c /dev/null -d "$CONNINFO" 2>"$WORK/migrate.log"; then ok "ksi-salesd migrate"
else not_ok "ksi-salesd migrate" "$(cat "$WORK/migrate.log")"; fi
# The URL in a url_file of the group, named by the installed configuration:
# what an operator on the host shares with the service.
install -m 0640 -o root -g _ksi-salesd /dev/null /etc/ksi-salesd/database-url
printf '%s\n' "$CONNINFO" >/etc/ksi-salesd/database-url
sed -i 's|^; url_file =.*|url_file = /etc/ksi-salesd/database-url|' /etc/ksi-salesd/ksi-salesd.conf
out=$(runuser -u _ksi-salesd -- /usr/bin/ksi-salesd status 2>&1)
check "status as _ksi-salesd, with the URL from the installed configuration's url_file, exits 0" 0 $?
check_contains "... and prints the table" "connector" "$out"
out=$(runuser -u nobody -- /usr/bin/ksi-salesd status 2>&1)
check "status as a user outside the group exits 2" 2 $?
check_contains "... saying it cannot read the configuration" "/etc/ksi-salesd/ksi-salesd.conf: Permission denied" "$out"
out=$(runuser -u _ksi-salesd -- env NOTIFY_SOCKET= /usr/bin/ksi-salesd once 2>&1)
check "once as _ksi-salesd exits 0 (no connectors)" 0 $?
rm -f /etc/ksi-salesd/database-url # the operator's file, not the package's

echo "# purge"
sh "$ROOT/tests/lib/pg.sh" stop "$PG_DIR"
if dpkg --purge ksi-salesd >"$WORK/purge.log" 2>&1; then ok "dpkg --purge ksi-salesd"
else not_ok "dpkg --purge ksi-salesd" "$(tail -n 20 "$WORK/purge.log")"; fi
snapshot >"$WORK/after"
left=$(comm -13 "$WORK/before" "$WORK/after")
check "nothing the package installed or created is left (paths under /etc /usr /lib /var/lib)" "" "$left"
# Debian leaves system users behind: files they owned may remain elsewhere.
if getent passwd _ksi-salesd >/dev/null; then ok "the user _ksi-salesd stays (Debian does not remove system users)"
else not_ok "the user _ksi-salesd stays"; fi

echo "deb-install: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
