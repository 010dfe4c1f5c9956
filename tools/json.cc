// SPDX-License-Identifier: Apache-2.0
#include "tools/json.h"

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <limits>

#include "absl/status/status.h"

namespace spillway::tools {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A recursive-descent parser over the whole text; `pos_` is the byte being looked at.
class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  absl::StatusOr<JsonValue> ParseDocument() {
    SkipWhitespace();
    absl::StatusOr<JsonValue> value = ParseValue(0);
    if (!value.ok()) return value;
    SkipWhitespace();
    if (pos_ != text_.size()) return Error("expected the end of the text after the JSON value");
    return value;
  }

 private:
  // "line L, column C: what", with columns counted in bytes from 1.
  absl::Status Error(std::string_view what) const {
    const size_t at = std::min(pos_, text_.size());
    size_t line = 1;
    size_t line_start = 0;
    for (size_t i = 0; i < at; ++i) {
      if (text_[i] == '\n') {
        ++line;
        line_start = i + 1;
      }
    }
    std::string found = at == text_.size() ? "the end of the text" : Describe(text_[at]);
    return absl::InvalidArgumentError(
        fmt::format("line {}, column {}: {} (found {})", line, at - line_start + 1, what, found));
  }

  static std::string Describe(char c) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f) return fmt::format("'{}'", c);
    return fmt::format("byte 0x{:02x}", byte);
  }

  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return text_[pos_]; }

  void SkipWhitespace() {
    while (!AtEnd() && (Peek() == ' ' || Peek() == '\t' || Peek() == '\n' || Peek() == '\r')) {
      ++pos_;
    }
  }

  absl::StatusOr<JsonValue> ParseValue(int depth) {
    if (AtEnd()) return Error("expected a JSON value");
    switch (Peek()) {
      case '{':
        return ParseObject(depth + 1);
      case '[':
        return ParseArray(depth + 1);
      case '"': {
        absl::StatusOr<std::string> text = ParseString();
        if (!text.ok()) return text.status();
        return JsonValue::String(*std::move(text));
      }
      case 't':
        return ParseLiteral("true", JsonValue::Bool(true));
      case 'f':
        return ParseLiteral("false", JsonValue::Bool(false));
      case 'n':
        return ParseLiteral("null", JsonValue());
      default:
        if (Peek() == '-' || IsDigit(Peek())) return ParseNumber();
        return Error("expected a JSON value");
    }
  }

  absl::StatusOr<JsonValue> ParseLiteral(std::string_view word, JsonValue value) {
    if (text_.substr(pos_, word.size()) != word) return Error("expected a JSON value");
    pos_ += word.size();
    return value;
  }

  absl::StatusOr<JsonValue> ParseObject(int depth) {
    if (depth > kMaxJsonDepth) return Error("nested deeper than 64 levels");
    ++pos_;  // '{'
    JsonValue object = JsonValue::Object();
    SkipWhitespace();
    if (!AtEnd() && Peek() == '}') {
      ++pos_;
      return object;
    }
    while (true) {
      SkipWhitespace();
      if (AtEnd() || Peek() != '"') return Error("expected a string as an object key");
      const size_t key_pos = pos_;
      absl::StatusOr<std::string> key = ParseString();
      if (!key.ok()) return key.status();
      if (object.Find(*key) != nullptr) {
        pos_ = key_pos;
        return Error(fmt::format("duplicate key \"{}\"", *key));
      }
      SkipWhitespace();
      if (AtEnd() || Peek() != ':') return Error("expected ':' after an object key");
      ++pos_;
      SkipWhitespace();
      absl::StatusOr<JsonValue> value = ParseValue(depth);
      if (!value.ok()) return value;
      object.Add(*std::move(key), *std::move(value));
      SkipWhitespace();
      if (AtEnd()) return Error("expected ',' or '}' after an object member");
      if (Peek() == '}') {
        ++pos_;
        return object;
      }
      if (Peek() != ',') return Error("expected ',' or '}' after an object member");
      ++pos_;
    }
  }

  absl::StatusOr<JsonValue> ParseArray(int depth) {
    if (depth > kMaxJsonDepth) return Error("nested deeper than 64 levels");
    ++pos_;  // '['
    std::vector<JsonValue> items;
    SkipWhitespace();
    if (!AtEnd() && Peek() == ']') {
      ++pos_;
      return JsonValue::Array(std::move(items));
    }
    while (true) {
      SkipWhitespace();
      absl::StatusOr<JsonValue> value = ParseValue(depth);
      if (!value.ok()) return value;
      items.push_back(*std::move(value));
      SkipWhitespace();
      if (AtEnd()) return Error("expected ',' or ']' after an array element");
      if (Peek() == ']') {
        ++pos_;
        return JsonValue::Array(std::move(items));
      }
      if (Peek() != ',') return Error("expected ',' or ']' after an array element");
      ++pos_;
    }
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  absl::StatusOr<JsonValue> ParseNumber() {
    const size_t start = pos_;
    if (Peek() == '-') ++pos_;
    if (AtEnd() || !IsDigit(Peek())) return Error("expected a digit");
    if (Peek() == '0') {
      ++pos_;
      if (!AtEnd() && IsDigit(Peek())) return Error("a number does not start with 0");
    } else {
      SkipDigits();
    }
    if (!AtEnd() && Peek() == '.') {
      ++pos_;
      if (AtEnd() || !IsDigit(Peek())) return Error("expected a digit after '.'");
      SkipDigits();
    }
    if (!AtEnd() && (Peek() == 'e' || Peek() == 'E')) {
      ++pos_;
      if (!AtEnd() && (Peek() == '+' || Peek() == '-')) ++pos_;
      if (AtEnd() || !IsDigit(Peek())) return Error("expected a digit in the exponent");
      SkipDigits();
    }
    return JsonValue::Number(std::string(text_.substr(start, pos_ - start)));
  }

  void SkipDigits() {
    while (!AtEnd() && IsDigit(Peek())) ++pos_;
  }

  absl::StatusOr<uint32_t> ParseHex4() {
    if (text_.size() - pos_ < 4) {
      pos_ = text_.size();
      return Error("expected four hex digits after \\u");
    }
    uint32_t value = 0;
    const char* begin = text_.data() + pos_;
    auto [end, error] = std::from_chars(begin, begin + 4, value, 16);
    if (error != std::errc() || end != begin + 4 || *begin == '+' || *begin == '-') {
      return Error("expected four hex digits after \\u");
    }
    pos_ += 4;
    return value;
  }

  static void AppendUtf8(uint32_t code_point, std::string* out) {
    if (code_point < 0x80) {
      out->push_back(static_cast<char>(code_point));
    } else if (code_point < 0x800) {
      out->push_back(static_cast<char>(0xc0 | (code_point >> 6)));
      out->push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
    } else if (code_point < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | (code_point >> 12)));
      out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | (code_point >> 18)));
      out->push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
    }
  }

  // Length of the well-formed UTF-8 sequence at pos_ (RFC 3629: no overlongs, no surrogates,
  // nothing past U+10FFFF), or 0.
  size_t Utf8Length() const {
    const auto byte = [&](size_t i) -> unsigned {
      return pos_ + i < text_.size() ? static_cast<unsigned char>(text_[pos_ + i]) : 0;
    };
    const auto continuation = [&](size_t i) { return (byte(i) & 0xc0) == 0x80; };
    const unsigned lead = byte(0);
    if (lead < 0x80) return 1;
    if (lead >= 0xc2 && lead <= 0xdf) return continuation(1) ? 2 : 0;
    if (lead >= 0xe0 && lead <= 0xef) {
      const unsigned second = byte(1);
      if (lead == 0xe0 && second < 0xa0) return 0;   // overlong
      if (lead == 0xed && second >= 0xa0) return 0;  // surrogate
      return continuation(1) && continuation(2) ? 3 : 0;
    }
    if (lead >= 0xf0 && lead <= 0xf4) {
      const unsigned second = byte(1);
      if (lead == 0xf0 && second < 0x90) return 0;   // overlong
      if (lead == 0xf4 && second >= 0x90) return 0;  // past U+10FFFF
      return continuation(1) && continuation(2) && continuation(3) ? 4 : 0;
    }
    return 0;
  }

  absl::StatusOr<std::string> ParseString() {
    ++pos_;  // '"'
    std::string out;
    while (true) {
      if (AtEnd()) return Error("unterminated string");
      const char c = Peek();
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) {
        return Error("control character in a string (write it as an escape)");
      }
      if (c != '\\') {
        const size_t length = Utf8Length();
        if (length == 0) return Error("invalid UTF-8 in a string");
        out.append(text_.substr(pos_, length));
        pos_ += length;
        continue;
      }
      ++pos_;
      if (AtEnd()) return Error("unterminated string");
      const char escape = Peek();
      ++pos_;
      switch (escape) {
        case '"':
        case '\\':
        case '/':
          out.push_back(escape);
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          absl::StatusOr<uint32_t> unit = ParseHex4();
          if (!unit.ok()) return unit.status();
          uint32_t code_point = *unit;
          if (code_point >= 0xdc00 && code_point <= 0xdfff) {
            pos_ -= 6;
            return Error("lone low surrogate in a \\u escape");
          }
          if (code_point >= 0xd800 && code_point <= 0xdbff) {
            if (text_.substr(pos_, 2) != "\\u") {
              pos_ -= 6;
              return Error("high surrogate not followed by a low one");
            }
            pos_ += 2;
            absl::StatusOr<uint32_t> low = ParseHex4();
            if (!low.ok()) return low.status();
            if (*low < 0xdc00 || *low > 0xdfff) {
              pos_ -= 12;
              return Error("high surrogate not followed by a low one");
            }
            code_point = 0x10000 + ((code_point - 0xd800) << 10) + (*low - 0xdc00);
          }
          AppendUtf8(code_point, &out);
          break;
        }
        default:
          --pos_;
          return Error("unknown escape in a string");
      }
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

