#pragma once
/// \file nn::ReLU: the rectifier as a layer.
#include <string>

#include "torchlet/nn/module.hpp"
#include "torchlet/ops/arithmetic.hpp"

namespace torchlet::nn {

/// max(x, 0), like torch.nn.ReLU(inplace). `inplace` is kept for the printed form and familiarity; the result is
/// always a new tensor (same values; the input is left as it is).
class ReLU : public Module {
 public:
  /// ReLU() or ReLU(true) for PyTorch's ReLU(inplace=True).
  explicit ReLU(bool inplace = false) : inplace(inplace) {}
  const bool inplace;  ///< as given (printing only)

  std::string name() const override { return "ReLU"; }  ///< "ReLU"
  /// "inplace=True" or "".
  std::string extra_repr() const override { return inplace ? "inplace=True" : ""; }
  /// relu(input).
  Tensor forward(const Tensor& input) override { return ::torchlet::relu(input); }
};
}  // namespace torchlet::nn
