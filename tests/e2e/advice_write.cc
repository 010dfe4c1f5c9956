// SPDX-License-Identifier: Apache-2.0
//
// advice_write MODULE MODE: a program that advises its weights through the C API (found
// with dlsym, as a framework that knows Spillway would), lets a fetch keep their host copy,
// then writes them again with a copy and with a set (through MODE's entry points, see
// e2e_driver.h), and one word deep inside a third. The next eviction must copy the new
// bytes out: re-pointing the range at the kept copy would lose the writes. Prints "ok" when every
// byte read back is the written one. Run under LD_PRELOAD=libspillway.so (exit 4 without it).
#include <dlfcn.h>

#include <cstdio>
#include <vector>

#include "e2e_driver.h"
#include "spillway/spillway.h"

namespace {

template <typename F>
F Find(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
}

}  // namespace

#define CU(call) E2E_CHECK(d, call)

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  auto advise = Find<decltype(&spw_advise)>("spw_advise");
  auto prefetch = Find<decltype(&spw_prefetch)>("spw_prefetch");
  auto evict = Find<decltype(&spw_evict)>("spw_evict");
  if (advise == nullptr || prefetch == nullptr || evict == nullptr) {
    std::fprintf(stderr, "e2e: spw_* not found: run under LD_PRELOAD=libspillway.so\n");
    return 4;
  }
  Driver d = LoadDriver(argv[2]);
  CUmodule module;
  StartDevice(d, argv[1], &module);

  constexpr size_t kBytes = size_t{4} << 20;  // over SPILLWAY_MIN_BYTES: managed
  constexpr size_t kWords = kBytes / 4;
  CUdeviceptr copied, set, word;
  CU(d.MemAlloc(&copied, kBytes));
  CU(d.MemAlloc(&set, kBytes));
  CU(d.MemAlloc(&word, kBytes));
  std::vector<uint32_t> words(kWords, 0x1111u);
  for (CUdeviceptr p : {copied, set, word}) {
    CU(d.MemcpyHtoD(p, words.data(), kBytes));
    auto* ptr = reinterpret_cast<void*>(p);
    spw_status s = advise(ptr, kBytes, SPW_ADVICE_WEIGHTS);
    // Out to host memory and back: the fetch keeps a clean host copy of 0x1111.
    if (s == SPW_OK) s = evict(ptr, kBytes, SPW_TIER_HOST, nullptr);
    if (s == SPW_OK) s = prefetch(ptr, kBytes, SPW_TIER_DEVICE, nullptr);
    if (s != SPW_OK) {
      std::fprintf(stderr, "e2e: spw_* failed: %d\n", static_cast<int>(s));
      return 1;
    }
  }
  CU(d.CtxSynchronize());

  std::vector<uint32_t> fresh(kWords, 0x2222u);
  CU(d.MemcpyHtoD(copied, fresh.data(), kBytes));
  CU(d.MemsetD32(set, 0x3333u, kWords));
  // One word three quarters in: whichever chunk holds it must be copied out.
  constexpr size_t kWordAt = kWords * 3 / 4 + 5;
  const uint32_t one = 0x4444u;
  CU(d.MemcpyHtoD(word + kWordAt * 4, &one, 4));
  for (CUdeviceptr p : {copied, set, word}) {
    if (evict(reinterpret_cast<void*>(p), kBytes, SPW_TIER_HOST, nullptr) != SPW_OK) {
      std::fprintf(stderr, "e2e: spw_evict failed\n");
      return 1;
    }
  }

  int failures = 0;
  for (auto [p, want] : {std::pair{copied, 0x2222u}, std::pair{set, 0x3333u}}) {
    CU(d.MemcpyDtoH(words.data(), p, kBytes));
    size_t stale = 0;
    for (uint32_t w : words) stale += w != want;
    if (stale != 0) {
      std::fprintf(stderr, "e2e: %zu of %zu words lost their write (want %#x)\n", stale, kWords,
                   want);
      ++failures;
    }
  }
  CU(d.MemcpyDtoH(words.data(), word, kBytes));
  for (size_t i = 0; i < kWords; ++i) {
    const uint32_t want = i == kWordAt ? one : 0x1111u;
    if (words[i] != want) {
      std::fprintf(stderr, "e2e: word %zu of the third allocation is %#x, want %#x\n", i, words[i],
                   want);
      ++failures;
      break;
    }
  }
  CU(d.MemFree(copied));
  CU(d.MemFree(set));
  CU(d.MemFree(word));
  if (failures == 0) std::printf("ok\n");
  return failures == 0 ? 0 : 1;
}
