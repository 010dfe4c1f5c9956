// SPDX-License-Identifier: Apache-2.0
//
// The options table: defaults, every accepted spelling, every kind of bad value and its
// message, options that contradict each other, misspelt variables, and docs/configuration.md
// kept equal to the table. Run with SPW_REGENERATE_DOCS=1 to rewrite that file.

#include "runtime/options.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace spillway {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A fake environment: LoadOptions sees exactly these variables.
absl::StatusOr<Options> Load(const std::map<std::string, std::string>& environment) {
  return LoadOptions([&environment](const char* name) -> const char* {
    const auto it = environment.find(name);
    return it == environment.end() ? nullptr : it->second.c_str();
  });
}

// The message LoadOptions gives for one bad variable.
std::string ErrorFor(const std::map<std::string, std::string>& environment) {
  const absl::StatusOr<Options> options = Load(environment);
  EXPECT_FALSE(options.ok());
  if (options.ok()) return "";
  EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(options.status().message());
}

TEST(OptionsTest, DefaultsWhenNothingIsSet) {
  const absl::StatusOr<Options> options = Load({});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(*options, Options{});
  EXPECT_EQ(options->hbm_limit, SizeSpec::Percent(90));
  EXPECT_EQ(options->host_limit, SizeSpec::Percent(50));
  EXPECT_EQ(options->nvme_path, "");
  EXPECT_EQ(options->nvme_limit, SizeSpec::Percent(50));
  EXPECT_EQ(options->nvme_queue_depth, 8);
  EXPECT_EQ(options->chunk, 2 * kMiB);
  EXPECT_EQ(options->min_bytes, 1 * kMiB);
  EXPECT_EQ(options->policy, PolicyKind::kLearned);
  EXPECT_FALSE(options->virtual_capacity);
  EXPECT_EQ(options->log_level, LogLevel::kWarn);
  EXPECT_EQ(options->log_file, "");
  EXPECT_EQ(options->stats_path, "");
}

TEST(OptionsTest, EmptyValueCountsAsUnset) {
  const absl::StatusOr<Options> options =
      Load({{"SPILLWAY_HBM_LIMIT", ""}, {"SPILLWAY_NVME_PATH", ""}, {"SPILLWAY_LOG", ""}});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(*options, Options{});
}

TEST(OptionsTest, EveryOptionIsRead) {
  const absl::StatusOr<Options> options = Load({
      {"SPILLWAY_HBM_LIMIT", "40G"},
      {"SPILLWAY_HOST_LIMIT", "75.5%"},
      {"SPILLWAY_NVME_PATH", "/mnt/nvme0/spill"},
      {"SPILLWAY_NVME_LIMIT", "2T"},
      {"SPILLWAY_NVME_QUEUE_DEPTH", "32"},
      {"SPILLWAY_CHUNK", "4MiB"},
      {"SPILLWAY_MIN_BYTES", "0"},
      {"SPILLWAY_POLICY", "lru"},
      {"SPILLWAY_VIRTUAL_CAPACITY", "1"},
      {"SPILLWAY_LOG", "debug"},
      {"SPILLWAY_LOG_FILE", "/tmp/spillway.log"},
      {"SPILLWAY_STATS", "/tmp/stats.json"},
  });
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->hbm_limit, SizeSpec::Bytes(40 * kGiB));
  EXPECT_EQ(options->host_limit, SizeSpec::PercentHundredths(7550));
  EXPECT_EQ(options->nvme_path, "/mnt/nvme0/spill");
  EXPECT_EQ(options->nvme_limit, SizeSpec::Bytes(2 * kTiB));
  EXPECT_EQ(options->nvme_queue_depth, 32);
  EXPECT_EQ(options->chunk, 4 * kMiB);
  EXPECT_EQ(options->min_bytes, 0u);
  EXPECT_EQ(options->policy, PolicyKind::kLru);
  EXPECT_TRUE(options->virtual_capacity);
  EXPECT_EQ(options->log_level, LogLevel::kDebug);
  EXPECT_EQ(options->log_file, "/tmp/spillway.log");
  EXPECT_EQ(options->stats_path, "/tmp/stats.json");
}

