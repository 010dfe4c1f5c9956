// SPDX-License-Identifier: Apache-2.0
//
// Graph entry points: enough to build graphs by capture (or by adding kernel nodes),
// inspect what they will launch, update kernel nodes, instantiate and replay them.
#include <algorithm>
#include <memory>

#include "driver.h"
#include "graph.h"
#include "stream.h"
#include "work.h"

using namespace simcuda;

namespace {

template <typename T>
CUresult Check(HandleKind kind, void* handle, T** out) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  auto* object = static_cast<T*>(handle);
  if (!Driver::Get().IsLive(kind, object)) return CUDA_ERROR_INVALID_HANDLE;
  *out = object;
  return CUDA_SUCCESS;
}

CUresult KernelWorkFrom(const CUDA_KERNEL_NODE_PARAMS* p, KernelWork* out) {
  if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUfunction f = p->func != nullptr ? p->func : reinterpret_cast<CUfunction>(p->kern);
  const unsigned grid[3] = {p->gridDimX, p->gridDimY, p->gridDimZ};
  const unsigned block[3] = {p->blockDimX, p->blockDimY, p->blockDimZ};
  return MakeKernelWork(f, grid, block, p->sharedMemBytes, p->kernelParams, p->extra, out);
}

CUresult Instantiate(CUgraphExec* out, CUgraph handle) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Graph* graph = nullptr;
  if (CUresult r = Check(HandleKind::kGraph, handle, &graph); r != CUDA_SUCCESS) return r;
  auto* exec = new GraphExec();
  exec->ctx = graph->ctx;
  exec->source = graph;
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    for (GraphNode* node : graph->nodes) exec->works.push_back(node->work);
  }
  Driver::Get().Register(HandleKind::kGraphExec, exec);
  *out = reinterpret_cast<CUgraphExec>(exec);
  return CUDA_SUCCESS;
}

CUresult LaunchGraph(CUgraphExec handle, CUstream stream_handle, bool per_thread) {
  GraphExec* exec = nullptr;
  if (CUresult r = Check(HandleKind::kGraphExec, handle, &exec); r != CUDA_SUCCESS) return r;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  Stream* stream = nullptr;
  if (CUresult r = ResolveStream(ctx, stream_handle, per_thread, &stream); r != CUDA_SUCCESS) {
    return r;
  }
  // A snapshot: later node updates apply to later launches only, as in CUDA.
  auto works = std::make_shared<const std::vector<Work>>(exec->works);
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    if (stream->capture_graph != nullptr) {
      for (const Work& w : *works) AppendCaptured(stream, w);
      return CUDA_SUCCESS;
    }
  }
  int device = ctx->device;
  return Submit(stream, WorkKind::kDevice, [ctx, device, works] {
    for (const Work& w : *works) {
      if (!Execute(device, w)) {
        SetSticky(ctx, CUDA_ERROR_ILLEGAL_ADDRESS);
        return;
      }
    }
  });
}

}  // namespace

