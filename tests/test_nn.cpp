// The nn layer: module tree, names, state_dict / load_state_dict (keys, order and error texts from real PyTorch,
// tests/fixtures/gen/nn.py), init formulas and statistics, BatchNorm2d training steps, freezing and replacing.
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "torchlet/autograd.hpp"
#include "torchlet/nn.hpp"
#include "torchlet/ops/reduction.hpp"

using namespace torchlet;
using testing::check_close;
using testing::fixture;
using testing::text_fixture;

namespace {

std::string shape_text(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

std::string dtype_text(DType t) {
  std::ostringstream os;
  os << t;
  return os.str();
}

/// The model gen/nn.py builds as `Net`, with the same structure and names.
struct Net : nn::Module {
  nn::Child<nn::Sequential> features{
      this, "features",
      std::make_shared<nn::Sequential>(
          std::make_shared<nn::Conv2d>(3, 4, 3, nn::Conv2dOptions{.padding = 1, .bias = false}),
          std::make_shared<nn::BatchNorm2d>(4), std::make_shared<nn::ReLU>(true),
          std::make_shared<nn::MaxPool2d>(3, nn::MaxPool2dOptions{.stride = 2, .padding = 1}),
          std::make_shared<nn::Conv2d>(4, 6, nn::Size2{3, 1}, nn::Conv2dOptions{.stride = 2, .groups = 2}),
          std::make_shared<nn::AvgPool2d>(2))};
  nn::Child<nn::ModuleList> blocks{
      this, "blocks", std::make_shared<nn::ModuleList>(std::make_shared<nn::Linear>(6, 6), std::make_shared<nn::Identity>())};
  nn::Child<nn::AdaptiveAvgPool2d> pool{this, "pool", std::make_shared<nn::AdaptiveAvgPool2d>(nn::Size2{1, 1})};
  nn::Child<nn::Flatten> flatten{this, "flatten", std::make_shared<nn::Flatten>()};
  nn::Child<nn::Dropout> drop{this, "drop", std::make_shared<nn::Dropout>(0.25)};
  nn::Child<nn::Linear> head{this, "head", std::make_shared<nn::Linear>(6, 5)};

  std::string name() const override { return "Net"; }
  Tensor forward(const Tensor& input) override {
    Tensor x = flatten(pool(features(input)));
    for (const auto& b : blocks->items()) x = b->forward(x);
    return head(drop(x));
  }
};

std::vector<std::string> names_of(const nn::Module::NamedTensors& named) {
  std::vector<std::string> out;
  for (const auto& [n, t] : named) out.push_back(n);
  return out;
}

/// The text of the StateDictError that loading `sd` raises.
std::string load_error(nn::Module& m, const nn::StateDict& sd, bool strict) {
  try {
    m.load_state_dict(sd, strict);
  } catch (const nn::StateDictError& e) {
    return e.what();
  }
  FAIL("load_state_dict did not raise");
  return {};
}
}  // namespace

TEST_CASE("nn: member names are checked") {
  nn::Module m;
  auto message = [&](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const ValueError& e) {
      return e.what();
    }
    return "no error";
  };
  CHECK(message([&] { m.register_parameter("a.b", zeros({2})); }) == "[Module] parameter name can't contain \".\": got \"a.b\"");
  CHECK(message([&] { m.register_buffer("", zeros({2})); }) == "[Module] buffer name can't be empty");
  CHECK(message([&] { m.register_module("x.y", std::make_shared<nn::ReLU>()); }) ==
        "[Module] module name can't contain \".\": got \"x.y\"");
  m.register_parameter("w", zeros({2}));
  CHECK(message([&] { m.register_parameter("w", zeros({2})); }) ==
        "[Module] cannot register parameter \"w\": Module already has a parameter named \"w\"");
  CHECK(message([&] { m.register_buffer("w", zeros({2})); }) ==
        "[Module] cannot register buffer \"w\": Module already has a parameter named \"w\"");
  CHECK(message([&] { m.register_module("w", std::make_shared<nn::ReLU>()); }) ==
        "[Module] cannot register module \"w\": Module already has a parameter named \"w\"");
  CHECK(message([&] { m.register_module("n", std::shared_ptr<nn::ReLU>()); }) ==
        "[Module] cannot register module \"n\" in Module: the module is null");
  CHECK_THROWS_AS(m.register_parameter("i", zeros({2}, kInt64)), DTypeError);  // ints cannot require grad
  CHECK(m.register_parameter("i", zeros({2}, kInt64), false).dtype() == kInt64);
  // a cycle
  auto a = std::make_shared<nn::Sequential>();
  auto b = a->push_back(std::make_shared<nn::Sequential>());
  CHECK_THROWS_AS(b->push_back(a), ValueError);
  // parameters are leaves that require grad by default
  CHECK(m.parameter("w").requires_grad());
  CHECK(m.parameter("w").is_leaf());
  CHECK_THROWS_AS(m.parameter("nope"), ValueError);
}

