// SPDX-License-Identifier: Apache-2.0
//
// simcuda module ABI: how a "kernel" for the CPU-backed CUDA driver is written.
//
// A simcuda module is a shared object. For each kernel NAME it exports
//
//   void NAME(const simcuda_launch* launch, void** params);
//   const unsigned long long NAME__simcuda_params[] = {count, size_0, ..., size_{count-1}};
//
// `params[i]` points at parameter i (a copy the driver owns for the duration of the launch).
// Parameter i sits at the first offset after parameter i-1 aligned to
// min(8, largest power of two dividing size_i); cuFuncGetParamInfo reports these offsets
// and sizes, and the `extra` (CU_LAUNCH_PARAM_BUFFER_POINTER) launch form uses this layout.
//
// The kernel body runs on the CPU, on the thread that executes the launching stream. It
// loops over the grid itself (SIMCUDA_FOR_EACH_THREAD below helps). Touching device
// memory that is not mapped, or mapped without access, is a fault: the driver turns it
// into the context's sticky CUDA_ERROR_ILLEGAL_ADDRESS, as a GPU would.
//
// Keep this ABI exactly: programs and the tinyllm workload are written against it.
#ifndef SIMCUDA_KERNEL_H_
#define SIMCUDA_KERNEL_H_

#ifdef __cplusplus
extern "C" {
#endif

typedef struct simcuda_launch {
  unsigned grid[3];
  unsigned block[3];
  unsigned shared_bytes;
} simcuda_launch;

typedef void (*simcuda_kernel_fn)(const simcuda_launch* launch, void** params);

#ifdef __cplusplus
}  // extern "C"
#endif

#define SIMCUDA_PP_NARGS_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, \
                          N, ...)                                                                \
  N
#define SIMCUDA_PP_NARGS(...) \
  SIMCUDA_PP_NARGS_(__VA_ARGS__, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)

#ifdef __cplusplus
#define SIMCUDA_EXTERN_C extern "C"
#else
#define SIMCUDA_EXTERN_C
#endif

// Declares both exported symbols of a kernel. The arguments after NAME are the sizes of
// its parameters, in order (sizeof(T) of each); at least one parameter is required, use
// SIMCUDA_KERNEL0 for a kernel without parameters. Follow it with the body:
//
//   SIMCUDA_KERNEL(vec_add, sizeof(float*), sizeof(const float*), sizeof(int)) {
//     float* out = *(float**)params[0]; ...
//   }
#define SIMCUDA_KERNEL(NAME, ...)                                                     \
  SIMCUDA_EXTERN_C __attribute__((visibility("default")))                             \
  const unsigned long long NAME##__simcuda_params[] = {SIMCUDA_PP_NARGS(__VA_ARGS__), \
                                                       __VA_ARGS__};                  \
  SIMCUDA_EXTERN_C __attribute__((visibility("default"))) void NAME(                  \
      const simcuda_launch* launch __attribute__((unused)), void** params __attribute__((unused)))

#define SIMCUDA_KERNEL0(NAME)                                        \
  SIMCUDA_EXTERN_C __attribute__((visibility("default")))            \
  const unsigned long long NAME##__simcuda_params[] = {0};           \
  SIMCUDA_EXTERN_C __attribute__((visibility("default"))) void NAME( \
      const simcuda_launch* launch __attribute__((unused)), void** params __attribute__((unused)))

// Parameter i of the current launch, as type T.
#define SIMCUDA_PARAM(T, i) (*(T*)params[i])

// Total threads in the launch, and a loop over their flat global index.
#define SIMCUDA_NUM_THREADS(launch)                                                \
  ((unsigned long long)(launch)->grid[0] * (launch)->grid[1] * (launch)->grid[2] * \
   (launch)->block[0] * (launch)->block[1] * (launch)->block[2])
#define SIMCUDA_FOR_EACH_THREAD(launch, idx) \
  for (unsigned long long idx = 0; idx < SIMCUDA_NUM_THREADS(launch); ++idx)

#endif  // SIMCUDA_KERNEL_H_
