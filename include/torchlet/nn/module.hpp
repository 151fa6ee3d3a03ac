#pragma once
/// \file Module: the base of every layer and model, like torch.nn.Module. Ordered parameters, buffers and child
/// modules with dotted names; train/eval; requires_grad_/zero_grad; to(dtype/device); state_dict and
/// load_state_dict with PyTorch's key order and error texts; the printed form. Child<M>: a typed member that
/// always refers to the registered child (replacing it cannot leave a stale pointer behind).
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

// tensor.hpp first: it pulls in the autograd engine, which grad_mode.hpp alone cannot
#include "torchlet/tensor/tensor.hpp"
#include "torchlet/autograd/grad_mode.hpp"
#include "torchlet/nn/format.hpp"
#include "torchlet/nn/state_dict.hpp"
#include "torchlet/tensor/factory.hpp"
#include "torchlet/tensor/tensor.hpp"

#if defined(__GXX_RTTI) || defined(_CPPRTTI) || defined(__cpp_rtti)
/// 1 when RTTI is available: typed accesses to child modules are then checked with dynamic_cast.
#define TORCHLET_NN_RTTI 1
#else
#define TORCHLET_NN_RTTI 0
#endif

namespace torchlet::nn {

class Module;
template <class M>
class Child;

namespace detail {
/// Replaces the data of `t` (storage, layout, dtype) by `data`'s while keeping the tensor itself, like
/// `param.data = data` in PyTorch: every handle to `t` (an optimizer's too) sees the new data; autograd state stays.
inline void set_data(const Tensor& t, const Tensor& data) {
  torchlet::detail::TensorImpl& dst = t.unsafe_impl();
  const torchlet::detail::TensorImpl& src = data.unsafe_impl();
  dst.storage = src.storage;
  dst.offset = src.offset;
  dst.sizes = src.sizes;
  dst.strides = src.strides;
  dst.dtype = src.dtype;
}

/// Raises ValueError unless `name` is a valid member name (not empty, no '.').
inline void check_member_name(const char* kind, const std::string& name) {
  TORCHLET_CHECK(!name.empty(), ValueError, "[Module] ", kind, " name can't be empty");
  TORCHLET_CHECK(name.find('.') == std::string::npos, ValueError, "[Module] ", kind, " name can't contain \".\": got \"",
                 name, "\"");
}

/// True when `m` is an M (always true without RTTI: the access is then unchecked).
template <class M>
bool is_a(const Module& m) {
#if TORCHLET_NN_RTTI
  if constexpr (std::is_same_v<M, Module>) {  // Child<Module>: any module (and no -Wnonnull-compare)
    (void)m;
    return true;
  } else {
    return dynamic_cast<const M*>(&m) != nullptr;
  }
#else
  (void)m;
  return true;
#endif
}

/// `"a", "b"` for the messages of load_state_dict.
inline std::string quoted_join(const std::vector<std::string>& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) out += (i ? ", \"" : "\"") + keys[i] + "\"";
  return out;
}

/// True when `s` starts with `prefix`.
inline bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }
}  // namespace detail

/// The base of every layer and model, like torch.nn.Module. Hold modules by std::shared_ptr (children may be shared
/// and replaced); modules cannot be copied or moved. Subclasses register their parameters, buffers and children in
/// the constructor (registration order is the order of named_parameters() and state_dict()), override name() with
/// their class name (used in load_state_dict's messages and the printed form) and forward().
class Module : public std::enable_shared_from_this<Module> {
 public:
  /// (dotted name, tensor) pairs in order.
  using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
  /// (dotted name, module) pairs in order.
  using NamedModules = std::vector<std::pair<std::string, std::shared_ptr<Module>>>;

  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = delete;
  Module& operator=(Module&&) = delete;

