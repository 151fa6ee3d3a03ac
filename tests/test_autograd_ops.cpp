// Gradients of the reductions, matrix products, softmax / log_softmax / dropout, cat / stack and the losses:
// finite-difference gradcheck in float64, values and gradients from real PyTorch (fixtures ag_*, made by
// tests/fixtures/gen/autograd_ops.py), no recording without grad, and the losses' errors.
#include <cmath>
#include <functional>
#include <string>

#include "helpers.hpp"
#include "torchlet/torchlet.hpp"

using namespace torchlet;
using autograd::gradcheck;
using autograd::TensorList;
using testing::check_close;
using testing::check_grad;
using testing::leaf;
using testing::fixture;

namespace {
/// A fixture as a leaf that requires grad.
Tensor fleaf(const std::string& name) { return fixture(name).requires_grad_(); }

/// Checks `out` against fixture `name`, backpropagates (from out itself, or with the gradient `name`_coef)
/// and checks each leaf's gradient against `name`_g<i>.
void check_backprop(const std::string& name, const Tensor& out, const TensorList& leaves, bool with_coef = false,
                    double rtol = 1e-5, double atol = 1e-6) {
  {
    INFO(name, ": value");
    check_close(out, fixture(name), rtol, atol);
  }
  if (with_coef) out.backward(fixture(name + "_coef").to(out.dtype()));
  else out.backward();
  for (size_t i = 0; i < leaves.size(); ++i) {
    INFO(name, ": gradient of input ", i);
    REQUIRE(leaves[i].grad().defined());
    check_close(leaves[i].grad(), fixture(name + "_g" + std::to_string(i)), rtol, atol);
  }
}

Tensor int64s(std::initializer_list<int64_t> v, const Shape& shape) {
  Tensor t = empty(shape, kInt64);
  int64_t* p = t.data<int64_t>();
  for (int64_t x : v) *p++ = x;
  return t;
}
}  // namespace

// ---- (a) gradcheck ---------------------------------------------------------------------------------------
TEST_CASE("gradcheck: sum and mean over all, single and several dims, keepdim") {
  const Tensor x = leaf({3, 4, 2}, 1);
  check_grad([](const TensorList& in) { return sum(in[0]); }, {x});
  check_grad([](const TensorList& in) { return sum(in[0], {1}); }, {x});
  check_grad([](const TensorList& in) { return sum(in[0], {0, 2}, true); }, {x});
  check_grad([](const TensorList& in) { return sum(in[0], {-1}, true); }, {x});
  check_grad([](const TensorList& in) { return sum(in[0], {1}, false, kFloat64); }, {x});
  check_grad([](const TensorList& in) { return mean(in[0]); }, {x});
  check_grad([](const TensorList& in) { return mean(in[0], {0}); }, {x});
  check_grad([](const TensorList& in) { return mean(in[0], {2, 1}, true); }, {x});
  const Tensor s = leaf({}, 2);
  check_grad([](const TensorList& in) { return sum(in[0]); }, {s});
  check_grad([](const TensorList& in) { return mean(in[0], {0}, true); }, {s});
  // a transposed (non-contiguous) view of a leaf
  check_grad([](const TensorList& in) { return sum(in[0].transpose(0, 2), {1}); }, {x});
}

TEST_CASE("gradcheck: var and std with corrections, dims and keepdim") {
  const Tensor x = leaf({3, 4, 2}, 3);
  check_grad([](const TensorList& in) { return var(in[0]); }, {x});
  check_grad([](const TensorList& in) { return var(in[0], {1}); }, {x});
  check_grad([](const TensorList& in) { return var(in[0], {0, 2}, 0, true); }, {x});
  check_grad([](const TensorList& in) { return var(in[0], {-1}, 2); }, {x});
  check_grad([](const TensorList& in) { return std_(in[0]); }, {x});
  check_grad([](const TensorList& in) { return std_(in[0], {1}); }, {x});
  check_grad([](const TensorList& in) { return std_(in[0], {0, 2}, 0, true); }, {x});
}

