// SPDX-License-Identifier: Apache-2.0
//
// The C API (include/spillway/spillway.h): argument checks and the one place where
// internal absl::Status values become spw_status codes.
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "runtime/runtime.h"
#include "spillway/spillway.h"

namespace spillway {
namespace {

thread_local spw_status last_status = SPW_OK;
thread_local std::string last_error;

spw_status ToStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return SPW_OK;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return SPW_ERROR_INVALID_ARGUMENT;
    case absl::StatusCode::kNotFound:
      return SPW_ERROR_NOT_MANAGED;
    case absl::StatusCode::kResourceExhausted:
      return SPW_ERROR_OUT_OF_MEMORY;
    case absl::StatusCode::kFailedPrecondition:
      return SPW_ERROR_NOT_INITIALIZED;
    case absl::StatusCode::kUnimplemented:
      return SPW_ERROR_UNSUPPORTED;
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kAborted:
      return SPW_ERROR_IO;
    default:
      return SPW_ERROR_INTERNAL;
  }
}

spw_status Report(const absl::Status& status) {
  last_status = ToStatus(status);
  // A configuration error is reported as such, whatever its internal code.
  if (!status.ok() && status.message().find("SPILLWAY_") != std::string_view::npos &&
      status.code() == absl::StatusCode::kInvalidArgument) {
    last_status = SPW_ERROR_CONFIG;
  }
  if (!status.ok() && status.message().find("failed: CUDA_ERROR") != std::string_view::npos &&
      last_status == SPW_ERROR_INTERNAL) {
    last_status = SPW_ERROR_DRIVER;
  }
  last_error = status.ok() ? std::string() : std::string(status.message());
  return last_status;
}

absl::StatusOr<Manager*> OwnerOf(const void* ptr) {
  if (absl::Status s = Runtime::Get().Init(); !s.ok()) return s;
  Manager* manager = Runtime::Get().Owner(reinterpret_cast<CUdeviceptr>(ptr));
  if (manager == nullptr) {
    return absl::NotFoundError("the pointer is not a live Spillway allocation");
  }
  return manager;
}

absl::StatusOr<Tier> ToTier(spw_tier tier) {
  switch (tier) {
    case SPW_TIER_DEVICE:
      return Tier::kDevice;
    case SPW_TIER_HOST:
      return Tier::kHost;
    case SPW_TIER_NVME:
      return Tier::kNvme;
  }
  return absl::InvalidArgumentError("unknown tier");
}

constexpr unsigned kAllAdvice = SPW_ADVICE_WEIGHTS | SPW_ADVICE_KV | SPW_ADVICE_PIN |
                                SPW_ADVICE_COLD | SPW_ADVICE_READ_MOSTLY | SPW_ADVICE_GUARDED;

absl::Status Move(void* ptr, size_t size, spw_tier tier, spw_stream stream) {
  absl::StatusOr<Tier> t = ToTier(tier);
  if (!t.ok()) return t.status();
  absl::StatusOr<Manager*> manager = OwnerOf(ptr);
  if (!manager.ok()) return manager.status();
  return (*manager)->Prefetch(reinterpret_cast<CUdeviceptr>(ptr), size, *t, stream);
}

absl::Status Advise(void* ptr, size_t size, unsigned advice, bool set) {
  if (advice == 0 || (advice & ~kAllAdvice) != 0) {
    return absl::InvalidArgumentError("advice must be a non-empty set of spw_advice bits");
  }
  absl::StatusOr<Manager*> manager = OwnerOf(ptr);
  if (!manager.ok()) return manager.status();
  return (*manager)->Advise(reinterpret_cast<CUdeviceptr>(ptr), size, advice, set);
}

}  // namespace
}  // namespace spillway

using spillway::Report;
using spillway::Runtime;

