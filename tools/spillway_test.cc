// SPDX-License-Identifier: Apache-2.0
//
// Tests of the `spillway` command: its pieces as functions (the JSON reader, the statistics
// report, the `run` argument parsing, library lookup and LD_PRELOAD composition, the option
// listing, the help texts against docs/tools.md), then the built binary as a process.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/options.h"
#include "runtime/runtime.h"
#include "tools/help_text.h"
#include "tools/json.h"
#include "tools/option_listing.h"
#include "tools/run_command.h"
#include "tools/stats_report.h"

extern char** environ;

namespace spillway::tools {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::StartsWith;

// A two-device run that outgrew HBM, spilled to host memory and NVMe: the shape
// Runtime::StatsJson writes, devices in the order a map would not keep them. Device 1 has
// no measured link and no spills_unchanged or remap_ns (as written before the runtime had
// them).
constexpr std::string_view kSampleStats = R"({"version": 1, "total": {"allocations": 96,
"allocated_bytes": 103079215104, "device_bytes": 40802189312, "host_bytes": 53687091200,
"nvme_bytes": 8589934592, "peak_device_bytes": 84825604096, "h2d_bytes": 1319413953331,
"d2h_bytes": 1099511627776, "nvme_read_bytes": 64424509440, "nvme_write_bytes": 85899345920,
"fetches_on_demand": 503316, "fetches_prefetched": 125829, "evictions": 612000,
"spills": 40960, "stall_ns": 12345678901, "moves": 1282105, "spills_unchanged": 1234,
"remap_ns": 64105250000},
"devices": {
"1": {"hbm_limit_bytes": 42949672960, "chunk_bytes": 2097152, "policy": "lru", "stats":
{"allocations": 48, "allocated_bytes": 51539607552, "device_bytes": 20401094656,
"host_bytes": 26843545600, "nvme_bytes": 4294967296, "peak_device_bytes": 42412802048,
"h2d_bytes": 659706976665, "d2h_bytes": 549755813888, "nvme_read_bytes": 32212254720,
"nvme_write_bytes": 42949672960, "fetches_on_demand": 251658, "fetches_prefetched": 62914,
"evictions": 306000, "spills": 20480, "stall_ns": 6172839450, "moves": 641052}},
"0": {"hbm_limit_bytes": 42949672960, "chunk_bytes": 2097152, "policy": "lru",
"h2d_link_bytes_per_s": 25000000000, "d2h_link_bytes_per_s": 26000000000, "stats":
{"allocations": 48, "allocated_bytes": 51539607552, "device_bytes": 20401094656,
"host_bytes": 26843545600, "nvme_bytes": 4294967296, "peak_device_bytes": 42412802048,
"h2d_bytes": 659706976666, "d2h_bytes": 549755813888, "nvme_read_bytes": 32212254720,
"nvme_write_bytes": 42949672960, "fetches_on_demand": 251658, "fetches_prefetched": 62915,
"evictions": 306000, "spills": 20480, "stall_ns": 6172839451, "moves": 641053,
"spills_unchanged": 1234, "remap_ns": 32052650000}}}}
)";

std::string ErrorOf(const absl::Status& status) { return std::string(status.message()); }

template <typename T>
std::string ErrorOf(const absl::StatusOr<T>& value) {
  return ErrorOf(value.status());
}

// --- JSON ---

TEST(JsonTest, ReadsEveryKindOfValue) {
  absl::StatusOr<JsonValue> json =
      ParseJson(R"( {"a": [1, -2.5e3, true, false, null], "b": {"c": "d\n\u00e9\ud83d\ude00"}} )");
  ASSERT_TRUE(json.ok()) << ErrorOf(json);
  ASSERT_EQ(json->members().size(), 2u);
  const JsonValue* a = json->Find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->items().size(), 5u);
  EXPECT_EQ(a->items()[0].AsUint64(), 1u);
  EXPECT_EQ(a->items()[1].number_text(), "-2.5e3");
  EXPECT_TRUE(a->items()[2].bool_value());
  EXPECT_EQ(a->items()[4].type(), JsonValue::Type::kNull);
  EXPECT_EQ(json->Find("b")->Find("c")->string_value(), "d\n\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(json->Find("missing"), nullptr);
}

TEST(JsonTest, KeepsSixtyFourBitCountersExact) {
  EXPECT_EQ(ParseJson("18446744073709551615")->AsUint64(), 18446744073709551615u);
  EXPECT_EQ(ParseJson("18446744073709551616")->AsUint64(), std::nullopt);
  EXPECT_EQ(ParseJson("-1")->AsUint64(), std::nullopt);
  EXPECT_EQ(ParseJson("1.0")->AsUint64(), std::nullopt);
  EXPECT_EQ(ParseJson("1e3")->AsUint64(), std::nullopt);
  EXPECT_EQ(ParseJson("\"1\"")->AsUint64(), std::nullopt);
}

