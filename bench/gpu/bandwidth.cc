// SPDX-License-Identifier: Apache-2.0
//
// bandwidth: measures the host<->device link the way Spillway uses it — one large copy
// between pinned host memory (cuMemHostAlloc) and device memory (cuMemAlloc) on a stream,
// timed by events — and prints the result as one JSON object. bench/gpu/run.sh divides
// the bytes a run moved over the link by the H2D figure to get each run's lower bound.
//
// Contract: written against cuda.h only and linked to the stub libcuda.so like tinyllm, so
// the same binary runs on a GPU (the real driver) and on simcuda. Exit status: 0 measured,
// 1 a CUDA call failed (the call and error are printed), 2 bad usage. The copy size is cut
// to a quarter of the device's free memory when it would not fit, and the JSON says so.
// Best of --repeat copies per direction (after one warm-up copy): the best is the link's
// capability, which is what a bound wants; the mean is printed too.

#include <cuda.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

const char kUsage[] = R"(NAME
    bandwidth - pinned host<->device copy bandwidth over the CUDA driver API

SYNOPSIS
    bandwidth [--bytes BYTES] [--repeat N] [--device N] [--json FILE]

DESCRIPTION
    Copies BYTES from pinned host memory to the device (H2D) and back (D2H), one
    warm-up and then N timed copies per direction, each a single cuMemcpy*Async on
    one stream timed by events, and prints one JSON object on standard output:
    {"device": ..., "bytes": ..., "repeat": ..., "h2d_gbps": best, "d2h_gbps": best,
     "h2d_gbps_mean": ..., "d2h_gbps_mean": ..., "free_bytes": ..., "total_bytes": ...}
    GB/s are 10^9 bytes per second. If BYTES is more than a quarter of the device's
    free memory, it is cut to that and "clamped": true is added.

OPTIONS
    --bytes BYTES   copy size, with an optional K, M or G suffix (binary; default 1G)
    --repeat N      timed copies per direction, 1 to 100 (default 5)
    --device N      device ordinal (default 0)
    --json FILE     also write the JSON object to FILE
    --help          print this text

EXIT STATUS
    0 measured; 1 a CUDA call failed; 2 bad usage.
)";

[[noreturn]] void Usage(const std::string& message) {
  std::fprintf(stderr, "bandwidth: %s\nTry 'bandwidth --help'.\n", message.c_str());
  std::exit(2);
}

bool ParseBytes(const std::string& text, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str()) return false;
  int shift = 0;
  switch (*end) {
    case '\0':
      break;
    case 'K':
    case 'k':
      shift = 10;
      ++end;
      break;
    case 'M':
    case 'm':
      shift = 20;
      ++end;
      break;
    case 'G':
    case 'g':
      shift = 30;
      ++end;
      break;
    default:
      return false;
  }
  if (*end != '\0' || n == 0 || n > (~0ull >> shift)) return false;
  *out = n << shift;
  return true;
}

#define BW_CHECK(call)                                          \
  do {                                                          \
    CUresult bw_result = (call);                                \
    if (bw_result != CUDA_SUCCESS) {                            \
      const char* bw_name = nullptr;                            \
      cuGetErrorName(bw_result, &bw_name);                      \
      std::fprintf(stderr, "bandwidth: %s failed: %s\n", #call, \
                   bw_name ? bw_name : "unknown error");        \
      return 1;                                                 \
    }                                                           \
  } while (0)

