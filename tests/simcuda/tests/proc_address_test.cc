// SPDX-License-Identifier: Apache-2.0
//
// cuGetProcAddress, the way cudart and the CUDA libraries reach the driver: dlopen
// "libcuda.so.1", dlsym the entry point by its exported ABI name, then ask it for every
// other function by base name, ABI version and stream flavour. Answers are compared with
// dlsym of the exact variant name, so the test pins the exported ABI, not just behaviour.
#include <cuda.h>
#include <dlfcn.h>
#include <gtest/gtest.h>

#include "test_util.h"

namespace simcuda_test {
namespace {

using GetProcAddressV2 = CUresult (*)(const char*, void**, int, cuuint64_t,
                                      CUdriverProcAddressQueryResult*);
using GetProcAddressV1 = CUresult (*)(const char*, void**, int, cuuint64_t);

constexpr cuuint64_t kDefault = CU_GET_PROC_ADDRESS_DEFAULT;
constexpr cuuint64_t kLegacy = CU_GET_PROC_ADDRESS_LEGACY_STREAM;
constexpr cuuint64_t kPerThread = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;

class ProcAddressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClearSimcudaEnvironment();
    driver_ = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(driver_, nullptr) << dlerror();
    get_proc_address_ = reinterpret_cast<GetProcAddressV2>(dlsym(driver_, "cuGetProcAddress_v2"));
    ASSERT_NE(get_proc_address_, nullptr) << "cuGetProcAddress_v2 is not exported";
  }
  void TearDown() override {
    if (driver_ != nullptr) dlclose(driver_);
  }

  void* Exported(const char* name) { return dlsym(driver_, name); }

  // What cuGetProcAddress answers for (symbol, version, flags); fails the test on error.
  void* Lookup(const char* symbol, int version, cuuint64_t flags,
               CUdriverProcAddressQueryResult* status_out = nullptr) {
    void* pfn = reinterpret_cast<void*>(0x1);
    CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    EXPECT_EQ(CUDA_SUCCESS, get_proc_address_(symbol, &pfn, version, flags, &status))
        << symbol << "@" << version << " flags " << flags;
    if (status_out != nullptr) *status_out = status;
    return pfn;
  }

  void* driver_ = nullptr;
  GetProcAddressV2 get_proc_address_ = nullptr;
};

TEST_F(ProcAddressTest, BothEntryPointsAreExported) {
  EXPECT_NE(Exported("cuGetProcAddress"), nullptr) << "the legacy (v1) entry point";
  EXPECT_NE(Exported("cuGetProcAddress"), Exported("cuGetProcAddress_v2"));
}

TEST_F(ProcAddressTest, WorksBeforeCuInit) {
  // cudart fetches cuInit itself through cuGetProcAddress.
  CUdriverProcAddressQueryResult status;
  void* pfn = Lookup("cuInit", 13000, kDefault, &status);
  EXPECT_EQ(status, CU_GET_PROC_ADDRESS_SUCCESS);
  ASSERT_NE(pfn, nullptr);
  EXPECT_EQ(pfn, Exported("cuInit"));
  CU_EXPECT(reinterpret_cast<CUresult (*)(unsigned)>(pfn)(0));
}

TEST_F(ProcAddressTest, PicksTheAbiVariantForTheVersion) {
  CU_ASSERT(cuInit(0));
  CUdriverProcAddressQueryResult status;
  EXPECT_EQ(Lookup("cuMemAlloc", 13000, kDefault, &status), Exported("cuMemAlloc_v2"));
  EXPECT_EQ(status, CU_GET_PROC_ADDRESS_SUCCESS);
  EXPECT_EQ(Lookup("cuMemAlloc", 3020, kDefault), Exported("cuMemAlloc_v2"));
  EXPECT_EQ(Lookup("cuCtxCreate", 13000, kDefault), Exported("cuCtxCreate_v4"));
  EXPECT_EQ(Lookup("cuMemFree", 12000, kDefault), Exported("cuMemFree_v2"));
  EXPECT_EQ(Lookup("cuStreamDestroy", 13000, kDefault), Exported("cuStreamDestroy_v2"));
  EXPECT_EQ(Lookup("cuGetProcAddress", 13000, kDefault), Exported("cuGetProcAddress_v2"));
  // cuEventElapsedTime_v2 arrived in 12.8; an older caller must get the old ABI (or
  // nothing, if the driver does not carry it), never the newer one.
  void* elapsed_v2 = Lookup("cuEventElapsedTime", 13000, kDefault);
  ASSERT_NE(Exported("cuEventElapsedTime_v2"), nullptr);
  EXPECT_EQ(elapsed_v2, Exported("cuEventElapsedTime_v2"));
  EXPECT_EQ(Lookup("cuEventElapsedTime", 12000, kDefault), Exported("cuEventElapsedTime"));
  EXPECT_EQ(Lookup("cuGetProcAddress", 11030, kDefault), Exported("cuGetProcAddress"));
}

