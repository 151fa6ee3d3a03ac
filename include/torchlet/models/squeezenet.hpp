#pragma once
/// \file torchvision's SqueezeNet (torchvision 0.14's models/squeezenet.py): squeezenet1_0 and squeezenet1_1, built
/// from Fire modules (1x1 squeeze, then 1x1 and 3x3 expands concatenated on channels); the classifier is a 1x1 conv
/// to num_classes channels averaged over the image. Same modules in the same order, so state_dict() keys, shapes and
/// order equal torchvision's and squeezenet1_1-b8a52dc0.pth loads strictly; same initialisation formulas (values
/// differ: torchlet's random streams are not PyTorch's).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "torchlet/core/error.hpp"
#include "torchlet/nn/activation.hpp"
#include "torchlet/nn/container.hpp"
#include "torchlet/nn/conv.hpp"
#include "torchlet/nn/dropout.hpp"
#include "torchlet/nn/init.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/nn/pooling.hpp"
#include "torchlet/ops/join.hpp"

namespace torchlet::models {

/// torchvision's Fire module: relu(squeeze 1x1) feeds relu(expand1x1 1x1) and relu(expand3x3 3x3, padding 1), whose
/// outputs are concatenated on channels (expand1x1_planes + expand3x3_planes of them).
class Fire : public nn::Module {
 public:
  /// Fire(inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes), as torchvision builds it.
  Fire(int64_t inplanes, int64_t squeeze_planes, int64_t expand1x1_planes, int64_t expand3x3_planes)
      : inplanes(inplanes),
        squeeze{this, "squeeze", std::make_shared<nn::Conv2d>(inplanes, squeeze_planes, 1)},
        squeeze_activation{this, "squeeze_activation", std::make_shared<nn::ReLU>(true)},
        expand1x1{this, "expand1x1", std::make_shared<nn::Conv2d>(squeeze_planes, expand1x1_planes, 1)},
        expand1x1_activation{this, "expand1x1_activation", std::make_shared<nn::ReLU>(true)},
        expand3x3{this, "expand3x3",
                  std::make_shared<nn::Conv2d>(squeeze_planes, expand3x3_planes, 3, nn::Conv2dOptions{.padding = 1})},
        expand3x3_activation{this, "expand3x3_activation", std::make_shared<nn::ReLU>(true)} {}

  const int64_t inplanes;                      ///< input channels
  nn::Child<nn::Conv2d> squeeze;               ///< 1x1, inplanes -> squeeze_planes
  nn::Child<nn::ReLU> squeeze_activation;      ///< ReLU(inplace=True)
  nn::Child<nn::Conv2d> expand1x1;             ///< 1x1, squeeze_planes -> expand1x1_planes
  nn::Child<nn::ReLU> expand1x1_activation;    ///< ReLU(inplace=True)
  nn::Child<nn::Conv2d> expand3x3;             ///< 3x3 padding 1, squeeze_planes -> expand3x3_planes
  nn::Child<nn::ReLU> expand3x3_activation;    ///< ReLU(inplace=True)

  std::string name() const override { return "Fire"; }  ///< "Fire"
  /// cat([relu(expand1x1(s)), relu(expand3x3(s))], 1) with s = relu(squeeze(x)).
  Tensor forward(const Tensor& x) override {
    const Tensor s = squeeze_activation(squeeze(x));
    return cat({expand1x1_activation(expand1x1(s)), expand3x3_activation(expand3x3(s))}, 1);
  }
};

/// The keyword arguments of torchvision's SqueezeNet, with its defaults: `{.num_classes = 10}`.
struct SqueezeNetOptions {
  int64_t num_classes = 1000;  ///< output channels of the final 1x1 conv
  double dropout = 0.5;        ///< p of the Dropout before the final conv
};

/// torchvision's SqueezeNet: features - classifier (Dropout, final 1x1 conv, ReLU, AdaptiveAvgPool2d (1, 1)) -
/// flatten.
class SqueezeNet : public nn::Module {
 public:
  /// Builds version "1_0" or "1_1" (ValueError otherwise) as torchvision's SqueezeNet(version, **options) does: the
  /// final conv's weight N(0, 0.01), every other conv's weight kaiming_uniform_ (a = 0, fan_in, leaky_relu), every
  /// conv bias 0.
  explicit SqueezeNet(const std::string& version = "1_0", const SqueezeNetOptions& options = {})
      : version(version),
        num_classes((check(version, options), options.num_classes)),
        features{this, "features", make_features(version)},
        classifier{this, "classifier", make_classifier(options)} {
    const auto final_conv = classifier->get_submodule("1");
    for (const auto& [n, m] : named_modules()) {
      if (m->name() != "Conv2d") continue;
      if (m == final_conv)
        nn::init::normal_(m->parameter("weight"), 0, 0.01);
      else
        nn::init::kaiming_uniform_(m->parameter("weight"));
      if (m->parameter("bias").defined()) nn::init::zeros_(m->parameter("bias"));
    }
  }

