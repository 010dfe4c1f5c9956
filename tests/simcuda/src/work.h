// SPDX-License-Identifier: Apache-2.0
//
// Device work items (kernel launch, copy, set, host function) and how they are issued:
// run on a stream, or recorded into a graph when the stream is capturing. One
// description serves both, so a graph replays exactly what direct issue would have run.
//
// Also the loaded-module types, which kernel work refers to.
#ifndef SIMCUDA_WORK_H_
#define SIMCUDA_WORK_H_

#include <cuda.h>

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "driver.h"
#include "simcuda/kernel.h"
#include "stream.h"

namespace simcuda {

struct Module;

struct Function {
  std::string name;
  simcuda_kernel_fn entry = nullptr;
  std::vector<size_t> sizes;    // of each parameter
  std::vector<size_t> offsets;  // of each parameter in the argument buffer (ABI layout)
  size_t arg_bytes = 0;         // size of the argument buffer
  Module* module = nullptr;
};

struct Module {
  void* library = nullptr;  // dlopen handle
  int image_fd = -1;        // memfd holding a cuModuleLoadData image, or -1
  std::vector<Function*> functions;
};

struct KernelWork {
  KernelWork() = default;
  // Copies re-point param_pointers at their own buffer; moves keep the buffer.
  KernelWork(const KernelWork& other)
      : function(other.function), launch(other.launch), args(other.args) {
    Repoint();
  }
  KernelWork& operator=(const KernelWork& other) {
    function = other.function;
    launch = other.launch;
    args = other.args;
    Repoint();
    return *this;
  }
  KernelWork(KernelWork&&) = default;
  KernelWork& operator=(KernelWork&&) = default;

  Function* function = nullptr;
  simcuda_launch launch{};
  std::vector<unsigned char> args;  // the argument buffer, copied at launch
  // Pointers into `args`, one per parameter (what kernelParams looks like to a reader).
  std::vector<void*> param_pointers;
  void Repoint();
};

struct CopyWork {
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
};

struct SetWork {
  void* dst = nullptr;
  unsigned value = 0;
  unsigned element_size = 1;  // 1, 2 or 4
  size_t count = 0;
};

struct HostWork {
  CUhostFn fn = nullptr;
  void* user_data = nullptr;
};

using Work = std::variant<KernelWork, CopyWork, SetWork, HostWork>;

// Builds kernel work from either launch form; checks the launch as cuLaunchKernel does.
CUresult MakeKernelWork(CUfunction f, const unsigned grid[3], const unsigned block[3],
                        unsigned shared_bytes, void** kernel_params, void** extra, KernelWork* out);

// Runs one work item on the calling (stream worker) thread. Returns false on a fault.
bool Execute(int device, const Work& work);

// Issues work on `stream`: records it into the stream's capture graph when capturing,
// else submits it. `wait` makes the call return only when the work has run (synchronous
// copies and sets, pageable-memory copies); the context's sticky error is returned then.
CUresult Issue(Stream* stream, Work work, bool wait);

}  // namespace simcuda

#endif  // SIMCUDA_WORK_H_
