// SPDX-License-Identifier: Apache-2.0
//
// Options: every SPILLWAY_* setting, in one table (SPILLWAY_OPTIONS below), the only place an
// option is named. From that table come the typed `Options` struct, the reading of the
// environment, the one-screen listing (DescribeOptions) and docs/configuration.md
// (OptionsMarkdown; options_test keeps the committed file equal to it).
//
// Contract: LoadOptions returns every option parsed and checked against the others, or an
// InvalidArgument status with one line per bad variable that names it, quotes its value and
// says what is accepted; it never falls back to a default for a value it cannot read. An
// empty value counts as unset. Checks that need the device (SPILLWAY_CHUNK against the
// mapping granularity) are separate (Options::ValidateChunk), for when that is known.
//
// Preloading: nothing here runs before it is called. The table is constexpr data (no static
// constructors) and the environment is read only inside LoadOptionsFromEnvironment, which
// the runtime calls from its lazy initialisation, never from a constructor.
//
// Thread safety: every function is safe to call from any thread; LoadOptionsFromEnvironment
// calls getenv, which must not race with setenv.
#ifndef SPILLWAY_RUNTIME_OPTIONS_H_
#define SPILLWAY_RUNTIME_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/log.h"

namespace spillway {

inline constexpr uint64_t kKiB = uint64_t{1} << 10;
inline constexpr uint64_t kMiB = uint64_t{1} << 20;
inline constexpr uint64_t kGiB = uint64_t{1} << 30;
inline constexpr uint64_t kTiB = uint64_t{1} << 40;

// A size given either in bytes or as a share of a whole known only later (device memory,
// host RAM, free space on the NVMe file system).
class SizeSpec {
 public:
  constexpr SizeSpec() = default;  // 0 bytes
  static constexpr SizeSpec Bytes(uint64_t bytes) { return SizeSpec(bytes, false); }
  // REQUIRES: percent <= 100.
  static constexpr SizeSpec Percent(uint32_t percent) {
    return SizeSpec(uint64_t{percent} * 100, true);
  }
  // Hundredths of a percent, so 92.5% is PercentHundredths(9250). REQUIRES: <= 10000.
  static constexpr SizeSpec PercentHundredths(uint32_t hundredths) {
    return SizeSpec(hundredths, true);
  }

  constexpr bool is_percent() const { return percent_; }
  // REQUIRES: !is_percent().
  constexpr uint64_t bytes() const { return value_; }
  // REQUIRES: is_percent().
  constexpr uint32_t percent_hundredths() const { return static_cast<uint32_t>(value_); }

  // The bytes as given, or the share of `whole`, rounded down (exact: no floating point).
  constexpr uint64_t Resolve(uint64_t whole) const {
    if (!percent_) return value_;
    return whole / 10000 * value_ + whole % 10000 * value_ / 10000;
  }

  // As SPILLWAY_* accepts it: "90%", "92.5%", "2MiB", "1536KiB", "1000".
  std::string ToString() const;

  friend constexpr bool operator==(const SizeSpec&, const SizeSpec&) = default;

 private:
  constexpr SizeSpec(uint64_t value, bool percent) : value_(value), percent_(percent) {}

