#!/bin/sh
# Runs each libFuzzer target (validate, validate_diff, isotime) for SECONDS (default 60) on a scratch copy of
# its seed corpus, with the dictionary; a crash, leak or failed invariant
# fails the run and leaves the input in build/fuzz/.
#   run.sh SECONDS
set -u
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
passed=0
failed=0
for target in validate validate_diff isotime tzif; do
	work=$(mktemp -d /tmp/ksi-fuzz.XXXXXX)
	cp "$root/tests/fuzz/corpus/$target/"* "$work/"
	dict=""
	# validate_diff reads the same bodies as validate: one dictionary.
	[ -f "$root/tests/fuzz/${target%_diff}.dict" ] && dict="-dict=$root/tests/fuzz/${target%_diff}.dict"
	# shellcheck disable=SC2086 # $dict is one optional word
	if "$root/build/fuzz/fuzz_$target" $dict -max_total_time="$secs" -max_len=8192 -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$root/build/fuzz/" "$work" \
		>"$work.log" 2>&1; then
		passed=$((passed + 1))
		echo "ok - fuzz_$target: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work.log" | grep -o '[0-9]*$') executions," \
			"$(grep -o 'cov: [0-9]*' "$work.log" | tail -n 1), corpus $(ls "$work" | wc -l) inputs"
	else
		failed=$((failed + 1))
		echo "not ok - fuzz_$target"
		tail -n 40 "$work.log"
	fi
	rm -rf "$work" "$work.log"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
