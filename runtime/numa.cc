// SPDX-License-Identifier: Apache-2.0
#include "runtime/numa.h"

#include <hwloc.h>

#include <mutex>

#include "absl/strings/str_cat.h"

namespace spillway {
namespace {

hwloc_topology_t Topology() {
  static hwloc_topology_t topology = [] {
    hwloc_topology_t t = nullptr;
    if (hwloc_topology_init(&t) != 0) return static_cast<hwloc_topology_t>(nullptr);
    if (hwloc_topology_load(t) != 0) {
      hwloc_topology_destroy(t);
      return static_cast<hwloc_topology_t>(nullptr);
    }
    return t;
  }();
  return topology;
}

}  // namespace

int NumaNodeCount() {
  hwloc_topology_t t = Topology();
  return t == nullptr ? 0 : hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
}

absl::Status BindToNumaNode(void* address, size_t bytes, int node) {
  hwloc_topology_t t = Topology();
  if (t == nullptr) return absl::UnavailableError("hwloc could not load the topology");
  hwloc_obj_t numa = hwloc_get_numanode_obj_by_os_index(t, static_cast<unsigned>(node));
  if (numa == nullptr) {
    return absl::NotFoundError(absl::StrCat("NUMA node ", node, " does not exist on this host"));
  }
  if (hwloc_set_area_membind(t, address, bytes, numa->nodeset, HWLOC_MEMBIND_BIND,
                             HWLOC_MEMBIND_BYNODESET) != 0) {
    return absl::UnavailableError(absl::StrCat("binding memory to NUMA node ", node, " failed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> NumaNodeOf(const void* address, size_t bytes) {
  hwloc_topology_t t = Topology();
  if (t == nullptr) return absl::UnavailableError("hwloc could not load the topology");
  hwloc_nodeset_t nodes = hwloc_bitmap_alloc();
  int r = hwloc_get_area_memlocation(t, address, bytes, nodes, HWLOC_MEMBIND_BYNODESET);
  int node = r == 0 ? hwloc_bitmap_first(nodes) : -1;
  hwloc_bitmap_free(nodes);
  if (node < 0) return absl::UnavailableError("the page's NUMA node is unknown");
  return node;
}

}  // namespace spillway
