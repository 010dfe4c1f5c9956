// SPDX-License-Identifier: Apache-2.0
//
// Modules, functions and kernel launches. A simcuda module is a host shared object that
// follows the ABI in simcuda/kernel.h; images for a real GPU (cubin, fatbin, PTX) are
// refused with the error a driver gives for an image it cannot run.
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "driver.h"
#include "stream.h"
#include "work.h"

using namespace simcuda;

namespace {

CUresult CheckModule(CUmodule handle, Module** out) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  auto* module = reinterpret_cast<Module*>(handle);
  if (!Driver::Get().IsLive(HandleKind::kModule, module)) return CUDA_ERROR_INVALID_HANDLE;
  *out = module;
  return CUDA_SUCCESS;
}

CUresult CheckFunction(CUfunction handle, Function** out) {
  if (CUresult r = EnterInit(); r != CUDA_SUCCESS) return r;
  auto* function = reinterpret_cast<Function*>(handle);
  if (!Driver::Get().IsLive(HandleKind::kFunction, function)) return CUDA_ERROR_INVALID_HANDLE;
  *out = function;
  return CUDA_SUCCESS;
}

// Checks that an in-memory image is an ELF shared object for this host, and returns the
// size of the file it came from (cuModuleLoadData is not told the size).
CUresult ImageSize(const void* image, size_t* size) {
  const auto* header = static_cast<const Elf64_Ehdr*>(image);
  if (std::memcmp(header->e_ident, ELFMAG, SELFMAG) != 0) return CUDA_ERROR_INVALID_IMAGE;
  if (header->e_ident[EI_CLASS] != ELFCLASS64 || header->e_machine != EM_X86_64) {
    return CUDA_ERROR_NO_BINARY_FOR_GPU;  // e.g. a cubin (EM_CUDA) for a real GPU
  }
  if (header->e_type != ET_DYN) return CUDA_ERROR_INVALID_IMAGE;
  size_t end = header->e_shoff + size_t{header->e_shnum} * header->e_shentsize;
  const auto* base = static_cast<const unsigned char*>(image);
  for (int i = 0; i < header->e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, base + header->e_phoff + static_cast<size_t>(i) * header->e_phentsize,
                sizeof(ph));
    end = std::max<size_t>(end, ph.p_offset + ph.p_filesz);
  }
  *size = end;
  return CUDA_SUCCESS;
}

CUresult Register(Module* module, CUmodule* out) {
  Driver::Get().Register(HandleKind::kModule, module);
  *out = reinterpret_cast<CUmodule>(module);
  return CUDA_SUCCESS;
}

CUresult LoadFile(const char* path, CUmodule* out) {
  if (out == nullptr || path == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  if (access(path, R_OK) != 0) return CUDA_ERROR_FILE_NOT_FOUND;
  void* library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    std::fprintf(stderr, "simcuda: cannot load module %s: %s\n", path, dlerror());
    return CUDA_ERROR_INVALID_IMAGE;
  }
  auto* module = new Module();
  module->library = library;
  return Register(module, out);
}

CUresult LoadImage(const void* image, CUmodule* out) {
  if (out == nullptr || image == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  size_t size = 0;
  if (CUresult r = ImageSize(image, &size); r != CUDA_SUCCESS) return r;
  // dlopen needs a file: the image goes into an anonymous memory file.
  int fd = memfd_create("simcuda-module", MFD_CLOEXEC);
  if (fd < 0) return CUDA_ERROR_OUT_OF_MEMORY;
  const auto* bytes = static_cast<const char*>(image);
  for (size_t written = 0; written < size;) {
    ssize_t n = write(fd, bytes + written, size - written);
    if (n <= 0) {
      close(fd);
      return CUDA_ERROR_OUT_OF_MEMORY;
    }
    written += static_cast<size_t>(n);
  }
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    std::fprintf(stderr, "simcuda: cannot load module image: %s\n", dlerror());
    close(fd);
    return CUDA_ERROR_INVALID_IMAGE;
  }
  auto* module = new Module();
  module->library = library;
  module->image_fd = fd;
  return Register(module, out);
}

