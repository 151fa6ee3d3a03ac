#pragma once
/// \file 2-D pooling with PyTorch's semantics: max_pool2d (optionally with indices), avg_pool2d and
/// adaptive_avg_pool2d on [N, C, H, W] or unbatched [C, H, W] inputs of any layout, all differentiable (floating
/// inputs; the backward kernels are in backend/cpu/pooling_backward.hpp). Device tensors go to DeviceKernels'
/// pool2d_forward / pool2d_backward (floating inputs, computed NCHW in float32 for the 16-bit floats).
#include <cstdint>
#include <optional>
#include <utility>

#include "torchlet/autograd/node.hpp"
#include "torchlet/backend/device_kernels.hpp"
#include "torchlet/backend/cpu/pooling.hpp"
#include "torchlet/backend/cpu/pooling_backward.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {

/// Options of max_pool2d, with PyTorch's defaults (each field takes one value for both dims, or {h, w}).
struct MaxPool2dOptions {
  Shape kernel_size{};         ///< window size (required)
  Shape stride{};              ///< step between windows; empty means kernel_size
  Shape padding{0, 0};         ///< implicit -inf padding on each side, at most half the kernel
  Shape dilation{1, 1};        ///< spacing between window elements
  bool ceil_mode = false;      ///< round the output size up instead of down
};

/// Options of avg_pool2d, with PyTorch's defaults (each field takes one value for both dims, or {h, w}).
struct AvgPool2dOptions {
  Shape kernel_size{};                      ///< window size (required)
  Shape stride{};                           ///< step between windows; empty means kernel_size
  Shape padding{0, 0};                      ///< implicit zero padding on each side, at most half the kernel
  bool ceil_mode = false;                   ///< round the output size up instead of down
  bool count_include_pad = true;            ///< count padded zeros in the divisor
  std::optional<int64_t> divisor_override{};  ///< divide every window by this instead (non-zero)
};

