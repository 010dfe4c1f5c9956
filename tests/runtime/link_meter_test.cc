// SPDX-License-Identifier: Apache-2.0
//
// The link meter's estimate: seeded by the first sample, then a weighted mean that follows
// a link that changes, deaf to runs too short to tell.
#include "runtime/link_meter.h"

#include <gtest/gtest.h>

namespace spillway {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

TEST(LinkMeterTest, FirstSampleSetsTheEstimate) {
  LinkMeter meter;
  EXPECT_EQ(meter.bytes_per_s(), 0);
  meter.Add(8 * kMiB, 0.004);
  EXPECT_DOUBLE_EQ(meter.bytes_per_s(), 8.0 * kMiB / 0.004);
  EXPECT_EQ(meter.samples(), 1u);
}

TEST(LinkMeterTest, LaterSamplesMoveItAQuarterOfTheWay) {
  LinkMeter meter;
  meter.Add(10 * kMiB, 1.0);  // 10 MiB/s
  meter.Add(2 * kMiB, 0.1);   // 20 MiB/s
  EXPECT_DOUBLE_EQ(meter.bytes_per_s(), 12.5 * kMiB);
  // A link that slows for good: within 10 % of the new rate after 10 samples.
  for (int i = 0; i < 10; ++i) meter.Add(5 * kMiB, 1.0);
  EXPECT_NEAR(meter.bytes_per_s(), 5.0 * kMiB, 0.1 * 5 * kMiB);
  EXPECT_EQ(meter.samples(), 12u);
}

TEST(LinkMeterTest, RunsTooShortToTellAreIgnored) {
  LinkMeter meter;
  meter.Add(LinkMeter::kMinBytes - 1, 1e-6);  // a few small copies: fixed costs dominate
  meter.Add(8 * kMiB, 0);                     // no time measured
  meter.Add(8 * kMiB, -1);
  EXPECT_EQ(meter.bytes_per_s(), 0);
  EXPECT_EQ(meter.samples(), 0u);
}

}  // namespace
}  // namespace spillway
