// SPDX-License-Identifier: Apache-2.0
//
// Virtual memory management: reservations, physical handles on the device and on the host,
// mapping, access, granularity, and the capacity that device-located handles consume.
#include <cuda.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "test_kernels.h"
#include "test_util.h"

namespace simcuda_test {
namespace {

class VmmTest : public DriverTest {
 protected:
  CUmemAllocationProp DeviceProp() const { return VmmProp(CU_MEM_LOCATION_TYPE_DEVICE, device_); }
  CUmemAllocationProp HostNumaProp() const { return VmmProp(CU_MEM_LOCATION_TYPE_HOST_NUMA, 0); }

  // Fills [ptr, ptr + size) with a pattern derived from `seed`, via a copy.
  static CUresult WritePattern(CUdeviceptr ptr, size_t size, uint32_t seed) {
    std::vector<uint32_t> words(size / sizeof(uint32_t));
    for (size_t i = 0; i < words.size(); ++i)
      words[i] = seed ^ static_cast<uint32_t>(i * 2654435761u);
    return cuMemcpyHtoD(ptr, words.data(), size);
  }
  static void ExpectPattern(CUdeviceptr ptr, size_t size, uint32_t seed) {
    std::vector<uint32_t> words(size / sizeof(uint32_t), 0);
    CU_ASSERT(cuMemcpyDtoH(words.data(), ptr, size));
    for (size_t i = 0; i < words.size(); ++i) {
      ASSERT_EQ(words[i], seed ^ static_cast<uint32_t>(i * 2654435761u)) << "word " << i;
    }
  }
};

class SmallVmmTest : public VmmTest {
 protected:
  EnvList Environment() const override { return {{"SIMCUDA_DEVICE_MEMORY", "8M"}}; }
};

class CustomGranularityTest : public VmmTest {
 protected:
  EnvList Environment() const override { return {{"SIMCUDA_GRANULARITY", "64K"}}; }
};

TEST_F(VmmTest, DefaultGranularityIsTwoMiB) {
  EXPECT_EQ(Granularity(DeviceProp()), 2 * kMiB);
  EXPECT_EQ(Granularity(HostNumaProp()), 2 * kMiB);
  size_t recommended = 0;
  const CUmemAllocationProp prop = DeviceProp();
  CU_ASSERT(
      cuMemGetAllocationGranularity(&recommended, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
  EXPECT_GE(recommended, 2 * kMiB);
  EXPECT_EQ(recommended % (2 * kMiB), 0u);
}

TEST_F(CustomGranularityTest, GranularityFromEnvironment) {
  const size_t g = Granularity(DeviceProp());
  ASSERT_EQ(g, 64 * kKiB);
  CUmemGenericAllocationHandle handle = 0;
  const CUmemAllocationProp prop = DeviceProp();
  CU_ASSERT(cuMemCreate(&handle, g, &prop, 0));
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, g, 0, 0, 0));
  CU_ASSERT(cuMemMap(va, g, 0, handle, 0));
  CU_ASSERT(GrantAccess(va, g, device_));
  CU_ASSERT(WritePattern(va, g, 7));
  ExpectPattern(va, g, 7);
  CU_EXPECT(cuMemUnmap(va, g));
  CU_EXPECT(cuMemRelease(handle));
  CU_EXPECT(cuMemAddressFree(va, g));
}

TEST_F(VmmTest, ReserveCreateMapAccessUnmapRelease) {
  const size_t g = Granularity(DeviceProp());
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, 2 * g, 0, 0, 0));
  ASSERT_NE(va, 0u);
  EXPECT_EQ(va % g, 0u) << "a reservation is granularity-aligned";
  const CUmemAllocationProp prop = DeviceProp();
  CUmemGenericAllocationHandle first = 0;
  CUmemGenericAllocationHandle second = 0;
  CU_ASSERT(cuMemCreate(&first, g, &prop, 0));
  CU_ASSERT(cuMemCreate(&second, g, &prop, 0));
  EXPECT_NE(first, second);
  CU_ASSERT(cuMemMap(va, g, 0, first, 0));
  CU_ASSERT(cuMemMap(va + g, g, 0, second, 0));
  CU_ASSERT(GrantAccess(va, 2 * g, device_));
  // One copy spanning both handles.
  CU_ASSERT(WritePattern(va, 2 * g, 42));
  ExpectPattern(va, 2 * g, 42);
  // Mapped VMM memory answers pointer queries like any device memory.
  unsigned int type = 0;
  CU_ASSERT(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, va + g + 8));
  EXPECT_EQ(type, CU_MEMORYTYPE_DEVICE);

  CU_ASSERT(cuMemUnmap(va, g));
  CU_ASSERT(cuMemUnmap(va + g, g));
  CU_ASSERT(cuMemRelease(first));
  CU_ASSERT(cuMemRelease(second));
  CU_ASSERT(cuMemAddressFree(va, 2 * g));
}

