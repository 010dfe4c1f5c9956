// SPDX-License-Identifier: Apache-2.0
#include "tools/run_command.h"

#include <fmt/core.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>

#include "runtime/options.h"

namespace spillway::tools {
namespace {

constexpr std::string_view kLibraryName = "libspillway.so";

// In the order of SPILLWAY_OPTIONS; run_command_test checks that every option has its flag.
constexpr std::array<RunFlag, 14> kRunFlags = {{
    {"--hbm-limit", "SPILLWAY_HBM_LIMIT", "SIZE|N%", false},
    {"--host-limit", "SPILLWAY_HOST_LIMIT", "SIZE|N%", false},
    {"--nvme", "SPILLWAY_NVME_PATH", "DIR", true},
    {"--nvme-limit", "SPILLWAY_NVME_LIMIT", "SIZE|N%", false},
    {"--nvme-queue-depth", "SPILLWAY_NVME_QUEUE_DEPTH", "N", false},
    {"--chunk", "SPILLWAY_CHUNK", "SIZE", false},
    {"--min-bytes", "SPILLWAY_MIN_BYTES", "SIZE", false},
    {"--policy", "SPILLWAY_POLICY", "NAME", false},
    {"--prefetch-ahead", "SPILLWAY_PREFETCH_AHEAD", "SIZE", false},
    {"--virtual-capacity", "SPILLWAY_VIRTUAL_CAPACITY", "", false},
    {"--log", "SPILLWAY_LOG", "LEVEL", false},
    {"--log-file", "SPILLWAY_LOG_FILE", "FILE", true},
    {"--stats", "SPILLWAY_STATS", "FILE", true},
    {"--trace", "SPILLWAY_TRACE", "FILE", true},
}};
static_assert(kRunFlags.size() == static_cast<size_t>(OptionId::kCount),
              "every SPILLWAY_* option needs a `spillway run` flag");

constexpr std::string_view kLibFlag = "--lib";

absl::Status Usage(std::string_view message) {
  return absl::InvalidArgumentError(
      fmt::format("{} (spillway run --help shows the usage)", message));
}

std::string Absolute(std::string_view path, std::string_view cwd) {
  if (path.empty() || path.front() == '/') return std::string(path);
  return (std::filesystem::path(cwd) / path).lexically_normal().string();
}

bool IsPreloadSeparator(char c) { return c == ':' || c == ' ' || c == '\t' || c == '\n'; }

std::string_view Basename(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::span<const RunFlag> RunFlags() { return kRunFlags; }

const RunFlag* FlagForVariable(std::string_view variable) {
  for (const RunFlag& flag : kRunFlags) {
    if (flag.variable == variable) return &flag;
  }
  return nullptr;
}

absl::StatusOr<RunRequest> ParseRunArguments(std::span<const std::string> args,
                                             std::string_view cwd) {
  RunRequest request;
  bool lib_given = false;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "-h" || arg == "--help") {
      RunRequest help;
      help.help = true;
      return help;
    }
    // The command starts at the first argument that is no option, as with env(1) and nice(1).
    if (arg.empty() || arg[0] != '-' || arg == "-") break;

    const size_t equals = arg.find('=');
    const std::string name = arg.substr(0, equals);
    std::optional<std::string> inline_value;
    if (equals != std::string::npos) inline_value = arg.substr(equals + 1);

    const RunFlag* flag = nullptr;
    for (const RunFlag& candidate : kRunFlags) {
      if (candidate.flag == name) flag = &candidate;
    }
    if (flag == nullptr && name != kLibFlag) {
      return Usage(fmt::format("unknown option {}", name));
    }
    const std::string_view value_name = flag != nullptr ? flag->value_name : "PATH";
    std::string value = "1";
    if (!value_name.empty()) {
      if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return Usage(fmt::format("{} needs a value ({})", name, value_name));
      }
      if (value.empty()) return Usage(fmt::format("{}: the value is empty", name));
    } else if (inline_value) {
      return Usage(fmt::format("{} takes no value", name));
    }

    if (flag == nullptr) {  // --lib
      if (lib_given) return Usage("--lib is given twice");
      lib_given = true;
      request.library = Absolute(value, cwd);
      continue;
    }
    for (const auto& [variable, earlier] : request.variables) {
      if (variable == flag->variable) {
        return Usage(fmt::format("{} is given twice ({}, then {})", flag->flag, earlier, value));
      }
    }
    request.variables.emplace_back(flag->variable, flag->is_path ? Absolute(value, cwd) : value);
  }
  request.command.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  if (request.command.empty()) {
    return Usage("no command to run: spillway run [OPTIONS] [--] COMMAND [ARGS...]");
  }
  return request;
}

