#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Where the link idles: summarises a simcuda device timeline (SIMCUDA_TIMELINE=FILE).

Contract
  Reads the JSON lines simcuda writes (docs/simcuda.md, SIMCUDA_TIMELINE): kernel runs
  and copies over the modelled link, each with start and end in ms. Steps are counted by
  a kernel that starts every forward pass (--step-kernel, tinyllm's tl_embed); the first
  --skip steps (the prefill, the first decode steps while a policy learns) are left out,
  and the window ends with the last kernel. For that window it prints, per step:
    - each direction's busy time (the union of its copies' intervals) and bytes;
    - the H2D link's idle time, split into idle while some kernel ran and idle while
      nothing ran on the device (a bubble: neither the link nor the device worked);
    - the idle gaps by length, and the longest few with the kernels around them.
  With --json FILE it also writes the figures as one JSON object. Exit status: 0; 2 bad
  usage or a file without the step kernel.

Example
  SIMCUDA_TIMELINE=/tmp/tl.jsonl SIMCUDA_H2D_GBPS=2 ... tinyllm ...   (under Spillway)
  python3 bench/tinyllm/timeline.py /tmp/tl.jsonl
"""

import argparse
import bisect
import json
import sys


def union(intervals):
    """Sorted, merged [start, end] intervals."""
    merged = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def clip(intervals, lo, hi):
    return [[max(s, lo), min(e, hi)] for s, e in intervals if e > lo and s < hi]


def length(intervals):
    return sum(e - s for s, e in intervals)


def gaps(busy, lo, hi):
    """The complement of merged `busy` within [lo, hi]."""
    out, at = [], lo
    for s, e in busy:
        if s > at:
            out.append([at, s])
        at = max(at, e)
    if at < hi:
        out.append([at, hi])
    return out


def intersect(a, b):
    """Intersection of two merged interval lists."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append([s, e])
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


class NoSteps(Exception):
    pass


def summarize(path, step_kernel="tl_embed", skip=2, device=0, top=5):
    """The figures main prints, as a dict (raises NoSteps without enough steps)."""
    kernels, copies = [], {"h2d": [], "d2h": []}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                raise NoSteps(f"{path}:{n}: not a JSON line")
            if r.get("device") != device:
                continue
            if r["kind"] == "kernel":
                kernels.append((r["start"], r["end"], r["name"]))
            elif r["kind"] in copies:
                copies[r["kind"]].append((r["start"], r["end"], r["bytes"]))
    kernels.sort()
    starts = [k[0] for k in kernels if k[2] == step_kernel]
    if len(starts) <= skip + 1:
        raise NoSteps(f"{len(starts)} runs of {step_kernel} in {path}: need more than "
                      f"skip + 1 = {skip + 1}")
    lo, hi = starts[skip], max(k[1] for k in kernels)
    steps = len(starts) - skip
    per_step = lambda x: x / steps  # noqa: E731
    kernel_busy = clip(union([[s, e] for s, e, _ in kernels]), lo, hi)
    out = {"steps": steps, "window_ms": hi - lo, "step_ms": per_step(hi - lo)}
    for kind, items in copies.items():
        busy = clip(union([[s, e] for s, e, _ in items]), lo, hi)
        moved = sum(b for s, e, b in items if lo <= s < hi)
        out[kind] = {"busy_ms_per_step": per_step(length(busy)),
                     "busy_fraction": length(busy) / (hi - lo),
                     "mib_per_step": per_step(moved) / 2**20}
        if kind == "h2d":
            idle = gaps(busy, lo, hi)
            idle_kernel = length(intersect(idle, kernel_busy))
            out["h2d_idle"] = {
                "ms_per_step": per_step(length(idle)),
                "while_kernel_ms_per_step": per_step(idle_kernel),
                "bubble_ms_per_step": per_step(length(idle) - idle_kernel),
                "gaps_per_step": per_step(len(idle)),
            }
            buckets = [0.05, 0.2, 1.0, 5.0, float("inf")]
            hist = [[0, 0.0] for _ in buckets]
            for s, e in idle:
                i = next(i for i, b in enumerate(buckets) if e - s <= b)
                hist[i][0] += 1
                hist[i][1] += e - s
            out["h2d_gap_histogram"] = [
                {"up_to_ms": b, "count_per_step": per_step(c), "ms_per_step": per_step(t)}
                for b, (c, t) in zip(buckets, hist)]
            kstarts = [k[0] for k in kernels]
            longest = sorted(idle, key=lambda g: g[0] - g[1])[:top]
            out["h2d_longest_gaps"] = []
            for s, e in longest:
                # The kernels that ran during the gap, or the last one before it.
                i = bisect.bisect_left(kstarts, s)
                during = [k[2] for k in kernels[max(0, i - 1):bisect.bisect_left(kstarts, e)]
                          if k[1] > s]
                before = kernels[i - 1][2] if i > 0 else "-"
                out["h2d_longest_gaps"].append(
                    {"at_ms": s - lo, "ms": e - s, "kernels": sorted(set(during)),
                     "kernel_before": before})

    out["skipped"] = skip
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("timeline", help="the file SIMCUDA_TIMELINE named")
    p.add_argument("--step-kernel", default="tl_embed",
                   help="kernel that starts every step (default tl_embed, tinyllm's)")
    p.add_argument("--skip", type=int, default=2,
                   help="steps left out at the start (default 2: prefill and first decode)")
    p.add_argument("--device", type=int, default=0)
    p.add_argument("--top", type=int, default=5, help="longest gaps to show")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args(argv)
    try:
        out = summarize(a.timeline, a.step_kernel, a.skip, a.device, a.top)
    except NoSteps as e:
        print(f"timeline: {e}", file=sys.stderr)
        return 2
    steps = out["steps"]
    print(f"timeline {a.timeline}: {steps} steps after skipping {a.skip}, "
          f"{out['step_ms']:.2f} ms/step")
    print("| direction | busy ms/step | busy % | MiB/step | GB/s while busy |")
    print("|---|---|---|---|---|")
    for kind in ("h2d", "d2h"):
        d = out[kind]
        rate = d["mib_per_step"] * 2**20 / 1e6 / d["busy_ms_per_step"] \
            if d["busy_ms_per_step"] else 0
        print(f"| {kind} | {d['busy_ms_per_step']:.2f} | {100 * d['busy_fraction']:.1f} | "
              f"{d['mib_per_step']:.1f} | {rate:.2f} |")
    i = out["h2d_idle"]
    print(f"H2D idle {i['ms_per_step']:.2f} ms/step in {i['gaps_per_step']:.1f} gaps: "
          f"{i['while_kernel_ms_per_step']:.2f} while a kernel ran, "
          f"{i['bubble_ms_per_step']:.2f} with nothing running (bubbles)")
    print("gaps up to  " + "  ".join(
        f"{'>5' if h['up_to_ms'] == float('inf') else h['up_to_ms']} ms: "
        f"{h['count_per_step']:.1f} ({h['ms_per_step']:.2f} ms)"
        for h in out["h2d_gap_histogram"]) + "  per step")
    for g in out["h2d_longest_gaps"]:
        print(f"  gap {g['ms']:.2f} ms at +{g['at_ms']:.1f} ms: kernels during "
              f"{', '.join(g['kernels']) or 'none'}; last before: {g['kernel_before']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1, default=lambda x: None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
