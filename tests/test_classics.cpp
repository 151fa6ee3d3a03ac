// torchvision's other classics (alexnet, vgg11/13/16/19 with and without BatchNorm, squeezenet1_0/1_1) against real
// torchvision 0.14 (tests/fixtures/gen/classics.py): state_dict keys, shapes and order and parameter counts of all 11
// architectures, printed forms, initialisation statistics, options; filled with the closed-form weight formula
// (formula_weights.hpp, the same in both languages): float32 eval logits of all 11, and one float64 train step's
// logits, loss and gradients for alexnet, vgg11_bn and squeezenet1_1. The train step is built with dropout=0: train
// mode stays deterministic (PyTorch's dropout with p=0 is the identity, and so is torchlet's) while BatchNorm still
// normalises with batch statistics as in real training. Plus save_model / load_model of a classic.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "formula_weights.hpp"
#include "helpers.hpp"
#include "model_checks.hpp"
#include "torchlet/checkpoint/files.hpp"
#include "torchlet/models.hpp"
#include "torchlet/ops/loss.hpp"
#include "torchlet/ops/reduction.hpp"

using namespace torchlet;
using testing::check_close;
using testing::fixture;
using testing::text_fixture;
using namespace testing::model_checks;

namespace {

bool has_batchnorm(const nn::Module& model) {
  for (const auto& [n, m] : model.named_modules())
    if (m->is_batchnorm()) return true;
  return false;
}

double max_abs(const Tensor& t) { return max(abs(t)).to(kFloat64).item<double>(); }

/// Registry options `{'num_classes': 10}` plus `extra`, and for a VGG `'init_weights': False`: the formula overwrites
/// every parameter anyway, and skipping VGG's N(0, 0.01) draws over 120M classifier weights saves seconds.
Value options_for(const std::string& arch, std::initializer_list<std::pair<Value, Value>> extra = {}) {
  Value options = Value::dict({{"num_classes", 10}});
  for (const auto& [k, v] : extra) options[k] = v;
  if (arch.rfind("vgg", 0) == 0) options["init_weights"] = false;
  return options;
}

/// Architecture `arch` with 10 classes built through the registry, filled with the formula; models with BatchNorm
/// get gen/classics.py's three train-mode forwards (running statistics that matter).
std::shared_ptr<nn::Module> prepared(const std::string& arch) {
  auto model = build_architecture(arch, options_for(arch));
  testing::fill_formula(*model);
  if (has_batchnorm(*model)) {
    model->train();
    autograd::NoGradGuard no_grad;
    for (uint64_t j = 0; j < 3; ++j) (*model)(testing::formula_image(j));
  }
  return model;
}

/// Float32 eval logits of `arch` equal torchvision's within 1e-4 of their scale.
void check_eval_logits(const std::string& arch) {
  INFO("architecture ", arch);
  auto model = prepared(arch);
  model->eval();
  autograd::NoGradGuard no_grad;
  const Tensor logits = (*model)(testing::formula_image(3));
  CHECK(logits.dtype() == kFloat32);
  CHECK(logits.sizes() == Shape{2, 10});
  check_close_scaled(logits, fixture("cl_" + arch + "_eval_logits_f32"), 1e-4);
}

/// One float64 train step (dropout 0) of `arch`: logits, loss and the gradients of `grads` (each sliced as
/// gen/classics.py slices it, by `slice`) equal torchvision's within 1e-6 of their scale.
void check_train_step(const std::string& arch, const std::vector<std::string>& grads,
                      const std::function<Tensor(const std::string&, const Tensor&)>& slice) {
  INFO("architecture ", arch);
  auto model = build_architecture(arch, options_for(arch, {{"dropout", 0.0}}));
  testing::fill_formula(*model);
  model->to(kFloat64);
  model->train();
  model->zero_grad();
  const Tensor logits = (*model)(testing::formula_image(3).to(kFloat64));
  const Tensor loss = cross_entropy(logits, tensor<int64_t>({3, 7}));
  loss.backward();
  CHECK(logits.dtype() == kFloat64);
  check_close_scaled(logits, fixture("cl_" + arch + "_train_logits"), 1e-7);
  check_close(loss, fixture("cl_" + arch + "_train_loss"), 1e-7, 0);
  for (const std::string& n : grads) {
    INFO("gradient of ", n);
    const Tensor g = model->get_parameter(n).grad();
    REQUIRE(g.defined());
    check_close_scaled(slice(n, g), fixture("cl_" + arch + "_grad_" + underscored(n)), 1e-6);
  }
}
/// State_dict keys, shapes and order and parameter counts of each of `archs` (default options; VGGs without their
/// init, which changes no key or shape) equal torchvision's.
void check_keys_and_counts(const std::vector<std::string>& archs) {
  auto counts = read_counts("cl_counts");
  REQUIRE(counts.size() == 11);
  for (const std::string& arch : archs) {
    INFO("architecture ", arch);
    REQUIRE(counts.count(arch) == 1);
    Value options = Value::dict();
    if (arch.rfind("vgg", 0) == 0) options["init_weights"] = false;
    auto model = build_architecture(arch, options);
    const int64_t numel = testing::model_checks::check_keys_and_counts(*model, "cl_keys_" + arch, counts[arch]);
    if (arch == "vgg16") CHECK(numel == 138357544);
  }
}
}  // namespace

