#pragma once
/// \file Element types with PyTorch's names and sizes, type promotion, and value conversion.
#include <cstdint>
#include <ostream>
#include <limits>
#include <string_view>
#include <type_traits>

#include "torchlet/core/error.hpp"
#include "torchlet/core/half.hpp"

namespace torchlet {

/// Element type of a tensor. The first ten have kernels; the rest are stored and moved but not computed on.
enum class DType : uint8_t {
  Bool, UInt8, Int8, Int16, Int32, Int64, Float16, BFloat16, Float32, Float64,
  UInt16, UInt32, UInt64, Float8_e4m3fn, Float8_e5m2, Float8_e4m3fnuz, Float8_e5m2fnuz,
};

inline constexpr DType kBool = DType::Bool;        ///< torch.bool
inline constexpr DType kUInt8 = DType::UInt8;      ///< torch.uint8
inline constexpr DType kInt8 = DType::Int8;        ///< torch.int8
inline constexpr DType kInt16 = DType::Int16;      ///< torch.int16
inline constexpr DType kInt32 = DType::Int32;      ///< torch.int32
inline constexpr DType kInt64 = DType::Int64;      ///< torch.int64
inline constexpr DType kFloat16 = DType::Float16;  ///< torch.float16
inline constexpr DType kBFloat16 = DType::BFloat16;  ///< torch.bfloat16
inline constexpr DType kFloat32 = DType::Float32;  ///< torch.float32
inline constexpr DType kFloat64 = DType::Float64;  ///< torch.float64

/// Size of one element in bytes.
constexpr int64_t element_size(DType t) {
  switch (t) {
    case DType::Bool: case DType::UInt8: case DType::Int8:
    case DType::Float8_e4m3fn: case DType::Float8_e5m2: case DType::Float8_e4m3fnuz: case DType::Float8_e5m2fnuz:
      return 1;
    case DType::Int16: case DType::Float16: case DType::BFloat16: case DType::UInt16: return 2;
    case DType::Int32: case DType::Float32: case DType::UInt32: return 4;
    case DType::Int64: case DType::Float64: case DType::UInt64: return 8;
  }
  return 0;
}

/// PyTorch's name of the dtype without the `torch.` prefix, e.g. "float32".
constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::Bool: return "bool";
    case DType::UInt8: return "uint8";
    case DType::Int8: return "int8";
    case DType::Int16: return "int16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::UInt16: return "uint16";
    case DType::UInt32: return "uint32";
    case DType::UInt64: return "uint64";
    case DType::Float8_e4m3fn: return "float8_e4m3fn";
    case DType::Float8_e5m2: return "float8_e5m2";
    case DType::Float8_e4m3fnuz: return "float8_e4m3fnuz";
    case DType::Float8_e5m2fnuz: return "float8_e5m2fnuz";
  }
  return "unknown";
}

/// Streams the dtype's PyTorch name.
inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

/// Parses a PyTorch dtype name ("float32", "torch.float32", "float", "half", "long", ...).
inline DType dtype_from_name(std::string_view name) {
  if (name.substr(0, 6) == "torch.") name.remove_prefix(6);
  for (int i = 0; i <= static_cast<int>(DType::Float8_e5m2fnuz); ++i)
    if (dtype_name(static_cast<DType>(i)) == name) return static_cast<DType>(i);
  struct Alias { std::string_view name; DType dtype; };
  constexpr Alias aliases[] = {{"float", kFloat32}, {"double", kFloat64}, {"half", kFloat16},
                               {"long", kInt64},    {"int", kInt32},      {"short", kInt16}};
  for (const auto& a : aliases)
    if (a.name == name) return a.dtype;
  TORCHLET_THROW(DTypeError, "[dtype] unknown dtype name: \"", name, "\"");
}

/// True for float16, bfloat16, float32, float64 and the float8 variants.
constexpr bool is_floating_point(DType t) {
  return t == DType::Float16 || t == DType::BFloat16 || t == DType::Float32 || t == DType::Float64 ||
         t == DType::Float8_e4m3fn || t == DType::Float8_e5m2 || t == DType::Float8_e4m3fnuz ||
         t == DType::Float8_e5m2fnuz;
}

