#pragma once
/// \file Learning-rate schedulers with PyTorch 1.13's recursive (chainable) formulas: StepLR, MultiStepLR,
/// CosineAnnealingLR, LinearLR. Call `scheduler.step()` after `optimizer.step()`, once per epoch.
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "torchlet/io/value.hpp"
#include "torchlet/optim/optimizer.hpp"

namespace torchlet::optim {

namespace detail {
/// `x` rounded to a double as written, so the compiler cannot fuse it into a multiply-add: Python evaluates
/// the schedulers' formulas one rounded operation at a time, and the learning rates must match it bit for bit.
inline double rounded(double x) {
  volatile double v = x;
  return v;
}
}  // namespace detail

/// What every scheduler shares (PyTorch's _LRScheduler): base_lrs, last_epoch, the step counter,
/// get_last_lr(), and state_dict() / load_state_dict() with PyTorch's keys.
class LRScheduler {
 public:
  virtual ~LRScheduler() = default;

  /// Advances one epoch and writes the new learning rates into the optimizer's groups.
  void step() {
    ++step_count_;
    ++last_epoch_;
    const std::vector<double> lrs = get_lr();
    for (size_t g = 0; g < lrs.size(); ++g) optimizer_->set_lr(g, lrs[g]);
    last_lr_ = optimizer_->lrs();
  }
  /// The learning rates last written, one per group.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  /// The epoch index of the last step (0 after construction).
  int64_t last_epoch() const { return last_epoch_; }
  /// The initial learning rate of each group.
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  /// The optimizer whose learning rates this scheduler sets.
  Optimizer& optimizer() const { return *optimizer_; }

  /// The scheduler's state with PyTorch's keys: its own options, then 'base_lrs', 'last_epoch', 'verbose',
  /// '_step_count', '_get_lr_called_within_step', '_last_lr'.
  Value state_dict() const {
    ValueDict d;
    options_to(d);
    d.set("base_lrs", Value::list_of(base_lrs_));
    d.set("last_epoch", last_epoch_);
    d.set("verbose", false);
    d.set("_step_count", step_count_);
    d.set("_get_lr_called_within_step", false);
    d.set("_last_lr", Value::list_of(last_lr_));
    return Value(std::move(d));
  }
  /// Restores the keys present in `state_dict` (like PyTorch's `__dict__.update`); the optimizer's learning
  /// rates come from the optimizer's own state_dict.
  void load_state_dict(const Value& state_dict) {
    const ValueRef root(state_dict);
    root.as_dict();
    options_from(root);
    if (auto v = root.get("base_lrs")) base_lrs_ = numbers(*v);
    if (auto v = root.get("last_epoch")) last_epoch_ = v->as_int();
    if (auto v = root.get("_step_count")) step_count_ = v->as_int();
    if (auto v = root.get("_last_lr")) last_lr_ = numbers(*v);
  }

 protected:
  /// Attaches to `optimizer`; with last_epoch == -1 each group's initial_lr is set to its lr, otherwise
  /// (resuming) every group must already have one. The derived constructor then calls initial_step().
  LRScheduler(Optimizer& optimizer, int64_t last_epoch) : optimizer_(&optimizer), last_epoch_(last_epoch) {
    for (size_t g = 0; g < optimizer.num_param_groups(); ++g) {
      if (last_epoch == -1) {
        if (!optimizer.initial_lr(g)) optimizer.set_initial_lr(g, optimizer.lr(g));
      } else {
        TORCHLET_CHECK(optimizer.initial_lr(g).has_value(), ValueError, "param 'initial_lr' is not specified in "
                       "param_groups[", g, "] when resuming an optimizer");
      }
      base_lrs_.push_back(*optimizer.initial_lr(g));
    }
  }
  /// The first step, taken on construction (PyTorch's _initial_step).
  void initial_step() {
    step_count_ = 0;
    step();
  }
  /// The new learning rates from the current ones (the chainable form), with last_epoch already advanced.
  virtual std::vector<double> get_lr() const = 0;
  /// Writes the scheduler's own options in PyTorch's key order.
  virtual void options_to(ValueDict& d) const = 0;
  /// Reads the scheduler's own options, where present.
  virtual void options_from(const ValueRef& root) = 0;

