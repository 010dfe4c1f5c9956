// SPDX-License-Identifier: Apache-2.0
//
// ondemand-lru: fetch a chunk when a launch needs it, evict the least recently used one.
// This is what the Spillway runtime does today (SPILLWAY_POLICY=lru).

#include "simulator.h"

namespace spillway::trace_sim {
namespace {

class LruPolicy : public Policy {
 public:
  std::string Name() const override { return "ondemand-lru"; }
  void Begin(const Replay& replay, const Machine& /*machine*/) override {
    order_.Reset(replay.trace->total_chunks, &replay.chunk_dirty);
    clock_ = 0;
  }
  ChunkId ChooseVictim(const Simulator& sim, size_t) override { return order_.Pick(sim); }
  void OnInsert(ChunkId c, size_t) override { order_.Set(c, -(++clock_)); }
  void OnAccess(ChunkId c, size_t, size_t) override { order_.Set(c, -(++clock_)); }
  void OnRemove(ChunkId c) override { order_.Remove(c); }
  // A chunk never used counts as used before everything: the host drops it first.
  int64_t HostKey(ChunkId c) const override { return order_.Contains(c) ? order_.Key(c) : 0; }

 private:
  VictimOrder order_;  // key = -(time of last use): the oldest is evicted first.
  int64_t clock_ = 0;
};

}  // namespace

std::unique_ptr<Policy> MakeLruPolicy() { return std::make_unique<LruPolicy>(); }

}  // namespace spillway::trace_sim
