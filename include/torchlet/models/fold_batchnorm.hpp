#pragma once
/// \file Inference-time BatchNorm folding for ResNets: each conv followed by a BatchNorm becomes one conv with a bias
/// (w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta) and the BatchNorm an nn::Identity,
/// so eval-mode outputs stay the same (up to float rounding) for one fewer pass over every activation.
#include <memory>
#include <string>

#include "torchlet/models/resnet.hpp"
#include "torchlet/nn/batchnorm.hpp"
#include "torchlet/nn/conv.hpp"
#include "torchlet/nn/linear.hpp"
#include "torchlet/ops/arithmetic.hpp"

namespace torchlet::models {

namespace detail {
/// Folds child `bn_name` of `owner` (a BatchNorm with running statistics) into child `conv_name` (a Conv2d):
/// replaces the conv by one with a bias and the BatchNorm by Identity. Returns false (and changes nothing) when the
/// pair is not a Conv2d followed by a BatchNorm with running statistics.
inline bool fold_pair(nn::Module& owner, const std::string& conv_name, const std::string& bn_name) {
  if (!owner.has_module(conv_name) || !owner.has_module(bn_name)) return false;
  const auto conv_m = owner.get_submodule(conv_name);
  const auto bn_m = owner.get_submodule(bn_name);
  if (conv_m->name() != "Conv2d" || !bn_m->is_batchnorm()) return false;
  const auto conv = std::static_pointer_cast<nn::Conv2d>(conv_m);
  const auto bn = std::static_pointer_cast<nn::BatchNormBase>(bn_m);
  if (!bn->track_running_stats) return false;
  autograd::NoGradGuard no_grad;
  const DType dt = conv->weight().dtype();
  Tensor scale = div(ones({bn->num_features}, kFloat64), sqrt(add(bn->running_var().to(kFloat64), bn->eps)));
  if (bn->affine) scale = mul(scale, bn->weight().to(kFloat64));
  Tensor shift = conv->bias().defined() ? conv->bias().to(kFloat64) : zeros({bn->num_features}, kFloat64);
  shift = mul(sub(shift, bn->running_mean().to(kFloat64)), scale);
  if (bn->affine) shift = add(shift, bn->bias().to(kFloat64));
  auto folded = std::make_shared<nn::Conv2d>(
      conv->in_channels, conv->out_channels, conv->kernel_size,
      nn::Conv2dOptions{.stride = conv->stride, .padding = conv->padding, .dilation = conv->dilation,
                        .groups = conv->groups, .bias = true});
  folded->weight().copy_(mul(conv->weight().to(kFloat64), scale.reshape({-1, 1, 1, 1})).to(dt));
  folded->bias().copy_(shift.to(dt));
  folded->weight().requires_grad_(conv->weight().requires_grad());
  folded->bias().requires_grad_(conv->weight().requires_grad());
  folded->train(conv->is_training());
  owner.replace_module(conv_name, folded);
  owner.replace_module(bn_name, std::make_shared<nn::Identity>());
  return true;
}
}  // namespace detail

/// Puts `model` in eval mode and folds every BatchNorm into the conv before it (stem, every block's convs, every
/// downsample), for inference: the state_dict then has conv biases and no BatchNorm keys, so fold after loading
/// weights, not before saving them. Returns the number of BatchNorms folded.
inline int fold_batchnorm(ResNet& model) {
  model.eval();
  int n = detail::fold_pair(model, "conv1", "bn1") ? 1 : 0;
  for (const auto& [name, m] : model.named_modules()) {
    if (m->name() == "BasicBlock" || m->name() == "Bottleneck") {
      static const char* const pairs[3][2] = {{"conv1", "bn1"}, {"conv2", "bn2"}, {"conv3", "bn3"}};
      for (const auto& p : pairs) n += detail::fold_pair(*m, p[0], p[1]);
      if (m->has_module("downsample")) n += detail::fold_pair(*m->get_submodule("downsample"), "0", "1");
    }
  }
  return n;
}
}  // namespace torchlet::models