TEST_F(VmmTest, KernelsUseMappedMemory) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  const size_t g = Granularity(DeviceProp());
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, g, 0, 0, 0));
  const CUmemAllocationProp prop = DeviceProp();
  CUmemGenericAllocationHandle handle = 0;
  CU_ASSERT(cuMemCreate(&handle, g, &prop, 0));
  CU_ASSERT(cuMemMap(va, g, 0, handle, 0));
  CU_ASSERT(GrantAccess(va, g, device_));
  uint64_t n = g / sizeof(uint32_t);
  uint32_t value = 0x600d;
  CU_ASSERT(cuLaunchKernel(Kernel("fill_u32"), 64, 1, 1, 256, 1, 1, 0, nullptr,
                           std::vector<void*>{&va, &value, &n}.data(), nullptr));
  CU_ASSERT(cuCtxSynchronize());
  std::vector<uint32_t> back(n, 0);
  CU_ASSERT(cuMemcpyDtoH(back.data(), va, g));
  EXPECT_EQ(back, std::vector<uint32_t>(n, 0x600d));
  CU_EXPECT(cuMemUnmap(va, g));
  CU_EXPECT(cuMemRelease(handle));
  CU_EXPECT(cuMemAddressFree(va, g));
}

TEST_F(VmmTest, SizesMustBeGranularityMultiples) {
  const size_t g = Granularity(DeviceProp());
  const CUmemAllocationProp prop = DeviceProp();
  CUmemGenericAllocationHandle handle = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemCreate(&handle, g / 2, &prop, 0));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemCreate(&handle, g + 4096, &prop, 0));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemCreate(&handle, 0, &prop, 0));
  CUdeviceptr va = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemAddressReserve(&va, g + 1, 0, 0, 0));

  CU_ASSERT(cuMemAddressReserve(&va, 2 * g, 0, 0, 0));
  CU_ASSERT(cuMemCreate(&handle, 2 * g, &prop, 0));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemMap(va, g + 4096, 0, handle, 0));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemMap(va + 4096, g, 0, handle, 0));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemMap(va, g, g, handle, 0)) << "offset must be 0";
  CU_ASSERT(cuMemMap(va, 2 * g, 0, handle, 0));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, GrantAccess(va, g + 1, device_));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemUnmap(va, g)) << "no sub-range unmaps";
  CU_ASSERT(cuMemUnmap(va, 2 * g));
  CU_EXPECT(cuMemRelease(handle));
  CU_EXPECT(cuMemAddressFree(va, 2 * g));
}

TEST_F(VmmTest, CannotMapOverAnExistingMapping) {
  const size_t g = Granularity(DeviceProp());
  const CUmemAllocationProp prop = DeviceProp();
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, g, 0, 0, 0));
  CUmemGenericAllocationHandle first = 0;
  CUmemGenericAllocationHandle second = 0;
  CU_ASSERT(cuMemCreate(&first, g, &prop, 0));
  CU_ASSERT(cuMemCreate(&second, g, &prop, 0));
  CU_ASSERT(cuMemMap(va, g, 0, first, 0));
  EXPECT_NE(CUDA_SUCCESS, cuMemMap(va, g, 0, second, 0));
  CU_EXPECT(cuMemUnmap(va, g));
  CU_EXPECT(cuMemRelease(first));
  CU_EXPECT(cuMemRelease(second));
  CU_EXPECT(cuMemAddressFree(va, g));
}

TEST_F(VmmTest, HostNumaCurrentIsRefused) {
  const CUmemAllocationProp prop = VmmProp(CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT, 0);
  CUmemGenericAllocationHandle handle = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemCreate(&handle, 2 * kMiB, &prop, 0));
}

TEST_F(SmallVmmTest, DeviceHandlesCountAgainstCapacity) {
  const size_t g = Granularity(DeviceProp());
  ASSERT_EQ(g, 2 * kMiB);
  const CUmemAllocationProp prop = DeviceProp();
  size_t free_before = 0;
  size_t total = 0;
  CU_ASSERT(cuMemGetInfo(&free_before, &total));
  ASSERT_EQ(total, 8 * kMiB);
  std::vector<CUmemGenericAllocationHandle> handles(4);
  for (auto& handle : handles) CU_ASSERT(cuMemCreate(&handle, g, &prop, 0));
  size_t free_full = 0;
  CU_ASSERT(cuMemGetInfo(&free_full, &total));
  EXPECT_EQ(free_before - free_full, 4 * g);
  CUmemGenericAllocationHandle extra = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_OUT_OF_MEMORY, cuMemCreate(&extra, g, &prop, 0));
  CUdeviceptr ptr = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc(&ptr, 4096));
  CU_ASSERT(cuMemRelease(handles.back()));
  handles.pop_back();
  CU_ASSERT(cuMemCreate(&extra, g, &prop, 0)) << "a release returns capacity";
  handles.push_back(extra);
  for (auto handle : handles) CU_EXPECT(cuMemRelease(handle));
  size_t free_after = 0;
  CU_ASSERT(cuMemGetInfo(&free_after, &total));
  EXPECT_EQ(free_after, free_before);
}