namespace detail {
/// {h, w} from a 1- or 2-element option (or `fallback` when empty and a fallback is given).
inline std::pair<int64_t, int64_t> pair_option(const Shape& v, const char* op, const char* name,
                                               const Shape* fallback = nullptr) {
  if (v.empty() && fallback) return pair_option(*fallback, op, name);
  TORCHLET_CHECK(v.size() == 1 || v.size() == 2, ValueError, "[", op, "] ", name,
                 " must have 1 or 2 elements, got ", shape_str(v));
  return {v[0], v.size() == 2 ? v[1] : v[0]};
}

/// Checks a pooling input: defined, [C, H, W] or [N, C, H, W] with non-empty C, H, W.
inline void check_pool_input(const Tensor& x, const char* op) {
  TORCHLET_CHECK(x.defined(), ValueError, "[", op, "] input tensor is undefined");
  TORCHLET_CHECK(x.dim() == 3 || x.dim() == 4, ShapeError, "[", op, "] expected input of 3 or 4 dims, got ",
                 shape_str(x.sizes()));
  for (int64_t d = x.dim() - 3; d < x.dim(); ++d)
    TORCHLET_CHECK(x.size(d) > 0, ShapeError, "[", op,
                   "] expected non-zero sizes except for the batch dim, got input ", shape_str(x.sizes()));
}

/// Validates kernel/stride/padding/dilation against PyTorch's rules and computes the output size.
inline cpu::Pool2dGeometry pool_geometry(const Tensor& x, const char* op, const Shape& kernel, const Shape& stride,
                                         const Shape& padding, const Shape& dilation, bool ceil_mode) {
  const auto [kh, kw] = pair_option(kernel, op, "kernel_size");
  const auto [sh, sw] = pair_option(stride, op, "stride", &kernel);
  const auto [ph, pw] = pair_option(padding, op, "padding");
  const auto [dh, dw] = pair_option(dilation, op, "dilation");
  TORCHLET_CHECK(kh > 0 && kw > 0, ValueError, "[", op, "] kernel_size must be positive, got [", kh, ", ", kw, "]");
  TORCHLET_CHECK(sh > 0 && sw > 0, ValueError, "[", op, "] stride must be positive, got [", sh, ", ", sw, "]");
  TORCHLET_CHECK(dh > 0 && dw > 0, ValueError, "[", op, "] dilation must be positive, got [", dh, ", ", dw, "]");
  TORCHLET_CHECK(ph >= 0 && pw >= 0, ValueError, "[", op, "] padding must be non-negative, got [", ph, ", ", pw, "]");
  TORCHLET_CHECK(ph <= kh / 2 && pw <= kw / 2, ValueError, "[", op,
                 "] pad should be at most half of kernel size: expected padding <= [", kh / 2, ", ", kw / 2,
                 "], got [", ph, ", ", pw, "] (kernel_size [", kh, ", ", kw, "])");
  const int64_t H = x.size(-2), W = x.size(-1), C = x.size(-3);
  const int64_t oh = cpu::pool_output_size(H, kh, ph, sh, dh, ceil_mode);
  const int64_t ow = cpu::pool_output_size(W, kw, pw, sw, dw, ceil_mode);
  TORCHLET_CHECK(oh >= 1 && ow >= 1, ShapeError, "[", op, "] output size is too small: input [C, H, W] = [", C,
                 ", ", H, ", ", W, "] gives [", C, ", ", oh, ", ", ow, "]");
  return {kh, kw, sh, sw, ph, pw, dh, dw, oh, ow};
}

/// The input as [N, C, H, W] (a view; unbatched [C, H, W] gets N = 1).
inline Tensor as_batched(const Tensor& x) { return x.dim() == 3 ? x.unsqueeze(0) : x; }

/// The dtype pooling computes in on a device: float32 for the 16-bit floats, the dtype itself otherwise.
inline DType pool_compute_dtype(DType t) { return t == kFloat16 || t == kBFloat16 ? kFloat32 : t; }

/// The pooling geometry of input x (3 or 4 dims) as the device kernels take it.
inline Pool2dShape pool2d_shape(const Tensor& x, const cpu::Pool2dGeometry& g, bool count_include_pad = true,
                                int64_t divisor_override = 0) {
  const Tensor x4 = as_batched(x);
  return {x4.size(0), x4.size(1), x4.size(2), x4.size(3), g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h,
          g.pad_w, g.dilation_h, g.dilation_w, g.out_h, g.out_w, count_include_pad, divisor_override};
}

/// A pooling forward on x's device: the kernel computes NCHW in pool_compute_dtype; the result has x's dtype and
/// `out_sizes` (indices, when defined, is filled as [N, C, Ho, Wo] int64 on the device and viewed so too).
inline Tensor pool2d_device_forward(PoolKind kind, const Tensor& x, const Pool2dShape& s, const Shape& out_sizes,
                                    Tensor& indices, const char* op) {
  const DType compute = pool_compute_dtype(x.dtype());
  const Tensor xc = as_batched(x).to(compute).contiguous();
  Tensor out = empty({s.batch, s.channels, s.out_h, s.out_w}, TensorOptions(compute, x.device()));
  if (indices.defined()) indices = empty({s.batch, s.channels, s.out_h, s.out_w}, TensorOptions(kInt64, x.device()));
  if (out.numel() > 0) device_kernels(x.device(), op).pool2d_forward(kind, out, indices, xc, s);
  if (indices.defined()) indices = indices.view(out_sizes);
  return out.view(out_sizes).to(x.dtype());
}

/// A pooling backward on grad_output's device: the input gradient (`input_sizes`, `dtype`, contiguous).
inline Tensor pool2d_device_backward(PoolKind kind, const Tensor& grad_output, const Tensor& indices,
                                     const Pool2dShape& s, const Shape& input_sizes, DType dtype) {
  const DType compute = pool_compute_dtype(dtype);
  const Device dev = grad_output.device();
  const Tensor go = as_batched(grad_output).to(compute).contiguous();
  Tensor gi = empty({s.batch, s.channels, s.in_h, s.in_w}, TensorOptions(compute, dev));
  const Tensor idx = indices.defined() ? as_batched(indices).contiguous() : indices;
  if (gi.numel() > 0) device_kernels(dev, "pooling backward").pool2d_backward(kind, gi, go, idx, s);
  return gi.view(input_sizes).to(dtype);
}

/// Output sizes: x's leading dims with H, W replaced by oh, ow.
inline Shape pooled_sizes(const Tensor& x, int64_t oh, int64_t ow) {
  Shape s = x.sizes();
  s[s.size() - 2] = oh;
  s[s.size() - 1] = ow;
  return s;
}

/// Raises DTypeError unless `x` is float16, bfloat16, float32 or float64 (or also int64 with `allow_long`).
inline void check_pool_dtype(const Tensor& x, const char* op, bool allow_long = false) {
  const DType t = x.dtype();
  const bool ok = t == kFloat16 || t == kBFloat16 || t == kFloat32 || t == kFloat64 || (allow_long && t == kInt64);
  TORCHLET_CHECK(ok, DTypeError, "[", op, "] expected input of dtype float16, bfloat16, float32, float64",
                 allow_long ? " or int64" : "", ", got ", t);
}

/// The gradient of a pooling input: a new contiguous tensor of the input's sizes and dtype filled by
/// `kernel(grad_output [N, C, OH, OW], grad_input [N, C, H, W])` (grad_output converted to the input's dtype).
template <class K>
inline Tensor pool_input_grad(const Tensor& grad_output, const Shape& input_sizes, DType dtype, const K& kernel) {
  Tensor gi = empty(input_sizes, dtype);
  kernel(as_batched(grad_output.to(dtype)), as_batched(gi));
  return gi;
}

/// The max_pool2d backward node's function: grad_output scattered to the saved argmax `indices`.
/// On a device the kernel scatters with the geometry `s`.
inline autograd::BackwardFn max_pool2d_backward_fn(const Tensor& indices, const Shape& input_sizes, DType dtype,
                                                   const Pool2dShape& s) {
  return [si = autograd::SavedTensor(indices), input_sizes, dtype, s](const autograd::TensorList& g,
                                                                    const std::vector<bool>& need) {
    if (!need[0]) return autograd::TensorList{Tensor()};
    const Tensor idx = si.get();
    if (!idx.is_cpu()) return autograd::TensorList{pool2d_device_backward(PoolKind::Max, g[0], idx, s, input_sizes, dtype)};
    return autograd::TensorList{pool_input_grad(g[0], input_sizes, dtype, [&](const Tensor& go, const Tensor& gi) {
      cpu::max_pool2d_backward(go, as_batched(idx), gi);
    })};
  };
}
}  // namespace detail

