# tap.sh: the checks every test script reports with, one "ok - NAME" or
# "not ok - NAME" line each (the details indented below), counted in
# PASSED and FAILED for the script's summary line. Sourced by the
# integration lib, tests/man/check.sh, tests/systemd/check.sh and
# tests/deb/install.sh. POSIX sh.
PASSED=0
FAILED=0

ok() {
	PASSED=$((PASSED + 1))
	echo "ok - $1"
}

# not_ok NAME [DETAIL...]: each line of each detail indented.
not_ok() {
	FAILED=$((FAILED + 1))
	echo "not ok - $1"
	shift
	[ $# -gt 0 ] && printf '%s\n' "$@" | sed 's/^/    /'
	return 0
}

# check NAME EXPECTED ACTUAL
check() {
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected: $2" "actual:   $3"; fi
}

# check_contains NAME NEEDLE HAYSTACK
check_contains() {
	case $3 in
	*"$2"*) ok "$1" ;;
	*) not_ok "$1" "expected to contain: $2" "actual: $3" ;;
	esac
}

# check_absent NAME NEEDLE HAYSTACK
check_absent() {
	case $3 in
	*"$2"*) not_ok "$1" "must not contain: $2" "actual: $3" ;;
	*) ok "$1" ;;
	esac
}
