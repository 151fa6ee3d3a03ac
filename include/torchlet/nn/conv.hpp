#pragma once
/// \file nn::Conv2d: a 2-D convolution layer with PyTorch's options, defaults and initialisation.
#include <cmath>
#include <cstdint>
#include <string>

#include "torchlet/nn/format.hpp"
#include "torchlet/nn/init.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/nn/size2.hpp"
#include "torchlet/ops/conv.hpp"

namespace torchlet::nn {

/// The keyword arguments of Conv2d with PyTorch's defaults: `{.stride = 2, .padding = 3, .bias = false}`
/// (each size is one value for both dims, or {h, w}). Only zero padding ('zeros' padding_mode) is supported.
struct Conv2dOptions {
  Size2 stride = 1;    ///< step between output pixels
  Size2 padding = 0;   ///< zeros added on both sides
  Size2 dilation = 1;  ///< spacing between kernel taps
  int64_t groups = 1;  ///< channels split into independent groups
  bool bias = true;    ///< add a learnable bias
};

/// 2-D convolution like torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
/// bias): weight [out, in / groups, kh, kw] with kaiming_uniform_(a = sqrt(5)), bias U(-1/sqrt(fan_in), ...).
class Conv2d : public Module {
 public:
  /// A float32 layer with PyTorch's default initialisation, e.g. `Conv2d(3, 64, 7, {.stride = 2, .padding = 3})`.
  Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Conv2dOptions options = {})
      : in_channels(in_channels),
        out_channels(out_channels),
        kernel_size(kernel_size),
        stride(options.stride),
        padding(options.padding),
        dilation(options.dilation),
        groups(options.groups) {
    TORCHLET_CHECK(groups > 0, ValueError, "[Conv2d] groups must be a positive integer, got ", groups);
    TORCHLET_CHECK(in_channels % groups == 0, ValueError, "[Conv2d] in_channels must be divisible by groups, got ",
                   in_channels, " and groups=", groups);
    TORCHLET_CHECK(out_channels % groups == 0, ValueError, "[Conv2d] out_channels must be divisible by groups, got ",
                   out_channels, " and groups=", groups);
    TORCHLET_CHECK(kernel_size.h > 0 && kernel_size.w > 0, ValueError, "[Conv2d] kernel_size must be positive, got ",
                   kernel_size.tuple_str());
    register_parameter("weight", empty({out_channels, in_channels / groups, kernel_size.h, kernel_size.w}));
    register_parameter("bias", options.bias ? empty({out_channels}) : Tensor());
    reset_parameters();
  }
  const int64_t in_channels;   ///< channels of the input
  const int64_t out_channels;  ///< channels of the output
  const Size2 kernel_size;     ///< (kh, kw)
  const Size2 stride;          ///< (sh, sw)
  const Size2 padding;         ///< (ph, pw)
  const Size2 dilation;        ///< (dh, dw)
  const int64_t groups;        ///< number of channel groups

  Tensor& weight() { return parameter("weight"); }              ///< [out, in / groups, kh, kw]
  const Tensor& weight() const { return parameter("weight"); }  ///< [out, in / groups, kh, kw]
  Tensor& bias() { return parameter("bias"); }                  ///< [out], undefined without bias
  const Tensor& bias() const { return parameter("bias"); }      ///< [out], undefined without bias

  /// Draws the weight and bias again as the constructor did.
  void reset_parameters(Generator& gen = default_generator()) { init::default_weight_and_bias_(weight(), bias(), gen); }
  std::string name() const override { return "Conv2d"; }  ///< "Conv2d"
  /// "3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False", as PyTorch prints it.
  std::string extra_repr() const override {
    std::string s = std::to_string(in_channels) + ", " + std::to_string(out_channels) + ", kernel_size=" +
                    kernel_size.tuple_str() + ", stride=" + stride.tuple_str();
    if (!padding.all(0)) s += ", padding=" + padding.tuple_str();
    if (!dilation.all(1)) s += ", dilation=" + dilation.tuple_str();
    if (groups != 1) s += ", groups=" + std::to_string(groups);
    if (!bias().defined()) s += ", bias=False";
    return s;
  }
  /// conv2d(input, weight, bias) with this layer's stride, padding, dilation and groups.
  Tensor forward(const Tensor& input) override {
    ::torchlet::Conv2dOptions o;
    o.stride = stride.shape();
    o.padding = padding.shape();
    o.dilation = dilation.shape();
    o.groups = groups;
    return ::torchlet::conv2d(input, weight(), bias(), o);
  }
};
}  // namespace torchlet::nn