TEST_SUITE("classics") {
TEST_CASE("the registry knows every classic, in torchvision's order within each family") {
  const std::vector<std::string> classics = {"alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16",
                                             "vgg16_bn", "vgg19", "vgg19_bn", "squeezenet1_0", "squeezenet1_1"};
  const auto names = models::model_names();
  REQUIRE(names.size() == models::resnet_names().size() + classics.size());
  CHECK(std::vector<std::string>(names.begin() + 10, names.end()) == classics);
  for (const auto& n : names) CHECK(has_architecture(n));
}

TEST_CASE("alexnet and the SqueezeNets have torchvision's state_dict keys, shapes, order and parameter counts") {
  check_keys_and_counts({"alexnet", "squeezenet1_0", "squeezenet1_1"});
}

TEST_CASE("vgg11 and vgg13 (with and without BatchNorm) have torchvision's keys, shapes, order and counts") {
  check_keys_and_counts({"vgg11", "vgg11_bn", "vgg13", "vgg13_bn"});
}

TEST_CASE("vgg16 and vgg19 (with and without BatchNorm) have torchvision's keys, shapes, order and counts") {
  check_keys_and_counts({"vgg16", "vgg16_bn", "vgg19", "vgg19_bn"});
}

TEST_CASE("printed forms equal torchvision's") {
  CHECK(models::alexnet()->repr() + "\n" == text_fixture("cl_repr_alexnet"));
  // (VGGs without their init: the printed form does not show it, and N(0, 0.01) over 120M weights takes seconds)
  CHECK(models::vgg11_bn({.num_classes = 10, .init_weights = false, .dropout = 0.25})->repr() + "\n" ==
        text_fixture("cl_repr_vgg11_bn"));
  CHECK(models::vgg16({.init_weights = false})->repr() + "\n" == text_fixture("cl_repr_vgg16"));
  CHECK(models::squeezenet1_0({.num_classes = 10})->repr() + "\n" == text_fixture("cl_repr_squeezenet1_0"));
  CHECK(models::squeezenet1_1({.dropout = 0.2})->repr() + "\n" == text_fixture("cl_repr_squeezenet1_1"));
}

TEST_CASE("VGG initialisation: convs kaiming_normal_ fan_out relu, bias 0; BatchNorm 1/0; Linear N(0, 0.01), bias 0") {
  manual_seed(3);
  auto model = models::vgg11_bn({.num_classes = 10});
  const Tensor w = model->get_parameter("features.22.weight");  // Conv2d(512, 512, 3): fan_out = 512 * 9
  CHECK(std_of(w) == doctest::Approx(std::sqrt(2.0 / (512 * 9))).epsilon(0.01));
  CHECK(std_of(model->get_parameter("features.0.weight")) == doctest::Approx(std::sqrt(2.0 / (64 * 9))).epsilon(0.05));
  CHECK(std_of(model->get_parameter("classifier.3.weight")) == doctest::Approx(0.01).epsilon(0.01));
  CHECK(std_of(model->get_parameter("classifier.6.weight")) == doctest::Approx(0.01).epsilon(0.05));
  for (const auto& [n, p] : model->named_parameters()) {
    const bool is_bias = n.compare(n.size() - 4, 4, "bias") == 0;
    const bool is_bn = model->get_submodule(n.substr(0, n.rfind('.')))->is_batchnorm();
    if (!is_bias && !is_bn) continue;
    INFO(n);
    const float expected = is_bias ? 0.0f : 1.0f;
    CHECK(min(p).item<float>() == expected);
    CHECK(max(p).item<float>() == expected);
  }
  // init_weights=false keeps PyTorch's layer defaults: Linear weight U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias too
  auto plain = models::vgg11({.num_classes = 10, .init_weights = false});
  const double bound = 1 / std::sqrt(4096.0);
  const Tensor fw = plain->get_parameter("classifier.6.weight");
  CHECK(max_abs(fw) <= bound);
  CHECK(max_abs(fw) > 0.95 * bound);
  CHECK(max_abs(plain->get_parameter("classifier.6.bias")) > 0);
  CHECK(max_abs(plain->get_parameter("features.0.bias")) > 0);
}

TEST_CASE("SqueezeNet initialisation: final conv N(0, 0.01), other convs kaiming_uniform_, biases 0") {
  manual_seed(5);
  for (const std::string arch : {"squeezenet1_0", "squeezenet1_1"}) {
    INFO("architecture ", arch);
    auto model = models::squeezenet(arch, {.num_classes = 100});
    CHECK(std_of(model->get_parameter("classifier.1.weight")) == doctest::Approx(0.01).epsilon(0.05));
    // kaiming_uniform_ (a = 0, fan_in, leaky_relu): U(-b, b) with b = sqrt(2) * sqrt(3 / fan_in)
    const Tensor w = model->get_parameter("features.12.expand3x3.weight");  // fan_in = 64 * 9
    const double b = std::sqrt(6.0 / (64 * 9));
    CHECK(max_abs(w) <= b);
    CHECK(max_abs(w) > 0.99 * b);
    CHECK(std_of(w) == doctest::Approx(b / std::sqrt(3.0)).epsilon(0.02));
    for (const auto& [n, p] : model->named_parameters())
      if (n.compare(n.size() - 4, 4, "bias") == 0) CHECK(max_abs(p) == 0.0);
  }
}

TEST_CASE("AlexNet keeps PyTorch's defaults: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))") {
  manual_seed(9);
  auto model = models::alexnet({.num_classes = 10});
  for (const auto& [layer, fan_in] : std::vector<std::pair<std::string, int64_t>>{
           {"features.0", 3 * 11 * 11}, {"features.8", 384 * 9}, {"classifier.4", 4096}, {"classifier.6", 4096}}) {
    INFO(layer);
    const double bound = 1 / std::sqrt(static_cast<double>(fan_in));
    const Tensor w = model->get_parameter(layer + ".weight");
    CHECK(max_abs(w) <= bound);
    CHECK(max_abs(w) > 0.9 * bound);
    CHECK(std_of(w) == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.05));
    CHECK(max_abs(model->get_parameter(layer + ".bias")) <= bound);
    CHECK(max_abs(model->get_parameter(layer + ".bias")) > 0);
  }
}

