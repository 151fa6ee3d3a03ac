#pragma once
/// \file SGD with momentum, dampening, Nesterov momentum, weight decay and maximize: PyTorch 1.13's
/// torch.optim.SGD (single-tensor path), state {'momentum_buffer': Tensor or None}. Device parameters step
/// through DeviceKernels::sgd_steps, one multi-tensor call per group, device and dtype.
#include "torchlet/optim/optimizer.hpp"

namespace torchlet::optim {

/// SGD's options, with PyTorch's defaults (PyTorch 1.13 requires lr; torchlet takes 2.x's default 1e-3).
struct SGDOptions {
  double lr = 1e-3;            ///< Learning rate.
  double momentum = 0;         ///< Momentum factor.
  double dampening = 0;        ///< Dampening of the momentum (not applied on the first step).
  double weight_decay = 0;     ///< L2 penalty added to the gradient.
  bool nesterov = false;       ///< Nesterov momentum (needs momentum > 0 and dampening 0).
  bool maximize = false;       ///< Maximize the objective instead of minimizing it.
};

/// Per-parameter state of SGD: the momentum buffer (undefined until a step with momentum, like PyTorch's None).
struct SGDState {
  Tensor momentum_buffer;  ///< Running momentum; undefined when momentum is 0.
};

/// Stochastic gradient descent, like `torch.optim.SGD`:
/// `optim::SGD opt(model.parameters(), {.lr = 0.01, .momentum = 0.9});`
class SGD : public detail::OptimizerImpl<SGD, SGDOptions, SGDState> {
 public:
  static constexpr const char* kName = "SGD";  ///< PyTorch's class name.

  /// One group of `params` with `options`.
  SGD(std::vector<Tensor> params, SGDOptions options = {}) : OptimizerImpl(std::move(params), options) {}
  /// Several groups, each overriding `defaults` with its own options: `{{backbone}, {head, {{"lr", 1e-2}}}}`.
  SGD(std::vector<ParamGroupSpec> groups, SGDOptions defaults = {}) : OptimizerImpl(std::move(groups), defaults) {}

  /// The options in PyTorch's param_group key order.
  template <class F>
  static void fields(SGDOptions& o, F&& f) {
    f("lr", detail::NumField{o.lr});
    f("momentum", detail::NumField{o.momentum, true});
    f("dampening", detail::NumField{o.dampening, true});
    f("weight_decay", detail::NumField{o.weight_decay, true});
    f("nesterov", detail::FlagField{o.nesterov});
    f("maximize", detail::FlagField{o.maximize});
    f("foreach", detail::FixedField{Value()});
    f("differentiable", detail::FixedField{Value(false)});
  }

