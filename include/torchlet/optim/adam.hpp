#pragma once
/// \file Adam and AdamW: PyTorch 1.13's torch.optim.Adam / AdamW (single-tensor path, amsgrad, maximize),
/// state {'step': 0-dim float32 tensor, 'exp_avg', 'exp_avg_sq'[, 'max_exp_avg_sq']}. Device parameters step
/// through DeviceKernels::adam_step, one multi-tensor call per group, device and dtype; 'step' stays a CPU tensor.
#include <cmath>

#include "torchlet/optim/optimizer.hpp"

namespace torchlet::optim {

/// Adam's options, with PyTorch's defaults.
struct AdamOptions {
  double lr = 1e-3;                                 ///< Learning rate.
  std::pair<double, double> betas = {0.9, 0.999};   ///< Decay rates of the two moment estimates.
  double eps = 1e-8;                                ///< Added to the denominator.
  double weight_decay = 0;                          ///< L2 penalty added to the gradient.
  bool amsgrad = false;                             ///< Use the maximum of past second moments (AMSGrad).
  bool maximize = false;                            ///< Maximize the objective instead of minimizing it.
};

/// AdamW's options, with PyTorch's defaults (weight_decay 1e-2, applied decoupled: p *= 1 - lr * wd).
struct AdamWOptions {
  double lr = 1e-3;                                 ///< Learning rate.
  std::pair<double, double> betas = {0.9, 0.999};   ///< Decay rates of the two moment estimates.
  double eps = 1e-8;                                ///< Added to the denominator.
  double weight_decay = 1e-2;                       ///< Decoupled weight decay.
  bool amsgrad = false;                             ///< Use the maximum of past second moments (AMSGrad).
  bool maximize = false;                            ///< Maximize the objective instead of minimizing it.
};

/// Per-parameter state of Adam and AdamW.
struct AdamState {
  Tensor step;            ///< Steps taken, a 0-dim float32 tensor (as PyTorch >= 1.12 keeps it).
  Tensor exp_avg;         ///< First moment estimate.
  Tensor exp_avg_sq;      ///< Second moment estimate.
  Tensor max_exp_avg_sq;  ///< Maximum of the second moments (amsgrad only; undefined otherwise).
};

namespace detail {
/// Validates Adam/AdamW options with PyTorch's messages.
template <class O>
inline void validate_adam(const O& o) {
  TORCHLET_CHECK(o.lr >= 0.0, ValueError, "Invalid learning rate: ", py_num(o.lr));
  TORCHLET_CHECK(o.eps >= 0.0, ValueError, "Invalid epsilon value: ", py_num(o.eps));
  TORCHLET_CHECK(o.betas.first >= 0.0 && o.betas.first < 1.0, ValueError, "Invalid beta parameter at index 0: ",
                 torchlet::detail::py_float_repr(o.betas.first));
  TORCHLET_CHECK(o.betas.second >= 0.0 && o.betas.second < 1.0, ValueError, "Invalid beta parameter at index 1: ",
                 torchlet::detail::py_float_repr(o.betas.second));
  TORCHLET_CHECK(o.weight_decay >= 0.0, ValueError, "Invalid weight_decay value: ", py_num(o.weight_decay));
}

/// Makes the state of `p` on its first step (moments on p's device, 'step' a 0-dim float32 CPU tensor as PyTorch
/// 1.13 keeps it when not capturable), adds max_exp_avg_sq when amsgrad needs it, and counts the step: returns
/// 'step' after `step_t += 1`, in double (the rest of the scalar math is in double, as Python does it).
inline double adam_begin_step(const Tensor& p, std::optional<AdamState>& state, bool amsgrad) {
  if (!state) {
    state.emplace();
    state->step = zeros({}, kFloat32);
    state->exp_avg = zeros(p.sizes(), TensorOptions(p.dtype(), p.device()));
    state->exp_avg_sq = zeros(p.sizes(), TensorOptions(p.dtype(), p.device()));
  }
  if (amsgrad && !state->max_exp_avg_sq.defined())
    state->max_exp_avg_sq = zeros(p.sizes(), TensorOptions(p.dtype(), p.device()));
  float* step_t = state->step.data<float>();
  *step_t += 1.0f;
  return static_cast<double>(*step_t);
}

/// The device kernels' options for Adam (decoupled = false) or AdamW (decoupled = true) options `o`.
template <class O>
inline AdamStepOptions adam_step_options(const O& o, bool decoupled) {
  return {o.lr, o.betas.first, o.betas.second, o.eps, o.weight_decay, o.amsgrad, o.maximize, decoupled};
}

/// One Adam/AdamW step of device parameters `ps` (grads `gs`): one multi-tensor adam_step call per device and
/// dtype, the step counts kept on the CPU.
template <class O>
inline void adam_update_device(const char* name, const std::vector<Tensor>& ps, const std::vector<Tensor>& gs,
                               const std::vector<std::optional<AdamState>*>& states, const O& o, bool decoupled) {
  for (const auto& bucket : device_buckets(ps)) {
    std::vector<Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs;
    std::vector<double> steps;
    for (size_t i : bucket) {
      std::optional<AdamState>& state = *states[i];
      const double step = adam_begin_step(ps[i], state, o.amsgrad);
      torchlet::detail::op_device(name, ps[i], gs[i], state->exp_avg);
      torchlet::detail::op_device(name, ps[i], state->exp_avg_sq, state->max_exp_avg_sq);
      if (ps[i].numel() == 0) continue;
      params.push_back(ps[i]);
      grads.push_back(gs[i]);
      exp_avgs.push_back(state->exp_avg);
      exp_avg_sqs.push_back(state->exp_avg_sq);
      max_exp_avg_sqs.push_back(o.amsgrad ? state->max_exp_avg_sq : Tensor());
      steps.push_back(step);
    }
    if (params.empty()) continue;
    device_kernels(params[0].device(), name)
        .adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, adam_step_options(o, decoupled));
  }
}

/// One Adam (decoupled = false) or AdamW (decoupled = true) step of `p`, fused into one pass per parameter
/// (a device parameter goes through adam_update_device).
template <class O>
inline void adam_update(const char* name, const Tensor& p, const Tensor& g, std::optional<AdamState>& state,
                        const O& o, bool decoupled) {
  if (!p.is_cpu()) {
    std::vector<std::optional<AdamState>*> states{&state};
    return adam_update_device(name, {p}, {g}, states, o, decoupled);
  }
  const double step = adam_begin_step(p, state, o.amsgrad);
  const double beta1 = o.betas.first, beta2 = o.betas.second;
  const double bias_correction1 = 1 - std::pow(beta1, step);
  const double bias_correction2 = 1 - std::pow(beta2, step);
  const double step_size = o.lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  torchlet::detail::dispatch_floating(p.dtype(), name, [&]<class T>() {
    using M = torchlet::detail::opmath_t<T>;
    const M b1 = static_cast<M>(beta1), b2 = static_cast<M>(beta2);
    const M one_minus_b1 = static_cast<M>(1 - beta1), one_minus_b2 = static_cast<M>(1 - beta2);
    const M wd = static_cast<M>(o.weight_decay), shrink = static_cast<M>(1 - o.lr * o.weight_decay);
    const M bc2_sqrt = static_cast<M>(bias_correction2_sqrt), eps = static_cast<M>(o.eps);
    const M neg_step_size = static_cast<M>(-step_size);
    const bool maximize = o.maximize, coupled_decay = !decoupled && o.weight_decay != 0;
    // decays the param (AdamW) and updates the two moments in place; returns the (decayed) param value
    auto moments = [=](T& param, T grad_in, T& m, T& v) {
      M x = static_cast<M>(param);
      if (decoupled) {
        x = round_to<T>(x * shrink);  // param.mul_(1 - lr * weight_decay)
        param = static_cast<T>(x);
      }
      M grad = static_cast<M>(grad_in);
      if (maximize) grad = -grad;
      if (coupled_decay) grad = round_to<T>(fmadd(x, wd, grad));  // grad.add(param, alpha=weight_decay)
      // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
      const M ma = round_to<T>(fmadd(grad, one_minus_b1, round_to<T>(static_cast<M>(m) * b1)));
      const M va = round_to<T>(round_to<T>(static_cast<M>(v) * b2) + (one_minus_b2 * grad) * grad);
      m = static_cast<T>(ma);
      v = static_cast<T>(va);
      return x;
    };
    auto apply = [=](T& param, M x, M m, M vhat) {
      const M denom = round_to<T>(round_to<T>(round_to<T>(std::sqrt(vhat)) / bc2_sqrt) + eps);
      param = static_cast<T>(x + (neg_step_size * m) / denom);  // param.addcdiv_(exp_avg, denom, -step_size)
    };
    if (o.amsgrad) {
      update_elements<T>(
          [=](T& param, T& grad, T& m, T& v, T& vmax) {
            const M x = moments(param, grad, m, v);
            const M a = static_cast<M>(vmax), b = static_cast<M>(v);
            const M mx = (a != a) ? a : (b != b) ? b : (a > b ? a : b);  // torch.maximum propagates NaN
            vmax = static_cast<T>(mx);
            apply(param, x, static_cast<M>(m), mx);
          },
          p, g, state->exp_avg, state->exp_avg_sq, state->max_exp_avg_sq);
    } else {
      update_elements<T>(
          [=](T& param, T& grad, T& m, T& v) {
            const M x = moments(param, grad, m, v);
            apply(param, x, static_cast<M>(m), static_cast<M>(v));
          },
          p, g, state->exp_avg, state->exp_avg_sq);
    }
  });
}

/// {'step': T, 'exp_avg': T, 'exp_avg_sq': T[, 'max_exp_avg_sq': T]}.
inline Value adam_state_to_value(const AdamState& s) {
  ValueDict d;
  d.set("step", s.step);
  d.set("exp_avg", s.exp_avg);
  d.set("exp_avg_sq", s.exp_avg_sq);
  if (s.max_exp_avg_sq.defined()) d.set("max_exp_avg_sq", s.max_exp_avg_sq);
  return Value(std::move(d));
}

/// Reads an Adam/AdamW state dict entry for parameter `p`; 'step' may be a tensor or (before 1.12) a number.
/// Without 'max_exp_avg_sq', a group using amsgrad starts it at zero on its next step.
inline AdamState adam_state_from_value(const ValueRef& v, const Tensor& p, const char* name) {
  AdamState s;
  const ValueRef step = v.at("step");
  if (step.value().is_tensor()) {
    const Tensor& t = step.as_tensor();
    TORCHLET_CHECK(t.numel() == 1, ShapeError, "[", name, "] load_state_dict: \"", step.path(),
                   "\" should hold one number, has shape ", shape_str(t.sizes()));
    s.step = zeros({}, kFloat32);
    s.step.copy_(t.reshape({}));
  } else {
    s.step = full({}, step.as_double(), kFloat32);
  }
  s.exp_avg = load_state_tensor(v.at("exp_avg"), p, name);
  s.exp_avg_sq = load_state_tensor(v.at("exp_avg_sq"), p, name);
  if (auto m = v.get("max_exp_avg_sq"); m && !m->value().is_none()) s.max_exp_avg_sq = load_state_tensor(*m, p, name);
  return s;
}
}  // namespace detail

