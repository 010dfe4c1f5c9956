#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Installs the Debian 12 packages Spillway builds with, and checks for the CUDA toolkit.
# When everything is present it prints one line and exits at once (no apt-get update),
# so `make build`/`make test` can run it every time. Installing needs root or sudo.
# It installs only Debian packages; the CUDA 13 toolkit (headers + stub libcuda.so) must
# already be installed, at $CUDA_HOME (default /usr/local/cuda).
set -euo pipefail

packages=(
  cmake g++ make pkg-config python3
  libhwloc-dev liburing-dev libabsl-dev libfmt-dev libxxhash-dev
  libgtest-dev libgmock-dev libbenchmark-dev fio
  clang-format clang-tidy
  patchelf
  procps
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if (( ${#missing[@]} > 0 )); then
  echo "install-deps: installing missing packages: ${missing[*]}"
  sudo=()
  if (( EUID != 0 )); then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "install-deps: error: need root (or sudo) to install: ${missing[*]}" >&2
      exit 1
    fi
  fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

cuda_home=${CUDA_HOME:-/usr/local/cuda}
if [[ ! -f "$cuda_home/include/cuda.h" ]]; then
  cat >&2 <<MSG
install-deps: error: CUDA headers not found ($cuda_home/include/cuda.h is missing).
  Spillway needs the CUDA 13 toolkit installed: its headers (cuda.h, cudaTypedefs.h)
  and the stub driver lib64/stubs/libcuda.so. No GPU or NVIDIA driver is needed to
  build and test. Install the toolkit, then set CUDA_HOME to its root
  (e.g. CUDA_HOME=/usr/local/cuda-13.0 make test).
MSG
  exit 1
fi

if (( ${#missing[@]} > 0 )); then
  echo "install-deps: installed ${missing[*]}; CUDA toolkit at $cuda_home"
else
  echo "install-deps: all ${#packages[@]} packages present; CUDA toolkit at $cuda_home"
fi
