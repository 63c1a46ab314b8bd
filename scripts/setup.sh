#!/bin/sh
# setup.sh - installs what nofail's optional parts need, from Debian's packages:
# gnuplot (for `nofail demo --plot DIR`, which draws its timelines as SVG).
# Safe to run again: what is already there is left alone.
set -eu

if command -v gnuplot >/dev/null 2>&1; then
	echo "setup: gnuplot is already installed ($(command -v gnuplot))"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "setup: apt-get not found; install gnuplot with your system's package manager" >&2
	exit 1
fi

# Root needs no sudo (and containers often have none).
if [ "$(id -u)" -eq 0 ]; then
	as_root=""
elif command -v sudo >/dev/null 2>&1; then
	as_root="sudo"
else
	echo "setup: not root and sudo not found; run as root: apt-get update && apt-get install -y gnuplot-nox" >&2
	exit 1
fi

# gnuplot-nox: the SVG terminal without pulling in X11 or Qt.
$as_root apt-get update
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y gnuplot-nox
echo "setup: gnuplot installed ($(command -v gnuplot))"