  /// The optimizer's current learning rates.
  std::vector<double> group_lrs() const { return optimizer_->lrs(); }
  /// A number written as a Python int when whole (PyTorch's int defaults such as eta_min=0).
  static Value int_if_whole(double v) {
    if (std::isfinite(v) && v == std::trunc(v) && std::fabs(v) < 9e15) return Value(static_cast<int64_t>(v));
    return Value(v);
  }
  static std::vector<double> numbers(const ValueRef& v) {
    std::vector<double> out;
    for (size_t i = 0; i < v.size(); ++i) out.push_back(v.at(static_cast<int64_t>(i)).as_double());
    return out;
  }

  Optimizer* optimizer_;
  std::vector<double> base_lrs_;
  int64_t last_epoch_;
  int64_t step_count_ = 0;
  std::vector<double> last_lr_;
};

/// Multiplies the learning rate by gamma every step_size epochs, like `torch.optim.lr_scheduler.StepLR`.
class StepLR : public LRScheduler {
 public:
  /// Decays each group's lr by `gamma` every `step_size` epochs.
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1, int64_t last_epoch = -1)
      : LRScheduler(optimizer, last_epoch), step_size_(step_size), gamma_(gamma) {
    TORCHLET_CHECK(step_size > 0, ValueError, "[StepLR] step_size must be positive, got ", step_size);
    initial_step();
  }

 protected:
  std::vector<double> get_lr() const override {
    std::vector<double> lrs = group_lrs();
    if (last_epoch_ == 0 || last_epoch_ % step_size_ != 0) return lrs;
    for (double& lr : lrs) lr *= gamma_;
    return lrs;
  }
  void options_to(ValueDict& d) const override {
    d.set("step_size", step_size_);
    d.set("gamma", gamma_);
  }
  void options_from(const ValueRef& root) override {
    if (auto v = root.get("step_size")) step_size_ = v->as_int();
    if (auto v = root.get("gamma")) gamma_ = v->as_double();
  }

 private:
  int64_t step_size_;
  double gamma_;
};

/// Multiplies the learning rate by gamma at each milestone epoch, like `torch.optim.lr_scheduler.MultiStepLR`
/// (a milestone listed twice multiplies by gamma squared).
class MultiStepLR : public LRScheduler {
 public:
  /// Decays each group's lr by `gamma` when last_epoch reaches each of `milestones`.
  MultiStepLR(Optimizer& optimizer, const std::vector<int64_t>& milestones, double gamma = 0.1,
              int64_t last_epoch = -1)
      : LRScheduler(optimizer, last_epoch), gamma_(gamma) {
    for (int64_t m : milestones) count(m)++;
    initial_step();
  }

 protected:
  std::vector<double> get_lr() const override {
    std::vector<double> lrs = group_lrs();
    int64_t times = 0;
    for (const auto& [m, c] : milestones_)
      if (m == last_epoch_) times = c;
    if (times == 0) return lrs;
    for (double& lr : lrs) lr *= std::pow(gamma_, static_cast<double>(times));
    return lrs;
  }
  // 'milestones' is a collections.Counter in PyTorch; here a dict {epoch: count} in first-seen order
  void options_to(ValueDict& d) const override {
    ValueDict m;
    for (const auto& [e, c] : milestones_) m.set(e, c);
    d.set("milestones", Value(std::move(m)));
    d.set("gamma", gamma_);
  }
  void options_from(const ValueRef& root) override {
    if (auto v = root.get("milestones")) {
      milestones_.clear();
      if (v->value().is_dict()) {
        for (const auto& [k, c] : v->as_dict()) count(ValueRef(k, v->path()).as_int()) += c.is_int() ? c.as_int() : 0;
      } else {
        for (size_t i = 0; i < v->size(); ++i) count(v->at(static_cast<int64_t>(i)).as_int())++;
      }
    }
    if (auto v = root.get("gamma")) gamma_ = v->as_double();
  }

 private:
  int64_t& count(int64_t epoch) {
    for (auto& [m, c] : milestones_)
      if (m == epoch) return c;
    milestones_.emplace_back(epoch, 0);
    return milestones_.back().second;
  }
  std::vector<std::pair<int64_t, int64_t>> milestones_;
  double gamma_;
};

