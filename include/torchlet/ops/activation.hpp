#pragma once
/// \file softmax, log_softmax and dropout with PyTorch's semantics, all differentiable (relu lives in
/// ops/arithmetic.hpp).
#include <utility>

#include "torchlet/backend/cpu/softmax.hpp"
#include "torchlet/ops/arithmetic.hpp"
#include "torchlet/ops/autocast.hpp"
#include "torchlet/ops/reduction.hpp"
#include "torchlet/tensor/factory.hpp"
#include "torchlet/tensor/random.hpp"

namespace torchlet {
namespace detail {
/// The dtype softmax's backward is computed in: float32 for the 16-bit floats, the dtype itself otherwise.
inline DType softmax_backward_dtype(DType t) { return t == kFloat16 || t == kBFloat16 ? kFloat32 : t; }

/// softmax / log_softmax: checks, then the CPU kernel into a new contiguous tensor of x's dtype.
inline Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  TORCHLET_CHECK(x.is_floating_point(), DTypeError, "[", op, "] expected a floating point dtype (float16, bfloat16, "
                 "float32, float64), got ", x.dtype());
  dim = wrap_dim(dim, x.dim(), op);
  Tensor out = empty(x.sizes(), TensorOptions(x.dtype(), x.device()));
  if (x.is_cpu()) cpu::softmax_into(out, x, dim, log);
  else if (out.numel() > 0) device_kernels(x.device(), op).softmax(out, x, dim, log);
  // backward from the saved output y (16-bit floats in float32):
  // softmax: y * (g - sum(g * y)); log_softmax: g - exp(y) * sum(g)
  return recorded(op, {x}, out, [so = SavedTensor(out), dim, log](const TensorList& g, const Needs&) {
    const DType ct = softmax_backward_dtype(so.get().dtype());
    const Tensor y = so.get().to(ct), gy = g[0].to(ct);
    const Shape dims{dim};
    if (log) return TensorList{sub(gy, mul(exp(y), sum(gy, dims, true)))};
    return TensorList{mul(y, sub(gy, sum(mul(gy, y), dims, true)))};
  });
}
}  // namespace detail

/// exp(x - max) / sum(exp(x - max)) along `dim` (floating dtypes; 16-bit floats computed in float32).
/// Differentiable.
inline Tensor softmax(const Tensor& x, int64_t dim) {
  if (detail::autocast_applies(x)) {  // an Autocast scope: computed in float32
    detail::AutocastPause cast_once;
    return softmax(detail::autocast_float(x), dim);
  }
  return detail::softmax_impl(x, dim, false);
}

/// x - max - log(sum(exp(x - max))) along `dim` (floating dtypes; 16-bit floats computed in float32).
/// Differentiable.
inline Tensor log_softmax(const Tensor& x, int64_t dim) {
  if (detail::autocast_applies(x)) {  // an Autocast scope: computed in float32
    detail::AutocastPause cast_once;
    return log_softmax(detail::autocast_float(x), dim);
  }
  return detail::softmax_impl(x, dim, true);
}

namespace detail {
/// Dropout of a device tensor with a mask drawn on the CPU (so a generator's seed gives the same mask on every
/// device): the mask and the noise mask * (1/(1-p) rounded to x's dtype) are copied to the device and
/// out = x * noise is one routed multiply, the CPU's arithmetic.
inline std::pair<Tensor, Tensor> dropout_device(const Tensor& x, const Tensor& mask, double p) {
  Tensor out, device_mask;
  {
    autograd::NoGradGuard untracked;
    const Tensor zero = scalar_tensor(0.0, x.dtype());  // 1 / keep computed as the CPU does, in x's dtype's opmath
    const Tensor scale = p < 1 ? div(scalar_tensor(1.0, x.dtype()), scalar_tensor(1 - p, x.dtype())) : zero;
    const Tensor noise = where(mask, scale, zero);
    device_mask = mask.to(x.device());
    out = mul(x, noise.to(x.device()));
  }
  out = recorded("dropout", {x}, out, [sm = SavedTensor(device_mask), p](const TensorList& g, const Needs&) {
    const double s = p < 1 ? 1.0 / (1.0 - p) : 0.0;  // PyTorch: grad * (mask * scale)
    return TensorList{mul(g[0], mul(sm.get().to(g[0].dtype()), s))};
  });
  return {out, device_mask};
}
}  // namespace detail

