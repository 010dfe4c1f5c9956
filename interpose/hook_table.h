// SPDX-License-Identifier: Apache-2.0
//
// The driver entry points libspillway.so hooks, one row per ABI variant, and the table of
// the real driver's functions behind them.
//
// Each row of SPW_HOOKED_VARIANTS is a row of the generated spillway/driver_variants.inc
// (base name, ABI version, kind, exported symbol, PFN type); hook_table.cc checks at compile
// time that every row is one the toolkit defines. The wrapper of a row is an exported C
// function named exactly like the variant's symbol, so programs linked to the driver reach
// it by name, and dlsym / cuGetProcAddress hand out its address.
//
// SPW_AUX_VARIANTS are driver functions the hooks call but do not hook.
//
// Real functions are resolved lazily, on first use, through the real driver's
// cuGetProcAddress_v2 with the row's version and flags (PER_THREAD_DEFAULT_STREAM for
// _ptsz/_ptds rows), which is how cudart asks for them: the real driver hands out exactly
// the variant the row names.
//
// Thread safety: everything here may be called from any thread; resolution races are
// benign (every racer stores the same pointer).
#ifndef SPILLWAY_INTERPOSE_HOOK_TABLE_H_
#define SPILLWAY_INTERPOSE_HOOK_TABLE_H_

#include <cuda.h>
#include <cudaTypedefs.h>

#include <cstddef>
#include <type_traits>

// cuda.h maps the name to cuGetProcAddress_v2; the interposer defines both variants itself.
#undef cuGetProcAddress

