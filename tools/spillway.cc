// SPDX-License-Identifier: Apache-2.0
//
// The `spillway` command: `run` starts a program under libspillway.so, `stats` summarizes the
// statistics a run leaves, `options` lists or checks the SPILLWAY_* settings. The usage is in
// help_text.cc and docs/tools.md; this file only dispatches and sets exit statuses.
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "tools/help_text.h"
#include "tools/json.h"
#include "tools/option_listing.h"
#include "tools/run_command.h"
#include "tools/stats_report.h"

extern char** environ;

namespace spillway::tools {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Every line of `message` prefixed with the command, as the runtime's own log lines are.
void PrintError(std::string_view command, std::string_view message) {
  std::fflush(stdout);
  size_t start = 0;
  while (start < message.size()) {
    size_t end = message.find('\n', start);
    if (end == std::string_view::npos) end = message.size();
    fmt::print(stderr, "{}: {}\n", command, message.substr(start, end - start));
    start = end + 1;
  }
}

void PrintError(std::string_view command, const absl::Status& status) {
  PrintError(command, std::string(status.message()));
}

int UsageError(std::string_view command, std::string_view message) {
  PrintError(command, fmt::format("{} (see {} --help)", message, command));
  return kExitUsage;
}

std::string CurrentDirectory() {
  std::vector<char> buffer(PATH_MAX);
  if (getcwd(buffer.data(), buffer.size()) == nullptr) return "/";
  return buffer.data();
}

std::string SelfPath() {
  std::vector<char> buffer(PATH_MAX + 1);
  const ssize_t length = readlink("/proc/self/exe", buffer.data(), PATH_MAX);
  if (length <= 0) return "";
  return std::string(buffer.data(), static_cast<size_t>(length));
}

bool IsRegularFile(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

const char* Getenv(const char* name) { return std::getenv(name); }

int RunMain(std::span<const std::string> args) {
  constexpr std::string_view kCommand = "spillway run";
  absl::StatusOr<RunRequest> request = ParseRunArguments(args, CurrentDirectory());
  if (!request.ok()) {
    PrintError(kCommand, request.status());
    return kExitUsage;
  }
  if (request->help) {
    fmt::print("{}", RunHelp());
    return 0;
  }
  if (absl::Status valid = ValidateRunOptions(*request, Getenv); !valid.ok()) {
    PrintError(kCommand, valid);
    return kExitUsage;
  }
  const char* from_env = std::getenv("SPILLWAY_LIB");
  absl::StatusOr<std::string> library = LocateLibrary(
      request->library, from_env == nullptr ? "" : from_env, SelfPath(), IsRegularFile);
  if (!library.ok()) {
    PrintError(kCommand, library.status());
    return kExitUsage;
  }
  absl::StatusOr<std::string> preload = ComposeLdPreload(*library, std::getenv("LD_PRELOAD"));
  if (!preload.ok()) {
    PrintError(kCommand, preload.status());
    return kExitUsage;
  }
  std::fflush(nullptr);
  return ExecRequest(*request, *preload);
}

int StatsMain(std::span<const std::string> args) {
  constexpr std::string_view kCommand = "spillway stats";
  bool json = false;
  bool options_done = false;
  std::vector<std::string> files;
  for (const std::string& arg : args) {
    if (!options_done && arg == "--") {
      options_done = true;
    } else if (!options_done && (arg == "-h" || arg == "--help")) {
      fmt::print("{}", StatsHelp());
      return 0;
    } else if (!options_done && arg == "--json") {
      json = true;
    } else if (!options_done && arg.size() > 1 && arg[0] == '-') {
      return UsageError(kCommand, fmt::format("unknown option {}", arg));
    } else {
      files.push_back(arg);
    }
  }
  if (files.size() != 1) {
    return UsageError(kCommand,
                      files.empty() ? "no statistics file given" : "one statistics file at a time");
  }
  const std::string& path = files[0];
  const std::string shown = path == "-" ? "standard input" : path;
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    struct stat info;
    if (stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
      PrintError(kCommand, fmt::format("{}: {}", path, std::strerror(EISDIR)));
      return kExitFailure;
    }
    std::ifstream file(path, std::ios::binary);
    if (!file) {
      PrintError(kCommand, fmt::format("{}: {}", path, std::strerror(errno)));
      return kExitFailure;
    }
    std::ostringstream contents;
    contents << file.rdbuf();
    if (file.bad()) {
      PrintError(kCommand, fmt::format("{}: read error", path));
      return kExitFailure;
    }
    text = std::move(contents).str();
  }
  absl::StatusOr<StatsFile> stats = ParseStats(text);
  if (!stats.ok()) {
    PrintError(kCommand, fmt::format("{}: {}", shown, std::string(stats.status().message())));
    return kExitFailure;
  }
  if (json) {
    fmt::print("{}", WriteJson(StatsToJson(*stats)));
  } else {
    fmt::print("{}", FormatStatsReport(*stats, shown));
  }
  return 0;
}

int OptionsMain(std::span<const std::string> args) {
  constexpr std::string_view kCommand = "spillway options";
  bool check = false;
  for (const std::string& arg : args) {
    if (arg == "-h" || arg == "--help") {
      fmt::print("{}", OptionsHelp());
      return 0;
    }
    if (arg != "--check") return UsageError(kCommand, fmt::format("unexpected argument {}", arg));
    check = true;
  }
  if (!check) {
    fmt::print("{}", OptionsListing());
    return 0;
  }
  const EnvironmentCheck result = CheckEnvironment(Getenv, environ);
  for (const std::string& warning : result.warnings) {
    fmt::print(stderr, "{}: warning: {}\n", kCommand, warning);
  }
  for (const std::string& error : result.errors) {
    fmt::print(stderr, "{}: error: {}\n", kCommand, error);
  }
  if (!result.errors.empty()) return kExitFailure;
  fmt::print("{}", result.settings);
  return 0;
}

int Main(std::span<const std::string> args) {
  constexpr std::string_view kCommand = "spillway";
  if (args.empty()) {
    std::fflush(stdout);
    fmt::print(stderr, "{}", MainHelp());
    return kExitUsage;
  }
  const std::string& command = args[0];
  const std::span<const std::string> rest = args.subspan(1);
  if (command == "-h" || command == "--help") {
    fmt::print("{}", MainHelp());
    return 0;
  }
  if (command == "--version") {
    fmt::print("{}\n", VersionText());
    return 0;
  }
  if (command == "run") return RunMain(rest);
  if (command == "stats") return StatsMain(rest);
  if (command == "options") return OptionsMain(rest);
  if (command == "help") {
    const std::string topic = rest.empty() ? "" : rest[0];
    if (rest.size() > 1) return UsageError(kCommand, "help takes one command at most");
    std::string_view text;
    if (topic.empty()) {
      text = MainHelp();
    } else if (topic == "run") {
      text = RunHelp();
    } else if (topic == "stats") {
      text = StatsHelp();
    } else if (topic == "options") {
      text = OptionsHelp();
    } else {
      return UsageError(kCommand, fmt::format("no help for {}", topic));
    }
    fmt::print("{}", text);
    return 0;
  }
  return UsageError(kCommand, fmt::format("unknown command {}", command));
}

}  // namespace
}  // namespace spillway::tools

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const int code = spillway::tools::Main(args);
  if (std::fflush(stdout) != 0 && code == 0) return 1;  // e.g. stdout a closed pipe
  return code;
}
