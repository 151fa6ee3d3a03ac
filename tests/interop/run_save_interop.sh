#!/bin/sh
# Interop test: torchlet::save -> real PyTorch. Runs WRITE_CHECKPOINTS (tests/interop/write_checkpoints.cpp) into a
# fresh directory, then CHECKER (tests/interop/check_torch_reads.py) with PYTHON (default /usr/bin/python3).
# Exits 77 (meson: skipped) when that Python cannot import torch.
# usage: run_save_interop.sh WRITE_CHECKPOINTS CHECKER [PYTHON]
set -u
writer=$1
checker=$2
python=${3:-/usr/bin/python3}
if ! [ -x "$python" ] || ! "$python" -c "import torch" >/dev/null 2>&1; then
  echo "skipped: $python cannot import torch"
  exit 77
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/torchlet_interop_save.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
"$writer" "$dir" || exit 1
"$python" "$checker" "$dir"
