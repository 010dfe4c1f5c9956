// SPDX-License-Identifier: Apache-2.0
//
// pointer_array MODULE [A B C]: the case launch-argument scanning cannot see. It fills buffers,
// builds an array of their device pointers on the host, copies it to (small, plain) device
// memory and runs `gather_sum`, which follows the pointers from device memory. Other
// buffers push the referenced ones out of HBM before and after the copy. Prints "ok" when
// every sum is right; a fault or a wrong sum fails. A B C: which of the 8 buffers the table
// points to (default 0 3 6).
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "e2e_driver.h"

int main(int argc, char** argv) {
  if (argc != 2 && argc != 5) {
    std::fprintf(stderr, "usage: %s MODULE [A B C]\n", argv[0]);
    return 2;
  }
  constexpr int kBuffers = 8;
  constexpr size_t kBytes = size_t{4} << 20;
  constexpr int n = static_cast<int>(kBytes / sizeof(float));
  constexpr int kCount = 3;
  int referenced[kCount] = {0, 3, 6};
  for (int i = 0; argc == 5 && i < kCount; ++i) referenced[i] = std::atoi(argv[2 + i]) % kBuffers;
  Driver d = LoadDriver("direct");
  CUmodule module;
  StartDevice(d, argv[1], &module);
  CUfunction gather;
  E2E_CHECK(d, d.ModuleGetFunction(&gather, module, "gather_sum"));

  std::vector<CUdeviceptr> buf(kBuffers);
  for (int b = 0; b < kBuffers; ++b) {
    E2E_CHECK(d, d.MemAlloc(&buf[b], kBytes));
    float value = float(b + 1);
    unsigned bits;
    std::memcpy(&bits, &value, sizeof(bits));
    E2E_CHECK(d, d.MemsetD32(buf[b], bits, n));  // each set brings its buffer in
  }
  CUdeviceptr out;
  E2E_CHECK(d, d.MemAlloc(&out, kBytes));
  // The table: device pointers, built on the host, copied into plain device memory.
  CUdeviceptr table_host[kCount];
  for (int i = 0; i < kCount; ++i) table_host[i] = buf[referenced[i]];
  CUdeviceptr table;
  E2E_CHECK(d, d.MemAlloc(&table, sizeof(table_host)));
  E2E_CHECK(d, d.MemcpyHtoD(table, table_host, sizeof(table_host)));
  // Touch the other buffers again: the runtime must not push the referenced ones where a
  // kernel cannot reach them.
  for (int b = 0; b < kBuffers; ++b) {
    if (b == referenced[0] || b == referenced[1] || b == referenced[2]) continue;
    E2E_CHECK(d, d.MemsetD32(buf[b], 0, n));
  }
  int count = kCount;
  int elements = n;
  void* args[] = {&table, &count, &out, &elements};
  E2E_CHECK(d, d.LaunchKernel(gather, (n + 255) / 256, 1, 1, 256, 1, 1, 0, nullptr, args, nullptr));
  E2E_CHECK(d, d.CtxSynchronize());
  std::vector<float> result(n);
  E2E_CHECK(d, d.MemcpyDtoH(result.data(), out, kBytes));
  const float want = float(referenced[0] + 1) + float(referenced[1] + 1) + float(referenced[2] + 1);
  for (int j = 0; j < n; ++j) {
    if (result[j] != want) {
      std::fprintf(stderr, "e2e: out[%d] = %g, expected %g\n", j, result[j], want);
      return 1;
    }
  }
  std::printf("ok\n");
  return 0;
}
