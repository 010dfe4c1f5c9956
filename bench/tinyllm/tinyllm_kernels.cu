// SPDX-License-Identifier: Apache-2.0
//
// tinyllm's kernels for a real GPU: the same names and parameter layouts as
// tinyllm_kernels_sim.cc (extern "C", so cuModuleGetFunction finds them by name).
//
// Contract: the host program launches them with the grid and block noted on each kernel;
// they are correct and plain (one block or warp per output row, shuffle and shared-memory
// reductions), not tuned. Results are deterministic for given launch shapes but differ in
// the last bits from the CPU versions (other summation orders, FMA contraction).
#include <stdint.h>

#include "tinyllm_hash.h"

namespace {

__device__ __forceinline__ float Load(const void* w, uint64_t i, int dtype) {
  return dtype == kTlBf16 ? TlFloatFromBf16(static_cast<const uint16_t*>(w)[i])
                          : static_cast<const float*>(w)[i];
}

__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over a block of blockDim.x (a multiple of 32, at most 1024) threads; all get it.
__device__ float BlockSum(float v) {
  __shared__ float partial[32];
  v = WarpSum(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // `partial` may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < int(blockDim.x / 32) ? partial[lane] : 0.0f;
  return WarpSum(v);
}

__device__ __forceinline__ uint64_t ContiguousSlot(int b, int pos, int ctx, int dim) {
  return (uint64_t(b) * ctx + pos) * dim;
}

__device__ __forceinline__ uint64_t PagedSlot(const int* table, int b, int pos, int blocks_per_seq,
                                              int block_tokens, int dim) {
  const int block = table[b * blocks_per_seq + pos / block_tokens];
  return (uint64_t(block) * block_tokens + pos % block_tokens) * dim;
}

// One warp per (row, head): online softmax over the keys in position order; lane i holds
// output elements i, i+32, ... (head_dim <= 256).
template <bool kPaged>
__device__ void AttentionWarp(float* out, const float* q, const float* kc, const float* vc,
                              const int* table, int batch, int seq, int pos0, int n_heads,
                              int head_dim, int ctx, int blocks_per_seq, int block_tokens) {
  const int h = blockIdx.x, row = blockIdx.y, lane = threadIdx.x;
  const int b = row / seq, t = row % seq, dim = n_heads * head_dim;
  if (b >= batch) return;
  const float* qh = q + uint64_t(row) * dim + h * head_dim;
  const float scale = rsqrtf(float(head_dim));
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  float max = -INFINITY, sum = 0.0f;
  for (int j = 0; j <= pos0 + t; ++j) {
    const uint64_t slot = kPaged ? PagedSlot(table, b, j, blocks_per_seq, block_tokens, dim)
                                 : ContiguousSlot(b, j, ctx, dim);
    const float* kh = kc + slot + h * head_dim;
    const float* vh = vc + slot + h * head_dim;
    float s = 0.0f;
    for (int i = lane; i < head_dim; i += 32) s += qh[i] * kh[i];
    s = WarpSum(s) * scale;
    const float new_max = fmaxf(max, s);
    const float correction = __expf(max - new_max), p = __expf(s - new_max);
    sum = sum * correction + p;
    for (int k = 0; k < 8 && lane + 32 * k < head_dim; ++k) {
      acc[k] = acc[k] * correction + p * vh[lane + 32 * k];
    }
    max = new_max;
  }
  float* oh = out + uint64_t(row) * dim + h * head_dim;
  for (int k = 0; k < 8 && lane + 32 * k < head_dim; ++k) oh[lane + 32 * k] = acc[k] / sum;
}

}  // namespace

// grid: min(ceil(count/256), 65535) blocks of 256 threads (grid-stride loop).
extern "C" __global__ void tl_fill_random(void* out, uint64_t count, uint32_t seed, uint32_t tensor,
                                          float scale, float offset, int dtype) {
  for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < count;
       i += uint64_t(gridDim.x) * blockDim.x) {
    const float v = offset + scale * TlHashUniform(seed, tensor, i);
    if (dtype == kTlBf16) {
      static_cast<uint16_t*>(out)[i] = TlBf16FromFloat(v);
    } else {
      static_cast<float*>(out)[i] = v;
    }
  }
}

// grid: rows blocks of 256 threads.
extern "C" __global__ void tl_embed(float* x, const void* table, const int* tokens, int rows,
                                    int dim, int dtype) {
  const int r = blockIdx.x;
  if (r >= rows) return;
  const uint64_t base = uint64_t(tokens[r]) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    x[uint64_t(r) * dim + i] = Load(table, base + i, dtype);
  }
}

// grid: rows blocks of 256 threads. `out` may be `x`.
extern "C" __global__ void tl_rmsnorm(float* out, const float* x, const void* w, int rows, int dim,
                                      float eps, int dtype) {
  const int r = blockIdx.x;
  if (r >= rows) return;
  const float* xr = x + uint64_t(r) * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  const float inv = rsqrtf(BlockSum(ss) / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    out[uint64_t(r) * dim + i] = xr[i] * inv * Load(w, i, dtype);
  }
}