TEST_CASE("nn: names, order and state_dict keys match PyTorch") {
  auto net = std::make_shared<Net>();
  const nn::StateDict sd = net->state_dict();
  std::string keys;
  for (const auto& [k, v] : sd) keys += k + "\t" + shape_text(v.sizes()) + "\t" + dtype_text(v.dtype()) + "\n";
  CHECK(keys == text_fixture("nn_net_keys"));

  std::string params;
  for (const auto& [n, p] : net->named_parameters()) params += n + "\n";
  CHECK(params == text_fixture("nn_net_params"));

  std::string modules;
  for (const auto& [n, m] : net->named_modules()) modules += n + "\n";
  CHECK(modules == text_fixture("nn_net_modules"));

  REQUIRE(sd.versions.has_value());
  std::string meta;
  for (const auto& [n, m] : net->named_modules()) meta += n + "\t" + std::to_string(sd.versions->at(n)) + "\n";
  CHECK(meta == text_fixture("nn_net_metadata"));

  CHECK(net->repr() + "\n" == text_fixture("nn_net_repr"));

  // named_buffers, children, parameters(recurse=false), prefixes
  CHECK(names_of(net->named_buffers()) ==
        std::vector<std::string>{"features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked"});
  CHECK(net->children().size() == 6);
  CHECK(net->parameters(false).empty());
  CHECK(names_of(net->head->named_parameters("fc")) == std::vector<std::string>{"fc.weight", "fc.bias"});
  CHECK(net->state_dict("model.").keys().front() == "model.features.0.weight");

  // state_dict values are detached and share storage with the module
  const Tensor& w = sd.at("head.weight");
  CHECK_FALSE(w.requires_grad());
  CHECK(w.data_ptr() == net->head->weight().data_ptr());
  CHECK(net->get_parameter("features.4.bias").data_ptr() == sd.at("features.4.bias").data_ptr());
  CHECK(net->get_buffer("features.1.running_var").sizes() == Shape{4});
  CHECK(net->get_submodule<nn::BatchNorm2d>("features.1")->num_features == 4);
  CHECK_THROWS_AS(net->get_submodule<nn::Linear>("features.1"), ValueError);
  CHECK_THROWS_AS(net->get_submodule("features.9"), ValueError);
}

TEST_CASE("nn: a forward pass through the module tree") {
  manual_seed(5);
  auto net = std::make_shared<Net>();
  net->eval();
  const Tensor x = randn({2, 3, 16, 16});
  const Tensor y = (*net)(x);
  CHECK(y.sizes() == Shape{2, 5});
  // the same by hand through the functional ops
  auto& f = *net->features;
  Tensor h = f[0]->forward(x);
  for (size_t i = 1; i < f.size(); ++i) h = f[static_cast<int64_t>(i)]->forward(h);
  check_close(f.forward(x), h, 0, 0);
  CHECK(f[-1]->name() == "AvgPool2d");
  CHECK_THROWS_AS(f[6], IndexError);
  CHECK(f.at<nn::Conv2d>(4)->groups == 2);
  CHECK_THROWS_AS(f.at<nn::Linear>(4), ValueError);
  CHECK_THROWS_AS(net->blocks->forward(x), ValueError);  // ModuleList has no forward
}

