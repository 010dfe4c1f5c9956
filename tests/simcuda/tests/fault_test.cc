// SPDX-License-Identifier: Apache-2.0
//
// The fault rule: a kernel touching device memory that is not mapped, mapped without
// access, or unmapped while it runs does not crash the process. The launch itself
// succeeds (launches are asynchronous); the next synchronisation reports
// CUDA_ERROR_ILLEGAL_ADDRESS, and from then on every call in that context does, as on a
// GPU. Each test ends normally, which is the proof that the process survived.
#include <cuda.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stop_token>
#include <thread>
#include <vector>

#include "test_kernels.h"
#include "test_util.h"

namespace simcuda_test {
namespace {

class FaultTest : public DriverTest {
 protected:
  void SetUp() override {
    DriverTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_NO_FATAL_FAILURE(LoadTestModule());
    prop_ = VmmProp(CU_MEM_LOCATION_TYPE_DEVICE, device_);
    granule_ = Granularity(prop_);
    ASSERT_GT(granule_, 0u);
    CU_ASSERT(cuMemAlloc(&result_, sizeof(uint64_t)));
    CU_ASSERT(cuMemsetD8(result_, 0, sizeof(uint64_t)));
  }

  // Asserts the context is poisoned: a few unrelated calls all report ILLEGAL_ADDRESS.
  void ExpectStickyIllegalAddress() {
    CU_EXPECT_STATUS(CUDA_ERROR_ILLEGAL_ADDRESS, cuCtxSynchronize()) << "the error is sticky";
    CUdeviceptr ptr = 0;
    CU_EXPECT_STATUS(CUDA_ERROR_ILLEGAL_ADDRESS, cuMemAlloc(&ptr, 4096));
    const uint32_t word = 1;
    CU_EXPECT_STATUS(CUDA_ERROR_ILLEGAL_ADDRESS, cuMemcpyHtoD(result_, &word, sizeof(word)));
    uint32_t back = 0;
    CU_EXPECT_STATUS(CUDA_ERROR_ILLEGAL_ADDRESS, cuMemcpyDtoH(&back, result_, sizeof(back)));
    uint32_t value = 1;
    CU_EXPECT_STATUS(CUDA_ERROR_ILLEGAL_ADDRESS,
                     Launch(Kernel("write_u32"), nullptr, {&result_, &value}));
    CU_EXPECT_STATUS(CUDA_ERROR_ILLEGAL_ADDRESS, cuStreamSynchronize(nullptr));
  }

  CUmemAllocationProp prop_ = {};
  size_t granule_ = 0;
  CUdeviceptr result_ = 0;  // where kernels put what they read
};

TEST_F(FaultTest, ReadingAnUnmappedGranuleIsIllegalAddress) {
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, 2 * granule_, 0, 0, 0));
  CUmemGenericAllocationHandle handle = 0;
  CU_ASSERT(cuMemCreate(&handle, granule_, &prop_, 0));
  CU_ASSERT(cuMemMap(va, granule_, 0, handle, 0));  // only the first granule
  CU_ASSERT(GrantAccess(va, granule_, device_));
  CU_ASSERT(cuMemsetD32(va, 7, granule_ / 4));

  // Reading the mapped granule works.
  CUdeviceptr mapped = va + 64;
  CU_ASSERT(Launch(Kernel("read_u32"), nullptr, {&mapped, &result_}));
  CU_ASSERT(cuCtxSynchronize());
  uint32_t seen = 0;
  CU_ASSERT(cuMemcpyDtoH(&seen, result_, sizeof(seen)));
  EXPECT_EQ(seen, 7u);

  // Reading the reserved-but-unmapped one faults, reported at synchronisation.
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUdeviceptr unmapped = va + granule_ + 64;
  CU_EXPECT(Launch(Kernel("read_u32"), stream, {&unmapped, &result_}))
      << "launches are asynchronous: the fault is reported later";
  CU_EXPECT_STATUS(CUDA_ERROR_ILLEGAL_ADDRESS, cuStreamSynchronize(stream));
  ExpectStickyIllegalAddress();
}

TEST_F(FaultTest, FaultIsReportedByCtxSynchronize) {
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, 2 * granule_, 0, 0, 0));
  CUmemGenericAllocationHandle handle = 0;
  CU_ASSERT(cuMemCreate(&handle, granule_, &prop_, 0));
  CU_ASSERT(cuMemMap(va, granule_, 0, handle, 0));
  CU_ASSERT(GrantAccess(va, granule_, device_));
  CUdeviceptr unmapped = va + granule_;
  CU_EXPECT(Launch(Kernel("read_u32"), nullptr, {&unmapped, &result_}));
  CU_EXPECT_STATUS(CUDA_ERROR_ILLEGAL_ADDRESS, cuCtxSynchronize());
  ExpectStickyIllegalAddress();
}

TEST_F(FaultTest, WritingAnUnmappedGranuleIsIllegalAddress) {
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, 2 * granule_, 0, 0, 0));
  CUmemGenericAllocationHandle handle = 0;
  CU_ASSERT(cuMemCreate(&handle, granule_, &prop_, 0));
  CU_ASSERT(cuMemMap(va, granule_, 0, handle, 0));
  CU_ASSERT(GrantAccess(va, granule_, device_));
  CUdeviceptr unmapped = va + granule_ + 4;
  uint32_t value = 5;
  CU_EXPECT(Launch(Kernel("write_u32"), nullptr, {&unmapped, &value}));
  CU_EXPECT_STATUS(CUDA_ERROR_ILLEGAL_ADDRESS, cuCtxSynchronize());
  ExpectStickyIllegalAddress();
}

