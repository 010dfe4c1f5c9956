// SPDX-License-Identifier: Apache-2.0
//
// Spillway access traces: the text format `SPILLWAY_TRACE=FILE` records and trace_sim
// replays (docs/trace_sim.md), its in-memory form, a parser and a writer.
//
// Contract: ParseTrace accepts exactly the format below and rejects anything else with the
// 1-based line number in the error. Allocation ids may be reused after `free`; every `alloc`
// becomes a new Allocation (a dense index), so later stages never see an id twice.
//
//   # spillway-trace 1
//   chunk <chunk_bytes>
//   alloc <id> <bytes> <weights|kv|other>
//   free <id>
//   launch <t_ns> <stream> <id>[:<first>-<last>] ... [compute_ns=<n>]
//   step
//
// Thread safety: plain values; no shared state.

#ifndef SPILLWAY_BENCH_TRACE_SIM_TRACE_H_
#define SPILLWAY_BENCH_TRACE_SIM_TRACE_H_

#include <cstdint>
#include <istream>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace spillway::trace_sim {

enum class AllocKind : uint8_t { kWeights, kKv, kOther };

std::string_view AllocKindName(AllocKind kind);

struct Allocation {
  uint64_t id = 0;  // As written in the trace (may repeat after a free).
  uint64_t bytes = 0;
  AllocKind kind = AllocKind::kOther;
  uint32_t first_chunk = 0;  // Global (dense) index of its chunk 0.
  uint32_t num_chunks = 0;
};

// Chunks [first, last] (inclusive) of one allocation.
struct ChunkRange {
  uint32_t alloc = 0;  // Index into Trace::allocations.
  uint32_t first = 0;
  uint32_t last = 0;
};

struct Event {
  enum class Type : uint8_t { kAlloc, kFree, kLaunch, kStep };
  Type type = Type::kStep;
  uint32_t alloc = 0;  // kAlloc, kFree: index into Trace::allocations.
  // kLaunch:
  uint64_t t_ns = 0;
  uint64_t stream = 0;
  int64_t compute_ns = -1;  // -1: not in the trace (the simulator estimates it).
  std::vector<ChunkRange> ranges;
};

struct Trace {
  uint64_t chunk_bytes = 0;
  std::vector<Allocation> allocations;
  std::vector<Event> events;
  uint32_t total_chunks = 0;  // Sum of num_chunks over allocations.

  // Adds an allocation and its kAlloc event; returns its index.
  uint32_t AddAllocation(uint64_t id, uint64_t bytes, AllocKind kind);
  uint64_t WeightBytes() const;
};

absl::StatusOr<Trace> ParseTrace(std::istream& in);
absl::StatusOr<Trace> ParseTraceFile(const std::string& path);
void WriteTrace(const Trace& trace, std::ostream& out);

}  // namespace spillway::trace_sim

#endif  // SPILLWAY_BENCH_TRACE_SIM_TRACE_H_