SIMCUDA_API CUresult cuGraphCreate(CUgraph* out, unsigned int flags) {
  if (out == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  auto* graph = new Graph();
  graph->ctx = ctx;
  Driver::Get().Register(HandleKind::kGraph, graph);
  *out = reinterpret_cast<CUgraph>(graph);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuGraphDestroy(CUgraph handle) {
  Graph* graph = nullptr;
  if (CUresult r = Check(HandleKind::kGraph, handle, &graph); r != CUDA_SUCCESS) return r;
  Driver& driver = Driver::Get();
  driver.Unregister(HandleKind::kGraph, graph);
  for (GraphNode* node : graph->nodes) {
    driver.Unregister(HandleKind::kGraphNode, node);
    delete node;
  }
  delete graph;  // instantiated executables hold copies of the work, not the graph
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuGraphAddKernelNode_v2(CUgraphNode* out, CUgraph handle,
                                             const CUgraphNode* deps, size_t count,
                                             const CUDA_KERNEL_NODE_PARAMS* params) {
  if (out == nullptr || (count != 0 && deps == nullptr)) return CUDA_ERROR_INVALID_VALUE;
  Graph* graph = nullptr;
  if (CUresult r = Check(HandleKind::kGraph, handle, &graph); r != CUDA_SUCCESS) return r;
  KernelWork work;
  if (CUresult r = KernelWorkFrom(params, &work); r != CUDA_SUCCESS) return r;
  // Nodes run in the order they were added, which respects any dependencies given.
  auto* node = new GraphNode();
  node->graph = graph;
  node->type = CU_GRAPH_NODE_TYPE_KERNEL;
  node->work = std::move(work);
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    graph->nodes.push_back(node);
  }
  Driver::Get().Register(HandleKind::kGraphNode, node);
  *out = reinterpret_cast<CUgraphNode>(node);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuGraphGetNodes(CUgraph handle, CUgraphNode* nodes, size_t* count) {
  if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Graph* graph = nullptr;
  if (CUresult r = Check(HandleKind::kGraph, handle, &graph); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lock(Driver::Get().mu);
  if (nodes == nullptr) {
    *count = graph->nodes.size();
    return CUDA_SUCCESS;
  }
  size_t n = std::min(*count, graph->nodes.size());
  for (size_t i = 0; i < n; ++i) nodes[i] = reinterpret_cast<CUgraphNode>(graph->nodes[i]);
  for (size_t i = n; i < *count; ++i) nodes[i] = nullptr;
  *count = n;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuGraphNodeGetType(CUgraphNode handle, CUgraphNodeType* type) {
  if (type == nullptr) return CUDA_ERROR_INVALID_VALUE;
  GraphNode* node = nullptr;
  if (CUresult r = Check(HandleKind::kGraphNode, handle, &node); r != CUDA_SUCCESS) return r;
  *type = node->type;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuGraphKernelNodeGetParams_v2(CUgraphNode handle,
                                                   CUDA_KERNEL_NODE_PARAMS* out) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  GraphNode* node = nullptr;
  if (CUresult r = Check(HandleKind::kGraphNode, handle, &node); r != CUDA_SUCCESS) return r;
  auto* k = std::get_if<KernelWork>(&node->work);
  if (k == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *out = CUDA_KERNEL_NODE_PARAMS{};
  out->func = reinterpret_cast<CUfunction>(k->function);
  out->gridDimX = k->launch.grid[0];
  out->gridDimY = k->launch.grid[1];
  out->gridDimZ = k->launch.grid[2];
  out->blockDimX = k->launch.block[0];
  out->blockDimY = k->launch.block[1];
  out->blockDimZ = k->launch.block[2];
  out->sharedMemBytes = k->launch.shared_bytes;
  // Valid while the node lives: the node owns the argument buffer these point into.
  out->kernelParams = k->param_pointers.data();
  out->extra = nullptr;
  out->ctx = reinterpret_cast<CUcontext>(node->graph->ctx);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuGraphKernelNodeSetParams_v2(CUgraphNode handle,
                                                   const CUDA_KERNEL_NODE_PARAMS* params) {
  GraphNode* node = nullptr;
  if (CUresult r = Check(HandleKind::kGraphNode, handle, &node); r != CUDA_SUCCESS) return r;
  if (node->type != CU_GRAPH_NODE_TYPE_KERNEL) return CUDA_ERROR_INVALID_VALUE;
  KernelWork work;
  if (CUresult r = KernelWorkFrom(params, &work); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lock(Driver::Get().mu);
  node->work = std::move(work);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuGraphExecKernelNodeSetParams_v2(CUgraphExec exec_handle,
                                                       CUgraphNode node_handle,
                                                       const CUDA_KERNEL_NODE_PARAMS* params) {
  GraphExec* exec = nullptr;
  if (CUresult r = Check(HandleKind::kGraphExec, exec_handle, &exec); r != CUDA_SUCCESS) return r;
  GraphNode* node = nullptr;
  if (CUresult r = Check(HandleKind::kGraphNode, node_handle, &node); r != CUDA_SUCCESS) return r;
  if (node->type != CU_GRAPH_NODE_TYPE_KERNEL) return CUDA_ERROR_INVALID_VALUE;
  KernelWork work;
  if (CUresult r = KernelWorkFrom(params, &work); r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lock(Driver::Get().mu);
  const auto& nodes = exec->source->nodes;
  auto it = std::find(nodes.begin(), nodes.end(), node);
  if (it == nodes.end()) return CUDA_ERROR_INVALID_VALUE;
  exec->works[static_cast<size_t>(it - nodes.begin())] = std::move(work);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuGraphInstantiateWithFlags(CUgraphExec* out, CUgraph graph,
                                                 unsigned long long /*flags*/) {
  return Instantiate(out, graph);
}

SIMCUDA_API CUresult cuGraphInstantiateWithParams(CUgraphExec* out, CUgraph graph,
                                                  CUDA_GRAPH_INSTANTIATE_PARAMS* params) {
  CUresult r = Instantiate(out, graph);
  if (params != nullptr) {
    params->result_out =
        r == CUDA_SUCCESS ? CUDA_GRAPH_INSTANTIATE_SUCCESS : CUDA_GRAPH_INSTANTIATE_ERROR;
  }
  return r;
}
SIMCUDA_API CUresult cuGraphInstantiateWithParams_ptsz(CUgraphExec* out, CUgraph graph,
                                                       CUDA_GRAPH_INSTANTIATE_PARAMS* params) {
  return cuGraphInstantiateWithParams(out, graph, params);
}

SIMCUDA_API CUresult cuGraphExecDestroy(CUgraphExec handle) {
  GraphExec* exec = nullptr;
  if (CUresult r = Check(HandleKind::kGraphExec, handle, &exec); r != CUDA_SUCCESS) return r;
  Driver::Get().Unregister(HandleKind::kGraphExec, exec);
  delete exec;  // launches in flight hold their own snapshot of the work
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuGraphLaunch(CUgraphExec exec, CUstream stream) {
  return LaunchGraph(exec, stream, false);
}
SIMCUDA_API CUresult cuGraphLaunch_ptsz(CUgraphExec exec, CUstream stream) {
  return LaunchGraph(exec, stream, true);
}

SIMCUDA_API CUresult cuGraphUpload(CUgraphExec handle, CUstream /*stream*/) {
  GraphExec* exec = nullptr;
  return Check(HandleKind::kGraphExec, handle, &exec);
}
SIMCUDA_API CUresult cuGraphUpload_ptsz(CUgraphExec handle, CUstream stream) {
  return cuGraphUpload(handle, stream);
}
