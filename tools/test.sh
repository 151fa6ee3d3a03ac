#!/usr/bin/env bash
# The test command: installs what is missing, builds torchlet's tests, examples and tools, runs
# every suite (PyTorch interop, fuzz-corpus replay and kill -9 trials included), then the file-reading suites again
# under ASan + UBSan (tests/sanitize.sh), and ends with the line "N passed, N failed" (test cases over all suites).
# Usage: bash tools/test.sh            (BUILD_DIR=... to choose the build folder; default build-test)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh

# nvcc may sit outside PATH; with it the CUDA translation units are compiled too (no GPU is needed)
if [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi

build=${BUILD_DIR:-build-test}
# benchmarks are not tests: they are built on their own (bench/README.md), which keeps this command's build short
if [ -d "$build" ]; then
  meson setup --reconfigure -Dbench=false "$build" >/dev/null
else
  meson setup -Dbench=false "$build"
fi
ninja -C "$build"
status=0
# two tests run side by side, each on one thread (OMP_NUM_THREADS, which torchlet and PyTorch read): two 2-thread
# processes on 2 cores spend their time in OpenMP's spin-waits; finetune_job runs alone and uses every core
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} meson test -C "$build" --print-errorlogs --num-processes 2 || status=$?
# the suites that read and write files, built again with AddressSanitizer + UndefinedBehaviorSanitizer: any report
# fails the command (SANITIZE=0 skips this step)
if [ "${SANITIZE:-1}" != 0 ]; then
  bash tests/sanitize.sh || status=1
fi
python3 tools/test_totals.py "$build/meson-logs/testlog.json"
exit $status