  // ---- identity and forward ---------------------------------------------------------------------
  /// The class name PyTorch would show ("Linear", "Sequential", "ResNet"); override it in your models.
  virtual std::string name() const { return "Module"; }
  /// The module's format version (PyTorch's `_version`, saved in the state dict's metadata; BatchNorm is 2).
  virtual int64_t version() const { return 1; }
  /// The text inside the parentheses of the printed form, like PyTorch's extra_repr().
  virtual std::string extra_repr() const { return {}; }
  /// True for BatchNorm layers (what set_batchnorm_eval looks for; no RTTI needed).
  virtual bool is_batchnorm() const { return false; }
  /// The computation of a single-input module; modules with other signatures keep this default, which raises.
  virtual Tensor forward(const Tensor& input) {
    (void)input;
    TORCHLET_THROW(ValueError, "[Module] ", name(), " has no single-input forward(const Tensor&): override it");
  }
  /// forward(input).
  Tensor operator()(const Tensor& input) { return forward(input); }

  // ---- registration -----------------------------------------------------------------------------
  /// Adds parameter `name` (a leaf; requires_grad as given, true by default). An undefined tensor registers an
  /// empty slot, like PyTorch's `register_parameter("bias", None)`. A leaf is kept as the same tensor (register one
  /// tensor in two modules to share it), a non-leaf is detached. The reference stays valid for the module's life.
  Tensor& register_parameter(const std::string& name, Tensor param, bool requires_grad = true) {
    check_new_member("parameter", name);
    if (param.defined()) {
      if (!param.is_leaf()) param = param.detach();
      param.requires_grad_(requires_grad);
    }
    params_.push_back({name, std::move(param)});
    return params_.back().tensor;
  }
  /// Adds buffer `name` (state that is not a parameter, e.g. running_mean). Non-persistent buffers are left out of
  /// state_dict(). An undefined tensor registers an empty slot. The reference stays valid for the module's life.
  Tensor& register_buffer(const std::string& name, Tensor buffer, bool persistent = true) {
    check_new_member("buffer", name);
    buffers_.push_back({name, std::move(buffer), persistent});
    return buffers_.back().tensor;
  }
  /// Adds child module `name` and returns it with its own type. Prefer a Child<M> member when you keep a typed
  /// handle: a plain shared_ptr member goes stale when the child is replaced.
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    static_assert(std::is_base_of_v<Module, M>, "register_module takes a module derived from nn::Module");
    check_new_member("module", name);
    TORCHLET_CHECK(module != nullptr, ValueError, "[Module] cannot register module \"", name, "\" in ", this->name(),
                   ": the module is null");
    check_no_cycle(*module, name);
    children_.push_back({name, module, nullptr});
    return module;
  }
  /// Replaces the registered child at `path` ("fc", or dotted: "layer4.1.bn2") with `module`, like
  /// `model.fc = nn.Linear(512, 10)`; named_parameters() and state_dict() show the new child at once, and a Child<M>
  /// member bound to it sees it too. Raises if there is no such child, or if a typed member bound to it expects
  /// another type (checked when RTTI is on).
  template <class M>
  std::shared_ptr<M> replace_module(const std::string& path, std::shared_ptr<M> module) {
    static_assert(std::is_base_of_v<Module, M>, "replace_module takes a module derived from nn::Module");
    const size_t dot = path.rfind('.');
    if (dot != std::string::npos) return get_submodule(path.substr(0, dot))->replace_module(path.substr(dot + 1), module);
    ChildSlot* slot = find_child(path);
    TORCHLET_CHECK(slot != nullptr, ValueError, "[Module] ", name(), " has no child module \"", path,
                   "\" to replace (children: ", child_names(), ")");
    TORCHLET_CHECK(module != nullptr, ValueError, "[Module] cannot replace child \"", path, "\" of ", name(),
                   " with a null module");
    TORCHLET_CHECK(slot->accepts == nullptr || slot->accepts(*module), ValueError, "[Module] cannot replace child \"",
                   path, "\" of ", name(), " with a ", module->name(),
                   ": the typed member bound to it expects another module type");
    check_no_cycle(*module, path);
    slot->module = module;
    return module;
  }

  // ---- lookup -----------------------------------------------------------------------------------
  /// This module's own parameter `name` (an undefined tensor for an empty slot); assigning to the reference
  /// replaces the parameter. Raises ValueError if there is none.
  Tensor& parameter(const std::string& name) { return find_param_or_throw(name); }
  /// This module's own parameter `name` (const).
  const Tensor& parameter(const std::string& name) const { return const_cast<Module*>(this)->find_param_or_throw(name); }
  /// This module's own buffer `name`; raises ValueError if there is none.
  Tensor& buffer(const std::string& name) { return find_buffer_or_throw(name); }
  /// This module's own buffer `name` (const).
  const Tensor& buffer(const std::string& name) const { return const_cast<Module*>(this)->find_buffer_or_throw(name); }
  /// True when this module has its own parameter slot `name`.
  bool has_parameter(const std::string& name) const { return const_cast<Module*>(this)->find_param(name) != nullptr; }
  /// True when this module has its own buffer slot `name`.
  bool has_buffer(const std::string& name) const { return const_cast<Module*>(this)->find_buffer(name) != nullptr; }
  /// True when this module has a child named `name`.
  bool has_module(const std::string& name) const { return const_cast<Module*>(this)->find_child(name) != nullptr; }

  /// The submodule at a dotted path ("" is this module, "layer1.0.conv1"), like get_submodule; with M, checked to
  /// be an M when RTTI is on. Raises ValueError naming the missing part.
  template <class M = Module>
  std::shared_ptr<M> get_submodule(const std::string& path) const {
    std::shared_ptr<Module> m = self_ptr();
    size_t start = 0;
    while (!path.empty() && start <= path.size()) {
      const size_t dot = std::min(path.find('.', start), path.size());
      const std::string part = path.substr(start, dot - start);
      ChildSlot* slot = m->find_child(part);
      TORCHLET_CHECK(slot != nullptr, ValueError, "[Module] ", m->name(), " has no attribute `", part, "` (looking up \"",
                     path, "\")");
      m = slot->module;
      start = dot + 1;
    }
    if constexpr (std::is_same_v<M, Module>) {
      return m;
    } else {
      TORCHLET_CHECK(detail::is_a<M>(*m), ValueError, "[Module] submodule \"", path, "\" is a ", m->name(),
                     ", not the requested type");
      return std::static_pointer_cast<M>(m);
    }
  }
  /// The parameter at a dotted path ("fc.weight"); raises ValueError if there is none.
  Tensor& get_parameter(const std::string& path) const {
    auto [owner, leaf] = split_path(path);
    return owner->find_param_or_throw(leaf);
  }
  /// The buffer at a dotted path ("bn1.running_mean"); raises ValueError if there is none.
  Tensor& get_buffer(const std::string& path) const {
    auto [owner, leaf] = split_path(path);
    return owner->find_buffer_or_throw(leaf);
  }

  // ---- iteration (PyTorch's order; a tensor or module reachable twice is listed once) -------------
  /// Every module of the tree, this one first as `prefix` (depth-first, registration order), each once.
  NamedModules named_modules(const std::string& prefix = "") const {
    NamedModules out;
    std::unordered_set<const Module*> memo;
    collect_modules(prefix, memo, out);
    return out;
  }
  /// The modules of named_modules().
  std::vector<std::shared_ptr<Module>> modules() const { return values(named_modules()); }
  /// The direct children (each once), in registration order.
  NamedModules named_children() const {
    NamedModules out;
    std::unordered_set<const Module*> memo;
    for (const auto& c : children_)
      if (memo.insert(c.module.get()).second) out.emplace_back(c.name, c.module);
    return out;
  }
  /// The modules of named_children().
  std::vector<std::shared_ptr<Module>> children() const { return values(named_children()); }
  /// Parameters with dotted names ("layer1.0.conv1.weight"), of the whole tree unless !recurse; empty slots are
  /// skipped and a parameter shared by two modules is listed once (under its first name).
  NamedTensors named_parameters(const std::string& prefix = "", bool recurse = true) const {
    return named_members(prefix, recurse, [](const Module& m, auto&& emit) {
      for (const auto& s : m.params_) emit(s.name, s.tensor);
    });
  }
  /// The tensors of named_parameters().
  std::vector<Tensor> parameters(bool recurse = true) const { return values(named_parameters("", recurse)); }
  /// Buffers (persistent or not) with dotted names, like named_parameters().
  NamedTensors named_buffers(const std::string& prefix = "", bool recurse = true) const {
    return named_members(prefix, recurse, [](const Module& m, auto&& emit) {
      for (const auto& s : m.buffers_) emit(s.name, s.tensor);
    });
  }
  /// The tensors of named_buffers().
  std::vector<Tensor> buffers(bool recurse = true) const { return values(named_buffers("", recurse)); }

  // ---- modes and gradients ----------------------------------------------------------------------
  /// Sets training mode on this module and its descendants (eval mode with false), like module.train(mode).
  /// A module marked keep_eval() stays in eval mode.
  virtual Module& train(bool on = true) {
    training_ = on && !keep_eval_;
    for (const auto& c : children_) c.module->train(on);
    return *this;
  }
  /// train(false).
  Module& eval() { return train(false); }
  /// True in training mode (the default for a new module).
  bool is_training() const { return training_; }
  /// Keeps this module in eval mode through later train() calls (on), or lets train() reach it again (off; it
  /// takes effect at the next train()). Used for frozen BatchNorms: see set_batchnorm_eval.
  Module& keep_eval(bool on = true) {
    keep_eval_ = on;
    if (on) training_ = false;
    return *this;
  }
  /// True when keep_eval() is on.
  bool keeps_eval() const { return keep_eval_; }
  /// Sets requires_grad on every parameter of the tree, like module.requires_grad_(flag).
  Module& requires_grad_(bool on = true) {
    for (Tensor& p : parameters()) p.requires_grad_(on);
    return *this;
  }
  /// Clears every parameter's gradient (sets it to none, like zero_grad(set_to_none=True)).
  void zero_grad() {
    for (const Tensor& p : parameters())
      if (p.grad().defined()) Tensor(p).set_grad(Tensor());
  }

  // ---- dtype and device -------------------------------------------------------------------------
  /// Converts the floating-point parameters, their gradients and floating-point buffers to `dtype` in place: the
  /// parameters stay the same tensors (leaves, requires_grad kept), like module.to(dtype). Integer buffers
  /// (num_batches_tracked) keep their dtype. `dtype` must be floating.
  Module& to(DType dtype) {
    TORCHLET_CHECK(is_floating_point(dtype), DTypeError,
                   "[Module] to() only accepts floating point dtypes, got desired dtype=", dtype);
    convert_tensors([dtype](const Tensor& t) { return t.is_floating_point() ? t.to(dtype) : t; });
    return *this;
  }
  /// Moves every parameter, gradient and buffer to `device` in place (the same tensors), like module.to(device).
  Module& to(Device device) {
    convert_tensors([device](const Tensor& t) { return t.to(device); });
    return *this;
  }
  /// Lays out every 4-D parameter, gradient and buffer in `format` in place (the same tensors), like
  /// module.to(memory_format=torch.channels_last): with channels-last weights and input, convolutions run on NHWC
  /// data without converting it. Values, names and the state_dict are unchanged.
  Module& to(MemoryFormat format) {
    convert_tensors([format](const Tensor& t) { return t.dim() == 4 ? t.contiguous(format) : t; });
    return *this;
  }
  /// Calls fn on every descendant, then on this module (PyTorch's order), e.g. for a custom initialisation.
  Module& apply(const std::function<void(Module&)>& fn) {
    for (const auto& c : children_) c.module->apply(fn);
    fn(*this);
    return *this;
  }

  // ---- state dict -------------------------------------------------------------------------------
  /// The parameters then the persistent buffers of each module, recursively in registration order, keyed by
  /// `prefix` + dotted name: PyTorch's exact order. Values are detached tensors sharing storage with the module;
  /// `versions` holds each module's version() (PyTorch's `_metadata`). A shared tensor appears under every name.
  StateDict state_dict(const std::string& prefix = "") const {
    StateDict sd;
    sd.versions.emplace();
    save_to(sd, prefix);
    return sd;
  }
  /// Copies the state dict's tensors into this module's parameters and buffers (under no_grad, converting dtypes
  /// as copy_ does), like load_state_dict. Returns the missing and unexpected keys. With `strict`, any missing or
  /// unexpected key raises StateDictError with PyTorch's message; a shape mismatch raises even when !strict.
  LoadResult load_state_dict(const StateDict& state_dict, bool strict = true) {
    LoadResult result;
    std::vector<std::string> errors;
    StateDict local;
    for (const auto& [k, v] : state_dict) local.insert(k, v);
    load_tree(local, "", state_dict.versions ? &*state_dict.versions : nullptr, result, errors);
    if (strict) {
      if (!result.unexpected_keys.empty())
        errors.insert(errors.begin(),
                      "Unexpected key(s) in state_dict: " + detail::quoted_join(result.unexpected_keys) + ". ");
      if (!result.missing_keys.empty())
        errors.insert(errors.begin(), "Missing key(s) in state_dict: " + detail::quoted_join(result.missing_keys) + ". ");
    }
    if (!errors.empty()) {
      std::string joined;
      for (size_t i = 0; i < errors.size(); ++i) joined += (i ? "\n\t" : "") + errors[i];
      TORCHLET_THROW(nn::StateDictError, "Error(s) in loading state_dict for ", name(), ":\n\t", joined);
    }
    return result;
  }

  // ---- printing ---------------------------------------------------------------------------------
  /// The printed form, exactly as PyTorch's repr(module): "Linear(in_features=6, out_features=5, bias=True)".
  std::string repr() const {
    std::vector<std::string> lines;
    const std::string extra = extra_repr();
    size_t n_extra = 0;
    if (!extra.empty()) {
      size_t start = 0;
      while (true) {
        const size_t nl = extra.find('\n', start);
        lines.push_back(extra.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
        ++n_extra;
        if (nl == std::string::npos) break;
        start = nl + 1;
      }
    }
    for (const auto& c : children_) lines.push_back("(" + c.name + "): " + detail::add_indent(c.module->repr(), 2));
    std::string s = name() + "(";
    if (n_extra == 1 && lines.size() == 1) {
      s += lines[0];
    } else if (!lines.empty()) {
      s += "\n  ";
      for (size_t i = 0; i < lines.size(); ++i) s += (i ? "\n  " : "") + lines[i];
      s += "\n";
    }
    return s + ")";
  }

 protected:
  /// Loads this module's own parameters and persistent buffers from `state_dict` (the entries under `prefix`),
  /// recording missing and unexpected keys and size mismatches, like PyTorch's _load_from_state_dict. `version` is
  /// the checkpoint's version of this module (nullopt without metadata). Override to adapt old checkpoints.
  virtual void load_from_state_dict(StateDict& state_dict, const std::string& prefix, std::optional<int64_t> version,
                                    LoadResult& result, std::vector<std::string>& errors) {
    (void)version;
    autograd::NoGradGuard no_grad;
    std::unordered_set<std::string> local;
    auto load_one = [&](const std::string& name, const Tensor& target) {
      if (!target.defined()) return;
      local.insert(name);
      const std::string key = prefix + name;
      const Tensor* found = state_dict.find(key);
      if (found == nullptr) {
        result.missing_keys.push_back(key);
        return;
      }
      Tensor input = *found;
      TORCHLET_CHECK(input.defined(), ValueError, "[Module] state dict entry \"", key, "\" is an undefined tensor");
      if (target.dim() == 0 && input.dim() == 1) input = input[0];  // PyTorch: 1-dim from 0.3 into 0-dim
      if (input.sizes() != target.sizes()) {
        errors.push_back("size mismatch for " + key + ": copying a param with shape " + detail::torch_size(input.sizes()) +
                         " from checkpoint, the shape in current model is " + detail::torch_size(target.sizes()) + ".");
        return;
      }
      if (input.dtype() != target.dtype()) result.converted_keys.push_back(key);
      Tensor(target).copy_(input);
    };
    for (const auto& s : params_) load_one(s.name, s.tensor);
    for (const auto& s : buffers_)
      if (s.persistent) load_one(s.name, s.tensor);
    for (const auto& [key, value] : state_dict) {
      if (!detail::starts_with(key, prefix)) continue;
      const std::string rest = key.substr(prefix.size());
      const std::string first = rest.substr(0, rest.find('.'));
      if (find_child(first) == nullptr && local.count(first) == 0) result.unexpected_keys.push_back(key);
    }
  }

  /// Number of child slots (including a child registered twice), for containers.
  size_t num_children() const { return children_.size(); }
  /// The child in slot `i` (registration order), for containers.
  const std::shared_ptr<Module>& child_at(size_t i) const { return children_.at(i).module; }

 private:
  template <class>
  friend class Child;

  struct ParamSlot {
    std::string name;
    Tensor tensor;
  };
  struct BufferSlot {
    std::string name;
    Tensor tensor;
    bool persistent = true;
  };
  struct ChildSlot {
    std::string name;
    std::shared_ptr<Module> module;
    bool (*accepts)(const Module&) = nullptr;  // set by a Child<M> member bound to this slot
  };

  std::shared_ptr<Module> self_ptr() const {
    auto* self = const_cast<Module*>(this);
    if (auto sp = self->weak_from_this().lock()) return sp;
    return std::shared_ptr<Module>(std::shared_ptr<Module>(), self);  // not owned by a shared_ptr: non-owning
  }
  ParamSlot* find_param(const std::string& name) {
    for (auto& s : params_)
      if (s.name == name) return &s;
    return nullptr;
  }
  BufferSlot* find_buffer(const std::string& name) {
    for (auto& s : buffers_)
      if (s.name == name) return &s;
    return nullptr;
  }
  ChildSlot* find_child(const std::string& name) {
    for (auto& s : children_)
      if (s.name == name) return &s;
    return nullptr;
  }
  Tensor& find_param_or_throw(const std::string& name) {
    ParamSlot* s = find_param(name);
    TORCHLET_CHECK(s != nullptr, ValueError, "[Module] ", this->name(), " has no parameter \"", name, "\"");
    return s->tensor;
  }
  Tensor& find_buffer_or_throw(const std::string& name) {
    BufferSlot* s = find_buffer(name);
    TORCHLET_CHECK(s != nullptr, ValueError, "[Module] ", this->name(), " has no buffer \"", name, "\"");
    return s->tensor;
  }
  std::pair<std::shared_ptr<Module>, std::string> split_path(const std::string& path) const {
    const size_t dot = path.rfind('.');
    if (dot == std::string::npos) return {self_ptr(), path};
    return {get_submodule(path.substr(0, dot)), path.substr(dot + 1)};
  }
  std::string child_names() const {
    std::string out;
    for (const auto& c : children_) out += (out.empty() ? "" : ", ") + c.name;
    return out.empty() ? "none" : out;
  }
  void check_new_member(const char* kind, const std::string& name) {
    detail::check_member_name(kind, name);
    const char* existing = find_param(name) ? "parameter" : find_buffer(name) ? "buffer" : find_child(name) ? "module" : nullptr;
    TORCHLET_CHECK(existing == nullptr, ValueError, "[Module] cannot register ", kind, " \"", name, "\": ", this->name(),
                   " already has a ", existing ? existing : "", " named \"", name, "\"");
  }
  void check_no_cycle(const Module& module, const std::string& name) const {
    for (const auto& [n, m] : module.named_modules())
      TORCHLET_CHECK(m.get() != this, ValueError, "[Module] cannot register module \"", name, "\" in ", this->name(),
                     ": it contains ", this->name(), " itself");
  }
  void collect_modules(const std::string& prefix, std::unordered_set<const Module*>& memo, NamedModules& out) const {
    if (!memo.insert(this).second) return;
    out.emplace_back(prefix, self_ptr());
    for (const auto& c : children_) c.module->collect_modules(prefix.empty() ? c.name : prefix + "." + c.name, memo, out);
  }
  template <class Get>
  NamedTensors named_members(const std::string& prefix, bool recurse, Get get) const {
    NamedTensors out;
    std::unordered_set<const void*> memo;
    const NamedModules mods = recurse ? named_modules(prefix) : NamedModules{{prefix, self_ptr()}};
    for (const auto& [mp, m] : mods) {
      get(*m, [&](const std::string& n, const Tensor& t) {
        if (!t.defined() || !memo.insert(&t.unsafe_impl()).second) return;
        out.emplace_back(mp.empty() ? n : mp + "." + n, t);
      });
    }
    return out;
  }
  template <class T>
  static std::vector<T> values(const std::vector<std::pair<std::string, T>>& named) {
    std::vector<T> out;
    out.reserve(named.size());
    for (const auto& e : named) out.push_back(e.second);
    return out;
  }
  template <class F>
  void convert_tensors(F convert) {
    autograd::NoGradGuard no_grad;
    auto apply_one = [&](const Tensor& t) {
      if (!t.defined()) return;
      const Tensor g = t.grad();
      const Tensor c = convert(t);
      if (!c.is_same(t)) detail::set_data(t, c);
      if (g.defined()) {
        const Tensor gc = convert(g);
        if (!gc.is_same(g)) detail::set_data(g, gc);
      }
    };
    for (const auto& [n, m] : named_modules()) {
      for (const auto& s : m->params_) apply_one(s.tensor);
      for (const auto& s : m->buffers_) apply_one(s.tensor);
    }
  }
  void save_to(StateDict& sd, const std::string& prefix) const {
    (*sd.versions)[prefix.empty() ? prefix : prefix.substr(0, prefix.size() - 1)] = version();
    for (const auto& s : params_)
      if (s.tensor.defined()) sd.insert(prefix + s.name, s.tensor.detach());
    for (const auto& s : buffers_)
      if (s.tensor.defined() && s.persistent) sd.insert(prefix + s.name, s.tensor.detach());
    for (const auto& c : children_) c.module->save_to(sd, prefix + c.name + ".");
  }
  void load_tree(StateDict& local, const std::string& prefix, const std::map<std::string, int64_t>* versions,
                 LoadResult& result, std::vector<std::string>& errors) {
    std::optional<int64_t> version;
    if (versions != nullptr) {
      auto it = versions->find(prefix.empty() ? prefix : prefix.substr(0, prefix.size() - 1));
      if (it != versions->end()) version = it->second;
    }
    load_from_state_dict(local, prefix, version, result, errors);
    for (const auto& c : children_) {
      const std::string child_prefix = prefix + c.name + ".";
      StateDict child_sd;
      for (const auto& [k, v] : local)
        if (detail::starts_with(k, child_prefix)) child_sd.insert(k, v);
      c.module->load_tree(child_sd, child_prefix, versions, result, errors);
    }
  }

  std::deque<ParamSlot> params_;  // deque: references handed out stay valid as slots are added
  std::deque<BufferSlot> buffers_;
  std::deque<ChildSlot> children_;
  bool training_ = true;
  bool keep_eval_ = false;
};