TEST_CASE("gradcheck: max and min, over all elements and along a dim") {
  const Tensor x = leaf({3, 5}, 4);
  check_grad([](const TensorList& in) { return max(in[0]); }, {x});
  check_grad([](const TensorList& in) { return min(in[0]); }, {x});
  check_grad([](const TensorList& in) { return max(in[0], 1).first; }, {x});
  check_grad([](const TensorList& in) { return max(in[0], 0, true).first; }, {x});
  check_grad([](const TensorList& in) { return min(in[0], -1, true).first; }, {x});
  check_grad([](const TensorList& in) { return min(in[0], 0).first; }, {x});
  const Tensor s = leaf({}, 5);
  check_grad([](const TensorList& in) { return max(in[0], 0).first; }, {s});
}

TEST_CASE("gradcheck: matmul in every rank combination, broadcast batch dims, transposed operands") {
  struct Case {
    Shape a, b;
  };
  const Case cases[] = {{{4}, {4}},       {{4}, {4, 3}},       {{2, 4}, {4}},       {{2, 4}, {4, 3}},
                        {{2, 3, 4}, {4}}, {{4}, {2, 4, 3}},    {{2, 3, 4}, {4, 5}}, {{3, 4}, {2, 4, 5}},
                        {{2, 3, 4}, {2, 4, 5}}, {{2, 1, 3, 4}, {3, 4, 2}}, {{1, 3, 4}, {2, 1, 4, 2}}};
  uint64_t seed = 10;
  for (const Case& c : cases) {
    INFO("a ", shape_str(c.a), " @ b ", shape_str(c.b));
    const Tensor a = leaf(c.a, seed++), b = leaf(c.b, seed++);
    check_grad([](const TensorList& in) { return matmul(in[0], in[1]); }, {a, b});
  }
  // one operand only requires grad
  const Tensor a = leaf({2, 3, 4}, 40), b = leaf({4, 2}, 41).detach();
  check_grad([&b](const TensorList& in) { return matmul(in[0], b); }, {a});
  // transposed operands: the leaves are [k, n] and [m, k]
  const Tensor at = leaf({4, 3}, 42), bt = leaf({5, 4}, 43);
  check_grad([](const TensorList& in) { return matmul(in[0].t(), in[1].t()); }, {at, bt});
  check_grad([](const TensorList& in) { return mm(in[0].t(), in[1].t()); }, {at, bt});
  const Tensor bat = leaf({2, 4, 3}, 44), bbt = leaf({2, 5, 4}, 45);
  check_grad([](const TensorList& in) { return matmul(in[0].transpose(1, 2), in[1].transpose(1, 2)); }, {bat, bbt});
}

TEST_CASE("gradcheck: mm, bmm, addmm, linear") {
  const Tensor a = leaf({3, 4}, 50), b = leaf({4, 5}, 51);
  check_grad([](const TensorList& in) { return mm(in[0], in[1]); }, {a, b});
  const Tensor ba = leaf({2, 3, 4}, 52), bb = leaf({2, 4, 5}, 53);
  check_grad([](const TensorList& in) { return bmm(in[0], in[1]); }, {ba, bb});
  for (const Shape& cs : {Shape{3, 5}, Shape{5}, Shape{1, 5}, Shape{3, 1}, Shape{}}) {
    INFO("c ", shape_str(cs));
    const Tensor c = leaf(cs, 54);
    check_grad([](const TensorList& in) { return addmm(in[0], in[1], in[2]); }, {c, a, b});
    check_grad([](const TensorList& in) { return addmm(in[0], in[1], in[2], 0.5, -2.0); }, {c, a, b});
    check_grad([](const TensorList& in) { return addmm(in[0], in[1], in[2], 0, 1.5); }, {c, a, b});
  }
  const Tensor w = leaf({5, 4}, 55), bias = leaf({5}, 56);
  for (const Shape& xs : {Shape{4}, Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 1, 2, 4}}) {
    INFO("x ", shape_str(xs));
    const Tensor x = leaf(xs, 57);
    check_grad([](const TensorList& in) { return linear(in[0], in[1], in[2]); }, {x, w, bias});
    check_grad([](const TensorList& in) { return linear(in[0], in[1]); }, {x, w});
  }
  // a transposed input
  const Tensor xt = leaf({4, 3}, 58);
  check_grad([](const TensorList& in) { return linear(in[0].t(), in[1], in[2]); }, {xt, w, bias});
}

