// SPDX-License-Identifier: Apache-2.0
//
// How the end-to-end programs reach the driver, chosen on the command line, so that one
// program exercises every path a real CUDA program takes:
//   direct       calls the entry points by name (linked against the toolkit's stub)
//   procaddress  dlopen("libcuda.so.1") + dlsym("cuGetProcAddress_v2"), then every entry
//                point through cuGetProcAddress at its ABI version, as cudart does
//   dlopen       dlopen("libcuda.so.1") + dlsym of each versioned symbol
//   ptsz         as procaddress with CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM: the
//                per-thread default stream variants (_ptsz/_ptds), as cudart built with
//                --default-stream per-thread does
#ifndef SPILLWAY_TESTS_E2E_E2E_DRIVER_H_
#define SPILLWAY_TESTS_E2E_E2E_DRIVER_H_

#include <cuda.h>
#include <cudaTypedefs.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

struct Driver {
  PFN_cuInit_v2000 Init;
  PFN_cuGetErrorName_v6000 GetErrorName;
  PFN_cuDeviceGet_v2000 DeviceGet;
  PFN_cuDevicePrimaryCtxRetain_v7000 PrimaryCtxRetain;
  PFN_cuCtxSetCurrent_v4000 CtxSetCurrent;
  PFN_cuCtxSynchronize_v2000 CtxSynchronize;
  PFN_cuModuleLoad_v2000 ModuleLoad;
  PFN_cuModuleGetFunction_v2000 ModuleGetFunction;
  PFN_cuMemAlloc_v3020 MemAlloc;
  PFN_cuMemFree_v3020 MemFree;
  PFN_cuMemcpyHtoD_v3020 MemcpyHtoD;
  PFN_cuMemcpyDtoH_v3020 MemcpyDtoH;
  PFN_cuMemsetD32_v3020 MemsetD32;
  PFN_cuLaunchKernel_v4000 LaunchKernel;
  PFN_cuStreamCreate_v2000 StreamCreate;
  PFN_cuStreamSynchronize_v2000 StreamSynchronize;
  PFN_cuMemcpyHtoDAsync_v3020 MemcpyHtoDAsync;
  PFN_cuMemcpyDtoHAsync_v3020 MemcpyDtoHAsync;
};

[[noreturn]] inline void Die(const char* what) {
  std::fprintf(stderr, "e2e: %s\n", what);
  std::exit(2);
}

