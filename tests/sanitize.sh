#!/usr/bin/env bash
# The I/O test suites built a second time with AddressSanitizer + UndefinedBehaviorSanitizer and run: any report
# (a leak, an overflow, undefined behaviour) or any failing test fails this script.
# Usage: bash tests/sanitize.sh [SUITE...]     (default: the I/O suites below; BUILD_DIR=... to choose the folder,
#                                              default build-asan)
# Only the named suites' executables are built, so it stays short (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${BUILD_DIR:-build-asan}
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
  # what reads or writes files; checkpoint and data (another ~8 CPU-minutes to build) on request
  suites=(zip unpickle load save safetensors bad_inputs train)
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

# Suites not (yet) defined in tests/meson.build are skipped with a note instead of failing the build.
known=$(ninja -C "$build" -t targets all 2>/dev/null | sed -n 's|^\(tests/test_[a-z_0-9]*\): .*|\1|p' | sort -u)
targets=()
for s in "${suites[@]}"; do
  if grep -qx "tests/test_$s" <<<"$known"; then
    targets+=("tests/test_$s")
  else
    echo "sanitize: no suite '$s' in tests/meson.build, skipped"
  fi
done
[ ${#targets[@]} -gt 0 ] || { echo "sanitize: nothing to build"; exit 1; }
ninja -C "$build" "${targets[@]}"
built=$(date +%s)

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=${LSAN_OPTIONS:-}
failed=()
for t in "${targets[@]}"; do
  name=${t#tests/test_}
  log="$build/sanitize-$name.log"
  # the suites read fixtures relative to the source tree, like under meson test
  if "$build/$t" >"$log" 2>&1 && ! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log"; then
    echo "sanitize: $name ok ($(grep -o 'test cases: *[0-9]* | *[0-9]* passed' "$log" | tr -s ' '))"
  else
    echo "sanitize: $name FAILED (log: $log)"
    grep -E -m 20 'ERROR: |runtime error:|SUMMARY:|ERROR: CHECK|ERROR: REQUIRE|FAILURE' "$log" || tail -20 "$log"
    failed+=("$name")
  fi
done
end=$(date +%s)
echo "sanitize: build $((built - start)) s, run $((end - built)) s;" \
  "${#failed[@]} of ${#targets[@]} suites failed${failed[*]:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
