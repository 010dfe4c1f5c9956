// SPDX-License-Identifier: Apache-2.0
//
// cuGetProcAddress: answers (name, version, flags) with the ABI variant the real driver
// would give, from the table generated from the toolkit's cudaTypedefs.h. Variants
// simcuda does not implement answer "not found", as a driver without them would.
#include <dlfcn.h>

#include <cstring>

#include "driver.h"

using namespace simcuda;

namespace {

enum class Kind { DEFAULT, PTSZ, PTDS };

struct Variant {
  const char* base;
  int version;
  Kind kind;
  const char* symbol;
};

constexpr Variant kVariants[] = {
#define SPW_DRIVER_VARIANT(base, version, kind, symbol, pfn) {#base, version, Kind::kind, #symbol},
#include "spillway/driver_variants.inc"
#undef SPW_DRIVER_VARIANT
};

using DlsymFn = void* (*)(void*, const char*);

// Our own exports, looked up with glibc's dlsym itself: a preloaded library may hook
// `dlsym` (Spillway's does) and would answer with its wrappers instead of our functions.
void* OwnSymbol(const char* name) {
  static DlsymFn real_dlsym = [] {
    void* libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    void* fn = libc != nullptr ? dlvsym(libc, "dlsym", "GLIBC_2.34") : nullptr;
    if (fn == nullptr && libc != nullptr) fn = dlvsym(libc, "dlsym", "GLIBC_2.2.5");
    return reinterpret_cast<DlsymFn>(fn);
  }();
  static void* self = [] {
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&OwnSymbol), &info) == 0) return static_cast<void*>(nullptr);
    return dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  }();
  if (real_dlsym == nullptr || self == nullptr) return nullptr;
  return real_dlsym(self, name);
}

const Variant* Newest(const char* base, int version, Kind kind, bool* base_known) {
  const Variant* best = nullptr;
  for (const Variant& v : kVariants) {
    if (std::strcmp(v.base, base) != 0) continue;
    *base_known = true;
    if (v.kind == kind && v.version <= version && (best == nullptr || v.version > best->version)) {
      best = &v;
    }
  }
  return best;
}

}  // namespace

SIMCUDA_API CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int cuda_version,
                                         cuuint64_t flags, CUdriverProcAddressQueryResult* status) {
  if (symbol == nullptr || pfn == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (cuda_version > CUDA_VERSION || cuda_version <= 0) return CUDA_ERROR_INVALID_VALUE;
  if (flags > (CU_GET_PROC_ADDRESS_LEGACY_STREAM | CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  *pfn = nullptr;
  bool known = false;
  const Variant* chosen = nullptr;
  if (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) {
    chosen = Newest(symbol, cuda_version, Kind::PTSZ, &known);
    if (chosen == nullptr) chosen = Newest(symbol, cuda_version, Kind::PTDS, &known);
  }
  // Without a per-thread variant, the legacy one is the answer (as documented).
  if (chosen == nullptr) chosen = Newest(symbol, cuda_version, Kind::DEFAULT, &known);
  void* address = chosen != nullptr ? OwnSymbol(chosen->symbol) : nullptr;
  if (status != nullptr) {
    *status = address != nullptr             ? CU_GET_PROC_ADDRESS_SUCCESS
              : (known && chosen == nullptr) ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
                                             : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  }
  *pfn = address;
  return CUDA_SUCCESS;
}

SIMCUDA_API CUresult cuGetExportTable(const void** table, const CUuuid* /*id*/) {
  // Private NVIDIA tables do not exist here; callers must cope, as they do with old drivers.
  if (table != nullptr) *table = nullptr;
  return CUDA_ERROR_NOT_FOUND;
}
