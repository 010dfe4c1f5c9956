// SPDX-License-Identifier: Apache-2.0
//
// StatsReport: reads the statistics file the runtime writes at exit (SPILLWAY_STATS; the
// format is Runtime::StatsJson in runtime/runtime.cc) and turns it into the summary that
// `spillway stats` prints, or into normalized JSON for `spillway stats --json`.
//
// The format, version 1:
//   {"version": 1,
//    "total": {<counters>},
//    "devices": {"<ordinal>": {"hbm_limit_bytes": N, "chunk_bytes": N, "policy": "lru",
//                              "stats": {<counters>}}, ...}}
// where <counters> are the unsigned integers of SPW_STATS_COUNTERS below.
//
// Contract: ParseStats accepts a file of version 1 with every counter present as a whole
// number that fits in 64 bits, and returns InvalidArgument otherwise: for text that is not
// JSON, the position (from ParseJson); for JSON that is not a statistics file, the path of the
// first offending member ("devices.0.stats.h2d_bytes: missing"). Members it does not know are
// ignored, so a newer runtime that adds counters stays readable. Formatting never fails.
//
// Thread safety: free functions over values; safe from any thread.
#ifndef SPILLWAY_TOOLS_STATS_REPORT_H_
#define SPILLWAY_TOOLS_STATS_REPORT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/json.h"

namespace spillway::tools {

inline constexpr uint64_t kStatsFormatVersion = 1;

// The counters of one manager (or their sum), in the order the runtime writes them:
//   X(field) -- the JSON member and the field of StatsCounters share the name.
// Those of format version 1, which every file has:
#define SPW_STATS_V1_COUNTERS(X) \
  X(allocations)                 \
  X(allocated_bytes)             \
  X(device_bytes)                \
  X(host_bytes)                  \
  X(nvme_bytes)                  \
  X(peak_device_bytes)           \
  X(h2d_bytes)                   \
  X(d2h_bytes)                   \
  X(nvme_read_bytes)             \
  X(nvme_write_bytes)            \
  X(fetches_on_demand)           \
  X(fetches_prefetched)          \
  X(evictions)                   \
  X(spills)                      \
  X(stall_ns)                    \
  X(moves)
// Counters added since: a file written before them reads as 0.
#define SPW_STATS_LATER_COUNTERS(X) X(spills_unchanged) X(remap_ns)
#define SPW_STATS_COUNTERS(X) SPW_STATS_V1_COUNTERS(X) SPW_STATS_LATER_COUNTERS(X)

struct StatsCounters {
#define SPW_STATS_FIELD(field) uint64_t field = 0;
  SPW_STATS_COUNTERS(SPW_STATS_FIELD)
#undef SPW_STATS_FIELD

  friend bool operator==(const StatsCounters&, const StatsCounters&) = default;
};

struct DeviceStats {
  int ordinal = 0;
  uint64_t hbm_limit_bytes = 0;
  uint64_t chunk_bytes = 0;
  std::string policy;
  // The link as the runtime measured it, bytes per second (0: not measured, or a file
  // written before the runtime measured it).
  uint64_t h2d_link_bytes_per_s = 0;
  uint64_t d2h_link_bytes_per_s = 0;
  StatsCounters stats;

  friend bool operator==(const DeviceStats&, const DeviceStats&) = default;
};

struct StatsFile {
  uint64_t version = kStatsFormatVersion;
  StatsCounters total;
  std::vector<DeviceStats> devices;  // by ordinal

  friend bool operator==(const StatsFile&, const StatsFile&) = default;
};

// See the contract at the top.
absl::StatusOr<StatsFile> ParseStats(std::string_view text);
absl::StatusOr<StatsFile> StatsFromJson(const JsonValue& json);

// The readable summary `spillway stats` prints; `source` names the file in its first line.
std::string FormatStatsReport(const StatsFile& stats, std::string_view source);

// `stats` in the runtime's format, every member present, in the runtime's order.
JsonValue StatsToJson(const StatsFile& stats);

// 0 B, 512 B, 1.5 KiB, 40.0 GiB: binary units, one decimal above bytes (so columns align).
std::string HumanBytes(uint64_t bytes);
// 0 s, 850 ns, 12.3 us, 4.56 ms, 1.234 s, 2 min 5.0 s: three significant figures or so.
std::string HumanDuration(uint64_t nanoseconds);
// "45.0%" for part/whole, or "-" when whole is 0.
std::string Percent(uint64_t part, uint64_t whole);

}  // namespace spillway::tools

#endif  // SPILLWAY_TOOLS_STATS_REPORT_H_
