// SPDX-License-Identifier: Apache-2.0
//
// Stream, event, host-function and stream-capture entry points.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <type_traits>

#include "driver.h"
#include "fault.h"
#include "graph.h"
#include "stream.h"
#include "work.h"

using namespace simcuda;

namespace {

// Resolves the context and stream of a stream-taking call.
CUresult Enter(CUstream handle, bool per_thread, Context** ctx, Stream** stream) {
  if (CUresult r = EnterContext(ctx); r != CUDA_SUCCESS) return r;
  return ResolveStream(*ctx, handle, per_thread, stream);
}

CUresult CheckEvent(CUevent handle, Event** out) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  auto* event = reinterpret_cast<Event*>(handle);
  if (!Driver::Get().IsLive(HandleKind::kEvent, event)) return CUDA_ERROR_INVALID_HANDLE;
  *out = event;
  return CUDA_SUCCESS;
}

// REQUIRES: Driver::mu held.
bool Capturing(const Stream* s) { return s->capture_graph != nullptr; }

CUresult Synchronize(CUstream handle, bool per_thread) {
  Context* ctx = nullptr;
  Stream* stream = nullptr;
  if (CUresult r = Enter(handle, per_thread, &ctx, &stream); r != CUDA_SUCCESS) return r;
  std::vector<CompletionRef> pending;
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    if (Capturing(stream)) {
      stream->capture_invalidated = true;
      return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    pending.push_back(stream->last());
    if (stream->legacy()) {
      // The legacy stream is synchronous with every blocking stream.
      for (Stream* other : ctx->streams) {
        if (other->blocking()) pending.push_back(other->last());
      }
      for (auto& [thread, other] : ctx->per_thread) pending.push_back(other->last());
    }
  }
  for (auto& c : pending) WaitFor(c);
  return ctx->sticky.load(std::memory_order_acquire);
}

CUresult Query(CUstream handle, bool per_thread) {
  Context* ctx = nullptr;
  Stream* stream = nullptr;
  if (CUresult r = Enter(handle, per_thread, &ctx, &stream); r != CUDA_SUCCESS) return r;
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    if (Capturing(stream)) {
      stream->capture_invalidated = true;
      return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
  }
  if (!IsDone(stream->last())) return CUDA_ERROR_NOT_READY;
  return ctx->sticky.load(std::memory_order_acquire);
}

CUresult WaitEvent(CUstream handle, CUevent event_handle, unsigned flags, bool per_thread) {
  Context* ctx = nullptr;
  Stream* stream = nullptr;
  if (CUresult r = Enter(handle, per_thread, &ctx, &stream); r != CUDA_SUCCESS) return r;
  Event* event = nullptr;
  if (CUresult r = CheckEvent(event_handle, &event); r != CUDA_SUCCESS) return r;
  if (flags != CU_EVENT_WAIT_DEFAULT && flags != CU_EVENT_WAIT_EXTERNAL) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  CompletionRef recorded;
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    if (event->capture_graph != nullptr) {
      // Waiting on an event recorded in a capture joins that capture (fork/join capture).
      if (Capturing(stream) && stream->capture_graph != event->capture_graph) {
        return CUDA_ERROR_STREAM_CAPTURE_ISOLATION;
      }
      if (stream->legacy()) return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
      stream->capture_graph = event->capture_graph;
      for (Stream* other : ctx->streams) {
        if (other->capture_graph == event->capture_graph && other != stream) {
          stream->capture_mode = other->capture_mode;
          stream->capture_id = other->capture_id;
          break;
        }
      }
      return CUDA_SUCCESS;
    }
    if (Capturing(stream)) {
      // Work outside the capture cannot be a dependency of captured work.
      if (flags == CU_EVENT_WAIT_EXTERNAL) return CUDA_SUCCESS;
      stream->capture_invalidated = true;
      return CUDA_ERROR_STREAM_CAPTURE_ISOLATION;
    }
    recorded = event->recorded;
  }
  if (!recorded) return CUDA_SUCCESS;  // never recorded: nothing to wait for
  return Submit(stream, WorkKind::kMarker, [] {}, nullptr, {recorded});
}

