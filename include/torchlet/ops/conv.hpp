#pragma once
/// \file conv2d with PyTorch's semantics (torch.nn.functional.conv2d): validation, layout and dtype
/// handling, and its autograd recording; the arithmetic is in backend/cpu/conv.hpp (forward) and
/// backend/cpu/conv_backward.hpp (input, weight and bias gradients).
#include <cstdint>

#include "torchlet/backend/cpu/conv.hpp"
#include "torchlet/backend/cpu/conv_backward.hpp"
#include "torchlet/backend/cpu/conv_nhwc.hpp"
#include "torchlet/ops/arithmetic.hpp"
#include "torchlet/ops/autocast.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {

/// Options of conv2d, with PyTorch's defaults; each pair is (height, width).
struct Conv2dOptions {
  Shape stride{1, 1};    ///< step between output pixels
  Shape padding{0, 0};   ///< zeros added on both sides
  Shape dilation{1, 1};  ///< spacing between kernel taps
  int64_t groups = 1;    ///< input and output channels are split into this many independent groups
};

namespace detail {
/// Checks that `v` has two entries of at least `min`; raises ValueError naming the option otherwise.
inline void check_conv_pair(const Shape& v, const char* name, int64_t min, const char* must) {
  TORCHLET_CHECK(v.size() == 2, ValueError, "[conv2d] expected ", name, " of 2 values (height, width), got ",
                 shape_str(v));
  TORCHLET_CHECK(v[0] >= min && v[1] >= min, ValueError, "[conv2d] ", name, " must be ", must, ", got ",
                 shape_str(v));
}

/// Validates conv2d's arguments and returns the geometry of the (batched) convolution.
inline cpu::Conv2dGeometry conv2d_geometry(const Tensor& input, const Tensor& weight, const Tensor& bias,
                                           const Conv2dOptions& options) {
  TORCHLET_CHECK(input.defined(), ValueError, "[conv2d] input is undefined");
  TORCHLET_CHECK(weight.defined(), ValueError, "[conv2d] weight is undefined");
  TORCHLET_CHECK(input.dim() == 3 || input.dim() == 4, ShapeError,
                 "[conv2d] expected input of 3 dims (C, H, W) or 4 dims (N, C, H, W), got ", shape_str(input.sizes()));
  TORCHLET_CHECK(weight.dim() == 4, ShapeError,
                 "[conv2d] expected weight of 4 dims (out_channels, in_channels / groups, kH, kW), got ",
                 shape_str(weight.sizes()));
  TORCHLET_CHECK(input.device() == weight.device() && (!bias.defined() || bias.device() == input.device()),
                 DeviceError, "[conv2d] expected all tensors to be on the same device, but found at least two "
                 "devices, ", input.device(), " and ", input.device() != weight.device() ? weight.device()
                 : bias.device());
  const DType dt = input.dtype();
  TORCHLET_CHECK(dt == kFloat32 || dt == kFloat64 || dt == kFloat16 || dt == kBFloat16, DTypeError,
                 "[conv2d] expected a floating point input (float16, bfloat16, float32, float64), got ", dt);
  TORCHLET_CHECK(weight.dtype() == dt, DTypeError, "[conv2d] input (", dt, ") and weight (", weight.dtype(),
                 ") must have the same dtype");
  TORCHLET_CHECK(!bias.defined() || bias.dtype() == dt, DTypeError, "[conv2d] input (", dt, ") and bias (",
                 bias.dtype(), ") must have the same dtype");
  detail::check_conv_pair(options.stride, "stride", 1, "positive");
  detail::check_conv_pair(options.padding, "padding", 0, "non-negative");
  detail::check_conv_pair(options.dilation, "dilation", 1, "positive");
  const int64_t groups = options.groups;
  TORCHLET_CHECK(groups >= 1, ValueError, "[conv2d] groups must be positive, got ", groups);

  const bool batched = input.dim() == 4;
  const Tensor x4 = batched ? input : input.unsqueeze(0);
  const Shape& ws = weight.sizes();
  const int64_t cout = ws[0], cg = ws[1], kh = ws[2], kw = ws[3];
  TORCHLET_CHECK(kh >= 1 && kw >= 1, ShapeError, "[conv2d] weight ", shape_str(ws), " has an empty kernel");
  TORCHLET_CHECK(cout % groups == 0, ShapeError, "[conv2d] weight ", shape_str(ws), " has ", cout,
                 " output channels, not divisible by groups=", groups);
  const int64_t C = x4.size(1);
  if (groups == 1) {
    TORCHLET_CHECK(C == cg, ShapeError, "[conv2d] input ", shape_str(input.sizes()), " has ", C,
                   " channels, weight ", shape_str(ws), " expects ", cg);
  } else {
    TORCHLET_CHECK(C == cg * groups, ShapeError, "[conv2d] input ", shape_str(input.sizes()), " has ", C,
                   " channels, weight ", shape_str(ws), " expects ", cg * groups, " (= ", cg, " per group x ", groups,
                   " groups)");
  }
  TORCHLET_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == cout), ShapeError,
                 "[conv2d] expected bias of shape [", cout, "], got ", shape_str(bias.defined() ? bias.sizes() : Shape{}));

  cpu::Conv2dGeometry g;
  g.batch = x4.size(0);
  g.in_channels = C;
  g.in_h = x4.size(2);
  g.in_w = x4.size(3);
  g.out_channels = cout;
  g.kernel_h = kh;
  g.kernel_w = kw;
  g.stride_h = options.stride[0];
  g.stride_w = options.stride[1];
  g.pad_h = options.padding[0];
  g.pad_w = options.padding[1];
  g.dilation_h = options.dilation[0];
  g.dilation_w = options.dilation[1];
  g.groups = groups;
  const int64_t eff_h = g.dilation_h * (kh - 1) + 1, eff_w = g.dilation_w * (kw - 1) + 1;
  const int64_t padded_h = g.in_h + 2 * g.pad_h, padded_w = g.in_w + 2 * g.pad_w;
  TORCHLET_CHECK(padded_h >= eff_h && padded_w >= eff_w, ShapeError, "[conv2d] input ", shape_str(input.sizes()),
                 " (padded ", padded_h, "x", padded_w, ") is smaller than the ",
                 (g.dilation_h > 1 || g.dilation_w > 1) ? "dilated kernel " : "kernel ", eff_h, "x", eff_w);
  g.out_h = (padded_h - eff_h) / g.stride_h + 1;
  g.out_w = (padded_w - eff_w) / g.stride_w + 1;
  return g;
}

