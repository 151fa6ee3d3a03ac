#pragma once
/// \file torchvision's AlexNet (torchvision 0.14's models/alexnet.py): features (5 convs, 3 max-pools), avgpool to
/// 6x6, classifier (dropout, 3 Linear layers). Same modules in the same order, so state_dict() keys, shapes and order
/// equal torchvision's and alexnet-owt-7be5be79.pth loads strictly; every layer keeps PyTorch's default
/// initialisation, as torchvision's does. Inputs need at least 63x63 pixels.
#include <cstdint>
#include <memory>
#include <string>

#include "torchlet/core/error.hpp"
#include "torchlet/nn/activation.hpp"
#include "torchlet/nn/container.hpp"
#include "torchlet/nn/conv.hpp"
#include "torchlet/nn/dropout.hpp"
#include "torchlet/nn/linear.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/nn/pooling.hpp"

namespace torchlet::models {

/// The keyword arguments of torchvision's AlexNet, with its defaults: `{.num_classes = 10, .dropout = 0.2}`.
struct AlexNetOptions {
  int64_t num_classes = 1000;  ///< outputs of the last Linear
  double dropout = 0.5;        ///< p of both Dropout layers of the classifier
};

/// torchvision's AlexNet: features - avgpool (6, 6) - flatten - classifier.
class AlexNet : public nn::Module {
 public:
  /// Builds the network as torchvision's AlexNet(num_classes, dropout) does (PyTorch's default initialisation).
  explicit AlexNet(const AlexNetOptions& options = {})
      : num_classes((check(options), options.num_classes)),
        features{this, "features", make_features()},
        avgpool{this, "avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(nn::Size2(6, 6))},
        classifier{this, "classifier", make_classifier(options)} {}

  const int64_t num_classes;                 ///< outputs of the last Linear
  nn::Child<nn::Sequential> features;        ///< convs 11x11/4, 5x5, 3x3 x3 with ReLUs and 3x3/2 max-pools
  nn::Child<nn::AdaptiveAvgPool2d> avgpool;  ///< output (6, 6)
  nn::Child<nn::Sequential> classifier;      ///< Dropout, Linear(9216, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Linear

  std::string name() const override { return "AlexNet"; }  ///< "AlexNet"
  /// classifier(flatten(avgpool(features(x)), 1)): logits [N, num_classes].
  Tensor forward(const Tensor& x) override { return classifier(avgpool(features(x)).flatten(1)); }

 private:
  static int check(const AlexNetOptions& o) {
    TORCHLET_CHECK(o.num_classes >= 0, ValueError, "[AlexNet] num_classes must be non-negative, got ", o.num_classes);
    return 0;
  }
  static std::shared_ptr<nn::Sequential> make_features() {
    auto conv = [](int64_t in, int64_t out, int64_t k, int64_t stride, int64_t padding) {
      return std::make_shared<nn::Conv2d>(in, out, k, nn::Conv2dOptions{.stride = stride, .padding = padding});
    };
    auto relu = [] { return std::make_shared<nn::ReLU>(true); };
    auto pool = [] { return std::make_shared<nn::MaxPool2d>(3, nn::MaxPool2dOptions{.stride = 2}); };
    return std::make_shared<nn::Sequential>(conv(3, 64, 11, 4, 2), relu(), pool(), conv(64, 192, 5, 1, 2), relu(),
                                            pool(), conv(192, 384, 3, 1, 1), relu(), conv(384, 256, 3, 1, 1), relu(),
                                            conv(256, 256, 3, 1, 1), relu(), pool());
  }
  static std::shared_ptr<nn::Sequential> make_classifier(const AlexNetOptions& o) {
    return std::make_shared<nn::Sequential>(
        std::make_shared<nn::Dropout>(o.dropout), std::make_shared<nn::Linear>(256 * 6 * 6, 4096),
        std::make_shared<nn::ReLU>(true), std::make_shared<nn::Dropout>(o.dropout),
        std::make_shared<nn::Linear>(4096, 4096), std::make_shared<nn::ReLU>(true),
        std::make_shared<nn::Linear>(4096, o.num_classes));
  }
};

/// AlexNet: 61.1M parameters at 1000 classes.
inline std::shared_ptr<AlexNet> alexnet(const AlexNetOptions& o = {}) { return std::make_shared<AlexNet>(o); }

}  // namespace torchlet::models
