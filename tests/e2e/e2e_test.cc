// SPDX-License-Identifier: Apache-2.0
//
// End-to-end tests: each runs one of the programs in this folder (written only against
// cuda.h, linked against the toolkit's stub libcuda.so) as its own process on simcuda, with
// and without LD_PRELOAD=libspillway.so, and checks its exit status and output.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/process.h"
#include "tests/common/scratch_dir_test.h"

namespace {

using ::testing::HasSubstr;

using Result = spw_test::ProcessResult;

class E2eTest : public spw_test::ScratchDirTest {
 protected:
  // Runs `argv` with only the given environment (plus what finds simcuda), optionally
  // under LD_PRELOAD=libspillway.so.
  Result Run(std::vector<std::string> argv, std::map<std::string, std::string> env, bool preload) {
    env.emplace("LD_LIBRARY_PATH", SPW_SIMCUDA_DIR);
    // A destroyed stream handle used again aborts, as it may crash a GPU's driver.
    env.emplace("SIMCUDA_STRICT_STREAMS", "1");
    spw_test::ApplyPolicyUnderTest(&env);
    env.emplace("SIMCUDA_DEVICE_MEMORY", "64M");
    // Sanitizer builds: their runtime options reach the program too (see the Makefile).
    for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"}) {
      if (const char* value = std::getenv(name)) env.emplace(name, value);
    }
    if (preload) env["LD_PRELOAD"] = SPW_INTERPOSER;
    Result result = spw_test::RunProcess(argv, env, dir_);
    if (result.status == -1) ADD_FAILURE() << "cannot run " << argv[0];
    return result;
  }

  // The program's checksum line, or "" if it printed none.
  static std::string Checksum(const Result& r) {
    size_t at = r.out.find("checksum ");
    return at == std::string::npos ? "" : r.out.substr(at, 25);
  }
};

const std::map<std::string, std::string> kTiered = {{"SPILLWAY_HBM_LIMIT", "32M"}};

// The reference: the same program on a device big enough, no Spillway.
std::string* reference_checksum = nullptr;

class Oversubscribe : public E2eTest, public ::testing::WithParamInterface<const char*> {
 protected:
  std::string Reference() {
    if (reference_checksum == nullptr) {
      Result big =
          Run({SPW_OVERSUBSCRIBE, SPW_KERNELS, "direct"}, {{"SIMCUDA_DEVICE_MEMORY", "1G"}}, false);
      EXPECT_EQ(big.status, 0) << big.err;
      reference_checksum = new std::string(Checksum(big));
    }
    return *reference_checksum;
  }
};

TEST_P(Oversubscribe, FailsWithoutSpillway) {
  Result plain = Run({SPW_OVERSUBSCRIBE, SPW_KERNELS, GetParam()}, {}, false);
  EXPECT_EQ(plain.status, 3) << plain.err;  // out of memory
  EXPECT_THAT(plain.err, HasSubstr("CUDA_ERROR_OUT_OF_MEMORY"));
}

TEST_P(Oversubscribe, CompletesUnderSpillwayWithIdenticalBytes) {
  std::map<std::string, std::string> env = kTiered;
  env["SPILLWAY_STATS"] = dir_ + "/stats.json";
  Result tiered = Run({SPW_OVERSUBSCRIBE, SPW_KERNELS, GetParam()}, env, true);
  ASSERT_EQ(tiered.status, 0) << tiered.err;
  ASSERT_FALSE(Checksum(tiered).empty()) << tiered.out;
  EXPECT_EQ(Checksum(tiered), Reference());
  std::string stats = spw_test::ReadWholeFile(dir_ + "/stats.json");
  EXPECT_THAT(stats, HasSubstr("\"evictions\"")) << "no statistics written at exit";
  EXPECT_THAT(stats, ::testing::Not(HasSubstr("\"evictions\": 0,"))) << stats;
}

INSTANTIATE_TEST_SUITE_P(Paths, Oversubscribe,
                         ::testing::Values("direct", "procaddress", "dlopen", "ptsz"));

TEST_F(E2eTest, PointerArrayCopiedToTheDeviceIsFollowedWithoutFault) {
  Result r = Run({SPW_POINTER_ARRAY, SPW_KERNELS},
                 {{"SPILLWAY_HBM_LIMIT", "8M"}, {"SPILLWAY_MIN_BYTES", "1M"}}, true);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok"));
}

TEST_F(E2eTest, PointerArrayEscapingFromNvmeIsBroughtBack) {
  // Guarded data may leave for NVMe; escaped data never may. With these limits buffer 2 is
  // on NVMe when the table pointing to it is copied: the copy must bring it back first.
  Result r = Run({SPW_POINTER_ARRAY, SPW_KERNELS, "1", "2", "3"},
                 {{"SPILLWAY_HBM_LIMIT", "8M"},
                  {"SPILLWAY_HOST_LIMIT", "16M"},
                  {"SPILLWAY_NVME_PATH", dir_},
                  {"SPILLWAY_LOG", "debug"}},
                 true);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok"));
  EXPECT_THAT(r.err, HasSubstr("escaped while partly on NVMe"));
}

