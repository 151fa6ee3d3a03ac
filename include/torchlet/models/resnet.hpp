#pragma once
/// \file torchvision's ResNet family (torchvision 0.14's models/resnet.py): resnet18/34/50/101/152,
/// resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2, wide_resnet101_2. Same modules in the same
/// registration order, so named_parameters() and state_dict() keys, shapes and order equal torchvision's and its
/// checkpoints (resnet50-0676ba61.pth, ...) load strictly; same initialisation formulas (the values differ: torchlet's
/// random streams are not PyTorch's). Plus the fine-tuning moves: replace_fc, freeze_backbone, forward_features,
/// features(), and fold_batchnorm for inference.
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "torchlet/nn/activation.hpp"
#include "torchlet/nn/batchnorm.hpp"
#include "torchlet/nn/container.hpp"
#include "torchlet/nn/conv.hpp"
#include "torchlet/nn/freeze.hpp"
#include "torchlet/nn/init.hpp"
#include "torchlet/nn/linear.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/nn/pooling.hpp"
#include "torchlet/ops/arithmetic.hpp"

namespace torchlet::models {

/// Makes the normalisation layer over `channels` channels, like torchvision's `norm_layer` argument
/// (an empty function means nn::BatchNorm2d with default options).
using NormLayer = std::function<std::shared_ptr<nn::Module>(int64_t channels)>;

/// The keyword arguments of torchvision's ResNet, with its defaults: `{.num_classes = 10}`.
struct ResNetOptions {
  int64_t num_classes = 1000;      ///< outputs of fc
  bool zero_init_residual = false;  ///< zero the last BatchNorm weight of each block (each block starts as identity)
  int64_t groups = 1;               ///< groups of the 3x3 convs of Bottleneck blocks (ResNeXt's cardinality)
  int64_t width_per_group = 64;     ///< channels per group of Bottleneck blocks (64: plain ResNet)
  /// Per layer2..layer4: replace the stride-2 of its first block by dilation (output stride 16 or 8; Bottleneck only)
  std::array<bool, 3> replace_stride_with_dilation{false, false, false};
  NormLayer norm_layer{};           ///< the normalisation layer; empty: nn::BatchNorm2d
};

namespace detail {
/// The norm layer `f` makes, or BatchNorm2d(channels) when `f` is empty.
inline std::shared_ptr<nn::Module> make_norm(const NormLayer& f, int64_t channels) {
  if (!f) return std::make_shared<nn::BatchNorm2d>(channels);
  std::shared_ptr<nn::Module> m = f(channels);
  TORCHLET_CHECK(m != nullptr, ValueError, "[ResNet] norm_layer returned a null module for ", channels, " channels");
  return m;
}
/// torchvision's conv3x3: 3x3, padding = dilation, no bias.
inline std::shared_ptr<nn::Conv2d> conv3x3(int64_t in, int64_t out, int64_t stride = 1, int64_t groups = 1,
                                           int64_t dilation = 1) {
  return std::make_shared<nn::Conv2d>(
      in, out, 3, nn::Conv2dOptions{.stride = stride, .padding = dilation, .dilation = dilation, .groups = groups, .bias = false});
}
/// torchvision's conv1x1: 1x1, no bias.
inline std::shared_ptr<nn::Conv2d> conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return std::make_shared<nn::Conv2d>(in, out, 1, nn::Conv2dOptions{.stride = stride, .bias = false});
}
/// Registers `downsample` as child "downsample" of `block` when it is not null (torchvision leaves it unregistered
/// when None, so such blocks have no downsample keys).
inline void register_downsample(nn::Module& block, std::shared_ptr<nn::Module> downsample) {
  if (downsample) block.register_module("downsample", std::move(downsample));
}
/// The block's identity branch: downsample(x) when it has one, else x.
inline Tensor shortcut(const nn::Module& block, const Tensor& x) {
  return block.has_module("downsample") ? block.get_submodule("downsample")->forward(x) : x;
}
}  // namespace detail

