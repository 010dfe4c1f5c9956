// SPDX-License-Identifier: Apache-2.0
//
// Modules and launches: loading from a path and from memory, looking kernels up, the
// parameter layout (cuFuncGetParamInfo), and the three ways to pass arguments
// (kernelParams, the `extra` buffer, cuLaunchKernelEx).
#include <cuda.h>
#include <gtest/gtest.h>
#include <string.h>

#include <cstdint>
#include <vector>

#include "test_kernels.h"
#include "test_util.h"

namespace simcuda_test {
namespace {

class ModuleTest : public DriverTest {
 protected:
  // Launches mixed_params with the values below and returns what the kernel saw.
  static constexpr int32_t kI = -123456;
  static constexpr float kF = 2.5f;
  static constexpr Vec3 kV = {1.0f, -2.0f, 3.25f};
  static constexpr char kC = 'q';
  static constexpr double kD = 6.02214076e23;

  void ExpectRecord(const MixedRecord& record) {
    EXPECT_EQ(record.i, kI);
    EXPECT_EQ(record.f, kF);
    EXPECT_EQ(record.v.x, kV.x);
    EXPECT_EQ(record.v.y, kV.y);
    EXPECT_EQ(record.v.z, kV.z);
    EXPECT_EQ(record.c, kC);
    EXPECT_EQ(record.d, kD);
  }

  CUdeviceptr NewRecord() {
    CUdeviceptr out = 0;
    EXPECT_EQ(CUDA_SUCCESS, cuMemAlloc(&out, sizeof(MixedRecord)));
    EXPECT_EQ(CUDA_SUCCESS, cuMemsetD8(out, 0, sizeof(MixedRecord)));
    return out;
  }
  MixedRecord ReadRecord(CUdeviceptr out) {
    MixedRecord record;
    memset(&record, 0, sizeof(record));
    EXPECT_EQ(CUDA_SUCCESS, cuMemcpyDtoH(&record, out, sizeof(record)));
    return record;
  }
};

TEST_F(ModuleTest, LoadFromPathAndGetFunction) {
  CUmodule module = nullptr;
  CU_ASSERT(cuModuleLoad(&module, TestModulePath()));
  ASSERT_NE(module, nullptr);
  CUfunction fn = nullptr;
  CU_ASSERT(cuModuleGetFunction(&fn, module, "vec_add"));
  EXPECT_NE(fn, nullptr);
  CUfunction missing = nullptr;
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_FOUND, cuModuleGetFunction(&missing, module, "no_such_kernel"));
  // The parameter table is not a kernel.
  CU_EXPECT_STATUS(CUDA_ERROR_NOT_FOUND,
                   cuModuleGetFunction(&missing, module, "vec_add__simcuda_params"));
  CU_EXPECT(cuModuleUnload(module));
}

TEST_F(ModuleTest, LoadMissingFileFails) {
  CUmodule module = nullptr;
  CU_EXPECT_STATUS(CUDA_ERROR_FILE_NOT_FOUND,
                   cuModuleLoad(&module, "/nonexistent/simcuda/module.so"));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuModuleLoad(&module, nullptr));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuModuleLoad(nullptr, TestModulePath()));
}

TEST_F(ModuleTest, LoadFromMemoryAndLaunch) {
  const std::vector<char> image = ReadFileBytes(TestModulePath());
  ASSERT_FALSE(image.empty());
  CUmodule module = nullptr;
  CU_ASSERT(cuModuleLoadData(&module, image.data()));
  CUfunction fn = nullptr;
  CU_ASSERT(cuModuleGetFunction(&fn, module, "fill_u32"));
  uint64_t n = 1000;
  CUdeviceptr out = 0;
  CU_ASSERT(cuMemAlloc(&out, n * sizeof(uint32_t)));
  uint32_t value = 0xfeed;
  CU_ASSERT(Launch(fn, nullptr, {&out, &value, &n}, 128));
  CU_ASSERT(cuCtxSynchronize());
  std::vector<uint32_t> back(n);
  CU_ASSERT(cuMemcpyDtoH(back.data(), out, n * sizeof(uint32_t)));
  EXPECT_EQ(back, std::vector<uint32_t>(n, 0xfeed));
  CU_EXPECT(cuMemFree(out));
  CU_EXPECT(cuModuleUnload(module));
}

