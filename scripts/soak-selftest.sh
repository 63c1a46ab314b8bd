#!/usr/bin/env bash
# The soak's checks catch what they claim to: a short soak of the pages load
# passes clean, and fails, for the expected reason, with each deliberate
# fault of `nofail soak --break` (soak/breaks.c). Usage: soak-selftest.sh BUILD_DIR
set -u
nofail=${1:-build}/nofail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=0
check() {   # check KIND EXPECTED_STATUS PATTERN
	out=$("$nofail" soak --only pages --scale 0.05 --seconds 4 --watchdog 2 --break "$1" --log "$log")
	rc=$?
	if [ "$rc" -ne "$2" ] || ! printf '%s\n' "$out" | grep -q -- "$3"; then
		printf '%s\n' "$out"
		echo "soak-selftest: FAIL: --break $1 exited $rc (expected $2) or printed no '$3'"
		failed=1
	else
		echo "soak-selftest: --break $1: exit $rc, '$3'"
	fi
}
check none 0 "soak: PASSED"
check fail 1 "VIOLATION: failed blocking calls outside killed tasks: 1"
check leak 1 "VIOLATION: pages lost (still allocated at destroy): 1"
check stuck 1 "VIOLATION: workers stuck past the watchdog: 1"
exit $failed
