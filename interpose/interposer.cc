// SPDX-License-Identifier: Apache-2.0
#include "interpose/interposer.h"

#include <pthread.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "interpose/hook_table.h"
#include "runtime/fast_tls.h"
#include "runtime/log.h"
#include "runtime/options.h"
#include "runtime/runtime.h"

namespace spillway::interpose {
namespace {

enum class State : int { kNotStarted, kOn, kOff };

std::atomic<State> state{State::kNotStarted};
absl::Mutex start_mu(absl::kConstInit);
std::atomic<bool> any_managed{false};
std::array<std::atomic<Manager*>, Runtime::kMaxDevices> managers{};

// Contexts of managed allocations, for CU_POINTER_ATTRIBUTE_CONTEXT. Never destroyed (a
// preloaded library cannot know which of its users' destructors run after it).
absl::Mutex contexts_mu(absl::kConstInit);
auto* contexts ABSL_PT_GUARDED_BY(contexts_mu) = new absl::flat_hash_map<CUdeviceptr, CUcontext>();

// One write(2) per line: stdio may not be usable this early or this late.
void WriteError(absl::string_view line) {
  std::string text = "spillway: " + std::string(line) + "\n";
  ssize_t unused = write(2, text.data(), text.size());
  (void)unused;
}

void AtForkChild() { ResetAfterFork(); }

// Abseil built without NDEBUG (Debian's is) tracks the order of every Mutex acquisition to
// find deadlock cycles: a graph lookup per lock, on the launch path. The unit tests keep
// that check; the preloaded library turns it off before any of its locks is taken.
__attribute__((constructor)) void NoLockOrderTracking() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

bool StartLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(start_mu) {
  // Before anything can start threads: a fork child must not believe it has them.
  pthread_atfork(nullptr, nullptr, &AtForkChild);
  // The options first, on their own: their errors stop the program; the runtime's other
  // failures (no usable device) only turn Spillway off.
  absl::StatusOr<Options> options = LoadOptionsFromEnvironment();
  if (!options.ok()) {
    for (absl::string_view line : absl::StrSplit(options.status().message(), '\n')) {
      if (!line.empty()) WriteError(line);
    }
    _exit(1);
  }
  absl::Status status = Runtime::Get().Init();
  if (!status.ok()) {
    if (status.message().rfind("SPILLWAY_", 0) == 0) {  // SPILLWAY_LOG_FILE cannot be opened
      WriteError(status.message());
      _exit(1);
    }
    SPW_LOG(kWarn, "Spillway is off, calls go straight to the driver: {}",
            std::string(status.message()));
    return false;
  }
  // SPILLWAY_STATS is written at exit by the runtime itself (Runtime::Init registers it).
  return true;
}

}  // namespace

bool Start() {
  State s = state.load(std::memory_order_acquire);
  if (s != State::kNotStarted) return s == State::kOn;
  absl::MutexLock lock(&start_mu);
  s = state.load(std::memory_order_acquire);
  if (s != State::kNotStarted) return s == State::kOn;
  s = StartLocked() ? State::kOn : State::kOff;
  state.store(s, std::memory_order_release);
  return s == State::kOn;
}

bool AnyManaged() { return any_managed.load(std::memory_order_acquire); }

Manager* ManagerForDevice(int device) {
  if (device < 0 || device >= Runtime::kMaxDevices || !Start()) return nullptr;
  if (Manager* m = managers[device].load(std::memory_order_acquire); m != nullptr) return m;
  absl::StatusOr<Manager*> manager = Runtime::Get().ManagerFor(device);
  if (!manager.ok()) {
    SPW_LOG(kWarn, "device {}: allocations stay plain device memory: {}", device,
            std::string(manager.status().message()));
    return nullptr;
  }
  managers[device].store(*manager, std::memory_order_release);
  any_managed.store(true, std::memory_order_release);
  return *manager;
}

int CurrentDevice() {
  auto get_device = SPW_REAL(cuCtxGetDevice);
  CUdevice device = -1;
  if (get_device == nullptr || get_device(&device) != CUDA_SUCCESS) return -1;
  return device;
}

Manager* OwnerOf(CUdeviceptr address, int* device) {
  if (!AnyManaged()) return nullptr;
  for (int d = 0; d < Runtime::kMaxDevices; ++d) {
    Manager* m = managers[d].load(std::memory_order_acquire);
    if (m != nullptr && m->Owns(address)) {
      if (device != nullptr) *device = d;
      return m;
    }
  }
  return nullptr;
}

void RememberContext(CUdeviceptr base, CUcontext context) {
  absl::MutexLock lock(&contexts_mu);
  (*contexts)[base] = context;
}

CUcontext ContextOf(CUdeviceptr base) {
  absl::MutexLock lock(&contexts_mu);
  auto it = contexts->find(base);
  return it == contexts->end() ? nullptr : it->second;
}

void ForgetContext(CUdeviceptr base) {
  absl::MutexLock lock(&contexts_mu);
  contexts->erase(base);
}

// Streams with an open capture, as (stream, per_thread) pairs resolved to the stream they
// mean; `open_captures` mirrors the count for the launch path's lock-free check. Captures
// begin and end rarely: a mutex is fine.
absl::Mutex captures_mu(absl::kConstInit);
auto* capturing_streams ABSL_PT_GUARDED_BY(captures_mu) = new absl::flat_hash_set<CUstream>();
std::atomic<int> open_captures{0};
std::atomic<bool> untracked_captures{false};

void RetireStream(CUstream stream) {
  if (!AnyManaged() || stream == nullptr || stream == CU_STREAM_LEGACY ||
      stream == CU_STREAM_PER_THREAD) {
    return;
  }
  for (auto& slot : managers) {
    Manager* m = slot.load(std::memory_order_acquire);
    if (m == nullptr) continue;
    if (absl::Status s = m->RetireStream(stream); !s.ok()) {
      SPW_LOG(kWarn, "stream {} being destroyed: {}", static_cast<void*>(stream),
              std::string(s.message()));
    }
  }
}

void NoteCaptureBegan(CUstream stream, bool per_thread) {
  absl::MutexLock lock(&captures_mu);
  if (capturing_streams->insert(EffectiveStream(stream, per_thread)).second) {
    open_captures.fetch_add(1, std::memory_order_release);
  }
}

void NoteCaptureEnded(CUstream stream, bool per_thread) {
  absl::MutexLock lock(&captures_mu);
  if (capturing_streams->erase(EffectiveStream(stream, per_thread)) != 0) {
    open_captures.fetch_sub(1, std::memory_order_release);
  }
}

bool IsUntrackedCaptureEntry(const char* symbol) {
  return symbol != nullptr && (std::strcmp(symbol, "cuStreamBeginCapture") == 0 ||
                               std::strcmp(symbol, "cuStreamBeginCapture_ptsz") == 0);
}

void NoteUntrackedCaptures() { untracked_captures.store(true, std::memory_order_release); }

bool IsCapturing(CUstream stream, bool per_thread) {
  if (open_captures.load(std::memory_order_acquire) == 0 &&
      !untracked_captures.load(std::memory_order_relaxed)) {
    return false;
  }
  auto query = per_thread ? SPW_REAL(cuStreamIsCapturing_ptsz) : SPW_REAL(cuStreamIsCapturing);
  if (query == nullptr) return false;  // a driver without graphs captures nothing
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  // A failed query (a bad handle: the call itself will fail on it) queues nothing.
  if (query(stream, &status) != CUDA_SUCCESS) return true;
  return status != CU_STREAM_CAPTURE_STATUS_NONE;
}

CUresult ToCuResult(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return CUDA_SUCCESS;
    case absl::StatusCode::kResourceExhausted:
      return CUDA_ERROR_OUT_OF_MEMORY;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
      return CUDA_ERROR_INVALID_VALUE;
    case absl::StatusCode::kFailedPrecondition:
      return CUDA_ERROR_NOT_INITIALIZED;
    case absl::StatusCode::kUnimplemented:
      return CUDA_ERROR_NOT_SUPPORTED;
    default:
      return CUDA_ERROR_UNKNOWN;
  }
}

