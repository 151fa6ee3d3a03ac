#pragma once
/// \file Fine-tuning helpers: trainable_parameters (what the optimizer gets), freeze / unfreeze a subtree, and
/// keeping frozen BatchNorms in eval mode (their running statistics otherwise keep moving in train mode).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "torchlet/nn/module.hpp"

namespace torchlet::nn {

/// The parameters that require grad, in named_parameters() order: the C++ of
/// `(p for p in model.parameters() if p.requires_grad)`.
inline std::vector<Tensor> trainable_parameters(const Module& module) {
  std::vector<Tensor> out;
  for (const auto& [n, p] : module.named_parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}
/// trainable_parameters(*module).
template <class M>
std::vector<Tensor> trainable_parameters(const std::shared_ptr<M>& module) { return trainable_parameters(*module); }

/// (name, parameter) pairs of the parameters that require grad.
inline Module::NamedTensors named_trainable_parameters(const Module& module) {
  Module::NamedTensors out;
  for (const auto& [n, p] : module.named_parameters())
    if (p.requires_grad()) out.emplace_back(n, p);
  return out;
}

/// Puts every BatchNorm of the subtree in eval mode and keeps it there through later train() calls (on), or lets
/// train() reach them again (off; they take the subtree root's current mode). Frozen BatchNorms then stop updating
/// their running statistics while the rest of the model trains.
inline void set_batchnorm_eval(Module& module, bool on = true) {
  const bool mode = module.is_training();
  for (const auto& [n, m] : module.named_modules()) {
    if (!m->is_batchnorm()) continue;
    m->keep_eval(on);
    if (!on) m->train(mode);
  }
}
/// set_batchnorm_eval(*module, on).
template <class M>
void set_batchnorm_eval(const std::shared_ptr<M>& module, bool on = true) { set_batchnorm_eval(*module, on); }

/// Options of freeze.
struct FreezeOptions {
  bool batchnorm_eval = false;  ///< also keep the subtree's BatchNorms in eval mode (see set_batchnorm_eval)
};

/// Freezes a subtree: requires_grad = false on all its parameters (no gradients, skipped by the optimizer), and
/// with `.batchnorm_eval = true` its BatchNorms stay in eval mode.
inline void freeze(Module& module, const FreezeOptions& options = {}) {
  module.requires_grad_(false);
  if (options.batchnorm_eval) set_batchnorm_eval(module, true);
}
/// freeze(*module, options).
template <class M>
void freeze(const std::shared_ptr<M>& module, const FreezeOptions& options = {}) { freeze(*module, options); }

/// Undoes freeze: requires_grad = true on all parameters of the subtree, BatchNorms follow train() again.
inline void unfreeze(Module& module) {
  module.requires_grad_(true);
  set_batchnorm_eval(module, false);
}
/// unfreeze(*module).
template <class M>
void unfreeze(const std::shared_ptr<M>& module) { unfreeze(*module); }
}  // namespace torchlet::nn
