// SPDX-License-Identifier: Apache-2.0
//
// Contexts: the primary context, created contexts, the per-thread context stack, and what
// memory calls do without a current context.
#include <cuda.h>
#include <gtest/gtest.h>

#include <thread>

#include "test_util.h"

namespace simcuda_test {
namespace {

class ContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClearSimcudaEnvironment();
    CU_ASSERT(cuInit(0));
    CU_ASSERT(cuDeviceGet(&device_, 0));
  }
  CUdevice device_ = 0;
};

TEST_F(ContextTest, NoContextIsCurrentAfterInit) {
  CUcontext current = reinterpret_cast<CUcontext>(0x1);
  CU_ASSERT(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, nullptr);
}

TEST_F(ContextTest, MemoryCallsWithoutContextAreInvalidContext) {
  CUdeviceptr ptr = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_CONTEXT, cuMemAlloc(&ptr, 4096));
  size_t free_bytes;
  size_t total_bytes;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_CONTEXT, cuMemGetInfo(&free_bytes, &total_bytes));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_CONTEXT, cuCtxSynchronize());
  CUdevice device;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_CONTEXT, cuCtxGetDevice(&device));
  CUstream stream;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_CONTEXT, cuStreamCreate(&stream, CU_STREAM_DEFAULT));
}

TEST_F(ContextTest, PrimaryContextRetainIsRefCountedAndStable) {
  CUcontext first = nullptr;
  CUcontext second = nullptr;
  CU_ASSERT(cuDevicePrimaryCtxRetain(&first, device_));
  CU_ASSERT(cuDevicePrimaryCtxRetain(&second, device_));
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first, second) << "a device has one primary context";
  CU_ASSERT(cuCtxSetCurrent(first));
  CUcontext current = nullptr;
  CU_ASSERT(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, first);
  CUdevice device = -1;
  CU_ASSERT(cuCtxGetDevice(&device));
  EXPECT_EQ(device, device_);
  CUdeviceptr ptr = 0;
  CU_ASSERT(cuMemAlloc(&ptr, 4096));
  CU_ASSERT(cuMemFree(ptr));
  CU_EXPECT(cuCtxSynchronize());
  CU_EXPECT(cuDevicePrimaryCtxRelease(device_));
  CU_EXPECT(cuDevicePrimaryCtxRelease(device_));
}

TEST_F(ContextTest, CreateWithNullParamsMakesItCurrent) {
  CUcontext ctx = nullptr;
  CU_ASSERT(cuCtxCreate(&ctx, nullptr, 0, device_));
  ASSERT_NE(ctx, nullptr);
  CUcontext current = nullptr;
  CU_ASSERT(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, ctx);
  CUdevice device = -1;
  CU_ASSERT(cuCtxGetDevice(&device));
  EXPECT_EQ(device, device_);
  CUdeviceptr ptr = 0;
  CU_ASSERT(cuMemAlloc(&ptr, 4096));
  CUcontext owner = nullptr;
  CU_ASSERT(cuPointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_CONTEXT, ptr));
  EXPECT_EQ(owner, ctx);
  CU_ASSERT(cuMemFree(ptr));
  // Destroying the current context pops it: nothing was current before it.
  CU_ASSERT(cuCtxDestroy(ctx));
  CU_ASSERT(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, nullptr);
}

TEST_F(ContextTest, CreateWithEmptyParams) {
  CUctxCreateParams params = {};
  CUcontext ctx = nullptr;
  CU_ASSERT(cuCtxCreate(&ctx, &params, 0, device_));
  ASSERT_NE(ctx, nullptr);
  CU_EXPECT(cuCtxDestroy(ctx));
}

TEST_F(ContextTest, CreateOnBadDeviceIsInvalidDevice) {
  CUcontext ctx = nullptr;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_DEVICE, cuCtxCreate(&ctx, nullptr, 0, 5));
}

TEST_F(ContextTest, PushAndPopFollowAStack) {
  CUcontext first = nullptr;
  CUcontext second = nullptr;
  CU_ASSERT(cuCtxCreate(&first, nullptr, 0, device_));
  CU_ASSERT(cuCtxCreate(&second, nullptr, 0, device_));  // pushed on top of `first`
  ASSERT_NE(first, second);
  CUcontext current = nullptr;
  CU_ASSERT(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, second);

  CUcontext popped = nullptr;
  CU_ASSERT(cuCtxPopCurrent(&popped));
  EXPECT_EQ(popped, second);
  CU_ASSERT(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, first);

  CU_ASSERT(cuCtxPushCurrent(second));
  CU_ASSERT(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, second);

  CU_ASSERT(cuCtxPopCurrent(&popped));
  CU_ASSERT(cuCtxPopCurrent(&popped));
  EXPECT_EQ(popped, first);
  CU_ASSERT(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, nullptr);
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_CONTEXT, cuCtxPopCurrent(&popped));

  CU_EXPECT(cuCtxDestroy(first));
  CU_EXPECT(cuCtxDestroy(second));
}

