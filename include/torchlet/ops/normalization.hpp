#pragma once
/// \file Batch normalisation with PyTorch's semantics (torch.nn.functional.batch_norm): evaluation with running
/// statistics, training with batch statistics and in-place running-statistics updates, on [N, C, ...] inputs.
/// Differentiable in the input, weight and bias (backward kernel: backend/cpu/batch_norm_backward.hpp); running
/// statistics are constants to autograd and are updated once per forward call. Device tensors go to DeviceKernels'
/// batch_norm_forward / batch_norm_backward (16-bit inputs computed in float32, in the input's layout).
#include <cmath>
#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "torchlet/autograd/node.hpp"
#include "torchlet/backend/device_kernels.hpp"
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
  TORCHLET_CHECK(p.device() == x.device(), DeviceError, "[batch_norm] expected all tensors to be on the same device, "
                 "but found at least two devices, ", x.device(), " and ", p.device(), " (", name, ")");
  const int64_t C = x.size(1);
  TORCHLET_CHECK(p.numel() == C, ShapeError, "[batch_norm] ", name, " has ", p.numel(), " elements, input has ", C,
                 " channels (input ", shape_str(x.sizes()), ")");
  const bool half_input = x.dtype() == kFloat16 || x.dtype() == kBFloat16;
  TORCHLET_CHECK(p.dtype() == x.dtype() || (half_input && p.dtype() == kFloat32), DTypeError, "[batch_norm] ", name,
                 " has dtype ", p.dtype(), ": expected the input's dtype ", x.dtype(),
                 half_input ? " or float32" : "");
}

/// The CPU gradients {input, weight, bias} of batch norm (each only where `need` says) from grad `g` (x's sizes),
/// x, weight (or undefined) and the per-channel statistics the forward normalised with (batch ones in training,
/// running ones in evaluation); the weight / bias gradients get `w_sizes` / `b_sizes` and `w_dtype` / `b_dtype`.
inline autograd::TensorList batch_norm_cpu_backward(const Tensor& g, const Tensor& xv, const Tensor& w,
                                                    const std::vector<double>& mean,
                                                    const std::vector<double>& invstd, bool training,
                                                    const std::vector<bool>& need, const Shape& w_sizes,
                                                    DType w_dtype, const Shape& b_sizes, DType b_dtype) {
  autograd::TensorList r(3);
  if (!need[0] && !need[1] && !need[2]) return r;
  const int64_t N = xv.size(0), C = xv.size(1);
  const int64_t S = numel_of(Shape(xv.sizes().begin() + 2, xv.sizes().end()));
  const size_t nc = static_cast<size_t>(C);
  const std::vector<double> wv = w.defined() ? channel_values(w) : std::vector<double>(nc, 1.0);
  Tensor gi = need[0] ? empty(xv.sizes(), xv.dtype()) : Tensor();
  std::vector<double> sum_dy, dot;
  cpu::batch_norm_backward(xv.reshape({N, C, S}), g.to(xv.dtype()).reshape({N, C, S}), mean, invstd, wv, training,
                           need[0] ? gi.view({N, C, S}) : Tensor(), need[1] || need[2], sum_dy, dot);
  r[0] = gi;
  if (need[1]) {
    std::vector<double> gw(nc);
    for (size_t c = 0; c < nc; ++c) gw[c] = dot[c] == 0 ? 0.0 : dot[c] * invstd[c];
    r[1] = tensor(gw).to(w_dtype).reshape(w_sizes);
  }
  if (need[2]) r[2] = tensor(sum_dy).to(b_dtype).reshape(b_sizes);
  return r;
}

