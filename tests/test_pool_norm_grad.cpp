// Gradients of max_pool2d, avg_pool2d, adaptive_avg_pool2d and batch_norm: finite-difference gradcheck in float64,
// gradients from real PyTorch (fixtures png_*, made by tests/fixtures/gen/pool_norm_grad.py) on every input layout,
// 16-bit floats, thread-count independence, no recording without grad, running statistics updated once.
#include <functional>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "torchlet/autograd/gradcheck.hpp"
#include "torchlet/core/threads.hpp"
#include "torchlet/ops/arithmetic.hpp"
#include "torchlet/ops/normalization.hpp"
#include "torchlet/ops/pooling.hpp"
#include "torchlet/ops/reduction.hpp"
#include "torchlet/tensor/random.hpp"

using namespace torchlet;
using autograd::gradcheck;
using autograd::TensorList;
using testing::check_close;
using testing::check_grad;
using testing::leaf;
using testing::check_equal;
using testing::fixture;

namespace {
std::vector<Tensor> layouts(const Tensor& x) { return testing::all_layouts(x); }

/// For each layout of png_<name>_x as a leaf: fn's output against png_<name>_out, then backward with
/// png_<name>_coef and the input's gradient against png_<name>_g0 (float32, within 1e-5).
void check_pool_backprop(const std::string& name, const std::function<Tensor(const Tensor&)>& fn) {
  const std::string p = "png_" + name + "_";
  for (const Tensor& xs : layouts(fixture(p + "x"))) {
    CAPTURE(name);
    CAPTURE(shape_str(xs.strides()));
    Tensor x = xs.detach();
    x.requires_grad_();
    const Tensor out = fn(x);
    check_close(out, fixture(p + "out"), 1e-5, 1e-6);
    out.backward(fixture(p + "coef"));
    REQUIRE(x.grad().defined());
    CHECK(x.grad().dtype() == kFloat32);
    check_close(x.grad(), fixture(p + "g0"), 1e-5, 1e-5);
  }
}

/// batch_norm case png_<name>: output and the gradients of x, weight and bias (when affine) against PyTorch's.
void check_bn_backprop(const std::string& name, bool affine, bool training, double eps) {
  const std::string p = "png_" + name + "_";
  for (const Tensor& xs : layouts(fixture(p + "x"))) {
    CAPTURE(name);
    CAPTURE(shape_str(xs.strides()));
    Tensor x = xs.detach();
    x.requires_grad_();
    Tensor w = affine ? fixture(p + "w").requires_grad_() : Tensor();
    Tensor b = affine ? fixture(p + "b").requires_grad_() : Tensor();
    const Tensor rm = fixture(p + "rm"), rv = fixture(p + "rv");
    const Tensor out = batch_norm(x, rm, rv, w, b, {.training = training, .momentum = 0.1, .eps = eps});
    check_close(out, fixture(p + "out"), 1e-5, 1e-5);
    out.backward(fixture(p + "coef"));
    check_close(x.grad(), fixture(p + "g0"), 1e-5, 1e-5);
    if (affine) {
      check_close(w.grad(), fixture(p + "g1"), 1e-5, 1e-5);
      check_close(b.grad(), fixture(p + "g2"), 1e-5, 1e-5);
    }
    CHECK_FALSE(rm.requires_grad());
    CHECK_FALSE(rm.grad().defined());
    CHECK_FALSE(rv.grad().defined());
  }
}

MaxPool2dOptions mp(Shape k, Shape s = {}, Shape pad = {0}, Shape dil = {1}, bool ceil = false) {
  return {.kernel_size = k, .stride = s, .padding = pad, .dilation = dil, .ceil_mode = ceil};
}
}  // namespace