TEST_F(ContextTest, SetCurrentReplacesTopOfStack) {
  CUcontext first = nullptr;
  CUcontext second = nullptr;
  CU_ASSERT(cuCtxCreate(&first, nullptr, 0, device_));
  CU_ASSERT(cuCtxCreate(&second, nullptr, 0, device_));
  CU_ASSERT(cuCtxSetCurrent(first));  // replaces `second` on top; `first` is beneath
  CUcontext popped = nullptr;
  CU_ASSERT(cuCtxPopCurrent(&popped));
  EXPECT_EQ(popped, first);
  CUcontext current = nullptr;
  CU_ASSERT(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, first);
  CU_ASSERT(cuCtxSetCurrent(nullptr));
  CU_ASSERT(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, nullptr);
  CU_EXPECT(cuCtxDestroy(first));
  CU_EXPECT(cuCtxDestroy(second));
}

TEST_F(ContextTest, CurrentContextIsPerThread) {
  CUcontext ctx = nullptr;
  CU_ASSERT(cuDevicePrimaryCtxRetain(&ctx, device_));
  CU_ASSERT(cuCtxSetCurrent(ctx));
  CUresult other_thread_result = CUDA_ERROR_UNKNOWN;
  CUcontext other_thread_current = reinterpret_cast<CUcontext>(0x1);
  std::thread([&] { other_thread_result = cuCtxGetCurrent(&other_thread_current); }).join();
  CU_EXPECT(other_thread_result);
  EXPECT_EQ(other_thread_current, nullptr) << "a new thread starts with no current context";
  CUresult set_result = CUDA_ERROR_UNKNOWN;
  CUresult alloc_result = CUDA_ERROR_UNKNOWN;
  std::thread([&] {
    set_result = cuCtxSetCurrent(ctx);
    CUdeviceptr ptr = 0;
    alloc_result = cuMemAlloc(&ptr, 4096);
    if (alloc_result == CUDA_SUCCESS) (void)cuMemFree(ptr);
  }).join();
  CU_EXPECT(set_result);
  CU_EXPECT(alloc_result);
  CU_EXPECT(cuDevicePrimaryCtxRelease(device_));
}

TEST_F(ContextTest, AllocationsRememberTheirContext) {
  CUcontext first = nullptr;
  CUcontext second = nullptr;
  CU_ASSERT(cuCtxCreate(&first, nullptr, 0, device_));
  CUdeviceptr in_first = 0;
  CU_ASSERT(cuMemAlloc(&in_first, 4096));
  CU_ASSERT(cuCtxCreate(&second, nullptr, 0, device_));
  CUdeviceptr in_second = 0;
  CU_ASSERT(cuMemAlloc(&in_second, 4096));
  CUcontext owner = nullptr;
  CU_ASSERT(cuPointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_CONTEXT, in_first));
  EXPECT_EQ(owner, first);
  CU_ASSERT(cuPointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_CONTEXT, in_second));
  EXPECT_EQ(owner, second);
  CU_EXPECT(cuMemFree(in_second));
  CU_EXPECT(cuCtxDestroy(second));
  CU_EXPECT(cuMemFree(in_first));
  CU_EXPECT(cuCtxDestroy(first));
}

TEST(MultiDeviceContextTest, ContextAndPointerReportTheirDevice) {
  ClearSimcudaEnvironment();
  setenv("SIMCUDA_DEVICES", "2", 1);
  setenv("SIMCUDA_DEVICE_MEMORY", "256M", 1);
  CU_ASSERT(cuInit(0));
  CUdevice second;
  CU_ASSERT(cuDeviceGet(&second, 1));
  CUcontext ctx = nullptr;
  CU_ASSERT(cuDevicePrimaryCtxRetain(&ctx, second));
  CU_ASSERT(cuCtxSetCurrent(ctx));
  CUdevice device = -1;
  CU_ASSERT(cuCtxGetDevice(&device));
  EXPECT_EQ(device, second);
  CUdeviceptr ptr = 0;
  CU_ASSERT(cuMemAlloc(&ptr, 4096));
  int ordinal = -1;
  CU_ASSERT(cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, ptr));
  EXPECT_EQ(ordinal, 1);
  size_t free_bytes = 0;
  size_t total_bytes = 0;
  CU_ASSERT(cuMemGetInfo(&free_bytes, &total_bytes));
  EXPECT_EQ(total_bytes, 256 * kMiB);
  CU_EXPECT(cuMemFree(ptr));
  CU_EXPECT(cuDevicePrimaryCtxRelease(second));
}

}  // namespace
}  // namespace simcuda_test
