// SPDX-License-Identifier: Apache-2.0
//
// Hooks of kernel launches: cuLaunchKernel, cuLaunchKernelEx, cuLaunchCooperativeKernel and
// their _ptsz variants.
//
// Before the real launch, every aligned 8-byte word of the argument values is looked up in
// the managers' allocation maps, and each managed allocation found is made usable by the
// launch's stream (Manager::PrepareLaunch): pointers passed directly and pointers inside
// by-value structs are both seen. The argument layout comes from cuFuncGetParamInfo (or
// cuKernelGetParamInfo for a CUkernel passed as a CUfunction), iterated until
// CUDA_ERROR_INVALID_VALUE and cached per function. The `extra` form carries the argument
// buffer in device layout: its words are scanned directly.
//
// A launch on a capturing stream is recorded, not run: nothing may be queued on that stream,
// so what it uses is marked escaped (it stays in mapped memory for good) instead.
#include <cuda.h>

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "interpose/hook_table.h"
#include "interpose/interposer.h"
#include "runtime/fast_tls.h"
#include "runtime/log.h"

namespace ipc = spillway::interpose;

namespace {

struct Param {
  size_t offset;
  size_t size;
};

struct Layout {
  bool known = false;  // false: the driver could not describe the arguments
  std::vector<Param> params;
};

// Layouts per function, never destroyed. Functions are few; a reader lock per launch.
absl::Mutex layouts_mu(absl::kConstInit);
auto* layouts ABSL_PT_GUARDED_BY(layouts_mu) = new absl::node_hash_map<CUfunction, Layout>();

const Layout* LayoutOfLocked(CUfunction f);

Layout Describe(CUfunction f) {
  Layout layout;
  auto func_info = SPW_REAL(cuFuncGetParamInfo);
  auto kernel_info = SPW_REAL(cuKernelGetParamInfo);
  bool as_kernel = false;
  for (size_t i = 0;; ++i) {
    Param p{0, 0};
    CUresult r = CUDA_ERROR_NOT_SUPPORTED;
    if (!as_kernel && func_info != nullptr) r = func_info(f, i, &p.offset, &p.size);
    if (i == 0 && r == CUDA_ERROR_INVALID_HANDLE && kernel_info != nullptr) as_kernel = true;
    if (as_kernel) r = kernel_info(reinterpret_cast<CUkernel>(f), i, &p.offset, &p.size);
    if (r == CUDA_ERROR_INVALID_VALUE) {  // past the last parameter
      layout.known = true;
      break;
    }
    if (r != CUDA_SUCCESS) {
      SPW_LOG(kWarn,
              "cannot read the parameter layout of kernel {} (error {}): its launches pass "
              "without residency checks",
              static_cast<void*>(f), static_cast<int>(r));
      break;
    }
    layout.params.push_back(p);
  }
  return layout;
}

// The cached layout of `f`, described on first sight.
const Layout* LayoutOf(CUfunction f) {
  // Programs launch the same few kernels over and over: the last one each thread saw is
  // answered without the lock (entries are never erased, so the pointer stays valid).
  SPW_FAST_TLS thread_local CUfunction last_function = nullptr;
  SPW_FAST_TLS thread_local const Layout* last_layout = nullptr;
  if (f == last_function && last_layout != nullptr) return last_layout;
  const Layout* layout = LayoutOfLocked(f);
  last_function = f;
  last_layout = layout;
  return layout;
}

const Layout* LayoutOfLocked(CUfunction f) {
  {
    absl::ReaderMutexLock lock(&layouts_mu);
    auto it = layouts->find(f);
    if (it != layouts->end()) return &it->second;  // node_hash_map: stable, never erased
  }
  Layout layout = Describe(f);
  absl::MutexLock lock(&layouts_mu);
  return &layouts->try_emplace(f, std::move(layout)).first->second;
}

// Appends the aligned 8-byte words of [data, data + size), where `data` sits at `offset`
// in the argument buffer (alignment is the buffer's, as on the device).
void AppendWords(const unsigned char* data, size_t offset, size_t size,
                 std::vector<uintptr_t>* words) {
  size_t skip = (8 - offset % 8) % 8;
  for (size_t k = skip; k + 8 <= size; k += 8) {
    uintptr_t w;
    std::memcpy(&w, data + k, sizeof(w));
    words->push_back(w);
  }
}

}  // namespace

