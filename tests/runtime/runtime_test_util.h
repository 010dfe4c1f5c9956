// SPDX-License-Identifier: Apache-2.0
//
// Shared set-up for runtime tests on simcuda: configure the simulated device, load the
// driver table, make a context current, load the test kernels, run them.
#ifndef SPILLWAY_TESTS_RUNTIME_RUNTIME_TEST_UTIL_H_
#define SPILLWAY_TESTS_RUNTIME_RUNTIME_TEST_UTIL_H_

#include <cuda.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "runtime/driver_api.h"

#define ASSERT_CU(call)                                   \
  do {                                                    \
    CUresult r_ = (call);                                 \
    const char* n_ = "?";                                 \
    cuGetErrorName(r_, &n_);                              \
    ASSERT_EQ(r_, CUDA_SUCCESS) << #call << " -> " << n_; \
  } while (0)

#define EXPECT_CU(call)                                   \
  do {                                                    \
    CUresult r_ = (call);                                 \
    const char* n_ = "?";                                 \
    cuGetErrorName(r_, &n_);                              \
    EXPECT_EQ(r_, CUDA_SUCCESS) << #call << " -> " << n_; \
  } while (0)

namespace spillway::testing {

// Sets SIMCUDA_* for this process (each test case is its own process), initialises the
// driver and makes device 0's primary context current.
inline void StartSimulatedDevice(const char* device_memory) {
  setenv("SIMCUDA_DEVICE_MEMORY", device_memory, 1);
  ASSERT_TRUE(LoadDriverApi().ok());
  ASSERT_CU(cuInit(0));
  CUcontext ctx = nullptr;
  ASSERT_CU(cuDevicePrimaryCtxRetain(&ctx, 0));
  ASSERT_CU(cuCtxSetCurrent(ctx));
}

// The kernels in tests/runtime/manager_kernels.cc.
struct TestKernels {
  CUmodule module = nullptr;
  CUfunction fill = nullptr;
  CUfunction check = nullptr;
  CUfunction add = nullptr;

  void Load() {
    std::string path = std::string(SPW_TEST_MODULE_DIR) + "/manager_kernels.so";
    ASSERT_CU(cuModuleLoad(&module, path.c_str()));
    ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_pattern"));
    ASSERT_CU(cuModuleGetFunction(&check, module, "check_pattern"));
    ASSERT_CU(cuModuleGetFunction(&add, module, "add_words"));
  }
  CUresult Fill(CUdeviceptr words, uint64_t n, uint32_t seed, CUstream stream) {
    void* args[] = {&words, &n, &seed};
    return cuLaunchKernel(fill, 1, 1, 1, 1, 1, 1, 0, stream, args, nullptr);
  }
  CUresult Check(CUdeviceptr words, uint64_t n, uint32_t seed, CUdeviceptr mismatches,
                 CUstream stream) {
    void* args[] = {&words, &n, &seed, &mismatches};
    return cuLaunchKernel(check, 1, 1, 1, 1, 1, 1, 0, stream, args, nullptr);
  }
  CUresult Add(CUdeviceptr words, uint64_t n, uint32_t delta, CUstream stream) {
    void* args[] = {&words, &n, &delta};
    return cuLaunchKernel(add, 1, 1, 1, 1, 1, 1, 0, stream, args, nullptr);
  }
};

inline uint32_t Pattern(uint32_t seed, uint64_t i) {
  return seed * 2654435761u + static_cast<uint32_t>(i);
}

}  // namespace spillway::testing

#endif  // SPILLWAY_TESTS_RUNTIME_RUNTIME_TEST_UTIL_H_
