#pragma once
/// \file Loss functions with PyTorch's formulas: nll_loss, cross_entropy (class indices or class probabilities,
/// weights, ignore_index, label smoothing) and mse_loss, each with reduction None / Mean / Sum; differentiable
/// with respect to the input (mse_loss: to the target too). On a device nll_loss runs DeviceKernels' nll_forward /
/// nll_backward (16-bit floats in float32) and cross_entropy composes routed ops with it; class-index targets are
/// bounds-checked on the host.
#include <cmath>
#include <cstdint>
#include <limits>

#include "torchlet/backend/cpu/loss.hpp"
#include "torchlet/backend/device_kernels.hpp"
#include "torchlet/ops/activation.hpp"
#include "torchlet/ops/arithmetic.hpp"
#include "torchlet/ops/reduction.hpp"
#include "torchlet/tensor/factory.hpp"

namespace torchlet {

/// How a loss combines its per-element values: PyTorch's reduction='none' | 'mean' | 'sum'.
enum class Reduction { None, Mean, Sum };

/// Options of nll_loss (PyTorch's defaults).
struct NllLossOptions {
  Tensor weight = {};            ///< a rescaling weight per class ([C]), or undefined for all ones
  int64_t ignore_index = -100;   ///< targets equal to this contribute nothing (nor to the mean's divisor)
  Reduction reduction = Reduction::Mean;  ///< Mean divides by the summed weights of the targets not ignored
};

/// Options of cross_entropy (PyTorch's defaults).
struct CrossEntropyOptions {
  Tensor weight = {};            ///< a rescaling weight per class ([C]), or undefined for all ones
  int64_t ignore_index = -100;   ///< class-index targets equal to this contribute nothing
  Reduction reduction = Reduction::Mean;  ///< Mean: weighted mean over the targets not ignored (class indices)
  double label_smoothing = 0.0;  ///< in [0, 1]: mixes the target with the uniform distribution
};

namespace detail {
/// Sizes of a class-index problem after checking input [C] / [N, C] / [N, C, d1, ...] against an int64 target
/// [] / [N] / [N, d1, ...] and each target against the class count.
inline cpu::NllShape check_class_target(const Tensor& input, const Tensor& target, int64_t ignore_index,
                                        const char* op) {
  TORCHLET_CHECK(input.defined() && target.defined(), ValueError, "[", op, "] undefined input or target");
  TORCHLET_CHECK(input.device() == target.device(), DeviceError, "[", op, "] expected all tensors to be on the same "
                 "device, but found at least two devices, ", input.device(), " and ", target.device());
  TORCHLET_CHECK(input.is_floating_point(), DTypeError, "[", op, "] expected a floating point input, got ",
                 input.dtype());
  TORCHLET_CHECK(input.dim() >= 1, ShapeError, "[", op, "] expected an input of shape [C], [N, C] or [N, C, d1, ...], "
                 "got a 0-dim tensor");
  TORCHLET_CHECK(target.dtype() == kInt64, DTypeError, "[", op, "] expected a target of class indices of dtype int64, "
                 "got ", target.dtype());
  Shape expected;  // the input's sizes without the class dim
  if (input.dim() >= 2) {
    expected = input.sizes();
    expected.erase(expected.begin() + 1);
  }
  TORCHLET_CHECK(target.sizes() == expected, ShapeError, "[", op, "] expected a target of shape ", shape_str(expected),
                 " for an input of shape ", shape_str(input.sizes()), ", got ", shape_str(target.sizes()));
  cpu::NllShape sh;
  sh.n = input.dim() == 1 ? 1 : input.size(0);
  sh.c = input.dim() == 1 ? input.size(0) : input.size(1);
  sh.s = input.dim() <= 2 ? 1 : numel_of(Shape(input.sizes().begin() + 2, input.sizes().end()));
  // a device target is checked by the device's nll kernel (on CUDA reported at the next synchronisation, as PyTorch
  // reports a device-side assert): reading it here would make every training step wait for the GPU
  if (!target.is_cpu()) return sh;
  const Tensor t = target.contiguous();
  const int64_t* p = t.data<int64_t>();
  for (int64_t i = 0, n = t.numel(); i < n; ++i)
    TORCHLET_CHECK(p[i] == ignore_index || (p[i] >= 0 && p[i] < sh.c), IndexError, "[", op, "] target ", p[i],
                   " is out of bounds for ", sh.c, " classes");
  return sh;
}

/// The class weights as a contiguous [C] tensor of `dtype` without history (undefined stays undefined); they must
/// live on `device`, the input's.
inline Tensor class_weight(const Tensor& weight, int64_t classes, DType dtype, const char* op,
                           Device device = kCPU) {
  if (!weight.defined()) return {};
  TORCHLET_CHECK(weight.device() == device, DeviceError, "[", op, "] expected all tensors to be on the same device, "
                 "but found at least two devices, ", device, " and ", weight.device(), " (weight)");
  TORCHLET_CHECK(weight.dim() == 1 && weight.size(0) == classes, ShapeError, "[", op, "] expected a weight of shape [",
                 classes, "] (one per class), got ", shape_str(weight.sizes()));
  TORCHLET_CHECK(weight.is_floating_point(), DTypeError, "[", op, "] expected a floating point weight, got ",
                 weight.dtype());
  return weight.detach().to(dtype).contiguous();
}

/// An NLL loss and the divisor of its mean (the summed weights of the targets not ignored): a number on the CPU,
/// a 0-dim float64 tensor on a device (read without a host synchronisation).
struct NllResult {
  Tensor loss;
  double total_weight = 0;
  Tensor device_total_weight = {};
};

/// nll on a device: the forward kernel, and a backward node calling the backward kernel.
inline NllResult nll_device(const Tensor& input, const Tensor& target, const Tensor& w, int64_t ignore_index,
                            Reduction reduction, const cpu::NllShape& sh) {
  const Device dev = input.device();
  const Tensor t = target.contiguous().view({sh.n, sh.s});
  const DType compute = input.dtype() == kFloat16 || input.dtype() == kBFloat16 ? kFloat32 : input.dtype();
  Tensor x, wc;
  {
    autograd::NoGradGuard untracked;
    x = input.to(compute).contiguous().view({sh.n, sh.c, sh.s});
    wc = w.defined() ? w.to(compute) : w;
  }
  const bool per_element = reduction == Reduction::None;
  Tensor losses = per_element ? empty(target.sizes(), TensorOptions(compute, dev)) : Tensor();
  Tensor total = per_element ? Tensor() : empty({}, TensorOptions(compute, dev));
  const Tensor total_weight = empty({}, TensorOptions(kFloat64, dev));
  device_kernels(dev, "nll_loss")
      .nll_forward(losses, total, total_weight, x, t, wc, ignore_index, reduction == Reduction::Mean);
  Tensor out = (per_element ? losses : total).to(input.dtype());
  out = recorded("nll_loss", {input}, out, [st = SavedTensor(t), sw = SavedTensor(wc), stw = SavedTensor(total_weight),
                                            sizes = input.sizes(), sh, ignore_index, reduction, compute](
                                               const TensorList& g, const Needs&) {
    const Tensor ge = g[0].to(compute).contiguous();
    Tensor gi = empty({sh.n, sh.c, sh.s}, TensorOptions(compute, ge.device()));
    device_kernels(ge.device(), "nll_loss backward")
        .nll_backward(gi, ge, st.get(), sw.get(), stw.get(), ignore_index, reduction == Reduction::None,
                      reduction == Reduction::Mean);
    return TensorList{gi.view(sizes).to(g[0].dtype())};
  });
  return {out, 0, total_weight};
}

/// nll_loss with `op` naming the caller in errors; recorded as NllLossBackward0.
inline NllResult nll_impl(const Tensor& input, const Tensor& target, const Tensor& weight, int64_t ignore_index,
                          Reduction reduction, const char* op) {
  const cpu::NllShape sh = check_class_target(input, target, ignore_index, op);
  const Tensor w = class_weight(weight, sh.c, input.dtype(), op, input.device());
  if (!input.is_cpu()) return nll_device(input, target, w, ignore_index, reduction, sh);
  const Tensor t = target.contiguous();
  Tensor x;
  {
    autograd::NoGradGuard untracked;
    x = input.contiguous();
  }
  Tensor losses = reduction == Reduction::None ? empty(target.sizes(), input.dtype()) : Tensor();
  const auto [total, total_weight] = cpu::nll_forward(x, t, w, ignore_index, losses, sh);
  Tensor out = reduction == Reduction::None ? losses
               : reduction == Reduction::Sum ? scalar_tensor(total, input.dtype())
                                             : scalar_tensor(total / total_weight, input.dtype());
  out = recorded("nll_loss", {input}, out, [st = SavedTensor(t), sw = SavedTensor(w), sizes = input.sizes(), sh,
                                            ignore_index, reduction, tw = total_weight](const TensorList& g,
                                                                                        const Needs&) {
    const DType dt = g[0].dtype();
    Tensor gi = zeros(sizes, dt);
    const bool per_element = reduction == Reduction::None;
    const Tensor ge = g[0].contiguous();
    double scale = 1;
    if (!per_element) scale = ge.item<double>() / (reduction == Reduction::Mean ? tw : 1.0);
    cpu::nll_backward(gi, ge, st.get(), sw.get(), ignore_index, per_element, scale, sh);
    return TensorList{gi};
  });
  return {out, total_weight};
}

/// `w` viewed as [1, C, 1, ...] to broadcast against an input of `ndim` dims with classes in `class_dim`.
inline Tensor class_view(const Tensor& w, int64_t ndim, int64_t class_dim) {
  Shape s(static_cast<size_t>(ndim), 1);
  s[class_dim] = w.size(0);
  return w.view(s);
}

/// cross_entropy with class-probability targets of the input's shape (PyTorch >= 1.10).
inline Tensor cross_entropy_probs(const Tensor& input, const Tensor& target, const CrossEntropyOptions& opt,
                                  int64_t class_dim) {
  const int64_t c = input.size(class_dim);
  const Tensor w = class_weight(opt.weight, c, input.dtype(), "cross_entropy", input.device());
  const Tensor logp = log_softmax(input, class_dim);
  const Tensor tgt = opt.label_smoothing > 0 ? add(mul(target, 1 - opt.label_smoothing), opt.label_smoothing / c)
                                             : target;
  Tensor prod = mul(logp, tgt);
  if (w.defined()) prod = mul(prod, class_view(w, input.dim(), class_dim));
  switch (opt.reduction) {
    case Reduction::None: return neg(sum(prod, {class_dim}));
    case Reduction::Sum: return neg(sum(prod));
    case Reduction::Mean: break;
  }
  if (input.numel() == 0) return mul(sum(prod), std::numeric_limits<double>::quiet_NaN());
  return div(neg(sum(prod)), static_cast<double>(input.numel() / c));
}
}  // namespace detail

/// Negative log-likelihood of log-probabilities `input` ([C], [N, C] or [N, C, d1, ...]) at the int64 class
/// indices `target` ([], [N] or [N, d1, ...]): -weight[t] * input[n, t, ...], reduced as PyTorch's nll_loss
/// (Mean divides by the summed weights of the targets not ignored). Differentiable in `input`.
inline Tensor nll_loss(const Tensor& input, const Tensor& target, const NllLossOptions& opt = {}) {
  if (detail::autocast_applies(input)) {  // an Autocast scope: computed in float32
    detail::AutocastPause cast_once;
    return nll_loss(detail::autocast_float(input), target, opt);
  }
  return detail::nll_impl(input, target, opt.weight, opt.ignore_index, opt.reduction, "nll_loss").loss;
}

/// Cross entropy of unnormalised scores `input` ([C], [N, C] or [N, C, d1, ...]) against int64 class indices
/// (the input's shape without the class dim) or floating class probabilities (the input's shape), with
/// PyTorch's weight, ignore_index, label_smoothing and reduction rules. Differentiable in `input`.
inline Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& opt = {}) {
  if (detail::autocast_applies(input)) {  // an Autocast scope: computed in float32
    detail::AutocastPause cast_once;
    return cross_entropy(detail::autocast_float(input), detail::autocast_float(target), opt);
  }
  const char* op = "cross_entropy";
  TORCHLET_CHECK(input.defined() && target.defined(), ValueError, "[cross_entropy] undefined input or target");
  TORCHLET_CHECK(input.is_floating_point(), DTypeError, "[cross_entropy] expected a floating point input, got ",
                 input.dtype());
  TORCHLET_CHECK(input.dim() >= 1, ShapeError, "[cross_entropy] expected an input of shape [C], [N, C] or "
                 "[N, C, d1, ...], got a 0-dim tensor");
  TORCHLET_CHECK(opt.label_smoothing >= 0 && opt.label_smoothing <= 1, ValueError, "[cross_entropy] label_smoothing "
                 "must be between 0.0 and 1.0, got ", opt.label_smoothing);
  const int64_t class_dim = input.dim() == 1 ? 0 : 1;
  const int64_t c = input.size(class_dim);
  if (target.is_floating_point()) {
    TORCHLET_CHECK(target.sizes() == input.sizes(), ShapeError, "[cross_entropy] expected int64 class indices or "
                   "class probabilities of the input's shape ", shape_str(input.sizes()), ", got a ", target.dtype(),
                   " target of shape ", shape_str(target.sizes()));
    return detail::cross_entropy_probs(input, target, opt, class_dim);
  }
  detail::check_class_target(input, target, opt.ignore_index, op);  // before any work
  const Tensor logp = log_softmax(input, class_dim);
  const detail::NllResult r = detail::nll_impl(logp, target, opt.weight, opt.ignore_index, opt.reduction, op);
  const double eps = opt.label_smoothing;
  if (eps <= 0) return r.loss;
  // PyTorch: (1 - eps) * nll + eps / C * smooth, smooth = -sum_c weight[c] * logp[.., c, ..] (0 where ignored),
  // its mean divided by the same summed weights as the nll's
  const Tensor w = detail::class_weight(opt.weight, c, input.dtype(), op, input.device());
  Tensor smooth = neg(sum(w.defined() ? mul(logp, detail::class_view(w, input.dim(), class_dim)) : logp, {class_dim}));
  smooth = where(eq(target, opt.ignore_index), 0.0, smooth);
  Tensor ret = opt.reduction == Reduction::None ? smooth
               : opt.reduction == Reduction::Sum ? sum(smooth)
               : input.is_cpu()                  ? div(sum(smooth), r.total_weight)
                                                 : div(sum(smooth), r.device_total_weight.to(smooth.dtype()));
  return add(mul(r.loss, 1 - eps), mul(ret, eps / static_cast<double>(c)));
}

