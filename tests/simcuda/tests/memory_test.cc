// SPDX-License-Identifier: Apache-2.0
//
// Device, pinned host, registered, managed and stream-ordered memory; capacity accounting;
// address ranges and pointer attributes.
#include <cuda.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <string.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "test_kernels.h"
#include "test_util.h"

namespace simcuda_test {
namespace {

using MemoryTest = DriverTest;

class SmallDeviceTest : public DriverTest {
 protected:
  EnvList Environment() const override { return {{"SIMCUDA_DEVICE_MEMORY", "64M"}}; }
};

TEST_F(MemoryTest, AllocCopyFree) {
  CUdeviceptr ptr = 0;
  CU_ASSERT(cuMemAlloc(&ptr, 1 * kMiB));
  ASSERT_NE(ptr, 0u);
  std::vector<uint8_t> in(kMiB);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 7 + 3);
  CU_ASSERT(cuMemcpyHtoD(ptr, in.data(), in.size()));
  std::vector<uint8_t> out(kMiB, 0);
  CU_ASSERT(cuMemcpyDtoH(out.data(), ptr, out.size()));
  EXPECT_EQ(in, out);
  CU_EXPECT(cuMemFree(ptr));
}

TEST_F(MemoryTest, AllocationsAreAlignedAndDisjoint) {
  // CUDA guarantees at least 256-byte alignment for allocation results.
  std::vector<CUdeviceptr> ptrs;
  for (size_t size : {1, 3, 256, 1000, 4096, 65537}) {
    CUdeviceptr ptr = 0;
    CU_ASSERT(cuMemAlloc(&ptr, size));
    EXPECT_EQ(ptr % 256, 0u) << "size " << size;
    for (CUdeviceptr other : ptrs) EXPECT_NE(other, ptr);
    ptrs.push_back(ptr);
  }
  for (size_t i = 0; i < ptrs.size(); ++i) {
    CUdeviceptr base = 0;
    size_t size = 0;
    CU_ASSERT(cuMemGetAddressRange(&base, &size, ptrs[i]));
    for (size_t j = 0; j < ptrs.size(); ++j) {
      if (i == j) continue;
      EXPECT_FALSE(ptrs[j] >= base && ptrs[j] < base + size) << i << " " << j;
    }
  }
  for (CUdeviceptr ptr : ptrs) CU_EXPECT(cuMemFree(ptr));
}

TEST_F(MemoryTest, BadAllocAndFreeArguments) {
  CUdeviceptr ptr = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemAlloc(&ptr, 0));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemAlloc(nullptr, 4096));
  CU_ASSERT(cuMemAlloc(&ptr, 4096));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemFree(ptr + 16)) << "interior pointer";
  CU_ASSERT(cuMemFree(ptr));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemFree(ptr)) << "double free";
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemFree(0x12345678)) << "unknown pointer";
  int on_stack = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemFree(reinterpret_cast<CUdeviceptr>(&on_stack)));
}

TEST_F(SmallDeviceTest, CapacityIsEnforcedAndFreeMakesRoom) {
  size_t free_bytes = 0;
  size_t total_bytes = 0;
  CU_ASSERT(cuMemGetInfo(&free_bytes, &total_bytes));
  EXPECT_EQ(total_bytes, 64 * kMiB);
  EXPECT_LE(free_bytes, total_bytes);

  CUdeviceptr big = 0;
  CU_ASSERT(cuMemAlloc(&big, 48 * kMiB));
  CUdeviceptr too_much = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc(&too_much, 32 * kMiB));
  CUdeviceptr whole = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc(&whole, 65 * kMiB));

  CU_ASSERT(cuMemFree(big));
  CUdeviceptr fits = 0;
  CU_ASSERT(cuMemAlloc(&fits, 32 * kMiB)) << "freeing must return capacity";
  CU_EXPECT(cuMemFree(fits));
}

TEST_F(SmallDeviceTest, MemGetInfoTracksAllocations) {
  size_t free_before = 0;
  size_t total = 0;
  CU_ASSERT(cuMemGetInfo(&free_before, &total));
  CUdeviceptr ptr = 0;
  CU_ASSERT(cuMemAlloc(&ptr, 16 * kMiB));
  size_t free_during = 0;
  size_t total_during = 0;
  CU_ASSERT(cuMemGetInfo(&free_during, &total_during));
  EXPECT_EQ(total_during, total);
  EXPECT_GE(free_before - free_during, 16 * kMiB);
  EXPECT_LE(free_before - free_during, 18 * kMiB) << "allocation overhead is implausible";
  CU_ASSERT(cuMemFree(ptr));
  size_t free_after = 0;
  CU_ASSERT(cuMemGetInfo(&free_after, &total));
  EXPECT_EQ(free_after, free_before);
}

