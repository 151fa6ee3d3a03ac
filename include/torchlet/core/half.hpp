#pragma once
/// \file The 16-bit floating types float16 (IEEE half) and bfloat16, with round-to-nearest-even conversion.
#include <bit>
#include <cmath>
#include <cstdint>

namespace torchlet {
namespace detail {
/// Bits of the IEEE half nearest to `f` (ties to even; overflow to infinity; NaN stays NaN).
inline uint16_t float_to_half_bits(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<uint16_t>(sign | (abs > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (abs < 0x38800000u) {  // below 2^-14: a half subnormal, in units of 2^-24 (exact scaling)
    const float scaled = std::bit_cast<float>(abs) * 16777216.0f;
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  const uint32_t mant = abs & 0x7fffffu;
  uint32_t h = ((((abs >> 23) - 127u + 15u)) << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is correct
  return static_cast<uint16_t>(sign | h);
}

/// The float equal to the IEEE half with bits `h` (exact).
inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // 2^-24
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp - 15u + 127u) << 23) | (mant << 13));
}

/// Bits of the bfloat16 nearest to `f` (ties to even; any NaN gives 0x7fc0, as in PyTorch).
inline uint16_t float_to_bfloat16_bits(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;  // every NaN becomes the canonical quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
}  // namespace detail

/// IEEE 754 binary16, stored as bits; arithmetic goes through float.
struct Half {
  uint16_t bits = 0;
  Half() = default;
  /// Rounds `f` to the nearest half (ties to even).
  Half(float f) : bits(detail::float_to_half_bits(f)) {}  // NOLINT(google-explicit-constructor)
  /// Builds a half from its raw bits.
  static Half from_bits(uint16_t b) { Half h; h.bits = b; return h; }
  operator float() const { return detail::half_bits_to_float(bits); }  // NOLINT
};

/// bfloat16 (the upper half of a float32), stored as bits; arithmetic goes through float.
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  /// Rounds `f` to the nearest bfloat16 (ties to even).
  BFloat16(float f) : bits(detail::float_to_bfloat16_bits(f)) {}  // NOLINT(google-explicit-constructor)
  /// Builds a bfloat16 from its raw bits.
  static BFloat16 from_bits(uint16_t b) { BFloat16 h; h.bits = b; return h; }
  operator float() const { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }  // NOLINT
};
}  // namespace torchlet
