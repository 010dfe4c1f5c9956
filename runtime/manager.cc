// SPDX-License-Identifier: Apache-2.0
#include "runtime/manager.h"

#include <algorithm>
#include <atomic>

#include "absl/strings/str_cat.h"
#include "runtime/driver_api.h"
#include "runtime/fast_tls.h"
#include "runtime/log.h"

namespace spillway {

const char* TierName(Tier tier) {
  switch (tier) {
    case Tier::kDevice:
      return "device";
    case Tier::kHost:
      return "host";
    case Tier::kNvme:
      return "nvme";
  }
  return "?";
}

namespace {

std::string Bytes(uint64_t bytes) {
  if (bytes % (uint64_t{1} << 30) == 0 && bytes != 0) return absl::StrCat(bytes >> 30, " GiB");
  if (bytes % (uint64_t{1} << 20) == 0 && bytes != 0) return absl::StrCat(bytes >> 20, " MiB");
  return absl::StrCat(bytes, " bytes");
}

}  // namespace

// A move being planned: its steps and what planning took from the pools (to give back
// if the plan cannot be completed).
struct Manager::Plan {
  std::vector<MoveStep> steps;
  absl::flat_hash_set<CUstream> streams;
  std::vector<PhysicalChunk> taken_device;
  std::vector<PhysicalChunk> taken_host;
  std::vector<Extent> taken_extents;
  std::vector<Chunk*> claimed;  // chunks marked moving by this plan
  bool gate_streams = true;     // see MoveJob::gate_streams
  // A plan that gates no stream orders itself after the launches that last used its
  // chunks, where known (Allocation::busy), instead of after all their streams' work.
  absl::flat_hash_set<std::shared_ptr<BusyEvent>> busy;
};

absl::StatusOr<std::unique_ptr<Manager>> Manager::Create(const ManagerConfig& config) {
  const DriverApi& cu = Driver();
  int vmm = 0, host_vmm = 0, numa = -1;
  SPW_CHECK_CU(cu.cuDeviceGetAttribute(
      &vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, config.device));
  SPW_CHECK_CU(cu.cuDeviceGetAttribute(
      &host_vmm, CU_DEVICE_ATTRIBUTE_HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, config.device));
  SPW_CHECK_CU(cu.cuDeviceGetAttribute(&numa, CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID, config.device));
  if (!vmm || !host_vmm) {
    // Without host-located VMM handles, eviction would have to unmap memory the
    // application may still touch. The safe mode (unified memory) is not built yet.
    return absl::UnimplementedError(absl::StrCat(
        "device ", config.device,
        " does not support host-located virtual memory (CU_DEVICE_ATTRIBUTE_HOST_NUMA_"
        "VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED); Spillway cannot tier its memory safely"));
  }
  CUmemAllocationProp prop = {};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = config.device;
  size_t granularity = 0;
  SPW_CHECK_CU(
      cu.cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
  if (config.chunk_bytes == 0 || config.chunk_bytes % granularity != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SPILLWAY_CHUNK=", config.chunk_bytes,
                     " bytes: must be a multiple of the device's mapping granularity (",
                     Bytes(granularity), ")"));
  }
  size_t device_total = 0;
  SPW_CHECK_CU(cu.cuDeviceTotalMem(&device_total, config.device));

  ManagerConfig effective = config;
  effective.hbm_limit_bytes = std::min(config.hbm_limit_bytes, device_total);
  std::unique_ptr<Manager> manager(new Manager(effective));
  manager->policy_ = MakePolicy(config.policy.c_str());
  if (manager->policy_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown policy \"", config.policy, "\""));
  }
  auto device_pool = PhysicalPool::Create("HBM", PoolLocation{true, config.device, 0},
                                          config.chunk_bytes, effective.hbm_limit_bytes);
  if (!device_pool.ok()) return device_pool.status();
  manager->device_pool_ = std::move(*device_pool);
  auto host_pool = PhysicalPool::Create("host", PoolLocation{false, config.device, numa},
                                        config.chunk_bytes, config.host_limit_bytes);
  if (!host_pool.ok()) return host_pool.status();
  manager->host_pool_ = std::move(*host_pool);
  if (!config.nvme_directory.empty()) {
    NvmeStoreConfig nvme;
    nvme.directory = config.nvme_directory;
    nvme.limit_bytes = config.nvme_limit_bytes;
    nvme.queue_depth = config.nvme_queue_depth;
    nvme.request_bytes = std::min<size_t>(config.chunk_bytes, size_t{1} << 20);
    nvme.completion_hook = config.nvme_completion_hook;
    auto store = NvmeStore::Open(nvme);
    if (!store.ok()) return store.status();
    manager->nvme_ = std::move(*store);
  }
  auto mover = Mover::Create(config.device, config.chunk_bytes, manager->nvme_.get(), numa,
                             config.stall_warning);
  if (!mover.ok()) return mover.status();
  manager->mover_ = std::move(*mover);
  manager->CalibrateLink();
  return manager;
}

void Manager::CalibrateLink() {
  absl::StatusOr<PhysicalChunk> device = device_pool_->Take();
  absl::StatusOr<PhysicalChunk> host = host_pool_->Take();
  absl::Status status = !device.ok() ? device.status() : host.status();
  if (status.ok()) status = mover_->Calibrate(host->home, device->home, kCalibrationBytes);
  if (device.ok()) device_pool_->Give(*device);
  if (host.ok()) host_pool_->Give(*host);
  if (!status.ok()) {
    // Not fatal: the window keeps its HBM cap until the first moves are measured.
    SPW_LOG(kWarn, "link not measured at start-up: {}", std::string(status.message()));
    return;
  }
  SPW_LOG(kInfo, "device {} link: {:.2f} GB/s host to device, {:.2f} GB/s device to host",
          config_.device, mover_->h2d_link().bytes_per_s() / 1e9,
          mover_->d2h_link().bytes_per_s() / 1e9);
}

Manager::~Manager() {
  std::vector<Allocation*> left;
  {
    absl::MutexLock lock(&mu_);
    left.assign(allocations_.begin(), allocations_.end());
  }
  for (Allocation* allocation : left) Free(allocation->base, nullptr).IgnoreError();
  Drain();
  mover_.reset();  // before the pools and the store: it uses both
}

absl::Status Manager::MapChunk(CUdeviceptr address, const PhysicalChunk& physical) {
  const DriverApi& cu = Driver();
  SPW_CHECK_CU(cu.cuMemMap(address, config_.chunk_bytes, 0, physical.handle, 0));
  CUmemAccessDesc access = {};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = config_.device;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  SPW_CHECK_CU(cu.cuMemSetAccess(address, config_.chunk_bytes, &access, 1));
  return absl::OkStatus();
}

void Manager::Touch(Chunk& chunk, CUstream stream) {
  chunk.last_stream = stream;
  policy_->OnTouch(&chunk);
}