TEST_F(ProcAddressTest, PerThreadFlagSelectsPtszAndPtdsVariants) {
  CU_ASSERT(cuInit(0));
  ASSERT_NE(Exported("cuLaunchKernel_ptsz"), nullptr);
  EXPECT_EQ(Lookup("cuLaunchKernel", 13000, kPerThread), Exported("cuLaunchKernel_ptsz"));
  EXPECT_EQ(Lookup("cuLaunchKernel", 7000, kPerThread), Exported("cuLaunchKernel_ptsz"));
  EXPECT_EQ(Lookup("cuLaunchKernel", 13000, kLegacy), Exported("cuLaunchKernel"));
  EXPECT_EQ(Lookup("cuLaunchKernel", 13000, kDefault), Exported("cuLaunchKernel"));
  ASSERT_NE(Exported("cuMemcpyHtoD_v2_ptds"), nullptr);
  EXPECT_EQ(Lookup("cuMemcpyHtoD", 13000, kPerThread), Exported("cuMemcpyHtoD_v2_ptds"));
  EXPECT_EQ(Lookup("cuMemcpyHtoD", 13000, kLegacy), Exported("cuMemcpyHtoD_v2"));
  EXPECT_EQ(Lookup("cuStreamSynchronize", 13000, kPerThread), Exported("cuStreamSynchronize_ptsz"));
  // Functions without a per-thread flavour answer their ordinary variant.
  EXPECT_EQ(Lookup("cuMemAlloc", 13000, kPerThread), Exported("cuMemAlloc_v2"));
  EXPECT_EQ(Lookup("cuDeviceGetCount", 13000, kPerThread), Exported("cuDeviceGetCount"));
}

TEST_F(ProcAddressTest, UnknownSymbolIsSuccessWithNullAndNotFound) {
  CU_ASSERT(cuInit(0));
  void* pfn = reinterpret_cast<void*>(0x1);
  CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SUCCESS;
  CU_EXPECT(get_proc_address_("cuNoSuchFunction", &pfn, 13000, kDefault, &status));
  EXPECT_EQ(pfn, nullptr);
  EXPECT_EQ(status, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
}

TEST_F(ProcAddressTest, TooOldVersionIsVersionNotSufficient) {
  CU_ASSERT(cuInit(0));
  void* pfn = reinterpret_cast<void*>(0x1);
  CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SUCCESS;
  // cuMemCreate first appeared in CUDA 10.2.
  CU_EXPECT(get_proc_address_("cuMemCreate", &pfn, 10000, kDefault, &status));
  EXPECT_EQ(pfn, nullptr);
  EXPECT_EQ(status, CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
  CU_EXPECT(get_proc_address_("cuMemCreate", &pfn, 10020, kDefault, &status));
  EXPECT_EQ(pfn, Exported("cuMemCreate"));
  EXPECT_EQ(status, CU_GET_PROC_ADDRESS_SUCCESS);
}

TEST_F(ProcAddressTest, VersionNewerThanTheDriverIsInvalidValue) {
  CU_ASSERT(cuInit(0));
  int driver_version = 0;
  CU_ASSERT(cuDriverGetVersion(&driver_version));
  void* pfn = nullptr;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE,
                   get_proc_address_("cuMemAlloc", &pfn, driver_version + 1000, kDefault, nullptr));
}

TEST_F(ProcAddressTest, NullArgumentsAreInvalidValue) {
  CU_ASSERT(cuInit(0));
  void* pfn = nullptr;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE,
                   get_proc_address_(nullptr, &pfn, 13000, kDefault, nullptr));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE,
                   get_proc_address_("cuMemAlloc", nullptr, 13000, kDefault, nullptr));
}

