// SPDX-License-Identifier: Apache-2.0
//
// tinyllm's deterministic numbers, shared by the host program, the simcuda kernels and the
// CUDA kernels (so every backend generates the same weights and prompts from a seed).
//
// Contract: HashUniform(seed, tensor, index) is a pure function of its arguments, a
// multiple of 2^-23 in [-1, 1): it is exactly representable, so scaling it is the only
// rounding step. Bf16FromFloat rounds to nearest even (NaN is never produced here).
#ifndef SPILLWAY_BENCH_TINYLLM_TINYLLM_HASH_H_
#define SPILLWAY_BENCH_TINYLLM_TINYLLM_HASH_H_

#include <stdint.h>

#ifdef __CUDACC__
#define TL_HD __host__ __device__ __forceinline__
#else
#define TL_HD inline
#endif

// Weight element types (the `dtype` kernel parameter).
enum { kTlF32 = 0, kTlBf16 = 1 };

// splitmix64's finaliser: a counter-based generator needs no state, so any element of any
// tensor is computed independently (one GPU thread each, or one loop iteration).
TL_HD uint64_t TlMix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

TL_HD uint64_t TlHash(uint32_t seed, uint32_t tensor, uint64_t index) {
  return TlMix(TlMix((uint64_t{seed} << 32) ^ tensor) + index * 0x9e3779b97f4a7c15ull);
}

TL_HD float TlHashUniform(uint32_t seed, uint32_t tensor, uint64_t index) {
  return static_cast<float>(static_cast<int32_t>(TlHash(seed, tensor, index) >> 40) - (1 << 23)) *
         (1.0f / (1 << 23));
}

TL_HD uint32_t TlBitsOf(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t bits;
  __builtin_memcpy(&bits, &f, 4);
  return bits;
#endif
}

TL_HD float TlFloatOf(uint32_t bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
#endif
}

TL_HD uint16_t TlBf16FromFloat(float f) {
  uint32_t bits = TlBitsOf(f);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

TL_HD float TlFloatFromBf16(uint16_t h) { return TlFloatOf(uint32_t{h} << 16); }

#endif  // SPILLWAY_BENCH_TINYLLM_TINYLLM_HASH_H_