TEST(JsonTest, ErrorsSayWhereAndWhat) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"", "line 1, column 1: expected a JSON value (found the end of the text)"},
      {"{\"a\": 1,}", "line 1, column 9: expected a string as an object key (found '}')"},
      {"{\"a\": 1\n \"b\": 2}", "line 2, column 2: expected ',' or '}' after an object member"},
      {"{\"a\": 1, \"a\": 2}", "line 1, column 10: duplicate key \"a\""},
      {"[1, 2", "line 1, column 6: expected ',' or ']' after an array element"},
      {"01", "line 1, column 2: a number does not start with 0"},
      {"1.", "line 1, column 3: expected a digit after '.'"},
      {"-", "line 1, column 2: expected a digit"},
      {"\"abc", "line 1, column 5: unterminated string"},
      {"\"a\tb\"", "line 1, column 3: control character in a string"},
      {"\"\\x\"", "line 1, column 3: unknown escape in a string"},
      {"\"\\ud800\"", "line 1, column 2: high surrogate not followed by a low one"},
      {"\"\\udc00\"", "line 1, column 2: lone low surrogate"},
      {"\"\xff\"", "line 1, column 2: invalid UTF-8 in a string (found byte 0xff)"},
      {"\"\xc0\x80\"", "line 1, column 2: invalid UTF-8"},
      {"{} {}", "line 1, column 4: expected the end of the text after the JSON value"},
      {"tru", "line 1, column 1: expected a JSON value"},
      {"NaN", "line 1, column 1: expected a JSON value (found 'N')"},
  };
  for (const auto& [text, error] : cases) {
    absl::StatusOr<JsonValue> json = ParseJson(text);
    ASSERT_FALSE(json.ok()) << text;
    EXPECT_THAT(ErrorOf(json), StartsWith(std::string(error))) << text;
  }
}

TEST(JsonTest, RefusesDeepNesting) {
  EXPECT_TRUE(ParseJson(std::string(64, '[') + std::string(64, ']')).ok());
  absl::StatusOr<JsonValue> deep = ParseJson(std::string(65, '[') + std::string(65, ']'));
  ASSERT_FALSE(deep.ok());
  EXPECT_THAT(ErrorOf(deep), HasSubstr("nested deeper than 64 levels"));
  EXPECT_FALSE(ParseJson(std::string(100000, '[')).ok());  // no stack overflow
}

TEST(JsonTest, WritesIndentedAndReadsBack) {
  const std::string text = R"({"s": "q\"b\\c\u0001", "e": {}, "a": [], "n": [1, {"x": null}]})";
  absl::StatusOr<JsonValue> json = ParseJson(text);
  ASSERT_TRUE(json.ok()) << ErrorOf(json);
  const std::string written = WriteJson(*json);
  EXPECT_EQ(written, R"({
  "s": "q\"b\\c\u0001",
  "e": {},
  "a": [],
  "n": [
    1,
    {
      "x": null
    }
  ]
}
)");
  absl::StatusOr<JsonValue> again = ParseJson(written);
  ASSERT_TRUE(again.ok()) << ErrorOf(again);
  EXPECT_EQ(WriteJson(*again), written);
}

// --- Statistics ---

TEST(StatsReportTest, ReadsTheSample) {
  absl::StatusOr<StatsFile> stats = ParseStats(kSampleStats);
  ASSERT_TRUE(stats.ok()) << ErrorOf(stats);
  EXPECT_EQ(stats->version, 1u);
  EXPECT_EQ(stats->total.h2d_bytes, 1319413953331u);
  EXPECT_EQ(stats->total.stall_ns, 12345678901u);
  ASSERT_EQ(stats->devices.size(), 2u);
  EXPECT_EQ(stats->devices[0].ordinal, 0);  // sorted by ordinal
  EXPECT_EQ(stats->devices[0].stats.moves, 641053u);
  EXPECT_EQ(stats->devices[1].ordinal, 1);
  EXPECT_EQ(stats->devices[1].hbm_limit_bytes, 40 * kGiB);
  EXPECT_EQ(stats->devices[1].chunk_bytes, 2 * kMiB);
  EXPECT_EQ(stats->devices[1].policy, "lru");
  EXPECT_EQ(stats->devices[0].h2d_link_bytes_per_s, 25000000000u);
  EXPECT_EQ(stats->devices[0].d2h_link_bytes_per_s, 26000000000u);
  EXPECT_EQ(stats->devices[1].h2d_link_bytes_per_s, 0u);  // optional: absent reads as 0
  EXPECT_EQ(stats->devices[0].stats.remap_ns, 32052650000u);
  EXPECT_EQ(stats->devices[1].stats.remap_ns, 0u);  // a later counter: absent reads as 0
}

TEST(StatsReportTest, ReadsWhatTheRuntimeWrites) {
  // The runtime's own writer, with no device used yet: catches a renamed or dropped counter.
  absl::StatusOr<StatsFile> stats = ParseStats(Runtime::Get().StatsJson());
  ASSERT_TRUE(stats.ok()) << ErrorOf(stats);
  EXPECT_EQ(stats->total, StatsCounters{});
  EXPECT_THAT(stats->devices, IsEmpty());
}