void Manager::NoteDeviceUse() {
  stats_.peak_device_bytes = std::max<uint64_t>(
      stats_.peak_device_bytes, uint64_t{device_pool_->in_use_chunks()} * config_.chunk_bytes);
}

absl::StatusOr<CUdeviceptr> Manager::Allocate(size_t bytes, CUstream stream, uint32_t advice) {
  if (bytes == 0) return absl::InvalidArgumentError("cannot allocate 0 bytes");
  const size_t chunk_bytes = config_.chunk_bytes;
  const size_t count = (bytes + chunk_bytes - 1) / chunk_bytes;
  auto allocation = std::make_unique<Allocation>();
  allocation->size = bytes;
  allocation->reserved = count * chunk_bytes;
  allocation->device = config_.device;
  allocation->advice = advice & ~kAdviceReadMostly;  // per chunk, below
  CUresult r =
      Driver().cuMemAddressReserve(&allocation->base, allocation->reserved, chunk_bytes, 0, 0);
  if (r != CUDA_SUCCESS) return CudaError(r, "reserving device address space");
  allocation->chunks.resize(count);

  absl::MutexLock lock(&mu_);
  size_t mapped = 0;
  absl::Status status;
  for (; mapped < count; ++mapped) {
    Chunk& chunk = allocation->chunks[mapped];
    chunk.allocation = allocation.get();
    chunk.address = allocation->base + mapped * chunk_bytes;
    chunk.read_mostly = advice & kAdviceReadMostly;
    chunk.last_stream = stream;
    // HBM while it has room (COLD data goes straight to the host tier), else host memory.
    absl::StatusOr<PhysicalChunk> physical = absl::ResourceExhaustedError("cold");
    if (!(advice & kAdviceCold)) physical = device_pool_->Take();
    chunk.tier = Tier::kDevice;
    if (!physical.ok() && !(advice & kAdvicePin)) {
      physical = host_pool_->Take();
      chunk.tier = Tier::kHost;
    }
    if (!physical.ok() && (advice & kAdviceGuarded) && nvme_ && !(advice & kAdvicePin)) {
      // Guarded data is only touched after a prefetch: it may start unmapped, on NVMe,
      // with no bytes yet (like any fresh allocation, its contents are undefined).
      chunk.tier = Tier::kNvme;
      continue;
    }
    if (!physical.ok()) {
      status = absl::ResourceExhaustedError(absl::StrCat(
          "cannot place ", Bytes(bytes), ": HBM limit (", Bytes(config_.hbm_limit_bytes),
          ") and host limit (", Bytes(uint64_t{host_pool_->limit_chunks()} * chunk_bytes),
          ") are in use", (advice & kAdvicePin) ? "; PIN allocations need HBM" : ""));
      break;
    }
    (chunk.tier == Tier::kDevice ? chunk.device : chunk.host) = *physical;
    status = MapChunk(chunk.address, *physical);
    if (!status.ok()) {
      (chunk.tier == Tier::kDevice ? device_pool_ : host_pool_)->Give(*physical);
      break;
    }
  }
  if (status.ok()) status = map_.Insert(allocation->base, allocation->reserved, allocation.get());
  if (!status.ok()) {
    // Nothing was handed out yet: undo in place.
    for (size_t i = 0; i < mapped; ++i) {
      Chunk& chunk = allocation->chunks[i];
      if (chunk.tier == Tier::kNvme) continue;
      Driver().cuMemUnmap(chunk.address, chunk_bytes);
      if (chunk.tier == Tier::kDevice) {
        device_pool_->Give(chunk.device);
      } else {
        host_pool_->Give(chunk.host);
      }
    }
    Driver().cuMemAddressFree(allocation->base, allocation->reserved);
    return status;
  }
  static std::atomic<uint64_t> next_id{1};
  allocation->id = next_id.fetch_add(1, std::memory_order_relaxed);
  policy_->OnAllocate(allocation.get());
  for (Chunk& chunk : allocation->chunks) {
    if (chunk.tier == Tier::kDevice) {
      policy_->OnResident(&chunk);
      stats_.device_bytes += chunk_bytes;
    } else if (chunk.tier == Tier::kHost) {
      stats_.host_bytes += chunk_bytes;
    } else {
      stats_.nvme_bytes += chunk_bytes;
    }
  }
  NoteDeviceUse();
  ++stats_.allocations;
  stats_.allocated_bytes += bytes;
  if (config_.trace != nullptr) config_.trace->Alloc(allocation->id, bytes, advice);
  CUdeviceptr base = allocation->base;
  allocations_.insert(allocation.release());
  return base;
}

void Manager::WaitIdle(Allocation* allocation, size_t first, size_t last) {
  for (;;) {
    bool moving = false;
    for (size_t i = first; i <= last; ++i) moving = moving || allocation->chunks[i].moving;
    if (!moving) return;
    // Every job submitted so far: one of them holds these chunks.
    uint64_t target = mover_->completed() + 1;
    mu_.Unlock();
    mover_->WaitFor(target);
    mu_.Lock();
  }
}

absl::Status Manager::Free(CUdeviceptr base, CUstream stream) {
  absl::MutexLock lock(&mu_);
  std::optional<AllocationMap::Hit> hit = map_.Find(base);
  if (!hit || hit->base != base) {
    return absl::NotFoundError(absl::StrCat("0x", absl::Hex(base),
                                            " is not a live Spillway allocation (never allocated, "
                                            "already freed, or not its first byte)"));
  }
  Allocation* allocation = hit->allocation;
  WaitIdle(allocation, 0, allocation->chunks.size() - 1);
  // It might have been freed by another thread while we waited.
  if (!allocations_.contains(allocation)) return absl::NotFoundError("already freed");
  map_.Erase(base).IgnoreError();
  allocations_.erase(allocation);
  if (config_.trace != nullptr) config_.trace->Free(allocation->id);
  --stats_.allocations;
  stats_.allocated_bytes -= allocation->size;

  Plan plan;
  plan.streams.insert(stream);
  plan.gate_streams = false;  // freed: no later work may use it
  for (Chunk& chunk : allocation->chunks) {
    if (chunk.tier == Tier::kDevice) policy_->OnLeave(&chunk);
    Claim(&chunk, plan);
    chunk.arriving = 0;
    MoveStep step;
    step.kind = MoveStep::Kind::kRelease;
    step.chunk = &chunk;
    plan.steps.push_back(step);
  }
  policy_->OnFree(allocation);
  return SubmitPlan(plan).status();
}

