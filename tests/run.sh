#!/usr/bin/env bash
# Runs every test program of a build (tests/run.sh build/debug) and ends
# with the line "N passed, N failed". A program that crashes counts its
# whole run as one failure, and so does one that runs past NF_TEST_TIMEOUT
# seconds (default 300): a hang fails the suite instead of stalling CI.
# NF_TEST_RUNNER, if set, is a command each program runs under (make
# test-valgrind: valgrind and its options); its own failure exit counts.
set -u
build=${1:-build/debug}
limit=${NF_TEST_TIMEOUT:-300}
read -r -a runner <<< "${NF_TEST_RUNNER:-}"
passed=0
failed=0
for t in "$build"/tests/test_*; do
	[ -x "$t" ] || continue
	out=$(timeout -k 10 "$limit" "${runner[@]}" "$t" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		echo "FAIL $t ran past ${limit} s (a hang?)"
		failed=$((failed + 1))
		continue
	fi
	line=$(printf '%s\n' "$out" | grep -E '^# .*: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
	if [ -n "$line" ]; then
		p=$(printf '%s' "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')
		f=$(printf '%s' "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
		passed=$((passed + p))
		failed=$((failed + f))
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
			echo "FAIL $t exited with $rc"
			failed=$((failed + 1))
		fi
	else
		echo "FAIL $t crashed (exit $rc)"
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