TEST(StatsReportTest, SummarizesTheSample) {
  absl::StatusOr<StatsFile> stats = ParseStats(kSampleStats);
  ASSERT_TRUE(stats.ok()) << ErrorOf(stats);
  const std::string report = FormatStatsReport(*stats, "run.json");
  EXPECT_THAT(report, StartsWith("Spillway statistics: run.json (format 1, 2 devices)\n"));
  EXPECT_THAT(report, HasSubstr("  live at exit           96 allocations, 96.0 GiB requested\n"));
  EXPECT_THAT(report,
              HasSubstr("  resident at exit       HBM 38.0 GiB, host 50.0 GiB, NVMe 8.0 GiB\n"));
  EXPECT_THAT(report, HasSubstr("  peak HBM (sum)         79.0 GiB of 80.0 GiB limit (98.8%)\n"));
  EXPECT_THAT(report, HasSubstr("Data moved                     bytes    share\n"
                                "  host -> HBM  (H2D)         1.2 TiB    51.4%\n"
                                "  HBM -> host  (D2H)         1.0 TiB    42.8%\n"
                                "  NVMe -> host (read)       60.0 GiB     2.5%\n"
                                "  host -> NVMe (write)      80.0 GiB     3.3%\n"
                                "  total                      2.3 TiB\n"));
  EXPECT_THAT(report, HasSubstr("  fetched to HBM         629,145\n"
                                "    on demand            503,316 (80.0%)\n"
                                "    prefetched           125,829 (20.0%)\n"
                                "  evicted from HBM       612,000\n"
                                "  spilled to NVMe        40,960\n"
                                "  spill writes skipped   1,234\n"
                                "  moves completed        1,282,105\n"
                                "  stall time             12.346 s\n"
                                "  remap time             1 min 4.1 s (50.0 us a move)\n"));
  EXPECT_THAT(report, HasSubstr("  device 0: HBM limit 40.0 GiB, peak 39.5 GiB (98.8%), "
                                "chunk 2.0 MiB, policy lru\n"));
  EXPECT_THAT(report, HasSubstr("  device 1: "));
  EXPECT_THAT(report,
              HasSubstr("306,000 evictions, 20,480 spills, 1,234 unchanged, 641,053 moves"));
  EXPECT_THAT(report, HasSubstr("306,000 evictions, 20,480 spills, 0 unchanged, 641,052 moves"));
  EXPECT_THAT(report, HasSubstr("62,915 prefetched; stall 6.173 s, remap 32.053 s\n"));
  EXPECT_THAT(report, HasSubstr("62,914 prefetched; stall 6.173 s, remap 0 s\n"));
  EXPECT_LT(report.find("device 0:"), report.find("device 1:"));
  // Only device 0 has a measured link.
  const size_t link = report.find("    link measured: H2D 25.00 GB/s, D2H 26.00 GB/s\n");
  EXPECT_GT(link, report.find("device 0:"));
  EXPECT_LT(link, report.find("device 1:"));
  EXPECT_EQ(report.find("link measured", link + 20), std::string::npos);
  std::istringstream lines(report);
  for (std::string line; std::getline(lines, line);) EXPECT_LE(line.size(), 100u) << line;
}

TEST(StatsReportTest, SummarizesAnIdleRun) {
  StatsFile stats;
  const std::string report = FormatStatsReport(stats, "idle.json");
  EXPECT_THAT(report, HasSubstr("(format 1, 0 devices)"));
  EXPECT_THAT(report, HasSubstr("  host -> HBM  (H2D)             0 B        -\n"));
  EXPECT_THAT(report, HasSubstr("    on demand            0 (-)\n"));
  EXPECT_THAT(report, HasSubstr("  none: no device allocated managed memory\n"));
}

TEST(StatsReportTest, NormalizedJsonReadsBackTheSame) {
  absl::StatusOr<StatsFile> stats = ParseStats(kSampleStats);
  ASSERT_TRUE(stats.ok());
  const std::string normalized = WriteJson(StatsToJson(*stats));
  EXPECT_THAT(normalized, StartsWith("{\n  \"version\": 1,\n  \"total\": {\n"
                                     "    \"allocations\": 96,\n"));
  EXPECT_LT(normalized.find("\"0\": {"), normalized.find("\"1\": {"));
  absl::StatusOr<StatsFile> again = ParseStats(normalized);
  ASSERT_TRUE(again.ok()) << ErrorOf(again);
  EXPECT_EQ(*again, *stats);
  EXPECT_EQ(WriteJson(StatsToJson(*again)), normalized);
}

TEST(StatsReportTest, IgnoresMembersItDoesNotKnow) {
  absl::StatusOr<StatsFile> stats = ParseStats(
      R"({"version": 1, "host": "n1", "total": {"allocations": 1, "allocated_bytes": 0,
      "device_bytes": 0, "host_bytes": 0, "nvme_bytes": 0, "peak_device_bytes": 0,
      "h2d_bytes": 0, "d2h_bytes": 0, "nvme_read_bytes": 0, "nvme_write_bytes": 0,
      "fetches_on_demand": 0, "fetches_prefetched": 0, "evictions": 0, "spills": 0,
      "stall_ns": 0, "moves": 0, "new_counter": 5}, "devices": {}})");
  ASSERT_TRUE(stats.ok()) << ErrorOf(stats);
  EXPECT_EQ(stats->total.allocations, 1u);
}

TEST(StatsReportTest, SaysWhichMemberIsWrong) {
  const std::string good(kSampleStats);
  const auto replaced = [&](std::string_view from, std::string_view to) {
    std::string text = good;
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return text.replace(at, from.size(), to);
  };
  const std::pair<std::string, std::string_view> cases[] = {
      {"[]", "the top level: expected an object, found an array"},
      {"{}", "version: missing"},
      {replaced("\"version\": 1", "\"version\": 2"),
       "statistics format version 2 is not supported: this spillway reads version 1"},
      {replaced("\"version\": 1", "\"version\": \"1\""), "version: expected a number"},
      {replaced("\"allocations\": 96,", ""), "total.allocations: missing"},
      {replaced("\"spills\": 40960", "\"spills\": -1"),
       "total.spills: expected a whole number from 0 to 2^64-1, found -1"},
      {replaced("\"moves\": 1282105", "\"moves\": 1.5"), "total.moves: expected a whole number"},
      {replaced("\"1\": {", "\"01\": {"), "devices.01: expected a device ordinal"},
      {replaced("\"policy\": \"lru\"", "\"policy\": 1"),
       "devices.1.policy: expected a string, found a number"},
      {replaced("\"h2d_bytes\": 659706976665,", ""), "devices.1.stats.h2d_bytes: missing"},
      {replaced("\"devices\": {", "\"devices\": ["), "line "},
  };
  for (const auto& [text, error] : cases) {
    absl::StatusOr<StatsFile> stats = ParseStats(text);
    ASSERT_FALSE(stats.ok()) << text;
    EXPECT_THAT(ErrorOf(stats), HasSubstr(std::string(error))) << text;
  }
}