TEST_F(SmallVmmTest, HostHandlesDoNotCountAgainstCapacity) {
  const CUmemAllocationProp numa = HostNumaProp();
  const CUmemAllocationProp host = VmmProp(CU_MEM_LOCATION_TYPE_HOST, 0);
  const size_t g = Granularity(numa);
  size_t free_before = 0;
  size_t total = 0;
  CU_ASSERT(cuMemGetInfo(&free_before, &total));
  std::vector<CUmemGenericAllocationHandle> handles;
  for (int i = 0; i < 8; ++i) {  // 16 MiB of host handles on an 8 MiB device
    CUmemGenericAllocationHandle handle = 0;
    CU_ASSERT(cuMemCreate(&handle, g, i % 2 == 0 ? &numa : &host, 0)) << i;
    handles.push_back(handle);
  }
  size_t free_after = 0;
  CU_ASSERT(cuMemGetInfo(&free_after, &total));
  EXPECT_EQ(free_after, free_before);
  for (auto handle : handles) CU_EXPECT(cuMemRelease(handle));
}

TEST_F(VmmTest, HostNumaHandleWorksAsDeviceMemory) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  const CUmemAllocationProp prop = HostNumaProp();
  const size_t g = Granularity(prop);
  CUmemGenericAllocationHandle handle = 0;
  CU_ASSERT(cuMemCreate(&handle, g, &prop, 0));
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, g, 0, 0, 0));
  CU_ASSERT(cuMemMap(va, g, 0, handle, 0));
  CU_ASSERT(GrantAccess(va, g, device_));
  CU_ASSERT(WritePattern(va, g, 3));
  uint64_t n = g / sizeof(uint32_t);
  uint32_t delta = 1;
  CU_ASSERT(Launch(Kernel("add_u32"), nullptr, {&va, &delta, &n}, 256));
  CU_ASSERT(cuCtxSynchronize());
  std::vector<uint32_t> back(n);
  CU_ASSERT(cuMemcpyDtoH(back.data(), va, g));
  for (uint64_t i = 0; i < n; ++i) {
    ASSERT_EQ(back[i], (3u ^ static_cast<uint32_t>(i * 2654435761u)) + 1) << i;
  }
  CU_EXPECT(cuMemUnmap(va, g));
  CU_EXPECT(cuMemRelease(handle));
  CU_EXPECT(cuMemAddressFree(va, g));
}

TEST_F(VmmTest, OneHandleMappedTwiceSharesPhysicalMemory) {
  const CUmemAllocationProp prop = DeviceProp();
  const size_t g = Granularity(prop);
  CUmemGenericAllocationHandle handle = 0;
  CU_ASSERT(cuMemCreate(&handle, g, &prop, 0));
  CUdeviceptr va1 = 0;
  CUdeviceptr va2 = 0;
  CU_ASSERT(cuMemAddressReserve(&va1, g, 0, 0, 0));
  CU_ASSERT(cuMemAddressReserve(&va2, g, 0, 0, 0));
  ASSERT_NE(va1, va2);
  CU_ASSERT(cuMemMap(va1, g, 0, handle, 0));
  CU_ASSERT(cuMemMap(va2, g, 0, handle, 0));
  CU_ASSERT(GrantAccess(va1, g, device_));
  CU_ASSERT(GrantAccess(va2, g, device_));
  CU_ASSERT(WritePattern(va1, g, 0x1234));
  ExpectPattern(va2, g, 0x1234);
  CU_ASSERT(cuMemsetD8(va2 + 100, 0xff, 4));
  uint32_t word = 0;
  CU_ASSERT(cuMemcpyDtoH(&word, va1 + 100, sizeof(word)));
  EXPECT_EQ(word, 0xffffffffu);
  // Releasing the handle while mapped keeps the memory alive until the last unmap.
  CU_ASSERT(cuMemRelease(handle));
  CU_ASSERT(cuMemUnmap(va1, g));
  CU_ASSERT(cuMemcpyDtoH(&word, va2 + 100, sizeof(word)));
  EXPECT_EQ(word, 0xffffffffu);
  CU_EXPECT(cuMemUnmap(va2, g));
  CU_EXPECT(cuMemAddressFree(va1, g));
  CU_EXPECT(cuMemAddressFree(va2, g));
}