TEST_CASE("gradcheck: softmax, log_softmax, dropout") {
  const Tensor x = leaf({3, 4, 2}, 60, -3, 3);
  for (int64_t d : {0, 1, 2, -1}) {
    INFO("dim ", d);
    check_grad([d](const TensorList& in) { return softmax(in[0], d); }, {x});
    check_grad([d](const TensorList& in) { return log_softmax(in[0], d); }, {x});
  }
  check_grad([](const TensorList& in) { return log_softmax(in[0].transpose(0, 2), 1); }, {x});
  const Tensor s = leaf({}, 61);
  check_grad([](const TensorList& in) { return softmax(in[0], 0); }, {s});
  // the same mask on every call: a generator seeded anew each time
  for (double p : {0.3, 0.7, 1.0}) {
    INFO("p ", p);
    check_grad([p](const TensorList& in) {
      Generator g(77);
      return dropout(in[0], p, true, g);
    }, {x});
  }
  check_grad([](const TensorList& in) { return dropout(in[0], 0.5, false); }, {x});
}

TEST_CASE("gradcheck: cat and stack") {
  const Tensor a = leaf({2, 3}, 70), b = leaf({2, 1}, 71), c = leaf({2, 4}, 72);
  check_grad([](const TensorList& in) { return cat({in[0], in[1], in[2]}, 1); }, {a, b, c});
  check_grad([](const TensorList& in) { return cat({in[0], in[1], in[2]}, -1); }, {a, b, c});
  const Tensor d = leaf({1, 3}, 73);
  check_grad([](const TensorList& in) { return cat({in[0], in[1], in[0]}, 0); }, {a, d});  // a used twice
  const Tensor e = leaf({2, 3}, 74);
  for (int64_t dim : {0, 1, 2, -1}) {
    INFO("stack dim ", dim);
    check_grad([dim](const TensorList& in) { return stack({in[0], in[1]}, dim); }, {a, e});
  }
}

TEST_CASE("gradcheck: cross_entropy and nll_loss in every configuration") {
  const Tensor x = leaf({5, 4}, 80, -2, 2);
  const Tensor t = int64s({1, 0, 3, 2, 3}, {5});
  const Tensor t_ign = int64s({1, -100, 3, 2, 3}, {5});
  const Tensor w = tensor({0.5, 2.0, 1.0, 1.5});
  for (Reduction red : {Reduction::Mean, Reduction::Sum, Reduction::None})
    for (double ls : {0.0, 0.2})
      for (bool weighted : {false, true})
        for (bool ignore : {false, true}) {
          INFO("reduction ", static_cast<int>(red), " label_smoothing ", ls, " weighted ", weighted, " ignore ",
               ignore);
          CrossEntropyOptions opt{.weight = weighted ? w : Tensor(), .reduction = red, .label_smoothing = ls};
          const Tensor& tt = ignore ? t_ign : t;
          check_grad([&](const TensorList& in) { return cross_entropy(in[0], tt, opt); }, {x});
          if (ls == 0) {
            NllLossOptions nopt{.weight = opt.weight, .reduction = red};
            check_grad([&](const TensorList& in) { return nll_loss(in[0], tt, nopt); }, {x});
          }
        }
  // a custom ignore_index, an N-d input, a 1-D input, a transposed input
  check_grad([&](const TensorList& in) { return cross_entropy(in[0], t, {.ignore_index = 3}); }, {x});
  const Tensor xn = leaf({2, 3, 2, 2}, 81, -2, 2);
  const Tensor tn = int64s({0, 1, 2, 2, 1, 0, 0, 2}, {2, 2, 2});
  check_grad([&](const TensorList& in) {
    return cross_entropy(in[0], tn, {.weight = tensor({0.5, 2.0, 1.5}), .ignore_index = 1, .label_smoothing = 0.1});
  }, {xn});
  check_grad([&](const TensorList& in) { return cross_entropy(in[0], tn, {.reduction = Reduction::None}); }, {xn});
  const Tensor x1 = leaf({4}, 82);
  check_grad([](const TensorList& in) { return cross_entropy(in[0], scalar_tensor(2, kInt64)); }, {x1});
  const Tensor xt = leaf({4, 5}, 83);
  check_grad([&](const TensorList& in) { return cross_entropy(in[0].t(), t, {.label_smoothing = 0.3}); }, {xt});
}

