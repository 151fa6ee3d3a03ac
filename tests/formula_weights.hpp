#pragma once
// The closed-form weights and inputs of tests/fixtures/gen/resnet.py (formula_u, fill, image), computed the same way
// in C++ so a model filled here equals the torchvision model the generator filled, bit for bit in float32. No random
// generator is involved: for the k-th tensor of named_parameters() and flat index i, h = splitmix64((k << 32) + i),
// u = ((h >> 40) - 2^23) / 2^23 in [-1, 1); a tensor of 2+ dims gets u * sqrt(6 / fan_in), a 1-dim `weight`
// 1 + 0.25 u, a 1-dim `bias` 0.1 u. Input batch j uses tensor index 1000 + j and u as is.
#include <cmath>
#include <cstdint>
#include <string>

#include "torchlet/autograd/grad_mode.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/tensor/factory.hpp"

namespace testing {

/// u in [-1, 1) for flat index i of tensor k (exact in float32).
inline double formula_u(uint64_t k, uint64_t i) {
  uint64_t z = (k << 32) + i + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  return static_cast<double>(static_cast<int64_t>(z >> 40) - (int64_t{1} << 23)) / static_cast<double>(1 << 23);
}

/// Fills every parameter of `model` with the formula (buffers stay as constructed: BatchNorm mean 0, var 1).
inline void fill_formula(torchlet::nn::Module& model) {
  using namespace torchlet;
  autograd::NoGradGuard no_grad;
  uint64_t k = 0;
  for (auto& [name, p] : model.named_parameters()) {
    const int64_t n = p.numel();
    // straight into a contiguous float32 parameter (no second copy of a VGG's 120M weights), else via a temporary
    const bool direct = p.is_cpu() && p.dtype() == kFloat32 && p.is_contiguous();
    Tensor v = direct ? p : empty(p.sizes(), kFloat32);
    float* d = v.data<float>();
    const bool is_weight = name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
    const double scale = p.dim() >= 2 ? std::sqrt(6.0 / static_cast<double>(n / p.size(0))) : 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double u = formula_u(k, static_cast<uint64_t>(i));
      const double x = p.dim() >= 2 ? u * scale : is_weight ? 1.0 + 0.25 * u : 0.1 * u;
      d[i] = static_cast<float>(x);
    }
    if (!direct) Tensor(p).copy_(v);
    ++k;
  }
}

/// Input batch j of gen/resnet.py: [2, 3, 64, 64] float32.
inline torchlet::Tensor formula_image(uint64_t j) {
  using namespace torchlet;
  Tensor v = empty({2, 3, 64, 64}, kFloat32);
  float* d = v.data<float>();
  for (int64_t i = 0; i < v.numel(); ++i) d[i] = static_cast<float>(formula_u(1000 + j, static_cast<uint64_t>(i)));
  return v;
}

}  // namespace testing
