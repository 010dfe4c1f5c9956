// SPDX-License-Identifier: Apache-2.0
//
// The tiered manager on simcuda: data survives every move byte for byte, HBM use stays
// under the limit, and no kernel ever touches an unbacked range (simcuda would turn that
// into CUDA_ERROR_ILLEGAL_ADDRESS, failing every later call).
#include "runtime/manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime/log.h"
#include "runtime_test_util.h"
#include "tests/common/capabilities.h"

namespace spillway {
namespace {

using ::spillway::testing::Pattern;
using ::spillway::testing::StartSimulatedDevice;
using ::spillway::testing::TestKernels;
using ::testing::Each;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kChunk = 2 * kMiB;

class ManagerTest : public ::testing::Test {
 protected:
  // A 64 MiB device, 32 MiB of it for managed data, 512 MiB of host tier.
  void SetUp() override {
    StartDevice();
    Start(DefaultConfig());
  }
  static ManagerConfig DefaultConfig() {
    ManagerConfig config;
    config.chunk_bytes = kChunk;
    config.hbm_limit_bytes = 32 * kMiB;
    config.host_limit_bytes = 512 * kMiB;
    return config;
  }
  void StartDevice() {
    StartSimulatedDevice("64M");
    kernels_.Load();
    ASSERT_CU(cuMemAlloc(&mismatches_, sizeof(uint64_t)));
  }
  void Start(const ManagerConfig& config) {
    auto manager = Manager::Create(config);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = std::move(*manager);
  }
  void TearDown() override {
    manager_.reset();
    CUresult sticky = cuCtxSynchronize();
    EXPECT_EQ(sticky, CUDA_SUCCESS) << "the device faulted: a managed range was unbacked";
  }

  uint64_t Mismatches() {
    uint64_t value = ~uint64_t{0};
    EXPECT_CU(cuMemcpyDtoH(&value, mismatches_, sizeof(value)));
    return value;
  }

  std::vector<uint32_t> ReadBack(CUdeviceptr address, size_t bytes) {
    std::vector<uint32_t> words(bytes / 4);
    EXPECT_CU(cuMemcpyDtoH(words.data(), address, bytes));
    return words;
  }

  // Moves [address, address + bytes) to `tier` and waits for it; returns the bytes that
  // took out of HBM.
  uint64_t MoveAndCountOut(CUdeviceptr address, size_t bytes, Tier tier) {
    const uint64_t before = manager_->Stats().d2h_bytes;
    absl::Status moved = manager_->Prefetch(address, bytes, tier, nullptr);
    EXPECT_TRUE(moved.ok()) << moved;
    EXPECT_CU(cuCtxSynchronize());
    manager_->Drain();
    return manager_->Stats().d2h_bytes - before;
  }

  // Weights of `bytes` filled with `seed`'s pattern and fetched: in HBM, each chunk with a
  // clean host copy.
  CUdeviceptr CleanWeightsInHbm(size_t bytes, uint32_t seed) {
    auto p = manager_->Allocate(bytes, nullptr, kAdviceWeights | kAdviceCold);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return 0;
    EXPECT_CU(kernels_.Fill(*p, bytes / 4, seed, nullptr));
    EXPECT_EQ(MoveAndCountOut(*p, bytes, Tier::kDevice), 0u);
    return *p;
  }

  TestKernels kernels_;
  std::unique_ptr<Manager> manager_;
  CUdeviceptr mismatches_ = 0;
};

TEST_F(ManagerTest, AllocationsFourTimesTheDeviceRoundTripThroughEveryMove) {
  constexpr size_t kBytes = 64 * kMiB;  // 4 x 64 MiB = 4x the simulated device
  std::vector<CUdeviceptr> buffers;
  for (uint32_t i = 0; i < 4; ++i) {
    auto p = manager_->Allocate(kBytes, nullptr);
    ASSERT_TRUE(p.ok()) << p.status();
    buffers.push_back(*p);
    ASSERT_CU(kernels_.Fill(*p, kBytes / 4, i + 1, nullptr));
  }
  ASSERT_CU(cuCtxSynchronize());
  // Cycle every buffer through HBM twice, modifying it on the device each time.
  for (int round = 0; round < 2; ++round) {
    for (uint32_t i = 0; i < 4; ++i) {
      for (size_t offset = 0; offset < kBytes; offset += 16 * kMiB) {
        absl::Status s = manager_->Prefetch(buffers[i] + offset, 16 * kMiB, Tier::kDevice, nullptr);
        ASSERT_TRUE(s.ok()) << s;
        ASSERT_CU(kernels_.Add(buffers[i] + offset, 16 * kMiB / 4, 1, nullptr));
        auto tiers = manager_->Placement(buffers[i] + offset, 16 * kMiB);
        ASSERT_TRUE(tiers.ok());
      }
    }
  }
  ASSERT_CU(cuCtxSynchronize());
  ManagerStats stats = manager_->Stats();
  EXPECT_LE(stats.peak_device_bytes, 32 * kMiB);
  EXPECT_GT(stats.evictions, 0u);
  EXPECT_GT(stats.d2h_bytes, 0u);
  for (uint32_t i = 0; i < 4; ++i) {
    std::vector<uint32_t> words = ReadBack(buffers[i], kBytes);
    size_t bad = 0;
    for (size_t w = 0; w < words.size(); ++w) bad += words[w] != Pattern(i + 1, w) + 2;
    EXPECT_EQ(bad, 0u) << "buffer " << i;
  }
  for (CUdeviceptr p : buffers) EXPECT_TRUE(manager_->Free(p, nullptr).ok());
}

TEST_F(ManagerTest, PrefetchPlacesAndEvictMovesBack) {
  auto p = manager_->Allocate(8 * kMiB, nullptr);
  ASSERT_TRUE(p.ok());
  ASSERT_CU(kernels_.Fill(*p, 8 * kMiB / 4, 7, nullptr));
  ASSERT_TRUE(manager_->Prefetch(*p, 8 * kMiB, Tier::kHost, nullptr).ok());
  ASSERT_CU(cuCtxSynchronize());
  EXPECT_THAT(*manager_->Placement(*p, 8 * kMiB), Each(Tier::kHost));
  // A kernel reads it where it is: over the link, never a fault.
  ASSERT_CU(cuMemsetD8(mismatches_, 0, sizeof(uint64_t)));
  ASSERT_CU(kernels_.Check(*p, 8 * kMiB / 4, 7, mismatches_, nullptr));
  EXPECT_EQ(Mismatches(), 0u);
  ASSERT_TRUE(manager_->Prefetch(*p, 8 * kMiB, Tier::kDevice, nullptr).ok());
  ASSERT_CU(cuCtxSynchronize());
  EXPECT_THAT(*manager_->Placement(*p, 8 * kMiB), Each(Tier::kDevice));
  ASSERT_CU(kernels_.Check(*p, 8 * kMiB / 4, 7, mismatches_, nullptr));
  EXPECT_EQ(Mismatches(), 0u);
  ManagerStats stats = manager_->Stats();
  EXPECT_EQ(stats.d2h_bytes, 8 * kMiB);
  EXPECT_EQ(stats.h2d_bytes, 8 * kMiB);
  EXPECT_EQ(stats.fetches_prefetched, 4u);
  // Both moves re-pointed ranges; the time is the host's, at least a microsecond a move.
  EXPECT_EQ(stats.moves, 2u);
  EXPECT_GE(stats.remap_ns, 2 * 1000u);
}

TEST_F(ManagerTest, CleanWeightsAreEvictedWithoutACopy) {
  auto p = manager_->Allocate(4 * kMiB, nullptr, kAdviceWeights | kAdviceCold);
  ASSERT_TRUE(p.ok());
  EXPECT_THAT(*manager_->Placement(*p, 4 * kMiB), Each(Tier::kHost));  // COLD starts on host
  ASSERT_CU(kernels_.Fill(*p, 4 * kMiB / 4, 3, nullptr));
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kDevice, nullptr).ok());
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kHost, nullptr).ok());
  ASSERT_CU(cuCtxSynchronize());
  manager_->Drain();
  ManagerStats stats = manager_->Stats();
  EXPECT_EQ(stats.h2d_bytes, 4 * kMiB);
  EXPECT_EQ(stats.d2h_bytes, 0u) << "weights kept their host copy";
  EXPECT_EQ(stats.evictions, 2u);
  std::vector<uint32_t> words = ReadBack(*p, 4 * kMiB);
  for (size_t w = 0; w < words.size(); w += 997) ASSERT_EQ(words[w], Pattern(3, w));
}

// A copy into weights after their fetch kept a host copy: the next eviction must copy the
// new bytes out, not re-point the range at the stale copy.
TEST_F(ManagerTest, AWriteToCleanWeightsDropsTheirHostCopy) {
  CUdeviceptr p = CleanWeightsInHbm(4 * kMiB, 3);
  ASSERT_NE(p, 0u);
  // What the interposer does for a cuMemcpyHtoD into it: note the write, then queue it.
  ASSERT_TRUE(manager_->NoteWrite(p, 4 * kMiB).ok());
  std::vector<uint32_t> fresh(4 * kMiB / 4, 0xfeedu);
  ASSERT_CU(cuMemcpyHtoD(p, fresh.data(), 4 * kMiB));
  EXPECT_EQ(MoveAndCountOut(p, 4 * kMiB, Tier::kHost), 4 * kMiB) << "the written chunks";
  EXPECT_THAT(ReadBack(p, 4 * kMiB), Each(0xfeedu));
  EXPECT_EQ(manager_->NoteWrite(0x1234, 1).code(), absl::StatusCode::kNotFound);
}