TEST(OptionsTest, EverySizeForm) {
  const std::vector<std::pair<std::string, uint64_t>> cases = {
      {"0", 0},
      {"4096", 4096},
      {"512B", 512},
      {"512b", 512},
      {"1k", kKiB},
      {"1K", kKiB},
      {"1KB", kKiB},
      {"1kb", kKiB},
      {"1KiB", kKiB},
      {"1kib", kKiB},
      {"1KIB", kKiB},
      {"2M", 2 * kMiB},
      {"512MiB", 512 * kMiB},
      {"40G", 40 * kGiB},
      {"40GB", 40 * kGiB},
      {"3T", 3 * kTiB},
      {"3TiB", 3 * kTiB},
      {" 8M\t", 8 * kMiB},
      {"16777215T", uint64_t{16777215} << 40},
      {"18446744073709551615", std::numeric_limits<uint64_t>::max()},
  };
  for (const auto& [text, bytes] : cases) {
    const absl::StatusOr<uint64_t> parsed = ParseSize(text);
    ASSERT_TRUE(parsed.ok()) << '"' << text << "\": " << parsed.status();
    EXPECT_EQ(*parsed, bytes) << text;
  }
}

TEST(OptionsTest, MalformedSizes) {
  for (const std::string text :
       {"", " ", "12Q", "G", "1.5G", "-1", "+1", "0x10", "1 G", "512iB", "1KiBB", "1KK", "1e6",
        "16777216T", "18446744073709551616", "99999999999999999999999"}) {
    EXPECT_FALSE(ParseSize(text).ok()) << '"' << text << '"';
  }
}

TEST(OptionsTest, FormatSizeReadsBack) {
  EXPECT_EQ(FormatSize(0), "0");
  EXPECT_EQ(FormatSize(1000), "1000");
  EXPECT_EQ(FormatSize(1536 * kKiB), "1536KiB");
  EXPECT_EQ(FormatSize(2 * kMiB), "2MiB");
  EXPECT_EQ(FormatSize(64 * kGiB), "64GiB");
  EXPECT_EQ(FormatSize(5 * kTiB), "5TiB");
  for (const uint64_t bytes : {uint64_t{1}, uint64_t{4095}, 3 * kMiB + kKiB, 7 * kTiB,
                               std::numeric_limits<uint64_t>::max()}) {
    EXPECT_EQ(ParseSize(FormatSize(bytes)).value(), bytes);
  }
}

TEST(OptionsTest, PercentagesAndResolve) {
  Options options;
  ASSERT_TRUE(SetOption("SPILLWAY_HBM_LIMIT", "80%", &options).ok());
  EXPECT_TRUE(options.hbm_limit.is_percent());
  EXPECT_EQ(options.hbm_limit.percent_hundredths(), 8000u);
  EXPECT_EQ(options.hbm_limit.Resolve(100 * kGiB), 80 * kGiB);

  ASSERT_TRUE(SetOption("SPILLWAY_HBM_LIMIT", "92.5%", &options).ok());
  EXPECT_EQ(options.hbm_limit, SizeSpec::PercentHundredths(9250));
  EXPECT_EQ(options.hbm_limit.Resolve(80 * kGiB), 74 * kGiB);

  ASSERT_TRUE(SetOption("SPILLWAY_HOST_LIMIT", "0.01%", &options).ok());
  EXPECT_EQ(options.host_limit, SizeSpec::PercentHundredths(1));
  EXPECT_EQ(options.host_limit.Resolve(9999), 0u);  // rounded down
  EXPECT_EQ(options.host_limit.Resolve(10000), 1u);

  ASSERT_TRUE(SetOption("SPILLWAY_HOST_LIMIT", "100%", &options).ok());
  EXPECT_EQ(options.host_limit.Resolve(std::numeric_limits<uint64_t>::max()),
            std::numeric_limits<uint64_t>::max());  // exact, no overflow

  EXPECT_EQ(SizeSpec::Percent(33).Resolve(100), 33u);
  EXPECT_EQ(SizeSpec::Percent(33).Resolve(99), 32u);
  EXPECT_EQ(SizeSpec::Bytes(4096).Resolve(1), 4096u);  // bytes are bytes, whatever the whole
  EXPECT_FALSE(SizeSpec::Bytes(4096).is_percent());
  EXPECT_EQ(SizeSpec::Bytes(4096).bytes(), 4096u);
}

