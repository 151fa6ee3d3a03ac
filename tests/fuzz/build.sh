#!/usr/bin/env bash
# Builds torchlet's libFuzzer harnesses (tests/fuzz/fuzz_*.cpp) into the folder given as argument (default
# build-fuzz), with clang++-14, ASan + UBSan (UBSan findings abort), and the seed corpora and dictionaries
# beside them (make_corpus.sh). Harnesses build in parallel (FUZZ_JOBS, default: nproc), at FUZZ_OPT (default -O1).
#   tests/fuzz/build.sh [OUT_DIR] [HARNESS...]      e.g. tests/fuzz/build.sh build-fuzz fuzz_load
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-build-fuzz}
shift || true
mkdir -p "$out"
out=$(cd "$out" && pwd)
cxx=${CXX_FUZZ:-clang++-14}
opt=${FUZZ_OPT:--O1}  # -O0 for a replay (tests/meson.build), -O1 for fuzzing
flags=(-std=c++20 "$opt" -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$root/include" -isystem /usr/include/eigen3 -I"$here" -Wall -Wno-unused-function)
if [ $# -gt 0 ]; then harnesses=("$@"); else
  harnesses=(); for f in "$here"/fuzz_*.cpp; do harnesses+=("$(basename "$f" .cpp)"); done
fi
jobs=${FUZZ_JOBS:-$(nproc)}
build_one() {
  local h=$1 src="$here/$1.cpp" bin="$out/$1"
  # rebuild only when the harness or any torchlet header is newer than the binary
  if [ -x "$bin" ] && [ -z "$(find "$src" "$here/fuzz_common.hpp" "$root/include" -newer "$bin" -print -quit)" ]; then
    echo "up to date: $h"; return 0
  fi
  echo "building: $h"
  "$cxx" "${flags[@]}" "$src" -o "$bin.tmp" -lz && mv "$bin.tmp" "$bin"
}
fail=0
for h in "${harnesses[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || fail=1; done
  build_one "$h" &
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || fail=1; done
wait || fail=1
[ $fail -eq 0 ] || { echo "build.sh: a harness failed to build" >&2; exit 1; }
"$here/make_corpus.sh" "$out"
