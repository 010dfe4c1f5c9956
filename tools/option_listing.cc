// SPDX-License-Identifier: Apache-2.0
#include "tools/option_listing.h"

#include <fmt/core.h>

#include <cstdint>
#include <string_view>

#include "runtime/options.h"
#include "tools/run_command.h"

namespace spillway::tools {
namespace {

// How a default reads, by the type of its field (the runtime formats its own in private).
std::string Show(const SizeSpec& size) { return size.ToString(); }
std::string Show(uint64_t bytes) { return FormatSize(bytes); }
std::string Show(int value) { return std::to_string(value); }
std::string Show(bool value) { return value ? "1" : "0"; }
std::string Show(const std::string& path) { return path.empty() ? "unset" : path; }
std::string Show(LogLevel level) { return std::string(LogLevelName(level)); }
std::string Show(PolicyKind policy) { return std::string(PolicyName(policy)); }

// The accepted forms, in the runtime's words: its error for a value no kind accepts ends
// "expected <forms>". A kind that accepts anything (a path) has none.
std::string Accepted(const char* name) {
  Options scratch;
  const absl::Status status = SetOption(name, "\x01", &scratch);
  const std::string message(status.message());
  const size_t at = message.rfind("expected ");
  if (status.ok() || at == std::string::npos) return "any path";
  return message.substr(at + 9);
}

constexpr const char* kNames[] = {
#define SPW_OPTION_NAME(id, field, name, kind, default_value, unit, needs, doc) name,
    SPILLWAY_OPTIONS(SPW_OPTION_NAME)
#undef SPW_OPTION_NAME
};

const char* NameOf(OptionId id) {
  return id == OptionId::kNone ? nullptr : kNames[static_cast<int>(id)];
}

// `text` in lines of at most `width` columns, each starting with `indent`.
std::string Wrap(std::string_view text, std::string_view indent, size_t width) {
  std::string out;
  std::string line(indent);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view word = text.substr(start, end - start);
    start = end + 1;
    if (word.empty()) continue;
    if (line.size() > indent.size() && line.size() + 1 + word.size() > width) {
      out += line + "\n";
      line = std::string(indent);
    }
    if (line.size() > indent.size()) line += ' ';
    line += word;
  }
  if (line.size() > indent.size()) out += line + "\n";
  return out;
}

}  // namespace

std::string OptionsListing() {
  std::string out =
      "Spillway's options, read from the environment when libspillway.so starts\n"
      "(docs/configuration.md). spillway run sets each with the option shown.\n";
  const Options defaults;
#define SPW_OPTION_ENTRY(id, field, name, kind, default_value, unit, needs, doc)           \
  {                                                                                        \
    const RunFlag* flag = FlagForVariable(name);                                           \
    out += fmt::format("\n{}", name);                                                      \
    if (flag != nullptr) {                                                                 \
      out += fmt::format("  (spillway run {}{}{})", flag->flag,                            \
                         flag->value_name.empty() ? "" : " ", flag->value_name);           \
    }                                                                                      \
    out += fmt::format("\n    default:  {}\n", Show(defaults.field));                      \
    if (std::string_view(unit).size() > 0) out += fmt::format("    unit:     {}\n", unit); \
    out += fmt::format("    accepts:  {}\n", Accepted(name));                              \
    if (const char* needed = NameOf(OptionId::needs); needed != nullptr) {                 \
      out += fmt::format("    needs:    {}\n", needed);                                    \
    }                                                                                      \
    out += Wrap(doc, "    ", 80);                                                          \
  }
  SPILLWAY_OPTIONS(SPW_OPTION_ENTRY)
#undef SPW_OPTION_ENTRY
  return out;
}

EnvironmentCheck CheckEnvironment(const std::function<const char*(const char*)>& getenv_fn,
                                  const char* const* environment) {
  EnvironmentCheck check;
  const absl::StatusOr<Options> options = LoadOptions(getenv_fn);
  if (options.ok()) {
    check.settings = DescribeOptions(*options);
  } else {
    const std::string message(options.status().message());
    size_t start = 0;
    while (start < message.size()) {
      size_t end = message.find('\n', start);
      if (end == std::string::npos) end = message.size();
      if (end > start) check.errors.push_back(message.substr(start, end - start));
      start = end + 1;
    }
  }
  for (std::string& warning : UnknownVariables(environment)) {
    if (warning.rfind("SPILLWAY_LIB ", 0) == 0) continue;
    check.warnings.push_back(std::move(warning));
  }
  return check;
}

}  // namespace spillway::tools
