#pragma once
/// \file nn::MaxPool2d, nn::AvgPool2d, nn::AdaptiveAvgPool2d: pooling layers with PyTorch's options and defaults.
#include <cstdint>
#include <optional>
#include <string>

#include "torchlet/nn/format.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/nn/size2.hpp"
#include "torchlet/ops/pooling.hpp"

namespace torchlet::nn {

/// The keyword arguments of MaxPool2d with PyTorch's defaults, e.g. `{.stride = 2, .padding = 1}`.
struct MaxPool2dOptions {
  std::optional<Size2> stride;  ///< step between windows; none means kernel_size
  Size2 padding = 0;            ///< implicit -inf padding on each side (at most half the kernel)
  Size2 dilation = 1;           ///< spacing between window elements
  bool ceil_mode = false;       ///< round the output size up
};

/// Max pooling over 2-D windows, like torch.nn.MaxPool2d(kernel_size, stride, padding, dilation, ceil_mode).
class MaxPool2d : public Module {
 public:
  /// E.g. ResNet's stem: `MaxPool2d(3, {.stride = 2, .padding = 1})`.
  explicit MaxPool2d(Size2 kernel_size, const MaxPool2dOptions& options = {})
      : kernel_size(kernel_size),
        stride(options.stride.value_or(kernel_size)),
        padding(options.padding),
        dilation(options.dilation),
        ceil_mode(options.ceil_mode) {}
  const Size2 kernel_size;  ///< window size
  const Size2 stride;       ///< step between windows
  const Size2 padding;      ///< padding on each side
  const Size2 dilation;     ///< spacing between window elements
  const bool ceil_mode;     ///< round the output size up

  std::string name() const override { return "MaxPool2d"; }  ///< "MaxPool2d"
  /// "kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False" (values as given, like PyTorch).
  std::string extra_repr() const override {
    return "kernel_size=" + kernel_size.as_given_str() + ", stride=" + stride.as_given_str() +
           ", padding=" + padding.as_given_str() + ", dilation=" + dilation.as_given_str() +
           ", ceil_mode=" + detail::py_bool(ceil_mode);
  }
  /// max_pool2d(input) with this layer's options.
  Tensor forward(const Tensor& input) override {
    ::torchlet::MaxPool2dOptions o;
    o.kernel_size = kernel_size.shape();
    o.stride = stride.shape();
    o.padding = padding.shape();
    o.dilation = dilation.shape();
    o.ceil_mode = ceil_mode;
    return ::torchlet::max_pool2d(input, o);
  }
};

/// The keyword arguments of AvgPool2d with PyTorch's defaults.
struct AvgPool2dOptions {
  std::optional<Size2> stride;                ///< step between windows; none means kernel_size
  Size2 padding = 0;                          ///< implicit zero padding on each side (at most half the kernel)
  bool ceil_mode = false;                     ///< round the output size up
  bool count_include_pad = true;              ///< count padded zeros in the divisor
  std::optional<int64_t> divisor_override{};  ///< divide every window by this instead
};

/// Average pooling over 2-D windows, like torch.nn.AvgPool2d.
class AvgPool2d : public Module {
 public:
  /// E.g. `AvgPool2d(2)`.
  explicit AvgPool2d(Size2 kernel_size, const AvgPool2dOptions& options = {})
      : kernel_size(kernel_size),
        stride(options.stride.value_or(kernel_size)),
        padding(options.padding),
        ceil_mode(options.ceil_mode),
        count_include_pad(options.count_include_pad),
        divisor_override(options.divisor_override) {}
  const Size2 kernel_size;                       ///< window size
  const Size2 stride;                            ///< step between windows
  const Size2 padding;                           ///< padding on each side
  const bool ceil_mode;                          ///< round the output size up
  const bool count_include_pad;                  ///< count padded zeros in the divisor
  const std::optional<int64_t> divisor_override;  ///< fixed divisor

  std::string name() const override { return "AvgPool2d"; }  ///< "AvgPool2d"
  /// "kernel_size=2, stride=2, padding=0" (values as given, like PyTorch).
  std::string extra_repr() const override {
    return "kernel_size=" + kernel_size.as_given_str() + ", stride=" + stride.as_given_str() +
           ", padding=" + padding.as_given_str();
  }
  /// avg_pool2d(input) with this layer's options.
  Tensor forward(const Tensor& input) override {
    ::torchlet::AvgPool2dOptions o;
    o.kernel_size = kernel_size.shape();
    o.stride = stride.shape();
    o.padding = padding.shape();
    o.ceil_mode = ceil_mode;
    o.count_include_pad = count_include_pad;
    o.divisor_override = divisor_override;
    return ::torchlet::avg_pool2d(input, o);
  }
};

/// Average pooling to a fixed output size, like torch.nn.AdaptiveAvgPool2d (ResNet's `avgpool`: output 1).
class AdaptiveAvgPool2d : public Module {
 public:
  /// E.g. `AdaptiveAvgPool2d(1)` or `AdaptiveAvgPool2d({1, 1})`.
  explicit AdaptiveAvgPool2d(Size2 output_size) : output_size(output_size) {}
  const Size2 output_size;  ///< (oh, ow)

  std::string name() const override { return "AdaptiveAvgPool2d"; }  ///< "AdaptiveAvgPool2d"
  /// "output_size=(1, 1)" (as given, like PyTorch).
  std::string extra_repr() const override { return "output_size=" + output_size.as_given_str(); }
  /// adaptive_avg_pool2d(input, output_size).
  Tensor forward(const Tensor& input) override { return ::torchlet::adaptive_avg_pool2d(input, output_size.shape()); }
};
}  // namespace torchlet::nn
