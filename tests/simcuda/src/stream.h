// SPDX-License-Identifier: Apache-2.0
//
// Streams, events and the copy engines: how simcuda orders and runs device work.
//
// Each stream has its own worker thread that runs the stream's operations in order; work
// on different streams runs concurrently, as on a GPU. An operation may wait for
// completions on other streams (cuStreamWaitEvent, and the legacy default stream's
// implicit synchronisation with blocking streams). Copies go through a per-device copy
// engine per direction: one H2D and one D2H copy at a time, each optionally paced to a
// modelled link speed (SIMCUDA_H2D_GBPS / SIMCUDA_D2H_GBPS).
//
// Device work (kernels and copies) runs under the fault guard: a fault becomes the
// context's sticky CUDA_ERROR_ILLEGAL_ADDRESS, and from then on queued work of that
// context is dropped.
//
// Thread safety: everything here may be called from any thread. Stream bookkeeping is
// guarded by Driver::mu; completions by a global completion mutex.
#ifndef SIMCUDA_STREAM_H_
#define SIMCUDA_STREAM_H_

#include <cuda.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "driver.h"

namespace simcuda {

struct Graph;

// Marks the end of one operation. Shared by the stream that runs it and by events and
// other streams that wait for it.
struct Completion {
  bool done = false;           // GUARDED_BY(CompletionMutex())
  double time_ms = 0;          // steady clock at completion, for cuEventElapsedTime
  std::condition_variable cv;  // its waiters (with CompletionMutex())
};
using CompletionRef = std::shared_ptr<Completion>;

// Returns when it completed (on the device's clock, NowMs's), 0 for a null reference.
double WaitFor(const CompletionRef& c);
bool IsDone(const CompletionRef& c);

// What an operation is, for the device's clock (when it completes, Completion::time_ms):
//   kCopy    one copy: when the modelled link delivered its last byte (or when it returned,
//            unpaced);
//   kMarker  no device time (an event record, a wait for an event): the moment it became
//            ready (its stream's previous operation and its dependencies done, and it was
//            queued), not when a worker thread got to it;
//   others   when it returned.
enum class WorkKind { kHost, kDevice, kCopy, kMarker };

class Stream {
 public:
  Stream(Context* ctx, unsigned flags, bool legacy);

  Context* ctx() const { return ctx_; }
  unsigned flags() const { return flags_; }
  bool legacy() const { return legacy_; }
  // Non-blocking streams do not synchronise with the legacy default stream.
  bool blocking() const { return !legacy_ && !(flags_ & CU_STREAM_NON_BLOCKING); }

  // Appends work. `deps` are extra completions it must wait for. Returns the completion
  // of the new operation. REQUIRES: not capturing (see Capture* below).
  CompletionRef Enqueue(WorkKind kind, std::function<void()> fn,
                        std::vector<CompletionRef> deps = {});
  // The completion of the last operation enqueued, or null when none was.
  CompletionRef last();
  // Stops the worker once its queue drains; the stream object stays valid for events.
  void Retire();

  // Stream capture (graphs). GUARDED_BY(Driver::mu).
  Graph* capture_graph = nullptr;
  CUstreamCaptureMode capture_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
  bool capture_invalidated = false;
  unsigned long long capture_id = 0;

 private:
  struct Op {
    WorkKind kind;
    std::function<void()> fn;
    std::vector<CompletionRef> deps;
    CompletionRef done;
    double enqueued_ms = 0;  // when the host queued it: the device cannot start it earlier
  };
  void Run();

  Context* const ctx_;
  const unsigned flags_;
  const bool legacy_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;  // GUARDED_BY(mu_)
  CompletionRef last_;    // GUARDED_BY(mu_)
  bool retired_ = false;  // GUARDED_BY(mu_)
  bool started_ = false;  // GUARDED_BY(mu_)
};

struct Event {
  unsigned flags = 0;
  CompletionRef recorded;          // GUARDED_BY(Driver::mu); null until first record
  Graph* capture_graph = nullptr;  // set when recorded on a capturing stream
};

// Resolves a stream argument: NULL means the legacy stream, or the calling thread's
// per-thread default stream for the _ptsz/_ptds entry points; CU_STREAM_LEGACY and
// CU_STREAM_PER_THREAD as documented; anything else must be a live stream of `ctx`.
CUresult ResolveStream(Context* ctx, CUstream handle, bool per_thread_default, Stream** out);

// Enqueues `fn` on `stream` with the legacy-stream implicit synchronisation rules.
// Returns CUDA_ERROR_STREAM_CAPTURE_IMPLICIT where CUDA does (legacy work while another
// stream of the context captures in global mode).
CUresult Submit(Stream* stream, WorkKind kind, std::function<void()> fn,
                CompletionRef* done = nullptr, std::vector<CompletionRef> deps = {});

// Runs one device operation under the fault guard; poisons the context on a fault.
void RunDeviceWork(Context* ctx, const std::function<void()>& fn);

enum class CopyDirection { kHostToDevice, kDeviceToHost, kDeviceToDevice, kHostToHost };
// The direction a copy between these addresses takes (device = inside the device window).
CopyDirection Classify(const void* dst, const void* src, size_t bytes);
// Copies `bytes` through the engine of `direction` of `device`, paced to the modelled link.
// Runs guarded: returns false when an address faulted.
bool EngineCopy(int device, CopyDirection direction, void* dst, const void* src, size_t bytes);

double NowMs();

}  // namespace simcuda

#endif  // SIMCUDA_STREAM_H_
