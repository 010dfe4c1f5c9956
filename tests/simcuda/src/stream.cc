// SPDX-License-Identifier: Apache-2.0
#include "stream.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

#include "device_memory.h"
#include "fault.h"
#include "timeline.h"

namespace simcuda {
namespace {

std::mutex& CompletionMutex() {
  static std::mutex* mu = new std::mutex();
  return *mu;
}

// Wakes only the waiters of `c` (a GPU spends no host CPU on one stream waiting for
// another; one wake-up per completion for every waiter cost ~15% of the CPU of a busy run).
// The caller's reference keeps `c`, and so its cv, alive past the unlock.
// `time_ms`: when it completed on the device's clock.
void Complete(const CompletionRef& c, double time_ms) {
  {
    std::lock_guard<std::mutex> lock(CompletionMutex());
    c->time_ms = time_ms;
    c->done = true;
  }
  c->cv.notify_all();
}

// Set by the stream worker around the operation it runs, for EngineCopy (NaN elsewhere):
// when the operation became ready on the device, and when its modelled copy ended.
thread_local double op_ready_ms = std::numeric_limits<double>::quiet_NaN();
thread_local double op_end_ms = std::numeric_limits<double>::quiet_NaN();

// One engine per direction per device: a copy holds it for its whole duration, so two
// copies in one direction serialise while opposite directions overlap, as on a GPU.
struct CopyEngine {
  std::mutex mu;
  // When the modelled link finishes the bytes handed to it so far. A copy queued right
  // behind another starts when the link frees, not when its worker thread wakes up: a
  // GPU's copy engine streams queued copies back to back.
  std::chrono::steady_clock::time_point link_free;
};
CopyEngine& Engine(int device, CopyDirection direction) {
  static CopyEngine* engines = new CopyEngine[2 * 16];
  return engines[2 * device + (direction == CopyDirection::kHostToDevice ? 0 : 1)];
}

}  // namespace

double NowMs() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

double WaitFor(const CompletionRef& c) {
  if (!c) return 0;
  std::unique_lock<std::mutex> lock(CompletionMutex());
  c->cv.wait(lock, [&] { return c->done; });
  return c->time_ms;
}

bool IsDone(const CompletionRef& c) {
  if (!c) return true;
  std::lock_guard<std::mutex> lock(CompletionMutex());
  return c->done;
}

Stream::Stream(Context* ctx, unsigned flags, bool legacy)
    : ctx_(ctx), flags_(flags), legacy_(legacy) {}

CompletionRef Stream::Enqueue(WorkKind kind, std::function<void()> fn,
                              std::vector<CompletionRef> deps) {
  auto done = std::make_shared<Completion>();
  std::lock_guard<std::mutex> lock(mu_);
  if (!started_) {
    // The worker starts with the first work, so idle streams cost no thread.
    started_ = true;
    std::thread([this] { Run(); }).detach();
  }
  queue_.push_back(Op{kind, std::move(fn), std::move(deps), done, NowMs()});
  last_ = done;
  cv_.notify_one();
  return done;
}

CompletionRef Stream::last() {
  std::lock_guard<std::mutex> lock(mu_);
  return last_;
}

void Stream::Retire() {
  std::lock_guard<std::mutex> lock(mu_);
  retired_ = true;
  if (!started_) {
    // No worker to delete us.
    started_ = true;
    std::thread([this] { Run(); }).detach();
  }
  cv_.notify_one();
}

void Stream::Run() {
  double previous_done_ms = 0;  // on the device's clock
  for (;;) {
    Op op;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !queue_.empty() || retired_; });
      if (queue_.empty()) break;
      op = std::move(queue_.front());
      queue_.pop_front();
    }
    double ready = std::max(previous_done_ms, op.enqueued_ms);
    for (const auto& dep : op.deps) ready = std::max(ready, WaitFor(dep));
    // After a fault the context is dead: queued work is dropped, as on a GPU.
    op_end_ms = std::numeric_limits<double>::quiet_NaN();
    if (ctx_->sticky.load(std::memory_order_acquire) == CUDA_SUCCESS) {
      op_ready_ms = ready;
      op.fn();
      op_ready_ms = std::numeric_limits<double>::quiet_NaN();
    }
    // A marker takes no device time; a paced copy ends when its last byte crossed the
    // modelled link (the worker wakes a little later); anything else when it returned.
    previous_done_ms = op.kind == WorkKind::kMarker                           ? ready
                       : op.kind == WorkKind::kCopy && !std::isnan(op_end_ms) ? op_end_ms
                                                                              : NowMs();
    Complete(op.done, previous_done_ms);
  }
  delete this;  // retired and drained: no handle refers to this stream any more
}

