// SPDX-License-Identifier: Apache-2.0
//
// Streams, events and host functions: ordering within a stream, across streams through
// events, the legacy default stream's implicit synchronisation, and event timing.
//
// Ordering is observed without clocks: a host function blocks its stream on a Gate, and a
// Probe queued elsewhere records whether that gated function had finished when it ran.
#include <cuda.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "test_kernels.h"
#include "test_util.h"

namespace simcuda_test {
namespace {

using StreamTest = DriverTest;
using EventTest = DriverTest;

TEST_F(StreamTest, CreateQueryDestroy) {
  for (unsigned flags : {CU_STREAM_DEFAULT, CU_STREAM_NON_BLOCKING}) {
    CUstream stream = nullptr;
    CU_ASSERT(cuStreamCreate(&stream, flags));
    ASSERT_NE(stream, nullptr);
    CU_EXPECT(cuStreamQuery(stream)) << "an idle stream is complete";
    CU_EXPECT(cuStreamSynchronize(stream));
    CU_EXPECT(cuStreamDestroy(stream));
  }
  CU_EXPECT(cuStreamQuery(nullptr));
  CU_EXPECT(cuStreamSynchronize(nullptr));
}

TEST_F(StreamTest, QueryIsNotReadyWhileWorkIsPending) {
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  Gate& gate = NewGate();
  Probe& after = NewProbe();
  CU_ASSERT(cuLaunchHostFunc(stream, Gate::WaitFn, &gate));
  CU_ASSERT(cuLaunchHostFunc(stream, Probe::RunFn, &after));
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_READY, cuStreamQuery(stream));
  EXPECT_EQ(after.runs.load(), 0) << "work behind a blocked host function ran early";
  gate.Open();
  CU_ASSERT(cuStreamSynchronize(stream));
  EXPECT_EQ(after.runs.load(), 1);
  CU_EXPECT(cuStreamQuery(stream));
  CU_EXPECT(cuStreamDestroy(stream));
}

TEST_F(StreamTest, WorkInOneStreamRunsInOrder) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  uint64_t n = 1 << 16;
  CUdeviceptr buf = 0;
  CU_ASSERT(cuMemAlloc(&buf, n * sizeof(uint32_t)));
  uint32_t* host = nullptr;
  CU_ASSERT(cuMemAllocHost(reinterpret_cast<void**>(&host), n * sizeof(uint32_t)));
  uint32_t value = 5;
  uint32_t delta = 2;
  CU_ASSERT(cuMemsetD32Async(buf, 1000, n, stream));
  CU_ASSERT(Launch(Kernel("fill_u32"), stream, {&buf, &value, &n}, 256));
  CU_ASSERT(Launch(Kernel("add_u32"), stream, {&buf, &delta, &n}, 256));
  CU_ASSERT(Launch(Kernel("add_u32"), stream, {&buf, &delta, &n}, 256));
  CU_ASSERT(cuMemcpyDtoHAsync(host, buf, n * sizeof(uint32_t), stream));
  CU_ASSERT(cuStreamSynchronize(stream));
  for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(host[i], 9u) << i;
  CU_EXPECT(cuMemFreeHost(host));
  CU_EXPECT(cuMemFree(buf));
  CU_EXPECT(cuStreamDestroy(stream));
}

TEST_F(StreamTest, HostFunctionsRunInOrderAfterPriorWork) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  uint32_t* pinned = nullptr;
  CU_ASSERT(cuMemAllocHost(reinterpret_cast<void**>(&pinned), sizeof(uint32_t)));
  *pinned = 0;
  struct Log {
    std::mutex mu;
    std::vector<uint32_t> seen;
    uint32_t* watched;
  } log;
  log.watched = pinned;
  auto record = [](void* p) {
    auto* self = static_cast<Log*>(p);
    std::lock_guard<std::mutex> lock(self->mu);
    self->seen.push_back(__atomic_load_n(self->watched, __ATOMIC_ACQUIRE));
  };
  CUdeviceptr target = reinterpret_cast<CUdeviceptr>(pinned);  // pinned memory is UVA
  for (uint32_t i = 1; i <= 5; ++i) {
    uint32_t value = i;
    CU_ASSERT(Launch(Kernel("write_u32"), stream, {&target, &value}));
    CU_ASSERT(cuLaunchHostFunc(stream, record, &log));
  }
  CU_ASSERT(cuStreamSynchronize(stream));
  EXPECT_EQ(log.seen, (std::vector<uint32_t>{1, 2, 3, 4, 5}));
  CU_EXPECT(cuMemFreeHost(pinned));
  CU_EXPECT(cuStreamDestroy(stream));
}

