#pragma once
/// \file nn::BatchNorm1d / BatchNorm2d: batch normalisation layers with running statistics, PyTorch's defaults,
/// num_batches_tracked, momentum=None (cumulative average) and the version-2 checkpoint rule.
#include <cstdint>
#include <optional>
#include <string>

#include "torchlet/nn/format.hpp"
#include "torchlet/nn/init.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/ops/arithmetic.hpp"
#include "torchlet/ops/normalization.hpp"

namespace torchlet::nn {

/// The keyword arguments of BatchNorm1d/2d with PyTorch's defaults, e.g. `{.momentum = 0.01}`;
/// `.momentum = std::nullopt` averages all batches seen so far (cumulative moving average).
struct BatchNormOptions {
  double eps = 1e-5;                     ///< added to the variance before the square root
  std::optional<double> momentum = 0.1;  ///< running = (1 - momentum) * running + momentum * batch statistic
  bool affine = true;                    ///< learnable weight (ones) and bias (zeros)
  bool track_running_stats = true;       ///< keep running_mean / running_var / num_batches_tracked buffers
};

/// What BatchNorm1d and BatchNorm2d share (PyTorch's _BatchNorm). Training mode normalises with the batch
/// statistics and updates the running ones (num_batches_tracked += 1); eval mode uses the running statistics.
/// Parameters: weight, bias ([C]); buffers: running_mean, running_var ([C]), num_batches_tracked (int64, 0-dim).
class BatchNormBase : public Module {
 public:
  /// A float32 layer over `num_features` channels.
  BatchNormBase(int64_t num_features, const BatchNormOptions& options)
      : num_features(num_features),
        eps(options.eps),
        momentum(options.momentum),
        affine(options.affine),
        track_running_stats(options.track_running_stats) {
    TORCHLET_CHECK(num_features > 0, ValueError, "[BatchNorm] num_features must be positive, got ", num_features);
    register_parameter("weight", affine ? empty({num_features}) : Tensor());
    register_parameter("bias", affine ? empty({num_features}) : Tensor());
    register_buffer("running_mean", track_running_stats ? empty({num_features}) : Tensor());
    register_buffer("running_var", track_running_stats ? empty({num_features}) : Tensor());
    register_buffer("num_batches_tracked", track_running_stats ? zeros({}, kInt64) : Tensor());
    reset_parameters();
  }
  const int64_t num_features;          ///< channels (C)
  double eps;                          ///< added to the variance (may be changed)
  std::optional<double> momentum;      ///< running-statistics factor; nullopt: cumulative average (may be changed)
  const bool affine;                   ///< has weight and bias
  const bool track_running_stats;      ///< has running statistics

  Tensor& weight() { return parameter("weight"); }                            ///< [C], undefined unless affine
  const Tensor& weight() const { return parameter("weight"); }                ///< [C], undefined unless affine
  Tensor& bias() { return parameter("bias"); }                                ///< [C], undefined unless affine
  const Tensor& bias() const { return parameter("bias"); }                    ///< [C], undefined unless affine
  Tensor& running_mean() { return buffer("running_mean"); }                   ///< [C]
  const Tensor& running_mean() const { return buffer("running_mean"); }       ///< [C]
  Tensor& running_var() { return buffer("running_var"); }                     ///< [C]
  const Tensor& running_var() const { return buffer("running_var"); }         ///< [C]
  Tensor& num_batches_tracked() { return buffer("num_batches_tracked"); }     ///< int64, 0-dim
  const Tensor& num_batches_tracked() const { return buffer("num_batches_tracked"); }  ///< int64, 0-dim

  /// running_mean = 0, running_var = 1, num_batches_tracked = 0.
  void reset_running_stats() {
    if (!track_running_stats) return;
    init::zeros_(running_mean());
    init::ones_(running_var());
    autograd::NoGradGuard no_grad;
    num_batches_tracked().zero_();
  }
  /// reset_running_stats(), weight = 1, bias = 0.
  void reset_parameters() {
    reset_running_stats();
    if (affine) {
      init::ones_(weight());
      init::zeros_(bias());
    }
  }

