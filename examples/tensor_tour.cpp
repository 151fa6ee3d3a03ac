// A tour of torchlet's tensors and CPU kernels, next to the PyTorch lines they mirror.
// Built as examples/tensor_tour; it checks its own results and exits 1 if one is wrong.
#include <cstdio>
#include <iostream>

#include "torchlet/torchlet.hpp"

using namespace torchlet;

int main() {
  manual_seed(0);                                       // torch.manual_seed(0)
  Tensor x = randn({8, 3, 32, 32});                     // torch.randn(8, 3, 32, 32)
  Tensor w = randn({16, 3, 3, 3}) * 0.1;                // torch.randn(16, 3, 3, 3) * 0.1
  Tensor b = zeros({16});

  // a small conv-bn-relu-pool-linear forward pass, functional style (torch.nn.functional)
  Tensor y = relu(conv2d(x, w, b, {.stride = {2, 2}, .padding = {1, 1}}));   // [8, 16, 16, 16]
  Tensor running_mean = zeros({16}), running_var = ones({16});
  Tensor gamma = ones({16}), beta = zeros({16});
  Tensor z = batch_norm(y, running_mean, running_var, gamma, beta, {.training = true});
  Tensor p = max_pool2d(z, {.kernel_size = {3, 3}, .stride = {2, 2}, .padding = {1, 1}});  // [8, 16, 8, 8]
  Tensor fc_w = randn({10, 16}) * 0.1, fc_b = zeros({10});
  Tensor logits = linear(adaptive_avg_pool2d(p, {1, 1}).flatten(1), fc_w, fc_b);          // [8, 10]
  Tensor probs = softmax(logits, 1);
  auto [best, idx] = max(probs, 1);

  std::cout << "logits " << shape_str(logits.sizes()) << ", first row:\n" << logits[0] << "\n";
  std::cout << "predicted classes: " << idx << "\n";

  // PyTorch's type promotion and views
  Tensor a = arange(6).view({2, 3}) * 0.5;              // int64 * float -> float32
  Tensor m = matmul(a, a.t());                          // [2, 2]
  std::cout << "a @ a.T =\n" << m << "\n";

  bool ok = true;
  ok &= logits.sizes() == Shape{8, 10};
  ok &= std::abs(sum(probs).item<double>() - 8.0) < 1e-4;           // each row sums to 1
  ok &= a.dtype() == kFloat32 && m[1][1].item<float>() == 12.5f;   // 1.5^2 + 2^2 + 2.5^2
  ok &= sum(abs(running_mean)).item<double>() > 0;                // training mode updated the stats
  std::printf("%s\n", ok ? "tensor_tour: all checks passed" : "tensor_tour: a check FAILED");
  return ok ? 0 : 1;
}