TEST_F(SmallDeviceTest, ManyAllocationsUpToCapacity) {
  std::vector<CUdeviceptr> ptrs;
  CUresult result = CUDA_SUCCESS;
  for (int i = 0; i < 100 && result == CUDA_SUCCESS; ++i) {
    CUdeviceptr ptr = 0;
    result = cuMemAlloc(&ptr, 4 * kMiB);
    if (result == CUDA_SUCCESS) ptrs.push_back(ptr);
  }
  CU_EXPECT_STATUS(CUDA_ERROR_OUT_OF_MEMORY, result);
  EXPECT_GE(ptrs.size(), 14u);  // 64 MiB / 4 MiB = 16, allowing for some overhead
  EXPECT_LE(ptrs.size(), 16u);
  for (CUdeviceptr ptr : ptrs) CU_EXPECT(cuMemFree(ptr));
}

TEST_F(MemoryTest, AddressRangeOfInteriorPointer) {
  CUdeviceptr ptr = 0;
  CU_ASSERT(cuMemAlloc(&ptr, 4 * kMiB));
  CUdeviceptr base = 0;
  size_t size = 0;
  CU_ASSERT(cuMemGetAddressRange(&base, &size, ptr + 12345));
  EXPECT_EQ(base, ptr);
  EXPECT_EQ(size, 4 * kMiB);
  CU_ASSERT(cuMemGetAddressRange(&base, nullptr, ptr + 4 * kMiB - 1));  // either out may be NULL
  EXPECT_EQ(base, ptr);
  CU_ASSERT(cuMemGetAddressRange(nullptr, &size, ptr));
  EXPECT_EQ(size, 4 * kMiB);
  CU_ASSERT(cuMemFree(ptr));
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_FOUND, cuMemGetAddressRange(&base, &size, ptr + 12345));
}

TEST_F(MemoryTest, DevicePointerAttributes) {
  CUdeviceptr ptr = 0;
  CU_ASSERT(cuMemAlloc(&ptr, 2 * kMiB));
  const CUdeviceptr inside = ptr + 4096;
  unsigned int type = 0;
  CU_ASSERT(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, inside));
  EXPECT_EQ(type, CU_MEMORYTYPE_DEVICE);
  CUdeviceptr device_ptr = 0;
  CU_ASSERT(cuPointerGetAttribute(&device_ptr, CU_POINTER_ATTRIBUTE_DEVICE_POINTER, inside));
  EXPECT_EQ(device_ptr, inside);
  CUcontext ctx = nullptr;
  CU_ASSERT(cuPointerGetAttribute(&ctx, CU_POINTER_ATTRIBUTE_CONTEXT, inside));
  EXPECT_EQ(ctx, ctx_);
  CUdeviceptr start = 0;
  CU_ASSERT(cuPointerGetAttribute(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, inside));
  EXPECT_EQ(start, ptr);
  size_t range_size = 0;
  CU_ASSERT(cuPointerGetAttribute(&range_size, CU_POINTER_ATTRIBUTE_RANGE_SIZE, inside));
  EXPECT_EQ(range_size, 2 * kMiB);
  int ordinal = -1;
  CU_ASSERT(cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, inside));
  EXPECT_EQ(ordinal, 0);

  // The same through cuPointerGetAttributes, in one call.
  CUpointer_attribute attributes[] = {
      CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_CONTEXT,
      CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL};
  unsigned int type2 = 0;
  CUcontext ctx2 = nullptr;
  CUdeviceptr start2 = 0;
  int ordinal2 = -1;
  void* data[] = {&type2, &ctx2, &start2, &ordinal2};
  CU_ASSERT(cuPointerGetAttributes(4, attributes, data, inside));
  EXPECT_EQ(type2, CU_MEMORYTYPE_DEVICE);
  EXPECT_EQ(ctx2, ctx_);
  EXPECT_EQ(start2, ptr);
  EXPECT_EQ(ordinal2, 0);
  CU_EXPECT(cuMemFree(ptr));
}