extern "C" {

spw_status spw_init(void) { return Report(Runtime::Get().Init()); }

spw_status spw_set_option(const char* name, const char* value) {
  if (name == nullptr || value == nullptr) {
    return Report(absl::InvalidArgumentError("name and value must not be NULL"));
  }
  return Report(Runtime::Get().SetOption(name, value));
}

spw_status spw_shutdown(void) { return Report(Runtime::Get().Shutdown()); }

spw_status spw_alloc(void** ptr, size_t size, int device, spw_stream stream, unsigned advice) {
  if (ptr == nullptr) return Report(absl::InvalidArgumentError("ptr must not be NULL"));
  *ptr = nullptr;
  if (size == 0) return Report(absl::InvalidArgumentError("size must be positive"));
  if ((advice & ~spillway::kAllAdvice) != 0) {
    return Report(absl::InvalidArgumentError("unknown advice bits"));
  }
  absl::StatusOr<spillway::Manager*> manager = Runtime::Get().ManagerFor(device);
  if (!manager.ok()) return Report(manager.status());
  absl::StatusOr<CUdeviceptr> address = (*manager)->Allocate(size, stream, advice);
  if (!address.ok()) return Report(address.status());
  *ptr = reinterpret_cast<void*>(*address);
  return Report(absl::OkStatus());
}

void* spw_malloc(ssize_t size, int device, spw_stream stream) {
  void* ptr = nullptr;
  if (size <= 0) {
    Report(absl::InvalidArgumentError("size must be positive"));
    return nullptr;
  }
  spw_alloc(&ptr, static_cast<size_t>(size), device, stream, 0);
  return ptr;
}

spw_status spw_release(void* ptr, spw_stream stream) {
  absl::StatusOr<spillway::Manager*> manager = spillway::OwnerOf(ptr);
  if (!manager.ok()) return Report(manager.status());
  return Report((*manager)->Free(reinterpret_cast<CUdeviceptr>(ptr), stream));
}

void spw_free(void* ptr, ssize_t /*size*/, int /*device*/, spw_stream stream) {
  // PyTorch's allocator interface has no way to report an error: it is recorded for
  // spw_last_status() and logged; a pointer we do not own is left alone.
  if (ptr != nullptr) spw_release(ptr, stream);
}

spw_status spw_advise(void* ptr, size_t size, unsigned advice) {
  return Report(spillway::Advise(ptr, size, advice, true));
}

spw_status spw_unadvise(void* ptr, size_t size, unsigned advice) {
  return Report(spillway::Advise(ptr, size, advice, false));
}

spw_status spw_prefetch(void* ptr, size_t size, spw_tier tier, spw_stream stream) {
  return Report(spillway::Move(ptr, size, tier, stream));
}

spw_status spw_evict(void* ptr, size_t size, spw_tier tier, spw_stream stream) {
  if (tier == SPW_TIER_DEVICE) {
    return Report(absl::InvalidArgumentError("spw_evict moves to SPW_TIER_HOST or SPW_TIER_NVME"));
  }
  return Report(spillway::Move(ptr, size, tier, stream));
}

int spw_owns(const void* ptr) {
  return Runtime::Get().Owner(reinterpret_cast<CUdeviceptr>(ptr)) != nullptr ? 1 : 0;
}

spw_status spw_get_stats(spw_stats* stats) {
  if (stats == nullptr || stats->struct_size < sizeof(size_t)) {
    return Report(absl::InvalidArgumentError("set stats->struct_size = sizeof(spw_stats)"));
  }
  spillway::ManagerStats s = Runtime::Get().TotalStats();
  spw_stats full = {};
  full.struct_size = sizeof(spw_stats);
  full.allocations = s.allocations;
  full.allocated_bytes = s.allocated_bytes;
  full.device_bytes = s.device_bytes;
  full.host_bytes = s.host_bytes;
  full.nvme_bytes = s.nvme_bytes;
  full.peak_device_bytes = s.peak_device_bytes;
  full.h2d_bytes = s.h2d_bytes;
  full.d2h_bytes = s.d2h_bytes;
  full.nvme_read_bytes = s.nvme_read_bytes;
  full.nvme_write_bytes = s.nvme_write_bytes;
  full.fetches_on_demand = s.fetches_on_demand;
  full.fetches_prefetched = s.fetches_prefetched;
  full.evictions = s.evictions;
  full.spills = s.spills;
  full.stall_ns = s.stall_ns;
  full.moves = s.moves;
  full.h2d_link_bytes_per_s = s.h2d_link_bytes_per_s;
  full.d2h_link_bytes_per_s = s.d2h_link_bytes_per_s;
  full.spills_unchanged = s.spills_unchanged;
  full.remap_ns = s.remap_ns;
  // Copies only what the caller's struct has room for (older headers: fewer fields).
  size_t bytes = stats->struct_size < sizeof(spw_stats) ? stats->struct_size : sizeof(spw_stats);
  size_t caller_size = stats->struct_size;
  std::memcpy(stats, &full, bytes);
  stats->struct_size = caller_size < sizeof(spw_stats) ? caller_size : sizeof(spw_stats);
  return Report(absl::OkStatus());
}

const char* spw_status_string(spw_status status) {
  switch (status) {
    case SPW_OK:
      return "success";
    case SPW_ERROR_INVALID_ARGUMENT:
      return "invalid argument";
    case SPW_ERROR_NOT_MANAGED:
      return "pointer is not a managed allocation";
    case SPW_ERROR_OUT_OF_MEMORY:
      return "out of memory in every tier";
    case SPW_ERROR_NOT_INITIALIZED:
      return "runtime not initialised";
    case SPW_ERROR_CONFIG:
      return "bad SPILLWAY_* configuration";
    case SPW_ERROR_UNSUPPORTED:
      return "not supported by this device or build";
    case SPW_ERROR_DRIVER:
      return "CUDA driver error";
    case SPW_ERROR_IO:
      return "NVMe tier I/O error";
    case SPW_ERROR_INTERNAL:
      return "internal error";
  }
  return "unknown status";
}

spw_status spw_last_status(void) { return spillway::last_status; }
const char* spw_last_error(void) { return spillway::last_error.c_str(); }
unsigned spw_version(void) { return SPILLWAY_VERSION; }

}  // extern "C"