TEST(StatsReportTest, HumanUnits) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1024), "1.0 KiB");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(kMiB - 1), "1.0 MiB");
  EXPECT_EQ(HumanBytes(40 * kGiB), "40.0 GiB");
  EXPECT_EQ(HumanBytes(3 * kTiB / 2), "1.5 TiB");
  EXPECT_EQ(HumanBytes(UINT64_MAX), "16384.0 PiB");
  EXPECT_EQ(HumanDuration(0), "0 s");
  EXPECT_EQ(HumanDuration(850), "850 ns");
  EXPECT_EQ(HumanDuration(12345), "12.3 us");
  EXPECT_EQ(HumanDuration(999'999), "1.00 ms");
  EXPECT_EQ(HumanDuration(4'560'000), "4.56 ms");
  EXPECT_EQ(HumanDuration(1'234'000'000), "1.234 s");
  EXPECT_EQ(HumanDuration(125'000'000'000), "2 min 5.0 s");
  EXPECT_EQ(HumanDuration(7'500'000'000'000), "2 h 5 min");
  EXPECT_EQ(Percent(1, 3), "33.3%");
  EXPECT_EQ(Percent(0, 0), "-");
}

// --- spillway run: arguments ---

absl::StatusOr<RunRequest> Parse(std::vector<std::string> args) {
  return ParseRunArguments(args, "/work/dir");
}

TEST(RunArgumentsTest, FlagsBecomeVariables) {
  absl::StatusOr<RunRequest> request =
      Parse({"--hbm-limit", "40G", "--host-limit=50%", "--virtual-capacity", "--policy", "lru",
             "--", "./server", "--port", "8000"});
  ASSERT_TRUE(request.ok()) << ErrorOf(request);
  EXPECT_FALSE(request->help);
  EXPECT_THAT(request->variables,
              ElementsAre(Pair("SPILLWAY_HBM_LIMIT", "40G"), Pair("SPILLWAY_HOST_LIMIT", "50%"),
                          Pair("SPILLWAY_VIRTUAL_CAPACITY", "1"), Pair("SPILLWAY_POLICY", "lru")));
  EXPECT_EQ(request->library, "");
  EXPECT_THAT(request->command, ElementsAre("./server", "--port", "8000"));
}

TEST(RunArgumentsTest, CommandStartsAtFirstNonOption) {
  absl::StatusOr<RunRequest> request = Parse({"--chunk", "4M", "python", "-m", "--", "x"});
  ASSERT_TRUE(request.ok()) << ErrorOf(request);
  EXPECT_THAT(request->command, ElementsAre("python", "-m", "--", "x"));
  request = Parse({"--", "--weird-name", "--hbm-limit"});
  ASSERT_TRUE(request.ok()) << ErrorOf(request);
  EXPECT_THAT(request->command, ElementsAre("--weird-name", "--hbm-limit"));
  EXPECT_THAT(request->variables, IsEmpty());
}

TEST(RunArgumentsTest, PathsAreMadeAbsolute) {
  absl::StatusOr<RunRequest> request =
      Parse({"--stats", "out/run.json", "--log-file=../spw.log", "--nvme", "/mnt/nvme", "--lib",
             "lib/libspillway.so", "--hbm-limit", "1G", "true"});
  ASSERT_TRUE(request.ok()) << ErrorOf(request);
  EXPECT_THAT(request->variables, ElementsAre(Pair("SPILLWAY_STATS", "/work/dir/out/run.json"),
                                              Pair("SPILLWAY_LOG_FILE", "/work/spw.log"),
                                              Pair("SPILLWAY_NVME_PATH", "/mnt/nvme"),
                                              Pair("SPILLWAY_HBM_LIMIT", "1G")));
  EXPECT_EQ(request->library, "/work/dir/lib/libspillway.so");
}

TEST(RunArgumentsTest, Help) {
  for (const char* flag : {"--help", "-h"}) {
    absl::StatusOr<RunRequest> request = Parse({"--hbm-limit", "1G", flag});
    ASSERT_TRUE(request.ok()) << ErrorOf(request);
    EXPECT_TRUE(request->help);
  }
  // After the command starts, --help is the command's.
  absl::StatusOr<RunRequest> request = Parse({"ls", "--help"});
  ASSERT_TRUE(request.ok());
  EXPECT_FALSE(request->help);
}

TEST(RunArgumentsTest, UsageErrors) {
  const std::pair<std::vector<std::string>, std::string_view> cases[] = {
      {{}, "no command to run"},
      {{"--hbm-limit", "1G"}, "no command to run"},
      {{"--hbm-limit", "1G", "--"}, "no command to run"},
      {{"--hbm-limt", "1G", "true"}, "unknown option --hbm-limt"},
      {{"-x", "true"}, "unknown option -x"},
      {{"--hbm-limit"}, "--hbm-limit needs a value (SIZE|N%)"},
      {{"--lib"}, "--lib needs a value (PATH)"},
      {{"--hbm-limit=", "true"}, "--hbm-limit: the value is empty"},
      {{"--virtual-capacity=1", "true"}, "--virtual-capacity takes no value"},
      {{"--chunk", "2M", "--chunk=4M", "true"}, "--chunk is given twice (2M, then 4M)"},
      {{"--lib", "a", "--lib", "b", "true"}, "--lib is given twice"},
  };
  for (const auto& [args, error] : cases) {
    absl::StatusOr<RunRequest> request = Parse(args);
    ASSERT_FALSE(request.ok()) << error;
    EXPECT_THAT(ErrorOf(request),
                AllOf(HasSubstr(std::string(error)), HasSubstr("spillway run --help")));
  }
}

// --- spillway run: values ---

std::function<const char*(const char*)> FakeEnvironment(
    std::map<std::string, std::string> variables) {
  return [variables = std::move(variables)](const char* name) -> const char* {
    auto it = variables.find(name);
    return it == variables.end() ? nullptr : it->second.c_str();
  };
}

absl::Status Validate(std::vector<std::string> args,
                      std::map<std::string, std::string> environment = {}) {
  args.push_back("true");
  absl::StatusOr<RunRequest> request = Parse(args);
  EXPECT_TRUE(request.ok()) << ErrorOf(request);
  if (!request.ok()) return request.status();
  return ValidateRunOptions(*request, FakeEnvironment(std::move(environment)));
}

TEST(RunOptionsTest, GoodValuesPass) {
  EXPECT_TRUE(Validate({"--hbm-limit",
                        "40G",
                        "--host-limit",
                        "92.5%",
                        "--nvme",
                        "/tmp",
                        "--nvme-limit",
                        "1T",
                        "--nvme-queue-depth",
                        "32",
                        "--chunk",
                        "4MiB",
                        "--min-bytes",
                        "0",
                        "--policy",
                        "LRU",
                        "--virtual-capacity",
                        "--log",
                        "debug",
                        "--log-file",
                        "x.log",
                        "--stats",
                        "s.json"})
                  .ok());
}

TEST(RunOptionsTest, BadValueNamesFlagAndVariable) {
  absl::Status status = Validate({"--hbm-limit", "40X"});
  EXPECT_EQ(ErrorOf(status),
            "--hbm-limit: SPILLWAY_HBM_LIMIT=\"40X\": expected a size such as 40G, 512MiB or 80%");
  status = Validate({"--chunk", "50%", "--log", "loud"});
  EXPECT_THAT(ErrorOf(status), HasSubstr("--chunk: SPILLWAY_CHUNK=\"50%\": a percentage is not "
                                         "accepted here"));
  EXPECT_THAT(ErrorOf(status), HasSubstr("\n--log: SPILLWAY_LOG=\"loud\": expected one of off,"));
  status = Validate({"--policy", "belady"});
  EXPECT_THAT(ErrorOf(status),
              HasSubstr("--policy: SPILLWAY_POLICY=\"belady\": expected one of lru, learned"));
  EXPECT_TRUE(Validate({"--policy", "learned"}).ok());
}

TEST(RunOptionsTest, EnvironmentIsCheckedAndOverridden) {
  absl::Status status = Validate({}, {{"SPILLWAY_HBM_LIMIT", "lots"}});
  EXPECT_THAT(ErrorOf(status), AllOf(StartsWith("SPILLWAY_HBM_LIMIT=\"lots\""),
                                     HasSubstr("(from the environment)")));
  EXPECT_TRUE(Validate({"--hbm-limit", "40G"}, {{"SPILLWAY_HBM_LIMIT", "lots"}}).ok());
}

TEST(RunOptionsTest, CrossChecksSeeFlagsAndEnvironmentTogether) {
  EXPECT_THAT(ErrorOf(Validate({"--nvme-limit", "10G"})),
              HasSubstr("--nvme-limit: SPILLWAY_NVME_LIMIT=\"10G\": has no effect unless "
                        "SPILLWAY_NVME_PATH is set"));
  EXPECT_TRUE(Validate({"--nvme-limit", "10G"}, {{"SPILLWAY_NVME_PATH", "/mnt"}}).ok());
  EXPECT_TRUE(Validate({"--nvme", "/mnt"}, {{"SPILLWAY_NVME_LIMIT", "10G"}}).ok());
}

TEST(RunFlagsTest, EveryOptionHasOneFlagAndItsHelp) {
  std::vector<std::string> variables;
#define SPW_OPTION_VARIABLE(id, field, name, kind, default_value, unit, needs, doc) \
  variables.push_back(name);
  SPILLWAY_OPTIONS(SPW_OPTION_VARIABLE)
#undef SPW_OPTION_VARIABLE
  ASSERT_EQ(RunFlags().size(), variables.size());
  for (size_t i = 0; i < variables.size(); ++i) {
    EXPECT_EQ(RunFlags()[i].variable, variables[i]);
    const RunFlag* flag = FlagForVariable(variables[i]);
    ASSERT_NE(flag, nullptr) << variables[i];
    std::string usage = "\n    " + std::string(flag->flag);
    if (!flag->value_name.empty()) usage += " " + std::string(flag->value_name);
    EXPECT_THAT(RunHelp(), HasSubstr(usage + "\n")) << usage;
    EXPECT_THAT(RunHelp(), HasSubstr(variables[i])) << variables[i];
  }
}

// --- spillway run: library and LD_PRELOAD ---

TEST(LibraryTest, CandidatesFollowTheBinary) {
  EXPECT_THAT(
      LibraryCandidates("/opt/spw/build/tools/spillway"),
      ElementsAre("/opt/spw/build/interpose/libspillway.so", "/opt/spw/build/lib/libspillway.so",
                  "/opt/spw/build/tools/libspillway.so"));
}

TEST(LibraryTest, FlagThenEnvironmentThenNextToTheBinary) {
  std::vector<std::string> asked;
  const auto exists_only = [&](std::set<std::string> present) {
    return [&asked, present = std::move(present)](const std::string& path) {
      asked.push_back(path);
      return present.count(path) > 0;
    };
  };
  const std::string exe = "/usr/bin/spillway";
  EXPECT_EQ(*LocateLibrary("/a.so", "/b.so", exe, exists_only({"/a.so", "/b.so"})), "/a.so");
  EXPECT_EQ(*LocateLibrary("", "/b.so", exe, exists_only({"/a.so", "/b.so"})), "/b.so");
  EXPECT_EQ(*LocateLibrary("", "", exe,
                           exists_only({"/usr/lib/libspillway.so", "/usr/bin/libspillway.so"})),
            "/usr/lib/libspillway.so");

  // What the user names must exist: no quiet fall-through to another copy.
  absl::StatusOr<std::string> missing =
      LocateLibrary("/a.so", "", exe, exists_only({"/usr/lib/libspillway.so"}));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorOf(missing), "--lib /a.so: no such file");
  missing = LocateLibrary("", "/b.so", exe, exists_only({"/usr/lib/libspillway.so"}));
  EXPECT_EQ(ErrorOf(missing), "SPILLWAY_LIB=/b.so: no such file");

  asked.clear();
  missing = LocateLibrary("", "", exe, exists_only({}));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(asked, ElementsAre("/usr/interpose/libspillway.so", "/usr/lib/libspillway.so",
                                 "/usr/bin/libspillway.so"));
  for (const std::string& path : asked) EXPECT_THAT(ErrorOf(missing), HasSubstr(path));
  EXPECT_THAT(ErrorOf(missing), HasSubstr("--lib PATH"));
}

TEST(LdPreloadTest, OursFirstOthersKept) {
  EXPECT_EQ(*ComposeLdPreload("/x/libspillway.so", nullptr), "/x/libspillway.so");
  EXPECT_EQ(*ComposeLdPreload("/x/libspillway.so", ""), "/x/libspillway.so");
  EXPECT_EQ(*ComposeLdPreload("/x/libspillway.so", "libjemalloc.so.2"),
            "/x/libspillway.so:libjemalloc.so.2");
  // ld.so separates entries with colons or spaces; the result uses colons.
  EXPECT_EQ(*ComposeLdPreload("/x/libspillway.so", " /a/liba.so  /b/libb.so:/c/libc.so: "),
            "/x/libspillway.so:/a/liba.so:/b/libb.so:/c/libc.so");
  // No second interposer: ours again, or another build of it, is dropped.
  EXPECT_EQ(*ComposeLdPreload("/x/libspillway.so",
                              "/x/libspillway.so:/a/liba.so:/old/lib/libspillway.so"),
            "/x/libspillway.so:/a/liba.so");
}

TEST(LdPreloadTest, RefusesPathsItCannotCarry) {
  for (const char* library : {"/my dir/libspillway.so", "/a:b/libspillway.so"}) {
    absl::StatusOr<std::string> preload = ComposeLdPreload(library, nullptr);
    EXPECT_EQ(preload.status().code(), absl::StatusCode::kInvalidArgument) << library;
    EXPECT_THAT(ErrorOf(preload), HasSubstr("LD_PRELOAD cannot name"));
  }
}

TEST(ExecTest, ExitCodesLikeAShell) {
  EXPECT_EQ(ExecFailureExitCode(ENOENT), 127);
  EXPECT_EQ(ExecFailureExitCode(ENOTDIR), 127);
  EXPECT_EQ(ExecFailureExitCode(EACCES), 126);
  EXPECT_EQ(ExecFailureExitCode(ENOEXEC), 126);
}

// --- spillway options ---

TEST(OptionListingTest, ListsEveryOptionFromTheTable) {
  const std::string listing = OptionsListing();
  EXPECT_THAT(listing, HasSubstr("\nSPILLWAY_HBM_LIMIT  (spillway run --hbm-limit SIZE|N%)\n"
                                 "    default:  90%\n"
                                 "    unit:     bytes, or % of device memory\n"
                                 "    accepts:  a size such as 40G, 512MiB or 80%\n"
                                 "    The most HBM managed data may occupy;"));
  EXPECT_THAT(listing, HasSubstr("\nSPILLWAY_NVME_QUEUE_DEPTH  (spillway run --nvme-queue-depth "
                                 "N)\n    default:  8\n    unit:     requests\n"
                                 "    accepts:  a whole number from 1 to 4096\n"
                                 "    needs:    SPILLWAY_NVME_PATH\n"));
  EXPECT_THAT(listing, HasSubstr("\nSPILLWAY_VIRTUAL_CAPACITY  (spillway run --virtual-capacity)\n"
                                 "    default:  0\n    accepts:  0 or 1\n"));
  EXPECT_THAT(listing, HasSubstr("    default:  unset\n    unit:     directory\n"
                                 "    accepts:  any path\n"));
  EXPECT_THAT(listing, HasSubstr("    default:  warn\n    accepts:  one of off, error, warn, info, "
                                 "debug, trace\n"));
  for (const RunFlag& flag : RunFlags()) {
    EXPECT_THAT(listing, HasSubstr("\n" + std::string(flag.variable) + "  (spillway run "));
  }
  std::istringstream lines(listing);
  for (std::string line; std::getline(lines, line);) EXPECT_LE(line.size(), 80u) << line;
}

TEST(OptionListingTest, CheckReportsErrorsAndTypos) {
  const char* const environment[] = {"SPILLWAY_HBM_LIMT=40G", "SPILLWAY_LIB=/x.so", "PATH=/bin",
                                     nullptr};
  EnvironmentCheck check = CheckEnvironment(FakeEnvironment({}), environment);
  EXPECT_THAT(check.errors, IsEmpty());
  EXPECT_THAT(check.warnings, ElementsAre(HasSubstr("did you mean SPILLWAY_HBM_LIMIT?")));
  EXPECT_THAT(check.settings, HasSubstr("SPILLWAY_HBM_LIMIT"));

  check =
      CheckEnvironment(FakeEnvironment({{"SPILLWAY_CHUNK", "0"}, {"SPILLWAY_LOG", "x"}}), nullptr);
  EXPECT_THAT(check.errors, ElementsAre(StartsWith("SPILLWAY_CHUNK=\"0\": must be more than zero"),
                                        StartsWith("SPILLWAY_LOG=\"x\"")));
  EXPECT_EQ(check.settings, "");
}

// --- Help ---

TEST(HelpTest, ManPageSectionsAndWidth) {
  for (std::string_view help : {MainHelp(), RunHelp(), StatsHelp(), OptionsHelp()}) {
    for (const char* section : {"NAME\n", "\nSYNOPSIS\n", "\nDESCRIPTION\n", "\nOPTIONS\n",
                                "\nEXIT STATUS\n", "\nEXAMPLES\n"}) {
      EXPECT_THAT(help, HasSubstr(section)) << help.substr(0, 60);
    }
    std::istringstream lines{std::string(help)};
    for (std::string line; std::getline(lines, line);) EXPECT_LE(line.size(), 80u) << line;
  }
  EXPECT_THAT(RunHelp(), HasSubstr("\nENVIRONMENT\n"));
  EXPECT_THAT(VersionText(), ::testing::MatchesRegex("spillway [0-9]+\\.[0-9]+\\.[0-9]+"));
}

TEST(HelpTest, DocsCarryTheSameTexts) {
  std::ifstream file(SPW_SOURCE_DIR "/docs/tools.md");
  ASSERT_TRUE(file) << "docs/tools.md is missing";
  std::stringstream docs;
  docs << file.rdbuf();
  for (std::string_view help : {MainHelp(), RunHelp(), StatsHelp(), OptionsHelp()}) {
    EXPECT_THAT(docs.str(), HasSubstr("```text\n" + std::string(help) + "```\n"))
        << "docs/tools.md differs from the help text starting " << help.substr(0, 60);
  }
}

// --- The binary, as a process ---

struct Outcome {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class SpillwayProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/spillway_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string WriteFile(const std::string& name, std::string_view text, mode_t mode = 0644) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    chmod(path.c_str(), mode);
    return path;
  }

  // Runs `binary` with `args` in a clean environment (no SPILLWAY_*, no LD_PRELOAD) plus
  // `environment`, capturing its output.
  Outcome Run(const std::vector<std::string>& args,
              const std::map<std::string, std::string>& environment = {},
              const std::string& binary = SPW_SPILLWAY_BINARY) {
    std::vector<std::string> env;
    for (char** entry = environ; *entry != nullptr; ++entry) {
      const std::string_view text(*entry);
      if (text.starts_with("SPILLWAY_") || text.starts_with("LD_PRELOAD=")) continue;
      env.emplace_back(text);
    }
    for (const auto& [name, value] : environment) env.push_back(name + "=" + value);
    std::vector<char*> argv = {const_cast<char*>(binary.c_str())};
    for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (std::string& entry : env) envp.push_back(entry.data());
    envp.push_back(nullptr);

    const std::string out_path = dir_ + "/.out";
    const std::string err_path = dir_ + "/.err";
    const pid_t pid = fork();
    if (pid == 0) {
      const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (out < 0 || err < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(99);
      execve(argv[0], argv.data(), envp.data());
      _exit(98);
    }
    Outcome outcome;
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status)) << status;
    outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    outcome.out = Slurp(out_path);
    outcome.err = Slurp(err_path);
    return outcome;
  }

  static std::string Slurp(const std::string& path) {
    std::ifstream file(path);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }

  std::string dir_;
};

// A real shared library whose constructor says it was loaded: proof that the child ran
// with it preloaded, without needing libspillway.so.
constexpr std::string_view kPreloadMarker = "spillway-test-preload: loaded";

TEST_F(SpillwayProcessTest, RunSetsTheEnvironmentPreloadsAndPassesTheExitCodeThrough) {
  const Outcome outcome = Run({"run", "--hbm-limit", "40G", "--lib", SPW_TEST_PRELOAD, "--", "sh",
                               "-c", "echo $SPILLWAY_HBM_LIMIT; echo $LD_PRELOAD; exit 7"});
  EXPECT_EQ(outcome.exit_code, 7) << outcome.err;
  EXPECT_EQ(outcome.out, "40G\n" SPW_TEST_PRELOAD "\n");
  EXPECT_THAT(outcome.err, HasSubstr(kPreloadMarker));
}

TEST_F(SpillwayProcessTest, RunKeepsLdPreloadAndConsumesSpillwayLib) {
  const std::string other = WriteFile("libother.so", "not a library");
  const Outcome outcome =
      Run({"run", "--", "sh", "-c", "echo \"$LD_PRELOAD|${SPILLWAY_LIB-unset}|$SPILLWAY_LOG\""},
          {{"SPILLWAY_LIB", SPW_TEST_PRELOAD}, {"LD_PRELOAD", other}, {"SPILLWAY_LOG", "info"}});
  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, SPW_TEST_PRELOAD ":" + other + "|unset|info\n");
}

TEST_F(SpillwayProcessTest, RunFindsTheLibraryNextToItself) {
  const std::string bin = dir_ + "/bin";
  std::filesystem::create_directories(bin);
  std::filesystem::create_directories(dir_ + "/lib");
  std::filesystem::copy_file(SPW_SPILLWAY_BINARY, bin + "/spillway");
  const std::vector<std::string> args = {"run", "sh", "-c", "echo $LD_PRELOAD"};

  Outcome outcome = Run(args, {}, bin + "/spillway");
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_THAT(
      outcome.err,
      AllOf(HasSubstr("libspillway.so not found"), HasSubstr(dir_ + "/interpose/libspillway.so"),
            HasSubstr(dir_ + "/lib/libspillway.so"), HasSubstr(bin + "/libspillway.so")));
  EXPECT_EQ(outcome.out, "");

  std::filesystem::copy_file(SPW_TEST_PRELOAD, dir_ + "/lib/libspillway.so");
  outcome = Run(args, {}, bin + "/spillway");
  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, dir_ + "/lib/libspillway.so\n");
  EXPECT_THAT(outcome.err, HasSubstr(kPreloadMarker));
}

