// SPDX-License-Identifier: Apache-2.0
//
// The driver seam: the table of real CUDA driver entry points the runtime calls.
//
// The runtime never calls a cu* symbol by name (in a preloaded library that would call
// our own hooks). It resolves each entry point once, by explicit ABI version, through the
// real driver's cuGetProcAddress_v2, found with glibc's own dlsym in the real
// libcuda.so.1. In tests that library is simcuda's; on a machine with a GPU it is
// NVIDIA's. The same code runs on both.
//
// Thread safety: the table is immutable once loaded; LoadDriverApi is thread-safe.
#ifndef SPILLWAY_RUNTIME_DRIVER_API_H_
#define SPILLWAY_RUNTIME_DRIVER_API_H_

#include <cuda.h>
#include <cudaTypedefs.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spillway {

// (name, ABI version): each row's type is PFN_<name>_v<version> from cudaTypedefs.h.
#define SPW_DRIVER_ENTRY_POINTS(X)        \
  X(cuInit, 2000)                         \
  X(cuGetErrorName, 6000)                 \
  X(cuGetErrorString, 6000)               \
  X(cuDeviceGet, 2000)                    \
  X(cuDeviceGetAttribute, 2000)           \
  X(cuDeviceTotalMem, 3020)               \
  X(cuDevicePrimaryCtxRetain, 7000)       \
  X(cuCtxGetCurrent, 4000)                \
  X(cuCtxSetCurrent, 4000)                \
  X(cuCtxGetDevice, 2000)                 \
  X(cuCtxPushCurrent, 4000)               \
  X(cuCtxPopCurrent, 4000)                \
  X(cuMemGetInfo, 3020)                   \
  X(cuMemGetAllocationGranularity, 10020) \
  X(cuMemAddressReserve, 10020)           \
  X(cuMemAddressFree, 10020)              \
  X(cuMemCreate, 10020)                   \
  X(cuMemRelease, 10020)                  \
  X(cuMemMap, 10020)                      \
  X(cuMemUnmap, 10020)                    \
  X(cuMemSetAccess, 10020)                \
  X(cuMemcpyAsync, 4000)                  \
  X(cuMemHostAlloc, 2020)                 \
  X(cuMemFreeHost, 2000)                  \
  X(cuMemHostRegister, 6050)              \
  X(cuMemHostUnregister, 4000)            \
  X(cuStreamCreate, 2000)                 \
  X(cuStreamDestroy, 4000)                \
  X(cuStreamSynchronize, 2000)            \
  X(cuStreamWaitEvent, 3020)              \
  X(cuStreamWaitValue32, 11070)           \
  X(cuStreamWriteValue32, 11070)          \
  X(cuEventCreate, 2000)                  \
  X(cuEventDestroy, 4000)                 \
  X(cuEventRecord, 2000)                  \
  X(cuEventQuery, 2000)                   \
  X(cuEventSynchronize, 2000)             \
  X(cuEventElapsedTime, 12080)

struct DriverApi {
#define SPW_DECLARE_ENTRY(name, version) PFN_##name##_v##version name = nullptr;
  SPW_DRIVER_ENTRY_POINTS(SPW_DECLARE_ENTRY)
#undef SPW_DECLARE_ENTRY
};

// Loads the table once per process (later calls return the same table or error).
// `library` names the driver to open; tests may point it elsewhere.
absl::StatusOr<const DriverApi*> LoadDriverApi(const char* library = "libcuda.so.1");

// The loaded table. REQUIRES: LoadDriverApi succeeded earlier.
const DriverApi& Driver();

// "cuMemMap(...) failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)" as a status whose code
// follows the CUresult (OOM → ResourceExhausted, invalid value → InvalidArgument, ...).
absl::Status CudaError(CUresult result, const char* call);

}  // namespace spillway

// Evaluates a driver call; on failure returns its status from the enclosing function.
#define SPW_CHECK_CU(call)                                                                   \
  do {                                                                                       \
    CUresult spw_cu_result_ = (call);                                                        \
    if (spw_cu_result_ != CUDA_SUCCESS) return ::spillway::CudaError(spw_cu_result_, #call); \
  } while (0)

#endif  // SPILLWAY_RUNTIME_DRIVER_API_H_