  uint64_t value_ = 0;  // bytes, or hundredths of a percent
  bool percent_ = false;
};

enum class PolicyKind { kLru, kLearned };

// The kinds of value an option takes. A kind fixes the C++ type of its field in Options, how
// its text is read, what an error says is accepted and how the docs show it (options.cc).
namespace option_kind {
struct Size {  // bytes, more than zero
  using Value = uint64_t;
};
struct SizeOrZero {  // bytes, zero allowed
  using Value = uint64_t;
};
struct SizeOrPercent {  // bytes or 0.01%..100% of a whole, more than zero
  using Value = SizeSpec;
};
struct Path {
  using Value = std::string;  // empty: unset
};
struct Bool {
  using Value = bool;
};
struct Count {  // a whole number from 1 to 4096
  using Value = int;
};
struct Level {
  using Value = LogLevel;
};
struct Policy {
  using Value = PolicyKind;
};
}  // namespace option_kind

// The options table. Each row is
//   X(id, field, name, kind, default, unit, needs, doc)
// id: its OptionId; field: its member of Options; name: the environment variable; kind: a
// type in option_kind; default: the field's value when the variable is unset; unit: what the
// number counts (docs); needs: the option that must also be set for this one to mean
// anything (kNone if none); doc: one line for docs/configuration.md.
// clang-format off
#define SPILLWAY_OPTIONS(X)                                                                       \
  X(kHbmLimit, hbm_limit, "SPILLWAY_HBM_LIMIT", SizeOrPercent, SizeSpec::Percent(90),             \
    "bytes, or % of device memory", kNone,                                                        \
    "The most HBM managed data may occupy; what does not fit waits in the host and NVMe "         \
    "tiers. The rest of the device is left to plain allocations and the CUDA libraries.")         \
  X(kHostLimit, host_limit, "SPILLWAY_HOST_LIMIT", SizeOrPercent, SizeSpec::Percent(50),          \
    "bytes, or % of host RAM", kNone,                                                             \
    "The most pinned host memory the host tier may hold; a percentage is of the host's "          \
    "physical memory.")                                                                           \
  X(kNvmePath, nvme_path, "SPILLWAY_NVME_PATH", Path, "", "directory", kNone,                     \
    "Directory for the NVMe tier's spill files, which are private to the process and leave "      \
    "nothing behind, even after a crash. The NVMe tier is on when this is set.")                  \
  X(kNvmeLimit, nvme_limit, "SPILLWAY_NVME_LIMIT", SizeOrPercent, SizeSpec::Percent(50),          \
    "bytes, or % of the file system's free space", kNvmePath,                                     \
    "The most the spill files may hold. A percentage is of the space free on the file system "    \
    "of SPILLWAY_NVME_PATH when the tier starts, so the default never fills the disk.")           \
  X(kNvmeQueueDepth, nvme_queue_depth, "SPILLWAY_NVME_QUEUE_DEPTH", Count, 8, "requests",         \
    kNvmePath, "NVMe reads and writes kept in flight at once (io_uring queue depth).")            \
  X(kChunk, chunk, "SPILLWAY_CHUNK", Size, 2 * kMiB, "bytes", kNone,                              \
    "The unit data moves between tiers in; a multiple of the device's mapping granularity "       \
    "(2 MiB on current GPUs), checked when the device is known.")                                 \
  X(kMinBytes, min_bytes, "SPILLWAY_MIN_BYTES", SizeOrZero, 1 * kMiB, "bytes", kNone,             \
    "Allocations smaller than this stay plain device memory, outside the tiers; 0 manages "       \
    "every allocation.")                                                                          \
  X(kPolicy, policy, "SPILLWAY_POLICY", Policy, PolicyKind::kLearned, "", kNone,                  \
    "Eviction and prefetch policy. `learned` learns the repeating launch sequence (a decode "     \
    "step), evicts by Belady's rule on it and fetches ahead of need; until HBM is first full it " \
    "costs nothing, and until a sequence repeats it evicts the least recently used allocation "   \
    "(docs/runtime.md, \"The learned policy\"). `lru` evicts the least recently used chunk and "  \
    "fetches on demand.")                                                                         \
  X(kPrefetchAhead, prefetch_ahead, "SPILLWAY_PREFETCH_AHEAD", SizeOrZero, 0, "bytes", kNone,     \
    "With the learned policy: bytes fetched ahead of the launches that need them, and in moves "  \
    "not yet done, at most; 0: what the measured link moves in 8 ms (at least a quarter of the "  \
    "widest launch), within an eighth of SPILLWAY_HBM_LIMIT (or the widest launch) and half of " \
    "it. More overlaps more of the link with compute, but constrains eviction (more bytes "      \
    "move): docs/runtime.md.")                                                                    \
  X(kVirtualCapacity, virtual_capacity, "SPILLWAY_VIRTUAL_CAPACITY", Bool, false, "", kNone,      \
    "1: report SPILLWAY_HBM_LIMIT plus the host tier as the device's memory, so that programs "   \
    "that size themselves from free memory plan for the tiers.")                                  \
  X(kLog, log_level, "SPILLWAY_LOG", Level, LogLevel::kWarn, "", kNone,                           \
    "Log level: lines of this severity and worse are written.")                                   \
  X(kLogFile, log_file, "SPILLWAY_LOG_FILE", Path, "", "file", kNone,                             \
    "File log lines are appended to (created if missing); unset: stderr.")                        \
  X(kStats, stats_path, "SPILLWAY_STATS", Path, "", "file", kNone,                                \
    "File the statistics are written to at exit, as JSON; unset: none are written.")              \
  X(kTrace, trace_path, "SPILLWAY_TRACE", Path, "", "file", kNone,                                \
    "File the access trace is written to (allocations, frees, what each launch names), for "      \
    "bench/trace_sim; unset: no trace.")
// clang-format on

enum class OptionId : int {
#define SPW_OPTION_ID(id, field, name, kind, default_value, unit, needs, doc) id,
  SPILLWAY_OPTIONS(SPW_OPTION_ID)
#undef SPW_OPTION_ID
      kCount,
  kNone = -1,
};

struct Options {
#define SPW_OPTION_FIELD(id, field, name, kind, default_value, unit, needs, doc) \
  option_kind::kind::Value field = default_value;
  SPILLWAY_OPTIONS(SPW_OPTION_FIELD)
#undef SPW_OPTION_FIELD

