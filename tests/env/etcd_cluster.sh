#!/usr/bin/env bash
# A throw-away single-member etcd (Debian's etcd-server) on 127.0.0.1 for the
# topology.etcd tests.
#
#   etcd_cluster.sh run CMD...      start etcd in a fresh temporary directory,
#                                   run CMD with its variables exported, stop
#                                   etcd (also when CMD fails or the script is
#                                   interrupted), remove the directory, and
#                                   exit with CMD's status
#   etcd_cluster.sh start-node DIR  start the etcd of DIR again (after a test
#                                   killed it) on its ports, with its data;
#                                   waits until it answers
#   etcd_cluster.sh stop DIR        stop the etcd of DIR by PID (bounded)
#
# Without the etcd binary, `run` runs CMD alone (the etcd suite then skips,
# and fails under CI): the other suites need no etcd.
#
# Environment: ETCD_BASE_PORT (first client port tried, default 52379; the
# peer port is the next free one), ETCD_START_TIMEOUT (seconds, default 30).
#
# Exported to CMD:
#   SR_ETCD_URL      http://127.0.0.1:PORT (the client URL)
#   SR_ETCD_DIR      the directory (data in DIR/data, log in DIR/etcd.log)
#   SR_ETCD_PIDFILE  a file holding the running etcd's PID
#   SR_ETCD_START    a shell command that starts it again (start-node)
set -euo pipefail

ETCD=${ETCD:-$(command -v etcd || true)}
[ -n "$ETCD" ] || ETCD=/usr/bin/etcd
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
START_TIMEOUT=${ETCD_START_TIMEOUT:-30}

die() {
    echo "etcd_cluster: $*" >&2
    exit 1
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local p=$1
    while ((p < 65535)); do
        if ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
        p=$((p + 1))
    done
    return 1
}

# 0 when GET /health on 127.0.0.1:$1 says the member is healthy.
healthy() {
    local answer
    answer=$(
        exec 2>/dev/null
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
        timeout 2 cat <&3
    ) 2>/dev/null || return 1
    [[ $answer == *'"health":"true"'* ]]
}

# 0 when PID is an etcd of DIR (its command line names DIR's data directory).
is_ours() {
    local pid=$1 dir=$2
    [[ $pid =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--data-dir $dir/data"
}

cmd_start_node() {
    local dir=$1 client peer pid deadline
    [ -f "$dir/ports" ] || die "no etcd in $dir"
    read -r client peer <"$dir/ports"
    setsid "$ETCD" --name sr --data-dir "$dir/data" \
        --listen-client-urls "http://127.0.0.1:$client" \
        --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "sr=http://127.0.0.1:$peer" \
        --log-outputs "$dir/etcd.log" --logger zap \
        </dev/null >>"$dir/etcd.out" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/etcd.pid"
    deadline=$(($(date +%s) + START_TIMEOUT))
    until healthy "$client"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$dir/etcd.out" "$dir/etcd.log" >&2 || true
            die "etcd exited at start"
        fi
        (($(date +%s) < deadline)) || die "etcd not healthy after ${START_TIMEOUT}s"
        sleep 0.1
    done
    echo "$pid"
}

cmd_stop() {
    local dir=$1 pid i
    [ -f "$dir/etcd.pid" ] || return 0
    read -r pid <"$dir/etcd.pid" || return 0
    is_ours "$pid" "$dir" || return 0
    kill -CONT "$pid" 2>/dev/null || true # a test may have frozen it
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        is_ours "$pid" "$dir" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

RUN_DIR=
cleanup_run() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$RUN_DIR" ]; then
        cmd_stop "$RUN_DIR"
        rm -rf "$RUN_DIR"
    fi
    exit "$status"
}

cmd_run() {
    [ "$#" -ge 1 ] || die "usage: $0 run CMD [ARGS...]"
    if [ ! -x "$ETCD" ]; then
        echo "etcd_cluster: no etcd binary (apt-get install etcd-server): running without it" >&2
        exec "$@"
    fi
    RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sr-etcd.XXXXXX")
    trap cleanup_run EXIT
    trap 'exit 130' INT TERM
    local client peer
    client=$(free_port "${ETCD_BASE_PORT:-52379}") || die "no free port"
    peer=$(free_port $((client + 1))) || die "no free port"
    echo "$client $peer" >"$RUN_DIR/ports"
    cmd_start_node "$RUN_DIR" >/dev/null
    echo "etcd_cluster: etcd on 127.0.0.1:$client in $RUN_DIR" >&2
    export SR_ETCD_URL="http://127.0.0.1:$client" SR_ETCD_DIR="$RUN_DIR"
    export SR_ETCD_PIDFILE="$RUN_DIR/etcd.pid" SR_ETCD_START="'$SELF' start-node '$RUN_DIR'"
    local status=0
    "$@" || status=$?
    exit "$status"
}

case "${1:-}" in
run)
    shift
    cmd_run "$@"
    ;;
start-node)
    [ "$#" -eq 2 ] || die "usage: $0 start-node DIR"
    cmd_start_node "$2"
    ;;
stop)
    [ "$#" -eq 2 ] || die "usage: $0 stop DIR"
    cmd_stop "$2"
    ;;
*)
    echo "usage: $0 run CMD... | start-node DIR | stop DIR" >&2
    exit 2
    ;;
esac
