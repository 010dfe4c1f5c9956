// SPDX-License-Identifier: Apache-2.0
//
// The modelled link: with SIMCUDA_H2D_GBPS / SIMCUDA_D2H_GBPS set, async copies take as
// long as the link would need, there is one copy engine per direction (two host-to-device
// copies on different streams serialise) and the two directions overlap.
//
// Times are compared with each other within one run, with wide margins, never with a
// fixed wall-clock budget: at 1 GB/s a 64 MiB copy is modelled at ~67 ms, far above the
// ~10 ms the memcpy itself takes here, so the ratios are dominated by the model.
#include <cuda.h>
#include <gtest/gtest.h>
#include <string.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "test_util.h"

namespace simcuda_test {
namespace {

class CopyEngineTest : public DriverTest {
 protected:
  EnvList Environment() const override {
    return {{"SIMCUDA_H2D_GBPS", "1"}, {"SIMCUDA_D2H_GBPS", "1"}};
  }

  void SetUp() override {
    DriverTest::SetUp();
    if (HasFatalFailure()) return;
    for (int i = 0; i < 2; ++i) {
      CU_ASSERT(cuStreamCreate(&streams_[i], CU_STREAM_NON_BLOCKING));
      CU_ASSERT(cuMemAlloc(&device_buf_[i], kBytes));
      CU_ASSERT(cuMemAllocHost(&host_buf_[i], kBytes));
      memset(host_buf_[i], i + 1, kBytes);
      // Touch the device pages now (memsets are not link traffic), so first-touch page
      // faults do not inflate the first timed copy.
      CU_ASSERT(cuMemsetD8(device_buf_[i], 0, kBytes));
    }
  }
  void TearDown() override {
    for (int i = 0; i < 2; ++i) {
      if (streams_[i] != nullptr) (void)cuStreamDestroy(streams_[i]);
      if (device_buf_[i] != 0) (void)cuMemFree(device_buf_[i]);
      if (host_buf_[i] != nullptr) (void)cuMemFreeHost(host_buf_[i]);
    }
    DriverTest::TearDown();
  }

  // Runs `enqueue`, then waits for both streams; returns the elapsed milliseconds.
  template <typename Enqueue>
  double TimeMs(Enqueue enqueue) {
    const auto start = std::chrono::steady_clock::now();
    enqueue();
    EXPECT_EQ(CUDA_SUCCESS, cuStreamSynchronize(streams_[0]));
    EXPECT_EQ(CUDA_SUCCESS, cuStreamSynchronize(streams_[1]));
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
        .count();
  }

