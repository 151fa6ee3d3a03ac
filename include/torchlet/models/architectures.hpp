#pragma once
/// \file The ResNet family in the architecture registry (checkpoint/architecture.hpp): including this header
/// registers every name of models::resnet_names(), so `save_model(path, *model)` stores a ResNet as its name and
/// options and `load_model(path)` rebuilds it — no pickled code. Options are a dict with ResNetOptions' keys:
/// `{'num_classes': 10, 'zero_init_residual': False, 'groups': 1, 'width_per_group': 64,
///   'replace_stride_with_dilation': [False, False, False]}` (each optional).
#include <memory>
#include <string>

#include "torchlet/checkpoint/architecture.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/models/resnet.hpp"

namespace torchlet::models {

/// ResNetOptions from a registry options dict; raises ValueError naming an unknown key or a value of the wrong kind.
inline ResNetOptions resnet_options_from(const Value& options) {
  ResNetOptions o;
  if (options.is_none()) return o;
  TORCHLET_CHECK(options.is_dict(), ValueError, "[resnet] options must be a dict, got a ", options.kind_name());
  const ValueRef root(options);
  for (const auto& [k, v] : options.as_dict()) {
    TORCHLET_CHECK(k.is_string(), ValueError, "[resnet] option keys must be strings, got ", k.repr());
    const std::string& key = k.as_string();
    if (key == "num_classes") o.num_classes = root.at(key).as_int();
    else if (key == "zero_init_residual") o.zero_init_residual = root.at(key).as_bool();
    else if (key == "groups") o.groups = root.at(key).as_int();
    else if (key == "width_per_group") o.width_per_group = root.at(key).as_int();
    else if (key == "replace_stride_with_dilation") {
      const auto& list = root.at(key);
      TORCHLET_CHECK(v.is_sequence() && v.size() == 3, ValueError,
                     "[resnet] replace_stride_with_dilation must be a list of 3 bools, got ", v.repr());
      for (size_t i = 0; i < 3; ++i) o.replace_stride_with_dilation[i] = list.at(static_cast<int64_t>(i)).as_bool();
    } else {
      TORCHLET_THROW(ValueError, "[resnet] unknown option '", key, "' (num_classes, zero_init_residual, groups, "
                     "width_per_group, replace_stride_with_dilation)");
    }
  }
  return o;
}

/// Registers every ResNet name with the architecture registry; returns true.
inline bool register_resnet_architectures() {
  for (const std::string& name : resnet_names()) {
    register_architecture(name, [name](const Value& options) -> std::shared_ptr<nn::Module> {
      return resnet(name, resnet_options_from(options));
    });
  }
  return true;
}

/// Set at program start-up (once, in whichever translation unit initialises it first): the registration.
inline const bool kResNetArchitecturesRegistered = register_resnet_architectures();

}  // namespace torchlet::models