/// Adam, like `torch.optim.Adam`: `optim::Adam opt(params, {.lr = 1e-3, .betas = {0.9, 0.999}});`
class Adam : public detail::OptimizerImpl<Adam, AdamOptions, AdamState> {
 public:
  static constexpr const char* kName = "Adam";  ///< PyTorch's class name.

  /// One group of `params` with `options`.
  Adam(std::vector<Tensor> params, AdamOptions options = {}) : OptimizerImpl(std::move(params), options) {}
  /// Several groups, each overriding `defaults` with its own options.
  Adam(std::vector<ParamGroupSpec> groups, AdamOptions defaults = {}) : OptimizerImpl(std::move(groups), defaults) {}

  /// The options in PyTorch 1.13's param_group key order.
  template <class F>
  static void fields(AdamOptions& o, F&& f) {
    f("lr", detail::NumField{o.lr});
    f("betas", detail::PairField{o.betas});
    f("eps", detail::NumField{o.eps});
    f("weight_decay", detail::NumField{o.weight_decay, true});
    f("amsgrad", detail::FlagField{o.amsgrad});
    f("maximize", detail::FlagField{o.maximize});
    f("foreach", detail::FixedField{Value()});
    f("capturable", detail::FixedField{Value(false)});
    f("differentiable", detail::FixedField{Value(false)});
    f("fused", detail::FixedField{Value(false)});
  }
  /// Raises ValueError with PyTorch's message for invalid options.
  static void validate(const AdamOptions& o) { detail::validate_adam(o); }
  /// One step of parameter `p` with gradient `g`.
  void update(const Tensor& p, const Tensor& g, std::optional<AdamState>& state, const AdamOptions& o) {
    detail::adam_update(kName, p, g, state, o, false);
  }
  /// One step of device parameters `ps`: one multi-tensor DeviceKernels::adam_step call per device and dtype.
  void update_device(const std::vector<Tensor>& ps, const std::vector<Tensor>& gs,
                     const std::vector<std::optional<AdamState>*>& states, const AdamOptions& o) {
    detail::adam_update_device(kName, ps, gs, states, o, false);
  }
  /// The state entry of one parameter.
  static Value state_to_value(const AdamState& s) { return detail::adam_state_to_value(s); }
  /// Reads the state entry of parameter `p`.
  static AdamState state_from_value(const ValueRef& v, const Tensor& p, const AdamOptions&) {
    return detail::adam_state_from_value(v, p, kName);
  }
};

