#!/bin/sh
# fuzz-setup.sh - installs what `make fuzz` needs from Debian: clang, and
# libFuzzer's runtime (libclang-rt-14-dev: Debian 12's clang is 14, and its
# libclang_rt.fuzzer comes in that package, only recommended by clang).
# With the argument `afl`, also AFL++ (make fuzz-afl: afl-clang-fast and afl-fuzz).
# Safe to run again: apt-install.sh skips what is installed.
set -eu
cd "$(dirname "$0")/.."
scripts/apt-install.sh fuzz clang libclang-rt-14-dev
if [ "${1:-}" = afl ]; then
	scripts/apt-install.sh fuzz afl++
fi