/// Cosine annealing from each base lr down to eta_min over T_max epochs (and back up after), with PyTorch's
/// recursive formula, like `torch.optim.lr_scheduler.CosineAnnealingLR`.
class CosineAnnealingLR : public LRScheduler {
 public:
  /// Anneals over `T_max` epochs towards `eta_min`.
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0, int64_t last_epoch = -1)
      : LRScheduler(optimizer, last_epoch), T_max_(T_max), eta_min_(eta_min) {
    TORCHLET_CHECK(T_max > 0, ValueError, "[CosineAnnealingLR] T_max must be positive, got ", T_max);
    initial_step();
  }

 protected:
  std::vector<double> get_lr() const override {
    constexpr double pi = std::numbers::pi;
    const double T = static_cast<double>(T_max_), e = static_cast<double>(last_epoch_);
    std::vector<double> lrs = group_lrs();
    if (last_epoch_ == 0) return lrs;
    for (size_t g = 0; g < lrs.size(); ++g) {
      const double base = base_lrs_[g];
      if (step_count_ == 1 && last_epoch_ > 0)
        lrs[g] = eta_min_ + detail::rounded(detail::rounded((base - eta_min_) * (1 + std::cos(e * pi / T))) / 2);
      else if ((last_epoch_ - 1 - T_max_) % (2 * T_max_) == 0)
        lrs[g] = lrs[g] + detail::rounded(detail::rounded((base - eta_min_) * (1 - std::cos(pi / T))) / 2);
      else
        lrs[g] = detail::rounded((1 + std::cos(pi * e / T)) / (1 + std::cos(pi * (e - 1) / T)) * (lrs[g] - eta_min_)) +
                 eta_min_;
    }
    return lrs;
  }
  void options_to(ValueDict& d) const override {
    d.set("T_max", T_max_);
    d.set("eta_min", int_if_whole(eta_min_));
  }
  void options_from(const ValueRef& root) override {
    if (auto v = root.get("T_max")) T_max_ = v->as_int();
    if (auto v = root.get("eta_min")) eta_min_ = v->as_double();
  }

 private:
  int64_t T_max_;
  double eta_min_;
};

/// Scales each lr linearly from start_factor to end_factor over total_iters epochs, like
/// `torch.optim.lr_scheduler.LinearLR` (the usual warm-up).
class LinearLR : public LRScheduler {
 public:
  /// Warms up from lr * start_factor to lr * end_factor over `total_iters` epochs.
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3, double end_factor = 1.0, int64_t total_iters = 5,
           int64_t last_epoch = -1)
      : LRScheduler(optimizer, last_epoch), start_(start_factor), end_(end_factor), total_(total_iters) {
    TORCHLET_CHECK(!(start_factor > 1.0 || start_factor < 0), ValueError,
                   "Starting multiplicative factor expected to be between 0 and 1.");
    TORCHLET_CHECK(!(end_factor > 1.0 || end_factor < 0), ValueError,
                   "Ending multiplicative factor expected to be between 0 and 1.");
    initial_step();
  }

 protected:
  std::vector<double> get_lr() const override {
    std::vector<double> lrs = group_lrs();
    if (last_epoch_ == 0) {
      for (double& lr : lrs) lr *= start_;
      return lrs;
    }
    if (last_epoch_ > total_) return lrs;
    for (double& lr : lrs)
      lr *= 1. + (end_ - start_) / (detail::rounded(static_cast<double>(total_) * start_) +
                                    detail::rounded(static_cast<double>(last_epoch_ - 1) * (end_ - start_)));
    return lrs;
  }
  void options_to(ValueDict& d) const override {
    d.set("start_factor", start_);
    d.set("end_factor", end_);
    d.set("total_iters", total_);
  }
  void options_from(const ValueRef& root) override {
    if (auto v = root.get("start_factor")) start_ = v->as_double();
    if (auto v = root.get("end_factor")) end_ = v->as_double();
    if (auto v = root.get("total_iters")) total_ = v->as_int();
  }

 private:
  double start_, end_;
  int64_t total_;
};
}  // namespace torchlet::optim
