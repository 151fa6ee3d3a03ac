#!/usr/bin/env bash
# One run on a CUDA machine (written for the lent H200, Ubuntu 24.04, nvcc 13, cuDNN 9, PyTorch 2.11 on PATH):
#   1. build torchlet with -Dcuda=enabled for sm_90 (tests, bench/gpu/resnet_gpu);
#   2. run the CUDA suites: cuda_smoke, cuda_ops (every CUDA op against the CPU, with its error table) and
#      device_seam (the routing, on the fake device);
#   3. bench/gpu/compare_gpu.py: ResNet-50 logits on the GPU against PyTorch (CPU and GPU), then the
#      training / inference table next to PyTorch eager in the same run.
# Everything printed also goes to $OUT (the device tool's output folder) or bench/gpu/out.
# usage: bash bench/gpu/run.sh [--quick]      (BUILD_DIR=... to choose the build folder; default build-gpu)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-bench/gpu/out}
mkdir -p "$out"
build=${BUILD_DIR:-build-gpu}
log() { echo "== $* ($(date +%T))" | tee -a "$out/run.log"; }
for d in /usr/local/cuda/bin /usr/local/cuda-13/bin; do [ -x "$d/nvcc" ] && export PATH="$d:$PATH"; done
status=0

log "configure $build"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$out/run.log"
if [ ! -d "$build" ]; then
  meson setup "$build" -Dcuda=enabled -Dbench=true -Dexamples=false -Dtests=true -Dnative=true \
    > "$out/setup.log" 2>&1 || { tail -30 "$out/setup.log"; exit 1; }
fi
targets=(tests/cuda_smoke tests/test_cuda_ops tests/test_device_seam bench/gpu/resnet_gpu)
log "build ${targets[*]}"
if ! ninja -C "$build" "${targets[@]}" > "$out/build.log" 2>&1; then
  grep -E "error|Error" "$out/build.log" | head -40
  exit 1
fi

log "CUDA tests"
meson test -C "$build" --no-rebuild cuda_smoke cuda_ops device_seam --print-errorlogs > "$out/tests.log" 2>&1 || status=1
tail -5 "$out/tests.log"
cp "$build/meson-logs/testlog.txt" "$out/testlog.txt" 2>/dev/null
# the cuda_ops error table, for the note
grep -E "^(op|  ?[a-z_0-9]+ )" "$build/meson-logs/testlog.txt" | head -120 > "$out/cuda_ops_table.txt" || true

log "ResNet-50 against PyTorch"
python3 bench/gpu/compare_gpu.py "$build/bench/gpu/resnet_gpu" --json "$out/compare.json" "$@" 2>&1 |
  tee "$out/compare.txt" || status=1
log "done, status $status"
exit $status