// ---- (a) gradcheck ---------------------------------------------------------------------------------------
TEST_CASE("gradcheck: max_pool2d (ResNet's 3x3/2 pad 1, overlapping windows, ceil_mode, dilation, unbatched)") {
  const Tensor x = leaf({2, 3, 7, 7}, 1);
  const MaxPool2dOptions cases[] = {mp({3}, {2}, {1}), mp({3}, {1}), mp({2}), mp({3}, {2}, {0}, {1}, true),
                                    mp({2}, {2}, {1}, {1}, true), mp({3}, {1}, {1}, {2}),
                                    mp({2, 3}, {2, 1}, {1, 1}, {1, 2})};
  for (const MaxPool2dOptions& o : cases) {
    CAPTURE(shape_str(o.kernel_size));
    CAPTURE(shape_str(o.stride));
    check_grad([&o](const TensorList& in) { return max_pool2d(in[0], o); }, {x});
    check_grad([&o](const TensorList& in) { return max_pool2d_with_indices(in[0], o).first; }, {x});
  }
  const Tensor u = leaf({3, 6, 5}, 2);
  check_grad([](const TensorList& in) { return max_pool2d(in[0], mp({3}, {2}, {1})); }, {u});
  // strided inputs (a transposed view, channels-last) and a stride-0 incoming gradient (from sum)
  const Tensor t = leaf({2, 3, 6, 7}, 3), cl = leaf({2, 7, 6, 3}, 4);
  check_grad([](const TensorList& in) { return max_pool2d(in[0].transpose(2, 3), mp({3}, {2}, {1})); }, {t});
  check_grad([](const TensorList& in) { return max_pool2d(in[0].permute({0, 3, 1, 2}), mp({3}, {1})); }, {cl});
  check_grad([](const TensorList& in) { return sum(max_pool2d(in[0], mp({3}, {1}))); }, {t});
}

TEST_CASE("gradcheck: avg_pool2d with padding, ceil_mode, count_include_pad and divisor_override") {
  const Tensor x = leaf({2, 2, 7, 6}, 5);
  const AvgPool2dOptions cases[] = {
      {.kernel_size = {2}},
      {.kernel_size = {3}, .stride = {2}, .padding = {1}},
      {.kernel_size = {3}, .stride = {2}, .padding = {1}, .count_include_pad = false},
      {.kernel_size = {3}, .stride = {2}, .padding = {1}, .ceil_mode = true},
      {.kernel_size = {3}, .stride = {2}, .padding = {1}, .ceil_mode = true, .count_include_pad = false},
      {.kernel_size = {4}, .stride = {3}, .ceil_mode = true},
      {.kernel_size = {3}, .stride = {1}, .padding = {1}, .divisor_override = 5},
      {.kernel_size = {3}, .stride = {2}, .padding = {1}, .ceil_mode = true, .divisor_override = 2},
      {.kernel_size = {3, 2}, .stride = {1, 2}, .padding = {1, 0}},
  };
  for (const AvgPool2dOptions& o : cases) {
    CAPTURE(shape_str(o.kernel_size));
    CAPTURE(o.ceil_mode);
    CAPTURE(o.count_include_pad);
    check_grad([&o](const TensorList& in) { return avg_pool2d(in[0], o); }, {x});
  }
  const Tensor u = leaf({3, 6, 5}, 6), cl = leaf({2, 6, 7, 2}, 7);
  check_grad([](const TensorList& in) { return avg_pool2d(in[0], {.kernel_size = {2}, .stride = {1}}); }, {u});
  check_grad([](const TensorList& in) {
    return avg_pool2d(in[0].permute({0, 3, 1, 2}), {.kernel_size = {3}, .stride = {2}, .padding = {1},
                                                    .count_include_pad = false});
  }, {cl});
  check_grad([](const TensorList& in) { return sum(avg_pool2d(in[0], {.kernel_size = {3}, .padding = {1}})); }, {x});
}

TEST_CASE("gradcheck: adaptive_avg_pool2d to dividing, non-dividing and larger sizes") {
  const Tensor x = leaf({2, 2, 7, 5}, 8);
  const Shape sizes[] = {{1}, {3}, {2, 4}, {7, 5}, {4, 3}, {9, 8}};
  for (const Shape& s : sizes) {
    CAPTURE(shape_str(s));
    check_grad([&s](const TensorList& in) { return adaptive_avg_pool2d(in[0], s); }, {x});
  }
  const Tensor u = leaf({3, 10, 9}, 9);
  check_grad([](const TensorList& in) { return adaptive_avg_pool2d(in[0], {4, 5}); }, {u});
  check_grad([](const TensorList& in) { return adaptive_avg_pool2d(in[0].transpose(2, 3), {3, 2}); }, {x});
  check_grad([](const TensorList& in) { return sum(adaptive_avg_pool2d(in[0], {3})); }, {x});
}

