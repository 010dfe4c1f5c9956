// SPDX-License-Identifier: Apache-2.0
//
// ExtentAllocator: hands out aligned byte ranges ("extents") of one growable spill file.
//
// It is the bookkeeping half of the NVMe store (runtime/nvme_store.h), kept apart so that
// it can be tested without a file. Free space is a list of extents coalesced on every
// Free; Allocate is best-fit (the smallest free extent that fits, lowest offset on ties),
// which keeps large holes whole for the chunk-sized requests that dominate. When nothing
// fits, the file grows at its end by exactly what is missing (reusing a free extent that
// touches the end), through a caller-supplied `grow` function (fallocate in the store),
// never beyond `limit_bytes`. A failed grow changes nothing: existing extents stay valid.
//
// Contract:
//   REQUIRES: `unit` is a power of two; `limit_bytes` is a multiple of `unit`.
//   Allocate: REQUIRES bytes > 0. Returns an extent whose offset and length are multiples
//     of `unit` (length = bytes rounded up). ResourceExhausted when the limit is reached;
//     whatever `grow` returns when growing fails.
//   Free: REQUIRES an extent returned by Allocate and not freed since. A double free or
//     an extent that was never allocated is detected and returns FailedPrecondition
//     without changing any state.
//
// Thread safety: thread-compatible (no internal locking); NvmeStore serialises calls.
#ifndef SPILLWAY_RUNTIME_EXTENT_ALLOCATOR_H_
#define SPILLWAY_RUNTIME_EXTENT_ALLOCATOR_H_

#include <cstdint>
#include <functional>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spillway {

// A byte range of the spill file. Offsets and lengths are multiples of the store's
// allocation unit.
struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;

  friend bool operator==(const Extent&, const Extent&) = default;
};

class ExtentAllocator {
 public:
  // Makes the file `new_size` bytes long (from `old_size`). On error the file must be
  // left `old_size` bytes long.
  using GrowFn = std::function<absl::Status(uint64_t old_size, uint64_t new_size)>;

  ExtentAllocator(uint64_t unit, uint64_t limit_bytes, GrowFn grow);

  ExtentAllocator(const ExtentAllocator&) = delete;
  ExtentAllocator& operator=(const ExtentAllocator&) = delete;

  absl::StatusOr<Extent> Allocate(uint64_t bytes);
  absl::Status Free(const Extent& extent);

  // True when `extent` is exactly a live allocation.
  bool IsAllocated(const Extent& extent) const;

  uint64_t unit() const { return unit_; }
  uint64_t limit_bytes() const { return limit_; }
  // Bytes in live extents.
  uint64_t bytes_used() const { return used_; }
  // Bytes the file occupies (used + free holes); what the disk has been asked for.
  uint64_t bytes_reserved() const { return size_; }
  uint64_t largest_free_extent() const;
  size_t free_extent_count() const { return free_by_offset_.size(); }
  size_t allocated_extent_count() const { return allocated_.size(); }

 private:
  void InsertFree(uint64_t offset, uint64_t length);
  void EraseFree(absl::btree_map<uint64_t, uint64_t>::iterator it);

  const uint64_t unit_;
  const uint64_t limit_;
  const GrowFn grow_;
  uint64_t size_ = 0;
  uint64_t used_ = 0;
  // Free extents by offset (for coalescing) and by (length, offset) (for best fit).
  absl::btree_map<uint64_t, uint64_t> free_by_offset_;
  absl::btree_set<std::pair<uint64_t, uint64_t>> free_by_size_;
  // Live extents, offset -> length: catches double and foreign frees.
  absl::btree_map<uint64_t, uint64_t> allocated_;
};

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_EXTENT_ALLOCATOR_H_
