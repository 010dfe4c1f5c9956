// SPDX-License-Identifier: Apache-2.0
//
// HashContent is XXH3-128, whichever code path the CPU gets (AVX2 here, where it has it):
// the same value as xxhash's portable build, and a different one for any changed byte.
#include "runtime/content_hash.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_SCALAR
#include <xxhash.h>

namespace spillway {
namespace {

std::vector<uint8_t> Pattern(size_t size) {
  std::vector<uint8_t> bytes(size);
  uint64_t x = 0x9e3779b97f4a7c15;
  for (uint8_t& b : bytes) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b = static_cast<uint8_t>(x);
  }
  return bytes;
}

TEST(ContentHashTest, IsXxh3_128OnEveryCodePath) {
  for (size_t size :
       {size_t{0}, size_t{1}, size_t{240}, size_t{4096}, size_t{256} << 10, size_t{2} << 20}) {
    const std::vector<uint8_t> bytes = Pattern(size);
    const XXH128_hash_t reference = XXH3_128bits(bytes.data(), bytes.size());
    const ContentHash hash = HashContent(bytes.data(), bytes.size());
    EXPECT_EQ(hash.low, reference.low64) << size;
    EXPECT_EQ(hash.high, reference.high64) << size;
  }
}

TEST(ContentHashTest, AnyChangedByteChangesIt) {
  std::vector<uint8_t> bytes = Pattern(size_t{256} << 10);
  const ContentHash original = HashContent(bytes.data(), bytes.size());
  EXPECT_EQ(HashContent(bytes.data(), bytes.size()), original);
  for (size_t at : {size_t{0}, size_t{63}, size_t{4096}, bytes.size() / 2, bytes.size() - 1}) {
    bytes[at] ^= 1;
    EXPECT_NE(HashContent(bytes.data(), bytes.size()), original) << at;
    bytes[at] ^= 1;
  }
  EXPECT_EQ(HashContent(bytes.data(), bytes.size()), original);
}

}  // namespace
}  // namespace spillway
