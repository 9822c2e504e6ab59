#!/usr/bin/env bash
# Runs a command with every test server the integration suites need running,
# and stops them afterwards whatever the command's outcome. Each cluster
# script exports its connection strings into the environment.
#   tests/env/with_servers.sh CMD [ARGS...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=("$@")
if [ -x "$here/mariadb_cluster.sh" ]; then
  cmd=("$here/mariadb_cluster.sh" run "${cmd[@]}")
fi
if [ -x "$here/etcd_cluster.sh" ]; then
  cmd=("$here/etcd_cluster.sh" run "${cmd[@]}")
fi
if [ -x "$here/pg_cluster.sh" ]; then
  cmd=("$here/pg_cluster.sh" run "${cmd[@]}")
fi
exec "${cmd[@]}"
