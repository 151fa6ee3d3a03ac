#!/usr/bin/env bash
# Installs the Debian 12 packages torchlet needs to build and test (skips what is already there).
# Usage: bash tools/install-deps.sh [extra packages...]   (as root, or with sudo available)
set -euo pipefail

packages=(g++ meson ninja-build pkg-config libeigen3-dev doctest-dev zlib1g-dev libstb-dev "$@")
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
