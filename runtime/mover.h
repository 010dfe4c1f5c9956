// SPDX-License-Identifier: Apache-2.0
//
// The mover: executes move jobs on the runtime's own copy streams, off the application's
// threads, without ever leaving a chunk's address unbacked while a stream may use it.
//
// A job is planned by the Manager (which chunks go where, into which physical chunks or
// NVMe extents) and handed over with the application streams that may touch its chunks.
// For each of those streams, Submit records an event (everything the stream has queued
// so far) and then enqueues a wait on the *gate*: a word in page-locked host memory that
// the mover bumps when the job is done (cuStreamWaitValue32). The mover's threads then
//   1. orders its copy streams after those events (cuStreamWaitEvent, no host wait),
//   2. copies data out of HBM on a D2H stream (evictions, spills through a staging
//      buffer to io_uring writes) and into HBM or host memory on an H2D stream (fetches;
//      NVMe reads into staging buffers overlapped with the copies out of them), never on
//      an application stream; a fetch into the HBM chunk an eviction gives up waits for
//      that eviction's copy alone, so both directions run at once,
//   3. (the finisher thread) waits for the job's copies, then re-points the chunks' ranges
//      (unmap + map, runs of adjacent chunks together): no stream can be using them,
//      because every stream that could is held at the gate, behind work that has finished,
//   4. lets the Manager commit the new states, and opens the gate.
// Up to four jobs are in flight at once: later jobs' copies are queued before an earlier
// one's remap and commit, so the link does not idle through them. (With two, the link idled
// through most remaps at 2 GB/s: the one job queued behind the finishing one ran out of
// copies first. bench/tinyllm/timeline.py shows it; docs/benchmarks.md has the figures.)
// Three threads: the starter queues jobs' copies between HBM and host memory, the NVMe
// thread does their NVMe steps, and the finisher finishes jobs (waits for the copies,
// re-points, commits, opens the gate), so starting a job never waits for an earlier one to
// finish, nor for the drive. NVMe data passes through staging buffers: the NVMe thread
// waits on the host for reads, writes and staging copies, on copy streams of its own. Those
// copies may wait (through the application's streams) for the gates of the jobs ahead,
// which the finisher opens meanwhile. A job's first reads start as soon as it is the next
// job with NVMe steps in the queue, before a slot is free for it. A fourth thread only
// watches: it warns when moves are pending and none finishes (kStallWarning).
// A job may also gate nothing (gate_streams false: a release, or a prefetch ahead of
// need). It then waits for the streams' work, or for the BusyEvents of the launches that
// last used its chunks, and the manager makes every later user of those chunks wait for
// it (GateStream, or a host wait).
// The application's threads never block on this; its streams wait only for the moves
// their later work depends on. Jobs complete in submission order, so one monotonic gate
// serves all of them.
//
// Thread safety: Submit and the Wait* methods may be called from any thread. The commit
// callback runs on the finisher thread, without any mover lock held. A job's steps are
// split between the starter and the NVMe thread, never shared.
#ifndef SPILLWAY_RUNTIME_MOVER_H_
#define SPILLWAY_RUNTIME_MOVER_H_

#include <cuda.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/chunk.h"
#include "runtime/link_meter.h"
#include "runtime/nvme_store.h"