TEST_CASE("options: num_classes, dropout, unknown names and versions") {
  auto a = models::alexnet({.num_classes = 3, .dropout = 0.1});
  CHECK(a->num_classes == 3);
  CHECK(a->classifier->get_submodule<nn::Dropout>("0")->p == 0.1);
  CHECK(a->classifier->get_submodule<nn::Dropout>("3")->p == 0.1);
  CHECK(a->get_parameter("classifier.6.weight").sizes() == Shape{3, 4096});
  auto s = models::squeezenet1_1({.num_classes = 4, .dropout = 0.0});
  CHECK(s->version == "1_1");
  CHECK(s->get_parameter("classifier.1.weight").sizes() == Shape{4, 512, 1, 1});
  CHECK(s->classifier->get_submodule<nn::Dropout>("0")->p == 0.0);
  CHECK_THROWS_WITH_AS(models::SqueezeNet("1_2"), doctest::Contains("Unsupported SqueezeNet version 1_2"), ValueError);
  CHECK_THROWS_WITH_AS(models::vgg("vgg12"), doctest::Contains("unknown architecture \"vgg12\""), ValueError);
  CHECK_THROWS_WITH_AS(models::squeezenet("squeezenet2_0"), doctest::Contains("unknown architecture"), ValueError);
  CHECK_THROWS_WITH_AS(models::alexnet({.dropout = 1.5}), doctest::Contains("between 0 and 1"), ValueError);
  CHECK_THROWS_WITH_AS(build_architecture("vgg11", Value::dict({{"groups", 2}})),
                       doctest::Contains("unknown option 'groups'"), ValueError);
  CHECK_THROWS_WITH_AS(build_architecture("alexnet", Value::dict({{"num_classes", "ten"}})), doctest::Contains("int"),
                       Error);
  // a custom configuration through vgg_make_layers
  auto tiny = std::make_shared<models::VGG>(models::vgg_make_layers({16, models::kVGGMaxPool, 512}, true),
                                            models::VGGOptions{.num_classes = 2});
  CHECK(tiny->features->size() == 7);
  autograd::NoGradGuard no_grad;
  tiny->eval();
  CHECK((*tiny)(zeros({1, 3, 8, 8})).sizes() == Shape{1, 2});
}

