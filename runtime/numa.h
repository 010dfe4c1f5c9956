// SPDX-License-Identifier: Apache-2.0
//
// Host memory placement near the GPU: binds buffers (NVMe staging, pinned by us) to the
// NUMA node the driver names as the GPU's nearest (CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID), using
// hwloc's view of the machine's real topology. hwloc's CUDA helpers are not used: they call
// the driver themselves, which under our own hooks would re-enter them (cuda-notes.md).
//
// Contract: BindToNumaNode must be called before the memory is first touched (binding
// decides where pages are allocated). NotFound when the node does not exist.
//
// Thread safety: thread-safe; the topology is loaded once, on first use, and never freed.
#ifndef SPILLWAY_RUNTIME_NUMA_H_
#define SPILLWAY_RUNTIME_NUMA_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spillway {

absl::Status BindToNumaNode(void* address, size_t bytes, int node);
// The NUMA node holding the (touched) page at `address`, or an error.
absl::StatusOr<int> NumaNodeOf(const void* address, size_t bytes);
int NumaNodeCount();

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_NUMA_H_
