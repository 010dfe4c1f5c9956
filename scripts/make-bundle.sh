#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# `make bundle`: a relocatable folder with what a GPU machine that has only CUDA, CMake and
# PyTorch needs to run Spillway and the GPU check (docs/gpu.md):
#   bin/       spillway, tinyllm, bandwidth            RUNPATH $ORIGIN/../lib
#   lib/       libspillway.so and the non-system shared libraries it and bin/ need
#              (Abseil, hwloc, liburing, and theirs)   RUNPATH $ORIGIN
#   lib/compat/ libstdc++ and libgcc_s, NOT on any RUNPATH: a fallback run.sh uses only
#              if the machine's own are too old (see docs/gpu.md for why)
#   kernels/   tinyllm_kernels.fatbin (GPU; built by nvcc) and tinyllm_kernels.so (simcuda)
#   simcuda/   simcuda's libcuda.so.1, for dry runs only (LD_LIBRARY_PATH); never on a RUNPATH
#   bench/gpu/ run.sh, steps.sh, report.py, torch_smoke.py, README.md
#   MANIFEST   what is inside, from which commit, and the glibc/libstdc++ versions it needs
# Contract: reads only BUILD_DIR (built) and the source tree; writes only
# BUILD_DIR/bundle/spillway-bundle (replaced whole). Binaries are copied without debug
# information. Fails (exit 1) if something needed is missing, a library would be resolved
# from outside the bundle other than the system's base libraries and the driver, or the
# bundle is over 64 MiB (what a GPU session carries).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/make-bundle.sh [--help] BUILD_DIR

Builds BUILD_DIR/bundle/spillway-bundle, a relocatable folder with libspillway.so and
its libraries, the spillway command, tinyllm and its kernels, the bandwidth program,
simcuda (for dry runs) and the GPU check scripts. BUILD_DIR must already be built
(make build). `make bundle` runs this on $(BUILD_DIR).
EOF
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
(( $# == 1 )) || { usage >&2; exit 2; }

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "$1" && pwd)
dest=$build/bundle/spillway-bundle
max_bytes=$(( 64 << 20 ))

need() {
  if [[ ! -f "$1" ]]; then
    echo "make-bundle: $1 is missing (build first: make build BUILD_DIR=$build)" >&2
    exit 1
  fi
}
command -v patchelf >/dev/null || { echo "make-bundle: patchelf not found (scripts/install-deps.sh)" >&2; exit 1; }

bins=("$build/tools/spillway" "$build/bench/tinyllm/tinyllm" "$build/bench/gpu/bandwidth")
for f in "${bins[@]}" "$build/interpose/libspillway.so" "$build/bench/tinyllm/tinyllm_kernels.so" \
    "$build/simcuda/libcuda.so.1"; do
  need "$f"
done

rm -rf -- "$dest"
mkdir -p "$dest"/{bin,lib/compat,kernels,simcuda,bench/gpu}

# copy SRC DIR: a stripped copy (debug information is most of a RelWithDebInfo binary).
copy() {
  local target
  target=$2/$(basename "$1")
  cp -L "$1" "$target"
  chmod u+w "$target"
  strip --strip-debug "$target"
}

for f in "${bins[@]}"; do copy "$f" "$dest/bin"; done
copy "$build/interpose/libspillway.so" "$dest/lib"
copy "$build/bench/tinyllm/tinyllm_kernels.so" "$dest/kernels"
copy "$build/simcuda/libcuda.so.1" "$dest/simcuda"
if [[ -f "$build/bench/tinyllm/tinyllm_kernels.fatbin" ]]; then
  cp "$build/bench/tinyllm/tinyllm_kernels.fatbin" "$dest/kernels/"
else
  echo "make-bundle: warning: no tinyllm_kernels.fatbin (nvcc not found at build time):" \
       "the bundle can only dry-run" >&2
fi
for f in run.sh steps.sh report.py torch_smoke.py README.md; do
  cp "$src/bench/gpu/$f" "$dest/bench/gpu/"
done
chmod +x "$dest/bench/gpu/run.sh"

# The base system every Linux machine with a driver has: glibc's libraries, the loader,
# the vDSO, and the driver itself (the real libcuda.so.1, never simcuda's or the stub).
# libstdc++/libgcc_s are base too, see lib/compat above.
is_system() {
  case "$1" in
    linux-vdso.so.*|ld-linux*|libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*) return 0 ;;
    libcuda.so.*|libstdc++.so.*|libgcc_s.so.*) return 0 ;;
  esac
  return 1
}