TEST_CASE("nn: load_state_dict error texts are PyTorch's") {
  auto src = std::make_shared<Net>();
  const nn::StateDict sd = src->state_dict();

  // missing + unexpected, strict (a plain dict in Python: no metadata)
  nn::StateDict bad;
  for (const auto& [k, v] : sd)
    if (k != "head.bias") bad.insert(k, v);
  bad.insert("extra.weight", zeros({2}));
  bad.insert("features.1.running_avg", zeros({4}));
  bad.insert("features.0.bias", zeros({4}));
  auto net = std::make_shared<Net>();
  CHECK(load_error(*net, bad, true) == text_fixture("nn_err_missing_unexpected"));

  // non-strict: the lists
  const nn::LoadResult r = std::make_shared<Net>()->load_state_dict(bad, false);
  std::string lists = "missing: ";
  for (size_t i = 0; i < r.missing_keys.size(); ++i) lists += (i ? "," : "") + r.missing_keys[i];
  lists += "\nunexpected: ";
  for (size_t i = 0; i < r.unexpected_keys.size(); ++i) lists += (i ? "," : "") + r.unexpected_keys[i];
  CHECK(lists + "\n" == text_fixture("nn_nonstrict_result"));

  // a size mismatch raises even with strict = false; a 1-dim num_batches_tracked loads into the 0-dim buffer
  nn::StateDict mism;
  mism.update(sd);
  mism.insert("head.weight", zeros({10, 6}));
  mism.insert("features.1.num_batches_tracked", full({1}, 7, kInt64));
  CHECK(load_error(*std::make_shared<Net>(), mism, false) == text_fixture("nn_err_size"));

  // all three kinds
  nn::StateDict both;
  for (const auto& [k, v] : mism)
    if (k != "head.bias" && k != "features.1.running_var") both.insert(k, v);
  both.insert("head.extra", zeros({1}));
  CHECK(load_error(*std::make_shared<Net>(), both, true) == text_fixture("nn_err_all"));

  // the class name comes from name()
  auto seq = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(2, 3), std::make_shared<nn::ReLU>(),
                                              std::make_shared<nn::Linear>(3, 1));
  CHECK(load_error(*seq, nn::StateDict{{"0.weight", zeros({3, 2})}}, true) == text_fixture("nn_err_sequential"));
  // StateDictError is a torchlet::Error
  CHECK_THROWS_AS(seq->load_state_dict(nn::StateDict{}), Error);
}

TEST_CASE("nn: load_state_dict copies values, converts dtypes and keeps the tensors") {
  manual_seed(1);
  auto a = std::make_shared<Net>();
  auto b = std::make_shared<Net>();
  const Tensor w_before = b->head->weight();
  // train a's BN a little so buffers differ
  a->train();
  a->forward(randn({2, 3, 16, 16}));
  const nn::LoadResult r = b->load_state_dict(a->state_dict());
  CHECK(r.missing_keys.empty());
  CHECK(r.unexpected_keys.empty());
  CHECK(r.converted_keys.empty());
  for (const auto& [k, v] : a->state_dict()) check_close(b->state_dict().at(k), v, 0, 0);
  CHECK(b->head->weight().is_same(w_before));  // loaded in place: an optimizer's handle stays valid
  CHECK(b->head->weight().requires_grad());
  CHECK(b->get_buffer("features.1.num_batches_tracked").item<int64_t>() == 1);

  // float64 checkpoint into a float32 model: converted like copy_
  nn::StateDict sd64;
  for (const auto& [k, v] : a->state_dict()) sd64.insert(k, v.is_floating_point() ? v.to(kFloat64) : v);
  auto c = std::make_shared<Net>();
  const nn::LoadResult r64 = c->load_state_dict(sd64);
  CHECK(r64.converted_keys.size() == 11);
  CHECK(c->head->weight().dtype() == kFloat32);
  check_close(c->head->weight(), a->head->weight(), 0, 0);
}

