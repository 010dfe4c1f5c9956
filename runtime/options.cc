// SPDX-License-Identifier: Apache-2.0

#include "runtime/options.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace spillway {
namespace {

constexpr int kMaxQueueDepth = 4096;

// A spelling of an enumerated option. A spelling that is `unavailable` is known (so the error
// can say why it is refused) but not accepted.
struct NamedValue {
  absl::string_view name;
  int value;
  absl::string_view unavailable;
};

constexpr NamedValue kLogLevelNames[] = {
    {"off", static_cast<int>(LogLevel::kOff), {}},
    {"error", static_cast<int>(LogLevel::kError), {}},
    {"warn", static_cast<int>(LogLevel::kWarn), {}},
    {"info", static_cast<int>(LogLevel::kInfo), {}},
    {"debug", static_cast<int>(LogLevel::kDebug), {}},
    {"trace", static_cast<int>(LogLevel::kTrace), {}},
};

constexpr NamedValue kPolicyNames[] = {
    {"lru", static_cast<int>(PolicyKind::kLru), {}},
    {"learned", static_cast<int>(PolicyKind::kLearned), {}},
};

// Reasons given back by the parsers; an empty reason means "not of this form at all", where
// the accepted forms say everything.
absl::Status Malformed() { return absl::InvalidArgumentError(""); }

absl::Status NoPercent() { return absl::InvalidArgumentError("a percentage is not accepted here"); }

// This Abseil is built with its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), so the
// public std::string_view arguments are converted once, on the way in.
absl::string_view ToAbsl(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Consumes the leading decimal digits of `*text` and returns their value: an error with no
// reason if there are none, "too large" past 64 bits.
absl::StatusOr<uint64_t> ConsumeDigits(absl::string_view* text) {
  if (text->empty() || !IsDigit(text->front())) return Malformed();
  uint64_t value = 0;
  while (!text->empty() && IsDigit(text->front())) {
    const uint64_t digit = static_cast<uint64_t>(text->front() - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
      return absl::InvalidArgumentError("too large");
    }
    value = value * 10 + digit;
    text->remove_prefix(1);
  }
  return value;
}

// Sizes: see ParseSize in the header.
absl::StatusOr<uint64_t> ParseBytes(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  absl::StatusOr<uint64_t> number = ConsumeDigits(&text);
  if (!number.ok()) return number.status();
  int shift = 0;
  if (!text.empty()) {
    switch (absl::ascii_tolower(text.front())) {
      case 'k':
        shift = 10;
        break;
      case 'm':
        shift = 20;
        break;
      case 'g':
        shift = 30;
        break;
      case 't':
        shift = 40;
        break;
      default:
        break;
    }
    if (shift != 0) text.remove_prefix(1);
    // "B" alone is fine after a number ("512B"); "iB" only after a unit ("512iB" is not).
    if (!(text.empty() || absl::EqualsIgnoreCase(text, "b") ||
          (shift != 0 && absl::EqualsIgnoreCase(text, "ib")))) {
      return Malformed();
    }
  }
  if (*number > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return absl::InvalidArgumentError("too large");
  }
  return *number << shift;
}

template <size_t N>
std::string AcceptedNames(const NamedValue (&names)[N], absl::string_view quote,
                          absl::string_view separator) {
  std::string out;
  for (const NamedValue& named : names) {
    if (!named.unavailable.empty()) continue;
    if (!out.empty()) absl::StrAppend(&out, separator);
    absl::StrAppend(&out, quote, named.name, quote);
  }
  return out;
}

template <size_t N>
absl::StatusOr<int> ParseName(const NamedValue (&names)[N], absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  for (const NamedValue& named : names) {
    if (!absl::EqualsIgnoreCase(text, named.name)) continue;
    if (!named.unavailable.empty()) return absl::InvalidArgumentError(named.unavailable);
    return named.value;
  }
  return Malformed();
}

template <size_t N>
absl::string_view NameOf(const NamedValue (&names)[N], int value) {
  for (const NamedValue& named : names) {
    if (named.value == value && named.unavailable.empty()) return named.name;
  }
  return "?";
}

// Percentages: "N%" or "N.D%" or "N.DD%", more than 0% and at most 100%.
absl::StatusOr<SizeSpec> ParsePercent(absl::string_view text) {
  if (!absl::ConsumeSuffix(&text, "%")) return Malformed();
  absl::StatusOr<uint64_t> whole = ConsumeDigits(&text);
  if (!whole.ok()) return whole.status();
  uint64_t hundredths = 0;
  if (absl::ConsumePrefix(&text, ".")) {
    if (text.empty()) return Malformed();
    if (text.size() > 2) {
      return absl::InvalidArgumentError("a percentage has at most two decimals");
    }
    const size_t decimals = text.size();
    absl::StatusOr<uint64_t> fraction = ConsumeDigits(&text);
    if (!fraction.ok()) return fraction.status();
    hundredths = decimals == 1 ? *fraction * 10 : *fraction;
  }
  if (!text.empty()) return Malformed();
  if (*whole > 100 || (*whole == 100 && hundredths > 0)) {
    return absl::InvalidArgumentError("a percentage is at most 100%");
  }
  hundredths += *whole * 100;
  if (hundredths == 0) return absl::InvalidArgumentError("must be more than zero");
  return SizeSpec::PercentHundredths(static_cast<uint32_t>(hundredths));
}

// How each kind of option is read, explained and shown. Parse returns a reason (possibly
// empty) in its error; the caller adds the variable, the value and Expected().
template <typename Kind>
struct KindTraits;

template <>
struct KindTraits<option_kind::Size> {
  static std::string Type() { return "size"; }
  static std::string Expected() { return "a size such as 64G, 512MiB or 4096"; }
  static absl::StatusOr<uint64_t> Parse(absl::string_view text) {
    if (absl::EndsWith(absl::StripAsciiWhitespace(text), "%")) return NoPercent();
    absl::StatusOr<uint64_t> bytes = ParseBytes(text);
    if (bytes.ok() && *bytes == 0) return absl::InvalidArgumentError("must be more than zero");
    return bytes;
  }
  static std::string Format(uint64_t bytes) { return FormatSize(bytes); }
};

template <>
struct KindTraits<option_kind::SizeOrZero> {
  static std::string Type() { return "size"; }
  static std::string Expected() { return "a size such as 1M, 64KiB or 0"; }
  static absl::StatusOr<uint64_t> Parse(absl::string_view text) {
    if (absl::EndsWith(absl::StripAsciiWhitespace(text), "%")) return NoPercent();
    return ParseBytes(text);
  }
  static std::string Format(uint64_t bytes) { return FormatSize(bytes); }
};

template <>
struct KindTraits<option_kind::SizeOrPercent> {
  static std::string Type() { return "size or %"; }
  static std::string Expected() { return "a size such as 40G, 512MiB or 80%"; }
  static absl::StatusOr<SizeSpec> Parse(absl::string_view text) {
    text = absl::StripAsciiWhitespace(text);
    if (absl::EndsWith(text, "%")) return ParsePercent(text);
    absl::StatusOr<uint64_t> bytes = KindTraits<option_kind::Size>::Parse(text);
    if (!bytes.ok()) return bytes.status();
    return SizeSpec::Bytes(*bytes);
  }
  static std::string Format(const SizeSpec& size) { return size.ToString(); }
};

template <>
struct KindTraits<option_kind::Path> {
  static std::string Type() { return "path"; }
  static std::string Expected() { return "a path"; }
  // Whether the path exists and is usable is for whoever opens it, with its own error.
  static absl::StatusOr<std::string> Parse(absl::string_view text) { return std::string(text); }
  static std::string Format(const std::string& path) { return path.empty() ? "unset" : path; }
};

template <>
struct KindTraits<option_kind::Bool> {
  static std::string Type() { return "0 or 1"; }
  static std::string Expected() { return "0 or 1"; }
  static absl::StatusOr<bool> Parse(absl::string_view text) {
    text = absl::StripAsciiWhitespace(text);
    for (absl::string_view yes : {"1", "true", "yes", "on"}) {
      if (absl::EqualsIgnoreCase(text, yes)) return true;
    }
    for (absl::string_view no : {"0", "false", "no", "off"}) {
      if (absl::EqualsIgnoreCase(text, no)) return false;
    }
    return Malformed();
  }
  static std::string Format(bool value) { return value ? "1" : "0"; }
};

template <>
struct KindTraits<option_kind::Count> {
  static std::string Type() { return absl::StrCat("integer, 1 to ", kMaxQueueDepth); }
  static std::string Expected() {
    return absl::StrCat("a whole number from 1 to ", kMaxQueueDepth);
  }
  static absl::StatusOr<int> Parse(absl::string_view text) {
    text = absl::StripAsciiWhitespace(text);
    absl::StatusOr<uint64_t> value = ConsumeDigits(&text);
    if (!value.ok()) return value.status();
    if (!text.empty()) return Malformed();
    if (*value < 1 || *value > static_cast<uint64_t>(kMaxQueueDepth)) {
      return absl::InvalidArgumentError("out of range");
    }
    return static_cast<int>(*value);
  }
  static std::string Format(int value) { return absl::StrCat(value); }
};

template <>
struct KindTraits<option_kind::Level> {
  static std::string Type() { return AcceptedNames(kLogLevelNames, "`", ", "); }
  static std::string Expected() {
    return absl::StrCat("one of ", AcceptedNames(kLogLevelNames, "", ", "));
  }
  static absl::StatusOr<LogLevel> Parse(absl::string_view text) {
    absl::StatusOr<int> value = ParseName(kLogLevelNames, text);
    if (!value.ok()) return value.status();
    return static_cast<LogLevel>(*value);
  }
  static std::string Format(LogLevel level) { return std::string(LogLevelName(level)); }
};

template <>
struct KindTraits<option_kind::Policy> {
  static std::string Type() { return AcceptedNames(kPolicyNames, "`", ", "); }
  static std::string Expected() {
    return absl::StrCat("one of ", AcceptedNames(kPolicyNames, "", ", "));
  }
  static absl::StatusOr<PolicyKind> Parse(absl::string_view text) {
    absl::StatusOr<int> value = ParseName(kPolicyNames, text);
    if (!value.ok()) return value.status();
    return static_cast<PolicyKind>(*value);
  }
  static std::string Format(PolicyKind policy) { return std::string(PolicyName(policy)); }
};

// `SPILLWAY_X="value": reason; expected forms`, the one shape of every bad-value error.
std::string BadValue(absl::string_view name, absl::string_view value, absl::string_view reason,
                     absl::string_view expected) {
  return absl::StrCat(name, "=\"", absl::CHexEscape(value), "\": ", reason,
                      reason.empty() ? "" : "; ", "expected ", expected);
}

template <typename Kind>
absl::Status Assign(absl::string_view name, absl::string_view text, typename Kind::Value* field) {
  auto parsed = KindTraits<Kind>::Parse(text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        BadValue(name, text, parsed.status().message(), KindTraits<Kind>::Expected()));
  }
  *field = *std::move(parsed);
  return absl::OkStatus();
}

// One row of SPILLWAY_OPTIONS, with its kind's behaviour bound to its field.
struct OptionRow {
  absl::string_view name;
  std::string (*type)();
  absl::string_view unit;
  absl::string_view doc;
  OptionId needs;
  absl::Status (*set)(absl::string_view text, Options* options);
  void (*reset)(Options* options);
  std::string (*format)(const Options& options);
  bool (*at_default)(const Options& options);
};

// clang-format off
#define SPW_OPTION_ROW(id, field, name, kind, default_value, unit, needs, doc)                    \
  OptionRow{                                                                                      \
      name, &KindTraits<option_kind::kind>::Type, unit, doc, OptionId::needs,                     \
      [](absl::string_view text, Options* options) {                                              \
        return Assign<option_kind::kind>(name, text, &options->field);                            \
      },                                                                                          \
      [](Options* options) { options->field = default_value; },                                   \
      [](const Options& options) {                                                                \
        return KindTraits<option_kind::kind>::Format(options.field);                              \
      },                                                                                          \
      [](const Options& options) {                                                                \
        return options.field == option_kind::kind::Value(default_value);                          \
      }},
// clang-format on

constexpr OptionRow kRows[] = {SPILLWAY_OPTIONS(SPW_OPTION_ROW)};
#undef SPW_OPTION_ROW

static_assert(std::size(kRows) == static_cast<size_t>(OptionId::kCount));

const OptionRow& Row(OptionId id) { return kRows[static_cast<int>(id)]; }

const OptionRow* FindRow(absl::string_view name) {
  for (const OptionRow& row : kRows) {
    if (row.name == name) return &row;
  }
  return nullptr;
}

// Edit distance, ignoring case: how far a typo is from an option's name.
size_t Distance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> previous(b.size() + 1);
  std::vector<size_t> current(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const bool same = absl::ascii_tolower(a[i - 1]) == absl::ascii_tolower(b[j - 1]);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, previous[j - 1] + !same});
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