TEST_F(SpillwayProcessTest, RunRefusesABadValueBeforeStarting) {
  const Outcome outcome = Run(
      {"run", "--hbm-limit", "forty", "--lib", SPW_TEST_PRELOAD, "--", "sh", "-c", "echo started"});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_EQ(outcome.out, "");
  EXPECT_THAT(outcome.err, HasSubstr("spillway run: --hbm-limit: SPILLWAY_HBM_LIMIT=\"forty\""));
}

TEST_F(SpillwayProcessTest, RunRefusesABadEnvironment) {
  const Outcome outcome =
      Run({"run", "--lib", SPW_TEST_PRELOAD, "true"}, {{"SPILLWAY_MIN_BYTES", "-1"}});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_THAT(outcome.err, HasSubstr("SPILLWAY_MIN_BYTES=\"-1\""));
  EXPECT_THAT(outcome.err, HasSubstr("(from the environment)"));
}

TEST_F(SpillwayProcessTest, RunMissingOrUnrunnableCommand) {
  Outcome outcome = Run({"run", "--lib", SPW_TEST_PRELOAD, "--", "spillway-no-such-command"});
  EXPECT_EQ(outcome.exit_code, 127);
  EXPECT_THAT(outcome.err, HasSubstr("spillway-no-such-command: command not found"));

  outcome = Run({"run", "--lib", SPW_TEST_PRELOAD, "--", dir_ + "/missing"});
  EXPECT_EQ(outcome.exit_code, 127);
  EXPECT_THAT(outcome.err, HasSubstr("No such file or directory"));

  const std::string script = WriteFile("script.sh", "#!/bin/sh\necho hi\n", 0644);
  outcome = Run({"run", "--lib", SPW_TEST_PRELOAD, "--", script});
  EXPECT_EQ(outcome.exit_code, 126);
  EXPECT_THAT(outcome.err, HasSubstr("Permission denied"));

  outcome = Run({"run", "--lib", dir_ + "/nothing.so", "--", "true"});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_THAT(outcome.err, HasSubstr("--lib " + dir_ + "/nothing.so: no such file"));
}