TEST_CASE("gradcheck: cross_entropy with class probabilities (in the input and the target)") {
  const Tensor x = leaf({3, 4}, 90, -2, 2);
  const Tensor p = leaf({3, 4}, 91, 0, 1);
  for (Reduction red : {Reduction::Mean, Reduction::Sum, Reduction::None})
    for (double ls : {0.0, 0.25})
      for (bool weighted : {false, true}) {
        INFO("reduction ", static_cast<int>(red), " label_smoothing ", ls, " weighted ", weighted);
        CrossEntropyOptions opt{.weight = weighted ? tensor({1.0, 0.5, 2.0, 3.0}) : Tensor(), .reduction = red,
                                .label_smoothing = ls};
        check_grad([&](const TensorList& in) { return cross_entropy(in[0], in[1], opt); }, {x, p});
      }
  const Tensor xn = leaf({2, 3, 2}, 92), pn = leaf({2, 3, 2}, 93, 0, 1);
  check_grad([](const TensorList& in) { return cross_entropy(in[0], in[1]); }, {xn, pn});
}

TEST_CASE("gradcheck: mse_loss in both arguments, each reduction, broadcasting") {
  const Tensor a = leaf({3, 4}, 100), b = leaf({3, 4}, 101), c = leaf({4}, 102);
  for (Reduction red : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    INFO("reduction ", static_cast<int>(red));
    check_grad([red](const TensorList& in) { return mse_loss(in[0], in[1], red); }, {a, b});
    check_grad([red](const TensorList& in) { return mse_loss(in[0], in[1], red); }, {a, c});
  }
}

// ---- (b) values and gradients from PyTorch ------------------------------------------------------------------
TEST_CASE("cross_entropy with class indices matches PyTorch: reductions, label smoothing, weights, ignore_index") {
  const Tensor t = fixture("ag_ce_t"), w = fixture("ag_ce_w");
  for (const char* red : {"mean", "sum", "none"})
    for (int ls : {0, 1})
      for (int weighted : {0, 1}) {
        const std::string name = std::string("ag_ce_") + red + "_ls" + std::to_string(ls) + "_w" +
                                 std::to_string(weighted);
        const Reduction r = red[0] == 'm' ? Reduction::Mean : red[0] == 's' ? Reduction::Sum : Reduction::None;
        const Tensor x = fleaf("ag_ce_x");
        const Tensor out = cross_entropy(x, t, {.weight = weighted ? w : Tensor(), .reduction = r,
                                                .label_smoothing = ls * 0.1});
        check_backprop(name, out, {x}, r == Reduction::None);
      }
  const Tensor x = fleaf("ag_ce_x");
  check_backprop("ag_ce_plain", cross_entropy(x, fixture("ag_ce_t2")), {x});
}

TEST_CASE("cross_entropy on N-d and 1-D inputs matches PyTorch") {
  const Tensor t = fixture("ag_cend_t"), w = fixture("ag_cend_w");
  Tensor x = fleaf("ag_cend_x");
  check_backprop("ag_cend_mean", cross_entropy(x, t, {.weight = w, .ignore_index = 1, .label_smoothing = 0.2}), {x});
  x = fleaf("ag_cend_x");
  check_backprop("ag_cend_none", cross_entropy(x, t, {.weight = w, .ignore_index = 1, .reduction = Reduction::None}),
                 {x}, true);
  const Tensor x1 = fleaf("ag_ce1d_x");
  check_backprop("ag_ce1d", cross_entropy(x1, scalar_tensor(3, kInt64), {.label_smoothing = 0.3}), {x1});
}

