// The seed's checkpoint recipes in C++ (docs/user-recipes.md, recipes 3 and 4): save a training checkpoint,
// `load_model(model, checkpoint, optimizer)` to resume, and a partial load into a changed network.
//
//   torch.save({"epoch": epoch, "state_dict": model.state_dict(), "best_acc": best_acc,
//               "optimizer": optimizer.state_dict()}, f"{checkpoint_dir}/m-{timestamp}{best_acc:.4f}.pth.tar")
//
//   def load_model(model, checkpoint, optimizer):
//       ckpt = torch.load(checkpoint)
//       model.load_state_dict(ckpt["state_dict"])
//       optimizer.load_state_dict(ckpt["optimizer"])
//       return model, optimizer
//
//   model_dict = model.state_dict()
//   pretrained = torch.load(checkpoint)["state_dict"]
//   pretrained = {k: v for k, v in pretrained.items() if k in model_dict}
//   model_dict.update(pretrained)
//   model.load_state_dict(model_dict)
//
// It trains a small net for 3 steps, saves, trains on; a fresh net and optimizer resumed from the file must take
// exactly the same steps. Exits non-zero on any mismatch.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <unistd.h>

#include "torchlet/checkpoint.hpp"
#include "torchlet/checkpoint/files.hpp"
#include "torchlet/nn.hpp"
#include "torchlet/ops/arithmetic.hpp"
#include "torchlet/ops/loss.hpp"
#include "torchlet/ops/reduction.hpp"
#include "torchlet/optim/sgd.hpp"
#include "torchlet/tensor/random.hpp"

using namespace torchlet;

namespace {
std::shared_ptr<nn::Sequential> make_net(int64_t num_classes) {
  return std::make_shared<nn::Sequential>(std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>{
      {"conv", std::make_shared<nn::Conv2d>(3, 8, 3, nn::Conv2dOptions{.padding = 1})},
      {"bn", std::make_shared<nn::BatchNorm2d>(8)},
      {"relu", std::make_shared<nn::ReLU>()},
      {"pool", std::make_shared<nn::AdaptiveAvgPool2d>(nn::Size2{1, 1})},
      {"flatten", std::make_shared<nn::Flatten>()},
      {"fc", std::make_shared<nn::Linear>(8, num_classes)}});
}

// the seed's save function
std::string save(int64_t epoch, const nn::Module& model, double best_acc, const optim::Optimizer& optimizer,
                 const std::string& checkpoint_dir, const std::string& timestamp) {
  const std::string path = checkpoint_path(checkpoint_dir, timestamp, best_acc);
  torchlet::save(path, make_checkpoint(epoch, model, best_acc, optimizer));
  return path;
}

// the seed's load_model(model, checkpoint, optimizer)
std::pair<nn::Module*, optim::Optimizer*> load_model(nn::Module& model, const std::string& checkpoint,
                                                      optim::Optimizer& optimizer) {
  const Value ckpt = torchlet::load(checkpoint);
  model.load_state_dict(to_state_dict(ckpt.at("state_dict")));  // strict, like PyTorch's default
  optimizer.load_state_dict(ckpt.at("optimizer"));
  return {&model, &optimizer};
}

// the seed's partial load: keep the pretrained entries the model still has
LoadReport load_partial(nn::Module& model, const std::string& checkpoint) {
  return load_weights(model, checkpoint, {.filter_to_model = true, .top_level_key = "state_dict"});
}

double step(nn::Module& model, optim::Optimizer& optimizer, const Tensor& x, const Tensor& y) {
  optimizer.zero_grad();
  Tensor loss = cross_entropy(model(x), y);
  loss.backward();
  optimizer.step();
  return loss.item<double>();
}

bool same_weights(const nn::Module& a, const nn::Module& b, const std::string& skip_prefix = "\x01") {
  const nn::StateDict sa = a.state_dict(), sb = b.state_dict();
  for (const auto& [k, t] : sa) {
    if (k.compare(0, skip_prefix.size(), skip_prefix) == 0) continue;
    const Tensor* u = sb.find(k);
    if (u == nullptr || u->sizes() != t.sizes()) return false;
    if (max(abs(t.to(kFloat64) - u->to(kFloat64))).item<double>() != 0) return false;
  }
  return true;
}
}  // namespace

int main() {
  manual_seed(0);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("torchlet_checkpoint_roundtrip_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  bool ok = true;

  Tensor x = randn({16, 3, 6, 6});
  Tensor y = empty({16}, kInt64);
  for (int64_t i = 0; i < 16; ++i) y[i].fill_(i % 4);

  // recipe 3: train, save a checkpoint, keep training
  auto model = make_net(4);
  optim::SGD optimizer(model->parameters(), {.lr = 0.05, .momentum = 0.9});
  for (int i = 0; i < 3; ++i) step(*model, optimizer, x, y);
  const std::string path = save(3, *model, 0.8125, optimizer, dir.string(), "20240101-120000");
  std::printf("saved %s\n", std::filesystem::path(path).filename().c_str());
  double expected[2];
  for (double& l : expected) l = step(*model, optimizer, x, y);

  // a fresh model and optimizer, resumed from the file: the same next steps
  auto resumed = make_net(4);
  optim::SGD optimizer2(resumed->parameters(), {.lr = 0.05, .momentum = 0.9});
  load_model(*resumed, path, optimizer2);
  for (double e : expected) {
    const double l = step(*resumed, optimizer2, x, y);
    std::printf("resumed step loss %.6f, uninterrupted %.6f\n", l, e);
    ok &= l == e;
  }
  ok &= same_weights(*model, *resumed);
  std::printf("resumed weights equal the uninterrupted run's: %s\n", same_weights(*model, *resumed) ? "yes" : "NO");

  // recipe 4: a changed network (new 10-class head under a new name) takes what it can from the checkpoint
  auto changed = make_net(4);
  changed->replace_module("fc", std::make_shared<nn::Identity>());
  changed->push_back("classifier", std::make_shared<nn::Linear>(8, 10));
  const Tensor head_before = changed->get_parameter("classifier.weight").clone();
  const LoadReport report = load_partial(*changed, path);
  std::printf("%s", format(report).c_str());
  ok &= report.filtered_keys.size() == 2 && report.missing_keys.size() == 2;
  ok &= max(abs(changed->get_parameter("classifier.weight") - head_before)).item<double>() == 0;
  // the backbone (everything but the heads) now equals the checkpoint's
  auto at_save = make_net(4);
  load_weights(*at_save, path, {.top_level_key = "state_dict"});
  ok &= same_weights(*changed, *at_save, "classifier") && !same_weights(*model, *at_save);

  std::filesystem::remove_all(dir);
  std::printf("%s\n", ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}
