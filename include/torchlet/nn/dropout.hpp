#pragma once
/// \file nn::Dropout: zeroes elements with probability p in training mode, identity in eval mode.
#include <string>

#include "torchlet/nn/format.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/ops/activation.hpp"

namespace torchlet::nn {

/// Like torch.nn.Dropout(p, inplace): in training mode each element is zeroed with probability p (drawn from the
/// default generator) and the rest scaled by 1 / (1 - p); in eval mode the input is returned unchanged.
class Dropout : public Module {
 public:
  /// p in [0, 1] (ValueError otherwise); `inplace` is kept for the printed form, the result is a new tensor.
  explicit Dropout(double p = 0.5, bool inplace = false) : p(p), inplace(inplace) {
    TORCHLET_CHECK(p >= 0 && p <= 1, ValueError, "[Dropout] dropout probability has to be between 0 and 1, but got ",
                   p);
  }
  const double p;      ///< probability of an element to be zeroed
  const bool inplace;  ///< as given (printing only)

  std::string name() const override { return "Dropout"; }  ///< "Dropout"
  /// "p=0.5, inplace=False"
  std::string extra_repr() const override {
    return "p=" + detail::py_float(p) + ", inplace=" + detail::py_bool(inplace);
  }
  /// dropout(input, p, is_training()).
  Tensor forward(const Tensor& input) override { return ::torchlet::dropout(input, p, is_training()); }
};
}  // namespace torchlet::nn
