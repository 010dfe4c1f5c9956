// SPDX-License-Identifier: Apache-2.0
//
// threads MODULE THREADS: each thread makes the primary context current, creates its own
// stream and buffers, and runs copies and `mix` kernels on that stream, all threads at
// once; the buffers together exceed the device. Each thread checks its own results
// against the same arithmetic on the host. Prints "ok".
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "e2e_driver.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODULE THREADS\n", argv[0]);
    return 2;
  }
  const int threads = std::atoi(argv[2]);
  constexpr size_t kBytes = size_t{12} << 20;
  constexpr int n = static_cast<int>(kBytes / sizeof(float));
  constexpr int kRounds = 3;
  Driver d = LoadDriver("direct");
  CUmodule module;
  CUcontext ctx = StartDevice(d, argv[1], &module);
  CUfunction mix;
  E2E_CHECK(d, d.ModuleGetFunction(&mix, module, "mix"));

  std::vector<int> failures(threads, 0);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      E2E_CHECK(d, d.CtxSetCurrent(ctx));
      CUstream stream;
      E2E_CHECK(d, d.StreamCreate(&stream, CU_STREAM_NON_BLOCKING));
      CUdeviceptr a, b;
      E2E_CHECK(d, d.MemAlloc(&a, kBytes));
      E2E_CHECK(d, d.MemAlloc(&b, kBytes));
      std::vector<float> ha(n), hb(n), got(n);
      for (int i = 0; i < n; ++i) {
        ha[i] = float((i + t) % 100);
        hb[i] = float((i * 3 + t) % 50);
      }
      E2E_CHECK(d, d.MemcpyHtoDAsync(a, ha.data(), kBytes, stream));
      E2E_CHECK(d, d.MemcpyHtoDAsync(b, hb.data(), kBytes, stream));
      for (int r = 0; r < kRounds; ++r) {
        int count = n;
        float k = 0.5f;
        void* args[] = {&a, &b, &count, &k};
        E2E_CHECK(d,
                  d.LaunchKernel(mix, (n + 255) / 256, 1, 1, 256, 1, 1, 0, stream, args, nullptr));
        for (int i = 0; i < n; ++i) ha[i] = 0.5f * ha[i] + k * hb[i] + float(i % 7);
      }
      E2E_CHECK(d, d.MemcpyDtoHAsync(got.data(), a, kBytes, stream));
      E2E_CHECK(d, d.StreamSynchronize(stream));
      for (int i = 0; i < n; ++i) failures[t] += got[i] != ha[i];
      E2E_CHECK(d, d.MemFree(a));
      E2E_CHECK(d, d.MemFree(b));
    });
  }
  for (auto& w : workers) w.join();
  int total = 0;
  for (int t = 0; t < threads; ++t) {
    if (failures[t] != 0) std::fprintf(stderr, "e2e: thread %d: %d wrong\n", t, failures[t]);
    total += failures[t];
  }
  if (total != 0) return 1;
  std::printf("ok\n");
  return 0;
}
