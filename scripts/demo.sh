#!/usr/bin/env bash
# The main job: builds shardroute and runs the quickstart on SQLite shards.
#   scripts/demo.sh [DIR]    DIR receives the shard files (created if missing;
#                            default: a fresh temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
build=${BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" -Dtests=disabled -Dbench=false >/dev/null
fi
ninja -C "$build" examples/quickstart >/dev/null
if [ $# -gt 0 ]; then
  mkdir -p -- "$1"
fi
exec "$build/examples/quickstart" "$@"
