#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The GPU check: one prepared script a session with a GPU runs once, from the bundle that
# `make bundle` builds (docs/gpu.md). It measures the link (bandwidth), runs tinyllm fully
# resident, under Spillway with the HBM limit at 50% and 25% of its weights (LRU, and the
# learned policy; at 25% also with the weights advised, and with the NVMe tier), and with the
# baseline users pick today at the same limits (--host-offload: weights in mapped pinned
# host memory, read over the link every step), then a PyTorch smoke test with and without
# libspillway.so. Results: $OUT/gpu-results.json and $OUT/gpu-results.txt.
#
# Contract: every step is timed, has a time limit, and its failure is recorded, never
# fatal: the script always writes the results and then exits 0 (1 when it cannot start:
# no binaries, unwritable OUT; with --dry-run, also when a step failed or tokens differ;
# 2 on a usage error). Everything it
# writes is under OUT. Nothing is downloaded. The whole run stays under ~8 minutes: steps
# that would start after the time budget are recorded as skipped. `--dry-run` runs the
# same steps on simcuda (bundled, or the build tree's with --build-dir) with tiny sizes;
# the gpu.DryRun ctest runs it.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bench/gpu/run.sh [OPTIONS]

The GPU check: link bandwidth, tinyllm resident / under Spillway (HBM limit 50% and 25%
of the weights; LRU and --policy learned; at 25% also advised weights, and the NVMe tier
in a fresh directory under $TMPDIR) / with --host-offload at the same limits, and a
PyTorch smoke test with and without libspillway.so. Every step is timed and its failure recorded; the results are
OUT/gpu-results.json and OUT/gpu-results.txt.

Options:
  --out DIR          where everything is written (default: $OUT, else ./gpu-out)
  --dry-run          run on simcuda with tiny sizes (fp32, the simcuda kernel module,
                     LD_LIBRARY_PATH to simcuda's libcuda.so.1): checks the script itself
  --build-dir DIR    take the programs from a build tree instead of the bundle this
                     script sits in (bundle: <root>/bench/gpu/run.sh)
  --weights SIZE     tinyllm weight size (default 20G on a GPU, 16M dry; cut to fit the
                     device's free memory and the host's)
  --gen N            tokens generated per tinyllm run (default 8)
  --prompt N         prompt tokens (default 4: the prefill reads offloaded weights once
                     per prompt token, which the time budget must allow)
  --budget SECONDS   start no step after this many seconds (default 420)
  --skip-torch       skip the PyTorch step (also: SPW_GPU_SKIP_TORCH=1)
  --pack             at the end, pack logs/, runs/ and torch.* into OUT/details.tar.gz
                     (the device tool brings back only a few files from OUT)
  -h, --help         print this help

Exit status: 0 the results were written (see them for failed steps); 1 could not start,
or (--dry-run only) a step failed or a run's tokens differ; 2 usage error.
EOF
}

dry_run=0
out=${OUT:-./gpu-out}
build_dir=""
weights=""
gen=8
prompt=4
budget=420
skip_torch=${SPW_GPU_SKIP_TORCH:-0}
pack=0

while (( $# > 0 )); do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    --skip-torch) skip_torch=1; shift ;;
    --pack) pack=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --out|--build-dir|--weights|--gen|--prompt|--budget)
      if (( $# < 2 )); then
        echo "run.sh: $1 needs a value" >&2
        exit 2
      fi
      case "$1" in
        --out) out=$2 ;;
        --build-dir) build_dir=$2 ;;
        --weights) weights=$2 ;;
        --gen) gen=$2 ;;
        --prompt) prompt=$2 ;;
        --budget) budget=$2 ;;
      esac
      shift 2 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -n "$build_dir" ]]; then
  build_dir=$(cd "$build_dir" && pwd)
  spillway=$build_dir/tools/spillway
  tinyllm=$build_dir/bench/tinyllm/tinyllm
  bandwidth=$build_dir/bench/gpu/bandwidth
  libspillway=$build_dir/interpose/libspillway.so
  fatbin=$build_dir/bench/tinyllm/tinyllm_kernels.fatbin
  sim_module=$build_dir/bench/tinyllm/tinyllm_kernels.so
  simcuda_dir=$build_dir/simcuda
else
  root=$(cd "$script_dir/../.." && pwd)
  spillway=$root/bin/spillway
  tinyllm=$root/bin/tinyllm
  bandwidth=$root/bin/bandwidth
  libspillway=$root/lib/libspillway.so
  fatbin=$root/kernels/tinyllm_kernels.fatbin
  sim_module=$root/kernels/tinyllm_kernels.so
  simcuda_dir=$root/simcuda
fi
torch_smoke=$script_dir/torch_smoke.py

for f in "$spillway" "$tinyllm" "$bandwidth" "$libspillway"; do
  if [[ ! -x "$f" && ! -f "$f" ]]; then
    echo "run.sh: $f is missing (make bundle, or pass --build-dir)" >&2
    exit 1
  fi
done

