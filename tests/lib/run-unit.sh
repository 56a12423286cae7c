#!/bin/sh
# Runs each cmocka unit-test binary; fails when any fails. cmocka prints its
# own per-test lines; this adds one total.
set -u
status=0
passed=0
failed=0
for t in "$@"; do
	if "$t"; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi
done
echo "unit test binaries: $passed passed, $failed failed"
exit $status