TEST_CASE("cross_entropy with class probabilities matches PyTorch (gradients of input and target)") {
  const Tensor w = fixture("ag_cep_w");
  for (const char* red : {"mean", "sum", "none"}) {
    const Reduction r = red[0] == 'm' ? Reduction::Mean : red[0] == 's' ? Reduction::Sum : Reduction::None;
    const Tensor x = fleaf("ag_cep_x"), p = fleaf("ag_cep_p");
    check_backprop(std::string("ag_cep_") + red,
                   cross_entropy(x, p, {.weight = w, .reduction = r, .label_smoothing = 0.15}), {x, p},
                   r == Reduction::None);
  }
}

TEST_CASE("nll_loss and mse_loss match PyTorch") {
  const Tensor t = fixture("ag_nll_t"), w = fixture("ag_nll_w");
  for (const char* red : {"mean", "sum", "none"}) {
    const Reduction r = red[0] == 'm' ? Reduction::Mean : red[0] == 's' ? Reduction::Sum : Reduction::None;
    const Tensor x = fleaf("ag_nll_x");
    check_backprop(std::string("ag_nll_") + red, nll_loss(x, t, {.weight = w, .ignore_index = -1, .reduction = r}),
                   {x}, r == Reduction::None);
    const Tensor a = fleaf("ag_mse_a"), b = fleaf("ag_mse_b");
    check_backprop(std::string("ag_mse_") + red, mse_loss(a, b, r), {a, b}, r == Reduction::None);
  }
}

TEST_CASE("max / min gradients match PyTorch: split evenly among ties of the all-reduce, to the index along a dim") {
  Tensor x = fleaf("ag_ties_x");
  check_backprop("ag_max_all", max(x), {x});
  x = fleaf("ag_ties_x");
  check_backprop("ag_min_all", min(x), {x});
  x = fleaf("ag_nan_x");
  check_backprop("ag_max_nan", max(x), {x});
  x = fleaf("ag_ties_x");
  check_backprop("ag_max_d1", max(x, 1).first, {x}, true);
  x = fleaf("ag_ties_x");
  check_backprop("ag_min_d0", min(x, 0, true).first, {x}, true);
}

TEST_CASE("var, std, softmax, log_softmax, matmul, linear gradients match PyTorch") {
  Tensor x = fleaf("ag_v_x");
  check_backprop("ag_var_d1_c0", var(x, {1}, 0), {x}, true, 1e-10, 1e-12);
  x = fleaf("ag_v_x");
  check_backprop("ag_std_all", std_(x), {x}, false, 1e-10, 1e-12);
  x = fleaf("ag_v_x");
  check_backprop("ag_softmax_d0", softmax(x, 0), {x}, true, 1e-10, 1e-12);
  x = fleaf("ag_v_x");
  check_backprop("ag_log_softmax_d1", log_softmax(x, 1), {x}, true, 1e-10, 1e-12);
  const Tensor a = fleaf("ag_mm_a"), b = fleaf("ag_mm_b");
  check_backprop("ag_matmul_bcast", matmul(a, b), {a, b}, true, 1e-5, 1e-5);
  const Tensor lx = fleaf("ag_lin_x"), lw = fleaf("ag_lin_w"), lb = fleaf("ag_lin_b");
  check_backprop("ag_linear", linear(lx, lw, lb), {lx, lw, lb}, true, 1e-5, 1e-5);
}