TEST_F(SpillwayProcessTest, RunUsageErrors) {
  Outcome outcome = Run({"run", "--hbm-limit", "1G"});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_THAT(outcome.err, HasSubstr("no command to run"));
  outcome = Run({"run", "--bogus", "true"});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_THAT(outcome.err, HasSubstr("unknown option --bogus"));
}

TEST_F(SpillwayProcessTest, StatsSummarizesAFile) {
  const std::string path = WriteFile("run.json", kSampleStats);
  Outcome outcome = Run({"stats", path});
  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, FormatStatsReport(*ParseStats(kSampleStats), path));
  outcome = Run({"stats", "--json", path});
  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_EQ(outcome.out, WriteJson(StatsToJson(*ParseStats(kSampleStats))));
}

TEST_F(SpillwayProcessTest, StatsRefusesAMalformedFile) {
  const std::string path = WriteFile("bad.json", "{\"version\": 1,\n \"total\": {\"a\": 1,}}");
  Outcome outcome = Run({"stats", path});
  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_EQ(outcome.out, "");
  EXPECT_THAT(outcome.err, HasSubstr("spillway stats: " + path +
                                     ": line 2, column 19: expected "
                                     "a string as an object key"));
  outcome = Run({"stats", dir_ + "/absent.json"});
  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_THAT(outcome.err, HasSubstr("No such file or directory"));
  outcome = Run({"stats", dir_});
  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_THAT(outcome.err, HasSubstr("Is a directory"));
  outcome = Run({"stats"});
  EXPECT_EQ(outcome.exit_code, 2);
  outcome = Run({"stats", "--xml", path});
  EXPECT_EQ(outcome.exit_code, 2);
}

