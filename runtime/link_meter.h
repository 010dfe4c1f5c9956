// SPDX-License-Identifier: Apache-2.0
//
// What one direction of the host<->device link delivers, measured: seeded by a timed copy
// at start-up (Mover::Calibrate) and updated from the mover's own copies.
//
// Each sample is the bytes of one timed run of copies over the time the copy engine took
// for them (device events, not host clocks: a copy that waits behind the application's
// work is not counted as slow). The estimate is an exponentially weighted mean of the
// samples' rates, so it follows a link that slows down (another process's copies on the
// same engine, a throttled bus) within a few moves, while one odd sample moves it only a
// quarter of the way. Runs shorter than kMinBytes are ignored: fixed per-copy costs would
// dominate them.
//
// Thread safety: Add from one thread at a time (the mover's finisher); bytes_per_s from any.
#ifndef SPILLWAY_RUNTIME_LINK_METER_H_
#define SPILLWAY_RUNTIME_LINK_METER_H_

#include <atomic>
#include <cstdint>

namespace spillway {

class LinkMeter {
 public:
  static constexpr uint64_t kMinBytes = uint64_t{1} << 20;
  static constexpr double kWeight = 0.25;  // of a new sample

  // `bytes` crossed the link in `seconds` (engine time). Ignored when too small to tell.
  void Add(uint64_t bytes, double seconds);
  // The estimate in bytes per second; 0 before the first sample.
  double bytes_per_s() const { return rate_.load(std::memory_order_relaxed); }
  uint64_t samples() const { return samples_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> rate_{0};
  std::atomic<uint64_t> samples_{0};
};

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_LINK_METER_H_