/// The dtype conv2d computes in: float32 for float16 / bfloat16, the dtype itself otherwise.
inline DType conv2d_compute_dtype(DType dt) { return (dt == kFloat16 || dt == kBFloat16) ? kFloat32 : dt; }

/// The geometry as the device kernels take it, with the tensors' layout (NCHW, or NHWC when `channels_last`).
inline Conv2dShape conv2d_shape(const cpu::Conv2dGeometry& g, bool channels_last = false) {
  return {g.batch, g.in_channels, g.in_h, g.in_w, g.out_channels, g.kernel_h, g.kernel_w, g.stride_h, g.stride_w,
          g.pad_h, g.pad_w, g.dilation_h, g.dilation_w, g.groups, g.out_h, g.out_w, channels_last};
}

/// conv2d without autograd (see torchlet::conv2d).
inline Tensor conv2d_forward(const Tensor& input, const Tensor& weight, const Tensor& bias,
                             const cpu::Conv2dGeometry& g) {
  const DType dt = input.dtype();
  const bool batched = input.dim() == 4;
  const Tensor x4 = batched ? input : input.unsqueeze(0);
  const int64_t cout = g.out_channels;
  // float16 / bfloat16 are computed in float32 and rounded back
  const DType compute = conv2d_compute_dtype(dt);
  if (!input.is_cpu()) {  // the device takes 16-bit as it is, and channels-last as it is: NHWC in, NHWC out
    const MemoryFormat format = x4.suggest_memory_format();
    const Tensor xc = x4.contiguous(format), wc = weight.contiguous(format);
    const Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
    Tensor out = empty({g.batch, cout, g.out_h, g.out_w}, TensorOptions(dt, input.device()), format);
    if (out.numel() > 0)
      device_kernels(input.device(), "conv2d")
          .conv2d_forward(out, xc, wc, bc, conv2d_shape(g, format == MemoryFormat::ChannelsLast));
    return batched ? out : out.squeeze(0);
  }
  if (x4.suggest_memory_format() == MemoryFormat::ChannelsLast) {  // NHWC in, NHWC out
    const Tensor xc = x4.to(compute).contiguous(MemoryFormat::ChannelsLast);
    const Tensor wc = weight.to(compute).contiguous(MemoryFormat::ChannelsLast);
    const Tensor bc = bias.defined() ? bias.to(compute).contiguous() : Tensor();
    Tensor out = empty({g.batch, cout, g.out_h, g.out_w}, TensorOptions(compute, input.device()),
                       MemoryFormat::ChannelsLast);
    auto run = [&]<class T>() {
      cpu::conv2d_forward_nhwc<T>(g, static_cast<const T*>(xc.data_ptr()), static_cast<const T*>(wc.data_ptr()),
                                  bc.defined() ? static_cast<const T*>(bc.data_ptr()) : nullptr,
                                  static_cast<T*>(out.data_ptr()));
    };
    if (compute == kFloat32) run.template operator()<float>();
    else run.template operator()<double>();
    if (compute != dt) out = out.to(dt).contiguous(MemoryFormat::ChannelsLast);
    return batched ? out : out.squeeze(0);
  }
  const Tensor xc = x4.to(compute).contiguous();
  const Tensor wc = weight.to(compute).contiguous();
  const Tensor bc = bias.defined() ? bias.to(compute).contiguous() : Tensor();
  Tensor out = empty({g.batch, cout, g.out_h, g.out_w}, TensorOptions(compute, input.device()));
  if (compute == kFloat32) {
    cpu::conv2d_forward<float>(g, xc.data<float>(), wc.data<float>(), bc.defined() ? bc.data<float>() : nullptr,
                               out.data<float>());
  } else {
    cpu::conv2d_forward<double>(g, xc.data<double>(), wc.data<double>(), bc.defined() ? bc.data<double>() : nullptr,
                                out.data<double>());
  }
  if (compute != dt) out = out.to(dt);
  return batched ? out : out.squeeze(0);
}

