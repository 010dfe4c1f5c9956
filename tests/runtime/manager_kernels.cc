// SPDX-License-Identifier: Apache-2.0
//
// Kernels for the manager tests: they touch managed memory from "the device", so a range
// left unbacked shows up as CUDA_ERROR_ILLEGAL_ADDRESS, exactly as on a GPU.
#include <cstdint>

#include "simcuda/kernel.h"

// words[i] = seed * 2654435761 + i, for i < n.
SIMCUDA_KERNEL(fill_pattern, sizeof(uint32_t*), sizeof(uint64_t), sizeof(uint32_t)) {
  auto* words = SIMCUDA_PARAM(uint32_t*, 0);
  uint64_t n = SIMCUDA_PARAM(uint64_t, 1);
  uint32_t seed = SIMCUDA_PARAM(uint32_t, 2);
  for (uint64_t i = 0; i < n; ++i) words[i] = seed * 2654435761u + static_cast<uint32_t>(i);
}

// Counts words that differ from the pattern into *mismatches (device memory).
SIMCUDA_KERNEL(check_pattern, sizeof(const uint32_t*), sizeof(uint64_t), sizeof(uint32_t),
               sizeof(uint64_t*)) {
  const auto* words = SIMCUDA_PARAM(const uint32_t*, 0);
  uint64_t n = SIMCUDA_PARAM(uint64_t, 1);
  uint32_t seed = SIMCUDA_PARAM(uint32_t, 2);
  auto* mismatches = SIMCUDA_PARAM(uint64_t*, 3);
  uint64_t bad = 0;
  for (uint64_t i = 0; i < n; ++i) bad += words[i] != seed * 2654435761u + static_cast<uint32_t>(i);
  *mismatches += bad;
}

// Adds `delta` to every word: a read-modify-write, so the chunk is dirty afterwards.
SIMCUDA_KERNEL(add_words, sizeof(uint32_t*), sizeof(uint64_t), sizeof(uint32_t)) {
  auto* words = SIMCUDA_PARAM(uint32_t*, 0);
  uint64_t n = SIMCUDA_PARAM(uint64_t, 1);
  uint32_t delta = SIMCUDA_PARAM(uint32_t, 2);
  for (uint64_t i = 0; i < n; ++i) words[i] += delta;
}
