// SPDX-License-Identifier: Apache-2.0
//
// Hooks of CUDA graphs: replays never pass through cuLaunchKernel, so the arguments of an
// executable graph's kernel nodes are read when it is instantiated (and when a node's
// parameters are updated), and checked at every cuGraphLaunch: the allocations they point
// into are made usable by the launch's stream first, exactly as for a direct launch.
//
// Stream life is hooked here too: capture begin and end only to count open captures
// (IsCapturing answers "no" without asking the driver while there are none), and
// cuStreamDestroy so that the runtime stops naming a stream before its handle goes.
//
// Captured work itself is handled at capture time (launch_hooks.cc, PrepareUse): what a
// capture names is marked escaped, so it stays in mapped memory for good, whatever the
// graph's replays do. The words read here let replays find their data in HBM.
//
// Thread safety: the table of executable graphs has its own mutex; a launch copies its
// words out under a reader lock.
#include <cuda.h>

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "interpose/hook_table.h"
#include "interpose/interposer.h"
#include "runtime/log.h"

namespace ipc = spillway::interpose;

namespace {

struct ExecutableGraph {
  CUgraph graph = nullptr;
  absl::flat_hash_map<CUgraphNode, std::vector<uintptr_t>> words_by_node;
};

absl::Mutex graphs_mu(absl::kConstInit);
auto* graphs ABSL_PT_GUARDED_BY(graphs_mu) =
    new absl::flat_hash_map<CUgraphExec, ExecutableGraph>();  // never destroyed

std::vector<uintptr_t> KernelNodeWords(const CUDA_KERNEL_NODE_PARAMS& p) {
  std::vector<uintptr_t> words;
  CUfunction f = p.func != nullptr ? p.func : reinterpret_cast<CUfunction>(p.kern);
  if (!ipc::LaunchArgumentWords(f, p.kernelParams, p.extra, &words)) words.clear();
  return words;
}

// Reads the kernel nodes of `graph` for the executable `exec`.
void Remember(CUgraphExec exec, CUgraph graph) {
  auto get_nodes = SPW_REAL(cuGraphGetNodes);
  auto node_type = SPW_REAL(cuGraphNodeGetType);
  auto kernel_params = SPW_REAL(cuGraphKernelNodeGetParams_v2);
  if (get_nodes == nullptr || node_type == nullptr || kernel_params == nullptr) return;
  size_t count = 0;
  if (get_nodes(graph, nullptr, &count) != CUDA_SUCCESS) return;
  std::vector<CUgraphNode> nodes(count);
  if (count != 0 && get_nodes(graph, nodes.data(), &count) != CUDA_SUCCESS) return;
  ExecutableGraph entry;
  entry.graph = graph;
  for (CUgraphNode node : nodes) {
    CUgraphNodeType type;
    if (node_type(node, &type) != CUDA_SUCCESS || type != CU_GRAPH_NODE_TYPE_KERNEL) continue;
    CUDA_KERNEL_NODE_PARAMS p = {};
    if (kernel_params(node, &p) != CUDA_SUCCESS) continue;
    entry.words_by_node[node] = KernelNodeWords(p);
  }
  absl::MutexLock lock(&graphs_mu);
  (*graphs)[exec] = std::move(entry);
}

CUresult BeforeGraphLaunch(CUgraphExec exec, CUstream stream, bool per_thread) {
  if (!ipc::AnyManaged()) return CUDA_SUCCESS;
  thread_local std::vector<uintptr_t> words;
  words.clear();
  {
    absl::ReaderMutexLock lock(&graphs_mu);
    auto it = graphs->find(exec);
    if (it == graphs->end()) return CUDA_SUCCESS;
    for (const auto& [node, node_words] : it->second.words_by_node) {
      words.insert(words.end(), node_words.begin(), node_words.end());
    }
  }
  if (words.empty()) return CUDA_SUCCESS;
  return ipc::PrepareUse(words, stream, per_thread);
}

// The instantiate hooks: the real call, then the new executable's kernel arguments.
template <typename RealFn, typename Extra>
CUresult InstantiateAndRemember(RealFn real, CUgraphExec* exec, CUgraph graph, Extra extra) {
  if (real == nullptr) return CUDA_ERROR_NOT_SUPPORTED;
  CUresult r = real(exec, graph, extra);
  if (r == CUDA_SUCCESS && exec != nullptr) Remember(*exec, graph);
  return r;
}

}  // namespace

SPW_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec* exec, CUgraph graph,
                                                unsigned long long flags) {
  return InstantiateAndRemember(SPW_REAL(cuGraphInstantiateWithFlags), exec, graph, flags);
}

SPW_EXPORT CUresult cuGraphInstantiateWithParams(CUgraphExec* exec, CUgraph graph,
                                                 CUDA_GRAPH_INSTANTIATE_PARAMS* params) {
  return InstantiateAndRemember(SPW_REAL(cuGraphInstantiateWithParams), exec, graph, params);
}

SPW_EXPORT CUresult cuGraphInstantiateWithParams_ptsz(CUgraphExec* exec, CUgraph graph,
                                                      CUDA_GRAPH_INSTANTIATE_PARAMS* params) {
  return InstantiateAndRemember(SPW_REAL(cuGraphInstantiateWithParams_ptsz), exec, graph, params);
}

