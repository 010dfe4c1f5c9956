// SPDX-License-Identifier: Apache-2.0
//
// Initialisation, versions, devices and attributes, and the SIMCUDA_* configuration read
// at cuInit.
#include <cuda.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <string.h>

#include <string>

#include "test_util.h"

namespace simcuda_test {
namespace {

int Attribute(CUdevice_attribute attribute, CUdevice device) {
  int value = -1;
  EXPECT_EQ(CUDA_SUCCESS, cuDeviceGetAttribute(&value, attribute, device)) << attribute;
  return value;
}

// Sets one SIMCUDA_* variable (after clearing the others) and calls cuInit.
CUresult InitWith(const char* name, const char* value) {
  ClearSimcudaEnvironment();
  setenv(name, value, 1);
  return cuInit(0);
}

size_t TotalMemory(CUdevice device) {
  size_t total = 0;
  EXPECT_EQ(CUDA_SUCCESS, cuDeviceTotalMem(&total, device));
  return total;
}

TEST(InitTest, CallsBeforeCuInitAreNotInitialized) {
  ClearSimcudaEnvironment();
  int count = -1;
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_INITIALIZED, cuDeviceGetCount(&count));
  CUdevice device;
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_INITIALIZED, cuDeviceGet(&device, 0));
  CUdeviceptr ptr;
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_INITIALIZED, cuMemAlloc(&ptr, 4096));
  CUcontext ctx;
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_INITIALIZED, cuCtxGetCurrent(&ctx));
  // After initialisation the same calls work.
  CU_ASSERT(cuInit(0));
  CU_EXPECT(cuDeviceGetCount(&count));
  EXPECT_EQ(count, 1);
}

TEST(InitTest, RejectsNonZeroFlags) {
  ClearSimcudaEnvironment();
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuInit(1));
}

TEST(InitTest, InitTwiceSucceeds) {
  ClearSimcudaEnvironment();
  CU_ASSERT(cuInit(0));
  CU_EXPECT(cuInit(0));
}

TEST(InitTest, DriverVersionIsCuda13OrLater) {
  ClearSimcudaEnvironment();
  CU_ASSERT(cuInit(0));
  int version = 0;
  CU_ASSERT(cuDriverGetVersion(&version));
  EXPECT_GE(version, 13000);
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuDriverGetVersion(nullptr));
}

TEST(InitTest, DefaultsToOneDeviceWithEightGiB) {
  ClearSimcudaEnvironment();
  CU_ASSERT(cuInit(0));
  int count = 0;
  CU_ASSERT(cuDeviceGetCount(&count));
  EXPECT_EQ(count, 1);
  CUdevice device = -1;
  CU_ASSERT(cuDeviceGet(&device, 0));
  EXPECT_EQ(TotalMemory(device), 8 * kGiB);
}

TEST(InitTest, DeviceNameAndUuid) {
  ClearSimcudaEnvironment();
  CU_ASSERT(cuInit(0));
  CUdevice device;
  CU_ASSERT(cuDeviceGet(&device, 0));
  char name[256];
  memset(name, 0x7f, sizeof(name));
  CU_ASSERT(cuDeviceGetName(name, sizeof(name), device));
  ASSERT_NE(memchr(name, '\0', sizeof(name)), nullptr) << "name is not NUL-terminated";
  EXPECT_GT(strlen(name), 0u);
  CUuuid uuid;
  memset(&uuid, 0, sizeof(uuid));
  CU_ASSERT(cuDeviceGetUuid(&uuid, device));
  const CUuuid zero = {};
  EXPECT_NE(memcmp(&uuid, &zero, sizeof(uuid)), 0) << "UUID is all zeros";
}

TEST(InitTest, ReportsComputeCapability9_0AndVmmSupport) {
  ClearSimcudaEnvironment();
  CU_ASSERT(cuInit(0));
  CUdevice device;
  CU_ASSERT(cuDeviceGet(&device, 0));
  EXPECT_EQ(Attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device), 9);
  EXPECT_EQ(Attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device), 0);
  EXPECT_EQ(Attribute(CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, device), 1);
  EXPECT_EQ(Attribute(CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, device), 1);
  EXPECT_EQ(Attribute(CU_DEVICE_ATTRIBUTE_HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, device),
            1);
  EXPECT_EQ(Attribute(CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID, device), 0);
}

TEST(InitTest, BadDeviceOrdinalIsInvalidDevice) {
  ClearSimcudaEnvironment();
  CU_ASSERT(cuInit(0));
  CUdevice device;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_DEVICE, cuDeviceGet(&device, 1));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_DEVICE, cuDeviceGet(&device, -1));
  int value;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_DEVICE,
                   cuDeviceGetAttribute(&value, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 7));
  size_t total;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_DEVICE, cuDeviceTotalMem(&total, 7));
  char name[64];
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_DEVICE, cuDeviceGetName(name, sizeof(name), 7));
  CUcontext ctx;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_DEVICE, cuDevicePrimaryCtxRetain(&ctx, 7));
}