CUresult GetFunction(Module* module, const char* name, Function** out) {
  std::string params_name = std::string(name) + "__simcuda_params";
  auto entry = reinterpret_cast<simcuda_kernel_fn>(dlsym(module->library, name));
  auto* params =
      static_cast<const unsigned long long*>(dlsym(module->library, params_name.c_str()));
  if (entry == nullptr || params == nullptr) return CUDA_ERROR_NOT_FOUND;
  std::lock_guard<std::mutex> lock(Driver::Get().mu);
  for (Function* f : module->functions) {
    if (f->name == name) {
      *out = f;
      return CUDA_SUCCESS;
    }
  }
  auto* function = new Function();
  function->name = name;
  function->entry = entry;
  function->module = module;
  size_t offset = 0;
  for (unsigned long long i = 0; i < params[0]; ++i) {
    size_t size = params[1 + i];
    // ABI: aligned to min(8, the largest power of two dividing the size).
    size_t align = size == 0 ? 1 : std::min<size_t>(8, size & (~size + 1));
    offset = (offset + align - 1) / align * align;
    function->sizes.push_back(size);
    function->offsets.push_back(offset);
    offset += size;
  }
  function->arg_bytes = offset;
  module->functions.push_back(function);
  Driver::Get().Register(HandleKind::kFunction, function);
  *out = function;
  return CUDA_SUCCESS;
}

CUresult Unload(Module* module) {
  Driver& driver = Driver::Get();
  driver.Retire(HandleKind::kModule, module);
  for (Function* f : module->functions) driver.Unregister(HandleKind::kFunction, f);
  // Functions stay allocated (captured graphs may still name them) but are no longer
  // valid handles; the library is not dlclose'd for the same reason.
  return CUDA_SUCCESS;
}

CUresult ParamInfo(CUfunction handle, size_t index, size_t* offset, size_t* size) {
  Function* function = nullptr;
  if (CUresult r = CheckFunction(handle, &function); r != CUDA_SUCCESS) return r;
  if (index >= function->sizes.size()) return CUDA_ERROR_INVALID_VALUE;
  if (offset != nullptr) *offset = function->offsets[index];
  if (size != nullptr) *size = function->sizes[index];
  return CUDA_SUCCESS;
}

CUresult Launch(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                unsigned bz, unsigned shared_bytes, CUstream handle, void** params, void** extra,
                bool per_thread) {
  Context* ctx = nullptr;
  if (CUresult r = EnterContext(&ctx); r != CUDA_SUCCESS) return r;
  const unsigned grid[3] = {gx, gy, gz};
  const unsigned block[3] = {bx, by, bz};
  KernelWork work;
  if (CUresult r = MakeKernelWork(f, grid, block, shared_bytes, params, extra, &work);
      r != CUDA_SUCCESS) {
    return r;
  }
  Stream* stream = nullptr;
  if (CUresult r = ResolveStream(ctx, handle, per_thread, &stream); r != CUDA_SUCCESS) return r;
  return Issue(stream, std::move(work), /*wait=*/false);
}

CUresult LaunchEx(const CUlaunchConfig* config, CUfunction f, void** params, void** extra,
                  bool per_thread) {
  if (config == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return Launch(f, config->gridDimX, config->gridDimY, config->gridDimZ, config->blockDimX,
                config->blockDimY, config->blockDimZ, config->sharedMemBytes, config->hStream,
                params, extra, per_thread);
}

}  // namespace

SIMCUDA_API CUresult cuModuleLoad(CUmodule* out, const char* path) { return LoadFile(path, out); }

SIMCUDA_API CUresult cuModuleLoadData(CUmodule* out, const void* image) {
  return LoadImage(image, out);
}

SIMCUDA_API CUresult cuModuleLoadDataEx(CUmodule* out, const void* image, unsigned int /*n*/,
                                        CUjit_option* /*options*/, void** /*values*/) {
  return LoadImage(image, out);
}

SIMCUDA_API CUresult cuModuleUnload(CUmodule handle) {
  Module* module = nullptr;
  if (CUresult r = CheckModule(handle, &module); r != CUDA_SUCCESS) return r;
  return Unload(module);
}