SPW_EXPORT CUresult cuGraphExecKernelNodeSetParams_v2(CUgraphExec exec, CUgraphNode node,
                                                      const CUDA_KERNEL_NODE_PARAMS* params) {
  auto real = SPW_REAL(cuGraphExecKernelNodeSetParams_v2);
  if (real == nullptr) return CUDA_ERROR_NOT_SUPPORTED;
  CUresult r = real(exec, node, params);
  if (r == CUDA_SUCCESS && params != nullptr) {
    std::vector<uintptr_t> words = KernelNodeWords(*params);
    absl::MutexLock lock(&graphs_mu);
    auto it = graphs->find(exec);
    if (it != graphs->end()) it->second.words_by_node[node] = std::move(words);
  }
  return r;
}

SPW_EXPORT CUresult cuGraphExecDestroy(CUgraphExec exec) {
  auto real = SPW_REAL(cuGraphExecDestroy);
  if (real == nullptr) return CUDA_ERROR_NOT_SUPPORTED;
  CUresult r = real(exec);
  if (r == CUDA_SUCCESS) {
    absl::MutexLock lock(&graphs_mu);
    graphs->erase(exec);
  }
  return r;
}

SPW_EXPORT CUresult cuGraphLaunch(CUgraphExec exec, CUstream stream) {
  if (CUresult r = BeforeGraphLaunch(exec, stream, false); r != CUDA_SUCCESS) return r;
  SPW_CALL_REAL(cuGraphLaunch, exec, stream);
}

SPW_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec exec, CUstream stream) {
  if (CUresult r = BeforeGraphLaunch(exec, stream, true); r != CUDA_SUCCESS) return r;
  SPW_CALL_REAL(cuGraphLaunch_ptsz, exec, stream);
}

namespace {

// The real capture-begin call; on success the capture is counted.
template <typename Real, typename... Args>
CUresult BeginCapture(Real real, bool per_thread, CUstream stream, Args... args) {
  if (real == nullptr) return CUDA_ERROR_NOT_SUPPORTED;
  CUresult r = real(stream, args...);
  if (r == CUDA_SUCCESS) ipc::NoteCaptureBegan(stream, per_thread);
  return r;
}

// The real cuStreamEndCapture. An invalidated capture ends with an error too, but a call
// from the wrong thread, say, leaves it open: on failure the driver says which.
template <typename Real, typename Query>
CUresult EndCapture(Real real, Query is_capturing, bool per_thread, CUstream stream,
                    CUgraph* graph) {
  if (real == nullptr) return CUDA_ERROR_NOT_SUPPORTED;
  CUresult r = real(stream, graph);
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  const bool still_open = r != CUDA_SUCCESS && is_capturing != nullptr &&
                          is_capturing(stream, &status) == CUDA_SUCCESS &&
                          status != CU_STREAM_CAPTURE_STATUS_NONE;
  if (!still_open) ipc::NoteCaptureEnded(stream, per_thread);
  return r;
}

}  // namespace

// Before the real destroy: afterwards the handle is freed memory, and the runtime must
// never name it again (moves record events on and gate the streams their chunks were used
// on).
SPW_EXPORT CUresult cuStreamDestroy_v2(CUstream stream) {
  ipc::RetireStream(stream);
  SPW_CALL_REAL(cuStreamDestroy_v2, stream);
}

SPW_EXPORT CUresult cuStreamBeginCapture_v2(CUstream stream, CUstreamCaptureMode mode) {
  return BeginCapture(SPW_REAL(cuStreamBeginCapture_v2), false, stream, mode);
}

SPW_EXPORT CUresult cuStreamBeginCapture_v2_ptsz(CUstream stream, CUstreamCaptureMode mode) {
  return BeginCapture(SPW_REAL(cuStreamBeginCapture_v2_ptsz), true, stream, mode);
}

SPW_EXPORT CUresult cuStreamBeginCaptureToGraph(CUstream stream, CUgraph graph,
                                                const CUgraphNode* dependencies,
                                                const CUgraphEdgeData* edge_data,
                                                size_t dependency_count, CUstreamCaptureMode mode) {
  return BeginCapture(SPW_REAL(cuStreamBeginCaptureToGraph), false, stream, graph, dependencies,
                      edge_data, dependency_count, mode);
}

SPW_EXPORT CUresult cuStreamBeginCaptureToGraph_ptsz(CUstream stream, CUgraph graph,
                                                     const CUgraphNode* dependencies,
                                                     const CUgraphEdgeData* edge_data,
                                                     size_t dependency_count,
                                                     CUstreamCaptureMode mode) {
  return BeginCapture(SPW_REAL(cuStreamBeginCaptureToGraph_ptsz), true, stream, graph, dependencies,
                      edge_data, dependency_count, mode);
}

SPW_EXPORT CUresult cuStreamEndCapture(CUstream stream, CUgraph* graph) {
  return EndCapture(SPW_REAL(cuStreamEndCapture), SPW_REAL(cuStreamIsCapturing), false, stream,
                    graph);
}

SPW_EXPORT CUresult cuStreamEndCapture_ptsz(CUstream stream, CUgraph* graph) {
  return EndCapture(SPW_REAL(cuStreamEndCapture_ptsz), SPW_REAL(cuStreamIsCapturing_ptsz), true,
                    stream, graph);
}
