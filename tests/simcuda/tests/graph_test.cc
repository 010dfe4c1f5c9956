// SPDX-License-Identifier: Apache-2.0
//
// CUDA graphs built by stream capture: nothing runs while capturing, replays run the
// captured work with the captured arguments, and the nodes can be inspected (an
// interposer finds kernel arguments of graph replays this way).
#include <cuda.h>
#include <gtest/gtest.h>
#include <string.h>

#include <cstdint>
#include <vector>

#include "test_kernels.h"
#include "test_util.h"

namespace simcuda_test {
namespace {

class GraphTest : public DriverTest {
 protected:
  void SetUp() override {
    DriverTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_NO_FATAL_FAILURE(LoadTestModule());
    CU_ASSERT(cuStreamCreate(&stream_, CU_STREAM_NON_BLOCKING));
    CU_ASSERT(cuMemAlloc(&buf_, kCount * sizeof(uint32_t)));
    CU_ASSERT(cuMemAllocHost(reinterpret_cast<void**>(&host_), kCount * sizeof(uint32_t)));
  }
  void TearDown() override {
    if (exec_ != nullptr) (void)cuGraphExecDestroy(exec_);
    if (graph_ != nullptr) (void)cuGraphDestroy(graph_);
    if (stream_ != nullptr) (void)cuStreamDestroy(stream_);
    if (host_ != nullptr) (void)cuMemFreeHost(host_);
    if (buf_ != 0) (void)cuMemFree(buf_);
    DriverTest::TearDown();
  }

  std::vector<uint32_t> ReadBuf() {
    std::vector<uint32_t> out(kCount, 0);
    EXPECT_EQ(CUDA_SUCCESS, cuMemcpyDtoH(out.data(), buf_, kCount * sizeof(uint32_t)));
    return out;
  }
  std::vector<CUgraphNode> Nodes() {
    size_t count = 0;
    EXPECT_EQ(CUDA_SUCCESS, cuGraphGetNodes(graph_, nullptr, &count));
    std::vector<CUgraphNode> nodes(count);
    EXPECT_EQ(CUDA_SUCCESS, cuGraphGetNodes(graph_, nodes.data(), &count));
    nodes.resize(count);
    return nodes;
  }

  static constexpr uint64_t kCount = 1024;
  CUstream stream_ = nullptr;
  CUdeviceptr buf_ = 0;
  uint32_t* host_ = nullptr;
  CUgraph graph_ = nullptr;
  CUgraphExec exec_ = nullptr;
};

TEST_F(GraphTest, CaptureDoesNotExecuteAndReplaysAccumulate) {
  CU_ASSERT(cuMemsetD32(buf_, 100, kCount));
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
  CU_ASSERT(cuStreamIsCapturing(stream_, &status));
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_NONE);

  CUfunction add = Kernel("add_u32");
  CU_ASSERT(cuStreamBeginCapture(stream_, CU_STREAM_CAPTURE_MODE_GLOBAL));
  CU_ASSERT(cuStreamIsCapturing(stream_, &status));
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
  uint32_t delta = 5;
  uint64_t n = kCount;
  CU_ASSERT(Launch(add, stream_, {&buf_, &delta, &n}, 256));
  delta = 1000;  // arguments are captured by value, at capture time
  CU_ASSERT(cuStreamEndCapture(stream_, &graph_));
  ASSERT_NE(graph_, nullptr);
  CU_ASSERT(cuStreamIsCapturing(stream_, &status));
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_NONE);

  CU_ASSERT(cuStreamSynchronize(stream_));
  EXPECT_EQ(ReadBuf(), std::vector<uint32_t>(kCount, 100)) << "captured work ran during capture";

  CU_ASSERT(cuGraphInstantiateWithFlags(&exec_, graph_, 0));
  EXPECT_EQ(ReadBuf(), std::vector<uint32_t>(kCount, 100)) << "instantiation ran the graph";
  CU_ASSERT(cuGraphLaunch(exec_, stream_));
  CU_ASSERT(cuStreamSynchronize(stream_));
  EXPECT_EQ(ReadBuf(), std::vector<uint32_t>(kCount, 105));
  CU_ASSERT(cuGraphLaunch(exec_, stream_));
  CU_ASSERT(cuGraphLaunch(exec_, stream_));
  CU_ASSERT(cuStreamSynchronize(stream_));
  EXPECT_EQ(ReadBuf(), std::vector<uint32_t>(kCount, 115));
}

