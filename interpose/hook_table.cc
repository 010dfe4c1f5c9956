// SPDX-License-Identifier: Apache-2.0
#include "interpose/hook_table.h"

#include <dlfcn.h>

#include <atomic>
#include <cstring>
#include <string_view>

#include "interpose/real_dlsym.h"

// The wrappers, defined in the hook files; declared here with the row's own PFN type so that
// a wrapper whose signature drifts from the toolkit's fails to compile.
extern "C" {
#define SPW_DECLARE_HOOK(base, version, kind, symbol, pfn) \
  extern std::remove_pointer_t<pfn> symbol __attribute__((visibility("default")));
SPW_HOOKED_VARIANTS(SPW_DECLARE_HOOK)
#undef SPW_DECLARE_HOOK
}

namespace spillway::interpose {
namespace {

struct Variant {
  std::string_view base;
  int version;
  VariantKind kind;
  const char* symbol;
};

constexpr Variant kVariants[] = {
#define SPW_DRIVER_VARIANT(base, version, kind, symbol, pfn) \
  {#base, version, VariantKind::kind, #symbol},
#include "spillway/driver_variants.inc"
#undef SPW_DRIVER_VARIANT
};

struct Row {
  std::string_view base;
  int version;
  VariantKind kind;
  const char* symbol;
  void* hook;  // null for auxiliary rows
};

constexpr bool IsDriverVariant(std::string_view base, int version, VariantKind kind,
                               std::string_view symbol) {
  for (const Variant& v : kVariants) {
    if (v.base == base && v.version == version && v.kind == kind && symbol == v.symbol) {
      return true;
    }
  }
  return false;
}

#define SPW_CHECK_ROW(base, version, kind, symbol, pfn)                      \
  static_assert(IsDriverVariant(#base, version, VariantKind::kind, #symbol), \
                #symbol " is not a variant in spillway/driver_variants.inc");
SPW_HOOKED_VARIANTS(SPW_CHECK_ROW)
SPW_AUX_VARIANTS(SPW_CHECK_ROW)
#undef SPW_CHECK_ROW

const Row kRows[] = {
#define SPW_HOOK_ROW(base, version, kind, symbol, pfn) \
  {#base, version, VariantKind::kind, #symbol, reinterpret_cast<void*>(&::symbol)},
#define SPW_AUX_ROW(base, version, kind, symbol, pfn) \
  {#base, version, VariantKind::kind, #symbol, nullptr},
    SPW_HOOKED_VARIANTS(SPW_HOOK_ROW) SPW_AUX_VARIANTS(SPW_AUX_ROW)
#undef SPW_HOOK_ROW
#undef SPW_AUX_ROW
};
static_assert(sizeof(kRows) / sizeof(kRows[0]) == static_cast<size_t>(Fn::kCount));

std::atomic<void*> real_functions[static_cast<int>(Fn::kCount)];
std::atomic<bool> resolved[static_cast<int>(Fn::kCount)];

const Variant* Newest(std::string_view base, int version, VariantKind kind, bool* base_known) {
  const Variant* best = nullptr;
  for (const Variant& v : kVariants) {
    if (v.base != base) continue;
    *base_known = true;
    if (v.kind == kind && v.version <= version && (best == nullptr || v.version > best->version)) {
      best = &v;
    }
  }
  return best;
}

}  // namespace

PFN_cuGetProcAddress_v12000 RealGetProcAddress() {
  static PFN_cuGetProcAddress_v12000 real = [] {
    DlsymFn real_dlsym = RealDlsym();
    // RTLD_GLOBAL is what a program linked to the driver gets anyway; the handle-scoped
    // lookup below never reaches our own exports.
    void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (driver == nullptr || real_dlsym == nullptr) return PFN_cuGetProcAddress_v12000{nullptr};
    return reinterpret_cast<PFN_cuGetProcAddress_v12000>(real_dlsym(driver, "cuGetProcAddress_v2"));
  }();
  return real;
}

void* RealFunction(Fn fn) {
  const int i = static_cast<int>(fn);
  if (resolved[i].load(std::memory_order_acquire)) {
    return real_functions[i].load(std::memory_order_relaxed);
  }
  const Row& row = kRows[i];
  void* function = nullptr;
  if (PFN_cuGetProcAddress_v12000 get_proc = RealGetProcAddress(); get_proc != nullptr) {
    const cuuint64_t flags = row.kind == VariantKind::DEFAULT
                                 ? CU_GET_PROC_ADDRESS_LEGACY_STREAM
                                 : CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
    CUdriverProcAddressQueryResult status;
    if (get_proc(row.base.data(),  // a literal: NUL-terminated
                 &function, row.version, flags, &status) != CUDA_SUCCESS) {
      function = nullptr;
    }
  }
  real_functions[i].store(function, std::memory_order_relaxed);
  resolved[i].store(true, std::memory_order_release);
  return function;
}

void* HookForSymbol(const char* symbol) {
  // Most names a process looks up are not the driver's: reject them on two bytes.
  if (symbol == nullptr || symbol[0] != 'c' || symbol[1] != 'u') return nullptr;
  for (int i = 0; i < kHookCount; ++i) {
    if (std::strcmp(kRows[i].symbol, symbol) == 0) return kRows[i].hook;
  }
  return nullptr;
}

void* HookIfSameVariant(const char* symbol, void* real_answer) {
  if (symbol == nullptr || real_answer == nullptr) return nullptr;
  for (int i = 0; i < kHookCount; ++i) {
    if (std::strcmp(kRows[i].symbol, symbol) != 0) continue;
    return RealFunction(static_cast<Fn>(i)) == real_answer ? kRows[i].hook : nullptr;
  }
  return nullptr;
}

const char* SelectVariant(const char* base, int version, cuuint64_t flags, bool* base_known) {
  *base_known = false;
  const Variant* chosen = nullptr;
  if (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) {
    chosen = Newest(base, version, VariantKind::PTSZ, base_known);
    if (chosen == nullptr) chosen = Newest(base, version, VariantKind::PTDS, base_known);
  }
  if (chosen == nullptr) chosen = Newest(base, version, VariantKind::DEFAULT, base_known);
  return chosen != nullptr ? chosen->symbol : nullptr;
}

}  // namespace spillway::interpose
