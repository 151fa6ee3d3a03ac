#!/bin/bash
# torchvision -> torchlet: every ResNet architecture's eval logits (plain and BatchNorm-folded) and a train step's
# gradients against real torchvision (tests/interop/resnet_conformance.py). Exit 77 (skipped) without PyTorch.
# usage: run_resnet_conformance.sh PATH/TO/resnet_conformance [ARCH...]
set -u
here=$(cd "$(dirname "$0")" && pwd)
py=${TORCHLET_TORCH_PYTHON:-/usr/bin/python3}  # override only to test the skip path
if ! [ -x "$py" ] || ! "$py" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "skipped: $py cannot import torch and torchvision"
  exit 77
fi
exec "$py" "$here/resnet_conformance.py" "$@"
