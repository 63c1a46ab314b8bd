#!/bin/sh
# nbd-setup.sh - installs Debian's nbd-server, the real NBD server that the
# netswap scenario and scripts/nbd-check.sh run nofail's NBD client against
# (src/nbd_client.c). Safe to run again: an installed server is left alone.
# Needs root (or a root shell in a container) only when it has to install.
set -eu

if command -v nbd-server >/dev/null 2>&1 || [ -x /usr/sbin/nbd-server ] || [ -x /sbin/nbd-server ]; then
	echo "nbd-setup: nbd-server is already installed"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "nbd-setup: nbd-server is missing and installing it needs root: run 'apt-get update && apt-get install -y nbd-server' as root" >&2
	exit 1
fi

echo "nbd-setup: installing nbd-server (apt-get)"
# The package's postinst asks no questions in a noninteractive frontend.
DEBIAN_FRONTEND=noninteractive apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y nbd-server
echo "nbd-setup: nbd-server installed"
