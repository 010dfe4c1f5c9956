// SPDX-License-Identifier: Apache-2.0
//
// Runs policies over one trace and compares them with the two references computed on the
// same trace: Belady's bytes (offline optimal replacement) and the bound
// max(compute, Belady's H2D bytes / H2D bandwidth, minimal NVMe read bytes / NVMe read
// bandwidth). The minimal NVMe read bytes (only with a limited host tier) are Belady's H2D
// bytes on a machine whose HBM is HBM + host: what cannot stay anywhere faster than NVMe.
// Per-step figures are taken over the steady window: the steps after `warmup_steps` (or the
// whole trace without `step` marks).
//
// Thread safety: pure functions.

#ifndef SPILLWAY_BENCH_TRACE_SIM_REPORT_H_
#define SPILLWAY_BENCH_TRACE_SIM_REPORT_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "simulator.h"
#include "trace.h"

namespace spillway::trace_sim {

struct PolicyReport {
  SimResult result;
  double step_ns = 0;                 // Steady window, per step.
  uint64_t window_h2d_bytes = 0;      // Steady window, per step.
  double bytes_vs_belady = 0;         // H2D bytes over the whole trace / Belady's.
  double window_bytes_vs_belady = 0;  // The same over the steady window.
  double step_vs_bound = 0;
  uint64_t window_nvme_read_bytes = 0;  // Steady window, per step.
  double window_nvme_vs_min = 0;        // / the minimal NVMe read bytes, steady window.
};

struct Comparison {
  std::string label;
  uint64_t hbm_bytes = 0;
  uint64_t host_bytes = Machine::kUnlimited;
  double h2d_gbps = 0;  // The row's link (the sweep's NVMe rows add pcie4).
  uint64_t weight_bytes = 0;
  uint64_t belady_h2d_bytes = 0;
  uint64_t belady_window_h2d_bytes = 0;  // Per step.
  // Belady's H2D bytes with HBM = HBM + host (0 with an unlimited host). Whole trace (an
  // overestimate there: it counts the cold start's first fetches) and per steady step.
  uint64_t min_nvme_read_bytes = 0;
  uint64_t min_nvme_window_read_bytes = 0;
  double compute_step_ns = 0;
  double bound_step_ns = 0;  // max(compute, H2D link, NVMe reads), per step.
  size_t window_steps = 0;
  std::vector<PolicyReport> policies;
};

// Belady always runs (it is the reference) even when not listed in `policies`.
absl::StatusOr<Comparison> Compare(const std::string& label, const Trace& trace,
                                   const Machine& machine, const std::vector<std::string>& policies,
                                   int warmup_steps);

void PrintTable(const std::vector<Comparison>& rows, std::ostream& out);
void WriteJson(const std::vector<Comparison>& rows, const Machine& machine, std::ostream& out);

}  // namespace spillway::trace_sim

#endif  // SPILLWAY_BENCH_TRACE_SIM_REPORT_H_