  const std::string version;            ///< "1_0" or "1_1"
  const int64_t num_classes;            ///< output channels of the final conv
  nn::Child<nn::Sequential> features;   ///< stem conv, max-pools (ceil_mode) and Fire modules
  nn::Child<nn::Sequential> classifier;  ///< Dropout, Conv2d(512, num_classes, 1), ReLU, AdaptiveAvgPool2d (1, 1)

  std::string name() const override { return "SqueezeNet"; }  ///< "SqueezeNet"
  /// flatten(classifier(features(x)), 1): logits [N, num_classes].
  Tensor forward(const Tensor& x) override { return classifier(features(x)).flatten(1); }

 private:
  static int check(const std::string& version, const SqueezeNetOptions& o) {
    TORCHLET_CHECK(version == "1_0" || version == "1_1", ValueError, "[SqueezeNet] Unsupported SqueezeNet version ",
                   version, ": 1_0 or 1_1 expected");
    TORCHLET_CHECK(o.num_classes >= 0, ValueError, "[SqueezeNet] num_classes must be non-negative, got ",
                   o.num_classes);
    return 0;
  }
  static std::shared_ptr<nn::Sequential> make_features(const std::string& version) {
    auto relu = [] { return std::make_shared<nn::ReLU>(true); };
    auto pool = [] { return std::make_shared<nn::MaxPool2d>(3, nn::MaxPool2dOptions{.stride = 2, .ceil_mode = true}); };
    auto fire = [](int64_t in, int64_t s, int64_t e1, int64_t e3) { return std::make_shared<Fire>(in, s, e1, e3); };
    if (version == "1_0") {
      return std::make_shared<nn::Sequential>(
          std::make_shared<nn::Conv2d>(3, 96, 7, nn::Conv2dOptions{.stride = 2}), relu(), pool(),
          fire(96, 16, 64, 64), fire(128, 16, 64, 64), fire(128, 32, 128, 128), pool(), fire(256, 32, 128, 128),
          fire(256, 48, 192, 192), fire(384, 48, 192, 192), fire(384, 64, 256, 256), pool(),
          fire(512, 64, 256, 256));
    }
    return std::make_shared<nn::Sequential>(
        std::make_shared<nn::Conv2d>(3, 64, 3, nn::Conv2dOptions{.stride = 2}), relu(), pool(), fire(64, 16, 64, 64),
        fire(128, 16, 64, 64), pool(), fire(128, 32, 128, 128), fire(256, 32, 128, 128), pool(),
        fire(256, 48, 192, 192), fire(384, 48, 192, 192), fire(384, 64, 256, 256), fire(512, 64, 256, 256));
  }
  static std::shared_ptr<nn::Sequential> make_classifier(const SqueezeNetOptions& o) {
    return std::make_shared<nn::Sequential>(std::make_shared<nn::Dropout>(o.dropout),
                                            std::make_shared<nn::Conv2d>(512, o.num_classes, 1),
                                            std::make_shared<nn::ReLU>(true),
                                            std::make_shared<nn::AdaptiveAvgPool2d>(nn::Size2(1, 1)));
  }
};

/// SqueezeNet 1.0: 1.25M parameters at 1000 classes.
inline std::shared_ptr<SqueezeNet> squeezenet1_0(const SqueezeNetOptions& o = {}) {
  return std::make_shared<SqueezeNet>("1_0", o);
}
/// SqueezeNet 1.1: 1.24M parameters and 2.4x less computation than 1.0 at the same accuracy.
inline std::shared_ptr<SqueezeNet> squeezenet1_1(const SqueezeNetOptions& o = {}) {
  return std::make_shared<SqueezeNet>("1_1", o);
}

/// The architecture names squeezenet() takes, in torchvision's order.
inline std::vector<std::string> squeezenet_names() { return {"squeezenet1_0", "squeezenet1_1"}; }

/// The architecture called `arch` ("squeezenet1_0" or "squeezenet1_1"); raises ValueError naming the choices for
/// an unknown name.
inline std::shared_ptr<SqueezeNet> squeezenet(const std::string& arch, const SqueezeNetOptions& o = {}) {
  if (arch == "squeezenet1_0") return squeezenet1_0(o);
  if (arch == "squeezenet1_1") return squeezenet1_1(o);
  TORCHLET_THROW(ValueError, "[squeezenet] unknown architecture \"", arch, "\" (choices: squeezenet1_0, squeezenet1_1)");
}

}  // namespace torchlet::models