/// The block arguments torchvision's _make_layer passes (ResNet fills them; build blocks yourself with them).
struct BlockArgs {
  int64_t inplanes = 64;                    ///< input channels
  int64_t planes = 64;                      ///< base channels (the output has planes * expansion)
  int64_t stride = 1;                       ///< stride of the block (on its 3x3 conv: ResNet v1.5)
  std::shared_ptr<nn::Module> downsample{};  ///< the identity branch's conv1x1 + norm, or null
  int64_t groups = 1;                       ///< groups of the 3x3 conv
  int64_t base_width = 64;                  ///< width_per_group
  int64_t dilation = 1;                     ///< dilation (and padding) of the 3x3 conv
  NormLayer norm_layer{};                   ///< the normalisation layer; empty: BatchNorm2d
};

/// torchvision's BasicBlock (resnet18/34): conv3x3-bn-relu-conv3x3-bn plus the identity, then relu. Children:
/// conv1, bn1, relu, conv2, bn2[, downsample].
class BasicBlock : public nn::Module {
 public:
  static constexpr int64_t expansion = 1;  ///< output channels = planes * expansion

  /// A block as torchvision builds it; raises ValueError for groups != 1, base_width != 64 or dilation > 1.
  explicit BasicBlock(const BlockArgs& a)
      : conv1{this, "conv1", (check(a), detail::conv3x3(a.inplanes, a.planes, a.stride))},
        bn1{this, "bn1", detail::make_norm(a.norm_layer, a.planes)},
        relu{this, "relu", std::make_shared<nn::ReLU>(true)},
        conv2{this, "conv2", detail::conv3x3(a.planes, a.planes)},
        bn2{this, "bn2", detail::make_norm(a.norm_layer, a.planes)},
        stride(a.stride) {
    detail::register_downsample(*this, a.downsample);
  }
  nn::Child<nn::Conv2d> conv1;  ///< 3x3, stride
  nn::Child<nn::Module> bn1;    ///< norm over planes
  nn::Child<nn::ReLU> relu;     ///< ReLU(inplace=True)
  nn::Child<nn::Conv2d> conv2;  ///< 3x3
  nn::Child<nn::Module> bn2;    ///< norm over planes (zeroed by zero_init_residual)
  const int64_t stride;         ///< the block's stride

  /// The identity branch's module (conv1x1 + norm), or null when the block has none.
  std::shared_ptr<nn::Module> downsample() const { return has_module("downsample") ? get_submodule("downsample") : nullptr; }
  std::string name() const override { return "BasicBlock"; }  ///< "BasicBlock"
  /// relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
  Tensor forward(const Tensor& x) override {
    Tensor out = relu(bn1(conv1(x)));
    out = bn2(conv2(out));
    return relu(out + detail::shortcut(*this, x));
  }

 private:
  static void check(const BlockArgs& a) {
    TORCHLET_CHECK(a.groups == 1 && a.base_width == 64, ValueError,
                   "[BasicBlock] BasicBlock only supports groups=1 and base_width=64, got groups=", a.groups,
                   ", base_width=", a.base_width);
    TORCHLET_CHECK(a.dilation <= 1, ValueError, "[BasicBlock] Dilation > 1 not supported in BasicBlock, got dilation=",
                   a.dilation);
  }
};

/// torchvision's Bottleneck (resnet50 and up; ResNet v1.5: the stride sits on the 3x3 conv): conv1x1-bn-relu,
/// conv3x3 (groups, dilation)-bn-relu, conv1x1-bn, plus the identity, then relu. Children: conv1, bn1, conv2, bn2,
/// conv3, bn3, relu[, downsample]. Inner width = int(planes * base_width / 64) * groups.
class Bottleneck : public nn::Module {
 public:
  static constexpr int64_t expansion = 4;  ///< output channels = planes * expansion

