#pragma once
/// \file Device element types and conversions: each torchlet dtype's CUDA type (float16 -> __half, bfloat16 ->
/// __nv_bfloat16), the math type ops compute in (float for the 16-bit floats), conversions with torchlet's CPU
/// rules, and a dtype dispatch giving both the device and the host type. Compiled by nvcc only.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "torchlet/core/dtype.hpp"
#include "torchlet/tensor/dispatch.hpp"
#include "torchlet/tensor/scalar.hpp"

namespace torchlet::cuda {

/// The CUDA type holding elements of host type H (H itself but for the 16-bit floats).
template <class H> struct device_type { using type = H; };
template <> struct device_type<Half> { using type = __half; };
template <> struct device_type<BFloat16> { using type = __nv_bfloat16; };
/// device_type<H>::type.
template <class H> using device_t = typename device_type<H>::type;

/// The type device code computes T in: float for __half / __nv_bfloat16, T otherwise.
template <class T> struct math_type { using type = T; };
template <> struct math_type<__half> { using type = float; };
template <> struct math_type<__nv_bfloat16> { using type = float; };
/// math_type<T>::type.
template <class T> using math_t = typename math_type<T>::type;

/// True for the device's floating types.
template <class T>
inline constexpr bool is_device_float_v = std::is_floating_point_v<T> || std::is_same_v<T, __half> ||
                                          std::is_same_v<T, __nv_bfloat16>;

/// An element widened to its math type.
template <class T>
__device__ __forceinline__ math_t<T> load_math(T v) {
  if constexpr (std::is_same_v<T, __half>) return __half2float(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(v);
  else return v;
}

/// A math value stored as T with torchlet's CPU rules: != 0 for bool, truncation for integers (NaN and
/// out-of-range floats give int64's minimum, as x86 does), round-to-nearest through float for the 16-bit floats.
template <class T, class M>
__device__ __forceinline__ T store_math(M v) {
  if constexpr (std::is_same_v<T, M>) {
    return v;
  } else if constexpr (std::is_same_v<T, bool>) {
    return v != M(0);
  } else if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else if constexpr (std::is_integral_v<T> && std::is_floating_point_v<M>) {
    const double d = static_cast<double>(v);
    const int64_t i = (d >= -9.2233720368547758e18 && d < 9.2233720368547758e18) ? static_cast<int64_t>(d)
                                                                                  : INT64_MIN;
    return static_cast<T>(i);
  } else {
    return static_cast<T>(v);
  }
}

/// v converted from one element type to another.
template <class To, class From>
__device__ __forceinline__ To convert_element(From v) {
  if constexpr (std::is_same_v<To, From>) return v;
  else if constexpr (std::is_same_v<To, bool>) return load_math(v) != math_t<From>(0);
  else return store_math<To>(load_math(v));
}

/// A host number as the device element T (bit-copied from torchlet's host type for the 16-bit floats).
template <class H>
device_t<H> to_device_value(const Scalar& s) {
  const H h = s.to<H>();
  device_t<H> d;
  static_assert(sizeof(d) == sizeof(h));
  std::memcpy(static_cast<void*>(&d), static_cast<const void*>(&h), sizeof(h));
  return d;
}

/// Calls f.template operator()<H, D>() with the host type H and device type D of a computable dtype.
template <class F>
decltype(auto) dispatch(DType t, const char* op, F&& f) {
  return torchlet::detail::dispatch_all(t, op, [&]<class H>() { return f.template operator()<H, device_t<H>>(); });
}
/// dispatch() for the floating dtypes only (DTypeError naming `op` otherwise).
template <class F>
decltype(auto) dispatch_floating(DType t, const char* op, F&& f) {
  return torchlet::detail::dispatch_floating(t, op,
                                             [&]<class H>() { return f.template operator()<H, device_t<H>>(); });
}
}  // namespace torchlet::cuda
