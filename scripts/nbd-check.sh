#!/usr/bin/env bash
# nbd-check.sh - make nbd-check: nofail's NBD client (src/nbd_client.c)
# against a real nbd-server on 127.0.0.1. Installs the server if it is
# missing (scripts/nbd-setup.sh), starts it over a temporary export
# (scripts/nbd-serve.sh), runs the check program (tests/nbd_check.c), which
# also reads the export file to see every byte where it wrote it, and stops
# the server again.
#
#   scripts/nbd-check.sh build/nbd-check [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
tool=${1:?usage: scripts/nbd-check.sh CHECK_PROGRAM [SIZE_MIB]}
size=${2:-16}

scripts/nbd-setup.sh >&2
dir=$(mktemp -d /tmp/nofail-nbd-check.XXXXXX)
cleanup() {
	scripts/nbd-serve.sh stop "$dir"
	rm -rf "$dir"
}
trap cleanup EXIT
port=$(scripts/nbd-serve.sh start "$dir" "$size" swap)
echo "nbd-check: nbd-server $(nbd-server -V 2>&1 | grep -o 'version [0-9.]*' || true) on 127.0.0.1:$port, export \"swap\" of $size MiB"
# With the export file as the last argument, the program also checks the bytes where the server put them.
"$tool" 127.0.0.1 "$port" swap "$dir/export.img"
