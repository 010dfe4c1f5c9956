// SPDX-License-Identifier: Apache-2.0
//
// The tiered memory manager: managed allocations behind stable pointers, their chunks
// placed in HBM, host memory (and NVMe), moved on request and under pressure.
//
// Every managed allocation is a VA reservation cut into chunks (chunk.h). A chunk is
// always mapped to device or host-located physical memory — the GPU can read and write
// it wherever it is — except chunks of guarded allocations, which may live on NVMe with
// their range unmapped (architecture.md: "The invariant").
//
// Moves are planned here and executed by the Mover, ordered after the application's work
// on the streams that may use the chunks and before their later work (mover.h). Which
// streams may use a chunk: the stream of the last call that named it (allocation,
// prefetch, evict, launch). C API contract (docs/c-api.md): use a managed range only on
// the stream you last named for it, or synchronise before switching streams.
//
// Capacity: device chunks come from a pool capped by SPILLWAY_HBM_LIMIT (and the device),
// host chunks from one capped by SPILLWAY_HOST_LIMIT. New allocations go to HBM while the
// device pool has room, else to host memory; a prefetch to HBM evicts victims the policy
// picks (never PIN chunks, never chunks being moved).
//
// Thread safety: all public methods are thread-safe. Lock order: Manager::mu_ before the
// Mover's and the pools' mutexes. No method blocks on device work while holding mu_.
#ifndef SPILLWAY_RUNTIME_MANAGER_H_
#define SPILLWAY_RUNTIME_MANAGER_H_

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/allocation_map.h"
#include "runtime/chunk.h"
#include "runtime/mover.h"
#include "runtime/nvme_store.h"
#include "runtime/physical_pool.h"
#include "runtime/policy.h"
#include "runtime/trace.h"

namespace spillway {

struct ManagerConfig {
  int device = 0;
  size_t chunk_bytes = size_t{2} << 20;  // a multiple of the mapping granularity
  size_t hbm_limit_bytes = 0;            // capped at the device's memory
  size_t host_limit_bytes = 0;
  std::string policy = "learned";
  // NVMe tier: on when nvme_directory is set.
  std::string nvme_directory;
  uint64_t nvme_limit_bytes = 0;
  unsigned nvme_queue_depth = 8;
  // Learned policy: bytes fetched ahead of the launches that need them, at most (0: an
  // eighth of the HBM limit).
  uint64_t prefetch_ahead_bytes = 0;
  // How long moves may stall before the mover warns (Mover::kStallWarning); tests shorten it.
  absl::Duration stall_warning = Mover::kStallWarning;
  // Test-only: passed to the NVMe store (NvmeStoreConfig::completion_hook) to inject I/O
  // errors. Empty in production.
  std::function<int(const NvmeIoCompletion&, int result)> nvme_completion_hook;
  // Where the access trace goes (SPILLWAY_TRACE), or null; it must outlive the manager.
  TraceWriter* trace = nullptr;
};

struct ManagerStats {
  uint64_t allocations = 0;      // live managed allocations
  uint64_t allocated_bytes = 0;  // their sizes, as asked for
  uint64_t device_bytes = 0;     // managed bytes resident per tier (whole chunks)
  uint64_t host_bytes = 0;
  uint64_t nvme_bytes = 0;
  uint64_t peak_device_bytes = 0;  // HBM the manager has held at most
  uint64_t h2d_bytes = 0;          // bytes moved, per link and direction
  uint64_t d2h_bytes = 0;
  uint64_t nvme_read_bytes = 0;
  uint64_t nvme_write_bytes = 0;
  uint64_t fetches_on_demand = 0;   // chunks fetched because a launch needed them
  uint64_t fetches_prefetched = 0;  // chunks fetched ahead of need
  uint64_t evictions = 0;           // chunks that left HBM
  uint64_t spills = 0;              // chunks written to NVMe
  uint64_t spills_unchanged = 0;    // chunks spilled without a write: the extent held their bytes
  uint64_t stall_ns = 0;            // time application streams were held for moves
  // Host time re-pointing ranges once moves' copies were done (unmap, map, set access: page
  // table updates). Launches held at a move's gate wait for it too.
  uint64_t remap_ns = 0;
  uint64_t moves = 0;  // move jobs completed
  // The link as measured (LinkMeter: at start-up, then from the moves' copies), in bytes
  // per second; 0 when not measured yet. Summed over devices in a total.
  uint64_t h2d_link_bytes_per_s = 0;
  uint64_t d2h_link_bytes_per_s = 0;
};

// The learned prefetch's window: how many bytes may be fetched ahead of the launches that
// need them. Every byte ahead holds HBM that Belady's rule would keep, so the window is
// what keeps the link busy and no more: the bytes the measured link moves in
// kPrefetchLead, and at least a quarter of the widest predicted launch (in pieces of that
// size the launch's own fetches overlap the launches before it); never more than an eighth
// of HBM (or the widest launch, if larger), nor half of it. `configured`
// (SPILLWAY_PREFETCH_AHEAD) replaces the rule; `link_bytes_per_s` 0 (not measured) leaves
// the HBM fraction. At least two chunks.
inline constexpr double kPrefetchLeadSeconds = 0.008;
uint64_t PrefetchWindowBytes(uint64_t configured, uint64_t hbm_limit_bytes,
                             uint64_t widest_launch_bytes, uint64_t chunk_bytes,
                             double link_bytes_per_s);

using FetchReason = FetchReasonTag;

class Manager {
 public:
  // REQUIRES: the driver table is loaded and cuInit done; a context current on the
  // calling thread (or the device's primary context is used).
  static absl::StatusOr<std::unique_ptr<Manager>> Create(const ManagerConfig& config);
  ~Manager();  // waits for moves in flight; frees what is still allocated