/// AdamW (decoupled weight decay), like `torch.optim.AdamW`: `optim::AdamW opt(params, {.lr = 1e-3});`
class AdamW : public detail::OptimizerImpl<AdamW, AdamWOptions, AdamState> {
 public:
  static constexpr const char* kName = "AdamW";  ///< PyTorch's class name.

  /// One group of `params` with `options`.
  AdamW(std::vector<Tensor> params, AdamWOptions options = {}) : OptimizerImpl(std::move(params), options) {}
  /// Several groups, each overriding `defaults` with its own options.
  AdamW(std::vector<ParamGroupSpec> groups, AdamWOptions defaults = {})
      : OptimizerImpl(std::move(groups), defaults) {}

  /// The options in PyTorch 1.13's param_group key order (AdamW has no 'differentiable' nor 'fused').
  template <class F>
  static void fields(AdamWOptions& o, F&& f) {
    f("lr", detail::NumField{o.lr});
    f("betas", detail::PairField{o.betas});
    f("eps", detail::NumField{o.eps});
    f("weight_decay", detail::NumField{o.weight_decay});
    f("amsgrad", detail::FlagField{o.amsgrad});
    f("foreach", detail::FixedField{Value()});
    f("maximize", detail::FlagField{o.maximize});
    f("capturable", detail::FixedField{Value(false)});
  }
  /// Raises ValueError with PyTorch's message for invalid options.
  static void validate(const AdamWOptions& o) { detail::validate_adam(o); }
  /// One step of parameter `p` with gradient `g`.
  void update(const Tensor& p, const Tensor& g, std::optional<AdamState>& state, const AdamWOptions& o) {
    detail::adam_update(kName, p, g, state, o, true);
  }
  /// One step of device parameters `ps`: one multi-tensor DeviceKernels::adam_step call per device and dtype.
  void update_device(const std::vector<Tensor>& ps, const std::vector<Tensor>& gs,
                     const std::vector<std::optional<AdamState>*>& states, const AdamWOptions& o) {
    detail::adam_update_device(kName, ps, gs, states, o, true);
  }
  /// The state entry of one parameter.
  static Value state_to_value(const AdamState& s) { return detail::adam_state_to_value(s); }
  /// Reads the state entry of parameter `p`.
  static AdamState state_from_value(const ValueRef& v, const Tensor& p, const AdamWOptions&) {
    return detail::adam_state_from_value(v, p, kName);
  }
};
}  // namespace torchlet::optim
