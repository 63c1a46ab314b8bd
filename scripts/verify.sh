#!/usr/bin/env bash
# make verify: checks the Promela model of reservation admission
# (models/reserve.pml, the protocol of src/reserve.c) with spin, installing
# spin with apt-get if it is missing.  One line per property.  Fails if
# spin finds an error in the model, and also if it finds none in one of the
# deliberately broken variants: those show that each check can fail.
# Scratch files (pan.c, pan, pan.out, trails) go to build/verify/<check>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
model=$root/models/reserve.pml
out=$root/build/verify
start=$SECONDS

if ! command -v spin >/dev/null 2>&1 || ! command -v gcc >/dev/null 2>&1; then
	scripts/apt-install.sh verify spin gcc >&2
fi

# pan_run NAME "SPIN_DEFS" "CC_DEFS" "PAN_ARGS": generates, compiles and
# runs the verifier in build/verify/NAME and leaves its verdict in the files
# errors, states and result there.  Every run stores the whole state space
# (no bitstate hashing), so "errors: 0" means an exhaustive search found
# nothing.
pan_run() {
	local name=$1 spin_defs=$2 cc_defs=$3 pan_args=$4
	local dir=$out/$name errors='' states='' result=''
	rm -rf "$dir"
	mkdir -p "$dir"
	cp "$model" "$dir/reserve.pml"
	# Written down so that a run can be repeated and a trail replayed by hand.
	printf 'spin %s -a reserve.pml\ngcc -O2 -DNFAIR=3 -DCOLLAPSE %s -o pan pan.c\n./pan %s\n# replay a trail: spin %s -t -p -g reserve.pml\n' \
		"$spin_defs" "$cc_defs" "$pan_args" "$spin_defs" > "$dir/commands"
	# The flag lists are meant to split into words.
	# shellcheck disable=SC2086
	if ! (cd "$dir" && spin $spin_defs -a reserve.pml) > "$dir/spin.log" 2>&1; then
		result="spin could not read the model (see $dir/spin.log)"
	# pan.c draws warnings from gcc; they are spin's business, so they go
	# to cc.log.
	elif ! (cd "$dir" && gcc -O2 -DNFAIR=3 -DCOLLAPSE $cc_defs -o pan pan.c) > "$dir/cc.log" 2>&1; then
		result="pan.c did not compile (see $dir/cc.log)"
	else
		# pan's exit status says nothing useful; its report does.
		(cd "$dir" && ./pan $pan_args) > "$dir/pan.out" 2>&1 || true
		errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$dir/pan.out" | tail -n 1)
		states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$dir/pan.out" | tail -n 1)
		if [ -z "$errors" ]; then
			result="pan did not finish (see $dir/pan.out)"
		elif grep -q 'max search depth too small' "$dir/pan.out"; then
			result="search incomplete: max search depth too small (see $dir/pan.out)"
		elif [ "$errors" != 0 ]; then
			# The first error line, e.g. "invalid end state (at depth 36)".
			result=$(grep -m 1 '^pan:[0-9]*:' "$dir/pan.out" | sed 's/^pan:[0-9]*: *//' || true)
			result=${result:-"$errors errors"}
		else
			result=ok
		fi
	fi
	printf '%s\n' "$errors" > "$dir/errors"
	printf '%s\n' "$states" > "$dir/states"
	printf '%s\n' "$result" > "$dir/result"
}

# Large enough for the cyclic variants (depth about 3.7 million with the page cache) and a hash
# table of 16M slots for the 6 to 7 million states they store.
pan_opts="-m10000000 -w24"

# The checks, one per line: NAME|SPIN_DEFS|CC_DEFS|PAN_ARGS|EXPECT|LABEL.
# EXPECT is "ok" where the property must hold, and otherwise the kind of
# error spin must report (the start of its first error line): the broken
# variants are there to show that each check can fail.
checks=$(cat <<'EOF'
safety||-DSAFETY||ok|no deadlock, invariants hold (tasks reserve once and finish)
safety-cyclic|-DCYCLIC -DNO_LTL|-DSAFETY||ok|no deadlock, invariants hold (tasks loop forever)
liveness|-DCYCLIC||-a -f|ok|every request is eventually granted (LTL, weak fairness)
progress|-DCYCLIC -DNO_LTL|-DNP|-l -f|ok|no non-progress cycle: reservations keep being granted (weak fairness)
spend-grants|-DSPEND_GRANTS|-DSAFETY||ok|with take_with_tokens granting too, a fitting waiter never waits
broken-wakeup|-DBROKEN_WAKEUP -DNO_HEAD_CHECK|-DSAFETY||invalid end state|broken: nf_unreserve does not wake the queue (deadlock check)
broken-wakeup-assert|-DBROKEN_WAKEUP|-DSAFETY||assertion violated|broken: nf_unreserve does not wake the queue (waiter-left-behind assertion)
broken-order|-DBROKEN_ORDER -DNO_HEAD_CHECK|-DSAFETY||invalid end state|broken: nf_unreserve looks at the queue before lowering the count (deadlock check)
broken-order-assert|-DBROKEN_ORDER|-DSAFETY||assertion violated|broken: nf_unreserve looks at the queue before lowering the count (waiter-left-behind assertion)
broken-recheck|-DBROKEN_RECHECK -DNO_HEAD_CHECK|-DSAFETY||invalid end state|broken: waiter sleeps without re-checking granted (deadlock check)
broken-recheck-liveness|-DBROKEN_RECHECK -DCYCLIC -DNO_HEAD_CHECK||-a -f|acceptance cycle|broken: waiter sleeps without re-checking granted (liveness check)
broken-recheck-progress|-DBROKEN_RECHECK -DCYCLIC -DNO_LTL -DNO_HEAD_CHECK|-DNP|-l -f|non-progress cycle|broken: waiter sleeps without re-checking granted (non-progress check)
broken-overtake|-DBROKEN_OVERTAKE -DCYCLIC -DNO_HEAD_CHECK||-a -f|acceptance cycle|broken: fast grant overtakes the queue (liveness check)
EOF
)

# Run them side by side, one per CPU: compiling pan.c is most of the time.
jobs=$(nproc 2>/dev/null || echo 2)
running=0
while IFS='|' read -r name spin_defs cc_defs pan_args _; do
	if [ "$running" -ge "$jobs" ]; then
		wait -n || true
		running=$((running - 1))
	fi
	pan_run "$name" "$spin_defs" "$cc_defs" "$pan_args $pan_opts" &
	running=$((running + 1))
done <<< "$checks"
wait

# Report in the order above.
failed=0
while IFS='|' read -r name _ _ _ expect label; do
	dir=$out/$name
	errors=$(cat "$dir/errors" 2>/dev/null || true)
	states=$(cat "$dir/states" 2>/dev/null || true)
	result=$(cat "$dir/result" 2>/dev/null || echo "no result")
	if [ "$expect" = ok ]; then
		if [ "$result" = ok ]; then
			echo "verify: $label: ok ($states states)"
		else
			echo "verify: $label: FAILED: $result; commands and trail in $dir"
			failed=1
		fi
	elif [ -n "$errors" ] && [ "$errors" != 0 ] && [[ $result == "$expect"* ]]; then
		echo "verify: $label: caught ($expect): ok"
	else
		echo "verify: $label: NOT CAUGHT as $expect (got: $result); see $dir"
		failed=1
	fi
done <<< "$checks"

if [ "$failed" != 0 ]; then
	echo "verify: FAILED ($((SECONDS - start)) s)"
	exit 1
fi
echo "verify: all checks passed ($((SECONDS - start)) s)"
