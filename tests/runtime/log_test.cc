// SPDX-License-Identifier: Apache-2.0
//
// Logging: the line format, level filtering (and that a filtered line evaluates nothing),
// truncation of long messages, multi-line messages, and whole lines from many threads.

#include "runtime/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace spillway {
namespace {

using ::testing::EndsWith;
using ::testing::StartsWith;

std::string Prefix(std::string_view level) {
  return "spillway[" + std::to_string(getpid()) + "] " + std::string(level) + ": ";
}

// Logging into a pipe whose read end never blocks, restoring stderr afterwards.
class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(pipe2(fds_, O_CLOEXEC), 0);
    ASSERT_EQ(fcntl(fds_[0], F_SETFL, O_NONBLOCK), 0);
    InitLogging(LogLevel::kInfo, fds_[1]);
  }
  void TearDown() override {
    InitLogging(LogLevel::kWarn, STDERR_FILENO);
    close(fds_[0]);
    close(fds_[1]);
  }

  // Everything written to the pipe so far.
  std::string Drain() {
    std::string out;
    char buffer[4096];
    for (;;) {
      const ssize_t n = read(fds_[0], buffer, sizeof(buffer));
      if (n > 0) {
        out.append(buffer, static_cast<size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        return out;
      }
    }
  }

  int fds_[2] = {-1, -1};
};

TEST_F(LogTest, LineFormat) {
  SPW_LOG(kInfo, "evicted {} chunks of {}", 3, "weights");
  EXPECT_EQ(Drain(), Prefix("INFO") + "evicted 3 chunks of weights\n");
  SPW_LOG(kError, "plain");
  SPW_LOG(kWarn, "{:#x}", 255);
  EXPECT_EQ(Drain(), Prefix("ERROR") + "plain\n" + Prefix("WARN") + "0xff\n");
}

TEST_F(LogTest, LevelFiltering) {
  int evaluated = 0;
  auto count = [&evaluated] { return ++evaluated; };
  SPW_LOG(kDebug, "not written {}", count());
  SPW_LOG(kTrace, "not written {}", count());
  SPW_LOG(kOff, "never written {}", count());
  EXPECT_EQ(evaluated, 0);  // a filtered line does not evaluate its arguments
  EXPECT_EQ(Drain(), "");

  InitLogging(LogLevel::kTrace, fds_[1]);
  EXPECT_EQ(CurrentLogLevel(), LogLevel::kTrace);
  EXPECT_EQ(CurrentLogFd(), fds_[1]);
  SPW_LOG(kTrace, "written {}", count());
  SPW_LOG(kOff, "never written {}", count());
  EXPECT_EQ(evaluated, 1);
  EXPECT_EQ(Drain(), Prefix("TRACE") + "written 1\n");

  InitLogging(LogLevel::kOff, fds_[1]);
  SPW_LOG(kError, "not even errors");
  EXPECT_EQ(Drain(), "");

  InitLogging(LogLevel::kError, fds_[1]);
  SPW_LOG(kError, "errors");
  SPW_LOG(kWarn, "but no warnings");
  EXPECT_EQ(Drain(), Prefix("ERROR") + "errors\n");
}

TEST_F(LogTest, LongMessageIsTruncatedToOneLine) {
  const std::string huge(100000, 'x');
  SPW_LOG(kInfo, "{}", huge);
  const std::string line = Drain();
  EXPECT_EQ(line.size(), kMaxLogLine);
  EXPECT_THAT(line, StartsWith(Prefix("INFO") + "xxxx"));
  EXPECT_THAT(line, EndsWith("xxx...\n"));
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1);

  // One that just fits is not cut.
  const std::string fits(kMaxLogLine - Prefix("INFO").size() - 1, 'y');
  SPW_LOG(kInfo, "{}", fits);
  EXPECT_EQ(Drain(), Prefix("INFO") + fits + "\n");
  SPW_LOG(kInfo, "{}z", fits);
  EXPECT_EQ(Drain(), Prefix("INFO") + fits.substr(0, fits.size() - 3) + "...\n");
}

TEST_F(LogTest, EveryLineOfAMessageIsPrefixed) {
  SPW_LOG(kWarn, "options:\n{}\n{}", "first", "second");
  EXPECT_EQ(Drain(), Prefix("WARN") + "options:\n" + Prefix("WARN") + "first\n" + Prefix("WARN") +
                         "second\n");
  SPW_LOG(kWarn, "trailing newline\n");
  EXPECT_EQ(Drain(), Prefix("WARN") + "trailing newline\n");
}

TEST_F(LogTest, RuntimeFormatErrorStillWritesALine) {
  // A format string chosen at run time is checked only then.
  SPW_LOG(kInfo, fmt::runtime("{:{}}"), 1, "wide");
  EXPECT_THAT(Drain(), StartsWith(Prefix("INFO") + "<log message could not be formatted"));
}

TEST(LogFileTest, LinesFromManyThreadsStayWhole) {
  char path[] = "/tmp/spillway_log_test_XXXXXX";
  const int placeholder = mkstemp(path);
  ASSERT_GE(placeholder, 0);
  close(placeholder);
  const absl::StatusOr<int> fd = OpenLogFile(path);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(fcntl(*fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  EXPECT_EQ(fcntl(*fd, F_GETFL) & O_APPEND, O_APPEND);
  InitLogging(LogLevel::kInfo, *fd);

  constexpr int kThreads = 8;
  constexpr int kLines = 500;
  const std::string padding(200, 'p');
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &padding] {
      for (int i = 0; i < kLines; ++i) SPW_LOG(kInfo, "thread {} line {} {}", t, i, padding);
    });
  }
  for (std::thread& thread : threads) thread.join();
  InitLogging(LogLevel::kWarn, STDERR_FILENO);
  close(*fd);

  std::string contents;
  {
    const int in = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT_GE(in, 0);
    char buffer[65536];
    ssize_t n;
    while ((n = read(in, buffer, sizeof(buffer))) > 0) contents.append(buffer, n);
    close(in);
  }
  unlink(path);

  std::vector<int> next_line(kThreads, 0);
  int lines = 0;
  for (const absl::string_view line : absl::StrSplit(contents, '\n', absl::SkipEmpty())) {
    ++lines;
    int thread = -1;
    int index = -1;
    const std::string expected_prefix = Prefix("INFO") + "thread ";
    ASSERT_TRUE(absl::StartsWith(line, expected_prefix)) << line;
    ASSERT_EQ(std::sscanf(std::string(line.substr(expected_prefix.size())).c_str(), "%d line %d",
                          &thread, &index),
              2)
        << line;
    ASSERT_TRUE(thread >= 0 && thread < kThreads) << line;
    EXPECT_EQ(index, next_line[thread]++) << "lines of one thread stay in order";
    EXPECT_TRUE(absl::EndsWith(line, padding)) << line;
  }
  EXPECT_EQ(lines, kThreads * kLines);
}

TEST(LogFileTest, OpenLogFileReportsTheError) {
  const absl::StatusOr<int> fd = OpenLogFile("/nonexistent-dir/spillway.log");
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(fd.status().message()), ::testing::HasSubstr("/nonexistent-dir"));
}

TEST(LogLevelTest, Names) {
  EXPECT_EQ(LogLevelName(LogLevel::kOff), "off");
  EXPECT_EQ(LogLevelName(LogLevel::kWarn), "warn");
  EXPECT_EQ(LogLevelName(LogLevel::kTrace), "trace");
  EXPECT_FALSE(LogEnabled(LogLevel::kOff));
}

}  // namespace
}  // namespace spillway