TEST_F(SpillwayProcessTest, OptionsListAndCheck) {
  Outcome outcome = Run({"options"});
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(outcome.out, OptionsListing());
  outcome = Run({"options", "--check"}, {{"SPILLWAY_HBM_LIMIT", "40G"}});
  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("40GiB"));
  outcome = Run({"options", "--check"}, {{"SPILLWAY_HBM_LIMIT", "40Q"}, {"SPILLWAY_CHUNKS", "1"}});
  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_THAT(outcome.err, HasSubstr("error: SPILLWAY_HBM_LIMIT=\"40Q\""));
  EXPECT_THAT(outcome.err, HasSubstr("warning: SPILLWAY_CHUNKS is not a Spillway option"));
}

TEST_F(SpillwayProcessTest, HelpAndVersion) {
  const std::pair<std::vector<std::string>, std::string_view> cases[] = {
      {{"--help"}, MainHelp()},       {{"help"}, MainHelp()},
      {{"run", "--help"}, RunHelp()}, {{"help", "run"}, RunHelp()},
      {{"stats", "-h"}, StatsHelp()}, {{"options", "--help"}, OptionsHelp()},
  };
  for (const auto& [args, text] : cases) {
    const Outcome outcome = Run(args);
    EXPECT_EQ(outcome.exit_code, 0) << args[0];
    EXPECT_EQ(outcome.out, text) << args[0];
  }
  Outcome outcome = Run({"--version"});
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(outcome.out, VersionText() + "\n");
  outcome = Run({});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_EQ(outcome.err, MainHelp());
  outcome = Run({"frobnicate"});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_THAT(outcome.err, HasSubstr("unknown command frobnicate"));
}

}  // namespace
}  // namespace spillway::tools
