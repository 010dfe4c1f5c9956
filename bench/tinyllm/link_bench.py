#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""tinyllm link benchmark: decode speed under Spillway's host tier against the link bound.

Contract
  Runs tinyllm on simcuda with a modelled host<->device link (SIMCUDA_H2D_GBPS and
  SIMCUDA_D2H_GBPS, --link-gbps each) as separate processes:
    1. without Spillway                             (reference tokens, plain compute time)
    2. under libspillway.so, HBM limit >= footprint (compute time per decode step, and W)
    3. under libspillway.so, HBM limit = P% of the weight bytes, P in --limits
  each twice, with --gen G and --gen G-D (same --ctx), so that the Spillway statistics of
  the decode steps alone are the difference of the two (see "Separating the decode" below).
  Host tier only, unless --nvme-dir (below). Every inherited SPILLWAY_* and SIMCUDA_*
  variable is dropped; --env KEY=VALUE (repeatable) adds to every Spillway run. Each limit
  runs under every policy of --policies (SPILLWAY_POLICY; default learned,lru), so a policy
  is compared with LRU in the same sitting ("vs lru": LRU's step time / this one's).

  For each limit it reports decode tokens/s and the step time against
      bound = max(compute per step, min bytes per step / link speed)
  compute per step = the decode step time of run 2 (everything resident, same binary);
  min bytes per step = max(0, W - H): W = the managed bytes every decode step touches
  (peak_device_bytes of run 2, where all of it is resident; tinyllm names every weight
  tensor in every step), H = the limit rounded down to whole chunks. In a cyclic scan of W
  bytes through H bytes of HBM, even an optimal (Belady) policy keeps at most H of them
  resident from one step to the next, so at least W - H bytes must come in over H2D per
  step; the matching evictions go out on the D2H engine, which simcuda (like a GPU) runs
  concurrently with H2D, so they do not add to the bound.

  --advise-weights passes tinyllm's flag of that name to every run: under Spillway it
  advises its weight allocations SPW_ADVICE_WEIGHTS through the C API (as a framework that
  knows Spillway would), so a fetch keeps their host copy and evicting them copies nothing
  back (D2H MiB/step falls to 0). Without it the runtime cannot tell that kernels only read
  the weights, and every eviction is a copy, as for an unmodified binary.

  --nvme-dir DIR turns the NVMe tier on in the limited runs: each gets a fresh spill
  directory under DIR (SPILLWAY_NVME_PATH) and a host tier of --host-limit percent of the
  weight bytes (SPILLWAY_HOST_LIMIT), so the rest of the weights live on the drive. The
  drive is measured first, in the same sitting (bench/nvme_store_bench: sequential
  O_DIRECT write, then read, in chunk-sized transfers), and the bound gains a term:
      bound = max(compute, (W - H) / link, max(0, W - H - T) / disk read rate)
  T = the host limit rounded down to chunks: what is in neither HBM nor host memory must be
  read from the drive every step. "disk ms/step" is what the drive needs for the bytes
  that did move, reads at the read rate plus writes at the write rate (a drive that reads
  and writes at once can beat it).

  --timeline records simcuda's device timeline (SIMCUDA_TIMELINE) in every run under
  Spillway and adds two columns from the timed run's (bench/tinyllm/timeline.py, the
  prefill and first decode step left out): "H2D busy %", how much of the decode the link
  moved bytes, and "bubbles ms/step", the time neither the link nor any kernel worked.

  "CPU ms/step" is the CPU time (user + system, every thread) one decode step costs the
  whole process (tinyllm's decode_cpu_s over its G-1 steps): simcuda runs kernels and
  paces copies on host threads, so a step can be no shorter than that over the machine's
  cores, whatever the runtime does. Where it approaches the bound, the benchmark measures
  the simulation's CPU budget rather than the runtime (a GPU spends none of it).

  Output: a table on stdout and one JSON object in --out (default
  <build>/bench-results/tinyllm_link_bench.json). Exit status: 0 done; 1 a run failed or
  hung (its command and stderr are printed and recorded); 3 tokens or checksums differ
  between runs (the "tokens match" column says where); 2 bad usage.

Separating the decode
  SPILLWAY_STATS covers the whole process: weight generation, prefill and decode. Two runs
  that differ only in --gen (G and G-D, --ctx fixed so every allocation is the same size)
  do identical work up to step G-D of the decode, so the difference of their h2d_bytes /
  d2h_bytes is what D decode steps moved (at exit the runtime drains its movers before
  writing the figures, so both files are complete). The decode time is tinyllm's own
  decode_s of the G run (it times the decode loop alone), over its G-1 steps.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timeline import NoSteps, summarize as timeline_summary  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_size(text):
    """Bytes from '128M' style sizes (binary units, as tinyllm and Spillway read them)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def mib(n):
    return n / (1 << 20)


def parse_args(argv):
    build = os.path.join(ROOT, "build")
    p = argparse.ArgumentParser(
        description="tinyllm decode tokens/s under Spillway (host tier) at HBM limits below "
        "the model size, per policy, against max(compute, (W-H)/link) per step.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--build", default=build,
                   help="build tree the other paths default into")
    p.add_argument("--tinyllm", help="tinyllm binary (default BUILD/bench/tinyllm/tinyllm)")
    p.add_argument("--module",
                   help="simcuda kernel module (default BUILD/bench/tinyllm/tinyllm_kernels.so)")
    p.add_argument("--lib", help="libspillway.so (default BUILD/interpose/libspillway.so)")
    p.add_argument("--simcuda", help="directory of simcuda's libcuda.so.1 (default BUILD/simcuda)")
    p.add_argument("--out",
                   help="JSON result (default BUILD/bench-results/tinyllm_link_bench.json)")
    p.add_argument("--weights", default="128M", help="tinyllm --weights (model size)")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    p.add_argument("--style", default="tensor", choices=["tensor", "arena", "paged"])
    p.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    p.add_argument("--gen", type=int, default=17,
                   help="tokens generated in the timed run (decode steps = GEN-1)")
    p.add_argument("--diff-steps", type=int, default=8,
                   help="the second run generates GEN-DIFF_STEPS tokens; the statistics' "
                   "difference is DIFF_STEPS decode steps")
    p.add_argument("--link-gbps", type=float, default=2.0,
                   help="modelled link speed per direction, GB/s (1e9 bytes/s)")
    p.add_argument("--limits", default="100,50,25,10",
                   help="HBM limits, percent of the model's weight bytes")
    p.add_argument("--chunk", default="256K",
                   help="SPILLWAY_CHUNK and SIMCUDA_GRANULARITY; 256K divides every weight "
                   "tensor of the default model, so chunks carry no padding")
    p.add_argument("--min-bytes", default="1M",
                   help="SPILLWAY_MIN_BYTES: smaller allocations (norms, KV, activations of "
                   "the default model) stay plain device memory, outside the limit")
    p.add_argument("--policies", default="learned,lru",
                   help="SPILLWAY_POLICY values to run each limit under, comma separated")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra variable for every Spillway run (repeatable), e.g. "
                   "SPILLWAY_PREFETCH_AHEAD=16M")
    p.add_argument("--advise-weights", action="store_true",
                   help="tinyllm --advise-weights in every run: weights advised through the "
                   "C API, so evictions copy nothing back")
    p.add_argument("--nvme-dir",
                   help="turn the NVMe tier on in the limited runs, spilling under this "
                   "directory, and add the drive's read rate to the bound")
    p.add_argument("--host-limit", type=float, default=25,
                   help="with --nvme-dir: the host tier, percent of the weight bytes")
    p.add_argument("--nvme-bench", help="the drive's benchmark (default "
                   "BUILD/bench/nvme_store_bench), with --nvme-dir")
    p.add_argument("--timeline", action="store_true",
                   help="record simcuda's device timeline in the Spillway runs and report "
                   "the link's busy share and the bubbles per step")
    p.add_argument("--repeat", type=int, default=2,
                   help="run each timed (long) configuration this many times and keep the "
                   "fastest decode: other work on the machine only ever slows a run down")
    p.add_argument("--timeout", type=float, default=300, help="seconds one run may take")
    a = p.parse_args(argv)
    a.tinyllm = a.tinyllm or os.path.join(a.build, "bench/tinyllm/tinyllm")
    a.module = a.module or os.path.join(a.build, "bench/tinyllm/tinyllm_kernels.so")
    a.lib = a.lib or os.path.join(a.build, "interpose/libspillway.so")
    a.simcuda = a.simcuda or os.path.join(a.build, "simcuda")
    a.out = a.out or os.path.join(a.build, "bench-results/tinyllm_link_bench.json")
    a.nvme_bench = a.nvme_bench or os.path.join(a.build, "bench/nvme_store_bench")
    # Absolute, so the commands recorded with the results run from anywhere.
    for name in ("tinyllm", "module", "lib", "simcuda", "out", "nvme_bench"):
        setattr(a, name, os.path.abspath(getattr(a, name)))
    if a.gen - a.diff_steps < 2 or a.diff_steps < 1:
        p.error("need GEN - DIFF_STEPS >= 2 (at least one decode step in the short run)")
    try:
        a.limits = [float(x) for x in a.limits.split(",")]
        a.extra_env = dict(kv.split("=", 1) for kv in a.env)
    except ValueError:
        p.error("--limits takes numbers separated by commas; --env takes KEY=VALUE")
    a.policies = [x for x in a.policies.split(",") if x]
    if "SPILLWAY_POLICY" in a.extra_env:
        p.error("give the policy with --policies, not --env SPILLWAY_POLICY")
    if not a.policies:
        p.error("--policies needs at least one policy")
    if a.nvme_dir is not None:
        if not os.path.isdir(a.nvme_dir) or not os.access(a.nvme_dir, os.W_OK):
            p.error(f"--nvme-dir {a.nvme_dir}: not a writable directory")
        if not 0 <= a.host_limit <= 1000:
            p.error("--host-limit takes a percentage of the weight bytes (0-1000)")
    if "SPILLWAY_NVME_PATH" in a.extra_env or \
            (a.nvme_dir is not None and "SPILLWAY_HOST_LIMIT" in a.extra_env):
        p.error("give the NVMe tier with --nvme-dir and --host-limit, not --env")
    needed = [a.tinyllm, a.module, a.lib, os.path.join(a.simcuda, "libcuda.so.1")]
    for path in needed + ([a.nvme_bench] if a.nvme_dir is not None else []):
        if not os.path.exists(path):
            p.error(f"{path} not found (build first: make build, or pass its flag)")
    return a


class RunFailed(Exception):
    pass


class Bench:
    def __init__(self, args, scratch):
        self.a = args
        self.scratch = scratch
        # ctx fixed for both --gen counts so the two runs allocate exactly the same sizes.
        self.ctx = (args.prompt + args.gen - 1 + 15) // 16 * 16
        self.failures = []

    def env(self, spillway):
        # A clean slate: an inherited SPILLWAY_NVME_PATH would turn the NVMe tier on, an
        # inherited SIMCUDA_* would change the link or the device.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SPILLWAY_", "SIMCUDA_")) and k != "LD_PRELOAD"}
        env["LD_LIBRARY_PATH"] = self.a.simcuda
        env["SIMCUDA_H2D_GBPS"] = env["SIMCUDA_D2H_GBPS"] = str(self.a.link_gbps)
        env["SIMCUDA_GRANULARITY"] = self.a.chunk
        if spillway:
            env["LD_PRELOAD"] = self.a.lib
            env["SPILLWAY_CHUNK"] = self.a.chunk
            env["SPILLWAY_MIN_BYTES"] = self.a.min_bytes
            env.update(spillway)
            env.update(self.a.extra_env)
        return env

    def execute(self, cmd, env=None):
        """Runs cmd under the time limit; None if it exited 0, else what went wrong."""
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=self.a.timeout)
            return None if proc.returncode == 0 else \
                f"exit status {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        except subprocess.TimeoutExpired as e:
            return f"hung: no exit after {self.a.timeout:.0f} s; stderr: " \
                f"{(e.stderr or b'').decode(errors='replace').strip()[-2000:]}"

    def fail(self, name, shown, error):
        """Records a failed run and stops the benchmark (RunFailed)."""
        self.failures.append({"run": name, "command": shown, "error": error})
        print(f"FAILED {name}: {shown}\n  {error}", file=sys.stderr)
        raise RunFailed(name)

    def run(self, name, gen, spillway=None):
        """One tinyllm process; returns its JSON plus the Spillway statistics, if any."""
        result = os.path.join(self.scratch, f"{name}.json")
        stats = os.path.join(self.scratch, f"{name}.stats.json")
        env = self.env(spillway)
        timeline = os.path.join(self.scratch, f"{name}.timeline.jsonl")
        spill_dir = None
        if spillway and "SPILLWAY_NVME_PATH" in spillway:
            # A fresh, empty directory per process: nothing of an earlier run is left there.
            spill_dir = tempfile.mkdtemp(prefix=f"{name}-", dir=spillway["SPILLWAY_NVME_PATH"])
            env["SPILLWAY_NVME_PATH"] = spill_dir
        if spillway:
            env["SPILLWAY_STATS"] = stats
            if self.a.timeline:
                env["SIMCUDA_TIMELINE"] = timeline
        cmd = [self.a.tinyllm, "--module", self.a.module, "--weights", self.a.weights,
               "--dtype", self.a.dtype, "--style", self.a.style, "--prompt",
               str(self.a.prompt), "--gen", str(gen), "--ctx", str(self.ctx), "--json", result,
               "--quiet"] + (["--advise-weights"] if self.a.advise_weights else [])
        shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())
                         if k.startswith(("SPILLWAY_", "SIMCUDA_", "LD_"))) + " " + \
            " ".join(shlex.quote(c) for c in cmd)
        start = time.monotonic()
        error = self.execute(cmd, env)
        wall = time.monotonic() - start
        if spill_dir is not None:
            # The runtime's spill file has no name (O_TMPFILE or unlinked): the directory
            # is empty again, unless the process left something, which is worth a look.
            try:
                os.rmdir(spill_dir)
            except OSError as e:
                print(f"  note: {spill_dir} not removed: {e}", file=sys.stderr)
        if error:
            self.fail(name, shown, error)
        with open(result) as f:
            out = json.load(f)
        if spillway and self.a.timeline:
            try:
                t = timeline_summary(timeline)
                out["timeline"] = {"h2d_busy_fraction": t["h2d"]["busy_fraction"],
                                   "h2d_idle": t["h2d_idle"], "steps": t["steps"]}
            except NoSteps as e:
                out["timeline"] = {"error": str(e)}
        out["wall_s"] = wall
        out["command"] = shown
        if spillway:
            with open(stats) as f:
                written = json.load(f)
            out["stats"] = written["total"]
            # The link as the runtime measured it (device 0; absent in older runtimes).
            device = written["devices"].get("0", {})
            out["h2d_link_measured_bps"] = device.get("h2d_link_bytes_per_s", 0)
        print(f"  {name}: {wall:.1f} s, decode {out['decode_tok_s']:.1f} tok/s",
              file=sys.stderr)
        return out

    def pair(self, name, spillway=None):
        """The long (timed) run and the short one whose statistics are subtracted."""
        long = self.run(f"{name}_gen{self.a.gen}", self.a.gen, spillway)
        for i in range(1, self.a.repeat):
            again = self.run(f"{name}_gen{self.a.gen}_{i}", self.a.gen, spillway)
            if (again["tokens"], again["checksum"]) != (long["tokens"], long["checksum"]):
                long["repeat_mismatch"] = True  # reported as a token mismatch below
            if again["decode_s"] < long["decode_s"]:
                again["repeat_mismatch"] = long.get("repeat_mismatch", False)
                long = again
        short = self.run(f"{name}_gen{self.a.gen - self.a.diff_steps}",
                         self.a.gen - self.a.diff_steps, spillway)
        return long, short


def measure_drive(b, a, chunk, scratch):
    """The drive's sequential rates in chunk-sized O_DIRECT transfers (nvme_store_bench)."""
    out = os.path.join(scratch, "nvme_store_bench.json")
    cmd = [a.nvme_bench, f"--dir={a.nvme_dir}", "--bytes=256M", f"--segment={chunk}",
           f"--block={min(chunk, 1 << 20)}", "--runs=3", "--hugepages", "--no-fio",
           f"--json={out}"]
    print(f"  measuring the drive under {a.nvme_dir} ...", file=sys.stderr)
    shown = " ".join(shlex.quote(c) for c in cmd)
    error = b.execute(cmd)
    if error:
        b.fail("drive", shown, error)
    with open(out) as f:
        store = json.load(f)["store"]
    return {"read_bps": store["read_median"], "write_bps": store["write_median"],
            "command": shown}


def main(argv):
    a = parse_args(argv)
    started = time.monotonic()
    link_bps = a.link_gbps * 1e9
    chunk = parse_size(a.chunk)
    steps = a.gen - 1
    rows, runs = [], {}
    mismatch = False
    drive = None
    with tempfile.TemporaryDirectory(prefix="spillway-link-bench-") as scratch:
        b = Bench(a, scratch)
        try:
            print(f"tinyllm link bench: --weights {a.weights} {a.dtype} {a.style}, link "
                  f"{a.link_gbps:g} GB/s each way, chunk {a.chunk}", file=sys.stderr)
            plain, plain_short = b.pair("plain")
            runs["plain"] = plain
            weight_bytes = plain["weight_bytes"]
            # Far above the footprint: nothing is ever evicted, so this is compute alone
            # with Spillway's launch hooks in the path.
            free_limit = 4 * weight_bytes + (64 << 20)
            full, full_short = b.pair("spillway_unlimited",
                                      {"SPILLWAY_HBM_LIMIT": str(free_limit)})
            runs["spillway_unlimited"] = full
            # W: everything managed is resident in that run and every step touches it all.
            working_set = full["stats"]["peak_device_bytes"]
            compute_s = full["decode_s"] / steps
            plain_step_s = plain["decode_s"] / steps
            reference = (plain["tokens"], plain["checksum"])
            reference_short = (plain_short["tokens"], plain_short["checksum"])
            tiers = {}
            host_bytes = 0
            if a.nvme_dir is not None:
                drive = measure_drive(b, a, chunk, scratch)
                host_limit = int(weight_bytes * a.host_limit / 100)
                host_bytes = host_limit // chunk * chunk
                tiers = {"SPILLWAY_NVME_PATH": os.path.abspath(a.nvme_dir),
                         "SPILLWAY_HOST_LIMIT": str(host_limit)}

            def check(long, short):
                ok = (long["tokens"], long["checksum"]) == reference and \
                    (short["tokens"], short["checksum"]) == reference_short and \
                    not long.get("repeat_mismatch")
                return ok

            def moved(long, short):
                return {k: (long["stats"][k] - short["stats"][k]) / a.diff_steps
                        for k in ("h2d_bytes", "d2h_bytes", "evictions",
                                  "fetches_on_demand", "fetches_prefetched",
                                  "nvme_read_bytes", "nvme_write_bytes")}

            def row(label, percent, limit, long, short, spillway, policy=None):
                nonlocal mismatch
                step_s = long["decode_s"] / steps
                h = limit // chunk * chunk if limit is not None else None
                min_bytes = max(0, working_set - h) if h is not None else 0
                bound_s = max(compute_s, min_bytes / link_bps)
                # With the NVMe tier on: what neither HBM nor the host tier holds is read
                # from the drive every step.
                min_read = max(0, min_bytes - host_bytes) if drive and percent else 0
                if min_read:
                    bound_s = max(bound_s, min_read / drive["read_bps"])
                ok = check(long, short)
                mismatch |= not ok
                r = {"run": label, "policy": policy, "limit_percent": percent,
                     "hbm_limit_bytes": limit,
                     "decode_tok_s": long["decode_tok_s"], "step_s": step_s,
                     "bound_step_s": bound_s, "step_over_bound": step_s / bound_s,
                     "min_h2d_bytes_per_step": min_bytes, "tokens_match": ok,
                     "min_nvme_read_bytes_per_step": min_read,
                     # Everything the process burns per decode step (kernels, simcuda's
                     # copy engines, the mover), and the step it allows on this machine's
                     # cores: a bound of the simulation, not of a GPU.
                     "cpu_per_step_s": long.get("decode_cpu_s", 0) / steps}
                r["cpu_bound_step_s"] = r["cpu_per_step_s"] / (os.cpu_count() or 1)
                if spillway:
                    m = moved(long, short)
                    # The same bound for the bytes the policy did move: step / this is the
                    # overlap lost, this / bound the extra bytes.
                    r["moved_bound_step_s"] = max(compute_s, m["h2d_bytes"] / link_bps)
                    r.update({"h2d_bytes_per_step": m["h2d_bytes"],
                              "d2h_bytes_per_step": m["d2h_bytes"],
                              "evictions_per_step": m["evictions"],
                              "fetches_on_demand_per_step": m["fetches_on_demand"],
                              "fetches_prefetched_per_step": m["fetches_prefetched"],
                              "h2d_over_min": m["h2d_bytes"] / min_bytes if min_bytes else None,
                              # Fewer bytes than the minimum: a launch's allocations did not
                              # fit in H, so the runtime left chunks in mapped host memory
                              # for the kernel to read over the link, which simcuda does not
                              # pace (kernel time is CPU time): the bound does not hold.
                              "h2d_below_min": m["h2d_bytes"] < min_bytes,
                              "stall_ns_whole_run": long["stats"]["stall_ns"],
                              "h2d_link_measured_bps": long["h2d_link_measured_bps"]})
                    if drive:
                        r["nvme_read_bytes_per_step"] = m["nvme_read_bytes"]
                        r["nvme_write_bytes_per_step"] = m["nvme_write_bytes"]
                        r["disk_step_s"] = m["nvme_read_bytes"] / drive["read_bps"] + \
                            m["nvme_write_bytes"] / drive["write_bps"]
                    t = long.get("timeline", {})
                    if "h2d_busy_fraction" in t:
                        r["h2d_busy_fraction"] = t["h2d_busy_fraction"]
                        r["bubble_s_per_step"] = t["h2d_idle"]["bubble_ms_per_step"] / 1e3
                rows.append(r)

            row("no Spillway", None, None, plain, plain_short, False)
            row("Spillway, no limit", None, free_limit, full, full_short, True)
            for percent in a.limits:
                limit = int(weight_bytes * percent / 100)
                for policy in a.policies:
                    name = f"hbm{percent:g}_{policy}"
                    long, short = b.pair(name, {"SPILLWAY_HBM_LIMIT": str(limit),
                                                "SPILLWAY_POLICY": policy, **tiers})
                    runs[name] = long
                    row(f"{percent:g}% {policy}", percent, limit, long, short, True, policy)
            # The baseline, measured in the same sitting: LRU's step time over each row's.
            for r in rows:
                lru = [x for x in rows if x["policy"] == "lru" and r["policy"] is not None
                       and x["limit_percent"] == r["limit_percent"]]
                r["speedup_vs_lru"] = lru[0]["step_s"] / r["step_s"] if lru else None
        except RunFailed:
            pass

    elapsed = time.monotonic() - started
    cfg = runs["plain"]["config"] if "plain" in runs else {}
    header = (f"tinyllm {cfg.get('layers')} layers, dim {cfg.get('dim')}, ffn {cfg.get('ffn')}, "
              f"vocab {cfg.get('vocab')}, {a.dtype}, {a.style}, prompt {a.prompt}, "
              f"{steps} decode steps (stats: difference of --gen {a.gen} and "
              f"{a.gen - a.diff_steps}); link {a.link_gbps:g} GB/s each way; chunk {a.chunk}; "
              f"policies {', '.join(a.policies)}" +
              ("; weights advised (--advise-weights)" if a.advise_weights else "") +
              (f"; NVMe tier under {a.nvme_dir}, host tier {a.host_limit:g}% of the weights"
               if a.nvme_dir is not None else "") +
              (f"; env {' '.join(a.env)}" if a.env else ""))
    lines = [header]
    if rows:
        weight_bytes = runs["plain"]["weight_bytes"]
        lines.append(f"weights {mib(weight_bytes):.1f} MiB; managed per-step working set W "
                     f"{mib(working_set):.1f} MiB; compute {compute_s * 1e3:.2f} ms/step "
                     f"(without Spillway {plain_step_s * 1e3:.2f} ms/step)")
        if drive:
            lines.append(f"drive (nvme_store_bench, same sitting): read "
                         f"{drive['read_bps'] / 1e6:.0f} MB/s, write "
                         f"{drive['write_bps'] / 1e6:.0f} MB/s")
        extra = (" NVMe read MiB/step | NVMe write MiB/step | disk ms/step |" if drive else "") + \
            (" H2D busy % | bubbles ms/step |" if a.timeline else "")
        lines.append("| limit | decode tok/s | step ms | bound ms | step/bound | "
                     "H2D MiB/step | D2H MiB/step | min H2D MiB/step | H2D/min | "
                     "bound for moved ms | vs lru | CPU ms/step | "
                     "tokens match |" + extra)
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|" +
                     ("---|---|---|" if drive else "") + ("---|---|" if a.timeline else ""))
        for r in rows:
            h2d = r.get("h2d_bytes_per_step")
            d2h = r.get("d2h_bytes_per_step")
            ratio = r.get("h2d_over_min")
            mb = r.get("moved_bound_step_s")
            vs_lru = r.get("speedup_vs_lru")
            lines.append(
                f"| {r['run']} | {r['decode_tok_s']:.1f} | {r['step_s'] * 1e3:.2f} | "
                f"{r['bound_step_s'] * 1e3:.2f} | {r['step_over_bound']:.2f} | "
                f"{'-' if h2d is None else f'{mib(h2d):.1f}'} | "
                f"{'-' if d2h is None else f'{mib(d2h):.1f}'} | "
                f"{mib(r['min_h2d_bytes_per_step']):.1f} | "
                f"{'-' if ratio is None else f'{ratio:.2f}'} | "
                f"{'-' if mb is None else f'{mb * 1e3:.2f}'} | "
                f"{'-' if vs_lru is None else f'{vs_lru:.2f}x'} | "
                f"{r['cpu_per_step_s'] * 1e3:.1f} | "
                f"{'yes' if r['tokens_match'] else 'NO'} |" +
                # Differences of two runs' counters: + 0.0 prints a rounded -0.0 as 0.0.
                ((f" {round(mib(r['nvme_read_bytes_per_step']), 1) + 0.0:.1f} |"
                  f" {round(mib(r['nvme_write_bytes_per_step']), 1) + 0.0:.1f} |"
                  f" {r['disk_step_s'] * 1e3:.2f} |" if "disk_step_s" in r else " - | - | - |")
                 if drive else "") +
                ((f" {100 * r['h2d_busy_fraction']:.1f} | {r['bubble_s_per_step'] * 1e3:.2f} |"
                  if "h2d_busy_fraction" in r else " - | - |") if a.timeline else ""))
    measured = [r["h2d_link_measured_bps"] for r in rows if r.get("h2d_link_measured_bps")]
    if measured:
        lines.append(f"H2D link as the runtime measured it: {min(measured) / 1e9:.2f}-"
                     f"{max(measured) / 1e9:.2f} GB/s (modelled {link_bps / 1e9:.2f} GB/s)")
    if any(r.get("h2d_below_min") for r in rows):
        lines.append("NOTE: H2D below the minimum where H2D/min < 1: some launch needed more than "
                     "the limit, its kernel read host memory directly (unpaced on simcuda); "
                     "the bound does not apply there (use a model whose largest tensor fits)")
    lines.append(f"run time {elapsed:.0f} s")
    print("\n".join(lines))
    if mismatch:
        print("TOKENS OR CHECKSUM DIFFER between runs (see 'tokens match')", file=sys.stderr)
    for f in b.failures:
        print(f"run failed: {f['run']}\n  command: {f['command']}\n  error: {f['error']}",
              file=sys.stderr)

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"benchmark": "tinyllm_link_bench", "link_gbps": a.link_gbps,
                   "chunk_bytes": chunk, "min_bytes": a.min_bytes, "extra_env": a.extra_env,
                   "advise_weights": a.advise_weights, "timeline": a.timeline,
                   "weights": a.weights, "dtype": a.dtype, "style": a.style,
                   "prompt": a.prompt, "gen": a.gen, "diff_steps": a.diff_steps,
                   "config": cfg,
                   "weight_bytes": runs["plain"]["weight_bytes"] if "plain" in runs else None,
                   "working_set_bytes": working_set if rows else None,
                   "compute_step_s": compute_s if rows else None,
                   "plain_step_s": plain_step_s if rows else None,
                   "bound_model": "max(compute_step_s, max(0, W - H) / link); W = "
                   "peak_device_bytes of the unlimited run, H = limit rounded down to chunks; "
                   "evictions (D2H) overlap on the other copy engine" +
                   ("; with the NVMe tier, also max(0, W - H - T) / drive read rate, T = "
                    "host limit rounded down to chunks" if drive else ""),
                   "nvme_dir": a.nvme_dir,
                   "host_limit_percent": a.host_limit if a.nvme_dir is not None else None,
                   "drive": drive,
                   "rows": rows, "runs": runs, "failures": b.failures,
                   "tokens_match": not mismatch, "elapsed_s": elapsed}, f, indent=1)
    print(f"results in {a.out}", file=sys.stderr)
    if b.failures:
        return 1
    return 3 if mismatch else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