TEST_F(ProcAddressTest, StatusIsOptional) {
  CU_ASSERT(cuInit(0));
  void* pfn = nullptr;
  CU_EXPECT(get_proc_address_("cuMemAlloc", &pfn, 13000, kDefault, nullptr));
  EXPECT_EQ(pfn, Exported("cuMemAlloc_v2"));
}

TEST_F(ProcAddressTest, LegacyEntryPointAnswersTheSame) {
  auto v1 = reinterpret_cast<GetProcAddressV1>(Exported("cuGetProcAddress"));
  ASSERT_NE(v1, nullptr);
  CU_ASSERT(cuInit(0));
  void* pfn = nullptr;
  CU_ASSERT(v1("cuMemAlloc", &pfn, 13000, kDefault));
  EXPECT_EQ(pfn, Exported("cuMemAlloc_v2"));
  CU_ASSERT(v1("cuLaunchKernel", &pfn, 13000, kPerThread));
  EXPECT_EQ(pfn, Exported("cuLaunchKernel_ptsz"));
}

TEST_F(ProcAddressTest, ReturnedFunctionsWork) {
  using InitFn = CUresult (*)(unsigned);
  using DriverGetVersionFn = CUresult (*)(int*);
  using DeviceGetFn = CUresult (*)(CUdevice*, int);
  using RetainFn = CUresult (*)(CUcontext*, CUdevice);
  using SetCurrentFn = CUresult (*)(CUcontext);
  using MemAllocFn = CUresult (*)(CUdeviceptr*, size_t);
  using MemFreeFn = CUresult (*)(CUdeviceptr);
  auto init = reinterpret_cast<InitFn>(Lookup("cuInit", 13000, kDefault));
  ASSERT_NE(init, nullptr);
  CU_ASSERT(init(0));
  auto version = reinterpret_cast<DriverGetVersionFn>(Lookup("cuDriverGetVersion", 13000, 0));
  auto device_get = reinterpret_cast<DeviceGetFn>(Lookup("cuDeviceGet", 13000, 0));
  auto retain = reinterpret_cast<RetainFn>(Lookup("cuDevicePrimaryCtxRetain", 13000, 0));
  auto set_current = reinterpret_cast<SetCurrentFn>(Lookup("cuCtxSetCurrent", 13000, 0));
  auto mem_alloc = reinterpret_cast<MemAllocFn>(Lookup("cuMemAlloc", 13000, 0));
  auto mem_free = reinterpret_cast<MemFreeFn>(Lookup("cuMemFree", 13000, 0));
  ASSERT_TRUE(version && device_get && retain && set_current && mem_alloc && mem_free);
  int v = 0;
  CU_ASSERT(version(&v));
  EXPECT_GE(v, 13000);
  CUdevice device;
  CU_ASSERT(device_get(&device, 0));
  CUcontext ctx;
  CU_ASSERT(retain(&ctx, device));
  CU_ASSERT(set_current(ctx));
  CUdeviceptr ptr = 0;
  CU_ASSERT(mem_alloc(&ptr, 1 << 20));
  EXPECT_NE(ptr, 0u);
  CU_EXPECT(mem_free(ptr));
  CU_EXPECT(cuDevicePrimaryCtxRelease(device));
}

TEST_F(ProcAddressTest, DirectCallsReachTheSameDriver) {
  // The test binary links the stub; at run time its cuMemAlloc_v2 must be the one
  // dlopen("libcuda.so.1") sees, i.e. there is exactly one driver in the process.
  ASSERT_NE(Exported("cuMemAlloc_v2"), nullptr);
  void* global = dlsym(RTLD_DEFAULT, "cuMemAlloc_v2");
  EXPECT_EQ(global, Exported("cuMemAlloc_v2"));
}

}  // namespace
}  // namespace simcuda_test
