// Autograd core: recording rules, accumulation, retain_graph, version checks, views, and gradcheck of the
// elementwise ops.
#include "helpers.hpp"
#include "torchlet/autograd.hpp"
#include "torchlet/ops/arithmetic.hpp"

using namespace torchlet;
using autograd::gradcheck;
using autograd::TensorList;
using testing::check_close;
using testing::check_grad;
using testing::leaf;

TEST_CASE("ops record only when an input requires grad and grad mode is on") {
  Tensor a = ones({2, 3}), b = ones({2, 3});
  CHECK((a * b).grad_fn() == nullptr);
  CHECK_FALSE((a * b).requires_grad());
  a.requires_grad_();
  Tensor c = a * b;
  REQUIRE(c.grad_fn() != nullptr);
  CHECK(c.grad_fn()->name() == "MulBackward0");
  CHECK(c.requires_grad());
  CHECK_FALSE(c.is_leaf());
  CHECK(a.is_leaf());
  {
    autograd::NoGradGuard no_grad;
    CHECK((a * b).grad_fn() == nullptr);
    CHECK_FALSE(a.view({6}).requires_grad());
  }
  CHECK(autograd::is_grad_enabled());
  CHECK(a.view({6}).grad_fn()->name() == "ViewBackward0");
  CHECK(a.detach().grad_fn() == nullptr);
  CHECK_FALSE(a.detach().requires_grad());
}

TEST_CASE("requires_grad_ rules match PyTorch") {
  CHECK_THROWS_WITH_AS(arange(3).requires_grad_(),
                       "[requires_grad_] only tensors of floating point dtype can require gradients, got int64",
                       DTypeError);
  Tensor a = ones({2}).requires_grad_();
  Tensor b = a * 2;
  CHECK_THROWS_AS(b.requires_grad_(false), ValueError);
  a.requires_grad_(false);
  CHECK((a * 2).grad_fn() == nullptr);
}

TEST_CASE("gradients accumulate in leaves; zero by setting to none") {
  Tensor w = tensor({1.0, -2.0, 3.0}).requires_grad_();
  Tensor x = tensor({0.5, 0.25, 2.0});
  (w * x).backward(ones({3}, kFloat64));
  check_close(w.grad(), x);
  (w * x).backward(ones({3}, kFloat64));
  check_close(w.grad(), x * 2);
  CHECK_FALSE(x.grad().defined());  // never required grad
  w.set_grad(Tensor());
  CHECK_FALSE(w.grad().defined());
  // the same leaf reached by two paths: gradients add
  Tensor y = w * w + w;
  y.backward(ones({3}, kFloat64));
  check_close(w.grad(), w.detach() * 2 + 1);
}

TEST_CASE("backward needs a scalar or an explicit gradient; the graph is freed unless retained") {
  Tensor w = ones({3}).requires_grad_();
  Tensor y = exp(w);
  CHECK_THROWS_WITH_AS(y.backward(), "[backward] grad can be implicitly created only for scalar outputs; this "
                                     "tensor has shape [3]", ValueError);
  y.backward(ones({3}), true);
  y.backward(ones({3}));
  check_close(w.grad(), exp(ones({3})) * 2);
  CHECK_THROWS_AS(y.backward(ones({3})), ValueError);  // freed by the second call
  CHECK_THROWS_AS(ones({3}).backward(ones({3})), ValueError);  // nothing requires grad
}

TEST_CASE("modifying a saved tensor in place makes backward fail, not give a wrong gradient") {
  Tensor w = ones({2, 2}).requires_grad_();
  Tensor x = full({2, 2}, 3.0f);
  Tensor y = w * x;  // saves x
  add_(x, 1);        // x is not part of the graph, but its saved value is
  CHECK_THROWS_WITH_AS(y.backward(ones({2, 2})),
                       "[autograd] one of the tensors needed for gradient computation has been modified by an "
                       "inplace operation: [float32 [2, 2]] is at version 1; expected version 0 instead",
                       ValueError);
  // in-place on a leaf that requires grad is refused outright, but allowed under NoGradGuard (optimizer steps)
  CHECK_THROWS_AS(add_(w, 1), ValueError);
  CHECK_THROWS_AS(w.fill_(0), ValueError);
  {
    autograd::NoGradGuard no_grad;
    add_(w, 1);
  }
  CHECK(w[0][0].item<float>() == 2.f);
}

