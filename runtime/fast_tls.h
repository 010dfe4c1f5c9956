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

#define SPW_FAST_TLS __attribute__((tls_model("initial-exec")))

#endif  // SPILLWAY_RUNTIME_FAST_TLS_H_