# Every library the ELF files need, as the loader resolves them here (transitively: ldd
# lists the closure). libcuda.so.1 is resolved to simcuda so that ldd sees its needs too.
elf_files=("$dest"/bin/* "$dest"/lib/*.so "$dest"/kernels/*.so "$dest"/simcuda/libcuda.so.1)
declare -A copied=()
for f in "${elf_files[@]}"; do
  while read -r name _ path _; do
    [[ -n "$name" && "$path" == /* ]] || continue
    is_system "$name" && continue
    [[ -n "${copied[$name]:-}" ]] && continue
    [[ -e "$dest/lib/$name" ]] && continue  # libspillway.so itself
    copy "$path" "$dest/lib"
    mv "$dest/lib/$(basename "$path")" "$dest/lib/$name" 2>/dev/null || true
    copied[$name]=1
  done < <(LD_LIBRARY_PATH="$build/simcuda" ldd "$f" | grep '=>')
done
for lib in libstdc++.so.6 libgcc_s.so.1; do
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ { print $NF; exit }')
  [[ -n "$path" ]] && copy "$path" "$dest/lib/compat"
  [[ -f "$dest/lib/compat/$lib" ]] || echo "make-bundle: warning: $lib not found for lib/compat" >&2
done

# RUNPATHs relative to each file, so the folder works wherever it is copied. ($ORIGIN is
# for the loader, not the shell.)
# shellcheck disable=SC2016
{
  for f in "$dest"/bin/*; do patchelf --set-rpath '$ORIGIN/../lib' "$f"; done
  for f in "$dest"/lib/*.so*; do patchelf --set-rpath '$ORIGIN' "$f"; done
  patchelf --set-rpath '$ORIGIN/../lib' "$dest/kernels/tinyllm_kernels.so"
  patchelf --set-rpath '$ORIGIN/../lib' "$dest/simcuda/libcuda.so.1"
}

# Check: with no LD_LIBRARY_PATH, nothing outside the bundle but the system's base
# libraries. (libcuda.so.1 is "not found" here, where there is no driver: that is right.)
bad=0
for f in "$dest"/bin/* "$dest"/lib/*.so* "$dest"/kernels/*.so "$dest"/simcuda/libcuda.so.1; do
  while read -r name _ path _; do
    is_system "$name" && continue
    if [[ "$path" != "$dest"/* ]]; then
      echo "make-bundle: $f needs $name from $path, outside the bundle" >&2
      bad=1
    fi
  done < <(env -u LD_LIBRARY_PATH ldd "$f" | grep '=>')
done
(( bad == 0 )) || exit 1

# What the bundle needs of the machine: the newest glibc and libstdc++ symbol versions.
versions() {
  objdump -T "$dest"/bin/* "$dest"/lib/*.so* "$dest"/kernels/*.so 2>/dev/null \
    | grep -o "$1"'_[0-9.]*' | sort -Vu | tail -n 1
}
{
  echo "spillway-bundle"
  echo "commit:    $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$src" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
  echo "built:     $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(sed -n 's/^PRETTY_NAME="\(.*\)"$/\1/p' /etc/os-release)"
  echo "needs:     $(versions GLIBC), $(versions GLIBCXX) (machine's libstdc++, else lib/compat), the CUDA driver"
  echo "fatbin:    $([[ -f "$dest/kernels/tinyllm_kernels.fatbin" ]] && echo yes || echo 'no (dry runs only)')"
  echo "run:       bash bench/gpu/run.sh            (GPU; OUT=dir for results, default ./gpu-out)"
  echo "           bash bench/gpu/run.sh --dry-run  (no GPU: bundled simcuda)"
  echo
  echo "files:"
  (cd "$dest" && find . -type f ! -name MANIFEST -printf '%P\t%s\n' | sort \
    | awk -F'\t' '{ printf "  %-46s %10d\n", $1, $2 }')
} >"$dest/MANIFEST"

size=$(du -sb "$dest" | cut -f1)
echo "make-bundle: $dest: $(( size >> 20 )) MiB ($size bytes)"
if (( size > max_bytes )); then
  echo "make-bundle: error: over the 64 MiB a GPU session carries" >&2
  exit 1
fi