  // A managed allocation of `bytes`, usable by `stream` at once. Its chunks start in HBM
  // while the device pool has room, else in host memory. ResourceExhausted when neither
  // tier can hold it.
  absl::StatusOr<CUdeviceptr> Allocate(size_t bytes, CUstream stream, uint32_t advice = 0);
  // Frees an allocation once `stream`'s work queued so far (and its other users') is
  // done. NotFound for a pointer that is not the base of a live managed allocation
  // (including a second free).
  absl::Status Free(CUdeviceptr base, CUstream stream);
  // Sets (or clears) advice bits on every chunk of the allocation containing `address`.
  // Clearing the last clean-after-fetch bit (weights, read-mostly) drops the clean copies
  // kept from fetches: the program may write the data again.
  absl::Status Advise(CUdeviceptr address, size_t bytes, uint32_t advice, bool set);
  // A copy or set of [address, address + bytes) is being queued (the interposer calls it
  // between PrepareLaunch and the real call): the clean copies fetches kept of the chunks it
  // touches no longer hold their bytes and are dropped, so an eviction copies them out
  // again. Without this, advice that keeps copies would turn a later eviction into lost
  // writes. NotFound when `address` is not managed.
  absl::Status NoteWrite(CUdeviceptr address, size_t bytes);
  // Moves the chunks overlapping [address, address+bytes) to `tier`, ordered after the
  // work queued on `stream`; later work on `stream` sees them there.
  absl::Status Prefetch(CUdeviceptr address, size_t bytes, Tier tier, CUstream stream,
                        FetchReason reason = FetchReason::kPrefetch);
  // For a kernel launch about to be queued on `stream`: every managed allocation one of
  // `words` points into is brought to HBM for that launch (fetches counted on demand),
  // or, when it cannot fit, at least into mapped memory (a guarded chunk on NVMe comes
  // back to host memory), where the kernel reaches it over the link. Its chunks are then
  // in use by `stream`: later moves wait for the launch. Returns how many words were
  // managed pointers. Pins nothing: a move another thread plans before the caller's work is
  // queued does not wait for that work (single-threaded callers only: tests, MarkEscaped;
  // the launch hook uses the form below).
  absl::StatusOr<size_t> PrepareLaunch(std::span<const uintptr_t> words, CUstream stream);
  // The same for allocations already found (FindHits): the launch hook's form, one lookup.
  // It pins the allocations (chunk.h, launch_pins) until EndLaunch, which the caller must
  // call with the same arguments once the launch is queued (or abandoned), even when
  // PrepareLaunch failed.
  // `found_at` is what FindHits returned: while the map has had no erasure since, every
  // hit is known live without checking each (the launch path's common case).
  absl::Status PrepareLaunch(std::span<const AllocationMap::Hit> allocations, CUstream stream,
                             uint64_t found_at = kFoundAtUnknown);
  static constexpr uint64_t kFoundAtUnknown = ~uint64_t{0};
  void EndLaunch(std::span<const AllocationMap::Hit> allocations, uint64_t found_at);
  // The application is about to destroy `stream` (the handle must stay valid until this
  // returns): later moves wait for its queued work through the mover, and no chunk names it
  // any more, so nothing is ever queued on the dead handle.
  absl::Status RetireStream(CUstream stream);
  // The distinct managed allocations `words` point into, appended to `hits`. Returns the
  // allocation map's erasure count read before the lookups, for PrepareLaunch.
  uint64_t FindHits(std::span<const uintptr_t> words, std::vector<AllocationMap::Hit>* hits) const;
  // Blocks until every move submitted so far is done (or `timeout` passed: false then).
  void Drain();
  bool Drain(absl::Duration timeout);

