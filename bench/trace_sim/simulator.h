// SPDX-License-Identifier: Apache-2.0
//
// The replay engine of trace_sim: HBM as a fixed number of chunk slots, one H2D and one D2H
// copy engine (each a FIFO at its bandwidth, full duplex), streams that run their launches
// in order, and a Policy that picks victims and may prefetch.
//
// Timeline contract (docs/trace_sim.md): a launch starts when the previous launch on its
// stream has ended and all its chunks are resident; it then runs for its compute time.
// A demand fetch is issued when the launch could otherwise start. Evicting a kv/other chunk
// writes it back (D2H) after the last launch using it ends; its slot is free when that copy
// ends. Weights are clean. A kv/other chunk never written before materialises in HBM
// without a copy (fresh memory). Recorded `t_ns` only orders launches; it is not a time.
//
// Thread safety: none; one Simulator per thread.

#ifndef SPILLWAY_BENCH_TRACE_SIM_SIMULATOR_H_
#define SPILLWAY_BENCH_TRACE_SIM_SIMULATOR_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <queue>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "trace.h"

namespace spillway::trace_sim {

using ChunkId = uint32_t;
inline constexpr ChunkId kNoChunk = std::numeric_limits<ChunkId>::max();

struct Machine {
  double h2d_gbps = 50;  // GB/s = bytes per ns.
  double d2h_gbps = 50;
  double hbm_gbps = 4000;             // For compute estimates of launches without compute_ns.
  double compute_ns_per_launch = -1;  // >= 0: overrides every launch's compute time.
  uint64_t hbm_bytes = 0;
};

// A trace flattened for replay: launches with deduplicated chunk lists and compute times.
struct Replay {
  struct Launch {
    uint64_t stream = 0;
    double compute_ns = 0;
    uint32_t begin = 0, end = 0;  // Into chunks.
  };
  struct Op {
    enum class Type : uint8_t { kLaunch, kFree, kStep };
    Type type;
    uint32_t index;  // Launch index or allocation index.
  };
  const Trace* trace = nullptr;
  std::vector<Launch> launches;
  std::vector<ChunkId> chunks;       // All launches' chunks, concatenated.
  std::vector<uint8_t> chunk_dirty;  // Per chunk: 1 = kv/other (written back on eviction).
  std::vector<uint32_t> chunk_alloc;
  std::vector<Op> ops;
  size_t steps = 0;

  std::span<const ChunkId> LaunchChunks(size_t n) const {
    return {chunks.data() + launches[n].begin, launches[n].end - launches[n].begin};
  }
};

Replay MakeReplay(const Trace& trace, const Machine& machine);

class Simulator;

// Eviction order shared by the policies: larger key = evicted first; at equal key a clean
// chunk goes before a dirty one (same refetch cost, no write-back).
class VictimOrder {
 public:
  void Reset(size_t num_chunks, const std::vector<uint8_t>* dirty);
  void Set(ChunkId c, int64_t key);
  void Remove(ChunkId c);
  bool Contains(ChunkId c) const { return in_set_[c] != 0; }
  int64_t Key(ChunkId c) const { return key_[c]; }
  // First unpinned chunk in eviction order whose key is > min_key; kNoChunk if none.
  ChunkId Pick(const Simulator& sim, int64_t min_key = std::numeric_limits<int64_t>::min()) const;
  // Like Pick, but among the first `scan` candidates prefers one whose slot is free by
  // `now` (its last launch has ended), so a prefetch need not wait for a running launch.
  // Chunks with keep[c] != 0 are skipped.
  ChunkId PickIdle(const Simulator& sim, int64_t min_key, double now, int scan,
                   const std::vector<uint8_t>& keep) const;
  template <typename F>
  void ForEach(F f) const {
    for (const auto& e : set_) f(std::get<2>(e));
  }

 private:
  std::set<std::tuple<int64_t, int, ChunkId>> set_;  // (key, clean, chunk)
  std::vector<int64_t> key_;
  std::vector<uint8_t> in_set_;
  const std::vector<uint8_t>* dirty_ = nullptr;
};

// A replacement (and optionally prefetch) policy. The simulator calls, per launch n:
// BeforeLaunch, then ChooseVictim for each slot it needs, OnInsert for each chunk made
// resident, OnAccess for each chunk of the launch, then AfterLaunch. OnRemove for every
// chunk leaving HBM (eviction or free).
class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string Name() const = 0;
  virtual void Begin(const Replay& replay) = 0;
  virtual void BeforeLaunch(size_t /*n*/) {}
  virtual ChunkId ChooseVictim(const Simulator& sim, size_t n) = 0;
  virtual void OnInsert(ChunkId c, size_t n) = 0;
  // pos: index of this access in Replay::chunks.
  virtual void OnAccess(ChunkId c, size_t n, size_t pos) = 0;
  virtual void OnRemove(ChunkId c) = 0;
  virtual void AfterLaunch(Simulator& /*sim*/, size_t /*n*/, double /*now*/) {}
};

// Known names: ondemand-lru, belady, learned. Returns nullptr for anything else.
std::unique_ptr<Policy> MakePolicy(const std::string& name);
std::vector<std::string> PolicyNames();

struct StepMark {
  double time_ns = 0;  // All launches so far have ended.
  uint64_t h2d_bytes = 0, d2h_bytes = 0;
  double compute_ns = 0;  // Cumulative.
  double stall_ns = 0;
};

struct SimResult {
  std::string policy;
  uint64_t h2d_bytes = 0, d2h_bytes = 0;
  double stall_ns = 0;    // Sum over launches of (start - ready).
  double total_ns = 0;    // Makespan.
  double compute_ns = 0;  // Sum of compute times.
  std::vector<StepMark> steps;
};

class Simulator {
 public:
  Simulator(const Replay& replay, const Machine& machine, Policy& policy);
  absl::StatusOr<SimResult> Run();

  // For policies.
  const Replay& replay() const { return replay_; }
  bool IsResident(ChunkId c) const { return resident_[c] != 0; }
  bool IsPinned(ChunkId c) const { return pinned_[c] != 0; }
  bool HasFreeSlot() const { return !free_slots_.empty(); }
  bool IsLive(ChunkId c) const { return freed_[replay_.chunk_alloc[c]] == 0; }
  // When c's slot could be reused: its copy in has landed and its last launch has ended.
  double BusyUntil(ChunkId c) const { return std::max(busy_until_[c], arrival_[c]); }
  // Removes a resident, unpinned chunk (writing it back if dirty).
  void Evict(ChunkId c);
  // Makes c resident, copying it (or materialising it if never written); needs a free slot.
  void Bring(ChunkId c, double now);
  double h2d_free_at() const { return h2d_free_; }

 private:
  const Replay& replay_;
  Machine machine_;
  Policy& policy_;
  size_t current_launch_ = 0;
  double h2d_ns_per_chunk_, d2h_ns_per_chunk_;
  double h2d_free_ = 0, d2h_free_ = 0;
  std::priority_queue<double, std::vector<double>, std::greater<>> free_slots_;
  std::vector<uint8_t> resident_, pinned_, materialised_, freed_;
  std::vector<double> arrival_, busy_until_;
  SimResult result_;
};

}  // namespace spillway::trace_sim

#endif  // SPILLWAY_BENCH_TRACE_SIM_SIMULATOR_H_
