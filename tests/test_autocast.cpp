// Mixed precision (torch.autocast): which ops cast to bfloat16 or float32, the dtypes that flow through a training
// step, gradients of float32 master weights, and the values against PyTorch (fixtures: tests/fixtures/gen/
// autocast.py, the same step written with explicit casts).
#include <doctest/doctest.h>

#include "helpers.hpp"
#include "torchlet/nn.hpp"
#include "torchlet/ops/activation.hpp"
#include "torchlet/ops/conv.hpp"
#include "torchlet/ops/linalg.hpp"
#include "torchlet/ops/loss.hpp"
#include "torchlet/ops/normalization.hpp"

using namespace torchlet;
using testing::check_close;
using testing::check_equal;
using testing::fixture;

namespace {
struct Step {
  Tensor logits, loss, w, b, fcw, fcb;
};

// conv -> relu -> flatten -> linear -> cross_entropy with float32 parameters; `explicit_casts` writes autocast's
// casts by hand instead of opening a scope.
Step autocast_step(bool explicit_casts) {
  Step s;
  s.w = fixture("ac_w").requires_grad_();
  s.b = fixture("ac_b").requires_grad_();
  s.fcw = fixture("ac_fcw").requires_grad_();
  s.fcb = fixture("ac_fcb").requires_grad_();
  const Tensor x = fixture("ac_x"), target = fixture("ac_target");
  auto lower = [&](const Tensor& t) { return explicit_casts ? t.to(kBFloat16) : t; };
  std::optional<Autocast> scope;
  if (!explicit_casts) scope.emplace(DeviceType::CPU, kBFloat16);
  const Tensor h = relu(conv2d(lower(x), lower(s.w), lower(s.b), {.padding = {1, 1}})).flatten(1);
  s.logits = linear(h, lower(s.fcw), lower(s.fcb));
  s.loss = cross_entropy(explicit_casts ? s.logits.to(kFloat32) : s.logits, target);
  s.loss.backward();  // inside the scope, as PyTorch allows: backward ops keep the forward's dtypes
  return s;
}
}  // namespace

TEST_CASE("autocast: conv2d and linear in bfloat16, cross_entropy in float32, float32 master weights") {
  const Step a = autocast_step(false);
  CHECK(a.logits.dtype() == kBFloat16);
  CHECK(a.loss.dtype() == kFloat32);
  for (const Tensor* p : {&a.w, &a.b, &a.fcw, &a.fcb}) {
    CHECK(p->dtype() == kFloat32);
    REQUIRE(p->grad().defined());
    CHECK(p->grad().dtype() == kFloat32);
  }
  // exactly the explicit casts autocast stands for
  const Step e = autocast_step(true);
  check_equal(a.logits, e.logits);
  check_equal(a.loss, e.loss);
  check_equal(a.w.grad(), e.w.grad());
  check_equal(a.fcw.grad(), e.fcw.grad());
  // and PyTorch's values: bfloat16 logits within two bfloat16 ulps, float32 results within bf16 rounding
  check_close(a.logits.to(kFloat32), fixture("ac_logits"), 1.6e-2, 1e-2);
  check_close(a.loss, fixture("ac_loss"), 1e-2, 1e-3);
  check_close(a.w.grad(), fixture("ac_grad_w"), 3e-2, 3e-3);
  check_close(a.b.grad(), fixture("ac_grad_b"), 3e-2, 3e-3);
  check_close(a.fcw.grad(), fixture("ac_grad_fcw"), 3e-2, 3e-3);
  check_close(a.fcb.grad(), fixture("ac_grad_fcb"), 1e-2, 1e-3);
  CHECK_FALSE(is_autocast_enabled(DeviceType::CPU));  // the scope ended
}

TEST_CASE("autocast: the op lists, doubles, nesting, float16 and errors") {
  auto f32 = [](const Shape& sizes, uint64_t seed) { return testing::leaf(sizes, seed).detach().to(kFloat32); };
  const Tensor x = f32({2, 3}, 1), w = f32({4, 3}, 2), m = f32({3, 3}, 3);
  {
    Autocast on(DeviceType::CPU);
    CHECK(is_autocast_enabled(DeviceType::CPU));
    CHECK_FALSE(is_autocast_enabled(DeviceType::CUDA));
    CHECK(autocast_dtype(DeviceType::CPU) == kBFloat16);
    CHECK(linear(x, w).dtype() == kBFloat16);
    CHECK(matmul(x, m).dtype() == kBFloat16);
    CHECK(mm(x, m).dtype() == kBFloat16);
    CHECK(bmm(x.unsqueeze(0), m.unsqueeze(0)).dtype() == kBFloat16);
    CHECK(addmm(zeros({2, 3}), x, m).dtype() == kBFloat16);
    // float32 ops take 16-bit inputs up; others keep their input's dtype
    const Tensor h = x.to(kBFloat16);
    CHECK(softmax(h, 1).dtype() == kFloat32);
    CHECK(log_softmax(h, 1).dtype() == kFloat32);
    CHECK(mse_loss(h, h).dtype() == kFloat32);
    CHECK(relu(h).dtype() == kBFloat16);
    CHECK(add(x, x).dtype() == kFloat32);
    // doubles are left alone, as PyTorch's autocast does
    CHECK(linear(x.to(kFloat64), w.to(kFloat64)).dtype() == kFloat64);
    {
      Autocast off(DeviceType::CPU, kBFloat16, /*enabled=*/false);
      CHECK(linear(x, w).dtype() == kFloat32);
    }
    CHECK(linear(x, w).dtype() == kBFloat16);
    {
      Autocast half(DeviceType::CPU, kFloat16);
      CHECK(linear(x, w).dtype() == kFloat16);
    }
    CHECK(autocast_dtype(DeviceType::CPU) == kBFloat16);
  }
  CHECK(linear(x, w).dtype() == kFloat32);
  // batch norm under autocast: a bfloat16 activation with float32 parameters and statistics stays bfloat16
  {
    Autocast on(DeviceType::CPU);
    const Tensor act = conv2d(f32({2, 3, 5, 5}, 4), f32({4, 3, 3, 3}, 5));
    Tensor rm = zeros({4}), rv = ones({4});
    const Tensor y = batch_norm(act, rm, rv, ones({4}), zeros({4}), {.training = true});
    CHECK(act.dtype() == kBFloat16);
    CHECK(y.dtype() == kBFloat16);
    CHECK(rm.dtype() == kFloat32);
    CHECK(sum(abs(rm)).item<double>() > 0);  // the float32 running statistics were updated
  }
  CHECK_THROWS_AS(Autocast(DeviceType::CPU, kFloat32), DTypeError);
}
