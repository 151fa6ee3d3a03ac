// torchvision's ResNet family against real torchvision 0.14 (tests/fixtures/gen/resnet.py): state_dict keys, shapes
// and order and parameter counts of all ten architectures, the printed form, initialisation statistics, and for
// resnet18 / resnet50 filled with a closed-form weight formula (the same in both languages): running statistics
// after train-mode forwards, eval logits, one train step's loss and gradients. Plus the fine-tuning moves
// (replace fc, freeze the backbone, features for a new head) and BatchNorm folding.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "formula_weights.hpp"
#include "helpers.hpp"
#include "model_checks.hpp"
#include "torchlet/checkpoint/files.hpp"
#include "torchlet/models.hpp"
#include "torchlet/nn/freeze.hpp"
#include "torchlet/ops/loss.hpp"
#include "torchlet/ops/reduction.hpp"

using namespace torchlet;
using testing::check_close;
using testing::fixture;
using testing::text_fixture;
using namespace testing::model_checks;

namespace {

/// A model with the formula's weights in `dtype` after gen/resnet.py's three train-mode forwards.
std::shared_ptr<models::ResNet> prepared(const std::string& arch, DType dtype = kFloat64) {
  auto model = models::resnet(arch, {.num_classes = 10});
  testing::fill_formula(*model);
  model->to(dtype);
  model->train();
  autograd::NoGradGuard no_grad;
  for (uint64_t j = 0; j < 3; ++j) (*model)(testing::formula_image(j).to(dtype));
  return model;
}

}  // namespace

TEST_SUITE("resnet") {
TEST_CASE("every architecture has torchvision's state_dict keys, shapes, order and parameter counts") {
  auto counts = read_counts("rn_counts");
  REQUIRE(counts.size() == models::resnet_names().size());
  for (const std::string& arch : models::resnet_names()) {
    INFO("architecture ", arch);
    check_keys_and_counts(*models::resnet(arch), "rn_keys_" + arch, counts[arch]);
  }
}

TEST_CASE("printed form equals torchvision's") {
  CHECK(models::resnet18()->repr() + "\n" == text_fixture("rn_repr_resnet18"));
  CHECK(models::resnext50_32x4d({.num_classes = 10})->repr() + "\n" == text_fixture("rn_repr_resnext50_32x4d"));
  auto dilated = models::resnet50({.num_classes = 10, .replace_stride_with_dilation = {false, true, true}});
  CHECK(dilated->repr() + "\n" == text_fixture("rn_repr_resnet50_dilated"));
  // output stride 8: a 64x64 image gives an 8x8 map
  autograd::NoGradGuard no_grad;
  dilated->eval();
  CHECK(dilated->forward_features(testing::formula_image(0)).sizes() == Shape{2, 2048, 8, 8});
}

TEST_CASE("initialisation follows torchvision: kaiming_normal_ fan_out for convs, BN 1/0, fc Linear default") {
  manual_seed(7);
  auto model = models::resnet50({.num_classes = 10});
  // a large conv: std = sqrt(2 / fan_out) = sqrt(2 / (512 * 9))
  const Tensor w = model->get_parameter("layer4.0.conv2.weight");
  CHECK(std_of(w) == doctest::Approx(std::sqrt(2.0 / (512 * 9))).epsilon(0.01));
  const Tensor w1 = model->get_parameter("layer3.0.conv1.weight");  // 1x1, fan_out = 256
  CHECK(std_of(w1) == doctest::Approx(std::sqrt(2.0 / 256)).epsilon(0.01));
  for (const auto& [n, p] : model->named_parameters()) {
    if (n.find("bn") == std::string::npos && n.find("downsample.1") == std::string::npos) continue;
    INFO(n);
    const bool weight = n.compare(n.size() - 6, 6, "weight") == 0;
    CHECK(min(p).item<float>() == (weight ? 1.0f : 0.0f));
    CHECK(max(p).item<float>() == (weight ? 1.0f : 0.0f));
  }
  // fc keeps nn.Linear's default: U(-1/sqrt(2048), 1/sqrt(2048)) for weight and bias
  const double bound = 1 / std::sqrt(2048.0);
  const Tensor fw = model->get_parameter("fc.weight");
  CHECK(max(abs(fw)).item<float>() <= bound);
  CHECK(max(abs(fw)).item<float>() > 0.95 * bound);
  CHECK(std_of(fw) == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.03));
  CHECK(max(abs(model->get_parameter("fc.bias"))).item<float>() <= bound);
  CHECK(model->fc_in_features() == 2048);
  CHECK(model->fc_linear()->out_features == 10);
}

