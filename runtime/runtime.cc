// SPDX-License-Identifier: Apache-2.0
#include "runtime/runtime.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "runtime/driver_api.h"
#include "runtime/log.h"

namespace spillway {
namespace {

uint64_t HostPhysicalBytes() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

// Space free to an unprivileged writer on the file system holding `path` (0 if unknown).
uint64_t FreeBytes(const std::string& path) {
  struct statvfs fs;
  if (statvfs(path.c_str(), &fs) != 0) return 0;
  return static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
}

void AddStats(ManagerStats& total, const ManagerStats& s) {
  total.allocations += s.allocations;
  total.allocated_bytes += s.allocated_bytes;
  total.device_bytes += s.device_bytes;
  total.host_bytes += s.host_bytes;
  total.nvme_bytes += s.nvme_bytes;
  total.peak_device_bytes += s.peak_device_bytes;
  total.h2d_bytes += s.h2d_bytes;
  total.d2h_bytes += s.d2h_bytes;
  total.nvme_read_bytes += s.nvme_read_bytes;
  total.nvme_write_bytes += s.nvme_write_bytes;
  total.fetches_on_demand += s.fetches_on_demand;
  total.fetches_prefetched += s.fetches_prefetched;
  total.evictions += s.evictions;
  total.spills += s.spills;
  total.spills_unchanged += s.spills_unchanged;
  total.stall_ns += s.stall_ns;
  total.remap_ns += s.remap_ns;
  total.moves += s.moves;
  total.h2d_link_bytes_per_s += s.h2d_link_bytes_per_s;
  total.d2h_link_bytes_per_s += s.d2h_link_bytes_per_s;
}

std::string StatsObject(const ManagerStats& s) {
  return absl::StrFormat(
      "{\"allocations\": %u, \"allocated_bytes\": %u, \"device_bytes\": %u, "
      "\"host_bytes\": %u, \"nvme_bytes\": %u, \"peak_device_bytes\": %u, "
      "\"h2d_bytes\": %u, \"d2h_bytes\": %u, \"nvme_read_bytes\": %u, "
      "\"nvme_write_bytes\": %u, \"fetches_on_demand\": %u, \"fetches_prefetched\": %u, "
      "\"evictions\": %u, \"spills\": %u, \"stall_ns\": %u, \"moves\": %u, "
      "\"spills_unchanged\": %u, \"remap_ns\": %u}",
      s.allocations, s.allocated_bytes, s.device_bytes, s.host_bytes, s.nvme_bytes,
      s.peak_device_bytes, s.h2d_bytes, s.d2h_bytes, s.nvme_read_bytes, s.nvme_write_bytes,
      s.fetches_on_demand, s.fetches_prefetched, s.evictions, s.spills, s.stall_ns, s.moves,
      s.spills_unchanged, s.remap_ns);
}

}  // namespace

Runtime& Runtime::Get() {
  static Runtime* runtime = new Runtime();  // never destroyed
  return *runtime;
}

absl::Status Runtime::Init() {
  absl::MutexLock lock(&mu_);
  return InitLocked();
}

absl::Status Runtime::InitLocked() {
  if (initialized_) return init_status_;
  initialized_ = true;
  absl::StatusOr<Options> options = LoadOptionsFromEnvironment();
  if (options.ok()) {
    for (const auto& [name, value] : overrides_) {
      absl::Status s = spillway::SetOption(name, value, &*options);
      if (!s.ok()) {
        options = s;
        break;
      }
    }
  }
  if (!options.ok()) {
    init_status_ = absl::InvalidArgumentError(options.status().message());
    return init_status_;
  }
  options_ = *options;
  int fd = 2;
  if (!options_.log_file.empty()) {
    fd = open(options_.log_file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      init_status_ = absl::InvalidArgumentError(
          absl::StrCat("SPILLWAY_LOG_FILE=\"", options_.log_file, "\": cannot open for writing"));
      return init_status_;
    }
  }
  InitLogging(options_.log_level, fd);
  if (!options_.trace_path.empty()) {
    absl::StatusOr<std::unique_ptr<TraceWriter>> trace =
        TraceWriter::Open(options_.trace_path, options_.chunk);
    if (!trace.ok()) {
      init_status_ = trace.status();  // names SPILLWAY_TRACE: the interposer stops the program
      return init_status_;
    }
    trace_ = std::move(*trace);
  }
  absl::StatusOr<const DriverApi*> driver = LoadDriverApi();
  if (!driver.ok()) {
    init_status_ = driver.status();
    return init_status_;
  }
  CUresult r = Driver().cuInit(0);
  if (r != CUDA_SUCCESS) init_status_ = CudaError(r, "cuInit");
  static std::once_flag at_exit;
  std::call_once(at_exit, [] { std::atexit(&Runtime::AtExit); });
  return init_status_;
}

absl::Status Runtime::SetOption(std::string_view name, std::string_view value) {
  absl::MutexLock lock(&mu_);
  if (initialized_) {
    return absl::FailedPreconditionError("options can only be set before the runtime starts");
  }
  std::string full(name);
  if (full.rfind("SPILLWAY_", 0) != 0) full = "SPILLWAY_" + full;
  Options scratch;
  if (absl::Status s = spillway::SetOption(full, value, &scratch); !s.ok()) return s;
  overrides_.emplace_back(full, std::string(value));
  return absl::OkStatus();
}

absl::StatusOr<Manager*> Runtime::ManagerFor(int device) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = InitLocked(); !s.ok()) return s;
  if (device < 0 || device >= kMaxDevices) {
    return absl::InvalidArgumentError(absl::StrCat("device ", device, " out of range"));
  }
  if (managers_[device]) return managers_[device].get();

  const DriverApi& cu = Driver();
  // The manager works in the device's primary context (the one cudart and PyTorch use).
  CUcontext primary = nullptr;
  SPW_CHECK_CU(cu.cuDevicePrimaryCtxRetain(&primary, device));
  SPW_CHECK_CU(cu.cuCtxPushCurrent(primary));
  size_t device_total = 0;
  CUresult r = cu.cuDeviceTotalMem(&device_total, device);
  absl::StatusOr<std::unique_ptr<Manager>> manager = CudaError(r, "cuDeviceTotalMem");
  if (r == CUDA_SUCCESS) {
    ManagerConfig config;
    config.device = device;
    config.chunk_bytes = options_.chunk;
    config.hbm_limit_bytes = options_.hbm_limit.Resolve(device_total);
    config.host_limit_bytes = options_.host_limit.Resolve(HostPhysicalBytes());
    config.policy = std::string(PolicyName(options_.policy));
    config.prefetch_ahead_bytes = options_.prefetch_ahead;
    if (!options_.nvme_path.empty()) {
      config.nvme_directory = options_.nvme_path;
      config.nvme_limit_bytes = options_.nvme_limit.Resolve(FreeBytes(options_.nvme_path));
      config.nvme_queue_depth = static_cast<unsigned>(options_.nvme_queue_depth);
    }
    config.trace = trace_.get();
    manager = Manager::Create(config);
  }
  CUcontext popped = nullptr;
  cu.cuCtxPopCurrent(&popped);
  if (!manager.ok()) return manager.status();
  SPW_LOG(kInfo, "device {}: HBM limit {} bytes, host tier {} bytes, chunk {} bytes, policy {}",
          device, (*manager)->hbm_limit_bytes(), options_.host_limit.Resolve(HostPhysicalBytes()),
          options_.chunk, (*manager)->policy_name());
  managers_[device] = std::move(*manager);
  // Again now that a context exists: handlers run in reverse order of registration, so
  // this one runs before whatever the driver registered while creating it.
  static std::once_flag at_exit_after_context;
  std::call_once(at_exit_after_context, [] { std::atexit(&Runtime::AtExit); });
  return managers_[device].get();
}

