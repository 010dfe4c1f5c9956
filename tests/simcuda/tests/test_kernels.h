// SPDX-License-Identifier: Apache-2.0
//
// The contract between the test kernels (test_kernels.cc, built as a simcuda module) and
// the tests that launch them: kernel names, parameter lists and the records they write.
// Plain C types only, so the same definitions hold on both sides of the module boundary.
#ifndef SIMCUDA_TESTS_TEST_KERNELS_H_
#define SIMCUDA_TESTS_TEST_KERNELS_H_

#include <stdint.h>

// A 12-byte by-value parameter: alignment 4, so it packs right after a float.
typedef struct Vec3 {
  float x;
  float y;
  float z;
} Vec3;

// What mixed_params writes: every by-value parameter it received, echoed back.
typedef struct MixedRecord {
  int32_t i;
  float f;
  Vec3 v;
  int32_t c;  // the char parameter, widened
  double d;
} MixedRecord;

// Kernels (parameters in order):
// Element-wise kernels use grid-stride loops: any launch shape covers all n elements.
//   fill_u32(uint32_t* out, uint32_t value, uint64_t n)          out[i] = value
//   add_u32(uint32_t* data, uint32_t delta, uint64_t n)          data[i] += delta
//   copy_u32(uint32_t* dst, const uint32_t* src, uint64_t n)     dst[i] = src[i]
//   vec_add(float* c, const float* a, const float* b, int32_t n) c[i] = a[i] + b[i]
//   record_launch(uint32_t* out)       out[0..6] = grid xyz, block xyz, shared bytes
//   mixed_params(int32_t i, MixedRecord* out, float f, Vec3 v, char c, double d)
//   read_u32(const uint32_t* src, uint32_t* dst)                 *dst = *src
//   write_u32(uint32_t* dst, uint32_t value)                     *dst = value
//   read_until_stopped(const uint32_t* src, uint32_t* started, const uint32_t* stop,
//                      uint64_t* sum)
//       sets *started = 1, then keeps reading *src until *stop != 0, then writes the sum.
//   spin_until_set(const uint32_t* flag, uint32_t* out, uint32_t value)
//       waits (bounded, ~5 s) until *flag != 0, then *out = value.

// Byte offsets of mixed_params' parameters under the module ABI's layout rule
// (each parameter aligned to min(8, largest power of two dividing its size)).
enum {
  kMixedOffsetI = 0,    // int32_t, size 4
  kMixedOffsetOut = 8,  // pointer, size 8
  kMixedOffsetF = 16,   // float, size 4
  kMixedOffsetV = 20,   // Vec3, size 12, alignment 4
  kMixedOffsetC = 32,   // char, size 1
  kMixedOffsetD = 40,   // double, size 8
  kMixedParamBytes = 48,
  kMixedParamCount = 6,
};

#endif  // SIMCUDA_TESTS_TEST_KERNELS_H_