/// Mean squared error (input - target)^2, reduced by `reduction`; the two broadcast as in PyTorch.
/// Differentiable in both: 2 (input - target) * grad (/ numel for Mean).
inline Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean) {
  if (detail::autocast_applies(input)) {  // an Autocast scope: computed in float32
    detail::AutocastPause cast_once;
    return mse_loss(detail::autocast_float(input), detail::autocast_float(target), reduction);
  }
  TORCHLET_CHECK(input.defined() && target.defined(), ValueError, "[mse_loss] undefined input or target");
  TORCHLET_CHECK(is_floating_point(result_type(input, target)), DTypeError, "[mse_loss] expected floating point "
                 "input and target, got ", input.dtype(), " and ", target.dtype());
  Tensor d, out;
  {
    autograd::NoGradGuard untracked;
    d = sub(input, target);
    const Tensor sq = mul(d, d);
    out = reduction == Reduction::None ? sq : reduction == Reduction::Sum ? sum(sq) : mean(sq);
  }
  return detail::recorded("mse_loss", {input, target}, out,
                          [sd = detail::SavedTensor(d), reduction, si = input.sizes(), st = target.sizes()](
                              const detail::TensorList& g, const detail::Needs& need) {
    const Tensor dv = sd.get();
    const double norm = reduction == Reduction::Mean ? 2.0 / static_cast<double>(dv.numel()) : 2.0;
    const Tensor gd = mul(mul(dv, norm), g[0]);
    return detail::TensorList{need[0] ? sum_to(gd, si) : Tensor(), need[1] ? sum_to(neg(gd), st) : Tensor()};
  });
}
}  // namespace torchlet
