// SPDX-License-Identifier: Apache-2.0
#include "tools/stats_report.h"

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>
#include <utility>

#include "absl/status/status.h"

namespace spillway::tools {
namespace {

absl::Status Invalid(std::string_view path, std::string_view what) {
  return absl::InvalidArgumentError(
      fmt::format("not a Spillway statistics file: {}: {}", path, what));
}

absl::StatusOr<const JsonValue*> Member(const JsonValue& object, std::string_view path,
                                        std::string_view key, JsonValue::Type type) {
  const std::string full = path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
  const JsonValue* value = object.Find(key);
  if (value == nullptr) return Invalid(full, "missing");
  if (value->type() != type) {
    return Invalid(full, fmt::format("expected {}, found {}", JsonTypeName(type),
                                     JsonTypeName(value->type())));
  }
  return value;
}

absl::StatusOr<uint64_t> Counter(const JsonValue& object, std::string_view path,
                                 std::string_view key) {
  absl::StatusOr<const JsonValue*> value = Member(object, path, key, JsonValue::Type::kNumber);
  if (!value.ok()) return value.status();
  std::optional<uint64_t> number = (*value)->AsUint64();
  if (!number) {
    return Invalid(
        fmt::format("{}.{}", path, key),
        fmt::format("expected a whole number from 0 to 2^64-1, found {}", (*value)->number_text()));
  }
  return *number;
}

absl::StatusOr<StatsCounters> CountersFromJson(const JsonValue& json, std::string_view path) {
  StatsCounters counters;
#define SPW_READ_COUNTER(field)                                   \
  {                                                               \
    absl::StatusOr<uint64_t> value = Counter(json, path, #field); \
    if (!value.ok()) return value.status();                       \
    counters.field = *value;                                      \
  }
  SPW_STATS_V1_COUNTERS(SPW_READ_COUNTER)
#define SPW_READ_LATER_COUNTER(field) \
  if (json.Find(#field) != nullptr) SPW_READ_COUNTER(field)
  SPW_STATS_LATER_COUNTERS(SPW_READ_LATER_COUNTER)
#undef SPW_READ_LATER_COUNTER
#undef SPW_READ_COUNTER
  return counters;
}

JsonValue CountersToJson(const StatsCounters& counters) {
  JsonValue object = JsonValue::Object();
#define SPW_WRITE_COUNTER(field) object.Add(#field, JsonValue::Uint(counters.field));
  SPW_STATS_COUNTERS(SPW_WRITE_COUNTER)
#undef SPW_WRITE_COUNTER
  return object;
}

// A device ordinal as the runtime writes it: "0", "1", ... (no sign, no leading zero).
std::optional<int> Ordinal(const std::string& key) {
  if (key.empty() || key.size() > 4 || (key.size() > 1 && key[0] == '0')) return std::nullopt;
  int value = 0;
  auto [end, error] = std::from_chars(key.data(), key.data() + key.size(), value, 10);
  if (error != std::errc() || end != key.data() + key.size() || value < 0) return std::nullopt;
  return value;
}

// 1234567 -> "1,234,567".
std::string Count(uint64_t value) {
  std::string digits = std::to_string(value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

// "label" padded to the report's label column.
std::string Line(std::string_view label, std::string_view value) {
  return fmt::format("  {:<22} {}\n", label, value);
}

std::string PeakLine(uint64_t peak, uint64_t limit) {
  if (limit == 0) return HumanBytes(peak);
  return fmt::format("{} of {} limit ({})", HumanBytes(peak), HumanBytes(limit),
                     Percent(peak, limit));
}

}  // namespace

std::string HumanBytes(uint64_t bytes) {
  constexpr std::array<std::string_view, 6> kUnits = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  size_t unit = 0;
  uint64_t scale = 1;
  while (unit + 1 < kUnits.size() && bytes / scale >= 1024) {
    scale <<= 10;
    ++unit;
  }
  const double value = static_cast<double>(bytes) / static_cast<double>(scale);
  // 1023.96 KiB would round to "1024.0 KiB": say "1.0 MiB" instead.
  if (value >= 1023.95 && unit + 1 < kUnits.size()) {
    return fmt::format("{:.1f} {}", value / 1024, kUnits[unit + 1]);
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

std::string HumanDuration(uint64_t ns) {
  if (ns == 0) return "0 s";
  if (ns < 1000) return fmt::format("{} ns", ns);
  const double value = static_cast<double>(ns);
  // Three significant figures; a figure that rounds up to the next unit moves to that unit.
  const auto scaled = [](double v, std::string_view unit) {
    if (v >= 99.95) return fmt::format("{:.0f} {}", v, unit);
    if (v >= 9.995) return fmt::format("{:.1f} {}", v, unit);
    return fmt::format("{:.2f} {}", v, unit);
  };
  if (value < 999.5e3) return scaled(value / 1e3, "us");
  if (value < 999.5e6) return scaled(value / 1e6, "ms");
  if (value < 59.9995e9) return fmt::format("{:.3f} s", value / 1e9);
  const uint64_t tenths = (ns + 50'000'000) / 100'000'000;  // rounded to 0.1 s
  const uint64_t minutes = tenths / 600;
  const uint64_t rest = tenths % 600;
  if (minutes < 60) return fmt::format("{} min {}.{} s", minutes, rest / 10, rest % 10);
  return fmt::format("{} h {} min", minutes / 60, minutes % 60);
}

std::string Percent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "-";
  return fmt::format("{:.1f}%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

absl::StatusOr<StatsFile> StatsFromJson(const JsonValue& json) {
  if (!json.is_object()) {
    return Invalid("the top level",
                   fmt::format("expected an object, found {}", JsonTypeName(json.type())));
  }
  StatsFile stats;
  absl::StatusOr<uint64_t> version = Counter(json, "", "version");
  if (!version.ok()) return version.status();
  if (*version != kStatsFormatVersion) {
    return absl::InvalidArgumentError(
        fmt::format("statistics format version {} is not supported: this spillway reads version {}",
                    *version, kStatsFormatVersion));
  }
  stats.version = *version;
  absl::StatusOr<const JsonValue*> total = Member(json, "", "total", JsonValue::Type::kObject);
  if (!total.ok()) return total.status();
  absl::StatusOr<StatsCounters> total_counters = CountersFromJson(**total, "total");
  if (!total_counters.ok()) return total_counters.status();
  stats.total = *total_counters;

  absl::StatusOr<const JsonValue*> devices = Member(json, "", "devices", JsonValue::Type::kObject);
  if (!devices.ok()) return devices.status();
  for (const auto& [key, device_json] : (*devices)->members()) {
    const std::string path = fmt::format("devices.{}", key);
    std::optional<int> ordinal = Ordinal(key);
    if (!ordinal) return Invalid(path, "expected a device ordinal (0, 1, ...) as the key");
    if (!device_json.is_object()) {
      return Invalid(path,
                     fmt::format("expected an object, found {}", JsonTypeName(device_json.type())));
    }
    DeviceStats device;
    device.ordinal = *ordinal;
    absl::StatusOr<uint64_t> limit = Counter(device_json, path, "hbm_limit_bytes");
    if (!limit.ok()) return limit.status();
    device.hbm_limit_bytes = *limit;
    absl::StatusOr<uint64_t> chunk = Counter(device_json, path, "chunk_bytes");
    if (!chunk.ok()) return chunk.status();
    device.chunk_bytes = *chunk;
    absl::StatusOr<const JsonValue*> policy =
        Member(device_json, path, "policy", JsonValue::Type::kString);
    if (!policy.ok()) return policy.status();
    device.policy = (*policy)->string_value();
    // Optional: files of runtimes that did not measure the link lack them.
    for (auto [key, field] : {std::pair{"h2d_link_bytes_per_s", &device.h2d_link_bytes_per_s},
                              std::pair{"d2h_link_bytes_per_s", &device.d2h_link_bytes_per_s}}) {
      if (device_json.Find(key) == nullptr) continue;
      absl::StatusOr<uint64_t> rate = Counter(device_json, path, key);
      if (!rate.ok()) return rate.status();
      *field = *rate;
    }
    absl::StatusOr<const JsonValue*> counters =
        Member(device_json, path, "stats", JsonValue::Type::kObject);
    if (!counters.ok()) return counters.status();
    absl::StatusOr<StatsCounters> device_counters =
        CountersFromJson(**counters, fmt::format("{}.stats", path));
    if (!device_counters.ok()) return device_counters.status();
    device.stats = *device_counters;
    stats.devices.push_back(std::move(device));
  }
  std::sort(stats.devices.begin(), stats.devices.end(),
            [](const DeviceStats& a, const DeviceStats& b) { return a.ordinal < b.ordinal; });
  return stats;
}

absl::StatusOr<StatsFile> ParseStats(std::string_view text) {
  absl::StatusOr<JsonValue> json = ParseJson(text);
  if (!json.ok()) return json.status();
  return StatsFromJson(*json);
}

JsonValue StatsToJson(const StatsFile& stats) {
  JsonValue devices = JsonValue::Object();
  for (const DeviceStats& device : stats.devices) {
    JsonValue object = JsonValue::Object();
    object.Add("hbm_limit_bytes", JsonValue::Uint(device.hbm_limit_bytes));
    object.Add("chunk_bytes", JsonValue::Uint(device.chunk_bytes));
    object.Add("policy", JsonValue::String(device.policy));
    object.Add("h2d_link_bytes_per_s", JsonValue::Uint(device.h2d_link_bytes_per_s));
    object.Add("d2h_link_bytes_per_s", JsonValue::Uint(device.d2h_link_bytes_per_s));
    object.Add("stats", CountersToJson(device.stats));
    devices.Add(std::to_string(device.ordinal), std::move(object));
  }
  JsonValue json = JsonValue::Object();
  json.Add("version", JsonValue::Uint(stats.version));
  json.Add("total", CountersToJson(stats.total));
  json.Add("devices", std::move(devices));
  return json;
}

std::string FormatStatsReport(const StatsFile& stats, std::string_view source) {
  const StatsCounters& t = stats.total;
  std::string out =
      fmt::format("Spillway statistics: {} (format {}, {} device{})\n\n", source, stats.version,
                  stats.devices.size(), stats.devices.size() == 1 ? "" : "s");

  uint64_t limit = 0;
  for (const DeviceStats& device : stats.devices) limit += device.hbm_limit_bytes;
  out += "Managed memory\n";
  out += Line("live at exit",
              fmt::format("{} allocation{}, {} requested", Count(t.allocations),
                          t.allocations == 1 ? "" : "s", HumanBytes(t.allocated_bytes)));
  out +=
      Line("resident at exit", fmt::format("HBM {}, host {}, NVMe {}", HumanBytes(t.device_bytes),
                                           HumanBytes(t.host_bytes), HumanBytes(t.nvme_bytes)));
  out += Line(stats.devices.size() > 1 ? "peak HBM (sum)" : "peak HBM",
              PeakLine(t.peak_device_bytes, limit));

  const std::pair<std::string_view, uint64_t> links[] = {
      {"host -> HBM  (H2D)", t.h2d_bytes},
      {"HBM -> host  (D2H)", t.d2h_bytes},
      {"NVMe -> host (read)", t.nvme_read_bytes},
      {"host -> NVMe (write)", t.nvme_write_bytes},
  };
  uint64_t moved = 0;
  for (const auto& [name, bytes] : links) moved += bytes;
  out += fmt::format("\nData moved{:>26}{:>9}\n", "bytes", "share");
  for (const auto& [name, bytes] : links) {
    out += fmt::format("  {:<22}{:>12}{:>9}\n", name, HumanBytes(bytes), Percent(bytes, moved));
  }
  out += fmt::format("  {:<22}{:>12}\n", "total", HumanBytes(moved));

  const uint64_t fetches = t.fetches_on_demand + t.fetches_prefetched;
  out += "\nChunks\n";
  out += Line("fetched to HBM", Count(fetches));
  out += Line("  on demand", fmt::format("{} ({})", Count(t.fetches_on_demand),
                                         Percent(t.fetches_on_demand, fetches)));
  out += Line("  prefetched", fmt::format("{} ({})", Count(t.fetches_prefetched),
                                          Percent(t.fetches_prefetched, fetches)));
  out += Line("evicted from HBM", Count(t.evictions));
  out += Line("spilled to NVMe", Count(t.spills));
  out += Line("spill writes skipped", Count(t.spills_unchanged));
  out += Line("moves completed", Count(t.moves));
  out += Line("stall time", HumanDuration(t.stall_ns));
  // What a move costs beyond its copies: launches held for the move wait for it too.
  out += Line("remap time", t.moves == 0 ? HumanDuration(t.remap_ns)
                                         : fmt::format("{} ({} a move)", HumanDuration(t.remap_ns),
                                                       HumanDuration(t.remap_ns / t.moves)));

  out += "\nDevices\n";
  if (stats.devices.empty()) out += "  none: no device allocated managed memory\n";
  for (const DeviceStats& device : stats.devices) {
    const StatsCounters& s = device.stats;
    const std::string indent(4, ' ');
    out += fmt::format("  device {}: HBM limit {}, peak {} ({}), chunk {}, policy {}\n",
                       device.ordinal, HumanBytes(device.hbm_limit_bytes),
                       HumanBytes(s.peak_device_bytes),
                       Percent(s.peak_device_bytes, device.hbm_limit_bytes),
                       HumanBytes(device.chunk_bytes), device.policy);
    out += fmt::format("{}{} allocation{} ({}); resident HBM {}, host {}, NVMe {}\n", indent,
                       Count(s.allocations), s.allocations == 1 ? "" : "s",
                       HumanBytes(s.allocated_bytes), HumanBytes(s.device_bytes),
                       HumanBytes(s.host_bytes), HumanBytes(s.nvme_bytes));
    out += fmt::format("{}moved H2D {}, D2H {}, NVMe read {}, NVMe write {}\n", indent,
                       HumanBytes(s.h2d_bytes), HumanBytes(s.d2h_bytes),
                       HumanBytes(s.nvme_read_bytes), HumanBytes(s.nvme_write_bytes));
    out += fmt::format("{}fetches {} on demand, {} prefetched; stall {}, remap {}\n", indent,
                       Count(s.fetches_on_demand), Count(s.fetches_prefetched),
                       HumanDuration(s.stall_ns), HumanDuration(s.remap_ns));
    out +=
        fmt::format("{}{} evictions, {} spills, {} unchanged, {} moves\n", indent,
                    Count(s.evictions), Count(s.spills), Count(s.spills_unchanged), Count(s.moves));
    if (device.h2d_link_bytes_per_s != 0 || device.d2h_link_bytes_per_s != 0) {
      out += fmt::format("{}link measured: H2D {:.2f} GB/s, D2H {:.2f} GB/s\n", indent,
                         device.h2d_link_bytes_per_s / 1e9, device.d2h_link_bytes_per_s / 1e9);
    }
  }
  return out;
}

}  // namespace spillway::tools
