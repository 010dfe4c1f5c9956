// SPDX-License-Identifier: Apache-2.0
//
// A chunk's bytes, summarised: XXH3's 128-bit hash (xxhash.h, compiled in; the AVX2 code
// where the CPU has it, content_hash_avx2.cc).
//
// The NVMe tier remembers the hash of what each extent holds, so that a spill of bytes the
// extent already holds skips the write (Manager::PlanToNvme, Mover::SpillOut): the weights
// of an unmodified program are never advised read-only, and without it every eviction of
// them to NVMe would rewrite the drive with what it already had.
//
// Two different chunks hash alike with odds of about 2^-128 per comparison (XXH3 is not
// cryptographic: bytes built to collide could; a chunk's bytes are the program's own
// data). Equal hashes are taken for equal bytes; docs/limitations.md says so.
//
// Thread safety: pure functions.
#ifndef SPILLWAY_RUNTIME_CONTENT_HASH_H_
#define SPILLWAY_RUNTIME_CONTENT_HASH_H_

#include <cstddef>
#include <cstdint>

namespace spillway {

struct ContentHash {
  uint64_t low = 0;
  uint64_t high = 0;
  friend bool operator==(const ContentHash&, const ContentHash&) = default;
};

// REQUIRES: [bytes, bytes + size) readable.
ContentHash HashContent(const void* bytes, size_t size);

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_CONTENT_HASH_H_
