#!/bin/sh
# `make deps`: installs the Debian packages ksi-salesd needs to build, test
# and demo, when run as root; otherwise says what to install. Installs
# nothing when everything is present, so it is cheap to run every time.
set -eu

packages="gcc make pkg-config libcurl4-openssl-dev libcjson-dev libev-dev libpq-dev
libsystemd-dev libinih-dev libcmocka-dev libmicrohttpd-dev zlib1g-dev
postgresql postgresql-client curl systemd procps valgrind socat clang libclang-rt-14-dev clang-format-14
libjansson-dev libgnutls28-dev prometheus python3 librnp-dev
dpkg-dev debhelper lintian man-db groff-base cppcheck"

missing=""
for p in $packages; do
	# dpkg-query prints "install ok installed" for an installed package.
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "ksi-salesd needs these Debian packages:$missing" >&2
	echo "install them with: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086 # word splitting of the list is intended
apt-get install -y -q --no-install-recommends $missing >/dev/null