TEST_CASE("nn: BatchNorm num_batches_tracked and checkpoint versions") {
  auto net = std::make_shared<Net>();
  net->get_buffer("features.1.num_batches_tracked").fill_(9);
  nn::StateDict sd = std::make_shared<Net>()->state_dict();
  sd.erase("features.1.num_batches_tracked");
  // with the metadata of a current model (version 2), the key is missing
  CHECK(load_error(*net, sd, true) ==
        "Error(s) in loading state_dict for Net:\n\tMissing key(s) in state_dict: \"features.1.num_batches_tracked\". ");
  // version 1 metadata, or none at all (an old checkpoint): tolerated and reset to 0, as PyTorch does
  (*sd.versions)["features.1"] = 1;
  CHECK(net->load_state_dict(sd).missing_keys.empty());
  CHECK(net->get_buffer("features.1.num_batches_tracked").item<int64_t>() == 0);
  net->get_buffer("features.1.num_batches_tracked").fill_(9);
  sd.versions.reset();
  CHECK(net->load_state_dict(sd).missing_keys.empty());
  CHECK(net->get_buffer("features.1.num_batches_tracked").item<int64_t>() == 0);
}

TEST_CASE("nn: BatchNorm2d training steps, running stats and eval match PyTorch") {
  auto bn = std::make_shared<nn::BatchNorm2d>(3);
  CHECK(bn->is_training());
  {
    autograd::NoGradGuard g;
    bn->weight().copy_(fixture("nn_bn_weight"));
    bn->bias().copy_(fixture("nn_bn_bias"));
  }
  for (int step = 0; step < 3; ++step) {
    CAPTURE(step);
    const Tensor y = bn->forward(fixture("nn_bn_x" + std::to_string(step)));
    check_close(y, fixture("nn_bn_y" + std::to_string(step)), 1e-5, 1e-5);
    check_close(bn->running_mean(), fixture("nn_bn_rm" + std::to_string(step)), 1e-5, 1e-6);
    check_close(bn->running_var(), fixture("nn_bn_rv" + std::to_string(step)), 1e-5, 1e-6);
  }
  CHECK(bn->num_batches_tracked().dtype() == kInt64);
  CHECK(bn->num_batches_tracked().dim() == 0);
  testing::check_equal(bn->num_batches_tracked(), fixture("nn_bn_nbt"));
  bn->eval();
  check_close(bn->forward(fixture("nn_bn_eval_x")), fixture("nn_bn_eval_y"), 1e-5, 1e-5);
  CHECK(bn->num_batches_tracked().item<int64_t>() == 3);  // eval does not count

  auto cma = std::make_shared<nn::BatchNorm2d>(3, nn::BatchNormOptions{.momentum = std::nullopt});
  for (int step = 0; step < 3; ++step) cma->forward(fixture("nn_bn_x" + std::to_string(step)));
  check_close(cma->running_mean(), fixture("nn_bn_cma_rm"), 1e-5, 1e-6);
  check_close(cma->running_var(), fixture("nn_bn_cma_rv"), 1e-5, 1e-6);
  CHECK(cma->extra_repr() == "3, eps=1e-05, momentum=None, affine=True, track_running_stats=True");

  CHECK_THROWS_AS(bn->forward(zeros({2, 3, 4})), ValueError);
  auto plain = std::make_shared<nn::BatchNorm2d>(3, nn::BatchNormOptions{.affine = false, .track_running_stats = false});
  CHECK(plain->state_dict().empty());
  plain->eval();
  CHECK(plain->forward(fixture("nn_bn_x0")).sizes() == Shape{2, 3, 4, 5});  // batch statistics without buffers
}

