#pragma once
/// \file An architecture registry and whole-model records: torchlet's answer to `torch.save(model)`. A model is
/// stored as `{'arch': name, 'arch_options': {...}, 'state_dict': {...}}` (a plain dict PyTorch still opens) and
/// rebuilt by calling the factory registered under `name` with the options, then loading the weights.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "torchlet/checkpoint/load_weights.hpp"
#include "torchlet/checkpoint/state_dict_value.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/nn/module.hpp"

namespace torchlet {

/// Builds a model of one architecture from its options (a dict Value such as `{'num_classes': 10}`).
using ArchitectureFactory = std::function<std::shared_ptr<nn::Module>(const Value& options)>;

/// The architecture a model was built as: its registered name and the options it was built with.
struct ArchitectureSpec {
  std::string name;  ///< registered name ("resnet18")
  Value options;     ///< the options the factory received
};

namespace detail {
/// The process-wide registry: factories by name, and the models build_architecture made (by address, with a
/// weak_ptr so a dead model's reused address is not mistaken for it).
struct ArchitectureRegistry {
  std::mutex mutex;
  std::map<std::string, ArchitectureFactory> factories;
  std::map<const nn::Module*, std::pair<std::weak_ptr<nn::Module>, ArchitectureSpec>> built;

  static ArchitectureRegistry& instance() {
    static ArchitectureRegistry r;
    return r;
  }
  std::string names_locked() const {
    std::string out;
    for (const auto& [n, f] : factories) out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? "none" : out;
  }
};
}  // namespace detail

/// Registers (or replaces) the factory for architecture `name`, so build_architecture and load_model can make it.
/// Returns false when it replaced an earlier factory of that name.
inline bool register_architecture(const std::string& name, ArchitectureFactory factory) {
  TORCHLET_CHECK(!name.empty(), ValueError, "[register_architecture] the name can't be empty");
  TORCHLET_CHECK(factory != nullptr, ValueError, "[register_architecture] the factory of \"", name, "\" is empty");
  auto& r = detail::ArchitectureRegistry::instance();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.factories.insert_or_assign(name, std::move(factory)).second;
}

/// True when an architecture `name` is registered.
inline bool has_architecture(const std::string& name) {
  auto& r = detail::ArchitectureRegistry::instance();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.factories.count(name) != 0;
}

/// The registered architecture names, sorted.
inline std::vector<std::string> architecture_names() {
  auto& r = detail::ArchitectureRegistry::instance();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> out;
  for (const auto& [n, f] : r.factories) out.push_back(n);
  return out;
}

/// A new model of architecture `name` built with `options` (an empty dict by default); the model remembers
/// both (see architecture_of), so save_model can store them. Raises ValueError for an unknown name, listing the
/// registered ones, or when the factory returns null.
inline std::shared_ptr<nn::Module> build_architecture(const std::string& name, const Value& options = Value::dict()) {
  auto& r = detail::ArchitectureRegistry::instance();
  ArchitectureFactory factory;
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.factories.find(name);
    TORCHLET_CHECK(it != r.factories.end(), ValueError, "[build_architecture] unknown architecture \"", name,
                   "\" (registered: ", r.names_locked(), ")");
    factory = it->second;
  }
  std::shared_ptr<nn::Module> model = factory(options);  // outside the lock: a factory may build other archs
  TORCHLET_CHECK(model != nullptr, ValueError, "[build_architecture] the factory of \"", name, "\" returned null");
  std::lock_guard<std::mutex> lock(r.mutex);
  for (auto it = r.built.begin(); it != r.built.end();) it = it->second.first.expired() ? r.built.erase(it) : ++it;
  r.built.insert_or_assign(model.get(), std::make_pair(std::weak_ptr<nn::Module>(model), ArchitectureSpec{name, options}));
  return model;
}

/// The architecture `model` was built as by build_architecture, or nullopt for a model made another way.
inline std::optional<ArchitectureSpec> architecture_of(const nn::Module& model) {
  auto& r = detail::ArchitectureRegistry::instance();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.built.find(&model);
  if (it == r.built.end()) return std::nullopt;
  const auto alive = it->second.first.lock();
  if (!alive || alive.get() != &model) return std::nullopt;
  return it->second.second;
}

/// The whole-model record `{'arch': spec.name, 'arch_options': spec.options, 'state_dict': model.state_dict()}`
/// (tensors shared with the model).
inline Value model_record(const nn::Module& model, const ArchitectureSpec& spec) {
  TORCHLET_CHECK(!spec.name.empty(), ValueError, "[model_record] the architecture name can't be empty");
  return Value::dict({{"arch", spec.name}, {"arch_options", spec.options}, {"state_dict", to_value(model)}});
}

/// model_record with the architecture build_architecture made `model` as; raises ValueError for a model made
/// another way (then pass an ArchitectureSpec).
inline Value model_record(const nn::Module& model) {
  const auto spec = architecture_of(model);
  TORCHLET_CHECK(spec.has_value(), ValueError, "[model_record] this ", model.name(),
                 " was not made by build_architecture: pass its architecture name and options");
  return model_record(model, *spec);
}

/// Rebuilds a model from a whole-model record: build_architecture(record['arch'], record['arch_options']), then
/// load_weights of record['state_dict'] (strict by default). Raises ValueError naming a missing or mistyped entry.
inline std::shared_ptr<nn::Module> model_from_record(const Value& record, WeightLoadOptions options = {}) {
  TORCHLET_CHECK(record.is_dict(), ValueError, "[model_from_record] expected a dict with 'arch', 'arch_options' and "
                 "'state_dict', got a ", record.kind_name());
  const ValueRef root(record);
  const std::string arch = root.at("arch").as_string();
  const auto opts = root.get(Value("arch_options"));
  std::shared_ptr<nn::Module> model = build_architecture(arch, opts ? opts->value() : Value::dict());
  if (options.top_level_key.empty()) options.top_level_key = "state_dict";
  load_weights(*model, record, options);
  return model;
}

}  // namespace torchlet
