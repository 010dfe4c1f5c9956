// SPDX-License-Identifier: Apache-2.0
//
// A library the dlsym probe links: it asks for the *next* definition of a symbol it defines
// itself. Answered relative to this library (as glibc does), that is nothing; answered
// relative to libspillway.so (a hook that forwards with an ordinary call), it would be this
// library's own definition.
#include <dlfcn.h>

extern "C" {
__attribute__((visibility("default"))) int e2e_probe_symbol = 42;
}

extern "C" __attribute__((visibility("default"))) void* e2e_next_probe() {
  void* next = dlsym(RTLD_NEXT, "e2e_probe_symbol");
  // No tail call: glibc must find this library as the caller, not the program.
  asm volatile("" : "+r"(next));
  return next;
}