TEST(InitTest, NullOutputPointersAreInvalidValue) {
  ClearSimcudaEnvironment();
  CU_ASSERT(cuInit(0));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuDeviceGetCount(nullptr));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuDeviceGet(nullptr, 0));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE,
                   cuDeviceGetAttribute(nullptr, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 0));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuDeviceTotalMem(nullptr, 0));
}

TEST(InitTest, DeviceMemorySizeWithSuffixes) {
  CU_ASSERT(InitWith("SIMCUDA_DEVICE_MEMORY", "256M"));
  EXPECT_EQ(TotalMemory(0), 256 * kMiB);
}

TEST(InitTest, DeviceMemorySizeInGiB) {
  CU_ASSERT(InitWith("SIMCUDA_DEVICE_MEMORY", "1G"));
  EXPECT_EQ(TotalMemory(0), kGiB);
}

TEST(InitTest, DeviceMemorySizeInKiB) {
  CU_ASSERT(InitWith("SIMCUDA_DEVICE_MEMORY", "512K"));
  EXPECT_EQ(TotalMemory(0), 512 * kKiB);
}

TEST(InitTest, DeviceMemorySizeInPlainBytes) {
  CU_ASSERT(InitWith("SIMCUDA_DEVICE_MEMORY", "67108864"));
  EXPECT_EQ(TotalMemory(0), 64 * kMiB);
}

TEST(InitTest, MalformedDeviceMemoryFailsInit) {
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, InitWith("SIMCUDA_DEVICE_MEMORY", "lots"));
}

TEST(InitTest, DeviceMemoryWithUnknownSuffixFailsInit) {
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, InitWith("SIMCUDA_DEVICE_MEMORY", "12Q"));
}

TEST(InitTest, MalformedDeviceCountFailsInit) {
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, InitWith("SIMCUDA_DEVICES", "two"));
}

TEST(InitTest, MalformedGranularityFailsInit) {
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, InitWith("SIMCUDA_GRANULARITY", "2X"));
}

TEST(InitTest, MalformedLinkSpeedFailsInit) {
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, InitWith("SIMCUDA_H2D_GBPS", "fast"));
}

TEST(InitTest, MalformedNumaIdFailsInit) {
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, InitWith("SIMCUDA_HOST_NUMA_ID", "node1"));
}

TEST(InitTest, HostNumaIdFromEnvironment) {
  CU_ASSERT(InitWith("SIMCUDA_HOST_NUMA_ID", "1"));
  EXPECT_EQ(Attribute(CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID, 0), 1);
}

TEST(InitTest, MultipleDevices) {
  ClearSimcudaEnvironment();
  setenv("SIMCUDA_DEVICES", "2", 1);
  setenv("SIMCUDA_DEVICE_MEMORY", "1G", 1);
  CU_ASSERT(cuInit(0));
  int count = 0;
  CU_ASSERT(cuDeviceGetCount(&count));
  ASSERT_EQ(count, 2);
  CUdevice first;
  CUdevice second;
  CU_ASSERT(cuDeviceGet(&first, 0));
  CU_ASSERT(cuDeviceGet(&second, 1));
  EXPECT_NE(first, second);
  CUdevice third;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_DEVICE, cuDeviceGet(&third, 2));
  EXPECT_EQ(TotalMemory(second), kGiB);
  EXPECT_EQ(Attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, second), 9);
  CUuuid uuid0;
  CUuuid uuid1;
  CU_ASSERT(cuDeviceGetUuid(&uuid0, first));
  CU_ASSERT(cuDeviceGetUuid(&uuid1, second));
  EXPECT_NE(memcmp(&uuid0, &uuid1, sizeof(CUuuid)), 0) << "two devices share a UUID";
}

TEST(ErrorStringTest, KnownCodes) {
  // Documented to work without cuInit, as error reporting must.
  const char* name = nullptr;
  CU_ASSERT(cuGetErrorName(CUDA_ERROR_OUT_OF_MEMORY, &name));
  ASSERT_NE(name, nullptr);
  EXPECT_STREQ(name, "CUDA_ERROR_OUT_OF_MEMORY");
  CU_ASSERT(cuGetErrorName(CUDA_SUCCESS, &name));
  EXPECT_STREQ(name, "CUDA_SUCCESS");
  CU_ASSERT(cuGetErrorName(CUDA_ERROR_ILLEGAL_ADDRESS, &name));
  EXPECT_STREQ(name, "CUDA_ERROR_ILLEGAL_ADDRESS");
  const char* text = nullptr;
  CU_ASSERT(cuGetErrorString(CUDA_ERROR_INVALID_VALUE, &text));
  ASSERT_NE(text, nullptr);
  EXPECT_GT(strlen(text), 0u);
}

TEST(ErrorStringTest, UnknownCodeIsInvalidValueAndNull) {
  const char* name = "sentinel";
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuGetErrorName(static_cast<CUresult>(12345), &name));
  EXPECT_EQ(name, nullptr);
  const char* text = "sentinel";
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuGetErrorString(static_cast<CUresult>(12345), &text));
  EXPECT_EQ(text, nullptr);
}

}  // namespace
}  // namespace simcuda_test
