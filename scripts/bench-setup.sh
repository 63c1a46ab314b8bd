#!/bin/sh
# bench-setup.sh - installs, from Debian's packages, what the object-layer
# benchmark (`make bench-alloc`, bench/alloc.sh) compares nofail with:
# mimalloc, jemalloc and tcmalloc (gperftools), and valgrind for the
# instruction counts. Safe to run again: installed packages are left alone.
set -eu
cd "$(dirname "$0")/.."

packages="libmimalloc-dev libjemalloc-dev libgoogle-perftools-dev valgrind"

scripts/apt-install.sh bench-setup $packages