void WriteString(const std::string& text, std::string* out) {
  out->push_back('"');
  for (const char c : text) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out->append(fmt::format("\\u{:04x}", static_cast<unsigned char>(c)));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void Write(const JsonValue& value, int indent, std::string* out) {
  const std::string inner(static_cast<size_t>(indent + 1) * 2, ' ');
  switch (value.type()) {
    case JsonValue::Type::kNull:
      out->append("null");
      return;
    case JsonValue::Type::kBool:
      out->append(value.bool_value() ? "true" : "false");
      return;
    case JsonValue::Type::kNumber:
      out->append(value.number_text());
      return;
    case JsonValue::Type::kString:
      WriteString(value.string_value(), out);
      return;
    case JsonValue::Type::kArray: {
      if (value.items().empty()) {
        out->append("[]");
        return;
      }
      out->append("[\n");
      for (size_t i = 0; i < value.items().size(); ++i) {
        out->append(inner);
        Write(value.items()[i], indent + 1, out);
        out->append(i + 1 < value.items().size() ? ",\n" : "\n");
      }
      out->append(static_cast<size_t>(indent) * 2, ' ');
      out->push_back(']');
      return;
    }
    case JsonValue::Type::kObject: {
      if (value.members().empty()) {
        out->append("{}");
        return;
      }
      out->append("{\n");
      for (size_t i = 0; i < value.members().size(); ++i) {
        out->append(inner);
        WriteString(value.members()[i].first, out);
        out->append(": ");
        Write(value.members()[i].second, indent + 1, out);
        out->append(i + 1 < value.members().size() ? ",\n" : "\n");
      }
      out->append(static_cast<size_t>(indent) * 2, ' ');
      out->push_back('}');
      return;
    }
  }
}

}  // namespace