TEST_F(MemoryTest, UnknownHostPointerHasNoAttributes) {
  std::vector<char> plain(4096);
  unsigned int type = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE,
                   cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                         reinterpret_cast<CUdeviceptr>(plain.data())));
}

TEST_F(MemoryTest, PinnedHostAllocation) {
  void* host = nullptr;
  CU_ASSERT(cuMemAllocHost(&host, 1 * kMiB));
  ASSERT_NE(host, nullptr);
  memset(host, 0x5a, kMiB);  // host-writable
  unsigned int type = 0;
  CU_ASSERT(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                  reinterpret_cast<CUdeviceptr>(host)));
  EXPECT_EQ(type, CU_MEMORYTYPE_HOST);
  CUcontext ctx = nullptr;
  CU_ASSERT(cuPointerGetAttribute(&ctx, CU_POINTER_ATTRIBUTE_CONTEXT,
                                  reinterpret_cast<CUdeviceptr>(host)));
  EXPECT_EQ(ctx, ctx_);

  CUdeviceptr dev = 0;
  CU_ASSERT(cuMemAlloc(&dev, kMiB));
  CU_ASSERT(cuMemcpyHtoD(dev, host, kMiB));
  std::vector<uint8_t> back(kMiB, 0);
  CU_ASSERT(cuMemcpyDtoH(back.data(), dev, kMiB));
  EXPECT_EQ(back, std::vector<uint8_t>(kMiB, 0x5a));
  CU_EXPECT(cuMemFree(dev));
  CU_EXPECT(cuMemFreeHost(host));
}

TEST_F(MemoryTest, HostAllocWithFlags) {
  void* host = nullptr;
  CU_ASSERT(cuMemHostAlloc(&host, 64 * kKiB, CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP));
  ASSERT_NE(host, nullptr);
  static_cast<uint8_t*>(host)[64 * kKiB - 1] = 0xee;
  unsigned int type = 0;
  CU_ASSERT(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                  reinterpret_cast<CUdeviceptr>(host)));
  EXPECT_EQ(type, CU_MEMORYTYPE_HOST);
  CU_EXPECT(cuMemFreeHost(host));
  int on_stack = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemFreeHost(&on_stack));
}

TEST_F(MemoryTest, HostRegisterAndUnregister) {
  const size_t size = 1 * kMiB;
  void* buffer = aligned_alloc(4096, size);
  ASSERT_NE(buffer, nullptr);
  std::unique_ptr<void, decltype(&free)> owner(buffer, &free);
  memset(buffer, 0x11, size);

  CU_ASSERT(cuMemHostRegister(buffer, size, CU_MEMHOSTREGISTER_PORTABLE));
  unsigned int type = 0;
  CU_ASSERT(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                                  reinterpret_cast<CUdeviceptr>(buffer) + 100));
  EXPECT_EQ(type, CU_MEMORYTYPE_HOST);
  CU_EXPECT_STATUS(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED,
                   cuMemHostRegister(buffer, size, CU_MEMHOSTREGISTER_PORTABLE));

  // Registered memory is a valid async copy source.
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUdeviceptr dev = 0;
  CU_ASSERT(cuMemAlloc(&dev, size));
  CU_ASSERT(cuMemcpyHtoDAsync(dev, buffer, size, stream));
  CU_ASSERT(cuStreamSynchronize(stream));
  std::vector<uint8_t> back(size, 0);
  CU_ASSERT(cuMemcpyDtoH(back.data(), dev, size));
  EXPECT_EQ(back, std::vector<uint8_t>(size, 0x11));

  CU_ASSERT(cuMemHostUnregister(buffer));
  CU_EXPECT_STATUS(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, cuMemHostUnregister(buffer));
  int on_stack = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, cuMemHostUnregister(&on_stack));
  CU_EXPECT(cuMemFree(dev));
  CU_EXPECT(cuStreamDestroy(stream));
}

TEST_F(MemoryTest, DeviceMemoryNeverOverlapsHostAllocations) {
  CUdeviceptr dev = 0;
  const size_t dev_size = 64 * kMiB;
  CU_ASSERT(cuMemAlloc(&dev, dev_size));
  auto inside = [&](const void* p, size_t n) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    return a < dev + dev_size && a + n > dev;
  };
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) {
    const size_t n = (i % 2 == 0) ? 256 * kKiB : 64;  // large (mmap) and small (heap)
    void* block = malloc(n);
    ASSERT_NE(block, nullptr);
    EXPECT_FALSE(inside(block, n)) << "malloc returned memory inside a device allocation";
    blocks.push_back(block);
  }
  for (void* block : blocks) free(block);
  void* pinned = nullptr;
  CU_ASSERT(cuMemAllocHost(&pinned, 4 * kMiB));
  EXPECT_FALSE(inside(pinned, 4 * kMiB));
  CU_EXPECT(cuMemFreeHost(pinned));
  CU_EXPECT(cuMemFree(dev));
}

