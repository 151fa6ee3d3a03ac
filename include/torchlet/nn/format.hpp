#pragma once
/// \file Python-style text for nn's printed forms and messages: float repr, True/False, torch.Size([...]).
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>

#include "torchlet/core/shape.hpp"

namespace torchlet::nn::detail {

/// "True" / "False".
inline std::string py_bool(bool v) { return v ? "True" : "False"; }

/// Python's repr(float): the shortest round-trip digits, fixed notation for exponents in [-4, 16), else
/// scientific ("1e-05", "0.1", "1.0", "1e+16").
inline std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  const int exp = std::stoi(sci.substr(e + 1));
  if (exp < -4 || exp >= 16) return sci;
  std::string sign, digits;
  for (size_t i = 0; i < e; ++i) {
    if (sci[i] == '-') sign = "-";
    else if (sci[i] != '.') digits += sci[i];
  }
  std::string out;
  if (exp < 0) {
    out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  } else if (static_cast<int>(digits.size()) <= exp + 1) {
    out = digits + std::string(static_cast<size_t>(exp + 1) - digits.size(), '0') + ".0";
  } else {
    out = digits.substr(0, static_cast<size_t>(exp + 1)) + "." + digits.substr(static_cast<size_t>(exp + 1));
  }
  return sign + out;
}

/// PyTorch's printed shape: "torch.Size([1000, 512])", "torch.Size([])".
inline std::string torch_size(const Shape& s) {
  std::string out = "torch.Size([";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "])";
}

/// Python's _addindent: every line but the first indented by `spaces`.
inline std::string add_indent(const std::string& s, int spaces) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == '\n') out += std::string(static_cast<size_t>(spaces), ' ');
  }
  return out;
}
}  // namespace torchlet::nn::detail
