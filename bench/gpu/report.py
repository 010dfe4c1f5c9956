#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# The results of bench/gpu/run.sh: reads what the steps left under OUT (steps.tsv, the
# bandwidth JSON, tinyllm's --json files and Spillway's statistics, torch.json) and writes
# OUT/gpu-results.json (everything, machine-readable) and OUT/gpu-results.txt (one table).
#
# Contract: writes both files whatever the steps did: a missing file is a missing figure
# ("-" in the table, null in the JSON). Exit 0 when every step that ran succeeded and every
# run matched the reference, 3 when not (the "Problems" line and "problems" list say what). The link bound of a run with the HBM limit at
# L of W weight bytes is H2D bandwidth / (W - L) tokens per second: each decode step reads
# every weight, and at least the W - L bytes that cannot stay in HBM cross the link — the
# best any offloading scheme can do at that limit, whatever it caches.
"""Summarize a bench/gpu/run.sh output directory (see --help)."""

import argparse
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def steps_of(out):
    steps = []
    try:
        with open(os.path.join(out, "steps.tsv")) as f:
            next(f)
            for line in f:
                name, status, secs, note = (line.rstrip("\n").split("\t") + [""] * 4)[:4]
                steps.append({"step": name, "status": status, "seconds": float(secs or 0),
                              "note": note})
    except (OSError, StopIteration):
        pass
    return steps


