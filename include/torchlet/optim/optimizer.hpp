#pragma once
/// \file Optimizer: parameter groups with per-group options, per-parameter state, zero_grad, step, and
/// state_dict / load_state_dict in PyTorch 1.13's layout:
/// `{'state': {0: {...}, ...}, 'param_groups': [{'lr': 0.1, ..., 'params': [0, 1]}, ...]}`.
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "torchlet/autograd/grad_mode.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/tensor/dispatch.hpp"
#include "torchlet/tensor/factory.hpp"
#include "torchlet/tensor/strided_loop.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::optim {

/// Parameters handed to an optimizer with options overriding its defaults, like PyTorch's
/// `{'params': head.parameters(), 'lr': 1e-2}`: `{head_params, {{"lr", 1e-2}}}`. Keys are PyTorch's option
/// names ("lr", "momentum", "betas", ...); an unknown key raises ValueError.
struct ParamGroupSpec {
  std::vector<Tensor> params;                                ///< The parameters of the group.
  std::vector<std::pair<std::string, Value>> options = {};  ///< Overrides of the optimizer's defaults.
};

/// One parameter group: its parameters, its options, and what PyTorch also keeps in the group dict.
template <class Options>
struct ParamGroup {
  std::vector<Tensor> params;        ///< The parameters (the very tensors the model holds).
  Options options;                   ///< lr etc.; may be changed between steps.
  std::optional<double> initial_lr;  ///< Set by LR schedulers (PyTorch's group['initial_lr']).
  ValueDict extra;  ///< Group keys this optimizer does not interpret ('foreach', ...), kept for state_dict.
  /// Keys that state_dict writes first, in this order (PyTorch's group dicts keep the order in which the keys
  /// were given: a group's own options first, then the defaults); the other keys follow in PyTorch's order.
  std::vector<std::string> key_order = {};
};

/// The interface every optimizer offers (SGD, Adam, AdamW); what LR schedulers and training loops use.
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  /// PyTorch's class name ("SGD", "Adam", "AdamW").
  virtual const char* name() const = 0;
  /// Updates every parameter that has a gradient (parameters whose grad is undefined are skipped).
  virtual void step() = 0;
  /// Clears the gradients: sets them to none (default), or zeroes them in place.
  virtual void zero_grad(bool set_to_none = true) = 0;
  /// Number of parameter groups.
  virtual size_t num_param_groups() const = 0;
  /// The parameters of group `g`.
  virtual const std::vector<Tensor>& params(size_t g) const = 0;
  /// The learning rate of group `g`.
  virtual double lr(size_t g) const = 0;
  /// Sets the learning rate of group `g`.
  virtual void set_lr(size_t g, double lr) = 0;
  /// group['initial_lr'] of group `g` (set by LR schedulers), if any.
  virtual std::optional<double> initial_lr(size_t g) const = 0;
  /// Sets group['initial_lr'] of group `g`.
  virtual void set_initial_lr(size_t g, double lr) = 0;
  /// Adds a group with options overriding the defaults (PyTorch's add_param_group).
  virtual void add_param_group(ParamGroupSpec group) = 0;
  /// The optimizer's state in PyTorch's layout; tensors are shared with the optimizer, not copied.
  virtual Value state_dict() const = 0;
  /// Restores options and state from a state_dict (ours or PyTorch's); tensors are copied and converted
  /// to each parameter's dtype. Checks group and parameter counts and state shapes; on error nothing changes.
  virtual void load_state_dict(const Value& state_dict) = 0;

  /// The learning rates of all groups.
  std::vector<double> lrs() const {
    std::vector<double> out;
    for (size_t g = 0; g < num_param_groups(); ++g) out.push_back(lr(g));
    return out;
  }
};

