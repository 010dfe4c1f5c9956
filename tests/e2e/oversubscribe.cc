// SPDX-License-Identifier: Apache-2.0
//
// oversubscribe MODULE MODE [BUFFERS MIB_EACH ROUNDS]: allocates BUFFERS device buffers of
// MIB_EACH MiB (by default 16 × 16 MiB = 256 MiB, four times the 64 MiB device the tests
// give simcuda), fills them from the host, runs ROUNDS rounds of `mix` kernels that each
// read two buffers, reads everything back and prints a checksum of all the bytes. MODE is
// how it reaches the driver (e2e_driver.h). Out of device memory: exit status 3.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "e2e_driver.h"

int main(int argc, char** argv) {
  if (argc != 3 && argc != 6) {
    std::fprintf(stderr, "usage: %s MODULE MODE [BUFFERS MIB_EACH ROUNDS]\n", argv[0]);
    return 2;
  }
  const int buffers = argc == 6 ? std::atoi(argv[3]) : 16;
  const size_t bytes = (argc == 6 ? std::atoi(argv[4]) : 16) * (size_t{1} << 20);
  const int rounds = argc == 6 ? std::atoi(argv[5]) : 2;
  const int n = static_cast<int>(bytes / sizeof(float));
  Driver d = LoadDriver(argv[2]);

  CUmodule module;
  StartDevice(d, argv[1], &module);
  CUfunction mix;
  E2E_CHECK(d, d.ModuleGetFunction(&mix, module, "mix"));

  std::vector<CUdeviceptr> buf(buffers);
  std::vector<float> host(n);
  for (int b = 0; b < buffers; ++b) {
    E2E_CHECK(d, d.MemAlloc(&buf[b], bytes));
    for (int i = 0; i < n; ++i) host[i] = float((i * 31 + b * 17) % 1000) * 0.25f;
    E2E_CHECK(d, d.MemcpyHtoD(buf[b], host.data(), bytes));
  }
  // Each launch on the (legacy or per-thread) default stream reads buffers b and b+1.
  for (int r = 0; r < rounds; ++r) {
    for (int b = 0; b < buffers; ++b) {
      CUdeviceptr a = buf[b];
      CUdeviceptr other = buf[(b + 1) % buffers];
      int count = n;
      float k = 0.125f * float(r + 1);
      void* args[] = {&a, &other, &count, &k};
      E2E_CHECK(d,
                d.LaunchKernel(mix, (n + 255) / 256, 1, 1, 256, 1, 1, 0, nullptr, args, nullptr));
    }
  }
  E2E_CHECK(d, d.CtxSynchronize());
  unsigned long long hash = 1469598103934665603ull;
  for (int b = 0; b < buffers; ++b) {
    E2E_CHECK(d, d.MemcpyDtoH(host.data(), buf[b], bytes));
    hash = Fnv1a(host.data(), bytes, hash);
  }
  for (int b = 0; b < buffers; ++b) E2E_CHECK(d, d.MemFree(buf[b]));
  std::printf("checksum %016llx\n", hash);
  return 0;
}