// out[r][o] = sum_i x[r][i] * w[o][i]. grid: (out_dim, rows) blocks of 32 threads (a warp
// per output element).
extern "C" __global__ void tl_matmul(float* out, const float* x, const void* w, int rows,
                                     int in_dim, int out_dim, int dtype) {
  const int o = blockIdx.x, r = blockIdx.y;
  if (o >= out_dim || r >= rows) return;
  const float* xr = x + uint64_t(r) * in_dim;
  const uint64_t base = uint64_t(o) * in_dim;
  float s = 0.0f;
  for (int i = threadIdx.x; i < in_dim; i += 32) s += xr[i] * Load(w, base + i, dtype);
  s = WarpSum(s);
  if (threadIdx.x == 0) out[uint64_t(r) * out_dim + o] = s;
}

// grid: rows blocks of 128 threads.
extern "C" __global__ void tl_rope(float* x, int rows, int seq, int pos0, int n_heads, int head_dim,
                                   float theta) {
  const int r = blockIdx.x;
  if (r >= rows) return;
  const int half = head_dim / 2;
  const float pos = float(pos0 + r % seq);
  for (int p = threadIdx.x; p < n_heads * half; p += blockDim.x) {
    const int h = p / half, i = p % half;
    float* xh = x + (uint64_t(r) * n_heads + h) * head_dim;
    const float angle = pos * powf(theta, -float(2 * i) / float(head_dim));
    float s, c;
    sincosf(angle, &s, &c);
    const float a = xh[i], b = xh[i + half];
    xh[i] = a * c - b * s;
    xh[i + half] = a * s + b * c;
  }
}

// grid: batch * seq blocks of 256 threads.
extern "C" __global__ void tl_kv_store(float* kc, float* vc, const float* k, const float* v,
                                       int batch, int seq, int pos0, int dim, int ctx) {
  const int row = blockIdx.x, b = row / seq, t = row % seq;
  if (b >= batch) return;
  const uint64_t dst = ContiguousSlot(b, pos0 + t, ctx, dim);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    kc[dst + i] = k[uint64_t(row) * dim + i];
    vc[dst + i] = v[uint64_t(row) * dim + i];
  }
}

// grid: batch * seq blocks of 256 threads.
extern "C" __global__ void tl_kv_store_paged(float* kpool, float* vpool, const float* k,
                                             const float* v, const int* block_table, int batch,
                                             int seq, int pos0, int dim, int blocks_per_seq,
                                             int block_tokens) {
  const int row = blockIdx.x, b = row / seq, t = row % seq;
  if (b >= batch) return;
  const uint64_t dst = PagedSlot(block_table, b, pos0 + t, blocks_per_seq, block_tokens, dim);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    kpool[dst + i] = k[uint64_t(row) * dim + i];
    vpool[dst + i] = v[uint64_t(row) * dim + i];
  }
}

// grid: (n_heads, batch * seq) blocks of 32 threads.
extern "C" __global__ void tl_attention(float* out, const float* q, const float* kc,
                                        const float* vc, int batch, int seq, int pos0, int n_heads,
                                        int head_dim, int ctx) {
  AttentionWarp<false>(out, q, kc, vc, nullptr, batch, seq, pos0, n_heads, head_dim, ctx, 0, 1);
}

// grid: (n_heads, batch * seq) blocks of 32 threads.
extern "C" __global__ void tl_attention_paged(float* out, const float* q, const float* kpool,
                                              const float* vpool, const int* block_table, int batch,
                                              int seq, int pos0, int n_heads, int head_dim,
                                              int blocks_per_seq, int block_tokens) {
  AttentionWarp<true>(out, q, kpool, vpool, block_table, batch, seq, pos0, n_heads, head_dim, 0,
                      blocks_per_seq, block_tokens);
}

// grid: ceil(n/256) blocks of 256 threads (at most 2^31-1 blocks).
extern "C" __global__ void tl_silu_mul(float* g, const float* u, uint64_t n) {
  const uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x;
  if (i < n) g[i] = g[i] / (1.0f + __expf(-g[i])) * u[i];
}

// grid: ceil(n/256) blocks of 256 threads.
extern "C" __global__ void tl_add(float* x, const float* y, uint64_t n) {
  const uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x;
  if (i < n) x[i] += y[i];
}

// grid: batch blocks of 256 threads.
extern "C" __global__ void tl_gather_last(float* out, const float* x, int batch, int seq, int dim) {
  const int b = blockIdx.x;
  if (b >= batch) return;
  const float* src = x + (uint64_t(b) * seq + seq - 1) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out[uint64_t(b) * dim + i] = src[i];
}

// grid: rows blocks of 256 threads. Ties go to the lowest index.
extern "C" __global__ void tl_argmax(int* out, const float* logits, int rows, int vocab) {
  __shared__ float best_value[256];
  __shared__ int best_index[256];
  const int r = blockIdx.x;
  if (r >= rows) return;
  const float* l = logits + uint64_t(r) * vocab;
  float bv = -INFINITY;
  int bi = vocab;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    if (l[i] > bv) bv = l[i], bi = i;
  }
  best_value[threadIdx.x] = bv;
  best_index[threadIdx.x] = bi;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      const float ov = best_value[threadIdx.x + stride];
      const int oi = best_index[threadIdx.x + stride];
      if (ov > best_value[threadIdx.x] ||
          (ov == best_value[threadIdx.x] && oi < best_index[threadIdx.x])) {
        best_value[threadIdx.x] = ov;
        best_index[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[r] = best_index[0] < vocab ? best_index[0] : 0;
}