TEST_F(ModuleTest, GarbageImageIsRejected) {
  const char garbage[] = "this is not a shared object";
  CUmodule module = nullptr;
  EXPECT_NE(CUDA_SUCCESS, cuModuleLoadData(&module, garbage));
}

TEST_F(ModuleTest, VectorAddOverAGrid) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  const int32_t n = 100000;
  std::vector<float> a(n);
  std::vector<float> b(n);
  for (int32_t i = 0; i < n; ++i) {
    a[i] = static_cast<float>(i);
    b[i] = static_cast<float>(2 * i) + 0.5f;
  }
  CUdeviceptr da = 0;
  CUdeviceptr db = 0;
  CUdeviceptr dc = 0;
  CU_ASSERT(cuMemAlloc(&da, n * sizeof(float)));
  CU_ASSERT(cuMemAlloc(&db, n * sizeof(float)));
  CU_ASSERT(cuMemAlloc(&dc, n * sizeof(float)));
  CU_ASSERT(cuMemcpyHtoD(da, a.data(), n * sizeof(float)));
  CU_ASSERT(cuMemcpyHtoD(db, b.data(), n * sizeof(float)));
  int32_t count = n;
  void* params[] = {&dc, &da, &db, &count};
  const unsigned block = 256;
  const unsigned grid = (n + block - 1) / block;  // more threads than elements
  CU_ASSERT(
      cuLaunchKernel(Kernel("vec_add"), grid, 1, 1, block, 1, 1, 0, nullptr, params, nullptr));
  CU_ASSERT(cuCtxSynchronize());
  std::vector<float> c(n);
  CU_ASSERT(cuMemcpyDtoH(c.data(), dc, n * sizeof(float)));
  for (int32_t i = 0; i < n; ++i) ASSERT_EQ(c[i], a[i] + b[i]) << i;
  for (CUdeviceptr p : {da, db, dc}) CU_EXPECT(cuMemFree(p));
}

TEST_F(ModuleTest, KernelSeesGridBlockAndSharedBytes) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  CUdeviceptr out = 0;
  CU_ASSERT(cuMemAlloc(&out, 7 * sizeof(uint32_t)));
  void* params[] = {&out};
  CU_ASSERT(
      cuLaunchKernel(Kernel("record_launch"), 3, 4, 5, 6, 7, 8, 512, nullptr, params, nullptr));
  CU_ASSERT(cuCtxSynchronize());
  uint32_t seen[7] = {};
  CU_ASSERT(cuMemcpyDtoH(seen, out, sizeof(seen)));
  EXPECT_EQ(std::vector<uint32_t>(seen, seen + 7), (std::vector<uint32_t>{3, 4, 5, 6, 7, 8, 512}));
  CU_EXPECT(cuMemFree(out));
}

