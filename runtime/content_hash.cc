// SPDX-License-Identifier: Apache-2.0
#include "runtime/content_hash.h"

// Inlined and private to this file: no libxxhash at run time, and no xxhash symbol that
// could meet another copy in the host process.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace spillway {

#if defined(__x86_64__)
// content_hash_avx2.cc, built with -mavx2: three times the speed of the SSE2 code below on
// the test VM (31 against 9 GB/s), which is what a spill-heavy run pays per chunk.
ContentHash HashContentAvx2(const void* bytes, size_t size);
#endif

ContentHash HashContent(const void* bytes, size_t size) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return HashContentAvx2(bytes, size);
#endif
  const XXH128_hash_t hash = XXH3_128bits(bytes, size);
  return ContentHash{hash.low64, hash.high64};
}

}  // namespace spillway
