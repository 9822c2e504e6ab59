#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz/ with clang and runs each for a
# bounded time on a copy of its committed seed corpus (the committed corpus is
# never modified), with its dictionary when there is one. Any crash, leak,
# sanitizer report or failed property stops the run with the reproducer.
#   scripts/fuzz.sh [SECONDS_PER_HARNESS] [HARNESS...]     default 60 s, every harness
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh fuzz
seconds=${1:-60}
shift || true
build=${FUZZ_BUILD_DIR:-build-fuzz}
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" -Dfuzz=true -Dtests=disabled -Dbench=false -Dexamples=false -Dwerror=true >/dev/null
fi
ninja -C "$build" >/dev/null
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do harnesses+=("$(basename "$f" .c)"); done
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for h in "${harnesses[@]}"; do
  name=${h#fuzz_}
  corpus="$work/$name"
  mkdir -p "$corpus"
  [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$corpus/"
  # A fixed seed: what a CI run finds, the same command finds again.
  args=(-seed="${SR_FUZZ_SEED:-1}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$work/$name-")
  [ -f "tests/fuzz/$name.dict" ] && args+=(-dict="tests/fuzz/$name.dict")
  echo "== $h: $seconds s"
  if ! "$build/tests/fuzz/$h" "${args[@]}" "$corpus" >"$work/$name.log" 2>&1; then
    tail -n 60 "$work/$name.log"
    for a in "$work/$name-"*; do
      [ -e "$a" ] && { echo "reproducer $a:"; od -c "$a" | head -n 20; }
    done
    echo "FAIL: $h" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$work/$name.log" || true
  grep -E 'cov: [0-9]+' "$work/$name.log" | tail -n 1 || true
done
echo "fuzzing OK: ${#harnesses[@]} harnesses, $seconds s each"