absl::Status Manager::Advise(CUdeviceptr address, size_t bytes, uint32_t advice, bool set) {
  absl::MutexLock lock(&mu_);
  std::optional<AllocationMap::Hit> hit = map_.Find(address);
  if (!hit) return absl::NotFoundError(absl::StrCat("0x", absl::Hex(address), " is not managed"));
  if (bytes == 0 || address + bytes > hit->base + hit->allocation->size) {
    return absl::InvalidArgumentError("advice range is empty or leaves the allocation");
  }
  Allocation* allocation = hit->allocation;
  if (advice & kAdviceReadMostly) {
    // Read-mostly is kept per chunk. Set, for the chunks the range holds whole (a chunk
    // partly outside may be written there; a range of the whole allocation holds every
    // chunk); cleared, for every chunk it touches, which drops their kept copies.
    const auto [first, limit] = ChunkSpan(*hit, address, bytes, /*whole_only=*/set);
    for (size_t i = first; i < limit; ++i) {
      Chunk& chunk = allocation->chunks[i];
      chunk.read_mostly = set;
      if (!set && !CleanAfterFetch(chunk)) DropCleanCopies(chunk);
    }
    advice &= ~kAdviceReadMostly;
    if (advice == 0) return absl::OkStatus();
  }
  if (set) {
    if (allocation->escaped) advice &= ~kAdviceGuarded;
    allocation->advice |= advice;
  } else {
    allocation->advice &= ~advice;
    // Without the advice the program may write it again: a copy kept from its last fetch
    // would hand back stale bytes at the next eviction.
    for (Chunk& chunk : allocation->chunks) {
      if (!CleanAfterFetch(chunk)) DropCleanCopies(chunk);
    }
  }
  return absl::OkStatus();
}

absl::Status Manager::NoteWrite(CUdeviceptr address, size_t bytes) {
  absl::MutexLock lock(&mu_);
  std::optional<AllocationMap::Hit> hit = map_.Find(address);
  if (!hit) return absl::NotFoundError(absl::StrCat("0x", absl::Hex(address), " is not managed"));
  std::vector<Chunk>& chunks = hit->allocation->chunks;
  const auto [first, limit] = ChunkSpan(*hit, address, bytes, /*whole_only=*/false);
  for (size_t i = first; i < limit; ++i) DropCleanCopies(chunks[i]);
  return absl::OkStatus();
}

std::pair<size_t, size_t> Manager::ChunkSpan(const AllocationMap::Hit& hit, CUdeviceptr address,
                                             size_t bytes, bool whole_only) const {
  const uint64_t chunk_bytes = config_.chunk_bytes;
  const size_t size = hit.allocation->size, offset = address - hit.base;
  // A span past the allocation (or one that overflowed) ends with it.
  const size_t end = bytes > size - offset ? size : offset + bytes;
  if (!whole_only) return {offset / chunk_bytes, (end + chunk_bytes - 1) / chunk_bytes};
  // The last chunk ends at the allocation's size: past it is padding no one writes.
  const size_t limit = end == size ? hit.allocation->chunks.size() : end / chunk_bytes;
  return {(offset + chunk_bytes - 1) / chunk_bytes, limit};
}

void Manager::DropCleanCopies(Chunk& chunk) {
  if (chunk.moving) {
    // The job owns the chunk's copies; its commit drops them (Commit, keeps_copies).
    chunk.written_while_moving = true;
    return;
  }
  if (chunk.tier == Tier::kDevice && chunk.host_copy_valid) {
    host_pool_->Give(chunk.host);
    chunk.host = PhysicalChunk{};
    chunk.host_copy_valid = false;
  }
  if (chunk.tier != Tier::kNvme && chunk.nvme_copy_valid) DistrustNvmeCopy(chunk);
}

void Manager::DistrustNvmeCopy(Chunk& chunk) {
  // The extent keeps its bytes, and their hash: a spill still compares against them.
  chunk.nvme_copy_valid = false;
  if (!chunk.nvme_hash) ReleaseExtent(chunk);
}

void Manager::ReleaseExtent(Chunk& chunk) {
  nvme_->Free(*chunk.nvme).IgnoreError();
  chunk.nvme.reset();
  chunk.nvme_copy_valid = false;
  chunk.nvme_hash.reset();
}

absl::StatusOr<Extent> Manager::AllocateExtent() {
  for (;;) {
    absl::StatusOr<Extent> extent = nvme_->Allocate(config_.chunk_bytes);
    if (extent.ok() || extent.status().code() != absl::StatusCode::kResourceExhausted) {
      return extent;
    }
    // Full: extents that only copy what another tier holds make room, one at a time.
    auto find_copy = [this]() -> Chunk* {
      for (Allocation* a : allocations_) {
        for (Chunk& c : a->chunks) {
          if (c.nvme && c.tier != Tier::kNvme && !c.moving) return &c;
        }
      }
      return nullptr;
    };
    Chunk* copy = find_copy();
    if (copy == nullptr) return extent;
    ReleaseExtent(*copy);
  }
}

void Manager::Claim(Chunk* chunk, Plan& plan) {
  chunk->moving = true;
  plan.claimed.push_back(chunk);
  const std::shared_ptr<BusyEvent>& busy = chunk->allocation->busy;
  if (!plan.gate_streams && busy != nullptr && busy->recorded) {
    if (!busy->Done()) plan.busy.insert(busy);
    return;
  }
  if (chunk->last_stream != kNoStream) plan.streams.insert(chunk->last_stream);
}

absl::Status Manager::RetireStream(CUstream stream) {
  absl::MutexLock lock(&mu_);
  bool named = false;
  for (Allocation* allocation : allocations_) {
    for (Chunk& chunk : allocation->chunks) {
      if (chunk.last_stream != stream) continue;
      chunk.last_stream = kNoStream;
      named = true;
    }
  }
  if (!named) return absl::OkStatus();
  return mover_->OrderLaterJobsAfter(stream);
}

absl::Status Manager::PlanToNvme(Chunk* chunk, Plan& plan) {
  if (!nvme_) {
    return absl::FailedPreconditionError("the NVMe tier is off (set SPILLWAY_NVME_PATH)");
  }
  if (!chunk->allocation->guarded()) {
    // Its range would be unmapped while a kernel might still reach it (architecture.md).
    return absl::FailedPreconditionError(
        "only guarded allocations may leave mapped memory (advise SPW_ADVICE_GUARDED)");
  }
  MoveStep step;
  step.kind = MoveStep::Kind::kToNvme;
  step.chunk = chunk;
  if (chunk->nvme && chunk->nvme_copy_valid) {
    step.extent = *chunk->nvme;
    step.copy = false;  // a clean copy is already on NVMe
  } else if (chunk->nvme) {
    step.extent = *chunk->nvme;  // written over, unless it holds these bytes already
    step.on_nvme = chunk->nvme_hash;
  } else {
    absl::StatusOr<Extent> extent = AllocateExtent();
    if (!extent.ok()) return extent.status();
    plan.taken_extents.push_back(*extent);
    step.extent = *extent;
  }
  Claim(chunk, plan);
  plan.steps.push_back(step);
  return absl::OkStatus();
}

