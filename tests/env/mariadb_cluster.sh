#!/usr/bin/env bash
# A throw-away MariaDB primary + GTID replica on 127.0.0.1 for the MySQL driver tests.
#
#   mariadb_cluster.sh start DIR     initialise and start both servers under DIR,
#                                    write DIR/env.sh (connection strings, ports, PIDs)
#   mariadb_cluster.sh stop DIR      stop both servers by PID (safe to repeat)
#   mariadb_cluster.sh start-node DIR NAME
#                                    start server NAME (primary or replica) of DIR
#                                    again after a test killed it, with the command
#                                    line it first had; waits until it answers,
#                                    records its new PID for `stop` and prints it
#   mariadb_cluster.sh run CMD...    start in a fresh temporary directory, run CMD
#                                    with env.sh sourced, always stop and clean up;
#                                    exits with CMD's status
#
# Environment:
#   MY_BASE_PORT      first port tried (default 53306); the primary gets a free
#                     port at or above it and the replica the next one
#   MY_START_TIMEOUT  seconds to wait for start-up and replication (default 60)
#   MY_KEEP_DIR=1     `run` leaves its directory (data, logs) in place
#   MY_REPLICA_BINLOG=1  the replica keeps a binlog (--log-slave-updates): it can
#                     become a primary that the old primary replicates from
#
# env.sh exports:
#   SR_MY_PRIMARY, SR_MY_REPLICA              mysql:// URIs of the application user
#                                             (no database, password included)
#   SR_MY_ADMIN_PRIMARY, SR_MY_ADMIN_REPLICA  URIs of an all-privileges user, for
#                                             tests that stop replication
#   SR_MY_PRIMARY_PORT, SR_MY_REPLICA_PORT, SR_MY_PRIMARY_PID, SR_MY_REPLICA_PID,
#   SR_MY_PRIMARY_SOCKET, SR_MY_REPLICA_SOCKET, SR_MY_DIR
#   SR_MY_PRIMARY_PIDFILE, SR_MY_REPLICA_PIDFILE  files holding each server's
#                                             current PID (the *_PID variables are
#                                             the PIDs at start; start-node changes it)
#   SR_MY_PRIMARY_START, SR_MY_REPLICA_START  a shell command that starts that
#                                             server again (start-node, above)
#   SR_MY_TLS_CA, SR_MY_TLS_WRONG_CA          the CA that signed both servers'
#                                             certificate (IP 127.0.0.1, DNS localhost)
#                                             and an unrelated one; TLS is offered,
#                                             not required
#
# The application user `sr` has every privilege on the shard databases and the
# monitoring privileges the driver needs, but not READ ONLY ADMIN / SUPER, so
# the replica's read_only really rejects its writes.
set -euo pipefail

readonly START_TIMEOUT_S=${MY_START_TIMEOUT:-60}
readonly STOP_TIMEOUT_S=30
readonly APP_USER=sr
readonly APP_PASSWORD=sr_app_pw_7Qx
readonly ADMIN_USER=sr_admin
readonly ADMIN_PASSWORD=sr_admin_pw_4Kz
readonly REPL_USER=sr_repl
readonly REPL_PASSWORD=sr_repl_pw_9Wd
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
readonly SELF

die() {
    echo "mariadb_cluster: $*" >&2
    exit 1
}

log() {
    echo "mariadb_cluster: $*" >&2
}

need_binaries() {
    local b
    for b in mariadbd mariadb-install-db mariadb mariadb-admin; do
        if ! command -v "$b" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$b" ]; then
            echo "mariadb_cluster: $b not found; install the server with:" >&2
            echo "    apt-get install -y mariadb-server mariadb-client default-libmysqlclient-dev" >&2
            exit 1
        fi
    done
}

mariadbd_bin() {
    if command -v mariadbd >/dev/null 2>&1; then
        command -v mariadbd
    else
        echo /usr/sbin/mariadbd
    fi
}

