#!/usr/bin/env bash
# make test-fault: the seed scenarios under fault injection (tests/fault/run.sh BUILD).
#
# 1. `nofail demo --quick` with NOFAIL_FAULT (requests that may fail fail
#    now and then, mempools' backend tries too) and NOFAIL_FAULT_DELAY
#    (short sleeps in slow paths). Injection never fails a blocking request,
#    so every claim of zero failures must still hold; a row that counts
#    NF_MAYFAIL failures for comparison (mempool's "NF_MAYFAIL, no pool",
#    storm's barging baseline) is not a claim and may only grow. The run
#    must have injected something, or it proves nothing.
# 2. A scenario whose claims did not hold is run again: under injection
#    with another seed, and without injection (the control). It fails the
#    test when it fails both times under injection and holds without it.
#    When the control fails too, the failure is not injection's: reported,
#    not counted (timing claims on a loaded machine can miss either way).
# 3. `nofail demo mempool --quick` with every backend try and every request
#    allowed to fail failed (rates 1/1): the pools alone must keep the
#    pipeline going with zero failures.
set -u
build=${1:-build/debug}
nofail=$build/nofail
spec="mayfail=1/50,nowait=1/20,pool=1/10,seed=7"
delay="us=200,rate=1/10,seed=3"
limit=600
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
bad=0

demo() { # out-file fault-spec delay-spec args...
	local out=$1 f=$2 dl=$3
	shift 3
	NOFAIL_FAULT=$f NOFAIL_FAULT_DELAY=$dl timeout -k 10 "$limit" "$nofail" demo --quick "$@" >"$out" 2>"$out.err"
}

held_in() { grep -q "^== $2: claims held$" "$1"; }

echo "test-fault: nofail demo --quick with NOFAIL_FAULT=\"$spec\" NOFAIL_FAULT_DELAY=\"$delay\""
demo "$dir/all" "$spec" "$delay"
grep -E '^== |^   fault injection|scenarios held' "$dir/all"
names=$("$nofail" demo --list | awk '{print $1}')
injected=$(sed -n 's/^   fault injection (this process): \([0-9]*\) of.*/\1/p' "$dir/all" | awk '{s += $1} END {print s + 0}')
if [ "$injected" -eq 0 ]; then
	echo "FAIL test-fault: no failure was injected: the run proves nothing"
	bad=1
fi
for name in $names; do
	if held_in "$dir/all" "$name"; then
		continue
	fi
	if ! grep -q "^== $name: CLAIMS DID NOT HOLD$" "$dir/all"; then
		echo "FAIL test-fault: $name did not finish under injection (crash or hang?); its stderr:"
		tail -n 20 "$dir/all.err"
		bad=1
		continue
	fi
	demo "$dir/$name.again" "${spec/seed=7/seed=8}" "$delay" "$name"
	demo "$dir/$name.control" "" "" "$name"
	again=failed control=failed
	held_in "$dir/$name.again" "$name" && again=held
	held_in "$dir/$name.control" "$name" && control=held
	if [ "$control" = failed ]; then
		echo "test-fault: $name: its claims failed without injection too: not injection's doing (not counted)"
		grep -E 'FAILED' "$dir/$name.control" | sed 's/^/    control: /'
	elif [ "$again" = held ]; then
		echo "test-fault: $name: failed once under injection, held on a rerun with another seed and without it"
		grep -E 'FAILED' "$dir/all" | sed 's/^/    first run: /'
	else
		echo "FAIL test-fault: $name holds its claims without injection and fails twice under it:"
		grep -E 'FAILED' "$dir/$name.again" | sed 's/^/    /'
		bad=1
	fi
done

all="mayfail=1/1,nowait=1/1,reserve=1/1,pool=1/1,seed=7"
echo "test-fault: nofail demo mempool --quick with NOFAIL_FAULT=\"$all\""
demo "$dir/pool" "$all" "" mempool
grep -E 'held|FAILED|^   fault injection|NF_MAYFAIL, no pool:' "$dir/pool"
if ! held_in "$dir/pool" mempool || ! grep -q '^   fault injection (this process): [1-9]' "$dir/pool"; then
	echo "FAIL test-fault: with every backend try failed, the pools did not keep the pipeline going"
	bad=1
fi
[ "$bad" -eq 0 ] && echo "test-fault: passed"
exit "$bad"