TEST_CASE("zero_init_residual zeroes the last norm weight of every block") {
  auto basic = models::resnet18({.zero_init_residual = true});
  auto bottleneck = models::resnet50({.zero_init_residual = true});
  int zeroed = 0;
  for (const auto& [n, p] : basic->named_parameters()) {
    if (n.find(".bn2.weight") != std::string::npos && n.rfind("layer", 0) == 0) {
      CHECK(max(abs(p)).item<float>() == 0.0f);
      ++zeroed;
    }
    if (n.find(".bn1.weight") != std::string::npos) CHECK(min(p).item<float>() == 1.0f);
  }
  CHECK(zeroed == 8);
  zeroed = 0;
  for (const auto& [n, p] : bottleneck->named_parameters()) {
    if (n.find(".bn3.weight") != std::string::npos) {
      CHECK(max(abs(p)).item<float>() == 0.0f);
      ++zeroed;
    }
    if (n.find(".bn2.weight") != std::string::npos) CHECK(min(p).item<float>() == 1.0f);
  }
  CHECK(zeroed == 16);
}

TEST_CASE("options are checked as torchvision checks them") {
  CHECK_THROWS_WITH_AS(models::resnet18({.groups = 2}), doctest::Contains("BasicBlock only supports groups=1 and base_width=64"),
                       ValueError);
  CHECK_THROWS_WITH_AS(models::resnet18({.replace_stride_with_dilation = {false, false, true}}),
                       doctest::Contains("Dilation > 1 not supported in BasicBlock"), ValueError);
  CHECK_THROWS_WITH_AS(models::resnext50_32x4d({.groups = 8}),
                       doctest::Contains("The parameter 'groups' expected value 32 but got 8 instead."), ValueError);
  CHECK_THROWS_WITH_AS(models::resnet("resnet19"), doctest::Contains("unknown architecture \"resnet19\""), ValueError);
  CHECK(models::resnet_names().size() == 10);
  auto m = models::resnext101_64x4d({.num_classes = 3});
  CHECK(m->groups == 64);
  CHECK(m->base_width == 4);
  CHECK(m->get_parameter("layer1.0.conv2.weight").sizes() == Shape{256, 4, 3, 3});
}

TEST_CASE("norm_layer option and a strict state_dict round trip") {
  auto custom = models::resnet18({.num_classes = 5, .zero_init_residual = true, .norm_layer = [](int64_t c) {
    return std::make_shared<nn::BatchNorm2d>(c, nn::BatchNormOptions{.momentum = 0.01});
  }});
  auto bn = custom->get_submodule<nn::BatchNorm2d>("layer2.0.downsample.1");
  REQUIRE(bn->momentum.has_value());
  CHECK(*bn->momentum == 0.01);
  CHECK(max(abs(custom->get_parameter("layer1.1.bn2.weight"))).item<float>() == 0.0f);
  // a norm layer without parameters: no bn keys, zero_init_residual has nothing to zero
  auto plain = models::resnet18({.zero_init_residual = true, .norm_layer = [](int64_t) {
    return std::make_shared<nn::Identity>();
  }});
  CHECK(plain->state_dict().size() == 62 - 40);  // 62 parameters, 40 of them in norms; no buffers left

  // keys, shapes and metadata are torchvision's, so one model's state_dict loads strictly into another
  auto a = models::resnet18({.num_classes = 5});
  testing::fill_formula(*a);
  auto b = models::resnet18({.num_classes = 5});
  const auto r = b->load_state_dict(a->state_dict(), /*strict=*/true);
  CHECK(r.missing_keys.empty());
  CHECK(r.unexpected_keys.empty());
  CHECK(a->state_dict().versions->at("layer1.0.bn1") == 2);
  CHECK(a->state_dict().versions->at("layer1.0") == 1);
  a->eval();
  b->eval();
  autograd::NoGradGuard no_grad;
  check_close((*b)(testing::formula_image(2)), (*a)(testing::formula_image(2)), 0, 0);
}

