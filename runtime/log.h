// SPDX-License-Identifier: Apache-2.0
//
// Logging: `SPW_LOG(kWarn, "evicted {} chunks", n)` writes the line
// `spillway[<pid>] WARN: evicted 3 chunks` to one file descriptor (stderr until
// InitLogging says otherwise, e.g. a file named by SPILLWAY_LOG_FILE).
//
// Why this shape: the runtime logs from inside hooked driver calls, from the mover's threads
// and at times when the application's malloc may not be safe to call (a driver call made from
// inside an allocator, a fork child). So a log line never allocates, takes no lock and uses no
// stdio: it is formatted with fmt into a fixed buffer on the stack and written with a single
// write(2). A line is at most kMaxLogLine bytes (longer ones are cut and end in "..."), which
// is PIPE_BUF, so lines written by several threads or processes to one pipe or O_APPEND file
// never interleave. A message containing newlines becomes several lines, each prefixed.
//
// The level check is a relaxed atomic load: a disabled SPW_LOG costs a load and a compare and
// does not evaluate its arguments. The format string is checked at compile time.
//
// Thread safety: everything here may be called from any thread at any time, including before
// InitLogging (level warn, stderr). A line racing with InitLogging goes to either the old or
// the new descriptor. This module never closes a descriptor: the one it is given must stay
// open for as long as anything may log (the runtime never closes it).
#ifndef SPILLWAY_RUNTIME_LOG_H_
#define SPILLWAY_RUNTIME_LOG_H_

#include <fmt/core.h>

#include <atomic>
#include <cstddef>
#include <string_view>

#include "absl/status/statusor.h"

namespace spillway {

// Ordered by verbosity: a line is written when its level is at most the current level.
// kOff as the current level writes nothing; a line never has level kOff.
enum class LogLevel : int { kOff = 0, kError, kWarn, kInfo, kDebug, kTrace };

// Longest line written, newline included: PIPE_BUF on Linux, the most write(2) writes to a
// pipe atomically.
inline constexpr size_t kMaxLogLine = 4096;

// "off", "error", "warn", "info", "debug", "trace" (the spelling SPILLWAY_LOG accepts).
std::string_view LogLevelName(LogLevel level);

// Sets the level and the descriptor lines go to. REQUIRES: fd open for writing.
void InitLogging(LogLevel level, int fd);

LogLevel CurrentLogLevel();
int CurrentLogFd();

// Opens `path` for logging: created if missing (mode 0644), appended to (O_APPEND, so lines
// from several processes sharing the file do not overwrite each other), not inherited by
// exec'd children (O_CLOEXEC). The caller owns the descriptor.
absl::StatusOr<int> OpenLogFile(const char* path);

namespace log_internal {

// The current level, as an int; constant-initialised to kWarn, so logging works before
// InitLogging and during static initialisation.
extern std::atomic<int> g_log_level;

void VLog(LogLevel level, fmt::string_view format, fmt::format_args args);

template <typename... Args>
void Log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  VLog(level, format, fmt::make_format_args(args...));
}

}  // namespace log_internal

inline bool LogEnabled(LogLevel level) {
  const int current = log_internal::g_log_level.load(std::memory_order_relaxed);
  return level != LogLevel::kOff && static_cast<int>(level) <= current;
}

}  // namespace spillway

// SPW_LOG(kInfo, "fetched {} bytes in {} us", bytes, micros): level is an enumerator of
// spillway::LogLevel without its scope; the rest is an fmt format string and its arguments.
#define SPW_LOG(level, ...)                                                    \
  do {                                                                         \
    if (::spillway::LogEnabled(::spillway::LogLevel::level)) {                 \
      ::spillway::log_internal::Log(::spillway::LogLevel::level, __VA_ARGS__); \
    }                                                                          \
  } while (false)

#endif  // SPILLWAY_RUNTIME_LOG_H_