TEST_F(VmmTest, RemapFromDeviceToHostKeepsPointerAndData) {
  // Spillway's eviction: copy a device handle's bytes into a host handle, then map the
  // host handle at the same VA. Pointers held by the program stay valid.
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  const CUmemAllocationProp device_prop = DeviceProp();
  const CUmemAllocationProp host_prop = HostNumaProp();
  const size_t g = Granularity(device_prop);
  size_t free_start = 0;
  size_t total = 0;
  CU_ASSERT(cuMemGetInfo(&free_start, &total));

  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, g, 0, 0, 0));
  CUmemGenericAllocationHandle on_device = 0;
  CU_ASSERT(cuMemCreate(&on_device, g, &device_prop, 0));
  CU_ASSERT(cuMemMap(va, g, 0, on_device, 0));
  CU_ASSERT(GrantAccess(va, g, device_));
  CU_ASSERT(WritePattern(va, g, 0xbeef));

  CUmemGenericAllocationHandle on_host = 0;
  CU_ASSERT(cuMemCreate(&on_host, g, &host_prop, 0));
  CUdeviceptr staging = 0;
  CU_ASSERT(cuMemAddressReserve(&staging, g, 0, 0, 0));
  CU_ASSERT(cuMemMap(staging, g, 0, on_host, 0));
  CU_ASSERT(GrantAccess(staging, g, device_));
  CU_ASSERT(cuMemcpyDtoD(staging, va, g));
  CU_ASSERT(cuMemUnmap(staging, g));
  CU_ASSERT(cuMemUnmap(va, g));
  CU_ASSERT(cuMemRelease(on_device));

  size_t free_evicted = 0;
  CU_ASSERT(cuMemGetInfo(&free_evicted, &total));
  EXPECT_EQ(free_evicted, free_start) << "device capacity returns once the handle is gone";

  CU_ASSERT(cuMemMap(va, g, 0, on_host, 0));
  CU_ASSERT(GrantAccess(va, g, device_));
  ExpectPattern(va, g, 0xbeef);
  // And kernels keep working on the same pointer.
  uint64_t n = g / sizeof(uint32_t);
  uint32_t value = 9;
  CU_ASSERT(Launch(Kernel("fill_u32"), nullptr, {&va, &value, &n}, 128));
  CU_ASSERT(cuCtxSynchronize());
  uint32_t last = 0;
  CU_ASSERT(cuMemcpyDtoH(&last, va + g - sizeof(last), sizeof(last)));
  EXPECT_EQ(last, 9u);

  CU_EXPECT(cuMemUnmap(va, g));
  CU_EXPECT(cuMemRelease(on_host));
  CU_EXPECT(cuMemAddressFree(va, g));
  CU_EXPECT(cuMemAddressFree(staging, g));
}

TEST_F(VmmTest, ReservationsDoNotOverlap) {
  const size_t g = Granularity(DeviceProp());
  std::vector<CUdeviceptr> reservations;
  for (int i = 0; i < 8; ++i) {
    CUdeviceptr va = 0;
    CU_ASSERT(cuMemAddressReserve(&va, 4 * g, 0, 0, 0));
    for (CUdeviceptr other : reservations) {
      EXPECT_TRUE(va + 4 * g <= other || other + 4 * g <= va) << "overlapping reservations";
    }
    reservations.push_back(va);
  }
  CUdeviceptr dev = 0;
  CU_ASSERT(cuMemAlloc(&dev, g));
  for (CUdeviceptr va : reservations) EXPECT_TRUE(dev + g <= va || va + 4 * g <= dev);
  for (CUdeviceptr va : reservations) CU_EXPECT(cuMemAddressFree(va, 4 * g));
  CU_EXPECT(cuMemFree(dev));
}

TEST_F(VmmTest, BadHandlesAreRejected) {
  const size_t g = Granularity(DeviceProp());
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, g, 0, 0, 0));
  const auto bogus = static_cast<CUmemGenericAllocationHandle>(0x1234);
  EXPECT_NE(CUDA_SUCCESS, cuMemMap(va, g, 0, bogus, 0));
  EXPECT_NE(CUDA_SUCCESS, cuMemRelease(bogus));
  EXPECT_NE(CUDA_SUCCESS, cuMemUnmap(va, g)) << "nothing is mapped there";
  const CUmemAllocationProp prop = DeviceProp();
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemCreate(nullptr, g, &prop, 0));
  CUmemGenericAllocationHandle handle = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemCreate(&handle, g, nullptr, 0));
  CU_EXPECT(cuMemAddressFree(va, g));
}

}  // namespace
}  // namespace simcuda_test