/// Gradients of conv2d with geometry `g` for grad_out (the output's shape), computed only where need[i]
/// (0: input, 1: weight, 2: bias; undefined tensors elsewhere), in the compute dtype (float32 for 16-bit floats)
/// on the CPU, in the weight's dtype on a device (and channels-last there when the input is).
inline TensorList conv2d_backward(const Tensor& grad_out, const Tensor& input, const Tensor& weight, bool has_bias,
                                  const cpu::Conv2dGeometry& g, const Needs& need) {
  const DType compute = conv2d_compute_dtype(weight.dtype());
  const bool batched = input.dim() == 4;
  Tensor gi, gw, gb;
  if (!weight.is_cpu()) {  // in the weight's dtype, and channels-last throughout when the input is
    const DType dt = weight.dtype();
    const Tensor x4 = batched ? input : input.unsqueeze(0);
    const MemoryFormat format = x4.suggest_memory_format();
    const Conv2dShape shape = conv2d_shape(g, format == MemoryFormat::ChannelsLast);
    const Tensor go = (batched ? grad_out : grad_out.unsqueeze(0)).to(dt).contiguous(format);
    DeviceKernels& k = device_kernels(weight.device(), "conv2d backward");
    if (need[0]) {
      gi = empty({g.batch, g.in_channels, g.in_h, g.in_w}, TensorOptions(dt, weight.device()), format);
      if (gi.numel() > 0) k.conv2d_backward_input(gi, go, weight.contiguous(format), shape);
      if (!batched) gi = gi.squeeze(0);
    }
    if (need[1]) {
      gw = empty(weight.sizes(), TensorOptions(dt, weight.device()), format);
      if (gw.numel() > 0) k.conv2d_backward_weight(gw, go, x4.contiguous(format), shape);
    }
    if (need.size() > 2 && need[2] && has_bias) {
      gb = empty({g.out_channels}, TensorOptions(dt, weight.device()));
      if (go.numel() > 0) k.conv2d_backward_bias(gb, go, shape);
      else gb.zero_();
    }
    return TensorList{gi, gw, gb};
  }
  const Tensor go = (batched ? grad_out : grad_out.unsqueeze(0)).to(compute).contiguous();
  if (need[0]) {
    const Tensor wc = weight.to(compute).contiguous();
    gi = empty({g.batch, g.in_channels, g.in_h, g.in_w}, TensorOptions(compute, input.device()));
    if (compute == kFloat32)
      cpu::conv2d_backward_input<float>(g, go.data<float>(), wc.data<float>(), gi.data<float>());
    else
      cpu::conv2d_backward_input<double>(g, go.data<double>(), wc.data<double>(), gi.data<double>());
    if (!batched) gi = gi.squeeze(0);
  }
  if (need[1]) {
    const Tensor xc = (batched ? input : input.unsqueeze(0)).to(compute).contiguous();
    gw = empty(weight.sizes(), TensorOptions(compute, weight.device()));
    if (compute == kFloat32)
      cpu::conv2d_backward_weight<float>(g, go.data<float>(), xc.data<float>(), gw.data<float>());
    else
      cpu::conv2d_backward_weight<double>(g, go.data<double>(), xc.data<double>(), gw.data<double>());
  }
  if (need.size() > 2 && need[2] && has_bias) {
    gb = empty({g.out_channels}, TensorOptions(compute, weight.device()));
    if (compute == kFloat32)
      cpu::conv2d_backward_bias<float>(g, go.data<float>(), gb.data<float>());
    else
      cpu::conv2d_backward_bias<double>(g, go.data<double>(), gb.data<double>());
  }
  return TensorList{gi, gw, gb};
}
}  // namespace detail

