// SPDX-License-Identifier: Apache-2.0
//
// The mover: executes move jobs on the runtime's own copy streams, off the application's
// threads, without ever leaving a chunk's address unbacked while a stream may use it.
//
// A job is planned by the Manager (which chunks go where, with which physical chunks) and
// handed over with the application streams that may touch its chunks. For each of those
// streams, Submit records an event (everything the stream has queued so far) and then
// enqueues a wait on the *gate*: a word in page-locked host memory that the mover bumps
// when the job is done (cuStreamWaitValue32). The mover thread then
//   1. orders its copy streams after those events (cuStreamWaitEvent, no host wait),
//   2. copies device→host for evictions on the D2H stream, host→device for fetches on
//      the H2D stream (never on an application stream),
//   3. waits for its own copies, then re-points the chunks' ranges (unmap + map): no
//      stream can be using them, because every stream that could is held at the gate,
//      behind work that has finished,
//   4. lets the Manager commit the new states, and opens the gate.
// The application's threads never block on this; its streams wait only for the moves
// their later work depends on. Jobs complete in submission order, so one monotonic gate
// serves all of them.
//
// Thread safety: Submit and WaitFor may be called from any thread. The commit callback
// runs on the mover thread, without any mover lock held.
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
#include "runtime/chunk.h"

namespace spillway {

enum class FetchReasonTag : uint8_t { kPrefetch, kOnDemand };

struct MoveStep {
  enum class Kind {
    kEvict,    // DEVICE -> HOST: copy into `target` unless the host copy is valid, remap
    kFetch,    // HOST -> DEVICE: copy `chunk->host` into `target`, remap
    kRelease,  // unmap the chunk's range (the allocation is being freed)
  };
  Kind kind;
  Chunk* chunk = nullptr;
  PhysicalChunk target;  // the physical chunk the range will point at (evict, fetch)
  bool copy = true;      // bytes must move (false: a clean copy already exists there)
  int donor = -1;        // fetch: index of the eviction whose device chunk `target` is
  FetchReasonTag reason = FetchReasonTag::kPrefetch;
  bool remapped = false; // set by the mover once the range points at `target`
};

struct MoveJob {
  std::vector<MoveStep> steps;
  std::vector<CUstream> streams;  // application streams that may touch the chunks
  // Called on the mover thread once the steps ran (or failed: `status` says which, and
  // no range was left unbacked).
  std::function<void(MoveJob& job, const absl::Status& status)> commit;
  // Filled by the mover.
  std::vector<CUevent> after;  // one per application stream: its work queued before us
  absl::Status abandoned;      // set when the job could not be gated: it must not run
  uint64_t sequence = 0;
  uint64_t bytes_h2d = 0;
  uint64_t bytes_d2h = 0;
  int64_t submit_ns = 0;
  int64_t done_ns = 0;
};

class Mover {
 public:
  static absl::StatusOr<std::unique_ptr<Mover>> Create(int device, size_t chunk_bytes);
  ~Mover();  // drains every submitted job first

  // Hands a job over; returns its sequence number. Streams that are not valid any more
  // (destroyed by the application) are skipped: nothing can run on them.
  absl::StatusOr<uint64_t> Submit(std::unique_ptr<MoveJob> job);
  // Blocks until job `sequence` (and all before it) completed.
  void WaitFor(uint64_t sequence);
  // Blocks until every job submitted before the call completed.
  void WaitForAll();
  uint64_t completed() const { return completed_.load(std::memory_order_acquire); }
  // Whether jobs were submitted that have not completed yet.
  bool pending();

 private:
  Mover(int device, size_t chunk_bytes) : device_(device), chunk_bytes_(chunk_bytes) {}
  void Run();
  absl::Status Execute(MoveJob& job);
  absl::Status Map(CUdeviceptr address, CUmemGenericAllocationHandle handle);

  const int device_;
  const size_t chunk_bytes_;
  CUcontext context_ = nullptr;
  CUstream h2d_ = nullptr;
  CUstream d2h_ = nullptr;
  volatile uint32_t* gate_ = nullptr;  // page-locked; streams wait for it to reach a job
  std::atomic<uint64_t> completed_{0};

  absl::Mutex mu_;
  std::deque<std::unique_ptr<MoveJob>> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

int64_t NowNs();

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_MOVER_H_
