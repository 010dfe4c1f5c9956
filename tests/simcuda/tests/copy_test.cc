// SPDX-License-Identifier: Apache-2.0
//
// Copies and sets, synchronous and stream-ordered: every byte checked, neighbours untouched.
#include <cuda.h>
#include <gtest/gtest.h>
#include <string.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "test_util.h"

namespace simcuda_test {
namespace {

class CopyTest : public DriverTest {
 protected:
  void SetUp() override {
    DriverTest::SetUp();
    if (HasFatalFailure()) return;
    CU_ASSERT(cuMemAlloc(&a_, kSize));
    CU_ASSERT(cuMemAlloc(&b_, kSize));
    CU_ASSERT(cuStreamCreate(&stream_, CU_STREAM_NON_BLOCKING));
    CU_ASSERT(cuMemAllocHost(reinterpret_cast<void**>(&pinned_), kSize));
    pattern_.resize(kSize);
    for (size_t i = 0; i < kSize; ++i) pattern_[i] = static_cast<uint8_t>((i * 131) >> 3);
  }
  void TearDown() override {
    if (stream_ != nullptr) (void)cuStreamDestroy(stream_);
    if (pinned_ != nullptr) (void)cuMemFreeHost(pinned_);
    if (a_ != 0) (void)cuMemFree(a_);
    if (b_ != 0) (void)cuMemFree(b_);
    DriverTest::TearDown();
  }

  std::vector<uint8_t> ReadBack(CUdeviceptr ptr, size_t size) {
    std::vector<uint8_t> out(size, 0xcd);
    EXPECT_EQ(CUDA_SUCCESS, cuMemcpyDtoH(out.data(), ptr, size));
    return out;
  }

