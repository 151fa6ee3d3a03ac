#pragma once
/// \file CPU kernels of the negative log-likelihood loss (forward and backward) over class indices, for inputs
/// laid out as [N, C, S] (batch, classes, flattened extra dims) and targets as [N, S].
#include <cstdint>
#include <utility>

#include "torchlet/tensor/dispatch.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::cpu {

/// Sizes of an NLL problem: N samples, C classes, S positions per sample (the product of the extra dims).
struct NllShape {
  int64_t n = 1, c = 0, s = 1;
};

/// Sums -weight[t] * x[n, t, s] over the targets t = target[n, s] that are not `ignore_index`; also writes each
/// loss to `losses` (contiguous, input dtype, N * S elements; ignored targets 0) when it is defined.
/// `input` and `target` (int64, in range) are contiguous, `weight` contiguous [C] of the input's dtype or
/// undefined. Returns (sum of the losses, sum of the weights of the targets not ignored), both in double.
inline std::pair<double, double> nll_forward(const Tensor& input, const Tensor& target, const Tensor& weight,
                                             int64_t ignore_index, const Tensor& losses, const NllShape& sh) {
  double total = 0, total_weight = 0;
  torchlet::detail::dispatch_floating(input.dtype(), "nll_loss", [&]<class T>() {
    const T* x = input.data<T>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    T* out = losses.defined() ? losses.data<T>() : nullptr;
    const int64_t* t = target.data<int64_t>();
    for (int64_t i = 0; i < sh.n; ++i)
      for (int64_t j = 0; j < sh.s; ++j) {
        const int64_t k = i * sh.s + j, cls = t[k];
        double loss = 0;
        if (cls != ignore_index) {
          const double wt = w ? static_cast<double>(w[cls]) : 1.0;
          loss = -wt * static_cast<double>(x[(i * sh.c + cls) * sh.s + j]);
          total += loss;
          total_weight += wt;
        }
        if (out) out[k] = static_cast<T>(loss);
      }
  });
  return {total, total_weight};
}

/// grad_input (contiguous [N, C, S], zero-filled, input dtype) at [n, t, s] = -weight[t] * scale * g, where g is
/// grad[n, s] when `per_element` (grad contiguous, N * S elements of the same dtype) and 1 otherwise.
inline void nll_backward(const Tensor& grad_input, const Tensor& grad, const Tensor& target, const Tensor& weight,
                         int64_t ignore_index, bool per_element, double scale, const NllShape& sh) {
  torchlet::detail::dispatch_floating(grad_input.dtype(), "nll_loss", [&]<class T>() {
    using A = torchlet::detail::opmath_t<T>;
    T* gi = grad_input.data<T>();
    const T* g = per_element ? grad.data<T>() : nullptr;
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    const int64_t* t = target.data<int64_t>();
    for (int64_t i = 0; i < sh.n; ++i)
      for (int64_t j = 0; j < sh.s; ++j) {
        const int64_t k = i * sh.s + j, cls = t[k];
        if (cls == ignore_index) continue;
        const A wt = w ? static_cast<A>(w[cls]) : A(1);
        const A gv = g ? static_cast<A>(g[k]) : A(1);
        gi[(i * sh.c + cls) * sh.s + j] = static_cast<T>(-wt * static_cast<A>(scale) * gv);
      }
  });
}
}  // namespace torchlet::cpu