TEST(OptionsTest, SizeSpecToStringReadsBack) {
  EXPECT_EQ(SizeSpec::Percent(90).ToString(), "90%");
  EXPECT_EQ(SizeSpec::PercentHundredths(9250).ToString(), "92.5%");
  EXPECT_EQ(SizeSpec::PercentHundredths(1).ToString(), "0.01%");
  EXPECT_EQ(SizeSpec::PercentHundredths(1234).ToString(), "12.34%");
  EXPECT_EQ(SizeSpec::Bytes(40 * kGiB).ToString(), "40GiB");
  for (const SizeSpec size : {SizeSpec::Percent(100), SizeSpec::PercentHundredths(1205),
                              SizeSpec::PercentHundredths(9999), SizeSpec::Bytes(12345)}) {
    Options options;
    ASSERT_TRUE(SetOption("SPILLWAY_HBM_LIMIT", size.ToString(), &options).ok());
    EXPECT_EQ(options.hbm_limit, size) << size.ToString();
  }
}

TEST(OptionsTest, BadValueMessageNamesVariableValueAndAcceptedForms) {
  EXPECT_EQ(ErrorFor({{"SPILLWAY_HBM_LIMIT", "12Q"}}),
            "SPILLWAY_HBM_LIMIT=\"12Q\": expected a size such as 40G, 512MiB or 80%");
}

TEST(OptionsTest, EachKindOfBadValue) {
  struct Case {
    std::string variable;
    std::string value;
    std::string says;  // the reason and accepted forms, after `NAME="value": `
  };
  const std::vector<Case> cases = {
      {"SPILLWAY_HBM_LIMIT", "0", "must be more than zero; expected a size such as 40G"},
      {"SPILLWAY_HBM_LIMIT", "0%", "must be more than zero; expected a size such as 40G"},
      {"SPILLWAY_HBM_LIMIT", "150%", "a percentage is at most 100%; expected a size such as"},
      {"SPILLWAY_HBM_LIMIT", "100.01%", "a percentage is at most 100%"},
      {"SPILLWAY_HOST_LIMIT", "12.345%", "a percentage has at most two decimals"},
      {"SPILLWAY_HOST_LIMIT", "%", "expected a size such as 40G, 512MiB or 80%"},
      {"SPILLWAY_HOST_LIMIT", "half", "expected a size such as 40G, 512MiB or 80%"},
      {"SPILLWAY_CHUNK", "0", "must be more than zero; expected a size such as 64G"},
      {"SPILLWAY_CHUNK", "50%", "a percentage is not accepted here; expected a size"},
      {"SPILLWAY_CHUNK", "99999999T", "too large; expected a size"},
      {"SPILLWAY_MIN_BYTES", "-1", "expected a size such as 1M, 64KiB or 0"},
      {"SPILLWAY_POLICY", "fifo", "expected one of lru, learned"},
      {"SPILLWAY_LOG", "verbose", "expected one of off, error, warn, info, debug, trace"},
      {"SPILLWAY_VIRTUAL_CAPACITY", "2", "expected 0 or 1"},
      {"SPILLWAY_VIRTUAL_CAPACITY", "maybe", "expected 0 or 1"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ErrorFor({{c.variable, c.value}}),
                AllOf(StartsWith(c.variable + "=\"" + c.value + "\": "), HasSubstr(c.says)))
        << c.variable << "=" << c.value;
  }
}