  static constexpr size_t kBytes = 64 * kMiB;
  static constexpr double kModelledMs = kBytes / 1e9 * 1e3;  // 1 GB/s
  CUstream streams_[2] = {};
  CUdeviceptr device_buf_[2] = {};
  void* host_buf_[2] = {};
};

TEST_F(CopyEngineTest, HostToDeviceCopiesSerialiseOnOneEngine) {
  const double single = TimeMs([&] {
    EXPECT_EQ(CUDA_SUCCESS, cuMemcpyHtoDAsync(device_buf_[0], host_buf_[0], kBytes, streams_[0]));
  });
  EXPECT_GE(single, 0.5 * kModelledMs) << "the link model is not applied";
  const double two = TimeMs([&] {
    EXPECT_EQ(CUDA_SUCCESS, cuMemcpyHtoDAsync(device_buf_[0], host_buf_[0], kBytes, streams_[0]));
    EXPECT_EQ(CUDA_SUCCESS, cuMemcpyHtoDAsync(device_buf_[1], host_buf_[1], kBytes, streams_[1]));
  });
  std::printf("one H2D copy %.1f ms, two on two streams %.1f ms (ratio %.2f)\n", single, two,
              two / single);
  EXPECT_GE(two, 1.6 * single) << "single " << single << " ms, two H2D copies " << two << " ms";
}

TEST_F(CopyEngineTest, OppositeDirectionsOverlap) {
  const double single = TimeMs([&] {
    EXPECT_EQ(CUDA_SUCCESS, cuMemcpyHtoDAsync(device_buf_[0], host_buf_[0], kBytes, streams_[0]));
  });
  EXPECT_GE(single, 0.5 * kModelledMs) << "the link model is not applied";
  const double both = TimeMs([&] {
    EXPECT_EQ(CUDA_SUCCESS, cuMemcpyHtoDAsync(device_buf_[0], host_buf_[0], kBytes, streams_[0]));
    EXPECT_EQ(CUDA_SUCCESS, cuMemcpyDtoHAsync(host_buf_[1], device_buf_[1], kBytes, streams_[1]));
  });
  std::printf("one H2D copy %.1f ms, H2D + D2H on two streams %.1f ms (ratio %.2f)\n", single, both,
              both / single);
  EXPECT_LE(both, 1.5 * single) << "single " << single << " ms, H2D + D2H " << both << " ms";
}

TEST_F(CopyEngineTest, DeviceToHostIsModelledToo) {
  const double d2h = TimeMs([&] {
    EXPECT_EQ(CUDA_SUCCESS, cuMemcpyDtoHAsync(host_buf_[0], device_buf_[0], kBytes, streams_[0]));
  });
  EXPECT_GE(d2h, 0.5 * kModelledMs);
}

TEST_F(CopyEngineTest, AsyncCopyReturnsBeforeItCompletes) {
  // The call itself must not take the modelled time: it only queues the copy.
  const auto start = std::chrono::steady_clock::now();
  CU_ASSERT(cuMemcpyHtoDAsync(device_buf_[0], host_buf_[0], kBytes, streams_[0]));
  const double enqueue_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_READY, cuStreamQuery(streams_[0]));
  CU_ASSERT(cuStreamSynchronize(streams_[0]));
  EXPECT_LT(enqueue_ms, 0.5 * kModelledMs);
}

// Events time a copy as the device would: a copy queued behind a wait starts no earlier
// than what it waits for, even when the link freed before that (a copy right behind
// another on the engine starts when the link frees, not when its worker wakes up, but the
// engine is no reason to start before the copy is ready). So the events around it never
// show it faster than the link.
TEST_F(CopyEngineTest, ACopyNeverStartsBeforeWhatItWaitsFor) {
  constexpr size_t kFirst = 4 * kMiB, kSecond = 256 * 1024;
  CUstream gate = nullptr;
  CUevent opened = nullptr, before = nullptr, after = nullptr;
  CU_ASSERT(cuStreamCreate(&gate, CU_STREAM_NON_BLOCKING));
  for (CUevent* e : {&opened, &before, &after}) CU_ASSERT(cuEventCreate(e, CU_EVENT_DEFAULT));
  // The link frees after ~4.2 ms; the copy's dependency completes ~0.2 ms after that.
  CU_ASSERT(cuMemcpyHtoDAsync(device_buf_[0], host_buf_[0], kFirst, streams_[0]));
  CU_ASSERT(cuLaunchHostFunc(
      gate, [](void*) { std::this_thread::sleep_for(std::chrono::microseconds(4400)); }, nullptr));
  CU_ASSERT(cuEventRecord(opened, gate));
  CU_ASSERT(cuStreamWaitEvent(streams_[1], opened, 0));
  CU_ASSERT(cuEventRecord(before, streams_[1]));
  CU_ASSERT(cuMemcpyHtoDAsync(device_buf_[1], host_buf_[1], kSecond, streams_[1]));
  CU_ASSERT(cuEventRecord(after, streams_[1]));
  CU_ASSERT(cuCtxSynchronize());
  float copy_ms = 0;
  CU_ASSERT(cuEventElapsedTime(&copy_ms, before, after));
  const double modelled_ms = kSecond / 1e9 * 1e3;
  EXPECT_GE(copy_ms, 0.95 * modelled_ms) << "faster than the link";
  EXPECT_LT(copy_ms, 50 * modelled_ms);
  for (CUevent e : {opened, before, after}) (void)cuEventDestroy(e);
  (void)cuStreamDestroy(gate);
}

TEST_F(CopyEngineTest, ModelledCopiesMoveTheRightBytes) {
  CU_ASSERT(cuMemcpyHtoDAsync(device_buf_[0], host_buf_[0], kBytes, streams_[0]));
  CU_ASSERT(cuMemcpyDtoHAsync(host_buf_[1], device_buf_[0], kBytes, streams_[0]));
  CU_ASSERT(cuStreamSynchronize(streams_[0]));
  EXPECT_EQ(memcmp(host_buf_[0], host_buf_[1], kBytes), 0);
}

}  // namespace
}  // namespace simcuda_test