/// Dropout that also returns its bool mask (true = kept): out = x * mask / (1 - p) computed as PyTorch does
/// (x times the scale 1/(1-p) rounded to x's dtype; dropped elements are x * 0). Identity with an all-true
/// mask when !training or p == 0; all dropped when p == 1. The mask is drawn from `gen` in row-major order.
/// The output is differentiable: grad * mask / (1 - p) (0 when p == 1). On a device the mask is still drawn on
/// the CPU from `gen` and copied (one host-to-device copy of x's size in bool).
inline std::pair<Tensor, Tensor> dropout_with_mask(const Tensor& x, double p, bool training,
                                                   Generator& gen = default_generator()) {
  TORCHLET_CHECK(p >= 0 && p <= 1, ValueError, "[dropout] dropout probability has to be between 0 and 1, but got ",
                 p);
  if (!training || p == 0 || x.numel() == 0) return {x, ones(x.sizes(), kBool).to(x.device())};
  TORCHLET_CHECK(x.is_floating_point(), DTypeError, "[dropout] expected a floating point dtype, got ", x.dtype());
  Tensor mask = empty(x.sizes(), kBool);
  bool* m = mask.data<bool>();
  const double keep = 1 - p;
  for (int64_t i = 0, n = mask.numel(); i < n; ++i) m[i] = p < 1 && gen.uniform() < keep;
  if (!x.is_cpu()) return detail::dropout_device(x, mask, p);
  Tensor out = empty(x.sizes(), x.dtype());
  std::array<char*, 3> base{static_cast<char*>(out.data_ptr()), static_cast<char*>(x.data_ptr()),
                            static_cast<char*>(mask.data_ptr())};
  std::array<Shape, 3> st{detail::byte_strides(out.strides(), out.element_size()),
                          detail::byte_strides(x.strides(), x.element_size()),
                          detail::byte_strides(mask.strides(), 1)};
  detail::dispatch_floating(x.dtype(), "dropout", [&]<class T>() {
    using A = detail::opmath_t<T>;
    // PyTorch: noise = bernoulli(1 - p) / (1 - p) in x's dtype, then x * noise
    const A scale = p < 1 ? static_cast<A>(static_cast<T>(A(1) / static_cast<A>(static_cast<T>(keep)))) : A(0);
    detail::for_each_strided<3>(x.sizes(), base, st, [scale](std::array<char*, 3> q, std::array<int64_t, 3> s,
                                                             int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        const A v = static_cast<A>(*reinterpret_cast<const T*>(q[1] + i * s[1]));
        const bool kept = *reinterpret_cast<const bool*>(q[2] + i * s[2]);
        *reinterpret_cast<T*>(q[0] + i * s[0]) = static_cast<T>(v * (kept ? scale : A(0)));
      }
    });
  });
  out = detail::recorded("dropout", {x}, out, [sm = detail::SavedTensor(mask), p](const detail::TensorList& g,
                                                                                 const detail::Needs&) {
    const double scale = p < 1 ? 1.0 / (1.0 - p) : 0.0;  // PyTorch: grad * (mask * scale)
    return detail::TensorList{mul(g[0], mul(sm.get().to(g[0].dtype()), scale))};
  });
  return {out, mask};
}

/// Zeroes each element with probability p and scales the rest by 1/(1-p) when `training` (torch's dropout);
/// returns x itself when !training or p == 0. p outside [0, 1] raises ValueError.
inline Tensor dropout(const Tensor& x, double p, bool training, Generator& gen = default_generator()) {
  if (!training || p == 0) {  // no mask to make
    TORCHLET_CHECK(p >= 0 && p <= 1, ValueError, "[dropout] dropout probability has to be between 0 and 1, but got ",
                   p);
    return x;
  }
  return dropout_with_mask(x, p, training, gen).first;
}
}  // namespace torchlet