absl::Status Manager::PlanToHost(Chunk* chunk, Plan& plan) {
  MoveStep step;
  step.kind = MoveStep::Kind::kToHost;
  step.chunk = chunk;
  if (chunk->tier == Tier::kDevice && chunk->host_copy_valid) {
    step.target = chunk->host;  // clean: re-pointing the range is the whole eviction
    step.copy = false;
  } else {
    absl::StatusOr<PhysicalChunk> host = host_pool_->Take();
    if (!host.ok()) {
      // A full host tier is no dead end for guarded data: it can go to NVMe instead.
      if (chunk->tier == Tier::kDevice && chunk->allocation->guarded() && nvme_) {
        return PlanToNvme(chunk, plan);
      }
      return absl::ResourceExhaustedError(
          absl::StrCat("the host tier is full (SPILLWAY_HOST_LIMIT, ",
                       Bytes(uint64_t{host_pool_->limit_chunks()} * config_.chunk_bytes), ")"));
    }
    plan.taken_host.push_back(*host);
    step.target = *host;
    step.copy = chunk->tier != Tier::kNvme || chunk->nvme.has_value();
  }
  Claim(chunk, plan);
  plan.steps.push_back(step);
  return absl::OkStatus();
}

bool Manager::Evictable(const Chunk* c) const {
  if (c->tier != Tier::kDevice || c->moving || (c->allocation->advice & kAdvicePin) ||
      c->allocation->launch_pins > 0) {
    return false;
  }
  // With the host tier full, only a chunk that can leave without a new host chunk makes
  // room (a clean one, or guarded data bound for NVMe): PlanToHost would refuse others.
  return host_pool_->free_chunks() > 0 || c->host_copy_valid ||
         (c->allocation->guarded() && nvme_ != nullptr);
}

std::vector<Chunk*> Manager::PickVictims(size_t count,
                                         const std::function<bool(const Chunk*)>& eligible,
                                         int64_t used_after) {
  std::vector<Chunk*> victims = policy_->PickVictims(count, eligible, used_after);
  learns_ = learns_ || policy_->wants_launches();
  return victims;
}

absl::Status Manager::PlanToDevice(Chunk* chunk, FetchReason reason, Plan& plan, int64_t used_after,
                                   bool may_wait) {
  MoveStep step;
  step.kind = MoveStep::Kind::kToDevice;
  step.chunk = chunk;
  step.reason = reason;
  step.copy = chunk->tier != Tier::kNvme || chunk->nvme.has_value();
  Claim(chunk, plan);
  chunk->written_while_moving = false;  // what is queued from here on runs after the fetch
  absl::StatusOr<PhysicalChunk> device = device_pool_->Take();
  auto eligible = [this](const Chunk* c) { return Evictable(c); };
  std::vector<Chunk*> victims;
  if (!device.ok()) victims = PickVictims(1, eligible, used_after);
  if (!device.ok() && victims.empty() && may_wait && mover_->pending()) {
    // Moves in flight hold chunks (leaving or entering HBM) that will be candidates once
    // they land: let them land. Chunks this plan claimed stay claimed meanwhile.
    mu_.Unlock();
    mover_->WaitForAll();
    mu_.Lock();
    device = device_pool_->Take();
    if (!device.ok()) victims = PickVictims(1, eligible, used_after);
  }
  auto unclaim = [&] {
    chunk->moving = false;
    plan.claimed.pop_back();
  };
  if (device.ok()) {
    plan.taken_device.push_back(*device);
    step.target = *device;
  } else {
    // HBM is at its limit: the policy names the chunk that makes room.
    if (victims.empty()) {
      unclaim();
      return absl::ResourceExhaustedError(
          absl::StrCat("HBM limit (", Bytes(config_.hbm_limit_bytes),
                       ") reached and every resident chunk is pinned or being moved"));
    }
    if (absl::Status s = PlanToHost(victims[0], plan); !s.ok()) {
      unclaim();
      return s;
    }
    step.donor = static_cast<int>(plan.steps.size() - 1);
    step.target = victims[0]->device;
  }
  plan.steps.push_back(step);
  return absl::OkStatus();
}

void Manager::UndoPlan(Plan& plan) {
  for (const PhysicalChunk& c : plan.taken_device) device_pool_->Give(c);
  for (const PhysicalChunk& c : plan.taken_host) host_pool_->Give(c);
  for (const Extent& e : plan.taken_extents) nvme_->Free(e).IgnoreError();
  for (Chunk* chunk : plan.claimed) chunk->moving = false;
}

absl::StatusOr<uint64_t> Manager::SubmitPlan(Plan& plan) {
  if (plan.steps.empty()) return uint64_t{0};
  auto job = std::make_unique<MoveJob>();
  job->steps = std::move(plan.steps);
  job->streams.assign(plan.streams.begin(), plan.streams.end());
  job->gate_streams = plan.gate_streams;
  job->busy.assign(plan.busy.begin(), plan.busy.end());
  job->commit = [this](MoveJob& j, const absl::Status& status) { Commit(j, status); };
  // On failure the mover still runs the (abandoned) job's commit, which undoes the plan.
  return mover_->Submit(std::move(job));
}

