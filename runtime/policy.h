// SPDX-License-Identifier: Apache-2.0
//
// The policy interface: which device-resident chunk leaves HBM when room is needed, and
// which chunks to bring in ahead of need. The manager owns the mechanics (pools, moves,
// hints such as PIN); a policy only orders chunks.
//
// LruPolicy is the baseline: least recently touched leaves first, chunks advised COLD
// before all others. It is the worst policy for inference's cyclic scans and is kept as
// the reference the learned policy must beat (architecture.md, "Performance model").
// LearnedPolicy (learned_policy.h) learns the launch schedule, evicts by Belady's rule on
// its prediction and tells the manager what to prefetch.
//
// Launch indices: the manager tells the policy of every launch (or copy) that names
// managed memory, in order (OnLaunch); a policy that predicts numbers them 1, 2, ... and
// speaks of future uses in those numbers.
//
// Thread safety: none; the manager calls a policy under its own mutex.
#ifndef SPILLWAY_RUNTIME_POLICY_H_
#define SPILLWAY_RUNTIME_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "runtime/chunk.h"

namespace spillway {

class Policy {
 public:
  // "No use predicted" (a launch index no launch reaches).
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

  virtual ~Policy() = default;
  virtual const char* name() const = 0;
  // A managed allocation was made / is being freed (after its chunks' OnLeave).
  virtual void OnAllocate(Allocation*) {}
  virtual void OnFree(Allocation*) {}
  // `chunk` became device-resident / stopped being device-resident.
  virtual void OnResident(Chunk* chunk) = 0;
  virtual void OnLeave(Chunk* chunk) = 0;
  // Whether it wants OnLaunch and OnUse now (the launch path skips two calls per launch
  // when it does not). May turn true in PickVictims (a policy that learns only once HBM is
  // full); the manager reads it again after each PickVictims, and never turns it off.
  virtual bool wants_launches() const { return false; }
  // A launch (or copy) on `stream` names `allocations` (live, each once), before any of
  // their chunks is touched for it.
  virtual void OnLaunch(CUstream /*stream*/, std::span<Allocation* const> /*allocations*/) {}
  // The application uses every chunk of `allocation` (a launch or a prefetch names it);
  // followed by OnTouch for each chunk.
  virtual void OnUse(Allocation* /*allocation*/) {}
  // The application used `chunk` (a prefetch, or a launch that touches it).
  virtual void OnTouch(Chunk* chunk) = 0;
  // Up to `count` device-resident chunks for which `eligible` holds, best victim first.
  // With `used_after` >= 0, only chunks whose next use the policy predicts after launch
  // `used_after` (a prefetch for that launch must not evict what comes sooner); a policy
  // that predicts nothing ignores it.
  virtual std::vector<Chunk*> PickVictims(size_t count,
                                          const std::function<bool(const Chunk*)>& eligible,
                                          int64_t used_after = -1) = 0;

  // The learned schedule, for the manager's prefetcher. period() == 0: nothing learned
  // (LRU's case, always). Otherwise the launches current_launch() + 1 ...
  // current_launch() + period() are predicted: Predicted(m, out) appends the allocations
  // launch m will name. schedule_epoch() changes whenever the prediction is replaced.
  virtual int64_t period() const { return 0; }
  virtual int64_t current_launch() const { return 0; }
  virtual uint64_t schedule_epoch() const { return 0; }
  virtual void Predicted(int64_t /*m*/, std::vector<Allocation*>* /*out*/) const {}
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
  std::vector<Chunk*> PickVictims(size_t count, const std::function<bool(const Chunk*)>& eligible,
                                  int64_t used_after = -1) override;

 private:
  // (cold first, then oldest touch): the set's order is the eviction order.
  using Key = std::pair<std::pair<int, uint64_t>, Chunk*>;
  Key KeyOf(const Chunk* chunk) const;

  uint64_t clock_ = 0;
  absl::btree_set<Key> order_;
  absl::flat_hash_map<Chunk*, Key> keys_;
};

// "lru" or "learned"; null for any other name.
std::unique_ptr<Policy> MakePolicy(const char* name);

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_POLICY_H_
