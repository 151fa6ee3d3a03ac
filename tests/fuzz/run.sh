#!/usr/bin/env bash
# Fuzzes one harness for a while on its growing corpus (OUT_DIR/corpus/<harness>), writing crashes to
# OUT_DIR/artifacts/<harness>/ and the log to OUT_DIR/logs/<harness>.log. Builds first if needed.
#   tests/fuzz/run.sh HARNESS [SECONDS=540] [OUT_DIR=build-fuzz] [extra libFuzzer flags...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
h=${1:?usage: run.sh HARNESS [SECONDS] [OUT_DIR] [flags...]}
secs=${2:-540}
out=${3:-build-fuzz}
shift $(( $# < 3 ? $# : 3 ))
[ -x "$out/$h" ] || "$here/build.sh" "$out" "$h"
mkdir -p "$out/artifacts/$h" "$out/logs"
exec "$out/$h" "$out/corpus/$h" -dict="$out/dict/$h.dict" -max_total_time="$secs" -rss_limit_mb=2048 \
  -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 -artifact_prefix="$out/artifacts/$h/" "$@" \
  > "$out/logs/$h.log" 2>&1