TEST_CASE("gradcheck: batch_norm in training and evaluation, affine or not, 2-D to 4-D inputs") {
  for (bool training : {true, false}) {
    CAPTURE(training);
    for (const Shape& shape : {Shape{3, 4, 3, 3}, Shape{6, 3}, Shape{4, 3, 5}}) {
      CAPTURE(shape_str(shape));
      const int64_t C = shape[1];
      const Tensor x = leaf(shape, 10);
      const Tensor w = leaf({C}, 11, 0.5, 1.5), b = leaf({C}, 12);
      Tensor rm = zeros({C}, kFloat64), rv = ones({C}, kFloat64);
      {
        Generator g(13);
        uniform_(rm, -0.5, 0.5, g);
        uniform_(rv, 0.5, 1.5, g);
      }
      const BatchNormOptions o{.training = training, .momentum = 0.1, .eps = 1e-3};
      // affine
      check_grad([&](const TensorList& in) { return batch_norm(in[0], rm, rv, in[1], in[2], o); }, {x, w, b});
      // not affine
      check_grad([&](const TensorList& in) { return batch_norm(in[0], rm, rv, Tensor(), Tensor(), o); }, {x});
      // weight only / bias only, and gradients for the parameters alone
      check_grad([&](const TensorList& in) { return batch_norm(in[0], rm, rv, in[1], Tensor(), o); }, {x, w});
      check_grad([&](const TensorList& in) { return batch_norm(x.detach(), rm, rv, Tensor(), in[0], o); }, {b});
      // a stride-0 incoming gradient
      check_grad([&](const TensorList& in) { return sum(batch_norm(in[0], rm, rv, in[1], in[2], o)); }, {x, w, b});
      // training without running statistics
      if (training)
        check_grad([&](const TensorList& in) { return batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], o); },
                   {x, w, b});
    }
  }
  // channels-last input
  const Tensor cl = leaf({2, 3, 4, 3}, 14), w = leaf({3}, 15, 0.5, 1.5), b = leaf({3}, 16);
  check_grad([](const TensorList& in) {
    return batch_norm(in[0].permute({0, 3, 1, 2}), Tensor(), Tensor(), in[1], in[2], {.training = true});
  }, {cl, w, b});
}

// ---- (b) against PyTorch -----------------------------------------------------------------------------------
TEST_CASE("max_pool2d gradients match PyTorch, ties going to the first maximum") {
  check_pool_backprop("max_resnet", [](const Tensor& x) { return max_pool2d(x, mp({3}, {2}, {1})); });
  check_pool_backprop("max_overlap", [](const Tensor& x) { return max_pool2d(x, mp({3}, {1})); });
  check_pool_backprop("max_ceil", [](const Tensor& x) { return max_pool2d(x, mp({3}, {2}, {0}, {1}, true)); });
  check_pool_backprop("max_dilation", [](const Tensor& x) { return max_pool2d(x, mp({3}, {1}, {1}, {2})); });
  check_pool_backprop("max_ties", [](const Tensor& x) { return max_pool2d(x, mp({3}, {1}, {1})); });
  check_pool_backprop("max_ties_s2", [](const Tensor& x) { return max_pool2d_with_indices(x, mp({2}, {1})).first; });
}

TEST_CASE("avg_pool2d gradients match PyTorch") {
  check_pool_backprop("avg_incl", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}});
  });
  check_pool_backprop("avg_excl", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}, .count_include_pad = false});
  });
  check_pool_backprop("avg_ceil_incl", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}, .ceil_mode = true});
  });
  check_pool_backprop("avg_ceil_excl", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}, .ceil_mode = true,
                          .count_include_pad = false});
  });
  check_pool_backprop("avg_divisor", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}, .divisor_override = 5});
  });
  check_pool_backprop("avg_nonsquare", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3, 2}, .stride = {1, 2}, .padding = {1, 0}});
  });
}

TEST_CASE("adaptive_avg_pool2d gradients match PyTorch") {
  check_pool_backprop("adaptive_1x1", [](const Tensor& x) { return adaptive_avg_pool2d(x, {1}); });
  check_pool_backprop("adaptive_7to3", [](const Tensor& x) { return adaptive_avg_pool2d(x, {3}); });
  check_pool_backprop("adaptive_5to2x4", [](const Tensor& x) { return adaptive_avg_pool2d(x, {2, 4}); });
  check_pool_backprop("adaptive_up", [](const Tensor& x) { return adaptive_avg_pool2d(x, {5, 7}); });
}