TEST_F(StreamTest, WaitEventOrdersAcrossStreams) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  CUstream producer;
  CUstream consumer;
  CU_ASSERT(cuStreamCreate(&producer, CU_STREAM_NON_BLOCKING));
  CU_ASSERT(cuStreamCreate(&consumer, CU_STREAM_NON_BLOCKING));
  CUevent ready;
  CU_ASSERT(cuEventCreate(&ready, CU_EVENT_DISABLE_TIMING));
  uint64_t n = 4096;
  CUdeviceptr src = 0;
  CUdeviceptr dst = 0;
  CU_ASSERT(cuMemAlloc(&src, n * sizeof(uint32_t)));
  CU_ASSERT(cuMemAlloc(&dst, n * sizeof(uint32_t)));
  CU_ASSERT(cuMemsetD32(src, 0, n));
  CU_ASSERT(cuMemsetD32(dst, 0, n));

  // Producer: held back by a gate, then writes 42 everywhere, then records the event.
  Gate& gate = NewGate();
  uint32_t value = 42;
  CU_ASSERT(cuLaunchHostFunc(producer, Gate::WaitFn, &gate));
  CU_ASSERT(Launch(Kernel("fill_u32"), producer, {&src, &value, &n}, 256));
  CU_ASSERT(cuEventRecord(ready, producer));
  // Consumer: waits for the event, then copies what the producer wrote.
  CU_ASSERT(cuStreamWaitEvent(consumer, ready, 0));
  CU_ASSERT(Launch(Kernel("copy_u32"), consumer, {&dst, &src, &n}, 256));

  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_READY, cuStreamQuery(consumer));
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_READY, cuEventQuery(ready));
  gate.Open();
  CU_ASSERT(cuStreamSynchronize(consumer));
  CU_EXPECT(cuEventQuery(ready)) << "the consumer finished, so the event it waited on did";
  std::vector<uint32_t> out(n, 0);
  CU_ASSERT(cuMemcpyDtoH(out.data(), dst, n * sizeof(uint32_t)));
  EXPECT_EQ(out, std::vector<uint32_t>(n, 42)) << "consumer ran before the producer's kernel";

  CU_EXPECT(cuEventDestroy(ready));
  CU_EXPECT(cuMemFree(src));
  CU_EXPECT(cuMemFree(dst));
  CU_EXPECT(cuStreamDestroy(producer));
  CU_EXPECT(cuStreamDestroy(consumer));
}

TEST_F(StreamTest, WaitEventAfterSlowKernel) {
  // The producer is a kernel that spins on a host-visible flag rather than a host function.
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  CUstream producer;
  CUstream consumer;
  CU_ASSERT(cuStreamCreate(&producer, CU_STREAM_NON_BLOCKING));
  CU_ASSERT(cuStreamCreate(&consumer, CU_STREAM_NON_BLOCKING));
  CUevent ready;
  CU_ASSERT(cuEventCreate(&ready, CU_EVENT_DEFAULT));
  uint32_t* flags = nullptr;  // [0] = go, [1] = produced value, [2] = consumer's copy
  CU_ASSERT(cuMemAllocHost(reinterpret_cast<void**>(&flags), 3 * sizeof(uint32_t)));
  flags[0] = flags[1] = flags[2] = 0;
  CUdeviceptr go = reinterpret_cast<CUdeviceptr>(&flags[0]);
  CUdeviceptr produced = reinterpret_cast<CUdeviceptr>(&flags[1]);
  CUdeviceptr copied = reinterpret_cast<CUdeviceptr>(&flags[2]);
  uint32_t value = 77;
  uint64_t one = 1;
  CU_ASSERT(Launch(Kernel("spin_until_set"), producer, {&go, &produced, &value}));
  CU_ASSERT(cuEventRecord(ready, producer));
  CU_ASSERT(cuStreamWaitEvent(consumer, ready, 0));
  CU_ASSERT(Launch(Kernel("copy_u32"), consumer, {&copied, &produced, &one}));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(__atomic_load_n(&flags[2], __ATOMIC_ACQUIRE), 0u) << "consumer did not wait";
  __atomic_store_n(&flags[0], 1u, __ATOMIC_RELEASE);
  CU_ASSERT(cuStreamSynchronize(consumer));
  EXPECT_EQ(flags[2], 77u);
  CU_EXPECT(cuEventDestroy(ready));
  CU_EXPECT(cuMemFreeHost(flags));
  CU_EXPECT(cuStreamDestroy(producer));
  CU_EXPECT(cuStreamDestroy(consumer));
}