namespace spillway {

enum class FetchReasonTag : uint8_t { kPrefetch, kOnDemand };

// An event recorded once, after one launch (Allocation::busy), shared by the allocations
// that launch named and the moves that wait for it; destroyed with the last of them.
// `recorded` is set (under the manager's mutex) before any move may name it, and never
// cleared; Done may be called from any thread.
struct BusyEvent {
  static std::shared_ptr<BusyEvent> Create();  // null if the driver has no event for us
  ~BusyEvent();
  // Whether the launch it follows is done (remembered once seen; false before recorded).
  bool Done();
  CUevent event = nullptr;
  bool recorded = false;
  std::atomic<bool> done{false};
};

// One chunk's move. The source is where the chunk's data is now (chunk->tier, or its NVMe
// extent); the destination is given by the kind.
struct MoveStep {
  enum class Kind {
    kToHost,    // into `target` (a host chunk) from HBM or NVMe; or a remap if clean
    kToDevice,  // into `target` (an HBM chunk) from host memory or NVMe
    kToNvme,    // into `extent` from HBM or host memory (unless a clean copy is there)
    kRelease,   // unmap the chunk's range (the allocation is being freed)
  };
  Kind kind;
  Chunk* chunk = nullptr;
  PhysicalChunk target;  // kToHost, kToDevice: what the range will point at
  Extent extent;         // kToNvme: where the bytes go
  bool copy = true;      // bytes must move (false: a clean copy is already there)
  int donor = -1;        // kToDevice: index of the step that gives up `target`
  FetchReasonTag reason = FetchReasonTag::kPrefetch;
  // kToNvme with `copy`: what `extent` holds now, when known; bytes that hash the same are
  // not written again (`unchanged`). The mover sets `written` to the hash of the bytes spilled.
  std::optional<ContentHash> on_nvme;
  ContentHash written;
  bool unchanged = false;
  bool remapped = false;         // set by the mover once the range points at its new backing
  CUevent copied_out = nullptr;  // mover only: its copy out of HBM is done (Mover::evicted_)
};

struct MoveJob {
  std::vector<MoveStep> steps;
  std::vector<CUstream> streams;  // application streams that may touch the chunks
  // Launches that used the chunks, for a job that gates no stream: it waits for these
  // (as well as for everything queued on `streams`).
  std::vector<std::shared_ptr<BusyEvent>> busy;
  // Whether their later work waits for the job. A release does not need it (no later work
  // may use freed memory): its streams are only waited for. Not gating them keeps frees,
  // which come in bursts at teardown, from holding the application's streams (the legacy
  // one, for cuMemFree) behind the mover.
  bool gate_streams = true;
  // Called on the finisher thread once the steps ran (or failed: `status` says which; steps
  // not `remapped` are where they were, and no range was left unbacked).
  std::function<void(MoveJob& job, const absl::Status& status)> commit;
  // Filled by the mover.
  std::vector<CUevent> after;  // one per application stream: its work queued before us
  absl::Status abandoned;      // set when the job could not be gated: it must not run
  uint64_t sequence = 0;
  // NVMe reads in flight into the read staging buffers (by buffer), and how many of the job's
  // reads were issued: the first ones may start before the jobs ahead of it are finished.
  // The NVMe thread's alone.
  std::vector<NvmeStore::Ticket> reads;
  size_t reads_started = 0;
  // Set at Submit: the job reads or writes NVMe (the NVMe thread does those steps).
  bool uses_nvme = false;
  // What queuing the job's copies came to: the starter's outcome, then the NVMe thread's
  // added. Set under the mover's lock; the finisher reads it once both are done.
  absl::Status started;
  // Under the mover's lock: the NVMe thread has queued the job's NVMe steps (or failed to),
  // after its slot events; the finisher waits for it.
  bool nvme_queued = false;
  uint64_t bytes_h2d = 0;  // the starter's; the NVMe thread's are added when the job ends
  uint64_t bytes_d2h = 0;
  uint64_t nvme_bytes_h2d = 0;  // staging and other copies the NVMe thread queued
  uint64_t nvme_bytes_d2h = 0;
  uint64_t bytes_nvme_read = 0;
  uint64_t bytes_nvme_written = 0;
  uint64_t spills_unchanged = 0;  // spills whose bytes the extent already held: not written
  int64_t submit_ns = 0;
  int64_t start_ns = 0;
  int64_t done_ns = 0;
  int64_t remap_ns = 0;  // host time re-pointing its ranges once its copies were done
};

class Mover {
 public:
  // Jobs in flight at once: their copies queued, not finished yet.
  static constexpr int kSlots = 4;
  // With moves pending and none finished for this long, the mover logs a warning saying
  // what the oldest waits for, and again each time as long again passes (Watchdog). A move
  // that never ends holds the application's streams at its gate, so a hang under Spillway
  // then says where it is.
  static constexpr absl::Duration kStallWarning = absl::Seconds(10);

  // `nvme` may be null (no NVMe tier); it must outlive the mover. Staging buffers are
  // placed on `numa_node` (the GPU's nearest; < 0: wherever the kernel puts them).
  // `stall_warning`: see kStallWarning (ManagerConfig::stall_warning).
  static absl::StatusOr<std::unique_ptr<Mover>> Create(int device, size_t chunk_bytes,
                                                       NvmeStore* nvme, int numa_node,
                                                       absl::Duration stall_warning);
  ~Mover();  // drains every submitted job first