  // OK if `chunk` is a positive multiple of the device's mapping granularity, otherwise an
  // InvalidArgument naming SPILLWAY_CHUNK.
  absl::Status ValidateChunk(size_t granularity) const;

  friend bool operator==(const Options&, const Options&) = default;
};

// Reads every option through `getenv_fn` (name -> value, or nullptr when unset) and checks
// them together. See the contract at the top.
absl::StatusOr<Options> LoadOptions(const std::function<const char*(const char*)>& getenv_fn);

// LoadOptions over this process's environment.
absl::StatusOr<Options> LoadOptionsFromEnvironment();

// Sets one option from text, as LoadOptions would (for overrides through the C API); an empty
// value restores the default. NotFound for an unknown name, InvalidArgument for a bad value.
// Checks against other options (one that needs another) are LoadOptions' alone.
absl::Status SetOption(std::string_view name, std::string_view value, Options* options);

// One warning per variable in `environment` (a NULL-terminated "NAME=value" array, as the global
// `environ`) that looks like a Spillway option but is none: a name starting with SPILLWAY_ in
// any case that is not in the table. Each names the nearest option when one is close (a typo).
std::vector<std::string> UnknownVariables(const char* const* environment);

// The text of docs/configuration.md.
std::string OptionsMarkdown();

// Every option and its value, one per line, marking those at their default.
std::string DescribeOptions(const Options& options);

// The spellings SPILLWAY_LOG and SPILLWAY_POLICY accept ("warn", "lru"; any case).
absl::StatusOr<LogLevel> ParseLogLevel(std::string_view text);
std::string_view PolicyName(PolicyKind policy);

// Sizes as SPILLWAY_* reads them: digits, then optionally K, M, G or T (binary: 1K = 1024),
// then optionally B or iB, any case. The status message says what is wrong.
absl::StatusOr<uint64_t> ParseSize(std::string_view text);
// The shortest exact spelling ParseSize reads back: "2MiB", "1536KiB", "1000", "0".
std::string FormatSize(uint64_t bytes);

}  // namespace spillway

#endif  // SPILLWAY_RUNTIME_OPTIONS_H_