CUresult Record(CUevent event_handle, CUstream handle, bool per_thread) {
  Event* event = nullptr;
  if (CUresult r = CheckEvent(event_handle, &event); r != CUDA_SUCCESS) return r;
  Context* ctx = nullptr;
  Stream* stream = nullptr;
  if (CUresult r = Enter(handle, per_thread, &ctx, &stream); r != CUDA_SUCCESS) return r;
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    if (Capturing(stream)) {
      event->capture_graph = stream->capture_graph;
      return CUDA_SUCCESS;
    }
  }
  CompletionRef done;
  CUresult r = Submit(
      stream, WorkKind::kMarker, [] {}, &done);
  if (r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lock(Driver::Get().mu);
  event->recorded = done;
  event->capture_graph = nullptr;
  return CUDA_SUCCESS;
}

CUresult HostFunc(CUstream handle, CUhostFn fn, void* user_data, bool per_thread) {
  if (fn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  Stream* stream = nullptr;
  if (CUresult r = Enter(handle, per_thread, &ctx, &stream); r != CUDA_SUCCESS) return r;
  return Issue(stream, HostWork{fn, user_data}, /*wait=*/false);
}

CUresult BeginCapture(CUstream handle, CUstreamCaptureMode mode, bool per_thread) {
  Context* ctx = nullptr;
  Stream* stream = nullptr;
  if (CUresult r = Enter(handle, per_thread, &ctx, &stream); r != CUDA_SUCCESS) return r;
  if (stream->legacy()) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  if (mode != CU_STREAM_CAPTURE_MODE_GLOBAL && mode != CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
      mode != CU_STREAM_CAPTURE_MODE_RELAXED) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  static unsigned long long next_id = 1;
  std::lock_guard<std::mutex> lock(Driver::Get().mu);
  if (Capturing(stream)) return CUDA_ERROR_ILLEGAL_STATE;
  auto* graph = new Graph();
  graph->ctx = ctx;
  Driver::Get().Register(HandleKind::kGraph, graph);
  stream->capture_graph = graph;
  stream->capture_mode = mode;
  stream->capture_invalidated = false;
  stream->capture_id = next_id++;
  return CUDA_SUCCESS;
}

CUresult EndCapture(CUstream handle, CUgraph* out, bool per_thread) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  Stream* stream = nullptr;
  if (CUresult r = Enter(handle, per_thread, &ctx, &stream); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lock(Driver::Get().mu);
  Graph* graph = stream->capture_graph;
  if (graph == nullptr) return CUDA_ERROR_ILLEGAL_STATE;
  bool invalidated = false;
  // Ends the capture on every stream that joined it.
  auto finish = [&](Stream* s) {
    if (s->capture_graph != graph) return;
    invalidated = invalidated || s->capture_invalidated;
    s->capture_graph = nullptr;
    s->capture_invalidated = false;
  };
  finish(stream);
  for (Stream* s : ctx->streams) finish(s);
  for (auto& [thread, s] : ctx->per_thread) finish(s);
  if (invalidated) {
    *out = nullptr;
    return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
  }
  *out = reinterpret_cast<CUgraph>(graph);
  return CUDA_SUCCESS;
}

CUresult IsCapturing(CUstream handle, CUstreamCaptureStatus* status, bool per_thread) {
  if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  Stream* stream = nullptr;
  if (CUresult r = Enter(handle, per_thread, &ctx, &stream); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lock(Driver::Get().mu);
  *status = !Capturing(stream)            ? CU_STREAM_CAPTURE_STATUS_NONE
            : stream->capture_invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
                                          : CU_STREAM_CAPTURE_STATUS_ACTIVE;
  return CUDA_SUCCESS;
}

CUresult CaptureInfo(CUstream handle, CUstreamCaptureStatus* status, cuuint64_t* id, CUgraph* graph,
                     const CUgraphNode** deps, size_t* count, bool per_thread) {
  if (CUresult r = IsCapturing(handle, status, per_thread); r != CUDA_SUCCESS) return r;
  Context* ctx = nullptr;
  Stream* stream = nullptr;
  Enter(handle, per_thread, &ctx, &stream);
  std::lock_guard<std::mutex> lock(Driver::Get().mu);
  if (id != nullptr) *id = stream->capture_id;
  if (graph != nullptr) *graph = reinterpret_cast<CUgraph>(stream->capture_graph);
  if (deps != nullptr) *deps = nullptr;
  if (count != nullptr) *count = 0;
  return CUDA_SUCCESS;
}

}  // namespace

SIMCUDA_API CUresult cuStreamCreate(CUstream* out, unsigned int flags) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (flags != CU_STREAM_DEFAULT && flags != CU_STREAM_NON_BLOCKING)
    return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  auto* stream = new Stream(ctx, flags, /*legacy=*/false);
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    ctx->streams.push_back(stream);
  }
  Driver::Get().Register(HandleKind::kStream, stream);
  *out = reinterpret_cast<CUstream>(stream);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuStreamCreateWithPriority(CUstream* out, unsigned int flags,
                                                int /*priority*/) {
  return cuStreamCreate(out, flags);
}