bool ipc::LaunchArgumentWords(CUfunction f, void** params, void** extra,
                              std::vector<uintptr_t>* words) {
  words->clear();
  if (extra != nullptr) {
    const void* buffer = nullptr;
    size_t size = 0;
    for (size_t i = 0; extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
      if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER) {
        buffer = extra[i + 1];
      } else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE) {
        if (extra[i + 1] != nullptr) size = *static_cast<const size_t*>(extra[i + 1]);
      } else {
        return false;  // an option this scan does not know
      }
    }
    if (buffer != nullptr) AppendWords(static_cast<const unsigned char*>(buffer), 0, size, words);
    return true;
  }
  if (params == nullptr) return true;  // no arguments
  const Layout* layout = LayoutOf(f);
  if (!layout->known) return false;
  for (size_t i = 0; i < layout->params.size(); ++i) {
    const Param& p = layout->params[i];
    if (p.size < 8 || params[i] == nullptr) continue;
    AppendWords(static_cast<const unsigned char*>(params[i]), p.offset, p.size, words);
  }
  return true;
}

namespace {

// Everything a hooked launch does before the real one.
CUresult BeforeLaunch(CUfunction f, void** params, void** extra, CUstream stream, bool per_thread) {
  if (!ipc::AnyManaged()) return CUDA_SUCCESS;
  SPW_FAST_TLS thread_local std::vector<uintptr_t> words;
  if (!ipc::LaunchArgumentWords(f, params, extra, &words)) return CUDA_SUCCESS;
  if (words.empty()) return CUDA_SUCCESS;
  return ipc::PrepareUse(words, stream, per_thread);
}

}  // namespace

SPW_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                   unsigned int bx, unsigned int by, unsigned int bz,
                                   unsigned int shared_bytes, CUstream s, void** params,
                                   void** extra) {
  SPW_CHECKED(BeforeLaunch(f, params, extra, s, false));
  SPW_CALL_REAL(cuLaunchKernel, f, gx, gy, gz, bx, by, bz, shared_bytes, s, params, extra);
}

SPW_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy,
                                        unsigned int gz, unsigned int bx, unsigned int by,
                                        unsigned int bz, unsigned int shared_bytes, CUstream s,
                                        void** params, void** extra) {
  SPW_CHECKED(BeforeLaunch(f, params, extra, s, true));
  SPW_CALL_REAL(cuLaunchKernel_ptsz, f, gx, gy, gz, bx, by, bz, shared_bytes, s, params, extra);
}

SPW_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction f, void** params,
                                     void** extra) {
  if (config != nullptr) SPW_CHECKED(BeforeLaunch(f, params, extra, config->hStream, false));
  SPW_CALL_REAL(cuLaunchKernelEx, config, f, params, extra);
}

SPW_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig* config, CUfunction f, void** params,
                                          void** extra) {
  if (config != nullptr) SPW_CHECKED(BeforeLaunch(f, params, extra, config->hStream, true));
  SPW_CALL_REAL(cuLaunchKernelEx_ptsz, config, f, params, extra);
}

SPW_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gx, unsigned int gy,
                                              unsigned int gz, unsigned int bx, unsigned int by,
                                              unsigned int bz, unsigned int shared_bytes,
                                              CUstream s, void** params) {
  SPW_CHECKED(BeforeLaunch(f, params, nullptr, s, false));
  SPW_CALL_REAL(cuLaunchCooperativeKernel, f, gx, gy, gz, bx, by, bz, shared_bytes, s, params);
}

SPW_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy,
                                                   unsigned int gz, unsigned int bx,
                                                   unsigned int by, unsigned int bz,
                                                   unsigned int shared_bytes, CUstream s,
                                                   void** params) {
  SPW_CHECKED(BeforeLaunch(f, params, nullptr, s, true));
  SPW_CALL_REAL(cuLaunchCooperativeKernel_ptsz, f, gx, gy, gz, bx, by, bz, shared_bytes, s, params);
}