TEST_F(ModuleTest, ParamInfoFollowsTheLayoutRule) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  CUfunction fn = Kernel("mixed_params");
  const size_t expected_offsets[] = {kMixedOffsetI, kMixedOffsetOut, kMixedOffsetF,
                                     kMixedOffsetV, kMixedOffsetC,   kMixedOffsetD};
  const size_t expected_sizes[] = {sizeof(int32_t), sizeof(void*), sizeof(float),
                                   sizeof(Vec3),    sizeof(char),  sizeof(double)};
  for (size_t i = 0; i < kMixedParamCount; ++i) {
    size_t offset = 999;
    size_t size = 999;
    CU_ASSERT(cuFuncGetParamInfo(fn, i, &offset, &size)) << "param " << i;
    EXPECT_EQ(offset, expected_offsets[i]) << "param " << i;
    EXPECT_EQ(size, expected_sizes[i]) << "param " << i;
  }
  size_t offset = 0;
  CU_ASSERT(cuFuncGetParamInfo(fn, 3, &offset, nullptr)) << "paramSize is optional";
  EXPECT_EQ(offset, static_cast<size_t>(kMixedOffsetV));
  size_t size = 0;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE,
                   cuFuncGetParamInfo(fn, kMixedParamCount, &offset, &size));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuFuncGetParamInfo(fn, 1000, &offset, &size));
  // A kernel with a single pointer parameter.
  CU_ASSERT(cuFuncGetParamInfo(Kernel("record_launch"), 0, &offset, &size));
  EXPECT_EQ(offset, 0u);
  EXPECT_EQ(size, sizeof(void*));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE,
                   cuFuncGetParamInfo(Kernel("record_launch"), 1, &offset, &size));
}

TEST_F(ModuleTest, LaunchWithKernelParams) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  CUdeviceptr out = NewRecord();
  int32_t i = kI;
  float f = kF;
  Vec3 v = kV;
  char c = kC;
  double d = kD;
  void* params[] = {&i, &out, &f, &v, &c, &d};
  CU_ASSERT(cuLaunchKernel(Kernel("mixed_params"), 1, 1, 1, 1, 1, 1, 0, nullptr, params, nullptr));
  // Arguments are copied at launch: changing them afterwards must not matter.
  i = 0;
  v.x = 99.0f;
  CU_ASSERT(cuCtxSynchronize());
  ExpectRecord(ReadRecord(out));
  CU_EXPECT(cuMemFree(out));
}

TEST_F(ModuleTest, LaunchWithExtraBuffer) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  CUdeviceptr out = NewRecord();
  alignas(8) unsigned char buffer[kMixedParamBytes];
  memset(buffer, 0xcc, sizeof(buffer));
  const int32_t i = kI;
  const float f = kF;
  const Vec3 v = kV;
  const char c = kC;
  const double d = kD;
  memcpy(buffer + kMixedOffsetI, &i, sizeof(i));
  memcpy(buffer + kMixedOffsetOut, &out, sizeof(void*));
  memcpy(buffer + kMixedOffsetF, &f, sizeof(f));
  memcpy(buffer + kMixedOffsetV, &v, sizeof(v));
  memcpy(buffer + kMixedOffsetC, &c, sizeof(c));
  memcpy(buffer + kMixedOffsetD, &d, sizeof(d));
  size_t buffer_size = sizeof(buffer);
  void* extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, buffer, CU_LAUNCH_PARAM_BUFFER_SIZE,
                   &buffer_size, CU_LAUNCH_PARAM_END};
  CU_ASSERT(cuLaunchKernel(Kernel("mixed_params"), 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, extra));
  memset(buffer, 0, sizeof(buffer));  // copied at launch
  CU_ASSERT(cuCtxSynchronize());
  ExpectRecord(ReadRecord(out));
  CU_EXPECT(cuMemFree(out));
}

TEST_F(ModuleTest, KernelParamsAndExtraTogetherAreInvalid) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  CUdeviceptr out = NewRecord();
  int32_t i = kI;
  float f = kF;
  Vec3 v = kV;
  char c = kC;
  double d = kD;
  void* params[] = {&i, &out, &f, &v, &c, &d};
  alignas(8) unsigned char buffer[kMixedParamBytes] = {};
  size_t buffer_size = sizeof(buffer);
  void* extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, buffer, CU_LAUNCH_PARAM_BUFFER_SIZE,
                   &buffer_size, CU_LAUNCH_PARAM_END};
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuLaunchKernel(Kernel("mixed_params"), 1, 1, 1, 1, 1,
                                                            1, 0, nullptr, params, extra));
  CU_ASSERT(cuCtxSynchronize());
  EXPECT_EQ(ReadRecord(out).i, 0) << "a refused launch must not run";
  CU_EXPECT(cuMemFree(out));
}

