// The seed's fine-tuning recipe in C++: a backbone with requires_grad = false, a new head, an optimizer over the
// trainable parameters only, a few training steps on synthetic data, and a check that the backbone did not move.
//
//   for p in backbone.parameters(): p.requires_grad = False
//   model = nn.Sequential(backbone, nn.Linear(64, 4))
//   optimizer = torch.optim.SGD((p for p in model.parameters() if p.requires_grad), lr=0.1, momentum=0.9)
#include <cstdio>
#include <memory>

#include "torchlet/torchlet.hpp"

using namespace torchlet;

int main() {
  manual_seed(0);
  auto backbone = std::make_shared<nn::Sequential>(
      std::make_shared<nn::Conv2d>(3, 16, 3, nn::Conv2dOptions{.padding = 1}),
      std::make_shared<nn::BatchNorm2d>(16),
      std::make_shared<nn::ReLU>(),
      std::make_shared<nn::AdaptiveAvgPool2d>(2),  // keeps which quadrant is bright
      std::make_shared<nn::Flatten>());
  nn::freeze(*backbone, {.batchnorm_eval = true});  // requires_grad = False, BatchNorm statistics frozen too

  auto model = std::make_shared<nn::Sequential>(backbone, std::make_shared<nn::Linear>(64, 4));
  model->train();
  optim::SGD optimizer(nn::trainable_parameters(*model), {.lr = 0.1, .momentum = 0.9});
  std::printf("trainable tensors: %zu of %zu\n", nn::trainable_parameters(*model).size(),
              model->parameters().size());

  const nn::StateDict before = backbone->state_dict();
  std::vector<Tensor> frozen_copy;
  for (const auto& [key, t] : before) frozen_copy.push_back(t.clone());

  // synthetic task: the class is which of the 4 image quadrants is brightest
  Tensor x = randn({32, 3, 8, 8});
  Tensor labels = empty({32}, kInt64);
  for (int64_t i = 0; i < 32; ++i) {
    const int64_t q = i % 4;
    Tensor quadrant = x[i].narrow(1, (q / 2) * 4, 4).narrow(2, (q % 2) * 4, 4);
    add_(quadrant, 2.0);
    labels[i].fill_(q);
  }
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    optimizer.zero_grad();
    Tensor loss = cross_entropy((*model)(x), labels);
    loss.backward();
    optimizer.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  std::printf("loss: %.4f -> %.4f\n", first, last);

  bool unchanged = true;
  size_t i = 0;
  for (const auto& [key, t] : backbone->state_dict())
    unchanged &= max(abs(t.to(kFloat64) - frozen_copy[i++].to(kFloat64))).item<double>() == 0;
  std::printf("backbone unchanged: %s\n", unchanged ? "yes" : "NO");
  return unchanged && last < first ? 0 : 1;
}