// A write drops the copies of the chunks it touches, no others.
TEST_F(ManagerTest, AWriteDropsTheHostCopiesOfTheChunksItTouchesOnly) {
  CUdeviceptr p = CleanWeightsInHbm(8 * kMiB, 3);
  ASSERT_NE(p, 0u);
  // 8 bytes straddling chunks 1 and 2; then a span past the end, from inside chunk 3.
  ASSERT_TRUE(manager_->NoteWrite(p + 2 * kChunk - 4, 8).ok());
  ASSERT_TRUE(manager_->NoteWrite(p + 3 * kChunk + 100, ~size_t{0}).ok());
  EXPECT_EQ(MoveAndCountOut(p, 8 * kMiB, Tier::kHost), 3 * kChunk) << "chunks 1, 2 and 3";
}

// Clearing the advice is how a C API user announces kernel writes to former weights.
TEST_F(ManagerTest, UnadvisingWeightsDropsTheirHostCopy) {
  CUdeviceptr p = CleanWeightsInHbm(4 * kMiB, 3);
  ASSERT_NE(p, 0u);
  ASSERT_TRUE(manager_->Advise(p, 4 * kMiB, kAdviceWeights, false).ok());
  ASSERT_CU(kernels_.Fill(p, 4 * kMiB / 4, 9, nullptr));
  EXPECT_EQ(MoveAndCountOut(p, 4 * kMiB, Tier::kHost), 4 * kMiB);
  std::vector<uint32_t> words = ReadBack(p, 4 * kMiB);
  for (size_t w = 0; w < words.size(); w += 997) ASSERT_EQ(words[w], Pattern(9, w));
}

// READ_MOSTLY for a range: the filled blocks of a KV cache keep their host copies and leave
// HBM without a copy; the block still being written is copied out as before.
TEST_F(ManagerTest, ReadMostlyRangeCoversTheChunksItHoldsWhole) {
  auto kv = manager_->Allocate(16 * kMiB, nullptr, kAdviceKv);
  ASSERT_TRUE(kv.ok());
  ASSERT_CU(kernels_.Fill(*kv, 16 * kMiB / 4, 5, nullptr));
  // Chunks 0-5 are full; a range ending inside chunk 6 must not cover it.
  ASSERT_TRUE(manager_->Advise(*kv, 13 * kMiB, kAdviceReadMostly, true).ok());
  EXPECT_EQ(MoveAndCountOut(*kv, 16 * kMiB, Tier::kHost), 16 * kMiB) << "no host copy yet";
  EXPECT_EQ(MoveAndCountOut(*kv, 16 * kMiB, Tier::kDevice), 0u);
  ASSERT_CU(kernels_.Fill(*kv + 12 * kMiB, 4 * kMiB / 4, 6, nullptr));  // the newest blocks
  EXPECT_EQ(MoveAndCountOut(*kv, 16 * kMiB, Tier::kHost), 4 * kMiB) << "chunks 6 and 7 only";
  std::vector<uint32_t> words = ReadBack(*kv, 16 * kMiB);
  const size_t split = 12 * kMiB / 4;
  for (size_t w = 0; w < split; w += 997) ASSERT_EQ(words[w], Pattern(5, w));
  for (size_t w = split; w < words.size(); w += 997) ASSERT_EQ(words[w], Pattern(6, w - split));

  // Clearing it for one byte of chunk 1 clears the whole chunk: written again, it is copied.
  ASSERT_TRUE(manager_->Advise(*kv + 2 * kMiB + 7, 1, kAdviceReadMostly, false).ok());
  EXPECT_EQ(MoveAndCountOut(*kv, 16 * kMiB, Tier::kDevice), 0u);
  ASSERT_CU(kernels_.Fill(*kv + 2 * kMiB, 2 * kMiB / 4, 7, nullptr));
  EXPECT_EQ(MoveAndCountOut(*kv, 16 * kMiB, Tier::kHost), 6 * kMiB) << "chunks 1, 6 and 7";
  words = ReadBack(*kv + 2 * kMiB, 2 * kMiB);
  for (size_t w = 0; w < words.size(); w += 997) ASSERT_EQ(words[w], Pattern(7, w));
}

// Clearing READ_MOSTLY from part of an allocation advised whole keeps the rest advised.
TEST_F(ManagerTest, UnadvisingPartOfAReadMostlyAllocationKeepsTheRest) {
  auto p = manager_->Allocate(8 * kMiB, nullptr, kAdviceReadMostly);
  ASSERT_TRUE(p.ok());
  ASSERT_CU(kernels_.Fill(*p, 8 * kMiB / 4, 3, nullptr));
  MoveAndCountOut(*p, 8 * kMiB, Tier::kHost);
  MoveAndCountOut(*p, 8 * kMiB, Tier::kDevice);
  ASSERT_TRUE(manager_->Advise(*p, 2 * kMiB, kAdviceReadMostly, false).ok());  // chunk 0
  ASSERT_CU(kernels_.Fill(*p, 2 * kMiB / 4, 4, nullptr));
  EXPECT_EQ(MoveAndCountOut(*p, 8 * kMiB, Tier::kHost), 2 * kMiB) << "chunk 0 only";
  std::vector<uint32_t> words = ReadBack(*p, 2 * kMiB);
  for (size_t w = 0; w < words.size(); w += 997) ASSERT_EQ(words[w], Pattern(4, w));
}

TEST_F(ManagerTest, PinnedChunksNeverLeaveHbm) {
  auto pinned = manager_->Allocate(16 * kMiB, nullptr, kAdvicePin);
  ASSERT_TRUE(pinned.ok());
  auto other = manager_->Allocate(64 * kMiB, nullptr);
  ASSERT_TRUE(other.ok());
  for (size_t offset = 0; offset < 64 * kMiB; offset += 8 * kMiB) {
    absl::Status s = manager_->Prefetch(*other + offset, 8 * kMiB, Tier::kDevice, nullptr);
    ASSERT_TRUE(s.ok()) << s;
  }
  manager_->Drain();
  EXPECT_THAT(*manager_->Placement(*pinned, 16 * kMiB), Each(Tier::kDevice));
  EXPECT_FALSE(manager_->Prefetch(*pinned, kChunk, Tier::kHost, nullptr).ok());
  // 16 MiB pinned of a 32 MiB limit: more than 16 MiB more cannot be resident at once.
  absl::Status too_much = manager_->Prefetch(*other, 20 * kMiB, Tier::kDevice, nullptr);
  EXPECT_EQ(too_much.code(), absl::StatusCode::kResourceExhausted) << too_much;
}

