// SPDX-License-Identifier: Apache-2.0
//
// dlsym_probe: checks, from inside a program, which function each way of reaching the
// driver hands out, by asking dladdr which object and symbol an address belongs to. Prints
// one "name -> object:symbol" line per lookup, then "ok" if every expectation given by the
// environment holds (E2E_EXPECT_HOOKS=1: under LD_PRELOAD=libspillway.so).
#include <cuda.h>
#include <cudaTypedefs.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

extern "C" void* e2e_next_probe();

// dlsym as a program linked before glibc 2.34 references it: bound to version GLIBC_2.2.5
// (x86-64; GLIBC_2.17 on AArch64). libspillway.so defines dlsym unversioned, which the
// loader accepts for any non-hidden versioned reference.
#if defined(__x86_64__)
__asm__(".symver dlsym_before_2_34, dlsym@GLIBC_2.2.5");
#elif defined(__aarch64__)
__asm__(".symver dlsym_before_2_34, dlsym@GLIBC_2.17");
#endif
extern "C" void* dlsym_before_2_34(void* handle, const char* name);

namespace {

int failures = 0;

std::string Where(void* address) {
  Dl_info info;
  if (address == nullptr) return "null";
  if (dladdr(address, &info) == 0) return "?";
  std::string object = info.dli_fname ? info.dli_fname : "?";
  object = object.substr(object.rfind('/') + 1);
  return object + ":" + (info.dli_sname ? info.dli_sname : "?");
}

void Expect(const char* what, void* address, const std::string& want) {
  std::string got = Where(address);
  std::printf("%s -> %s\n", what, got.c_str());
  if (got.find(want) == std::string::npos) {
    std::fprintf(stderr, "e2e: %s: expected %s, got %s\n", what, want.c_str(), got.c_str());
    ++failures;
  }
}

}  // namespace

int main() {
  const bool hooked = std::getenv("E2E_EXPECT_HOOKS") != nullptr;
  const std::string ours = hooked ? "libspillway.so:" : "libcuda.so.1:";
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return 2;
  // A handle-scoped dlsym never searches preloaded objects: only the dlsym hook sees it.
  Expect("dlsym(libcuda, cuMemAlloc_v2)", dlsym(lib, "cuMemAlloc_v2"), ours + "cuMemAlloc_v2");
  Expect("old-glibc dlsym(libcuda, cuMemAlloc_v2)", dlsym_before_2_34(lib, "cuMemAlloc_v2"),
         ours + "cuMemAlloc_v2");
  Expect("dlsym(libcuda, cuStreamCreate)", dlsym(lib, "cuStreamCreate"),
         "libcuda.so.1:cuStreamCreate");
  Expect("dlsym(RTLD_DEFAULT, cuLaunchKernel)", dlsym(RTLD_DEFAULT, "cuLaunchKernel"),
         ours + "cuLaunchKernel");
  // RTLD_NEXT from another library is answered relative to that library.
  void* next = e2e_next_probe();
  std::printf("RTLD_NEXT from a library -> %s\n", Where(next).c_str());
  if (next != nullptr) {
    std::fprintf(stderr, "e2e: RTLD_NEXT answered relative to the wrong object\n");
    ++failures;
  }

  auto get_proc = reinterpret_cast<PFN_cuGetProcAddress_v12000>(dlsym(lib, "cuGetProcAddress_v2"));
  if (get_proc == nullptr || cuInit(0) != CUDA_SUCCESS) return 2;
  struct Query {
    const char* name;
    int version;
    cuuint64_t flags;
    const char* want_symbol;
    bool hooked_variant;
  } queries[] = {
      {"cuGetProcAddress", 12000, 0, "cuGetProcAddress_v2", true},
      {"cuMemAlloc", 3020, 0, "cuMemAlloc_v2", true},
      {"cuMemAlloc", 13000, 0, "cuMemAlloc_v2", true},
      {"cuLaunchKernel", 4000, 0, "cuLaunchKernel", true},
      {"cuLaunchKernel", 7000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, "cuLaunchKernel_ptsz",
       true},
      {"cuLaunchKernel", 6050, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, "cuLaunchKernel",
       true},  // no _ptsz variant that old: the legacy one
      {"cuMemcpyHtoD", 7000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, "cuMemcpyHtoD_v2_ptds",
       true},
      {"cuMemcpyHtoD", 3020, CU_GET_PROC_ADDRESS_LEGACY_STREAM, "cuMemcpyHtoD_v2", true},
      {"cuStreamSynchronize", 7000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
       "cuStreamSynchronize_ptsz", false},
      {"cuCtxGetCurrent", 4000, 0, "cuCtxGetCurrent", false},
  };
  for (const Query& q : queries) {
    void* fn = nullptr;
    CUdriverProcAddressQueryResult status;
    CUresult r = get_proc(q.name, &fn, q.version, q.flags, &status);
    std::string what = std::string("cuGetProcAddress(") + q.name + ", " +
                       std::to_string(q.version) + ", " + std::to_string(q.flags) + ")";
    if (r != CUDA_SUCCESS) {
      std::fprintf(stderr, "e2e: %s failed\n", what.c_str());
      ++failures;
      continue;
    }
    std::string object = q.hooked_variant ? ours : "libcuda.so.1:";
    Expect(what.c_str(), fn, object + q.want_symbol);
  }
  void* unknown = reinterpret_cast<void*>(1);
  CUdriverProcAddressQueryResult status;
  get_proc("cuNoSuchFunction", &unknown, 13000, 0, &status);
  if (unknown != nullptr || status != CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND) {
    std::fprintf(stderr, "e2e: an unknown name must answer null, SYMBOL_NOT_FOUND\n");
    ++failures;
  }
  if (failures != 0) return 1;
  std::printf("ok\n");
  return 0;
}
