// SPDX-License-Identifier: Apache-2.0
//
// tinyllm's kernels as a simcuda module: the same names and parameter layouts as
// tinyllm_kernels.cu, run on the CPU by simcuda's stream thread.
//
// Contract: each kernel computes what its CUDA twin computes, for fp32 and bf16 weights
// (dtype parameter), ignoring the launch's grid and block (the host program sizes those
// for the GPU). Results depend only on the parameters and the bytes read, never on the
// addresses, so every allocation style gives bit-identical tokens and logits.
//
// Speed matters (a 1 GiB model should decode a token in about a second): dot products run
// over contiguous memory with 16 independent partial sums, a fixed summation order the
// compiler can turn into vector instructions without -ffast-math; matmul walks weight
// rows in the outer loop so a row is read from memory once for all the rows of a batch.
#include <cmath>
#include <cstdint>
#include <vector>

#include "simcuda/kernel.h"
#include "tinyllm_hash.h"

namespace {

inline float Load(const float* w, uint64_t i) { return w[i]; }
inline float Load(const uint16_t* w, uint64_t i) { return TlFloatFromBf16(w[i]); }

template <typename W>
float Dot(const float* __restrict a, const W* __restrict b, int n) {
  constexpr int kLanes = 16;
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += a[i + j] * Load(b, i + j);
  }
  for (; i < n; ++i) acc[0] += a[i] * Load(b, i);
  float sum = 0.0f;
  for (int j = 0; j < kLanes; ++j) sum += acc[j];
  return sum;
}

template <typename W>
void Matmul(float* __restrict out, const float* __restrict x, const W* __restrict w, int rows,
            int in_dim, int out_dim) {
  for (int o = 0; o < out_dim; ++o) {
    const W* row = w + uint64_t(o) * in_dim;
    for (int r = 0; r < rows; ++r) {
      out[uint64_t(r) * out_dim + o] = Dot(x + uint64_t(r) * in_dim, row, in_dim);
    }
  }
}

template <typename W>
void Rmsnorm(float* out, const float* x, const W* w, int rows, int dim, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + uint64_t(r) * dim;
    float ss = Dot(xr, xr, dim);
    float inv = 1.0f / std::sqrt(ss / dim + eps);
    float* o = out + uint64_t(r) * dim;
    for (int i = 0; i < dim; ++i) o[i] = xr[i] * inv * Load(w, i);
  }
}

template <typename W>
void Embed(float* x, const W* table, const int* tokens, int rows, int dim) {
  for (int r = 0; r < rows; ++r) {
    const W* row = table + uint64_t(tokens[r]) * dim;
    for (int i = 0; i < dim; ++i) x[uint64_t(r) * dim + i] = Load(row, i);
  }
}

// Where token `pos` of sequence `b` lives in a KV cache: contiguous [batch][ctx][dim], or
// paged [block][block_tokens][dim] through the sequence's row of the block table.
struct ContiguousSlots {
  int ctx, dim;
  uint64_t operator()(int b, int pos) const { return (uint64_t(b) * ctx + pos) * dim; }
};
struct PagedSlots {
  const int* table;
  int blocks_per_seq, block_tokens, dim;
  uint64_t operator()(int b, int pos) const {
    int block = table[b * blocks_per_seq + pos / block_tokens];
    return (uint64_t(block) * block_tokens + pos % block_tokens) * dim;
  }
};

template <typename Slots>
void KvStore(float* kc, float* vc, const float* k, const float* v, int batch, int seq, int pos0,
             int dim, Slots slot) {
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < seq; ++t) {
      uint64_t src = (uint64_t(b) * seq + t) * dim, dst = slot(b, pos0 + t);
      for (int i = 0; i < dim; ++i) {
        kc[dst + i] = k[src + i];
        vc[dst + i] = v[src + i];
      }
    }
  }
}

