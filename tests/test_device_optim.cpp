// The optimizers on the fake "cuda:0" of fake_device.hpp: SGD, Adam and AdamW route their device parameters
// through the multi-tensor kernels (one call per group, device and dtype), give the CPU's values bit for bit, keep
// PyTorch's state layout ('step' a 0-dim float32 CPU tensor, the moments on the parameter's device), and an
// optimizer state_dict of device tensors saves and reloads.
#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <string>

#include "fake_device.hpp"
#include "torchlet/io/load.hpp"
#include "torchlet/io/save.hpp"

using namespace torchlet;
using namespace fake_device;

namespace {

// A float32 MLP and a float64 extra parameter (a second dtype, so a second kernel call per step).
struct Model {
  std::shared_ptr<nn::Sequential> net;
  Tensor extra;
  std::vector<Tensor> params() const {
    auto p = net->parameters();
    p.push_back(extra);
    return p;
  }
};

Model make_model(Device dev) {
  manual_seed(5);
  Model m;
  m.net = std::make_shared<nn::Sequential>();
  m.net->push_back(std::make_shared<nn::Linear>(4, 6));
  m.net->push_back(std::make_shared<nn::ReLU>());
  m.net->push_back(std::make_shared<nn::Linear>(6, 2));
  m.net->to(dev);
  Generator gen(9);
  m.extra = randn({3}, kFloat64, gen).to(dev);
  m.extra.requires_grad_();
  return m;
}

// `steps` steps of `opt` on m with a fixed batch; returns the last loss.
Tensor train(Model& m, optim::Optimizer& opt, Device dev, int steps) {
  Generator gen(13);
  const Tensor x = randn({5, 4}, kFloat32, gen), target = randn({5, 2}, kFloat32, gen);
  const Tensor shift = randn({3}, kFloat64, gen);
  Tensor loss;
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    loss = mean(pow(sub(m.net->forward(x.to(dev)), target.to(dev)), 2));
    const Tensor extra_loss = sum(pow(sub(m.extra, shift.to(dev)), 2));
    loss.backward();
    extra_loss.backward();
    opt.step();
  }
  return loss;
}

using MakeOpt = std::function<std::unique_ptr<optim::Optimizer>(const std::vector<Tensor>&)>;

// The named optimizer cases: Adam and AdamW with and without amsgrad and weight decay, maximize, SGD.
std::vector<std::pair<std::string, MakeOpt>> cases() {
  using optim::Adam, optim::AdamW, optim::SGD;
  return {
      {"adam", [](const auto& p) { return std::make_unique<Adam>(p, optim::AdamOptions{.lr = 0.01}); }},
      {"adam_wd_amsgrad",
       [](const auto& p) {
         return std::make_unique<Adam>(p, optim::AdamOptions{.lr = 0.02, .betas = {0.8, 0.99}, .weight_decay = 0.1,
                                                            .amsgrad = true});
       }},
      {"adam_maximize",
       [](const auto& p) { return std::make_unique<Adam>(p, optim::AdamOptions{.lr = 0.01, .eps = 1e-6, .maximize = true}); }},
      {"adamw", [](const auto& p) { return std::make_unique<AdamW>(p, optim::AdamWOptions{.lr = 0.01}); }},
      {"adamw_wd_amsgrad",
       [](const auto& p) {
         return std::make_unique<AdamW>(p, optim::AdamWOptions{.lr = 0.02, .weight_decay = 0.2, .amsgrad = true});
       }},
      {"sgd_nesterov",
       [](const auto& p) {
         return std::make_unique<SGD>(p, optim::SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-2,
                                                           .nesterov = true});
       }},
  };
}

// The optimizer's state tensors in state_dict order (step included).
std::vector<std::pair<std::string, Tensor>> state_tensors(const optim::Optimizer& opt) {
  std::vector<std::pair<std::string, Tensor>> out;
  const Value sd = opt.state_dict();
  for (const auto& [k, v] : sd.as_dict().find(Value("state"))->as_dict())
    for (const auto& [name, t] : v.as_dict())
      if (t.is_tensor()) out.emplace_back(std::to_string(k.as_int()) + "." + name.as_string(), t.as_tensor());
  return out;
}
}  // namespace