TEST_F(ManagerTest, BadPointersAndDoubleFreeAreErrorsNotCrashes) {
  EXPECT_EQ(manager_->Free(0x1234, nullptr).code(), absl::StatusCode::kNotFound);
  auto p = manager_->Allocate(3 * kMiB, nullptr);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(manager_->Free(*p + 4096, nullptr).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(manager_->Prefetch(*p, 4 * kMiB, Tier::kDevice, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(manager_->Allocate(0, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(manager_->Free(*p, nullptr).ok());
  EXPECT_EQ(manager_->Free(*p, nullptr).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(manager_->Owns(*p));
}

TEST_F(ManagerTest, OutOfEveryTierIsAClearErrorAndLosesNothing) {
  auto keep = manager_->Allocate(16 * kMiB, nullptr);
  ASSERT_TRUE(keep.ok());
  ASSERT_CU(kernels_.Fill(*keep, 16 * kMiB / 4, 9, nullptr));
  // 32 MiB HBM + 512 MiB host: 600 MiB more cannot be placed.
  auto huge = manager_->Allocate(600 * kMiB, nullptr);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(huge.status().message()), ::testing::HasSubstr("host limit"));
  // Everything a failed allocation took was given back: the tiers are usable again.
  auto fits = manager_->Allocate(400 * kMiB, nullptr);
  EXPECT_TRUE(fits.ok()) << fits.status();
  ASSERT_CU(cuMemsetD8(mismatches_, 0, sizeof(uint64_t)));
  ASSERT_CU(kernels_.Check(*keep, 16 * kMiB / 4, 9, mismatches_, nullptr));
  EXPECT_EQ(Mismatches(), 0u);
}

// The device has less free memory than the HBM limit (the application holds the rest):
// the pool stops where the driver does, new data goes to host memory, nothing fails.
TEST(ManagerDriverLimitTest, HbmPoolStopsWhereTheDriverRunsOutAndRecovers) {
  StartSimulatedDevice("64M");
  TestKernels kernels;
  kernels.Load();
  CUdeviceptr plain = 0;
  ASSERT_CU(cuMemAlloc(&plain, 40 * kMiB));  // leaves 24 MiB of the 64 MiB device
  ManagerConfig config;
  config.chunk_bytes = kChunk;
  config.hbm_limit_bytes = 60 * kMiB;
  config.host_limit_bytes = 256 * kMiB;
  auto manager = Manager::Create(config);
  ASSERT_TRUE(manager.ok()) << manager.status();
  auto p = (*manager)->Allocate(48 * kMiB, nullptr);
  ASSERT_TRUE(p.ok()) << p.status();
  ManagerStats stats = (*manager)->Stats();
  EXPECT_LE(stats.device_bytes, 24 * kMiB);
  EXPECT_GT(stats.host_bytes, 0u);
  ASSERT_CU(kernels.Fill(*p, 48 * kMiB / 4, 21, nullptr));
  // Moves still work inside what the driver gave.
  ASSERT_TRUE((*manager)->Prefetch(*p + 32 * kMiB, 16 * kMiB, Tier::kDevice, nullptr).ok());
  std::vector<uint32_t> words(48 * kMiB / 4);
  ASSERT_CU(cuMemcpyDtoH(words.data(), *p, 48 * kMiB));
  for (size_t w = 0; w < words.size(); w += 4093) ASSERT_EQ(words[w], Pattern(21, w));
  // Once the application frees its memory, the pool grows again (after its back-off).
  ASSERT_CU(cuMemFree(plain));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  auto q = (*manager)->Allocate(16 * kMiB, nullptr);
  ASSERT_TRUE(q.ok());
  EXPECT_THAT(*(*manager)->Placement(*q, 16 * kMiB), Each(Tier::kDevice));
  manager->reset();
  EXPECT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
}

// Many allocations of random sizes, moved at random by threads on their own streams;
// contents are checked on the device after every move. Each thread owns its buffers (the
// C API's contract: a range is used on the stream last named for it).
TEST_F(ManagerTest, RandomisedStressKeepsEveryByteAndNeverFaults) {
  constexpr int kThreads = 3;
  constexpr int kSteps = 60;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  CUcontext ctx = nullptr;
  ASSERT_CU(cuCtxGetCurrent(&ctx));
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      cuCtxSetCurrent(ctx);
      CUstream stream = nullptr;
      cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING);
      CUdeviceptr counter = 0;
      cuMemAlloc(&counter, sizeof(uint64_t));
      cuMemsetD8Async(counter, 0, sizeof(uint64_t), stream);
      std::mt19937 rng(1234 + t);
      struct Buffer {
        CUdeviceptr p;
        size_t bytes;
        uint32_t seed;
      };
      std::vector<Buffer> buffers;
      for (int step = 0; step < kSteps; ++step) {
        int action = static_cast<int>(rng() % 10);
        if (buffers.size() < 2 || (action < 2 && buffers.size() < 6)) {
          size_t bytes = (1 + rng() % 12) * kMiB + (rng() % 4) * 4096;
          auto p = manager_->Allocate(bytes, stream);
          if (!p.ok()) continue;  // tiers full right now: not an error
          uint32_t seed = static_cast<uint32_t>(rng());
          kernels_.Fill(*p, bytes / 4, seed, stream);
          buffers.push_back({*p, bytes, seed});
        } else if (action < 3) {
          size_t i = rng() % buffers.size();
          if (!manager_->Free(buffers[i].p, stream).ok()) ++failures;
          buffers.erase(buffers.begin() + static_cast<long>(i));
        } else {
          Buffer& b = buffers[rng() % buffers.size()];
          size_t offset = (rng() % (b.bytes / 4096)) * 4096;
          size_t length = std::min<size_t>(b.bytes - offset, (1 + rng() % 8) * kMiB);
          Tier tier = rng() % 2 ? Tier::kDevice : Tier::kHost;
          absl::Status s = manager_->Prefetch(b.p + offset, length, tier, stream);
          if (!s.ok() && s.code() != absl::StatusCode::kResourceExhausted) ++failures;
          kernels_.Check(b.p, b.bytes / 4, b.seed, counter, stream);
        }
      }
      uint64_t mismatches = ~uint64_t{0};
      cuStreamSynchronize(stream);
      cuMemcpyDtoH(&mismatches, counter, sizeof(mismatches));
      if (mismatches != 0) ++failures;
      for (Buffer& b : buffers) {
        if (!manager_->Free(b.p, stream).ok()) ++failures;
      }
      cuStreamSynchronize(stream);
      cuStreamDestroy(stream);
    });
  }
  for (auto& t : threads) t.join();
  manager_->Drain();
  EXPECT_EQ(failures.load(), 0);
  ManagerStats stats = manager_->Stats();
  EXPECT_LE(stats.peak_device_bytes, 32 * kMiB);
  EXPECT_EQ(stats.allocations, 0u);
  EXPECT_EQ(stats.device_bytes + stats.host_bytes, 0u);
}

TEST_F(ManagerTest, PrepareLaunchBringsEveryPointedToAllocationIn) {
  auto a = manager_->Allocate(6 * kMiB, nullptr, kAdviceCold);  // starts in host memory
  auto b = manager_->Allocate(4 * kMiB, nullptr, kAdviceCold);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_CU(kernels_.Fill(*a, 6 * kMiB / 4, 11, nullptr));
  // An interior pointer to `a`, a size, a flag word and nothing of `b`'s.
  const uintptr_t words[] = {*a + 4 * kMiB + 8, 6 * kMiB / 4, 0x1};
  auto managed = manager_->PrepareLaunch(words, nullptr);
  ASSERT_TRUE(managed.ok()) << managed.status();
  EXPECT_EQ(*managed, 1u);
  ASSERT_CU(cuMemsetD8(mismatches_, 0, sizeof(uint64_t)));
  ASSERT_CU(kernels_.Check(*a, 6 * kMiB / 4, 11, mismatches_, nullptr));
  EXPECT_EQ(Mismatches(), 0u);
  EXPECT_THAT(*manager_->Placement(*a, 6 * kMiB), Each(Tier::kDevice));  // all of it
  EXPECT_THAT(*manager_->Placement(*b, 4 * kMiB), Each(Tier::kHost));    // untouched
  EXPECT_EQ(manager_->Stats().fetches_on_demand, 3u);
}

TEST_F(ManagerTest, PrepareLaunchOfMoreThanHbmLeavesTheRestReadableOverTheLink) {
  auto big = manager_->Allocate(48 * kMiB, nullptr, kAdviceCold);  // HBM limit is 32 MiB
  ASSERT_TRUE(big.ok());
  ASSERT_CU(kernels_.Fill(*big, 48 * kMiB / 4, 12, nullptr));
  const uintptr_t words[] = {*big};
  ASSERT_TRUE(manager_->PrepareLaunch(words, nullptr).ok());
  ASSERT_CU(cuMemsetD8(mismatches_, 0, sizeof(uint64_t)));
  ASSERT_CU(kernels_.Check(*big, 48 * kMiB / 4, 12, mismatches_, nullptr));
  EXPECT_EQ(Mismatches(), 0u);
}

// The NVMe tier: a spill directory on the real file system, io_uring and O_DIRECT.
class ManagerNvmeTest : public ManagerTest {
 protected:
  void SetUp() override {
    StartDevice();
    char pattern[] = "/tmp/spillway-nvme-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    directory_ = pattern;
  }
  // Writes [p, p + bytes) through HBM, `step` bytes at a time (guarded data is fetched
  // before the device touches it); each step gets `seed` plus its offset in MiB.
  void FillThroughHbm(CUdeviceptr p, size_t bytes, size_t step, uint32_t seed) {
    for (size_t offset = 0; offset < bytes; offset += step) {
      ASSERT_TRUE(manager_->Prefetch(p + offset, step, Tier::kDevice, nullptr).ok());
      ASSERT_CU(
          kernels_.Fill(p + offset, step / 4, seed + static_cast<uint32_t>(offset >> 20), nullptr));
    }
  }
  // Checks, where it lies, what FillThroughHbm wrote; then Mismatches() counts the words
  // that differ.
  void CheckFill(CUdeviceptr p, size_t bytes, size_t step, uint32_t seed) {
    ASSERT_CU(cuMemsetD8(mismatches_, 0, sizeof(uint64_t)));
    for (size_t offset = 0; offset < bytes; offset += step) {
      ASSERT_CU(kernels_.Check(p + offset, step / 4, seed + static_cast<uint32_t>(offset >> 20),
                               mismatches_, nullptr));
    }
  }

  // A completion hook that fails the next `*left` reads (or writes) with EIO.
  static std::function<int(const NvmeIoCompletion&, int)> FailNext(std::atomic<int>* left,
                                                                   bool writes) {
    return [left, writes](const NvmeIoCompletion& io, int result) {
      if (io.is_write != writes || left->load() <= 0) return result;
      left->fetch_sub(1);
      return -EIO;
    };
  }
  // HBM of 16 MiB; `completion_hook` may change what the drive's requests return.
  void StartTiers(size_t host_limit, size_t nvme_limit,
                  std::function<int(const NvmeIoCompletion&, int)> completion_hook = {}) {
    ManagerConfig config;
    config.chunk_bytes = kChunk;
    config.hbm_limit_bytes = 16 * kMiB;
    config.host_limit_bytes = host_limit;
    config.nvme_directory = directory_;
    config.nvme_limit_bytes = nvme_limit;
    config.nvme_completion_hook = std::move(completion_hook);
    Start(config);
  }
  // held_: a stream held at a wait for a host word until ReleaseHeldStream; work queued on
  // it, and moves that wait for that work, cannot run before.
  void HoldStream() {
    ASSERT_CU(cuStreamCreate(&held_, CU_STREAM_NON_BLOCKING));
    ASSERT_CU(cuMemHostAlloc(&held_flag_, sizeof(uint32_t), CU_MEMHOSTALLOC_DEVICEMAP));
    *static_cast<volatile uint32_t*>(held_flag_) = 0;
    CUdeviceptr flag_on_device = 0;
    ASSERT_CU(cuMemHostGetDevicePointer(&flag_on_device, held_flag_, 0));
    ASSERT_CU(cuStreamWaitValue32(held_, flag_on_device, 1, CU_STREAM_WAIT_VALUE_GEQ));
  }
  void ReleaseHeldStream() {
    if (held_flag_ != nullptr) *static_cast<volatile uint32_t*>(held_flag_) = 1;
  }
  void TearDown() override {
    ReleaseHeldStream();
    ManagerTest::TearDown();
    if (held_ != nullptr) EXPECT_CU(cuStreamDestroy(held_));
    if (held_flag_ != nullptr) EXPECT_CU(cuMemFreeHost(held_flag_));
    EXPECT_EQ(rmdir(directory_.c_str()), 0) << "the spill directory must be left empty";
  }
  std::string directory_;
  CUstream held_ = nullptr;
  void* held_flag_ = nullptr;
};

// What the log received while `body` ran, at level warn.
std::string LogDuring(const std::function<void()>& body) {
  char path[] = "/tmp/spillway-test-log-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return "mkstemp failed";
  unlink(path);
  const LogLevel level = CurrentLogLevel();
  const int previous = CurrentLogFd();
  InitLogging(LogLevel::kWarn, fd);
  body();
  InitLogging(level, previous);
  std::string log(64 * 1024, '\0');
  const ssize_t n = pread(fd, log.data(), log.size(), 0);
  close(fd);
  log.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return log;
}

// A move that cannot finish (it waits for work on a stream held at a host flag) is warned
// of, with what it waits for, once the stall period passes; it then finishes normally. An
// idle mover warns of nothing.
TEST_F(ManagerNvmeTest, AStalledMoveIsWarnedOfWithWhatItWaitsFor) {
  ManagerConfig config;
  config.chunk_bytes = kChunk;
  config.hbm_limit_bytes = 16 * kMiB;
  config.host_limit_bytes = 16 * kMiB;
  config.stall_warning = absl::Milliseconds(100);
  Start(config);
  ASSERT_NO_FATAL_FAILURE(HoldStream());
  auto p = manager_->Allocate(4 * kMiB, held_);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string log = LogDuring([&] {
    // Its eviction waits for what the held stream queued before it.
    ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kHost, held_).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(450));
    ReleaseHeldStream();
    manager_->Drain();
  });
  EXPECT_THAT(log, HasSubstr("mover: no move has finished for "));
  EXPECT_THAT(log, HasSubstr("waits for 1 piece of the application's work queued before it"));
  EXPECT_TRUE(manager_->LastMoveStatus().ok()) << manager_->LastMoveStatus();
  EXPECT_THAT(*manager_->Placement(*p, 4 * kMiB), Each(Tier::kHost));
  const std::string idle =
      LogDuring([] { std::this_thread::sleep_for(std::chrono::milliseconds(300)); });
  EXPECT_THAT(idle, Not(HasSubstr("mover:")));
}

