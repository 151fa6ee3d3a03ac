#pragma once
/// \file nn::Sequential (children "0", "1", ... applied in order) and nn::ModuleList (an indexable list of
/// modules), with PyTorch's names.
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "torchlet/nn/module.hpp"

namespace torchlet::nn {

namespace detail {
/// Position `i` (negative counts from the end) of a container of `n`; raises IndexError when out of range.
inline size_t container_index(int64_t i, size_t n, const char* who) {
  const int64_t size = static_cast<int64_t>(n);
  TORCHLET_CHECK(i >= -size && i < size, IndexError, "[", who, "] index ", i, " is out of range (size ", size, ")");
  return static_cast<size_t>(i < 0 ? i + size : i);
}
}  // namespace detail

/// A chain of modules applied in order, like torch.nn.Sequential; children are named "0", "1", ... (or as given)
/// so state_dict keys read "0.weight", "features.3.bias".
class Sequential : public Module {
 public:
  /// An empty chain (add modules with push_back).
  Sequential() = default;
  /// The given modules in order: `std::make_shared<nn::Sequential>(conv, bn, relu)`.
  template <class... Ms>
  explicit Sequential(std::shared_ptr<Ms>... modules) {
    (push_back(std::move(modules)), ...);
  }
  /// Named children, like Sequential(OrderedDict([...])).
  explicit Sequential(const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named) {
    for (const auto& [n, m] : named) register_module(n, m);
  }
  /// Appends `module` as child str(size()); returns it.
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    return register_module(std::to_string(size()), std::move(module));
  }
  /// Appends `module` under `name`; returns it.
  template <class M>
  std::shared_ptr<M> push_back(const std::string& name, std::shared_ptr<M> module) {
    return register_module(name, std::move(module));
  }
  /// Number of modules.
  size_t size() const { return num_children(); }
  /// The module at position i (negative counts from the end); IndexError when out of range.
  std::shared_ptr<Module> operator[](int64_t i) const { return child_at(detail::container_index(i, size(), "Sequential")); }
  /// The module at position i as an M (checked when RTTI is on).
  template <class M>
  std::shared_ptr<M> at(int64_t i) const {
    std::shared_ptr<Module> m = (*this)[i];
    TORCHLET_CHECK(detail::is_a<M>(*m), ValueError, "[Sequential] module ", i, " is a ", m->name(),
                   ", not the requested type");
    return std::static_pointer_cast<M>(m);
  }
  std::string name() const override { return "Sequential"; }  ///< "Sequential"
  /// Each module's forward applied to the previous one's output.
  Tensor forward(const Tensor& input) override {
    Tensor x = input;
    for (size_t i = 0; i < size(); ++i) x = child_at(i)->forward(x);
    return x;
  }
};

/// An indexable list of modules whose parameters belong to the owner, like torch.nn.ModuleList (no forward of
/// its own; iterate it in the owner's forward).
class ModuleList : public Module {
 public:
  /// An empty list.
  ModuleList() = default;
  /// The given modules in order.
  template <class... Ms>
  explicit ModuleList(std::shared_ptr<Ms>... modules) {
    (push_back(std::move(modules)), ...);
  }
  /// Appends `module` as child str(size()); returns it.
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    return register_module(std::to_string(size()), std::move(module));
  }
  /// Number of modules.
  size_t size() const { return num_children(); }
  /// The module at position i (negative counts from the end); IndexError when out of range.
  std::shared_ptr<Module> operator[](int64_t i) const { return child_at(detail::container_index(i, size(), "ModuleList")); }
  /// The module at position i as an M (checked when RTTI is on).
  template <class M>
  std::shared_ptr<M> at(int64_t i) const {
    std::shared_ptr<Module> m = (*this)[i];
    TORCHLET_CHECK(detail::is_a<M>(*m), ValueError, "[ModuleList] module ", i, " is a ", m->name(),
                   ", not the requested type");
    return std::static_pointer_cast<M>(m);
  }
  /// The modules in order (for range-for).
  std::vector<std::shared_ptr<Module>> items() const {
    std::vector<std::shared_ptr<Module>> out;
    for (size_t i = 0; i < size(); ++i) out.push_back(child_at(i));
    return out;
  }
  std::string name() const override { return "ModuleList"; }  ///< "ModuleList"
};
}  // namespace torchlet::nn