// clang-format off
#define SPW_HOOKED_VARIANTS(X)                                                                     \
  X(cuInit, 2000, DEFAULT, cuInit, PFN_cuInit_v2000)                                               \
  X(cuGetProcAddress, 11030, DEFAULT, cuGetProcAddress, PFN_cuGetProcAddress_v11030)               \
  X(cuGetProcAddress, 12000, DEFAULT, cuGetProcAddress_v2, PFN_cuGetProcAddress_v12000)            \
  X(cuMemAlloc, 3020, DEFAULT, cuMemAlloc_v2, PFN_cuMemAlloc_v3020)                                \
  X(cuMemAllocPitch, 3020, DEFAULT, cuMemAllocPitch_v2, PFN_cuMemAllocPitch_v3020)                 \
  X(cuMemFree, 3020, DEFAULT, cuMemFree_v2, PFN_cuMemFree_v3020)                                   \
  X(cuMemAllocAsync, 11020, DEFAULT, cuMemAllocAsync, PFN_cuMemAllocAsync_v11020)                  \
  X(cuMemAllocAsync, 11020, PTSZ, cuMemAllocAsync_ptsz, PFN_cuMemAllocAsync_v11020_ptsz)           \
  X(cuMemFreeAsync, 11020, DEFAULT, cuMemFreeAsync, PFN_cuMemFreeAsync_v11020)                     \
  X(cuMemFreeAsync, 11020, PTSZ, cuMemFreeAsync_ptsz, PFN_cuMemFreeAsync_v11020_ptsz)              \
  X(cuMemGetInfo, 3020, DEFAULT, cuMemGetInfo_v2, PFN_cuMemGetInfo_v3020)                          \
  X(cuDeviceTotalMem, 3020, DEFAULT, cuDeviceTotalMem_v2, PFN_cuDeviceTotalMem_v3020)              \
  X(cuMemGetAddressRange, 3020, DEFAULT, cuMemGetAddressRange_v2, PFN_cuMemGetAddressRange_v3020)  \
  X(cuPointerGetAttribute, 4000, DEFAULT, cuPointerGetAttribute, PFN_cuPointerGetAttribute_v4000)  \
  X(cuPointerGetAttributes, 7000, DEFAULT, cuPointerGetAttributes,                                 \
    PFN_cuPointerGetAttributes_v7000)                                                              \
  X(cuMemcpy, 4000, DEFAULT, cuMemcpy, PFN_cuMemcpy_v4000)                                         \
  X(cuMemcpy, 7000, PTDS, cuMemcpy_ptds, PFN_cuMemcpy_v7000_ptds)                                  \
  X(cuMemcpyAsync, 4000, DEFAULT, cuMemcpyAsync, PFN_cuMemcpyAsync_v4000)                          \
  X(cuMemcpyAsync, 7000, PTSZ, cuMemcpyAsync_ptsz, PFN_cuMemcpyAsync_v7000_ptsz)                   \
  X(cuMemcpyHtoD, 3020, DEFAULT, cuMemcpyHtoD_v2, PFN_cuMemcpyHtoD_v3020)                          \
  X(cuMemcpyHtoD, 7000, PTDS, cuMemcpyHtoD_v2_ptds, PFN_cuMemcpyHtoD_v7000_ptds)                   \
  X(cuMemcpyDtoH, 3020, DEFAULT, cuMemcpyDtoH_v2, PFN_cuMemcpyDtoH_v3020)                          \
  X(cuMemcpyDtoH, 7000, PTDS, cuMemcpyDtoH_v2_ptds, PFN_cuMemcpyDtoH_v7000_ptds)                   \
  X(cuMemcpyDtoD, 3020, DEFAULT, cuMemcpyDtoD_v2, PFN_cuMemcpyDtoD_v3020)                          \
  X(cuMemcpyDtoD, 7000, PTDS, cuMemcpyDtoD_v2_ptds, PFN_cuMemcpyDtoD_v7000_ptds)                   \
  X(cuMemcpyHtoDAsync, 3020, DEFAULT, cuMemcpyHtoDAsync_v2, PFN_cuMemcpyHtoDAsync_v3020)           \
  X(cuMemcpyHtoDAsync, 7000, PTSZ, cuMemcpyHtoDAsync_v2_ptsz, PFN_cuMemcpyHtoDAsync_v7000_ptsz)    \
  X(cuMemcpyDtoHAsync, 3020, DEFAULT, cuMemcpyDtoHAsync_v2, PFN_cuMemcpyDtoHAsync_v3020)           \
  X(cuMemcpyDtoHAsync, 7000, PTSZ, cuMemcpyDtoHAsync_v2_ptsz, PFN_cuMemcpyDtoHAsync_v7000_ptsz)    \
  X(cuMemcpyDtoDAsync, 3020, DEFAULT, cuMemcpyDtoDAsync_v2, PFN_cuMemcpyDtoDAsync_v3020)           \
  X(cuMemcpyDtoDAsync, 7000, PTSZ, cuMemcpyDtoDAsync_v2_ptsz, PFN_cuMemcpyDtoDAsync_v7000_ptsz)    \
  X(cuMemsetD8, 3020, DEFAULT, cuMemsetD8_v2, PFN_cuMemsetD8_v3020)                                \
  X(cuMemsetD8, 7000, PTDS, cuMemsetD8_v2_ptds, PFN_cuMemsetD8_v7000_ptds)                         \
  X(cuMemsetD16, 3020, DEFAULT, cuMemsetD16_v2, PFN_cuMemsetD16_v3020)                             \
  X(cuMemsetD16, 7000, PTDS, cuMemsetD16_v2_ptds, PFN_cuMemsetD16_v7000_ptds)                      \
  X(cuMemsetD32, 3020, DEFAULT, cuMemsetD32_v2, PFN_cuMemsetD32_v3020)                             \
  X(cuMemsetD32, 7000, PTDS, cuMemsetD32_v2_ptds, PFN_cuMemsetD32_v7000_ptds)                      \
  X(cuMemsetD8Async, 3020, DEFAULT, cuMemsetD8Async, PFN_cuMemsetD8Async_v3020)                    \
  X(cuMemsetD8Async, 7000, PTSZ, cuMemsetD8Async_ptsz, PFN_cuMemsetD8Async_v7000_ptsz)             \
  X(cuMemsetD16Async, 3020, DEFAULT, cuMemsetD16Async, PFN_cuMemsetD16Async_v3020)                 \
  X(cuMemsetD16Async, 7000, PTSZ, cuMemsetD16Async_ptsz, PFN_cuMemsetD16Async_v7000_ptsz)          \
  X(cuMemsetD32Async, 3020, DEFAULT, cuMemsetD32Async, PFN_cuMemsetD32Async_v3020)                 \
  X(cuMemsetD32Async, 7000, PTSZ, cuMemsetD32Async_ptsz, PFN_cuMemsetD32Async_v7000_ptsz)          \
  X(cuMemcpy2D, 3020, DEFAULT, cuMemcpy2D_v2, PFN_cuMemcpy2D_v3020)                                \
  X(cuMemcpy2D, 7000, PTDS, cuMemcpy2D_v2_ptds, PFN_cuMemcpy2D_v7000_ptds)                         \
  X(cuMemcpy2DUnaligned, 3020, DEFAULT, cuMemcpy2DUnaligned_v2, PFN_cuMemcpy2DUnaligned_v3020)     \
  X(cuMemcpy2DUnaligned, 7000, PTDS, cuMemcpy2DUnaligned_v2_ptds,                                  \
    PFN_cuMemcpy2DUnaligned_v7000_ptds)                                                            \
  X(cuMemcpy2DAsync, 3020, DEFAULT, cuMemcpy2DAsync_v2, PFN_cuMemcpy2DAsync_v3020)                 \
  X(cuMemcpy2DAsync, 7000, PTSZ, cuMemcpy2DAsync_v2_ptsz, PFN_cuMemcpy2DAsync_v7000_ptsz)          \
  X(cuMemcpy3D, 3020, DEFAULT, cuMemcpy3D_v2, PFN_cuMemcpy3D_v3020)                                \
  X(cuMemcpy3D, 7000, PTDS, cuMemcpy3D_v2_ptds, PFN_cuMemcpy3D_v7000_ptds)                         \
  X(cuMemcpy3DAsync, 3020, DEFAULT, cuMemcpy3DAsync_v2, PFN_cuMemcpy3DAsync_v3020)                 \
  X(cuMemcpy3DAsync, 7000, PTSZ, cuMemcpy3DAsync_v2_ptsz, PFN_cuMemcpy3DAsync_v7000_ptsz)          \
  X(cuMemcpyPeer, 4000, DEFAULT, cuMemcpyPeer, PFN_cuMemcpyPeer_v4000)                             \
  X(cuMemcpyPeer, 7000, PTDS, cuMemcpyPeer_ptds, PFN_cuMemcpyPeer_v7000_ptds)                      \
  X(cuMemcpyPeerAsync, 4000, DEFAULT, cuMemcpyPeerAsync, PFN_cuMemcpyPeerAsync_v4000)              \
  X(cuMemcpyPeerAsync, 7000, PTSZ, cuMemcpyPeerAsync_ptsz, PFN_cuMemcpyPeerAsync_v7000_ptsz)       \
  X(cuMemsetD2D8, 3020, DEFAULT, cuMemsetD2D8_v2, PFN_cuMemsetD2D8_v3020)                          \
  X(cuMemsetD2D8, 7000, PTDS, cuMemsetD2D8_v2_ptds, PFN_cuMemsetD2D8_v7000_ptds)                   \
  X(cuMemsetD2D16, 3020, DEFAULT, cuMemsetD2D16_v2, PFN_cuMemsetD2D16_v3020)                       \
  X(cuMemsetD2D16, 7000, PTDS, cuMemsetD2D16_v2_ptds, PFN_cuMemsetD2D16_v7000_ptds)                \
  X(cuMemsetD2D32, 3020, DEFAULT, cuMemsetD2D32_v2, PFN_cuMemsetD2D32_v3020)                       \
  X(cuMemsetD2D32, 7000, PTDS, cuMemsetD2D32_v2_ptds, PFN_cuMemsetD2D32_v7000_ptds)                \
  X(cuMemsetD2D8Async, 3020, DEFAULT, cuMemsetD2D8Async, PFN_cuMemsetD2D8Async_v3020)              \
  X(cuMemsetD2D8Async, 7000, PTSZ, cuMemsetD2D8Async_ptsz, PFN_cuMemsetD2D8Async_v7000_ptsz)       \
  X(cuMemsetD2D16Async, 3020, DEFAULT, cuMemsetD2D16Async, PFN_cuMemsetD2D16Async_v3020)           \
  X(cuMemsetD2D16Async, 7000, PTSZ, cuMemsetD2D16Async_ptsz, PFN_cuMemsetD2D16Async_v7000_ptsz)    \
  X(cuMemsetD2D32Async, 3020, DEFAULT, cuMemsetD2D32Async, PFN_cuMemsetD2D32Async_v3020)           \
  X(cuMemsetD2D32Async, 7000, PTSZ, cuMemsetD2D32Async_ptsz, PFN_cuMemsetD2D32Async_v7000_ptsz)    \
  X(cuLaunchKernel, 4000, DEFAULT, cuLaunchKernel, PFN_cuLaunchKernel_v4000)                       \
  X(cuLaunchKernel, 7000, PTSZ, cuLaunchKernel_ptsz, PFN_cuLaunchKernel_v7000_ptsz)                \
  X(cuLaunchKernelEx, 11060, DEFAULT, cuLaunchKernelEx, PFN_cuLaunchKernelEx_v11060)               \
  X(cuLaunchKernelEx, 11060, PTSZ, cuLaunchKernelEx_ptsz, PFN_cuLaunchKernelEx_v11060_ptsz)        \
  X(cuLaunchCooperativeKernel, 9000, DEFAULT, cuLaunchCooperativeKernel,                           \
    PFN_cuLaunchCooperativeKernel_v9000)                                                           \
  X(cuLaunchCooperativeKernel, 9000, PTSZ, cuLaunchCooperativeKernel_ptsz,                         \
    PFN_cuLaunchCooperativeKernel_v9000_ptsz)                                                      \
  X(cuGraphInstantiateWithFlags, 11040, DEFAULT, cuGraphInstantiateWithFlags,                      \
    PFN_cuGraphInstantiateWithFlags_v11040)                                                        \
  X(cuGraphInstantiateWithParams, 12000, DEFAULT, cuGraphInstantiateWithParams,                    \
    PFN_cuGraphInstantiateWithParams_v12000)                                                       \
  X(cuGraphInstantiateWithParams, 12000, PTSZ, cuGraphInstantiateWithParams_ptsz,                  \
    PFN_cuGraphInstantiateWithParams_v12000_ptsz)                                                  \
  X(cuGraphExecKernelNodeSetParams, 12000, DEFAULT, cuGraphExecKernelNodeSetParams_v2,             \
    PFN_cuGraphExecKernelNodeSetParams_v12000)                                                     \
  X(cuGraphExecDestroy, 10000, DEFAULT, cuGraphExecDestroy, PFN_cuGraphExecDestroy_v10000)         \
  X(cuGraphLaunch, 10000, DEFAULT, cuGraphLaunch, PFN_cuGraphLaunch_v10000)                        \
  X(cuGraphLaunch, 10000, PTSZ, cuGraphLaunch_ptsz, PFN_cuGraphLaunch_v10000_ptsz)              \
  X(cuStreamBeginCapture, 10010, DEFAULT, cuStreamBeginCapture_v2,                                 \
    PFN_cuStreamBeginCapture_v10010)                                                               \
  X(cuStreamBeginCapture, 10010, PTSZ, cuStreamBeginCapture_v2_ptsz,                               \
    PFN_cuStreamBeginCapture_v10010_ptsz)                                                          \
  X(cuStreamBeginCaptureToGraph, 12030, DEFAULT, cuStreamBeginCaptureToGraph,                      \
    PFN_cuStreamBeginCaptureToGraph_v12030)                                                        \
  X(cuStreamBeginCaptureToGraph, 12030, PTSZ, cuStreamBeginCaptureToGraph_ptsz,                    \
    PFN_cuStreamBeginCaptureToGraph_v12030_ptsz)                                                   \
  X(cuStreamDestroy, 4000, DEFAULT, cuStreamDestroy_v2, PFN_cuStreamDestroy_v4000)                \
  X(cuStreamEndCapture, 10000, DEFAULT, cuStreamEndCapture, PFN_cuStreamEndCapture_v10000)         \
  X(cuStreamEndCapture, 10000, PTSZ, cuStreamEndCapture_ptsz, PFN_cuStreamEndCapture_v10000_ptsz)