TEST_F(StreamTest, LegacyStreamWaitsForBlockingStreams) {
  CUstream blocking;
  CU_ASSERT(cuStreamCreate(&blocking, CU_STREAM_DEFAULT));
  Gate& gate = NewGate();
  Probe& probe = NewProbe(&gate);
  CU_ASSERT(cuLaunchHostFunc(blocking, Gate::WaitFn, &gate));
  CU_ASSERT(cuLaunchHostFunc(nullptr, Probe::RunFn, &probe));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(probe.runs.load(), 0) << "legacy stream work overtook a blocking stream";
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_READY, cuStreamQuery(nullptr));
  gate.Open();
  CU_ASSERT(cuStreamSynchronize(nullptr));
  EXPECT_EQ(probe.runs.load(), 1);
  EXPECT_EQ(probe.after_gate.load(), 1);
  CU_EXPECT(cuStreamDestroy(blocking));
}

TEST_F(StreamTest, BlockingStreamsWaitForLegacyStream) {
  CUstream blocking;
  CU_ASSERT(cuStreamCreate(&blocking, CU_STREAM_DEFAULT));
  Gate& gate = NewGate();
  Probe& probe = NewProbe(&gate);
  CU_ASSERT(cuLaunchHostFunc(nullptr, Gate::WaitFn, &gate));
  CU_ASSERT(cuLaunchHostFunc(blocking, Probe::RunFn, &probe));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(probe.runs.load(), 0) << "blocking stream overtook the legacy stream";
  gate.Open();
  CU_ASSERT(cuStreamSynchronize(blocking));
  EXPECT_EQ(probe.after_gate.load(), 1);
  CU_EXPECT(cuStreamDestroy(blocking));
}

TEST_F(StreamTest, LegacyStreamIgnoresNonBlockingStreams) {
  CUstream non_blocking;
  CU_ASSERT(cuStreamCreate(&non_blocking, CU_STREAM_NON_BLOCKING));
  Gate& gate = NewGate();
  Probe& probe = NewProbe(&gate);
  CU_ASSERT(cuLaunchHostFunc(non_blocking, Gate::WaitFn, &gate));
  CU_ASSERT(cuLaunchHostFunc(nullptr, Probe::RunFn, &probe));
  // Must complete while the non-blocking stream is still held by the gate.
  CU_ASSERT(cuStreamSynchronize(nullptr));
  EXPECT_EQ(probe.runs.load(), 1);
  EXPECT_EQ(probe.after_gate.load(), 0) << "legacy stream waited for a non-blocking stream";
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_READY, cuStreamQuery(non_blocking));
  gate.Open();
  CU_EXPECT(cuStreamSynchronize(non_blocking));
  CU_EXPECT(cuStreamDestroy(non_blocking));
}

TEST_F(StreamTest, NonBlockingStreamDoesNotWaitForLegacyStream) {
  CUstream non_blocking;
  CU_ASSERT(cuStreamCreate(&non_blocking, CU_STREAM_NON_BLOCKING));
  Gate& gate = NewGate();
  Probe& probe = NewProbe(&gate);
  CU_ASSERT(cuLaunchHostFunc(nullptr, Gate::WaitFn, &gate));
  CU_ASSERT(cuLaunchHostFunc(non_blocking, Probe::RunFn, &probe));
  CU_ASSERT(cuStreamSynchronize(non_blocking));
  EXPECT_EQ(probe.after_gate.load(), 0);
  gate.Open();
  CU_EXPECT(cuStreamSynchronize(nullptr));
  CU_EXPECT(cuStreamDestroy(non_blocking));
}

