// SPDX-License-Identifier: Apache-2.0
//
// vector_add: the smallest complete CUDA driver-API program. It loads a module, copies two
// vectors to the device, runs c = a + b and then c = 2.5 * a + c (SAXPY), copies the result
// back and checks every element. It is written only against <cuda.h> and linked against
// the toolkit's stub libcuda.so, so whichever libcuda.so.1 the loader finds runs it:
// NVIDIA's driver (with a cubin module), or simcuda (with a module built from
// vector_add_kernels.cc).
//
//   usage: vector_add MODULE
//   e.g.:  LD_LIBRARY_PATH=build/simcuda vector_add build/.../vector_add_kernels.so
#include <cuda.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

// Every driver call is checked; a failure names the call and the error, then exits.
#define CHECK_CU(call)                                                          \
  do {                                                                          \
    const CUresult check_cu_result = (call);                                    \
    if (check_cu_result != CUDA_SUCCESS) {                                      \
      const char* check_cu_name = nullptr;                                      \
      cuGetErrorName(check_cu_result, &check_cu_name);                          \
      std::fprintf(stderr, "vector_add: %s failed: %s\n", #call,                \
                   check_cu_name != nullptr ? check_cu_name : "unknown error"); \
      std::exit(2);                                                             \
    }                                                                           \
  } while (0)

namespace {

constexpr int kElements = 1 << 20;
constexpr unsigned kBlock = 256;
constexpr float kAlpha = 2.5f;

// Counts elements of `got` that differ from `want`, printing the first few.
int CountMismatches(const char* what, const std::vector<float>& got,
                    const std::vector<float>& want) {
  int mismatches = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::fabs(got[i] - want[i]) > 1e-5f * std::fabs(want[i])) {
      if (mismatches < 5) {
        std::fprintf(stderr, "  %s[%zu] = %g, expected %g\n", what, i, got[i], want[i]);
      }
      ++mismatches;
    }
  }
  return mismatches;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s MODULE\n", argv[0]);
    return 2;
  }
  const char* module_path = argv[1];

  // The device and its primary context.
  CHECK_CU(cuInit(0));
  int driver_version = 0;
  CHECK_CU(cuDriverGetVersion(&driver_version));
  CUdevice device;
  CHECK_CU(cuDeviceGet(&device, 0));
  char name[128];
  CHECK_CU(cuDeviceGetName(name, sizeof(name), device));
  int major = 0;
  int minor = 0;
  CHECK_CU(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device));
  CHECK_CU(cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device));
  size_t total_memory = 0;
  CHECK_CU(cuDeviceTotalMem(&total_memory, device));
  std::printf("device 0: %s, compute capability %d.%d, %.1f GiB, driver %d.%d\n", name, major,
              minor, total_memory / double(1 << 30), driver_version / 1000,
              (driver_version % 1000) / 10);
  CUcontext ctx;
  CHECK_CU(cuDevicePrimaryCtxRetain(&ctx, device));
  CHECK_CU(cuCtxSetCurrent(ctx));

  // The kernels.
  CUmodule module;
  CHECK_CU(cuModuleLoad(&module, module_path));
  CUfunction vec_add;
  CUfunction saxpy;
  CHECK_CU(cuModuleGetFunction(&vec_add, module, "vec_add"));
  CHECK_CU(cuModuleGetFunction(&saxpy, module, "saxpy"));

  // Inputs on the host, and what the results must be.
  std::vector<float> a(kElements);
  std::vector<float> b(kElements);
  std::vector<float> want_sum(kElements);
  std::vector<float> want_saxpy(kElements);
  for (int i = 0; i < kElements; ++i) {
    a[i] = 0.5f * static_cast<float>(i % 1000);
    b[i] = static_cast<float>(i % 777) - 100.0f;
    want_sum[i] = a[i] + b[i];
    want_saxpy[i] = kAlpha * a[i] + want_sum[i];
  }

  // Device buffers and the copies in.
  const size_t bytes = kElements * sizeof(float);
  CUdeviceptr d_a;
  CUdeviceptr d_b;
  CUdeviceptr d_c;
  CHECK_CU(cuMemAlloc(&d_a, bytes));
  CHECK_CU(cuMemAlloc(&d_b, bytes));
  CHECK_CU(cuMemAlloc(&d_c, bytes));
  CHECK_CU(cuMemcpyHtoD(d_a, a.data(), bytes));
  CHECK_CU(cuMemcpyHtoD(d_b, b.data(), bytes));

  // c = a + b, on a stream.
  CUstream stream;
  CHECK_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  const unsigned grid = (kElements + kBlock - 1) / kBlock;
  int n = kElements;
  void* vec_add_args[] = {&d_c, &d_a, &d_b, &n};
  CHECK_CU(cuLaunchKernel(vec_add, grid, 1, 1, kBlock, 1, 1, 0, stream, vec_add_args, nullptr));
  std::vector<float> sum(kElements);
  CHECK_CU(cuMemcpyDtoHAsync(sum.data(), d_c, bytes, stream));

  // c = alpha * a + c, behind it in the same stream.
  float alpha = kAlpha;
  void* saxpy_args[] = {&d_c, &d_a, &alpha, &n};
  CHECK_CU(cuLaunchKernel(saxpy, grid, 1, 1, kBlock, 1, 1, 0, stream, saxpy_args, nullptr));
  std::vector<float> result(kElements);
  CHECK_CU(cuMemcpyDtoHAsync(result.data(), d_c, bytes, stream));
  CHECK_CU(cuStreamSynchronize(stream));

  const int sum_errors = CountMismatches("a+b", sum, want_sum);
  const int saxpy_errors = CountMismatches("saxpy", result, want_saxpy);
  std::printf("vec_add: %d elements, %s\n", kElements,
              sum_errors == 0 ? "all correct" : "MISMATCH");
  std::printf("saxpy:   %d elements (alpha = %.1f), %s\n", kElements, kAlpha,
              saxpy_errors == 0 ? "all correct" : "MISMATCH");

  CHECK_CU(cuStreamDestroy(stream));
  CHECK_CU(cuMemFree(d_a));
  CHECK_CU(cuMemFree(d_b));
  CHECK_CU(cuMemFree(d_c));
  CHECK_CU(cuModuleUnload(module));
  CHECK_CU(cuDevicePrimaryCtxRelease(device));

  if (sum_errors != 0 || saxpy_errors != 0) {
    std::printf("FAILED: %d + %d mismatched elements\n", sum_errors, saxpy_errors);
    return 1;
  }
  std::printf("PASSED\n");
  return 0;
}