#define SPW_AUX_VARIANTS(X)                                                                        \
  X(cuCtxGetCurrent, 4000, DEFAULT, cuCtxGetCurrent, PFN_cuCtxGetCurrent_v4000)                    \
  X(cuCtxGetDevice, 2000, DEFAULT, cuCtxGetDevice, PFN_cuCtxGetDevice_v2000)                       \
  X(cuCtxPushCurrent, 4000, DEFAULT, cuCtxPushCurrent_v2, PFN_cuCtxPushCurrent_v4000)              \
  X(cuCtxPopCurrent, 4000, DEFAULT, cuCtxPopCurrent_v2, PFN_cuCtxPopCurrent_v4000)                 \
  X(cuStreamGetCtx, 9020, DEFAULT, cuStreamGetCtx, PFN_cuStreamGetCtx_v9020)                       \
  X(cuStreamGetCtx, 9020, PTSZ, cuStreamGetCtx_ptsz, PFN_cuStreamGetCtx_v9020_ptsz)                \
  X(cuStreamIsCapturing, 10000, DEFAULT, cuStreamIsCapturing, PFN_cuStreamIsCapturing_v10000)      \
  X(cuStreamIsCapturing, 10000, PTSZ, cuStreamIsCapturing_ptsz,                                    \
    PFN_cuStreamIsCapturing_v10000_ptsz)                                                           \
  X(cuFuncGetParamInfo, 12040, DEFAULT, cuFuncGetParamInfo, PFN_cuFuncGetParamInfo_v12040)         \
  X(cuKernelGetParamInfo, 12040, DEFAULT, cuKernelGetParamInfo, PFN_cuKernelGetParamInfo_v12040)   \
  X(cuGraphGetNodes, 10000, DEFAULT, cuGraphGetNodes, PFN_cuGraphGetNodes_v10000)                  \
  X(cuGraphNodeGetType, 10000, DEFAULT, cuGraphNodeGetType, PFN_cuGraphNodeGetType_v10000)         \
  X(cuGraphKernelNodeGetParams, 12000, DEFAULT, cuGraphKernelNodeGetParams_v2,                     \
    PFN_cuGraphKernelNodeGetParams_v12000)