TEST_F(GraphTest, CapturedMemsetKernelAndCopiesReplayInOrder) {
  std::vector<uint32_t> input(kCount);
  for (uint64_t i = 0; i < kCount; ++i) input[i] = static_cast<uint32_t>(i);
  uint32_t* pinned_in = nullptr;
  CU_ASSERT(cuMemAllocHost(reinterpret_cast<void**>(&pinned_in), kCount * sizeof(uint32_t)));
  memcpy(pinned_in, input.data(), kCount * sizeof(uint32_t));
  CUdeviceptr scratch = 0;
  CU_ASSERT(cuMemAlloc(&scratch, kCount * sizeof(uint32_t)));
  CU_ASSERT(cuMemsetD32(buf_, 0xdead, kCount));
  memset(host_, 0, kCount * sizeof(uint32_t));

  CUfunction copy = Kernel("copy_u32");
  CUfunction add = Kernel("add_u32");
  CU_ASSERT(cuStreamBeginCapture(stream_, CU_STREAM_CAPTURE_MODE_RELAXED));
  uint64_t n = kCount;
  uint32_t delta = 3;
  // scratch = input; buf = 0; buf = scratch; buf += 3; host = buf
  CU_ASSERT(cuMemcpyHtoDAsync(scratch, pinned_in, kCount * sizeof(uint32_t), stream_));
  CU_ASSERT(cuMemsetD32Async(buf_, 0, kCount, stream_));
  CU_ASSERT(Launch(copy, stream_, {&buf_, &scratch, &n}, 256));
  CU_ASSERT(Launch(add, stream_, {&buf_, &delta, &n}, 256));
  CU_ASSERT(cuMemcpyDtoHAsync(host_, buf_, kCount * sizeof(uint32_t), stream_));
  CU_ASSERT(cuStreamEndCapture(stream_, &graph_));

  CU_ASSERT(cuStreamSynchronize(stream_));
  EXPECT_EQ(ReadBuf(), std::vector<uint32_t>(kCount, 0xdead)) << "captured work ran";
  EXPECT_EQ(host_[5], 0u) << "captured copy ran";

  CU_ASSERT(cuGraphInstantiateWithFlags(&exec_, graph_, 0));
  for (int replay = 0; replay < 2; ++replay) {
    memset(host_, 0, kCount * sizeof(uint32_t));
    CU_ASSERT(cuGraphLaunch(exec_, stream_));
    CU_ASSERT(cuStreamSynchronize(stream_));
    for (uint64_t i = 0; i < kCount; ++i) {
      ASSERT_EQ(host_[i], i + 3) << "replay " << replay << ", element " << i;
    }
  }
  CU_EXPECT(cuMemFree(scratch));
  CU_EXPECT(cuMemFreeHost(pinned_in));
}

TEST_F(GraphTest, NodesHaveTheCapturedTypesAndKernelParams) {
  CUdeviceptr other = 0;
  CU_ASSERT(cuMemAlloc(&other, kCount * sizeof(uint32_t)));
  CUfunction add = Kernel("add_u32");
  CU_ASSERT(cuStreamBeginCapture(stream_, CU_STREAM_CAPTURE_MODE_GLOBAL));
  uint32_t delta = 7;
  uint64_t n = kCount;
  CU_ASSERT(cuMemsetD32Async(buf_, 1, kCount, stream_));
  CU_ASSERT(cuLaunchKernel(add, 4, 1, 1, 256, 1, 1, 0, stream_,
                           std::vector<void*>{&buf_, &delta, &n}.data(), nullptr));
  CU_ASSERT(cuMemcpyDtoDAsync(other, buf_, kCount * sizeof(uint32_t), stream_));
  CU_ASSERT(cuStreamEndCapture(stream_, &graph_));

  const std::vector<CUgraphNode> nodes = Nodes();
  ASSERT_EQ(nodes.size(), 3u);
  int kernels = 0;
  int memsets = 0;
  int memcpys = 0;
  for (CUgraphNode node : nodes) {
    CUgraphNodeType type;
    CU_ASSERT(cuGraphNodeGetType(node, &type));
    if (type == CU_GRAPH_NODE_TYPE_MEMSET) ++memsets;
    if (type == CU_GRAPH_NODE_TYPE_MEMCPY) ++memcpys;
    if (type != CU_GRAPH_NODE_TYPE_KERNEL) continue;
    ++kernels;
    CUDA_KERNEL_NODE_PARAMS params;
    memset(&params, 0, sizeof(params));
    CU_ASSERT(cuGraphKernelNodeGetParams(node, &params));
    EXPECT_EQ(params.func, add);
    EXPECT_EQ(params.gridDimX, 4u);
    EXPECT_EQ(params.gridDimY, 1u);
    EXPECT_EQ(params.blockDimX, 256u);
    ASSERT_NE(params.kernelParams, nullptr);
    EXPECT_NE(params.kernelParams[0], static_cast<void*>(&buf_)) << "params must be copies";
    EXPECT_EQ(*static_cast<CUdeviceptr*>(params.kernelParams[0]), buf_);
    EXPECT_EQ(*static_cast<uint32_t*>(params.kernelParams[1]), 7u);
    EXPECT_EQ(*static_cast<uint64_t*>(params.kernelParams[2]), kCount);
  }
  EXPECT_EQ(kernels, 1);
  EXPECT_EQ(memsets, 1);
  EXPECT_EQ(memcpys, 1);

  // A count smaller than the graph: only that many are returned.
  size_t one = 1;
  CUgraphNode first = nullptr;
  CU_ASSERT(cuGraphGetNodes(graph_, &first, &one));
  EXPECT_EQ(one, 1u);
  EXPECT_NE(first, nullptr);
  CU_EXPECT(cuMemFree(other));
}

