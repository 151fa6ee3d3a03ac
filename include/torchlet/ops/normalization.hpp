#pragma once
/// \file Batch normalisation with PyTorch's semantics (torch.nn.functional.batch_norm): evaluation with running
/// statistics, training with batch statistics and in-place running-statistics updates, on [N, C, ...] inputs.
/// Differentiable in the input, weight and bias (backward kernel: backend/cpu/batch_norm_backward.hpp); running
/// statistics are constants to autograd and are updated once per forward call.
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include "torchlet/autograd/node.hpp"
#include "torchlet/backend/cpu/batch_norm.hpp"
#include "torchlet/backend/cpu/batch_norm_backward.hpp"
#include "torchlet/tensor/factory.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {

/// Options of batch_norm, with PyTorch's defaults.
struct BatchNormOptions {
  bool training = false;   ///< normalise with batch statistics (and update the running ones) instead of running ones
  double momentum = 0.1;   ///< running = (1 - momentum) * running + momentum * batch statistic
  double eps = 1e-5;       ///< added to the variance before the square root
};

namespace detail {
/// A 1-D float64 copy of a per-channel parameter's values.
inline std::vector<double> channel_values(const Tensor& p) {
  const Tensor c = p.reshape({-1}).to(kFloat64).contiguous();
  return std::vector<double>(c.data<double>(), c.data<double>() + c.numel());
}

/// Checks one optional per-channel tensor of batch_norm: on the CPU, C elements, a dtype that fits the input.
inline void check_bn_param(const Tensor& p, const char* name, const Tensor& x) {
  if (!p.defined()) return;
  check_cpu(p, "batch_norm");
  const int64_t C = x.size(1);
  TORCHLET_CHECK(p.numel() == C, ShapeError, "[batch_norm] ", name, " has ", p.numel(), " elements, input has ", C,
                 " channels (input ", shape_str(x.sizes()), ")");
  const bool half_input = x.dtype() == kFloat16 || x.dtype() == kBFloat16;
  TORCHLET_CHECK(p.dtype() == x.dtype() || (half_input && p.dtype() == kFloat32), DTypeError, "[batch_norm] ", name,
                 " has dtype ", p.dtype(), ": expected the input's dtype ", x.dtype(),
                 half_input ? " or float32" : "");
}

/// The batch_norm backward node's function for inputs {x, weight, bias}: mean and invstd are the per-channel
/// statistics the forward normalised with (batch ones in training, running ones in evaluation).
inline autograd::BackwardFn batch_norm_backward_fn(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                                   std::vector<double> mean, std::vector<double> invstd,
                                                   bool training) {
  return [sx = autograd::SavedTensor(x), sw = autograd::SavedTensor(weight), mean = std::move(mean),
          invstd = std::move(invstd), training, w_sizes = weight.defined() ? weight.sizes() : Shape{},
          b_sizes = bias.defined() ? bias.sizes() : Shape{}, w_dtype = weight.defined() ? weight.dtype() : kFloat32,
          b_dtype = bias.defined() ? bias.dtype() : kFloat32](const autograd::TensorList& g,
                                                               const std::vector<bool>& need) {
    autograd::TensorList r(3);
    if (!need[0] && !need[1] && !need[2]) return r;
    const Tensor xv = sx.get(), w = sw.get();
    const int64_t N = xv.size(0), C = xv.size(1);
    const int64_t S = numel_of(Shape(xv.sizes().begin() + 2, xv.sizes().end()));
    const size_t nc = static_cast<size_t>(C);
    const std::vector<double> wv = w.defined() ? channel_values(w) : std::vector<double>(nc, 1.0);
    Tensor gi = need[0] ? empty(xv.sizes(), xv.dtype()) : Tensor();
    std::vector<double> sum_dy, dot;
    cpu::batch_norm_backward(xv.reshape({N, C, S}), g[0].to(xv.dtype()).reshape({N, C, S}), mean, invstd, wv,
                             training, need[0] ? gi.view({N, C, S}) : Tensor(), need[1] || need[2], sum_dy, dot);
    r[0] = gi;
    if (need[1]) {
      std::vector<double> gw(nc);
      for (size_t c = 0; c < nc; ++c) gw[c] = dot[c] == 0 ? 0.0 : dot[c] * invstd[c];
      r[1] = tensor(gw).to(w_dtype).reshape(w_sizes);
    }
    if (need[2]) r[2] = tensor(sum_dy).to(b_dtype).reshape(b_sizes);
    return r;
  };
}
}  // namespace detail

