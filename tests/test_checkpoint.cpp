// Loading checkpoints into models and optimizers (include/torchlet/checkpoint/): StateDict <-> Value with _metadata,
// load_weights and each of its options, the seed's checkpoint dict and optimizer resume, the architecture registry.
// Error texts, weights and training results come from real PyTorch 1.13 (tests/fixtures/gen/checkpoint.py).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>
#include <unistd.h>

#include "helpers.hpp"
#include "torchlet/checkpoint.hpp"
#include "torchlet/nn/activation.hpp"
#include "torchlet/nn/batchnorm.hpp"
#include "torchlet/nn/conv.hpp"
#include "torchlet/nn/flatten.hpp"
#include "torchlet/nn/linear.hpp"
#include "torchlet/nn/pooling.hpp"
#include "torchlet/ops/loss.hpp"
#include "torchlet/optim/adam.hpp"
#include "torchlet/optim/sgd.hpp"

using namespace torchlet;
using testing::check_close;
using testing::check_equal;
using testing::fixture;
using testing::text_fixture;

namespace {

/// gen/checkpoint.py's Net: conv1-bn1-relu-pool-flatten-fc.
struct Net : nn::Module {
  nn::Child<nn::Conv2d> conv1;
  nn::Child<nn::BatchNorm2d> bn1;
  nn::Child<nn::ReLU> relu;
  nn::Child<nn::AdaptiveAvgPool2d> pool;
  nn::Child<nn::Flatten> flatten;
  nn::Child<nn::Linear> fc;
  explicit Net(int64_t num_classes = 10)
      : conv1{this, "conv1", std::make_shared<nn::Conv2d>(3, 4, 3, nn::Conv2dOptions{.padding = 1, .bias = false})},
        bn1{this, "bn1", std::make_shared<nn::BatchNorm2d>(4)},
        relu{this, "relu", std::make_shared<nn::ReLU>()},
        pool{this, "pool", std::make_shared<nn::AdaptiveAvgPool2d>(nn::Size2{1, 1})},
        flatten{this, "flatten", std::make_shared<nn::Flatten>()},
        fc{this, "fc", std::make_shared<nn::Linear>(4, num_classes)} {}
  std::string name() const override { return "Net"; }
  Tensor forward(const Tensor& x) override { return fc(flatten(pool(relu(bn1(conv1(x)))))); }
};

const std::vector<std::string> kKeys = {"conv1.weight",    "bn1.weight",       "bn1.bias",
                                        "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
                                        "fc.weight",       "fc.bias"};

/// PyTorch's `_metadata` of Net, in its order.
Value net_metadata(const std::string& prefix = "") {
  ValueDict meta;
  if (!prefix.empty()) meta.set(Value(""), Value::dict({{"version", 1}}));
  const std::string p = prefix.empty() ? "" : prefix.substr(0, prefix.size() - 1);
  meta.set(Value(p), Value::dict({{"version", 1}}));
  for (const char* m : {"conv1", "bn1", "relu", "pool", "flatten", "fc"})
    meta.set(Value(prefix + m), Value::dict({{"version", std::string(m) == "bn1" ? 2 : 1}}));
  return Value(std::move(meta));
}

/// The pretrained 1000-class state_dict as torch.load gives it (optionally with `prefix` on every key, like
/// DataParallel's "module.", and with or without _metadata).
Value pretrained(const std::string& prefix = "", bool metadata = true) {
  ValueDict d;
  for (const auto& k : kKeys) d.set(Value(prefix + k), Value(fixture("cp_pre_" + k)));
  if (metadata) d.set(Value("__attributes__"), Value::dict({{"_metadata", net_metadata(prefix)}}));
  return Value(std::move(d));
}

/// Runs `fn` and returns the text of the StateDictError it raises.
template <class F>
std::string state_dict_error(F fn) {
  try {
    fn();
  } catch (const nn::StateDictError& e) {
    return e.what();
  }
  FAIL("no StateDictError");
  return {};
}

/// Runs `fn` and returns the text of the ValueError it raises.
template <class F>
std::string value_error(F fn) {
  try {
    fn();
  } catch (const ValueError& e) {
    return e.what();
  }
  FAIL("no ValueError");
  return {};
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("to_value: a model's state_dict with PyTorch's _metadata, in module order") {
  Net net(1000);
  const Value v = to_value(static_cast<const nn::Module&>(net));
  REQUIRE(v.is_dict());
  const auto& entries = v.as_dict().entries();
  REQUIRE(entries.size() == kKeys.size() + 1);
  for (size_t i = 0; i < kKeys.size(); ++i) {
    CHECK(entries[i].first.as_string() == kKeys[i]);
    CHECK(entries[i].second.is_tensor());
  }
  CHECK(entries.back().first.as_string() == "__attributes__");
  CHECK(entries.back().second.at("_metadata") == net_metadata());
  // the tensors are the model's (shared storage), not copies
  CHECK(v.at("fc.weight").as_tensor().storage().is_same(net.fc->weight().storage()));

  // from a StateDict (which keeps versions as a set): keyed prefixes in key order, keyless ones after, sorted
  const Value w = to_value(net.state_dict());
  std::vector<std::string> order;
  for (const auto& [k, x] : w.at("__attributes__").at("_metadata").as_dict()) order.push_back(k.as_string());
  CHECK(order == std::vector<std::string>{"", "conv1", "bn1", "fc", "flatten", "pool", "relu"});

  nn::StateDict plain;
  plain.insert("a", zeros({2}));
  CHECK(to_value(plain).size() == 1);  // no versions -> no __attributes__
}

TEST_CASE("to_state_dict: versions from _metadata, clear errors") {
  const nn::StateDict sd = to_state_dict(pretrained());
  CHECK(sd.keys() == kKeys);
  REQUIRE(sd.versions.has_value());
  CHECK(sd.versions->size() == 7);
  CHECK(sd.versions->at("bn1") == 2);
  CHECK(sd.versions->at("") == 1);

  CHECK_FALSE(to_state_dict(pretrained("", false)).versions.has_value());

  // _metadata entries without a "version" are skipped
  Value v = Value::dict({{"w", zeros({1})}});
  v["__attributes__"] = Value::dict({{"_metadata", Value::dict({{"", Value::dict()}, {"m", Value::dict({{"version", 3}})}})}});
  const nn::StateDict s2 = to_state_dict(v);
  REQUIRE(s2.versions.has_value());
  CHECK(s2.versions->size() == 1);
  CHECK(s2.versions->at("m") == 3);

  // round trip keeps tensors and versions
  const nn::StateDict back = to_state_dict(to_value(sd));
  CHECK(back.keys() == sd.keys());
  CHECK(*back.versions == *sd.versions);
  CHECK(back.at("fc.bias").is_same(sd.at("fc.bias")));

  CHECK(value_error([] { to_state_dict(Value::dict({{"a", zeros({1})}, {"epoch", 3}})); }) ==
        "[to_state_dict] entry \"epoch\" is a int, expected a Tensor");
  CHECK(contains(value_error([] { to_state_dict(Value::list()); }), "expected a dict of tensors, got a list"));
}

TEST_CASE("load_weights strict: values copied, report complete") {
  Net net(1000);
  const LoadReport r = load_weights(net, pretrained());
  CHECK(r.source.empty());
  CHECK(r.loaded == 8);
  CHECK(r.all_matched());
  CHECK(r.converted.empty());
  for (const auto& k : kKeys) {
    INFO(k);
    check_equal(net.state_dict().at(k), fixture("cp_pre_" + k));
  }
  CHECK(contains(format(r), "loaded 8 tensors from the root: all keys matched"));
}

TEST_CASE("load_weights strict failures raise PyTorch's exact text") {
  Net net(1000);
  CHECK(state_dict_error([&] { load_weights(net, pretrained("module.")); }) == text_fixture("cp_err_dp"));

  Value extra = pretrained();
  extra.as_dict().erase(Value("fc.bias"));
  extra.as_dict().erase(Value("__attributes__"));
  extra["head.weight"] = zeros({2});
  CHECK(state_dict_error([&] { load_weights(net, extra); }) == text_fixture("cp_err_extra"));

  Net small(10);
  CHECK(state_dict_error([&] { load_weights(small, pretrained()); }) == text_fixture("cp_err_size"));
  // a size mismatch raises even when not strict, as in PyTorch
  CHECK(state_dict_error([&] { load_weights(small, pretrained(), {.strict = false}); }) == text_fixture("cp_err_size"));

  // non-strict: reported, not raised; the matching keys are loaded
  const LoadReport r = load_weights(net, extra, {.strict = false});
  CHECK(r.missing_keys == std::vector<std::string>{"fc.bias"});
  CHECK(r.unexpected_keys == std::vector<std::string>{"head.weight"});
  CHECK(r.loaded == 7);
  CHECK_FALSE(r.all_matched());
  check_equal(net.fc->weight(), fixture("cp_pre_fc.weight"));
  const std::string text = format(r);
  CHECK(contains(text, "missing, kept the model's tensor (1):\n    fc.bias"));
  CHECK(contains(text, "unexpected, not loaded (1):\n    head.weight"));
}

TEST_CASE("load_weights: DataParallel's module. and torch.compile's _orig_mod. stripped") {
  Net net(1000);
  const LoadReport r = load_weights(net, pretrained("module."), {.renames = {RenameRule::strip_prefix("module.")}});
  CHECK(r.loaded == 8);
  CHECK(r.all_matched());
  REQUIRE(r.renamed.size() == 8);
  CHECK(r.renamed[0].from == "module.conv1.weight");
  CHECK(r.renamed[0].to == "conv1.weight");
  check_equal(net.bn1->running_var(), fixture("cp_pre_bn1.running_var"));
  CHECK(contains(format(r), "renamed (8):\n    module.conv1.weight -> conv1.weight"));

  Net net2(1000);
  CHECK(load_weights(net2, pretrained("_orig_mod."), {.renames = {RenameRule::strip_prefix("_orig_mod.")}}).loaded == 8);
  check_equal(net2.conv1->weight(), fixture("cp_pre_conv1.weight"));

  // _metadata is renamed with the keys: bn1 keeps version 2, so a missing num_batches_tracked is an error
  // (PyTorch's text once "module." is stripped from keys and _metadata) ...
  Value no_nbt = pretrained("module.");
  no_nbt.as_dict().erase(Value("module.bn1.num_batches_tracked"));
  CHECK(state_dict_error([&] {
          load_weights(net, no_nbt, {.renames = {RenameRule::strip_prefix("module.")}});
        }) == text_fixture("cp_err_dp_nbt"));
  // ... while without _metadata BatchNorm takes the checkpoint as pre-version-2 and sets it to 0, as PyTorch does
  Value old = pretrained("module.", false);
  old.as_dict().erase(Value("module.bn1.num_batches_tracked"));
  const LoadReport r2 = load_weights(net, old, {.renames = {RenameRule::strip_prefix("module.")}});
  CHECK(r2.missing_keys.empty());
  CHECK(net.bn1->num_batches_tracked().item<int64_t>() == 0);
  CHECK(r2.loaded == 7);
}

TEST_CASE("load_weights: regex rename rules, applied in order") {
  ValueDict d;
  for (const auto& k : kKeys) d.set(Value("backbone." + k), Value(fixture("cp_pre_" + k)));
  Net net(1000);
  // torchvision densenet-style: rename with groups, then a second rule sees the first one's output
  const LoadReport r = load_weights(net, Value(d),
                                    {.renames = {RenameRule::parse(R"(^backbone\.(.*)=>net.$1)"),
                                                 RenameRule::regex(R"(^net\.)", "")}});
  CHECK(r.all_matched());
  CHECK(r.renamed.size() == 8);
  CHECK(r.renamed[6].from == "backbone.fc.weight");
  CHECK(r.renamed[6].to == "fc.weight");
  check_equal(net.fc->weight(), fixture("cp_pre_fc.weight"));

  // add_prefix, and the prefixes of _metadata follow
  Net plain(1000);
  const Value with_prefix = pretrained("model.");
  const LoadReport r2 = load_weights(plain, with_prefix,
                                     {.renames = {RenameRule::strip_prefix("model."), RenameRule::add_prefix("x."),
                                                  RenameRule::strip_prefix("x.")}});
  CHECK(r2.all_matched());

  CHECK(contains(value_error([] { RenameRule::parse("no arrow"); }), "expected \"REGEX=>REPLACEMENT\""));
  CHECK(contains(value_error([] { RenameRule::regex("(", ""); }), "[RenameRule] invalid regex \"(\""));
  CHECK(value_error([&] { load_weights(net, pretrained(), {.renames = {RenameRule::regex("weight|bias", "w")}}); }) ==
        "[load_weights] the rename rules map both \"bn1.weight\" and \"bn1.bias\" to \"bn1.w\"");
  // an nn::StateDict source: another model's state_dict under other names
  Net src(1000), dst(1000);
  const LoadReport r3 = load_weights(dst, src.state_dict(""), {.renames = {RenameRule::add_prefix("a."),
                                                                          RenameRule::strip_prefix("a.")}});
  CHECK(r3.all_matched());
  check_equal(dst.fc->weight(), src.fc->weight());
  CHECK(RenameRule::strip_prefix("module.").apply_to_prefix("module") == "");
  CHECK(RenameRule::add_prefix("module.").apply_to_prefix("") == "module");
  CHECK(RenameRule::parse("a=>b").describe() == "regex \"a\" => \"b\"");
}

TEST_CASE("load_weights: the state_dict found inside a checkpoint") {
  const Value optimizer = Value::dict({{"state", Value::dict()}, {"param_groups", Value::list()}});
  const Value ckpt = Value::dict({{"epoch", 3}, {"state_dict", pretrained()}, {"best_acc", 0.5}, {"optimizer", optimizer}});
  Net net(1000);
  const LoadReport r = load_weights(net, ckpt);
  CHECK(r.source == "state_dict");
  CHECK(r.loaded == 8);
  CHECK(contains(format(r), "from \"state_dict\""));

  for (const char* key : {"model", "model_state_dict", "net", "state_dict_ema"}) {
    Net n(1000);
    CHECK(load_weights(n, Value::dict({{"epoch", 1}, {key, pretrained()}})).source == key);
  }
  // nested, found by path
  Net nested(1000);
  CHECK(load_weights(nested, Value::dict({{"model", Value::dict({{"step", 2}, {"ema", pretrained()}})}})).source ==
        "model.ema");
  CHECK(load_weights(nested, Value::dict({{"model", Value::dict({{"ema", pretrained()}})}}), {.top_level_key = "model.ema"})
            .loaded == 8);

  // ambiguous: an error listing the candidates, resolved by top_level_key
  const Value two = Value::dict({{"state_dict", pretrained()}, {"state_dict_ema", pretrained()}, {"epoch", 9}});
  CHECK(value_error([&] { load_weights(net, two); }) ==
        "[load_weights] the checkpoint holds several state_dicts: \"state_dict\", \"state_dict_ema\"; choose one "
        "with WeightLoadOptions::top_level_key");
  CHECK(load_weights(net, two, {.top_level_key = "state_dict_ema"}).source == "state_dict_ema");

  CHECK(value_error([&] { load_weights(net, two, {.top_level_key = "model"}); }) ==
        "[load_weights] the checkpoint has no entry \"model\" (it holds 'state_dict': dict, 'state_dict_ema': dict, "
        "'epoch': int)");
  CHECK(value_error([&] { load_weights(net, two, {.top_level_key = "epoch"}); }) ==
        "[load_weights] checkpoint entry \"epoch\" is not a state_dict (a dict of tensors) or a pickled module: it "
        "holds a int");
  CHECK(value_error([&] { load_weights(net, Value::dict({{"epoch", 1}, {"optimizer", optimizer}})); }) ==
        "[load_weights] found no state_dict (a dict of tensors) in the checkpoint: it holds 'epoch': int, "
        "'optimizer': dict");
  CHECK(contains(value_error([&] { load_weights(net, Value(3)); }), "got a int"));
}

TEST_CASE("load_weights: a 1000-class fc into a 10-class model with skip_shape_mismatch") {
  Net net(10);
  const Tensor fc_w = net.fc->weight().clone(), fc_b = net.fc->bias().clone();
  const Value ckpt = Value::dict({{"state_dict", pretrained()}});
  const LoadReport r = load_weights(net, ckpt, {.skip_shape_mismatch = true});
  REQUIRE(r.shape_mismatches.size() == 2);
  CHECK(r.shape_mismatches[0].key == "fc.weight");
  CHECK(r.shape_mismatches[0].file_shape == Shape{1000, 4});
  CHECK(r.shape_mismatches[0].model_shape == Shape{10, 4});
  CHECK(r.shape_mismatches[1].key == "fc.bias");
  CHECK(r.missing_keys.empty());
  CHECK(r.unexpected_keys.empty());
  CHECK(r.loaded == 6);
  check_equal(net.fc->weight(), fc_w);  // the new head is kept
  check_equal(net.fc->bias(), fc_b);
  check_equal(net.conv1->weight(), fixture("cp_pre_conv1.weight"));  // the backbone is loaded
  check_equal(net.bn1->num_batches_tracked(), fixture("cp_pre_bn1.num_batches_tracked"));
  CHECK(contains(format(r), "shape mismatch, kept the model's tensor (2):\n    fc.weight: checkpoint [1000, 4], "
                            "model [10, 4]\n    fc.bias: checkpoint [1000], model [10]"));
}

TEST_CASE("load_weights filter_to_model: the seed's partial load") {
  // a model without the head: the checkpoint's fc is dropped
  struct Features : nn::Module {
    nn::Child<nn::Conv2d> conv1{this, "conv1", std::make_shared<nn::Conv2d>(3, 4, 3, nn::Conv2dOptions{.padding = 1, .bias = false})};
    nn::Child<nn::BatchNorm2d> bn1{this, "bn1", std::make_shared<nn::BatchNorm2d>(4)};
  };
  Features f;
  const LoadReport r = load_weights(f, pretrained(), {.filter_to_model = true});
  CHECK(r.filtered_keys == std::vector<std::string>{"fc.weight", "fc.bias"});
  CHECK(r.missing_keys.empty());
  CHECK(r.loaded == 6);
  check_equal(f.bn1->running_mean(), fixture("cp_pre_bn1.running_mean"));
  CHECK(contains(format(r), "filtered out (not in the model) (2):\n    fc.weight\n    fc.bias"));
  // without the filter, strict loading fails on the unexpected keys
  CHECK(contains(state_dict_error([&] { load_weights(f, pretrained()); }),
                 "Unexpected key(s) in state_dict: \"fc.weight\", \"fc.bias\". "));

  // a bigger model: its extra layer keeps its own weights, even with strict (model_dict.update(pretrained))
  struct Bigger : Net {
    nn::Child<nn::Linear> extra{this, "extra", std::make_shared<nn::Linear>(1000, 3)};
    Bigger() : Net(1000) {}
  };
  Bigger b;
  const Tensor extra_w = b.extra->weight().clone();
  const LoadReport r2 = load_weights(b, pretrained(), {.filter_to_model = true});
  CHECK(r2.missing_keys == std::vector<std::string>{"extra.weight", "extra.bias"});
  CHECK(r2.filtered_keys.empty());
  CHECK(r2.loaded == 8);
  check_equal(b.extra->weight(), extra_w);
  check_equal(b.fc->weight(), fixture("cp_pre_fc.weight"));
  CHECK(contains(state_dict_error([&] { load_weights(b, pretrained()); }),
                 "Missing key(s) in state_dict: \"extra.weight\", \"extra.bias\". "));

  // with a 10-class head, filtering alone is not enough (the key exists): add skip_shape_mismatch
  Net small(10);
  CHECK(state_dict_error([&] { load_weights(small, pretrained(), {.filter_to_model = true}); }) ==
        text_fixture("cp_err_size"));
  CHECK(load_weights(small, pretrained(), {.filter_to_model = true, .skip_shape_mismatch = true}).shape_mismatches.size() ==
        2);
}

TEST_CASE("load_weights: dtype conversions reported") {
  ValueDict d;
  for (const auto& k : kKeys) {
    const Tensor t = fixture("cp_pre_" + k);
    d.set(Value(k), Value(t.is_floating_point() ? t.to(kFloat64) : t));
  }
  Net net(1000);
  const LoadReport r = load_weights(net, Value(d));
  REQUIRE(r.converted.size() == 7);
  CHECK(r.converted[0].key == "conv1.weight");
  CHECK(r.converted[0].file_dtype == kFloat64);
  CHECK(r.converted[0].model_dtype == kFloat32);
  CHECK(net.fc->weight().dtype() == kFloat32);
  check_equal(net.fc->weight(), fixture("cp_pre_fc.weight"));
  CHECK(contains(format(r), "dtype converted (7):\n    conv1.weight: float64 -> float32"));
}

TEST_CASE("load_weights: a pickled whole module (torch.save(model))") {
  // what the unpickler makes of torch.save(model): inert objects with _parameters, _buffers, _modules
  auto module = [](const char* cls, Value params, Value buffers, Value modules) {
    return Value::dict({{"__class__", cls}, {"training", true}, {"_parameters", std::move(params)},
                        {"_buffers", std::move(buffers)}, {"_non_persistent_buffers_set", Value::list()},
                        {"_modules", std::move(modules)}});
  };
  auto pre = [](const char* k) { return Value(fixture(std::string("cp_pre_") + k)); };
  const Value none = Value::dict();
  const Value whole = module(
      "gen.checkpoint.Net", none, none,
      Value::dict({{"conv1", module("torch.nn.modules.conv.Conv2d", Value::dict({{"weight", pre("conv1.weight")}, {"bias", Value()}}), none, none)},
                   {"bn1", module("torch.nn.modules.batchnorm.BatchNorm2d",
                                  Value::dict({{"weight", pre("bn1.weight")}, {"bias", pre("bn1.bias")}}),
                                  Value::dict({{"running_mean", pre("bn1.running_mean")},
                                               {"running_var", pre("bn1.running_var")},
                                               {"num_batches_tracked", pre("bn1.num_batches_tracked")}}),
                                  none)},
                   {"relu", module("torch.nn.modules.activation.ReLU", none, none, none)},
                   {"fc", module("torch.nn.modules.linear.Linear",
                                 Value::dict({{"weight", pre("fc.weight")}, {"bias", pre("fc.bias")}}), none, none)}}));
  Net net(1000);
  const LoadReport r = load_weights(net, whole);
  CHECK(r.source == "(pickled module)");
  CHECK(r.all_matched());
  check_equal(net.bn1->running_var(), fixture("cp_pre_bn1.running_var"));

  Net net2(1000);
  CHECK(load_weights(net2, Value::dict({{"epoch", 1}, {"model", whole}})).source == "model (pickled module)");
}

namespace {
/// Net(10) with gen/checkpoint.py's initial weights.
std::shared_ptr<Net> initial_net() {
  auto net = std::make_shared<Net>(10);
  ValueDict d;
  for (const auto& k : kKeys) d.set(Value(k), Value(fixture("cp_init_" + k)));
  load_weights(*net, Value(d));
  net->train();
  return net;
}

void train_steps(Net& net, optim::Optimizer& opt, int steps) {
  const Tensor x = fixture("cp_x"), y = fixture("cp_y");
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    Tensor loss = cross_entropy(net(x), y);
    loss.backward();
    opt.step();
  }
}

/// 3 steps, checkpoint, 2 steps; then a fresh model and optimizer resumed from the checkpoint for 2 steps must
/// end bit-identical, and both match PyTorch's 5-step run.
template <class Opt, class Options>
void check_resume(const std::string& name, const Options& options) {
  auto net = initial_net();
  Opt opt(net->parameters(), options);
  train_steps(*net, opt, 3);
  const Value ckpt = deep_copy(make_checkpoint(3, *net, 0.5, opt));
  CHECK(ckpt.as_dict().keys() == std::vector<Value>{"epoch", "state_dict", "best_acc", "optimizer"});
  train_steps(*net, opt, 2);

  auto resumed = std::make_shared<Net>(10);  // fresh random weights, fresh optimizer
  resumed->train();
  Opt opt2(resumed->parameters(), options);
  const RestoredCheckpoint info = restore_checkpoint(ckpt, *resumed, &opt2);
  CHECK(info.epoch == 3);
  CHECK(info.best_acc == 0.5);
  CHECK(info.weights.all_matched());
  train_steps(*resumed, opt2, 2);
  for (const auto& k : kKeys) {
    INFO(name, " ", k);
    check_equal(resumed->state_dict().at(k), net->state_dict().at(k));
    check_close(net->state_dict().at(k), fixture("cp_" + name + "_final_" + k), 1e-4, 1e-5);
  }
}
}  // namespace

TEST_CASE("make_checkpoint / restore_checkpoint: optimizer state restored, the next steps equal an uninterrupted run") {
  check_resume<optim::SGD>("sgd", optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
  check_resume<optim::Adam>("adam", optim::AdamOptions{.lr = 0.01});
}

TEST_CASE("restore_checkpoint without an optimizer, and its errors") {
  auto net = initial_net();
  optim::SGD opt(net->parameters(), {.lr = 0.1, .momentum = 0.9});
  const Value ckpt = make_checkpoint(7, *net, 0.25, opt);
  CHECK(ckpt.at("state_dict").at("__attributes__").at("_metadata") == net_metadata());
  CHECK(ckpt.at("optimizer").at("param_groups").at(0).at("momentum").as_double() == 0.9);
  Net other(10);
  const RestoredCheckpoint info = restore_checkpoint(ckpt, other, nullptr);
  CHECK(info.epoch == 7);
  CHECK(info.best_acc == 0.25);
  check_equal(other.fc->weight(), net->fc->weight());
  CHECK(contains(value_error([&] { restore_checkpoint(Value::dict({{"state_dict", pretrained()}}), other, &opt); }),
                 "the checkpoint has no \"optimizer\" entry"));
  CHECK(contains(value_error([&] { restore_checkpoint(Value::dict({{"epoch", 1}}), other, nullptr); }),
                 "the checkpoint has no entry \"state_dict\""));
  CHECK(checkpoint_path("ckpt", "20240101-1200", 0.91234) == "ckpt/m-20240101-12000.9123.pth.tar");

  // deep_copy: tensors are copies, the rest is equal
  const Value copy = deep_copy(ckpt);
  CHECK_FALSE(copy.at("state_dict").at("fc.weight").as_tensor().storage().is_same(net->fc->weight().storage()));
  check_equal(copy.at("state_dict").at("fc.weight").as_tensor(), net->fc->weight());
  CHECK(copy.at("optimizer").at("param_groups") == ckpt.at("optimizer").at("param_groups"));
}

TEST_CASE("architecture registry: build, record, rebuild") {
  register_architecture("test_tiny_net", [](const Value& options) -> std::shared_ptr<nn::Module> {
    const auto n = options.find(Value("num_classes"));
    return std::make_shared<Net>(n ? n->as_int() : 10);
  });
  CHECK(has_architecture("test_tiny_net"));
  const auto names = architecture_names();
  CHECK(std::find(names.begin(), names.end(), "test_tiny_net") != names.end());

  auto model = build_architecture("test_tiny_net", Value::dict({{"num_classes", 7}}));
  CHECK(model->get_parameter("fc.weight").sizes() == Shape{7, 4});
  const auto spec = architecture_of(*model);
  REQUIRE(spec.has_value());
  CHECK(spec->name == "test_tiny_net");
  CHECK(spec->options.at("num_classes").as_int() == 7);
  Net unregistered(3);
  CHECK_FALSE(architecture_of(unregistered).has_value());

  const Value record = model_record(*model);
  CHECK(record.as_dict().keys() == std::vector<Value>{"arch", "arch_options", "state_dict"});
  CHECK(record.at("arch").as_string() == "test_tiny_net");
  const auto rebuilt = model_from_record(record);
  for (const auto& [k, t] : model->state_dict()) {
    INFO(k);
    check_equal(rebuilt->state_dict().at(k), t);
  }
  const Value record2 = model_record(unregistered, {"test_tiny_net", Value::dict({{"num_classes", 3}})});
  CHECK(model_from_record(record2)->get_parameter("fc.bias").sizes() == Shape{3});

  CHECK(contains(value_error([] { build_architecture("no_such_arch"); }),
                 "[build_architecture] unknown architecture \"no_such_arch\" (registered: "));
  CHECK(contains(value_error([&] { model_record(unregistered); }), "was not made by build_architecture"));
  CHECK(contains(value_error([] { model_from_record(Value::dict({{"arch", 1}})); }), "expected str at \"arch\""));
  CHECK_FALSE(register_architecture("test_tiny_net", [](const Value&) { return std::make_shared<Net>(2); }));
}

// ---- file level: real torch.save files from PyTorch 1.13, and torchlet's own files read back ----------------
namespace {
std::string fixture_path(const std::string& name) { return std::string(TORCHLET_FIXTURES) + "/" + name; }

/// A scratch file path in the temp folder, removed when the guard goes.
struct TempPath {
  std::string path;
  explicit TempPath(const std::string& name)
      : path((std::filesystem::temp_directory_path() / ("torchlet_test_checkpoint_" + std::to_string(::getpid()) + "_" + name)).string()) {}
  ~TempPath() { std::filesystem::remove(path); }
};
}  // namespace

TEST_CASE("files: a DataParallel state_dict and a pickled whole module written by PyTorch") {
  Net net(1000);
  const LoadReport r = load_weights(net, fixture_path("cp_dp.pth"), {.renames = {RenameRule::strip_prefix("module.")}});
  CHECK(r.all_matched());
  CHECK(r.loaded == 8);
  for (const auto& k : kKeys) {
    INFO(k);
    check_equal(net.state_dict().at(k), fixture("cp_pre_" + k));
  }
  // the file's _metadata came through: prefixes renamed along with the keys
  const nn::StateDict sd = to_state_dict(load(fixture_path("cp_dp.pth")));
  REQUIRE(sd.versions.has_value());
  CHECK(sd.versions->at("module.bn1") == 2);
  CHECK(sd.versions->count("module") == 1);

  Net whole(1000);
  const LoadReport w = load_weights(whole, std::string(fixture_path("cp_whole.pth")));
  CHECK(w.source == "(pickled module)");
  CHECK(w.all_matched());
  check_equal(whole.fc->weight(), fixture("cp_pre_fc.weight"));
}

TEST_CASE("files: load_checkpoint resumes PyTorch's training checkpoints (SGD momentum, Adam)") {
  for (const std::string name : {"sgd", "adam"}) {
    INFO(name);
    Net net(10);
    net.train();
    std::unique_ptr<optim::Optimizer> opt;
    if (name == "sgd") opt = std::make_unique<optim::SGD>(net.parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
    else opt = std::make_unique<optim::Adam>(net.parameters(), optim::AdamOptions{.lr = 0.01});
    const RestoredCheckpoint info = load_checkpoint(fixture_path("cp_ckpt_" + name + ".pth.tar"), net, opt.get());
    CHECK(info.epoch == 3);
    CHECK(info.best_acc == 0.5);
    train_steps(net, *opt, 2);
    for (const auto& k : kKeys) {
      INFO(k);
      check_close(net.state_dict().at(k), fixture("cp_" + name + "_final_" + k), 1e-4, 1e-5);
    }
  }
}

TEST_CASE("files: save_checkpoint / load_checkpoint and save_model / load_model round trips") {
  auto net = initial_net();
  optim::Adam opt(net->parameters(), {.lr = 0.01});
  train_steps(*net, opt, 2);
  TempPath ckpt("ckpt.pth.tar");
  save_checkpoint(ckpt.path, 2, *net, 0.75, opt);
  auto other = std::make_shared<Net>(10);
  optim::Adam opt2(other->parameters(), {.lr = 0.01});
  const RestoredCheckpoint info = load_checkpoint(ckpt.path, *other, &opt2);
  CHECK(info.epoch == 2);
  CHECK(info.best_acc == 0.75);
  train_steps(*net, opt, 1);
  train_steps(*other, opt2, 1);
  for (const auto& k : kKeys) {
    INFO(k);
    check_equal(other->state_dict().at(k), net->state_dict().at(k));
  }

  register_architecture("test_file_net", [](const Value& o) -> std::shared_ptr<nn::Module> {
    return std::make_shared<Net>(o.at("num_classes").as_int());
  });
  auto model = build_architecture("test_file_net", Value::dict({{"num_classes", 5}}));
  TempPath file("model.pth");
  save_model(file.path, *model);
  const Value raw = load(file.path);
  CHECK(raw.at("arch").as_string() == "test_file_net");
  CHECK(raw.at("arch_options").at("num_classes").as_int() == 5);
  const auto back = load_model(file.path);
  for (const auto& [k, t] : model->state_dict()) {
    INFO(k);
    check_equal(back->state_dict().at(k), t);
  }
  CHECK(architecture_of(*back)->name == "test_file_net");
}

TEST_CASE("files: PyTorch opens torchlet's checkpoint and model files (the model file with weights_only=True)") {
  if (std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") != 0) {
    MESSAGE("skipped: /usr/bin/python3 cannot import torch");
    return;
  }
  auto net = initial_net();
  optim::SGD opt(net->parameters(), {.lr = 0.1, .momentum = 0.9});
  train_steps(*net, opt, 1);
  TempPath ckpt("interop.pth.tar"), model("interop_model.pth");
  save_checkpoint(ckpt.path, 1, *net, 0.5, opt);
  save_model(model.path, *net, {"tiny", Value::dict({{"num_classes", 10}})});
  const std::string script =
      "import sys, torch\n"
      "sys.path.insert(0, '" + std::string(TORCHLET_FIXTURES) + "')\n"
      "from gen.checkpoint import Net\n"
      "c = torch.load(sys.argv[1])\n"  // 1.13's weights_only can't read floats (BINFLOAT), even PyTorch's own
      "assert list(c.keys()) == ['epoch', 'state_dict', 'best_acc', 'optimizer'], list(c.keys())\n"
      "assert c['epoch'] == 1 and c['best_acc'] == 0.5\n"
      "assert c['state_dict']._metadata['bn1'] == {'version': 2}, c['state_dict']._metadata\n"
      "net = Net(10)\n"
      "net.load_state_dict(c['state_dict'])\n"
      "opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)\n"
      "opt.load_state_dict(c['optimizer'])\n"
      "assert int(net.bn1.num_batches_tracked) == 1\n"
      "m = torch.load(sys.argv[2], weights_only=True)\n"
      "assert m['arch'] == 'tiny' and m['arch_options'] == {'num_classes': 10}\n"
      "Net(10).load_state_dict(m['state_dict'])\n"
      "assert torch.equal(m['state_dict']['fc.weight'], c['state_dict']['fc.weight'])\n";
  TempPath py("interop.py");
  {
    std::ofstream f(py.path);
    f << script;
  }
  CHECK(std::system(("/usr/bin/python3 " + py.path + " " + ckpt.path + " " + model.path).c_str()) == 0);
}
