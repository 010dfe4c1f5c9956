// SPDX-License-Identifier: Apache-2.0
//
// Kernels of the end-to-end programs, for simcuda's module ABI (simcuda/kernel.h).
#include <simcuda/kernel.h>

// a[i] = 0.5 * a[i] + k * b[i] + (i % 7) for i < n
SIMCUDA_KERNEL(mix, sizeof(float*), sizeof(const float*), sizeof(int), sizeof(float)) {
  float* a = SIMCUDA_PARAM(float*, 0);
  const float* b = SIMCUDA_PARAM(const float*, 1);
  const int n = SIMCUDA_PARAM(int, 2);
  const float k = SIMCUDA_PARAM(float, 3);
  SIMCUDA_FOR_EACH_THREAD(launch, i) {
    if (i < static_cast<unsigned long long>(n)) a[i] = 0.5f * a[i] + k * b[i] + float(i % 7);
  }
}

// out[j] = sum over i < count of table[i][j], for j < n: follows pointers held in device
// memory, which no launch argument shows.
SIMCUDA_KERNEL(gather_sum, sizeof(const float* const*), sizeof(int), sizeof(float*), sizeof(int)) {
  const float* const* table = SIMCUDA_PARAM(const float* const*, 0);
  const int count = SIMCUDA_PARAM(int, 1);
  float* out = SIMCUDA_PARAM(float*, 2);
  const int n = SIMCUDA_PARAM(int, 3);
  SIMCUDA_FOR_EACH_THREAD(launch, j) {
    if (j >= static_cast<unsigned long long>(n)) continue;
    float sum = 0;
    for (int i = 0; i < count; ++i) sum += table[i][j];
    out[j] = sum;
  }
}