void Manager::Commit(MoveJob& job, const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  const size_t chunk_bytes = config_.chunk_bytes;
  auto tier_bytes = [&](Tier tier) -> uint64_t& {
    return tier == Tier::kDevice ? stats_.device_bytes
           : tier == Tier::kHost ? stats_.host_bytes
                                 : stats_.nvme_bytes;
  };
  // Whether a step's device chunk went to a fetch of this job (it must not go back to
  // the pool then).
  auto donated = [&](const Chunk* chunk) {
    for (const MoveStep& other : job.steps) {
      if (other.donor >= 0 && job.steps[other.donor].chunk == chunk && other.remapped) {
        return true;
      }
    }
    return false;
  };
  // The physical memory a chunk leaves behind when its range points elsewhere.
  auto leave = [&](Chunk& chunk, Tier to) {
    if (chunk.tier == Tier::kDevice) {
      policy_->OnLeave(&chunk);
      if (!donated(&chunk)) device_pool_->Give(chunk.device);
      chunk.device = PhysicalChunk{};
      ++stats_.evictions;
    }
    const bool keeps_copies = CleanAfterFetch(chunk) && !chunk.written_while_moving;
    bool keep_host = to == Tier::kDevice && chunk.tier == Tier::kHost && keeps_copies;
    if ((chunk.tier == Tier::kHost || chunk.host_copy_valid) && !keep_host && to != Tier::kHost) {
      host_pool_->Give(chunk.host);
      chunk.host = PhysicalChunk{};
    }
    chunk.host_copy_valid = keep_host;
    // Leaving NVMe: the extent stays, as a clean copy of read-mostly data, or else with the
    // hash of its bytes, so that spilling them unchanged costs no write.
    if (chunk.tier == Tier::kNvme && chunk.nvme) {
      if (keeps_copies) {
        chunk.nvme_copy_valid = true;
      } else {
        DistrustNvmeCopy(chunk);
      }
    }
    tier_bytes(chunk.tier) -= chunk_bytes;
    tier_bytes(to) += chunk_bytes;
    chunk.tier = to;
  };
  std::vector<Allocation*> released;
  for (MoveStep& step : job.steps) {
    Chunk& chunk = *step.chunk;
    chunk.moving = false;
    chunk.arriving = 0;
    if (!step.remapped) {
      // Nothing changed for this chunk: give back what the plan took for it. A device
      // chunk donated by an eviction that did not happen still belongs to its donor.
      bool donor_kept = step.donor >= 0 && !job.steps[step.donor].remapped;
      if (step.kind == MoveStep::Kind::kToDevice && !donor_kept) device_pool_->Give(step.target);
      if (step.kind == MoveStep::Kind::kToHost && step.copy) host_pool_->Give(step.target);
      if (step.kind == MoveStep::Kind::kToNvme && chunk.nvme != step.extent) {
        nvme_->Free(step.extent).IgnoreError();
      } else if (step.kind == MoveStep::Kind::kToNvme && step.copy && !step.unchanged) {
        chunk.nvme_hash.reset();  // the chunk's own extent, perhaps half written over
      }
      continue;
    }
    switch (step.kind) {
      case MoveStep::Kind::kToHost:
        leave(chunk, Tier::kHost);
        chunk.host = step.target;
        chunk.host_copy_valid = false;
        break;
      case MoveStep::Kind::kToDevice:
        leave(chunk, Tier::kDevice);
        chunk.device = step.target;
        policy_->OnResident(&chunk);
        ++(step.reason == FetchReasonTag::kOnDemand ? stats_.fetches_on_demand
                                                    : stats_.fetches_prefetched);
        break;
      case MoveStep::Kind::kToNvme:
        leave(chunk, Tier::kNvme);
        chunk.nvme = step.extent;
        chunk.nvme_copy_valid = false;
        if (step.copy) {
          chunk.nvme_hash = step.written;
          ++(step.unchanged ? stats_.spills_unchanged : stats_.spills);
        }
        break;
      case MoveStep::Kind::kRelease:
        if (chunk.tier == Tier::kDevice) device_pool_->Give(chunk.device);
        if (chunk.tier == Tier::kHost || chunk.host_copy_valid) host_pool_->Give(chunk.host);
        if (chunk.nvme) nvme_->Free(*chunk.nvme).IgnoreError();
        tier_bytes(chunk.tier) -= chunk_bytes;
        if (released.empty() || released.back() != chunk.allocation) {
          released.push_back(chunk.allocation);
        }
        break;
    }
  }
  NoteDeviceUse();
  stats_.h2d_bytes += job.bytes_h2d;
  stats_.d2h_bytes += job.bytes_d2h;
  stats_.nvme_read_bytes += job.bytes_nvme_read;
  stats_.nvme_write_bytes += job.bytes_nvme_written;
  stats_.stall_ns += static_cast<uint64_t>(job.done_ns - job.submit_ns);
  stats_.remap_ns += static_cast<uint64_t>(job.remap_ns);
  ++stats_.moves;
  for (Allocation* allocation : released) {
    Driver().cuMemAddressFree(allocation->base, allocation->reserved);
    delete allocation;
  }
  last_move_status_ = status;
  if (!status.ok())
    SPW_LOG(kError, "a move failed; its chunks stay where they were: {}",
            std::string(status.message()));
}

absl::Status Manager::Prefetch(CUdeviceptr address, size_t bytes, Tier tier, CUstream stream,
                               FetchReason reason) {
  absl::MutexLock lock(&mu_);
  std::optional<AllocationMap::Hit> hit = map_.Find(address);
  if (!hit) {
    return absl::NotFoundError(absl::StrCat("0x", absl::Hex(address), " is not managed"));
  }
  Allocation* allocation = hit->allocation;
  if (bytes == 0 || address + bytes > allocation->base + allocation->size) {
    return absl::InvalidArgumentError("range is empty or runs past the end of the allocation");
  }
  size_t first = (address - allocation->base) / config_.chunk_bytes;
  size_t last = (address + bytes - 1 - allocation->base) / config_.chunk_bytes;
  WaitIdle(allocation, first, last);
  if (!allocations_.contains(allocation)) return absl::NotFoundError("freed meanwhile");
  if (tier != Tier::kDevice && (allocation->advice & kAdvicePin)) {
    return absl::FailedPreconditionError("cannot evict a PIN allocation");
  }
  if (tier == Tier::kNvme && allocation->launch_pins > 0) {
    // Its range would be unmapped under a launch that is being queued right now.
    return absl::UnavailableError("in use by a launch being queued; evict it afterwards");
  }
  Plan plan;
  plan.streams.insert(stream);
  absl::Status status;
  for (size_t i = first; i <= last && status.ok(); ++i) {
    Chunk* chunk = &allocation->chunks[i];
    if (chunk->tier == tier) continue;
    switch (tier) {
      case Tier::kDevice:
        status = PlanToDevice(chunk, reason, plan);
        break;
      case Tier::kHost:
        status = PlanToHost(chunk, plan);
        break;
      case Tier::kNvme:
        status = PlanToNvme(chunk, plan);
        break;
    }
  }
  if (!status.ok()) {
    UndoPlan(plan);
    return status;
  }
  policy_->OnUse(allocation);
  for (size_t i = first; i <= last; ++i) Touch(allocation->chunks[i], stream);
  allocation->busy.reset();  // a use no busy event follows: moves wait for the stream
  return SubmitPlan(plan).status();
}

absl::StatusOr<size_t> Manager::PrepareLaunch(std::span<const uintptr_t> words, CUstream stream) {
  std::vector<AllocationMap::Hit> hits;
  const uint64_t found_at = FindHits(words, &hits);
  if (hits.empty()) return size_t{0};
  absl::Status s = PrepareLaunch(hits, stream, found_at);
  // The caller queues its work after: it keeps no pin. Nothing is prefetched behind it
  // (EndLaunch): its work is not queued yet, so nothing could be ordered after it.
  absl::MutexLock lock(&mu_);
  Unpin(hits, found_at);
  if (!s.ok()) return s;
  return hits.size();
}

