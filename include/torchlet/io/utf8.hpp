#pragma once
/// \file UTF-8 validation, shared by the zip reader (entry names), the unpickler and the pickler (str values).
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace torchlet::io {

/// True when `s` is well-formed UTF-8: no overlong forms, nothing above U+10FFFF, and no surrogate code points
/// unless `allow_surrogates` (Python's pickle decodes str with 'surrogatepass', so lone surrogates are valid there).
inline bool is_utf8(std::string_view s, bool allow_surrogates = false) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1Fu; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0Fu; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07u; }
    else return false;
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3Fu);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    if (!allow_surrogates && cp >= 0xD800 && cp <= 0xDFFF) return false;
    i += n + 1;
  }
  return true;
}

}  // namespace torchlet::io