// Causal attention of rows [batch][seq] (positions pos0..pos0+seq-1) over the cache.
// Two passes with a max-subtracted softmax, keys in position order.
template <typename Slots>
void Attention(float* out, const float* q, const float* kc, const float* vc, int batch, int seq,
               int pos0, int n_heads, int head_dim, Slots slot) {
  const int dim = n_heads * head_dim;
  const float scale = 1.0f / std::sqrt(float(head_dim));
  std::vector<float> scores(pos0 + seq);
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < seq; ++t) {
      const int last = pos0 + t;
      for (int h = 0; h < n_heads; ++h) {
        const float* qh = q + (uint64_t(b) * seq + t) * dim + h * head_dim;
        float* oh = out + (uint64_t(b) * seq + t) * dim + h * head_dim;
        float max = -INFINITY;
        for (int j = 0; j <= last; ++j) {
          scores[j] = Dot(qh, kc + slot(b, j) + h * head_dim, head_dim) * scale;
          max = std::fmax(max, scores[j]);
        }
        float sum = 0.0f;
        for (int j = 0; j <= last; ++j) {
          scores[j] = std::exp(scores[j] - max);
          sum += scores[j];
        }
        for (int i = 0; i < head_dim; ++i) oh[i] = 0.0f;
        for (int j = 0; j <= last; ++j) {
          const float* vh = vc + slot(b, j) + h * head_dim;
          const float p = scores[j] / sum;
          for (int i = 0; i < head_dim; ++i) oh[i] += p * vh[i];
        }
      }
    }
  }
}

}  // namespace

SIMCUDA_KERNEL(tl_fill_random, sizeof(void*), sizeof(uint64_t), sizeof(uint32_t), sizeof(uint32_t),
               sizeof(float), sizeof(float), sizeof(int)) {
  void* out = SIMCUDA_PARAM(void*, 0);
  const uint64_t count = SIMCUDA_PARAM(uint64_t, 1);
  const uint32_t seed = SIMCUDA_PARAM(uint32_t, 2), tensor = SIMCUDA_PARAM(uint32_t, 3);
  const float scale = SIMCUDA_PARAM(float, 4), offset = SIMCUDA_PARAM(float, 5);
  if (SIMCUDA_PARAM(int, 6) == kTlBf16) {
    auto* o = static_cast<uint16_t*>(out);
    for (uint64_t i = 0; i < count; ++i) {
      o[i] = TlBf16FromFloat(offset + scale * TlHashUniform(seed, tensor, i));
    }
  } else {
    auto* o = static_cast<float*>(out);
    for (uint64_t i = 0; i < count; ++i) o[i] = offset + scale * TlHashUniform(seed, tensor, i);
  }
}

SIMCUDA_KERNEL(tl_embed, sizeof(float*), sizeof(const void*), sizeof(const int*), sizeof(int),
               sizeof(int), sizeof(int)) {
  float* x = SIMCUDA_PARAM(float*, 0);
  const void* table = SIMCUDA_PARAM(const void*, 1);
  const int* tokens = SIMCUDA_PARAM(const int*, 2);
  const int rows = SIMCUDA_PARAM(int, 3), dim = SIMCUDA_PARAM(int, 4);
  if (SIMCUDA_PARAM(int, 5) == kTlBf16) {
    Embed(x, static_cast<const uint16_t*>(table), tokens, rows, dim);
  } else {
    Embed(x, static_cast<const float*>(table), tokens, rows, dim);
  }
}

SIMCUDA_KERNEL(tl_rmsnorm, sizeof(float*), sizeof(const float*), sizeof(const void*), sizeof(int),
               sizeof(int), sizeof(float), sizeof(int)) {
  float* out = SIMCUDA_PARAM(float*, 0);
  const float* x = SIMCUDA_PARAM(const float*, 1);
  const void* w = SIMCUDA_PARAM(const void*, 2);
  const int rows = SIMCUDA_PARAM(int, 3), dim = SIMCUDA_PARAM(int, 4);
  const float eps = SIMCUDA_PARAM(float, 5);
  if (SIMCUDA_PARAM(int, 6) == kTlBf16) {
    Rmsnorm(out, x, static_cast<const uint16_t*>(w), rows, dim, eps);
  } else {
    Rmsnorm(out, x, static_cast<const float*>(w), rows, dim, eps);
  }
}