// clang-format on

namespace spillway::interpose {

enum class VariantKind { DEFAULT, PTSZ, PTDS };

enum class Fn : int {
#define SPW_FN_ID(base, version, kind, symbol, pfn) symbol,
  SPW_HOOKED_VARIANTS(SPW_FN_ID) SPW_AUX_VARIANTS(SPW_FN_ID)
#undef SPW_FN_ID
      kCount
};

inline constexpr int kHookCount = 0
#define SPW_COUNT_ONE(base, version, kind, symbol, pfn) +1
    SPW_HOOKED_VARIANTS(SPW_COUNT_ONE)
#undef SPW_COUNT_ONE
    ;

// The real driver's function for `fn`, or null if the driver lacks it.
void* RealFunction(Fn fn);

// Our wrapper for the exported variant symbol `symbol` ("cuMemAlloc_v2"), or null if we
// do not hook it. A table lookup only: dlsym calls it.
void* HookForSymbol(const char* symbol);

// Our wrapper for `symbol` if we hook it and the real driver's function for that variant is
// `real_answer`; otherwise null. cuGetProcAddress uses it so that a driver newer than the
// toolkit's table (a variant we do not know) is never answered with an older ABI's wrapper.
void* HookIfSameVariant(const char* symbol, void* real_answer);

// What the driver's cuGetProcAddress selects for (base, version, flags): the exported symbol
// of the variant, or null if no variant matches. `base_known` says whether the name exists.
const char* SelectVariant(const char* base, int version, cuuint64_t flags, bool* base_known);

// The real cuGetProcAddress_v2 (null if the driver cannot be loaded).
PFN_cuGetProcAddress_v12000 RealGetProcAddress();

}  // namespace spillway::interpose