TEST_F(FaultTest, MappedWithoutAccessIsIllegalAddress) {
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, granule_, 0, 0, 0));
  CUmemGenericAllocationHandle handle = 0;
  CU_ASSERT(cuMemCreate(&handle, granule_, &prop_, 0));
  CU_ASSERT(cuMemMap(va, granule_, 0, handle, 0));  // no cuMemSetAccess
  CU_EXPECT(Launch(Kernel("read_u32"), nullptr, {&va, &result_}));
  CU_EXPECT_STATUS(CUDA_ERROR_ILLEGAL_ADDRESS, cuCtxSynchronize());
  ExpectStickyIllegalAddress();
}

TEST_F(FaultTest, UnmappingUnderARunningKernelIsIllegalAddress) {
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, granule_, 0, 0, 0));
  CUmemGenericAllocationHandle handle = 0;
  CU_ASSERT(cuMemCreate(&handle, granule_, &prop_, 0));
  CU_ASSERT(cuMemMap(va, granule_, 0, handle, 0));
  CU_ASSERT(GrantAccess(va, granule_, device_));
  CU_ASSERT(cuMemsetD32(va, 1, granule_ / 4));

  uint32_t* flags = nullptr;  // [0] = kernel started, [1] = stop
  CU_ASSERT(cuMemAllocHost(reinterpret_cast<void**>(&flags), 2 * sizeof(uint32_t)));
  flags[0] = flags[1] = 0;
  CUdeviceptr started = reinterpret_cast<CUdeviceptr>(&flags[0]);
  CUdeviceptr stop = reinterpret_cast<CUdeviceptr>(&flags[1]);
  // Whatever happens, the kernel is told to stop within a second, so nothing hangs (for
  // instance if cuMemUnmap waited for the kernel, which CUDA's does not).
  std::jthread watchdog([flags](std::stop_token cancel) {
    for (int i = 0; i < 100 && !cancel.stop_requested(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    __atomic_store_n(&flags[1], 1u, __ATOMIC_RELEASE);
  });

  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CU_ASSERT(Launch(Kernel("read_until_stopped"), stream, {&va, &started, &stop, &result_}));
  ASSERT_TRUE(WaitUntil([&] { return __atomic_load_n(&flags[0], __ATOMIC_ACQUIRE) != 0; }))
      << "the kernel never started";
  CU_EXPECT(cuMemUnmap(va, granule_));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it read the hole
  __atomic_store_n(&flags[1], 1u, __ATOMIC_RELEASE);
  CU_EXPECT_STATUS(CUDA_ERROR_ILLEGAL_ADDRESS, cuStreamSynchronize(stream));
  ExpectStickyIllegalAddress();
}

TEST_F(FaultTest, OrdinaryMemoryDoesNotFault) {
  // Control for the tests above: the same kernels on ordinary memory do not fault.
  CUdeviceptr ptr = 0;
  CU_ASSERT(cuMemAlloc(&ptr, 4096));
  CU_ASSERT(cuMemsetD32(ptr, 3, 1024));
  CU_ASSERT(Launch(Kernel("read_u32"), nullptr, {&ptr, &result_}));
  CU_ASSERT(cuCtxSynchronize());
  uint32_t seen = 0;
  CU_ASSERT(cuMemcpyDtoH(&seen, result_, sizeof(seen)));
  EXPECT_EQ(seen, 3u);
  CU_EXPECT(cuMemFree(ptr));
  CUdeviceptr again = 0;
  CU_EXPECT(cuMemAlloc(&again, 4096)) << "no fault, no sticky error";
  CU_EXPECT(cuMemFree(again));
}

TEST_F(FaultTest, WorkQueuedBeforeTheFaultStillCompletes) {
  // Work ahead of the faulting kernel in the same stream finishes normally.
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, 2 * granule_, 0, 0, 0));
  CUmemGenericAllocationHandle handle = 0;
  CU_ASSERT(cuMemCreate(&handle, granule_, &prop_, 0));
  CU_ASSERT(cuMemMap(va, granule_, 0, handle, 0));
  CU_ASSERT(GrantAccess(va, granule_, device_));
  uint32_t* pinned = nullptr;
  CU_ASSERT(cuMemAllocHost(reinterpret_cast<void**>(&pinned), sizeof(uint32_t)));
  *pinned = 0;
  CUdeviceptr target = reinterpret_cast<CUdeviceptr>(pinned);
  uint32_t value = 11;
  CU_ASSERT(Launch(Kernel("write_u32"), nullptr, {&target, &value}));
  CUdeviceptr unmapped = va + granule_;
  CU_EXPECT(Launch(Kernel("read_u32"), nullptr, {&unmapped, &result_}));
  CU_EXPECT_STATUS(CUDA_ERROR_ILLEGAL_ADDRESS, cuCtxSynchronize());
  EXPECT_EQ(__atomic_load_n(pinned, __ATOMIC_ACQUIRE), 11u);
}

}  // namespace
}  // namespace simcuda_test