// ---- (c) recording rules -------------------------------------------------------------------------------------
TEST_CASE("nothing is recorded when no input requires grad, or under NoGradGuard") {
  const Tensor x = ones({3, 4}), y = ones({4, 2}), t = int64s({0, 1, 2}, {3});
  const std::vector<Tensor> outs{sum(x), sum(x, {1}), mean(x), var(x, {0}), std_(x), max(x), min(x),
                                 max(x, 1).first, min(x, 0).first, mm(x, y), matmul(x, y), bmm(x.unsqueeze(0),
                                 y.unsqueeze(0)), addmm(ones({3, 2}), x, y), linear(x, y.t(), ones({2})),
                                 softmax(x, 1), log_softmax(x, 0), dropout(x, 0.5, true), cat({x, x}), stack({x, x}),
                                 cross_entropy(x, t), nll_loss(x, t), mse_loss(x, x), cross_entropy(x, x)};
  for (size_t i = 0; i < outs.size(); ++i) {
    INFO("output ", i);
    CHECK(outs[i].grad_fn() == nullptr);
    CHECK_FALSE(outs[i].requires_grad());
  }
  const Tensor w = ones({3, 4}).requires_grad_();
  autograd::NoGradGuard no_grad;
  CHECK(sum(w).grad_fn() == nullptr);
  CHECK(matmul(w, y).grad_fn() == nullptr);
  CHECK(cross_entropy(w, t, {.label_smoothing = 0.1}).grad_fn() == nullptr);
  CHECK(cat({w, x}).grad_fn() == nullptr);
  CHECK_FALSE(softmax(w, 1).requires_grad());
}

TEST_CASE("recorded nodes carry PyTorch-style names; a single op records one node") {
  const Tensor x = ones({3, 4}).requires_grad_(), y = ones({4, 2});
  CHECK(sum(x).grad_fn()->name() == "SumBackward0");
  CHECK(mean(x, {1}).grad_fn()->name() == "MeanBackward0");
  CHECK(var(x).grad_fn()->name() == "VarBackward0");
  CHECK(std_(x).grad_fn()->name() == "StdBackward0");
  CHECK(max(x).grad_fn()->name() == "MaxBackward0");
  CHECK(min(x, 1).first.grad_fn()->name() == "MinBackward0");
  CHECK_FALSE(max(x, 1).second.requires_grad());
  CHECK(mm(x, y).grad_fn()->name() == "MmBackward0");
  CHECK(matmul(x, y).grad_fn()->name() == "MatmulBackward0");
  CHECK(linear(x, y.t()).grad_fn()->name() == "LinearBackward0");
  CHECK(softmax(x, 1).grad_fn()->name() == "SoftmaxBackward0");
  CHECK(log_softmax(x, 1).grad_fn()->name() == "LogSoftmaxBackward0");
  CHECK(dropout(x, 0.5, true).grad_fn()->name() == "DropoutBackward0");
  CHECK(cat({x, ones({3, 2})}, 1).grad_fn()->name() == "CatBackward0");
  CHECK(stack({x, x}).grad_fn()->name() == "StackBackward0");
  CHECK(nll_loss(x, int64s({0, 1, 2}, {3})).grad_fn()->name() == "NllLossBackward0");
  CHECK(mse_loss(x, x).grad_fn()->name() == "MseLossBackward0");
  // the matmul node's only edge leads to x's accumulator (the forward recorded no views)
  const auto node = matmul(x.unsqueeze(0), y).grad_fn();
  REQUIRE(node->next_edges.size() == 2);
  CHECK(node->next_edges[0].fn->name() == "UnsqueezeBackward0");
  CHECK_FALSE(node->next_edges[1].valid());
}

TEST_CASE("cat: skipped empty inputs get no gradient, mixed dtypes get gradients of their own dtype") {
  Tensor a = ones({2, 3}).requires_grad_(), e = empty({0}, kFloat32).requires_grad_();
  Tensor b = ones({1, 3}, kFloat64).requires_grad_();
  Tensor out = cat({a, e, b}, 0);
  CHECK(out.dtype() == kFloat64);
  sum(mul(out, arange(0, 9, 1, kFloat64).view({3, 3}))).backward();
  CHECK_FALSE(e.grad().defined());
  REQUIRE(a.grad().defined());
  CHECK(a.grad().dtype() == kFloat32);
  CHECK(b.grad().dtype() == kFloat64);
  check_close(a.grad(), arange(0, 6, 1, kFloat32).view({2, 3}));
  check_close(b.grad(), tensor({6.0, 7.0, 8.0}).view({1, 3}));
}

