// SPDX-License-Identifier: Apache-2.0
//
// Synthetic Llama-shaped decode traces (contract in synth.h).

#include "synth.h"

#include <algorithm>
#include <vector>

namespace spillway::trace_sim {

std::optional<ModelShape> FindModelShape(const std::string& name) {
  if (name == "llama3-8b") return ModelShape{name, 32, 4096, 14336, 32, 8, 128256};
  if (name == "llama3-70b") return ModelShape{name, 80, 8192, 28672, 64, 8, 128256};
  return std::nullopt;
}

Trace SynthesizeDecode(const ModelShape& s, const SynthOptions& o) {
  Trace t;
  t.chunk_bytes = o.chunk_bytes;
  constexpr uint64_t kBf16 = 2;
  const uint64_t dim = s.dim, kv_dim = static_cast<uint64_t>(s.kv_heads) * (s.dim / s.heads);
  const uint64_t batch = o.batch;
  uint64_t next_id = 1;
  auto weight = [&](uint64_t rows, uint64_t cols) {
    const uint64_t id = next_id++;
    t.AddAllocation(id, rows * cols * kBf16, AllocKind::kWeights);
    return id;
  };
  struct Layer {
    uint64_t wq, wk, wv, wo, gate, up, down, kv;
  };
  const uint64_t embed = weight(s.vocab, dim);
  const uint64_t max_context = static_cast<uint64_t>(o.context) + o.steps;
  const uint64_t kv_bytes_per_token = 2 * kv_dim * kBf16 * batch;  // K and V.
  std::vector<Layer> layers(s.layers);
  for (Layer& l : layers) {
    l.wq = weight(dim, dim);
    l.wk = weight(dim, kv_dim);
    l.wv = weight(dim, kv_dim);
    l.wo = weight(dim, dim);
    l.gate = weight(dim, s.ffn);
    l.up = weight(dim, s.ffn);
    l.down = weight(s.ffn, dim);
    l.kv = next_id++;
    t.AddAllocation(l.kv, max_context * kv_bytes_per_token, AllocKind::kKv);
  }
  const uint64_t lm_head = weight(s.vocab, dim);

  uint64_t t_ns = 0;
  auto compute_ns = [&](double flops, double bytes) {
    return static_cast<int64_t>(std::max(flops / (o.gpu_tflops * 1e3), bytes / o.hbm_gbps) +
                                2000);  // + launch ~2 us
  };
  auto launch = [&](std::vector<ChunkRange> ranges, int64_t ns) {
    Event e;
    e.type = Event::Type::kLaunch;
    e.t_ns = t_ns;
    e.stream = 1;
    e.compute_ns = ns;
    e.ranges = std::move(ranges);
    t.events.push_back(std::move(e));
    t_ns += 5000;
  };
  // Allocation index of trace id `id` (ids are 1-based and never reused here).
  auto whole = [&](uint64_t id) {
    const uint32_t a = static_cast<uint32_t>(id - 1);
    return ChunkRange{a, 0, t.allocations[a].num_chunks - 1};
  };
  auto bytes_of = [&](uint64_t id) { return static_cast<double>(t.allocations[id - 1].bytes); };

  uint64_t token = 12345;
  for (int step = 0; step < o.steps; ++step) {
    // Embedding gather: one row per sequence; the chunks holding those rows.
    std::vector<ChunkRange> rows;
    for (uint64_t b = 0; b < batch; ++b) {
      token = (token * 6364136223846793005ull + 1442695040888963407ull);
      const uint64_t row = (token >> 33) % s.vocab;
      const uint32_t chunk = static_cast<uint32_t>(row * dim * kBf16 / o.chunk_bytes);
      rows.push_back({static_cast<uint32_t>(embed - 1), chunk, chunk});
    }
    launch(rows, compute_ns(0, batch * dim * kBf16));
    const uint64_t context = static_cast<uint64_t>(o.context) + step + 1;
    const double b = static_cast<double>(batch);
    for (const Layer& l : layers) {
      launch({whole(l.wq), whole(l.wk), whole(l.wv)},
             compute_ns(2 * b * dim * (dim + 2 * kv_dim),
                        bytes_of(l.wq) + bytes_of(l.wk) + bytes_of(l.wv)));
      const uint64_t kv_used = context * kv_bytes_per_token;
      // The cache holds the tokens so far; this step appends one, so the last chunk grows
      // and a new one starts every chunk_bytes / kv_bytes_per_token steps.
      const uint32_t last = static_cast<uint32_t>((kv_used - 1) / o.chunk_bytes);
      launch({{static_cast<uint32_t>(l.kv - 1), 0, last}},
             compute_ns(4 * b * static_cast<double>(context) * dim, static_cast<double>(kv_used)));
      launch({whole(l.wo)}, compute_ns(2 * b * dim * dim, bytes_of(l.wo)));
      launch({whole(l.gate), whole(l.up)},
             compute_ns(4 * b * dim * s.ffn, bytes_of(l.gate) + bytes_of(l.up)));
      launch({whole(l.down)}, compute_ns(2 * b * dim * s.ffn, bytes_of(l.down)));
    }
    launch({whole(lm_head)}, compute_ns(2 * b * dim * s.vocab, bytes_of(lm_head)));
    Event e;
    e.type = Event::Type::kStep;
    t.events.push_back(std::move(e));
  }
  return t;
}

}  // namespace spillway::trace_sim
