// SPDX-License-Identifier: Apache-2.0
//
// graph_replay MODULE REPLAYS: captures one step (a `mix` kernel over each pair of 8 buffers
// of 8 MiB, twice the 32 MiB device the test gives it) into a graph on a capturing stream, replays
// it REPLAYS times, and prints a checksum of every byte. Under Spillway the capture must not be
// broken (nothing queued on, nor synchronised with, a capturing stream) and the replays, which
// Spillway inspects at cuGraphLaunch, must find every buffer mapped.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "e2e_driver.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODULE REPLAYS\n", argv[0]);
    return 2;
  }
  const int replays = std::atoi(argv[2]);
  constexpr int kBuffers = 8;
  constexpr size_t kBytes = size_t{8} << 20;
  const int n = static_cast<int>(kBytes / sizeof(float));
  Driver d = LoadDriver("direct");
  CUmodule module;
  StartDevice(d, argv[1], &module);
  CUfunction mix;
  E2E_CHECK(d, d.ModuleGetFunction(&mix, module, "mix"));

  std::vector<CUdeviceptr> buf(kBuffers);
  std::vector<float> host(n);
  for (int b = 0; b < kBuffers; ++b) {
    E2E_CHECK(d, d.MemAlloc(&buf[b], kBytes));
    for (int i = 0; i < n; ++i) host[i] = float((i * 13 + b * 5) % 100) * 0.5f;
    E2E_CHECK(d, d.MemcpyHtoD(buf[b], host.data(), kBytes));
  }
  CUstream stream;
  E2E_CHECK(d, d.StreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  E2E_CHECK(d, cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
  int count = n;
  float k = 0.25f;
  for (int b = 0; b < kBuffers; ++b) {
    void* args[] = {&buf[b], &buf[(b + 1) % kBuffers], &count, &k};
    E2E_CHECK(d, d.LaunchKernel(mix, (n + 255) / 256, 1, 1, 256, 1, 1, 0, stream, args, nullptr));
  }
  CUgraph graph;
  E2E_CHECK(d, cuStreamEndCapture(stream, &graph));
  CUgraphExec exec;
  E2E_CHECK(d, cuGraphInstantiateWithFlags(&exec, graph, 0));
  for (int r = 0; r < replays; ++r) E2E_CHECK(d, cuGraphLaunch(exec, stream));
  E2E_CHECK(d, d.StreamSynchronize(stream));
  unsigned long long hash = 1469598103934665603ull;
  for (int b = 0; b < kBuffers; ++b) {
    E2E_CHECK(d, d.MemcpyDtoH(host.data(), buf[b], kBytes));
    hash = Fnv1a(host.data(), kBytes, hash);
  }
  std::printf("checksum %016llx\n", hash);
  return 0;
}