CUresult ResolveStream(Context* ctx, CUstream handle, bool per_thread_default, Stream** out) {
  if (handle == CU_STREAM_LEGACY || (handle == nullptr && !per_thread_default)) {
    *out = ctx->legacy;
    return CUDA_SUCCESS;
  }
  if (handle == CU_STREAM_PER_THREAD || handle == nullptr) {
    Driver& driver = Driver::Get();
    std::lock_guard<std::mutex> lock(driver.mu);
    Stream*& s = ctx->per_thread[std::this_thread::get_id()];
    if (s == nullptr) s = new Stream(ctx, 0, /*legacy=*/false);
    *out = s;
    return CUDA_SUCCESS;
  }
  auto* s = reinterpret_cast<Stream*>(handle);
  if (!Driver::Get().IsLiveStream(s)) return CUDA_ERROR_INVALID_HANDLE;
  if (s->ctx() != ctx) return CUDA_ERROR_INVALID_HANDLE;
  *out = s;
  return CUDA_SUCCESS;
}

CUresult Submit(Stream* stream, WorkKind kind, std::function<void()> fn, CompletionRef* done,
                std::vector<CompletionRef> deps) {
  Context* ctx = stream->ctx();
  Driver& driver = Driver::Get();
  std::lock_guard<std::mutex> lock(driver.mu);
  if (stream->legacy()) {
    // Legacy work would depend on every blocking stream; one that is capturing cannot be
    // depended on, which invalidates its capture.
    bool implicit = false;
    for (Stream* other : ctx->streams) {
      if (other->blocking() && other->capture_graph != nullptr) {
        other->capture_invalidated = true;
        implicit = true;
      }
    }
    if (implicit) return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
    for (Stream* other : ctx->streams) {
      if (other->blocking()) deps.push_back(other->last());
    }
    for (auto& [thread, other] : ctx->per_thread) deps.push_back(other->last());
  } else if (stream->blocking()) {
    deps.push_back(ctx->legacy->last());
  }
  std::erase(deps, nullptr);
  CompletionRef c = stream->Enqueue(kind, std::move(fn), std::move(deps));
  if (done != nullptr) *done = c;
  return CUDA_SUCCESS;
}

void RunDeviceWork(Context* ctx, const std::function<void()>& fn) {
  if (!Guarded(fn)) SetSticky(ctx, CUDA_ERROR_ILLEGAL_ADDRESS);
}

bool EngineCopy(int device, CopyDirection direction, void* dst, const void* src, size_t bytes) {
  auto copy = [&](size_t from, size_t n) {
    return Guarded([&] {
      std::memcpy(static_cast<char*>(dst) + from, static_cast<const char*>(src) + from, n);
    });
  };
  if (direction != CopyDirection::kHostToDevice && direction != CopyDirection::kDeviceToHost) {
    return copy(0, bytes);
  }
  const Config& config = Driver::Get().config();
  double rate =
      direction == CopyDirection::kHostToDevice ? config.h2d_bytes_per_s : config.d2h_bytes_per_s;
  CopyEngine& engine = Engine(device, direction);
  std::lock_guard<std::mutex> lock(engine.mu);
  if (rate <= 0) return copy(0, bytes);
  // Paced in pieces, so a modelled link delivers bytes at its rate, not all at the end.
  constexpr size_t kPiece = size_t{1} << 20;
  constexpr auto kBackToBack = std::chrono::microseconds(500);
  // A copy queued right behind another starts when the link frees, not when its worker
  // wakes up, as on a GPU; but never before it became ready (its stream's previous
  // operation and its dependencies done).
  auto now = std::chrono::steady_clock::now();
  auto start = now;
  if (now - engine.link_free < kBackToBack) {
    auto ready = std::chrono::steady_clock::time_point::min();
    if (!std::isnan(op_ready_ms)) {
      ready = std::chrono::steady_clock::time_point(
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
              std::chrono::duration<double, std::milli>(op_ready_ms)));
    }
    start = std::min(now, std::max(engine.link_free, ready));
  }
  for (size_t done = 0; done < bytes;) {
    size_t n = std::min(kPiece, bytes - done);
    if (!copy(done, n)) return false;
    done += n;
    std::this_thread::sleep_until(start + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                              std::chrono::duration<double>(done / rate)));
  }
  engine.link_free = start + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::duration<double>(bytes / rate));
  op_end_ms =
      std::chrono::duration<double, std::milli>(engine.link_free.time_since_epoch()).count();
  if (TimelineOn()) {
    auto ms = [](std::chrono::steady_clock::time_point t) {
      return std::chrono::duration<double, std::milli>(t.time_since_epoch()).count();
    };
    RecordTimeline(direction == CopyDirection::kHostToDevice ? "h2d" : "d2h", device, nullptr,
                   bytes, ms(start), ms(engine.link_free));
  }
  return true;
}

CopyDirection Classify(const void* dst, const void* src, size_t bytes) {
  DeviceMemory& memory = DeviceMemory::Get();
  bool dst_device = memory.OnDevice(reinterpret_cast<uintptr_t>(dst), bytes);
  bool src_device = memory.OnDevice(reinterpret_cast<uintptr_t>(src), bytes);
  if (dst_device && src_device) return CopyDirection::kDeviceToDevice;
  if (dst_device) return CopyDirection::kHostToDevice;
  if (src_device) return CopyDirection::kDeviceToHost;
  return CopyDirection::kHostToHost;
}

}  // namespace simcuda
