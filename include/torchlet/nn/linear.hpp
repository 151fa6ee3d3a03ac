#pragma once
/// \file nn::Linear (y = x W^T + b, PyTorch's default initialisation) and nn::Identity.
#include <cmath>
#include <cstdint>
#include <string>

#include "torchlet/nn/format.hpp"
#include "torchlet/nn/init.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/ops/linalg.hpp"

namespace torchlet::nn {

/// Returns its input unchanged, like torch.nn.Identity (a placeholder, e.g. to drop a head: replace "fc" by it).
class Identity : public Module {
 public:
  std::string name() const override { return "Identity"; }  ///< "Identity"
  Tensor forward(const Tensor& input) override { return input; }  ///< The input itself.
};

/// y = x @ weight^T + bias, like torch.nn.Linear(in_features, out_features, bias): weight [out, in] initialised
/// with kaiming_uniform_(a = sqrt(5)) (bound 1/sqrt(in)), bias [out] with U(-1/sqrt(in), 1/sqrt(in)).
class Linear : public Module {
 public:
  /// A float32 layer with PyTorch's default initialisation (drawn from the default generator).
  Linear(int64_t in_features, int64_t out_features, bool bias = true)
      : in_features(in_features), out_features(out_features) {
    TORCHLET_CHECK(in_features >= 0 && out_features >= 0, ValueError, "[Linear] expected non-negative sizes, got "
                   "in_features=", in_features, ", out_features=", out_features);
    register_parameter("weight", empty({out_features, in_features}));
    register_parameter("bias", bias ? empty({out_features}) : Tensor());
    reset_parameters();
  }
  const int64_t in_features;   ///< size of each input sample
  const int64_t out_features;  ///< size of each output sample

  Tensor& weight() { return parameter("weight"); }                    ///< [out_features, in_features]
  const Tensor& weight() const { return parameter("weight"); }        ///< [out_features, in_features]
  Tensor& bias() { return parameter("bias"); }                        ///< [out_features], undefined without bias
  const Tensor& bias() const { return parameter("bias"); }            ///< [out_features], undefined without bias

  /// Draws the weight and bias again as the constructor did.
  void reset_parameters(Generator& gen = default_generator()) { init::default_weight_and_bias_(weight(), bias(), gen); }
  std::string name() const override { return "Linear"; }  ///< "Linear"
  /// "in_features=6, out_features=5, bias=True"
  std::string extra_repr() const override {
    return "in_features=" + std::to_string(in_features) + ", out_features=" + std::to_string(out_features) +
           ", bias=" + detail::py_bool(bias().defined());
  }
  /// linear(input, weight, bias).
  Tensor forward(const Tensor& input) override { return ::torchlet::linear(input, weight(), bias()); }
};
}  // namespace torchlet::nn
