// SPDX-License-Identifier: Apache-2.0
//
// The process-wide runtime: configuration, logging, the driver table and one tiered
// Manager per device, created on first use. The C API (c_api.cc) and the interposer are
// thin layers over it.
//
// Initialisation is lazy and happens once: the first call that needs the runtime reads
// SPILLWAY_* (with overrides from SetOption), opens the log, loads the driver and calls
// cuInit. A configuration error is remembered and returned by every later call: the
// runtime never runs on a default it substituted for a bad value.
//
// Thread safety: all methods are thread-safe. The Runtime is never destroyed (a
// preloaded library cannot know which of its users' destructors run after it).
#ifndef SPILLWAY_RUNTIME_RUNTIME_H_
#define SPILLWAY_RUNTIME_RUNTIME_H_

#include <cuda.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "runtime/manager.h"
#include "runtime/options.h"
#include "runtime/trace.h"

namespace spillway {

class Runtime {
 public:
  static constexpr int kMaxDevices = 16;

  static Runtime& Get();

  absl::Status Init() ABSL_LOCKS_EXCLUDED(mu_);
  // Before Init only: FailedPrecondition afterwards.
  absl::Status SetOption(std::string_view name, std::string_view value) ABSL_LOCKS_EXCLUDED(mu_);
  // The manager of `device`, created on first use (Init first if needed).
  absl::StatusOr<Manager*> ManagerFor(int device) ABSL_LOCKS_EXCLUDED(mu_);
  // The manager owning `address`, or null.
  Manager* Owner(CUdeviceptr address) ABSL_LOCKS_EXCLUDED(mu_);
  // Statistics summed over devices.
  ManagerStats TotalStats() ABSL_LOCKS_EXCLUDED(mu_);
  // Statistics as JSON: the totals, then per device.
  std::string StatsJson() ABSL_LOCKS_EXCLUDED(mu_);
  // Writes SPILLWAY_STATS (if set) from the figures as they are: callers drain first.
  absl::Status WriteStats() ABSL_LOCKS_EXCLUDED(mu_);
  // The process exit handler (std::atexit, registered at Init and again once the first
  // manager exists): waits, bounded, for the moves in flight, then WriteStats. Runs once.
  static void AtExit();
  // Frees every manager (and what it holds); the runtime can be initialised again.
  absl::Status Shutdown() ABSL_LOCKS_EXCLUDED(mu_);
  // For a fork child (pthread_atfork): the parent's managers and their threads are not the
  // child's, and their locks may be held. Lock-free; afterwards WriteStats does nothing, so
  // the child's exit neither blocks on those locks nor overwrites the parent's statistics.
  void DisableInForkChild() { fork_child_.store(true, std::memory_order_relaxed); }

  const Options& options() const { return options_; }  // REQUIRES: Init succeeded

 private:
  Runtime() = default;
  absl::Status InitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits up to `timeout` per manager for its moves in flight.
  void DrainAll(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  bool initialized_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status init_status_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, std::string>> overrides_ ABSL_GUARDED_BY(mu_);
  Options options_;  // written once, under mu_, before initialized_ is set
  // SPILLWAY_TRACE's writer; declared before the managers, which write to it.
  std::unique_ptr<TraceWriter> trace_ ABSL_GUARDED_BY(mu_);
  std::array<std::unique_ptr<Manager>, kMaxDevices> managers_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> fork_child_{false};
};

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_RUNTIME_H_
