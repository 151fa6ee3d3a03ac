#pragma once
/// \file Scalar: a bool, integer or floating value passed to fill, full, clamp and tensor-scalar arithmetic.
#include <cstdint>
#include <ostream>
#include <type_traits>

#include "torchlet/core/dtype.hpp"

namespace torchlet {

/// A number that keeps whether it was a bool, an integer or a floating value (PyTorch's type promotion
/// treats them differently: `int_tensor * 2.5` is float, `int_tensor * 2` stays int).
class Scalar {
 public:
  /// Which of the three kinds this scalar is.
  enum class Kind : uint8_t { Bool, Int, Float };

  Scalar() : kind_(Kind::Int), i_(0) {}
  /// From any arithmetic value (or Half/BFloat16).
  template <class T, std::enable_if_t<std::is_arithmetic_v<T> || std::is_same_v<T, Half> ||
                                          std::is_same_v<T, BFloat16>, int> = 0>
  Scalar(T v) {  // NOLINT(google-explicit-constructor)
    if constexpr (std::is_same_v<T, bool>) { kind_ = Kind::Bool; i_ = v; }
    else if constexpr (std::is_integral_v<T>) { kind_ = Kind::Int; i_ = static_cast<int64_t>(v); }
    else { kind_ = Kind::Float; d_ = static_cast<double>(static_cast<detail::opmath_t<T>>(v)); }
  }

  Kind kind() const { return kind_; }                            ///< Bool, Int or Float.
  bool is_floating_point() const { return kind_ == Kind::Float; }  ///< True for a floating value.
  bool is_integral() const { return kind_ == Kind::Int; }        ///< True for an integer (not bool).
  bool is_bool() const { return kind_ == Kind::Bool; }           ///< True for a bool.

  /// The value converted to T with PyTorch's conversion rules.
  template <class T>
  T to() const {
    return kind_ == Kind::Float ? detail::convert<T>(d_) : detail::convert<T>(i_);
  }
  /// The dtype PyTorch gives a tensor made from this scalar alone (bool, int64 or float32).
  DType default_dtype() const { return kind_ == Kind::Bool ? kBool : kind_ == Kind::Int ? kInt64 : kFloat32; }

  friend std::ostream& operator<<(std::ostream& os, const Scalar& s) {
    if (s.kind_ == Kind::Float) return os << s.d_;
    if (s.kind_ == Kind::Bool) return os << (s.i_ ? "True" : "False");
    return os << s.i_;
  }

 private:
  Kind kind_;
  union {
    int64_t i_;
    double d_;
  };
};
}  // namespace torchlet
