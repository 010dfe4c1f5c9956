// SPDX-License-Identifier: Apache-2.0
//
// belady: offline optimal replacement (evict the chunk whose next use is furthest away,
// clean before dirty at a tie), fetching on demand. It reads the whole trace up front, so
// it is a reference for bytes moved, not something a runtime can do.

#include <limits>

#include "simulator.h"

namespace spillway::trace_sim {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max() / 4;

class BeladyPolicy : public Policy {
 public:
  std::string Name() const override { return "belady"; }
  void Begin(const Replay& replay, const Machine& /*machine*/) override {
    order_.Reset(replay.trace->total_chunks, &replay.chunk_dirty);
    // next_use_[pos]: the launch that next touches the chunk accessed at pos.
    next_use_.assign(replay.chunks.size(), kNever);
    std::vector<int64_t> upcoming(replay.trace->total_chunks, kNever);
    for (size_t n = replay.launches.size(); n-- > 0;) {
      const Replay::Launch& l = replay.launches[n];
      for (uint32_t pos = l.begin; pos < l.end; ++pos) {
        next_use_[pos] = upcoming[replay.chunks[pos]];
        upcoming[replay.chunks[pos]] = static_cast<int64_t>(n);
      }
    }
    first_use_ = std::move(upcoming);
  }
  ChunkId ChooseVictim(const Simulator& sim, size_t) override { return order_.Pick(sim); }
  void OnInsert(ChunkId c, size_t n) override { order_.Set(c, static_cast<int64_t>(n)); }
  void OnAccess(ChunkId c, size_t, size_t pos) override { order_.Set(c, next_use_[pos]); }
  void OnRemove(ChunkId c) override { order_.Remove(c); }
  // A chunk leaving HBM keeps its next use; one never used yet (the initial host) its first.
  int64_t HostKey(ChunkId c) const override {
    return order_.Contains(c) ? order_.Key(c) : first_use_[c];
  }

 private:
  VictimOrder order_;  // key = next use.
  std::vector<int64_t> next_use_;
  std::vector<int64_t> first_use_;  // Per chunk.
};

}  // namespace

std::unique_ptr<Policy> MakeBeladyPolicy() { return std::make_unique<BeladyPolicy>(); }

}  // namespace spillway::trace_sim
