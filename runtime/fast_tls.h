// SPDX-License-Identifier: Apache-2.0
//
// SPW_FAST_TLS: marks a small thread_local on the launch path for the initial-exec TLS model.
//
// In a shared library, thread_local variables default to the general-dynamic model: every
// access (per function) calls __tls_get_addr, a few nanoseconds each, several times per
// hooked launch. initial-exec reads them at a fixed offset from the thread pointer instead.
// Its price is static TLS space: in libspillway.so loaded by LD_PRELOAD it is reserved at
// start-up; loaded later with dlopen (PyTorch's pluggable allocator does), it comes from
// glibc's small surplus (512 bytes at least). So keep what is marked small — pointers and
// vector headers — and put anything large behind a marked pointer.
#ifndef SPILLWAY_RUNTIME_FAST_TLS_H_
#define SPILLWAY_RUNTIME_FAST_TLS_H_

#include <memory>

#define SPW_FAST_TLS __attribute__((tls_model("initial-exec")))

namespace spillway {

// One T per thread, on the heap, reached through a SPW_FAST_TLS pointer: for per-thread
// state on the launch path too large for static TLS. Created on a thread's first Get(),
// destroyed with the thread.
template <typename T>
class PerThread {
 public:
  static T& Get() {
    if (instance_ == nullptr) {
      owner_ = std::make_unique<T>();
      instance_ = owner_.get();
    }
    return *instance_;
  }
  // This thread's T, or null if it has not made one.
  static T* IfCreated() { return instance_; }

 private:
  SPW_FAST_TLS static inline thread_local T* instance_ = nullptr;
  static inline thread_local std::unique_ptr<T> owner_;  // general-dynamic: touched once
};

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_FAST_TLS_H_