TEST_F(GraphTest, GraphsAreIndependentOfEachOther) {
  CU_ASSERT(cuMemsetD32(buf_, 0, kCount));
  uint64_t n = kCount;
  CUgraph graphs[2] = {};
  CUgraphExec execs[2] = {};
  CUfunction add = Kernel("add_u32");
  for (int g = 0; g < 2; ++g) {
    uint32_t delta = g == 0 ? 1 : 100;
    CU_ASSERT(cuStreamBeginCapture(stream_, CU_STREAM_CAPTURE_MODE_GLOBAL));
    CU_ASSERT(Launch(add, stream_, {&buf_, &delta, &n}, 64));
    CU_ASSERT(cuStreamEndCapture(stream_, &graphs[g]));
    CU_ASSERT(cuGraphInstantiateWithFlags(&execs[g], graphs[g], 0));
  }
  CU_ASSERT(cuGraphLaunch(execs[1], stream_));
  CU_ASSERT(cuGraphLaunch(execs[0], stream_));
  CU_ASSERT(cuGraphLaunch(execs[0], stream_));
  CU_ASSERT(cuStreamSynchronize(stream_));
  EXPECT_EQ(ReadBuf(), std::vector<uint32_t>(kCount, 102));
  // The graph may be destroyed once instantiated; the executable graph lives on.
  CU_ASSERT(cuGraphDestroy(graphs[0]));
  CU_ASSERT(cuGraphLaunch(execs[0], stream_));
  CU_ASSERT(cuStreamSynchronize(stream_));
  EXPECT_EQ(ReadBuf(), std::vector<uint32_t>(kCount, 103));
  for (CUgraphExec exec : execs) CU_EXPECT(cuGraphExecDestroy(exec));
  CU_EXPECT(cuGraphDestroy(graphs[1]));
}

TEST_F(GraphTest, GraphLaunchOrdersWithOtherStreamWork) {
  CUfunction fill = Kernel("fill_u32");
  CU_ASSERT(cuStreamBeginCapture(stream_, CU_STREAM_CAPTURE_MODE_GLOBAL));
  uint32_t value = 8;
  uint64_t n = kCount;
  CU_ASSERT(Launch(fill, stream_, {&buf_, &value, &n}, 64));
  CU_ASSERT(cuStreamEndCapture(stream_, &graph_));
  CU_ASSERT(cuGraphInstantiateWithFlags(&exec_, graph_, 0));
  // Graph launch, then an ordinary kernel on the same stream: the kernel sees the graph's
  // result.
  uint32_t delta = 1;
  CU_ASSERT(cuGraphLaunch(exec_, stream_));
  CU_ASSERT(Launch(Kernel("add_u32"), stream_, {&buf_, &delta, &n}, 64));
  CU_ASSERT(cuStreamSynchronize(stream_));
  EXPECT_EQ(ReadBuf(), std::vector<uint32_t>(kCount, 9));
}

TEST_F(GraphTest, CaptureOnTheLegacyStreamIsRefused) {
  EXPECT_NE(CUDA_SUCCESS, cuStreamBeginCapture(nullptr, CU_STREAM_CAPTURE_MODE_GLOBAL));
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_ACTIVE;
  CU_ASSERT(cuStreamIsCapturing(nullptr, &status));
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_NONE);
}

TEST_F(GraphTest, EndCaptureWithoutBeginFails) {
  CUgraph graph = nullptr;
  EXPECT_NE(CUDA_SUCCESS, cuStreamEndCapture(stream_, &graph));
  EXPECT_EQ(graph, nullptr);
}

TEST_F(GraphTest, BadHandlesAreRejected) {
  EXPECT_NE(CUDA_SUCCESS, cuGraphLaunch(reinterpret_cast<CUgraphExec>(0x1234), stream_));
  size_t count = 0;
  EXPECT_NE(CUDA_SUCCESS, cuGraphGetNodes(reinterpret_cast<CUgraph>(0x1234), nullptr, &count));
  CUgraphExec exec = nullptr;
  EXPECT_NE(CUDA_SUCCESS, cuGraphInstantiateWithFlags(&exec, reinterpret_cast<CUgraph>(0x1234), 0));
}

}  // namespace
}  // namespace simcuda_test