  // Where each chunk of the range is (for tests and tools), in order.
  absl::StatusOr<std::vector<Tier>> Placement(CUdeviceptr address, size_t bytes);
  bool Owns(CUdeviceptr address) const;
  // The managed allocation holding `address`: its base and the size it was asked for.
  struct Range {
    CUdeviceptr base = 0;
    size_t size = 0;
  };
  std::optional<Range> Find(CUdeviceptr address) const;
  // Appends to `*bases` the base of each managed allocation one of `words` points into (each
  // once per call). For scanning data copied to the device (interposer: pointer escape).
  void FindAllocations(std::span<const uintptr_t> words, std::vector<CUdeviceptr>* bases) const;
  // The allocation holding `address` had its pointer written where the runtime cannot see
  // it (device memory, a captured graph): it is no longer guarded, never will be again, and
  // is back in mapped memory (ordered before later work on `stream`) when this returns.
  absl::Status MarkEscaped(CUdeviceptr address, CUstream stream);
  ManagerStats Stats();
  // The NVMe tier's I/O counters (requests are counted when submitted); zeros without one.
  NvmeStoreStats NvmeStats() const { return nvme_ ? nvme_->stats() : NvmeStoreStats{}; }
  // The outcome of the latest move (a failed copy or remap leaves chunks where they were).
  absl::Status LastMoveStatus();
  // Moves whose copies between HBM and host memory are queued (their NVMe steps may still
  // wait for the drive): moves start in order, and finish in order, later.
  uint64_t MovesStarted() const { return mover_->started(); }

  size_t chunk_bytes() const { return config_.chunk_bytes; }
  size_t hbm_limit_bytes() const { return config_.hbm_limit_bytes; }
  const char* policy_name() const { return policy_->name(); }

 private:
  explicit Manager(const ManagerConfig& config) : config_(config) {}
  // Seeds the mover's link meters with timed copies between a chunk of each pool (a few
  // milliseconds at start-up); a failure only leaves them unseeded.
  static constexpr uint64_t kCalibrationBytes = uint64_t{8} << 20;
  void CalibrateLink();