  /// A block as torchvision builds it.
  explicit Bottleneck(const BlockArgs& a)
      : width(static_cast<int64_t>(static_cast<double>(a.planes) * (static_cast<double>(a.base_width) / 64.0)) * a.groups),
        conv1{this, "conv1", detail::conv1x1(a.inplanes, width)},
        bn1{this, "bn1", detail::make_norm(a.norm_layer, width)},
        conv2{this, "conv2", detail::conv3x3(width, width, a.stride, a.groups, a.dilation)},
        bn2{this, "bn2", detail::make_norm(a.norm_layer, width)},
        conv3{this, "conv3", detail::conv1x1(width, a.planes * expansion)},
        bn3{this, "bn3", detail::make_norm(a.norm_layer, a.planes * expansion)},
        relu{this, "relu", std::make_shared<nn::ReLU>(true)},
        stride(a.stride) {
    detail::register_downsample(*this, a.downsample);
  }
  const int64_t width;          ///< channels inside the block
  nn::Child<nn::Conv2d> conv1;  ///< 1x1 to width
  nn::Child<nn::Module> bn1;    ///< norm over width
  nn::Child<nn::Conv2d> conv2;  ///< 3x3, stride, groups, dilation
  nn::Child<nn::Module> bn2;    ///< norm over width
  nn::Child<nn::Conv2d> conv3;  ///< 1x1 to planes * 4
  nn::Child<nn::Module> bn3;    ///< norm over planes * 4 (zeroed by zero_init_residual)
  nn::Child<nn::ReLU> relu;     ///< ReLU(inplace=True)
  const int64_t stride;         ///< the block's stride

  /// The identity branch's module (conv1x1 + norm), or null when the block has none.
  std::shared_ptr<nn::Module> downsample() const { return has_module("downsample") ? get_submodule("downsample") : nullptr; }
  std::string name() const override { return "Bottleneck"; }  ///< "Bottleneck"
  /// relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x)).
  Tensor forward(const Tensor& x) override {
    Tensor out = relu(bn1(conv1(x)));
    out = relu(bn2(conv2(out)));
    out = bn3(conv3(out));
    return relu(out + detail::shortcut(*this, x));
  }
};

/// Which block a ResNet stacks.
enum class BlockKind {
  Basic,       ///< BasicBlock (expansion 1): resnet18, resnet34
  Bottleneck,  ///< Bottleneck (expansion 4): resnet50 and up, ResNeXt, Wide ResNet
};