TEST_CASE("device optim: SGD, Adam and AdamW steps on the device match the CPU bit for bit") {
  for (const auto& [name, make_opt] : cases()) {
    INFO(name);
    FakeCuda fake;
    Model cpu = make_model(kCPU), dev = make_model(kFake);
    auto cpu_opt = make_opt(cpu.params()), dev_opt = make_opt(dev.params());
    const Tensor cpu_loss = train(cpu, *cpu_opt, kCPU, 3), dev_loss = train(dev, *dev_opt, kFake, 3);
    check_same(dev_loss, cpu_loss, "loss");
    const auto cp = cpu.params(), dp = dev.params();
    for (size_t i = 0; i < cp.size(); ++i) check_same(dp[i], cp[i], ("param " + std::to_string(i)).c_str());
    const auto cs = state_tensors(*cpu_opt), ds = state_tensors(*dev_opt);
    REQUIRE(cs.size() == ds.size());
    for (size_t i = 0; i < cs.size(); ++i) {
      REQUIRE(cs[i].first == ds[i].first);
      if (cs[i].first.ends_with(".step")) {  // PyTorch 1.13 keeps 'step' on the CPU (not capturable)
        CHECK(ds[i].second.is_cpu());
        CHECK(ds[i].second.dtype() == kFloat32);
        CHECK(ds[i].second.dim() == 0);
        CHECK(ds[i].second.item<float>() == 3.0f);
      } else {
        check_same(ds[i].second, cs[i].second, cs[i].first.c_str());
      }
    }
    // one multi-tensor call per step and dtype (float32 MLP, float64 extra): 3 steps x 2 dtypes
    const bool sgd = name.starts_with("sgd");
    CHECK(fake.kernels.calls[sgd ? "sgd_steps" : "adam_step"] == 6);
    CHECK(fake.kernels.calls[sgd ? "sgd_step" : "adam_tensor"] == 3 * static_cast<int>(dp.size()));
  }
}

TEST_CASE("device optim: an optimizer state_dict of device tensors saves, reloads and steps on as the CPU's") {
  for (const auto& [name, make_opt] : cases()) {
    INFO(name);
    FakeCuda fake;
    Model cpu = make_model(kCPU), dev = make_model(kFake);
    auto cpu_opt = make_opt(cpu.params()), dev_opt = make_opt(dev.params());
    train(cpu, *cpu_opt, kCPU, 2);
    train(dev, *dev_opt, kFake, 2);
    // saved from the device, reloaded into a fresh optimizer over the same device parameters
    const std::vector<uint8_t> bytes = save_to_bytes(dev_opt->state_dict());
    auto reloaded = make_opt(dev.params());
    reloaded->load_state_dict(load_from_bytes(bytes));
    for (const auto& [key, t] : state_tensors(*reloaded))
      CHECK_MESSAGE((key.ends_with(".step") ? t.is_cpu() : t.device() == kFake), key);
    // the file holds the same bytes as one saved from the CPU optimizer
    CHECK(bytes == save_to_bytes(cpu_opt->state_dict()));
    train(cpu, *cpu_opt, kCPU, 2);
    train(dev, *reloaded, kFake, 2);
    const auto cp = cpu.params(), dp = dev.params();
    for (size_t i = 0; i < cp.size(); ++i) check_same(dp[i], cp[i], ("param " + std::to_string(i)).c_str());
  }
}

TEST_CASE("device optim: parameters without a gradient or with no elements are skipped") {
  FakeCuda fake;
  auto run = [](Device dev) {
    std::vector<Tensor> ps = {full({2}, 1.5, dev), ones({0}, dev), ones({3}, dev)};
    for (Tensor& t : ps) t.requires_grad_();
    auto opt = std::make_shared<optim::Adam>(ps, optim::AdamOptions{.lr = 0.1});
    ps[0].set_grad(full({2}, 0.5, dev));
    ps[1].set_grad(zeros({0}, dev));
    opt->step();
    return std::make_pair(ps, opt);
  };
  const auto [dp, dopt] = run(kFake);
  const auto [cp, copt] = run(kCPU);
  CHECK(fake.kernels.calls["adam_step"] == 1);
  CHECK(fake.kernels.calls["adam_tensor"] == 1);
  check_same(dp[0], cp[0], "param with a gradient");
  CHECK(cp[0][0].item<float>() != 1.5f);
  check_same(dp[2], ones({3}), "param without a gradient");
  REQUIRE(dopt->state(dp[1]) != nullptr);
  CHECK(dopt->state(dp[1])->step.item<float>() == 1.0f);
  CHECK(dopt->state(dp[2]) == nullptr);
}
