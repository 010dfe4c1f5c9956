// SPDX-License-Identifier: Apache-2.0
//
// cuInit and cuGetProcAddress: where a program first meets the driver, and where cudart,
// cuBLAS, cuDNN and NCCL fetch every other entry point.
//
// cuGetProcAddress(name, version, flags) picks the ABI variant exactly as the driver does
// (hook_table.cc: newest version not above the one asked for; with
// CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM the _ptsz/_ptds variant when one exists). If
// we hook that variant, the answer is our wrapper for it; otherwise it is the real driver's
// answer, status included. A caller on an old ABI thus keeps the old ABI, and a per-thread
// stream caller keeps per-thread semantics (cuda-notes.md, HAMi-core #36, #57).
//
// The selection is cross-checked: the wrapper replaces the driver's answer only if that
// answer is the very function we resolved for the variant. A driver newer than the toolkit
// the table was generated from may have a newer variant (say cuMemAlloc_v3) that our table
// does not know; its callers then get the driver's function, unhooked, never our wrapper
// of an older ABI.
#include <cuda.h>

#include "interpose/hook_table.h"
#include "interpose/interposer.h"

namespace ipc = spillway::interpose;

namespace {

CUresult GetProcAddress(const char* symbol, void** pfn, int version, cuuint64_t flags,
                        CUdriverProcAddressQueryResult* status) {
  PFN_cuGetProcAddress_v12000 real = ipc::RealGetProcAddress();
  if (real == nullptr) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = real(symbol, pfn, version, flags, status);
  if (r != CUDA_SUCCESS || pfn == nullptr || *pfn == nullptr) return r;
  bool known = false;
  if (const char* variant = ipc::SelectVariant(symbol, version, flags, &known);
      variant != nullptr) {
    if (void* hook = ipc::HookIfSameVariant(variant, *pfn); hook != nullptr) *pfn = hook;
    if (ipc::IsUntrackedCaptureEntry(variant)) ipc::NoteUntrackedCaptures();
  }
  return r;
}

}  // namespace

SPW_EXPORT CUresult cuInit(unsigned int flags) {
  ipc::Start();  // a bad SPILLWAY_* value ends the process here, at its start
  auto real = SPW_REAL(cuInit);
  if (real == nullptr) return CUDA_ERROR_NO_DEVICE;
  return real(flags);
}

SPW_EXPORT CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int version,
                                        cuuint64_t flags, CUdriverProcAddressQueryResult* status) {
  return GetProcAddress(symbol, pfn, version, flags, status);
}

// The CUDA 11.3 signature, without the status.
SPW_EXPORT CUresult cuGetProcAddress(const char* symbol, void** pfn, int version,
                                     cuuint64_t flags) {
  return GetProcAddress(symbol, pfn, version, flags, nullptr);
}
