// SPDX-License-Identifier: Apache-2.0

#include "runtime/extent_allocator.h"

#include <iterator>
#include <limits>

#include "absl/strings/str_format.h"

namespace spillway {

ExtentAllocator::ExtentAllocator(uint64_t unit, uint64_t limit_bytes, GrowFn grow)
    : unit_(unit), limit_(limit_bytes), grow_(std::move(grow)) {}

void ExtentAllocator::InsertFree(uint64_t offset, uint64_t length) {
  free_by_offset_.emplace(offset, length);
  free_by_size_.emplace(length, offset);
}

void ExtentAllocator::EraseFree(absl::btree_map<uint64_t, uint64_t>::iterator it) {
  free_by_size_.erase({it->second, it->first});
  free_by_offset_.erase(it);
}

uint64_t ExtentAllocator::largest_free_extent() const {
  return free_by_size_.empty() ? 0 : free_by_size_.rbegin()->first;
}

absl::StatusOr<Extent> ExtentAllocator::Allocate(uint64_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("NVMe store: cannot allocate 0 bytes");
  if (bytes > std::numeric_limits<uint64_t>::max() - unit_) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("NVMe store: allocation of %u bytes is larger than any file", bytes));
  }
  const uint64_t length = (bytes + unit_ - 1) & ~(unit_ - 1);

  Extent extent;
  if (auto fit = free_by_size_.lower_bound({length, 0}); fit != free_by_size_.end()) {
    // Best fit: carve from the front of the hole so the remainder keeps its place.
    const auto [hole_length, hole_offset] = *fit;
    EraseFree(free_by_offset_.find(hole_offset));
    if (hole_length > length) InsertFree(hole_offset + length, hole_length - length);
    extent = {hole_offset, length};
  } else {
    // Nothing fits: grow the file at its end, absorbing a free tail if there is one.
    uint64_t start = size_;
    auto tail = free_by_offset_.end();
    if (!free_by_offset_.empty()) {
      auto last = std::prev(free_by_offset_.end());
      if (last->first + last->second == size_) {
        tail = last;
        start = last->first;
      }
    }
    const uint64_t missing = length - (size_ - start);
    if (missing > limit_ - size_) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "NVMe store limit reached: %u bytes requested, %u of the %u-byte limit in use, "
          "%u bytes in free holes (largest %u)",
          length, used_, limit_, size_ - used_, largest_free_extent()));
    }
    if (absl::Status grown = grow_(size_, size_ + missing); !grown.ok()) return grown;
    if (tail != free_by_offset_.end()) EraseFree(tail);
    size_ += missing;
    extent = {start, length};
  }
  allocated_.emplace(extent.offset, extent.length);
  used_ += extent.length;
  return extent;
}

bool ExtentAllocator::IsAllocated(const Extent& extent) const {
  auto it = allocated_.find(extent.offset);
  return it != allocated_.end() && it->second == extent.length;
}

absl::Status ExtentAllocator::Free(const Extent& extent) {
  auto it = allocated_.find(extent.offset);
  if (it == allocated_.end() || it->second != extent.length) {
    return absl::FailedPreconditionError(
        absl::StrFormat("NVMe store: freeing extent [%u, +%u) that is not allocated (double free?)",
                        extent.offset, extent.length));
  }
  allocated_.erase(it);
  used_ -= extent.length;

  // Coalesce with the free neighbours on both sides.
  // (Lookups are redone after each erase: erasing from a btree invalidates iterators.)
  uint64_t offset = extent.offset;
  uint64_t length = extent.length;
  if (auto next = free_by_offset_.find(offset + length); next != free_by_offset_.end()) {
    length += next->second;
    EraseFree(next);
  }
  if (auto above = free_by_offset_.lower_bound(offset); above != free_by_offset_.begin()) {
    auto prev = std::prev(above);
    if (prev->first + prev->second == offset) {
      offset = prev->first;
      length += prev->second;
      EraseFree(prev);
    }
  }
  InsertFree(offset, length);
  return absl::OkStatus();
}

}  // namespace spillway
