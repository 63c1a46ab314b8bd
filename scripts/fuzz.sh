#!/usr/bin/env bash
# fuzz.sh run BINARY SECONDS  - fuzzes for SECONDS from the seed corpus
# fuzz.sh replay BINARY       - runs every seed once, without fuzzing
# fuzz.sh afl BINARY SECONDS  - AFL++ (make fuzz-afl) for SECONDS from the same seeds
#
# The seeds (tests/fuzz/corpus) are read, never written: new inputs go to
# build/fuzz/corpus, crashes and timeouts to build/fuzz/artifacts/. A run
# fails if libFuzzer stops on a crash, a timeout or a leak.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1 bin=$2
seeds=tests/fuzz/corpus
work=build/fuzz
mkdir -p "$work/corpus" "$work/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Inputs are operations of 4 bytes: 4 KiB is about 1000 of them.
common=(-max_len=4096 -timeout=20 -rss_limit_mb=4096 -artifact_prefix="$work/artifacts/")

case $mode in
run)
	seconds=$3
	echo "fuzz: $bin for $seconds s from $seeds ($(ls "$seeds" | wc -l) seeds); new inputs in $work/corpus"
	start=$SECONDS
	"$bin" "${common[@]}" -max_total_time="$seconds" -print_final_stats=1 "$work/corpus" "$seeds" \
		2> "$work/fuzz.log" || { tail -n 60 "$work/fuzz.log"; echo "fuzz: FAILED (log: $work/fuzz.log)"; exit 1; }
	grep -E '^(#[0-9]+[[:space:]]+DONE|stat::)' "$work/fuzz.log" || true
	echo "fuzz: passed in $((SECONDS - start)) s; corpus $(ls "$work/corpus" | wc -l) inputs"
	;;
replay)
	"$bin" "${common[@]}" "$seeds"/* 2> "$work/replay.log" ||
		{ tail -n 60 "$work/replay.log"; echo "fuzz: replay FAILED (log: $work/replay.log)"; exit 1; }
	echo "fuzz: replayed $(ls "$seeds" | wc -l) seeds"
	;;
afl)
	# A fresh output directory each run: afl-fuzz refuses to start over an old one.
	seconds=$3 out=build/afl/out
	rm -rf "$out"
	echo "fuzz: AFL++ on $bin for $seconds s from $seeds ($(ls "$seeds" | wc -l) seeds); queue and crashes in $out/default"
	# Threads of the domains under test make some paths vary between runs: AFL calls that instability, not a fault.
	AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
		ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:symbolize=0 \
		afl-fuzz -i "$seeds" -o "$out" -V "$seconds" -t 20000 -m none -- "$bin" > build/afl/afl.log 2>&1 ||
		{ tail -n 30 build/afl/afl.log; echo "fuzz: afl-fuzz FAILED (log: build/afl/afl.log)"; exit 1; }
	stats=$out/default/fuzzer_stats
	grep -E '^(execs_done|execs_per_sec|corpus_count|edges_found|stability|saved_crashes|saved_hangs) ' "$stats"
	crashes=$(awk '/^saved_crashes /{ print $3 }' "$stats")
	hangs=$(awk '/^saved_hangs /{ print $3 }' "$stats")
	if [ "${crashes:-1}" != 0 ] || [ "${hangs:-1}" != 0 ]; then
		echo "fuzz: AFL++ FAILED: crashes $crashes, hangs $hangs (inputs in $out/default/crashes and $out/default/hangs; replay one with FUZZ_TRACE=1 $bin FILE)"
		exit 1
	fi
	echo "fuzz: AFL++ passed in $seconds s"
	;;
*)
	echo "usage: $0 run BINARY SECONDS | replay BINARY | afl BINARY SECONDS" >&2
	exit 2
	;;
esac
