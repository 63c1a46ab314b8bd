#!/bin/sh
# setup.sh - installs what nofail's optional parts need, from Debian's packages:
# gnuplot (for `nofail demo --plot DIR`, which draws its timelines as SVG).
# Safe to run again: what is already there is left alone.
set -eu

if command -v gnuplot >/dev/null 2>&1; then
	echo "setup: gnuplot is already installed ($(command -v gnuplot))"
	exit 0
fi

# gnuplot-nox: the SVG terminal without pulling in X11 or Qt.
"$(dirname "$0")/apt-install.sh" setup gnuplot-nox
echo "setup: gnuplot installed ($(command -v gnuplot))"
