// SPDX-License-Identifier: Apache-2.0
//
// Host<->device move throughput of the tiered manager on simcuda, against the limits
// measured in the same run: a plain memcpy of the same bytes (what the CPU can do) and
// the driver's own async copies between page-locked host memory and device memory (what
// the simulated link can do). With --link-gbps the simulated link is paced
// (SIMCUDA_H2D_GBPS / SIMCUDA_D2H_GBPS), so the ratio to the link is the meaningful one.
//
//   build/bench/mover_bench [--bytes 512M] [--chunk 2M] [--link-gbps 0] [--json FILE]
//
// Rows: evict (HBM -> host), fetch (host -> HBM), and swap: a fetch into a full HBM, each
// chunk's eviction (D2H) and the fetch into the HBM it gives up (H2D) in one move, which
// at best takes the time of one direction (the two run at once).
//
// Writes a readable table to stdout and the same figures as JSON (default
// mover_bench.json in the current directory).
#include <cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/driver_api.h"
#include "runtime/manager.h"
#include "runtime/options.h"

namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The best of three runs: the machine is shared, and the first run pays page faults.
template <typename F>
double Best(F&& run) {
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    auto start = std::chrono::steady_clock::now();
    run();
    best = std::min(best, Seconds(start));
  }
  return best;
}

void Check(CUresult r, const char* what) {
  if (r != CUDA_SUCCESS) {
    std::fprintf(stderr, "%s failed (%d)\n", what, r);
    std::exit(1);
  }
}