uint64_t Manager::FindHits(std::span<const uintptr_t> words,
                           std::vector<AllocationMap::Hit>* hits) const {
  constexpr size_t kBlock = 1024;  // bounds the scratch vector for large copies
  SPW_FAST_TLS thread_local std::vector<AllocationMap::Hit> found;
  const uint64_t erasures = map_.erasures();
  const size_t first_new = hits->size();
  for (size_t at = 0; at < words.size(); at += kBlock) {
    std::span<const uintptr_t> block = words.subspan(at, std::min(kBlock, words.size() - at));
    if (map_.FindMany(block, &found) == 0) continue;
    for (const AllocationMap::Hit& hit : found) {
      if (hit.allocation == nullptr) continue;
      // Each allocation once, whichever of its addresses the words hold: a kernel given any
      // pointer into it may reach all of it. Launches name few: a linear scan is cheapest.
      bool seen = false;
      for (size_t i = first_new; i < hits->size() && !seen; ++i) seen = (*hits)[i].base == hit.base;
      if (!seen) hits->push_back(hit);
    }
  }
  return erasures;
}

namespace {

// Busy events made by PrepareLaunch for the launch being queued on this thread, per
// manager, recorded by EndLaunch once the launch is queued.
struct PendingBusy {
  struct Entry {
    const Manager* manager;
    CUstream stream;
    std::shared_ptr<BusyEvent> busy;
  };
  std::vector<Entry> entries;
};

}  // namespace

