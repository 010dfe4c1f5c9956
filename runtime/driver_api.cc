// SPDX-License-Identifier: Apache-2.0
#include "runtime/driver_api.h"

#include <dlfcn.h>

#include <mutex>

#include "absl/strings/str_cat.h"

namespace spillway {
namespace {

using DlsymFn = void* (*)(void*, const char*);

// glibc's dlsym, never a preloaded hook (ours exports `dlsym` too).
DlsymFn RealDlsym() {
  void* libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
  if (libc == nullptr) return nullptr;
  void* fn = dlvsym(libc, "dlsym", "GLIBC_2.34");
  if (fn == nullptr) fn = dlvsym(libc, "dlsym", "GLIBC_2.2.5");
  return reinterpret_cast<DlsymFn>(fn);
}

DriverApi* table = nullptr;

absl::Status Load(const char* library, DriverApi* api) {
  DlsymFn real_dlsym = RealDlsym();
  if (real_dlsym == nullptr) return absl::InternalError("cannot find glibc's dlsym");
  void* handle = dlopen(library, RTLD_NOW | RTLD_GLOBAL);
  if (handle == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load the CUDA driver (", library, "): ", dlerror()));
  }
  auto get_proc =
      reinterpret_cast<PFN_cuGetProcAddress_v12000>(real_dlsym(handle, "cuGetProcAddress_v2"));
  if (get_proc == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(library, " has no cuGetProcAddress_v2: a CUDA 12 or newer driver is needed"));
  }
  // Legacy-stream variants: the runtime's own work never uses a per-thread default stream.
#define SPW_RESOLVE_ENTRY(name, version)                                                         \
  {                                                                                              \
    void* fn = nullptr;                                                                          \
    CUdriverProcAddressQueryResult found = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;                 \
    CUresult r = get_proc(#name, &fn, version, CU_GET_PROC_ADDRESS_LEGACY_STREAM, &found);       \
    if (r != CUDA_SUCCESS || fn == nullptr) {                                                    \
      return absl::FailedPreconditionError(absl::StrCat(                                         \
          "the CUDA driver lacks ", #name, " (ABI version ", version, ", status ", found, ")")); \
    }                                                                                            \
    api->name = reinterpret_cast<PFN_##name##_v##version>(fn);                                   \
  }
  SPW_DRIVER_ENTRY_POINTS(SPW_RESOLVE_ENTRY)
#undef SPW_RESOLVE_ENTRY
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<const DriverApi*> LoadDriverApi(const char* library) {
  static std::once_flag once;
  static absl::Status* result = nullptr;
  std::call_once(once, [&] {
    auto* api = new DriverApi();  // never destroyed: used until the process exits
    absl::Status status = Load(library, api);
    if (status.ok()) {
      table = api;
    } else {
      delete api;
    }
    result = new absl::Status(status);
  });
  if (!result->ok()) return *result;
  return table;
}

const DriverApi& Driver() { return *table; }

absl::Status CudaError(CUresult result, const char* call) {
  const char* name = "CUDA_ERROR_UNKNOWN";
  const char* text = "unknown error";
  if (table != nullptr) {
    table->cuGetErrorName(result, &name);
    table->cuGetErrorString(result, &text);
  }
  std::string message =
      absl::StrCat(call, " failed: ", name ? name : "?", " (", text ? text : "?", ")");
  switch (result) {
    case CUDA_ERROR_OUT_OF_MEMORY:
      return absl::ResourceExhaustedError(message);
    case CUDA_ERROR_INVALID_VALUE:
    case CUDA_ERROR_INVALID_HANDLE:
      return absl::InvalidArgumentError(message);
    case CUDA_ERROR_NOT_INITIALIZED:
    case CUDA_ERROR_INVALID_CONTEXT:
      return absl::FailedPreconditionError(message);
    case CUDA_ERROR_NOT_SUPPORTED:
      return absl::UnimplementedError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace spillway
