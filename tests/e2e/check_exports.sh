#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# check_exports.sh LIBRARY: libspillway.so exports only cu* entry points, spw_* (the C API)
# and dlsym, unversioned (nm -D --defined-only): no version node, so no absolute symbol
# named after one (GLIBC_2.34, say) that a host process could collide with.
set -eu
symbols=$(nm -D --defined-only "$1" | awk '{print $NF}')
unexpected=$(printf '%s\n' "$symbols" | grep -Ev '^(cu[A-Za-z0-9_]+|spw_[a-z0-9_]+|dlsym)$' || true)
if [ -n "$unexpected" ]; then
  echo "unexpected exports:"; echo "$unexpected"; exit 1
fi
for v in 'dlsym' 'cuGetProcAddress_v2' 'spw_init'; do
  printf '%s\n' "$symbols" | grep -qx "$v" || { echo "missing export: $v"; exit 1; }
done
echo "exports ok: $(printf '%s\n' "$symbols" | wc -l) symbols"
