#!/usr/bin/env bash
# Shows that the cluster scripts' `start-node` tells a dead server from the
# process that got its PID (issue 9): in a PID namespace of its own (root
# only; nothing outside it is touched), it starts a cluster, SIGKILLs a
# replica, lets it be reaped, steers the namespace's PID counter
# (ns_last_pid) so that a `sleep` gets the dead server's PID, and restarts the
# replica with SCRIPT start-node. A script that trusts kill -0 says "is still
# running" after its wait; one that checks identity starts the replica.
#
#   tests/support/pid_reuse_check.sh pg|mariadb [SCRIPT]
#
# SCRIPT defaults to tests/env/pg_cluster.sh or tests/env/mariadb_cluster.sh.
# Exit status: SCRIPT start-node's.
set -euo pipefail
kind=${1:?usage: $0 pg|mariadb [SCRIPT]}
here=$(cd "$(dirname "$0")/../env" && pwd)
case $kind in
pg) script=${2:-$here/pg_cluster.sh} node=replica1 ;;
mariadb) script=${2:-$here/mariadb_cluster.sh} node=replica ;;
*) echo "usage: $0 pg|mariadb [SCRIPT]" >&2; exit 2 ;;
esac
if [[ ${SR_IN_PIDNS:-} != 1 ]]; then
    [[ $(id -u) -eq 0 ]] || { echo "$0: needs root (unshare --pid)" >&2; exit 77; }
    # When the namespace's first process exits, the kernel kills all the rest.
    exec env SR_IN_PIDNS=1 unshare --pid --fork --mount-proc "$0" "$@"
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/srreuse.XXXXXX")
trap '"$here/${kind}_cluster.sh" stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
"$here/${kind}_cluster.sh" start "$dir" >"$dir.start.log" 2>&1 ||
    { cat "$dir.start.log" >&2; exit 1; }
rm -f "$dir.start.log"
if [[ $kind == pg ]]; then
    read -r old <"$dir/$node/postmaster.pid"
else
    old=$(cat "$dir/$node.pid")
fi
kill -KILL "$old"
# This shell is the namespace's PID 1: it reaps the orphaned server.
for _ in $(seq 100); do
    [[ -e /proc/$old ]] || break
    wait "$old" 2>/dev/null || true
    sleep 0.05
done
[[ ! -e /proc/$old ]] || { echo "pid $old was not reaped" >&2; exit 1; }
echo $((old - 1)) >/proc/sys/kernel/ns_last_pid
sleep 120 &
echo "killed $node (pid $old); pid $! is now a 'sleep'" >&2
[[ $! == "$old" ]] || { echo "could not hand pid $old on (got $!)" >&2; exit 1; }
t0=$SECONDS
status=0
"$script" start-node "$dir" "$node" >/dev/null || status=$?
echo "$(basename "$script") start-node $node: exit $status after $((SECONDS - t0)) s" >&2
exit "$status"
