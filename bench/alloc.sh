#!/usr/bin/env bash
# alloc.sh - the object-layer comparison (bench/README.md): runs every
# allocator's binary BENCH_RUNS times (default 5) per workload, interleaved
# so that noise on a shared machine falls on all of them alike, and prints
# the medians as ns/op and as a ratio to mimalloc, then the issue's goals.
#
#   bench/alloc.sh [BUILD]              the table (BUILD defaults to build)
#   bench/alloc.sh --callgrind [BUILD]  instructions per alloc/free pair under callgrind, and
#                                       nofail's against a build without reserve slabs
#                                       (alloc-nofail-noreserve; make bench-callgrind)
#   bench/alloc.sh --have-peers         exit 0 when mimalloc, jemalloc and tcmalloc can be linked
#
# Environment: BENCH_RUNS (5), NOFAIL_BUDGET (4G, nf_malloc's default domain),
# ALLOC_BENCH_SCALE (1: scales iteration counts), ALLOC_ONLY (e.g. "pair bulk":
# only workloads whose name starts so), BENCH_RAW (a directory to keep every sample in).
set -eu

have_peers() {
	local cc=${CC:-cc}
	printf '#include <mimalloc.h>\n#include <jemalloc/jemalloc.h>\n#include <gperftools/tcmalloc.h>\nint main(void){return 0;}\n' |
		"$cc" -x c - -o /dev/null -lmimalloc -ljemalloc -ltcmalloc >/dev/null 2>&1
}

if [ "${1:-}" = "--have-peers" ]; then
	have_peers
	exit
fi

mode=table
if [ "${1:-}" = "--callgrind" ]; then
	mode=callgrind
	shift
fi
build=${1:-build}
bin=$build/bench
export NOFAIL_BUDGET=${NOFAIL_BUDGET:-4G}
peers="mimalloc glibc jemalloc tcmalloc nofail"
for a in $peers; do
	if [ ! -x "$bin/alloc-$a" ]; then
		echo "alloc.sh: $bin/alloc-$a is missing: run make bench-alloc (after scripts/bench-setup.sh)" >&2
		exit 1
	fi
done