def gib(n):
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="run.sh's output directory")
    parser.add_argument("--dry-run", default="0", help="1 if run.sh ran with --dry-run")
    parser.add_argument("--total-seconds", type=float, default=0.0)
    args = parser.parse_args()
    out = args.out

    steps = steps_of(out)
    status = {s["step"]: s for s in steps}
    bw = load(os.path.join(out, "bandwidth.json"))
    h2d_bps = bw["h2d_gbps"] * 1e9 if bw and bw.get("h2d_gbps") else None
    resident = load(os.path.join(out, "runs", "resident.json"))

    runs = []
    for name, kind, pct in [("resident", "resident", 100), ("spillway-50", "spillway", 50),
                            ("learned-50", "spillway learned", 50),
                            ("offload-50", "host-offload", 50), ("spillway-25", "spillway", 25),
                            ("learned-25", "spillway learned", 25),
                            ("advised-25", "spillway learned, weights advised", 25),
                            ("offload-25", "host-offload", 25),
                            ("nvme-25", "spillway learned, advised, host tier 25%, NVMe", 25),
                            ("nvme-unadvised-25",
                             "spillway learned, unadvised, host tier 25%, NVMe", 25)]:
        step = status.get("tinyllm-" + name, {})
        result = load(os.path.join(out, "runs", name + ".json"))
        stats = load(os.path.join(out, "runs", name + ".stats.json"))
        run = {"run": name, "kind": kind, "hbm_percent": pct,
               "status": step.get("status", "not run"), "seconds": step.get("seconds"),
               "note": step.get("note", "")}
        if result:
            w = result["weight_bytes"]
            limit = w * pct // 100
            run.update({"weight_bytes": w, "hbm_limit_bytes": limit if pct < 100 else None,
                        "tokens": result["tokens"], "checksum": result["checksum"],
                        "prefill_tok_s": result["prefill_tok_s"],
                        "decode_tok_s": result["decode_tok_s"],
                        "host_offload_bytes": result["host_offload_bytes"],
                        "config": result["config"]})
            if resident and name != "resident":
                run["match"] = (result["tokens"] == resident["tokens"]
                                and result["checksum"] == resident["checksum"])
                if resident.get("decode_tok_s"):
                    run["vs_resident"] = result["decode_tok_s"] / resident["decode_tok_s"]
            if pct < 100 and h2d_bps:
                link_bytes = w - limit
                run["link_bytes_per_token"] = link_bytes
                run["link_bound_s_per_token"] = link_bytes / h2d_bps
                run["link_bound_tok_s"] = h2d_bps / link_bytes
                run["vs_link_bound"] = result["decode_tok_s"] / run["link_bound_tok_s"]
        if stats:
            t = stats["total"]
            run["spillway"] = {k: t[k] for k in ("h2d_bytes", "d2h_bytes", "peak_device_bytes",
                                                 "fetches_on_demand", "fetches_prefetched",
                                                 "evictions", "stall_ns")}
            run["spillway"].update({k: t.get(k, 0) for k in ("nvme_read_bytes",
                                                             "nvme_write_bytes", "spills",
                                                             "spills_unchanged", "moves",
                                                             "remap_ns")})
            # The link as the runtime measured it (start-up, then its moves' copies), to
            # set beside the bandwidth step's figure; absent from older runtimes.
            device = stats.get("devices", {}).get("0", {})
            run["spillway"]["h2d_link_measured_bps"] = device.get("h2d_link_bytes_per_s")
            run["spillway"]["d2h_link_measured_bps"] = device.get("d2h_link_bytes_per_s")
            if result:
                passes = result["config"]["gen"]  # the prefill and gen-1 decode steps
                run["spillway"]["h2d_bytes_per_step"] = t["h2d_bytes"] / max(1, passes)
        runs.append(run)

    torch = load(os.path.join(out, "torch.json"))
    results = {"dry_run": args.dry_run == "1", "total_seconds": args.total_seconds,
               "bandwidth": bw, "steps": steps, "tinyllm": runs, "torch": torch}

    def fmt(v, spec=".2f", suffix=""):
        return "-" if v is None else f"{v:{spec}}{suffix}"

    lines = [f"Spillway GPU check{' (DRY RUN on simcuda)' if args.dry_run == '1' else ''}: "
             f"{args.total_seconds:.0f} s in all"]
    if bw:
        lines.append(f"Device: {bw['device']}; free {gib(bw['free_bytes'])} of "
                     f"{gib(bw['total_bytes'])}; pinned H2D {bw['h2d_gbps']:.1f} GB/s, "
                     f"D2H {bw['d2h_gbps']:.1f} GB/s (best of {bw['repeat']} x {gib(bw['bytes'])})")
    else:
        lines.append("Device: bandwidth step failed (see logs/bandwidth.log)")
    if resident:
        c = resident["config"]
        lines.append(f"tinyllm: {gib(resident['weight_bytes'])} of {c['dtype']} weights, "
                     f"{c['layers']} layers, dim {c['dim']}, prompt {c['prompt']}, gen {c['gen']}")
    lines.append("")
    header = (f"{'run':<18}{'HBM':>5} {'status':<8}{'secs':>7}{'decode tok/s':>14}"
              f"{'vs resident':>13}{'bound tok/s':>13}{'vs bound':>10}  match")
    lines += [header, "-" * len(header)]
    for r in runs:
        match = "-" if "match" not in r else ("yes" if r["match"] else "NO")
        if r["run"] == "resident":
            match = "ref" if r.get("tokens") else "-"
        lines.append(f"{r['run']:<18}{r['hbm_percent']:>4}% {r['status']:<8}"
                     f"{fmt(r['seconds'], '.1f'):>7}{fmt(r.get('decode_tok_s'), '.2f'):>14}"
                     f"{fmt(r.get('vs_resident'), '.3f', 'x'):>13}"
                     f"{fmt(r.get('link_bound_tok_s'), '.2f'):>13}"
                     f"{fmt(r.get('vs_link_bound'), '.2f', 'x'):>10}  {match}")
    # Issue 6's "at least 2x on-demand LRU": each learned run's decode speed over the LRU
    # run's at the same HBM limit (the NVMe runs have a smaller host tier: no LRU twin).
    by_name = {r["run"]: r for r in runs}
    for r in runs:
        lru = by_name.get(f"spillway-{r['hbm_percent']}", {})
        if r["kind"].startswith("spillway learned") and "NVMe" not in r["kind"] \
                and r.get("decode_tok_s") \
                and lru.get("decode_tok_s"):
            r["vs_lru"] = r["decode_tok_s"] / lru["decode_tok_s"]
            lines.append(f"  {r['run']}: {r['vs_lru']:.2f}x the decode speed of "
                         f"{lru['run']} (LRU)")
    for r in runs:
        if r["status"] not in ("ok", "not run") and r["note"]:
            lines.append(f"  {r['run']}: {r['status']}: {r['note']}")
        if "spillway" in r:
            s = r["spillway"]
            lines.append(f"  {r['run']}: moved H2D {gib(s['h2d_bytes'])} "
                         f"({gib(s.get('h2d_bytes_per_step', 0))} per step), "
                         f"D2H {gib(s['d2h_bytes'])}; peak HBM {gib(s['peak_device_bytes'])}; "
                         f"stall {s['stall_ns'] / 1e9:.2f} s" +
                         (f"; NVMe read {gib(s['nvme_read_bytes'])}, written "
                          f"{gib(s['nvme_write_bytes'])} ({s['spills']} spills, "
                          f"{s['spills_unchanged']} unchanged, not written)"
                          if s["nvme_read_bytes"] or s["nvme_write_bytes"] else ""))
            if s["moves"]:
                # The fixed cost a move adds beyond its copies (page-table updates): on
                # simcuda 0.1-0.9 ms a move at 256 KiB chunks (docs/benchmarks.md).
                lines.append(f"  {r['run']}: {s['moves']} moves, remap "
                             f"{s['remap_ns'] / 1e9:.3f} s "
                             f"({s['remap_ns'] / s['moves'] / 1e3:.1f} us a move)")
            if s.get("h2d_link_measured_bps"):
                lines.append(f"  {r['run']}: link as the runtime measured it: H2D "
                             f"{s['h2d_link_measured_bps'] / 1e9:.1f} GB/s, D2H "
                             f"{(s.get('d2h_link_measured_bps') or 0) / 1e9:.1f} GB/s")
    lines.append("")
    if torch:
        lines.append(f"PyTorch ({torch.get('model', '?')}): {torch.get('status', '?')}"
                     + (f" - {torch['note']}" if torch.get("note") else ""))
        for v in torch.get("variants", []):
            lines.append(f"  {v['name']:<12} {v.get('status', '?'):<8} "
                         f"{fmt(v.get('seconds'), '.1f', ' s'):>9}  match: "
                         f"{'-' if v.get('match') is None else ('yes' if v['match'] else 'NO')}"
                         + (f"  ({v['note']})" if v.get("note") else ""))
    else:
        t = status.get("torch")
        lines.append(f"PyTorch: {t['status'] + ': ' + t['note'] if t else 'not run'}")
    lines.append("")
    lines.append("Steps:")
    for s in steps:
        lines.append(f"  {s['step']:<27}{s['status']:<9}{s['seconds']:>8.1f} s  {s['note']}")
    problems = [f"{s['step']} {s['status']}" for s in steps if s["status"] in ("failed", "timeout")]
    problems += [f"{r['run']} tokens differ" for r in runs if r.get("match") is False]
    if torch and torch.get("status") == "problems":
        problems.append("torch variants failed or differ")
    lines.append("")
    lines.append("Problems: " + ("; ".join(problems) if problems else "none"))
    results["problems"] = problems
    with open(os.path.join(out, "gpu-results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "gpu-results.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return 3 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
