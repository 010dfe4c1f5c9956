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
    w.end = {r.total_ns, r.h2d_bytes, r.d2h_bytes, r.compute_ns, r.stall_ns};
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

}  // namespace

absl::StatusOr<Comparison> Compare(const std::string& label, const Trace& trace,
                                   const Machine& machine, const std::vector<std::string>& policies,
                                   int warmup_steps) {
  Comparison cmp;
  cmp.label = label;
  cmp.hbm_bytes = machine.hbm_bytes;
  cmp.weight_bytes = trace.WeightBytes();
  const Replay replay = MakeReplay(trace, machine);
  auto run = [&](const std::string& name) -> absl::StatusOr<SimResult> {
    auto policy = MakePolicy(name);
    if (!policy) return absl::InvalidArgumentError(absl::StrCat("unknown policy ", name));
    Simulator sim(replay, machine, *policy);
    return sim.Run();
  };
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
  cmp.bound_step_ns = std::max(cmp.compute_step_ns, link_step_ns);
  for (const std::string& name : policies) {
    absl::StatusOr<SimResult> r = name == "belady" ? belady : run(name);
    if (!r.ok()) return r.status();
    PolicyReport p;
    const Window w = SteadyWindow(*r, warmup_steps);
    p.step_ns = (w.end.time_ns - w.begin.time_ns) / static_cast<double>(w.steps);
    p.window_h2d_bytes = (w.end.h2d_bytes - w.begin.h2d_bytes) / w.steps;
    p.bytes_vs_belady = cmp.belady_h2d_bytes == 0
                            ? (r->h2d_bytes == 0 ? 1.0 : 0.0)
                            : static_cast<double>(r->h2d_bytes) / cmp.belady_h2d_bytes;
    p.window_bytes_vs_belady =
        cmp.belady_window_h2d_bytes == 0
            ? (p.window_h2d_bytes == 0 ? 1.0 : 0.0)
            : static_cast<double>(p.window_h2d_bytes) / cmp.belady_window_h2d_bytes;
    p.step_vs_bound = cmp.bound_step_ns > 0 ? p.step_ns / cmp.bound_step_ns : 0;
    p.result = std::move(*r);
    cmp.policies.push_back(std::move(p));
  }
  return cmp;
}

void PrintTable(const std::vector<Comparison>& rows, std::ostream& out) {
  fmt::print(out, "{:<24} {:>6} {:<13} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8} {:>8} {:>8}\n",
             "trace", "hbm%", "policy", "H2D GB", "D2H GB", "stall ms", "total ms", "step ms",
             "B/Bel", "Bst/Bel", "step/bnd");
  for (const Comparison& c : rows) {
    const double pct = c.weight_bytes ? 100.0 * c.hbm_bytes / c.weight_bytes : 0;
    for (const PolicyReport& p : c.policies) {
      fmt::print(out,
                 "{:<24} {:>6.0f} {:<13} {:>9.2f} {:>9.2f} {:>9.1f} {:>10.1f} {:>10.2f} {:>8.3f} "
                 "{:>8.3f} {:>8.3f}\n",
                 c.label, pct, p.result.policy, GB(p.result.h2d_bytes), GB(p.result.d2h_bytes),
                 Ms(p.result.stall_ns), Ms(p.result.total_ns), Ms(p.step_ns), p.bytes_vs_belady,
                 p.window_bytes_vs_belady, p.step_vs_bound);
    }
    fmt::print(
        out,
        "{:<24} {:>6.0f} {:<13} {:>9.2f} {:>9} {:>9} {:>10} {:>10.2f}   (compute {:.2f} ms/step)\n",
        c.label, pct, "bound", GB(c.belady_h2d_bytes), "", "", "", Ms(c.bound_step_ns),
        Ms(c.compute_step_ns));
  }
}

void WriteJson(const std::vector<Comparison>& rows, const Machine& machine, std::ostream& out) {
  fmt::print(out, "{{\n  \"machine\": {{\"h2d_gbps\": {}, \"d2h_gbps\": {}, \"hbm_gbps\": {}}},\n",
             machine.h2d_gbps, machine.d2h_gbps, machine.hbm_gbps);
  fmt::print(out, "  \"rows\": [\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Comparison& c = rows[i];
    fmt::print(out,
               "    {{\"trace\": \"{}\", \"hbm_bytes\": {}, \"weight_bytes\": {}, "
               "\"belady_h2d_bytes\": {}, \"belady_window_h2d_bytes_per_step\": {}, "
               "\"compute_step_ns\": {:.0f}, \"bound_step_ns\": {:.0f}, "
               "\"window_steps\": {}, \"policies\": [\n",
               c.label, c.hbm_bytes, c.weight_bytes, c.belady_h2d_bytes, c.belady_window_h2d_bytes,
               c.compute_step_ns, c.bound_step_ns, c.window_steps);
    for (size_t j = 0; j < c.policies.size(); ++j) {
      const PolicyReport& p = c.policies[j];
      fmt::print(out,
                 "      {{\"policy\": \"{}\", \"h2d_bytes\": {}, \"d2h_bytes\": {}, "
                 "\"stall_ns\": {:.0f}, \"total_ns\": {:.0f}, \"step_ns\": {:.0f}, "
                 "\"window_h2d_bytes_per_step\": {}, \"bytes_vs_belady\": {:.4f}, "
                 "\"window_bytes_vs_belady\": {:.4f}, \"step_vs_bound\": {:.4f}, "
                 "\"step_h2d_bytes\": [{}]}}{}\n",
                 p.result.policy, p.result.h2d_bytes, p.result.d2h_bytes, p.result.stall_ns,
                 p.result.total_ns, p.step_ns, p.window_h2d_bytes, p.bytes_vs_belady,
                 p.window_bytes_vs_belady, p.step_vs_bound, StepBytes(p.result),
                 j + 1 < c.policies.size() ? "," : "");
    }
    fmt::print(out, "    ]}}{}\n", i + 1 < rows.size() ? "," : "");
  }
  fmt::print(out, "  ]\n}}\n");
}

}  // namespace spillway::trace_sim