namespace {

// A thread's managed allocations pinned by PrepareUse until FinishUse: hits of each manager
// as a range of one vector. Per thread through PerThread (the launch path reads it).
struct ThreadUse {
  struct Pinned {
    Manager* manager;
    size_t begin, end;  // in hits
    uint64_t found_at;
  };
  std::vector<AllocationMap::Hit> hits;
  std::vector<Pinned> pinned;
};

}  // namespace

void FinishUse() {
  ThreadUse* use = PerThread<ThreadUse>::IfCreated();
  if (use == nullptr || use->pinned.empty()) return;
  for (const ThreadUse::Pinned& p : use->pinned) {
    std::span<const AllocationMap::Hit> hits(use->hits.data() + p.begin, p.end - p.begin);
    p.manager->EndLaunch(hits, p.found_at);
  }
  use->pinned.clear();
  use->hits.clear();
}

CUresult PrepareUse(std::span<const uintptr_t> words, CUstream stream, bool per_thread) {
  if (!AnyManaged() || words.empty()) return CUDA_SUCCESS;
  FinishUse();  // pins a hook left behind by returning before its real call
  const CUstream effective = EffectiveStream(stream, per_thread);
  int capturing = -1;  // not asked yet: most launches name no managed memory
  ThreadUse& use = PerThread<ThreadUse>::Get();
  for (auto& slot : managers) {
    Manager* m = slot.load(std::memory_order_acquire);
    if (m == nullptr) continue;
    const size_t begin = use.hits.size();
    const uint64_t found_at = m->FindHits(words, &use.hits);
    if (use.hits.size() == begin) continue;
    std::span<const AllocationMap::Hit> hits(use.hits.data() + begin, use.hits.size() - begin);
    if (capturing < 0) capturing = IsCapturing(stream, per_thread) ? 1 : 0;
    if (capturing) {
      // Nothing may be queued on a capturing stream, and what the graph touches must stay
      // mapped for its replays (which are checked at cuGraphLaunch): it escapes.
      for (const AllocationMap::Hit& hit : hits) {
        absl::Status s = m->MarkEscaped(hit.base, nullptr);
        if (!s.ok()) {
          SPW_LOG(kError, "captured work uses {:#x}: {}", hit.base, std::string(s.message()));
          use.hits.resize(begin);
          FinishUse();
          return ToCuResult(s);
        }
      }
      use.hits.resize(begin);
      continue;
    }
    use.pinned.push_back({m, begin, use.hits.size(), found_at});
    absl::Status prepared = m->PrepareLaunch(hits, effective, found_at);
    if (!prepared.ok()) {
      SPW_LOG(kError, "cannot make managed memory resident for work on stream {}: {}",
              static_cast<void*>(effective), std::string(prepared.message()));
      FinishUse();
      return ToCuResult(prepared);
    }
  }
  return CUDA_SUCCESS;
}

