#!/usr/bin/env bash
# The I/O test suites built a second time with AddressSanitizer + UndefinedBehaviorSanitizer and run: any report
# (a leak, an overflow, undefined behaviour) or any failing test fails this script.
# Usage: bash tests/sanitize.sh [SUITE...]     (default: the I/O suites below; BUILD_DIR=... to choose the folder,
#                                              default build-asan)
# Only the programs of the named suites are built, so it stays short (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${BUILD_DIR:-build-asan}
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
  # what reads or writes files, and the suites compiled with them in the same unity programs (tests/meson.build),
  # which cost nothing more to build
  suites=(zip unpickle load save safetensors bad_inputs train checkpoint data elementwise autograd reduce_linalg
          autograd_ops)
fi

start=$(date +%s)
if [ -d "$build" ]; then
  meson setup --reconfigure "$build" >/dev/null
else
  # cuda, benchmarks and examples are not needed for these suites; b_lundef=false because the sanitizer
  # runtimes are linked only into executables; -O1 builds ~3x faster than -O3 (and keeps assert() on)
  meson setup -Db_sanitize=address,undefined -Db_lundef=false -Doptimization=1 -Dbench=false -Dexamples=false \
    -Dcuda=disabled \
    "$build" >/dev/null
fi

# Each suite's command line as meson runs it (a suite's own program, or a unity program with a --source-file
# filter); suites not defined in tests/meson.build are skipped with a note instead of failing the build.
declare -A commands=()
while IFS=$'\t' read -r name cmd; do commands[$name]=$cmd; done < <(
  meson introspect "$build" --tests | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    print(t["name"] + "\t" + " ".join(t["cmd"]))')
run=()
targets=()
for s in "${suites[@]}"; do
  cmd=${commands[$s]:-}
  if [ -z "$cmd" ]; then
    echo "sanitize: no suite '$s' in tests/meson.build, skipped"
    continue
  fi
  run+=("$s")
  exe=${cmd%% *}
  target=${exe#"$(cd "$build" && pwd)/"}
  [[ " ${targets[*]} " == *" $target "* ]] || targets+=("$target")
done
[ ${#targets[@]} -gt 0 ] || { echo "sanitize: nothing to build"; exit 1; }
ninja -C "$build" "${targets[@]}"
built=$(date +%s)

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=${LSAN_OPTIONS:-}
failed=()
set -f  # the --source-file filters hold a '*' that is doctest's, not the shell's
for name in "${run[@]}"; do
  log="$build/sanitize-$name.log"
  # the suites read fixtures relative to the source tree, like under meson test
  # shellcheck disable=SC2086  # the command line is meson's, split on spaces
  if ${commands[$name]} >"$log" 2>&1 && ! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log"; then
    echo "sanitize: $name ok ($(grep -o 'test cases: *[0-9]* | *[0-9]* passed' "$log" | tr -s ' '))"
  else
    echo "sanitize: $name FAILED (log: $log)"
    grep -E -m 20 'ERROR: |runtime error:|SUMMARY:|ERROR: CHECK|ERROR: REQUIRE|FAILURE' "$log" || tail -20 "$log"
    failed+=("$name")
  fi
done
end=$(date +%s)
echo "sanitize: build $((built - start)) s, run $((end - built)) s;" \
  "${#failed[@]} of ${#run[@]} suites failed${failed[*]:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
