// SPDX-License-Identifier: Apache-2.0
//
// NUMA placement on this machine's real topology (hwloc), not a mock.
#include "runtime/numa.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

namespace spillway {
namespace {

TEST(NumaTest, BufferBoundToANodeIsAllocatedThere) {
  ASSERT_GE(NumaNodeCount(), 1);
  constexpr size_t kBytes = size_t{4} << 20;
  void* p = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  int node = NumaNodeCount() - 1;  // the last node: not just the default one on NUMA hosts
  absl::Status bound = BindToNumaNode(p, kBytes, node);
  ASSERT_TRUE(bound.ok()) << bound;
  std::memset(p, 1, kBytes);  // pages are allocated on first touch, where bound
  absl::StatusOr<int> where = NumaNodeOf(p, kBytes);
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_EQ(*where, node);
  munmap(p, kBytes);
}

TEST(NumaTest, AMissingNodeIsNotFound) {
  char buffer[4096];
  EXPECT_EQ(BindToNumaNode(buffer, sizeof(buffer), 4096).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace spillway