TEST(OptionsTest, QueueDepthRange) {
  const std::map<std::string, std::string> base = {{"SPILLWAY_NVME_PATH", "/mnt/nvme"}};
  for (const std::string bad : {"0", "4097", "-8", "8.5", "eight"}) {
    auto environment = base;
    environment["SPILLWAY_NVME_QUEUE_DEPTH"] = bad;
    EXPECT_THAT(ErrorFor(environment),
                AllOf(StartsWith("SPILLWAY_NVME_QUEUE_DEPTH=\"" + bad + "\": "),
                      HasSubstr("expected a whole number from 1 to 4096")));
  }
  auto environment = base;
  environment["SPILLWAY_NVME_QUEUE_DEPTH"] = "4096";
  EXPECT_EQ(Load(environment).value().nvme_queue_depth, 4096);
}

TEST(OptionsTest, ControlCharactersInValuesAreEscaped) {
  EXPECT_THAT(ErrorFor({{"SPILLWAY_LOG", "warn\x01"}}), HasSubstr("warn\\x01"));
  EXPECT_TRUE(Load({{"SPILLWAY_LOG", " warn\n"}}).ok());  // surrounding whitespace is ignored
  EXPECT_THAT(ErrorFor({{"SPILLWAY_LOG", "a\"b"}}), StartsWith("SPILLWAY_LOG=\"a\\\"b\""));
}

TEST(OptionsTest, EveryBadVariableIsReportedOnItsOwnLine) {
  const std::string message =
      ErrorFor({{"SPILLWAY_HBM_LIMIT", "12Q"}, {"SPILLWAY_LOG", "loud"}, {"SPILLWAY_CHUNK", "2M"}});
  EXPECT_EQ(message,
            "SPILLWAY_HBM_LIMIT=\"12Q\": expected a size such as 40G, 512MiB or 80%\n"
            "SPILLWAY_LOG=\"loud\": expected one of off, error, warn, info, debug, trace");
}

TEST(OptionsTest, NvmeSettingsWithoutNvmePathContradict) {
  EXPECT_EQ(ErrorFor({{"SPILLWAY_NVME_LIMIT", "100G"}}),
            "SPILLWAY_NVME_LIMIT=\"100G\": has no effect unless SPILLWAY_NVME_PATH is set; set "
            "both, or neither");
  EXPECT_THAT(
      ErrorFor({{"SPILLWAY_NVME_QUEUE_DEPTH", "16"}}),
      AllOf(StartsWith("SPILLWAY_NVME_QUEUE_DEPTH=\"16\": "), HasSubstr("SPILLWAY_NVME_PATH")));
  // An empty path is unset, so it does not satisfy the need either.
  EXPECT_THAT(ErrorFor({{"SPILLWAY_NVME_LIMIT", "100G"}, {"SPILLWAY_NVME_PATH", ""}}),
              HasSubstr("has no effect unless SPILLWAY_NVME_PATH is set"));

  const absl::StatusOr<Options> options =
      Load({{"SPILLWAY_NVME_LIMIT", "100G"}, {"SPILLWAY_NVME_PATH", "/mnt/nvme"}});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->nvme_limit, SizeSpec::Bytes(100 * kGiB));
}

TEST(OptionsTest, LevelsAndBooleansInAnyCase) {
  EXPECT_EQ(ParseLogLevel("TRACE").value(), LogLevel::kTrace);
  EXPECT_EQ(ParseLogLevel("off").value(), LogLevel::kOff);
  EXPECT_EQ(ParseLogLevel("Error").value(), LogLevel::kError);
  EXPECT_FALSE(ParseLogLevel("warning").ok());
  for (const LogLevel level : {LogLevel::kOff, LogLevel::kError, LogLevel::kWarn, LogLevel::kInfo,
                               LogLevel::kDebug, LogLevel::kTrace}) {
    EXPECT_EQ(ParseLogLevel(LogLevelName(level)).value(), level);
  }
  Options options;
  for (const std::string yes : {"1", "true", "TRUE", "yes", "on"}) {
    options.virtual_capacity = false;
    ASSERT_TRUE(SetOption("SPILLWAY_VIRTUAL_CAPACITY", yes, &options).ok());
    EXPECT_TRUE(options.virtual_capacity) << yes;
  }
  for (const std::string no : {"0", "false", "No", "off"}) {
    options.virtual_capacity = true;
    ASSERT_TRUE(SetOption("SPILLWAY_VIRTUAL_CAPACITY", no, &options).ok());
    EXPECT_FALSE(options.virtual_capacity) << no;
  }
  EXPECT_EQ(PolicyName(PolicyKind::kLru), "lru");
  EXPECT_EQ(PolicyName(PolicyKind::kLearned), "learned");
  ASSERT_TRUE(SetOption("SPILLWAY_POLICY", "Learned", &options).ok());
  EXPECT_EQ(options.policy, PolicyKind::kLearned);
}

