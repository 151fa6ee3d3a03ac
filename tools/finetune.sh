#!/usr/bin/env bash
# The main job: installs what it needs (Debian 12), builds examples/finetune_resnet and runs it.
# Usage: bash tools/finetune.sh [finetune_resnet options...]   e.g. --weights resnet18-f37072fd.pth --image-size 224
# With no options it trains a source ResNet-18 on Fashion-MNIST classes 0-4, saves it as a PyTorch .pth, then
# fine-tunes from that file on classes 5-9 (frozen backbone + new head, then layer4), writing runs/finetune/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh --job
build=${BUILD_DIR:-build-job}
if [ ! -d "$build" ]; then
  meson setup "$build" -Dtests=false -Dbench=false -Dcuda=disabled >/dev/null
fi
ninja -C "$build" examples/finetune_resnet
exec "$build/examples/finetune_resnet" "$@"