TEST_CASE("batch_norm gradients (input, weight, bias) match PyTorch") {
  check_bn_backprop("bn_train", true, true, 1e-5);
  check_bn_backprop("bn_train_2d", true, true, 1e-5);
  check_bn_backprop("bn_noaffine", false, true, 1e-5);
  check_bn_backprop("bn_eval", true, false, 1e-5);
  check_bn_backprop("bn_eps", true, true, 1e-2);
}

TEST_CASE("pooling and batch_norm gradients in bfloat16 and float16 follow float32") {
  Generator gen(21);
  const Tensor x32 = randn({2, 3, 9, 9}, kFloat32, gen), coef = randn({2, 3, 5, 5}, kFloat32, gen);
  const Tensor coef_full = randn({2, 3, 9, 9}, kFloat32, gen);
  for (DType t : {kBFloat16, kFloat16}) {
    CAPTURE(t);
    const double tol = t == kBFloat16 ? 3e-2 : 3e-3;
    const Tensor xh = x32.to(t), xf = xh.to(kFloat32);  // the same values in both
    auto grad_of = [&](const Tensor& x0, const std::function<Tensor(const Tensor&)>& fn, const Tensor& c) {
      Tensor x = x0.detach();
      x.requires_grad_();
      fn(x).backward(c.to(x0.dtype()));
      CHECK(x.grad().dtype() == x0.dtype());
      return x.grad();
    };
    const std::function<Tensor(const Tensor&)> pools[] = {
        [](const Tensor& x) { return max_pool2d(x, mp({3}, {2}, {1})); },
        [](const Tensor& x) { return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}}); },
        [](const Tensor& x) { return adaptive_avg_pool2d(x, {5}); }};
    for (const auto& fn : pools) check_close(grad_of(xh, fn, coef), grad_of(xf, fn, coef), tol, tol);
    // batch norm with float32 parameters for bfloat16 input, like PyTorch's mixed batch norm
    const Tensor w = ones({3}).requires_grad_();
    auto bn = [&](const Tensor& x) { return batch_norm(x, Tensor(), Tensor(), w, Tensor(), {.training = true}); };
    check_close(grad_of(xh, bn, coef_full), grad_of(xf, bn, coef_full), tol, 5 * tol);
    CHECK(w.grad().dtype() == kFloat32);
  }
}

TEST_CASE("pooling and batch_norm gradients are the same on one thread and on several") {
  Generator gen(22);
  const Tensor x0 = randn({4, 16, 33, 31}, kFloat32, gen);
  const Tensor c_pool = randn({4, 16, 17, 16}, kFloat32, gen), c_ad = randn({4, 16, 5, 3}, kFloat32, gen);
  auto grads = [&]() {
    std::vector<Tensor> out;
    auto run = [&](const std::function<Tensor(const Tensor&)>& fn, const Tensor& c) {
      Tensor x = x0.detach();
      x.requires_grad_();
      const Tensor y = fn(x);
      y.backward(c.defined() ? c : ones(y.sizes()));
      out.push_back(x.grad());
    };
    run([](const Tensor& x) { return max_pool2d(x, mp({3}, {2}, {1})); }, c_pool);
    run([](const Tensor& x) { return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}}); }, c_pool);
    run([](const Tensor& x) { return adaptive_avg_pool2d(x, {5, 3}); }, c_ad);
    run([](const Tensor& x) { return batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), {.training = true}); },
        x0);
    return out;
  };
  const int saved = get_num_threads();
  set_num_threads(1);
  const auto one = grads();
  set_num_threads(4);
  const auto four = grads();
  set_num_threads(saved);
  for (size_t i = 0; i < one.size(); ++i) {
    CAPTURE(i);
    check_equal(four[i], one[i]);
  }
}