SIMCUDA_API CUresult cuStreamDestroy_v2(CUstream handle) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  auto* stream = reinterpret_cast<Stream*>(handle);
  Driver& driver = Driver::Get();
  if (!driver.IsLiveStream(stream)) return CUDA_ERROR_INVALID_HANDLE;
  driver.Unregister(HandleKind::kStream, stream);
  {
    std::lock_guard<std::mutex> lock(driver.mu);
    std::erase(stream->ctx()->streams, stream);
  }
  // Returns at once; queued work still runs, then the stream goes (as CUDA documents).
  stream->Retire();
  return CUDA_SUCCESS;
}

#define SIMCUDA_STREAM_PAIR(NAME, PARAMS, CALL_ARGS)                        \
  SIMCUDA_API CUresult NAME PARAMS { return Impl_##NAME CALL_ARGS(false); } \
  SIMCUDA_API CUresult NAME##_ptsz PARAMS { return Impl_##NAME CALL_ARGS(true); }

namespace {
auto Impl_cuStreamSynchronize(CUstream s) {
  return [=](bool pt) { return Synchronize(s, pt); };
}
auto Impl_cuStreamQuery(CUstream s) {
  return [=](bool pt) { return Query(s, pt); };
}
auto Impl_cuStreamWaitEvent(CUstream s, CUevent e, unsigned f) {
  return [=](bool pt) { return WaitEvent(s, e, f, pt); };
}
auto Impl_cuEventRecord(CUevent e, CUstream s) {
  return [=](bool pt) { return Record(e, s, pt); };
}
auto Impl_cuEventRecordWithFlags(CUevent e, CUstream s, unsigned /*flags*/) {
  return [=](bool pt) { return Record(e, s, pt); };
}
auto Impl_cuLaunchHostFunc(CUstream s, CUhostFn fn, void* user) {
  return [=](bool pt) { return HostFunc(s, fn, user, pt); };
}
auto Impl_cuStreamBeginCapture_v2(CUstream s, CUstreamCaptureMode mode) {
  return [=](bool pt) { return BeginCapture(s, mode, pt); };
}
auto Impl_cuStreamEndCapture(CUstream s, CUgraph* g) {
  return [=](bool pt) { return EndCapture(s, g, pt); };
}
auto Impl_cuStreamIsCapturing(CUstream s, CUstreamCaptureStatus* status) {
  return [=](bool pt) { return IsCapturing(s, status, pt); };
}
auto Impl_cuStreamGetCaptureInfo_v2(CUstream s, CUstreamCaptureStatus* st, cuuint64_t* id,
                                    CUgraph* g, const CUgraphNode** deps, size_t* n) {
  return [=](bool pt) { return CaptureInfo(s, st, id, g, deps, n, pt); };
}
auto Impl_cuStreamGetCaptureInfo_v3(CUstream s, CUstreamCaptureStatus* st, cuuint64_t* id,
                                    CUgraph* g, const CUgraphNode** deps,
                                    const CUgraphEdgeData** edges, size_t* n) {
  return [=](bool pt) {
    if (edges != nullptr) *edges = nullptr;
    return CaptureInfo(s, st, id, g, deps, n, pt);
  };
}
auto Impl_cuStreamGetFlags(CUstream s, unsigned* flags) {
  return [=](bool pt) {
    if (flags == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* ctx = nullptr;
    Stream* stream = nullptr;
    if (CUresult r = Enter(s, pt, &ctx, &stream); r != CUDA_SUCCESS) return r;
    *flags = stream->flags();
    return CUDA_SUCCESS;
  };
}
auto Impl_cuStreamGetCtx(CUstream s, CUcontext* out) {
  return [=](bool pt) {
    if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* ctx = nullptr;
    Stream* stream = nullptr;
    if (CUresult r = Enter(s, pt, &ctx, &stream); r != CUDA_SUCCESS) return r;
    *out = reinterpret_cast<CUcontext>(stream->ctx());
    return CUDA_SUCCESS;
  };
}
auto Impl_cuStreamGetPriority(CUstream s, int* priority) {
  return [=](bool pt) {
    if (priority == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* ctx = nullptr;
    Stream* stream = nullptr;
    if (CUresult r = Enter(s, pt, &ctx, &stream); r != CUDA_SUCCESS) return r;
    *priority = 0;
    return CUDA_SUCCESS;
  };
}
auto Impl_cuStreamGetId(CUstream s, unsigned long long* id) {
  return [=](bool pt) {
    if (id == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* ctx = nullptr;
    Stream* stream = nullptr;
    if (CUresult r = Enter(s, pt, &ctx, &stream); r != CUDA_SUCCESS) return r;
    *id = reinterpret_cast<uintptr_t>(stream);
    return CUDA_SUCCESS;
  };
}
auto Impl_cuStreamAddCallback(CUstream s, CUstreamCallback callback, void* user, unsigned flags) {
  return [=](bool pt) {
    if (callback == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
    Context* ctx = nullptr;
    Stream* stream = nullptr;
    if (CUresult r = Enter(s, pt, &ctx, &stream); r != CUDA_SUCCESS) return r;
    CUstream as_handle = s;
    return Submit(stream, WorkKind::kHost,
                  [=] { callback(as_handle, ctx->sticky.load(std::memory_order_acquire), user); });
  };
}
}  // namespace

SIMCUDA_STREAM_PAIR(cuStreamSynchronize, (CUstream s), (s))
SIMCUDA_STREAM_PAIR(cuStreamQuery, (CUstream s), (s))
SIMCUDA_STREAM_PAIR(cuStreamWaitEvent, (CUstream s, CUevent e, unsigned int f), (s, e, f))
SIMCUDA_STREAM_PAIR(cuEventRecord, (CUevent e, CUstream s), (e, s))
SIMCUDA_STREAM_PAIR(cuEventRecordWithFlags, (CUevent e, CUstream s, unsigned int f), (e, s, f))
SIMCUDA_STREAM_PAIR(cuLaunchHostFunc, (CUstream s, CUhostFn fn, void* user), (s, fn, user))
SIMCUDA_STREAM_PAIR(cuStreamBeginCapture_v2, (CUstream s, CUstreamCaptureMode mode), (s, mode))
SIMCUDA_STREAM_PAIR(cuStreamEndCapture, (CUstream s, CUgraph* g), (s, g))
SIMCUDA_STREAM_PAIR(cuStreamIsCapturing, (CUstream s, CUstreamCaptureStatus* st), (s, st))
SIMCUDA_STREAM_PAIR(cuStreamGetCaptureInfo_v2,
                    (CUstream s, CUstreamCaptureStatus* st, cuuint64_t* id, CUgraph* g,
                     const CUgraphNode** deps, size_t* n),
                    (s, st, id, g, deps, n))
SIMCUDA_STREAM_PAIR(cuStreamGetCaptureInfo_v3,
                    (CUstream s, CUstreamCaptureStatus* st, cuuint64_t* id, CUgraph* g,
                     const CUgraphNode** deps, const CUgraphEdgeData** edges, size_t* n),
                    (s, st, id, g, deps, edges, n))
SIMCUDA_STREAM_PAIR(cuStreamGetFlags, (CUstream s, unsigned int* flags), (s, flags))
SIMCUDA_STREAM_PAIR(cuStreamGetCtx, (CUstream s, CUcontext* ctx), (s, ctx))
SIMCUDA_STREAM_PAIR(cuStreamGetPriority, (CUstream s, int* priority), (s, priority))
SIMCUDA_STREAM_PAIR(cuStreamGetId, (CUstream s, unsigned long long* id), (s, id))
SIMCUDA_STREAM_PAIR(cuStreamAddCallback,
                    (CUstream s, CUstreamCallback cb, void* user, unsigned int flags),
                    (s, cb, user, flags))

// --- events --------------------------------------------------------------------------

SIMCUDA_API CUresult cuEventCreate(CUevent* out, unsigned int flags) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  constexpr unsigned kKnown =
      CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
  if (flags & ~kKnown) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  auto* event = new Event();
  event->flags = flags;
  Driver::Get().Register(HandleKind::kEvent, event);
  *out = reinterpret_cast<CUevent>(event);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuEventDestroy_v2(CUevent handle) {
  Event* event = nullptr;
  if (CUresult r = CheckEvent(handle, &event); r != CUDA_SUCCESS) return r;
  Driver::Get().Unregister(HandleKind::kEvent, event);
  delete event;  // its completion is shared; a stream waiting on it keeps it alive
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuEventQuery(CUevent handle) {
  Event* event = nullptr;
  if (CUresult r = CheckEvent(handle, &event); r != CUDA_SUCCESS) return r;
  CompletionRef recorded;
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    recorded = event->recorded;
  }
  return IsDone(recorded) ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

SIMCUDA_API CUresult cuEventSynchronize(CUevent handle) {
  Event* event = nullptr;
  if (CUresult r = CheckEvent(handle, &event); r != CUDA_SUCCESS) return r;
  CompletionRef recorded;
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    recorded = event->recorded;
  }
  WaitFor(recorded);
  Context* ctx = CurrentContext();
  return ctx != nullptr ? ctx->sticky.load(std::memory_order_acquire) : CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuEventElapsedTime_v2(float* ms, CUevent start_handle, CUevent end_handle) {
  if (ms == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Event* start = nullptr;
  Event* end = nullptr;
  if (CUresult r = CheckEvent(start_handle, &start); r != CUDA_SUCCESS) return r;
  if (CUresult r = CheckEvent(end_handle, &end); r != CUDA_SUCCESS) return r;
  if ((start->flags | end->flags) & CU_EVENT_DISABLE_TIMING) return CUDA_ERROR_INVALID_HANDLE;
  CompletionRef a, b;
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    a = start->recorded;
    b = end->recorded;
  }
  if (!a || !b) return CUDA_ERROR_INVALID_HANDLE;
  if (!IsDone(a) || !IsDone(b)) return CUDA_ERROR_NOT_READY;
  WaitFor(a);  // takes the completion lock: orders the time_ms reads below
  *ms = static_cast<float>(b->time_ms - a->time_ms);
  return CUDA_SUCCESS;
}

// --- stream memory operations --------------------------------------------------------
// A wait blocks its stream (not the host) until the 32/64-bit word at `addr` satisfies the
// condition; a write stores a value in stream order. `addr` must be memory the device can
// address: device memory, or page-locked host memory (as CUDA requires).

namespace {

template <typename T>
bool Satisfied(const volatile T* word, T value, unsigned flags) {
  T current = *word;
  switch (flags & ~static_cast<unsigned>(CU_STREAM_WAIT_VALUE_FLUSH)) {
    case CU_STREAM_WAIT_VALUE_GEQ:
      return static_cast<std::make_signed_t<T>>(current - value) >= 0;
    case CU_STREAM_WAIT_VALUE_EQ:
      return current == value;
    case CU_STREAM_WAIT_VALUE_AND:
      return (current & value) != 0;
    default:  // NOR
      return static_cast<T>(~(current | value)) != 0;
  }
}

template <typename T>
CUresult WaitValue(CUstream handle, CUdeviceptr addr, T value, unsigned flags, bool per_thread) {
  unsigned op = flags & ~static_cast<unsigned>(CU_STREAM_WAIT_VALUE_FLUSH);
  if (op > CU_STREAM_WAIT_VALUE_NOR || addr % sizeof(T) != 0 || addr == 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  Context* ctx = nullptr;
  Stream* stream = nullptr;
  if (CUresult r = Enter(handle, per_thread, &ctx, &stream); r != CUDA_SUCCESS) return r;
  auto* word = reinterpret_cast<const volatile T*>(addr);
  return Submit(stream, WorkKind::kHost, [word, value, flags, ctx] {
    // Polls like the GPU's front end does; gives up only if the context dies meanwhile.
    for (;;) {
      bool satisfied = false;
      if (!Guarded([&] { satisfied = Satisfied(word, value, flags); })) {
        SetSticky(ctx, CUDA_ERROR_ILLEGAL_ADDRESS);  // the word was freed under the wait
        return;
      }
      if (satisfied) break;
      if (ctx->sticky.load(std::memory_order_acquire) != CUDA_SUCCESS) return;
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    std::atomic_thread_fence(std::memory_order_acquire);
  });
}

template <typename T>
CUresult WriteValue(CUstream handle, CUdeviceptr addr, T value, unsigned flags, bool per_thread) {
  if (flags > CU_STREAM_WRITE_VALUE_NO_MEMORY_BARRIER || addr % sizeof(T) != 0 || addr == 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  Context* ctx = nullptr;
  Stream* stream = nullptr;
  if (CUresult r = Enter(handle, per_thread, &ctx, &stream); r != CUDA_SUCCESS) return r;
  auto* word = reinterpret_cast<T*>(addr);
  return Submit(stream, WorkKind::kDevice, [word, value, ctx] {
    std::atomic_thread_fence(std::memory_order_release);
    if (!Guarded([&] { *reinterpret_cast<volatile T*>(word) = value; })) {
      SetSticky(ctx, CUDA_ERROR_ILLEGAL_ADDRESS);
    }
  });
}

}  // namespace

// Each in its legacy-stream and per-thread-stream (_ptsz) form.
#define SIMCUDA_MEMOP_PAIR(NAME, IMPL, T)                                                       \
  SIMCUDA_API CUresult NAME(CUstream s, CUdeviceptr addr, T value, unsigned int flags) {        \
    return IMPL<T>(s, addr, value, flags, false);                                               \
  }                                                                                             \
  SIMCUDA_API CUresult NAME##_ptsz(CUstream s, CUdeviceptr addr, T value, unsigned int flags) { \
    return IMPL<T>(s, addr, value, flags, true);                                                \
  }

SIMCUDA_MEMOP_PAIR(cuStreamWaitValue32_v2, WaitValue, cuuint32_t)
SIMCUDA_MEMOP_PAIR(cuStreamWaitValue64_v2, WaitValue, cuuint64_t)
SIMCUDA_MEMOP_PAIR(cuStreamWriteValue32_v2, WriteValue, cuuint32_t)
SIMCUDA_MEMOP_PAIR(cuStreamWriteValue64_v2, WriteValue, cuuint64_t)