  // Hands a job over; returns its sequence number. Streams that are not valid any more
  // (destroyed by the application) are skipped: nothing can run on them.
  absl::StatusOr<uint64_t> Submit(std::unique_ptr<MoveJob> job);
  // The application is about to destroy `stream`: every job submitted from now on waits
  // for what it has queued so far, as if each named it (which, once it is destroyed, none
  // may: its handle is gone).
  absl::Status OrderLaterJobsAfter(CUstream stream);
  // Later work on `stream` waits for job `sequence` (and all before it): for work that
  // uses chunks a job that did not gate it (gate_streams false) is still moving.
  absl::Status GateStream(CUstream stream, uint64_t sequence);
  // Blocks until job `sequence` (and all before it) completed.
  void WaitFor(uint64_t sequence);
  // The same for at most `timeout`; false if it has not completed then.
  bool WaitFor(uint64_t sequence, absl::Duration timeout);
  // Blocks until every job submitted before the call completed.
  void WaitForAll();
  // The same for at most `timeout`; false if jobs are still pending then.
  bool WaitForAll(absl::Duration timeout);
  uint64_t completed() const { return completed_.load(std::memory_order_acquire); }
  // Jobs the starter has queued the copies of (between HBM and host memory; a job's NVMe
  // steps are the NVMe thread's).
  uint64_t started() const { return started_.load(std::memory_order_acquire); }
  // Times copies of `bytes` (at least two of each) from `host` to `device` and back, both
  // directions at once as moves run them, and seeds the link meters with the result.
  // Both must be chunk_bytes-sized (or larger) buffers the copy engines can reach (pool
  // homes). Call before the first Submit: it uses the copy streams from the calling thread.
  absl::Status Calibrate(CUdeviceptr host, CUdeviceptr device, uint64_t bytes);
  // The link as measured (LinkMeter): at start-up, then from every move's copies.
  const LinkMeter& h2d_link() const { return h2d_link_; }
  const LinkMeter& d2h_link() const { return d2h_link_; }
  // Whether jobs were submitted that have not completed yet.
  bool pending();

 private:
  // NVMe staging buffers: the first kSpillStaging carry spills (SpillOut), the others reads
  // (ReadIn), so that a job's first reads can start before its spills, and before the jobs
  // ahead of it are finished (StartReadsEarly).
  static constexpr int kSpillStaging = 4;
  static constexpr int kReadStaging = 4;
  static constexpr int kStagingBuffers = kSpillStaging + kReadStaging;
  static constexpr int kReadRetries = 2;

  Mover(int device, size_t chunk_bytes, NvmeStore* nvme)
      : device_(device), chunk_bytes_(chunk_bytes), nvme_(nvme) {}
  absl::Status CreateStaging(int numa_node);
  void Run();         // the starter thread
  void NvmeThread();  // the NVMe thread
  void Finisher();    // the finisher thread
  void Watchdog();    // the stall warning's thread (kStallWarning)
  // A job's copies, queued on the copy streams (after the application work it waits for),
  // then the slot's events that FinishCopies waits for.
  absl::Status StartCopies(MoveJob& job);
  absl::Status QueueCopies(MoveJob& job);
  // Makes a pair of copy streams wait (on the device) for the application work the job
  // waits for: what its streams queued before it, and the launches that last used it.
  static absl::Status OrderAfterApplication(const MoveJob& job, CUstream d2h, CUstream h2d);
  // Records the events that FinishCopies waits for after a job's copies on a pair of
  // streams, even when queuing them (`status`) failed part way; returns `status`, or the
  // recording's failure.
  static absl::Status RecordCopiesDone(absl::Status status, CUevent out, CUstream d2h, CUevent in,
                                       CUstream h2d);
  // Waits for them, then re-points the ranges (unless job.started failed).
  absl::Status FinishCopies(MoveJob& job);
  // Points each chunk's range at its new backing (runs of adjacent chunks together).
  absl::Status Remap(MoveJob& job);
  // Read-write access for the device to order[begin, end) (adjacent), but for the chunks
  // that are left unmapped.
  absl::Status SetAccess(const std::vector<MoveStep*>& order, size_t begin, size_t end);
  // Whether the job reads or writes NVMe (its copies block on the host).
  static bool UsesNvme(const MoveJob& job);
  // Whether the step fetches from host memory into the HBM chunk a spill gives up: the
  // NVMe thread queues it, once the spill's copy into staging is done.
  static bool BehindSpill(const MoveJob& job, const MoveStep& step);
  // The job's fetches from host memory into HBM on `stream`, each after its donor
  // eviction's copy: those behind a spill (`behind_spills`) or the others. `start`, if not
  // null, is recorded before the first; `bytes` counts them.
  absl::Status FetchFromHost(MoveJob& job, bool behind_spills, CUstream stream, CUevent start,
                             uint64_t& bytes);
  // The NVMe thread's part of a job: spills, the fetches that wait for them, then reads,
  // on its own copy streams (after the application work the job waits for); then the
  // slot's NVMe events, which FinishCopies waits for.
  absl::Status QueueNvmeCopies(MoveJob& job);
  // The queued job (not started) whose first NVMe reads may start now, if any.
  MoveJob* NextEarlyReads() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job's steps that read NVMe, in order.
  static std::vector<MoveStep*> NvmeReads(MoveJob& job);
  // Issues the reads of `reads` (NvmeReads(job)) from job.reads_started up to `up_to`,
  // each into its staging buffer once that buffer's last copy is done: waiting for it if
  // `may_wait`, else stopping at the first buffer still in use (never blocks on the GPU).
  absl::Status StartReads(MoveJob& job, const std::vector<MoveStep*>& reads, size_t up_to,
                          bool may_wait);
  // Before the jobs ahead of `job` are finished: starts its first NVMe reads, so that the
  // drive works while those jobs' copies (and the job's own spills) run. Nothing it does
  // waits for the GPU, and a read touches only the chunk's extent (its data is there: the
  // chunk belongs to `job`) and a read staging buffer whose last copy is done.
  void StartReadsEarly(MoveJob& job);
  // Waits out any read of the job still in flight (it writes into a staging buffer). On the
  // NVMe thread, before the next job may take the buffers.
  void AbandonReads(MoveJob& job);
  // FinishCopies, the commit, and the gate (the finisher then marks the job completed).
  void Finish(MoveJob& job);
  // The starter's evictions to host memory (its fetches: FetchFromHost).
  absl::Status CopyOut(MoveJob& job);
  // The NVMe thread's: spills through staging buffers, and reads through them.
  absl::Status SpillOut(MoveJob& job);
  absl::Status ReadIn(MoveJob& job);
  absl::Status Map(CUdeviceptr address, CUmemGenericAllocationHandle handle);
  // Read-write access for the device to [address, address + bytes) (whole mappings).
  absl::Status GrantAccess(CUdeviceptr address, size_t bytes);

