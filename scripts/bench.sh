#!/usr/bin/env bash
# Builds shardroute (the default debugoptimized build, no tests) and runs
# the benchmarks of bench/ with the local PostgreSQL and MariaDB servers of
# tests/env/ running (the postgres, consistency, mysql and mixed benchmarks
# connect to them; the others need no server). Each prints its table; nothing is asserted about speed.
#   scripts/bench.sh [BENCHMARK...]      default: every benchmark, e.g. scripts/bench.sh route sqlite
#   scripts/bench.sh mixed               mixed reads/writes per consistency mode (bench/bench_mixed.c);
#   scripts/bench.sh mixed --test-args='--pin 0.2 5'   its arguments: [--pin] [SECONDS_PER_RUN [ROUNDS [ROWS]]]
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
