// SPDX-License-Identifier: Apache-2.0
//
// Synthetic Llama-shaped decode traces for trace_sim: per step, an embedding gather, per
// layer the attention and MLP weight tensors at their real bf16 sizes and the layer's KV
// allocation (growing by one token per step), then the LM head. Each launch carries
// compute_ns = max(FLOPs / GPU rate, bytes read / HBM bandwidth) at the given batch.
//
// Thread safety: pure functions.

#ifndef SPILLWAY_BENCH_TRACE_SIM_SYNTH_H_
#define SPILLWAY_BENCH_TRACE_SIM_SYNTH_H_

#include <cstdint>
#include <optional>
#include <string>

#include "trace.h"

namespace spillway::trace_sim {

struct ModelShape {
  std::string name;
  int layers = 0, dim = 0, ffn = 0, heads = 0, kv_heads = 0, vocab = 0;
};

// "llama3-8b" or "llama3-70b".
std::optional<ModelShape> FindModelShape(const std::string& name);

struct SynthOptions {
  int batch = 1;
  int steps = 8;
  int context = 1024;              // Tokens already in the KV cache at step 0 (the prompt).
  uint64_t chunk_bytes = 2 << 20;  // Spillway's default chunk.
  double gpu_tflops = 600;         // Sustained bf16 dense rate (an H100/H200-class GPU).
  double hbm_gbps = 4000;          // Sustained HBM read bandwidth.
};

Trace SynthesizeDecode(const ModelShape& shape, const SynthOptions& options);

}  // namespace spillway::trace_sim

#endif  // SPILLWAY_BENCH_TRACE_SIM_SYNTH_H_
