// SPDX-License-Identifier: Apache-2.0
//
// Linux capabilities of the calling thread, for tests that must run as an unprivileged
// process would (root bypasses file modes and RLIMIT_MEMLOCK). Capabilities are per
// thread: these change the calling thread's sets only.
#ifndef SPILLWAY_TESTS_COMMON_CAPABILITIES_H_
#define SPILLWAY_TESTS_COMMON_CAPABILITIES_H_

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <initializer_list>

namespace spw_test {

// Clears `caps` from the effective set (`permanently`: from the permitted and inheritable
// sets too, so they cannot be raised again). False if the kernel refused.
inline bool ClearCapabilities(std::initializer_list<int> caps, bool permanently) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  for (int cap : caps) {
    data[cap / 32].effective &= ~(1u << (cap % 32));
    if (permanently) {
      data[cap / 32].permitted &= ~(1u << (cap % 32));
      data[cap / 32].inheritable &= ~(1u << (cap % 32));
    }
  }
  return syscall(SYS_capset, &header, data) == 0;
}

// Raises `cap` in the effective set again. REQUIRES: it is still permitted.
inline bool RaiseCapability(int cap) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  data[cap / 32].effective |= 1u << (cap % 32);
  return syscall(SYS_capset, &header, data) == 0;
}

}  // namespace spw_test

#endif  // SPILLWAY_TESTS_COMMON_CAPABILITIES_H_