TEST_CASE("zero-size outputs and empty batches give zero or empty gradients") {
  Tensor x = ones({2, 3, 4, 4});
  x.requires_grad_();
  const Tensor out = adaptive_avg_pool2d(x, {0, 2});
  CHECK(out.sizes() == Shape{2, 3, 0, 2});
  out.backward(zeros(out.sizes()));
  check_equal(x.grad(), zeros({2, 3, 4, 4}));
  Tensor e = zeros({0, 3, 4, 4});
  e.requires_grad_();
  max_pool2d(e, mp({2})).backward(zeros({0, 3, 2, 2}));
  CHECK(e.grad().sizes() == Shape{0, 3, 4, 4});
  Tensor w = ones({3}).requires_grad_(), b = zeros({3}).requires_grad_();
  batch_norm(e, Tensor(), Tensor(), w, b, {.training = true}).backward(zeros({0, 3, 4, 4}));
  check_equal(w.grad(), zeros({3}));
  check_equal(b.grad(), zeros({3}));
}

// ---- (c) recording and running statistics ----------------------------------------------------------------
TEST_CASE("nothing is recorded when nothing requires grad (or grad mode is off)") {
  const Tensor x = randn({2, 3, 6, 6});
  const Tensor rm = zeros({3}), rv = ones({3}), w = ones({3}), b = zeros({3});
  auto check_none = [&](const Tensor& in) {
    const Tensor outs[] = {max_pool2d(in, mp({3}, {2}, {1})), max_pool2d_with_indices(in, mp({2})).first,
                           avg_pool2d(in, {.kernel_size = {2}}), adaptive_avg_pool2d(in, {2}),
                           batch_norm(in, rm, rv, w, b, {.training = true}), batch_norm(in, rm, rv, w, b)};
    for (const Tensor& o : outs) {
      CHECK_FALSE(o.requires_grad());
      CHECK(o.grad_fn() == nullptr);
    }
  };
  check_none(x);
  Tensor xg = x.clone();
  xg.requires_grad_();
  {
    autograd::NoGradGuard no_grad;
    check_none(xg);
  }
  // with grad: one node per op, named like PyTorch's
  CHECK(max_pool2d(xg, mp({2})).grad_fn()->name() == "MaxPool2dWithIndicesBackward0");
  CHECK(avg_pool2d(xg, {.kernel_size = {2}}).grad_fn()->name() == "AvgPool2dBackward0");
  CHECK(adaptive_avg_pool2d(xg, {2}).grad_fn()->name() == "AdaptiveAvgPool2dBackward0");
  CHECK(batch_norm(xg, rm, rv, w, b).grad_fn()->name() == "NativeBatchNormBackward0");
  // only a parameter requires grad: recorded, and only that parameter gets a gradient
  const Tensor wg = ones({3}).requires_grad_();
  const Tensor y = batch_norm(x, Tensor(), Tensor(), wg, b, {.training = true});
  REQUIRE(y.requires_grad());
  y.backward(ones(y.sizes()));
  CHECK(wg.grad().defined());
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(b.grad().defined());
}

TEST_CASE("batch_norm updates running statistics exactly once per forward, never in backward") {
  const Tensor x0 = randn({4, 3, 5, 5});
  const Tensor rm_ref = zeros({3}), rv_ref = ones({3});
  batch_norm(x0, rm_ref, rv_ref, Tensor(), Tensor(), {.training = true});  // one update, no grad

  Tensor x = x0.clone();
  x.requires_grad_();
  const Tensor w = ones({3}).requires_grad_(), b = zeros({3}).requires_grad_();
  const Tensor rm = zeros({3}), rv = ones({3});
  const Tensor y = batch_norm(x, rm, rv, w, b, {.training = true});
  check_equal(rm, rm_ref);
  check_equal(rv, rv_ref);
  y.backward(ones(y.sizes()), /*retain_graph=*/true);
  y.backward(ones(y.sizes()));
  check_equal(rm, rm_ref);
  check_equal(rv, rv_ref);
  CHECK_FALSE(rm.requires_grad());
  CHECK_FALSE(rm.grad().defined());
  CHECK_FALSE(rv.grad().defined());
  // the gradient of a sum through training batch norm is zero for x, N*H*W for bias
  check_close(x.grad(), zeros(x.sizes()), 0, 1e-5);
  check_close(b.grad(), full({3}, 2.0 * 4 * 5 * 5), 1e-6, 0);
}

TEST_CASE("an in-place change to a saved tensor before backward is reported") {
  Tensor x = randn({1, 2, 4, 4});
  x.requires_grad_();
  auto [out, idx] = max_pool2d_with_indices(x, mp({2}));
  idx.zero_();
  CHECK_THROWS_AS(out.backward(ones(out.sizes())), ValueError);
}
