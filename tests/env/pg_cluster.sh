#!/usr/bin/env bash
# A throw-away PostgreSQL 15 cluster for the integration tests: one primary and
# two streaming replicas on 127.0.0.1, everything under one directory.
#
#   pg_cluster.sh start DIR     start the cluster in DIR (an empty temp dir) and
#                               write DIR/env.sh (connection strings and PIDs)
#   pg_cluster.sh stop DIR      stop the servers of DIR by PID (bounded)
#   pg_cluster.sh start-node DIR NAME
#                               start node NAME (primary, replica1, replica2) of
#                               the cluster in DIR again after a test killed it,
#                               on the port it had; waits until it accepts
#                               connections, records its new PID for `stop` and
#                               prints it (a replica catches up by itself)
#   pg_cluster.sh run CMD...    start a cluster in a fresh temp dir, run CMD with
#                               env.sh's variables exported, stop the cluster
#                               (also when CMD fails or the script is
#                               interrupted) and exit with CMD's status
#
# Environment: PG_BIN (default /usr/lib/postgresql/15/bin), PG_BASE_PORT (first
# port tried, default 56432), PG_START_TIMEOUT (seconds, default 60),
# PG_KEEP_DIR=1 keeps run's directory (logs) after it stops.
#
# PostgreSQL refuses to run as root, so as root the servers run as the
# `postgres` user (runuser) and DIR is handed to it.
#
# env.sh exports:
#   SR_PG_PRIMARY SR_PG_REPLICA1 SR_PG_REPLICA2   postgresql://postgres@127.0.0.1:PORT
#                                                 (no database: append /shard0 ...)
#   SR_PG_PRIMARY_PORT SR_PG_REPLICA1_PORT SR_PG_REPLICA2_PORT
#   SR_PG_PRIMARY_PID SR_PG_REPLICA1_PID SR_PG_REPLICA2_PID   postmaster PIDs at start
#                                                 (a restarted node has a new one: read
#                                                 the first line of DATA/postmaster.pid)
#   SR_PG_PRIMARY_DATA SR_PG_REPLICA1_DATA SR_PG_REPLICA2_DATA   data directories
#   SR_PG_PRIMARY_START SR_PG_REPLICA1_START SR_PG_REPLICA2_START
#                                                 a shell command that starts that
#                                                 node again (start-node, above)
#   SR_PG_PW_USER SR_PG_PW_PASSWORD   a user that must authenticate with a password
#   SR_PG_TLS_CA SR_PG_TLS_WRONG_CA   the CA that signed the servers' certificate (IP
#                                     127.0.0.1, DNS localhost) and an unrelated one
#                                     (ssl = on; plain connections work as before)
#   SR_PG_DIR SR_PG_BIN
# Databases shard0 and shard1 exist on the primary and have replicated.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_BASE_PORT=${PG_BASE_PORT:-56432}
PG_START_TIMEOUT=${PG_START_TIMEOUT:-60}
PW_USER=sr_pw
PW_PASSWORD='sr-test-secret'
NODES=(primary replica1 replica2)
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

die() {
    echo "pg_cluster: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start DIR | stop DIR | start-node DIR NAME | run CMD [ARGS...]" >&2
    exit 2
}

check_binaries() {
    local b
    for b in initdb pg_ctl pg_basebackup postgres psql pg_isready; do
        if [[ ! -x $PG_BIN/$b ]]; then
            echo "pg_cluster: $PG_BIN/$b not found: PostgreSQL 15 is not installed." >&2
            echo "pg_cluster: install it with: apt-get install -y postgresql-15 libpq-dev" >&2
            exit 1
        fi
    done
}

# Runs a server-side command as the owner of the data directories.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

now() { date +%s; }

# psql against a node: PORT DB SQL
pgsql() {
    "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"
}

