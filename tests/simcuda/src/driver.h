// SPDX-License-Identifier: Apache-2.0
//
// simcuda's driver-wide state: configuration (SIMCUDA_* variables, read at cuInit),
// devices, contexts and the registry of live handles.
//
// Contract:
// - Every CUDA entry point starts with one of the Enter* helpers below; they give the
//   documented error for a call before cuInit, without a current context, or in a context
//   whose sticky error is set (CUDA_ERROR_ILLEGAL_ADDRESS after a fault).
// - Handles the application passes in are checked against the registry before they are
//   dereferenced, so a made-up handle is CUDA_ERROR_INVALID_HANDLE, never a crash.
// - Driver-wide objects are never destroyed (worker threads may outlive main()).
//
// Thread safety: all state here is guarded by Driver::mu unless a field says otherwise.
#ifndef SIMCUDA_DRIVER_H_
#define SIMCUDA_DRIVER_H_

#include <cuda.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#define SIMCUDA_API extern "C" __attribute__((visibility("default")))

namespace simcuda {

class Stream;

struct Config {
  size_t device_memory = size_t{8} << 30;  // SIMCUDA_DEVICE_MEMORY
  int device_count = 1;                    // SIMCUDA_DEVICES
  size_t granularity = size_t{2} << 20;    // SIMCUDA_GRANULARITY
  double h2d_bytes_per_s = 0;              // SIMCUDA_H2D_GBPS (0 = unmodelled)
  double d2h_bytes_per_s = 0;              // SIMCUDA_D2H_GBPS
  int host_numa_id = 0;                    // SIMCUDA_HOST_NUMA_ID
  bool strict_streams = false;             // SIMCUDA_STRICT_STREAMS
};

struct Context {
  int device = 0;
  bool primary = false;
  unsigned flags = 0;
  // Set once by a fault; every later call in the context returns it.
  std::atomic<CUresult> sticky{CUDA_SUCCESS};
  // The legacy default stream (NULL / CU_STREAM_LEGACY). Created with the context.
  Stream* legacy = nullptr;
  // Per-thread default streams, created on first use by each thread.
  std::unordered_map<std::thread::id, Stream*> per_thread;  // GUARDED_BY(Driver::mu)
  // Streams of this context (blocking and non-blocking, legacy excluded), for the legacy
  // stream's implicit synchronisation and cuCtxSynchronize.
  std::vector<Stream*> streams;  // GUARDED_BY(Driver::mu)
};

struct Device {
  int primary_refcount = 0;
  unsigned primary_flags = 0;
  Context* primary = nullptr;  // created on first retain, kept (reset keeps the object)
};

enum class HandleKind {
  kContext,
  kStream,
  kEvent,
  kModule,
  kFunction,
  kGraph,
  kGraphNode,
  kGraphExec
};

class Driver {
 public:
  static Driver& Get();

  // cuInit: parses the configuration once. Returns the same result on every call.
  CUresult Init();
  bool initialized() const { return initialized_.load(std::memory_order_acquire); }
  const Config& config() const { return config_; }

  void Register(HandleKind kind, const void* handle);
  // Unregisters a handle whose object must outlive it (a destroyed context may still be
  // on other threads' stacks; an unloaded module's functions may be in captured graphs).
  // The object is kept, reachable, for the life of the process.
  void Retire(HandleKind kind, const void* handle);
  void Unregister(HandleKind kind, const void* handle);
  bool IsLive(HandleKind kind, const void* handle);
  // A stream handle's validity. A destroyed stream is CUDA_ERROR_INVALID_HANDLE, as for any
  // unknown handle; with SIMCUDA_STRICT_STREAMS set, using one aborts the process instead,
  // saying so: on a GPU the handle is freed memory and the call is undefined behaviour (a
  // crash, or another stream's work), which a test must not be able to mistake for an error.
  bool IsLiveStream(const void* handle);

  std::mutex mu;
  std::vector<Device> devices;  // GUARDED_BY(mu)

 private:
  std::atomic<bool> initialized_{false};
  CUresult init_result_ = CUDA_SUCCESS;
  std::once_flag init_once_;
  Config config_;
  std::mutex handles_mu_;
  std::unordered_set<const void*> handles_[8];         // GUARDED_BY(handles_mu_)
  std::vector<const void*> retired_;                   // GUARDED_BY(handles_mu_)
  std::unordered_set<const void*> destroyed_streams_;  // GUARDED_BY(handles_mu_)
};

// The calling thread's current context (top of its context stack), or null.
Context* CurrentContext();
std::vector<Context*>& ContextStack();

// Parses a size such as "256M", "1GiB", "512k", "4096". False on malformed input.
bool ParseSize(const char* text, size_t* out);

// Entry checks, in the order the real driver applies them.
CUresult EnterInit();                  // initialised?
CUresult EnterContext(Context** ctx);  // initialised, current context, not poisoned
// Poisons `ctx` (first error wins) as a fault does on a GPU.
void SetSticky(Context* ctx, CUresult error);

// Creates a context with its legacy stream; registers it.
Context* NewContext(int device, unsigned flags, bool primary);
// Waits for all work of the context, then returns its sticky error.
CUresult SynchronizeContext(Context* ctx);

}  // namespace simcuda

#endif  // SIMCUDA_DRIVER_H_