port_in_use() {
    # A successful connect means something listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints the first port at or above $1 that nobody listens on.
free_port() {
    local p=$1 tries=0
    while [ "$tries" -lt 200 ]; do
        if ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
        p=$((p + 1))
        tries=$((tries + 1))
    done
    die "no free port found from $1"
}

# sql NODE_DIR STATEMENTS: runs statements as root over the node's socket.
sql() {
    mariadb --no-defaults --socket="$1/mysqld.sock" -uroot --batch --skip-column-names -e "$2"
}

# wait_ready NODE_DIR PID: 0 once the server answers, 1 when the process
# exited during start-up (its log says why); dies after START_TIMEOUT_S.
wait_ready() {
    local node=$1 pid=$2 deadline=$((SECONDS + START_TIMEOUT_S))
    while ! mariadb-admin --no-defaults --socket="$node/mysqld.sock" -uroot \
        --connect-timeout=2 ping >/dev/null 2>&1; do
        # Our own child: its PID stays its own until this shell reaps it.
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null || true
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$node/error.log" >&2 || true
            die "server in $node not ready after ${START_TIMEOUT_S}s"
        fi
        sleep 0.2
    done
}

# install_node NODE_DIR: a fresh data directory.
install_node() {
    local node=$1
    # A private tmpdir: servers sharing /tmp can collide on temporary table
    # names while bootstrapping.
    mkdir -p "$node/tmp"
    mariadb-install-db --no-defaults --user=root --datadir="$node/data" --tmpdir="$node/tmp" \
        --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
        >"$node/install.log" 2>&1 || {
        tail -n 30 "$node/install.log" >&2
        die "mariadb-install-db failed for $node"
    }
}

# launch_node NAME PORT SERVER_ID EXTRA_ARGS...: starts DIR/NAME's server on
# the first free port at or above PORT and waits until it answers; sets
# NODE_PORT and NODE_PID and writes DIR/NAME.pid at once, so a failure later
# still stops it. A port can be taken between the check and the server's bind
# (by another server, or as the local end of some outgoing connection): then
# the next port is tried.
launch_node() {
    local name=$1 port=$2 id=$3 attempt
    shift 3
    local node=$CLUSTER_DIR/$name
    local -a cmd
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        port=$(free_port "$port")
        # Small InnoDB buffers: the data set is tiny and several runs may share the host.
        cmd=("$(mariadbd_bin)" --no-defaults --user=root --datadir="$node/data"
            --socket="$node/mysqld.sock" --port="$port" --bind-address=127.0.0.1
            --pid-file="$node/mysqld.pid" --log-error="$node/error.log" --tmpdir="$node/tmp"
            --server-id="$id" --skip-name-resolve --innodb-buffer-pool-size=32M
            --innodb-log-file-size=16M --max-connections=200 "$@")
        # Kept for start-node, which starts the server again as it was.
        printf '%s\0' "${cmd[@]}" >"$node/cmdline"
        # A session of its own: whatever kills the caller's process group spares it.
        setsid "${cmd[@]}" </dev/null >/dev/null 2>&1 &
        NODE_PID=$!
        NODE_PORT=$port
        echo "$NODE_PID" >"$CLUSTER_DIR/$name.pid"
        if wait_ready "$node" "$NODE_PID"; then
            # The server's own record, in case setsid had to fork.
            if [ -s "$node/mysqld.pid" ]; then
                NODE_PID=$(cat "$node/mysqld.pid")
                echo "$NODE_PID" >"$CLUSTER_DIR/$name.pid"
            fi
            return 0
        fi
        rm -f "$CLUSTER_DIR/$name.pid"
        if ! grep -q "Address already in use" "$node/error.log" 2>/dev/null; then
            tail -n 30 "$node/error.log" >&2 || true
            die "server in $node exited during start-up"
        fi
        log "port $port was taken while $name started (attempt $attempt); trying the next one"
        port=$((port + 1))
    done
    die "could not find a port for $name"
}

wait_replication() {
    local replica=$1 deadline=$((SECONDS + START_TIMEOUT_S)) status io sqlr
    while :; do
        status=$(mariadb --no-defaults --socket="$replica/mysqld.sock" -uroot -e 'SHOW SLAVE STATUS\G' 2>/dev/null || true)
        io=$(sed -n 's/^ *Slave_IO_Running: //p' <<<"$status")
        sqlr=$(sed -n 's/^ *Slave_SQL_Running: //p' <<<"$status")
        if [ "$io" = Yes ] && [ "$sqlr" = Yes ]; then
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$status" >&2
            die "replication not running after ${START_TIMEOUT_S}s (IO=$io SQL=$sqlr)"
        fi
        sleep 0.2
    done
}

cmd_start() {
    local dir=$1
    need_binaries
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -e "$dir/primary/data" ] && die "$dir already holds a cluster (stop it, use an empty directory)"

    CLUSTER_DIR=$dir
    install_node "$dir/primary"
    install_node "$dir/replica"
    "$(dirname "$SELF")/make_certs.sh" "$dir/tls"
    local -a tls=(--ssl-ca="$dir/tls/ca.crt" --ssl-cert="$dir/tls/server.crt" --ssl-key="$dir/tls/server.key")
    LAUNCHED=1
    local pport rport ppid rpid
    launch_node primary "${MY_BASE_PORT:-53306}" 1 --log-bin=mysql-bin --binlog-format=ROW "${tls[@]}"
    pport=$NODE_PORT
    ppid=$NODE_PID
    # The replica applies without an fsync per transaction: on a loaded machine
    # one that fsyncs takes seconds to apply a backlog the consistency tests
    # wait for. Its data and gtid_slave_pos are both InnoDB, so a killed replica
    # loses them together and fetches again. The primary stays durable: a
    # primary killed by the fault tests must not lose what its replica has.
    # MY_REPLICA_BINLOG=1: the replica keeps a binlog of what it applies, so that
    # it can become the primary that the old one replicates from (failover tests).
    local -a replica_binlog=()
    [ "${MY_REPLICA_BINLOG:-0}" = 1 ] &&
        replica_binlog=(--log-bin=mysql-bin --log-slave-updates --binlog-format=ROW)
    launch_node replica "$((pport + 1))" 2 --read-only --relay-log=relay-bin "${tls[@]}" \
        --innodb-flush-log-at-trx-commit=0 "${replica_binlog[@]}"
    rport=$NODE_PORT
    rpid=$NODE_PID

    # Created on the primary after start-up, so they are in its binlog and the
    # replica (starting from an empty slave_pos) replays them: both nodes get
    # the same users and databases.
    sql "$dir/primary" "
        CREATE USER '$REPL_USER'@'127.0.0.1' IDENTIFIED BY '$REPL_PASSWORD';
        GRANT REPLICATION SLAVE ON *.* TO '$REPL_USER'@'127.0.0.1';
        CREATE USER '$APP_USER'@'127.0.0.1' IDENTIFIED BY '$APP_PASSWORD';
        GRANT ALL PRIVILEGES ON \`shard%\`.* TO '$APP_USER'@'127.0.0.1';
        GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR ON *.* TO '$APP_USER'@'127.0.0.1';
        CREATE USER '$ADMIN_USER'@'127.0.0.1' IDENTIFIED BY '$ADMIN_PASSWORD';
        GRANT ALL PRIVILEGES ON *.* TO '$ADMIN_USER'@'127.0.0.1' WITH GRANT OPTION;
        CREATE DATABASE shard0;
        CREATE DATABASE shard1;"

    sql "$dir/replica" "
        CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$pport,
            MASTER_USER='$REPL_USER', MASTER_PASSWORD='$REPL_PASSWORD',
            MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
        START SLAVE;"
    wait_replication "$dir/replica"

    # Everything written so far has been applied before anyone uses the pair.
    local pos applied
    pos=$(sql "$dir/primary" "SELECT @@gtid_binlog_pos")
    applied=$(sql "$dir/replica" "SELECT MASTER_GTID_WAIT('$pos', $START_TIMEOUT_S)")
    [ "$applied" = 0 ] || die "replica did not apply $pos in time"

    cat >"$dir/env.sh" <<EOF
# Written by mariadb_cluster.sh start; source it.
export SR_MY_DIR='$dir'
export SR_MY_PRIMARY='mysql://$APP_USER:$APP_PASSWORD@127.0.0.1:$pport'
export SR_MY_REPLICA='mysql://$APP_USER:$APP_PASSWORD@127.0.0.1:$rport'
export SR_MY_ADMIN_PRIMARY='mysql://$ADMIN_USER:$ADMIN_PASSWORD@127.0.0.1:$pport'
export SR_MY_ADMIN_REPLICA='mysql://$ADMIN_USER:$ADMIN_PASSWORD@127.0.0.1:$rport'
export SR_MY_PRIMARY_PORT=$pport
export SR_MY_REPLICA_PORT=$rport
export SR_MY_PRIMARY_PID=$ppid
export SR_MY_REPLICA_PID=$rpid
export SR_MY_PRIMARY_SOCKET='$dir/primary/mysqld.sock'
export SR_MY_REPLICA_SOCKET='$dir/replica/mysqld.sock'
export SR_MY_PRIMARY_PIDFILE='$dir/primary.pid'
export SR_MY_REPLICA_PIDFILE='$dir/replica.pid'
export SR_MY_PRIMARY_START="'$SELF' start-node '$dir' primary"
export SR_MY_REPLICA_START="'$SELF' start-node '$dir' replica"
export SR_MY_TLS_CA='$dir/tls/ca.crt' SR_MY_TLS_WRONG_CA='$dir/tls/wrong-ca.crt'
EOF
    log "primary 127.0.0.1:$pport (pid $ppid), replica 127.0.0.1:$rport (pid $rpid), env in $dir/env.sh"
}

# is_server PID NODE_DIR: 0 when PID is a live process that is NODE_DIR's
# server: its command line has --datadir=NODE_DIR/data. A bare PID is not
# enough: pid_max is 32768, and a killed server's PID is soon someone else's
# (a thread of the other server: /proc/TID answers for threads too). A zombie,
# which kill -0 still finds, is gone. No fork: this runs in loops.
is_server() {
    local pid=$1 node=$2 line k v arg
    case $pid in
    '' | *[!0-9]*) return 1 ;;
    esac
    { read -r line <"/proc/$pid/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    case ${line%% *} in
    Z | X) return 1 ;;
    esac
    while read -r k v; do
        if [ "$k" = Tgid: ]; then
            [ "$v" = "$pid" ] || return 1
            break
        fi
    done 2>/dev/null <"/proc/$pid/status"
    while IFS= read -r -d '' arg; do
        [ "$arg" = "--datadir=$node/data" ] && return 0
    done 2>/dev/null <"/proc/$pid/cmdline"
    return 1
}

# stop_pid PID NODE_DIR: stops NODE_DIR's server if PID still is it.
stop_pid() {
    local pid=$1 node=$2 deadline=$((SECONDS + STOP_TIMEOUT_S))
    is_server "$pid" "$node" || return 0
    # A server stopped with SIGSTOP by a test would never see SIGTERM.
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || return 0
    while is_server "$pid" "$node"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "pid $pid still running after ${STOP_TIMEOUT_S}s, killing it"
            if is_server "$pid" "$node"; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
            break
        fi
        sleep 0.1
    done
    # Reap it when it is our child (run); harmless otherwise.
    wait "$pid" 2>/dev/null || true
}

cmd_stop() {
    local dir=$1 node pid
    [ -d "$dir" ] || return 0
    dir=$(cd "$dir" && pwd)
    for node in replica primary; do
        [ -f "$dir/$node.pid" ] || continue
        pid=$(cat "$dir/$node.pid")
        case $pid in
        '' | *[!0-9]*) continue ;;
        esac
        stop_pid "$pid" "$dir/$node"
        rm -f "$dir/$node.pid"
    done
}

cmd_start_node() {
    local dir=$1 node=$2 old pid
    case $node in
    primary | replica) ;;
    *) die "unknown server '$node' (primary or replica)" ;;
    esac
    [ -d "$dir/$node" ] || die "no server $node in $dir"
    dir=$(cd "$dir" && pwd)
    [ -s "$dir/$node/cmdline" ] || die "no saved command line for $node in $dir"
    old=$(cat "$dir/$node.pid" 2>/dev/null || true)
    # One that was just killed may take a moment to finish exiting (a loaded
    # machine, a large process): wait for it, boundedly, before calling it
    # still running.
    local until=$((SECONDS + 10))
    while is_server "$old" "$dir/$node" && [ "$SECONDS" -lt "$until" ]; do
        sleep 0.1
    done
    if is_server "$old" "$dir/$node"; then
        die "$node is still running (pid $old)"
    fi
    local -a args
    mapfile -d '' -t args <"$dir/$node/cmdline"
    # A session of its own: whatever kills the caller's process group spares it.
    setsid "${args[@]}" </dev/null >/dev/null 2>&1 &
    pid=$!
    echo "$pid" >"$dir/$node.pid"
    if ! wait_ready "$dir/$node" "$pid"; then
        tail -n 30 "$dir/$node/error.log" >&2 || true
        die "server $node exited during start-up"
    fi
    echo "$pid"
}

RUN_DIR=
cleanup_run() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$RUN_DIR" ]; then
        cmd_stop "$RUN_DIR"
        if [ "${MY_KEEP_DIR:-0}" = 1 ]; then
            log "kept $RUN_DIR"
        else
            rm -rf "$RUN_DIR"
        fi
    fi
    exit "$status"
}

cmd_run() {
    [ "$#" -ge 1 ] || die "usage: $0 run CMD [ARGS...]"
    need_binaries
    RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sr-mariadb.XXXXXX")
    trap cleanup_run EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    cmd_start "$RUN_DIR"
    # shellcheck source=/dev/null
    . "$RUN_DIR/env.sh"
    local status=0
    "$@" || status=$?
    exit "$status"
}

usage() {
    echo "usage: $0 start DIR | stop DIR | start-node DIR NAME | run CMD [ARGS...]" >&2
    exit 2
}

[ "$#" -ge 1 ] || usage
action=$1
shift
case $action in
start)
    [ "$#" -eq 1 ] || usage
    START_DIR=$1
    LAUNCHED=0
    # A start that fails half-way stops the servers it launched (and only those).
    trap 'status=$?; [ "$status" -eq 0 ] || [ "$LAUNCHED" = 0 ] || cmd_stop "$START_DIR"; exit "$status"' EXIT
    cmd_start "$START_DIR"
    ;;
stop)
    [ "$#" -eq 1 ] || usage
    cmd_stop "$1"
    ;;
start-node)
    [ "$#" -eq 2 ] || usage
    need_binaries
    cmd_start_node "$1" "$2"
    ;;
run)
    cmd_run "$@"
    ;;
*)
    usage
    ;;
esac
