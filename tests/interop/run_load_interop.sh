#!/bin/bash
# PyTorch -> torchlet: real PyTorch (/usr/bin/python3) writes checkpoint files, torchlet::load reads them and checks
# every tensor bit for bit (SHA-256) and every other value. Exit 77 (skipped) when PyTorch is not importable.
# usage: run_load_interop.sh PATH/TO/read_torch_files
set -u
reader=$1
here=$(cd "$(dirname "$0")" && pwd)
py=${TORCHLET_TORCH_PYTHON:-/usr/bin/python3}  # override only to test the skip path
if ! [ -x "$py" ] || ! "$py" -c "import torch" >/dev/null 2>&1; then
  echo "skipped: $py cannot import torch"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$py" "$here/write_torch_files.py" "$dir" || exit 1
"$reader" "$dir"