std::string MarkdownCell(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"|", "\\|"}});
}

}  // namespace

std::string SizeSpec::ToString() const {
  if (!percent_) return FormatSize(value_);
  std::string out = absl::StrCat(value_ / 100);
  if (const uint64_t fraction = value_ % 100; fraction != 0) {
    absl::StrAppend(&out, ".", fraction / 10);
    if (fraction % 10 != 0) absl::StrAppend(&out, fraction % 10);
  }
  return out + "%";
}

absl::StatusOr<uint64_t> ParseSize(std::string_view text) { return ParseBytes(ToAbsl(text)); }

std::string FormatSize(uint64_t bytes) {
  if (bytes == 0) return "0";
  constexpr std::pair<uint64_t, absl::string_view> kUnits[] = {
      {kTiB, "TiB"}, {kGiB, "GiB"}, {kMiB, "MiB"}, {kKiB, "KiB"}};
  for (const auto& [unit, suffix] : kUnits) {
    if (bytes % unit == 0) return absl::StrCat(bytes / unit, suffix);
  }
  return absl::StrCat(bytes);
}

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view text) {
  return KindTraits<option_kind::Level>::Parse(ToAbsl(text));
}

std::string_view PolicyName(PolicyKind policy) {
  const absl::string_view name = NameOf(kPolicyNames, static_cast<int>(policy));
  return std::string_view(name.data(), name.size());
}

