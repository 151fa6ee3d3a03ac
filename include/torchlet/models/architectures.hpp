#pragma once
/// \file torchvision's models in the architecture registry (checkpoint/architecture.hpp): including this header
/// registers every name of models::model_names() (the ResNets, alexnet, the VGGs, the SqueezeNets), so
/// `save_model(path, *model)` stores a model as its name and options and `load_model(path)` rebuilds it — no pickled
/// code. Options are a dict of the family's option struct keys, each optional:
///   ResNet:     `{'num_classes': 10, 'zero_init_residual': False, 'groups': 1, 'width_per_group': 64,
///                 'replace_stride_with_dilation': [False, False, False]}`
///   AlexNet:    `{'num_classes': 10, 'dropout': 0.5}`
///   VGG:        `{'num_classes': 10, 'init_weights': True, 'dropout': 0.5}`
///   SqueezeNet: `{'num_classes': 10, 'dropout': 0.5}`
#include <memory>
#include <string>
#include <vector>

#include "torchlet/checkpoint/architecture.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/models/alexnet.hpp"
#include "torchlet/models/resnet.hpp"
#include "torchlet/models/squeezenet.hpp"
#include "torchlet/models/vgg.hpp"

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

namespace detail {
/// Calls `set(key, value)` for each entry of a registry options dict (None: no entries); raises ValueError for a
/// non-dict or a non-string key, naming the family.
template <class Set>
void for_each_option(const Value& options, const char* family, Set&& set) {
  if (options.is_none()) return;
  TORCHLET_CHECK(options.is_dict(), ValueError, "[", family, "] options must be a dict, got a ", options.kind_name());
  const ValueRef root(options);
  for (const auto& [k, v] : options.as_dict()) {
    TORCHLET_CHECK(k.is_string(), ValueError, "[", family, "] option keys must be strings, got ", k.repr());
    set(k.as_string(), root.at(k.as_string()));
  }
}
}  // namespace detail

/// AlexNetOptions from a registry options dict (keys num_classes, dropout); raises ValueError naming an unknown key
/// or a value of the wrong kind.
inline AlexNetOptions alexnet_options_from(const Value& options) {
  AlexNetOptions o;
  detail::for_each_option(options, "alexnet", [&](const std::string& key, const ValueRef& v) {
    if (key == "num_classes") o.num_classes = v.as_int();
    else if (key == "dropout") o.dropout = v.as_double();
    else TORCHLET_THROW(ValueError, "[alexnet] unknown option '", key, "' (num_classes, dropout)");
  });
  return o;
}

/// VGGOptions from a registry options dict (keys num_classes, init_weights, dropout); raises ValueError naming an
/// unknown key or a value of the wrong kind.
inline VGGOptions vgg_options_from(const Value& options) {
  VGGOptions o;
  detail::for_each_option(options, "vgg", [&](const std::string& key, const ValueRef& v) {
    if (key == "num_classes") o.num_classes = v.as_int();
    else if (key == "init_weights") o.init_weights = v.as_bool();
    else if (key == "dropout") o.dropout = v.as_double();
    else TORCHLET_THROW(ValueError, "[vgg] unknown option '", key, "' (num_classes, init_weights, dropout)");
  });
  return o;
}

/// SqueezeNetOptions from a registry options dict (keys num_classes, dropout); raises ValueError naming an unknown
/// key or a value of the wrong kind.
inline SqueezeNetOptions squeezenet_options_from(const Value& options) {
  SqueezeNetOptions o;
  detail::for_each_option(options, "squeezenet", [&](const std::string& key, const ValueRef& v) {
    if (key == "num_classes") o.num_classes = v.as_int();
    else if (key == "dropout") o.dropout = v.as_double();
    else TORCHLET_THROW(ValueError, "[squeezenet] unknown option '", key, "' (num_classes, dropout)");
  });
  return o;
}

/// Every architecture name this header registers, in torchvision's order within each family: the ResNets, alexnet,
/// the VGGs, the SqueezeNets. (torchlet::architecture_names() lists whatever is registered, sorted.)
inline std::vector<std::string> model_names() {
  std::vector<std::string> out = resnet_names();
  out.push_back("alexnet");
  for (const auto& names : {vgg_names(), squeezenet_names()}) out.insert(out.end(), names.begin(), names.end());
  return out;
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

/// Registers alexnet, the VGGs and the SqueezeNets with the architecture registry; returns true.
inline bool register_classic_architectures() {
  register_architecture("alexnet", [](const Value& options) -> std::shared_ptr<nn::Module> {
    return alexnet(alexnet_options_from(options));
  });
  for (const std::string& name : vgg_names()) {
    register_architecture(name, [name](const Value& options) -> std::shared_ptr<nn::Module> {
      return vgg(name, vgg_options_from(options));
    });
  }
  for (const std::string& name : squeezenet_names()) {
    register_architecture(name, [name](const Value& options) -> std::shared_ptr<nn::Module> {
      return squeezenet(name, squeezenet_options_from(options));
    });
  }
  return true;
}

/// Set at program start-up (once, in whichever translation unit initialises it first): the registration.
inline const bool kResNetArchitecturesRegistered = register_resnet_architectures();
/// Set at program start-up, like kResNetArchitecturesRegistered: the classics' registration.
inline const bool kClassicArchitecturesRegistered = register_classic_architectures();

}  // namespace torchlet::models