TEST_CASE("nn: init formulas and statistics match PyTorch") {
  std::istringstream in(text_fixture("nn_init"));
  std::map<std::string, std::pair<double, double>> want;
  std::string name, a, b;
  while (in >> name >> a >> b) want[name] = {std::stod(a), b == "nan" ? NAN : std::stod(b)};
  REQUIRE(want.size() == 24);

  for (const char* nl : {"linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"})
    CHECK(nn::init::calculate_gain(nl) == doctest::Approx(want[std::string("gain_") + nl].first).epsilon(1e-15));
  CHECK(nn::init::calculate_gain("leaky_relu", 0.2) == doctest::Approx(want["gain_leaky_relu_0.2"].first).epsilon(1e-15));
  CHECK(nn::init::calculate_gain("leaky_relu", std::sqrt(5.0)) ==
        doctest::Approx(want["gain_leaky_relu_sqrt5"].first).epsilon(1e-15));
  CHECK_THROWS_AS(nn::init::calculate_gain("swish"), ValueError);
  for (const Shape& s : {Shape{64, 3, 7, 7}, Shape{10, 512}, Shape{6, 2, 3, 1}}) {
    std::string key;
    for (size_t i = 0; i < s.size(); ++i) {
      if (i) key += "x";
      key += std::to_string(s[i]);
    }
    const auto [fi, fo] = nn::init::calculate_fan_in_and_fan_out(empty(s));
    CHECK(fi == static_cast<int64_t>(want["fan_in_" + key].first));
    CHECK(fo == static_cast<int64_t>(want["fan_out_" + key].first));
  }
  CHECK_THROWS_AS(nn::init::calculate_fan_in_and_fan_out(empty({5})), ValueError);
  CHECK_THROWS_AS(nn::init::kaiming_normal_(empty({4, 4}), {.mode = "fan_avg"}), ValueError);

  auto max_abs = [](const Tensor& t) { return max(abs(t)).item<double>(); };
  auto stdev = [](const Tensor& t) {
    const auto v = testing::values(t);
    double m = 0, s = 0;
    for (double x : v) m += x;
    m /= static_cast<double>(v.size());
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / static_cast<double>(v.size() - 1));
  };
  // our draws against the formula PyTorch uses (PyTorch's own draw shows the same picture)
  auto check_bound = [&](const std::string& key, double ours, double lo_frac) {
    CAPTURE(key);
    const auto [theory, torch_emp] = want.at(key);
    CHECK(ours <= theory * (1 + 1e-6));
    CHECK(ours >= theory * lo_frac);
    CHECK(torch_emp <= theory * (1 + 1e-6));
  };
  auto check_std = [&](const std::string& key, double ours, double rel) {
    CAPTURE(key);
    const auto [theory, torch_emp] = want.at(key);
    CHECK(ours == doctest::Approx(theory).epsilon(rel));
    CHECK(torch_emp == doctest::Approx(theory).epsilon(rel));
  };
  manual_seed(42);
  nn::Linear lin(400, 300);
  check_bound("linear_weight_bound", max_abs(lin.weight()), 0.999);
  check_std("linear_weight_std", stdev(lin.weight()), 0.02);
  check_bound("linear_bias_bound", max_abs(lin.bias()), 0.95);
  nn::Conv2d conv(16, 32, 3);
  check_bound("conv_weight_bound", max_abs(conv.weight()), 0.99);
  check_bound("conv_bias_bound", max_abs(conv.bias()), 0.8);
  check_bound("kaiming_uniform_bound", max_abs(nn::init::kaiming_uniform_(empty({256, 128}))), 0.999);
  check_std("kaiming_normal_fan_out_std",
            stdev(nn::init::kaiming_normal_(empty({64, 32, 3, 3}), {.mode = "fan_out", .nonlinearity = "relu"})), 0.02);
  check_bound("xavier_uniform_bound",
              max_abs(nn::init::xavier_uniform_(empty({200, 300}), nn::init::calculate_gain("tanh"))), 0.999);
  check_std("xavier_normal_std", stdev(nn::init::xavier_normal_(empty({200, 300}))), 0.02);

  // a given generator makes the draw reproducible; constants
  Generator g1(7), g2(7);
  nn::Linear l1(5, 4), l2(5, 4);
  l1.reset_parameters(g1);
  l2.reset_parameters(g2);
  check_close(l1.weight(), l2.weight(), 0, 0);
  check_close(l1.bias(), l2.bias(), 0, 0);
  CHECK(max_abs(nn::init::zeros_(l1.bias())) == 0);
  CHECK(sum(nn::init::constant_(l1.weight(), 0.5)).item<double>() == doctest::Approx(10.0));
  CHECK(l1.weight().requires_grad());  // filling under no_grad keeps the parameter a leaf
  CHECK(l1.weight().is_leaf());
}