void Usage() {
  std::printf(
      "usage: mover_bench [--bytes SIZE] [--chunk SIZE] [--link-gbps GBPS] [--json FILE]\n"
      "  --bytes      bytes moved each way (default 512M)\n"
      "  --chunk      SPILLWAY_CHUNK of the manager (default 2M; simcuda's granularity follows)\n"
      "  --link-gbps  pace the simulated host<->device link (default 0: memcpy speed)\n"
      "  --json       where to write the results (default mover_bench.json)\n");
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t bytes = 512ull << 20;
  uint64_t chunk = 2ull << 20;
  double link_gbps = 0;
  std::string json_path = "mover_bench.json";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      Usage();
      return 0;
    }
    if (i + 1 >= argc) {
      Usage();
      return 2;
    }
    std::string value = argv[++i];
    if (arg == "--bytes") {
      auto parsed = spillway::ParseSize(value);
      if (!parsed.ok()) {
        std::fprintf(stderr, "--bytes: %s\n", std::string(parsed.status().message()).c_str());
        return 2;
      }
      bytes = *parsed;
    } else if (arg == "--chunk") {
      auto parsed = spillway::ParseSize(value);
      if (!parsed.ok() || *parsed == 0 || *parsed % 4096 != 0) {
        std::fprintf(stderr, "--chunk: expected a size, a multiple of 4K, such as 256K\n");
        return 2;
      }
      chunk = *parsed;
    } else if (arg == "--link-gbps") {
      link_gbps = std::atof(value.c_str());
    } else if (arg == "--json") {
      json_path = value;
    } else {
      Usage();
      return 2;
    }
  }
  const uint64_t kChunk = chunk;
  bytes = (bytes + kChunk - 1) / kChunk * kChunk;
  std::string device_memory = std::to_string(bytes * 2);
  setenv("SIMCUDA_DEVICE_MEMORY", device_memory.c_str(), 1);
  std::string granularity = std::to_string(kChunk);
  setenv("SIMCUDA_GRANULARITY", granularity.c_str(), 1);
  if (link_gbps > 0) {
    std::string rate = std::to_string(link_gbps);
    setenv("SIMCUDA_H2D_GBPS", rate.c_str(), 1);
    setenv("SIMCUDA_D2H_GBPS", rate.c_str(), 1);
  }
  if (!spillway::LoadDriverApi().ok()) return 1;
  Check(cuInit(0), "cuInit");
  CUcontext ctx = nullptr;
  Check(cuDevicePrimaryCtxRetain(&ctx, 0), "cuDevicePrimaryCtxRetain");
  Check(cuCtxSetCurrent(ctx), "cuCtxSetCurrent");

  // Limit 1: memcpy of the same bytes, host to host (pages touched first).
  std::vector<char> a(bytes, 1), b(bytes, 2);
  double memcpy_s = Best([&] { std::memcpy(b.data(), a.data(), bytes); });

  // Limit 2: the driver's own copies between page-locked host and device memory.
  void* pinned = nullptr;
  CUdeviceptr device = 0;
  CUstream stream = nullptr;
  Check(cuMemHostAlloc(&pinned, bytes, 0), "cuMemHostAlloc");
  std::memset(pinned, 3, bytes);
  Check(cuMemAlloc(&device, bytes), "cuMemAlloc");
  Check(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  Check(cuMemsetD8(device, 0, bytes), "cuMemsetD8");
  double raw_h2d_s = Best([&] {
    Check(cuMemcpyHtoDAsync(device, pinned, bytes, stream), "H2D");
    Check(cuStreamSynchronize(stream), "sync");
  });
  double raw_d2h_s = Best([&] {
    Check(cuMemcpyDtoHAsync(pinned, device, bytes, stream), "D2H");
    Check(cuStreamSynchronize(stream), "sync");
  });
  Check(cuMemFree(device), "cuMemFree");
  Check(cuMemFreeHost(pinned), "cuMemFreeHost");

  // The manager: evict everything (device -> host), then fetch it back (host -> device).
  spillway::ManagerConfig config;
  config.chunk_bytes = kChunk;
  config.hbm_limit_bytes = bytes;
  config.host_limit_bytes = 2 * bytes;
  auto manager = spillway::Manager::Create(config);
  if (!manager.ok()) {
    std::fprintf(stderr, "%s\n", std::string(manager.status().message()).c_str());
    return 1;
  }
  auto p = (*manager)->Allocate(bytes, stream);
  if (!p.ok()) return 1;
  auto q = (*manager)->Allocate(bytes, stream);  // HBM is full: in host memory
  if (!q.ok()) return 1;
  Check(cuMemsetD8Async(*q, 9, bytes, stream), "memset");
  Check(cuMemsetD8Async(*p, 7, bytes, stream), "memset");  // every page touched
  Check(cuStreamSynchronize(stream), "sync");
  // Warm the host pool once so handle creation is not timed (pools are reused in steady state).
  if (!(*manager)->Prefetch(*p, bytes, spillway::Tier::kHost, stream).ok()) return 1;
  Check(cuStreamSynchronize(stream), "sync");
  if (!(*manager)->Prefetch(*p, bytes, spillway::Tier::kDevice, stream).ok()) return 1;
  Check(cuStreamSynchronize(stream), "sync");
  double evict_s = 1e30, fetch_s = 1e30;
  for (int i = 0; i < 3; ++i) {
    auto start = std::chrono::steady_clock::now();
    if (!(*manager)->Prefetch(*p, bytes, spillway::Tier::kHost, stream).ok()) return 1;
    Check(cuStreamSynchronize(stream), "sync");
    evict_s = std::min(evict_s, Seconds(start));
    start = std::chrono::steady_clock::now();
    if (!(*manager)->Prefetch(*p, bytes, spillway::Tier::kDevice, stream).ok()) return 1;
    Check(cuStreamSynchronize(stream), "sync");
    fetch_s = std::min(fetch_s, Seconds(start));
  }
  // Swap p and q in HBM, back and forth.
  double swap_s = 1e30;
  for (int i = 0; i < 4; ++i) {
    CUdeviceptr in = i % 2 == 0 ? *q : *p;
    auto start = std::chrono::steady_clock::now();
    if (!(*manager)->Prefetch(in, bytes, spillway::Tier::kDevice, stream).ok()) return 1;
    Check(cuStreamSynchronize(stream), "sync");
    swap_s = std::min(swap_s, Seconds(start));
  }

  auto gbps = [&](double s) { return static_cast<double>(bytes) / s / 1e9; };
  std::printf("mover_bench: %llu MiB each way, chunk %llu KiB, link %s\n",
              static_cast<unsigned long long>(bytes >> 20),
              static_cast<unsigned long long>(kChunk >> 10),
              link_gbps > 0 ? (std::to_string(link_gbps) + " GB/s (modelled)").c_str()
                            : "unpaced (memcpy speed)");
  std::printf("  %-34s %8s %12s %12s\n", "", "GB/s", "vs memcpy", "vs raw copy");
  std::printf("  %-34s %8.2f %12s %12s\n", "memcpy host->host", gbps(memcpy_s), "1.00", "-");
  std::printf("  %-34s %8.2f %12.2f %12s\n", "raw cuMemcpyHtoDAsync (pinned)", gbps(raw_h2d_s),
              memcpy_s / raw_h2d_s, "1.00");
  std::printf("  %-34s %8.2f %12.2f %12s\n", "raw cuMemcpyDtoHAsync (pinned)", gbps(raw_d2h_s),
              memcpy_s / raw_d2h_s, "1.00");
  std::printf("  %-34s %8.2f %12.2f %12.2f\n", "spillway evict (device->host)", gbps(evict_s),
              memcpy_s / evict_s, raw_d2h_s / evict_s);
  std::printf("  %-34s %8.2f %12.2f %12.2f\n", "spillway fetch (host->device)", gbps(fetch_s),
              memcpy_s / fetch_s, raw_h2d_s / fetch_s);
  std::printf("  %-34s %8.2f %12.2f %12.2f\n", "spillway swap (each way at once)", gbps(swap_s),
              memcpy_s / swap_s, raw_h2d_s / swap_s);
  FILE* json = std::fopen(json_path.c_str(), "w");
  if (json != nullptr) {
    std::fprintf(json,
                 "{\"bytes\": %llu, \"chunk_bytes\": %llu, \"link_gbps\": %g,\n"
                 " \"memcpy_gbps\": %.3f, \"raw_h2d_gbps\": %.3f, \"raw_d2h_gbps\": %.3f,\n"
                 " \"evict_gbps\": %.3f, \"fetch_gbps\": %.3f,\n"
                 " \"evict_vs_memcpy\": %.3f, \"fetch_vs_memcpy\": %.3f,\n"
                 " \"evict_vs_raw\": %.3f, \"fetch_vs_raw\": %.3f,\n"
                 " \"swap_gbps\": %.3f, \"swap_vs_raw\": %.3f}\n",
                 static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(kChunk),
                 link_gbps, gbps(memcpy_s), gbps(raw_h2d_s), gbps(raw_d2h_s), gbps(evict_s),
                 gbps(fetch_s), memcpy_s / evict_s, memcpy_s / fetch_s, raw_d2h_s / evict_s,
                 raw_h2d_s / fetch_s, gbps(swap_s), raw_h2d_s / swap_s);
    std::fclose(json);
    std::printf("results: %s\n", json_path.c_str());
  }
  (*manager)->Free(*p, stream).IgnoreError();
  (*manager)->Free(*q, stream).IgnoreError();
  manager->reset();
  return 0;
}