  static constexpr size_t kSize = 3 * kMiB + 123;  // not a power of two on purpose
  CUdeviceptr a_ = 0;
  CUdeviceptr b_ = 0;
  CUstream stream_ = nullptr;
  uint8_t* pinned_ = nullptr;
  std::vector<uint8_t> pattern_;
};

TEST_F(CopyTest, HostToDeviceToHost) {
  CU_ASSERT(cuMemcpyHtoD(a_, pattern_.data(), kSize));
  EXPECT_EQ(ReadBack(a_, kSize), pattern_);
}

TEST_F(CopyTest, DeviceToDevice) {
  CU_ASSERT(cuMemcpyHtoD(a_, pattern_.data(), kSize));
  CU_ASSERT(cuMemcpyDtoD(b_, a_, kSize));
  EXPECT_EQ(ReadBack(b_, kSize), pattern_);
}

TEST_F(CopyTest, PartialCopiesAtOffsets) {
  CU_ASSERT(cuMemsetD8(a_, 0, kSize));
  CU_ASSERT(cuMemcpyHtoD(a_ + 1001, pattern_.data(), 5000));
  std::vector<uint8_t> expected(kSize, 0);
  memcpy(expected.data() + 1001, pattern_.data(), 5000);
  EXPECT_EQ(ReadBack(a_, kSize), expected);
  uint8_t middle[7] = {};
  CU_ASSERT(cuMemcpyDtoH(middle, a_ + 1003, sizeof(middle)));
  EXPECT_EQ(memcmp(middle, pattern_.data() + 2, sizeof(middle)), 0);
}

TEST_F(CopyTest, UnifiedMemcpyAcceptsHostAndDevicePointers) {
  // With unified addressing cuMemcpy infers each side's kind from the pointer.
  memcpy(pinned_, pattern_.data(), kSize);
  CU_ASSERT(cuMemcpy(a_, reinterpret_cast<CUdeviceptr>(pinned_), kSize));  // host to device
  CU_ASSERT(cuMemcpy(b_, a_, kSize));                                      // device to device
  std::vector<uint8_t> out(kSize, 0);
  CU_ASSERT(cuMemcpy(reinterpret_cast<CUdeviceptr>(out.data()), b_, kSize));  // to pageable
  EXPECT_EQ(out, pattern_);
}

TEST_F(CopyTest, AsyncCopiesInStreamOrder) {
  memcpy(pinned_, pattern_.data(), kSize);
  CU_ASSERT(cuMemcpyHtoDAsync(a_, pinned_, kSize, stream_));
  CU_ASSERT(cuMemcpyDtoDAsync(b_, a_, kSize, stream_));
  uint8_t* pinned_out = nullptr;
  CU_ASSERT(cuMemAllocHost(reinterpret_cast<void**>(&pinned_out), kSize));
  memset(pinned_out, 0, kSize);
  CU_ASSERT(cuMemcpyDtoHAsync(pinned_out, b_, kSize, stream_));
  CU_ASSERT(cuStreamSynchronize(stream_));
  EXPECT_EQ(memcmp(pinned_out, pattern_.data(), kSize), 0);
  CU_EXPECT(cuMemFreeHost(pinned_out));
}

TEST_F(CopyTest, UnifiedMemcpyAsync) {
  memcpy(pinned_, pattern_.data(), kSize);
  CU_ASSERT(cuMemcpyAsync(a_, reinterpret_cast<CUdeviceptr>(pinned_), kSize, stream_));
  CU_ASSERT(cuMemcpyAsync(b_, a_, kSize, stream_));
  CU_ASSERT(cuStreamSynchronize(stream_));
  EXPECT_EQ(ReadBack(b_, kSize), pattern_);
}

TEST_F(CopyTest, AsyncCopyOnLegacyStream) {
  memcpy(pinned_, pattern_.data(), kSize);
  CU_ASSERT(cuMemcpyHtoDAsync(a_, pinned_, kSize, nullptr));
  CU_ASSERT(cuStreamSynchronize(nullptr));
  EXPECT_EQ(ReadBack(a_, kSize), pattern_);
}

TEST_F(CopyTest, MemsetD8) {
  CU_ASSERT(cuMemsetD8(a_, 0x00, kSize));
  CU_ASSERT(cuMemsetD8(a_ + 10, 0xa5, 1000));
  std::vector<uint8_t> expected(kSize, 0);
  memset(expected.data() + 10, 0xa5, 1000);
  EXPECT_EQ(ReadBack(a_, kSize), expected);
}

TEST_F(CopyTest, MemsetD32CountsWords) {
  CU_ASSERT(cuMemsetD8(a_, 0x00, kSize));
  CU_ASSERT(cuMemsetD32(a_ + 8, 0xdeadbeefu, 100));  // 100 words = 400 bytes
  std::vector<uint32_t> words(128, 0xffffffffu);
  CU_ASSERT(cuMemcpyDtoH(words.data(), a_, words.size() * sizeof(uint32_t)));
  EXPECT_EQ(words[0], 0u);
  EXPECT_EQ(words[1], 0u);
  for (int i = 2; i < 102; ++i) EXPECT_EQ(words[i], 0xdeadbeefu) << i;
  EXPECT_EQ(words[102], 0u);
}

TEST_F(CopyTest, MemsetD32RejectsMisalignedPointer) {
  // Documented: dstDevice must be 4-byte aligned for 32-bit sets.
  CU_EXPECT_STATUS(CUDA_ERROR_INVALID_VALUE, cuMemsetD32(a_ + 2, 1, 4));
}

TEST_F(CopyTest, AsyncMemsets) {
  CU_ASSERT(cuMemsetD8Async(a_, 0x3c, kSize, stream_));
  CU_ASSERT(cuMemsetD32Async(b_, 0x01020304u, kSize / 4, stream_));
  CU_ASSERT(cuStreamSynchronize(stream_));
  EXPECT_EQ(ReadBack(a_, kSize), std::vector<uint8_t>(kSize, 0x3c));
  std::vector<uint32_t> words(kSize / 4);
  CU_ASSERT(cuMemcpyDtoH(words.data(), b_, words.size() * 4));
  EXPECT_EQ(words, std::vector<uint32_t>(kSize / 4, 0x01020304u));
}

TEST_F(CopyTest, CopiesWithNullPointersFail) {
  EXPECT_NE(CUDA_SUCCESS, cuMemcpyHtoD(0, pattern_.data(), 32));
  EXPECT_NE(CUDA_SUCCESS, cuMemcpyHtoD(a_, nullptr, 32));
  EXPECT_NE(CUDA_SUCCESS, cuMemcpyDtoH(nullptr, a_, 32));
}

TEST_F(CopyTest, ZeroByteCopiesSucceed) {
  CU_EXPECT(cuMemcpyHtoD(a_, pattern_.data(), 0));
  CU_EXPECT(cuMemcpyDtoH(pattern_.data(), a_, 0));
  CU_EXPECT(cuMemcpyDtoD(b_, a_, 0));
  CU_EXPECT(cuMemsetD8(a_, 0, 0));
}

}  // namespace
}  // namespace simcuda_test
