// SPDX-License-Identifier: Apache-2.0
//
// The C API end to end on simcuda: configuration from the environment, allocation in
// PyTorch's pluggable-allocator form, moves, statistics and every error path.
#include <cuda.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "runtime_test_util.h"
#include "spillway/spillway.h"

namespace {

using ::spillway::testing::Pattern;
using ::spillway::testing::TestKernels;

constexpr size_t kMiB = size_t{1} << 20;

// PyTorch's CUDAPluggableAllocator takes exactly these (cudaStream_t is CUstream).
static_assert(std::is_same_v<spw_stream, CUstream>);
using MallocFn = void* (*)(ssize_t, int, CUstream);
using FreeFn = void (*)(void*, ssize_t, int, CUstream);
[[maybe_unused]] constexpr MallocFn kMalloc = &spw_malloc;
[[maybe_unused]] constexpr FreeFn kFree = &spw_free;

void StartDevice() {
  setenv("SIMCUDA_DEVICE_MEMORY", "64M", 1);
  ASSERT_EQ(cuInit(0), CUDA_SUCCESS);
  CUcontext ctx = nullptr;
  ASSERT_EQ(cuDevicePrimaryCtxRetain(&ctx, 0), CUDA_SUCCESS);
  ASSERT_EQ(cuCtxSetCurrent(ctx), CUDA_SUCCESS);
}

TEST(CApiTest, AllocationsLargerThanTheDeviceKeepTheirBytes) {
  setenv("SPILLWAY_HBM_LIMIT", "50%", 1);  // 32 MiB of the 64 MiB device
  setenv("SPILLWAY_HOST_LIMIT", "1G", 1);
  StartDevice();
  ASSERT_EQ(spw_init(), SPW_OK) << spw_last_error();
  TestKernels kernels;
  kernels.Load();
  std::vector<void*> buffers;
  for (uint32_t i = 0; i < 3; ++i) {  // 3 x 64 MiB on a 64 MiB device
    void* p = spw_malloc(64 * kMiB, 0, nullptr);
    ASSERT_NE(p, nullptr) << spw_last_error();
    ASSERT_EQ(kernels.Fill(reinterpret_cast<CUdeviceptr>(p), 64 * kMiB / 4, i, nullptr),
              CUDA_SUCCESS);
    buffers.push_back(p);
  }
  for (void* p : buffers) {
    ASSERT_EQ(spw_prefetch(p, 30 * kMiB, SPW_TIER_DEVICE, nullptr), SPW_OK) << spw_last_error();
    ASSERT_EQ(spw_evict(p, 30 * kMiB, SPW_TIER_HOST, nullptr), SPW_OK) << spw_last_error();
  }
  ASSERT_EQ(cuCtxSynchronize(), CUDA_SUCCESS);
  for (uint32_t i = 0; i < 3; ++i) {
    std::vector<uint32_t> words(64 * kMiB / 4);
    ASSERT_EQ(cuMemcpyDtoH(words.data(), reinterpret_cast<CUdeviceptr>(buffers[i]), 64 * kMiB),
              CUDA_SUCCESS);
    size_t bad = 0;
    for (size_t w = 0; w < words.size(); ++w) bad += words[w] != Pattern(i, w);
    EXPECT_EQ(bad, 0u);
  }
  spw_stats stats = {};
  stats.struct_size = sizeof(stats);
  ASSERT_EQ(spw_get_stats(&stats), SPW_OK);
  EXPECT_EQ(stats.allocations, 3u);
  EXPECT_EQ(stats.allocated_bytes, 3 * 64 * kMiB);
  EXPECT_LE(stats.peak_device_bytes, 32 * kMiB);
  EXPECT_GT(stats.evictions, 0u);
  EXPECT_GT(stats.h2d_bytes, 0u);
  EXPECT_GT(stats.remap_ns, 0u);
  EXPECT_GT(stats.h2d_link_bytes_per_s, 0u);  // measured at start-up
  EXPECT_GT(stats.d2h_link_bytes_per_s, 0u);
  for (void* p : buffers) spw_free(p, 64 * kMiB, 0, nullptr);
  EXPECT_EQ(spw_last_status(), SPW_OK);
  EXPECT_EQ(spw_shutdown(), SPW_OK);
}

TEST(CApiTest, BadConfigurationIsReportedByName) {
  setenv("SPILLWAY_HBM_LIMIT", "12Q", 1);
  StartDevice();
  EXPECT_EQ(spw_init(), SPW_ERROR_CONFIG);
  EXPECT_NE(std::string(spw_last_error()).find("SPILLWAY_HBM_LIMIT"), std::string::npos)
      << spw_last_error();
  // Every later call gives the same answer; nothing runs on a substituted default.
  EXPECT_EQ(spw_malloc(kMiB, 0, nullptr), nullptr);
  EXPECT_EQ(spw_last_status(), SPW_ERROR_CONFIG);
}

TEST(CApiTest, PointersWeDoNotOwnAndDoubleFreesAreErrors) {
  StartDevice();
  int on_stack = 0;
  EXPECT_EQ(spw_release(&on_stack, nullptr), SPW_ERROR_NOT_MANAGED);
  spw_free(&on_stack, 4, 0, nullptr);  // must not crash
  EXPECT_EQ(spw_last_status(), SPW_ERROR_NOT_MANAGED);
  void* p = spw_malloc(3 * kMiB, 0, nullptr);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(spw_owns(p), 1);
  EXPECT_EQ(spw_prefetch(p, 4 * kMiB, SPW_TIER_DEVICE, nullptr), SPW_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(spw_evict(p, kMiB, SPW_TIER_DEVICE, nullptr), SPW_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(spw_advise(p, kMiB, 1u << 20), SPW_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(spw_release(p, nullptr), SPW_OK);
  EXPECT_EQ(spw_release(p, nullptr), SPW_ERROR_NOT_MANAGED);
  EXPECT_EQ(spw_owns(p), 0);
  EXPECT_EQ(spw_malloc(0, 0, nullptr), nullptr);
  EXPECT_EQ(spw_last_status(), SPW_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(spw_malloc(kMiB, 99, nullptr), nullptr);
  EXPECT_EQ(spw_last_status(), SPW_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(spw_get_stats(nullptr), SPW_ERROR_INVALID_ARGUMENT);
}

TEST(CApiTest, StatsStructsFromOlderHeadersAreFilledOnlyAsFarAsTheyGo) {
  StartDevice();
  void* p = spw_malloc(kMiB, 0, nullptr);
  ASSERT_NE(p, nullptr);
  struct {
    spw_stats prefix;
    uint64_t guard;
  } old = {};
  old.prefix.struct_size = offsetof(spw_stats, allocated_bytes);  // knows only `allocations`
  old.guard = 0xfeedface;
  old.prefix.allocated_bytes = 77;
  ASSERT_EQ(spw_get_stats(&old.prefix), SPW_OK);
  EXPECT_EQ(old.prefix.allocations, 1u);
  EXPECT_EQ(old.prefix.allocated_bytes, 77u);  // beyond its size: untouched
  EXPECT_EQ(old.guard, 0xfeedfaceu);
  spw_free(p, kMiB, 0, nullptr);
}

TEST(CApiTest, EveryStatusHasAStringAndTheVersionMatchesTheHeader) {
  for (int s = SPW_OK; s <= SPW_ERROR_INTERNAL; ++s) {
    EXPECT_STRNE(spw_status_string(static_cast<spw_status>(s)), "unknown status");
  }
  EXPECT_EQ(spw_version(), static_cast<unsigned>(SPILLWAY_VERSION));
}

TEST(CApiTest, OptionsCanBeSetBeforeStartOnly) {
  EXPECT_EQ(spw_set_option("HBM_LIMIT", "oops"), SPW_ERROR_CONFIG);
  EXPECT_EQ(spw_set_option("SPILLWAY_HBM_LIMIT", "8M"), SPW_OK);
  StartDevice();
  void* p = spw_malloc(16 * kMiB, 0, nullptr);
  ASSERT_NE(p, nullptr);
  spw_stats stats = {};
  stats.struct_size = sizeof(stats);
  ASSERT_EQ(spw_get_stats(&stats), SPW_OK);
  EXPECT_EQ(stats.device_bytes, 8 * kMiB);  // the override, not the 90% default
  EXPECT_EQ(stats.host_bytes, 8 * kMiB);
  EXPECT_EQ(spw_set_option("SPILLWAY_HBM_LIMIT", "16M"), SPW_ERROR_NOT_INITIALIZED);
  spw_free(p, 16 * kMiB, 0, nullptr);
}

// SPILLWAY_STATS is written when the process exits, with nobody calling spw_shutdown.
TEST(CApiTest, StatisticsAreWrittenAtExit) {
  std::string path = ::testing::TempDir() + "spillway-stats-at-exit.json";
  std::remove(path.c_str());
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("SPILLWAY_STATS", path.c_str(), 1);
        StartDevice();
        if (spw_malloc(3 * kMiB, 0, nullptr) == nullptr) std::exit(3);
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
  FILE* file = std::fopen(path.c_str(), "r");
  ASSERT_NE(file, nullptr) << "no statistics at " << path;
  char text[4096] = {};
  size_t n = std::fread(text, 1, sizeof(text) - 1, file);
  std::fclose(file);
  std::string json(text, n);
  EXPECT_NE(json.find("\"allocations\": 1"), std::string::npos) << json;
  EXPECT_NE(json.find("\"allocated_bytes\": 3145728"), std::string::npos) << json;
  std::remove(path.c_str());
}

}  // namespace
