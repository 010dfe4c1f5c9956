// SPDX-License-Identifier: Apache-2.0
//
// queries MODULE: what a program sees of a managed allocation through the query entry
// points, and the less common launch and allocation forms. Prints one line per check that
// fails and "ok" when none does. Run under LD_PRELOAD=libspillway.so with
// SPILLWAY_HBM_LIMIT=32M and SPILLWAY_HOST_LIMIT=128M (E2E_VIRTUAL=1 when
// SPILLWAY_VIRTUAL_CAPACITY=1 is set too).
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "e2e_driver.h"

namespace {

int failures = 0;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "e2e: check failed: %s\n", what);
    ++failures;
  }
}

}  // namespace

#define CU(call) E2E_CHECK(d, call)

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  Driver d = LoadDriver("direct");
  CU(d.Init(0));
  CUdevice device;
  CU(d.DeviceGet(&device, 0));
  CUcontext ctx;
  CU(d.PrimaryCtxRetain(&ctx, device));
  CU(d.CtxSetCurrent(ctx));
  CUmodule module;
  CU(d.ModuleLoad(&module, argv[1]));
  CUfunction mix;
  CU(d.ModuleGetFunction(&mix, module, "mix"));

  // Two allocations bigger than the 64 MiB device together: both must be managed.
  constexpr size_t kBytes = size_t{40} << 20;
  CUdeviceptr a, b;
  CU(cuMemAlloc(&a, kBytes));
  CU(cuMemAlloc(&b, kBytes));

  CUdeviceptr base = 0;
  size_t size = 0;
  CU(cuMemGetAddressRange(&base, &size, a + 12345));
  Check(base == a && size == kBytes, "cuMemGetAddressRange: base and size of the allocation");
  unsigned type = 0;
  CU(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, a + 100));
  Check(type == CU_MEMORYTYPE_DEVICE, "MEMORY_TYPE is device");
  CUcontext owner = nullptr;
  CU(cuPointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_CONTEXT, a));
  Check(owner == ctx, "CONTEXT is the allocating context");
  int ordinal = -1;
  size_t range_size = 0;
  void* range_start = nullptr;
  bool managed = true;
  CUpointer_attribute attrs[] = {
      CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, CU_POINTER_ATTRIBUTE_RANGE_SIZE,
      CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, CU_POINTER_ATTRIBUTE_IS_MANAGED};
  void* data[] = {&ordinal, &range_size, &range_start, &managed};
  CU(cuPointerGetAttributes(4, attrs, data, b + 7));
  Check(ordinal == 0, "DEVICE_ORDINAL 0");
  Check(range_size == kBytes, "RANGE_SIZE");
  Check(range_start == reinterpret_cast<void*>(b), "RANGE_START_ADDR");
  Check(!managed, "IS_MANAGED false (not unified memory)");

  size_t free_bytes = 0, total_bytes = 0, device_total = 0;
  CU(cuMemGetInfo(&free_bytes, &total_bytes));
  CU(cuDeviceTotalMem(&device_total, device));
  if (std::getenv("E2E_VIRTUAL") != nullptr) {
    // HBM limit (32M) + host tier (128M); free: minus the 80 MiB allocated.
    Check(total_bytes == (size_t{160} << 20), "virtual total = HBM limit + host tier");
    Check(device_total == total_bytes, "cuDeviceTotalMem agrees");
    Check(free_bytes == (size_t{80} << 20), "virtual free = total - managed");
  } else {
    Check(total_bytes == (size_t{64} << 20), "real total without virtual capacity");
    Check(device_total == total_bytes, "cuDeviceTotalMem is the device's");
  }

  // Stream-ordered allocation (outside capture: managed), sets, and the `extra` launch form
  // with cuLaunchKernelEx.
  CUstream stream;
  CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUdeviceptr c;
  CU(cuMemAllocAsync(&c, kBytes, stream));
  CU(cuMemGetAddressRange(&base, &size, c));
  Check(base == c && size == kBytes, "cuMemAllocAsync result is managed (range as asked)");
  const int n = static_cast<int>(kBytes / sizeof(float));
  CU(cuMemsetD32Async(c, 0x3f800000u, n, stream));  // 1.0f
  CU(cuMemsetD32Async(a, 0x40000000u, n, stream));  // 2.0f
  struct {
    CUdeviceptr a;
    CUdeviceptr b;
    int n;
    float k;
  } packed = {a, c, n, 3.0f};
  size_t packed_size = sizeof(packed);
  void* extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &packed, CU_LAUNCH_PARAM_BUFFER_SIZE,
                   &packed_size, CU_LAUNCH_PARAM_END};
  CUlaunchConfig config = {};
  config.gridDimX = (n + 255) / 256;
  config.gridDimY = config.gridDimZ = 1;
  config.blockDimX = 256;
  config.blockDimY = config.blockDimZ = 1;
  config.hStream = stream;
  CU(cuLaunchKernelEx(&config, mix, nullptr, extra));
  std::vector<float> got(n);
  CU(cuMemcpyDtoHAsync(got.data(), a, kBytes, stream));
  CU(cuStreamSynchronize(stream));
  int wrong = 0;
  for (int i = 0; i < n; ++i) wrong += got[i] != 0.5f * 2.0f + 3.0f * 1.0f + float(i % 7);
  Check(wrong == 0, "cuLaunchKernelEx with `extra` on managed memory");
  CU(cuMemFreeAsync(c, stream));
  CU(cuStreamSynchronize(stream));
  Check(cuMemFree(a + 4096) == CUDA_ERROR_INVALID_VALUE, "freeing inside an allocation fails");
  CU(cuMemFree(a));
  CU(cuMemFree(b));
  if (failures != 0) return 1;
  std::printf("ok\n");
  return 0;
}
