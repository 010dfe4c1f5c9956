// SPDX-License-Identifier: Apache-2.0
//
// The exported `dlsym`, unversioned. Programs reference glibc's dlsym by version
// (GLIBC_2.2.5 when linked before glibc 2.34, GLIBC_2.34 after); the loader accepts an
// unversioned definition for a non-hidden versioned reference, and takes the first object
// that has one: ours, preloaded. Defining glibc's version names ourselves would do the same
// but export names (GLIBC_2.2.5, GLIBC_2.34) that belong to the C library.
//
// Libraries that dlopen("libcuda.so.1") and look the driver up with a handle never search
// preloaded objects, so only this hook lets us hand them our wrappers (architecture.md,
// "Hooking, precisely"). It does a table lookup and nothing else: no allocation, no lock,
// no initialisation (a heavy dlsym deadlocks `import torch`, cuda-notes.md).
//
// RTLD_NEXT: glibc resolves it relative to the object its caller lives in, which it finds
// from its return address. Any call from here would make that object libspillway.so. So
// every lookup we do not answer ourselves leaves through a tail jump (assembly below): the
// real dlsym runs with our caller's return address on the stack, exactly as if called
// directly, and RTLD_NEXT, RTLD_DEFAULT and handle lookups all behave as without us. An
// RTLD_NEXT lookup is never answered with a wrapper: its caller asked for the next
// definition, not ours (a wrapper library layered over us, say).
#include <dlfcn.h>

#include <atomic>

#include "interpose/hook_table.h"
#include "interpose/interposer.h"
#include "interpose/real_dlsym.h"

namespace spillway::interpose {
namespace {

void* DlsymUnavailable(void*, const char*) { return nullptr; }

}  // namespace

__attribute__((no_sanitize("address", "undefined"))) DlsymFn RealDlsym() {
  // dlvsym with RTLD_NEXT: the objects loaded after us, where glibc's dlsym is. Not
  // dlopen("libc.so.6"): our dlsym may be called before the process is initialised (the
  // AddressSanitizer runtime resolves its interceptors through it), when an intercepted
  // dlopen cannot be called yet.
  static DlsymFn real = [] {
    void* fn = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
    if (fn == nullptr) fn = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
    return reinterpret_cast<DlsymFn>(fn);
  }();
  return real;
}

}  // namespace spillway::interpose

// Read by the assembly: where a forwarded dlsym jumps. Set by spw_dlsym_dispatch before it
// returns null, so it is valid whenever the jump happens.
extern "C" {
__attribute__((visibility("hidden"))) spillway::interpose::DlsymFn spw_real_dlsym = nullptr;
}

// Set once libspillway.so's own initialisers run. Before that our dlsym can already be
// called: a sanitizer runtime loaded with the program resolves its interceptors through
// `dlsym` while it initialises, and no hook is wanted (or safe: instrumented code cannot run
// before the sanitizer is up) then; lookups are only forwarded.
namespace {
bool library_initialised = false;
__attribute__((constructor)) void MarkInitialised() { library_initialised = true; }
}  // namespace

// Our answer for (handle, name), or null to forward to glibc. Not instrumented by
// sanitizers, for the same reason.
extern "C" __attribute__((visibility("hidden"), no_sanitize("address", "undefined"))) void*
spw_dlsym_dispatch(void* handle, const char* name) {
  using namespace spillway::interpose;
  if (library_initialised && handle != RTLD_NEXT) {
    if (void* hook = HookForSymbol(name); hook != nullptr) return hook;
    if (IsUntrackedCaptureEntry(name)) NoteUntrackedCaptures();
  }
  if (spw_real_dlsym == nullptr) {
    DlsymFn real = RealDlsym();
    // Without glibc's dlsym every lookup fails, as a dlsym that finds nothing does.
    __atomic_store_n(&spw_real_dlsym, real != nullptr ? real : &DlsymUnavailable, __ATOMIC_RELEASE);
  }
  return nullptr;
}

// The hook (handle, name): keeps the arguments, asks spw_dlsym_dispatch, returns its answer
// or jumps (not calls) to glibc's dlsym with the arguments and return address untouched.
// One label, `dlsym`, exported unversioned by the version script.
#if defined(__x86_64__)
asm(R"(
  .text
  .p2align 4
  .globl dlsym
  .type dlsym, @function
dlsym:
  .cfi_startproc
  pushq %rdi
  .cfi_adjust_cfa_offset 8
  pushq %rsi
  .cfi_adjust_cfa_offset 8
  subq $8, %rsp
  .cfi_adjust_cfa_offset 8
  call spw_dlsym_dispatch
  addq $8, %rsp
  .cfi_adjust_cfa_offset -8
  popq %rsi
  .cfi_adjust_cfa_offset -8
  popq %rdi
  .cfi_adjust_cfa_offset -8
  testq %rax, %rax
  jz 1f
  ret
1:
  jmpq *spw_real_dlsym(%rip)
  .cfi_endproc
  .size dlsym, .-dlsym
)");
#elif defined(__aarch64__)
asm(R"(
  .text
  .p2align 4
  .globl dlsym
  .type dlsym, %function
dlsym:
  stp x29, x30, [sp, #-32]!
  mov x29, sp
  stp x0, x1, [sp, #16]
  bl spw_dlsym_dispatch
  mov x2, x0
  ldp x0, x1, [sp, #16]
  ldp x29, x30, [sp], #32
  cbz x2, 1f
  mov x0, x2
  ret
1:
  adrp x16, spw_real_dlsym
  ldr x16, [x16, #:lo12:spw_real_dlsym]
  br x16
  .size dlsym, .-dlsym
)");
#else
#error "libspillway.so's dlsym hook is written for x86-64 and AArch64"
#endif
