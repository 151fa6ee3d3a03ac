#pragma once
/// \file A small strict JSON reader and writer on Value (RFC 8259): objects become insertion-ordered dicts with
/// str keys, arrays lists, integers int (int64), other numbers float, true/false bool, null None. The reader is
/// bounded (input size, nesting depth), rejects duplicate object keys, invalid UTF-8, lone surrogates, control
/// characters in strings, leading zeros, trailing commas and anything after the value but whitespace. Used by
/// the safetensors header and the `torchlet` command-line tool's `--json` output.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "torchlet/core/error.hpp"
#include "torchlet/io/value.hpp"

namespace torchlet::io {

/// Bounds on what parse_json() accepts; each exceeded bound raises IOError.
struct JsonLimits {
  size_t max_bytes = size_t{100'000'000};  ///< longest accepted text
  int max_depth = 64;                      ///< deepest nesting of arrays and objects
};

namespace detail {

/// Recursive-descent parser over one text; errors name `what` (e.g. the file) and the byte offset.
class JsonParser {
 public:
  JsonParser(std::string_view text, std::string_view what, const JsonLimits& limits, std::string_view op)
      : s_(text), what_(what), op_(op), limits_(limits) {}

  /// The one value of the text; raises IOError for anything else.
  Value parse_document() {
    TORCHLET_CHECK(s_.size() <= limits_.max_bytes, IOError, "[", op_, "] ", what_, ": text of ", s_.size(),
                   " bytes exceeds the limit of ", limits_.max_bytes);
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (p_ != s_.size()) fail("unexpected data after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(std::string_view msg) const {
    TORCHLET_THROW(IOError, "[", op_, "] ", what_, ": ", msg, " at byte ", p_);
  }
  void skip_ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n' || s_[p_] == '\r')) ++p_;
  }
  bool eat(char c) {
    if (p_ < s_.size() && s_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  void expect_word(std::string_view w) {
    if (s_.substr(p_, w.size()) != w) fail("invalid literal");
    p_ += w.size();
  }

  Value parse_value(int depth) {
    if (p_ >= s_.size()) fail("unexpected end of text");
    const char c = s_[p_];
    switch (c) {
      case '{': return parse_object(depth + 1);
      case '[': return parse_array(depth + 1);
      case '"': return Value(parse_string());
      case 't': expect_word("true"); return Value(true);
      case 'f': expect_word("false"); return Value(false);
      case 'n': expect_word("null"); return Value();
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
        fail(std::string("unexpected character '") + (c >= 0x20 && c < 0x7f ? std::string(1, c) : "?") + "'");
    }
  }

  Value parse_object(int depth) {
    if (depth > limits_.max_depth) fail("nesting deeper than the limit of " + std::to_string(limits_.max_depth));
    ++p_;  // '{'
    ValueDict d;
    skip_ws();
    if (eat('}')) return Value(std::move(d));
    for (;;) {
      skip_ws();
      if (p_ >= s_.size() || s_[p_] != '"') fail("expected a string key");
      const size_t key_at = p_;
      std::string key = parse_string();
      skip_ws();
      if (!eat(':')) fail("expected ':' after an object key");
      skip_ws();
      Value v = parse_value(depth);
      if (d.contains(Value(key))) {
        p_ = key_at;
        fail("duplicate key \"" + key + "\"");
      }
      d.set(Value(std::move(key)), std::move(v));
      skip_ws();
      if (eat('}')) return Value(std::move(d));
      if (!eat(',')) fail("expected ',' or '}' in an object");
    }
  }

  Value parse_array(int depth) {
    if (depth > limits_.max_depth) fail("nesting deeper than the limit of " + std::to_string(limits_.max_depth));
    ++p_;  // '['
    Value::List items;
    skip_ws();
    if (eat(']')) return Value::list(std::move(items));
    for (;;) {
      skip_ws();
      items.push_back(parse_value(depth));
      skip_ws();
      if (eat(']')) return Value::list(std::move(items));
      if (!eat(',')) fail("expected ',' or ']' in an array");
    }
  }

  Value parse_number() {
    const size_t start = p_;
    eat('-');
    if (p_ >= s_.size()) fail("truncated number");
    if (s_[p_] == '0') {
      ++p_;
      if (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') fail("number with a leading zero");
    } else if (s_[p_] >= '1' && s_[p_] <= '9') {
      while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
    } else {
      fail("invalid number");
    }
    bool integral = true;
    if (eat('.')) {
      integral = false;
      if (p_ >= s_.size() || s_[p_] < '0' || s_[p_] > '9') fail("invalid number: digit expected after '.'");
      while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
    }
    if (p_ < s_.size() && (s_[p_] == 'e' || s_[p_] == 'E')) {
      integral = false;
      ++p_;
      if (!eat('+')) eat('-');
      if (p_ >= s_.size() || s_[p_] < '0' || s_[p_] > '9') fail("invalid number: digit expected in the exponent");
      while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
    }
    const char* b = s_.data() + start;
    const char* e = s_.data() + p_;
    if (integral) {
      int64_t i = 0;
      const auto r = std::from_chars(b, e, i);
      if (r.ec != std::errc() || r.ptr != e) {
        p_ = start;
        fail("integer " + std::string(b, e) + " out of the int64 range");
      }
      return Value(i);
    }
    double d = 0;
    const auto r = std::from_chars(b, e, d);
    if (r.ec != std::errc() || r.ptr != e || !std::isfinite(d)) {
      p_ = start;
      fail("number " + std::string(b, e) + " out of range");
    }
    return Value(d);
  }

  unsigned hex4() {
    if (p_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[p_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else fail("invalid hex digit in a \\u escape");
    }
    return v;
  }
  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }
  /// Copies one UTF-8 sequence starting at p_ (a lead byte >= 0x80), validating it.
  void copy_utf8(std::string& out) {
    const auto b0 = static_cast<uint8_t>(s_[p_]);
    int n = 0;
    uint32_t cp = 0, min = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) { n = 1; cp = b0 & 0x1F; min = 0x80; }
    else if (b0 >= 0xE0 && b0 <= 0xEF) { n = 2; cp = b0 & 0x0F; min = 0x800; }
    else if (b0 >= 0xF0 && b0 <= 0xF4) { n = 3; cp = b0 & 0x07; min = 0x10000; }
    else fail("invalid UTF-8 byte");
    if (p_ + size_t(n) >= s_.size()) fail("truncated UTF-8 sequence");
    for (int i = 1; i <= n; ++i) {
      const auto b = static_cast<uint8_t>(s_[p_ + size_t(i)]);
      if ((b & 0xC0) != 0x80) fail("invalid UTF-8 continuation byte");
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("invalid UTF-8 sequence");
    out.append(s_.substr(p_, size_t(n) + 1));
    p_ += size_t(n) + 1;
  }

  std::string parse_string() {
    ++p_;  // opening quote
    std::string out;
    for (;;) {
      if (p_ >= s_.size()) fail("unterminated string");
      const char c = s_[p_];
      if (c == '"') {
        ++p_;
        return out;
      }
      if (static_cast<uint8_t>(c) < 0x20) fail("control character in a string");
      if (static_cast<uint8_t>(c) >= 0x80) {
        copy_utf8(out);
        continue;
      }
      if (c != '\\') {
        out += c;
        ++p_;
        continue;
      }
      ++p_;
      if (p_ >= s_.size()) fail("unterminated escape");
      const char e = s_[p_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(p_, 2) != "\\u") fail("lone high surrogate in a \\u escape");
            p_ += 2;
            const uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("invalid low surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("lone low surrogate in a \\u escape");
          }
          put_utf8(out, cp);
          break;
        }
        default: --p_; fail("invalid escape");
      }
    }
  }

  std::string_view s_;
  std::string_view what_;
  std::string_view op_;
  JsonLimits limits_;
  size_t p_ = 0;
};
}  // namespace detail

/// Parses one JSON text (surrounding whitespace allowed) into a Value; `what` names the source and `op` the
/// caller in errors: `[json] config.json: duplicate key "a" at byte 57`.
inline Value parse_json(std::string_view text, std::string_view what = "<json>", const JsonLimits& limits = {},
                        std::string_view op = "json") {
  return detail::JsonParser(text, what, limits, op).parse_document();
}

/// Appends `s` as a JSON string literal: `"`, `\` and control characters escaped (\n \r \t \b \f, others
/// \u00xx), everything else (UTF-8 included) as is — the output of Rust's serde_json and of Python's
/// `json.dumps(..., ensure_ascii=False)`.
inline void json_quote_into(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<uint8_t>(c) < 0x20) {
          out += "\\u00";
          out += hex[(static_cast<uint8_t>(c) >> 4) & 0xF];
          out += hex[static_cast<uint8_t>(c) & 0xF];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

/// `s` as a JSON string literal (see json_quote_into()).
inline std::string json_quote(std::string_view s) {
  std::string out;
  json_quote_into(out, s);
  return out;
}

/// How to_json() lays out its text.
struct JsonWriteOptions {
  bool compact = false;  ///< `{"a":1,"b":[1,2]}` (serde_json) instead of `{"a": 1, "b": [1, 2]}` (Python)
};

/// Writes a Value as one line of JSON, as Python's `json.dumps` does: dict keys must be str, int, float, bool
/// or None (non-str keys become strings as in Python), tuples become arrays, floats use Python's repr
/// (NaN/Infinity as Python writes them). Tensors raise ValueError.
inline std::string to_json(const Value& v, const JsonWriteOptions& options = {}) {
  std::string out;
  struct Writer {
    std::string& out;
    const JsonWriteOptions& o;
    static std::string key_text(const Value& k) {
      switch (k.kind()) {
        case Value::Kind::String: return k.as_string();
        case Value::Kind::Int: return std::to_string(k.as_int());
        case Value::Kind::Bool: return k.as_bool() ? "true" : "false";
        case Value::Kind::None: return "null";
        case Value::Kind::Double: return torchlet::detail::py_float_repr(k.as_double());
        default: TORCHLET_THROW(ValueError, "[json] cannot write a dict key of type ", k.kind_name());
      }
    }
    void write(const Value& x) {
      switch (x.kind()) {
        case Value::Kind::None: out += "null"; return;
        case Value::Kind::Bool: out += x.as_bool() ? "true" : "false"; return;
        case Value::Kind::Int: out += std::to_string(x.as_int()); return;
        case Value::Kind::Double: {
          const double d = x.as_double();
          if (std::isnan(d)) out += "NaN";
          else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
          else out += torchlet::detail::py_float_repr(d);
          return;
        }
        case Value::Kind::String: json_quote_into(out, x.as_string()); return;
        case Value::Kind::Tensor: TORCHLET_THROW(ValueError, "[json] cannot write a tensor as JSON");
        case Value::Kind::List:
        case Value::Kind::Tuple: {
          out += '[';
          bool first = true;
          for (const Value& e : x.as_list()) {
            if (!first) out += o.compact ? "," : ", ";
            first = false;
            write(e);
          }
          out += ']';
          return;
        }
        case Value::Kind::Dict: {
          out += '{';
          bool first = true;
          for (const auto& [k, e] : x.as_dict()) {
            if (!first) out += o.compact ? "," : ", ";
            first = false;
            json_quote_into(out, key_text(k));
            out += o.compact ? ":" : ": ";
            write(e);
          }
          out += '}';
          return;
        }
      }
    }
  } w{out, options};
  w.write(v);
  return out;
}

}  // namespace torchlet::io
