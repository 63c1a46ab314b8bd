#!/usr/bin/env bash
# nbd-serve.sh - runs Debian's nbd-server on 127.0.0.1, on a free port, over
# a temporary export file, for the netswap scenario and scripts/nbd-check.sh.
#
#   port=$(scripts/nbd-serve.sh start DIR [SIZE_MIB [EXPORT_NAME]])
#   ... connect to 127.0.0.1:$port, export EXPORT_NAME (default "swap") ...
#   scripts/nbd-serve.sh stop DIR
#
# start prints the port and nothing else on stdout. Everything lives in DIR
# (created if missing; the caller removes it): export.img (SIZE_MIB, default
# 64, sparse), nbd-server.conf, nbd-server.pid, nbd-server.log, port. No
# root needed: the config names no user or group to switch to, and the pid
# file is in DIR. The server daemonises; stop ends it (and its per-client
# children) by the pid it wrote. Install the server with scripts/nbd-setup.sh.
set -euo pipefail

die() {
	echo "nbd-serve: $*" >&2
	exit 1
}

find_server() {
	local p
	for p in "$(command -v nbd-server 2>/dev/null || true)" /usr/bin/nbd-server /usr/sbin/nbd-server /sbin/nbd-server; do
		if [ -n "$p" ] && [ -x "$p" ]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# Whether something accepts connections on 127.0.0.1:$1 (bash's /dev/tcp, no extra tools).
listening() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
	local dir=$1 size=${2:-64} name=${3:-swap}
	local server
	server=$(find_server) || die "nbd-server is not installed: run scripts/nbd-setup.sh"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	[ -e "$dir/nbd-server.pid" ] && die "$dir already has a server (nbd-server.pid); stop it first"
	truncate -s "${size}M" "$dir/export.img"
	local try port pid
	# A random port that nobody listens on; bind races with other programs are retried.
	for try in $(seq 1 20); do
		port=$((20000 + RANDOM % 40000))
		listening "$port" && continue
		cat >"$dir/nbd-server.conf" <<EOF
# Written by scripts/nbd-serve.sh. No user/group lines: the server keeps the caller's identity.
[generic]
	listenaddr = 127.0.0.1
	port = $port
	allowlist = false
[$name]
	exportname = $dir/export.img
	flush = true
	fua = true
EOF
		rm -f "$dir/nbd-server.pid"
		"$server" -C "$dir/nbd-server.conf" -p "$dir/nbd-server.pid" >>"$dir/nbd-server.log" 2>&1 || true
		# Up when the pid file is there and the port answers; give it 5 s.
		for _ in $(seq 1 50); do
			if [ -s "$dir/nbd-server.pid" ] && listening "$port"; then
				echo "$port" >"$dir/port"
				echo "$port"
				return 0
			fi
			sleep 0.1
		done
		if [ -s "$dir/nbd-server.pid" ]; then
			pid=$(cat "$dir/nbd-server.pid")
			kill "$pid" 2>/dev/null || true
		fi
		rm -f "$dir/nbd-server.pid"
	done
	die "nbd-server did not come up (see $dir/nbd-server.log)"
}

stop() {
	local dir=$1 pid
	[ -s "$dir/nbd-server.pid" ] || return 0
	pid=$(cat "$dir/nbd-server.pid")
	if kill "$pid" 2>/dev/null; then
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/nbd-server.pid"
}

case "${1:-}" in
start)
	[ $# -ge 2 ] || die "usage: $0 start DIR [SIZE_MIB [EXPORT_NAME]]"
	shift
	start "$@"
	;;
stop)
	[ $# -eq 2 ] || die "usage: $0 stop DIR"
	stop "$2"
	;;
*)
	die "usage: $0 start DIR [SIZE_MIB [EXPORT_NAME]] | stop DIR"
	;;
esac
