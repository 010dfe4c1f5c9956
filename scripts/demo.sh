#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# `make demo`: shows on simcuda (no GPU) what Spillway is for. tinyllm, an LLM inference
# workload whose weights do not fit the device, runs three times:
#   1. on a device big enough: the reference tokens and checksum;
#   2. plainly on a small device: it runs out of memory;
#   3. on the same small device under `spillway run`, with the host and NVMe tiers: it
#      completes, and must give exactly the reference tokens.
# Then prints a short report (tokens identical?, tok/s of each run, bytes moved per link,
# peak HBM). Contract: exit 0 when every step did what it should, 1 when a step failed
# or the tokens differ (the failing step's output and Spillway's log are printed), 2 on a
# usage error. Needs a build (`make build`); everything temporary lives in one mktemp
# directory removed at exit. The demo.SmallModel ctest runs it with a 64 MiB model.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/demo.sh [OPTIONS]

Runs tinyllm on simcuda three times (reference on a big device, plainly on a small
device where it runs out of memory, under `spillway run` on the small device with the
host and NVMe tiers) and reports whether Spillway gave the same tokens, how fast each
run decoded and how many bytes moved over each link.

Options (SIZE: bytes with an optional K, M, G suffix, binary):
  --build-dir DIR      build tree to run from (default: $BUILD_DIR, else build)
  --weights SIZE       model size, tinyllm --weights (default 1G)
  --big-device SIZE    simulated device memory of the reference run (default 4G)
  --device SIZE        simulated device memory of runs 2 and 3 (default 256M)
  --hbm-limit SIZE     spillway run --hbm-limit (default 192M: the small device less
                       room for the activations, KV cache and small allocations)
  --host-limit SIZE    spillway run --host-limit (default 512M, less than the weights,
                       so the rest goes to the NVMe tier)
  --prompt N           prompt tokens (default 16)
  --gen N              tokens generated (default 8)
  --tmpdir DIR         where the temporary directory (NVMe spill files, logs) is made;
                       it must accept O_DIRECT, so not tmpfs (default: $TMPDIR, else /tmp)
  -h, --help           print this help

Exit status: 0 the demo worked; 1 a step failed or the tokens differ; 2 usage error.
EOF
}

build_dir=${BUILD_DIR:-build}
weights=1G
big_device=4G
device=256M
hbm_limit=192M
host_limit=512M
prompt=16
gen=8
tmp_parent=${TMPDIR:-/tmp}

while (( $# > 0 )); do
  case "$1" in
    --build-dir|--weights|--big-device|--device|--hbm-limit|--host-limit|--prompt|--gen|--tmpdir)
      if (( $# < 2 )); then
        echo "demo: $1 needs a value" >&2
        exit 2
      fi
      case "$1" in
        --build-dir) build_dir=$2 ;;
        --weights) weights=$2 ;;
        --big-device) big_device=$2 ;;
        --device) device=$2 ;;
        --hbm-limit) hbm_limit=$2 ;;
        --host-limit) host_limit=$2 ;;
        --prompt) prompt=$2 ;;
        --gen) gen=$2 ;;
        --tmpdir) tmp_parent=$2 ;;
      esac
      shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

tinyllm=$build_dir/bench/tinyllm/tinyllm
kernels=$build_dir/bench/tinyllm/tinyllm_kernels.so
simcuda_dir=$build_dir/simcuda
spillway=$build_dir/tools/spillway
for f in "$tinyllm" "$kernels" "$simcuda_dir/libcuda.so.1" "$spillway"; do
  if [[ ! -e "$f" ]]; then
    echo "demo: $f is missing: build first (make build BUILD_DIR=$build_dir)" >&2
    exit 1
  fi
done

