#!/bin/sh
# bench-setup.sh - installs, from Debian's packages, what the object-layer
# benchmark (`make bench-alloc`, bench/alloc.sh) compares nofail with:
# mimalloc, jemalloc and tcmalloc (gperftools), and valgrind for the
# instruction counts. Safe to run again: installed packages are left alone.
set -eu

packages="libmimalloc-dev libjemalloc-dev libgoogle-perftools-dev valgrind"

missing=""
for p in $packages; do
	if dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
		echo "bench-setup: $p is already installed"
	else
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "bench-setup: nothing to install"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "bench-setup: apt-get not found; install the equivalents of:$missing" >&2
	exit 1
fi

# Root needs no sudo (and containers often have none).
if [ "$(id -u)" -eq 0 ]; then
	as_root=""
elif command -v sudo >/dev/null 2>&1; then
	as_root="sudo"
else
	echo "bench-setup: not root and sudo not found; run as root: apt-get update && apt-get install -y$missing" >&2
	exit 1
fi

$as_root apt-get update
# shellcheck disable=SC2086 # the list is meant to split into words
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
echo "bench-setup: installed$missing"
