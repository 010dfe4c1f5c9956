// SPDX-License-Identifier: Apache-2.0
//
// The replay engine of trace_sim: HBM as a fixed number of chunk slots, one H2D and one D2H
// copy engine (each a FIFO at its bandwidth, full duplex), streams that run their launches
// in order, and a Policy that picks victims and may prefetch. Optionally a host tier of
// limited size backed by NVMe, with one NVMe read and one NVMe write engine (FIFOs).
//
// Timeline contract (docs/trace_sim.md): a launch starts when the previous launch on its
// stream has ended and all its chunks are resident; it then runs for its compute time.
// A demand fetch is issued when the launch could otherwise start. Evicting a kv/other chunk
// writes it back (D2H) after the last launch using it ends; its slot is free when that copy
// ends. Weights are clean. A kv/other chunk never written before materialises in HBM
// without a copy (fresh memory). Recorded `t_ns` only orders launches; it is not a time.
//
// NVMe tier (only when Machine::host_bytes is limited): the host tier holds up to
// host_bytes / chunk_bytes chunks that are not in HBM (tiers are exclusive; a clean chunk
// leaving HBM needs no copy, as without the limit: its host copy is taken to be still
// valid). Everything else that exists is on NVMe. Weights are clean and always have a copy
// on NVMe (the model file), so dropping one from host is free; a kv/other chunk dropped from
// host is written to NVMe (the write engine; its host slot is free when the write ends).
// Fetching a chunk that is on NVMe reads it (the read engine) into a bounce buffer outside
// the host tier, and its H2D copy starts once the read has ended; a policy may instead stage
// it (Stage: a read into a host slot, ahead of use). A chunk leaving host for HBM frees its
// slot at once (the copy in flight is not counted), and the host drops what is over its
// capacity after each fetch (SettleHost), so a swap needs no spare slot. At the
// start the host holds the first host_slots weight chunks in first-touch order, the rest
// are on NVMe. A chunk entering the host tier (evicted from HBM, staged, or at the start)
// takes the key Policy::HostKey gives it; when the host is full, the chunk with the largest
// key (clean first at a tie) leaves, which may be the one entering. Belady and LRU use
// their HBM order (next use; last use), so neither gets a smarter host; learned says
// otherwise (learned_policy.cc).
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
  // Host tier for chunks not in HBM; kUnlimited: no NVMe traffic at all.
  static constexpr uint64_t kUnlimited = std::numeric_limits<uint64_t>::max();
  uint64_t host_bytes = kUnlimited;
  double nvme_read_gbps = 7;  // A PCIe Gen4 x4 drive.
  double nvme_write_gbps = 7;
  // Not the machine's but the learned policy's: bytes it may fetch ahead of need (0: a
  // quarter of the widest launch). For comparing window rules, e.g. the runtime's
  // (PrefetchWindowBytes) with an eighth of HBM.
  uint64_t learned_window_bytes = 0;
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
// chunk leaving HBM (eviction or free). With a limited host tier, HostKey(c) just before a
// chunk enters it (before OnRemove when it leaves HBM; after Begin for the initial ones).
class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string Name() const = 0;
  virtual void Begin(const Replay& replay, const Machine& machine) = 0;
  virtual void BeforeLaunch(size_t /*n*/) {}
  virtual ChunkId ChooseVictim(const Simulator& sim, size_t n) = 0;
  virtual void OnInsert(ChunkId c, size_t n) = 0;
  // pos: index of this access in Replay::chunks.
  virtual void OnAccess(ChunkId c, size_t n, size_t pos) = 0;
  virtual void OnRemove(ChunkId c) = 0;
  // The host tier's eviction key for c (larger = dropped first), in the policy's own order.
  virtual int64_t HostKey(ChunkId c) const = 0;
  virtual void AfterLaunch(Simulator& /*sim*/, size_t /*n*/, double /*now*/) {}
};

// Known names: ondemand-lru, belady, learned. Returns nullptr for anything else.
std::unique_ptr<Policy> MakePolicy(const std::string& name);
std::vector<std::string> PolicyNames();

struct StepMark {
  double time_ns = 0;  // All launches so far have ended.
  uint64_t h2d_bytes = 0, d2h_bytes = 0;
  uint64_t nvme_read_bytes = 0, nvme_write_bytes = 0;
  double compute_ns = 0;  // Cumulative.
  double stall_ns = 0;
};

struct SimResult {
  std::string policy;
  uint64_t h2d_bytes = 0, d2h_bytes = 0;
  uint64_t nvme_read_bytes = 0, nvme_write_bytes = 0;
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
  // A chunk on NVMe is read into host first.
  void Bring(ChunkId c, double now);
  double h2d_free_at() const { return h2d_free_; }

  // The NVMe tier (all false / no-ops with an unlimited host).
  bool HostLimited() const { return host_limited_; }
  bool InHost(ChunkId c) const { return in_host_[c] != 0; }
  // Exists, is not in HBM or host: a fetch would read it from NVMe first.
  bool OnNvme(ChunkId c) const {
    return host_limited_ && !resident_[c] && !in_host_[c] &&
           (!replay_.chunk_dirty[c] || materialised_[c]);
  }
  // Reads c (OnNvme) into a host slot with host key `key`, dropping the host chunk with
  // the largest key if that key is > `key`; false (nothing done) when there is none.
  bool Stage(ChunkId c, double now, int64_t key);
  // Changes the host key of c (InHost).
  void SetHostKey(ChunkId c, int64_t key) { host_order_.Set(c, key); }

 private:
  const Replay& replay_;
  Machine machine_;
  Policy& policy_;
  size_t current_launch_ = 0;
  double h2d_ns_per_chunk_, d2h_ns_per_chunk_;
  double h2d_free_ = 0, d2h_free_ = 0;
  using SlotQueue = std::priority_queue<double, std::vector<double>, std::greater<>>;
  SlotQueue free_slots_;  // When each free HBM slot can be written.
  std::vector<uint8_t> resident_, pinned_, materialised_, freed_;
  std::vector<double> arrival_, busy_until_;

  void SettleHost();               // Drops the chunks with the largest keys while the host is over.
  double DropFromHost(ChunkId c);  // Writes c to NVMe if dirty; returns when its slot is free.
  double ReadFromNvme(double now, double slot_free);  // Returns when the read ends.

  bool host_limited_ = false;
  double nvme_read_ns_per_chunk_ = 0, nvme_write_ns_per_chunk_ = 0;
  double nvme_read_free_ = 0, nvme_write_free_ = 0;
  uint64_t host_slots_ = 0, host_count_ = 0;
  VictimOrder host_order_;  // The chunks in the host tier, by HostKey.
  std::vector<uint8_t> in_host_;
  std::vector<double> host_ready_;  // When c's data is complete in its host slot.
  SimResult result_;
};

}  // namespace spillway::trace_sim

#endif  // SPILLWAY_BENCH_TRACE_SIM_SIMULATOR_H_
