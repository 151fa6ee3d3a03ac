#!/usr/bin/env bash
# Replays every harness's seed corpus (fresh from the fixtures) and every regression file in
# tests/fuzz/regressions/<harness>/ once (-runs=0), building the harnesses first if needed. Exits non-zero on
# any finding (crash, sanitizer report, leak, timeout, out-of-memory). Known, unfixed library bugs (the checks
# the harnesses skip by default, and the reproducers in tests/fuzz/known/<harness>/) are enforced only with
# TORCHLET_FUZZ_STRICT=1: once a bug is fixed, move its file from known/ to regressions/.
#   tests/fuzz/replay.sh [OUT_DIR=build-fuzz]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-build-fuzz}
start=$SECONDS
"$here/build.sh" "$out" > /dev/null || { echo "replay.sh: build failed" >&2; exit 1; }
rm -rf "$out/seeds"
"$here/make_corpus.sh" "$out" seeds > /dev/null
echo "replay.sh: built in $((SECONDS - start)) s"
fail=0
for bin in "$out"/fuzz_*; do
  [ -x "$bin" ] && [ -f "$bin" ] || continue
  h=$(basename "$bin")
  dirs=("$out/seeds/$h")
  [ -d "$here/regressions/$h" ] && dirs+=("$here/regressions/$h")
  [ "${TORCHLET_FUZZ_STRICT:-0}" = 1 ] && [ -d "$here/known/$h" ] && dirs+=("$here/known/$h")
  t0=$SECONDS
  mkdir -p "$out/replay_artifacts"
  if "$bin" -runs=0 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -artifact_prefix="$out/replay_artifacts/$h-" \
      "${dirs[@]}" > "$out/replay_$h.log" 2>&1; then
    echo "ok   $h: $(grep -o 'Done [0-9]* runs' "$out/replay_$h.log" | tail -1) ($((SECONDS - t0)) s)"
  else
    echo "FAIL $h: see $out/replay_$h.log"
    grep -E "FUZZ FINDING|ERROR: |SUMMARY|runtime error" "$out/replay_$h.log" | head -5
    fail=1
  fi
done
echo "replay.sh: total $((SECONDS - start)) s"
exit $fail