TEST_CASE("resnet18 and resnet50 in float64: running statistics, eval logits, train-step gradients match torchvision") {
  // float64 on both sides: these deep gradients through train-mode BatchNorm over 8 values per channel are
  // ill-conditioned (PyTorch's own float32 and float64 resnet50 conv1 gradients differ by 4%)
  for (const std::string arch : {"resnet18", "resnet50"}) {
    INFO("architecture ", arch);
    auto model = prepared(arch);
    for (const std::string bn : {"bn1", "layer1.0.bn1", "layer4.1.bn2"}) {
      INFO("norm ", bn);
      const std::string base = "rn_" + arch + "_" + underscored(bn);
      check_close_scaled(model->get_buffer(bn + ".running_mean"), fixture(base + "_rm"), 1e-7);
      check_close_scaled(model->get_buffer(bn + ".running_var"), fixture(base + "_rv"), 1e-7);
      CHECK(model->get_buffer(bn + ".num_batches_tracked").item<int64_t>() == 3);
    }
    const Tensor x = testing::formula_image(3).to(kFloat64);
    model->eval();
    {
      autograd::NoGradGuard no_grad;
      const Tensor logits = (*model)(x);
      CHECK(logits.dtype() == kFloat64);
      check_close_scaled(logits, fixture("rn_" + arch + "_eval_logits"), 1e-7);
      const Tensor feats = model->forward_features(x).select(3, 0).select(2, 0);
      check_close_scaled(feats, fixture("rn_" + arch + "_features"), 1e-7);
    }
    model->train();
    model->zero_grad();
    const Tensor logits = (*model)(x);
    const Tensor loss = cross_entropy(logits, tensor<int64_t>({3, 7}));
    loss.backward();
    check_close_scaled(logits, fixture("rn_" + arch + "_train_logits"), 1e-7);
    check_close(loss, fixture("rn_" + arch + "_train_loss"), 1e-7, 0);
    const std::string last = arch == "resnet18" ? "layer4.1.conv2.weight" : "layer4.2.conv3.weight";
    for (const std::string& n : std::vector<std::string>{"conv1.weight", "bn1.weight", last, "fc.weight", "fc.bias"}) {
      INFO("gradient of ", n);
      Tensor g = model->get_parameter(n).grad();
      REQUIRE(g.defined());
      if (n == last) g = g.slice(0, 0, arch == "resnet18" ? 2 : 16);
      if (n == "fc.weight") g = g.slice(1, 0, 512);
      check_close_scaled(g, fixture("rn_" + arch + "_grad_" + underscored(n)), 1e-6);
    }
  }
}

TEST_CASE("resnet18 and resnet50 in float32: eval logits match torchvision's float32 ones") {
  for (const std::string arch : {"resnet18", "resnet50"}) {
    INFO("architecture ", arch);
    auto model = prepared(arch, kFloat32);
    model->eval();
    autograd::NoGradGuard no_grad;
    const Tensor logits = (*model)(testing::formula_image(3));
    CHECK(logits.dtype() == kFloat32);
    check_close_scaled(logits, fixture("rn_" + arch + "_eval_logits_f32"), 1e-4);
  }
}

TEST_CASE("replace fc, freeze the backbone: only the head trains and frozen BatchNorms keep their statistics") {
  auto model = models::resnet18();
  model->fc = std::make_shared<nn::Linear>(model->fc_in_features(), 10);  // model.fc = nn.Linear(512, 10)
  CHECK(model->state_dict().find("fc.weight")->sizes() == Shape{10, 512});
  auto head = model->replace_fc(4);  // the same in one call
  CHECK(model->fc_linear().get() == head.get());
  model->freeze_backbone({.batchnorm_eval = true});
  const auto trainable = nn::named_trainable_parameters(*model);
  REQUIRE(trainable.size() == 2);
  CHECK(trainable[0].first == "fc.weight");
  CHECK(trainable[1].first == "fc.bias");

  model->train();
  CHECK(model->is_training());
  CHECK_FALSE(model->bn1->is_training());
  CHECK_FALSE(model->get_submodule("layer3.1.bn2")->is_training());
  const Tensor rm = model->get_buffer("layer2.0.bn1.running_mean").clone();
  const Tensor loss = cross_entropy((*model)(testing::formula_image(0)), tensor<int64_t>({1, 2}));
  loss.backward();
  check_close(model->get_buffer("layer2.0.bn1.running_mean"), rm, 0, 0);
  CHECK(model->get_buffer("bn1.num_batches_tracked").item<int64_t>() == 0);
  CHECK_FALSE(model->get_parameter("conv1.weight").grad().defined());
  CHECK_FALSE(model->get_parameter("layer4.1.bn2.weight").grad().defined());
  CHECK(head->weight().grad().defined());
  CHECK(head->bias().grad().defined());

  // without batchnorm_eval the frozen BatchNorms still update their statistics in train mode
  auto other = models::resnet18({.num_classes = 4});
  other->freeze_backbone();
  other->train();
  {
    autograd::NoGradGuard no_grad;
    (*other)(testing::formula_image(0));
  }
  CHECK(other->get_buffer("bn1.num_batches_tracked").item<int64_t>() == 1);
  CHECK(nn::trainable_parameters(*other).size() == 2);
}

