// SPDX-License-Identifier: Apache-2.0
#include "work.h"

#include <cstring>
#include <memory>

#include "fault.h"
#include "graph.h"
#include "timeline.h"

namespace simcuda {

void KernelWork::Repoint() {
  param_pointers.clear();
  if (function == nullptr) return;
  for (size_t offset : function->offsets) param_pointers.push_back(args.data() + offset);
}

CUresult MakeKernelWork(CUfunction f, const unsigned grid[3], const unsigned block[3],
                        unsigned shared_bytes, void** kernel_params, void** extra,
                        KernelWork* out) {
  auto* function = reinterpret_cast<Function*>(f);
  if (!Driver::Get().IsLive(HandleKind::kFunction, function)) return CUDA_ERROR_INVALID_HANDLE;
  unsigned long long threads = 1;
  for (int i = 0; i < 3; ++i) {
    if (grid[i] == 0 || block[i] == 0) return CUDA_ERROR_INVALID_VALUE;
    threads *= block[i];
  }
  if (threads > 1024 || block[2] > 64) return CUDA_ERROR_INVALID_VALUE;
  if (kernel_params != nullptr && extra != nullptr) return CUDA_ERROR_INVALID_VALUE;
  out->function = function;
  for (int i = 0; i < 3; ++i) {
    out->launch.grid[i] = grid[i];
    out->launch.block[i] = block[i];
  }
  out->launch.shared_bytes = shared_bytes;
  out->args.assign(function->arg_bytes, 0);
  if (!function->sizes.empty()) {
    if (kernel_params != nullptr) {
      for (size_t i = 0; i < function->sizes.size(); ++i) {
        if (kernel_params[i] == nullptr) return CUDA_ERROR_INVALID_VALUE;
        std::memcpy(out->args.data() + function->offsets[i], kernel_params[i], function->sizes[i]);
      }
    } else if (extra != nullptr) {
      const void* buffer = nullptr;
      const size_t* buffer_size = nullptr;
      for (void** e = extra; *e != CU_LAUNCH_PARAM_END; e += 2) {
        if (*e == CU_LAUNCH_PARAM_BUFFER_POINTER) {
          buffer = e[1];
        } else if (*e == CU_LAUNCH_PARAM_BUFFER_SIZE) {
          buffer_size = static_cast<const size_t*>(e[1]);
        } else {
          return CUDA_ERROR_INVALID_VALUE;
        }
      }
      if (buffer == nullptr || buffer_size == nullptr || *buffer_size < function->arg_bytes) {
        return CUDA_ERROR_INVALID_VALUE;
      }
      std::memcpy(out->args.data(), buffer, function->arg_bytes);
    } else {
      return CUDA_ERROR_INVALID_VALUE;
    }
  }
  out->Repoint();
  return CUDA_SUCCESS;
}

namespace {

struct ExecuteVisitor {
  int device;
  bool operator()(const KernelWork& k) const {
    // The kernel gets its own pointer array: a graph's work may be replayed concurrently.
    std::vector<void*> params = k.param_pointers;
    simcuda_kernel_fn entry = k.function->entry;
    const simcuda_launch* launch = &k.launch;
    void** p = params.data();
    if (!TimelineOn()) return Guarded([&] { entry(launch, p); });
    const double start = NowMs();
    const bool ok = Guarded([&] { entry(launch, p); });
    RecordTimeline("kernel", device, k.function->name.c_str(), 0, start, NowMs());
    return ok;
  }
  bool operator()(const CopyWork& c) const {
    return EngineCopy(device, Classify(c.dst, c.src, c.bytes), c.dst, c.src, c.bytes);
  }
  bool operator()(const SetWork& s) const {
    return Guarded([&] {
      switch (s.element_size) {
        case 1:
          std::memset(s.dst, static_cast<int>(s.value & 0xff), s.count);
          break;
        case 2: {
          auto* p = static_cast<uint16_t*>(s.dst);
          for (size_t i = 0; i < s.count; ++i) p[i] = static_cast<uint16_t>(s.value);
          break;
        }
        default: {
          auto* p = static_cast<uint32_t*>(s.dst);
          for (size_t i = 0; i < s.count; ++i) p[i] = s.value;
          break;
        }
      }
    });
  }
  bool operator()(const HostWork& h) const {
    h.fn(h.user_data);
    return true;
  }
};

}  // namespace

bool Execute(int device, const Work& work) { return std::visit(ExecuteVisitor{device}, work); }

void AppendCaptured(Stream* stream, Work work) {
  auto* node = new GraphNode();
  node->graph = stream->capture_graph;
  node->type = std::visit(
      [](const auto& w) -> CUgraphNodeType {
        using T = std::decay_t<decltype(w)>;
        if constexpr (std::is_same_v<T, KernelWork>) return CU_GRAPH_NODE_TYPE_KERNEL;
        if constexpr (std::is_same_v<T, CopyWork>) return CU_GRAPH_NODE_TYPE_MEMCPY;
        if constexpr (std::is_same_v<T, SetWork>) return CU_GRAPH_NODE_TYPE_MEMSET;
        return CU_GRAPH_NODE_TYPE_HOST;
      },
      work);
  node->work = std::move(work);
  if (auto* k = std::get_if<KernelWork>(&node->work)) k->Repoint();
  stream->capture_graph->nodes.push_back(node);
  Driver::Get().Register(HandleKind::kGraphNode, node);
}

CUresult Issue(Stream* stream, Work work, bool wait) {
  Context* ctx = stream->ctx();
  {
    std::lock_guard<std::mutex> lock(Driver::Get().mu);
    if (stream->capture_graph != nullptr) {
      if (wait) {
        // Synchronous work cannot be captured; it breaks the capture.
        stream->capture_invalidated = true;
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
      }
      if (stream->capture_invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
      AppendCaptured(stream, std::move(work));
      return CUDA_SUCCESS;
    }
  }
  WorkKind kind = std::holds_alternative<HostWork>(work)   ? WorkKind::kHost
                  : std::holds_alternative<CopyWork>(work) ? WorkKind::kCopy
                                                           : WorkKind::kDevice;
  auto shared = std::make_shared<Work>(std::move(work));
  if (auto* k = std::get_if<KernelWork>(shared.get())) k->Repoint();
  int device = ctx->device;
  CompletionRef done;
  CUresult r = Submit(
      stream, kind,
      [ctx, device, shared] {
        if (!Execute(device, *shared)) SetSticky(ctx, CUDA_ERROR_ILLEGAL_ADDRESS);
      },
      &done);
  if (r != CUDA_SUCCESS || !wait) return r;
  WaitFor(done);
  return ctx->sticky.load(std::memory_order_acquire);
}

}  // namespace simcuda
