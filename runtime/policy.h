// SPDX-License-Identifier: Apache-2.0
//
// The policy interface: which device-resident chunk leaves HBM when room is needed, and
// which chunks to bring in ahead of need. The manager owns the mechanics (pools, moves,
// hints such as PIN); a policy only orders chunks.
//
// LruPolicy is the baseline: least recently touched leaves first, chunks advised COLD
// before all others. It is the worst policy for inference's cyclic scans and is kept as
// the reference the learned policy must beat (architecture.md, "Performance model").
//
// Thread safety: none; the manager calls a policy under its own mutex.
#ifndef SPILLWAY_RUNTIME_POLICY_H_
#define SPILLWAY_RUNTIME_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "runtime/chunk.h"

namespace spillway {

class Policy {
 public:
  virtual ~Policy() = default;
  virtual const char* name() const = 0;
  // `chunk` became device-resident / stopped being device-resident.
  virtual void OnResident(Chunk* chunk) = 0;
  virtual void OnLeave(Chunk* chunk) = 0;
  // The application used `chunk` (a prefetch, or a launch that touches it).
  virtual void OnTouch(Chunk* chunk) = 0;
  // Up to `count` device-resident chunks for which `eligible` holds, best victim first.
  virtual std::vector<Chunk*> PickVictims(size_t count,
                                          const std::function<bool(const Chunk*)>& eligible) = 0;
  // Chunks worth fetching ahead of need, most urgent first. LRU predicts nothing.
  virtual std::vector<Chunk*> SuggestPrefetches() { return {}; }
};

// Touches are O(1): a touch only stamps the chunk (`last_use`); the ordered set keeps the
// stamp a chunk had when it was (re)inserted, and PickVictims re-files stale entries as it
// meets them. A launch touches every chunk it uses, so this is on the launch path.
class LruPolicy final : public Policy {
 public:
  const char* name() const override { return "lru"; }
  void OnResident(Chunk* chunk) override;
  void OnLeave(Chunk* chunk) override;
  void OnTouch(Chunk* chunk) override;
  std::vector<Chunk*> PickVictims(size_t count,
                                  const std::function<bool(const Chunk*)>& eligible) override;

 private:
  // (cold first, then oldest touch): the set's order is the eviction order.
  using Key = std::pair<std::pair<int, uint64_t>, Chunk*>;
  Key KeyOf(const Chunk* chunk) const;

  uint64_t clock_ = 0;
  absl::btree_set<Key> order_;
  absl::flat_hash_map<Chunk*, Key> keys_;
};

std::unique_ptr<Policy> MakePolicy(const char* name);

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_POLICY_H_
