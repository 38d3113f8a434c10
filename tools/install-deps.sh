#!/usr/bin/env bash
# Installs the Debian packages fp8lab builds with, when any is missing (needs root or sudo).
set -euo pipefail
# chromium: headless, for the report's screenshot test and tools/screenshot.sh.
packages=(cmake ninja-build g++ clang make libgtest-dev librapidcheck-dev libboost-dev libopenblas-dev
          python3-dev python3-venv chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "fp8lab: installing Debian packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