TEST_CASE("features() shares the backbone for a new head (the seed's Net with 1x1 convs)") {
  struct Net : nn::Module {
    explicit Net(const std::shared_ptr<models::ResNet>& base) : backbone{this, "backbone", base->features()} {}
    nn::Child<nn::Sequential> backbone;
    nn::Child<nn::Conv2d> reduce{this, "reduce", std::make_shared<nn::Conv2d>(512, 16, 1)};
    nn::Child<nn::Conv2d> classify{this, "classify", std::make_shared<nn::Conv2d>(16, 3, 1)};
    std::string name() const override { return "Net"; }
    Tensor forward(const Tensor& x) override { return mean(classify(relu(reduce(backbone(x)))), {2, 3}); }
  };
  auto base = models::resnet18();
  testing::fill_formula(*base);
  auto net = std::make_shared<Net>(base);
  const auto sd = net->state_dict();
  CHECK(sd.begin()->first == "backbone.conv1.weight");
  CHECK(sd.find("backbone.layer4.1.bn2.running_var") != nullptr);
  CHECK(sd.find("backbone.fc.weight") == nullptr);
  CHECK(sd.find("reduce.weight") != nullptr);
  CHECK(net->get_parameter("backbone.conv1.weight").is_same(base->get_parameter("conv1.weight")));
  net->eval();
  base->eval();
  autograd::NoGradGuard no_grad;
  const Tensor x = testing::formula_image(1);
  CHECK((*net)(x).sizes() == Shape{2, 3});
  check_close(net->backbone(x), base->forward_features(x), 0, 0);
  CHECK(base->forward_features(x).sizes() == Shape{2, 512, 2, 2});
}

TEST_CASE("fold_batchnorm keeps eval logits within 1e-4 and drops the BatchNorms") {
  for (const std::string arch : {"resnet18", "resnet50"}) {
    INFO("architecture ", arch);
    auto model = prepared(arch, kFloat32);
    model->eval();
    autograd::NoGradGuard no_grad;
    const Tensor before = (*model)(testing::formula_image(3));
    const int folded = models::fold_batchnorm(*model);
    CHECK(folded == (arch == "resnet18" ? 20 : 53));
    const auto sd = model->state_dict();
    CHECK(sd.find("bn1.weight") == nullptr);
    CHECK(sd.find("conv1.bias") != nullptr);
    CHECK(sd.find("layer2.0.downsample.0.bias") != nullptr);
    const Tensor after = (*model)(testing::formula_image(3));
    check_close_scaled(after, before, 1e-4);
    check_close_scaled(after, fixture("rn_" + arch + "_eval_logits_f32"), 1e-4);
  }
}
}  // TEST_SUITE

TEST_CASE("save_model / load_model rebuild a ResNet from its name and options") {
  using namespace torchlet;
  CHECK(has_architecture("resnet18"));
  CHECK(has_architecture("wide_resnet101_2"));
  auto built = build_architecture("resnet18", Value::dict({{"num_classes", 7}, {"zero_init_residual", true}}));
  const std::string path = "/tmp/torchlet_test_resnet_model_" + std::to_string(::getpid()) + ".pth";
  save_model(path, *built);
  const Value file = load(path);
  CHECK(file.at("arch").as_string() == "resnet18");
  CHECK(file.at("arch_options").at("num_classes").as_int() == 7);
  auto rebuilt = load_model(path);
  std::remove(path.c_str());
  auto* resnet = dynamic_cast<models::ResNet*>(rebuilt.get());
  REQUIRE(resnet != nullptr);
  CHECK(resnet->fc_linear()->out_features == 7);
  const auto a = built->state_dict(), b = rebuilt->state_dict();
  REQUIRE(a.size() == b.size());
  for (const auto& [k, t] : a) CHECK(max(abs(t.to(kFloat64) - b.find(k)->to(kFloat64))).item<double>() == 0.0);
  CHECK_THROWS_WITH_AS(build_architecture("resnet18", Value::dict({{"classes", 7}})),
                       doctest::Contains("unknown option 'classes'"), ValueError);
}
