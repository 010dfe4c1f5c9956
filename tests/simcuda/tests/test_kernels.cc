// SPDX-License-Identifier: Apache-2.0
//
// Kernels the simcuda tests launch, written against the module ABI (simcuda/kernel.h).
// They run on the CPU; device memory is ordinary process memory, so they use plain loads
// and stores, and atomics where a host thread watches the same word.
#include "test_kernels.h"

#include <simcuda/kernel.h>
#include <stdint.h>
#include <time.h>

// Thread t of T handles elements t, t + T, t + 2T, ... (a CUDA grid-stride loop), so a
// kernel covers all n elements whatever grid it is launched with. Threads run one after
// another here; the loop visits every (thread, element) pair once.
#define GRID_STRIDE_LOOP(launch, i, n)                                                             \
  for (unsigned long long thread_ = 0, threads_ = SIMCUDA_NUM_THREADS(launch); thread_ < threads_; \
       ++thread_)                                                                                  \
    for (unsigned long long i = thread_; i < (n); i += threads_)

SIMCUDA_KERNEL(fill_u32, sizeof(uint32_t*), sizeof(uint32_t), sizeof(uint64_t)) {
  uint32_t* out = SIMCUDA_PARAM(uint32_t*, 0);
  const uint32_t value = SIMCUDA_PARAM(uint32_t, 1);
  const uint64_t n = SIMCUDA_PARAM(uint64_t, 2);
  GRID_STRIDE_LOOP(launch, i, n) out[i] = value;
}

SIMCUDA_KERNEL(add_u32, sizeof(uint32_t*), sizeof(uint32_t), sizeof(uint64_t)) {
  uint32_t* data = SIMCUDA_PARAM(uint32_t*, 0);
  const uint32_t delta = SIMCUDA_PARAM(uint32_t, 1);
  const uint64_t n = SIMCUDA_PARAM(uint64_t, 2);
  GRID_STRIDE_LOOP(launch, i, n) data[i] += delta;
}

SIMCUDA_KERNEL(copy_u32, sizeof(uint32_t*), sizeof(const uint32_t*), sizeof(uint64_t)) {
  uint32_t* dst = SIMCUDA_PARAM(uint32_t*, 0);
  const uint32_t* src = SIMCUDA_PARAM(const uint32_t*, 1);
  const uint64_t n = SIMCUDA_PARAM(uint64_t, 2);
  GRID_STRIDE_LOOP(launch, i, n) dst[i] = src[i];
}

SIMCUDA_KERNEL(vec_add, sizeof(float*), sizeof(const float*), sizeof(const float*),
               sizeof(int32_t)) {
  float* c = SIMCUDA_PARAM(float*, 0);
  const float* a = SIMCUDA_PARAM(const float*, 1);
  const float* b = SIMCUDA_PARAM(const float*, 2);
  const int32_t n = SIMCUDA_PARAM(int32_t, 3);
  GRID_STRIDE_LOOP(launch, i, (unsigned long long)n) c[i] = a[i] + b[i];
}

SIMCUDA_KERNEL(record_launch, sizeof(uint32_t*)) {
  uint32_t* out = SIMCUDA_PARAM(uint32_t*, 0);
  for (int d = 0; d < 3; ++d) {
    out[d] = launch->grid[d];
    out[3 + d] = launch->block[d];
  }
  out[6] = launch->shared_bytes;
}

SIMCUDA_KERNEL(mixed_params, sizeof(int32_t), sizeof(MixedRecord*), sizeof(float), sizeof(Vec3),
               sizeof(char), sizeof(double)) {
  (void)launch;
  MixedRecord* out = SIMCUDA_PARAM(MixedRecord*, 1);
  out->i = SIMCUDA_PARAM(int32_t, 0);
  out->f = SIMCUDA_PARAM(float, 2);
  out->v = SIMCUDA_PARAM(Vec3, 3);
  out->c = SIMCUDA_PARAM(char, 4);
  out->d = SIMCUDA_PARAM(double, 5);
}

SIMCUDA_KERNEL(read_u32, sizeof(const uint32_t*), sizeof(uint32_t*)) {
  (void)launch;
  const volatile uint32_t* src = SIMCUDA_PARAM(const uint32_t*, 0);
  uint32_t* dst = SIMCUDA_PARAM(uint32_t*, 1);
  *dst = *src;
}

SIMCUDA_KERNEL(write_u32, sizeof(uint32_t*), sizeof(uint32_t)) {
  (void)launch;
  volatile uint32_t* dst = SIMCUDA_PARAM(uint32_t*, 0);
  *dst = SIMCUDA_PARAM(uint32_t, 1);
}

SIMCUDA_KERNEL(read_until_stopped, sizeof(const uint32_t*), sizeof(uint32_t*),
               sizeof(const uint32_t*), sizeof(uint64_t*)) {
  (void)launch;
  const volatile uint32_t* src = SIMCUDA_PARAM(const uint32_t*, 0);
  uint32_t* started = SIMCUDA_PARAM(uint32_t*, 1);
  const uint32_t* stop = SIMCUDA_PARAM(const uint32_t*, 2);
  uint64_t* sum_out = SIMCUDA_PARAM(uint64_t*, 3);
  uint64_t sum = 0;
  __atomic_store_n(started, 1u, __ATOMIC_RELEASE);
  while (__atomic_load_n(stop, __ATOMIC_ACQUIRE) == 0) sum += *src;
  *sum_out = sum;
}

SIMCUDA_KERNEL(spin_until_set, sizeof(const uint32_t*), sizeof(uint32_t*), sizeof(uint32_t)) {
  (void)launch;
  const uint32_t* flag = SIMCUDA_PARAM(const uint32_t*, 0);
  uint32_t* out = SIMCUDA_PARAM(uint32_t*, 1);
  const uint32_t value = SIMCUDA_PARAM(uint32_t, 2);
  // Bounded (~5 s) so that a broken test cannot hang its stream forever.
  const struct timespec tick = {0, 1000000};
  for (int waited_ms = 0; waited_ms < 5000 && __atomic_load_n(flag, __ATOMIC_ACQUIRE) == 0;
       ++waited_ms) {
    nanosleep(&tick, nullptr);
  }
  __atomic_store_n(out, value, __ATOMIC_RELEASE);
}
