#pragma once
/// \file CPU concatenation: copies each input into its slice of the output (converting dtypes on the way).
#include <vector>

#include "torchlet/tensor/tensor.hpp"

namespace torchlet::cpu {

/// Copies `inputs` one after another along `dim` into `out`, whose other sizes match theirs; inputs flagged in
/// `skip` (PyTorch's legacy empty 1-D tensors) are left out. Any layouts; dtypes are converted to out's.
inline void cat_into(const Tensor& out, const std::vector<Tensor>& inputs, int64_t dim, const std::vector<bool>& skip) {
  int64_t at = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (skip[i]) continue;
    const int64_t len = inputs[i].size(dim);
    if (len > 0 && out.numel() > 0) {
      Tensor slot = out.narrow(dim, at, len);
      slot.copy_(inputs[i]);
    }
    at += len;
  }
}
}  // namespace torchlet::cpu
