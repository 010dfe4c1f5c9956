// SPDX-License-Identifier: Apache-2.0
//
// The LRU policy on its own: eviction order, COLD first, the eligibility filter.
#include "runtime/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

namespace spillway {
namespace {

using ::testing::ElementsAre;

class LruPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    allocation_.chunks.resize(6);
    for (Chunk& chunk : allocation_.chunks) {
      chunk.allocation = &allocation_;
      chunk.tier = Tier::kDevice;
    }
    cold_.chunks.resize(1);
    cold_.advice = kAdviceCold;
    cold_.chunks[0].allocation = &cold_;
    cold_.chunks[0].tier = Tier::kDevice;
  }
  Chunk* c(int i) { return &allocation_.chunks[i]; }
  static bool Any(const Chunk*) { return true; }

  Allocation allocation_;
  Allocation cold_;
  LruPolicy lru_;
};

TEST_F(LruPolicyTest, LeastRecentlyTouchedLeavesFirst) {
  for (int i = 0; i < 4; ++i) lru_.OnResident(c(i));
  lru_.OnTouch(c(0));  // now the most recent
  lru_.OnTouch(c(2));
  EXPECT_THAT(lru_.PickVictims(4, Any), ElementsAre(c(1), c(3), c(0), c(2)));
  EXPECT_THAT(lru_.PickVictims(2, Any), ElementsAre(c(1), c(3)));
}

TEST_F(LruPolicyTest, ColdChunksLeaveBeforeAnyOther) {
  lru_.OnResident(c(0));
  lru_.OnResident(&cold_.chunks[0]);  // newer, but COLD
  lru_.OnResident(c(1));
  EXPECT_THAT(lru_.PickVictims(3, Any), ElementsAre(&cold_.chunks[0], c(0), c(1)));
}

TEST_F(LruPolicyTest, IneligibleAndDepartedChunksAreSkipped) {
  for (int i = 0; i < 4; ++i) lru_.OnResident(c(i));
  lru_.OnLeave(c(0));
  c(1)->moving = true;
  auto victims = lru_.PickVictims(4, [](const Chunk* chunk) { return !chunk->moving; });
  EXPECT_THAT(victims, ElementsAre(c(2), c(3)));
  // Touching a chunk that is not resident does not make it a candidate.
  lru_.OnTouch(c(5));
  EXPECT_THAT(lru_.PickVictims(4, Any), ElementsAre(c(1), c(2), c(3)));
}

TEST(PolicyFactoryTest, KnowsLruOnly) {
  EXPECT_NE(MakePolicy("lru"), nullptr);
  EXPECT_EQ(MakePolicy("belady"), nullptr);
}

}  // namespace
}  // namespace spillway