TEST(OptionsTest, SetOption) {
  Options options;
  EXPECT_TRUE(SetOption("SPILLWAY_CHUNK", "8M", &options).ok());
  EXPECT_EQ(options.chunk, 8 * kMiB);
  EXPECT_TRUE(SetOption("SPILLWAY_CHUNK", "", &options).ok());  // back to the default
  EXPECT_EQ(options.chunk, 2 * kMiB);

  const absl::Status bad = SetOption("SPILLWAY_CHUNK", "8Q", &options);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), StartsWith("SPILLWAY_CHUNK=\"8Q\": expected a size"));
  EXPECT_EQ(options.chunk, 2 * kMiB);  // unchanged

  EXPECT_EQ(SetOption("SPILLWAY_CHUNKS", "8M", &options).code(), absl::StatusCode::kNotFound);
}

TEST(OptionsTest, ValidateChunkAgainstGranularity) {
  Options options;
  EXPECT_TRUE(options.ValidateChunk(2 * kMiB).ok());
  options.chunk = 8 * kMiB;
  EXPECT_TRUE(options.ValidateChunk(2 * kMiB).ok());
  EXPECT_TRUE(options.ValidateChunk(64 * kKiB).ok());

  options.chunk = 3 * kMiB;
  const absl::Status status = options.ValidateChunk(2 * kMiB);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "SPILLWAY_CHUNK=\"3MiB\": not a multiple of the device's mapping granularity, "
            "2MiB; expected a multiple of it such as 2MiB or 4MiB");

  options.chunk = 1 * kMiB;
  EXPECT_THAT(std::string(options.ValidateChunk(2 * kMiB).message()),
              HasSubstr("expected a multiple of it such as 2MiB"));
  EXPECT_FALSE(options.ValidateChunk(0).ok());
}

TEST(OptionsTest, UnknownVariablesAreWarningsWithSuggestions) {
  const char* environ[] = {
      "PATH=/usr/bin",
      "SPILLWAY_HBM_LIMIT=80%",
      "SPILLWAY_HBM_LIMT=80%",
      "spillway_log=debug",
      "SPILLWAY_NVMEPATH=/mnt",
      "SPILLWAY_FROBNICATE=1",
      "SPILLWAYS=1",
      "SPILLWAY_LOG",  // no '=': still a name
      nullptr,
  };
  EXPECT_THAT(
      UnknownVariables(environ),
      ElementsAre(
          "SPILLWAY_HBM_LIMT is not a Spillway option and is ignored; did you mean "
          "SPILLWAY_HBM_LIMIT?",
          "spillway_log is not a Spillway option and is ignored; did you mean SPILLWAY_LOG?",
          "SPILLWAY_NVMEPATH is not a Spillway option and is ignored; did you mean "
          "SPILLWAY_NVME_PATH?",
          "SPILLWAY_FROBNICATE is not a Spillway option and is ignored (docs/configuration.md "
          "lists the options)"));
  EXPECT_TRUE(UnknownVariables(nullptr).empty());

  // A typo is a warning, never an error: the options still load.
  EXPECT_TRUE(Load({{"SPILLWAY_HBM_LIMT", "80%"}}).ok());
}