absl::Status Options::ValidateChunk(size_t granularity) const {
  if (granularity == 0) return absl::InvalidArgumentError("mapping granularity is 0");
  if (chunk % granularity == 0) return absl::OkStatus();
  const uint64_t below = chunk / granularity * granularity;
  const uint64_t above = below + granularity;
  const std::string multiple =
      below == 0 ? FormatSize(above) : absl::StrCat(FormatSize(below), " or ", FormatSize(above));
  return absl::InvalidArgumentError(BadValue(
      Row(OptionId::kChunk).name, FormatSize(chunk),
      absl::StrCat("not a multiple of the device's mapping granularity, ", FormatSize(granularity)),
      absl::StrCat("a multiple of it such as ", multiple)));
}

absl::StatusOr<Options> LoadOptions(const std::function<const char*(const char*)>& getenv_fn) {
  Options options;
  std::vector<std::string> errors;
  std::array<const char*, std::size(kRows)> values{};
  for (size_t i = 0; i < std::size(kRows); ++i) {
    // Names are string literals, so data() is NUL-terminated.
    const char* value = getenv_fn(kRows[i].name.data());
    if (value == nullptr || *value == '\0') continue;
    values[i] = value;
    if (absl::Status status = kRows[i].set(value, &options); !status.ok()) {
      errors.emplace_back(status.message());
    }
  }
  for (size_t i = 0; i < std::size(kRows); ++i) {
    const OptionId needs = kRows[i].needs;
    if (values[i] == nullptr || needs == OptionId::kNone) continue;
    if (values[static_cast<int>(needs)] != nullptr) continue;
    errors.push_back(absl::StrCat(kRows[i].name, "=\"", absl::CHexEscape(values[i]),
                                  "\": has no effect unless ", Row(needs).name,
                                  " is set; set both, or neither"));
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return options;
}

absl::StatusOr<Options> LoadOptionsFromEnvironment() {
  return LoadOptions([](const char* name) { return std::getenv(name); });
}

absl::Status SetOption(std::string_view name_in, std::string_view value_in, Options* options) {
  const absl::string_view name = ToAbsl(name_in);
  const absl::string_view value = ToAbsl(value_in);
  const OptionRow* row = FindRow(name);
  if (row == nullptr) {
    return absl::NotFoundError(absl::StrCat(name, " is not a Spillway option"));
  }
  if (value.empty()) {
    row->reset(options);
    return absl::OkStatus();
  }
  return row->set(value, options);
}

std::vector<std::string> UnknownVariables(const char* const* environment) {
  constexpr absl::string_view kPrefix = "SPILLWAY_";
  std::vector<std::string> warnings;
  if (environment == nullptr) return warnings;
  for (const char* const* entry = environment; *entry != nullptr; ++entry) {
    absl::string_view name(*entry);
    name = name.substr(0, name.find('='));
    if (!absl::StartsWithIgnoreCase(name, kPrefix) || FindRow(name) != nullptr) continue;
    // Not options of the runtime, but Spillway's all the same: `spillway run --lib`.
    if (name == "SPILLWAY_LIB") continue;
    const OptionRow* nearest = nullptr;
    size_t nearest_distance = 4;  // further than 3 edits is not a typo of that name
    for (const OptionRow& row : kRows) {
      if (const size_t distance = Distance(name, row.name); distance < nearest_distance) {
        nearest = &row;
        nearest_distance = distance;
      }
    }
    std::string warning = absl::StrCat(name, " is not a Spillway option and is ignored");
    if (nearest != nullptr) {
      absl::StrAppend(&warning, "; did you mean ", nearest->name, "?");
    } else {
      absl::StrAppend(&warning, " (docs/configuration.md lists the options)");
    }
    warnings.push_back(std::move(warning));
  }
  return warnings;
}

std::string OptionsMarkdown() {
  std::string out =
      "# Configuration\n"
      "\n"
      "<!-- Generated from the options table in runtime/options.h; do not edit. Regenerate with\n"
      "     SPW_REGENERATE_DOCS=1 build/tests/options_test (options_test fails until it is). -->\n"
      "\n"
      "Spillway reads these environment variables once, when it starts. A size is a whole\n"
      "number of bytes, optionally followed by `K`, `M`, `G` or `T` and then `B` or `iB`, in\n"
      "any case; every unit is binary (`1K` = `1KiB` = 1024 bytes), so `40G`, `512MiB` and\n"
      "`4096` are sizes. Where the type is \"size or %\", `N%` (more than 0, at most 100, up to\n"
      "two decimals) is that share of the whole in the unit column, measured at start-up. An\n"
      "empty value is the same as unset; spaces around a value are ignored. A malformed value,\n"
      "or one that contradicts another (an NVMe setting without `SPILLWAY_NVME_PATH`), stops\n"
      "Spillway at start-up with an error that names the variable, its value and the accepted\n"
      "forms: Spillway never falls back to a default in its place. A `SPILLWAY_*` variable\n"
      "that is not below, such as a misspelt one, is ignored with a warning.\n"
      "\n"
      "| variable | type | default | unit | description |\n"
      "|---|---|---|---|---|\n";
  const Options defaults;
  for (const OptionRow& row : kRows) {
    // An unset path is a word, not a value to type.
    const std::string value = row.format(defaults);
    const std::string shown = value == "unset" ? value : absl::StrCat("`", value, "`");
    absl::StrAppend(&out, "| `", row.name, "` | ", MarkdownCell(row.type()), " | ", shown, " | ",
                    MarkdownCell(row.unit), " | ", MarkdownCell(row.doc), " |\n");
  }
  return out;
}

std::string DescribeOptions(const Options& options) {
  size_t width = 0;
  for (const OptionRow& row : kRows) width = std::max(width, row.name.size());
  std::string out = "spillway options (docs/configuration.md):\n";
  for (const OptionRow& row : kRows) {
    absl::StrAppend(&out, "  ", row.name, std::string(width + 2 - row.name.size(), ' '),
                    row.format(options), row.at_default(options) ? "  (default)" : "", "\n");
  }
  return out;
}

}  // namespace spillway