absl::Status Manager::PrepareLaunch(std::span<const AllocationMap::Hit> allocations,
                                    CUstream stream, uint64_t found_at) {
  // The common case, everything already in HBM and still: one lock, no plan, no move; the
  // chunks are marked used by `stream` (later moves wait for this launch).
  struct ToMove {
    CUdeviceptr base;
    size_t size;
    size_t reserved;
  };
  SPW_FAST_TLS thread_local std::vector<ToMove> to_move;
  to_move.clear();
  std::vector<uint64_t> traced;  // allocates only when tracing
  uint64_t arrival = 0;          // the latest prefetch job a chunk of the launch is in
  {
    absl::MutexLock lock(&mu_);
    // Free erases from the map under mu_ before the allocation goes: no erasure since the
    // lookups means no hit was freed.
    const bool all_live = found_at == map_.erasures();
    // A learning policy hears of the launch before its allocations are touched for it; the
    // others cost nothing here (the launch path's common case).
    std::shared_ptr<BusyEvent> busy;
    if (learns_) {
      SPW_FAST_TLS thread_local std::vector<Allocation*> live;
      live.clear();
      for (const AllocationMap::Hit& hit : allocations) {
        if (all_live || allocations_.contains(hit.allocation)) live.push_back(hit.allocation);
      }
      policy_->OnLaunch(stream, live);
      // With a learned schedule, prefetches evict what launches just used: an event after
      // this launch lets them wait for it alone (Allocation::busy).
      if (policy_->period() > 0 && !live.empty()) {
        busy = BusyEvent::Create();
        if (busy != nullptr) {
          PendingBusy& pending = PerThread<PendingBusy>::Get();
          std::erase_if(pending.entries, [this](const auto& e) { return e.manager == this; });
          pending.entries.push_back({this, stream, busy});
        }
      }
    }
    for (const AllocationMap::Hit& hit : allocations) {
      if (!all_live && !allocations_.contains(hit.allocation)) continue;  // freed meanwhile
      Allocation* allocation = hit.allocation;
      ++allocation->launch_pins;
      if (config_.trace != nullptr) traced.push_back(allocation->id);
      bool resident = true;
      for (const Chunk& chunk : allocation->chunks) {
        resident = resident && chunk.tier == Tier::kDevice && !chunk.moving;
      }
      if (!resident) {
        // Or on its way to HBM in a prefetch that did not gate `stream`: gate it here.
        uint64_t arriving = 0;
        resident = true;
        for (const Chunk& chunk : allocation->chunks) {
          if (chunk.moving && chunk.arriving != 0) {
            arriving = std::max(arriving, chunk.arriving);
          } else {
            resident = resident && chunk.tier == Tier::kDevice && !chunk.moving;
          }
        }
        if (!resident) {
          // Read under the lock: the allocation may be freed once it is released.
          to_move.push_back({allocation->base, allocation->size, allocation->reserved});
          continue;
        }
        arrival = std::max(arrival, arriving);
      }
      if (learns_) policy_->OnUse(allocation);
      for (Chunk& chunk : allocation->chunks) Touch(chunk, stream);
      if (busy != nullptr || allocation->busy != nullptr) allocation->busy = busy;
    }
  }
  if (config_.trace != nullptr) config_.trace->Launch(stream, traced);
  // The pins keep those chunks from being chosen to make room until the launch is queued.
  if (arrival != 0) {
    if (absl::Status gated = mover_->GateStream(stream, arrival); !gated.ok()) return gated;
  }
  // What one launch can have in HBM at once. Allocations past it are not fetched: fetching
  // them would evict the ones fetched just before, for the same launch (a thrash that moves
  // every byte for nothing). They are read where they are, over the link.
  uint64_t budget = config_.hbm_limit_bytes;
  for (const ToMove& hit : to_move) {
    const size_t size = hit.size;
    const size_t reserved = hit.reserved;
    absl::Status status = absl::ResourceExhaustedError("over this launch's share of HBM");
    if (reserved <= budget) {
      budget -= reserved;
      status = Prefetch(hit.base, size, Tier::kDevice, stream, FetchReason::kOnDemand);
    }
    if (status.code() == absl::StatusCode::kResourceExhausted) {
      // Larger than what HBM can give it now: the kernel reads it where it is, over the
      // link; only chunks outside mapped memory must come back.
      SPW_LOG(kDebug, "launch: allocation at {:#x} ({} bytes) stays partly in host memory: {}",
              hit.base, size, std::string(status.message()));
      status = MakeMapped(hit.base, size, stream);
    }
    if (status.code() == absl::StatusCode::kNotFound) continue;  // freed meanwhile
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

void Manager::EndLaunch(std::span<const AllocationMap::Hit> allocations, uint64_t found_at) {
  absl::MutexLock lock(&mu_);
  Unpin(allocations, found_at);
  if (!learns_) return;
  if (PendingBusy* pending = PerThread<PendingBusy>::IfCreated()) {
    for (auto it = pending->entries.begin(); it != pending->entries.end(); ++it) {
      if (it->manager != this) continue;
      // After the launch (or after what is queued, if it failed): never too early.
      it->busy->recorded = Driver().cuEventRecord(it->busy->event, it->stream) == CUDA_SUCCESS;
      pending->entries.erase(it);
      break;
    }
  }
  // The launch is queued now: what follows it can be brought in behind it (a move that
  // evicts what it used waits for it).
  if (policy_->period() > 0) PrefetchAhead();
}

void Manager::Unpin(std::span<const AllocationMap::Hit> allocations, uint64_t found_at) {
  const bool all_live = found_at == map_.erasures();
  for (const AllocationMap::Hit& hit : allocations) {
    if (!all_live && !allocations_.contains(hit.allocation)) continue;  // freed meanwhile
    if (hit.allocation->launch_pins > 0) --hit.allocation->launch_pins;
  }
}

uint64_t PrefetchWindowBytes(uint64_t configured, uint64_t hbm_limit_bytes,
                             uint64_t widest_launch_bytes, uint64_t chunk_bytes,
                             double link_bytes_per_s) {
  uint64_t window = configured;
  if (window == 0) {
    // The HBM cap: measured on the link benchmark (docs/benchmarks.md), the widest launch
    // or an eighth of HBM beats twice the widest launch by 20 % in step time.
    window = std::min(std::max(hbm_limit_bytes / 8, widest_launch_bytes), hbm_limit_bytes / 2);
    // On a GPU an eighth of HBM is seconds of link time (17 GB of an H200 over a 50 GB/s
    // link), each byte of it a byte Belady cannot keep; what the link moves in the lead
    // time rides through a move's fixed costs (a remap, a commit) and the program's jitter.
    if (link_bytes_per_s > 0) {
      const auto lead = static_cast<uint64_t>(link_bytes_per_s * kPrefetchLeadSeconds);
      window = std::min(window, std::max(lead, widest_launch_bytes / 4));
    }
  }
  return std::max<uint64_t>(window, 2 * chunk_bytes);
}

void Manager::PrefetchAhead() {
  const int64_t period = policy_->period();
  const int64_t now = policy_->current_launch();
  if (policy_->schedule_epoch() != ahead_epoch_) {
    ahead_epoch_ = policy_->schedule_epoch();
    ahead_.clear();
    ahead_bytes_ = 0;
    ahead_cursor_ = 0;
    // The widest launch of the new schedule: a window narrower than one launch would
    // leave that launch waiting for its own fetches.
    widest_launch_bytes_ = 0;
    std::vector<Allocation*> named;
    for (int64_t m = now + 1; m <= now + period; ++m) {
      named.clear();
      policy_->Predicted(m, &named);
      uint64_t bytes = 0;
      for (const Allocation* allocation : named) bytes += allocation->reserved;
      widest_launch_bytes_ = std::max(widest_launch_bytes_, bytes);
    }
  }
  while (!ahead_.empty() && ahead_.front().first <= now) {
    ahead_bytes_ -= ahead_.front().second;
    ahead_.pop_front();
  }
  const uint64_t chunk_bytes = config_.chunk_bytes;
  // Bytes fetched ahead of need (and in moves not yet done), at most.
  const uint64_t window =
      PrefetchWindowBytes(config_.prefetch_ahead_bytes, config_.hbm_limit_bytes,
                          widest_launch_bytes_, chunk_bytes, mover_->h2d_link().bytes_per_s());
  // Launches' fetches go out together up to this size: each move has a fixed cost (a wait,
  // a remap per chunk, a commit) that small ones would pay per few chunks.
  const uint64_t job_bytes = std::max<uint64_t>(chunk_bytes, window / 4);
  // Backpressure: the program queues launches far ahead of the device (a whole decode
  // step before it synchronises). Planned that far ahead, a fetch could only evict chunks
  // whose own moves are still queued, never the ones Belady would pick; so the launch that
  // plans more waits (a bounded time) until the moves already planned are within a window.
  while (!prefetch_jobs_.empty()) {
    while (!prefetch_jobs_.empty() && prefetch_jobs_.front().first <= mover_->completed()) {
      prefetch_jobs_.pop_front();
    }
    uint64_t in_flight = 0;
    for (const auto& job : prefetch_jobs_) in_flight += job.second;
    if (in_flight < window) break;
    const uint64_t oldest = prefetch_jobs_.front().first;
    mu_.Unlock();
    const bool done = mover_->WaitFor(oldest, absl::Milliseconds(100));
    mu_.Lock();
    if (!done) break;  // the device is held by something else: plan anyway
    if (policy_->schedule_epoch() != ahead_epoch_ || policy_->current_launch() != now) return;
  }
  // Nothing until a whole job fits in the window: a job per few chunks freed would pay
  // each move's fixed cost for little.
  if (ahead_bytes_ + job_bytes > window) return;
  std::vector<Allocation*> predicted;
  std::vector<Chunk*> fetched;  // in `plan`
  Plan plan;
  plan.gate_streams = false;  // the launches that need the chunks gate on the job
  int64_t m = std::max(ahead_cursor_, now + 1);
  auto submit = [&]() -> bool {
    absl::StatusOr<uint64_t> sequence = SubmitPlan(plan);
    if (!sequence.ok()) {
      SPW_LOG(kDebug, "prefetch not submitted: {}", std::string(sequence.status().message()));
      return false;
    }
    for (Chunk* chunk : fetched) chunk->arriving = *sequence;
    prefetch_jobs_.emplace_back(*sequence, fetched.size() * chunk_bytes);
    SPW_LOG(kTrace, "launch {}: prefetch of {} chunks, up to launch {}", now, fetched.size(), m);
    fetched.clear();
    plan = Plan();
    plan.gate_streams = false;
    return true;
  };
  bool blocked = false;
  for (; m <= now + period && !blocked; ++m) {
    predicted.clear();
    policy_->Predicted(m, &predicted);
    const size_t before = fetched.size();
    for (Allocation* allocation : predicted) {
      // Larger than HBM: read over the link where it is (PrepareLaunch), never fetched.
      if (allocation->reserved > config_.hbm_limit_bytes) continue;
      for (Chunk& chunk : allocation->chunks) {
        if (chunk.moving && chunk.arriving != 0) continue;  // on its way in, ahead of need
        if (chunk.tier == Tier::kDevice && !chunk.moving) continue;
        if (chunk.moving) {
          // Fetched on demand or leaving HBM right now: look again after the next launch.
          blocked = true;
          break;
        }
        if (ahead_bytes_ + chunk_bytes > window ||
            !PlanToDevice(&chunk, FetchReason::kPrefetch, plan, m, /*may_wait=*/false).ok()) {
          blocked = true;
          break;
        }
        fetched.push_back(&chunk);
        ahead_bytes_ += chunk_bytes;
      }
      if (blocked) break;
    }
    if (fetched.size() > before) ahead_.emplace_back(m, (fetched.size() - before) * chunk_bytes);
    if (blocked) break;  // m is not done: the next call starts there
    if (fetched.size() * chunk_bytes >= job_bytes && !submit()) break;
  }
  if (!fetched.empty()) submit();
  ahead_cursor_ = m;
}

absl::Status Manager::MakeHostRoom(size_t chunks, const Allocation* keep) {
  if (!nvme_) return absl::ResourceExhaustedError("the NVMe tier is off");
  std::vector<Chunk*> candidates;
  for (Allocation* a : allocations_) {
    if (a == keep || !a->guarded() || a->launch_pins > 0 || (a->advice & kAdvicePin)) continue;
    for (Chunk& c : a->chunks) {
      if (c.tier == Tier::kHost && !c.moving) candidates.push_back(&c);
    }
  }
  if (candidates.empty()) return absl::ResourceExhaustedError("no host-tier data can go to NVMe");
  const size_t count = std::min(chunks, candidates.size());
  std::partial_sort(candidates.begin(), candidates.begin() + count, candidates.end(),
                    [](const Chunk* a, const Chunk* b) { return a->last_use < b->last_use; });
  Plan plan;
  for (size_t i = 0; i < count; ++i) {
    if (absl::Status s = PlanToNvme(candidates[i], plan); !s.ok()) {
      UndoPlan(plan);
      return s;
    }
  }
  if (absl::Status s = SubmitPlan(plan).status(); !s.ok()) return s;
  mu_.Unlock();
  mover_->WaitForAll();
  mu_.Lock();
  return absl::OkStatus();
}

absl::Status Manager::MakeMapped(CUdeviceptr base, size_t size, CUstream stream) {
  absl::MutexLock lock(&mu_);
  std::optional<AllocationMap::Hit> hit = map_.Find(base);
  if (!hit) return absl::NotFoundError("freed meanwhile");
  Allocation* allocation = hit->allocation;
  // Chunks on NVMe come back to host memory, which may first need room: a few rounds, as
  // other threads may take what one round freed.
  for (int round = 0;; ++round) {
    if (!allocations_.contains(allocation)) return absl::NotFoundError("freed meanwhile");
    WaitIdle(allocation, 0, allocation->chunks.size() - 1);
    if (!allocations_.contains(allocation)) return absl::NotFoundError("freed meanwhile");
    size_t needed = 0;
    for (const Chunk& chunk : allocation->chunks) needed += chunk.tier == Tier::kNvme;
    const size_t free = host_pool_->free_chunks();
    if (needed <= free || round == 3) break;
    if (!MakeHostRoom(needed - free, allocation).ok()) break;  // PlanToHost says why
  }
  Plan plan;
  plan.streams.insert(stream);
  absl::Status status;
  for (Chunk& chunk : allocation->chunks) {
    if (status.ok() && chunk.tier == Tier::kNvme) status = PlanToHost(&chunk, plan);
  }
  if (!status.ok()) {
    UndoPlan(plan);
    return status;
  }
  for (Chunk& chunk : allocation->chunks) Touch(chunk, stream);
  allocation->busy.reset();  // a use no busy event follows: moves wait for the stream
  (void)size;
  return SubmitPlan(plan).status();
}

void Manager::Drain() { mover_->WaitForAll(); }

bool Manager::Drain(absl::Duration timeout) { return mover_->WaitForAll(timeout); }

absl::StatusOr<std::vector<Tier>> Manager::Placement(CUdeviceptr address, size_t bytes) {
  absl::MutexLock lock(&mu_);
  std::optional<AllocationMap::Hit> hit = map_.Find(address);
  if (!hit) return absl::NotFoundError("not managed");
  Allocation* allocation = hit->allocation;
  size_t first = (address - allocation->base) / config_.chunk_bytes;
  size_t last = (address + std::max<size_t>(bytes, 1) - 1 - allocation->base) / config_.chunk_bytes;
  last = std::min(last, allocation->chunks.size() - 1);
  std::vector<Tier> tiers;
  for (size_t i = first; i <= last; ++i) tiers.push_back(allocation->chunks[i].tier);
  return tiers;
}

bool Manager::Owns(CUdeviceptr address) const { return map_.Find(address).has_value(); }

std::optional<Manager::Range> Manager::Find(CUdeviceptr address) const {
  absl::MutexLock lock(&mu_);
  std::optional<AllocationMap::Hit> hit = map_.Find(address);
  if (!hit || !allocations_.contains(hit->allocation)) return std::nullopt;
  return Range{hit->base, hit->allocation->size};
}

void Manager::FindAllocations(std::span<const uintptr_t> words,
                              std::vector<CUdeviceptr>* bases) const {
  constexpr size_t kBlock = 1024;  // bounds the scratch vector for large copies
  std::vector<AllocationMap::Hit> hits;
  const size_t first_new = bases->size();
  for (size_t at = 0; at < words.size(); at += kBlock) {
    std::span<const uintptr_t> block = words.subspan(at, std::min(kBlock, words.size() - at));
    if (map_.FindMany(block, &hits) == 0) continue;
    for (const AllocationMap::Hit& hit : hits) {
      if (hit.allocation == nullptr) continue;
      if (std::find(bases->begin() + first_new, bases->end(), hit.base) == bases->end()) {
        bases->push_back(hit.base);
      }
    }
  }
}

absl::Status Manager::MarkEscaped(CUdeviceptr address, CUstream stream) {
  CUdeviceptr base = 0;
  size_t size = 0;
  bool on_nvme = false;
  {
    absl::MutexLock lock(&mu_);
    std::optional<AllocationMap::Hit> hit = map_.Find(address);
    if (!hit) return absl::NotFoundError(absl::StrCat("0x", absl::Hex(address), " is not managed"));
    Allocation* allocation = hit->allocation;
    if (allocation->escaped) return absl::OkStatus();
    // A spill in flight would land on NVMe after the flag is cleared: let it finish first.
    WaitIdle(allocation, 0, allocation->chunks.size() - 1);
    if (!allocations_.contains(allocation)) return absl::NotFoundError("freed meanwhile");
    allocation->escaped = true;
    allocation->advice &= ~kAdviceGuarded;
    for (const Chunk& chunk : allocation->chunks) on_nvme = on_nvme || chunk.tier == Tier::kNvme;
    base = allocation->base;
    size = allocation->size;
  }
  if (!on_nvme) return absl::OkStatus();
  SPW_LOG(kDebug, "allocation at {:#x} escaped while partly on NVMe: bringing it back", base);
  // As for a launch: into HBM if it fits (making room by spilling guarded data), else at
  // least into host memory.
  const uintptr_t word = base;
  absl::StatusOr<size_t> prepared = PrepareLaunch(std::span<const uintptr_t>(&word, 1), stream);
  // Work on streams the runtime does not know of may follow the hidden pointer: wait for
  // the read-back rather than rely on the gate of `stream` alone.
  Drain();
  (void)size;
  if (!prepared.ok()) return prepared.status();
  return LastMoveStatus();
}

absl::Status Manager::LastMoveStatus() {
  absl::MutexLock lock(&mu_);
  return last_move_status_;
}

ManagerStats Manager::Stats() {
  ManagerStats stats;
  {
    absl::MutexLock lock(&mu_);
    stats = stats_;
  }
  stats.h2d_link_bytes_per_s = static_cast<uint64_t>(mover_->h2d_link().bytes_per_s());
  stats.d2h_link_bytes_per_s = static_cast<uint64_t>(mover_->d2h_link().bytes_per_s());
  return stats;
}

}  // namespace spillway