# ---- instruction counts ------------------------------------------------
if [ "$mode" = callgrind ]; then
	if ! command -v valgrind >/dev/null 2>&1; then
		echo "alloc.sh: valgrind is not installed (scripts/bench-setup.sh installs it)" >&2
		exit 1
	fi
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
	noreserve=""
	if [ -x "$bin/alloc-nofail-noreserve" ]; then
		noreserve="nofail-noreserve cache-noreserve"
	else
		echo "alloc.sh: $bin/alloc-nofail-noreserve is missing (make bench-callgrind builds it): no compiled-out comparison" >&2
	fi
	# 20,000,000 * 0.005 = 100,000 pairs in the measured loop (plus 1,000 warming).
	export ALLOC_BENCH_SCALE=0.005
	pairs=100000
	printf 'instructions per alloc/free pair under callgrind (%d pairs, the loop function inclusive)\n' $pairs
	callgrind_one() { # binary workload size loop-function -> instructions per pair
		local f=$out/cg.$1.$2.$3
		valgrind --tool=callgrind --callgrind-out-file="$f" --toggle-collect="$4" \
			"$bin/alloc-$1" "$2" "$3" >/dev/null 2>"$f.log" || { echo "fail"; return; }
		# Only the toggled loop is collected; it ran twice (1,000 warming pairs, then the measured ones).
		awk -v n=$((pairs + 1000)) '/^summary:/ { printf "%.1f", $2 / n }' "$f"
	}
	for w in pair pair-empty; do
		case $w in
		pair) echo "  pair (one other object of the size alive: the fast path):" ;;
		*) echo "  pair-empty (nothing else alive: every free empties its slab):" ;;
		esac
		printf '    %-16s %8s %8s %8s %8s\n' "" 16 64 256 1024
		for a in mimalloc glibc jemalloc tcmalloc nofail cache $noreserve; do
			case $a in
			cache) label="nofail cache"; b=nofail; wl=c$w; loop=cache_pair_loop ;;
			nofail-noreserve) label="nofail, no resv"; b=$a; wl=$w; loop=pair_loop ;;
			cache-noreserve) label="cache, no resv"; b=nofail-noreserve; wl=c$w; loop=cache_pair_loop ;;
			*) label=$a; b=$a; wl=$w; loop=pair_loop ;;
			esac
			printf '    %-16s' "$label"
			for s in 16 64 256 1024; do
				v=$(callgrind_one "$b" "$wl" $s $loop)
				echo "$w $a $s $v" >>"$out/counts"
				printf ' %8s' "$v"
			done
			echo
		done
	done
	if [ -n "$noreserve" ]; then
		echo "  reserve-slab handling compiled out (NF_NO_RESERVE_SLABS) against compiled in:"
		awk '
			{ v[$1 " " $2 " " $3] = $4 }
			END {
				split("16 64 256 1024", sizes, " ")
				n = split("pair:nofail pair:cache pair-empty:nofail pair-empty:cache", rows, " ")
				for (r = 1; r <= n; r++) {
					split(rows[r], x, ":")
					line = sprintf("    %-10s %-7s", x[1], x[2]); worst = 0
					for (i = 1; i <= 4; i++) {
						a = v[x[1] " " x[2] " " sizes[i]]; b = v[x[1] " " x[2] "-noreserve " sizes[i]]
						d = (b > 0) ? 100 * (a - b) / b : 0
						line = line sprintf(" %+6.2f%%", d)
						if (d < 0) d = -d
						if (d > worst) worst = d
					}
					print line (worst < 1 ? "  (under 1%: met)" : "  (1% or more: NOT MET)")
				}
			}' "$out/counts"
	fi
	echo "  per function, pair 64 (Ir per pair, self cost; inlined code counted in its caller):"
	per_function() { # callgrind file, label
		callgrind_annotate --auto=no --inclusive=no "$1" 2>/dev/null |
			awk -v a="$2" -v n=$((pairs + 1000)) '
				/PROGRAM TOTALS/ { next }
				/^ *[0-9,]+ +(\([ 0-9.%]+\) +)?[^ ]+:[^ ]+/ {
					x = $1; gsub(",", "", x)
					f = $0; sub(/^ *[0-9,]+ +(\([ 0-9.%]+\) +)?/, "", f); sub(/ .*/, "", f); sub(/.*:/, "", f)
					cost[f] += x
				}
				END { for (f in cost) if (cost[f] / n >= 0.5) printf "%6.1f  %s\n", cost[f] / n, f }' |
			sort -gr | sed "s/^/    $(printf '%-13s' "$2") /"
	}
	per_function "$out/cg.mimalloc.pair.64" mimalloc
	per_function "$out/cg.nofail.pair.64" "nofail"
	per_function "$out/cg.nofail.cpair.64" "nofail cache"
	exit 0
fi

# ---- the table -----------------------------------------------------------
runs=${BENCH_RUNS:-5}
raw=${BENCH_RAW:-}
if [ -n "$raw" ]; then mkdir -p "$raw"; out=$raw; else out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi

# id|arguments|label|goal kind (pair, bulk, mt, rss)|environment for this workload
workloads="
pair16|pair 16|(1) pair 16 B|pair
pair64|pair 64|(1) pair 64 B|pair
pair256|pair 256|(1) pair 256 B|pair
pair1024|pair 1024|(1) pair 1024 B|pair
pairempty64|pair-empty 64|(1) pair 64 B, nothing else alive|pairinfo
bulk64o|bulk 64 inorder|(2) 100k x 64 B, in order|bulk
bulk64s|bulk 64 shuffled|(2) 100k x 64 B, shuffled|bulk
bulkmixo|bulk mix inorder|(2) 100k x 16-1024 B, in order|bulk
bulkmixs|bulk mix shuffled|(2) 100k x 16-1024 B, shuffled|bulk
prodcon64|prodcon 64|(3) producer/consumer 64 B|mt
prodconmix|prodcon mix|(3) producer/consumer 16-1024 B|mt
larson|larson mix|(4) larson 2 threads 16-1024 B|mt
rss64|rss 64|(5) RSS/live, 100k x 64 B|rss
rssmix|rss mix|(5) RSS/live, 100k x 16-1024 B|rss
rss64b|rss 64|(5) RSS/live, 64 B, nofail budget 64M|rss|NOFAIL_BUDGET=64M
rssmixb|rss mix|(5) RSS/live, mix, nofail budget 128M|rss|NOFAIL_BUDGET=128M
"
selected() { # id
	[ -z "${ALLOC_ONLY:-}" ] && return 0
	local p
	for p in $ALLOC_ONLY; do case $1 in "$p"*) return 0 ;; esac; done
	return 1
}

