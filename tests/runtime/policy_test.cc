// SPDX-License-Identifier: Apache-2.0
//
// The policies on their own. LRU: eviction order, COLD first, the eligibility filter.
// Learned: learning a period, prediction, Belady's order and its bound, forgetting.
#include "runtime/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "runtime/learned_policy.h"

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

TEST(PolicyFactoryTest, KnowsLruAndLearned) {
  EXPECT_STREQ(MakePolicy("lru")->name(), "lru");
  EXPECT_STREQ(MakePolicy("learned")->name(), "learned");
  EXPECT_EQ(MakePolicy("belady"), nullptr);
}

// Four allocations of two chunks, named one per launch in a repeating order.
class LearnedPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int a = 0; a < 4; ++a) {
      allocations_[a].id = 10 + a;
      allocations_[a].chunks.resize(2);
      for (Chunk& chunk : allocations_[a].chunks) {
        chunk.allocation = &allocations_[a];
        chunk.tier = Tier::kDevice;
      }
      policy_.OnAllocate(&allocations_[a]);
    }
    // A, B and C resident; HBM has no room for D.
    for (int a = 0; a < 3; ++a) {
      for (Chunk& chunk : allocations_[a].chunks) policy_.OnResident(&chunk);
    }
    policy_.PickVictims(1, Any);  // HBM ran out: learning starts
  }
  void Launch(int a) {
    Allocation* named[] = {&allocations_[a]};
    policy_.OnLaunch(stream_, named);
    policy_.OnUse(&allocations_[a]);
    for (Chunk& chunk : allocations_[a].chunks) policy_.OnTouch(&chunk);
  }
  std::vector<Allocation*> Predicted(int64_t m) {
    std::vector<Allocation*> out;
    policy_.Predicted(m, &out);
    return out;
  }
  static bool Any(const Chunk*) { return true; }
  Allocation* a(int i) { return &allocations_[i]; }

  Allocation allocations_[4];
  LearnedPolicy policy_;
  CUstream stream_ = reinterpret_cast<CUstream>(0x1234);
};

TEST_F(LearnedPolicyTest, LearnsThePeriodAndPredictsTheNextLaunches) {
  for (int a = 0; a < 4; ++a) Launch(a);
  EXPECT_EQ(policy_.period(), 0) << "one pass proves nothing";
  for (int a = 0; a < 4; ++a) Launch(a);
  ASSERT_EQ(policy_.period(), 4);
  const int64_t now = policy_.current_launch();  // D was just named
  EXPECT_THAT(Predicted(now + 1), ElementsAre(a(0)));
  EXPECT_THAT(Predicted(now + 3), ElementsAre(a(2)));
  EXPECT_THAT(Predicted(now + 5), ElementsAre()) << "one period ahead at most";
  EXPECT_EQ(policy_.NextUse(a(1), now), now + 2);
  EXPECT_EQ(policy_.NextUse(a(3), now), now + 4);
}

TEST_F(LearnedPolicyTest, EvictsTheFurthestNextUseAndHonoursTheBound) {
  for (int round = 0; round < 2; ++round) {
    for (int a = 0; a < 4; ++a) Launch(a);
  }
  Launch(0);
  Launch(1);  // next: C, D, A, B
  ASSERT_EQ(policy_.period(), 4);
  const int64_t now = policy_.current_launch();
  // Resident A, B, C: B is needed last (now + 4), then A (now + 3), then C (now + 1).
  EXPECT_THAT(policy_.PickVictims(6, Any),
              ElementsAre(&a(1)->chunks[0], &a(1)->chunks[1], &a(0)->chunks[0], &a(0)->chunks[1],
                          &a(2)->chunks[0], &a(2)->chunks[1]));
  // For a fetch needed at now + 3 (A's turn), only what comes later may go: B.
  EXPECT_THAT(policy_.PickVictims(6, Any, now + 3),
              ElementsAre(&a(1)->chunks[0], &a(1)->chunks[1]));
  // Clean chunks first within an allocation.
  a(1)->chunks[1].host_copy_valid = true;
  EXPECT_THAT(policy_.PickVictims(2, Any), ElementsAre(&a(1)->chunks[1], &a(1)->chunks[0]));
}

TEST_F(LearnedPolicyTest, ADifferentLaunchForgetsAndTheNewOrderIsLearned) {
  for (int round = 0; round < 2; ++round) {
    for (int a = 0; a < 4; ++a) Launch(a);
  }
  ASSERT_EQ(policy_.period(), 4);
  const uint64_t epoch = policy_.schedule_epoch();
  Launch(2);  // A was due
  EXPECT_EQ(policy_.period(), 0);
  EXPECT_NE(policy_.schedule_epoch(), epoch);
  EXPECT_THAT(Predicted(policy_.current_launch() + 1), ElementsAre());
  // Before anything is learned again: least recently used first (C was just used).
  EXPECT_EQ(policy_.PickVictims(1, Any)[0]->allocation, a(0));
  // A new order of three, twice over, is learned.
  for (int round = 0; round < 2; ++round) {
    for (int a : {2, 1, 0}) Launch(a);
  }
  EXPECT_EQ(policy_.period(), 3);
  EXPECT_THAT(Predicted(policy_.current_launch() + 1), ElementsAre(a(2)));
}

TEST_F(LearnedPolicyTest, FreedAllocationsAreNeitherPredictedNorVictims) {
  for (int round = 0; round < 2; ++round) {
    for (int a = 0; a < 4; ++a) Launch(a);
  }
  for (Chunk& chunk : a(0)->chunks) policy_.OnLeave(&chunk);
  policy_.OnFree(a(0));
  EXPECT_THAT(Predicted(policy_.current_launch() + 1), ElementsAre());
  for (Chunk* victim : policy_.PickVictims(6, Any)) EXPECT_NE(victim->allocation, a(0));
}

}  // namespace
}  // namespace spillway
