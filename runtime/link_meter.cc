// SPDX-License-Identifier: Apache-2.0
#include "runtime/link_meter.h"

namespace spillway {

void LinkMeter::Add(uint64_t bytes, double seconds) {
  if (bytes < kMinBytes || !(seconds > 0)) return;
  const double sample = static_cast<double>(bytes) / seconds;
  const double old = rate_.load(std::memory_order_relaxed);
  rate_.store(old == 0 ? sample : old + kWeight * (sample - old), std::memory_order_relaxed);
  samples_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace spillway
