// SPDX-License-Identifier: Apache-2.0
#include "runtime/trace.h"

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/chunk.h"
#include "runtime/mover.h"

namespace spillway {

absl::StatusOr<std::unique_ptr<TraceWriter>> TraceWriter::Open(const std::string& path,
                                                               size_t chunk_bytes) {
  FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("SPILLWAY_TRACE=\"", path, "\": cannot write: ", std::strerror(errno)));
  }
  std::fprintf(file, "# spillway-trace 1\nchunk %zu\n", chunk_bytes);
  return std::unique_ptr<TraceWriter>(new TraceWriter(file, NowNs()));
}

TraceWriter::~TraceWriter() {
  absl::MutexLock lock(&mu_);
  std::fclose(file_);
}

void TraceWriter::Alloc(uint64_t id, size_t bytes, uint32_t advice) {
  const char* kind = (advice & kAdviceWeights) ? "weights" : (advice & kAdviceKv) ? "kv" : "other";
  absl::MutexLock lock(&mu_);
  std::fprintf(file_, "alloc %llu %zu %s\n", static_cast<unsigned long long>(id), bytes, kind);
}

void TraceWriter::Free(uint64_t id) {
  absl::MutexLock lock(&mu_);
  std::fprintf(file_, "free %llu\n", static_cast<unsigned long long>(id));
}

void TraceWriter::Launch(CUstream stream, std::span<const uint64_t> ids) {
  const int64_t t = NowNs() - start_ns_;
  absl::MutexLock lock(&mu_);
  const uint64_t number = stream_numbers_.try_emplace(stream, stream_numbers_.size()).first->second;
  std::fprintf(file_, "launch %lld %llu", static_cast<long long>(t),
               static_cast<unsigned long long>(number));
  for (uint64_t id : ids) std::fprintf(file_, " %llu", static_cast<unsigned long long>(id));
  std::fputc('\n', file_);
}

void TraceWriter::Flush() {
  absl::MutexLock lock(&mu_);
  std::fflush(file_);
}

}  // namespace spillway
