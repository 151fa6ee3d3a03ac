// Two learning rates: a small one for the pretrained backbone, a larger one for the new head.
//
//   optimizer = torch.optim.SGD([{'params': backbone.parameters()},
//                                {'params': head.parameters(), 'lr': 1e-2}], lr=1e-4, momentum=0.9)
#include <cmath>
#include <cstdio>
#include <memory>

#include "torchlet/torchlet.hpp"

using namespace torchlet;

int main() {
  manual_seed(1);
  auto backbone = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(8, 32), std::make_shared<nn::ReLU>(),
                                                   std::make_shared<nn::Linear>(32, 16), std::make_shared<nn::ReLU>());
  auto head = std::make_shared<nn::Linear>(16, 3);
  auto model = std::make_shared<nn::Sequential>(backbone, head);

  optim::SGD optimizer({{backbone->parameters()}, {head->parameters(), {{"lr", 1e-2}}}}, {.lr = 1e-4, .momentum = 0.9});
  optim::StepLR scheduler(optimizer, 10, 0.5);
  std::printf("group learning rates: backbone %g, head %g\n", optimizer.lr(0), optimizer.lr(1));

  Tensor x = randn({64, 8});
  Tensor y = argmax(matmul(x, randn({8, 3})), 1);  // a learnable linear rule
  const Tensor w0 = backbone->parameters()[0].clone(), h0 = head->parameters()[0].clone();
  double first = 0, last = 0;
  for (int epoch = 0; epoch < 40; ++epoch) {
    optimizer.zero_grad();
    Tensor loss = cross_entropy((*model)(x), y);
    loss.backward();
    optimizer.step();
    scheduler.step();
    (epoch == 0 ? first : last) = loss.item<double>();
  }
  const double backbone_move = max(abs(backbone->parameters()[0] - w0)).item<double>();
  const double head_move = max(abs(head->parameters()[0] - h0)).item<double>();
  std::printf("loss %.4f -> %.4f; largest change: backbone %.2e, head %.2e; lrs now %g / %g\n", first, last,
              backbone_move, head_move, optimizer.lr(0), optimizer.lr(1));
  const bool ok = last < first && head_move > 10 * backbone_move && std::fabs(optimizer.lr(1) - 1e-2 / 16) < 1e-12;
  std::printf("%s\n", ok ? "param_groups: ok" : "param_groups: FAILED");
  return ok ? 0 : 1;
}
