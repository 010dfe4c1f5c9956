// SPDX-License-Identifier: Apache-2.0
//
// A pool of physical memory in chunk-sized VMM handles, on the device or on the host.
//
// Moving a chunk must not cost a cuMemCreate (slow, and may synchronise): handles are
// created on demand up to the pool's limit and then reused. Each handle is also mapped
// once, for good, at a private "home" address of the runtime's own, so the mover can
// copy into and out of it regardless of where the application's range points.
//
// Device pools hold device-located handles (capped by SPILLWAY_HBM_LIMIT and by what the
// device really has); host pools hold host-located handles on the NUMA node nearest the
// GPU (capped by SPILLWAY_HOST_LIMIT), which the GPU can read and write over the link.
//
// Thread safety: all methods are thread-safe (one mutex; driver calls are made under it
// only while a new handle is created, which is rare once the pool is warm).
#ifndef SPILLWAY_RUNTIME_PHYSICAL_POOL_H_
#define SPILLWAY_RUNTIME_PHYSICAL_POOL_H_

#include <cuda.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace spillway {

struct PhysicalChunk {
  CUmemGenericAllocationHandle handle = 0;
  CUdeviceptr home = 0;  // the pool's private mapping of `handle`
  explicit operator bool() const { return handle != 0; }
};

struct PoolLocation {
  bool on_device = true;
  int device = 0;     // the GPU that maps (and, for device pools, owns) the memory
  int numa_node = 0;  // host pools: the NUMA node; < 0 means "any host memory"
};

class PhysicalPool {
 public:
  static absl::StatusOr<std::unique_ptr<PhysicalPool>> Create(std::string name,
                                                              PoolLocation location,
                                                              size_t chunk_bytes,
                                                              size_t limit_bytes);
  ~PhysicalPool();

  // A free chunk, creating a handle if the pool is below its limit. ResourceExhausted
  // when at the limit (or the driver is out of memory).
  absl::StatusOr<PhysicalChunk> Take();
  // Returns a chunk taken from this pool. REQUIRES: no mapping but the home one uses it.
  void Give(PhysicalChunk chunk);

  size_t chunk_bytes() const { return chunk_bytes_; }
  size_t limit_chunks() const { return limit_chunks_; }
  size_t in_use_chunks() const;
  size_t free_chunks() const;  // can be taken without exceeding the limit
  const std::string& name() const { return name_; }

 private:
  PhysicalPool(std::string name, PoolLocation location, size_t chunk_bytes, size_t limit_chunks);

  const std::string name_;
  const PoolLocation location_;
  const size_t chunk_bytes_;
  const size_t limit_chunks_;
  CUdeviceptr home_base_ = 0;  // reservation of limit_chunks_ chunks

  mutable absl::Mutex mu_;
  size_t created_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<PhysicalChunk> free_ ABSL_GUARDED_BY(mu_);
  size_t in_use_ ABSL_GUARDED_BY(mu_) = 0;
  // When the driver last refused a handle (0: never). The device may have less memory
  // than the limit (the application holds the rest); asking again at every take would
  // cost a failing driver call per move, so the pool waits a while before it retries.
  int64_t refused_at_ns_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_PHYSICAL_POOL_H_