TEST_F(ManagerNvmeTest, GuardedDataSpillsToNvmeAndReadsBackByteForByte) {
  StartTiers(/*host_limit=*/16 * kMiB, /*nvme_limit=*/512 * kMiB);
  constexpr size_t kBytes = 64 * kMiB;  // 4 x 64 MiB: 4x the device, 8x HBM + host
  std::vector<CUdeviceptr> buffers;
  for (uint32_t i = 0; i < 4; ++i) {
    auto p = manager_->Allocate(kBytes, nullptr, kAdviceGuarded);
    ASSERT_TRUE(p.ok()) << p.status();
    buffers.push_back(*p);
    // Guarded: bring it in before the device touches it, write it, send it to NVMe.
    for (size_t offset = 0; offset < kBytes; offset += 8 * kMiB) {
      absl::Status s = manager_->Prefetch(*p + offset, 8 * kMiB, Tier::kDevice, nullptr);
      ASSERT_TRUE(s.ok()) << s;
      ASSERT_CU(kernels_.Fill(*p + offset, 8 * kMiB / 4,
                              i * 100 + static_cast<uint32_t>(offset >> 20), nullptr));
      s = manager_->Prefetch(*p + offset, 8 * kMiB, Tier::kNvme, nullptr);
      ASSERT_TRUE(s.ok()) << s;
    }
  }
  manager_->Drain();
  ASSERT_CU(cuCtxSynchronize());
  for (CUdeviceptr p : buffers) EXPECT_THAT(*manager_->Placement(p, kBytes), Each(Tier::kNvme));
  ManagerStats stats = manager_->Stats();
  EXPECT_EQ(stats.nvme_bytes, 4 * kBytes);
  EXPECT_EQ(stats.nvme_write_bytes, 4 * kBytes);
  EXPECT_LE(stats.peak_device_bytes, 16 * kMiB);
  // Read everything back through HBM, checking on the device, then on the host.
  ASSERT_CU(cuMemsetD8(mismatches_, 0, sizeof(uint64_t)));
  for (uint32_t i = 0; i < 4; ++i) {
    for (size_t offset = 0; offset < kBytes; offset += 8 * kMiB) {
      absl::Status s = manager_->Prefetch(buffers[i] + offset, 8 * kMiB, Tier::kDevice, nullptr);
      ASSERT_TRUE(s.ok()) << s;
      ASSERT_CU(kernels_.Check(buffers[i] + offset, 8 * kMiB / 4,
                               i * 100 + static_cast<uint32_t>(offset >> 20), mismatches_,
                               nullptr));
      s = manager_->Prefetch(buffers[i] + offset, 8 * kMiB, Tier::kHost, nullptr);
      ASSERT_TRUE(s.ok()) << s;  // host is full: guarded chunks go on to NVMe
    }
  }
  EXPECT_EQ(Mismatches(), 0u);
  manager_->Drain();
  stats = manager_->Stats();
  EXPECT_EQ(stats.nvme_read_bytes, 4 * kBytes);
  EXPECT_TRUE(manager_->LastMoveStatus().ok()) << manager_->LastMoveStatus();
  for (CUdeviceptr p : buffers) EXPECT_TRUE(manager_->Free(p, nullptr).ok());
  manager_->Drain();
  EXPECT_EQ(manager_->Stats().nvme_bytes, 0u);
}

TEST_F(ManagerNvmeTest, UnguardedDataNeverLeavesMappedMemory) {
  StartTiers(64 * kMiB, 64 * kMiB);
  auto p = manager_->Allocate(4 * kMiB, nullptr);
  ASSERT_TRUE(p.ok());
  absl::Status s = manager_->Prefetch(*p, 4 * kMiB, Tier::kNvme, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("guarded"));
  EXPECT_THAT(*manager_->Placement(*p, 4 * kMiB), Each(Tier::kDevice));
}

TEST_F(ManagerNvmeTest, FullNvmeTierIsAClearErrorAndLosesNothing) {
  StartTiers(/*host_limit=*/8 * kMiB, /*nvme_limit=*/8 * kMiB);
  auto p = manager_->Allocate(24 * kMiB, nullptr, kAdviceGuarded);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_NO_FATAL_FAILURE(FillThroughHbm(*p, 24 * kMiB, 8 * kMiB, 50));
  ASSERT_TRUE(manager_->Prefetch(*p, 8 * kMiB, Tier::kNvme, nullptr).ok());
  absl::Status full = manager_->Prefetch(*p + 8 * kMiB, 8 * kMiB, Tier::kNvme, nullptr);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  manager_->Drain();
  ASSERT_CU(cuMemsetD8(mismatches_, 0, sizeof(uint64_t)));
  for (size_t offset = 0; offset < 24 * kMiB; offset += 8 * kMiB) {
    absl::Status s = manager_->Prefetch(*p + offset, 8 * kMiB, Tier::kDevice, nullptr);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_CU(kernels_.Check(*p + offset, 8 * kMiB / 4, 50 + static_cast<uint32_t>(offset >> 20),
                             mismatches_, nullptr));
  }
  EXPECT_EQ(Mismatches(), 0u);
}

// Reads that fail with -EIO (injected at the io_uring completion): a few are retried
// away; a persistent failure fails the move, leaves the chunks on NVMe with their data, and
// a later move succeeds once the disk reads again.
TEST_F(ManagerNvmeTest, FailingReadsAreRetriedThenReportedWithoutLosingData) {
  static std::atomic<int> failures_left{0};
  StartTiers(/*host_limit=*/16 * kMiB, /*nvme_limit=*/64 * kMiB,
             FailNext(&failures_left, /*writes=*/false));
  auto p = manager_->Allocate(4 * kMiB, nullptr, kAdviceGuarded);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kDevice, nullptr).ok());
  ASSERT_CU(kernels_.Fill(*p, 4 * kMiB / 4, 77, nullptr));
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kNvme, nullptr).ok());
  manager_->Drain();

  failures_left = 2;  // transient: the retries absorb it
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kDevice, nullptr).ok());
  manager_->Drain();
  EXPECT_TRUE(manager_->LastMoveStatus().ok()) << manager_->LastMoveStatus();
  EXPECT_THAT(*manager_->Placement(*p, 4 * kMiB), Each(Tier::kDevice));
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kNvme, nullptr).ok());
  manager_->Drain();

  failures_left = 1000;                                                        // persistent
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kDevice, nullptr).ok());  // async
  manager_->Drain();
  absl::Status failed = manager_->LastMoveStatus();
  EXPECT_FALSE(failed.ok());
  EXPECT_THAT(std::string(failed.message()), ::testing::HasSubstr("offset"));
  EXPECT_THAT(*manager_->Placement(*p, 4 * kMiB), Each(Tier::kNvme));
  EXPECT_EQ(manager_->Stats().device_bytes, 0u) << "nothing half-moved";

  failures_left = 0;  // the disk recovers: the data is all there
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kDevice, nullptr).ok());
  ASSERT_CU(cuMemsetD8(mismatches_, 0, sizeof(uint64_t)));
  ASSERT_CU(kernels_.Check(*p, 4 * kMiB / 4, 77, mismatches_, nullptr));
  EXPECT_EQ(Mismatches(), 0u);
}

