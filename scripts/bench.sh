#!/usr/bin/env bash
# Builds shardroute (the default debugoptimized build, no tests) and runs
# the benchmarks of bench/ with the local PostgreSQL and MariaDB servers of
# tests/env/ running (the postgres, consistency and mysql benchmarks connect
# to them; the others need no server). Each prints its table; nothing is asserted about speed.
#   scripts/bench.sh [BENCHMARK...]      default: every benchmark, e.g. scripts/bench.sh route sqlite
#   BUILD_DIR=build-bench2 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
build=${BUILD_DIR:-build-bench}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" -Dbench=true -Dtests=disabled -Dexamples=false >/dev/null
fi
ninja -C "$build"
runner=(meson test -C "$build" --benchmark --verbose --num-processes 1 "$@")
exec tests/env/with_servers.sh "${runner[@]}"
