#!/usr/bin/env bash
# Installs the Debian packages shardroute needs, if any are missing.
#   scripts/deps.sh build   compiler, meson, SQLite, xxhash (enough for the quickstart), json-c and
#                           libmicrohttpd (the shardroute command and its serve), libcurl
#                           (topology.etcd)
#   scripts/deps.sh test    + Check, PostgreSQL 15, MariaDB, their client libraries, valgrind,
#                           openssl (the test servers' throw-away TLS certificates), and the
#                           Python binding's: cffi, pytest, psycopg2 and MySQLdb (direct checks),
#                           Prometheus (promtool and the server the shardroute command's tests scrape with),
#                           etcd (the server the topology.etcd tests read from)
#   scripts/deps.sh fuzz    build + clang and its fuzzer runtime (libclang-rt-14-dev is only a Recommends)
# As root it runs apt-get itself; otherwise it prints the exact command and fails.
set -euo pipefail

build_pkgs=(gcc meson ninja-build pkg-config libsqlite3-dev libxxhash-dev libjson-c-dev libmicrohttpd-dev
            libcurl4-openssl-dev)
test_pkgs=("${build_pkgs[@]}" check libsubunit-dev libpq-dev postgresql-15 postgresql-client-15
           default-libmysqlclient-dev mariadb-server mariadb-client sqlite3 valgrind openssl
           python3 python3-cffi python3-pytest python3-psycopg2 python3-mysqldb prometheus etcd-server)

case "${1:-build}" in
  build) wanted=("${build_pkgs[@]}") ;;
  test) wanted=("${test_pkgs[@]}") ;;
  fuzz) wanted=("${build_pkgs[@]}" clang libclang-rt-14-dev) ;;
  *) echo "usage: $0 build|test|fuzz" >&2; exit 2 ;;
esac

missing=()
for p in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "shardroute needs these Debian packages: ${missing[*]}" >&2
  echo "run as root:  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Package scripts must not start the system-wide database services: the tests
# start their own servers in temporary directories.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  created_policy=1
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}"
[ "$created_policy" -eq 1 ] && rm -f "$policy"
exit 0