Manager* Runtime::Owner(CUdeviceptr address) {
  absl::MutexLock lock(&mu_);
  for (auto& manager : managers_) {
    if (manager && manager->Owns(address)) return manager.get();
  }
  return nullptr;
}

ManagerStats Runtime::TotalStats() {
  absl::MutexLock lock(&mu_);
  ManagerStats total;
  for (auto& manager : managers_) {
    if (manager) AddStats(total, manager->Stats());
  }
  return total;
}

std::string Runtime::StatsJson() {
  absl::MutexLock lock(&mu_);
  // One snapshot per device, and the totals summed from those same snapshots: the movers
  // keep running meanwhile, so separate reads would disagree.
  ManagerStats total;
  std::string devices;
  for (int d = 0; d < kMaxDevices; ++d) {
    if (!managers_[d]) continue;
    ManagerStats stats = managers_[d]->Stats();
    AddStats(total, stats);
    absl::StrAppend(&devices, devices.empty() ? "" : ", ", "\"", d,
                    "\": {\"hbm_limit_bytes\": ", managers_[d]->hbm_limit_bytes(),
                    ", \"chunk_bytes\": ", managers_[d]->chunk_bytes(), ", \"policy\": \"",
                    managers_[d]->policy_name(),
                    "\", \"h2d_link_bytes_per_s\": ", stats.h2d_link_bytes_per_s,
                    ", \"d2h_link_bytes_per_s\": ", stats.d2h_link_bytes_per_s,
                    ", \"stats\": ", StatsObject(stats), "}");
  }
  return absl::StrCat("{\"version\": 1, \"total\": ", StatsObject(total), ", \"devices\": {",
                      devices, "}}\n");
}

