// SPDX-License-Identifier: Apache-2.0
//
// The example's kernels, written for simcuda's module ABI (simcuda/kernel.h): each runs on
// the CPU and loops over every thread of its grid itself. On a GPU these would be the
// usual one-line CUDA kernels.
#include <simcuda/kernel.h>

// c[i] = a[i] + b[i] for i < n
SIMCUDA_KERNEL(vec_add, sizeof(float*), sizeof(const float*), sizeof(const float*), sizeof(int)) {
  float* c = SIMCUDA_PARAM(float*, 0);
  const float* a = SIMCUDA_PARAM(const float*, 1);
  const float* b = SIMCUDA_PARAM(const float*, 2);
  const int n = SIMCUDA_PARAM(int, 3);
  SIMCUDA_FOR_EACH_THREAD(launch, i) {
    if (i < static_cast<unsigned long long>(n)) c[i] = a[i] + b[i];
  }
}

// y[i] = alpha * x[i] + y[i] for i < n
SIMCUDA_KERNEL(saxpy, sizeof(float*), sizeof(const float*), sizeof(float), sizeof(int)) {
  float* y = SIMCUDA_PARAM(float*, 0);
  const float* x = SIMCUDA_PARAM(const float*, 1);
  const float alpha = SIMCUDA_PARAM(float, 2);
  const int n = SIMCUDA_PARAM(int, 3);
  SIMCUDA_FOR_EACH_THREAD(launch, i) {
    if (i < static_cast<unsigned long long>(n)) y[i] = alpha * x[i] + y[i];
  }
}