echo "alloc.sh: $runs runs per workload and allocator, NOFAIL_BUDGET=$NOFAIL_BUDGET, $(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC')"
for r in $(seq 1 "$runs"); do
	printf '  run %d/%d:' "$r" "$runs" >&2
	while IFS='|' read -r id args label kind env; do
		if [ -z "$id" ] || ! selected "$id"; then continue; fi
		printf ' %s' "$id" >&2
		for a in $peers; do
			# shellcheck disable=SC2086 # args and env are words
			v=$(env $env timeout 300 "$bin/alloc-$a" $args 2>>"$out/$id.$a.log") || v=fail
			echo "$v" >>"$out/$id.$a"
			if [ "$a" = nofail ] && [ "${kind#pair}" != "$kind" ]; then
				# shellcheck disable=SC2086
				v=$(env $env timeout 300 "$bin/alloc-nofail" c$args 2>>"$out/$id.cache.log") || v=fail
				echo "$v" >>"$out/$id.cache"
			fi
		done
	done <<<"$workloads"
	echo >&2
done

median() { # file -> median of its numbers, "fail" if any run failed, "-" if none
	[ -f "$1" ] || { echo "-"; return; }
	if grep -q fail "$1"; then echo fail; return; fi
	sort -g "$1" | awk '/^[0-9.]+$/ { v[n++] = $1 } END { if (!n) print "-"; else if (n % 2) print v[(n-1)/2]; else print (v[n/2-1] + v[n/2]) / 2 }'
}

cols="mimalloc glibc jemalloc tcmalloc nofail cache"
printf '\n%-36s' "medians: ns/op (x mimalloc)"
for c in $cols; do
	case $c in nofail) h="nofail malloc" ;; cache) h="nofail cache" ;; *) h=$c ;; esac
	printf ' %17s' "$h"
done
echo
summary=$out/summary
: >"$summary"
while IFS='|' read -r id args label kind env; do
	if [ -z "$id" ] || ! selected "$id"; then continue; fi
	base=$(median "$out/$id.mimalloc")
	printf '%-36s' "$label"
	for c in $cols; do
		m=$(median "$out/$id.$c")
		if [ "$m" = "-" ] || [ "$m" = fail ]; then
			printf ' %17s' "$m"
			continue
		fi
		ratio=$(awk -v m="$m" -v b="$base" 'BEGIN { if (b + 0 > 0) printf "%.2f", m / b; else print "?" }')
		if [ "$kind" = rss ]; then
			printf ' %10.3f (%4sx)' "$m" "$ratio"
		else
			printf ' %8.2f (%5sx)' "$m" "$ratio"
		fi
		echo "$id $kind $c $ratio" >>"$summary"
	done
	echo
done <<<"$workloads"
echo "  (rss rows: (peak RSS - RSS before the first allocation) / live bytes; a ratio over mimalloc's)"

echo
echo "goals (issue 3):"
awk '
function check(what, ratio, limit) {
	printf "  %-46s %5.2fx  limit %.2fx  %s\n", what, ratio, limit, (ratio <= limit ? "met" : "NOT MET")
}
$3 == "cache" && $2 == "pair" { check("nf_cache_alloc/free, " $1, $4, 1.00) }
$3 == "nofail" && ($2 == "pair" || $2 == "bulk") { check("nf_malloc/nf_free, " $1, $4, 1.10) }
$3 == "nofail" && $2 == "mt" { check("nf_malloc/nf_free, " $1, $4, 1.25) }
$3 == "nofail" && $2 == "rss" { check("RSS/live over mimalloc'"'"'s, " $1, $4, 1.20) }
' "$summary"
