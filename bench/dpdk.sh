#!/usr/bin/env bash
# DPDK's rte_mempool next to nofail's mempools (issue 5): installs Debian's
# libdpdk-dev (scripts/apt-install.sh: apt-get update, then apt-get install;
# never assumes it is there), builds
# bench/dpdk_mempool.c against it, starts the EAL without hugepages and
# without PCI (--no-huge --no-pci, two lcores), and prints its figures
# beside bench_mempool's. Run from the repository root: bench/dpdk.sh [build]
set -eu
build=${1:-build}
out="$build/bench"
mkdir -p "$out"

scripts/apt-install.sh dpdk.sh libdpdk-dev pkg-config
echo "dpdk.sh: DPDK $(pkg-config --modversion libdpdk)"

# Built with the repository's warnings off: DPDK's headers are not -Wextra clean.
cc -std=gnu11 -O2 -Ibench $(pkg-config --cflags libdpdk) -o "$out/dpdk_mempool" bench/dpdk_mempool.c \
	$(pkg-config --libs libdpdk) -lpthread

# --no-huge: plain memory instead of hugepages (-m MiB of it); --no-pci: no device scan;
# --no-shconf: no shared config files (--in-memory needs hugepages); -l 0-1: two lcores; --log-level: quiet unless it fails.
set +e
"$out/dpdk_mempool" -l 0-1 --no-huge --no-pci --no-shconf -m 256 --log-level=lib.eal:warning
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
	echo "dpdk.sh: the EAL or the pool could not start here (exit $rc): no DPDK figures"
	exit "$rc"
fi
if [ -x "$build/bench/bench_mempool" ]; then
	echo
	"$build/bench/bench_mempool"
fi
