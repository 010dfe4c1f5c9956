// SPDX-License-Identifier: Apache-2.0
//
// Policy comparison, text table and JSON (contract in report.h).

#include "report.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "fmt/format.h"
#include "fmt/ostream.h"

namespace spillway::trace_sim {
namespace {

struct Window {
  StepMark begin, end;
  size_t steps = 1;
};

Window SteadyWindow(const SimResult& r, int warmup_steps) {
  Window w;
  if (r.steps.empty()) {
    w.end = {.time_ns = r.total_ns,
             .h2d_bytes = r.h2d_bytes,
             .d2h_bytes = r.d2h_bytes,
             .nvme_read_bytes = r.nvme_read_bytes,
             .nvme_write_bytes = r.nvme_write_bytes,
             .compute_ns = r.compute_ns,
             .stall_ns = r.stall_ns};
    return w;
  }
  const size_t warm = std::min<size_t>(std::max(warmup_steps, 0), r.steps.size() - 1);
  if (warm > 0) w.begin = r.steps[warm - 1];
  w.end = r.steps.back();
  w.steps = r.steps.size() - warm;
  return w;
}

// H2D bytes moved in each step, as a JSON list body.
std::string StepBytes(const SimResult& r) {
  std::string out;
  uint64_t before = 0;
  for (const StepMark& m : r.steps) {
    out += fmt::format("{}{}", out.empty() ? "" : ", ", m.h2d_bytes - before);
    before = m.h2d_bytes;
  }
  return out;
}

double Ms(double ns) { return ns / 1e6; }
double GB(uint64_t bytes) { return static_cast<double>(bytes) / 1e9; }

double Ratio(uint64_t x, uint64_t reference) {
  if (reference == 0) return x == 0 ? 1.0 : 0.0;
  return static_cast<double>(x) / static_cast<double>(reference);
}

}  // namespace

absl::StatusOr<Comparison> Compare(const std::string& label, const Trace& trace,
                                   const Machine& machine, const std::vector<std::string>& policies,
                                   int warmup_steps) {
  Comparison cmp;
  cmp.label = label;
  cmp.hbm_bytes = machine.hbm_bytes;
  cmp.host_bytes = machine.host_bytes;
  cmp.h2d_gbps = machine.h2d_gbps;
  cmp.weight_bytes = trace.WeightBytes();
  const Replay replay = MakeReplay(trace, machine);
  auto run_on = [&](const std::string& name, const Machine& m) -> absl::StatusOr<SimResult> {
    auto policy = MakePolicy(name);
    if (!policy) return absl::InvalidArgumentError(absl::StrCat("unknown policy ", name));
    Simulator sim(replay, m, *policy);
    return sim.Run();
  };
  auto run = [&](const std::string& name) { return run_on(name, machine); };
  double nvme_step_ns = 0;
  if (machine.host_bytes != Machine::kUnlimited) {
    Machine merged = machine;
    merged.hbm_bytes = machine.hbm_bytes + machine.host_bytes;
    merged.host_bytes = Machine::kUnlimited;
    absl::StatusOr<SimResult> r = run_on("belady", merged);
    if (!r.ok()) return r.status();
    const Window w = SteadyWindow(*r, warmup_steps);
    cmp.min_nvme_read_bytes = r->h2d_bytes;
    cmp.min_nvme_window_read_bytes = (w.end.h2d_bytes - w.begin.h2d_bytes) / w.steps;
    nvme_step_ns = static_cast<double>(cmp.min_nvme_window_read_bytes) / machine.nvme_read_gbps;
  }
  absl::StatusOr<SimResult> belady = run("belady");
  if (!belady.ok()) return belady.status();
  const Window bw = SteadyWindow(*belady, warmup_steps);
  cmp.window_steps = bw.steps;
  cmp.belady_h2d_bytes = belady->h2d_bytes;
  cmp.belady_window_h2d_bytes = (bw.end.h2d_bytes - bw.begin.h2d_bytes) / bw.steps;
  const double steps = static_cast<double>(bw.steps);
  cmp.compute_step_ns = (bw.end.compute_ns - bw.begin.compute_ns) / steps;
  const double link_step_ns =
      static_cast<double>(bw.end.h2d_bytes - bw.begin.h2d_bytes) / machine.h2d_gbps / steps;
  cmp.bound_step_ns = std::max({cmp.compute_step_ns, link_step_ns, nvme_step_ns});
  for (const std::string& name : policies) {
    absl::StatusOr<SimResult> r = name == "belady" ? belady : run(name);
    if (!r.ok()) return r.status();
    PolicyReport p;
    const Window w = SteadyWindow(*r, warmup_steps);
    p.step_ns = (w.end.time_ns - w.begin.time_ns) / static_cast<double>(w.steps);
    p.window_h2d_bytes = (w.end.h2d_bytes - w.begin.h2d_bytes) / w.steps;
    p.bytes_vs_belady = Ratio(r->h2d_bytes, cmp.belady_h2d_bytes);
    p.window_bytes_vs_belady = Ratio(p.window_h2d_bytes, cmp.belady_window_h2d_bytes);
    p.window_nvme_read_bytes = (w.end.nvme_read_bytes - w.begin.nvme_read_bytes) / w.steps;
    p.window_nvme_vs_min = Ratio(p.window_nvme_read_bytes, cmp.min_nvme_window_read_bytes);
    p.step_vs_bound = cmp.bound_step_ns > 0 ? p.step_ns / cmp.bound_step_ns : 0;
    p.result = std::move(*r);
    cmp.policies.push_back(std::move(p));
  }
  return cmp;
}

void PrintTable(const std::vector<Comparison>& rows, std::ostream& out) {
  fmt::print(out,
             "{:<24} {:>5} {:>5} {:<13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8} {:>8} "
             "{:>8} {:>8}\n",
             "trace", "hbm%", "host%", "policy", "H2D GB", "D2H GB", "NVMe R GB", "NVMe W GB",
             "stall ms", "total ms", "step ms", "B/Bel", "Bst/Bel", "Nst/min", "step/bnd");
  for (const Comparison& c : rows) {
    const double weights = static_cast<double>(c.weight_bytes);
    const double pct = c.weight_bytes ? 100.0 * c.hbm_bytes / weights : 0;
    const bool nvme = c.host_bytes != Machine::kUnlimited;
    const std::string host = nvme && c.weight_bytes
                                 ? fmt::format("{:.0f}", 100.0 * c.host_bytes / weights)
                                 : std::string("-");
    // The NVMe columns read "-" without a host limit (no NVMe traffic by definition).
    auto nvme_gb = [&](uint64_t bytes) {
      return nvme ? fmt::format("{:.2f}", GB(bytes)) : std::string("-");
    };
    for (const PolicyReport& p : c.policies) {
      fmt::print(out,
                 "{:<24} {:>5.0f} {:>5} {:<13} {:>9.2f} {:>9.2f} {:>9} {:>9} {:>9.1f} {:>10.1f} "
                 "{:>10.2f} {:>8.3f} {:>8.3f} {:>8} {:>8.3f}\n",
                 c.label, pct, host, p.result.policy, GB(p.result.h2d_bytes),
                 GB(p.result.d2h_bytes), nvme_gb(p.result.nvme_read_bytes),
                 nvme_gb(p.result.nvme_write_bytes), Ms(p.result.stall_ns), Ms(p.result.total_ns),
                 Ms(p.step_ns), p.bytes_vs_belady, p.window_bytes_vs_belady,
                 nvme ? fmt::format("{:.3f}", p.window_nvme_vs_min) : "-", p.step_vs_bound);
    }
    fmt::print(
        out,
        "{:<24} {:>5.0f} {:>5} {:<13} {:>9.2f} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10.2f}   "
        "(compute {:.2f} ms/step{})\n",
        c.label, pct, host, "bound", GB(c.belady_h2d_bytes), "", nvme_gb(c.min_nvme_read_bytes), "",
        "", "", Ms(c.bound_step_ns), Ms(c.compute_step_ns),
        nvme ? fmt::format("; min NVMe reads {:.2f} GB/step", GB(c.min_nvme_window_read_bytes))
             : "");
  }
}

void WriteJson(const std::vector<Comparison>& rows, const Machine& machine, std::ostream& out) {
  fmt::print(out,
             "{{\n  \"machine\": {{\"h2d_gbps\": {}, \"d2h_gbps\": {}, \"hbm_gbps\": {}, "
             "\"nvme_read_gbps\": {}, \"nvme_write_gbps\": {}}},\n",
             machine.h2d_gbps, machine.d2h_gbps, machine.hbm_gbps, machine.nvme_read_gbps,
             machine.nvme_write_gbps);
  fmt::print(out, "  \"rows\": [\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Comparison& c = rows[i];
    fmt::print(out,
               "    {{\"trace\": \"{}\", \"hbm_bytes\": {}, \"weight_bytes\": {}, "
               "\"belady_h2d_bytes\": {}, \"belady_window_h2d_bytes_per_step\": {}, "
               "\"h2d_gbps\": {}, \"host_bytes\": {}, \"min_nvme_read_bytes\": {}, "
               "\"min_nvme_window_read_bytes_per_step\": {}, "
               "\"compute_step_ns\": {:.0f}, \"bound_step_ns\": {:.0f}, "
               "\"window_steps\": {}, \"policies\": [\n",
               c.label, c.hbm_bytes, c.weight_bytes, c.belady_h2d_bytes, c.belady_window_h2d_bytes,
               c.h2d_gbps,
               // null: unlimited.
               c.host_bytes == Machine::kUnlimited ? "null" : std::to_string(c.host_bytes),
               c.min_nvme_read_bytes, c.min_nvme_window_read_bytes, c.compute_step_ns,
               c.bound_step_ns, c.window_steps);
    for (size_t j = 0; j < c.policies.size(); ++j) {
      const PolicyReport& p = c.policies[j];
      fmt::print(out,
                 "      {{\"policy\": \"{}\", \"h2d_bytes\": {}, \"d2h_bytes\": {}, "
                 "\"stall_ns\": {:.0f}, \"total_ns\": {:.0f}, \"step_ns\": {:.0f}, "
                 "\"window_h2d_bytes_per_step\": {}, \"bytes_vs_belady\": {:.4f}, "
                 "\"window_bytes_vs_belady\": {:.4f}, \"step_vs_bound\": {:.4f}, "
                 "\"nvme_read_bytes\": {}, \"nvme_write_bytes\": {}, "
                 "\"window_nvme_read_bytes_per_step\": {}, \"window_nvme_vs_min\": {:.4f}, "
                 "\"step_h2d_bytes\": [{}]}}{}\n",
                 p.result.policy, p.result.h2d_bytes, p.result.d2h_bytes, p.result.stall_ns,
                 p.result.total_ns, p.step_ns, p.window_h2d_bytes, p.bytes_vs_belady,
                 p.window_bytes_vs_belady, p.step_vs_bound, p.result.nvme_read_bytes,
                 p.result.nvme_write_bytes, p.window_nvme_read_bytes, p.window_nvme_vs_min,
                 StepBytes(p.result), j + 1 < c.policies.size() ? "," : "");
    }
    fmt::print(out, "    ]}}{}\n", i + 1 < rows.size() ? "," : "");
  }
  fmt::print(out, "  ]\n}}\n");
}

}  // namespace spillway::trace_sim
