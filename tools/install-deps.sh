#!/usr/bin/env bash
# Installs the Debian 12 packages torchlet needs to build and test (skips what is already there).
# Usage: bash tools/install-deps.sh [--job] [extra packages...]   (as root, or with sudo available)
#   --job: only what building and running the main job needs (no PyTorch, which only the tests use)
set -euo pipefail

# build: compiler, Meson, Eigen, doctest, zlib, stb_image; data: Fashion-MNIST (the main job's default data);
# interop: Debian's PyTorch and torchvision (tests run them on files torchlet writes, and fixture generators);
# fuzzing: clang-14 with libFuzzer (tests/fuzz/)
packages=(g++ meson ninja-build pkg-config libeigen3-dev doctest-dev zlib1g-dev libstb-dev dataset-fashion-mnist)
if [ "${1:-}" = "--job" ]; then
  shift
else
  # tests: PyTorch for interop; clang + libFuzzer for the fuzz harnesses' corpus replay
  packages+=(python3-numpy python3-torch python3-torchvision clang-14 libclang-rt-14-dev)
fi
packages+=("$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