// Without CAP_IPC_LOCK, io_uring charges registered buffers to RLIMIT_MEMLOCK, and the eight
// staging buffers (16 MiB at 2 MiB chunks) exceed a small limit: as many as fit are
// registered, and the I/O through them uses fixed buffers.
TEST_F(ManagerNvmeTest, StagingBuffersRegisterAsManyAsMemlockAllows) {
  // This thread creates the ring and registers (in Create), and capabilities are per
  // thread: clearing the effective bit here is enough, and it is raised again below.
  const bool root = geteuid() == 0;
  if (root && !spw_test::ClearCapabilities({CAP_IPC_LOCK}, /*permanently=*/false)) {
    GTEST_SKIP() << "cannot clear CAP_IPC_LOCK";
  }
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &saved), 0);
  rlimit small = saved;
  small.rlim_cur = 5 * kMiB;  // two buffers and a half
  if (small.rlim_max != RLIM_INFINITY && small.rlim_max < small.rlim_cur) {
    small.rlim_cur = small.rlim_max;
  }
  ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &small), 0);
  StartTiers(/*host_limit=*/0, /*nvme_limit=*/64 * kMiB);
  ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &saved), 0);
  if (root) {
    ASSERT_TRUE(spw_test::RaiseCapability(CAP_IPC_LOCK));
  }

  auto p = manager_->Allocate(8 * kMiB, nullptr, kAdviceGuarded);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_NO_FATAL_FAILURE(FillThroughHbm(*p, 8 * kMiB, 8 * kMiB, 21));
  ASSERT_TRUE(manager_->Prefetch(*p, 8 * kMiB, Tier::kNvme, nullptr).ok());
  ASSERT_TRUE(manager_->Prefetch(*p, 8 * kMiB, Tier::kDevice, nullptr).ok());
  manager_->Drain();
  EXPECT_TRUE(manager_->LastMoveStatus().ok()) << manager_->LastMoveStatus();
  const NvmeStoreStats io = manager_->NvmeStats();
  EXPECT_GT(io.fixed_requests, 0u) << "no staging buffer was registered";
  EXPECT_LT(io.fixed_requests, io.requests) << "all were: the limit did not apply";
  ASSERT_NO_FATAL_FAILURE(CheckFill(*p, 8 * kMiB, 8 * kMiB, 21));
  EXPECT_EQ(Mismatches(), 0u);
}

// Unadvised guarded data read back from NVMe keeps its extent: spilled again, the chunks the
// device did not change cost no write, the ones it changed are written, and all read back.
TEST_F(ManagerNvmeTest, RespillingUnchangedBytesSkipsTheirWrites) {
  StartTiers(/*host_limit=*/0, /*nvme_limit=*/64 * kMiB);
  auto p = manager_->Allocate(8 * kMiB, nullptr, kAdviceGuarded);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_NO_FATAL_FAILURE(FillThroughHbm(*p, 8 * kMiB, 4 * kMiB, 30));
  ASSERT_TRUE(manager_->Prefetch(*p, 8 * kMiB, Tier::kNvme, nullptr).ok());
  manager_->Drain();
  EXPECT_EQ(manager_->Stats().nvme_write_bytes, 8 * kMiB);
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(manager_->Prefetch(*p, 8 * kMiB, Tier::kDevice, nullptr).ok());
    // Round 1 rewrites the second half with other bytes; round 0 leaves it all alone.
    if (round == 1) ASSERT_CU(kernels_.Fill(*p + 4 * kMiB, 4 * kMiB / 4, 90, nullptr));
    ASSERT_TRUE(manager_->Prefetch(*p, 8 * kMiB, Tier::kNvme, nullptr).ok());
    manager_->Drain();
    EXPECT_TRUE(manager_->LastMoveStatus().ok()) << manager_->LastMoveStatus();
  }
  ManagerStats stats = manager_->Stats();
  EXPECT_EQ(stats.nvme_write_bytes, 12 * kMiB) << "only the changed half is written again";
  EXPECT_EQ(stats.spills_unchanged, (8 + 4) * kMiB / kChunk);
  EXPECT_EQ(stats.spills, (8 + 4) * kMiB / kChunk);
  EXPECT_THAT(*manager_->Placement(*p, 8 * kMiB), Each(Tier::kNvme));
  ASSERT_TRUE(manager_->Prefetch(*p, 8 * kMiB, Tier::kDevice, nullptr).ok());
  ASSERT_CU(cuMemsetD8(mismatches_, 0, sizeof(uint64_t)));
  ASSERT_CU(kernels_.Check(*p, 4 * kMiB / 4, 30, mismatches_, nullptr));
  ASSERT_CU(kernels_.Check(*p + 4 * kMiB, 4 * kMiB / 4, 90, mismatches_, nullptr));
  EXPECT_EQ(Mismatches(), 0u);
}

// A spill whose write fails may have written part of the chunk's extent: what the extent
// holds is no longer known, so bytes equal to its old contents are written, not skipped.
TEST_F(ManagerNvmeTest, AFailedWriteOverAnExtentIsNeverTakenForItsOldBytes) {
  static std::atomic<int> write_failures_left{0};
  StartTiers(/*host_limit=*/0, /*nvme_limit=*/64 * kMiB,
             FailNext(&write_failures_left, /*writes=*/true));
  auto p = manager_->Allocate(4 * kMiB, nullptr, kAdviceGuarded);
  ASSERT_TRUE(p.ok());
  ASSERT_NO_FATAL_FAILURE(FillThroughHbm(*p, 4 * kMiB, 4 * kMiB, 77));
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kNvme, nullptr).ok());
  manager_->Drain();
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kDevice, nullptr).ok());
  // Other bytes, whose write lands (the hook fails it after the fact) and is reported failed.
  ASSERT_CU(kernels_.Fill(*p, 4 * kMiB / 4, 78, nullptr));
  write_failures_left = 1000;
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kNvme, nullptr).ok());
  manager_->Drain();
  EXPECT_FALSE(manager_->LastMoveStatus().ok());
  EXPECT_THAT(*manager_->Placement(*p, 4 * kMiB), Each(Tier::kDevice));
  write_failures_left = 0;
  // Back to the first bytes: they must be written, the extent may hold the others.
  ASSERT_CU(kernels_.Fill(*p, 4 * kMiB / 4, 77, nullptr));
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kNvme, nullptr).ok());
  manager_->Drain();
  EXPECT_TRUE(manager_->LastMoveStatus().ok()) << manager_->LastMoveStatus();
  EXPECT_EQ(manager_->Stats().spills_unchanged, 0u);
  ASSERT_TRUE(manager_->Prefetch(*p, 4 * kMiB, Tier::kDevice, nullptr).ok());
  ASSERT_CU(cuMemsetD8(mismatches_, 0, sizeof(uint64_t)));
  ASSERT_CU(kernels_.Check(*p, 4 * kMiB / 4, 77, mismatches_, nullptr));
  EXPECT_EQ(Mismatches(), 0u);
}