/// torchvision's ResNet: conv1 (7x7/2) - bn1 - relu - maxpool (3x3/2) - layer1..layer4 - avgpool - flatten - fc.
/// Members are typed handles to the registered children, so `model->fc = std::make_shared<nn::Linear>(
/// model->fc_in_features(), 10)` replaces the head as `model.fc = nn.Linear(...)` does in PyTorch.
class ResNet : public nn::Module {
 public:
  /// Builds and initialises the network as torchvision's ResNet(block, layers, **options) does: convs
  /// kaiming_normal_(mode="fan_out", nonlinearity="relu"), norm weights 1 and biases 0, fc nn.Linear's default.
  ResNet(BlockKind block, std::array<int64_t, 4> layers, const ResNetOptions& options = {})
      : block(block),
        layers(layers),
        expansion(block == BlockKind::Basic ? BasicBlock::expansion : Bottleneck::expansion),
        groups(options.groups),
        base_width(options.width_per_group),
        norm_layer_(options.norm_layer),
        conv1{this, "conv1",
              (check(options),
               std::make_shared<nn::Conv2d>(3, 64, 7, nn::Conv2dOptions{.stride = 2, .padding = 3, .bias = false}))},
        bn1{this, "bn1", detail::make_norm(norm_layer_, 64)},
        relu{this, "relu", std::make_shared<nn::ReLU>(true)},
        maxpool{this, "maxpool", std::make_shared<nn::MaxPool2d>(3, nn::MaxPool2dOptions{.stride = 2, .padding = 1})},
        layer1{this, "layer1", make_layer(64, layers[0])},
        layer2{this, "layer2", make_layer(128, layers[1], 2, options.replace_stride_with_dilation[0])},
        layer3{this, "layer3", make_layer(256, layers[2], 2, options.replace_stride_with_dilation[1])},
        layer4{this, "layer4", make_layer(512, layers[3], 2, options.replace_stride_with_dilation[2])},
        avgpool{this, "avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(nn::Size2(1, 1))},
        fc{this, "fc", std::make_shared<nn::Linear>(512 * expansion, options.num_classes)} {
    for (const auto& [n, m] : named_modules()) {
      if (m->name() == "Conv2d" && m->has_parameter("weight")) {
        nn::init::kaiming_normal_(m->parameter("weight"), {.mode = "fan_out", .nonlinearity = "relu"});
      } else if (m->is_batchnorm()) {
        if (m->parameter("weight").defined()) nn::init::ones_(m->parameter("weight"));
        if (m->parameter("bias").defined()) nn::init::zeros_(m->parameter("bias"));
      }
    }
    if (options.zero_init_residual) {
      for (const auto& [n, m] : named_modules()) {
        const char* last = m->name() == "Bottleneck" ? "bn3" : m->name() == "BasicBlock" ? "bn2" : nullptr;
        if (last == nullptr) continue;
        const auto bn = m->get_submodule(last);
        if (bn->has_parameter("weight") && bn->parameter("weight").defined()) nn::init::zeros_(bn->parameter("weight"));
      }
    }
  }

  const BlockKind block;                  ///< the block kind
  const std::array<int64_t, 4> layers;    ///< blocks per layer, e.g. {3, 4, 6, 3}
  const int64_t expansion;                ///< 1 (BasicBlock) or 4 (Bottleneck)
  const int64_t groups;                   ///< groups of the Bottleneck 3x3 convs
  const int64_t base_width;               ///< width_per_group

 private:
  NormLayer norm_layer_;
  int64_t inplanes_ = 64;  // construction state of _make_layer
  int64_t dilation_ = 1;

 public:
  nn::Child<nn::Conv2d> conv1;               ///< 7x7, 3 -> 64, stride 2, padding 3, no bias
  nn::Child<nn::Module> bn1;                 ///< norm over 64 channels
  nn::Child<nn::ReLU> relu;                  ///< ReLU(inplace=True)
  nn::Child<nn::MaxPool2d> maxpool;          ///< 3x3, stride 2, padding 1
  nn::Child<nn::Sequential> layer1;          ///< blocks at 64 planes
  nn::Child<nn::Sequential> layer2;          ///< blocks at 128 planes, stride 2 (or dilation)
  nn::Child<nn::Sequential> layer3;          ///< blocks at 256 planes, stride 2 (or dilation)
  nn::Child<nn::Sequential> layer4;          ///< blocks at 512 planes, stride 2 (or dilation)
  nn::Child<nn::AdaptiveAvgPool2d> avgpool;  ///< output (1, 1)
  nn::Child<nn::Module> fc;                  ///< the head: Linear(512 * expansion, num_classes) until replaced

  /// Channels entering the head (512 for BasicBlock nets, 2048 for Bottleneck ones): `model.fc.in_features`.
  int64_t fc_in_features() const { return 512 * expansion; }
  /// The head as an nn::Linear; raises ValueError if fc was replaced by something else.
  std::shared_ptr<nn::Linear> fc_linear() const { return get_submodule<nn::Linear>("fc"); }
  /// Replaces the head by a new Linear(fc_in_features(), num_classes) with PyTorch's default init and returns it:
  /// `model.fc = nn.Linear(model.fc.in_features, num_classes)`.
  std::shared_ptr<nn::Linear> replace_fc(int64_t num_classes, bool bias = true) {
    auto head = std::make_shared<nn::Linear>(fc_in_features(), num_classes, bias);
    fc = head;
    return head;
  }
  /// Replaces the head by any module taking [N, fc_in_features()] (e.g. a Sequential of Dropout and Linear, or
  /// nn::Identity to get the pooled features).
  void replace_fc(std::shared_ptr<nn::Module> head) { fc = std::move(head); }

  /// Freezes everything but fc (requires_grad = false; with `.batchnorm_eval = true` the backbone's BatchNorms stay
  /// in eval mode so their running statistics stop moving) and makes fc trainable: the feature-extraction recipe.
  void freeze_backbone(const nn::FreezeOptions& options = {}) {
    for (const auto& [n, m] : named_children())
      if (n != "fc") nn::freeze(*m, options);
    fc->requires_grad_(true);
  }

  /// The feature map before avgpool: [N, fc_in_features(), H/32, W/32] (less downsampling with dilation).
  Tensor forward_features(const Tensor& x) {
    Tensor y = maxpool(relu(bn1(conv1(x))));
    return layer4(layer3(layer2(layer1(y))));
  }
  /// The backbone as a Sequential sharing this model's modules (conv1, bn1, relu, maxpool, layer1..layer4 under the
  /// same names), to put in a model of your own with a new head: its parameters are this model's.
  std::shared_ptr<nn::Sequential> features() const {
    std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> named;
    for (const auto& [n, m] : named_children())
      if (n != "avgpool" && n != "fc") named.emplace_back(n, m);
    return std::make_shared<nn::Sequential>(named);
  }
  std::string name() const override { return "ResNet"; }  ///< "ResNet"
  /// fc(flatten(avgpool(forward_features(x)), 1)): logits [N, num_classes].
  Tensor forward(const Tensor& x) override { return fc(avgpool(forward_features(x)).flatten(1)); }

 private:
  static int check(const ResNetOptions& o) {
    TORCHLET_CHECK(o.num_classes >= 0, ValueError, "[ResNet] num_classes must be non-negative, got ", o.num_classes);
    TORCHLET_CHECK(o.groups > 0 && o.width_per_group > 0, ValueError,
                   "[ResNet] groups and width_per_group must be positive, got groups=", o.groups,
                   ", width_per_group=", o.width_per_group);
    return 0;
  }
  // torchvision's _make_layer: the first block takes the stride (or, with dilate, the previous dilation while the
  // layer's dilation grows by the stride) and a downsample when the shape changes.
  std::shared_ptr<nn::Sequential> make_layer(int64_t planes, int64_t blocks, int64_t stride = 1, bool dilate = false) {
    TORCHLET_CHECK(blocks > 0, ValueError, "[ResNet] each layer needs at least one block, got ", blocks);
    const int64_t previous_dilation = dilation_;
    if (dilate) {
      dilation_ *= stride;
      stride = 1;
    }
    std::shared_ptr<nn::Module> downsample;
    if (stride != 1 || inplanes_ != planes * expansion)
      downsample = std::make_shared<nn::Sequential>(detail::conv1x1(inplanes_, planes * expansion, stride),
                                                    detail::make_norm(norm_layer_, planes * expansion));
    auto seq = std::make_shared<nn::Sequential>();
    seq->push_back(make_block({inplanes_, planes, stride, downsample, groups, base_width, previous_dilation, norm_layer_}));
    inplanes_ = planes * expansion;
    for (int64_t i = 1; i < blocks; ++i)
      seq->push_back(make_block({inplanes_, planes, 1, nullptr, groups, base_width, dilation_, norm_layer_}));
    return seq;
  }
  std::shared_ptr<nn::Module> make_block(const BlockArgs& a) const {
    if (block == BlockKind::Basic) return std::make_shared<BasicBlock>(a);
    return std::make_shared<Bottleneck>(a);
  }
};

namespace detail {
/// torchvision's _ovewrite_named_param: an option the architecture fixes may be left at its default or given the
/// same value; anything else raises ValueError with torchvision's text.
inline void overwrite_param(int64_t& value, int64_t default_value, int64_t fixed, const char* name) {
  TORCHLET_CHECK(value == default_value || value == fixed, ValueError, "[resnet] The parameter '", name,
                 "' expected value ", fixed, " but got ", value, " instead.");
  value = fixed;
}
/// A ResNet built with `opts` after fixing groups and width_per_group (0: leave as given).
inline std::shared_ptr<ResNet> make_resnet(BlockKind block, std::array<int64_t, 4> layers, ResNetOptions opts,
                                           int64_t groups = 0, int64_t width_per_group = 0) {
  if (groups) overwrite_param(opts.groups, 1, groups, "groups");
  if (width_per_group) overwrite_param(opts.width_per_group, 64, width_per_group, "width_per_group");
  return std::make_shared<ResNet>(block, layers, opts);
}
}  // namespace detail

/// ResNet-18: BasicBlock x {2, 2, 2, 2}, 11.7M parameters at 1000 classes.
inline std::shared_ptr<ResNet> resnet18(const ResNetOptions& o = {}) {
  return detail::make_resnet(BlockKind::Basic, {2, 2, 2, 2}, o);
}
/// ResNet-34: BasicBlock x {3, 4, 6, 3}, 21.8M parameters.
inline std::shared_ptr<ResNet> resnet34(const ResNetOptions& o = {}) {
  return detail::make_resnet(BlockKind::Basic, {3, 4, 6, 3}, o);
}
/// ResNet-50: Bottleneck x {3, 4, 6, 3}, 25.6M parameters.
inline std::shared_ptr<ResNet> resnet50(const ResNetOptions& o = {}) {
  return detail::make_resnet(BlockKind::Bottleneck, {3, 4, 6, 3}, o);
}
/// ResNet-101: Bottleneck x {3, 4, 23, 3}, 44.5M parameters.
inline std::shared_ptr<ResNet> resnet101(const ResNetOptions& o = {}) {
  return detail::make_resnet(BlockKind::Bottleneck, {3, 4, 23, 3}, o);
}
/// ResNet-152: Bottleneck x {3, 8, 36, 3}, 60.2M parameters.
inline std::shared_ptr<ResNet> resnet152(const ResNetOptions& o = {}) {
  return detail::make_resnet(BlockKind::Bottleneck, {3, 8, 36, 3}, o);
}
/// ResNeXt-50 32x4d: resnet50 with groups 32, width_per_group 4 (25.0M parameters).
inline std::shared_ptr<ResNet> resnext50_32x4d(const ResNetOptions& o = {}) {
  return detail::make_resnet(BlockKind::Bottleneck, {3, 4, 6, 3}, o, 32, 4);
}
/// ResNeXt-101 32x8d: resnet101 with groups 32, width_per_group 8 (88.8M parameters).
inline std::shared_ptr<ResNet> resnext101_32x8d(const ResNetOptions& o = {}) {
  return detail::make_resnet(BlockKind::Bottleneck, {3, 4, 23, 3}, o, 32, 8);
}
/// ResNeXt-101 64x4d: resnet101 with groups 64, width_per_group 4 (83.5M parameters).
inline std::shared_ptr<ResNet> resnext101_64x4d(const ResNetOptions& o = {}) {
  return detail::make_resnet(BlockKind::Bottleneck, {3, 4, 23, 3}, o, 64, 4);
}
/// Wide ResNet-50-2: resnet50 with width_per_group 128 (68.9M parameters).
inline std::shared_ptr<ResNet> wide_resnet50_2(const ResNetOptions& o = {}) {
  return detail::make_resnet(BlockKind::Bottleneck, {3, 4, 6, 3}, o, 0, 128);
}
/// Wide ResNet-101-2: resnet101 with width_per_group 128 (126.9M parameters).
inline std::shared_ptr<ResNet> wide_resnet101_2(const ResNetOptions& o = {}) {
  return detail::make_resnet(BlockKind::Bottleneck, {3, 4, 23, 3}, o, 0, 128);
}

/// The architecture names resnet() takes, in torchvision's order.
inline std::vector<std::string> resnet_names() {
  return {"resnet18",        "resnet34",         "resnet50",         "resnet101",       "resnet152",
          "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"};
}

/// The architecture called `arch` ("resnet50", ..., as torchvision.models names it); raises ValueError naming the
/// choices for an unknown name.
inline std::shared_ptr<ResNet> resnet(const std::string& arch, const ResNetOptions& o = {}) {
  using Factory = std::shared_ptr<ResNet> (*)(const ResNetOptions&);
  static const std::pair<const char*, Factory> table[] = {
      {"resnet18", resnet18},         {"resnet34", resnet34},
      {"resnet50", resnet50},         {"resnet101", resnet101},
      {"resnet152", resnet152},       {"resnext50_32x4d", resnext50_32x4d},
      {"resnext101_32x8d", resnext101_32x8d}, {"resnext101_64x4d", resnext101_64x4d},
      {"wide_resnet50_2", wide_resnet50_2},   {"wide_resnet101_2", wide_resnet101_2}};
  for (const auto& [name, make] : table)
    if (arch == name) return make(o);
  std::string names;
  for (const std::string& n : resnet_names()) {
    if (!names.empty()) names += ", ";
    names += n;
  }
  TORCHLET_THROW(ValueError, "[resnet] unknown architecture \"", arch, "\" (choices: ", names, ")");
}
}  // namespace torchlet::models
