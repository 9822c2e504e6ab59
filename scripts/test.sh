#!/usr/bin/env bash
# The whole test suite: builds with -Werror, starts the local PostgreSQL and
# MariaDB servers the integration tests need (in temporary directories, on
# 127.0.0.1), runs every Check suite with `meson test`, and stops the servers.
#   scripts/test.sh [meson test arguments...]
#   BUILD_DIR=build-asan MESON_ARGS="-Db_sanitize=address,undefined" scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
build=${BUILD_DIR:-build-test}
if [ ! -f "$build/build.ninja" ]; then
  # -Dtests=enabled: here a missing Check is an error, not a skipped suite.
  # shellcheck disable=SC2086
  meson setup "$build" -Dwerror=true -Dtests=enabled ${MESON_ARGS:-} >/dev/null
fi
ninja -C "$build"
runner=(meson test -C "$build" --print-errorlogs --num-processes 2 "$@")
exec tests/env/with_servers.sh "${runner[@]}"