/// The batch_norm backward node's function for inputs {x, weight, bias} on the CPU: mean and invstd are the
/// per-channel statistics the forward normalised with (batch ones in training, running ones in evaluation).
inline autograd::BackwardFn batch_norm_backward_fn(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                                   std::vector<double> mean, std::vector<double> invstd,
                                                   bool training) {
  return [sx = autograd::SavedTensor(x), sw = autograd::SavedTensor(weight), mean = std::move(mean),
          invstd = std::move(invstd), training, w_sizes = weight.defined() ? weight.sizes() : Shape{},
          b_sizes = bias.defined() ? bias.sizes() : Shape{}, w_dtype = weight.defined() ? weight.dtype() : kFloat32,
          b_dtype = bias.defined() ? bias.dtype() : kFloat32](const autograd::TensorList& g,
                                                               const std::vector<bool>& need) {
    return batch_norm_cpu_backward(g[0], sx.get(), sw.get(), mean, invstd, training, need, w_sizes, w_dtype, b_sizes,
                                   b_dtype);
  };
}

/// The CPU forward of batch norm on checked CPU tensors: writes `out` (x's sizes and dtype, contiguous or in x's
/// channels-last layout), updates defined running statistics in training, and returns the per-channel mean and
/// invstd it normalised with.
inline std::pair<std::vector<double>, std::vector<double>> batch_norm_cpu_forward(
    const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight, const Tensor& bias,
    const BatchNormOptions& o, const Tensor& out) {
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t S = numel_of(Shape(x.sizes().begin() + 2, x.sizes().end()));
  const Tensor x3 = x.reshape({N, C, S});
  const size_t nc = static_cast<size_t>(C);
  std::vector<double> mean, invstd(nc);
  if (o.training) {
    std::vector<double> var_sum;
    cpu::batch_norm_collect_stats(x3, mean, var_sum);
    const double n = static_cast<double>(N * S);
    for (size_t c = 0; c < nc; ++c) invstd[c] = 1.0 / std::sqrt(var_sum[c] / n + o.eps);
    if (running_mean.defined() && N * S > 0) {
      std::vector<double> rm = channel_values(running_mean), rv = channel_values(running_var);
      for (size_t c = 0; c < nc; ++c) {
        rm[c] = o.momentum * mean[c] + (1 - o.momentum) * rm[c];
        rv[c] = o.momentum * (var_sum[c] / (n - 1)) + (1 - o.momentum) * rv[c];
      }
      Tensor(running_mean).copy_(tensor(rm).reshape(running_mean.sizes()));
      Tensor(running_var).copy_(tensor(rv).reshape(running_var.sizes()));
    }
  } else {
    mean = channel_values(running_mean);
    const std::vector<double> var = channel_values(running_var);
    for (size_t c = 0; c < nc; ++c) invstd[c] = 1.0 / std::sqrt(var[c] + o.eps);
  }

  // out = x * scale + shift with scale = weight * invstd, shift = bias - mean * scale
  std::vector<double> scale(nc), shift(nc);
  const std::vector<double> w = weight.defined() ? channel_values(weight) : std::vector<double>(nc, 1.0);
  const std::vector<double> b = bias.defined() ? channel_values(bias) : std::vector<double>(nc, 0.0);
  for (size_t c = 0; c < nc; ++c) {
    scale[c] = w[c] * invstd[c];
    shift[c] = b[c] - mean[c] * scale[c];
  }
  cpu::batch_norm_transform(x3, scale, shift, out.view({N, C, S}));
  return {std::move(mean), std::move(invstd)};
}

/// The dtype batch norm computes in on a device: float32 for the 16-bit floats, the dtype itself otherwise.
inline DType batch_norm_compute_dtype(DType t) { return t == kFloat16 || t == kBFloat16 ? kFloat32 : t; }