TEST(OptionsTest, ReadsTheProcessEnvironmentWhenCalled) {
  ASSERT_EQ(setenv("SPILLWAY_MIN_BYTES", "64K", 1), 0);
  absl::StatusOr<Options> options = LoadOptionsFromEnvironment();
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->min_bytes, 64 * kKiB);

  ASSERT_EQ(setenv("SPILLWAY_MIN_BYTES", "64Q", 1), 0);
  EXPECT_THAT(std::string(LoadOptionsFromEnvironment().status().message()),
              StartsWith("SPILLWAY_MIN_BYTES=\"64Q\""));
  ASSERT_EQ(unsetenv("SPILLWAY_MIN_BYTES"), 0);
}

TEST(OptionsTest, DescribeOptionsListsEveryOptionAndMarksDefaults) {
  Options options;
  options.hbm_limit = SizeSpec::Bytes(40 * kGiB);
  options.nvme_path = "/mnt/nvme";
  const std::string listing = DescribeOptions(options);
  std::istringstream lines(listing);
  std::string line;
  std::getline(lines, line);
  EXPECT_THAT(line, HasSubstr("spillway options"));
  std::vector<std::string> rows;
  while (std::getline(lines, line)) rows.push_back(line);
  EXPECT_EQ(rows.size(), static_cast<size_t>(OptionId::kCount));
  EXPECT_THAT(listing, HasSubstr("SPILLWAY_HBM_LIMIT         40GiB\n"));
  EXPECT_THAT(listing, HasSubstr("SPILLWAY_NVME_PATH         /mnt/nvme\n"));
  EXPECT_THAT(listing, HasSubstr("SPILLWAY_HOST_LIMIT        50%  (default)\n"));
  EXPECT_THAT(listing, HasSubstr("SPILLWAY_LOG_FILE          unset  (default)\n"));
}

TEST(OptionsTest, MarkdownHasARowPerOption) {
  const std::string markdown = OptionsMarkdown();
  EXPECT_THAT(markdown, StartsWith("# Configuration\n"));
  EXPECT_THAT(markdown,
              HasSubstr("| `SPILLWAY_HBM_LIMIT` | size or % | `90%` | bytes, or % of device "
                        "memory | "));
  EXPECT_THAT(markdown, HasSubstr("| `SPILLWAY_LOG` | `off`, `error`, `warn`, `info`, `debug`, "
                                  "`trace` | `warn` |  | "));
  EXPECT_THAT(markdown, HasSubstr("| `SPILLWAY_NVME_PATH` | path | unset | directory | "));
  size_t rows = 0;
  for (size_t at = 0; (at = markdown.find("\n| `SPILLWAY_", at)) != std::string::npos; ++at) {
    ++rows;
  }
  EXPECT_EQ(rows, static_cast<size_t>(OptionId::kCount));
}

// docs/configuration.md is generated from the table; this keeps the committed file equal to it.
TEST(OptionsTest, ConfigurationDocMatchesTheTable) {
  const std::string path = SPW_SOURCE_DIR "/docs/configuration.md";
  const std::string expected = OptionsMarkdown();
  if (const char* regenerate = std::getenv("SPW_REGENERATE_DOCS");
      regenerate != nullptr && std::string(regenerate) == "1") {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << expected;
    out.close();
    ASSERT_TRUE(out.good()) << "cannot write " << path;
    GTEST_SKIP() << "wrote " << path;
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream actual;
  actual << in.rdbuf();
  if (actual.str() != expected) {
    char self[4096] = {};
    const ssize_t length = readlink("/proc/self/exe", self, sizeof(self) - 1);
    ADD_FAILURE() << path << " is not what the options table in runtime/options.h renders.\n"
                  << "Regenerate it with:\n  SPW_REGENERATE_DOCS=1 "
                  << (length > 0 ? self : "build/tests/options_test")
                  << " --gtest_filter=OptionsTest.ConfigurationDocMatchesTheTable\n"
                  << "Expected content:\n"
                  << expected;
  }
}

}  // namespace
}  // namespace spillway
