#!/bin/sh
# Checks the man pages (etc/man/): each renders with man -l and groff without
# a warning, and ksi-salesd.conf(5) has an entry, under its section, for
# every key of the shipped etc/ksi-salesd.conf.
# Usage: tests/man/check.sh   (needs man-db and groff-base)
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lib/tap.sh
. "$ROOT/tests/lib/tap.sh"

for page in "$ROOT"/etc/man/*.[1-8]; do
	name=$(basename "$page")
	# man's own check, as the issue words it; then groff with every warning.
	out=$(MANWIDTH=80 man -l --warnings "$page" 2>&1 >/dev/null)
	if [ -z "$out" ]; then ok "$name: man -l --warnings is silent"; else not_ok "$name: man -l --warnings" "$out"; fi
	out=$(groff -ww -z -man "$page" 2>&1)
	if [ -z "$out" ]; then ok "$name: groff -ww is silent"; else not_ok "$name: groff -ww" "$out"; fi
done

# "; key =" lines of the shipped file, as "section key".
keys=$(awk '/^\[[a-z]+\]/ { s = substr($0, 2, length($0) - 2) }
	/^; [a-z_]+ =/ { print s, $2 }' "$ROOT/etc/ksi-salesd.conf")
# Entries of the man page, as "section key": ".B key" right after .TP, under ".SH [section]".
entries=$(awk '/^\.SH \[[a-z]+\]/ { s = substr($2, 2, length($2) - 2); next }
	/^\.SH/ { s = "" }
	prev == ".TP" && /^\.B [a-z_]+$/ && s != "" { print s, $2 }
	{ prev = $0 }' "$ROOT/etc/man/ksi-salesd.conf.5")
missing=$(printf '%s\n' "$keys" | while read -r s k; do
	printf '%s\n' "$entries" | grep -qx "$s $k" || echo "[$s] $k"
done)
n=$(printf '%s\n' "$keys" | wc -l)
if [ -z "$missing" ]; then ok "ksi-salesd.conf.5 documents all $n keys of etc/ksi-salesd.conf"
else not_ok "ksi-salesd.conf.5 documents every key of etc/ksi-salesd.conf" "missing: $missing"; fi

echo "man: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
