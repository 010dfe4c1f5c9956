// SPDX-License-Identifier: Apache-2.0
//
// AllocationMap: the registry of managed allocations, an interval map from each one's device
// virtual range [base, base + size) to its Allocation. The launch path looks up every argument
// word of every kernel launch here, so lookups are O(log n) in a B-tree ordered by base (the
// predecessor of an address is the only range that can hold it), and a word below the lowest
// range or above the highest (a size, a count, a flag: most argument words) is rejected by
// two compares against atomics, without taking the lock.
//
// Contract: ranges never overlap and are never empty; the map never dereferences an
// Allocation*, it only stores it. Insert refuses an overlap (FailedPrecondition, naming both
// ranges); Erase of a base that is not registered, a pointer the runtime does not own or one
// already freed, is NotFound, so the caller can pass it through or report a double free.
//
// Thread safety: all methods may be called concurrently. Lookups (Find, FindMany, size) share
// a reader lock; Insert and Erase take it exclusively. FindMany exists so that a launch takes
// the lock once for all its argument words, not once per word (and not at all when none of
// them can be ours). A lookup sees every range whose Insert happens-before it (the allocating
// hook returned the pointer before the launch that uses it), the rule the invariant rests on:
// a managed pointer missed here would launch without its chunks being brought back.
#ifndef SPILLWAY_RUNTIME_ALLOCATION_MAP_H_
#define SPILLWAY_RUNTIME_ALLOCATION_MAP_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace spillway {

struct Allocation;  // defined by the chunk table; only pointed to here

class AllocationMap {
 public:
  // A managed allocation that holds a looked-up address. `address - base` is the offset in it.
  struct Hit {
    Allocation* allocation = nullptr;
    uintptr_t base = 0;
    size_t size = 0;
  };

  AllocationMap() = default;
  AllocationMap(const AllocationMap&) = delete;
  AllocationMap& operator=(const AllocationMap&) = delete;

  // Registers [base, base + size) for `allocation`. InvalidArgument for size 0, a null
  // allocation or an end (base + size) past UINTPTR_MAX; FailedPrecondition if the range
  // overlaps a registered one.
  absl::Status Insert(uintptr_t base, size_t size, Allocation* allocation)
      ABSL_LOCKS_EXCLUDED(mutex_);

  // Unregisters the range starting exactly at `base` and returns its allocation. NotFound if no
  // range starts there (an address inside a range is not its base either).
  absl::StatusOr<Allocation*> Erase(uintptr_t base) ABSL_LOCKS_EXCLUDED(mutex_);

  // The range holding `address` (base <= address < base + size), if any.
  std::optional<Hit> Find(uintptr_t address) const ABSL_LOCKS_EXCLUDED(mutex_);

  // Looks up every address under one lock. `*out` is resized to addresses.size() (reusing its
  // capacity, so a caller that keeps it allocates nothing once it is large enough) and
  // (*out)[i] is the range holding addresses[i], or a Hit with a null allocation if none does.
  // Returns how many addresses fell in a range.
  size_t FindMany(std::span<const uintptr_t> addresses, std::vector<Hit>* out) const
      ABSL_LOCKS_EXCLUDED(mutex_);

  // Number of registered ranges.
  size_t size() const ABSL_LOCKS_EXCLUDED(mutex_);

  // How many ranges have been erased so far: equal counts mean none was in between.
  uint64_t erasures() const { return erasures_.load(std::memory_order_acquire); }

 private:
  struct Entry {
    size_t size;
    Allocation* allocation;
  };
  using Ranges = absl::btree_map<uintptr_t, Entry>;

  // False if no range can hold `address`; true may still miss.
  bool MayHold(uintptr_t address) const {
    return address >= lowest_.load(std::memory_order_relaxed) &&
           address < highest_end_.load(std::memory_order_relaxed);
  }
  std::optional<Hit> FindLocked(uintptr_t address) const ABSL_SHARED_LOCKS_REQUIRED(mutex_);
  void UpdateBounds() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  mutable absl::Mutex mutex_;
  Ranges ranges_ ABSL_GUARDED_BY(mutex_);  // keyed by base

  // The lowest base and the highest end of the ranges, written under mutex_ and read without
  // it. Relaxed is enough: a lookup ordered after an Insert (by whatever handed the pointer to
  // the launching thread) reads these as of that Insert or later, and every such value covers
  // the ranges still registered; a stale wider value only sends the lookup to the tree.
  std::atomic<uintptr_t> lowest_{UINTPTR_MAX};
  std::atomic<uintptr_t> highest_end_{0};
  // Bumped by every Erase. FindMany keeps each thread's recent hits and answers from them
  // without the lock while this is unchanged: launches name the same allocations again and
  // again. (Insert cannot make a recent hit wrong: ranges never overlap.)
  std::atomic<uint64_t> erasures_{0};
  // Names this map in those per-thread caches. Not its address: a map created where a
  // destroyed one was (spw_shutdown then spw_init, or one test after another) would find
  // the old map's hits, pointers to freed allocations, under an erasure count that matches.
  const uint64_t instance_ = NextInstance();
  static uint64_t NextInstance();
};

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_ALLOCATION_MAP_H_