/// batch_norm_with_stats on a device (checked tensors on x's device): the kernels compute in float32 (float64
/// for float64 input) in x's layout; 16-bit running statistics are updated through a float32 copy.
inline std::tuple<Tensor, Tensor, Tensor> batch_norm_device(const Tensor& x, const Tensor& running_mean,
                                                            const Tensor& running_var, const Tensor& weight,
                                                            const Tensor& bias, const BatchNormOptions& o,
                                                            bool track) {
  const DType t = x.dtype(), compute = batch_norm_compute_dtype(t);
  const Device dev = x.device();
  const MemoryFormat fmt = x.suggest_memory_format();
  auto per_channel = [&](const Tensor& p) { return p.defined() ? p.reshape({-1}).to(compute).contiguous() : p; };
  const Tensor xc = x.to(compute).contiguous(fmt), wc = per_channel(weight), bc = per_channel(bias);
  const Tensor rm = per_channel(running_mean), rv = per_channel(running_var);
  const int64_t C = x.size(1);
  Tensor out = empty(x.sizes(), TensorOptions(compute, dev), fmt);
  const Tensor save_mean = empty({C}, TensorOptions(kFloat64, dev)), save_invstd = empty({C}, TensorOptions(kFloat64, dev));
  device_kernels(dev, "batch_norm")
      .batch_norm_forward(out, save_mean, save_invstd, xc, wc, bc, rm, rv, o.training, o.momentum, o.eps);
  if (o.training && rm.defined()) {  // a converted copy was updated: write it back
    if (rm.storage().data() != running_mean.storage().data()) Tensor(running_mean).copy_(rm.view(running_mean.sizes()));
    if (rv.storage().data() != running_var.storage().data()) Tensor(running_var).copy_(rv.view(running_var.sizes()));
  }
  if (compute != t) out = out.to(t).contiguous(fmt);
  const DType stat_t = t == kFloat64 ? kFloat64 : kFloat32;
  if (track)
    autograd::record(
        "native_batch_norm", {x, weight, bias}, {out},
        [sx = autograd::SavedTensor(xc), sw = autograd::SavedTensor(wc), sm = autograd::SavedTensor(save_mean),
         si = autograd::SavedTensor(save_invstd), training = o.training, eps = o.eps, t, compute, fmt,
         w_sizes = weight.defined() ? weight.sizes() : Shape{}, b_sizes = bias.defined() ? bias.sizes() : Shape{},
         w_dtype = weight.defined() ? weight.dtype() : kFloat32, b_dtype = bias.defined() ? bias.dtype() : kFloat32](
            const autograd::TensorList& g, const std::vector<bool>& need) {
          autograd::TensorList r(3);
          if (!need[0] && !need[1] && !need[2]) return r;
          const Tensor xv = sx.get();
          const Device d = xv.device();
          const Tensor go = g[0].to(compute).contiguous(fmt);
          const int64_t channels = xv.size(1);
          Tensor gi = need[0] ? empty(xv.sizes(), TensorOptions(compute, d), fmt) : Tensor();
          Tensor gw = need[1] ? empty({channels}, TensorOptions(compute, d)) : Tensor();
          Tensor gb = need[2] ? empty({channels}, TensorOptions(compute, d)) : Tensor();
          device_kernels(d, "batch_norm backward")
              .batch_norm_backward(gi, gw, gb, go, xv, sw.get(), sm.get(), si.get(), training, eps);
          if (need[0]) r[0] = compute != t ? gi.to(t) : gi;
          if (need[1]) r[1] = gw.to(w_dtype).reshape(w_sizes);
          if (need[2]) r[2] = gb.to(b_dtype).reshape(b_sizes);
          return r;
        });
  return {out, save_mean.to(stat_t), save_invstd.to(stat_t)};
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
  const int64_t N = x.size(0);
  const int64_t S = numel_of(Shape(x.sizes().begin() + 2, x.sizes().end()));
  TORCHLET_CHECK(!o.training || N * S != 1, ValueError,
                 "[batch_norm] expected more than 1 value per channel when training, got input ",
                 shape_str(x.sizes()));
  if (!x.is_cpu()) return detail::batch_norm_device(x, running_mean, running_var, weight, bias, o, track);

  Tensor out = empty(x.sizes(), t, x.suggest_memory_format());  // a channels-last input gives a channels-last output
  auto [mean, invstd] = detail::batch_norm_cpu_forward(x, running_mean, running_var, weight, bias, o, out);

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
