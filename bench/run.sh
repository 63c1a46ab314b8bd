#!/usr/bin/env bash
# Runs every benchmark of a build: bench/run.sh build
set -eu
build=${1:-build}
for b in "$build"/bench/bench_*; do
	[ -x "$b" ] || continue
	"$b"
	echo
done
