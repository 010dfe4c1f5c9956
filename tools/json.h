// SPDX-License-Identifier: Apache-2.0
//
// Json: a small, strict JSON (RFC 8259) reader and writer, enough for the statistics file the
// runtime writes (SPILLWAY_STATS) and for `spillway stats --json`. No JSON library is among
// Spillway's dependencies, and the statistics format needs only this much.
//
// Contract: ParseJson accepts exactly one JSON value surrounded by optional whitespace and
// nothing else. It rejects what RFC 8259 leaves to the reader as well as what it forbids:
// duplicate keys in an object, invalid UTF-8, lone surrogates in \u escapes, nesting deeper
// than kMaxJsonDepth. An error is an InvalidArgument status whose message starts with the
// position ("line 3, column 17: ") and says what was expected there.
//
// Numbers keep their text as written, so a 64-bit counter is never rounded through a double;
// AsUint64 reads one back when it is a whole number that fits.
//
// Thread safety: a JsonValue is a plain value; const use from several threads is safe.
#ifndef SPILLWAY_TOOLS_JSON_H_
#define SPILLWAY_TOOLS_JSON_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace spillway::tools {

inline constexpr int kMaxJsonDepth = 64;

class JsonValue {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  using Member = std::pair<std::string, JsonValue>;

  JsonValue() = default;  // null
  static JsonValue Bool(bool value);
  // REQUIRES: `text` is a JSON number (ParseJson checks it; Uint builds one).
  static JsonValue Number(std::string text);
  static JsonValue Uint(uint64_t value);
  static JsonValue String(std::string value);
  static JsonValue Array(std::vector<JsonValue> items = {});
  static JsonValue Object(std::vector<Member> members = {});

  Type type() const { return type_; }
  bool is_object() const { return type_ == Type::kObject; }

  // REQUIRES: the matching type.
  bool bool_value() const { return bool_; }
  const std::string& number_text() const { return text_; }
  const std::string& string_value() const { return text_; }
  const std::vector<JsonValue>& items() const { return items_; }
  const std::vector<Member>& members() const { return members_; }

  // A number written as a non-negative whole number (no fraction, no exponent) that fits
  // in 64 bits; nullopt for anything else, including a value of another type.
  std::optional<uint64_t> AsUint64() const;

  // The member named `key` of an object, or nullptr (also for a value that is no object).
  const JsonValue* Find(std::string_view key) const;

  // REQUIRES: is_object(). Appends a member; the caller keeps keys unique.
  void Add(std::string key, JsonValue value);

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  std::string text_;  // a number's text or a string's value
  std::vector<JsonValue> items_;
  std::vector<Member> members_;
};

// The name of a type as errors say it: "an object", "a string", ...
std::string_view JsonTypeName(JsonValue::Type type);

// See the contract at the top.
absl::StatusOr<JsonValue> ParseJson(std::string_view text);

// `value` as JSON text, indented by two spaces per level, object members in their order,
// strings escaped minimally (quote, backslash and control characters), ending in a newline.
std::string WriteJson(const JsonValue& value);

}  // namespace spillway::tools

#endif  // SPILLWAY_TOOLS_JSON_H_