SIMCUDA_KERNEL(tl_matmul, sizeof(float*), sizeof(const float*), sizeof(const void*), sizeof(int),
               sizeof(int), sizeof(int), sizeof(int)) {
  float* out = SIMCUDA_PARAM(float*, 0);
  const float* x = SIMCUDA_PARAM(const float*, 1);
  const void* w = SIMCUDA_PARAM(const void*, 2);
  const int rows = SIMCUDA_PARAM(int, 3), in_dim = SIMCUDA_PARAM(int, 4);
  const int out_dim = SIMCUDA_PARAM(int, 5);
  if (SIMCUDA_PARAM(int, 6) == kTlBf16) {
    Matmul(out, x, static_cast<const uint16_t*>(w), rows, in_dim, out_dim);
  } else {
    Matmul(out, x, static_cast<const float*>(w), rows, in_dim, out_dim);
  }
}

SIMCUDA_KERNEL(tl_rope, sizeof(float*), sizeof(int), sizeof(int), sizeof(int), sizeof(int),
               sizeof(int), sizeof(float)) {
  float* x = SIMCUDA_PARAM(float*, 0);
  const int rows = SIMCUDA_PARAM(int, 1), seq = SIMCUDA_PARAM(int, 2);
  const int pos0 = SIMCUDA_PARAM(int, 3), n_heads = SIMCUDA_PARAM(int, 4);
  const int head_dim = SIMCUDA_PARAM(int, 5);
  const float theta = SIMCUDA_PARAM(float, 6);
  const int half = head_dim / 2;
  for (int r = 0; r < rows; ++r) {
    const float pos = float(pos0 + r % seq);
    for (int h = 0; h < n_heads; ++h) {
      float* xh = x + (uint64_t(r) * n_heads + h) * head_dim;
      // Rotate pairs (i, i + half), as Llama's "rotate_half" does.
      for (int i = 0; i < half; ++i) {
        const float angle = pos * std::pow(theta, -float(2 * i) / float(head_dim));
        const float c = std::cos(angle), s = std::sin(angle);
        const float a = xh[i], b = xh[i + half];
        xh[i] = a * c - b * s;
        xh[i + half] = a * s + b * c;
      }
    }
  }
}

SIMCUDA_KERNEL(tl_kv_store, sizeof(float*), sizeof(float*), sizeof(const float*),
               sizeof(const float*), sizeof(int), sizeof(int), sizeof(int), sizeof(int),
               sizeof(int)) {
  const int dim = SIMCUDA_PARAM(int, 7);
  KvStore(SIMCUDA_PARAM(float*, 0), SIMCUDA_PARAM(float*, 1), SIMCUDA_PARAM(const float*, 2),
          SIMCUDA_PARAM(const float*, 3), SIMCUDA_PARAM(int, 4), SIMCUDA_PARAM(int, 5),
          SIMCUDA_PARAM(int, 6), dim, ContiguousSlots{SIMCUDA_PARAM(int, 8), dim});
}

SIMCUDA_KERNEL(tl_kv_store_paged, sizeof(float*), sizeof(float*), sizeof(const float*),
               sizeof(const float*), sizeof(const int*), sizeof(int), sizeof(int), sizeof(int),
               sizeof(int), sizeof(int), sizeof(int)) {
  const int dim = SIMCUDA_PARAM(int, 8);
  KvStore(
      SIMCUDA_PARAM(float*, 0), SIMCUDA_PARAM(float*, 1), SIMCUDA_PARAM(const float*, 2),
      SIMCUDA_PARAM(const float*, 3), SIMCUDA_PARAM(int, 5), SIMCUDA_PARAM(int, 6),
      SIMCUDA_PARAM(int, 7), dim,
      PagedSlots{SIMCUDA_PARAM(const int*, 4), SIMCUDA_PARAM(int, 9), SIMCUDA_PARAM(int, 10), dim});
}

