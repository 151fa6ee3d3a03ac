#pragma once
/// \file torch.nn.init: PyTorch's initialisation formulas (gains, fans, uniform/normal/constant, Kaiming, Xavier).
/// Each fills a tensor in place under no_grad (handles share data, so `init::zeros_(linear->bias())` works) and
/// returns it; random ones draw from `gen` (torchlet's streams, not PyTorch's: the distributions match, the values
/// do not).
#include <cctype>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

// tensor.hpp first: it pulls in the autograd engine, which grad_mode.hpp alone cannot
#include "torchlet/tensor/tensor.hpp"
#include "torchlet/autograd/grad_mode.hpp"
#include "torchlet/tensor/random.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::nn::init {

/// The recommended gain for a nonlinearity, as torch.nn.init.calculate_gain: 1 for linear/conv*/sigmoid, 5/3 for
/// tanh, sqrt(2) for relu, sqrt(2 / (1 + slope^2)) for leaky_relu (slope `param`, default 0.01), 3/4 for selu.
inline double calculate_gain(std::string_view nonlinearity, std::optional<double> param = std::nullopt) {
  for (std::string_view lin : {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                               "conv_transpose3d", "sigmoid"})
    if (nonlinearity == lin) return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") {
    const double slope = param.value_or(0.01);
    return std::sqrt(2.0 / (1 + slope * slope));
  }
  if (nonlinearity == "selu") return 3.0 / 4;
  TORCHLET_THROW(ValueError, "[init] unsupported nonlinearity ", nonlinearity);
}

/// (fan_in, fan_out) of a weight of at least 2 dims: size(1) and size(0) times the receptive field (the product of
/// the remaining dims), as torch.nn.init._calculate_fan_in_and_fan_out.
inline std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  TORCHLET_CHECK(t.dim() >= 2, ValueError, "[init] fan in and fan out can not be computed for tensor with fewer than "
                 "2 dimensions, got ", shape_str(t.sizes()));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

/// fan_in or fan_out of `t` by `mode` ("fan_in" / "fan_out", any case).
inline int64_t calculate_correct_fan(const Tensor& t, std::string_view mode) {
  std::string m(mode);
  for (char& c : m) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  TORCHLET_CHECK(m == "fan_in" || m == "fan_out", ValueError, "[init] mode ", mode,
                 " not supported, please use one of fan_in, fan_out");
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  return m == "fan_in" ? fan_in : fan_out;
}

/// Fills `t` with values drawn from U(a, b).
inline Tensor uniform_(Tensor t, double a = 0, double b = 1, Generator& gen = default_generator()) {
  autograd::NoGradGuard no_grad;
  ::torchlet::uniform_(t, a, b, gen);
  return t;
}
/// Fills `t` with values drawn from N(mean, std^2).
inline Tensor normal_(Tensor t, double mean = 0, double std = 1, Generator& gen = default_generator()) {
  autograd::NoGradGuard no_grad;
  ::torchlet::normal_(t, mean, std, gen);
  return t;
}
/// Fills `t` with `value`.
inline Tensor constant_(Tensor t, double value) {
  autograd::NoGradGuard no_grad;
  t.fill_(value);
  return t;
}
/// Fills `t` with zeros.
inline Tensor zeros_(Tensor t) { return constant_(std::move(t), 0); }
/// Fills `t` with ones.
inline Tensor ones_(Tensor t) { return constant_(std::move(t), 1); }

/// The keyword arguments of kaiming_uniform_ / kaiming_normal_, with PyTorch's defaults.
struct KaimingOptions {
  double a = 0;                                 ///< negative slope of the rectifier after this layer (leaky_relu)
  std::string_view mode = "fan_in";             ///< "fan_in" keeps the forward variance, "fan_out" the backward one
  std::string_view nonlinearity = "leaky_relu";  ///< as calculate_gain
};

/// Kaiming (He) uniform: U(-bound, bound) with bound = gain * sqrt(3 / fan), as torch.nn.init.kaiming_uniform_
/// (e.g. `{.a = std::sqrt(5.0)}` is Linear's and Conv2d's default). A zero-element tensor is left alone.
inline Tensor kaiming_uniform_(Tensor t, const KaimingOptions& o = {}, Generator& gen = default_generator()) {
  if (t.numel() == 0) return t;
  const double fan = static_cast<double>(calculate_correct_fan(t, o.mode));
  const double stdev = calculate_gain(o.nonlinearity, o.a) / std::sqrt(fan);
  const double bound = std::sqrt(3.0) * stdev;
  return uniform_(std::move(t), -bound, bound, gen);
}
/// Kaiming (He) normal: N(0, std^2) with std = gain / sqrt(fan), as torch.nn.init.kaiming_normal_
/// (torchvision's ResNet: `{.mode = "fan_out", .nonlinearity = "relu"}`). A zero-element tensor is left alone.
inline Tensor kaiming_normal_(Tensor t, const KaimingOptions& o = {}, Generator& gen = default_generator()) {
  if (t.numel() == 0) return t;
  const double fan = static_cast<double>(calculate_correct_fan(t, o.mode));
  const double stdev = calculate_gain(o.nonlinearity, o.a) / std::sqrt(fan);
  return normal_(std::move(t), 0, stdev, gen);
}
/// Xavier (Glorot) uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).
inline Tensor xavier_uniform_(Tensor t, double gain = 1, Generator& gen = default_generator()) {
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  const double stdev = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  const double a = std::sqrt(3.0) * stdev;
  return uniform_(std::move(t), -a, a, gen);
}
/// Xavier (Glorot) normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
inline Tensor xavier_normal_(Tensor t, double gain = 1, Generator& gen = default_generator()) {
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  const double stdev = gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  return normal_(std::move(t), 0, stdev, gen);
}

/// PyTorch's default initialisation of Linear and ConvNd (their reset_parameters): weight from
/// kaiming_uniform_(a = sqrt(5)), bias (if defined) uniform in +-1/sqrt(fan_in).
inline void default_weight_and_bias_(Tensor& weight, Tensor& bias, Generator& gen = default_generator()) {
  kaiming_uniform_(weight, {.a = std::sqrt(5.0)}, gen);
  if (bias.defined()) {
    const int64_t fan_in = calculate_fan_in_and_fan_out(weight).first;
    const double bound = fan_in > 0 ? 1 / std::sqrt(static_cast<double>(fan_in)) : 0;
    init::uniform_(bias, -bound, bound, gen);
  }
}
}  // namespace torchlet::nn::init
