// SPDX-License-Identifier: Apache-2.0
#include "fault.h"

#include <unistd.h>

#include <csetjmp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace simcuda {
namespace {

thread_local sigjmp_buf* tls_jump = nullptr;
thread_local uintptr_t tls_fault_address = 0;

struct sigaction previous_segv;
struct sigaction previous_bus;

void Chain(int sig, siginfo_t* info, void* context) {
  const struct sigaction& prev = sig == SIGSEGV ? previous_segv : previous_bus;
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction != nullptr) {
      prev.sa_sigaction(sig, info, context);
      return;
    }
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
    prev.sa_handler(sig);
    return;
  }
  // Default action: restore it and return; the faulting instruction runs again and the
  // process dies the way it would have without us.
  signal(sig, SIG_DFL);
}

void OnFault(int sig, siginfo_t* info, void* context) {
  sigjmp_buf* jump = tls_jump;
  if (jump == nullptr) {
    Chain(sig, info, context);
    return;
  }
  tls_jump = nullptr;
  tls_fault_address = reinterpret_cast<uintptr_t>(info->si_addr);
  siglongjmp(*jump, 1);
}

}  // namespace

void InstallFaultHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action;
    std::memset(&action, 0, sizeof(action));
    action.sa_sigaction = OnFault;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &previous_segv);
    sigaction(SIGBUS, &action, &previous_bus);
  });
}

bool GuardedCall(void (*fn)(void*), void* arg, uintptr_t* fault_address) {
  sigjmp_buf jump;
  // savemask=1: the signal mask is restored on the way out of the handler.
  if (sigsetjmp(jump, 1) != 0) {
    if (fault_address != nullptr) *fault_address = tls_fault_address;
    // Where a GPU's driver logs an Xid with the faulting address to the kernel log, simcuda
    // can say it on stderr (SIMCUDA_REPORT_FAULTS=1): debugging a fault needs the address.
    static const bool report = std::getenv("SIMCUDA_REPORT_FAULTS") != nullptr;
    if (report) {
      char line[96];
      int n = std::snprintf(line, sizeof(line), "simcuda: device fault at address %#lx\n",
                            static_cast<unsigned long>(tls_fault_address));
      if (n > 0) (void)!write(2, line, static_cast<size_t>(n));
    }
    return false;
  }
  tls_jump = &jump;
  fn(arg);
  tls_jump = nullptr;
  return true;
}

}  // namespace simcuda