TEST_CASE("nn: replacing a child updates the tree, state_dict and typed members") {
  auto net = std::make_shared<Net>();
  const auto old_head = net->head.ptr();
  net->head = std::make_shared<nn::Linear>(net->head->in_features, 10);  // model.fc = nn.Linear(..., 10)
  CHECK(net->head->out_features == 10);
  CHECK(net->get_submodule("head").get() == net->head.get());
  CHECK(net->get_parameter("head.weight").sizes() == Shape{10, 6});
  CHECK(net->state_dict().at("head.bias").sizes() == Shape{10});
  CHECK(net->named_parameters().back().first == "head.bias");
  CHECK(net->named_parameters().back().second.is_same(net->head->bias()));
  CHECK_FALSE(net->head.get() == old_head.get());

  // by name (and dotted path): the typed member follows
  auto h2 = net->replace_module("head", std::make_shared<nn::Linear>(6, 3, false));
  CHECK(net->head.get() == h2.get());
  CHECK_FALSE(net->state_dict().contains("head.bias"));
  CHECK(net->forward(randn({1, 3, 16, 16})).sizes() == Shape{1, 3});
  net->replace_module("features.4", std::make_shared<nn::Conv2d>(4, 6, 3, nn::Conv2dOptions{.stride = 2}));
  CHECK(net->state_dict().at("features.4.weight").sizes() == Shape{6, 4, 3, 3});
  CHECK(net->features->at<nn::Conv2d>(4)->groups == 1);
#if TORCHLET_NN_RTTI
  // a typed member cannot be given a module of another type through the untyped path
  CHECK_THROWS_AS(net->replace_module("head", std::make_shared<nn::Identity>()), ValueError);
#endif
  CHECK_THROWS_AS(net->replace_module("fc", std::make_shared<nn::Identity>()), ValueError);
  // an untyped child (Sequential's) can take anything single-input
  net->replace_module("features.5", std::make_shared<nn::Identity>());
  CHECK(net->repr().find("(5): Identity()") != std::string::npos);
}

