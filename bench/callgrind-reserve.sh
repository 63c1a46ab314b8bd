#!/usr/bin/env bash
# Counts the instructions of the alloc/free pair loop (bench/pairs_loop.c)
# with reserve-slab handling and with it compiled out (NF_NO_RESERVE_SLABS):
# the handling lives in slow paths only, so the counts must agree within 1%.
set -eu
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (scripts/bench-setup.sh)"; exit 1; }
out=build/callgrind
mkdir -p "$out"
count() { # $1: label, rest: extra cflags
	local label=$1; shift
	cc -std=gnu11 -O2 -pthread -fvisibility=hidden -Iinclude -Isrc "$@" bench/pairs_loop.c src/*.c -lm -o "$out/pairs-$label"
	NOFAIL_BUDGET=256M valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$label" "$out/pairs-$label" >/dev/null 2>&1
	callgrind_annotate "$out/callgrind.$label" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}
with=$(count with)
without=$(count without -DNF_NO_RESERVE_SLABS)
awk -v a="$with" -v b="$without" 'BEGIN {
	printf "instructions, 8M alloc/free pairs (cache and malloc, 16..1024 bytes):\n"
	printf "  with reserve-slab handling:    %d (%.2f per pair)\n", a, a / 8e6
	printf "  reserve-slab handling removed: %d (%.2f per pair)\n", b, b / 8e6
	d = (a - b) / b * 100; printf "  difference: %+.3f%% (goal: under 1%%)\n", d
	exit (d < 1 && d > -1) ? 0 : 1 }'