/// Prints module.repr().
inline std::ostream& operator<<(std::ostream& os, const Module& module) { return os << module.repr(); }

/// A typed child-module member that registers itself and always refers to the registered child, so replacing the
/// child (by assignment here, or by replace_module elsewhere) cannot leave it stale:
/// ```
/// struct Net : nn::Module {
///   nn::Child<nn::Linear> fc{this, "fc", std::make_shared<nn::Linear>(512, 1000)};
/// };
/// net->fc = std::make_shared<nn::Linear>(net->fc->in_features, 10);   // model.fc = nn.Linear(..., 10)
/// ```
template <class M>
class Child {
 public:
  /// Registers `module` as child `name` of `owner` (pass `this` from a member initializer).
  Child(Module* owner, const std::string& name, std::shared_ptr<M> module) : owner_(owner) {
    owner->register_module(name, std::move(module));
    index_ = owner->children_.size() - 1;
    owner->children_[index_].accepts = &detail::is_a<M>;
  }
  Child(const Child&) = delete;
  /// Replaces the registered child (the registry entry, named_parameters and state_dict follow).
  Child& operator=(std::shared_ptr<M> module) {
    owner_->replace_module(name(), std::move(module));
    return *this;
  }
  Child& operator=(const Child&) = delete;
  /// The child.
  M* get() const { return static_cast<M*>(owner_->children_[index_].module.get()); }
  /// The child, shared.
  std::shared_ptr<M> ptr() const { return std::static_pointer_cast<M>(owner_->children_[index_].module); }
  M* operator->() const { return get(); }  ///< Member access to the child.
  M& operator*() const { return *get(); }  ///< The child.
  operator std::shared_ptr<M>() const { return ptr(); }  // NOLINT(google-explicit-constructor)
  /// The name it is registered under.
  const std::string& name() const { return owner_->children_[index_].name; }
  /// child->forward(input).
  Tensor operator()(const Tensor& input) const { return get()->forward(input); }

 private:
  Module* owner_;
  size_t index_ = 0;
};
}  // namespace torchlet::nn