TEST_CASE("nn: train/eval recursion, requires_grad_, freezing and BatchNorm eval") {
  auto net = std::make_shared<Net>();
  auto bn = net->get_submodule<nn::BatchNorm2d>("features.1");
  CHECK(net->is_training());
  net->eval();
  for (const auto& [n, m] : net->named_modules()) CHECK_MESSAGE(!m->is_training(), n);
  net->train();
  for (const auto& [n, m] : net->named_modules()) CHECK_MESSAGE(m->is_training(), n);
  net->features->eval();
  CHECK_FALSE(bn->is_training());
  CHECK(net->head->is_training());
  net->train();

  // requires_grad_ on a subtree; trainable_parameters
  net->features->requires_grad_(false);
  CHECK(names_of(nn::named_trainable_parameters(*net)) ==
        std::vector<std::string>{"blocks.0.weight", "blocks.0.bias", "head.weight", "head.bias"});
  CHECK(nn::trainable_parameters(net).size() == 4);
  CHECK(nn::trainable_parameters(net)[2].is_same(net->head->weight()));
  net->requires_grad_(true);
  CHECK(nn::trainable_parameters(net).size() == 9);

  // freeze the backbone with its BatchNorms kept in eval mode
  nn::freeze(net->features.ptr(), {.batchnorm_eval = true});
  CHECK(nn::trainable_parameters(net).size() == 4);
  net->train();
  CHECK_FALSE(bn->is_training());
  CHECK(net->features->is_training());
  const Tensor rm = bn->running_mean().clone();
  net->forward(randn({2, 3, 16, 16}));
  check_close(bn->running_mean(), rm, 0, 0);
  CHECK(bn->num_batches_tracked().item<int64_t>() == 0);
  nn::unfreeze(net->features.ptr());
  CHECK(bn->is_training());
  CHECK(nn::trainable_parameters(net).size() == 9);
  net->forward(randn({2, 3, 16, 16}));
  CHECK(bn->num_batches_tracked().item<int64_t>() == 1);

  // set_batchnorm_eval alone leaves requires_grad as it is
  nn::set_batchnorm_eval(net);
  CHECK_FALSE(bn->is_training());
  CHECK(bn->weight().requires_grad());
  net->train();
  CHECK_FALSE(bn->is_training());
  nn::set_batchnorm_eval(net, false);
  CHECK(bn->is_training());

  // Dropout follows the mode
  const Tensor x = ones({1000});
  auto drop = std::make_shared<nn::Dropout>(0.5);
  const Tensor y = drop->forward(x);
  const double zeros_n = sum(eq(y, 0.0)).item<double>();
  CHECK(zeros_n > 400);
  CHECK(zeros_n < 600);
  CHECK(max(y).item<double>() == 2.0);
  drop->eval();
  CHECK(drop->forward(x).is_same(x));
  CHECK_THROWS_AS(nn::Dropout(1.5), ValueError);
}

TEST_CASE("nn: zero_grad and to(dtype) keep the parameters") {
  auto net = std::make_shared<Net>();
  Tensor w = net->head->weight();
  w.set_grad(ones({5, 6}));
  net->blocks->at<nn::Linear>(0)->bias().set_grad(ones({6}));
  net->zero_grad();
  for (const Tensor& p : net->parameters()) CHECK_FALSE(p.grad().defined());

  w.set_grad(ones({5, 6}));
  net->features->requires_grad_(false);
  net->to(kFloat64);
  CHECK(w.dtype() == kFloat64);  // the same tensor, new data
  CHECK(w.is_same(net->head->weight()));
  CHECK(w.is_leaf());
  CHECK(w.requires_grad());
  CHECK(w.grad().dtype() == kFloat64);
  CHECK_FALSE(net->get_parameter("features.0.weight").requires_grad());
  CHECK(net->get_buffer("features.1.running_mean").dtype() == kFloat64);
  CHECK(net->get_buffer("features.1.num_batches_tracked").dtype() == kInt64);  // integer buffers stay
  for (const auto& [k, v] : net->state_dict())
    if (k.find("num_batches") == std::string::npos) CHECK_MESSAGE(v.dtype() == kFloat64, k);
  net->eval();
  CHECK(net->forward(randn({2, 3, 16, 16}, kFloat64)).dtype() == kFloat64);
  CHECK_THROWS_AS(net->to(kInt64), DTypeError);
  net->to(kFloat32);
  CHECK(w.dtype() == kFloat32);
}

