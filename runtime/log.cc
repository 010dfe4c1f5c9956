// SPDX-License-Identifier: Apache-2.0

#include "runtime/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace spillway {
namespace log_internal {

constinit std::atomic<int> g_log_level{static_cast<int>(LogLevel::kWarn)};

}  // namespace log_internal

namespace {

constinit std::atomic<int> g_log_fd{STDERR_FILENO};

std::string_view UpperName(LogLevel level) {
  switch (level) {
    case LogLevel::kOff:
      return "OFF";
    case LogLevel::kError:
      return "ERROR";
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kTrace:
      return "TRACE";
  }
  return "?";
}

// Writes all of [data, data + size) unless the descriptor fails; there is nowhere to report
// a failure of the log itself, so it is dropped.
void WriteFully(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t written = ::write(fd, data, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      return;
    }
    data += written;
    size -= static_cast<size_t>(written);
  }
}

// Appends to a fixed buffer, dropping what does not fit and remembering that it did.
class LineBuffer {
 public:
  // One byte of the buffer is kept back for the final newline.
  LineBuffer(char* data, size_t capacity) : data_(data), limit_(capacity - 1) {}

  void Append(std::string_view text) {
    const size_t room = limit_ - size_;
    if (text.size() > room) truncated_ = true;
    const size_t n = text.size() < room ? text.size() : room;
    std::memcpy(data_ + size_, text.data(), n);
    size_ += n;
  }
  void Append(char c) { Append(std::string_view(&c, 1)); }
  void MarkTruncated() { truncated_ = true; }

  // Ends the line: "..." over its last bytes if anything was dropped, then the newline.
  std::string_view Finish() {
    if (truncated_) {
      constexpr std::string_view kEllipsis = "...";
      if (size_ < kEllipsis.size()) size_ = kEllipsis.size();
      std::memcpy(data_ + size_ - kEllipsis.size(), kEllipsis.data(), kEllipsis.size());
    }
    data_[size_++] = '\n';
    return std::string_view(data_, size_);
  }

 private:
  char* data_;
  size_t limit_;
  size_t size_ = 0;
  bool truncated_ = false;
};

}  // namespace

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kOff:
      return "off";
    case LogLevel::kError:
      return "error";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kTrace:
      return "trace";
  }
  return "?";
}

void InitLogging(LogLevel level, int fd) {
  g_log_fd.store(fd, std::memory_order_relaxed);
  log_internal::g_log_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel CurrentLogLevel() {
  return static_cast<LogLevel>(log_internal::g_log_level.load(std::memory_order_relaxed));
}

int CurrentLogFd() { return g_log_fd.load(std::memory_order_relaxed); }

absl::StatusOr<int> OpenLogFile(const char* path) {
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open log file \"", path, "\""));
  }
  return fd;
}

namespace log_internal {

void VLog(LogLevel level, fmt::string_view format, fmt::format_args args) {
  // The message is formatted apart from the line so that each of its lines can be given the
  // prefix; formatting stops at the buffer's end, so a huge message costs no more than this.
  char message[kMaxLogLine];
  size_t message_size = 0;
  bool message_truncated = false;
  try {
    const auto result = fmt::vformat_to_n(message, sizeof(message), format, args);
    message_truncated = result.size > sizeof(message);
    message_size = message_truncated ? sizeof(message) : result.size;
  } catch (...) {
    // Only a bad dynamic width or precision gets here (the format string itself is checked
    // at compile time); the line still says where it came from.
    constexpr std::string_view kError = "<log message could not be formatted: ";
    std::memcpy(message, kError.data(), kError.size());
    const size_t format_size = std::min(format.size(), sizeof(message) - kError.size() - 1);
    std::memcpy(message + kError.size(), format.data(), format_size);
    message_size = kError.size() + format_size;
    message[message_size++] = '>';
  }
  std::string_view text(message, message_size);
  if (!message_truncated && !text.empty() && text.back() == '\n') text.remove_suffix(1);

  char prefix[64];
  const auto prefix_end =
      fmt::format_to_n(prefix, sizeof(prefix), "spillway[{}] {}: ", ::getpid(), UpperName(level));
  const std::string_view prefix_text(prefix, std::min(prefix_end.size, sizeof(prefix)));

  char line_storage[kMaxLogLine];
  LineBuffer line(line_storage, sizeof(line_storage));
  if (message_truncated) line.MarkTruncated();
  line.Append(prefix_text);
  for (size_t newline; (newline = text.find('\n')) != std::string_view::npos;) {
    line.Append(text.substr(0, newline + 1));
    line.Append(prefix_text);
    text.remove_prefix(newline + 1);
  }
  line.Append(text);
  const std::string_view out = line.Finish();
  WriteFully(g_log_fd.load(std::memory_order_relaxed), out.data(), out.size());
}

}  // namespace log_internal
}  // namespace spillway