absl::Status ValidateRunOptions(const RunRequest& request,
                                const std::function<const char*(const char*)>& getenv_fn) {
  const absl::StatusOr<Options> options = LoadOptions([&](const char* name) -> const char* {
    for (const auto& [variable, value] : request.variables) {
      if (variable == name) return value.c_str();
    }
    return getenv_fn(name);
  });
  if (options.ok()) return absl::OkStatus();

  // LoadOptions gives one line per bad variable, each starting `SPILLWAY_X="value": `.
  const std::string message(options.status().message());
  std::string out;
  size_t start = 0;
  while (start <= message.size()) {
    size_t end = message.find('\n', start);
    if (end == std::string::npos) end = message.size();
    const std::string line = message.substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    const std::string variable = line.substr(0, line.find('='));
    bool from_flag = false;
    for (const auto& [name, value] : request.variables) from_flag |= name == variable;
    const RunFlag* flag = FlagForVariable(variable);
    if (!out.empty()) out += '\n';
    if (from_flag && flag != nullptr) {
      out += fmt::format("{}: {}", flag->flag, line);
    } else {
      out += fmt::format("{} (from the environment)", line);
    }
  }
  return absl::InvalidArgumentError(out);
}

std::vector<std::string> LibraryCandidates(std::string_view exe_path) {
  const std::filesystem::path dir = std::filesystem::path(exe_path).parent_path();
  std::vector<std::string> candidates;
  for (const char* relative : {"../interpose", "../lib", "."}) {
    candidates.push_back((dir / relative / kLibraryName).lexically_normal().string());
  }
  return candidates;
}

absl::StatusOr<std::string> LocateLibrary(std::string_view from_flag, std::string_view from_env,
                                          std::string_view exe_path,
                                          const std::function<bool(const std::string&)>& exists) {
  if (!from_flag.empty()) {
    if (exists(std::string(from_flag))) return std::string(from_flag);
    return absl::NotFoundError(fmt::format("--lib {}: no such file", from_flag));
  }
  if (!from_env.empty()) {
    if (exists(std::string(from_env))) return std::string(from_env);
    return absl::NotFoundError(fmt::format("SPILLWAY_LIB={}: no such file", from_env));
  }
  std::string looked;
  for (const std::string& candidate : LibraryCandidates(exe_path)) {
    if (exists(candidate)) return candidate;
    looked += fmt::format("\n  {}", candidate);
  }
  return absl::NotFoundError(fmt::format(
      "{} not found; --lib and SPILLWAY_LIB are not set, and it is not next to the spillway "
      "binary ({}), where it was looked for as:{}\nBuild it, or name it with --lib PATH or "
      "SPILLWAY_LIB=PATH.",
      kLibraryName, exe_path, looked));
}

absl::StatusOr<std::string> ComposeLdPreload(std::string_view library, const char* existing) {
  for (const char c : library) {
    if (IsPreloadSeparator(c)) {
      return absl::InvalidArgumentError(fmt::format(
          "{}: LD_PRELOAD cannot name a path holding ':' or white space; link or copy the "
          "library to a plainer path",
          library));
    }
  }
  std::string out(library);
  const std::string_view rest = existing == nullptr ? "" : existing;
  size_t start = 0;
  while (start < rest.size()) {
    size_t end = start;
    while (end < rest.size() && !IsPreloadSeparator(rest[end])) ++end;
    const std::string_view entry = rest.substr(start, end - start);
    start = end + 1;
    if (entry.empty() || entry == library || Basename(entry) == kLibraryName) continue;
    out += ':';
    out += entry;
  }
  return out;
}

int ExecFailureExitCode(int error_number) {
  return error_number == ENOENT || error_number == ENOTDIR ? 127 : 126;
}

int ExecRequest(const RunRequest& request, const std::string& ld_preload) {
  for (const auto& [variable, value] : request.variables) {
    setenv(variable.c_str(), value.c_str(), 1);
  }
  // Consumed here; left set, the runtime would warn about a SPILLWAY_* name it does not know.
  unsetenv("SPILLWAY_LIB");
  setenv("LD_PRELOAD", ld_preload.c_str(), 1);

  std::vector<char*> argv;
  argv.reserve(request.command.size() + 1);
  for (const std::string& arg : request.command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  const int error_number = errno;
  const int code = ExecFailureExitCode(error_number);
  // As a shell says it: a bare name not found in PATH is "command not found".
  const bool searched = request.command[0].find('/') == std::string::npos;
  fmt::print(stderr, "spillway run: {}: {}\n", request.command[0],
             code == 127 && searched ? "command not found" : std::strerror(error_number));
  return code;
}

}  // namespace spillway::tools
