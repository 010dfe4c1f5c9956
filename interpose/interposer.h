// SPDX-License-Identifier: Apache-2.0
//
// What the hooks share: the runtime, started lazily on the first hooked call that needs
// it, and the managers of the devices, readable without a lock on the hot paths.
//
// Start-up: Start() reads SPILLWAY_* once. A bad value ends the process (status 1) with one
// line per bad variable on stderr that names it: Spillway never runs on a default it chose
// in place of a value it could not read. If the runtime cannot start for another reason
// (no driver, a device without host-located VMM), the interposer steps aside: every hook
// passes its call through, and the reason is logged once.
//
// Thread safety: every function may be called from any thread.
#ifndef SPILLWAY_INTERPOSE_INTERPOSER_H_
#define SPILLWAY_INTERPOSE_INTERPOSER_H_

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/manager.h"

namespace spillway::interpose {

// Starts the runtime once (see above). True if Spillway manages memory in this process.
bool Start();

// True once Start() succeeded and at least one allocation was ever managed: until then
// copies and launches skip every lookup.
bool AnyManaged();

// The manager of `device`, created on first use; null if Spillway is off or it failed.
Manager* ManagerForDevice(int device);

// The device of the calling thread's current context, or -1 if none is current.
int CurrentDevice();

// The manager owning `address`, or null; `*device` (if given) is its device. No lock on the
// way unless a managed allocation exists.
Manager* OwnerOf(CUdeviceptr address, int* device = nullptr);

// The context current when the managed allocation at `base` was made (pointer attributes
// answer with it), and its bookkeeping.
void RememberContext(CUdeviceptr base, CUcontext context);
CUcontext ContextOf(CUdeviceptr base);
void ForgetContext(CUdeviceptr base);

// Whether `stream` is capturing a graph. While no capture is open (the capture hooks count
// them), no: the common case costs one atomic load, not a driver call per launch. While one
// is, the real driver is asked (a failed query counts as capturing, the safe side: nothing
// is then queued on the stream).
bool IsCapturing(CUstream stream, bool per_thread);

// cuStreamDestroy reports here, before the real call: every manager stops naming `stream`
// (Manager::RetireStream). The default streams cannot be destroyed and are ignored.
void RetireStream(CUstream stream);

// The capture hooks report here: a capture began on `stream` (the real call succeeded), or
// cuStreamEndCapture was called on it (whatever its result, the capture is over).
void NoteCaptureBegan(CUstream stream, bool per_thread);
void NoteCaptureEnded(CUstream stream, bool per_thread);

// A capture-begin entry point the hooks do not cover (the CUDA 10.0 ABI, before capture
// modes) was handed to the program: from now on every launch asks the driver.
void NoteUntrackedCaptures();

// Whether `symbol` is such an entry point ("cuStreamBeginCapture", "_ptsz"). Allocation-free:
// the dlsym hook calls it.
bool IsUntrackedCaptureEntry(const char* symbol);

// The stream a per-thread-default-stream (_ptsz/_ptds) entry point means by `stream`.
inline CUstream EffectiveStream(CUstream stream, bool per_thread) {
  return per_thread && stream == nullptr ? CU_STREAM_PER_THREAD : stream;
}

// Makes every managed allocation one of `words` points into usable by work about to be
// queued on `stream` (Manager::PrepareLaunch, on each device's manager); `per_thread`: the
// call is a _ptsz/_ptds variant. On a capturing stream nothing may be queued: the
// allocations are marked escaped instead (a graph replay is not seen, so they must stay
// mapped for good). Whether the stream captures is asked only when a word is managed.
// Returns the driver error to report, or CUDA_SUCCESS.
// The allocations it found stay pinned (never chosen to make room) until FinishUse, so that
// no move can be planned between this and the real call: SPW_CALL_REAL and SPW_CHECKED
// call FinishUse after it (and PrepareUse itself releases what an earlier hook left).
CUresult PrepareUse(std::span<const uintptr_t> words, CUstream stream, bool per_thread);

// The aligned 8-byte words of a kernel's argument values (from `params` with the
// function's layout, or from the `extra` buffer); false when they cannot be known.
bool LaunchArgumentWords(CUfunction f, void** params, void** extra, std::vector<uintptr_t>* words);

// For data about to be copied to the device: every managed pointer among its aligned
// 8-byte words escapes (Manager::MarkEscaped).
CUresult NoteEscapes(const void* host, size_t bytes, CUstream stream);

// The CUresult for a runtime status (ResourceExhausted → out of memory, ...).
CUresult ToCuResult(const absl::Status& status);

// Resets what a fork child must not inherit (pthread_atfork child handler).
void ResetAfterFork();

}  // namespace spillway::interpose

#endif  // SPILLWAY_INTERPOSE_INTERPOSER_H_