TEST_F(StreamTest, IndependentStreamsRunConcurrently) {
  // Two non-blocking streams: the second must make progress while the first is held.
  CUstream held;
  CUstream free_running;
  CU_ASSERT(cuStreamCreate(&held, CU_STREAM_NON_BLOCKING));
  CU_ASSERT(cuStreamCreate(&free_running, CU_STREAM_NON_BLOCKING));
  Gate& gate = NewGate();
  Probe& probe = NewProbe(&gate);
  CU_ASSERT(cuLaunchHostFunc(held, Gate::WaitFn, &gate));
  CU_ASSERT(cuLaunchHostFunc(free_running, Probe::RunFn, &probe));
  CU_ASSERT(cuStreamSynchronize(free_running));
  EXPECT_EQ(probe.after_gate.load(), 0);
  gate.Open();
  CU_EXPECT(cuStreamSynchronize(held));
  CU_EXPECT(cuStreamDestroy(held));
  CU_EXPECT(cuStreamDestroy(free_running));
}

TEST_F(StreamTest, CtxSynchronizeWaitsForAllStreams) {
  CUstream first;
  CUstream second;
  CU_ASSERT(cuStreamCreate(&first, CU_STREAM_NON_BLOCKING));
  CU_ASSERT(cuStreamCreate(&second, CU_STREAM_DEFAULT));
  Gate& gate = NewGate();
  Probe& a = NewProbe();
  Probe& b = NewProbe();
  CU_ASSERT(cuLaunchHostFunc(first, Gate::WaitFn, &gate));
  CU_ASSERT(cuLaunchHostFunc(first, Probe::RunFn, &a));
  CU_ASSERT(cuLaunchHostFunc(second, Probe::RunFn, &b));
  std::thread opener([&gate] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    gate.Open();
  });
  CU_EXPECT(cuCtxSynchronize());
  opener.join();
  EXPECT_EQ(a.runs.load(), 1);
  EXPECT_EQ(b.runs.load(), 1);
  CU_EXPECT(cuStreamDestroy(first));
  CU_EXPECT(cuStreamDestroy(second));
}

TEST_F(StreamTest, DestroyWithPendingWorkLetsItFinish) {
  // cuStreamDestroy returns at once; work already queued still completes.
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  Gate& gate = NewGate();
  Probe& probe = NewProbe();
  CU_ASSERT(cuLaunchHostFunc(stream, Gate::WaitFn, &gate));
  CU_ASSERT(cuLaunchHostFunc(stream, Probe::RunFn, &probe));
  CU_ASSERT(cuStreamDestroy(stream));
  gate.Open();
  EXPECT_TRUE(WaitUntil([&] { return probe.runs.load() == 1; }))
      << "work queued before cuStreamDestroy never ran";
  CU_EXPECT(cuCtxSynchronize());
}

TEST_F(StreamTest, StreamCreateRejectsNullOutput) {
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuStreamCreate(nullptr, CU_STREAM_DEFAULT));
}

TEST_F(EventTest, RecordQuerySynchronize) {
  CUevent event;
  CU_ASSERT(cuEventCreate(&event, CU_EVENT_DEFAULT));
  CU_EXPECT(cuEventQuery(event)) << "an event never recorded has no pending work";
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  Gate& gate = NewGate();
  CU_ASSERT(cuLaunchHostFunc(stream, Gate::WaitFn, &gate));
  CU_ASSERT(cuEventRecord(event, stream));
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_READY, cuEventQuery(event));
  std::thread opener([&gate] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    gate.Open();
  });
  CU_EXPECT(cuEventSynchronize(event));
  opener.join();
  CU_EXPECT(cuEventQuery(event));
  CU_EXPECT(cuEventDestroy(event));
  CU_EXPECT(cuStreamDestroy(stream));
}

