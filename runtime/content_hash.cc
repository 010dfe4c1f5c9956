// SPDX-License-Identifier: Apache-2.0
#include "runtime/content_hash.h"

// Inlined and private to this file: no libxxhash at run time, and no xxhash symbol that
// could meet another copy in the host process.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace spillway {

ContentHash HashContent(const void* bytes, size_t size) {
  const XXH128_hash_t hash = XXH3_128bits(bytes, size);
  return ContentHash{hash.low64, hash.high64};
}

}  // namespace spillway