/// 2-D convolution as torch.nn.functional.conv2d: input [N, C, H, W] (or unbatched [C, H, W]), weight
/// [Cout, C/groups, kh, kw], optional bias [Cout] (pass an undefined Tensor for none). Output
/// [N, Cout, Ho, Wo] with Ho = (H + 2 * pad - dilation * (kh - 1) - 1) / stride + 1 (likewise Wo), unbatched
/// for unbatched input. Any layout is accepted; float16 and bfloat16 are computed in float32 and rounded (on a
/// device the kernels take them as they are and compute in float32); a channels-last input gives a channels-last
/// output, and on a device runs channels-last throughout (no NCHW copies), backward included.
/// Differentiable in input, weight and bias; backward computes only the gradients that are needed, and nothing
/// is recorded when none of them requires grad (a frozen convolution costs no backward work).
inline Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias = {},
                     const Conv2dOptions& options = {}) {
  if (detail::autocast_applies(input)) {  // an Autocast scope: computed in its 16-bit dtype
    detail::AutocastPause cast_once;
    return conv2d(detail::autocast_lower(input), detail::autocast_lower(weight), detail::autocast_lower(bias), options);
  }
  Tensor out;
  cpu::Conv2dGeometry g;
  {
    autograd::NoGradGuard untracked;
    g = detail::conv2d_geometry(input, weight, bias, options);
    out = detail::conv2d_forward(input, weight, bias, g);
  }
  return detail::recorded("conv2d", {input, weight, bias}, out,
                          [sx = detail::SavedTensor(input), sw = detail::SavedTensor(weight), has_bias = bias.defined(),
                           g](const detail::TensorList& grads, const detail::Needs& need) {
                            return detail::conv2d_backward(grads[0], sx.get(), sw.get(), has_bias, g, need);
                          });
}
}  // namespace torchlet
