// SPDX-License-Identifier: Apache-2.0
//
// The fault guard: how a kernel or copy touching unmapped device memory becomes the
// context's sticky CUDA_ERROR_ILLEGAL_ADDRESS instead of killing the process.
//
// Device virtual memory that is reserved but not mapped, or mapped without access, is
// PROT_NONE in the process. Device work runs inside GuardedCall; a SIGSEGV or SIGBUS on
// that thread while inside it unwinds (siglongjmp) back to GuardedCall, which reports the
// fault. Signals outside a guarded call go to whatever handler was installed before ours,
// so a real crash in the host program still crashes as it would without simcuda.
//
// Contract: `fn` must not hold locks or own resources that need destructors when it may
// fault (it is unwound without running them): guard the raw memory access only.
#ifndef SIMCUDA_FAULT_H_
#define SIMCUDA_FAULT_H_

#include <cstdint>
#include <type_traits>

namespace simcuda {

// Installs the SIGSEGV/SIGBUS handler once. Called at cuInit.
void InstallFaultHandler();

// Runs fn(arg). Returns false when it faulted; `*fault_address` then holds the address.
bool GuardedCall(void (*fn)(void*), void* arg, uintptr_t* fault_address);

// GuardedCall for a callable. Returns false when it faulted.
template <typename F>
bool Guarded(F&& f) {
  using Callable = std::remove_reference_t<F>;
  return GuardedCall([](void* arg) { (*static_cast<Callable*>(arg))(); },
                     const_cast<void*>(static_cast<const void*>(&f)), nullptr);
}

}  // namespace simcuda

#endif  // SIMCUDA_FAULT_H_
