// SPDX-License-Identifier: Apache-2.0
//
// TraceWriter: the access trace SPILLWAY_TRACE=FILE records, for the offline policy
// simulator (bench/trace_sim, docs/trace_sim.md). Text, one event per line:
//
//   # spillway-trace 1
//   chunk <chunk_bytes>
//   alloc <id> <bytes> <kind>            kind: weights | kv | other (from the advice)
//   free <id>
//   launch <t_ns> <stream> <id> ...      the allocations one launch (or copy) names
//
// Ids are the manager's allocation numbers; streams are numbered in order of first sight
// (handles are reused after cuStreamDestroy, numbers are not). Times are steady-clock ns
// since the writer opened.
//
// Thread safety: every method may be called from any thread; lines never interleave.
// Cost: only when tracing is on (the manager holds a null writer otherwise).
#ifndef SPILLWAY_RUNTIME_TRACE_H_
#define SPILLWAY_RUNTIME_TRACE_H_

#include <cuda.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace spillway {

class TraceWriter {
 public:
  // Creates (truncates) `path` and writes the header; `path` names the variable's value in
  // errors.
  static absl::StatusOr<std::unique_ptr<TraceWriter>> Open(const std::string& path,
                                                           size_t chunk_bytes);
  ~TraceWriter();  // flushes and closes

  void Alloc(uint64_t id, size_t bytes, uint32_t advice);
  void Free(uint64_t id);
  void Launch(CUstream stream, std::span<const uint64_t> ids);
  void Flush();

 private:
  TraceWriter(FILE* file, int64_t start_ns) : file_(file), start_ns_(start_ns) {}

  absl::Mutex mu_;
  FILE* file_ ABSL_GUARDED_BY(mu_);
  const int64_t start_ns_;
  absl::flat_hash_map<CUstream, uint64_t> stream_numbers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_TRACE_H_
