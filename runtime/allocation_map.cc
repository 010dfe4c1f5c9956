// SPDX-License-Identifier: Apache-2.0

#include "runtime/allocation_map.h"

#include <algorithm>
#include <iterator>
#include <limits>
#include <memory>

#include "absl/strings/str_format.h"
#include "runtime/fast_tls.h"

namespace spillway {
namespace {

std::string DescribeRange(uintptr_t base, size_t size) {
  return absl::StrFormat("[%#x, %#x)", base, base + size);
}

absl::Status Overlap(uintptr_t base, size_t size, uintptr_t other_base, size_t other_size) {
  return absl::FailedPreconditionError(absl::StrFormat("range %s overlaps the managed range %s",
                                                       DescribeRange(base, size),
                                                       DescribeRange(other_base, other_size)));
}

}  // namespace

absl::Status AllocationMap::Insert(uintptr_t base, size_t size, Allocation* allocation) {
  if (size == 0) {
    return absl::InvalidArgumentError(absl::StrFormat("empty range at %#x", base));
  }
  if (base > std::numeric_limits<uintptr_t>::max() - size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "range at %#x of %u bytes ends past the top of the address space", base, size));
  }
  if (allocation == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("null allocation for %s", DescribeRange(base, size)));
  }
  absl::MutexLock lock(&mutex_);
  // Only two ranges can overlap the new one without also overlapping each other: the first
  // that starts at or after `base`, and the one before it.
  const auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first - base < size) {
    return Overlap(base, size, next->first, next->second.size);
  }
  if (next != ranges_.begin()) {
    const auto& [previous_base, previous] = *std::prev(next);
    if (base - previous_base < previous.size) {
      return Overlap(base, size, previous_base, previous.size);
    }
  }
  ranges_.emplace_hint(next, base, Entry{size, allocation});
  UpdateBounds();
  return absl::OkStatus();
}

absl::StatusOr<Allocation*> AllocationMap::Erase(uintptr_t base) {
  absl::MutexLock lock(&mutex_);
  const auto it = ranges_.find(base);
  if (it == ranges_.end()) {
    return absl::NotFoundError(
        absl::StrFormat("no managed allocation starts at %#x (not ours, or already freed)", base));
  }
  Allocation* const allocation = it->second.allocation;
  ranges_.erase(it);
  UpdateBounds();
  erasures_.fetch_add(1, std::memory_order_release);
  return allocation;
}

std::optional<AllocationMap::Hit> AllocationMap::Find(uintptr_t address) const {
  if (!MayHold(address)) return std::nullopt;
  absl::ReaderMutexLock lock(&mutex_);
  return FindLocked(address);
}

namespace {

// A thread's latest hits in one map, valid while the map's erasure count is unchanged.
// Direct-mapped by the 64 KiB granule of the address looked up: one comparison answers a
// launch's pointer, whichever allocation it falls in.
struct RecentHits {
  static constexpr int kSlotBits = 6;
  uint64_t map = 0;  // AllocationMap::instance_; 0 is none
  uint64_t erasures = 0;
  AllocationMap::Hit slots[1 << kSlotBits];

  static size_t SlotOf(uintptr_t address) {
    return static_cast<size_t>(((address >> 16) * 0x9E3779B97F4A7C15ull) >> (64 - kSlotBits));
  }
};

}  // namespace

uint64_t AllocationMap::NextInstance() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

size_t AllocationMap::FindMany(std::span<const uintptr_t> addresses, std::vector<Hit>* out) const {
  out->assign(addresses.size(), Hit{});
  size_t candidates = 0;
  for (const uintptr_t address : addresses) candidates += MayHold(address);
  if (candidates == 0) return 0;  // a launch with no pointer of ours takes no lock
  RecentHits& cache = PerThread<RecentHits>::Get();  // 1.5 KiB: on the heap
  const uint64_t erasures = erasures_.load(std::memory_order_acquire);
  if (cache.map != instance_ || cache.erasures != erasures) {
    std::fill(std::begin(cache.slots), std::end(cache.slots), Hit{});
    cache.map = instance_;
    cache.erasures = erasures;
  }
  size_t hits = 0;
  bool unresolved = false;
  for (size_t i = 0; i < addresses.size(); ++i) {
    if (!MayHold(addresses[i])) continue;
    const Hit& hit = cache.slots[RecentHits::SlotOf(addresses[i])];
    if (hit.allocation != nullptr && addresses[i] - hit.base < hit.size) {
      (*out)[i] = hit;
      ++hits;
    } else {
      unresolved = true;
    }
  }
  if (!unresolved) return hits;
  absl::ReaderMutexLock lock(&mutex_);
  for (size_t i = 0; i < addresses.size(); ++i) {
    if ((*out)[i].allocation != nullptr || !MayHold(addresses[i])) continue;
    if (const std::optional<Hit> hit = FindLocked(addresses[i]); hit.has_value()) {
      (*out)[i] = *hit;
      ++hits;
      cache.slots[RecentHits::SlotOf(addresses[i])] = *hit;
    }
  }
  return hits;
}

size_t AllocationMap::size() const {
  absl::ReaderMutexLock lock(&mutex_);
  return ranges_.size();
}

std::optional<AllocationMap::Hit> AllocationMap::FindLocked(uintptr_t address) const {
  auto it = ranges_.upper_bound(address);
  if (it == ranges_.begin()) return std::nullopt;
  --it;
  if (address - it->first >= it->second.size) return std::nullopt;
  return Hit{it->second.allocation, it->first, it->second.size};
}

void AllocationMap::UpdateBounds() {
  if (ranges_.empty()) {
    lowest_.store(UINTPTR_MAX, std::memory_order_relaxed);
    highest_end_.store(0, std::memory_order_relaxed);
    return;
  }
  // Ranges do not overlap, so the last one ends highest.
  const auto& [last_base, last] = *ranges_.rbegin();
  lowest_.store(ranges_.begin()->first, std::memory_order_relaxed);
  highest_end_.store(last_base + last.size, std::memory_order_relaxed);
}

}  // namespace spillway