// Extents kept for data read back from NVMe never fill the drive for data that must go
// there: a spill that finds the tier full takes them.
TEST_F(ManagerNvmeTest, ExtentsKeptForReadBackDataMakeRoomWhenTheTierIsFull) {
  StartTiers(/*host_limit=*/0, /*nvme_limit=*/8 * kMiB);
  auto first = manager_->Allocate(8 * kMiB, nullptr, kAdviceGuarded);
  auto second = manager_->Allocate(8 * kMiB, nullptr, kAdviceGuarded);
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_NO_FATAL_FAILURE(FillThroughHbm(*first, 8 * kMiB, 8 * kMiB, 11));
  ASSERT_TRUE(manager_->Prefetch(*first, 8 * kMiB, Tier::kNvme, nullptr).ok());
  ASSERT_TRUE(manager_->Prefetch(*first, 8 * kMiB, Tier::kDevice, nullptr).ok());
  manager_->Drain();  // a move reading an extent holds it until done (as before it kept any)
  ASSERT_NO_FATAL_FAILURE(FillThroughHbm(*second, 8 * kMiB, 8 * kMiB, 12));
  absl::Status s = manager_->Prefetch(*second, 8 * kMiB, Tier::kNvme, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  manager_->Drain();
  EXPECT_TRUE(manager_->LastMoveStatus().ok()) << manager_->LastMoveStatus();
  EXPECT_THAT(*manager_->Placement(*second, 8 * kMiB), Each(Tier::kNvme));
  ASSERT_NO_FATAL_FAILURE(CheckFill(*first, 8 * kMiB, 8 * kMiB, 11));
  ASSERT_TRUE(manager_->Prefetch(*second, 8 * kMiB, Tier::kDevice, nullptr).ok());
  ASSERT_CU(kernels_.Check(*second, 8 * kMiB / 4, 12, mismatches_, nullptr));
  EXPECT_EQ(Mismatches(), 0u);
}

// While a move waits for the drive, the moves behind it that copy between HBM and host
// memory are started (their copies queued): the link works while the drive does.
TEST_F(ManagerNvmeTest, HostTierMovesStartWhileAnNvmeMoveWaitsForTheDrive) {
  static std::atomic<bool> hold_reads{false};
  StartTiers(/*host_limit=*/16 * kMiB, /*nvme_limit=*/64 * kMiB,
             [](const NvmeIoCompletion& io, int result) {
               while (!io.is_write && hold_reads.load())
                 std::this_thread::sleep_for(std::chrono::milliseconds(1));
               return result;
             });
  auto on_nvme = manager_->Allocate(4 * kMiB, nullptr, kAdviceGuarded);
  auto on_host = manager_->Allocate(4 * kMiB, nullptr, kAdviceCold);  // starts in host memory
  ASSERT_TRUE(on_nvme.ok() && on_host.ok());
  ASSERT_NO_FATAL_FAILURE(FillThroughHbm(*on_nvme, 4 * kMiB, 4 * kMiB, 51));
  ASSERT_TRUE(manager_->Prefetch(*on_nvme, 4 * kMiB, Tier::kNvme, nullptr).ok());
  ASSERT_CU(kernels_.Fill(*on_host, 4 * kMiB / 4, 52, nullptr));
  manager_->Drain();
  ASSERT_CU(cuCtxSynchronize());
  ASSERT_THAT(*manager_->Placement(*on_host, 4 * kMiB), Each(Tier::kHost));

  const uint64_t before = manager_->MovesStarted();
  const uint64_t moves_done = manager_->Stats().moves;
  hold_reads = true;
  ASSERT_TRUE(manager_->Prefetch(*on_nvme, 4 * kMiB, Tier::kDevice, nullptr).ok());
  ASSERT_TRUE(manager_->Prefetch(*on_host, 4 * kMiB, Tier::kDevice, nullptr).ok());
  bool started = false;
  for (int i = 0; i < 10000 && !started; ++i) {
    started = manager_->MovesStarted() >= before + 2;
    if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(started) << "the move from host memory waited for the drive";
  EXPECT_EQ(manager_->Stats().moves, moves_done) << "moves finish in order, after the drive";
  hold_reads = false;
  manager_->Drain();
  EXPECT_TRUE(manager_->LastMoveStatus().ok()) << manager_->LastMoveStatus();
  EXPECT_THAT(*manager_->Placement(*on_nvme, 4 * kMiB), Each(Tier::kDevice));
  EXPECT_THAT(*manager_->Placement(*on_host, 4 * kMiB), Each(Tier::kDevice));
  ASSERT_NO_FATAL_FAILURE(CheckFill(*on_nvme, 4 * kMiB, 4 * kMiB, 51));
  ASSERT_CU(kernels_.Check(*on_host, 4 * kMiB / 4, 52, mismatches_, nullptr));
  EXPECT_EQ(Mismatches(), 0u);
}

// A move that reads NVMe starts its reads while the moves ahead of it still wait for the
// application's work and hold every slot of the mover: the drive works meanwhile.
TEST_F(ManagerNvmeTest, NvmeReadsStartWhileEarlierMovesWait) {
  StartTiers(/*host_limit=*/16 * kMiB, /*nvme_limit=*/64 * kMiB);
  auto on_nvme = manager_->Allocate(4 * kMiB, nullptr, kAdviceGuarded);
  ASSERT_TRUE(on_nvme.ok());
  ASSERT_NO_FATAL_FAILURE(FillThroughHbm(*on_nvme, 4 * kMiB, 4 * kMiB, 31));
  ASSERT_TRUE(manager_->Prefetch(*on_nvme, 4 * kMiB, Tier::kNvme, nullptr).ok());
  std::vector<CUdeviceptr> in_hbm;  // one chunk each: a move per slot of the mover
  for (int i = 0; i < Mover::kSlots; ++i) {
    auto p = manager_->Allocate(kChunk, nullptr);
    ASSERT_TRUE(p.ok());
    ASSERT_CU(kernels_.Fill(*p, kChunk / 4, 32 + i, nullptr));
    in_hbm.push_back(*p);
  }
  manager_->Drain();
  ASSERT_CU(cuCtxSynchronize());
  ASSERT_THAT(*manager_->Placement(*on_nvme, 4 * kMiB), Each(Tier::kNvme));

  // Moves of `in_hbm` that wait for a held stream, then one from NVMe behind them.
  ASSERT_NO_FATAL_FAILURE(HoldStream());
  const uint64_t requests = manager_->NvmeStats().requests;
  for (CUdeviceptr p : in_hbm) {
    ASSERT_TRUE(manager_->Prefetch(p, kChunk, Tier::kHost, held_).ok());
  }
  ASSERT_TRUE(manager_->Prefetch(*on_nvme, 4 * kMiB, Tier::kDevice, nullptr).ok());
  bool read_while_held = false;
  for (int i = 0; i < 1000 && !read_while_held; ++i) {
    read_while_held = manager_->NvmeStats().requests > requests;
    if (!read_while_held) usleep(10'000);
  }
  for (CUdeviceptr p : in_hbm) {
    EXPECT_THAT(*manager_->Placement(p, kChunk), Each(Tier::kDevice))
        << "a move ahead did not wait for the held stream";
  }
  ReleaseHeldStream();
  EXPECT_TRUE(read_while_held) << "no NVMe read started while the moves ahead waited";

  manager_->Drain();
  ASSERT_CU(cuCtxSynchronize());
  EXPECT_TRUE(manager_->LastMoveStatus().ok()) << manager_->LastMoveStatus();
  EXPECT_THAT(*manager_->Placement(*on_nvme, 4 * kMiB), Each(Tier::kDevice));
  ASSERT_NO_FATAL_FAILURE(CheckFill(*on_nvme, 4 * kMiB, 4 * kMiB, 31));
  for (int i = 0; i < Mover::kSlots; ++i) {
    EXPECT_THAT(*manager_->Placement(in_hbm[i], kChunk), Each(Tier::kHost));
    ASSERT_CU(kernels_.Check(in_hbm[i], kChunk / 4, 32 + i, mismatches_, nullptr));
  }
  EXPECT_EQ(Mismatches(), 0u);
}

// A move from NVMe waits on the host for the copies out of its staging buffers. Those may
// wait, through the application's stream, for the gate of a move ahead of it: that move
// is finished meanwhile (by the mover's other thread) instead of never.
TEST_F(ManagerNvmeTest, AMoveFromNvmeBehindAHeldMoveFinishesItFirst) {
  StartTiers(/*host_limit=*/16 * kMiB, /*nvme_limit=*/64 * kMiB);
  constexpr size_t kBytes = 12 * kMiB;  // 6 chunks: more than the staging buffers
  auto on_nvme = manager_->Allocate(kBytes, nullptr, kAdviceGuarded);
  auto in_hbm = manager_->Allocate(2 * kMiB, nullptr);
  ASSERT_TRUE(on_nvme.ok() && in_hbm.ok());
  ASSERT_NO_FATAL_FAILURE(FillThroughHbm(*on_nvme, kBytes, 4 * kMiB, 41));
  ASSERT_TRUE(manager_->Prefetch(*on_nvme, kBytes, Tier::kNvme, nullptr).ok());
  ASSERT_CU(kernels_.Fill(*in_hbm, 2 * kMiB / 4, 42, nullptr));
  manager_->Drain();
  ASSERT_CU(cuCtxSynchronize());

  ASSERT_NO_FATAL_FAILURE(HoldStream());
  CUstream held = held_;
  // Both moves name `held`: the second's copies wait for what it queued before them, and
  // that is the first move's gate.
  ASSERT_TRUE(manager_->Prefetch(*in_hbm, 2 * kMiB, Tier::kHost, held).ok());
  ASSERT_TRUE(manager_->Prefetch(*on_nvme, kBytes, Tier::kDevice, held).ok());
  usleep(200'000);
  ReleaseHeldStream();
  ASSERT_TRUE(manager_->Drain(absl::Seconds(30))) << "the moves never completed";
  ASSERT_CU(cuStreamSynchronize(held));
  EXPECT_TRUE(manager_->LastMoveStatus().ok()) << manager_->LastMoveStatus();
  EXPECT_THAT(*manager_->Placement(*in_hbm, 2 * kMiB), Each(Tier::kHost));
  EXPECT_THAT(*manager_->Placement(*on_nvme, kBytes), Each(Tier::kDevice));
  ASSERT_NO_FATAL_FAILURE(CheckFill(*on_nvme, kBytes, 4 * kMiB, 41));
  EXPECT_EQ(Mismatches(), 0u);
}

TEST_F(ManagerNvmeTest, PrepareLaunchBringsGuardedDataBackIntoMappedMemory) {
  StartTiers(/*host_limit=*/64 * kMiB, /*nvme_limit=*/128 * kMiB);
  auto p = manager_->Allocate(40 * kMiB, nullptr, kAdviceGuarded);  // more than HBM (16 MiB)
  ASSERT_TRUE(p.ok());
  ASSERT_NO_FATAL_FAILURE(FillThroughHbm(*p, 40 * kMiB, 8 * kMiB, 60));
  ASSERT_TRUE(manager_->Prefetch(*p, 40 * kMiB, Tier::kNvme, nullptr).ok());
  const uintptr_t words[] = {*p + 100};
  ASSERT_TRUE(manager_->PrepareLaunch(words, nullptr).ok());
  manager_->Drain();
  auto placement = manager_->Placement(*p, 40 * kMiB);  // named: the loop must not outlive it
  ASSERT_TRUE(placement.ok());
  for (Tier t : *placement) EXPECT_NE(t, Tier::kNvme);
  ASSERT_NO_FATAL_FAILURE(CheckFill(*p, 40 * kMiB, 8 * kMiB, 60));
  EXPECT_EQ(Mismatches(), 0u);
}

// A launch's allocations are pinned from PrepareLaunch until EndLaunch: preparing another
// launch in that window (another thread, another stream) must make room elsewhere, never by
// sending them to NVMe, whose unmapped range the first launch's kernel would then touch.
TEST_F(ManagerNvmeTest, AllocationsOfALaunchBeingQueuedAreNeverSpilled) {
  StartTiers(/*host_limit=*/0, /*nvme_limit=*/128 * kMiB);  // HBM (16 MiB) or NVMe
  auto first = manager_->Allocate(12 * kMiB, nullptr, kAdviceGuarded);
  auto second = manager_->Allocate(12 * kMiB, nullptr, kAdviceGuarded);
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_TRUE(manager_->Prefetch(*first, 12 * kMiB, Tier::kDevice, nullptr).ok());
  ASSERT_CU(kernels_.Fill(*first, 12 * kMiB / 4, 7, nullptr));
  std::vector<AllocationMap::Hit> first_hits;
  const uintptr_t first_words[] = {*first};
  const uint64_t found_at = manager_->FindHits(first_words, &first_hits);
  ASSERT_TRUE(manager_->PrepareLaunch(first_hits, nullptr, found_at).ok());
  // Before the first launch is queued: a launch of the second needs HBM the first holds.
  const uintptr_t second_words[] = {*second};
  auto prepared = manager_->PrepareLaunch(second_words, nullptr);
  manager_->Drain();
  auto placement = manager_->Placement(*first, 12 * kMiB);
  ASSERT_TRUE(placement.ok());
  EXPECT_THAT(*placement, Each(Tier::kDevice)) << "the pinned allocation was moved";
  EXPECT_EQ(manager_->Prefetch(*first, 12 * kMiB, Tier::kNvme, nullptr).code(),
            absl::StatusCode::kUnavailable);
  // The first launch runs on what it was promised; once queued, its pins end.
  ASSERT_CU(cuMemsetD8(mismatches_, 0, sizeof(uint64_t)));
  ASSERT_CU(kernels_.Check(*first, 12 * kMiB / 4, 7, mismatches_, nullptr));
  manager_->EndLaunch(first_hits, found_at);
  EXPECT_EQ(Mismatches(), 0u);
  (void)prepared;  // it may fail (nowhere to go) or read over the link: either way no fault
  ASSERT_TRUE(manager_->Prefetch(*first, 12 * kMiB, Tier::kNvme, nullptr).ok());
  manager_->Drain();
  EXPECT_THAT(*manager_->Placement(*first, 12 * kMiB), Each(Tier::kNvme));
}

// A launch of data on NVMe, too big for HBM, with the host tier full of other guarded data:
// that data goes on to NVMe to make room, instead of the launch failing.
TEST_F(ManagerNvmeTest, LaunchOfNvmeDataMakesRoomInAFullHostTier) {
  StartTiers(/*host_limit=*/24 * kMiB, /*nvme_limit=*/256 * kMiB);
  // Big first, written in HBM, then sent to NVMe; then the filler (COLD: straight to the
  // host tier) takes the whole host tier.
  auto big = manager_->Allocate(20 * kMiB, nullptr, kAdviceGuarded);  // more than HBM
  ASSERT_TRUE(big.ok());
  ASSERT_NO_FATAL_FAILURE(FillThroughHbm(*big, 20 * kMiB, 4 * kMiB, 90));
  ASSERT_TRUE(manager_->Prefetch(*big, 20 * kMiB, Tier::kNvme, nullptr).ok());
  manager_->Drain();
  auto filler = manager_->Allocate(24 * kMiB, nullptr, kAdviceGuarded | kAdviceCold);
  ASSERT_TRUE(filler.ok()) << filler.status();
  ASSERT_THAT(*manager_->Placement(*filler, 24 * kMiB), Each(Tier::kHost));
  const uintptr_t words[] = {*big};
  auto prepared = manager_->PrepareLaunch(words, nullptr);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  manager_->Drain();
  auto placement = manager_->Placement(*big, 20 * kMiB);
  ASSERT_TRUE(placement.ok());
  for (Tier t : *placement) EXPECT_NE(t, Tier::kNvme);
  ASSERT_NO_FATAL_FAILURE(CheckFill(*big, 20 * kMiB, 4 * kMiB, 90));
  EXPECT_EQ(Mismatches(), 0u);
  EXPECT_GT(manager_->Stats().nvme_write_bytes, 20 * kMiB) << "the filler did not move";
}

// The learned policy on a decode-like loop: the same launches, in the same order, every
// step, over twice as much data as HBM holds.
class ManagerLearnedTest : public ManagerTest {
 protected:
  static constexpr int kAllocations = 8;
  static constexpr size_t kBytes = 8 * kMiB;  // 64 MiB in all, HBM 32 MiB
  void SetUp() override {
    StartDevice();
    ManagerConfig config = DefaultConfig();
    config.policy = "learned";
    Start(config);
    ASSERT_CU(cuStreamCreate(&stream_, CU_STREAM_NON_BLOCKING));
    for (int i = 0; i < kAllocations; ++i) {
      auto p = manager_->Allocate(kBytes, stream_);
      ASSERT_TRUE(p.ok()) << p.status();
      buffers_.push_back(*p);
      const uintptr_t words[] = {*p};
      ASSERT_TRUE(manager_->PrepareLaunch(words, stream_).ok());
      ASSERT_CU(kernels_.Fill(*p, kBytes / 4, 100 + i, stream_));
    }
    ASSERT_CU(cuStreamSynchronize(stream_));
  }
  void TearDown() override {
    manager_.reset();
    cuStreamDestroy(stream_);
    ManagerTest::TearDown();
  }
  // One step: a launch per allocation, in order, as the interposer makes it (pinned from
  // PrepareLaunch until EndLaunch, after the launch is queued). Even steps add 1 to every
  // word, odd ones take it away: data written back on eviction must survive.
  void Step(int step) {
    const uint32_t delta = step % 2 == 0 ? 1u : ~0u;
    for (CUdeviceptr p : buffers_) {
      const uintptr_t words[] = {p};
      std::vector<AllocationMap::Hit> hits;
      const uint64_t found_at = manager_->FindHits(words, &hits);
      ASSERT_TRUE(manager_->PrepareLaunch(hits, stream_, found_at).ok());
      ASSERT_CU(kernels_.Add(p, kBytes / 4, delta, stream_));
      manager_->EndLaunch(hits, found_at);
    }
  }
  // Every word of `buffers` (in the order SetUp filled them) holds what SetUp wrote.
  void ExpectFilledAsAtStart(const std::vector<CUdeviceptr>& buffers) {
    ASSERT_CU(cuMemsetD8(mismatches_, 0, sizeof(uint64_t)));
    for (int i = 0; i < kAllocations; ++i) {
      const uintptr_t words[] = {buffers[i]};
      ASSERT_TRUE(manager_->PrepareLaunch(words, stream_).ok());
      ASSERT_CU(kernels_.Check(buffers[i], kBytes / 4, 100 + i, mismatches_, stream_));
    }
    ASSERT_CU(cuStreamSynchronize(stream_));
    EXPECT_EQ(Mismatches(), 0u);
  }
  CUstream stream_ = nullptr;
  std::vector<CUdeviceptr> buffers_;
};

TEST_F(ManagerLearnedTest, CyclicScanIsFetchedAheadMovingAboutWhatBeladyMoves) {
  EXPECT_STREQ(manager_->policy_name(), "learned");
  for (int step = 0; step < 4; ++step) ASSERT_NO_FATAL_FAILURE(Step(step));
  ASSERT_CU(cuStreamSynchronize(stream_));
  const ManagerStats before = manager_->Stats();
  constexpr int kSteps = 8;
  for (int step = 4; step < 4 + kSteps; ++step) ASSERT_NO_FATAL_FAILURE(Step(step));
  ASSERT_CU(cuStreamSynchronize(stream_));
  manager_->Drain();
  const ManagerStats after = manager_->Stats();
  // Learned by now: the moves are prefetches. A cyclic scan of W bytes through H of HBM
  // moves at least W - H a step (Belady); fetching a window (here one 8 MiB launch) ahead
  // keeps that window out of what stays, about W - H + 8 MiB. LRU moves all W every step.
  const uint64_t prefetched = after.fetches_prefetched - before.fetches_prefetched;
  const uint64_t on_demand = after.fetches_on_demand - before.fetches_on_demand;
  EXPECT_GT(prefetched, 4 * on_demand)
      << "prefetched " << prefetched << ", on demand " << on_demand;
  const uint64_t per_step = (after.h2d_bytes - before.h2d_bytes) / kSteps;
  const uint64_t minimum = kAllocations * kBytes - 32 * kMiB;
  EXPECT_GE(per_step, minimum);
  EXPECT_LE(per_step, kAllocations * kBytes * 7 / 8) << "LRU moves " << kAllocations * kBytes;
  EXPECT_LE(after.peak_device_bytes, 32 * kMiB);
  // Twelve steps: every +1 was taken back.
  ExpectFilledAsAtStart(buffers_);
}

// A change of schedule (here, the order reverses, as when a prefill comes between decode
// steps) is recognised: what was learned is dropped, the new order is learned, and no
// launch ever runs on data that is not there.
TEST_F(ManagerLearnedTest, AChangedScheduleIsRelearnedWithoutLosingData) {
  for (int step = 0; step < 4; ++step) ASSERT_NO_FATAL_FAILURE(Step(step));
  std::reverse(buffers_.begin(), buffers_.end());
  for (int step = 4; step < 7; ++step) ASSERT_NO_FATAL_FAILURE(Step(step));
  ASSERT_CU(cuStreamSynchronize(stream_));
  const ManagerStats before = manager_->Stats();
  for (int step = 7; step < 10; ++step) ASSERT_NO_FATAL_FAILURE(Step(step));
  ASSERT_CU(cuStreamSynchronize(stream_));
  manager_->Drain();
  const ManagerStats after = manager_->Stats();
  EXPECT_GT(after.fetches_prefetched - before.fetches_prefetched,
            4 * (after.fetches_on_demand - before.fetches_on_demand))
      << "the new order was not learned";
  std::reverse(buffers_.begin(), buffers_.end());
  ExpectFilledAsAtStart(buffers_);
}

// Freeing an allocation of the learned schedule while its prefetch may be in flight (the
// last launch of a step prefetches the first ones of the next), then putting a new one in
// its place: the schedule changes, nothing faults, every byte of the rest survives.
TEST_F(ManagerLearnedTest, FreeingAScheduledAllocationMidPrefetchLosesNothing) {
  // A decode loop: the host waits for each step (for its token) before the next.
  for (int step = 0; step < 4; ++step) {
    ASSERT_NO_FATAL_FAILURE(Step(step));
    ASSERT_CU(cuStreamSynchronize(stream_));
  }
  ASSERT_GT(manager_->Stats().fetches_prefetched, 0u) << "nothing learned: the test tests nothing";
  ASSERT_NO_FATAL_FAILURE(Step(4));  // its last launch prefetches the first ones of step 5
  ASSERT_TRUE(manager_->Free(buffers_[0], stream_).ok());
  EXPECT_FALSE(manager_->Free(buffers_[0], stream_).ok()) << "a second free is an error";
  auto fresh = manager_->Allocate(kBytes, stream_);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  const uintptr_t words[] = {*fresh};
  ASSERT_TRUE(manager_->PrepareLaunch(words, stream_).ok());
  // What SetUp wrote there, plus the +1 the others carry after steps 0-4; steps 5-9 then
  // take one away from every buffer.
  ASSERT_CU(kernels_.Fill(*fresh, kBytes / 4, 100, stream_));
  ASSERT_CU(kernels_.Add(*fresh, kBytes / 4, 1, stream_));
  buffers_[0] = *fresh;
  for (int step = 5; step < 10; ++step) ASSERT_NO_FATAL_FAILURE(Step(step));
  ASSERT_CU(cuStreamSynchronize(stream_));
  manager_->Drain();
  ExpectFilledAsAtStart(buffers_);
}

// Two threads, each with its own stream and its own cyclic schedule, together twice HBM:
// their launches interleave differently every step, so a period may or may not be learned.
// Either way no launch runs on data that is not there and every byte survives.
TEST_F(ManagerLearnedTest, TwoThreadsWithTheirOwnSchedulesKeepEveryByte) {
  CUcontext context = nullptr;
  ASSERT_CU(cuCtxGetCurrent(&context));
  auto run = [&](int first, std::atomic<bool>* ok) {
    if (cuCtxSetCurrent(context) != CUDA_SUCCESS) return;
    CUstream stream = nullptr;
    if (cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) return;
    bool fine = true;
    for (int step = 0; step < 8 && fine; ++step) {
      const uint32_t delta = step % 2 == 0 ? 1u : ~0u;
      for (int i = first; i < first + kAllocations / 2 && fine; ++i) {
        const uintptr_t words[] = {buffers_[i]};
        std::vector<AllocationMap::Hit> hits;
        const uint64_t found_at = manager_->FindHits(words, &hits);
        fine = manager_->PrepareLaunch(hits, stream, found_at).ok() &&
               kernels_.Add(buffers_[i], kBytes / 4, delta, stream) == CUDA_SUCCESS;
        manager_->EndLaunch(hits, found_at);
      }
    }
    fine = fine && cuStreamSynchronize(stream) == CUDA_SUCCESS;
    manager_->RetireStream(stream).IgnoreError();
    cuStreamDestroy(stream);
    ok->store(fine);
  };
  std::atomic<bool> ok_a{false}, ok_b{false};
  std::thread a(run, 0, &ok_a), b(run, kAllocations / 2, &ok_b);
  a.join();
  b.join();
  EXPECT_TRUE(ok_a.load());
  EXPECT_TRUE(ok_b.load());
  manager_->Drain();
  EXPECT_GT(manager_->Stats().evictions, 0u) << "HBM never filled: the test tests nothing";
  ExpectFilledAsAtStart(buffers_);
}

// The link meters, on simcuda's modelled link (1 GB/s host to device, 2 GB/s back).
class ManagerLinkTest : public ManagerTest {
 protected:
  static constexpr double kH2d = 1e9;
  static constexpr double kD2h = 2e9;
  void SetUp() override {
    setenv("SIMCUDA_H2D_GBPS", "1", 1);
    setenv("SIMCUDA_D2H_GBPS", "2", 1);
    ManagerTest::SetUp();
  }
};

// Never faster than modelled. Slower on a loaded machine: simcuda's engines are threads,
// and with both cores busy they deliver a third of the modelled rate (seen: 0.26-0.41x
// under two busy loops; 0.98x idle).
MATCHER_P(AboutTheModelled, rate, "") { return arg > 0.2 * rate && arg < 1.1 * rate; }

TEST_F(ManagerLinkTest, StartUpMeasuresEachDirectionOfTheLink) {
  const ManagerStats stats = manager_->Stats();
  EXPECT_THAT(static_cast<double>(stats.h2d_link_bytes_per_s), AboutTheModelled(kH2d));
  EXPECT_THAT(static_cast<double>(stats.d2h_link_bytes_per_s), AboutTheModelled(kD2h));
  EXPECT_EQ(stats.moves, 0u) << "calibration is not a move";
}

// The application's own copies take most of the H2D engine: the moves' copies measure the
// link they get, and the estimate follows it down. D2H, which nobody shares, stays.
TEST_F(ManagerLinkTest, MovesUpdateTheEstimateWhenTheLinkIsShared) {
  // The engine takes the two streams' copies in turn: with copies twice a chunk, the
  // moves get a third of it.
  constexpr size_t kCopy = 2 * kChunk;
  const double calibrated = static_cast<double>(manager_->Stats().h2d_link_bytes_per_s);
  ASSERT_GT(calibrated, 0);
  CUcontext context = nullptr;
  ASSERT_CU(cuCtxGetCurrent(&context));
  void* host = nullptr;
  ASSERT_CU(cuMemHostAlloc(&host, kCopy, 0));
  CUdeviceptr device = 0;
  ASSERT_CU(cuMemAlloc(&device, kCopy));
  std::atomic<bool> stop{false};
  std::thread competitor([&] {
    if (cuCtxSetCurrent(context) != CUDA_SUCCESS) return;
    CUstream stream = nullptr;
    if (cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) return;
    while (!stop.load()) {
      // Many queued: the engine always has one of ours to take next, however late this
      // thread runs on a loaded machine.
      for (int i = 0; i < 8; ++i) cuMemcpyHtoDAsync(device, host, kCopy, stream);
      cuStreamSynchronize(stream);
    }
    cuStreamDestroy(stream);
  });
  auto p = manager_->Allocate(16 * kMiB, nullptr);
  ASSERT_TRUE(p.ok()) << p.status();
  for (int round = 0; round < 8; ++round) {
    ASSERT_TRUE(manager_->Prefetch(*p, 16 * kMiB, Tier::kHost, nullptr).ok());
    ASSERT_TRUE(manager_->Prefetch(*p, 16 * kMiB, Tier::kDevice, nullptr).ok());
    manager_->Drain();
  }
  stop.store(true);
  competitor.join();
  const ManagerStats stats = manager_->Stats();
  EXPECT_EQ(stats.h2d_bytes, 8 * 16 * kMiB);
  // About a third of the link; the start-up figure was about all of it (the test above).
  EXPECT_LT(static_cast<double>(stats.h2d_link_bytes_per_s), 0.7 * kH2d);
  EXPECT_THAT(static_cast<double>(stats.d2h_link_bytes_per_s), AboutTheModelled(kD2h));
  ASSERT_TRUE(manager_->Free(*p, nullptr).ok());
  cuMemFree(device);
  cuMemFreeHost(host);
}

TEST(PrefetchWindowTest, SizedByTheMeasuredLinkWithinTheHbmCaps) {
  constexpr uint64_t kGiB = uint64_t{1} << 30;
  constexpr uint64_t kChunk2M = 2 * kMiB;
  // SPILLWAY_PREFETCH_AHEAD replaces the rule (at least two chunks).
  EXPECT_EQ(PrefetchWindowBytes(64 * kMiB, 140 * kGiB, kGiB, kChunk2M, 50e9), 64 * kMiB);
  EXPECT_EQ(PrefetchWindowBytes(kMiB, 140 * kGiB, kGiB, kChunk2M, 50e9), 2 * kChunk2M);
  // Link not measured: an eighth of HBM, or the widest launch, at most half of HBM.
  EXPECT_EQ(PrefetchWindowBytes(0, 64 * kMiB, 4 * kMiB, kChunk2M, 0), 8 * kMiB);
  EXPECT_EQ(PrefetchWindowBytes(0, 64 * kMiB, 16 * kMiB, kChunk2M, 0), 16 * kMiB);
  EXPECT_EQ(PrefetchWindowBytes(0, 64 * kMiB, 48 * kMiB, kChunk2M, 0), 32 * kMiB);
  // An H200 over a 50 GB/s link: what it moves in the lead time, not 17.5 GiB of HBM...
  EXPECT_EQ(PrefetchWindowBytes(0, 140 * kGiB, 256 * kMiB, kChunk2M, 50e9),
            static_cast<uint64_t>(50e9 * kPrefetchLeadSeconds));
  // ... but at least a quarter of the widest launch.
  EXPECT_EQ(PrefetchWindowBytes(0, 140 * kGiB, 4 * kGiB, kChunk2M, 50e9), kGiB);
  // A slow link on a small HBM: the HBM cap is the smaller one.
  EXPECT_EQ(PrefetchWindowBytes(0, 64 * kMiB, 4 * kMiB, kChunk2M, 2e9), 8 * kMiB);
}

}  // namespace
}  // namespace spillway