  struct Plan;
  // Each adds the steps that move `chunk` to a tier (and whatever must move to make room).
  // PlanToDevice: victims only among chunks the policy predicts used after launch
  // `used_after` (>= 0); with `may_wait`, it waits for moves in flight when nothing else can
  // make room (dropping mu_). On failure, nothing of `chunk` is in the plan.
  absl::Status PlanToDevice(Chunk* chunk, FetchReason reason, Plan& plan, int64_t used_after = -1,
                            bool may_wait = true) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PlanToHost(Chunk* chunk, Plan& plan) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PlanToNvme(Chunk* chunk, Plan& plan) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Claim(Chunk* chunk, Plan& plan) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `c` may be chosen to leave HBM now.
  bool Evictable(const Chunk* c) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // policy_->PickVictims, then learns_ from the policy (it may have started learning).
  std::vector<Chunk*> PickVictims(size_t count, const std::function<bool(const Chunk*)>& eligible,
                                  int64_t used_after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Brings the allocation's chunks that are on NVMe back into host memory.
  absl::Status MakeMapped(CUdeviceptr base, size_t size, CUstream stream) ABSL_LOCKS_EXCLUDED(mu_);
  // Frees `chunks` host chunks by spilling guarded host-tier data (not `keep`'s, not pinned
  // by a launch being queued, least recently used first) to NVMe, and waits for it. Drops
  // mu_ while waiting. Fails when the NVMe tier is off or nothing can go.
  absl::Status MakeHostRoom(size_t chunks, const Allocation* keep)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Submits a planned job; its chunks are marked moving until it commits. Returns the job's
  // sequence number (0: the plan was empty).
  absl::StatusOr<uint64_t> SubmitPlan(Plan& plan) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a launch, with a learned schedule: fetches what the next launches will need, in
  // order of need, while the policy finds victims used later and within the ahead window.
  // The jobs do not gate the application's streams; the launches that need their chunks
  // gate on them (Chunk::arriving).
  void PrefetchAhead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the launch pins PrepareLaunch took.
  void Unpin(std::span<const AllocationMap::Hit> allocations, uint64_t found_at)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Commit(MoveJob& job, const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_);
  void UndoPlan(Plan& plan) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits (without mu_) until no chunk of `allocation` in [first, last] is moving.
  void WaitIdle(Allocation* allocation, size_t first, size_t last)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status MapChunk(CUdeviceptr address, const PhysicalChunk& physical);
  void Touch(Chunk& chunk, CUstream stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives back the chunk's clean host copy and stops trusting its NVMe copy (or, while a
  // job owns it, makes the job's commit keep none): its device bytes are about to differ
  // from them. An extent whose bytes' hash is known stays, for spills to compare against.
  void DropCleanCopies(Chunk& chunk) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The chunk's NVMe extent no longer holds a copy to trust: it stays while the hash of its
  // bytes is known, else it is freed. REQUIRES: chunk.nvme, and the chunk leaving or out of
  // tier NVME.
  void DistrustNvmeCopy(Chunk& chunk) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Frees the chunk's NVMe extent. REQUIRES: chunk.nvme, and the chunk's bytes elsewhere (it is
  // out of tier NVME, or leaving it).
  void ReleaseExtent(Chunk& chunk) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A chunk-sized extent; when the NVMe tier is full, the extents that only copy what
  // another tier holds are given up for it, one at a time.
  absl::StatusOr<Extent> AllocateExtent() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The chunks [first, limit) of `hit`'s allocation that [address, address + bytes) touches
  // (clipped to the allocation), or with `whole_only` those it holds whole.
  std::pair<size_t, size_t> ChunkSpan(const AllocationMap::Hit& hit, CUdeviceptr address,
                                      size_t bytes, bool whole_only) const;
  void NoteDeviceUse() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseAllocation(Allocation* allocation) ABSL_LOCKS_EXCLUDED(mu_);

  const ManagerConfig config_;
  std::unique_ptr<PhysicalPool> device_pool_;
  std::unique_ptr<PhysicalPool> host_pool_;
  std::unique_ptr<NvmeStore> nvme_;  // null without an NVMe tier
  std::unique_ptr<Mover> mover_;

  mutable absl::Mutex mu_;
  AllocationMap map_;  // internally synchronised; also read without mu_ (Owns)
  std::unique_ptr<Policy> policy_ ABSL_GUARDED_BY(mu_);
  // policy_->wants_launches() as of the last PickVictims: a policy that learns costs the
  // launch path nothing until HBM is first full.
  bool learns_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<Allocation*> allocations_ ABSL_GUARDED_BY(mu_);
  ManagerStats stats_ ABSL_GUARDED_BY(mu_);
  absl::Status last_move_status_ ABSL_GUARDED_BY(mu_);  // of the latest move job
  // PrefetchAhead's state: predicted launches before ahead_cursor_ are prefetched; the bytes
  // fetched for launches not yet reached, per launch (in order) and in all; the schedule
  // they belong to.
  int64_t ahead_cursor_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::pair<int64_t, uint64_t>> ahead_ ABSL_GUARDED_BY(mu_);
  uint64_t ahead_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t ahead_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t widest_launch_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // of the learned schedule
  // Prefetch jobs submitted and not known complete: (sequence number, bytes).
  std::deque<std::pair<uint64_t, uint64_t>> prefetch_jobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_MANAGER_H_
