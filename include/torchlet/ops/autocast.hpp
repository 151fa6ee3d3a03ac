#pragma once
/// \file What the autocast ops do with their inputs (the scope is torchlet::Autocast, core/autocast.hpp): the
/// lower-precision ops cast floating inputs to the scope's 16-bit dtype, the float32 ops cast 16-bit inputs up.
/// The casts are ordinary differentiable conversions, so gradients reach float32 parameters in float32.
#include "torchlet/core/autocast.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::detail {
/// True when an op on `t` should autocast now: a scope is on for t's device type and no autocast op or backward
/// pass is already running (their inner ops run in the dtypes they were given, as in PyTorch).
inline bool autocast_applies(const Tensor& t) {
  const AutocastState& s = autocast_state();
  return s.paused == 0 && t.defined() && s.enabled[static_cast<int>(t.device().type)];
}
/// `t` in the scope's 16-bit dtype when it is float32 or 16-bit (float64, other dtypes and undefined tensors
/// unchanged, as PyTorch's autocast leaves doubles alone).
inline Tensor autocast_lower(const Tensor& t) {
  if (!t.defined() || !t.is_floating_point() || t.dtype() == kFloat64) return t;
  const DType d = autocast_dtype(t.device().type);
  return t.dtype() == d ? t : t.to(d);
}
/// `t` in float32 when it is a 16-bit float (others unchanged).
inline Tensor autocast_float(const Tensor& t) {
  return t.defined() && (t.dtype() == kFloat16 || t.dtype() == kBFloat16) ? t.to(kFloat32) : t;
}
}  // namespace torchlet::detail