SIMCUDA_KERNEL(tl_attention, sizeof(float*), sizeof(const float*), sizeof(const float*),
               sizeof(const float*), sizeof(int), sizeof(int), sizeof(int), sizeof(int),
               sizeof(int), sizeof(int)) {
  const int n_heads = SIMCUDA_PARAM(int, 7), head_dim = SIMCUDA_PARAM(int, 8);
  Attention(SIMCUDA_PARAM(float*, 0), SIMCUDA_PARAM(const float*, 1),
            SIMCUDA_PARAM(const float*, 2), SIMCUDA_PARAM(const float*, 3), SIMCUDA_PARAM(int, 4),
            SIMCUDA_PARAM(int, 5), SIMCUDA_PARAM(int, 6), n_heads, head_dim,
            ContiguousSlots{SIMCUDA_PARAM(int, 9), n_heads * head_dim});
}

SIMCUDA_KERNEL(tl_attention_paged, sizeof(float*), sizeof(const float*), sizeof(const float*),
               sizeof(const float*), sizeof(const int*), sizeof(int), sizeof(int), sizeof(int),
               sizeof(int), sizeof(int), sizeof(int), sizeof(int)) {
  const int n_heads = SIMCUDA_PARAM(int, 8), head_dim = SIMCUDA_PARAM(int, 9);
  Attention(SIMCUDA_PARAM(float*, 0), SIMCUDA_PARAM(const float*, 1),
            SIMCUDA_PARAM(const float*, 2), SIMCUDA_PARAM(const float*, 3), SIMCUDA_PARAM(int, 5),
            SIMCUDA_PARAM(int, 6), SIMCUDA_PARAM(int, 7), n_heads, head_dim,
            PagedSlots{SIMCUDA_PARAM(const int*, 4), SIMCUDA_PARAM(int, 10), SIMCUDA_PARAM(int, 11),
                       n_heads * head_dim});
}

SIMCUDA_KERNEL(tl_silu_mul, sizeof(float*), sizeof(const float*), sizeof(uint64_t)) {
  float* g = SIMCUDA_PARAM(float*, 0);
  const float* u = SIMCUDA_PARAM(const float*, 1);
  const uint64_t n = SIMCUDA_PARAM(uint64_t, 2);
  for (uint64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

SIMCUDA_KERNEL(tl_add, sizeof(float*), sizeof(const float*), sizeof(uint64_t)) {
  float* x = SIMCUDA_PARAM(float*, 0);
  const float* y = SIMCUDA_PARAM(const float*, 1);
  const uint64_t n = SIMCUDA_PARAM(uint64_t, 2);
  for (uint64_t i = 0; i < n; ++i) x[i] += y[i];
}

SIMCUDA_KERNEL(tl_gather_last, sizeof(float*), sizeof(const float*), sizeof(int), sizeof(int),
               sizeof(int)) {
  float* out = SIMCUDA_PARAM(float*, 0);
  const float* x = SIMCUDA_PARAM(const float*, 1);
  const int batch = SIMCUDA_PARAM(int, 2), seq = SIMCUDA_PARAM(int, 3);
  const int dim = SIMCUDA_PARAM(int, 4);
  for (int b = 0; b < batch; ++b) {
    const float* src = x + (uint64_t(b) * seq + seq - 1) * dim;
    for (int i = 0; i < dim; ++i) out[uint64_t(b) * dim + i] = src[i];
  }
}

SIMCUDA_KERNEL(tl_argmax, sizeof(int*), sizeof(const float*), sizeof(int), sizeof(int)) {
  int* out = SIMCUDA_PARAM(int*, 0);
  const float* logits = SIMCUDA_PARAM(const float*, 1);
  const int rows = SIMCUDA_PARAM(int, 2), vocab = SIMCUDA_PARAM(int, 3);
  for (int r = 0; r < rows; ++r) {
    const float* l = logits + uint64_t(r) * vocab;
    int best = 0;  // ties go to the lowest index, as on the GPU
    for (int i = 1; i < vocab; ++i) {
      if (l[i] > l[best]) best = i;
    }
    out[r] = best;
  }
}
