// Conformance with real PyTorch: a conv-bn-relu-pool-linear net trained for 10 steps by PyTorch 1.13 with each
// optimizer (tests/fixtures/gen/conformance.py). torchlet must reproduce every step — loss, gradients,
// parameters and BatchNorm statistics — within 1e-5 relative in float32, with and without a frozen backbone.
#include <functional>
#include <memory>

#include "helpers.hpp"
#include "torchlet/torchlet.hpp"

using namespace torchlet;
using testing::check_close;
using testing::fixture;

namespace {
std::shared_ptr<nn::Sequential> make_net() {
  auto net = std::make_shared<nn::Sequential>(
      std::make_shared<nn::Conv2d>(3, 8, 3, nn::Conv2dOptions{.padding = 1, .bias = false}),
      std::make_shared<nn::BatchNorm2d>(8),
      std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Linear>(8 * 3 * 3, 5));
  nn::StateDict init;
  for (const std::string& key : net->state_dict().keys()) {
    std::string file = key;
    for (char& c : file) c = c == '.' ? '_' : c;
    init.insert(key, fixture("conf_init_" + file));
  }
  net->load_state_dict(init);
  return net;
}

// All given tensors flattened and concatenated (float32), in order.
Tensor flat(const std::vector<Tensor>& ts) {
  std::vector<Tensor> parts;
  for (const Tensor& t : ts) parts.push_back(t.detach().reshape({-1}).to(kFloat32));
  return cat(parts);
}

using MakeOptimizer = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>;

void run_case(const std::string& name, bool frozen, const MakeOptimizer& make_optimizer) {
  INFO("configuration ", name + std::string(frozen ? " (frozen backbone)" : ""));
  auto net = make_net();
  net->train();
  if (frozen) {
    net->at<nn::Conv2d>(0)->requires_grad_(false);
    net->at<nn::BatchNorm2d>(1)->requires_grad_(false);  // frozen, but still in train mode, as in the fixture
  }
  const std::vector<Tensor> trainable = nn::trainable_parameters(*net);
  auto opt = make_optimizer(trainable);
  const Tensor x = fixture("conf_input"), y = fixture("conf_target");
  const std::string tag = "conf_" + name + (frozen ? "_frozen" : "");
  const Tensor losses = fixture(tag + "_loss"), grads = fixture(tag + "_grads"), params = fixture(tag + "_params"),
               stats = fixture(tag + "_bnstats");
  auto bn = net->at<nn::BatchNorm2d>(1);
  for (int64_t step = 0; step < losses.size(0); ++step) {
    INFO("step ", step + 1);
    opt->zero_grad();
    Tensor loss = cross_entropy((*net)(x), y);
    loss.backward();
    CHECK(loss.item<double>() == doctest::Approx(losses[step].item<double>()).epsilon(1e-5));
    std::vector<Tensor> g;
    for (const Tensor& p : trainable) g.push_back(p.grad());
    check_close(flat(g), grads[step], 1e-5, 1e-6);
    opt->step();
    check_close(flat(net->parameters()), params[step], 1e-5, 1e-6);
    check_close(flat({bn->buffer("running_mean"), bn->buffer("running_var")}), stats[step], 1e-5, 1e-6);
  }
}

template <class Opt, class Options>
MakeOptimizer make(Options options) {
  return [options](std::vector<Tensor> params) { return std::make_unique<Opt>(std::move(params), options); };
}
}  // namespace

TEST_CASE("SGD variants reproduce PyTorch step for step") {
  run_case("sgd", false, make<optim::SGD>(optim::SGDOptions{.lr = 0.1}));
  run_case("sgd_momentum", false, make<optim::SGD>(optim::SGDOptions{.lr = 0.1, .momentum = 0.9}));
  run_case("sgd_nesterov_wd", false,
           make<optim::SGD>(optim::SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true}));
  run_case("sgd_dampening", false,
           make<optim::SGD>(optim::SGDOptions{.lr = 0.1, .momentum = 0.8, .dampening = 0.3, .weight_decay = 1e-2}));
}

TEST_CASE("Adam and AdamW (amsgrad on and off) reproduce PyTorch step for step") {
  run_case("adam", false, make<optim::Adam>(optim::AdamOptions{.lr = 1e-2}));
  run_case("adam_amsgrad_wd", false,
           make<optim::Adam>(optim::AdamOptions{.lr = 1e-2, .weight_decay = 1e-2, .amsgrad = true}));
  run_case("adamw", false, make<optim::AdamW>(optim::AdamWOptions{.lr = 1e-2}));
  run_case("adamw_amsgrad", false,
           make<optim::AdamW>(optim::AdamWOptions{.lr = 1e-2, .weight_decay = 0.1, .amsgrad = true}));
}

TEST_CASE("a frozen backbone: only the head moves, exactly as in PyTorch") {
  run_case("sgd_momentum", true, make<optim::SGD>(optim::SGDOptions{.lr = 0.1, .momentum = 0.9}));
  run_case("adam", true, make<optim::Adam>(optim::AdamOptions{.lr = 1e-2}));
}