  const int device_;
  const size_t chunk_bytes_;
  NvmeStore* const nvme_;
  CUcontext context_ = nullptr;
  CUstream h2d_ = nullptr;
  CUstream d2h_ = nullptr;
  CUstream nvme_h2d_ = nullptr;  // the NVMe thread's copy streams
  CUstream nvme_d2h_ = nullptr;
  volatile uint32_t* gate_ = nullptr;  // page-locked; streams wait for it to reach a job
  // Page-locked, io_uring-registered buffers NVMe data passes through, each with the
  // event of the last copy that reads it (it is reused only after that copy).
  std::vector<void*> staging_;
  std::vector<void*> staging_mappings_;  // what munmap takes (staging_ is aligned inside)
  std::vector<CUevent> staging_free_;
  // Events of a job in flight (up to kSlots are: Run), by sequence number modulo kSlots:
  // recorded by the starter, waited for by the finisher; a slot is reused once its job is
  // finished.
  struct Slot {
    CUevent out_done = nullptr;  // recorded after the job's copies, on each copy stream
    CUevent in_done = nullptr;
    // Recorded right before the job's first copy in each direction, if any (timing events,
    // as are the two above): what the engine took for the job's bytes, for the link meters.
    CUevent out_start = nullptr;
    CUevent in_start = nullptr;
    // Recorded by the NVMe thread after the job's copies on its streams (jobs with NVMe steps).
    CUevent nvme_out_done = nullptr;
    CUevent nvme_in_done = nullptr;
    // Per eviction of the job: recorded on the D2H stream after its copy, so that the fetch
    // into the HBM chunk it gives up starts as soon as that copy is done, while the next
    // eviction's copy runs (both links busy at once). Grown as jobs need.
    std::vector<CUevent> evicted;
  };
  Slot slots_[kSlots];
  LinkMeter h2d_link_;
  LinkMeter d2h_link_;
  std::atomic<uint64_t> completed_{0};
  std::atomic<uint64_t> started_{0};

  absl::Mutex mu_;
  std::deque<std::unique_ptr<MoveJob>> queue_ ABSL_GUARDED_BY(mu_);
  // Events recorded on destroyed streams (OrderLaterJobsAfter), for the next job to wait on.
  std::vector<CUevent> destroyed_streams_work_ ABSL_GUARDED_BY(mu_);
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  // Jobs whose copies are queued, oldest first, until finished: at most kSlots. An entry
  // is null once the finisher has taken its job, and keeps the slot until it is finished.
  std::deque<std::unique_ptr<MoveJob>> in_flight_ ABSL_GUARDED_BY(mu_);
  // Started jobs with NVMe steps, oldest first, until the NVMe thread has queued them (the
  // jobs belong to in_flight_).
  std::deque<MoveJob*> nvme_queue_ ABSL_GUARDED_BY(mu_);
  // The last queued job whose first NVMe reads the NVMe thread started early.
  uint64_t read_early_ ABSL_GUARDED_BY(mu_) = 0;
  // The starter has taken a job with NVMe steps off the queue and not handed it over yet.
  bool starting_nvme_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool starter_done_ ABSL_GUARDED_BY(mu_) = false;  // the starter thread has returned
  // The job the finisher has taken from in_flight_ (its entry is null meanwhile).
  const MoveJob* finishing_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Duration stall_warning_;  // set by Create before the threads start
  bool watchdog_stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;       // starts jobs (Run)
  std::thread nvme_thread_;  // their NVMe steps (NvmeThread)
  std::thread finisher_;     // finishes them (Finisher)
  std::thread watchdog_;     // warns of stalled moves (Watchdog)
};

int64_t NowNs();

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_MOVER_H_