TEST_F(EventTest, RecordOnLegacyStream) {
  CUevent event;
  CU_ASSERT(cuEventCreate(&event, CU_EVENT_DEFAULT));
  CU_ASSERT(cuEventRecord(event, nullptr));
  CU_EXPECT(cuEventSynchronize(event));
  CU_EXPECT(cuEventQuery(event));
  CU_EXPECT(cuEventDestroy(event));
}

TEST_F(EventTest, ElapsedTimeCoversWorkBetweenEvents) {
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUevent start;
  CUevent stop;
  CU_ASSERT(cuEventCreate(&start, CU_EVENT_DEFAULT));
  CU_ASSERT(cuEventCreate(&stop, CU_EVENT_DEFAULT));
  auto sleep_30ms = [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(30)); };
  CU_ASSERT(cuEventRecord(start, stream));
  CU_ASSERT(cuLaunchHostFunc(stream, sleep_30ms, nullptr));
  CU_ASSERT(cuEventRecord(stop, stream));
  CU_ASSERT(cuEventSynchronize(stop));
  float ms = -1.0f;
  CU_ASSERT(cuEventElapsedTime(&ms, start, stop));
  // A lower bound only: the host function slept at least 30 ms between the two records.
  EXPECT_GE(ms, 29.0f);
  float reverse = 0.0f;
  CU_ASSERT(cuEventElapsedTime(&reverse, stop, start));
  EXPECT_LT(reverse, 0.0f) << "elapsed time is signed";
  CU_EXPECT(cuEventDestroy(start));
  CU_EXPECT(cuEventDestroy(stop));
  CU_EXPECT(cuStreamDestroy(stream));
}

TEST_F(EventTest, ElapsedTimeErrors) {
  CUevent timed;
  CUevent untimed;
  CUevent never_recorded;
  CU_ASSERT(cuEventCreate(&timed, CU_EVENT_DEFAULT));
  CU_ASSERT(cuEventCreate(&untimed, CU_EVENT_DISABLE_TIMING));
  CU_ASSERT(cuEventCreate(&never_recorded, CU_EVENT_DEFAULT));
  CU_ASSERT(cuEventRecord(timed, nullptr));
  CU_ASSERT(cuEventRecord(untimed, nullptr));
  CU_ASSERT(cuCtxSynchronize());
  CU_EXPECT(cuEventQuery(untimed)) << "timing-disabled events still record and complete";
  float ms = 0.0f;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuEventElapsedTime(&ms, timed, untimed));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuEventElapsedTime(&ms, untimed, timed));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuEventElapsedTime(&ms, timed, never_recorded));

  // Recorded but not yet complete: NOT_READY.
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  Gate& gate = NewGate();
  CUevent pending;
  CU_ASSERT(cuEventCreate(&pending, CU_EVENT_DEFAULT));
  CU_ASSERT(cuLaunchHostFunc(stream, Gate::WaitFn, &gate));
  CU_ASSERT(cuEventRecord(pending, stream));
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_READY, cuEventElapsedTime(&ms, timed, pending));
  gate.Open();
  CU_ASSERT(cuStreamSynchronize(stream));
  CU_EXPECT(cuEventElapsedTime(&ms, timed, pending));

  for (CUevent e : {timed, untimed, never_recorded, pending}) CU_EXPECT(cuEventDestroy(e));
  CU_EXPECT(cuStreamDestroy(stream));
}

TEST_F(EventTest, ReRecordingMovesTheEvent) {
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUevent event;
  CU_ASSERT(cuEventCreate(&event, CU_EVENT_DISABLE_TIMING));
  CU_ASSERT(cuEventRecord(event, stream));
  CU_ASSERT(cuStreamSynchronize(stream));
  CU_EXPECT(cuEventQuery(event));
  Gate& gate = NewGate();
  CU_ASSERT(cuLaunchHostFunc(stream, Gate::WaitFn, &gate));
  CU_ASSERT(cuEventRecord(event, stream));
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_READY, cuEventQuery(event));
  gate.Open();
  CU_ASSERT(cuEventSynchronize(event));
  CU_EXPECT(cuEventQuery(event));
  CU_EXPECT(cuEventDestroy(event));
  CU_EXPECT(cuStreamDestroy(stream));
}

}  // namespace
}  // namespace simcuda_test