// SPW_REAL(cuMemAlloc_v2): the real driver's variant, typed (null if the driver lacks it).
#define SPW_REAL(symbol)                                                                   \
  reinterpret_cast<std::remove_const_t<decltype(spillway::interpose::real_type::symbol)>>( \
      spillway::interpose::RealFunction(spillway::interpose::Fn::symbol))

// A hook's declaration: exported under the variant's own symbol name.
#define SPW_EXPORT extern "C" __attribute__((visibility("default")))

namespace spillway::interpose {
// Ends the pins of this thread's last PrepareUse (interposer.h); nearly free when none.
void FinishUse();
}  // namespace spillway::interpose

// Returns the real variant's answer for these arguments, or CUDA_ERROR_NOT_SUPPORTED when
// the driver lacks the variant. The work is queued once it returns: the pins of a
// PrepareUse before it end there.
#define SPW_CALL_REAL(symbol, ...)                   \
  do {                                               \
    auto spw_real_fn_ = SPW_REAL(symbol);            \
    CUresult spw_result_ = CUDA_ERROR_NOT_SUPPORTED; \
    if (spw_real_fn_ != nullptr) {                   \
      spw_result_ = spw_real_fn_(__VA_ARGS__);       \
    }                                                \
    spillway::interpose::FinishUse();                \
    return spw_result_;                              \
  } while (0)

// In a hook, before its real call: returns the error of `expr` (a CUresult) if it failed,
// releasing the pins of what was prepared before it.
#define SPW_CHECKED(expr)                                   \
  do {                                                      \
    if (CUresult spw_r_ = (expr); spw_r_ != CUDA_SUCCESS) { \
      spillway::interpose::FinishUse();                     \
      return spw_r_;                                        \
    }                                                       \
  } while (0)

namespace spillway::interpose::real_type {
#define SPW_REAL_TYPE(base, version, kind, symbol, pfn) inline constexpr pfn symbol = nullptr;
SPW_HOOKED_VARIANTS(SPW_REAL_TYPE)
SPW_AUX_VARIANTS(SPW_REAL_TYPE)
#undef SPW_REAL_TYPE
}  // namespace spillway::interpose::real_type

#endif  // SPILLWAY_INTERPOSE_HOOK_TABLE_H_