SIMCUDA_API CUresult cuModuleGetFunction(CUfunction* out, CUmodule handle, const char* name) {
  if (out == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Module* module = nullptr;
  if (CUresult r = CheckModule(handle, &module); r != CUDA_SUCCESS) return r;
  Function* function = nullptr;
  if (CUresult r = GetFunction(module, name, &function); r != CUDA_SUCCESS) return r;
  *out = reinterpret_cast<CUfunction>(function);
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuModuleGetGlobal_v2(CUdeviceptr* dptr, size_t* bytes, CUmodule handle,
                                          const char* name) {
  if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Module* module = nullptr;
  if (CUresult r = CheckModule(handle, &module); r != CUDA_SUCCESS) return r;
  void* symbol = dlsym(module->library, name);
  if (symbol == nullptr) return CUDA_ERROR_NOT_FOUND;
  if (dptr != nullptr) *dptr = reinterpret_cast<CUdeviceptr>(symbol);
  if (bytes != nullptr) {
    Dl_info info;
    ElfW(Sym)* sym = nullptr;
    *bytes = dladdr1(symbol, &info, reinterpret_cast<void**>(&sym), RTLD_DL_SYMENT) && sym
                 ? sym->st_size
                 : 0;
  }
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuFuncGetParamInfo(CUfunction f, size_t index, size_t* offset, size_t* size) {
  return ParamInfo(f, index, offset, size);
}

SIMCUDA_API CUresult cuFuncGetName(const char** name, CUfunction f) {
  if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Function* function = nullptr;
  if (CUresult r = CheckFunction(f, &function); r != CUDA_SUCCESS) return r;
  *name = function->name.c_str();
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuFuncGetAttribute(int* value, CUfunction_attribute attribute, CUfunction f) {
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Function* function = nullptr;
  if (CUresult r = CheckFunction(f, &function); r != CUDA_SUCCESS) return r;
  switch (attribute) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
      *value = 1024;
      break;
    case CU_FUNC_ATTRIBUTE_PTX_VERSION:
    case CU_FUNC_ATTRIBUTE_BINARY_VERSION:
      *value = 90;
      break;
    default:
      *value = 0;
      break;
  }
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuFuncSetAttribute(CUfunction f, CUfunction_attribute, int) {
  Function* function = nullptr;
  return CheckFunction(f, &function);
}

// Libraries and kernels (context-independent modules) share the module machinery: a
// CUkernel is a Function, so it may be passed where a CUfunction is expected, as CUDA allows.
SIMCUDA_API CUresult cuLibraryLoadData(CUlibrary* out, const void* image, CUjit_option*, void**,
                                       unsigned int, CUlibraryOption*, void**, unsigned int) {
  return LoadImage(image, reinterpret_cast<CUmodule*>(out));
}
SIMCUDA_API CUresult cuLibraryLoadFromFile(CUlibrary* out, const char* path, CUjit_option*, void**,
                                           unsigned int, CUlibraryOption*, void**, unsigned int) {
  return LoadFile(path, reinterpret_cast<CUmodule*>(out));
}
SIMCUDA_API CUresult cuLibraryUnload(CUlibrary library) {
  return cuModuleUnload(reinterpret_cast<CUmodule>(library));
}
SIMCUDA_API CUresult cuLibraryGetKernel(CUkernel* out, CUlibrary library, const char* name) {
  return cuModuleGetFunction(reinterpret_cast<CUfunction*>(out),
                             reinterpret_cast<CUmodule>(library), name);
}
SIMCUDA_API CUresult cuKernelGetFunction(CUfunction* out, CUkernel kernel) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Function* function = nullptr;
  if (CUresult r = CheckFunction(reinterpret_cast<CUfunction>(kernel), &function);
      r != CUDA_SUCCESS) {
    return r;
  }
  *out = reinterpret_cast<CUfunction>(function);
  return CUDA_SUCCESS;
}
SIMCUDA_API CUresult cuKernelGetParamInfo(CUkernel kernel, size_t index, size_t* offset,
                                          size_t* size) {
  return ParamInfo(reinterpret_cast<CUfunction>(kernel), index, offset, size);
}

#define SIMCUDA_LAUNCH_PARAMS                                                              \
  (CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,       \
   unsigned int by, unsigned int bz, unsigned int shared_bytes, CUstream s, void** params, \
   void** extra)

SIMCUDA_API CUresult cuLaunchKernel SIMCUDA_LAUNCH_PARAMS {
  return Launch(f, gx, gy, gz, bx, by, bz, shared_bytes, s, params, extra, false);
}
SIMCUDA_API CUresult cuLaunchKernel_ptsz SIMCUDA_LAUNCH_PARAMS {
  return Launch(f, gx, gy, gz, bx, by, bz, shared_bytes, s, params, extra, true);
}
SIMCUDA_API CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction f, void** params,
                                      void** extra) {
  return LaunchEx(config, f, params, extra, false);
}
SIMCUDA_API CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig* config, CUfunction f,
                                           void** params, void** extra) {
  return LaunchEx(config, f, params, extra, true);
}
SIMCUDA_API CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gx, unsigned int gy,
                                               unsigned int gz, unsigned int bx, unsigned int by,
                                               unsigned int bz, unsigned int shared_bytes,
                                               CUstream s, void** params) {
  return Launch(f, gx, gy, gz, bx, by, bz, shared_bytes, s, params, nullptr, false);
}
SIMCUDA_API CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy,
                                                    unsigned int gz, unsigned int bx,
                                                    unsigned int by, unsigned int bz,
                                                    unsigned int shared_bytes, CUstream s,
                                                    void** params) {
  return Launch(f, gx, gy, gz, bx, by, bz, shared_bytes, s, params, nullptr, true);
}
