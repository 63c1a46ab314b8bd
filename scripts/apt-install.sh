#!/bin/sh
# apt-install.sh WHO PACKAGE... - installs the Debian packages among PACKAGE
# that are not installed yet (apt-get update first), as root or through
# sudo. WHO names the caller in messages. The one place the project's
# scripts install anything; safe to run again.
set -eu

who=$1
shift
missing=""
for p in "$@"; do
	if dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
		echo "$who: $p is already installed"
	else
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "$who: apt-get not found; install the equivalents of:$missing" >&2
	exit 1
fi
# Root needs no sudo (and containers often have none).
if [ "$(id -u)" -eq 0 ]; then
	as_root=""
elif command -v sudo >/dev/null 2>&1; then
	as_root="sudo"
else
	echo "$who: not root and sudo not found; run as root: apt-get update && apt-get install -y$missing" >&2
	exit 1
fi
echo "$who: installing$missing" >&2
$as_root apt-get update >&2
# shellcheck disable=SC2086 # the list is meant to split into words
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >&2
