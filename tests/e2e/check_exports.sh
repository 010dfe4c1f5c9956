#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# check_exports.sh LIBRARY: libspillway.so exports only cu* entry points, spw_* (the C API)
# and dlsym under both glibc versions (nm -D --defined-only; the version nodes themselves
# show as absolute symbols).
set -eu
symbols=$(nm -D --defined-only "$1" | awk '$2 != "A" {print $3}')
unexpected=$(printf '%s\n' "$symbols" | grep -Ev '^(cu[A-Za-z0-9_]+|spw_[a-z0-9_]+)@@SPILLWAY_1$|^dlsym@@?GLIBC_2\.(2\.5|34)$' || true)
if [ -n "$unexpected" ]; then
  echo "unexpected exports:"; echo "$unexpected"; exit 1
fi
for v in 'dlsym@GLIBC_2.2.5' 'dlsym@@GLIBC_2.34' 'cuGetProcAddress_v2@@SPILLWAY_1' 'spw_init@@SPILLWAY_1'; do
  printf '%s\n' "$symbols" | grep -qx "$v" || { echo "missing export: $v"; exit 1; }
done
echo "exports ok: $(printf '%s\n' "$symbols" | wc -l) symbols"
