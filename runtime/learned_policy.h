// SPDX-License-Identifier: Apache-2.0
//
// The learned policy (SPILLWAY_POLICY=learned): learns the repeating sequence of launches
// online, evicts by Belady's rule on that prediction, and tells the manager which
// allocations the next launches will name so that it can fetch them ahead of need.
//
// Learning. Each launch has a signature: its stream and the ids of the allocations it
// names, in order (not their sizes or chunks, so a growing KV cache does not change it).
// A period P is a candidate when a signature recurs P launches later, and learned once P
// launches in a row repeat the ones P earlier (a decode step, a graph replay). Any launch
// that differs from the one P earlier (a new sequence length, a prefill among decodes, a
// new request) forgets P, and learning starts over. Memory is bounded: the last
// kMaxPeriod launches, and a signature table cleared when it outgrows them.
//
// Eviction works on allocations, the unit a launch names (a kernel given a pointer into an
// allocation may reach all of it). With P learned, an allocation used at launch n is next
// used at the first launch after n whose position in the period names it (Belady on the
// prediction: the furthest next use leaves first). An allocation whose predicted use
// passed without it, or that the schedule does not name, is evicted first. Among the
// chunks of one allocation, clean ones (a valid host copy) leave before dirty ones. While
// nothing is learned, and until HBM first runs out, it is LRU over allocations.
//
// Learning starts only once the manager first needs a victim: while everything fits, a
// launch costs what it costs under LRU.
//
// Thread safety: none; the manager calls it under its mutex.
#ifndef SPILLWAY_RUNTIME_LEARNED_POLICY_H_
#define SPILLWAY_RUNTIME_LEARNED_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "runtime/policy.h"

namespace spillway {

class LearnedPolicy final : public Policy {
 public:
  // The longest period it can learn, in launches (a decode step of a 70B model with its
  // copies is under 2,000).
  static constexpr int64_t kMaxPeriod = int64_t{1} << 14;

  const char* name() const override { return "learned"; }
  bool wants_launches() const override { return active_; }
  void OnAllocate(Allocation* allocation) override;
  void OnFree(Allocation* allocation) override;
  void OnResident(Chunk* chunk) override;
  void OnLeave(Chunk* chunk) override;
  void OnLaunch(CUstream stream, std::span<Allocation* const> allocations) override;
  void OnUse(Allocation* allocation) override;
  void OnTouch(Chunk* chunk) override;
  std::vector<Chunk*> PickVictims(size_t count, const std::function<bool(const Chunk*)>& eligible,
                                  int64_t used_after = -1) override;

  int64_t period() const override { return period_; }
  int64_t current_launch() const override { return current_; }
  uint64_t schedule_epoch() const override { return epoch_; }
  void Predicted(int64_t m, std::vector<Allocation*>* out) const override;

  // The next launch after `n` that the learned schedule has naming `allocation`; kNever
  // when nothing is learned or the schedule does not name it. For tests and tools.
  int64_t NextUse(const Allocation* allocation, int64_t n) const;

 private:
  struct Record {
    int64_t last_use = 0;   // the launch that last named it (0: none yet)
    int64_t key = 0;        // its place in order_ (eviction rank: higher leaves sooner)
    uint32_t resident = 0;  // chunks in HBM; filed in order_ while > 0
  };
  struct Launch {
    uint64_t signature = 0;
    std::vector<uint64_t> ids;  // allocation ids, in the order the launch named them
  };
  Launch& At(int64_t n) { return ring_[static_cast<size_t>(n) % ring_.size()]; }
  const Launch& At(int64_t n) const { return ring_[static_cast<size_t>(n) % ring_.size()]; }
  // The rank of `record` now: next use under a learned period, age before.
  int64_t KeyOf(const Allocation* allocation, const Record& record) const;
  void Refile(const Allocation* allocation, Record& record);
  void Learn(int64_t period);
  void Forget();
  void RekeyAll();

  bool active_ = false;       // a victim was needed once: learning is worth its cost
  int64_t current_ = 0;       // index of the latest launch
  std::vector<Launch> ring_;  // the last kMaxPeriod + 1 launches
  absl::flat_hash_map<uint64_t, int64_t> last_seen_;  // signature -> its latest launch
  int64_t period_ = 0;                                // 0: nothing learned
  int64_t candidate_ = 0;  // period being confirmed, and launches that confirmed it
  int64_t run_ = 0;
  uint64_t epoch_ = 0;
  // Learned schedule: per allocation id, the positions (launch index mod period) naming it.
  absl::flat_hash_map<uint64_t, std::vector<int64_t>> phases_;
  absl::flat_hash_map<uint64_t, Allocation*> live_;  // id -> allocation
  absl::flat_hash_map<const Allocation*, Record> records_;
  absl::btree_set<std::pair<int64_t, const Allocation*>> order_;  // (key, allocation)
};

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_LEARNED_POLICY_H_