TEST_CASE("losses on edge inputs: all targets ignored, empty batch, float32 loss drives a training step") {
  Tensor x = ones({3, 4}).requires_grad_();
  const Tensor ign = int64s({-100, -100, -100}, {3});
  const Tensor l = cross_entropy(x, ign);
  CHECK(std::isnan(l.item<double>()));
  CHECK(nll_loss(x, ign, {.reduction = Reduction::Sum}).item<double>() == 0);
  nll_loss(x, ign, {.reduction = Reduction::Sum}).backward();
  check_close(x.grad(), zeros({3, 4}));
  CHECK(std::isnan(cross_entropy(zeros({0, 3}), empty({0}, kInt64)).item<double>()));
  // a tiny linear classifier learns: the loss decreases under plain gradient steps
  Tensor w = zeros({3, 4}).requires_grad_();
  const Tensor inputs = tensor({1.0f, 0.0f, 0.0f, 1.0f, 0.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 1.0f, 1.0f}).view({3, 4});
  const Tensor labels = int64s({0, 1, 2}, {3});
  double first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    w.set_grad(Tensor());
    const Tensor loss = cross_entropy(linear(inputs, w), labels, {.label_smoothing = 0.05});
    loss.backward();
    if (step == 0) first = loss.item<double>();
    last = loss.item<double>();
    autograd::NoGradGuard no_grad;
    w.copy_(sub(w, mul(w.grad(), 1.0)));
  }
  CHECK(last < first * 0.5);
}

// ---- (d) errors ----------------------------------------------------------------------------------------------
TEST_CASE("loss errors: targets out of range, wrong target dtype or shape, bad weight or options") {
  const Tensor x = ones({4, 5});
  CHECK_THROWS_WITH_AS(cross_entropy(x, int64s({0, 7, 1, 2}, {4})),
                       "[cross_entropy] target 7 is out of bounds for 5 classes", IndexError);
  CHECK_THROWS_WITH_AS(nll_loss(x, int64s({0, -1, 1, 2}, {4})), "[nll_loss] target -1 is out of bounds for 5 classes",
                       IndexError);
  CHECK_NOTHROW(nll_loss(x, int64s({0, -1, 1, 2}, {4}), {.ignore_index = -1}));
  CHECK_THROWS_WITH_AS(nll_loss(x, int64s({0, 1, 1, 2}, {4}).to(kInt32)),
                       "[nll_loss] expected a target of class indices of dtype int64, got int32", DTypeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, int64s({0, 1, 2}, {3})),
                       "[cross_entropy] expected a target of shape [4] for an input of shape [4, 5], got [3]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, ones({4})),
                       "[cross_entropy] expected int64 class indices or class probabilities of the input's shape "
                       "[4, 5], got a float32 target of shape [4]", ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, int64s({0, 1, 1, 2}, {4}), {.weight = ones({4})}),
                       "[cross_entropy] expected a weight of shape [5] (one per class), got [4]", ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(x, int64s({0, 1, 1, 2}, {4}), {.label_smoothing = 1.5}),
                       "[cross_entropy] label_smoothing must be between 0.0 and 1.0, got 1.5", ValueError);
  CHECK_THROWS_WITH_AS(cross_entropy(scalar_tensor(1.0), scalar_tensor(0, kInt64)),
                       "[cross_entropy] expected an input of shape [C], [N, C] or [N, C, d1, ...], got a 0-dim tensor",
                       ShapeError);
  CHECK_THROWS_WITH_AS(nll_loss(arange(20).view({4, 5}), int64s({0, 1, 1, 2}, {4})),
                       "[nll_loss] expected a floating point input, got int64", DTypeError);
  CHECK_THROWS_WITH_AS(mse_loss(arange(3), arange(3)),
                       "[mse_loss] expected floating point input and target, got int64 and int64", DTypeError);
  CHECK_THROWS_AS(mse_loss(ones({3}), ones({4})), ShapeError);
}