namespace detail {
// max_pool2d with or without returning the indices; they are computed whenever returned or recorded.
inline std::pair<Tensor, Tensor> max_pool2d_impl(const Tensor& x, const MaxPool2dOptions& o, bool want_indices) {
  check_pool_input(x, "max_pool2d");
  check_pool_dtype(x, "max_pool2d");
  const cpu::Pool2dGeometry g = pool_geometry(x, "max_pool2d", o.kernel_size, o.stride, o.padding, o.dilation,
                                              o.ceil_mode);
  const Shape sizes = pooled_sizes(x, g.out_h, g.out_w);
  const bool track = autograd::any_requires_grad({x});
  const Pool2dShape s = pool2d_shape(x, g);
  Tensor out, idx;
  {
    autograd::NoGradGuard untracked;
    if (want_indices || track) idx = empty({0}, kInt64);  // the backward needs the argmax positions
    if (x.is_cpu()) {
      out = empty(sizes, x.dtype());
      if (idx.defined()) idx = empty(sizes, kInt64);
      cpu::max_pool2d(as_batched(x), g, out, idx);
    } else {
      out = pool2d_device_forward(PoolKind::Max, x, s, sizes, idx, "max_pool2d");
    }
  }
  if (track) autograd::record("max_pool2d_with_indices", {x}, {out}, max_pool2d_backward_fn(idx, x.sizes(), x.dtype(), s));
  // a channels-last input gives a channels-last output, as in PyTorch (the kernel reads any layout)
  if (x.suggest_memory_format() == MemoryFormat::ChannelsLast) out = out.contiguous(MemoryFormat::ChannelsLast);
  return {out, idx};
}
}  // namespace detail

/// Max pooling over 2-D windows of [N, C, H, W] or [C, H, W] input, and the flat index (h * W + w within its
/// plane, int64) of each maximum, as torch.nn.functional.max_pool2d(..., return_indices=True). Differentiable in x:
/// the gradient goes to each window's maximum (accumulating where windows share one).
inline std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, const MaxPool2dOptions& o) {
  return detail::max_pool2d_impl(x, o, /*want_indices=*/true);
}

/// Max pooling over 2-D windows of [N, C, H, W] or [C, H, W] input, as torch.nn.functional.max_pool2d.
/// Differentiable (the indices are computed only when recording).
inline Tensor max_pool2d(const Tensor& x, const MaxPool2dOptions& o) {
  return detail::max_pool2d_impl(x, o, /*want_indices=*/false).first;
}

