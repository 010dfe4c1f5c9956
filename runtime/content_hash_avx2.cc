// SPDX-License-Identifier: Apache-2.0
//
// XXH3-128 with AVX2, for CPUs that have it (HashContent checks). This file alone is built
// with -mavx2 (runtime/CMakeLists.txt); everything in it is static but the one function.
#include "runtime/content_hash.h"

#if defined(__x86_64__)
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>

namespace spillway {

ContentHash HashContentAvx2(const void* bytes, size_t size) {
  const XXH128_hash_t hash = XXH3_128bits(bytes, size);
  return ContentHash{hash.low64, hash.high64};
}

}  // namespace spillway
#endif