work=$(mktemp -d "$tmp_parent/spillway-demo.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

# simcuda is the libcuda.so.1 the loader finds; every run gets the same flags so that the
# tokens can be compared bit for bit.
export LD_LIBRARY_PATH=$simcuda_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
tinyllm_args=(--module "$kernels" --weights "$weights" --prompt "$prompt" --gen "$gen")

now() { date +%s.%N; }
# label TEXT: the start of a step's line, dotted to one column.
label() {
  local text="$1 "
  while (( ${#text} < 52 )); do text+="."; done
  printf '%s ' "$text"
}
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# fail STEP FILES...: why the demo stops, with the output that says what went wrong.
fail() {
  local step=$1
  shift
  echo
  echo "demo: FAILED: $step"
  local f
  for f in "$@"; do
    if [[ -s "$f" ]]; then
      echo "---- $(basename "$f") (last 40 lines) ----"
      tail -n 40 "$f"
    fi
  done
  exit 1
}

echo "Spillway demo: tinyllm with $weights of fp32 weights on simcuda (a CPU-backed GPU)"
echo

# 1. The reference, on a device the whole model fits.
label "1. reference, $big_device device"
start=$(now)
if ! SIMCUDA_DEVICE_MEMORY=$big_device "$tinyllm" "${tinyllm_args[@]}" \
    --json "$work/reference.json" >"$work/reference.out" 2>&1; then
  echo "failed"
  fail "the reference run: SIMCUDA_DEVICE_MEMORY=$big_device $tinyllm ${tinyllm_args[*]}" \
    "$work/reference.out"
fi
echo "done ($(seconds_since "$start") s)"

# 2. The same program, plainly, on the small device: out of memory (tinyllm's exit 3).
label "2. plain, $device device"
start=$(now)
status=0
SIMCUDA_DEVICE_MEMORY=$device "$tinyllm" "${tinyllm_args[@]}" \
  >"$work/plain.out" 2>&1 || status=$?
if (( status != 3 )); then
  echo "exit status $status"
  fail "the plain run on $device should run out of memory (exit 3), got exit $status" \
    "$work/plain.out"
fi
echo "out of memory, as expected ($(seconds_since "$start") s)"
oom_line=$(grep -m1 'out of memory' "$work/plain.out" || true)
echo "   ${oom_line:-"(no out-of-memory line printed)"}"

# 3. Under Spillway on the small device, with HBM, host and NVMe tiers.
label "3. spillway run, $device device, HBM/host/NVMe tiers"
mkdir "$work/nvme"
spillway_cmd=("$spillway" run --hbm-limit "$hbm_limit" --host-limit "$host_limit"
  --nvme "$work/nvme" --stats "$work/stats.json" --log-file "$work/spillway.log" --
  "$tinyllm" "${tinyllm_args[@]}" --json "$work/spillway.json")
start=$(now)
if ! SIMCUDA_DEVICE_MEMORY=$device "${spillway_cmd[@]}" >"$work/spillway.out" 2>&1; then
  echo "failed"
  fail "the Spillway run: SIMCUDA_DEVICE_MEMORY=$device LD_LIBRARY_PATH=$simcuda_dir ${spillway_cmd[*]}" \
    "$work/spillway.out" "$work/spillway.log"
fi
echo "done ($(seconds_since "$start") s)"
if [[ ! -s "$work/stats.json" ]]; then
  fail "the Spillway run wrote no statistics ($work/stats.json)" "$work/spillway.log"
fi

# The report: the JSON files, read by Python (a build dependency already).
echo
status=0
python3 - "$work/reference.json" "$work/spillway.json" "$work/stats.json" \
  "$hbm_limit" "$host_limit" <<'PY' || status=$?
import json, sys

ref, spw, stats = (json.load(open(p)) for p in sys.argv[1:4])
hbm_limit, host_limit = sys.argv[4:6]
total = stats["total"]

def size(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.2f} {unit}"
        n /= 1024

c = ref["config"]
print(f"Model: {size(ref['weight_bytes'])} of weights ({c['layers']} layers, dim {c['dim']}, "
      f"vocab {c['vocab']}), prompt {c['prompt']} tokens, {c['gen']} generated")
same = ref["tokens"] == spw["tokens"] and ref["checksum"] == spw["checksum"]
print(f"Tokens identical to the reference: {'yes' if same else 'NO'} "
      f"(checksum reference {ref['checksum']}, Spillway {spw['checksum']})")
print("  tokens: " + " ".join(str(t) for t in ref["tokens"][0]))
print()
print(f"{'run':<34}{'prefill tok/s':>15}{'decode tok/s':>15}")
print(f"{'1. reference (all in device)':<34}{ref['prefill_tok_s']:>15.1f}{ref['decode_tok_s']:>15.1f}")
print(f"{'2. plain, small device':<34}{'out of memory':>30}")
print(f"{'3. Spillway, small device':<34}{spw['prefill_tok_s']:>15.1f}{spw['decode_tok_s']:>15.1f}")
if spw["decode_tok_s"] > 0:
    print(f"   Spillway decodes at {spw['decode_tok_s'] / ref['decode_tok_s']:.2f}x the reference's speed")
print()
print(f"Spillway (HBM limit {hbm_limit}, host limit {host_limit}, NVMe): bytes moved")
rows = [("host -> HBM   (H2D)", "h2d_bytes"), ("HBM -> host   (D2H)", "d2h_bytes"),
        ("NVMe -> host  (read)", "nvme_read_bytes"), ("host -> NVMe  (write)", "nvme_write_bytes")]
for label, key in rows:
    print(f"  {label:<24}{size(total[key]):>14}")
print(f"  peak HBM                {size(total['peak_device_bytes']):>14}   (limit {hbm_limit})")
print(f"  chunks fetched          {total['fetches_on_demand'] + total['fetches_prefetched']:>14,}"
      f"   evictions {total['evictions']:,}, spills to NVMe {total['spills']:,}")
sys.exit(0 if same else 1)
PY
if (( status != 0 )); then
  fail "Spillway's tokens differ from the reference's" "$work/reference.out" "$work/spillway.out"
fi
