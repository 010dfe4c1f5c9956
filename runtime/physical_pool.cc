// SPDX-License-Identifier: Apache-2.0
#include "runtime/physical_pool.h"

#include "absl/strings/str_cat.h"
#include "runtime/driver_api.h"
#include "runtime/mover.h"  // NowNs

namespace spillway {

absl::StatusOr<std::unique_ptr<PhysicalPool>> PhysicalPool::Create(std::string name,
                                                                   PoolLocation location,
                                                                   size_t chunk_bytes,
                                                                   size_t limit_bytes) {
  if (chunk_bytes == 0) return absl::InvalidArgumentError("chunk size is 0");
  size_t limit_chunks = limit_bytes / chunk_bytes;
  std::unique_ptr<PhysicalPool> pool(
      new PhysicalPool(std::move(name), location, chunk_bytes, limit_chunks));
  if (limit_chunks > 0) {
    // One reservation for every home mapping the pool may ever need.
    SPW_CHECK_CU(Driver().cuMemAddressReserve(&pool->home_base_, limit_chunks * chunk_bytes,
                                              chunk_bytes, 0, 0));
  }
  return pool;
}

PhysicalPool::PhysicalPool(std::string name, PoolLocation location, size_t chunk_bytes,
                           size_t limit_chunks)
    : name_(std::move(name)),
      location_(location),
      chunk_bytes_(chunk_bytes),
      limit_chunks_(limit_chunks) {}

PhysicalPool::~PhysicalPool() {
  absl::MutexLock lock(&mu_);
  // Chunks still in use belong to allocations being torn down with us; the reservation
  // goes either way.
  for (const PhysicalChunk& chunk : free_) {
    Driver().cuMemUnmap(chunk.home, chunk_bytes_);
    Driver().cuMemRelease(chunk.handle);
  }
  if (home_base_ != 0 && in_use_ == 0) {
    Driver().cuMemAddressFree(home_base_, limit_chunks_ * chunk_bytes_);
  }
}

absl::StatusOr<PhysicalChunk> PhysicalPool::Take() {
  absl::MutexLock lock(&mu_);
  if (!free_.empty()) {
    PhysicalChunk chunk = free_.back();
    free_.pop_back();
    ++in_use_;
    return chunk;
  }
  constexpr int64_t kRetryNs = 100'000'000;  // 100 ms
  bool refused_recently = refused_at_ns_ != 0 && NowNs() - refused_at_ns_ < kRetryNs;
  if (created_ >= limit_chunks_ || refused_recently) {
    return absl::ResourceExhaustedError(
        absl::StrCat(name_, " pool is full (", created_, " chunks of ", chunk_bytes_, " bytes)"));
  }
  CUmemAllocationProp prop = {};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  if (location_.on_device) {
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = location_.device;
  } else if (location_.numa_node >= 0) {
    prop.location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
    prop.location.id = location_.numa_node;
  } else {
    prop.location.type = CU_MEM_LOCATION_TYPE_HOST;
  }
  PhysicalChunk chunk;
  CUresult r = Driver().cuMemCreate(&chunk.handle, chunk_bytes_, &prop, 0);
  if (r == CUDA_ERROR_OUT_OF_MEMORY) {
    // The device (or host) has less than the configured limit: the pool ends here for now.
    refused_at_ns_ = NowNs();
    return absl::ResourceExhaustedError(
        absl::StrCat(name_, " pool: the driver has no more memory after ", created_, " chunks"));
  }
  if (r != CUDA_SUCCESS) return CudaError(r, "cuMemCreate");
  chunk.home = home_base_ + created_ * chunk_bytes_;
  CUmemAccessDesc access = {};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = location_.device;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  r = Driver().cuMemMap(chunk.home, chunk_bytes_, 0, chunk.handle, 0);
  if (r == CUDA_SUCCESS) r = Driver().cuMemSetAccess(chunk.home, chunk_bytes_, &access, 1);
  if (r != CUDA_SUCCESS) {
    Driver().cuMemUnmap(chunk.home, chunk_bytes_);
    Driver().cuMemRelease(chunk.handle);
    return CudaError(r, "mapping a pool chunk");
  }
  ++created_;
  ++in_use_;
  return chunk;
}

void PhysicalPool::Give(PhysicalChunk chunk) {
  absl::MutexLock lock(&mu_);
  free_.push_back(chunk);
  --in_use_;
}

size_t PhysicalPool::in_use_chunks() const {
  absl::MutexLock lock(&mu_);
  return in_use_;
}

size_t PhysicalPool::free_chunks() const {
  absl::MutexLock lock(&mu_);
  return refused_at_ns_ != 0 ? free_.size() : free_.size() + (limit_chunks_ - created_);
}

}  // namespace spillway
