// SPDX-License-Identifier: Apache-2.0
//
// trace_sim: replays a Spillway access trace (or a synthetic Llama decode trace) through
// tiered-memory policies with a bandwidth model of a machine, and prints bytes moved, stall
// and step time against Belady's bytes and the bound max(compute, bytes / bandwidth).
// See docs/trace_sim.md. Exit status: 0 on success, 1 on a bad trace, 2 on bad usage.

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "report.h"
#include "synth.h"

namespace spillway::trace_sim {
namespace {

constexpr char kUsage[] = R"(usage:
  trace_sim --trace FILE [machine] [--policy P,...] [--warmup-steps N] [--json FILE]
  trace_sim --synthesize llama3-8b|llama3-70b [--batch N] [--steps N] [--context N]
            [--chunk BYTES] [--gpu-tflops F] --out FILE
  trace_sim --sweep [machine] [--steps N (default 24)] [--json FILE]
            (8B/70B x batch 1/32 x HBM 80/50/25%, no host limit; then 8B/70B batch 1
            with HBM 25% and host 50% on NVMe at --nvme-gbps, on this link and pcie4)

machine:
  --machine pcie4|pcie5    link preset: 25 / 50 GB/s each direction, full duplex (default pcie5)
  --h2d-gbps F --d2h-gbps F    override the preset's link bandwidths
  --hbm BYTES              HBM available to the program (suffix K, M, G = 2^10.. accepted)
  --hbm-fraction F         HBM = F x the trace's weight bytes (default 0.5)
  --hbm-gbps F             HBM bandwidth for compute estimates (default 4000)
  --compute-ns-per-launch N    every launch computes for N ns (overrides the trace)
  --host BYTES             host tier for chunks not in HBM; the rest lives on NVMe
                           (default: unlimited, no NVMe traffic)
  --host-fraction F        host tier = F x the trace's weight bytes
  --nvme-gbps F            NVMe read bandwidth (default 7, a Gen4 x4 drive)
  --nvme-write-gbps F      NVMe write bandwidth (default: the read bandwidth)
policies: ondemand-lru, belady, learned (default: all)
  --learned-window BYTES   bytes the learned policy may fetch ahead of need (default: a
                           quarter of the widest launch)
Launches without compute_ns compute for (bytes they touch) / --hbm-gbps.
Per-step figures are over the steps after --warmup-steps (default 2).
)";

bool ParseBytes(std::string s, uint64_t* out) {
  uint64_t mult = 1;
  if (s.ends_with("iB")) s.resize(s.size() - 2);
  if (!s.empty()) {
    switch (s.back()) {
      case 'K':
      case 'k':
        mult = 1ull << 10;
        s.pop_back();
        break;
      case 'M':
      case 'm':
        mult = 1ull << 20;
        s.pop_back();
        break;
      case 'G':
      case 'g':
        mult = 1ull << 30;
        s.pop_back();
        break;
      case 'T':
      case 't':
        mult = 1ull << 40;
        s.pop_back();
        break;
      default:
        break;
    }
  }
  double v = 0;
  if (!absl::SimpleAtod(s, &v) || v < 0) return false;
  *out = static_cast<uint64_t>(v * static_cast<double>(mult));
  return true;
}

int Usage(const std::string& why) {
  std::fprintf(stderr, "trace_sim: %s\n%s", why.c_str(), kUsage);
  return 2;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string trace_path, synth_model, out_path, json_path;
  bool sweep = false;
  Machine machine;
  std::string preset = "pcie5";
  double h2d = 0, d2h = 0, hbm_fraction = 0.5, host_fraction = -1, nvme_write = 0;
  uint64_t hbm_bytes = 0, host_bytes = Machine::kUnlimited;
  int warmup = 2;
  bool steps_given = false;
  std::string tier_flag;  // an HBM or host size given: the sweep sets its own
  SynthOptions synth;
  std::vector<std::string> policies = PolicyNames();
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--sweep") {
      sweep = true;
      continue;
    }
    if (!a.starts_with("--")) return Usage("unexpected argument " + a);
    if (i + 1 >= args.size()) return Usage(a + " needs a value (or is unknown)");
    const std::string v = args[++i];
    bool ok = true;
    if (a == "--trace")
      trace_path = v;
    else if (a == "--synthesize")
      synth_model = v;
    else if (a == "--out")
      out_path = v;
    else if (a == "--json")
      json_path = v;
    else if (a == "--machine")
      preset = v;
    else if (a == "--h2d-gbps")
      ok = absl::SimpleAtod(v, &h2d) && h2d > 0;
    else if (a == "--d2h-gbps")
      ok = absl::SimpleAtod(v, &d2h) && d2h > 0;
    else if (a == "--hbm") {
      ok = ParseBytes(v, &hbm_bytes);
      tier_flag = a;
    } else if (a == "--hbm-fraction") {
      ok = absl::SimpleAtod(v, &hbm_fraction) && hbm_fraction > 0;
      tier_flag = a;
    } else if (a == "--hbm-gbps")
      ok = absl::SimpleAtod(v, &machine.hbm_gbps) && machine.hbm_gbps > 0;
    else if (a == "--compute-ns-per-launch")
      ok = absl::SimpleAtod(v, &machine.compute_ns_per_launch);
    else if (a == "--host") {
      ok = ParseBytes(v, &host_bytes);
      tier_flag = a;
    } else if (a == "--host-fraction") {
      ok = absl::SimpleAtod(v, &host_fraction) && host_fraction >= 0;
      tier_flag = a;
    } else if (a == "--nvme-gbps")
      ok = absl::SimpleAtod(v, &machine.nvme_read_gbps) && machine.nvme_read_gbps > 0;
    else if (a == "--nvme-write-gbps")
      ok = absl::SimpleAtod(v, &nvme_write) && nvme_write > 0;
    else if (a == "--warmup-steps")
      ok = absl::SimpleAtoi(v, &warmup) && warmup >= 0;
    else if (a == "--batch")
      ok = absl::SimpleAtoi(v, &synth.batch) && synth.batch > 0;
    else if (a == "--steps")
      ok = (steps_given = absl::SimpleAtoi(v, &synth.steps)) && synth.steps > 0;
    else if (a == "--context")
      ok = absl::SimpleAtoi(v, &synth.context) && synth.context > 0;
    else if (a == "--chunk")
      ok = ParseBytes(v, &synth.chunk_bytes) && synth.chunk_bytes > 0;
    else if (a == "--gpu-tflops")
      ok = absl::SimpleAtod(v, &synth.gpu_tflops) && synth.gpu_tflops > 0;
    else if (a == "--policy")
      policies = absl::StrSplit(v, ',');
    else if (a == "--learned-window")
      ok = ParseBytes(v, &machine.learned_window_bytes) && machine.learned_window_bytes > 0;
    else
      return Usage("unknown flag " + a);
    if (!ok) return Usage("bad value for " + a + ": " + v);
  }
  if (preset == "pcie4") {
    machine.h2d_gbps = machine.d2h_gbps = 25;
  } else if (preset == "pcie5") {
    machine.h2d_gbps = machine.d2h_gbps = 50;
  } else {
    return Usage("unknown --machine " + preset);
  }
  if (h2d > 0) machine.h2d_gbps = h2d;
  if (d2h > 0) machine.d2h_gbps = d2h;
  machine.nvme_write_gbps = nvme_write > 0 ? nvme_write : machine.nvme_read_gbps;
  for (const std::string& p : policies) {
    if (!MakePolicy(p)) return Usage("unknown policy " + p);
  }
  synth.hbm_gbps = machine.hbm_gbps;

  if (!synth_model.empty()) {
    auto shape = FindModelShape(synth_model);
    if (!shape) return Usage("unknown model " + synth_model);
    if (out_path.empty()) return Usage("--synthesize needs --out FILE");
    std::ofstream out(out_path);
    WriteTrace(SynthesizeDecode(*shape, synth), out);
    if (!out) return Usage("cannot write " + out_path);
    return 0;
  }

  std::vector<Comparison> rows;
  auto compare = [&](const std::string& label, const Trace& trace) {
    machine.hbm_bytes =
        hbm_bytes > 0 ? hbm_bytes : static_cast<uint64_t>(hbm_fraction * trace.WeightBytes());
    machine.host_bytes = host_fraction >= 0
                             ? static_cast<uint64_t>(host_fraction * trace.WeightBytes())
                             : host_bytes;
    auto cmp = Compare(label, trace, machine, policies, warmup);
    if (!cmp.ok()) {
      std::fprintf(stderr, "trace_sim: %s: %s\n", label.c_str(), cmp.status().ToString().c_str());
      return false;
    }
    rows.push_back(std::move(*cmp));
    return true;
  };
  if (sweep && !tier_flag.empty()) {
    // Every row has its own HBM and host sizes: one given for all would be ignored (or,
    // as --hbm once did, silently override every row).
    return Usage("--sweep sets the HBM and host sizes of its rows; drop " + tier_flag);
  }
  if (sweep) {
    if (!steps_given) synth.steps = 24;
    host_fraction = -1;  // The sweep sets the tiers itself.
    host_bytes = Machine::kUnlimited;
    for (const char* model : {"llama3-8b", "llama3-70b"}) {
      for (int batch : {1, 32}) {
        synth.batch = batch;
        const Trace trace = SynthesizeDecode(*FindModelShape(model), synth);
        for (double f : {0.8, 0.5, 0.25}) {
          hbm_fraction = f;
          if (!compare(std::string(model) + " b" + std::to_string(batch), trace)) return 1;
        }
      }
    }
    // The NVMe rows: the weights fit in neither HBM nor HBM + host; a quarter streams from
    // NVMe every step.
    synth.batch = 1;
    hbm_fraction = 0.25;
    host_fraction = 0.5;
    for (const char* model : {"llama3-8b", "llama3-70b"}) {
      const Trace trace = SynthesizeDecode(*FindModelShape(model), synth);
      if (!compare(std::string(model) + " b1", trace)) return 1;
      const Machine given = machine;
      machine.h2d_gbps = machine.d2h_gbps = 25;  // The same on PCIe Gen4.
      if (!compare(std::string(model) + " b1 pcie4", trace)) return 1;
      machine = given;
    }
  } else if (!trace_path.empty()) {
    auto trace = ParseTraceFile(trace_path);
    if (!trace.ok()) {
      std::fprintf(stderr, "trace_sim: %s\n", trace.status().ToString().c_str());
      return 1;
    }
    if (!compare(trace_path, *trace)) return 1;
  } else {
    return Usage("give --trace FILE, --synthesize MODEL or --sweep");
  }
  std::printf(
      "link %.0f/%.0f GB/s H2D/D2H, HBM bandwidth %.0f GB/s, NVMe %.1f/%.1f GB/s read/write; "
      "per-step over steps after %d\n",
      machine.h2d_gbps, machine.d2h_gbps, machine.hbm_gbps, machine.nvme_read_gbps,
      machine.nvme_write_gbps, warmup);
  PrintTable(rows, std::cout);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    WriteJson(rows, machine, out);
    if (!out) return Usage("cannot write " + json_path);
  }
  return 0;
}

}  // namespace
}  // namespace spillway::trace_sim

int main(int argc, char** argv) { return spillway::trace_sim::Main(argc, argv); }