TEST_CASE("nn: a shared parameter or module is listed once") {
  auto a = std::make_shared<nn::Linear>(4, 4);
  auto b = std::make_shared<nn::Linear>(4, 4);
  b->weight() = a->weight();  // tie the weights (decoder.weight = encoder.weight)
  nn::Sequential seq(a, b);
  CHECK(names_of(seq.named_parameters()) == std::vector<std::string>{"0.weight", "0.bias", "1.bias"});
  CHECK(seq.parameters().size() == 3);
  CHECK(seq.state_dict().size() == 4);  // state_dict lists every name, as PyTorch does

  auto shared = std::make_shared<nn::Linear>(2, 2);
  auto twice = std::make_shared<nn::Sequential>(shared, std::make_shared<nn::ReLU>(), shared);
  CHECK(twice->named_modules().size() == 3);  // "", "0", "1"
  CHECK(twice->children().size() == 2);
  CHECK(twice->parameters().size() == 2);
  CHECK(twice->state_dict().keys() == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK(twice->forward(ones({1, 2})).sizes() == Shape{1, 2});
}

TEST_CASE("nn: StateDict is an ordered dict") {
  nn::StateDict sd{{"b", zeros({1})}, {"a", ones({2})}};
  sd.insert("c", zeros({3}));
  sd.insert("b", ones({4}));  // replaced in place
  CHECK(sd.keys() == std::vector<std::string>{"b", "a", "c"});
  CHECK(sd.at("b").sizes() == Shape{4});
  CHECK(sd.erase("a"));
  CHECK_FALSE(sd.erase("a"));
  CHECK(sd.keys() == std::vector<std::string>{"b", "c"});
  CHECK(sd.find("c") != nullptr);
  CHECK_THROWS_AS(sd.at("zz"), IndexError);
  CHECK(sd.erase_if([](const std::string& k, const Tensor&) { return k == "c"; }) == 1);
  CHECK(sd.size() == 1);
  CHECK(sd.contains("b"));

  // recipe 4: keep only the pretrained entries the model still has, with matching shapes
  auto model = std::make_shared<Net>();
  model->head = std::make_shared<nn::Linear>(6, 10);
  nn::StateDict pretrained = std::make_shared<Net>()->state_dict();
  pretrained.insert("aux.weight", zeros({1}));
  nn::StateDict model_dict = model->state_dict();
  pretrained.erase_if([&](const std::string& k, const Tensor& v) {
    const Tensor* mine = model_dict.find(k);
    return mine == nullptr || mine->sizes() != v.sizes();
  });
  CHECK(pretrained.size() == model_dict.size() - 2);
  model_dict.update(pretrained);
  const nn::LoadResult r = model->load_state_dict(model_dict);
  CHECK(r.missing_keys.empty());
}

TEST_CASE("nn: printed forms and Python number formatting") {
  using nn::detail::py_float;
  CHECK(py_float(1e-5) == "1e-05");
  CHECK(py_float(0.1) == "0.1");
  CHECK(py_float(1.0) == "1.0");
  CHECK(py_float(0.0001) == "0.0001");
  CHECK(py_float(1e16) == "1e+16");
  CHECK(py_float(123456.0) == "123456.0");
  CHECK(py_float(-2.5) == "-2.5");
  CHECK(py_float(1.5e-7) == "1.5e-07");
  CHECK(py_float(0.0) == "0.0");
  CHECK(nn::Conv2d(3, 64, 7, {.stride = 2, .padding = 3, .bias = false}).repr() ==
        "Conv2d(3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)");
  CHECK(nn::MaxPool2d({2, 2}).repr() ==
        "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=0, dilation=1, ceil_mode=False)");
  CHECK(nn::AdaptiveAvgPool2d(1).repr() == "AdaptiveAvgPool2d(output_size=1)");
  CHECK(nn::ReLU().repr() == "ReLU()");
  CHECK(nn::Sequential().repr() == "Sequential()");
  std::ostringstream os;
  os << nn::Linear(2, 3, false);
  CHECK(os.str() == "Linear(in_features=2, out_features=3, bias=False)");
}
