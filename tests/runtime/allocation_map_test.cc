// SPDX-License-Identifier: Apache-2.0
//
// The allocation registry: range boundaries, overlap refusal, erase and double erase,
// FindMany, a randomised comparison against a brute-force list of ranges, and lookups
// racing with inserts and erases.

#include "runtime/allocation_map.h"

#include <atomic>
#include <cstdint>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace spillway {
namespace {

using ::testing::HasSubstr;

// The map never dereferences an Allocation*, so any distinct pointers will do as tags.
char tags[16384];
Allocation* Tag(size_t n) { return reinterpret_cast<Allocation*>(&tags[n]); }

TEST(AllocationMapTest, Boundaries) {
  AllocationMap map;
  ASSERT_TRUE(map.Insert(0x10000, 0x1000, Tag(1)).ok());
  ASSERT_TRUE(map.Insert(0x20000, 0x2000, Tag(2)).ok());
  EXPECT_EQ(map.size(), 2u);

  EXPECT_FALSE(map.Find(0).has_value());
  EXPECT_FALSE(map.Find(0xffff).has_value());  // just before the first range

  const std::optional<AllocationMap::Hit> at_base = map.Find(0x10000);
  ASSERT_TRUE(at_base.has_value());
  EXPECT_EQ(at_base->allocation, Tag(1));
  EXPECT_EQ(at_base->base, 0x10000u);
  EXPECT_EQ(at_base->size, 0x1000u);

  ASSERT_TRUE(map.Find(0x10fff).has_value());  // last byte inside
  EXPECT_EQ(map.Find(0x10fff)->allocation, Tag(1));
  EXPECT_FALSE(map.Find(0x11000).has_value());  // base + size is outside
  EXPECT_FALSE(map.Find(0x18000).has_value());  // between ranges
  EXPECT_FALSE(map.Find(0x1ffff).has_value());

  EXPECT_EQ(map.Find(0x20000)->allocation, Tag(2));
  EXPECT_EQ(map.Find(0x21fff)->allocation, Tag(2));
  EXPECT_FALSE(map.Find(0x22000).has_value());  // past the last range
  EXPECT_FALSE(map.Find(UINTPTR_MAX).has_value());
}

// A map built where a destroyed one was (the C API shut down and initialised again) must
// not answer from the old map's per-thread cache of recent hits: those name freed
// allocations, and both maps' erasure counts are 0.
TEST(AllocationMapTest, ANewMapAtTheOldOnesAddressDoesNotSeeItsCachedHits) {
  std::optional<AllocationMap> map;
  map.emplace();
  ASSERT_TRUE(map->Insert(0x10000, 0x1000, Tag(1)).ok());
  const uintptr_t words[] = {0x10800};
  std::vector<AllocationMap::Hit> hits;
  ASSERT_EQ(map->FindMany(words, &hits), 1u);  // now in this thread's cache
  EXPECT_EQ(hits[0].allocation, Tag(1));
  map.reset();
  map.emplace();  // the same storage
  ASSERT_TRUE(map->Insert(0x10000, 0x1000, Tag(2)).ok());
  ASSERT_EQ(map->FindMany(words, &hits), 1u);
  EXPECT_EQ(hits[0].allocation, Tag(2));
  map.reset();
  map.emplace();
  EXPECT_EQ(map->FindMany(words, &hits), 0u) << "an empty map found a range";
}

TEST(AllocationMapTest, EmptyMapFindsNothing) {
  AllocationMap map;
  EXPECT_FALSE(map.Find(0).has_value());
  EXPECT_FALSE(map.Find(0x7f0000000000).has_value());
  EXPECT_EQ(map.size(), 0u);
}

TEST(AllocationMapTest, RangeEndingAtTheTopOfTheAddressSpace) {
  AllocationMap map;
  // The end is exclusive and must be representable, so the highest range ends at UINTPTR_MAX.
  const uintptr_t base = UINTPTR_MAX - 0x1000;
  ASSERT_TRUE(map.Insert(base, 0x1000, Tag(1)).ok());
  EXPECT_EQ(map.Find(UINTPTR_MAX - 1)->allocation, Tag(1));
  EXPECT_FALSE(map.Find(UINTPTR_MAX).has_value());
  EXPECT_FALSE(map.Find(base - 1).has_value());
  EXPECT_EQ(map.Insert(UINTPTR_MAX, 1, Tag(2)).code(), absl::StatusCode::kInvalidArgument);
}

TEST(AllocationMapTest, AdjacentRangesDoNotOverlap) {
  AllocationMap map;
  ASSERT_TRUE(map.Insert(0x2000, 0x1000, Tag(2)).ok());
  EXPECT_TRUE(map.Insert(0x1000, 0x1000, Tag(1)).ok());  // ends where the other starts
  EXPECT_TRUE(map.Insert(0x3000, 0x1000, Tag(3)).ok());  // starts where the other ends
  EXPECT_EQ(map.Find(0x1fff)->allocation, Tag(1));
  EXPECT_EQ(map.Find(0x2000)->allocation, Tag(2));
  EXPECT_EQ(map.Find(0x2fff)->allocation, Tag(2));
  EXPECT_EQ(map.Find(0x3000)->allocation, Tag(3));
}

TEST(AllocationMapTest, OverlapIsRefusedNamingBothRanges) {
  AllocationMap map;
  ASSERT_TRUE(map.Insert(0x10000, 0x1000, Tag(1)).ok());
  struct Case {
    uintptr_t base;
    size_t size;
  };
  for (const Case c : {Case{0x10000, 0x1000}, Case{0x10800, 0x10}, Case{0xf000, 0x1001},
                       Case{0x10fff, 0x1}, Case{0x8000, 0x10000}, Case{0x10fff, 0x100000}}) {
    const absl::Status status = map.Insert(c.base, c.size, Tag(9));
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition)
        << std::hex << c.base << "+" << c.size;
    EXPECT_THAT(std::string(status.message()), HasSubstr("overlaps the managed range "
                                                         "[0x10000, 0x11000)"));
  }
  EXPECT_EQ(std::string(map.Insert(0xf000, 0x1001, Tag(9)).message()),
            "range [0xf000, 0x10001) overlaps the managed range [0x10000, 0x11000)");
  EXPECT_EQ(map.size(), 1u);
  EXPECT_EQ(map.Find(0x10800)->allocation, Tag(1));  // the refused inserts changed nothing
}