TEST_F(ModuleTest, LaunchKernelEx) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  CUstream stream;
  CU_ASSERT(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUdeviceptr out = NewRecord();
  int32_t i = kI;
  float f = kF;
  Vec3 v = kV;
  char c = kC;
  double d = kD;
  void* params[] = {&i, &out, &f, &v, &c, &d};
  CUlaunchConfig config = {};
  config.gridDimX = config.gridDimY = config.gridDimZ = 1;
  config.blockDimX = config.blockDimY = config.blockDimZ = 1;
  config.hStream = stream;
  CU_ASSERT(cuLaunchKernelEx(&config, Kernel("mixed_params"), params, nullptr));
  CU_ASSERT(cuStreamSynchronize(stream));
  ExpectRecord(ReadRecord(out));

  // The grid comes from the config.
  CUdeviceptr dims = 0;
  CU_ASSERT(cuMemAlloc(&dims, 7 * sizeof(uint32_t)));
  void* dim_params[] = {&dims};
  config.gridDimX = 2;
  config.gridDimY = 3;
  config.blockDimX = 32;
  config.sharedMemBytes = 64;
  CU_ASSERT(cuLaunchKernelEx(&config, Kernel("record_launch"), dim_params, nullptr));
  CU_ASSERT(cuStreamSynchronize(stream));
  uint32_t seen[7] = {};
  CU_ASSERT(cuMemcpyDtoH(seen, dims, sizeof(seen)));
  EXPECT_EQ(std::vector<uint32_t>(seen, seen + 7), (std::vector<uint32_t>{2, 3, 1, 32, 1, 1, 64}));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE,
                   cuLaunchKernelEx(nullptr, Kernel("record_launch"), dim_params, nullptr));
  CU_EXPECT(cuMemFree(out));
  CU_EXPECT(cuMemFree(dims));
  CU_EXPECT(cuStreamDestroy(stream));
}

TEST_F(ModuleTest, ZeroGridIsInvalid) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  CUdeviceptr out = 0;
  CU_ASSERT(cuMemAlloc(&out, 64));
  void* params[] = {&out};
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuLaunchKernel(Kernel("record_launch"), 0, 1, 1, 1, 1,
                                                            1, 0, nullptr, params, nullptr));
  CU_EXPECT(cuMemFree(out));
}

TEST_F(ModuleTest, BadHandlesAreRejected) {
  ASSERT_NO_FATAL_FAILURE(LoadTestModule());
  CUfunction fn = nullptr;
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE,
                   cuModuleGetFunction(&fn, reinterpret_cast<CUmodule>(0x1234), "vec_add"));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuModuleGetFunction(nullptr, module_, "vec_add"));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuModuleGetFunction(&fn, module_, nullptr));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE, cuModuleUnload(reinterpret_cast<CUmodule>(0x1234)));
  CUdeviceptr out = 0;
  void* params[] = {&out};
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE,
                   cuLaunchKernel(reinterpret_cast<CUfunction>(0x1234), 1, 1, 1, 1, 1, 1, 0,
                                  nullptr, params, nullptr));
  EXPECT_NE(CUDA_SUCCESS, cuLaunchKernel(nullptr, 1, 1, 1, 1, 1, 1, 0, nullptr, params, nullptr));
  size_t offset = 0;
  EXPECT_NE(CUDA_SUCCESS,
            cuFuncGetParamInfo(reinterpret_cast<CUfunction>(0x1234), 0, &offset, nullptr));
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_HANDLE,
                   cuLaunchKernel(Kernel("record_launch"), 1, 1, 1, 1, 1, 1, 0,
                                  reinterpret_cast<CUstream>(0x1234), params, nullptr));
}

}  // namespace
}  // namespace simcuda_test
