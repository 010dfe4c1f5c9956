// SPDX-License-Identifier: Apache-2.0
#include "timeline.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace simcuda {
namespace {

std::mutex timeline_mu;
FILE* timeline_file = nullptr;  // GUARDED_BY(timeline_mu) once open; never closed
std::atomic<bool> timeline_on{false};

// Lines are buffered by stdio; the process's exit flushes them (exit runs the stdio
// flush), and so does a program that ends with cuCtxDestroy or not at all.
void FlushTimeline() {
  std::lock_guard<std::mutex> lock(timeline_mu);
  if (timeline_file != nullptr) std::fflush(timeline_file);
}

}  // namespace

bool OpenTimeline(const char* path) {
  FILE* f = std::fopen(path, "w");
  if (f == nullptr) {
    std::fprintf(stderr, "simcuda: SIMCUDA_TIMELINE=\"%s\": cannot write it: %s\n", path,
                 std::strerror(errno));
    return false;
  }
  std::lock_guard<std::mutex> lock(timeline_mu);
  timeline_file = f;
  timeline_on.store(true, std::memory_order_release);
  std::atexit(FlushTimeline);
  return true;
}

bool TimelineOn() { return timeline_on.load(std::memory_order_acquire); }

void RecordTimeline(const char* kind, int device, const char* name, size_t bytes, double start_ms,
                    double end_ms) {
  std::lock_guard<std::mutex> lock(timeline_mu);
  if (timeline_file == nullptr) return;
  if (name != nullptr) {
    std::fprintf(timeline_file,
                 "{\"kind\": \"%s\", \"device\": %d, \"name\": \"%s\", \"start\": %.4f, "
                 "\"end\": %.4f}\n",
                 kind, device, name, start_ms, end_ms);
  } else {
    std::fprintf(timeline_file,
                 "{\"kind\": \"%s\", \"device\": %d, \"bytes\": %zu, \"start\": %.4f, "
                 "\"end\": %.4f}\n",
                 kind, device, bytes, start_ms, end_ms);
  }
}

}  // namespace simcuda