TEST(AllocationMapTest, InvalidRanges) {
  AllocationMap map;
  EXPECT_EQ(map.Insert(0x1000, 0, Tag(1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(map.Insert(UINTPTR_MAX, 2, Tag(1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(map.Insert(0x1000, 0x1000, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(map.size(), 0u);
}

TEST(AllocationMapTest, EraseAndDoubleErase) {
  AllocationMap map;
  ASSERT_TRUE(map.Insert(0x10000, 0x1000, Tag(1)).ok());
  ASSERT_TRUE(map.Insert(0x20000, 0x1000, Tag(2)).ok());

  const absl::StatusOr<Allocation*> inside = map.Erase(0x10800);  // not a base
  EXPECT_EQ(inside.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(map.Erase(0x30000).status().code(), absl::StatusCode::kNotFound);  // never ours

  const absl::StatusOr<Allocation*> erased = map.Erase(0x10000);
  ASSERT_TRUE(erased.ok());
  EXPECT_EQ(*erased, Tag(1));
  EXPECT_FALSE(map.Find(0x10000).has_value());
  EXPECT_EQ(map.size(), 1u);

  const absl::StatusOr<Allocation*> again = map.Erase(0x10000);  // double free
  EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("0x10000"));

  // The range is free again.
  EXPECT_TRUE(map.Insert(0x10000, 0x800, Tag(3)).ok());
  EXPECT_EQ(map.Find(0x107ff)->allocation, Tag(3));
}

// Lookups outside the lowest and highest range skip the tree; those bounds must follow every
// insert and erase.
TEST(AllocationMapTest, OuterBoundsFollowInsertAndErase) {
  AllocationMap map;
  ASSERT_TRUE(map.Insert(0x50000, 0x1000, Tag(1)).ok());
  ASSERT_TRUE(map.Insert(0x90000, 0x1000, Tag(2)).ok());
  ASSERT_TRUE(map.Insert(0x10000, 0x1000, Tag(3)).ok());  // new lowest
  EXPECT_EQ(map.Find(0x10000)->allocation, Tag(3));
  ASSERT_TRUE(map.Insert(0xf0000, 0x1000, Tag(4)).ok());  // new highest
  EXPECT_EQ(map.Find(0xf0fff)->allocation, Tag(4));

  ASSERT_TRUE(map.Erase(0x10000).ok());
  ASSERT_TRUE(map.Erase(0xf0000).ok());
  EXPECT_FALSE(map.Find(0x10000).has_value());
  EXPECT_FALSE(map.Find(0xf0000).has_value());
  EXPECT_EQ(map.Find(0x50000)->allocation, Tag(1));
  EXPECT_EQ(map.Find(0x90fff)->allocation, Tag(2));

  ASSERT_TRUE(map.Erase(0x50000).ok());
  ASSERT_TRUE(map.Erase(0x90000).ok());
  EXPECT_FALSE(map.Find(0x90000).has_value());
  std::vector<AllocationMap::Hit> hits;
  const std::vector<uintptr_t> words = {0x50000, 0x90000};
  EXPECT_EQ(map.FindMany(words, &hits), 0u);

  ASSERT_TRUE(map.Insert(0x1000, 0x1000, Tag(5)).ok());
  EXPECT_EQ(map.Find(0x1800)->allocation, Tag(5));
  EXPECT_EQ(map.FindMany(words, &hits), 0u);
}

TEST(AllocationMapTest, FindManyKeepsPositions) {
  AllocationMap map;
  ASSERT_TRUE(map.Insert(0x10000, 0x1000, Tag(1)).ok());
  ASSERT_TRUE(map.Insert(0x20000, 0x1000, Tag(2)).ok());
  const std::vector<uintptr_t> words = {0x20010, 7, 0x10000, 0x11000, 0x10fff, 0};
  std::vector<AllocationMap::Hit> hits = {{Tag(9), 1, 1}};  // stale contents are replaced
  EXPECT_EQ(map.FindMany(words, &hits), 3u);
  ASSERT_EQ(hits.size(), words.size());
  EXPECT_EQ(hits[0].allocation, Tag(2));
  EXPECT_EQ(hits[0].base, 0x20000u);
  EXPECT_EQ(hits[1].allocation, nullptr);
  EXPECT_EQ(hits[2].allocation, Tag(1));
  EXPECT_EQ(hits[3].allocation, nullptr);
  EXPECT_EQ(hits[3].base, 0u);
  EXPECT_EQ(hits[3].size, 0u);
  EXPECT_EQ(hits[4].allocation, Tag(1));
  EXPECT_EQ(hits[5].allocation, nullptr);

  EXPECT_EQ(map.FindMany({}, &hits), 0u);
  EXPECT_TRUE(hits.empty());
}

// A list of ranges searched one by one: obviously right, and slow.
class ReferenceMap {
 public:
  struct Range {
    uintptr_t base;
    size_t size;
    Allocation* allocation;
  };

  bool Insert(uintptr_t base, size_t size, Allocation* allocation) {
    for (const Range& r : ranges_) {
      if (base < r.base + r.size && r.base < base + size) return false;
    }
    ranges_.push_back({base, size, allocation});
    return true;
  }
  std::optional<Allocation*> Erase(uintptr_t base) {
    for (size_t i = 0; i < ranges_.size(); ++i) {
      if (ranges_[i].base != base) continue;
      Allocation* const allocation = ranges_[i].allocation;
      ranges_.erase(ranges_.begin() + static_cast<ptrdiff_t>(i));
      return allocation;
    }
    return std::nullopt;
  }
  std::optional<Range> Find(uintptr_t address) const {
    for (const Range& r : ranges_) {
      if (address >= r.base && address < r.base + r.size) return r;
    }
    return std::nullopt;
  }
  const std::vector<Range>& ranges() const { return ranges_; }

 private:
  std::vector<Range> ranges_;
};

TEST(AllocationMapTest, RandomOperationsMatchBruteForce) {
  std::mt19937_64 random(12345);
  // A small address space so that inserts often overlap and lookups often hit.
  constexpr uintptr_t kSpace = 1 << 16;
  auto uniform = [&random](uint64_t low, uint64_t high) {
    return std::uniform_int_distribution<uint64_t>(low, high)(random);
  };
  AllocationMap map;
  ReferenceMap reference;
  int inserted = 0;
  int refused = 0;
  int erased = 0;
  int hits = 0;
  for (int op = 0; op < 10000; ++op) {
    const uint64_t kind = uniform(0, 9);
    if (kind < 3) {
      const uintptr_t base = uniform(0, kSpace);
      const size_t size = uniform(1, 1024);
      Allocation* const allocation = Tag(static_cast<size_t>(op));
      const bool expected = reference.Insert(base, size, allocation);
      const absl::Status status = map.Insert(base, size, allocation);
      ASSERT_EQ(status.ok(), expected) << "op " << op << ": " << status;
      if (!expected) {
        EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
      }
      expected ? ++inserted : ++refused;
    } else if (kind < 5) {
      // Half the time a base that exists, half the time any address.
      uintptr_t base = uniform(0, kSpace);
      if (uniform(0, 1) == 0 && !reference.ranges().empty()) {
        base = reference.ranges()[uniform(0, reference.ranges().size() - 1)].base;
      }
      const std::optional<Allocation*> expected = reference.Erase(base);
      const absl::StatusOr<Allocation*> actual = map.Erase(base);
      ASSERT_EQ(actual.ok(), expected.has_value()) << "op " << op;
      if (expected.has_value()) {
        EXPECT_EQ(*actual, *expected);
        ++erased;
      } else {
        EXPECT_EQ(actual.status().code(), absl::StatusCode::kNotFound);
      }
    } else if (kind < 9) {
      const uintptr_t address = uniform(0, kSpace + 1024);
      const std::optional<ReferenceMap::Range> expected = reference.Find(address);
      const std::optional<AllocationMap::Hit> actual = map.Find(address);
      ASSERT_EQ(actual.has_value(), expected.has_value()) << "op " << op << " at " << address;
      if (expected.has_value()) {
        EXPECT_EQ(actual->allocation, expected->allocation);
        EXPECT_EQ(actual->base, expected->base);
        EXPECT_EQ(actual->size, expected->size);
        ++hits;
      }
    } else {
      std::vector<uintptr_t> words(16);
      for (uintptr_t& word : words) word = uniform(0, kSpace + 1024);
      std::vector<AllocationMap::Hit> found;
      size_t expected_hits = 0;
      const size_t actual_hits = map.FindMany(words, &found);
      for (size_t i = 0; i < words.size(); ++i) {
        const std::optional<ReferenceMap::Range> expected = reference.Find(words[i]);
        expected_hits += expected.has_value();
        EXPECT_EQ(found[i].allocation, expected ? expected->allocation : nullptr);
      }
      EXPECT_EQ(actual_hits, expected_hits);
    }
    ASSERT_EQ(map.size(), reference.ranges().size());
  }
  // Every kind of outcome happened often enough for the comparison to mean something.
  EXPECT_GT(inserted, 300);
  EXPECT_GT(refused, 300);
  EXPECT_GT(erased, 300);
  EXPECT_GT(hits, 300);
}

// Readers look up addresses while writers insert and erase. Ranges in the stable half are never
// touched, so every lookup there must hit exactly; in the churned half a hit, when there is one,
// must be a whole range whose tag matches its base (never a torn or stale entry).
TEST(AllocationMapTest, ConcurrentReadersAndWriters) {
  constexpr uintptr_t kStride = 0x10000;
  constexpr size_t kSize = 0x8000;
  constexpr int kStable = 256;
  constexpr int kChurned = 256;
  auto base_of = [](int slot) { return 0x100000000 + static_cast<uintptr_t>(slot) * kStride; };

  AllocationMap map;
  for (int slot = 0; slot < kStable; ++slot) {
    ASSERT_TRUE(map.Insert(base_of(slot), kSize, Tag(slot)).ok());
  }

  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  threads.reserve(6);
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 random(w);
      for (int i = 0; i < 20000; ++i) {
        // Each writer owns alternate churned slots, so their inserts never collide.
        const int slot = kStable + 2 * static_cast<int>(random() % (kChurned / 2)) + w;
        if (map.Insert(base_of(slot), kSize, Tag(slot)).ok()) continue;
        const absl::StatusOr<Allocation*> erased = map.Erase(base_of(slot));
        if (!erased.ok() || *erased != Tag(slot)) ++errors;
      }
    });
  }
  for (int r = 0; r < 4; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937 random(100 + r);
      std::vector<uintptr_t> words(16);
      std::vector<AllocationMap::Hit> hits;
      while (!stop.load(std::memory_order_relaxed)) {
        for (uintptr_t& word : words) {
          word = base_of(static_cast<int>(random() % (kStable + kChurned))) + random() % kStride;
        }
        map.FindMany(words, &hits);
        for (size_t i = 0; i < words.size(); ++i) {
          const uintptr_t offset = (words[i] - base_of(0)) % kStride;
          const int slot = static_cast<int>((words[i] - base_of(0)) / kStride);
          const bool inside = offset < kSize;
          const AllocationMap::Hit& hit = hits[i];
          if (slot < kStable) {
            if (inside != (hit.allocation != nullptr)) ++errors;
          } else if (!inside && hit.allocation != nullptr) {
            ++errors;
          }
          if (hit.allocation != nullptr &&
              (hit.base != base_of(slot) || hit.size != kSize || hit.allocation != Tag(slot))) {
            ++errors;
          }
        }
        const std::optional<AllocationMap::Hit> one = map.Find(base_of(r));
        if (!one.has_value() || one->allocation != Tag(r)) ++errors;
      }
    });
  }
  threads[0].join();
  threads[1].join();
  stop = true;
  for (size_t i = 2; i < threads.size(); ++i) threads[i].join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GE(map.size(), static_cast<size_t>(kStable));
  for (int slot = 0; slot < kStable; ++slot) {
    EXPECT_EQ(map.Find(base_of(slot))->allocation, Tag(slot));
  }
}

}  // namespace
}  // namespace spillway