CUresult NoteEscapes(const void* host, size_t bytes, CUstream stream) {
  if (!AnyManaged() || host == nullptr || bytes < sizeof(uintptr_t)) return CUDA_SUCCESS;
  // The aligned words inside [host, host + bytes): pointers stored by the program are aligned.
  uintptr_t begin = (reinterpret_cast<uintptr_t>(host) + 7) & ~uintptr_t{7};
  uintptr_t end = (reinterpret_cast<uintptr_t>(host) + bytes) & ~uintptr_t{7};
  if (end <= begin) return CUDA_SUCCESS;
  std::span<const uintptr_t> words(reinterpret_cast<const uintptr_t*>(begin),
                                   (end - begin) / sizeof(uintptr_t));
  std::vector<CUdeviceptr> bases;
  for (auto& slot : managers) {
    Manager* m = slot.load(std::memory_order_acquire);
    if (m == nullptr) continue;
    bases.clear();
    m->FindAllocations(words, &bases);
    for (CUdeviceptr base : bases) {
      SPW_LOG(kDebug, "pointer to {:#x} copied to the device: no longer guarded", base);
      absl::Status s = m->MarkEscaped(base, stream);
      if (!s.ok() && s.code() != absl::StatusCode::kNotFound) return ToCuResult(s);
    }
  }
  return CUDA_SUCCESS;
}

void ResetAfterFork() {
  // The child has one thread: this one. The mover threads are gone and locks other threads
  // held at the fork stay taken in the child's copy of memory, so the runtime's state is
  // unusable here. The child is switched off instead: with the state no longer kNotStarted
  // and no manager visible, no hook takes a lock or touches the runtime again, and every
  // call goes straight to the driver (which, as CUDA itself, a child may only use after
  // exec; an exec'd program under LD_PRELOAD starts its own Spillway).
  for (auto& slot : managers) slot.store(nullptr, std::memory_order_relaxed);
  open_captures.store(0, std::memory_order_relaxed);  // the child has no graphs in flight
  Runtime::Get().DisableInForkChild();                // no statistics from the child's exit
  any_managed.store(false, std::memory_order_relaxed);
  state.store(State::kOff, std::memory_order_release);
}

}  // namespace spillway::interpose