/// True for the integer dtypes (not bool).
constexpr bool is_integral(DType t) {
  return t == DType::UInt8 || t == DType::Int8 || t == DType::Int16 || t == DType::Int32 || t == DType::Int64 ||
         t == DType::UInt16 || t == DType::UInt32 || t == DType::UInt64;
}

/// True for the dtypes CPU kernels compute on (bool, the signed ints, uint8, the four floats).
constexpr bool has_kernels(DType t) { return static_cast<uint8_t>(t) <= static_cast<uint8_t>(DType::Float64); }

/// The dtype whose C++ type is T.
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<bool>() { return kBool; }
template <> constexpr DType dtype_of<uint8_t>() { return kUInt8; }
template <> constexpr DType dtype_of<int8_t>() { return kInt8; }
template <> constexpr DType dtype_of<int16_t>() { return kInt16; }
template <> constexpr DType dtype_of<int32_t>() { return kInt32; }
template <> constexpr DType dtype_of<int64_t>() { return kInt64; }
template <> constexpr DType dtype_of<Half>() { return kFloat16; }
template <> constexpr DType dtype_of<BFloat16>() { return kBFloat16; }
template <> constexpr DType dtype_of<float>() { return kFloat32; }
template <> constexpr DType dtype_of<double>() { return kFloat64; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::UInt16; }
template <> constexpr DType dtype_of<uint32_t>() { return DType::UInt32; }
template <> constexpr DType dtype_of<uint64_t>() { return DType::UInt64; }

/// The dtype of `a op b` for two tensors, by PyTorch's promotion rules (bool < integers < floats;
/// uint8 with int8 gives int16; float16 with bfloat16 gives float32).
inline DType promote_types(DType a, DType b) {
  if (a == b) return a;
  TORCHLET_CHECK(has_kernels(a) && has_kernels(b), DTypeError, "[promote_types] no promotion between ", a,
                 " and ", b, ": at least one is a storage-only dtype");
  const bool fa = is_floating_point(a), fb = is_floating_point(b);
  if (fa && fb) {
    if ((a == kFloat16 && b == kBFloat16) || (a == kBFloat16 && b == kFloat16)) return kFloat32;
    return static_cast<uint8_t>(a) > static_cast<uint8_t>(b) ? a : b;
  }
  if (fa) return a;
  if (fb) return b;
  if (a == kBool) return b;
  if (b == kBool) return a;
  if (a == kUInt8 || b == kUInt8) {
    const DType other = a == kUInt8 ? b : a;
    return other == kInt8 ? kInt16 : other;
  }
  return static_cast<uint8_t>(a) > static_cast<uint8_t>(b) ? a : b;  // signed ints are ordered by size
}

namespace detail {
/// The type arithmetic on T is carried out in: float for the 16-bit floats, T otherwise.
template <class T> struct opmath { using type = T; };
template <> struct opmath<Half> { using type = float; };
template <> struct opmath<BFloat16> { using type = float; };
template <class T> using opmath_t = typename opmath<T>::type;

template <class T> inline constexpr bool is_float_v =
    std::is_floating_point_v<T> || std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

/// Converts one value as PyTorch does: floats to integers truncate toward zero (through int64, so
/// negative values wrap in unsigned types); anything to bool is `!= 0`; to 16-bit floats rounds to nearest even.
template <class To, class From>
inline To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, bool>) {
    return static_cast<opmath_t<From>>(v) != static_cast<opmath_t<From>>(0);
  } else if constexpr (std::is_integral_v<To> && is_float_v<From>) {
    const double d = static_cast<double>(static_cast<opmath_t<From>>(v));
    // out-of-range and NaN give int64's "indefinite" value, as x86's cvttsd2si does
    const int64_t i = (d >= -9.2233720368547758e18 && d < 9.2233720368547758e18) ? static_cast<int64_t>(d)
                                                                                  : std::numeric_limits<int64_t>::min();
    return static_cast<To>(i);
  } else if constexpr (std::is_same_v<To, Half> || std::is_same_v<To, BFloat16>) {
    return To(static_cast<float>(static_cast<opmath_t<From>>(v)));
  } else {
    return static_cast<To>(static_cast<opmath_t<From>>(v));
  }
}
}  // namespace detail
}  // namespace torchlet