TEST_F(E2eTest, SeveralThreadsOnSeveralStreams) {
  Result r = Run({SPW_THREADS, SPW_KERNELS, "4"}, kTiered, true);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok"));
}

TEST_F(E2eTest, LookupsHandOutExactlyTheHookedVariants) {
  Result r = Run({SPW_DLSYM_PROBE}, {{"E2E_EXPECT_HOOKS", "1"}}, true);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok"));
}

TEST_F(E2eTest, LookupsWithoutSpillwayReachTheDriver) {
  Result r = Run({SPW_DLSYM_PROBE}, {}, false);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok"));
}

TEST_F(E2eTest, ManagedPointersLookLikeDeviceAllocations) {
  Result r = Run({SPW_QUERIES, SPW_KERNELS},
                 {{"SPILLWAY_HBM_LIMIT", "32M"}, {"SPILLWAY_HOST_LIMIT", "128M"}}, true);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok"));
}

// Weights advised through the C API keep a host copy when fetched; a copy or set into them
// afterwards must reach the host tier at the next eviction, through every entry-point path.
TEST_F(E2eTest, WritesToAdvisedWeightsSurviveTheirEviction) {
  for (const char* mode : {"direct", "procaddress", "ptsz"}) {
    SCOPED_TRACE(mode);
    Result r = Run({SPW_ADVICE_WRITE, SPW_KERNELS, mode}, kTiered, true);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("ok"));
  }
}

TEST_F(E2eTest, VirtualCapacityReportsTheTiers) {
  Result r = Run({SPW_QUERIES, SPW_KERNELS},
                 {{"SPILLWAY_HBM_LIMIT", "32M"},
                  {"SPILLWAY_HOST_LIMIT", "128M"},
                  {"SPILLWAY_VIRTUAL_CAPACITY", "1"},
                  {"E2E_VIRTUAL", "1"}},
                 true);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok"));
}

TEST_F(E2eTest, ForkChildStartsCleanAndParentGoesOn) {
  const std::string stats = dir_ + "/stats.json";
  std::map<std::string, std::string> env = {{"SPILLWAY_HBM_LIMIT", "32M"},
                                            {"SPILLWAY_STATS", stats}};
  // Under LeakSanitizer a fork child cannot see its parent's threads (the mover's among
  // them), so what they hold looks leaked at the child's exit: not a leak of ours.
  if (const char* asan = std::getenv("ASAN_OPTIONS")) {
    env["ASAN_OPTIONS"] = std::string(asan) + ":detect_leaks=0";
  }
  Result r = Run({SPW_FORK_CHILD}, env, true);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok"));
  EXPECT_THAT(spw_test::ReadWholeFile(stats), HasSubstr("\"total\""))
      << "the parent writes its statistics";
}

TEST_F(E2eTest, GraphCapturedOverManagedMemoryReplaysCorrectly) {
  // Twice the device, replayed 100 times. Captured data stays mapped (it escaped at capture:
  // an NVMe tier is on, so data that was not kept mapped would fault), and every replay is
  // inspected at cuGraphLaunch, which brings its data into HBM (fetches on demand).
  Result big =
      Run({SPW_GRAPH_REPLAY, SPW_KERNELS, "100"}, {{"SIMCUDA_DEVICE_MEMORY", "1G"}}, false);
  ASSERT_EQ(big.status, 0) << big.err;
  const std::string stats = dir_ + "/graph-stats.json";
  Result tiered = Run({SPW_GRAPH_REPLAY, SPW_KERNELS, "100"},
                      {{"SIMCUDA_DEVICE_MEMORY", "32M"},
                       {"SPILLWAY_HBM_LIMIT", "16M"},
                       {"SPILLWAY_HOST_LIMIT", "48M"},
                       {"SPILLWAY_NVME_PATH", dir_},
                       {"SPILLWAY_STATS", stats}},
                      true);
  ASSERT_EQ(tiered.status, 0) << tiered.err;
  EXPECT_EQ(Checksum(tiered), Checksum(big));
  EXPECT_FALSE(Checksum(tiered).empty());
  std::string json = spw_test::ReadWholeFile(stats);
  EXPECT_THAT(json, HasSubstr("\"fetches_on_demand\"")) << json;
  EXPECT_THAT(json, ::testing::Not(HasSubstr("\"fetches_on_demand\": 0,"))) << json;
}

TEST_F(E2eTest, BadSettingStopsTheProgramAtStartNamingTheVariable) {
  Result r =
      Run({SPW_OVERSUBSCRIBE, SPW_KERNELS, "direct"}, {{"SPILLWAY_HBM_LIMIT", "lots"}}, true);
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("SPILLWAY_HBM_LIMIT"));
  EXPECT_EQ(r.out, "");  // stopped before any work
}

TEST_F(E2eTest, BadSettingThroughCuGetProcAddressToo) {
  Result r =
      Run({SPW_OVERSUBSCRIBE, SPW_KERNELS, "procaddress"}, {{"SPILLWAY_MIN_BYTES", "-3"}}, true);
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("SPILLWAY_MIN_BYTES"));
}

}  // namespace