void Runtime::AtExit() {
  // Once, from whichever registration runs first. Only waiting and the file: nothing is torn
  // down (other threads may still be running and calling in).
  static std::atomic<bool> done{false};
  if (done.exchange(true)) return;
  Runtime& runtime = Get();
  if (runtime.fork_child_.load(std::memory_order_relaxed)) return;
  // Moves still in flight (the frees of a program's teardown, typically) finish before the
  // driver's own exit handlers run: no runtime thread is then inside the driver, and no
  // application stream waits for the mover. Bounded: a stream a move waits for may never
  // finish.
  runtime.DrainAll(absl::Seconds(10));
  absl::Status s = runtime.WriteStats();
  if (!s.ok()) SPW_LOG(kError, "statistics not written: {}", std::string(s.message()));
  absl::MutexLock lock(&runtime.mu_);
  if (runtime.trace_) runtime.trace_->Flush();
}

absl::Status Runtime::WriteStats() {
  if (fork_child_.load(std::memory_order_relaxed)) return absl::OkStatus();
  std::string path;
  {
    absl::MutexLock lock(&mu_);
    if (!initialized_ || !init_status_.ok()) return absl::OkStatus();
    path = options_.stats_path;
  }
  if (path.empty()) return absl::OkStatus();
  std::string json = StatsJson();
  // Written whole to a temporary name, then renamed: a reader never sees half a file.
  std::string temporary = absl::StrCat(path, ".tmp.", getpid());
  FILE* file = std::fopen(temporary.c_str(), "w");
  if (file == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("SPILLWAY_STATS=\"", path, "\": cannot write"));
  }
  bool ok = std::fwrite(json.data(), 1, json.size(), file) == json.size();
  ok = std::fclose(file) == 0 && ok;
  if (!ok || std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    return absl::InternalError(absl::StrCat("writing statistics to ", path, " failed"));
  }
  return absl::OkStatus();
}

void Runtime::DrainAll(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  for (int device = 0; device < kMaxDevices; ++device) {
    if (managers_[device] && !managers_[device]->Drain(timeout)) {
      SPW_LOG(kWarn, "device {}: moves still in flight after {}; not waiting longer", device,
              absl::FormatDuration(timeout));
    }
  }
}

absl::Status Runtime::Shutdown() {
  DrainAll(absl::Seconds(10));  // frees and moves in flight belong in the figures
  absl::Status written = WriteStats();
  absl::MutexLock lock(&mu_);
  for (auto& manager : managers_) manager.reset();
  trace_.reset();  // after the managers that write to it
  initialized_ = false;
  init_status_ = absl::OkStatus();
  overrides_.clear();
  return written;
}

}  // namespace spillway