TEST_CASE("alexnet and the SqueezeNets in float32: eval logits match torchvision's") {
  for (const std::string arch : {"alexnet", "squeezenet1_0", "squeezenet1_1"}) check_eval_logits(arch);
}

TEST_CASE("vgg11 and vgg11_bn in float32: eval logits match torchvision's") {
  for (const std::string arch : {"vgg11", "vgg11_bn"}) check_eval_logits(arch);
}

TEST_CASE("vgg13 and vgg13_bn in float32: eval logits match torchvision's") {
  for (const std::string arch : {"vgg13", "vgg13_bn"}) check_eval_logits(arch);
}

TEST_CASE("vgg16 and vgg16_bn in float32: eval logits match torchvision's") {
  for (const std::string arch : {"vgg16", "vgg16_bn"}) check_eval_logits(arch);
}

TEST_CASE("vgg19 and vgg19_bn in float32: eval logits match torchvision's") {
  for (const std::string arch : {"vgg19", "vgg19_bn"}) check_eval_logits(arch);
}

TEST_CASE("squeezenet1_1 in float64: a train step's logits, loss and gradients match torchvision's") {
  check_train_step("squeezenet1_1",
                   {"features.0.weight", "features.3.squeeze.weight", "features.12.expand3x3.weight",
                    "classifier.1.weight", "classifier.1.bias"},
                   [](const std::string& n, const Tensor& g) {
                     return n == "features.12.expand3x3.weight" ? g.slice(0, 0, 4) : g;
                   });
}

TEST_CASE("alexnet in float64: a train step's logits, loss and gradients match torchvision's") {
  check_train_step("alexnet",
                   {"features.0.weight", "features.10.weight", "classifier.1.weight", "classifier.6.weight",
                    "classifier.6.bias"},
                   [](const std::string& n, const Tensor& g) {
                     if (n == "features.0.weight") return g.slice(0, 0, 4);
                     if (n == "features.10.weight") return g.slice(0, 0, 2);
                     if (n == "classifier.1.weight") return g.slice(0, 0, 2).slice(1, 0, 256);
                     if (n == "classifier.6.weight") return g.slice(1, 0, 256);
                     return g;
                   });
}

TEST_CASE("vgg11_bn in float64: a train step's logits, loss and gradients match torchvision's") {
  check_train_step("vgg11_bn",
                   {"features.0.weight", "features.1.weight", "features.25.weight", "classifier.0.bias",
                    "classifier.6.weight", "classifier.6.bias"},
                   [](const std::string& n, const Tensor& g) {
                     if (n == "features.0.weight") return g.slice(0, 0, 8);
                     if (n == "features.25.weight") return g.slice(0, 0, 2);
                     if (n == "classifier.0.bias") return g.slice(0, 0, 256);
                     if (n == "classifier.6.weight") return g.slice(1, 0, 256);
                     return g;
                   });
}

TEST_CASE("save_model / load_model rebuild a classic from its name and options") {
  auto built = build_architecture("squeezenet1_1", Value::dict({{"num_classes", 7}, {"dropout", 0.25}}));
  testing::fill_formula(*built);
  const std::string path = "/tmp/torchlet_test_classics_model_" + std::to_string(::getpid()) + ".pth";
  save_model(path, *built);
  const Value file = load(path);
  CHECK(file.at("arch").as_string() == "squeezenet1_1");
  CHECK(file.at("arch_options").at("num_classes").as_int() == 7);
  auto rebuilt = load_model(path);
  std::remove(path.c_str());
  auto* squeezenet = dynamic_cast<models::SqueezeNet*>(rebuilt.get());
  REQUIRE(squeezenet != nullptr);
  CHECK(squeezenet->num_classes == 7);
  CHECK(squeezenet->classifier->get_submodule<nn::Dropout>("0")->p == 0.25);
  const auto a = built->state_dict(), b = rebuilt->state_dict();
  REQUIRE(a.size() == b.size());
  for (const auto& [k, t] : a) CHECK(max_abs(t.to(kFloat64) - b.find(k)->to(kFloat64)) == 0.0);
  built->eval();
  rebuilt->eval();
  autograd::NoGradGuard no_grad;
  check_close((*rebuilt)(testing::formula_image(0)), (*built)(testing::formula_image(0)), 0, 0);
}
}  // TEST_SUITE
