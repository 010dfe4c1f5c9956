// SPDX-License-Identifier: Apache-2.0
//
// Bad input never crashes the driver: made-up handles, null pointers, double frees and
// misaligned sizes are refused with the documented error codes. Each test finishing is
// itself part of the check.
#include <cuda.h>
#include <gtest/gtest.h>

#include "test_util.h"

namespace simcuda_test {
namespace {

using BadInputTest = DriverTest;

// Values simcuda never handed out. 0x1234 is not even a mapped address; the heap pointer
// is readable memory that is not a driver object, which catches drivers that "validate" a
// handle by dereferencing it.
const CUstream kBogusStream = reinterpret_cast<CUstream>(0x1234);
const CUevent kBogusEvent = reinterpret_cast<CUevent>(0x1234);
const CUmodule kBogusModule = reinterpret_cast<CUmodule>(0x1234);

template <typename Handle>
Handle ReadableBogus() {
  static unsigned long long junk[64] = {0xdeadbeefdeadbeefull, 0x1, 0x2, 0x3};
  return reinterpret_cast<Handle>(&junk[0]);
}

TEST_F(BadInputTest, UnknownStreamsAreInvalidHandle) {
  for (CUstream stream : {kBogusStream, ReadableBogus<CUstream>()}) {
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuStreamSynchronize(stream));
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuStreamQuery(stream));
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuStreamDestroy(stream));
    CUevent event;
    CU_ASSERT(cuEventCreate(&event, CU_EVENT_DEFAULT));
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuEventRecord(event, stream));
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuStreamWaitEvent(stream, event, 0));
    CU_EXPECT(cuEventDestroy(event));
    CUdeviceptr ptr = 0;
    CU_ASSERT(cuMemAlloc(&ptr, 64));
    char host[64] = {};
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuMemcpyHtoDAsync(ptr, host, 64, stream));
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuMemsetD8Async(ptr, 0, 64, stream));
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuLaunchHostFunc(
                                                    stream, [](void*) {}, nullptr));
    CU_EXPECT(cuMemFree(ptr));
  }
}

TEST_F(BadInputTest, DestroyedStreamIsInvalidHandle) {
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CU_ASSERT(cuStreamDestroy(stream));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuStreamSynchronize(stream));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuStreamDestroy(stream));
}

TEST_F(BadInputTest, UnknownEventsAreInvalidHandle) {
  for (CUevent event : {kBogusEvent, ReadableBogus<CUevent>()}) {
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuEventRecord(event, nullptr));
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuEventQuery(event));
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuEventSynchronize(event));
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuEventDestroy(event));
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuStreamWaitEvent(nullptr, event, 0));
    CUevent good;
    CU_ASSERT(cuEventCreate(&good, CU_EVENT_DEFAULT));
    CU_ASSERT(cuEventRecord(good, nullptr));
    CU_ASSERT(cuEventSynchronize(good));
    float ms = 0;
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuEventElapsedTime(&ms, good, event));
    CU_EXPECT(cuEventDestroy(good));
  }
}

TEST_F(BadInputTest, DestroyedEventIsInvalidHandle) {
  CUevent event;
  CU_ASSERT(cuEventCreate(&event, CU_EVENT_DEFAULT));
  CU_ASSERT(cuEventDestroy(event));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuEventQuery(event));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuEventDestroy(event));
}

TEST_F(BadInputTest, UnknownModulesAreInvalidHandle) {
  for (CUmodule module : {kBogusModule, ReadableBogus<CUmodule>()}) {
    CUfunction fn = nullptr;
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuModuleGetFunction(&fn, module, "vec_add"));
    CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuModuleUnload(module));
  }
}

TEST_F(BadInputTest, UnloadedModuleIsInvalidHandle) {
  CUmodule module = nullptr;
  CU_ASSERT(cuModuleLoad(&module, TestModulePath()));
  CU_ASSERT(cuModuleUnload(module));
  CUfunction fn = nullptr;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuModuleGetFunction(&fn, module, "vec_add"));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuModuleUnload(module));
}

TEST_F(BadInputTest, UnknownContextIsRejected) {
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_CONTEXT,
                   cuCtxSetCurrent(reinterpret_cast<CUcontext>(0x1234)));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_CONTEXT,
                   cuCtxPushCurrent(reinterpret_cast<CUcontext>(0x1234)));
  EXPECT_NE(CUDA_SUCCESS, cuCtxDestroy(reinterpret_cast<CUcontext>(0x1234)));
  // The real context is still current and usable.
  CUcontext current = nullptr;
  CU_ASSERT(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, ctx_);
}

TEST_F(BadInputTest, NullOutputPointers) {
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemAlloc(nullptr, 64));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemAllocHost(nullptr, 64));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemGetInfo(nullptr, nullptr));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuEventCreate(nullptr, CU_EVENT_DEFAULT));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuCtxGetCurrent(nullptr));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuCtxGetDevice(nullptr));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuModuleLoad(nullptr, TestModulePath()));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemAddressReserve(nullptr, 2 << 20, 0, 0, 0));
  CU_EXPECT_STATUS(
      CUDA_ERROR_INVALID_VALUE,
      cuMemGetAllocationGranularity(nullptr, nullptr, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  EXPECT_NE(CUDA_SUCCESS, cuLaunchHostFunc(nullptr, nullptr, nullptr));
}

TEST_F(BadInputTest, DoubleFreesOfEveryKind) {
  CUdeviceptr dev = 0;
  CU_ASSERT(cuMemAlloc(&dev, 64));
  CU_ASSERT(cuMemFree(dev));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemFree(dev));
  void* host = nullptr;
  CU_ASSERT(cuMemAllocHost(&host, 64));
  CU_ASSERT(cuMemFreeHost(host));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemFreeHost(host));
  CUdeviceptr va = 0;
  CU_ASSERT(cuMemAddressReserve(&va, 2 << 20, 0, 0, 0));
  CU_ASSERT(cuMemAddressFree(va, 2 << 20));
  EXPECT_NE(CUDA_SUCCESS, cuMemAddressFree(va, 2 << 20));
  const CUmemAllocationProp prop = VmmProp(CU_MEM_LOCATION_TYPE_DEVICE, device_);
  CUmemGenericAllocationHandle handle = 0;
  CU_ASSERT(cuMemCreate(&handle, Granularity(prop), &prop, 0));
  CU_ASSERT(cuMemRelease(handle));
  EXPECT_NE(CUDA_SUCCESS, cuMemRelease(handle));
  // And the driver still works.
  CU_ASSERT(cuMemAlloc(&dev, 64));
  CU_EXPECT(cuMemFree(dev));
}

TEST_F(BadInputTest, MisalignedVmmRequests) {
  const CUmemAllocationProp prop = VmmProp(CU_MEM_LOCATION_TYPE_DEVICE, device_);
  const size_t g = Granularity(prop);
  CUmemGenericAllocationHandle handle = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemCreate(&handle, 12345, &prop, 0));
  CUdeviceptr va = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemAddressReserve(&va, g - 1, 0, 0, 0));
  CU_ASSERT(cuMemAddressReserve(&va, g, 0, 0, 0));
  EXPECT_NE(CUDA_SUCCESS, cuMemAddressFree(va + 4096, g)) << "not the reservation's start";
  CU_EXPECT(cuMemAddressFree(va, g));
  CUmemAllocationProp bad_type = prop;
  bad_type.type = CU_MEM_ALLOCATION_TYPE_INVALID;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemCreate(&handle, g, &bad_type, 0));
}

}  // namespace
}  // namespace simcuda_test
