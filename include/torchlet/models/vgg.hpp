#pragma once
/// \file torchvision's VGG family (torchvision 0.14's models/vgg.py): vgg11/13/16/19 and their BatchNorm variants
/// vgg11_bn/13_bn/16_bn/19_bn. features (3x3 convs [+ BatchNorm] + ReLU, 2x2 max-pools) - avgpool to 7x7 -
/// classifier (3 Linear layers with dropout). Same modules in the same order, so state_dict() keys, shapes and order
/// equal torchvision's and vgg16-397923af.pth loads strictly; same initialisation formulas (values differ:
/// torchlet's random streams are not PyTorch's). Inputs need at least 32x32 pixels.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "torchlet/core/error.hpp"
#include "torchlet/nn/activation.hpp"
#include "torchlet/nn/batchnorm.hpp"
#include "torchlet/nn/container.hpp"
#include "torchlet/nn/conv.hpp"
#include "torchlet/nn/dropout.hpp"
#include "torchlet/nn/init.hpp"
#include "torchlet/nn/linear.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/nn/pooling.hpp"

namespace torchlet::models {

/// The keyword arguments of torchvision's VGG, with its defaults: `{.num_classes = 10}`.
struct VGGOptions {
  int64_t num_classes = 1000;  ///< outputs of the last Linear
  bool init_weights = true;    ///< torchvision's init (see VGG::VGG); false keeps PyTorch's layer defaults
  double dropout = 0.5;        ///< p of both Dropout layers of the classifier
};

/// One entry of a VGG layer configuration: a 3x3 conv to `channels` channels, or (kVGGMaxPool) a 2x2/2 max-pool.
using VGGLayerConfig = std::vector<int64_t>;
/// The entry of a VGGLayerConfig that stands for torchvision's "M" (a 2x2 max-pool with stride 2).
inline constexpr int64_t kVGGMaxPool = -1;

/// torchvision's `cfgs[name]` for name "A" (vgg11), "B" (vgg13), "D" (vgg16), "E" (vgg19); ValueError otherwise.
inline VGGLayerConfig vgg_config(char name) {
  constexpr int64_t M = kVGGMaxPool;
  switch (name) {
    case 'A': return {64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M};
    case 'B': return {64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M};
    case 'D': return {64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M};
    case 'E': return {64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M};
    default: break;
  }
  TORCHLET_THROW(ValueError, "[vgg] unknown configuration '", std::string(1, name), "' (A, B, D, E)");
}

/// torchvision's make_layers: the `features` Sequential of a configuration (3 input channels), each conv 3x3 with
/// padding 1 and a bias, followed by BatchNorm2d when `batch_norm`, then ReLU(inplace=True).
inline std::shared_ptr<nn::Sequential> vgg_make_layers(const VGGLayerConfig& config, bool batch_norm = false) {
  auto seq = std::make_shared<nn::Sequential>();
  int64_t in_channels = 3;
  for (const int64_t v : config) {
    if (v == kVGGMaxPool) {
      seq->push_back(std::make_shared<nn::MaxPool2d>(2, nn::MaxPool2dOptions{.stride = 2}));
      continue;
    }
    TORCHLET_CHECK(v > 0, ValueError, "[vgg] a layer configuration holds channel counts > 0 or kVGGMaxPool, got ", v);
    seq->push_back(std::make_shared<nn::Conv2d>(in_channels, v, 3, nn::Conv2dOptions{.padding = 1}));
    if (batch_norm) seq->push_back(std::make_shared<nn::BatchNorm2d>(v));
    seq->push_back(std::make_shared<nn::ReLU>(true));
    in_channels = v;
  }
  return seq;
}

/// torchvision's VGG: features - avgpool (7, 7) - flatten - classifier.
class VGG : public nn::Module {
 public:
  /// Builds the network around `features` (which must output 512 channels) as torchvision's VGG(features, **options)
  /// does. With init_weights: convs kaiming_normal_(mode="fan_out", nonlinearity="relu") and bias 0, BatchNorm
  /// weight 1 and bias 0, Linear weight N(0, 0.01) and bias 0.
  explicit VGG(std::shared_ptr<nn::Sequential> features_module, const VGGOptions& options = {})
      : num_classes((check(options), options.num_classes)),
        features{this, "features", std::move(features_module)},
        avgpool{this, "avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(nn::Size2(7, 7))},
        classifier{this, "classifier", make_classifier(options)} {
    if (!options.init_weights) return;
    for (const auto& [n, m] : named_modules()) {
      if (m->name() == "Conv2d") {
        nn::init::kaiming_normal_(m->parameter("weight"), {.mode = "fan_out", .nonlinearity = "relu"});
        if (m->parameter("bias").defined()) nn::init::zeros_(m->parameter("bias"));
      } else if (m->is_batchnorm()) {
        if (m->parameter("weight").defined()) nn::init::ones_(m->parameter("weight"));
        if (m->parameter("bias").defined()) nn::init::zeros_(m->parameter("bias"));
      } else if (m->name() == "Linear") {
        nn::init::normal_(m->parameter("weight"), 0, 0.01);
        if (m->parameter("bias").defined()) nn::init::zeros_(m->parameter("bias"));
      }
    }
  }

  const int64_t num_classes;                 ///< outputs of the last Linear
  nn::Child<nn::Sequential> features;        ///< the conv stack (vgg_make_layers)
  nn::Child<nn::AdaptiveAvgPool2d> avgpool;  ///< output (7, 7)
  nn::Child<nn::Sequential> classifier;      ///< Linear(25088, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout, Linear

  std::string name() const override { return "VGG"; }  ///< "VGG"
  /// classifier(flatten(avgpool(features(x)), 1)): logits [N, num_classes].
  Tensor forward(const Tensor& x) override { return classifier(avgpool(features(x)).flatten(1)); }

 private:
  static int check(const VGGOptions& o) {
    TORCHLET_CHECK(o.num_classes >= 0, ValueError, "[VGG] num_classes must be non-negative, got ", o.num_classes);
    return 0;
  }
  static std::shared_ptr<nn::Sequential> make_classifier(const VGGOptions& o) {
    return std::make_shared<nn::Sequential>(
        std::make_shared<nn::Linear>(512 * 7 * 7, 4096), std::make_shared<nn::ReLU>(true),
        std::make_shared<nn::Dropout>(o.dropout), std::make_shared<nn::Linear>(4096, 4096),
        std::make_shared<nn::ReLU>(true), std::make_shared<nn::Dropout>(o.dropout),
        std::make_shared<nn::Linear>(4096, o.num_classes));
  }
};

/// VGG-11 (configuration "A"): 132.9M parameters at 1000 classes.
inline std::shared_ptr<VGG> vgg11(const VGGOptions& o = {}) {
  return std::make_shared<VGG>(vgg_make_layers(vgg_config('A')), o);
}
/// VGG-11 with BatchNorm.
inline std::shared_ptr<VGG> vgg11_bn(const VGGOptions& o = {}) {
  return std::make_shared<VGG>(vgg_make_layers(vgg_config('A'), true), o);
}
/// VGG-13 (configuration "B"): 133.0M parameters.
inline std::shared_ptr<VGG> vgg13(const VGGOptions& o = {}) {
  return std::make_shared<VGG>(vgg_make_layers(vgg_config('B')), o);
}
/// VGG-13 with BatchNorm.
inline std::shared_ptr<VGG> vgg13_bn(const VGGOptions& o = {}) {
  return std::make_shared<VGG>(vgg_make_layers(vgg_config('B'), true), o);
}
/// VGG-16 (configuration "D"): 138.4M parameters.
inline std::shared_ptr<VGG> vgg16(const VGGOptions& o = {}) {
  return std::make_shared<VGG>(vgg_make_layers(vgg_config('D')), o);
}
/// VGG-16 with BatchNorm.
inline std::shared_ptr<VGG> vgg16_bn(const VGGOptions& o = {}) {
  return std::make_shared<VGG>(vgg_make_layers(vgg_config('D'), true), o);
}
/// VGG-19 (configuration "E"): 143.7M parameters.
inline std::shared_ptr<VGG> vgg19(const VGGOptions& o = {}) {
  return std::make_shared<VGG>(vgg_make_layers(vgg_config('E')), o);
}
/// VGG-19 with BatchNorm.
inline std::shared_ptr<VGG> vgg19_bn(const VGGOptions& o = {}) {
  return std::make_shared<VGG>(vgg_make_layers(vgg_config('E'), true), o);
}

/// The architecture names vgg() takes, in torchvision's order.
inline std::vector<std::string> vgg_names() {
  return {"vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"};
}

/// The architecture called `arch` ("vgg16", "vgg16_bn", ...); raises ValueError naming the choices for an unknown
/// name.
inline std::shared_ptr<VGG> vgg(const std::string& arch, const VGGOptions& o = {}) {
  using Factory = std::shared_ptr<VGG> (*)(const VGGOptions&);
  static const std::pair<const char*, Factory> table[] = {
      {"vgg11", vgg11}, {"vgg11_bn", vgg11_bn}, {"vgg13", vgg13}, {"vgg13_bn", vgg13_bn},
      {"vgg16", vgg16}, {"vgg16_bn", vgg16_bn}, {"vgg19", vgg19}, {"vgg19_bn", vgg19_bn}};
  for (const auto& [name, make] : table)
    if (arch == name) return make(o);
  std::string names;
  for (const std::string& n : vgg_names()) names += (names.empty() ? "" : ", ") + n;
  TORCHLET_THROW(ValueError, "[vgg] unknown architecture \"", arch, "\" (choices: ", names, ")");
}

}  // namespace torchlet::models