JsonValue JsonValue::Bool(bool value) {
  JsonValue v;
  v.type_ = Type::kBool;
  v.bool_ = value;
  return v;
}

JsonValue JsonValue::Number(std::string text) {
  JsonValue v;
  v.type_ = Type::kNumber;
  v.text_ = std::move(text);
  return v;
}

JsonValue JsonValue::Uint(uint64_t value) { return Number(std::to_string(value)); }

JsonValue JsonValue::String(std::string value) {
  JsonValue v;
  v.type_ = Type::kString;
  v.text_ = std::move(value);
  return v;
}

JsonValue JsonValue::Array(std::vector<JsonValue> items) {
  JsonValue v;
  v.type_ = Type::kArray;
  v.items_ = std::move(items);
  return v;
}

JsonValue JsonValue::Object(std::vector<Member> members) {
  JsonValue v;
  v.type_ = Type::kObject;
  v.members_ = std::move(members);
  return v;
}

std::optional<uint64_t> JsonValue::AsUint64() const {
  if (type_ != Type::kNumber || text_.empty()) return std::nullopt;
  uint64_t value = 0;
  const char* end = text_.data() + text_.size();
  auto [stop, error] = std::from_chars(text_.data(), end, value, 10);
  if (error != std::errc() || stop != end) return std::nullopt;
  return value;
}

const JsonValue* JsonValue::Find(std::string_view key) const {
  for (const Member& member : members_) {
    if (member.first == key) return &member.second;
  }
  return nullptr;
}

void JsonValue::Add(std::string key, JsonValue value) {
  members_.emplace_back(std::move(key), std::move(value));
}

std::string_view JsonTypeName(JsonValue::Type type) {
  switch (type) {
    case JsonValue::Type::kNull:
      return "null";
    case JsonValue::Type::kBool:
      return "a boolean";
    case JsonValue::Type::kNumber:
      return "a number";
    case JsonValue::Type::kString:
      return "a string";
    case JsonValue::Type::kArray:
      return "an array";
    case JsonValue::Type::kObject:
      return "an object";
  }
  return "?";
}

absl::StatusOr<JsonValue> ParseJson(std::string_view text) { return Parser(text).ParseDocument(); }

std::string WriteJson(const JsonValue& value) {
  std::string out;
  Write(value, 0, &out);
  out.push_back('\n');
  return out;
}

}  // namespace spillway::tools
