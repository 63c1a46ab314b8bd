#!/usr/bin/env bash
# preload.sh - the classic allocator workloads (bench/preload/*.c: larson,
# xmalloc, cache-scratch, glibc-simple; written here after their published
# descriptions) under glibc, mimalloc, jemalloc, tcmalloc and nofail, each
# put under the same binary with LD_PRELOAD (make bench-preload). Runs are
# interleaved so that noise on a shared machine falls on all alike; prints
# the median time and peak RSS of each, and both as ratios to mimalloc.
#
#   bench/preload.sh [BUILD]
#
# Environment: BENCH_RUNS (5), NOFAIL_BUDGET (4G), BENCH_RAW (a directory
# to keep every sample in).
set -eu
build=${1:-build}
bin=$build/bench-preload
runs=${BENCH_RUNS:-5}
export NOFAIL_BUDGET=${NOFAIL_BUDGET:-4G}
multiarch=$(${CC:-cc} -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
libdir=/usr/lib/$multiarch

# The library each allocator is, "" for glibc's own.
declare -A lib=(
	[glibc]=""
	[mimalloc]=$libdir/libmimalloc.so.2
	[jemalloc]=$libdir/libjemalloc.so.2
	[tcmalloc]=$libdir/libtcmalloc_minimal.so.4
	[nofail]=$PWD/$build/libnofail-malloc.so
)
allocators=""
for a in mimalloc glibc jemalloc tcmalloc nofail; do
	if [ -n "${lib[$a]}" ] && [ ! -f "${lib[$a]}" ]; then
		echo "preload.sh: ${lib[$a]} is missing: $a left out (scripts/bench-setup.sh installs it)" >&2
		continue
	fi
	allocators="$allocators $a"
done
case " $allocators " in
*" mimalloc "*) ;;
*) echo "preload.sh: mimalloc is the baseline and is missing (scripts/bench-setup.sh)" >&2; exit 1 ;;
esac

raw=${BENCH_RAW:-$(mktemp -d)}
mkdir -p "$raw"
workloads="larson xmalloc cache_scratch glibc_simple"
for r in $(seq 1 "$runs"); do
	for w in $workloads; do
		for a in $allocators; do
			# One line "name seconds peak_kib" per run.
			if ! LD_PRELOAD=${lib[$a]} "$bin/$w" >>"$raw/$w.$a"; then
				echo "preload.sh: $w under $a failed" >&2
				exit 1
			fi
		done
	done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf 'medians of %s runs; NOFAIL_BUDGET=%s; ratios to mimalloc (time, peak RSS)\n' "$runs" "$NOFAIL_BUDGET"
printf '%-14s %-9s %9s %10s %7s %7s\n' workload allocator seconds 'peak KiB' time rss
for w in $workloads; do
	base_t=$(awk '{ print $2 }' "$raw/$w.mimalloc" | median)
	base_m=$(awk '{ print $3 }' "$raw/$w.mimalloc" | median)
	for a in $allocators; do
		t=$(awk '{ print $2 }' "$raw/$w.$a" | median)
		m=$(awk '{ print $3 }' "$raw/$w.$a" | median)
		printf '%-14s %-9s %9.3f %10.0f %6.2fx %6.2fx\n' "$w" "$a" "$t" "$m" \
			"$(awk -v a="$t" -v b="$base_t" 'BEGIN { print a / b }')" "$(awk -v a="$m" -v b="$base_m" 'BEGIN { print a / b }')"
	done
done
[ -n "${BENCH_RAW:-}" ] || rm -rf "$raw"