/// Average pooling over 2-D windows of [N, C, H, W] or [C, H, W] input (floating or int64), as
/// torch.nn.functional.avg_pool2d. Differentiable for floating inputs.
inline Tensor avg_pool2d(const Tensor& x, const AvgPool2dOptions& o) {
  detail::check_pool_input(x, "avg_pool2d");
  detail::check_pool_dtype(x, "avg_pool2d", /*allow_long=*/true);
  TORCHLET_CHECK(!o.divisor_override || *o.divisor_override != 0, ValueError,
                 "[avg_pool2d] divisor_override must be non-zero, got 0");
  const cpu::Pool2dGeometry g =
      detail::pool_geometry(x, "avg_pool2d", o.kernel_size, o.stride, o.padding, {1, 1}, o.ceil_mode);
  TORCHLET_CHECK(x.is_cpu() || x.is_floating_point(), DTypeError, "[avg_pool2d] expected a floating point input on ",
                 x.device(), ", got ", x.dtype());
  const Shape sizes = detail::pooled_sizes(x, g.out_h, g.out_w);
  const bool track = autograd::any_requires_grad({x});
  const Pool2dShape s = detail::pool2d_shape(x, g, o.count_include_pad, o.divisor_override.value_or(0));
  Tensor out;
  {
    autograd::NoGradGuard untracked;
    if (x.is_cpu()) {
      out = empty(sizes, x.dtype());
      cpu::avg_pool2d(detail::as_batched(x), g, o.count_include_pad, o.divisor_override, out);
    } else {
      Tensor no_indices;
      out = detail::pool2d_device_forward(PoolKind::Avg, x, s, sizes, no_indices, "avg_pool2d");
    }
  }
  if (track)
    autograd::record("avg_pool2d", {x}, {out},
                     [g, s, include_pad = o.count_include_pad, divisor = o.divisor_override, sizes = x.sizes(),
                      dtype = x.dtype()](const autograd::TensorList& grads, const std::vector<bool>& need) {
                       if (!need[0]) return autograd::TensorList{Tensor()};
                       if (!grads[0].is_cpu())
                         return autograd::TensorList{
                             detail::pool2d_device_backward(PoolKind::Avg, grads[0], Tensor(), s, sizes, dtype)};
                       return autograd::TensorList{detail::pool_input_grad(
                           grads[0], sizes, dtype, [&](const Tensor& go, const Tensor& gi) {
                             cpu::avg_pool2d_backward(go, g, include_pad, divisor, gi);
                           })};
                     });
  return out;
}

/// Average pooling of [N, C, H, W] or [C, H, W] input to `output_size` ({h, w} or one value for both), with
/// PyTorch's windows [floor(i * in / out), ceil((i + 1) * in / out)), as torch.nn.functional.adaptive_avg_pool2d.
/// Differentiable.
inline Tensor adaptive_avg_pool2d(const Tensor& x, Shape output_size) {
  detail::check_pool_input(x, "adaptive_avg_pool2d");
  detail::check_pool_dtype(x, "adaptive_avg_pool2d");
  const auto [oh, ow] = detail::pair_option(output_size, "adaptive_avg_pool2d", "output_size");
  TORCHLET_CHECK(oh >= 0 && ow >= 0, ValueError, "[adaptive_avg_pool2d] output_size must be non-negative, got [",
                 oh, ", ", ow, "]");
  const Shape sizes = detail::pooled_sizes(x, oh, ow);
  const bool track = autograd::any_requires_grad({x});
  cpu::Pool2dGeometry geometry{};
  geometry.out_h = oh, geometry.out_w = ow;
  const Pool2dShape s = detail::pool2d_shape(x, geometry);
  Tensor out;
  {
    autograd::NoGradGuard untracked;
    if (x.is_cpu()) {
      out = empty(sizes, x.dtype());
      cpu::adaptive_avg_pool2d(detail::as_batched(x), detail::as_batched(out));
    } else {
      Tensor no_indices;
      out = detail::pool2d_device_forward(PoolKind::AdaptiveAvg, x, s, sizes, no_indices, "adaptive_avg_pool2d");
    }
  }
  if (track)
    autograd::record("adaptive_avg_pool2d", {x}, {out},
                     [s, sizes = x.sizes(), dtype = x.dtype()](const autograd::TensorList& grads,
                                                               const std::vector<bool>& need) {
                       if (!need[0]) return autograd::TensorList{Tensor()};
                       if (!grads[0].is_cpu())
                         return autograd::TensorList{
                             detail::pool2d_device_backward(PoolKind::AdaptiveAvg, grads[0], Tensor(), s, sizes, dtype)};
                       return autograd::TensorList{detail::pool_input_grad(grads[0], sizes, dtype,
                                                                           &cpu::adaptive_avg_pool2d_backward)};
                     });
  return out;
}
}  // namespace torchlet
