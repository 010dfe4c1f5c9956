// SPDX-License-Identifier: Apache-2.0
//
// fork_child: a process that uses managed memory forks; the child exits normally
// (running its atexit handlers) while the parent's mover is idle or busy. The child must
// neither hang nor write the parent's statistics (SPILLWAY_STATS must not exist when the
// child is gone); the parent goes on using its memory. Prints "ok".
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "e2e_driver.h"

int main() {
  Driver d = LoadDriver("direct");
  E2E_CHECK(d, d.Init(0));
  CUdevice device;
  E2E_CHECK(d, d.DeviceGet(&device, 0));
  CUcontext ctx;
  E2E_CHECK(d, d.PrimaryCtxRetain(&ctx, device));
  E2E_CHECK(d, d.CtxSetCurrent(ctx));
  constexpr size_t kBytes = size_t{40} << 20;
  const int n = static_cast<int>(kBytes / 4);
  CUdeviceptr a, b;
  E2E_CHECK(d, d.MemAlloc(&a, kBytes));
  E2E_CHECK(d, d.MemAlloc(&b, kBytes));
  E2E_CHECK(d, d.MemsetD32(a, 7, n));  // moves: the mover has been busy

  pid_t child = fork();
  if (child == 0) {
    alarm(10);  // a hang fails the test instead of stalling it
    std::exit(7);
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 7) {
    std::fprintf(stderr, "e2e: child did not exit cleanly (status %d)\n", status);
    return 1;
  }
  const char* stats = std::getenv("SPILLWAY_STATS");
  struct stat st;
  if (stats != nullptr && stat(stats, &st) == 0) {
    std::fprintf(stderr, "e2e: the child wrote statistics\n");
    return 1;
  }
  E2E_CHECK(d, d.MemsetD32(b, 9, n));
  std::vector<unsigned> got(n);
  E2E_CHECK(d, d.MemcpyDtoH(got.data(), a, kBytes));
  for (int i = 0; i < n; ++i) {
    if (got[i] != 7) {
      std::fprintf(stderr, "e2e: a[%d] = %u after fork\n", i, got[i]);
      return 1;
    }
  }
  E2E_CHECK(d, d.MemFree(a));
  E2E_CHECK(d, d.MemFree(b));
  std::printf("ok\n");
  return 0;
}
