// Optimizers (SGD, Adam, AdamW), LR schedulers and the Value tree, against real PyTorch 1.13
// (fixtures from tests/fixtures/gen/optim.py). Gradients are set directly with set_grad(), not by backward.
#include <doctest/doctest.h>

#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "torchlet/ops/arithmetic.hpp"
#include "torchlet/optim.hpp"

using namespace torchlet;
using testing::check_close;
using testing::fixture;

namespace {
constexpr int kSteps = 10;
constexpr int kSkipStep = 4;  // p1 has no grad at this step (as in the generator)

std::vector<std::string> fixture_lines(const std::string& name) {
  std::ifstream in(std::string(TORCHLET_FIXTURES) + "/" + name + ".txt");
  REQUIRE_MESSAGE(in.good(), "missing fixture ", name, ".txt");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

// "<key> <rest>" lines of a fixture as key -> rest (first occurrence of "<key> <tag>" when tag is given).
std::string fixture_entry(const std::string& file, const std::string& key) {
  for (const auto& line : fixture_lines(file))
    if (line.rfind(key + " ", 0) == 0) return line.substr(key.size() + 1);
  FAIL("no entry '", key, "' in ", file, ".txt");
  return {};
}

using optim::ParamGroupSpec;

// The optimizer of a fixture case over params {p0, p1, p2}.
std::unique_ptr<optim::Optimizer> make_case(const std::string& c, const std::vector<Tensor>& p) {
  using optim::SGD, optim::Adam, optim::AdamW;
  if (c == "sgd_plain") return std::make_unique<SGD>(p, optim::SGDOptions{.lr = 0.1});
  if (c == "sgd_momentum") return std::make_unique<SGD>(p, optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
  if (c == "sgd_dampening")
    return std::make_unique<SGD>(p, optim::SGDOptions{.lr = 0.05, .momentum = 0.9, .dampening = 0.3});
  if (c == "sgd_nesterov")
    return std::make_unique<SGD>(p, optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
  if (c == "sgd_wd")
    return std::make_unique<SGD>(p, optim::SGDOptions{.lr = 0.1, .momentum = 0.5, .weight_decay = 0.01});
  if (c == "sgd_maximize")
    return std::make_unique<SGD>(p, optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .maximize = true});
  if (c == "sgd_groups")
    return std::make_unique<SGD>(
        std::vector<ParamGroupSpec>{{{p[0]}}, {{p[1], p[2]}, {{"lr", 0.01}, {"weight_decay", 0.1}}}},
        optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
  if (c == "adam") return std::make_unique<Adam>(p, optim::AdamOptions{.lr = 0.01});
  if (c == "adam_wd") return std::make_unique<Adam>(p, optim::AdamOptions{.lr = 0.01, .weight_decay = 0.1});
  if (c == "adam_amsgrad")
    return std::make_unique<Adam>(p, optim::AdamOptions{.lr = 0.01, .betas = {0.8, 0.99}, .amsgrad = true});
  if (c == "adam_maximize")
    return std::make_unique<Adam>(p, optim::AdamOptions{.lr = 0.01, .eps = 1e-6, .maximize = true});
  if (c == "adam_groups")
    return std::make_unique<Adam>(
        std::vector<ParamGroupSpec>{{{p[0]}}, {{p[1], p[2]}, {{"lr", 0.001}, {"amsgrad", true}}}},
        optim::AdamOptions{.lr = 0.01});
  if (c == "adamw") return std::make_unique<AdamW>(p, optim::AdamWOptions{.lr = 0.01});
  if (c == "adamw_amsgrad")
    return std::make_unique<AdamW>(p, optim::AdamWOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true});
  FAIL("unknown case ", c);
  return nullptr;
}

const std::vector<std::string> kCases = {"sgd_plain",    "sgd_momentum", "sgd_dampening", "sgd_nesterov",
                                         "sgd_wd",       "sgd_maximize", "sgd_groups",    "adam",
                                         "adam_wd",      "adam_amsgrad", "adam_maximize", "adam_groups",
                                         "adamw",        "adamw_amsgrad"};

// Fresh copies of the fixture parameters: p0 and p1 trainable, p2 frozen.
std::vector<Tensor> fresh_params() {
  Tensor p0 = fixture("opt_p0").clone(), p1 = fixture("opt_p1").clone(), p2 = fixture("opt_p2").clone();
  p0.requires_grad_();
  p1.requires_grad_();
  return {p0, p1, p2};
}

// Sets the grads of step k as the generator did.
void set_step_grads(const std::vector<Tensor>& p, int k) {
  static const Tensor g0 = fixture("opt_g0"), g1 = fixture("opt_g1");
  Tensor(p[0]).set_grad(g0[k]);
  Tensor(p[1]).set_grad(k == kSkipStep ? Tensor() : g1[k]);
}

// 1e-6 relative, and 1e-6 absolute for elements crossing zero (parameters are O(1)); with FMA (-march=native)
// the updates match PyTorch's AVX2 kernels bit for bit in all but a few elements.
constexpr double kRtol = 1e-6, kAtol = 1e-6;

void check_step(const std::string& c, const std::vector<Tensor>& p, int k) {
  static std::map<std::string, std::pair<Tensor, Tensor>> cache;
  auto& e = cache[c];
  if (!e.first.defined()) e = {fixture("opt_" + c + "_p0"), fixture("opt_" + c + "_p1")};
  INFO("case ", c, " step ", k);
  check_close(p[0], e.first[k], kRtol, kAtol);
  check_close(p[1], e.second[k], kRtol, kAtol);
}

// Every state tensor of a state_dict, flattened and concatenated in order (as the generator does).
Tensor flat_state(const Value& sd) {
  std::vector<double> out;
  for (const auto& [idx, st] : sd.at("state").as_dict())
    for (const auto& [key, v] : st.as_dict())
      if (v.is_tensor()) {
        const auto vals = testing::values(v.as_tensor());
        out.insert(out.end(), vals.begin(), vals.end());
      }
  return tensor<double>(out, {static_cast<int64_t>(out.size())});
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}
}  // namespace

TEST_CASE("optim: SGD, Adam, AdamW follow PyTorch step by step") {
  for (const auto& c : kCases) {
    SUBCASE(c.c_str()) {
      const auto p = fresh_params();
      const Tensor p2_before = p[2].clone();
      auto opt = make_case(c, p);
      for (int k = 0; k < kSteps; ++k) {
        set_step_grads(p, k);
        opt->step();
        check_step(c, p, k);
      }
      testing::check_equal(p[2], p2_before);  // frozen: no grad, never touched
      const Value sd = opt->state_dict();
      CHECK(sd.repr() == fixture_entry("opt_layouts", c));
      check_close(flat_state(sd), fixture("opt_" + c + "_state"), kRtol, kAtol);
    }
  }
}

TEST_CASE("optim: step values and the frozen parameter in the state_dict") {
  const auto p = fresh_params();
  optim::Adam opt(p, {.lr = 0.01});
  CHECK(opt.state(p[0]) == nullptr);
  for (int k = 0; k < kSteps; ++k) {
    set_step_grads(p, k);
    opt.step();
  }
  const Value sd = opt.state_dict();
  const Tensor s0 = sd.at("state").at(0).at("step").as_tensor();
  CHECK(s0.dim() == 0);
  CHECK(s0.dtype() == kFloat32);
  CHECK(s0.item<float>() == 10.0f);
  CHECK(sd.at("state").at(1).at("step").as_tensor().item<float>() == 9.0f);  // one step without grad
  CHECK_FALSE(sd.at("state").contains(2));                                    // frozen: no state
  CHECK(opt.state(p[2]) == nullptr);
  CHECK(sd.at("param_groups").at(0).at("params").repr() == "[0, 1, 2]");
  CHECK(sd.at("param_groups").at(0).at("betas").is_tuple());
  // the state is the optimizer's own (not a copy), like PyTorch's state_dict()
  CHECK(sd.at("state").at(0).at("exp_avg").as_tensor().is_same(opt.state(p[0])->exp_avg));
}

TEST_CASE("optim: the parameter stays the same tensor, updated in place") {
  Tensor w = fixture("opt_p0").clone().requires_grad_();
  const Tensor alias = w;  // what a module would hold
  const void* data = w.data_ptr();
  const auto version = w.version();
  optim::SGD opt({w}, {.lr = 0.5});
  w.set_grad(ones({3, 4}));
  opt.step();
  CHECK(alias.is_same(w));
  CHECK(w.data_ptr() == data);
  CHECK(w.version() > version);
  check_close(w, sub(fixture("opt_p0"), 0.5));
  CHECK_FALSE(w.grad_fn());
}

TEST_CASE("optim: non-contiguous parameters and float64") {
  // a transposed view as the parameter, and a float64 parameter: same math as contiguous float32
  Tensor base = fixture("opt_p0").clone().t().contiguous();  // [4, 3]
  Tensor w = base.t();                                        // [3, 4] view, not contiguous
  w.requires_grad_();
  Tensor w64 = fixture("opt_p0").to(kFloat64).requires_grad_();
  Tensor ref = fixture("opt_p0").clone().requires_grad_();
  optim::Adam a({w}, {.lr = 0.01, .amsgrad = true}), b({ref}, {.lr = 0.01, .amsgrad = true}),
      c({w64}, {.lr = 0.01, .amsgrad = true});
  const Tensor g0 = fixture("opt_g0");
  for (int k = 0; k < 3; ++k) {
    w.set_grad(g0[k]);
    ref.set_grad(g0[k]);
    w64.set_grad(g0[k].to(kFloat64));
    a.step();
    b.step();
    c.step();
  }
  testing::check_equal(w.contiguous(), ref);
  check_close(w64, ref, 1e-5, 1e-6);
}

TEST_CASE("optim: state_dict round trip continues identically") {
  for (const auto& c : kCases) {
    SUBCASE(c.c_str()) {
      const auto p = fresh_params();
      auto opt = make_case(c, p);
      for (int k = 0; k < 5; ++k) {
        set_step_grads(p, k);
        opt->step();
      }
      const Value sd = opt->state_dict();
      // a new optimizer over copies of the parameters, with other learning rates: the load restores them
      std::vector<Tensor> q;
      for (const Tensor& t : p) {
        Tensor c2 = t.detach().clone();
        if (t.requires_grad()) c2.requires_grad_();
        q.push_back(c2);
      }
      auto opt2 = make_case(c, q);
      for (size_t g = 0; g < opt2->num_param_groups(); ++g) opt2->set_lr(g, 123.0);
      opt2->load_state_dict(sd);
      CHECK(opt2->lrs() == opt->lrs());
      CHECK(opt2->state_dict().repr() == sd.repr());
      // loaded state is copied, not shared with the state_dict it came from
      const Value sd2 = opt2->state_dict();
      for (const auto& [idx, st] : sd.at("state").as_dict())
        for (const auto& [key, v] : st.as_dict())
          if (v.is_tensor()) CHECK_FALSE(v.as_tensor().is_same(sd2.at("state").at(idx).at(key).as_tensor()));
      for (int k = 5; k < kSteps; ++k) {
        set_step_grads(q, k);
        opt2->step();
        check_step(c, q, k);
      }
      const Value sd_after = opt->state_dict();
      CHECK(sd_after.repr() == sd.repr());
    }
  }
}

TEST_CASE("optim: load_state_dict checks and converts") {
  const auto p = fresh_params();
  optim::Adam opt(p, {.lr = 0.01});
  for (int k = 0; k < 2; ++k) {
    set_step_grads(p, k);
    opt.step();
  }
  const Value sd = opt.state_dict();

  SUBCASE("group count") {
    optim::Adam two(std::vector<ParamGroupSpec>{{{p[0]}}, {{p[1], p[2]}}});
    const std::string msg = error_of([&] { two.load_state_dict(sd); });
    CHECK(msg.find("loaded state dict has a different number of parameter groups") != std::string::npos);
  }
  SUBCASE("parameter count") {
    optim::Adam fewer({p[0], p[1]});
    const std::string msg = error_of([&] { fewer.load_state_dict(sd); });
    CHECK(msg.find("loaded state dict contains a parameter group that doesn't match the size of optimizer's group") !=
          std::string::npos);
  }
  SUBCASE("state shape") {
    Value bad = sd;
    bad.at("state").at(0)["exp_avg"] = zeros({4, 3});
    optim::Adam other(fresh_params());
    const std::string msg = error_of([&] { other.load_state_dict(bad); });
    CHECK(msg == "[Adam] load_state_dict: \"state.0.exp_avg\" has shape [4, 3], the parameter has shape [3, 4]");
    CHECK(other.state_dict().at("state").size() == 0);  // nothing changed
  }
  SUBCASE("wrong option type names the path") {
    Value bad = sd;
    bad.at("param_groups").at(0)["lr"] = "fast";
    optim::Adam other(fresh_params());
    CHECK(error_of([&] { other.load_state_dict(bad); }) == "[Value] expected float at \"param_groups.0.lr\", got str");
  }
  SUBCASE("invalid loaded option") {
    Value bad = sd;
    bad.at("param_groups").at(0)["eps"] = -1.0;
    optim::Adam other(fresh_params());
    CHECK(error_of([&] { other.load_state_dict(bad); }) ==
          "[Adam] load_state_dict: param_groups.0: Invalid epsilon value: -1");
  }
  SUBCASE("dtype cast, integer step, PyTorch 2.x extra keys") {
    Value v = sd;
    auto& st = v.at("state").at(0);
    st["exp_avg"] = st.at("exp_avg").as_tensor().to(kFloat64);
    st["step"] = 2;  // checkpoints before 1.12 store a Python int
    v.at("param_groups").at(0)["fused"] = Value();
    v.at("param_groups").at(0)["decoupled_weight_decay"] = false;
    const auto q = fresh_params();
    optim::Adam other(q);
    other.load_state_dict(v);
    CHECK(other.state(q[0])->exp_avg.dtype() == kFloat32);
    check_close(other.state(q[0])->exp_avg, opt.state(p[0])->exp_avg);
    CHECK(other.state(q[0])->step.item<float>() == 2.0f);
    const Value back = other.state_dict().at("param_groups").at(0);
    CHECK(back.at("fused").is_none());
    CHECK(back.at("decoupled_weight_decay").is_bool());
    CHECK(back.at("lr").as_double() == 0.01);
  }
  SUBCASE("SGD momentum buffer None") {
    optim::SGD sgd(p, {.lr = 0.1});
    set_step_grads(p, 0);
    sgd.step();
    const Value s = sgd.state_dict();
    CHECK(s.at("state").at(0).at("momentum_buffer").is_none());
    optim::SGD with_momentum(fresh_params(), {.lr = 0.1, .momentum = 0.9});
    with_momentum.load_state_dict(s);  // momentum 0 comes with the loaded group
    CHECK(with_momentum.param_groups()[0].options.momentum == 0);
  }
}

TEST_CASE("optim: option validation messages equal PyTorch's") {
  std::vector<Tensor> w{zeros({2}).requires_grad_()};
  std::map<std::string, std::function<void()>> make = {
      {"sgd_lr", [&] { optim::SGD(w, {.lr = -1}); }},
      {"sgd_momentum", [&] { optim::SGD(w, {.lr = 0.1, .momentum = -0.5}); }},
      {"sgd_wd", [&] { optim::SGD(w, {.lr = 0.1, .weight_decay = -1}); }},
      {"sgd_nesterov", [&] { optim::SGD(w, {.lr = 0.1, .nesterov = true}); }},
      {"sgd_nesterov_dampening", [&] { optim::SGD(w, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}); }},
      {"adam_lr", [&] { optim::Adam(w, {.lr = -1}); }},
      {"adam_eps", [&] { optim::Adam(w, {.eps = -1e-8}); }},
      {"adam_beta0", [&] { optim::Adam(w, {.betas = {1.0, 0.999}}); }},
      {"adam_beta1", [&] { optim::Adam(w, {.betas = {0.9, -0.5}}); }},
      {"adam_wd", [&] { optim::Adam(w, {.weight_decay = -1}); }},
      {"adamw_beta0", [&] { optim::AdamW(w, {.betas = {1.0, 0.999}}); }},
      {"linear_start", [&] { optim::SGD o(w, {.lr = 0.1}); optim::LinearLR(o, 1.5); }},
      {"linear_end", [&] { optim::SGD o(w, {.lr = 0.1}); optim::LinearLR(o, 1.0 / 3, -0.5); }},
  };
  for (const auto& line : fixture_lines("opt_errors")) {
    const auto bar = line.find('|');
    const std::string name = line.substr(0, bar), expected = line.substr(bar + 1);
    INFO(name);
    REQUIRE(make.count(name));
    bool value_error = false;
    std::string msg;
    try {
      make[name]();
    } catch (const ValueError& e) {
      value_error = true;
      msg = e.what();
    }
    CHECK(value_error);
    CHECK(msg == expected);
  }
  // per-group overrides are validated too, and unknown keys are refused
  CHECK(error_of([&] { optim::SGD(std::vector<ParamGroupSpec>{{w, {{"lr", -1}}}}, {.lr = 0.1}); }) ==
        "Invalid learning rate: -1");
  CHECK(error_of([&] { optim::SGD(std::vector<ParamGroupSpec>{{w, {{"momentun", 0.9}}}}); })
            .find("unknown option 'momentun' in param group 0") != std::string::npos);
  CHECK(error_of([&] { optim::SGD(std::vector<Tensor>{}); }) == "[SGD] optimizer got an empty parameter list");
  CHECK(error_of([&] { optim::SGD(std::vector<ParamGroupSpec>{{w}, {w}}); }) ==
        "[SGD] some parameters appear in more than one parameter group");
  CHECK(error_of([&] { optim::SGD({zeros({2}, kInt64)}); }).find("floating point") != std::string::npos);
}

TEST_CASE("optim: param groups, add_param_group, zero_grad") {
  Tensor a = zeros({2}).requires_grad_(), b = zeros({3}).requires_grad_(), frozen = zeros({2});
  optim::SGD opt(std::vector<ParamGroupSpec>{{{a, frozen}}, {{b}, {{"lr", 1e-2}}}}, {.lr = 1e-4, .momentum = 0.9});
  REQUIRE(opt.num_param_groups() == 2);
  CHECK(opt.lr(0) == 1e-4);
  CHECK(opt.lr(1) == 1e-2);
  CHECK(opt.param_groups()[1].options.momentum == 0.9);  // inherited from the defaults
  Tensor c = zeros({4}).requires_grad_();
  opt.add_param_group({{c}, {{"lr", 0.5}, {"nesterov", true}}});
  CHECK(opt.num_param_groups() == 3);
  CHECK(opt.param_groups()[2].options.nesterov);
  CHECK(opt.state_dict().at("param_groups").at(2).at("params").repr() == "[3]");

  a.set_grad(ones({2}));
  b.set_grad(ones({3}));
  opt.step();  // the frozen parameter and c have no grad: skipped
  check_close(a, full({2}, -1e-4));
  check_close(c, zeros({4}));
  opt.zero_grad(false);
  REQUIRE(a.grad().defined());
  CHECK(testing::values(a.grad()) == std::vector<double>{0, 0});
  opt.zero_grad();
  CHECK_FALSE(a.grad().defined());
  CHECK_FALSE(b.grad().defined());
  // options can be changed between steps (PyTorch's group['lr'] = ...)
  opt.param_groups()[0].options.lr = 0.25;
  CHECK(opt.state_dict().at("param_groups").at(0).at("lr").as_double() == 0.25);
}

TEST_CASE("optim: LR schedulers follow PyTorch for 12 epochs") {
  using Make = std::function<std::unique_ptr<optim::LRScheduler>(optim::Optimizer&)>;
  const std::vector<std::pair<std::string, Make>> scheds = {
      {"step", [](optim::Optimizer& o) { return std::make_unique<optim::StepLR>(o, 3, 0.5); }},
      {"multistep",
       [](optim::Optimizer& o) { return std::make_unique<optim::MultiStepLR>(o, std::vector<int64_t>{2, 5, 5, 9}, 0.3); }},
      {"cosine", [](optim::Optimizer& o) { return std::make_unique<optim::CosineAnnealingLR>(o, 5, 0.001); }},
      {"cosine_default", [](optim::Optimizer& o) { return std::make_unique<optim::CosineAnnealingLR>(o, 4); }},
      {"linear", [](optim::Optimizer& o) { return std::make_unique<optim::LinearLR>(o, 0.25, 1.0, 4); }},
      {"linear_default", [](optim::Optimizer& o) { return std::make_unique<optim::LinearLR>(o); }},
  };
  const auto lines = fixture_lines("opt_sched");
  for (const auto& [name, make] : scheds) {
    SUBCASE(name.c_str()) {
      std::vector<std::vector<double>> expected;
      std::string state, groups;
      for (const auto& line : lines) {
        if (line.rfind(name + " lrs ", 0) == 0) {
          std::istringstream is(line.substr(name.size() + 5));
          std::vector<double> v;
          for (std::string tok; is >> tok;) v.push_back(std::stod(tok));
          expected.push_back(v);
        } else if (line.rfind(name + " state ", 0) == 0) {
          state = line.substr(name.size() + 7);
        } else if (line.rfind(name + " optimizer ", 0) == 0) {
          groups = line.substr(name.size() + 11);
        }
      }
      REQUIRE(expected.size() == 13);
      Tensor a = zeros({2}).requires_grad_(), b = zeros({2}).requires_grad_();
      optim::SGD opt(std::vector<ParamGroupSpec>{{{a}}, {{b}, {{"lr", 0.01}}}}, {.lr = 0.1, .momentum = 0.9});
      auto sched = make(opt);
      CHECK(sched->get_last_lr() == expected[0]);
      std::unique_ptr<optim::LRScheduler> resumed;
      for (int e = 1; e <= 12; ++e) {
        opt.step();
        sched->step();
        INFO("epoch ", e);
        CHECK(sched->get_last_lr() == expected[e]);
        CHECK(opt.lrs() == expected[e]);
      }
      CHECK(sched->last_epoch() == 12);
      CHECK(sched->state_dict().repr() == state);
      CHECK(opt.state_dict().at("param_groups").repr() == groups);

      // resume: a new optimizer + scheduler loaded from the state_dicts continue identically
      Tensor a2 = zeros({2}).requires_grad_(), b2 = zeros({2}).requires_grad_();
      optim::SGD opt2(std::vector<ParamGroupSpec>{{{a2}}, {{b2}, {{"lr", 0.01}}}}, {.lr = 0.1, .momentum = 0.9});
      opt2.load_state_dict(opt.state_dict());
      auto sched2 = make(opt2);
      sched2->load_state_dict(sched->state_dict());
      opt2.load_state_dict(opt.state_dict());  // the scheduler's construction step changed the lrs
      CHECK(sched2->state_dict().repr() == state);
      for (int e = 0; e < 5; ++e) {
        sched->step();
        sched2->step();
        CHECK(sched2->get_last_lr() == sched->get_last_lr());
      }
    }
  }
}

TEST_CASE("optim: scheduler resume needs initial_lr") {
  Tensor a = zeros({2}).requires_grad_();
  optim::SGD opt({a}, {.lr = 0.1});
  CHECK(error_of([&] { optim::StepLR(opt, 2, 0.1, 5); }) ==
        "param 'initial_lr' is not specified in param_groups[0] when resuming an optimizer");
}

TEST_CASE("Value: construction, access, iteration, errors") {
  Value v = Value::dict({{"epoch", 3},
                         {"best_acc", 71.5},
                         {"arch", "resnet18"},
                         {"ok", true},
                         {"none", nullptr},
                         {"betas", Value::tuple({0.9, 0.999})},
                         {"params", Value::list({0, 1, 2})},
                         {"state", Value::dict({{0, Value::dict({{"step", zeros({})}})}})}});
  CHECK(v.is_dict());
  CHECK(v.size() == 8);
  CHECK(v.at("epoch").as_int() == 3);
  CHECK(v.at("epoch").as_double() == 3.0);  // ints read as floats (PyTorch writes 0 for 0.0)
  CHECK(v.at("best_acc").as_double() == 71.5);
  CHECK(v.at("arch").as_string() == "resnet18");
  CHECK(v.at("ok").as_bool());
  CHECK(v.at("none").is_none());
  CHECK(v.at("betas").is_tuple());
  CHECK(v.at("betas").at(1).as_double() == 0.999);
  CHECK(v.at("params").at(-1).as_int() == 2);
  CHECK(v.at("state").at(0).at("step").as_tensor().dim() == 0);
  CHECK(v.contains("arch"));
  CHECK_FALSE(v.contains("nope"));
  CHECK(v.find("nope") == nullptr);

  std::vector<std::string> keys;
  for (const auto& [k, x] : v.as_dict()) keys.push_back(k.as_string());
  CHECK(keys == std::vector<std::string>{"epoch", "best_acc", "arch", "ok", "none", "betas", "params", "state"});

  v["epoch"] = 4;  // replaced in place, order kept
  v["new"] = Value::list();
  v.at("new").push_back("x");
  CHECK(v.as_dict().entries()[0].second.as_int() == 4);
  CHECK(v.as_dict().entries().back().first.as_string() == "new");
  CHECK(v.as_dict().erase("none"));
  CHECK(v.size() == 8);
  CHECK(v.at("state").as_dict().contains(0));
  CHECK_FALSE(v.at("state").as_dict().contains("0"));  // int and str keys differ

  CHECK(error_of([&] { (void)v.at("epoch").as_double(); }) == "<no error>");
  CHECK(error_of([&] { (void)v.at("arch").as_int(); }) == "[Value] expected int, got str");
  CHECK(error_of([&] { (void)v.at("missing"); }) == "[Value] key 'missing' not found");
  CHECK(error_of([&] { (void)v.at("params").at(3); }) == "[Value] index 3 out of range for a list of size 3");
  const ValueRef r(v);
  CHECK(error_of([&] { (void)r.at("params").at(1).as_string(); }) == "[Value] expected str at \"params.1\", got int");
  CHECK(error_of([&] { (void)r.at("state").at(0).at("exp_avg"); }) == "[Value] missing key 'exp_avg' in \"state.0\"");

  // copies are deep (tensors shared)
  Value copy = v;
  copy.at("params").push_back(3);
  CHECK(v.at("params").size() == 3);
  CHECK(copy.at("state").at(0).at("step").as_tensor().is_same(v.at("state").at(0).at("step").as_tensor()));
  CHECK(copy != v);
  copy.at("params").as_list().pop_back();
  CHECK(copy == v);

  CHECK(Value::dict({{"a", 1}, {"b", Value::tuple({0.5})}, {2, "s'q"}}).repr() == "{'a': 1, 'b': (0.5,), 2: 's\\'q'}");
}

TEST_CASE("Value: Python float repr") {
  using torchlet::detail::py_float_repr;
  CHECK(py_float_repr(0.1) == "0.1");
  CHECK(py_float_repr(1.0) == "1.0");
  CHECK(py_float_repr(-2.0) == "-2.0");
  CHECK(py_float_repr(1e-8) == "1e-08");
  CHECK(py_float_repr(0.0001) == "0.0001");
  CHECK(py_float_repr(0.00001) == "1e-05");
  CHECK(py_float_repr(123456789.0) == "123456789.0");
  CHECK(py_float_repr(1e16) == "1e+16");
  CHECK(py_float_repr(1.5e16) == "1.5e+16");
  CHECK(py_float_repr(0.10000000000000002) == "0.10000000000000002");
  CHECK(py_float_repr(8.1e-05) == "8.1e-05");
  CHECK(py_float_repr(1.0 / 3) == "0.3333333333333333");
  CHECK(py_float_repr(0.0) == "0.0");
  CHECK(py_float_repr(-0.0) == "-0.0");
}
