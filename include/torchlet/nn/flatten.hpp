#pragma once
/// \file nn::Flatten: merges a range of dims into one (by default all but the batch dim).
#include <cstdint>
#include <string>

#include "torchlet/nn/module.hpp"

namespace torchlet::nn {

/// Like torch.nn.Flatten(start_dim = 1, end_dim = -1): [N, C, H, W] -> [N, C * H * W].
class Flatten : public Module {
 public:
  /// Merges dims start_dim..end_dim.
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1) : start_dim(start_dim), end_dim(end_dim) {}
  const int64_t start_dim;  ///< first dim to merge
  const int64_t end_dim;    ///< last dim to merge

  std::string name() const override { return "Flatten"; }  ///< "Flatten"
  /// "start_dim=1, end_dim=-1"
  std::string extra_repr() const override {
    return "start_dim=" + std::to_string(start_dim) + ", end_dim=" + std::to_string(end_dim);
  }
  /// input.flatten(start_dim, end_dim).
  Tensor forward(const Tensor& input) override { return input.flatten(start_dim, end_dim); }
};
}  // namespace torchlet::nn