# The bundle's programs use the machine's libstdc++; if it is older than the one they were
# built with, lib/compat holds the build machine's (docs/gpu.md says why not by default).
compat_path=""
if [[ -z "$build_dir" ]] && ! "$spillway" --version >/dev/null 2>&1 \
    && [[ -d "$root/lib/compat" ]]; then
  compat_path=$root/lib/compat
  echo "run.sh: bin/spillway does not start with this machine's libraries; using lib/compat" >&2
fi

mkdir -p "$out/logs" "$out/runs"
out=$(cd "$out" && pwd)
steps=$out/steps.tsv
printf 'step\tstatus\tseconds\tnote\n' >"$steps"
rm -f "$out"/runs/*.json "$out"/runs/*.stats.json

# Dry run: everything on simcuda; environment given per command (never exported), so the
# PyTorch step never sees simcuda.
if (( dry_run )); then
  module=$sim_module
  dtype=f32
  weights=${weights:-16M}
  run_env=(env "LD_LIBRARY_PATH=$simcuda_dir${compat_path:+:$compat_path}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
           SIMCUDA_DEVICE_MEMORY=1G SIMCUDA_GRANULARITY=64K)
  # Small tensors must be managed too, in chunks small enough to move a 16M model.
  spw_opts=(--chunk 64K --min-bytes 0)
  bw_bytes=64M
  bw_repeat=2
  run_limit=60
else
  module=$fatbin
  dtype=bf16
  run_env=(env)
  if [[ -n "$compat_path" ]]; then
    run_env+=("LD_LIBRARY_PATH=$compat_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  fi
  spw_opts=()
  bw_bytes=1G
  bw_repeat=5
  run_limit=90
fi

# Steps: run_step, the step table and the stacks of a step that runs out of time.
# shellcheck source=bench/gpu/steps.sh
source "$script_dir/steps.sh"
STEPS_TSV=$steps
STEPS_LOGS=$out/logs
STEPS_BUDGET=$budget
STEPS_T0=$(date +%s)

# --- 1. The machine ---------------------------------------------------------------
if (( dry_run )); then
  steps_record nvidia-smi skipped 0 "dry run (simcuda)"
elif command -v nvidia-smi >/dev/null 2>&1; then
  run_step nvidia-smi 30 bash -c 'nvidia-smi; echo; nvidia-smi --format=csv \
    --query-gpu=name,memory.total,memory.free,driver_version,pcie.link.gen.current,pcie.link.width.current' \
    || true
  cp "$out/logs/nvidia-smi.log" "$out/nvidia-smi.txt" 2>/dev/null || true
else
  steps_record nvidia-smi failed 0 "nvidia-smi not found"
fi
{
  uname -a
  grep -E '^(MemTotal|MemAvailable)' /proc/meminfo
  nproc
} >"$out/host.txt" 2>&1 || true

# --- 2. Link bandwidth (also the device's free memory) -----------------------------
run_step bandwidth 60 "${run_env[@]}" "$bandwidth" --bytes "$bw_bytes" --repeat "$bw_repeat" \
  --json "$out/bandwidth.json" || true

# --- 3. tinyllm ----------------------------------------------------------------------
# Size the model to what the device and the host have free: the resident run needs the
# weights (+ KV, activations) in device memory, the 25% runs 75% of them in pinned host
# memory (Spillway's host tier, or the --host-offload baseline).
to_bytes() {
  local v=$1 n unit
  n=${v%[KMGTkmgt]}
  unit=${v:${#n}}
  case "$unit" in
    K|k) echo $(( n << 10 )) ;; M|m) echo $(( n << 20 )) ;;
    G|g) echo $(( n << 30 )) ;; T|t) echo $(( n << 40 )) ;;
    *) echo "$n" ;;
  esac
}
weights_bytes=$(to_bytes "${weights:-20G}")
free_dev=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["free_bytes"])' \
  "$out/bandwidth.json" 2>/dev/null || echo 0)
mem_avail_kib=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
mem_avail=$(( ${mem_avail_kib:-0} * 1024 ))
size_note=""
if (( free_dev > 0 && weights_bytes > free_dev * 7 / 10 )); then
  weights_bytes=$(( free_dev * 7 / 10 ))
  size_note="weights cut to 70% of the device's free memory"
fi
if (( mem_avail > 0 && weights_bytes * 3 / 4 > mem_avail * 4 / 10 )); then
  weights_bytes=$(( mem_avail * 16 / 30 ))
  size_note="weights cut so 75% of them fit 40% of the host's available memory"
fi
echo "run.sh: tinyllm weights: $weights_bytes bytes${size_note:+ ($size_note)}" >&2

tl_args=(--module "$module" --dtype "$dtype" --weights "$weights_bytes" --prompt "$prompt"
         --gen "$gen")

# 3a. Fully resident: the reference.
run_step tinyllm-resident "$run_limit" "${run_env[@]}" "$tinyllm" "${tl_args[@]}" \
  --json "$out/runs/resident.json" || true
actual_weights=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["weight_bytes"])' \
  "$out/runs/resident.json" 2>/dev/null || echo "$weights_bytes")

for pct in 50 25; do
  limit=$(( actual_weights * pct / 100 ))
  # 3b. Spillway under LRU: the HBM limit at pct% of the weights, the rest in the host tier.
  run_step "tinyllm-spillway-$pct" "$run_limit" "${run_env[@]}" "$spillway" run \
    --hbm-limit "$limit" --policy lru "${spw_opts[@]}" --log-file "$out/logs/spillway-$pct.spwlog" \
    --stats "$out/runs/spillway-$pct.stats.json" -- \
    "$tinyllm" "${tl_args[@]}" --json "$out/runs/spillway-$pct.json" || true
  # 3b'. The same under the learned policy (Belady on the learned launch order, fetching
  # ahead of need: docs/runtime.md).
  run_step "tinyllm-learned-$pct" "$run_limit" "${run_env[@]}" "$spillway" run \
    --hbm-limit "$limit" --policy learned "${spw_opts[@]}" \
    --log-file "$out/logs/learned-$pct.spwlog" --stats "$out/runs/learned-$pct.stats.json" -- \
    "$tinyllm" "${tl_args[@]}" --json "$out/runs/learned-$pct.json" || true
  # 3b''. Learned again with the weights advised through the C API (tinyllm
  # --advise-weights): evictions are remaps, no copy back. At 25% only, to fit the budget.
  if [[ "$pct" == 25 ]]; then
    run_step "tinyllm-advised-$pct" "$run_limit" "${run_env[@]}" "$spillway" run \
      --hbm-limit "$limit" --policy learned "${spw_opts[@]}" \
      --log-file "$out/logs/advised-$pct.spwlog" --stats "$out/runs/advised-$pct.stats.json" -- \
      "$tinyllm" "${tl_args[@]}" --advise-weights --json "$out/runs/advised-$pct.json" || true
  fi
  # 3c. The baseline: weights beyond the limit in mapped pinned host memory.
  run_step "tinyllm-offload-$pct" "$run_limit" "${run_env[@]}" "$tinyllm" "${tl_args[@]}" \
    --host-offload $(( actual_weights - limit )) --json "$out/runs/offload-$pct.json" || true
done

# 3d. The NVMe tier: learned, weights advised, HBM and the host tier each at 25% of the
# weights; the rest is spilled to a file under a fresh directory (the file never has a
# name, so nothing is left there) and read back every step. The last tinyllm steps: the
# first the time budget skips.
nvme_dir=$(mktemp -d "${TMPDIR:-/tmp}/spillway-gpu-nvme-XXXXXX")
limit=$(( actual_weights * 25 / 100 ))
nvme_step() {  # NAME [tinyllm arguments...]
  local name=$1
  shift
  run_step "tinyllm-$name" "$run_limit" "${run_env[@]}" "$spillway" run \
    --hbm-limit "$limit" --host-limit "$limit" --nvme "$nvme_dir" --policy learned \
    "${spw_opts[@]}" --log-file "$out/logs/$name.spwlog" --stats "$out/runs/$name.stats.json" \
    -- "$tinyllm" "${tl_args[@]}" "$@" --json "$out/runs/$name.json" || true
}
nvme_step nvme-25 --advise-weights
# 3e. The same unadvised, as an unmodified binary runs: every eviction to NVMe is a spill,
# and the ones whose bytes the drive already holds skip their write (docs/runtime.md).
nvme_step nvme-unadvised-25
rmdir "$nvme_dir" 2>/dev/null || true

# --- 4. PyTorch -------------------------------------------------------------------------
if [[ "$skip_torch" == 1 ]]; then
  steps_record torch skipped 0 "--skip-torch / SPW_GPU_SKIP_TORCH=1"
elif ! python3 -c 'import torch' >/dev/null 2>&1; then
  steps_record torch skipped 0 "torch is not importable"
else
  # Its children get no simcuda: a dry run on a machine without a GPU records "no CUDA".
  run_step torch 200 python3 "$torch_smoke" --lib "$libspillway" --out "$out/torch.json" \
    --timeout 60 || true
fi

# --- 5. Results -------------------------------------------------------------------------
report_rc=0
python3 "$script_dir/report.py" --out "$out" --dry-run "$dry_run" \
  --total-seconds "$(steps_elapsed)" || report_rc=$?
cat "$out/gpu-results.txt" 2>/dev/null || echo "run.sh: report.py wrote no results (exit $report_rc)"
if (( pack )); then
  (cd "$out" && tar -czf details.tar.gz logs runs steps.tsv ./torch* 2>/dev/null \
    || tar -czf details.tar.gz logs runs steps.tsv) && rm -rf "$out/logs" "$out/runs" "$out"/torch.*.*
fi
# A dry run checks the script: there a failed step or a mismatch fails (for the ctest). On a
# GPU every outcome is a result, recorded above.
if (( dry_run && report_rc != 0 )); then
  exit 1
fi
