#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Runs every benchmark of a build and collects their JSON and tables in one folder.
#   scripts/run-benchmarks.sh [BUILD_DIR]      (default: build)
# LINK_BENCH_ARGS adds flags to the tinyllm link benchmark, e.g.
#   LINK_BENCH_ARGS="--policies learned --limits 50" make bench
# Results: BUILD_DIR/bench-results/*.json and summary.txt. Benchmarks are never part of
# `make test`: they measure, they do not pass or fail.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
out="$build/bench-results"
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"

run() {
  local name=$1
  shift
  echo "== $name" | tee -a "$summary"
  if ! "$@" 2>&1 | tee -a "$summary"; then
    echo "   ($name failed)" | tee -a "$summary"
  fi
  echo | tee -a "$summary"
}

bin="$build/bench"
run "mover: host<->device moves vs memcpy (unpaced link)" \
  "$bin/mover_bench" --bytes 512M --json "$out/mover_bench.json"
run "mover: host<->device moves vs a 8 GB/s modelled link" \
  "$bin/mover_bench" --bytes 256M --link-gbps 8 --json "$out/mover_bench_link8.json"
run "allocation map: lookup cost with 10^5 live allocations" \
  "$bin/allocation_map_bench" --benchmark_out="$out/allocation_map_bench.json" \
  --benchmark_out_format=json
run "launch path: cost libspillway.so adds per cuLaunchKernel (8 pointers, 10^4 allocations)" \
  "$bin/launch_overhead" --lib "$build/interpose/libspillway.so" \
  --module "$bin/launch_kernels.so" --json "$out/launch_overhead.json"
spill_dir=$(mktemp -d "${TMPDIR:-/tmp}/spillway-bench-XXXXXX")
trap 'rm -rf "$spill_dir"' EXIT
# --hugepages: the mover's staging buffers are 2 MiB pages too (see runtime/mover.cc).
run "NVMe store vs fio (same file system, block size and queue depth)" \
  "$bin/nvme_store_bench" --dir="$spill_dir" --bytes=512M --runs=3 --hugepages \
  --json="$out/nvme_store_bench.json"
# Word-split on purpose: LINK_BENCH_ARGS is a list of flags.
# shellcheck disable=SC2086
run "tinyllm: decode tok/s, host tier, HBM limits 100/50/25/10 % of weights, vs the link bound" \
  python3 "$here/../bench/tinyllm/link_bench.py" --build "$build" \
  --out "$out/tinyllm_link_bench.json" ${LINK_BENCH_ARGS:-}
echo "results in $out (summary: $summary)"