/// Batch normalisation that also returns what the backward pass needs: (output, save_mean, save_invstd), the
/// last two [C] in float32 (float64 for a float64 input). In training they are the batch mean and
/// 1 / sqrt(biased batch variance + eps), and defined running statistics are updated in place with the unbiased
/// variance; in evaluation they are the running mean and 1 / sqrt(running_var + eps).
/// Any of running_mean/running_var (together), weight and bias may be undefined; x is [N, C, ...].
/// The output is differentiable in x, weight and bias (save_mean and save_invstd are not).
inline std::tuple<Tensor, Tensor, Tensor> batch_norm_with_stats(const Tensor& x, const Tensor& running_mean,
                                                                const Tensor& running_var, const Tensor& weight,
                                                                const Tensor& bias, const BatchNormOptions& o = {}) {
  TORCHLET_CHECK(x.defined(), ValueError, "[batch_norm] input tensor is undefined");
  detail::check_cpu(x, "batch_norm");
  TORCHLET_CHECK(x.dim() >= 2, ShapeError, "[batch_norm] expected input of at least 2 dims [N, C, ...], got ",
                 shape_str(x.sizes()));
  const DType t = x.dtype();
  TORCHLET_CHECK(t == kFloat16 || t == kBFloat16 || t == kFloat32 || t == kFloat64, DTypeError,
                 "[batch_norm] expected input of dtype float16, bfloat16, float32 or float64, got ", t);
  detail::check_bn_param(running_mean, "running_mean", x);
  detail::check_bn_param(running_var, "running_var", x);
  detail::check_bn_param(weight, "weight", x);
  detail::check_bn_param(bias, "bias", x);
  TORCHLET_CHECK(running_mean.defined() == running_var.defined(), ValueError,
                 "[batch_norm] running_mean and running_var must both be given or both be undefined, got ",
                 running_mean.defined() ? "running_mean only" : "running_var only");
  TORCHLET_CHECK(o.training || running_mean.defined(), ValueError,
                 "[batch_norm] running_mean and running_var must be defined in evaluation mode");

  const bool track = autograd::any_requires_grad({x, weight, bias});
  autograd::NoGradGuard untracked;  // the op is recorded as a whole below
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t S = numel_of(Shape(x.sizes().begin() + 2, x.sizes().end()));
  TORCHLET_CHECK(!o.training || N * S != 1, ValueError,
                 "[batch_norm] expected more than 1 value per channel when training, got input ",
                 shape_str(x.sizes()));
  const Tensor x3 = x.reshape({N, C, S});
  const size_t nc = static_cast<size_t>(C);

  std::vector<double> mean, invstd(nc);
  if (o.training) {
    std::vector<double> var_sum;
    cpu::batch_norm_collect_stats(x3, mean, var_sum);
    const double n = static_cast<double>(N * S);
    for (size_t c = 0; c < nc; ++c) invstd[c] = 1.0 / std::sqrt(var_sum[c] / n + o.eps);
    if (running_mean.defined() && N * S > 0) {
      std::vector<double> rm = detail::channel_values(running_mean), rv = detail::channel_values(running_var);
      for (size_t c = 0; c < nc; ++c) {
        rm[c] = o.momentum * mean[c] + (1 - o.momentum) * rm[c];
        rv[c] = o.momentum * (var_sum[c] / (n - 1)) + (1 - o.momentum) * rv[c];
      }
      Tensor(running_mean).copy_(tensor(rm).reshape(running_mean.sizes()));
      Tensor(running_var).copy_(tensor(rv).reshape(running_var.sizes()));
    }
  } else {
    mean = detail::channel_values(running_mean);
    const std::vector<double> var = detail::channel_values(running_var);
    for (size_t c = 0; c < nc; ++c) invstd[c] = 1.0 / std::sqrt(var[c] + o.eps);
  }

  // out = x * scale + shift with scale = weight * invstd, shift = bias - mean * scale
  std::vector<double> scale(nc), shift(nc);
  const std::vector<double> w = weight.defined() ? detail::channel_values(weight) : std::vector<double>(nc, 1.0);
  const std::vector<double> b = bias.defined() ? detail::channel_values(bias) : std::vector<double>(nc, 0.0);
  for (size_t c = 0; c < nc; ++c) {
    scale[c] = w[c] * invstd[c];
    shift[c] = b[c] - mean[c] * scale[c];
  }
  Tensor out = empty(x.sizes(), t, x.suggest_memory_format());  // a channels-last input gives a channels-last output
  cpu::batch_norm_transform(x3, scale, shift, out.view({N, C, S}));

  const DType stat_t = t == kFloat64 ? kFloat64 : kFloat32;
  Tensor save_mean = tensor(mean).to(stat_t), save_invstd = tensor(invstd).to(stat_t);
  if (track)
    autograd::record("native_batch_norm", {x, weight, bias}, {out},
                     detail::batch_norm_backward_fn(x, weight, bias, std::move(mean), std::move(invstd), o.training));
  return {out, save_mean, save_invstd};
}

/// Batch normalisation over dim 1 of x [N, C, ...], as torch.nn.functional.batch_norm(x, running_mean,
/// running_var, weight, bias, training, momentum, eps); in training, defined running statistics are updated in
/// place (with the unbiased batch variance). Any of the four per-channel tensors may be undefined (Tensor()),
/// except that evaluation needs the running statistics. Differentiable in x, weight and bias.
inline Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                         const Tensor& weight, const Tensor& bias, const BatchNormOptions& o = {}) {
  return std::get<0>(batch_norm_with_stats(x, running_mean, running_var, weight, bias, o));
}
}  // namespace torchlet