namespace detail {
/// Python's str() of a number given as a double: whole values print as ints ("-1"), others like repr.
inline std::string py_num(double v) {
  if (std::isfinite(v) && v == std::trunc(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  return torchlet::detail::py_float_repr(v);
}

// Option descriptors an optimizer lists, in PyTorch's key order, through a `fields(options, f)` function.
/// A float option; written as a Python int when `int_default` (PyTorch's default is the int 0) and whole.
struct NumField {
  double& v;
  bool int_default = false;
};
/// A bool option.
struct FlagField {
  bool& v;
};
/// A pair of floats written as a tuple ('betas').
struct PairField {
  std::pair<double, double>& v;
};
/// A key PyTorch writes that torchlet does not interpret ('foreach', 'capturable', ...), with its default.
struct FixedField {
  Value def;
};

/// Reads an option from a group dict into its field (ints are accepted for floats and bools, as Python does).
inline void read_field(NumField f, const ValueRef& v) { f.v = v.as_double(); }
inline void read_field(FlagField f, const ValueRef& v) {
  if (v.value().is_int()) f.v = v.value().as_int() != 0;
  else f.v = v.as_bool();
}
inline void read_field(PairField f, const ValueRef& v) {
  const auto& l = v.as_list();
  TORCHLET_CHECK(l.size() == 2, ValueError, "[Value] expected 2 numbers at \"", v.path(), "\", got ", l.size());
  f.v = {v.at(0).as_double(), v.at(1).as_double()};
}
/// The Value PyTorch writes for an option.
inline Value write_field(NumField f) {
  if (f.int_default && std::isfinite(f.v) && f.v == std::trunc(f.v) && std::fabs(f.v) < 9e15)
    return Value(static_cast<int64_t>(f.v));
  return Value(f.v);
}
inline Value write_field(FlagField f) { return Value(f.v); }
inline Value write_field(PairField f) { return Value::tuple({f.v.first, f.v.second}); }

/// Calls body(T& a, T& b, ...) on the elements of tensors of one shape and dtype T, in place, fused into one
/// pass (strided, threaded for large tensors, with a dense fast path).
template <class T, class Body, class... Ts>
void update_elements(const Body& body, const Ts&... ts) {
  constexpr size_t K = sizeof...(Ts);
  const Shape& sizes = std::get<0>(std::tie(ts...)).sizes();
  (torchlet::detail::check_cpu(ts, "optimizer step"), ...);
  std::array<char*, K> base{static_cast<char*>(ts.data_ptr())...};
  std::array<Shape, K> st{torchlet::detail::byte_strides(ts.strides(), static_cast<int64_t>(sizeof(T)))...};
  torchlet::detail::for_each_strided<K>(sizes, base, st, [&body](std::array<char*, K> p, std::array<int64_t, K> s, int64_t n) {
    [&]<size_t... I>(std::index_sequence<I...>) {
      if (((s[I] == static_cast<int64_t>(sizeof(T))) && ...)) {
        const std::array<T*, K> q{reinterpret_cast<T*>(p[I])...};
        for (int64_t i = 0; i < n; ++i) body(q[I][i]...);
      } else {
        for (int64_t i = 0; i < n; ++i) body(*reinterpret_cast<T*>(p[I] + i * s[I])...);
      }
    }(std::make_index_sequence<K>{});
  });
}

/// The indices of `params` split by (device, dtype), in order of first appearance: the lists a device's
/// multi-tensor optimizer kernels take in one call.
inline std::vector<std::vector<size_t>> device_buckets(const std::vector<Tensor>& params) {
  std::vector<std::vector<size_t>> buckets;
  for (size_t i = 0; i < params.size(); ++i) {
    bool placed = false;
    for (auto& b : buckets)
      if (params[b[0]].device() == params[i].device() && params[b[0]].dtype() == params[i].dtype()) {
        b.push_back(i);
        placed = true;
        break;
      }
    if (!placed) buckets.push_back({i});
  }
  return buckets;
}

/// Rounds an intermediate result to T, as PyTorch does when every op writes a tensor of dtype T
/// (a no-op for float and double).
template <class T, class M>
inline M round_to(M x) {
  if constexpr (std::is_same_v<T, M>) return x;
  else return static_cast<M>(static_cast<T>(x));
}

/// `a * b + c` as PyTorch's CPU kernels compute `c.add(a, alpha=b)`: its vectorized kernels use a fused
/// multiply-add (vec::fmadd) where the CPU has one, so torchlet does too; plain otherwise.
template <class M>
inline M fmadd(M a, M b, M c) {
#if (defined(FP_FAST_FMAF) && defined(FP_FAST_FMA)) || (defined(__FP_FAST_FMAF) && defined(__FP_FAST_FMA))
  if constexpr (std::is_same_v<M, float> || std::is_same_v<M, double>) return std::fma(a, b, c);
#endif
  return a * b + c;
}

/// What Optimizer's members share, for an optimizer `Derived` with options `Opt` and per-parameter `State`.
/// Derived provides: kName; `static void fields(Opt&, F&&)`; `static void validate(const Opt&)`;
/// `void update(const Tensor& p, const Tensor& grad, std::optional<State>& state, const Opt&)`;
/// `static Value state_to_value(const State&)`; `static State state_from_value(const ValueRef&, const Tensor&,
/// const Opt&)` (the ValueRef knows its path, e.g. "state.3", for error messages); optionally
/// `void update_device(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
/// const std::vector<std::optional<State>*>& states, const Opt&)`, which step() then calls once per group with
/// the group's non-CPU parameters that have a gradient (update() gets the CPU ones).
template <class Derived, class Opt, class State>
class OptimizerImpl : public Optimizer {
 public:
  using Options = Opt;                  ///< The options struct.
  using Group = ParamGroup<Options>;   ///< A parameter group.

  const char* name() const override { return Derived::kName; }

  /// The parameter groups; options (lr, ...) may be changed freely between steps.
  std::vector<Group>& param_groups() { return groups_; }
  /// The parameter groups.
  const std::vector<Group>& param_groups() const { return groups_; }
  /// The defaults that groups inherit.
  const Options& defaults() const { return defaults_; }
  /// The state of parameter `p`, or nullptr when it has none yet (it never had a gradient at a step).
  const State* state(const Tensor& p) const {
    auto it = state_.find(&p.unsafe_impl());
    return it == state_.end() || !it->second ? nullptr : &*it->second;
  }

  void step() override {
    // Derived may step its device parameters as lists (one multi-tensor call per group and device)
    constexpr bool kHasDeviceUpdate =
        requires(Derived& d, const std::vector<Tensor>& ts, const std::vector<std::optional<State>*>& st,
                 const Opt& o) { d.update_device(ts, ts, st, o); };
    autograd::NoGradGuard no_grad;
    std::vector<Tensor> device_params, device_grads;
    for (auto& group : groups_) {
      for (const Tensor& p : group.params) {
        const Tensor g = p.grad();
        if (!g.defined()) continue;
        TORCHLET_CHECK(g.dtype() == p.dtype(), DTypeError, "[", Derived::kName, "] the grad of a ", p.dtype(),
                       " parameter has dtype ", g.dtype());
        TORCHLET_CHECK(g.sizes() == p.sizes(), ShapeError, "[", Derived::kName, "] grad of shape ",
                       shape_str(g.sizes()), " for a parameter of shape ", shape_str(p.sizes()));
        TORCHLET_CHECK(g.device() == p.device(), DeviceError, "[", Derived::kName, "] the grad is on ", g.device(),
                       ", the parameter on ", p.device());
        if constexpr (kHasDeviceUpdate) {
          if (!p.is_cpu()) {  // device parameters go to the device in one list per group (below)
            device_params.push_back(p);
            device_grads.push_back(g);
            continue;
          }
        }
        static_cast<Derived*>(this)->update(p, g, state_[&p.unsafe_impl()], group.options);
        p.storage().bump_version();
      }
      if constexpr (kHasDeviceUpdate) {
        if (device_params.empty()) continue;
        std::vector<std::optional<State>*> states;  // map values keep their addresses as the map grows
        for (const Tensor& p : device_params) states.push_back(&state_[&p.unsafe_impl()]);
        static_cast<Derived*>(this)->update_device(device_params, device_grads, states, group.options);
        for (const Tensor& p : device_params) p.storage().bump_version();
        device_params.clear();
        device_grads.clear();
      }
    }
  }

  void zero_grad(bool set_to_none = true) override {
    autograd::NoGradGuard no_grad;
    for (auto& group : groups_)
      for (const Tensor& p : group.params) {
        Tensor g = p.grad();
        if (!g.defined()) continue;
        if (set_to_none) Tensor(p).set_grad(Tensor());
        else g.zero_();
      }
  }

  size_t num_param_groups() const override { return groups_.size(); }
  const std::vector<Tensor>& params(size_t g) const override { return group_at(g).params; }
  double lr(size_t g) const override { return group_at(g).options.lr; }
  void set_lr(size_t g, double lr) override { group_at(g).options.lr = lr; }
  std::optional<double> initial_lr(size_t g) const override { return group_at(g).initial_lr; }
  void set_initial_lr(size_t g, double lr) override { group_at(g).initial_lr = lr; }

  void add_param_group(ParamGroupSpec spec) override {
    Group group;
    group.options = defaults_;
    fixed_defaults(group.extra);
    for (size_t i = 0; i < spec.options.size(); ++i) {
      const auto& [key, value] = spec.options[i];
      const std::string where = "param group " + std::to_string(groups_.size()) + " option '" + key + "'";
      TORCHLET_CHECK(key != "params", ValueError, "[", Derived::kName, "] ", where,
                     ": pass the parameters as ParamGroupSpec::params");
      TORCHLET_CHECK(set_option(group, key, ValueRef(value, key)), ValueError, "[", Derived::kName,
                     "] unknown option '", key, "' in param group ", groups_.size(), " (known: ", known_keys(), ")");
      group.key_order.push_back(key);
    }
    Derived::validate(group.options);
    check_params(spec.params, groups_.size());
    group.params = std::move(spec.params);
    groups_.push_back(std::move(group));
  }

  Value state_dict() const override {
    ValueDict state;
    Value::List groups;
    int64_t index = 0;
    for (const Group& group : groups_) {
      Value gd = group_to_value(group);
      Value::List ids;
      for (const Tensor& p : group.params) {
        if (const State* s = this->state(p)) state.set(index, Derived::state_to_value(*s));
        ids.emplace_back(index++);
      }
      gd.as_dict().set("params", Value::list(std::move(ids)));
      groups.push_back(std::move(gd));
    }
    ValueDict out;
    out.set("state", Value(std::move(state)));
    out.set("param_groups", Value::list(std::move(groups)));
    return Value(std::move(out));
  }

  void load_state_dict(const Value& state_dict) override {
    const std::string who = std::string("[") + Derived::kName + "] load_state_dict: ";
    const ValueRef root(state_dict);
    TORCHLET_CHECK(state_dict.is_dict(), ValueError, who, "expected a dict with 'state' and 'param_groups', got a ",
                   state_dict.kind_name());
    const ValueRef saved_groups = root.at("param_groups");
    TORCHLET_CHECK(saved_groups.size() == groups_.size(), ValueError, who,
                   "loaded state dict has a different number of parameter groups (", saved_groups.size(),
                   " in the state dict, ", groups_.size(), " in the optimizer)");
    std::vector<Group> groups = groups_;
    std::unordered_map<int64_t, std::pair<size_t, size_t>> id_map;  // saved id -> (group, index)
    for (size_t g = 0; g < groups.size(); ++g) {
      const ValueRef sg = saved_groups.at(static_cast<int64_t>(g));
      const ValueRef ids = sg.at("params");
      TORCHLET_CHECK(ids.size() == groups[g].params.size(), ValueError, who,
                     "loaded state dict contains a parameter group that doesn't match the size of optimizer's group "
                     "(group ", g, ": ", ids.size(), " parameters in the state dict, ", groups[g].params.size(),
                     " in the optimizer)");
      for (size_t i = 0; i < ids.size(); ++i) id_map[ids.at(static_cast<int64_t>(i)).as_int()] = {g, i};
      // the saved group replaces ours (PyTorch's update_group), keeping options it lacks
      groups[g].extra = ValueDict();
      groups[g].initial_lr.reset();
      groups[g].key_order.clear();
      for (const auto& [k, v] : sg.as_dict()) {
        if (!k.is_string()) continue;
        const std::string& key = k.as_string();
        if (key == "params") continue;
        groups[g].key_order.push_back(key);
        if (!set_option(groups[g], key, sg.at(k))) groups[g].extra.set(k, v);
      }
      try {
        Derived::validate(groups[g].options);
      } catch (const ValueError& e) {
        TORCHLET_THROW(ValueError, who, "param_groups.", g, ": ", e.what());
      }
    }
    std::unordered_map<const torchlet::detail::TensorImpl*, std::optional<State>> state;
    const ValueRef saved_state = root.at("state");
    for (const auto& [k, v] : saved_state.as_dict()) {
      TORCHLET_CHECK(k.is_int(), ValueError, who, "state key ", k.repr(), " is not a parameter index");
      auto it = id_map.find(k.as_int());
      TORCHLET_CHECK(it != id_map.end(), ValueError, who, "state for parameter ", k.as_int(),
                     ", which is in no parameter group");
      const auto [g, i] = it->second;
      const Tensor& p = groups[g].params[i];
      state[&p.unsafe_impl()] = Derived::state_from_value(saved_state.at(k), p, groups[g].options);
    }
    groups_ = std::move(groups);
    state_ = std::move(state);
  }

 protected:
  /// Makes the optimizer with one group of `params` and `defaults`.
  OptimizerImpl(std::vector<Tensor> params, Options defaults) : defaults_(defaults) {
    Derived::validate(defaults_);
    TORCHLET_CHECK(!params.empty(), ValueError, "[", Derived::kName, "] optimizer got an empty parameter list");
    add_param_group({std::move(params), {}});
  }
  /// Makes the optimizer with the given groups, each overriding `defaults` with its own options.
  OptimizerImpl(std::vector<ParamGroupSpec> groups, Options defaults) : defaults_(defaults) {
    Derived::validate(defaults_);
    TORCHLET_CHECK(!groups.empty(), ValueError, "[", Derived::kName, "] optimizer got an empty parameter list");
    for (auto& g : groups) add_param_group(std::move(g));
  }

 private:
  Group& group_at(size_t g) {
    TORCHLET_CHECK(g < groups_.size(), IndexError, "[", Derived::kName, "] param group ", g, " out of range (",
                   groups_.size(), " groups)");
    return groups_[g];
  }
  const Group& group_at(size_t g) const { return const_cast<OptimizerImpl*>(this)->group_at(g); }

  // The 'foreach', 'differentiable', ... keys with PyTorch's defaults.
  static void fixed_defaults(ValueDict& extra) {
    Options o{};
    Derived::fields(o, [&](const char* key, auto field) {
      if constexpr (std::is_same_v<decltype(field), FixedField>) extra.set(key, field.def);
    });
  }

  // Sets option `key` of `group` from `v`; false when the key is not an option of this optimizer.
  static bool set_option(Group& group, const std::string& key, const ValueRef& v) {
    if (key == "initial_lr") {
      group.initial_lr = v.as_double();
      return true;
    }
    bool found = false;
    Derived::fields(group.options, [&](const char* name, auto field) {
      if (found || key != name) return;
      found = true;
      if constexpr (std::is_same_v<decltype(field), FixedField>) group.extra.set(key, v.value());
      else read_field(field, v);
    });
    return found;
  }

  static std::string known_keys() {
    std::string out;
    Options o{};
    Derived::fields(o, [&](const char* name, auto) { out += (out.empty() ? "" : ", ") + std::string(name); });
    return out;
  }

  // The group's dict without 'params': options in PyTorch's order, kept extras, initial_lr.
  static Value group_to_value(const Group& group) {
    ValueDict d;
    Options o = group.options;
    Derived::fields(o, [&](const char* name, auto field) {
      if constexpr (std::is_same_v<decltype(field), FixedField>) {
        const Value* kept = group.extra.find(name);
        d.set(name, kept ? *kept : field.def);
      } else {
        d.set(name, write_field(field));
      }
    });
    for (const auto& [k, v] : group.extra)
      if (!d.contains(k)) d.set(k, v);
    if (group.initial_lr) d.set("initial_lr", *group.initial_lr);
    if (group.key_order.empty()) return Value(std::move(d));
    ValueDict ordered;
    for (const std::string& key : group.key_order)
      if (const Value* v = d.find(key)) ordered.set(key, *v);
    for (const auto& [k, v] : d)
      if (!ordered.contains(k)) ordered.set(k, v);
    return Value(std::move(ordered));
  }

  void check_params(const std::vector<Tensor>& params, size_t g) const {
    for (size_t i = 0; i < params.size(); ++i) {
      const Tensor& p = params[i];
      TORCHLET_CHECK(p.defined(), ValueError, "[", Derived::kName, "] parameter ", i, " of group ", g,
                     " is an undefined tensor");
      TORCHLET_CHECK(p.is_floating_point(), DTypeError, "[", Derived::kName,
                     "] can only optimize floating point tensors, parameter ", i, " of group ", g, " is ", p.dtype());
      TORCHLET_CHECK(p.is_leaf(), ValueError, "[", Derived::kName, "] can't optimize a non-leaf Tensor (parameter ",
                     i, " of group ", g, ")");
      for (size_t j = 0; j < i; ++j)
        TORCHLET_CHECK(!params[j].is_same(p), ValueError, "[", Derived::kName, "] parameter ", i, " of group ", g,
                       " appears twice in the group");
      for (const Group& other : groups_)
        for (const Tensor& q : other.params)
          TORCHLET_CHECK(!q.is_same(p), ValueError, "[", Derived::kName,
                         "] some parameters appear in more than one parameter group");
    }
  }

  Options defaults_;
  std::vector<Group> groups_;
  std::unordered_map<const torchlet::detail::TensorImpl*, std::optional<State>> state_;
};

/// A state tensor of a loaded state_dict, checked against the parameter and copied in its dtype
/// (PyTorch's cast in Optimizer.load_state_dict).
inline Tensor load_state_tensor(const ValueRef& v, const Tensor& param, const char* opt) {
  const Tensor& t = v.as_tensor();
  TORCHLET_CHECK(t.sizes() == param.sizes(), ShapeError, "[", opt, "] load_state_dict: \"", v.path(), "\" has shape ",
                 shape_str(t.sizes()), ", the parameter has shape ", shape_str(param.sizes()));
  Tensor out = empty(param.sizes(), TensorOptions(param.dtype(), param.device()));
  out.copy_(t);
  return out;
}
}  // namespace detail
}  // namespace torchlet::optim