int Run(uint64_t bytes, int repeat, int ordinal, const std::string& json_path) {
  BW_CHECK(cuInit(0));
  CUdevice device;
  BW_CHECK(cuDeviceGet(&device, ordinal));
  char name[256] = {};
  BW_CHECK(cuDeviceGetName(name, sizeof(name), device));
  CUcontext ctx;
  // The primary context, as the CUDA runtime (and so PyTorch) uses.
  BW_CHECK(cuDevicePrimaryCtxRetain(&ctx, device));
  BW_CHECK(cuCtxSetCurrent(ctx));
  size_t free_bytes = 0, total_bytes = 0;
  BW_CHECK(cuMemGetInfo(&free_bytes, &total_bytes));
  bool clamped = false;
  if (bytes > free_bytes / 4) {
    bytes = std::max<uint64_t>(free_bytes / 4 / 4096 * 4096, 4096);
    clamped = true;
  }

  void* host = nullptr;
  BW_CHECK(cuMemHostAlloc(&host, bytes, 0));
  std::memset(host, 0x5a, bytes);  // touch every page before timing
  CUdeviceptr dev;
  BW_CHECK(cuMemAlloc(&dev, bytes));
  CUstream stream;
  BW_CHECK(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUevent begin, end;
  BW_CHECK(cuEventCreate(&begin, CU_EVENT_DEFAULT));
  BW_CHECK(cuEventCreate(&end, CU_EVENT_DEFAULT));

  // One direction: a warm-up, then `repeat` timed copies; GB/s of each.
  auto measure = [&](bool h2d, std::vector<double>* gbps) -> int {
    for (int i = 0; i <= repeat; ++i) {
      BW_CHECK(cuEventRecord(begin, stream));
      if (h2d) {
        BW_CHECK(cuMemcpyHtoDAsync(dev, host, bytes, stream));
      } else {
        BW_CHECK(cuMemcpyDtoHAsync(host, dev, bytes, stream));
      }
      BW_CHECK(cuEventRecord(end, stream));
      BW_CHECK(cuEventSynchronize(end));
      float ms = 0;
      BW_CHECK(cuEventElapsedTime(&ms, begin, end));
      if (i > 0) gbps->push_back(ms > 0 ? double(bytes) / (ms * 1e-3) / 1e9 : 0.0);
    }
    return 0;
  };
  std::vector<double> h2d, d2h;
  if (measure(true, &h2d) != 0 || measure(false, &d2h) != 0) return 1;
  auto best = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / double(v.size());
  };

  std::string escaped;
  for (const char* p = name; *p; ++p) {
    if (*p == '"' || *p == '\\') escaped += '\\';
    if (static_cast<unsigned char>(*p) >= 0x20) escaped += *p;
  }
  char line[1024];
  std::snprintf(line, sizeof(line),
                "{\"device\": \"%s\", \"bytes\": %llu, \"repeat\": %d, \"h2d_gbps\": %.3f, "
                "\"d2h_gbps\": %.3f, \"h2d_gbps_mean\": %.3f, \"d2h_gbps_mean\": %.3f, "
                "\"free_bytes\": %zu, \"total_bytes\": %zu%s}\n",
                escaped.c_str(), static_cast<unsigned long long>(bytes), repeat, best(h2d),
                best(d2h), mean(h2d), mean(d2h), free_bytes, total_bytes,
                clamped ? ", \"clamped\": true" : "");
  std::fputs(line, stdout);
  if (!json_path.empty()) {
    FILE* out = std::fopen(json_path.c_str(), "w");
    if (out == nullptr || std::fputs(line, out) < 0 || std::fclose(out) != 0) {
      std::fprintf(stderr, "bandwidth: cannot write %s: %s\n", json_path.c_str(),
                   std::strerror(errno));
      return 1;
    }
  }
  BW_CHECK(cuEventDestroy(begin));
  BW_CHECK(cuEventDestroy(end));
  BW_CHECK(cuStreamDestroy(stream));
  BW_CHECK(cuMemFree(dev));
  BW_CHECK(cuMemFreeHost(host));
  BW_CHECK(cuDevicePrimaryCtxRelease(device));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t bytes = uint64_t(1) << 30;
  int repeat = 5, device = 0;
  std::string json;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (i + 1 >= argc) Usage("unknown argument or missing value: " + flag);
    std::string value = argv[++i];
    if (flag == "--bytes") {
      if (!ParseBytes(value, &bytes)) Usage("--bytes: expected a size such as 1G, got " + value);
    } else if (flag == "--repeat") {
      repeat = std::atoi(value.c_str());
      if (repeat < 1 || repeat > 100) Usage("--repeat: expected 1 to 100, got " + value);
    } else if (flag == "--device") {
      device = std::atoi(value.c_str());
      if (device < 0) Usage("--device: expected a device ordinal, got " + value);
    } else if (flag == "--json") {
      json = value;
    } else {
      Usage("unknown argument: " + flag);
    }
  }
  return Run(bytes, repeat, device, json);
}