  /// Raises ValueError with PyTorch's message for invalid options.
  static void validate(const SGDOptions& o) {
    TORCHLET_CHECK(o.lr >= 0.0, ValueError, "Invalid learning rate: ", detail::py_num(o.lr));
    TORCHLET_CHECK(o.momentum >= 0.0, ValueError, "Invalid momentum value: ", detail::py_num(o.momentum));
    TORCHLET_CHECK(o.weight_decay >= 0.0, ValueError, "Invalid weight_decay value: ",
                   detail::py_num(o.weight_decay));
    TORCHLET_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0), ValueError,
                   "Nesterov momentum requires a momentum and zero dampening");
  }

  /// One step of parameter `p` with gradient `g` (PyTorch's _single_tensor_sgd, fused into one pass).
  void update(const Tensor& p, const Tensor& g, std::optional<SGDState>& state, const SGDOptions& o) {
    if (!state) state.emplace();
    const bool use_momentum = o.momentum != 0;
    const bool first = use_momentum && !state->momentum_buffer.defined();
    if (first) state->momentum_buffer = empty(p.sizes(), TensorOptions(p.dtype(), p.device()));
    if (!p.is_cpu()) {
      torchlet::detail::op_device(kName, p, g, state->momentum_buffer);
      if (p.numel() > 0)
        device_kernels(p.device(), kName).sgd_step(p, g, state->momentum_buffer, first,
                                                   {o.lr, o.momentum, o.dampening, o.weight_decay, o.nesterov,
                                                    o.maximize});
      return;
    }
    torchlet::detail::dispatch_floating(p.dtype(), kName, [&]<class T>() {
      using M = torchlet::detail::opmath_t<T>;
      const M wd = static_cast<M>(o.weight_decay), mom = static_cast<M>(o.momentum);
      const M keep = static_cast<M>(1 - o.dampening), neg_lr = static_cast<M>(-o.lr);
      const bool decay = o.weight_decay != 0, maximize = o.maximize, nesterov = o.nesterov;
      // d_p = (maximize ? -grad : grad) + weight_decay * param; every `a.add(b, alpha)` is an fmadd, as in PyTorch
      auto direction = [=](M param, T grad) {
        M d = static_cast<M>(grad);
        if (maximize) d = -d;
        if (decay) d = detail::round_to<T>(detail::fmadd(param, wd, d));
        return d;
      };
      if (!use_momentum) {
        detail::update_elements<T>(
            [=](T& param, T& grad) {
              const M x = static_cast<M>(param);
              param = static_cast<T>(detail::fmadd(direction(x, grad), neg_lr, x));
            },
            p, g);
        return;
      }
      detail::update_elements<T>(
          [=](T& param, T& grad, T& buf) {
            const M x = static_cast<M>(param);
            M d = direction(x, grad);
            // buf = d on the first step (a clone), else buf * momentum + (1 - dampening) * d
            const M b = first ? d : detail::round_to<T>(detail::fmadd(d, keep, detail::round_to<T>(static_cast<M>(buf) * mom)));
            buf = static_cast<T>(b);
            d = nesterov ? detail::round_to<T>(detail::fmadd(b, mom, d)) : b;
            param = static_cast<T>(detail::fmadd(d, neg_lr, x));
          },
          p, g, state->momentum_buffer);
    });
  }

  /// One step of device parameters `ps` (grads `gs`): one multi-tensor sgd_steps call per device and dtype.
  void update_device(const std::vector<Tensor>& ps, const std::vector<Tensor>& gs,
                     const std::vector<std::optional<SGDState>*>& states, const SGDOptions& o) {
    const bool use_momentum = o.momentum != 0;
    for (const auto& bucket : detail::device_buckets(ps)) {
      std::vector<Tensor> params, grads, buffers;
      std::vector<bool> firsts;
      for (size_t i : bucket) {
        std::optional<SGDState>& state = *states[i];
        if (!state) state.emplace();
        const bool first = use_momentum && !state->momentum_buffer.defined();
        if (first) state->momentum_buffer = empty(ps[i].sizes(), TensorOptions(ps[i].dtype(), ps[i].device()));
        torchlet::detail::op_device(kName, ps[i], gs[i], state->momentum_buffer);
        if (ps[i].numel() == 0) continue;
        params.push_back(ps[i]);
        grads.push_back(gs[i]);
        buffers.push_back(use_momentum ? state->momentum_buffer : Tensor());
        firsts.push_back(first);
      }
      if (params.empty()) continue;
      device_kernels(params[0].device(), kName)
          .sgd_steps(params, grads, buffers, firsts, {o.lr, o.momentum, o.dampening, o.weight_decay, o.nesterov,
                                                      o.maximize});
    }
  }

  /// {'momentum_buffer': Tensor or None}, as PyTorch 1.13 writes it.
  static Value state_to_value(const SGDState& s) {
    ValueDict d;
    d.set("momentum_buffer", s.momentum_buffer.defined() ? Value(s.momentum_buffer) : Value());
    return Value(std::move(d));
  }
  /// Reads {'momentum_buffer': Tensor or None} for parameter `p`.
  static SGDState state_from_value(const ValueRef& v, const Tensor& p, const SGDOptions&) {
    SGDState s;
    if (auto buf = v.get("momentum_buffer"); buf && !buf->value().is_none())
      s.momentum_buffer = detail::load_state_tensor(*buf, p, kName);
    return s;
  }
};
}  // namespace torchlet::optim