TEST_F(MemoryTest, ManagedMemoryIsHostAccessible) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  uint64_t n = 1024;
  CUdeviceptr managed = 0;
  CU_ASSERT(cuMemAllocManaged(&managed, n * sizeof(uint32_t), CU_MEM_ATTACH_GLOBAL));
  auto* host_view = reinterpret_cast<uint32_t*>(managed);
  for (uint64_t i = 0; i < n; ++i) host_view[i] = static_cast<uint32_t>(i);
  uint32_t delta = 100;
  CU_ASSERT(Launch(Kernel("add_u32"), nullptr, {&managed, &delta, &n}, 256));
  CU_ASSERT(cuCtxSynchronize());
  for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(host_view[i], i + 100) << i;
  CU_EXPECT(cuMemFree(managed));
}

TEST_F(MemoryTest, StreamOrderedAllocation) {
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  const size_t count = 4096;
  CUdeviceptr ptr = 0;
  CU_ASSERT(cuMemAllocAsync(&ptr, count * sizeof(uint32_t), stream));
  ASSERT_NE(ptr, 0u);
  CU_ASSERT(cuMemsetD32Async(ptr, 0xabcd1234u, count, stream));
  uint32_t* host = nullptr;
  CU_ASSERT(cuMemAllocHost(reinterpret_cast<void**>(&host), count * sizeof(uint32_t)));
  CU_ASSERT(cuMemcpyDtoHAsync(host, ptr, count * sizeof(uint32_t), stream));
  CU_ASSERT(cuMemFreeAsync(ptr, stream));
  CU_ASSERT(cuStreamSynchronize(stream));
  for (size_t i = 0; i < count; ++i) ASSERT_EQ(host[i], 0xabcd1234u) << i;
  CU_EXPECT(cuMemFreeHost(host));
  CU_EXPECT(cuStreamDestroy(stream));
}

TEST_F(SmallDeviceTest, StreamOrderedAllocationCountsAgainstCapacity) {
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUdeviceptr first = 0;
  CU_ASSERT(cuMemAllocAsync(&first, 48 * kMiB, stream));
  CU_ASSERT(cuStreamSynchronize(stream));
  CUdeviceptr second = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc(&second, 32 * kMiB));
  CU_ASSERT(cuMemFreeAsync(first, stream));
  CU_ASSERT(cuStreamSynchronize(stream));
  CU_ASSERT(cuMemAlloc(&second, 32 * kMiB));
  CU_EXPECT(cuMemFree(second));
  CU_EXPECT(cuStreamDestroy(stream));
}

}  // namespace
}  // namespace simcuda_test

namespace simcuda_test {
namespace {

TEST_F(MemoryTest, ManagedPrefetchAndAdviseValidateAndKeepStreamOrder) {
  CUdeviceptr managed = 0, plain = 0;
  CU_ASSERT(cuMemAllocManaged(&managed, 1 << 20, CU_MEM_ATTACH_GLOBAL));
  CU_ASSERT(cuMemAlloc(&plain, 4096));
  CUmemLocation device = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
  CU_EXPECT(cuMemPrefetchAsync(managed, 1 << 20, device, 0, nullptr));
  CU_EXPECT(cuMemAdvise(managed, 4096, CU_MEM_ADVISE_SET_READ_MOSTLY, device));
  // Not managed memory, past its end, a bad device, a bad advice: all refused.
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemPrefetchAsync(plain, 4096, device, 0, nullptr));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE,
                   cuMemPrefetchAsync(managed, 2 << 20, device, 0, nullptr));
  CUmemLocation missing = {CU_MEM_LOCATION_TYPE_DEVICE, 7};
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_DEVICE,
                   cuMemPrefetchAsync(managed, 4096, missing, 0, nullptr));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE,
                   cuMemAdvise(managed, 4096, static_cast<CUmem_advise>(99), device));
  CU_EXPECT(cuStreamSynchronize(nullptr));
}

}  // namespace
}  // namespace simcuda_test