port_in_use() {
    # A successful TCP connect means something listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints the first port >= $1 that nobody listens on and we have not taken.
free_port() {
    local p=$1 taken t
    while ((p < 65535)); do
        taken=0
        for t in "${USED_PORTS[@]}"; do
            [[ $t == "$p" ]] && taken=1
        done
        if ((taken == 0)) && ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
        p=$((p + 1))
    done
    return 1
}

# Starts the server of data directory DIR/NAME on a free port, retrying with
# the next port when another process won the race for it. Sets NODE_PORT and
# NODE_PID.
start_node() {
    local dir=$1 name=$2 data="$1/$2" port attempt remaining
    local next=$NEXT_PORT
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        port=$(free_port "$next") || die "no free port from $next"
        printf "port = %s\ncluster_name = '%s'\n" "$port" "$name" >"$data/node.conf"
        remaining=$((DEADLINE - $(now)))
        ((remaining > 0)) || die "timed out before starting $name"
        if as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$dir/$name.log" -w -t "$remaining" -s start; then
            NODE_PORT=$port
            NODE_PID=$(head -n 1 "$data/postmaster.pid")
            USED_PORTS+=("$port")
            NEXT_PORT=$((port + 1))
            return 0
        fi
        if ! grep -qE 'could not (bind|create listen)|already in use' "$dir/$name.log" 2>/dev/null; then
            tail -n 20 "$dir/$name.log" >&2 || true
            die "$name did not start (attempt $attempt)"
        fi
        next=$((port + 1))
    done
    die "$name: no port could be bound"
}

cmd_start() {
    local dir=$1
    [[ -d $dir ]] || die "$dir is not a directory"
    dir=$(cd "$dir" && pwd)
    [[ -z $(ls -A "$dir") ]] || die "$dir is not empty"
    # Unix socket paths are limited to 107 bytes.
    ((${#dir} < 80)) || die "$dir is too long for a socket directory"
    check_binaries
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "no 'postgres' user (install postgresql-15)"
        chown postgres: "$dir"
        runuser -u postgres -- test -w "$dir" ||
            die "user postgres cannot reach $dir (a parent directory is not traversable)"
    fi
    # Server tools complain when they cannot return to the caller's cwd.
    cd "$dir"

    DEADLINE=$(($(now) + PG_START_TIMEOUT))
    NEXT_PORT=$PG_BASE_PORT
    USED_PORTS=()
    declare -A port pid

    as_pg "$PG_BIN/initdb" -D "$dir/primary" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
        --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    }
    # TLS (make_certs.sh); the replicas' copies of postgresql.conf name the same files.
    "$(dirname "$SELF")/make_certs.sh" "$dir/tls"
    [[ $(id -u) -ne 0 ]] || chown -R postgres: "$dir/tls"
    # Durability is irrelevant for a test cluster; speed is not. fsync is off,
    # but synchronous_commit stays at its default (on) as in production: with
    # it off a commit reaches the replicas only at the WAL writer's next round,
    # which would make read-your-writes figures measure this test setting.
    as_pg tee -a "$dir/primary/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_buffers = 16MB
max_connections = 100
fsync = off
full_page_writes = off
wal_level = replica
max_wal_senders = 8
wal_keep_size = 128MB
hot_standby = on
wal_receiver_status_interval = 1s
checkpoint_timeout = 30min
max_prepared_transactions = 20
log_min_messages = warning
include_if_exists = 'node.conf'
ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/server.key'
EOF
    # The password user authenticates; everyone else is trusted on loopback.
    as_pg tee "$dir/primary/pg_hba.conf" >/dev/null <<EOF
local   all          all                          trust
host    all          $PW_USER  127.0.0.1/32     scram-sha-256
host    all          all       127.0.0.1/32     trust
host    replication  all       127.0.0.1/32     trust
EOF
    start_node "$dir" primary
    port[primary]=$NODE_PORT
    pid[primary]=$NODE_PID
    declare -A entry
    entry[primary]=$(server_entry "$NODE_PID" "$dir/primary")
    write_pids "$dir" "${entry[primary]}"

    pgsql "${port[primary]}" postgres \
        "CREATE ROLE $PW_USER LOGIN PASSWORD '$PW_PASSWORD'" >/dev/null

    local r
    for r in replica1 replica2; do
        as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "${port[primary]}" -U postgres \
            -D "$dir/$r" -R -X stream -c fast --no-sync >"$dir/$r.basebackup.log" 2>&1 || {
            cat "$dir/$r.basebackup.log" >&2
            die "pg_basebackup for $r failed"
        }
        start_node "$dir" "$r"
        port[$r]=$NODE_PORT
        pid[$r]=$NODE_PID
        entry[$r]=$(server_entry "$NODE_PID" "$dir/$r")
        write_pids "$dir" "${entry[primary]}" "${entry[replica1]:-}" "${entry[replica2]:-}"
    done

    # Created after the replicas exist, so that they arrive by streaming.
    pgsql "${port[primary]}" postgres "CREATE DATABASE shard0" >/dev/null
    pgsql "${port[primary]}" postgres "CREATE DATABASE shard1" >/dev/null
    pgsql "${port[primary]}" postgres "GRANT ALL ON DATABASE shard0, shard1 TO $PW_USER" >/dev/null
    local lsn
    lsn=$(pgsql "${port[primary]}" postgres "SELECT pg_current_wal_lsn()")

    local streaming caught
    while :; do
        streaming=$(pgsql "${port[primary]}" postgres \
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null || echo 0)
        caught=0
        for r in replica1 replica2; do
            if [[ $(pgsql "${port[$r]}" postgres \
                "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn" 2>/dev/null || true) == t ]]; then
                caught=$((caught + 1))
            fi
        done
        [[ $streaming == 2 && $caught == 2 ]] && break
        if (($(now) >= DEADLINE)); then
            die "replicas not streaming after ${PG_START_TIMEOUT}s (streaming=$streaming caught_up=$caught); logs in $dir"
        fi
        sleep 0.2
    done
    for r in "${NODES[@]}"; do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "${port[$r]}" -d shard1 -U postgres ||
            die "$r does not accept connections to shard1"
    done

    {
        echo "# written by pg_cluster.sh start"
        echo "export SR_PG_DIR='$dir'"
        echo "export SR_PG_BIN='$PG_BIN'"
        local var
        for r in "${NODES[@]}"; do
            var=SR_PG_${r^^}
            echo "export $var='postgresql://postgres@127.0.0.1:${port[$r]}'"
            echo "export ${var}_PORT='${port[$r]}'"
            echo "export ${var}_PID='${pid[$r]}'"
            echo "export ${var}_DATA='$dir/$r'"
            echo "export ${var}_START=\"'$SELF' start-node '$dir' $r\""
        done
        echo "export SR_PG_PW_USER='$PW_USER'"
        echo "export SR_PG_PW_PASSWORD='$PW_PASSWORD'"
        echo "export SR_PG_TLS_CA='$dir/tls/ca.crt' SR_PG_TLS_WRONG_CA='$dir/tls/wrong-ca.crt'"
    } >"$dir/env.sh"
    echo "pg_cluster: primary :${port[primary]}, replicas :${port[replica1]} :${port[replica2]} in $dir" >&2
}

# DIR/pids lists the servers for `stop`, one "PID START DATA" line each: a PID
# names the server only together with its start time (pid_max is 32768 and a
# killed server's PID is soon someone else's: a backend, a MariaDB thread).
write_pids() {
    local dir=$1 e
    shift
    for e in "$@"; do
        [[ -n $e ]] && echo "$e"
    done >"$dir/pids"
}

# Sets PROC_STATE and PROC_START from /proc/$1/stat (fields 3 and 22); 1 when
# there is no such process. No fork: this runs in loops.
read_stat() {
    local line
    PROC_STATE='' PROC_START=''
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    local -a f
    read -r -a f <<<"$line"
    PROC_STATE=${f[0]} PROC_START=${f[19]}
}

# is_server PID DATA [START]: 0 when PID is a live process (a zombie, which
# kill -0 still finds, is gone; so is a mere thread of another process) that
# started at START when given, and whose command line is a postmaster's of
# DATA ("postgres -D DATA"; backends rename themselves).
is_server() {
    local spid=$1 data=$2 start=${3:-} k v arg prev=
    [[ $spid =~ ^[0-9]+$ ]] && read_stat "$spid" || return 1
    [[ $PROC_STATE != [ZX] && ( -z $start || $PROC_START == "$start" ) ]] || return 1
    while read -r k v; do
        [[ $k == Tgid: ]] && { [[ $v == "$spid" ]] || return 1; break; }
    done 2>/dev/null <"/proc/$spid/status"
    while IFS= read -r -d '' arg; do
        [[ $prev == -D && $arg == "$data" ]] && return 0
        prev=$arg
    done 2>/dev/null <"/proc/$spid/cmdline"
    return 1
}

# The "PID START DATA" entry of a server we just started.
server_entry() {
    read_stat "$1" && echo "$1 $PROC_START $2"
}

# is_server with a "PID START DATA" entry.
entry_is_server() {
    local p s d
    read -r p s d <<<"$1"
    is_server "$p" "$d" "$s"
}

# Waits up to $2 tenths of a second for every server in the array of entries
# named $1 to exit.
wait_gone() {
    local -n entries_ref=$1
    local tenths=$2 e any
    while ((tenths > 0)); do
        any=0
        for e in "${entries_ref[@]}"; do
            entry_is_server "$e" && any=1
        done
        ((any == 0)) && return 0
        sleep 0.1
        tenths=$((tenths - 1))
    done
    return 1
}

cmd_stop() {
    local dir=$1 p c e start data
    [[ -f $dir/pids ]] || return 0
    local -a entries=() children=()
    while read -r p start data; do
        is_server "$p" "$data" "$start" && entries+=("$p $start $data")
    done <"$dir/pids"
    ((${#entries[@]} > 0)) || return 0
    # Backends are remembered (with their start times) so that none survives a
    # postmaster killed hard.
    for e in "${entries[@]}"; do
        p=${e%% *}
        for c in $(cat "/proc/$p/task/$p/children" 2>/dev/null || true); do
            read_stat "$c" && children+=("$c $PROC_START")
        done
    done
    # SIGINT is PostgreSQL's "fast" shutdown (SIGTERM's "smart" mode would wait
    # for clients); SIGCONT wakes a server a test stopped with SIGSTOP.
    signal_servers INT CONT
    # A test may have frozen a whole server, backends included.
    signal_children CONT
    wait_gone entries 100 && return 0
    signal_servers QUIT
    wait_gone entries 30 && return 0
    echo "pg_cluster: servers did not stop, killing" >&2
    signal_servers KILL
    signal_children KILL
    wait_gone entries 50 || die "could not kill ${entries[*]}"
}

# Signals (each of "$@", in turn) the servers of cmd_stop's entries that are
# still themselves: a PID that has been handed on gets nothing.
signal_servers() {
    local e sig
    for e in "${entries[@]}"; do
        for sig in "$@"; do
            if entry_is_server "$e"; then
                kill "-$sig" "${e%% *}" 2>/dev/null || true
            fi
        done
    done
}

# Signals cmd_stop's remembered children that are still the same processes.
signal_children() {
    local c
    for c in "${children[@]}"; do
        if read_stat "${c%% *}" && [[ $PROC_STATE != [ZX] && $PROC_START == "${c##* }" ]]; then
            kill "-$1" "${c%% *}" 2>/dev/null || true
        fi
    done
}

# Starts node NAME of the cluster in DIR again, after a test killed it.
cmd_start_node() {
    local dir=$1 name=$2 data port old start pid p s d tenths
    case $name in
    primary | replica1 | replica2) ;;
    *) die "unknown node '$name' (primary, replica1 or replica2)" ;;
    esac
    [[ -d $dir/$name ]] || die "no node $name in $dir"
    dir=$(cd "$dir" && pwd)
    data=$dir/$name
    check_binaries
    cd "$dir"
    port=$(sed -n "s/^port = //p" "$data/node.conf" 2>/dev/null)
    [[ $port =~ ^[0-9]+$ ]] || die "$name: no port in $data/node.conf"
    if [[ -f $data/postmaster.pid ]]; then
        { read -r old <"$data/postmaster.pid"; } 2>/dev/null || old=
        # Its start time, when this script started it.
        start=
        if [[ -f $dir/pids ]]; then
            while read -r p s d; do
                [[ $p == "$old" && $d == "$data" ]] && start=$s
            done <"$dir/pids"
        fi
        # A killed server may take a moment to be gone.
        tenths=50
        while is_server "$old" "$data" "$start" && ((tenths > 0)); do
            sleep 0.1
            tenths=$((tenths - 1))
        done
        if is_server "$old" "$data" "$start"; then
            die "$name is still running (PID $old, started at tick $PROC_START)"
        fi
        # PostgreSQL refuses to start while the PID in its lock files answers
        # kill(pid, 0): an unreaped zombie does, and so does whatever process
        # got the dead server's PID. The server is gone, so its lock files go.
        rm -f "$data/postmaster.pid" "$dir/.s.PGSQL.$port.lock"
    fi
    if ! as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$dir/$name.log" -w -t "$PG_START_TIMEOUT" -s start \
        </dev/null >/dev/null 2>&1; then
        tail -n 20 "$dir/$name.log" >&2 || true
        die "$name did not start again"
    fi
    pid=$(head -n 1 "$data/postmaster.pid")
    tenths=$((PG_START_TIMEOUT * 10))
    until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres; do
        ((tenths > 0)) || die "$name (port $port) does not accept connections"
        sleep 0.1
        tenths=$((tenths - 1))
    done
    # `stop` must find the new server, and must not wait for the dead one.
    local -a keep=()
    if [[ -f $dir/pids ]]; then
        while read -r p s d; do
            [[ $d != "$data" ]] && is_server "$p" "$d" "$s" && keep+=("$p $s $d")
        done <"$dir/pids"
    fi
    write_pids "$dir" "${keep[@]}" "$(server_entry "$pid" "$data")"
    echo "$pid"
}

cmd_run() {
    local dir status=0
    dir=$(mktemp -d "${TMPDIR:-/tmp}/srpg.XXXXXX")
    RUN_DIR=$dir
    RUN_CHILD=
    trap 'run_cleanup' EXIT
    trap 'run_signal 130 INT' INT
    trap 'run_signal 143 TERM' TERM
    # A subshell, so that a failed start returns here (and the trap stops
    # whatever did start) and the caller's directory is kept.
    (cmd_start "$dir") || exit 1
    # shellcheck source=/dev/null
    source "$dir/env.sh"
    # In the background so that a signal to this script is handled at once
    # (bash runs traps only between foreground commands).
    "$@" &
    RUN_CHILD=$!
    wait "$RUN_CHILD" || status=$?
    RUN_CHILD=
    exit "$status"
}

run_signal() {
    if [[ -n $RUN_CHILD ]]; then
        kill "-$2" "$RUN_CHILD" 2>/dev/null || true
        wait "$RUN_CHILD" 2>/dev/null || true
    fi
    exit "$1"
}

run_cleanup() {
    local status=$?
    trap - EXIT INT TERM
    cmd_stop "$RUN_DIR" || status=1
    if [[ ${PG_KEEP_DIR:-0} == 1 ]]; then
        echo "pg_cluster: kept $RUN_DIR" >&2
    else
        rm -rf "$RUN_DIR"
    fi
    exit "$status"
}

main() {
    (($# >= 1)) || usage
    local verb=$1
    shift
    case $verb in
    start)
        (($# == 1)) || usage
        # A failed start stops whatever it had started.
        if ! (cmd_start "$1"); then
            cmd_stop "$1" || true
            exit 1
        fi
        ;;
    stop)
        (($# == 1)) || usage
        cmd_stop "$1"
        ;;
    start-node)
        (($# == 2)) || usage
        cmd_start_node "$1" "$2"
        ;;
    run)
        (($# >= 1)) || usage
        cmd_run "$@"
        ;;
    *) usage ;;
    esac
}

main "$@"