inline Driver LoadDriver(const char* mode) {
  Driver d{};
  if (std::strcmp(mode, "direct") == 0) {
    d = Driver{&cuInit,
               &cuGetErrorName,
               &cuDeviceGet,
               &cuDevicePrimaryCtxRetain,
               &cuCtxSetCurrent,
               &cuCtxSynchronize,
               &cuModuleLoad,
               &cuModuleGetFunction,
               &cuMemAlloc_v2,
               &cuMemFree_v2,
               &cuMemcpyHtoD_v2,
               &cuMemcpyDtoH_v2,
               &cuMemsetD32_v2,
               &cuLaunchKernel,
               &cuStreamCreate,
               &cuStreamSynchronize,
               &cuMemcpyHtoDAsync_v2,
               &cuMemcpyDtoHAsync_v2};
    return d;
  }
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) Die("cannot dlopen libcuda.so.1");
  if (std::strcmp(mode, "dlopen") == 0) {
#define E2E_SYM(field, symbol)                                        \
  d.field = reinterpret_cast<decltype(d.field)>(dlsym(lib, #symbol)); \
  if (d.field == nullptr) Die("dlsym(" #symbol ") failed");
    // clang-format off
    E2E_SYM(Init, cuInit)
    E2E_SYM(GetErrorName, cuGetErrorName)
    E2E_SYM(DeviceGet, cuDeviceGet)
    E2E_SYM(PrimaryCtxRetain, cuDevicePrimaryCtxRetain)
    E2E_SYM(CtxSetCurrent, cuCtxSetCurrent)
    E2E_SYM(CtxSynchronize, cuCtxSynchronize)
    E2E_SYM(ModuleLoad, cuModuleLoad)
    E2E_SYM(ModuleGetFunction, cuModuleGetFunction)
    E2E_SYM(MemAlloc, cuMemAlloc_v2)
    E2E_SYM(MemFree, cuMemFree_v2)
    E2E_SYM(MemcpyHtoD, cuMemcpyHtoD_v2)
    E2E_SYM(MemcpyDtoH, cuMemcpyDtoH_v2)
    E2E_SYM(MemsetD32, cuMemsetD32_v2)
    E2E_SYM(LaunchKernel, cuLaunchKernel)
    E2E_SYM(StreamCreate, cuStreamCreate)
    E2E_SYM(StreamSynchronize, cuStreamSynchronize)
    E2E_SYM(MemcpyHtoDAsync, cuMemcpyHtoDAsync_v2)
    E2E_SYM(MemcpyDtoHAsync, cuMemcpyDtoHAsync_v2)
    // clang-format on
#undef E2E_SYM
    return d;
  }
  const bool ptsz = std::strcmp(mode, "ptsz") == 0;
  if (!ptsz && std::strcmp(mode, "procaddress") != 0) Die("unknown mode");
  auto get_proc = reinterpret_cast<PFN_cuGetProcAddress_v12000>(dlsym(lib, "cuGetProcAddress_v2"));
  if (get_proc == nullptr) Die("dlsym(cuGetProcAddress_v2) failed");
  // cudart asks for cuGetProcAddress itself through it, and uses that one from then on.
  void* self = nullptr;
  CUdriverProcAddressQueryResult found;
  if (get_proc("cuGetProcAddress", &self, 12000, 0, &found) != CUDA_SUCCESS || self == nullptr) {
    Die("cuGetProcAddress(cuGetProcAddress) failed");
  }
  get_proc = reinterpret_cast<PFN_cuGetProcAddress_v12000>(self);
  const cuuint64_t flags = ptsz ? CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM : 0;
#define E2E_PROC(field, name, version)                                                   \
  {                                                                                      \
    void* fn = nullptr;                                                                  \
    if (get_proc(#name, &fn, version, flags, &found) != CUDA_SUCCESS || fn == nullptr) { \
      Die("cuGetProcAddress(" #name ") failed");                                         \
    }                                                                                    \
    d.field = reinterpret_cast<decltype(d.field)>(fn);                                   \
  }
  // clang-format off
  E2E_PROC(Init, cuInit, 2000)
  E2E_PROC(GetErrorName, cuGetErrorName, 6000)
  E2E_PROC(DeviceGet, cuDeviceGet, 2000)
  E2E_PROC(PrimaryCtxRetain, cuDevicePrimaryCtxRetain, 7000)
  E2E_PROC(CtxSetCurrent, cuCtxSetCurrent, 4000)
  E2E_PROC(CtxSynchronize, cuCtxSynchronize, 2000)
  E2E_PROC(ModuleLoad, cuModuleLoad, 2000)
  E2E_PROC(ModuleGetFunction, cuModuleGetFunction, 2000)
  E2E_PROC(MemAlloc, cuMemAlloc, 3020)
  E2E_PROC(MemFree, cuMemFree, 3020)
  E2E_PROC(MemcpyHtoD, cuMemcpyHtoD, 3020)
  E2E_PROC(MemcpyDtoH, cuMemcpyDtoH, 3020)
  E2E_PROC(MemsetD32, cuMemsetD32, 3020)
  E2E_PROC(LaunchKernel, cuLaunchKernel, ptsz ? 7000 : 4000)
  E2E_PROC(StreamCreate, cuStreamCreate, 2000)
  E2E_PROC(StreamSynchronize, cuStreamSynchronize, 2000)
  E2E_PROC(MemcpyHtoDAsync, cuMemcpyHtoDAsync, 3020)
  E2E_PROC(MemcpyDtoHAsync, cuMemcpyDtoHAsync, 3020)
  // clang-format on
#undef E2E_PROC
  return d;
}

// Checks a driver call; out of memory exits 3 (the tests tell it from other failures).
#define E2E_CHECK(d, call)                                                              \
  do {                                                                                  \
    CUresult e2e_r_ = (call);                                                           \
    if (e2e_r_ != CUDA_SUCCESS) {                                                       \
      const char* e2e_name_ = nullptr;                                                  \
      (d).GetErrorName(e2e_r_, &e2e_name_);                                             \
      std::fprintf(stderr, "e2e: %s failed: %s\n", #call, e2e_name_ ? e2e_name_ : "?"); \
      std::exit(e2e_r_ == CUDA_ERROR_OUT_OF_MEMORY ? 3 : 2);                            \
    }                                                                                   \
  } while (0)

// FNV-1a over bytes, continuing from `hash`.
// What every test program starts with: the driver initialised, device 0's primary context
// current, and the kernel module at `module_path` loaded. Returns the context.
inline CUcontext StartDevice(Driver& d, const char* module_path, CUmodule* module) {
  E2E_CHECK(d, d.Init(0));
  CUdevice device;
  E2E_CHECK(d, d.DeviceGet(&device, 0));
  CUcontext ctx;
  E2E_CHECK(d, d.PrimaryCtxRetain(&ctx, device));
  E2E_CHECK(d, d.CtxSetCurrent(ctx));
  E2E_CHECK(d, d.ModuleLoad(module, module_path));
  return ctx;
}

inline unsigned long long Fnv1a(const void* data, size_t bytes,
                                unsigned long long hash = 1469598103934665603ull) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) hash = (hash ^ p[i]) * 1099511628211ull;
  return hash;
}

#endif  // SPILLWAY_TESTS_E2E_E2E_DRIVER_H_