TEST_CASE("frozen inputs get no gradient and cost no backward work") {
  Tensor frozen = ones({3});
  Tensor trainable = ones({3}).requires_grad_();
  Tensor y = exp(frozen) * trainable;  // exp(frozen) records nothing
  REQUIRE(y.grad_fn() != nullptr);
  CHECK(y.grad_fn()->next_edges.size() == 2);
  CHECK_FALSE(y.grad_fn()->next_edges[0].valid());
  CHECK(y.grad_fn()->next_edges[1].valid());
  y.backward(ones({3}));
  CHECK_FALSE(frozen.grad().defined());
  check_close(trainable.grad(), exp(ones({3})));
}

TEST_CASE("gradcheck: arithmetic with broadcasting") {
  const Tensor a = leaf({3, 4}, 1), b = leaf({4}, 2, 0.5, 2), c = leaf({3, 1}, 3);
  check_grad([](const TensorList& in) { return add(in[0], in[1], 0.7); }, {a, b});
  check_grad([](const TensorList& in) { return sub(in[0], in[1], 2); }, {a, c});
  check_grad([](const TensorList& in) { return in[0] * in[1]; }, {a, c});
  check_grad([](const TensorList& in) { return in[0] / in[1]; }, {a, b});
  check_grad([](const TensorList& in) { return 3 - in[0] * 2.5 + 1.5 / in[1]; }, {a, b});
  check_grad([](const TensorList& in) { return in[0] / 4 - in[0]; }, {a});
}

TEST_CASE("gradcheck: unary functions") {
  const Tensor a = leaf({2, 5}, 4), p = leaf({2, 5}, 5, 0.3, 3), e = leaf({5}, 6, 0.5, 2);
  check_grad([](const TensorList& in) { return neg(in[0]); }, {a});
  check_grad([](const TensorList& in) { return abs(in[0]); }, {a});
  check_grad([](const TensorList& in) { return exp(in[0]); }, {a});
  check_grad([](const TensorList& in) { return log(in[0]); }, {p});
  check_grad([](const TensorList& in) { return sqrt(in[0]); }, {p});
  check_grad([](const TensorList& in) { return relu(in[0]); }, {a});
  check_grad([](const TensorList& in) { return pow(in[0], 3); }, {a});
  check_grad([](const TensorList& in) { return pow(in[0], 2.5); }, {p});
  check_grad([](const TensorList& in) { return pow(in[0], 2); }, {a});
  check_grad([](const TensorList& in) { return pow(in[0], in[1]); }, {p, e});
  check_grad([](const TensorList& in) { return clamp(in[0], -0.4, 0.6); }, {a});
  check_grad([](const TensorList& in) { return clamp(in[0], 0.1); }, {a});
  check_grad([](const TensorList& in) { return maximum(in[0], in[1]); }, {a, leaf({5}, 7)});
  check_grad([](const TensorList& in) { return minimum(in[0], in[1]); }, {a, leaf({2, 1}, 8)});
  check_grad([](const TensorList& in) { return where(gt(in[0], 0), in[0], in[1] * 3); }, {a, leaf({5}, 9)});
}

TEST_CASE("gradcheck: views and copies") {
  const Tensor a = leaf({2, 3, 4}, 10);
  check_grad([](const TensorList& in) { return in[0].permute({2, 0, 1}) * 2; }, {a});
  check_grad([](const TensorList& in) { return in[0].transpose(0, 2).reshape({4, 6}); }, {a});
  check_grad([](const TensorList& in) { return in[0].slice(2, 1, 4, 2) * in[0].select(2, 0).unsqueeze(2); }, {a});
  check_grad([](const TensorList& in) { return in[0].narrow(1, 1, 2).flatten(); }, {a});
  check_grad([](const TensorList& in) { return in[0][1].unsqueeze(0).expand({5, 3, 4}); }, {a});
  check_grad([](const TensorList& in) { return in[0].view({6, 4}).t().contiguous().squeeze(); }, {a});
  check_grad([](const TensorList& in) { return in[0].chunk(2, 2)[1] * in[0].split(1, 0)[0].narrow(2, 0, 2); }, {a});
  check_grad([](const TensorList& in) { return in[0].to(kFloat64, true) * in[0].clone(); }, {a});
  // a dtype cast passes the gradient back in the source's dtype
  Tensor w = ones({3}, kFloat64).requires_grad_();
  (w.to(kFloat32) * 2.f).backward(ones({3}));
  CHECK(w.grad().dtype() == kFloat64);
  check_close(w.grad(), full({3}, 2.0, kFloat64));
  CHECK_THROWS_AS(a.as_strided({2}, {1}), ValueError);
}