  int64_t version() const override { return 2; }     ///< 2: num_batches_tracked exists since version 2
  bool is_batchnorm() const override { return true; }  ///< true
  /// "4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True"
  std::string extra_repr() const override {
    return std::to_string(num_features) + ", eps=" + detail::py_float(eps) +
           ", momentum=" + (momentum ? detail::py_float(*momentum) : std::string("None")) +
           ", affine=" + detail::py_bool(affine) + ", track_running_stats=" + detail::py_bool(track_running_stats);
  }
  /// Normalises `input` ([N, C, ...]) as PyTorch's _BatchNorm.forward.
  Tensor forward(const Tensor& input) override {
    check_input_dim(input);
    double factor = momentum.value_or(0.0);
    if (is_training() && track_running_stats) {
      {
        autograd::NoGradGuard no_grad;
        ::torchlet::add_(num_batches_tracked(), 1);
      }
      if (!momentum) factor = 1.0 / static_cast<double>(num_batches_tracked().item<int64_t>());
    }
    const bool use_batch_stats = is_training() || !running_mean().defined();
    const bool pass_running = !is_training() || track_running_stats;
    BatchNormOptions_ o;
    o.training = use_batch_stats;
    o.momentum = factor;
    o.eps = eps;
    return ::torchlet::batch_norm(input, pass_running ? running_mean() : Tensor(),
                                  pass_running ? running_var() : Tensor(), weight(), bias(), o);
  }

 protected:
  /// Raises ValueError unless the input has the dims this layer takes.
  virtual void check_input_dim(const Tensor& input) const = 0;

  /// PyTorch's rule for checkpoints older than version 2 (or without metadata): a missing num_batches_tracked is
  /// taken as 0 instead of being reported missing.
  void load_from_state_dict(StateDict& state_dict, const std::string& prefix, std::optional<int64_t> version,
                            LoadResult& result, std::vector<std::string>& errors) override {
    if ((!version || *version < 2) && track_running_stats) {
      const std::string key = prefix + "num_batches_tracked";
      if (!state_dict.contains(key)) state_dict.insert(key, zeros({}, kInt64));
    }
    Module::load_from_state_dict(state_dict, prefix, version, result, errors);
  }

 private:
  using BatchNormOptions_ = ::torchlet::BatchNormOptions;
};

/// Batch normalisation over [N, C, H, W], like torch.nn.BatchNorm2d(num_features, eps, momentum, affine,
/// track_running_stats).
class BatchNorm2d : public BatchNormBase {
 public:
  /// A layer over `num_features` channels, e.g. `BatchNorm2d(64)` or `BatchNorm2d(64, {.momentum = 0.01})`.
  explicit BatchNorm2d(int64_t num_features, const BatchNormOptions& options = {})
      : BatchNormBase(num_features, options) {}
  std::string name() const override { return "BatchNorm2d"; }  ///< "BatchNorm2d"

 protected:
  void check_input_dim(const Tensor& input) const override {
    TORCHLET_CHECK(input.dim() == 4, ValueError, "[BatchNorm2d] expected 4D input (got ", input.dim(), "D input)");
  }
};

/// Batch normalisation over [N, C] or [N, C, L], like torch.nn.BatchNorm1d.
class BatchNorm1d : public BatchNormBase {
 public:
  /// A layer over `num_features` channels.
  explicit BatchNorm1d(int64_t num_features, const BatchNormOptions& options = {})
      : BatchNormBase(num_features, options) {}
  std::string name() const override { return "BatchNorm1d"; }  ///< "BatchNorm1d"

 protected:
  void check_input_dim(const Tensor& input) const override {
    TORCHLET_CHECK(input.dim() == 2 || input.dim() == 3, ValueError, "[BatchNorm1d] expected 2D or 3D input (got ",
                   input.dim(), "D input)");
  }
};
}  // namespace torchlet::nn
