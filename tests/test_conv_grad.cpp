// conv2d backward: finite-difference gradcheck (float64) across configurations, gradients from real PyTorch
// (fixtures made by tests/fixtures/gen/conv_grad.py) on contiguous and strided layouts, a frozen conv stack that
// runs no backward kernel, and a direct double-precision reference on shapes that tile and thread.
#include <functional>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "torchlet/autograd/gradcheck.hpp"
#include "torchlet/backend/cpu/conv_backward.hpp"
#include "torchlet/core/threads.hpp"
#include "torchlet/ops/arithmetic.hpp"
#include "torchlet/ops/conv.hpp"
#include "torchlet/ops/linalg.hpp"
#include "torchlet/ops/reduction.hpp"
#include "torchlet/tensor/random.hpp"

using namespace torchlet;
using autograd::TensorList;
using testing::check_close;
using testing::fixture;
using testing::strided_versions;

namespace {
struct ThreadsGuard {
  int saved = get_num_threads();
  ~ThreadsGuard() { set_num_threads(saved); }
};

struct GradCase {
  const char* name;
  Shape x, w;
  bool bias;
  Conv2dOptions options;
};

// small enough for finite differences in float64
const std::vector<GradCase>& gradcheck_cases() {
  static const std::vector<GradCase> cases = {
      {"stride2", {2, 2, 5, 5}, {3, 2, 3, 3}, true, {{2, 2}, {0, 0}, {1, 1}, 1}},
      {"padding", {1, 2, 4, 4}, {2, 2, 3, 3}, true, {{1, 1}, {1, 1}, {1, 1}, 1}},
      {"dilation2", {1, 2, 7, 6}, {2, 2, 3, 3}, true, {{1, 1}, {2, 1}, {2, 2}, 1}},
      {"groups2", {1, 4, 5, 5}, {4, 2, 3, 3}, true, {{1, 1}, {1, 1}, {1, 1}, 2}},
      {"depthwise", {1, 3, 5, 5}, {3, 1, 3, 3}, true, {{2, 1}, {1, 1}, {1, 1}, 3}},
      {"pointwise", {2, 4, 3, 3}, {3, 4, 1, 1}, true, {{1, 1}, {0, 0}, {1, 1}, 1}},
      {"pointwise_s2", {1, 3, 5, 4}, {2, 3, 1, 1}, true, {{2, 2}, {0, 0}, {1, 1}, 1}},
      {"stem7x7", {1, 2, 8, 8}, {2, 2, 7, 7}, true, {{2, 2}, {3, 3}, {1, 1}, 1}},
      {"nonsquare", {1, 2, 7, 6}, {2, 2, 2, 3}, true, {{2, 1}, {1, 2}, {1, 2}, 1}},
      {"unbatched", {2, 5, 5}, {3, 2, 3, 3}, true, {{1, 1}, {1, 1}, {1, 1}, 1}},
      {"nobias", {1, 2, 4, 5}, {2, 2, 3, 3}, false, {{1, 1}, {0, 0}, {1, 1}, 1}},
      {"batch3", {3, 2, 4, 4}, {2, 2, 3, 3}, true, {{1, 1}, {1, 1}, {1, 1}, 1}},
  };
  return cases;
}

struct FixtureCase {
  const char* name;
  bool bias;
  Conv2dOptions options;
};

// the same cases as CASES in tests/fixtures/gen/conv_grad.py
const std::vector<FixtureCase>& fixture_cases() {
  static const std::vector<FixtureCase> cases = {
      {"stride2", true, {{2, 2}, {0, 0}, {1, 1}, 1}},   {"padding", true, {{1, 1}, {1, 1}, {1, 1}, 1}},
      {"dilation2", true, {{1, 1}, {2, 1}, {2, 2}, 1}}, {"groups2", true, {{1, 1}, {1, 1}, {1, 1}, 2}},
      {"depthwise", true, {{2, 1}, {1, 1}, {1, 1}, 5}}, {"pointwise", true, {{1, 1}, {0, 0}, {1, 1}, 1}},
      {"stem7x7", false, {{2, 2}, {3, 3}, {1, 1}, 1}},  {"nonsquare", true, {{2, 3}, {1, 2}, {2, 1}, 1}},
      {"unbatched", true, {{1, 1}, {1, 1}, {1, 1}, 1}}, {"batch3", false, {{1, 1}, {1, 1}, {1, 1}, 1}},
  };
  return cases;
}

// conv2d's gradients by their definition, in double: {grad_input, grad_weight, grad_bias}
std::vector<Tensor> reference_grads(const Tensor& input, const Tensor& weight, const Tensor& grad_out,
                                    const Conv2dOptions& o) {
  const Tensor x = input.to(kFloat64).contiguous(), w = weight.to(kFloat64).contiguous();
  const Tensor go = grad_out.to(kFloat64).contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Co = w.size(0), Cg = w.size(1), kh = w.size(2), kw = w.size(3), G = o.groups;
  const int64_t Ho = go.size(2), Wo = go.size(3);
  Tensor gx = zeros(x.sizes(), kFloat64), gw = zeros(w.sizes(), kFloat64), gb = zeros({Co}, kFloat64);
  const double *xp = x.data<double>(), *wp = w.data<double>(), *gp = go.data<double>();
  double *gxp = gx.data<double>(), *gwp = gw.data<double>(), *gbp = gb.data<double>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t co = 0; co < Co; ++co) {
      const int64_t grp = co / (Co / G);
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          const double gv = gp[((n * Co + co) * Ho + oh) * Wo + ow];
          gbp[co] += gv;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ih = oh * o.stride[0] - o.padding[0] + i * o.dilation[0];
                const int64_t iw = ow * o.stride[1] - o.padding[1] + j * o.dilation[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const int64_t xi = ((n * C + grp * Cg + c) * H + ih) * W + iw, wi = ((co * Cg + c) * kh + i) * kw + j;
                gxp[xi] += gv * wp[wi];
                gwp[wi] += gv * xp[xi];
              }
        }
    }
  return {gx, gw, gb};
}

struct Counts {
  int64_t total, input, weight, bias;
};
Counts counts() {
  return {cpu::conv2d_backward_calls().load(), cpu::conv2d_input_grad_calls().load(),
          cpu::conv2d_weight_grad_calls().load(), cpu::conv2d_bias_grad_calls().load()};
}
}  // namespace

TEST_CASE("conv2d gradcheck (float64) across strides, padding, dilation, groups, kernels and layouts") {
  Generator gen(7);
  for (const GradCase& c : gradcheck_cases()) {
    CAPTURE(c.name);
    const Conv2dOptions o = c.options;
    TensorList inputs{randn(c.x, kFloat64, gen).requires_grad_(), randn(c.w, kFloat64, gen).requires_grad_(),
                      c.bias ? randn({c.w[0]}, kFloat64, gen).requires_grad_() : Tensor()};
    auto f = [o](const TensorList& in) { return conv2d(in[0], in[1], in[2], o); };
    const auto r = autograd::gradcheck(f, inputs);
    CHECK_MESSAGE(r.ok, r.message);
    // only the weight requires grad, then only the input
    inputs[0].requires_grad_(false);
    if (inputs[2].defined()) inputs[2].requires_grad_(false);
    const auto rw = autograd::gradcheck(f, inputs);
    CHECK_MESSAGE(rw.ok, rw.message);
    inputs[0].requires_grad_(true);
    inputs[1].requires_grad_(false);
    const auto ri = autograd::gradcheck(f, inputs);
    CHECK_MESSAGE(ri.ok, ri.message);
  }
}

TEST_CASE("conv2d gradients match PyTorch on contiguous and strided layouts") {
  for (const FixtureCase& c : fixture_cases()) {
    CAPTURE(c.name);
    const std::string p = std::string("cg_") + c.name + "_";
    const Tensor x0 = fixture(p + "x"), w0 = fixture(p + "w"), go0 = fixture(p + "go");
    const Tensor b0 = c.bias ? fixture(p + "b") : Tensor();
    std::vector<Tensor> xs{x0}, ws{w0}, gos{go0};
    for (const Tensor& t : strided_versions(x0)) xs.push_back(t);
    for (const Tensor& t : strided_versions(w0)) ws.push_back(t);
    for (const Tensor& t : strided_versions(go0)) gos.push_back(t);
    for (size_t k = 0; k < xs.size(); ++k) {
      CAPTURE(k);
      Tensor x = xs[k], w = ws[k % ws.size()], b = c.bias ? b0.clone() : Tensor();
      const Tensor go = gos[k % gos.size()];
      x.requires_grad_();
      w.requires_grad_();
      if (b.defined()) b.requires_grad_();
      const Tensor y = conv2d(x, w, b, c.options);
      REQUIRE(y.sizes() == go.sizes());
      y.backward(go);
      check_close(x.grad(), fixture(p + "gx"), 1e-5, 1e-5);
      check_close(w.grad(), fixture(p + "gw"), 1e-5, 1e-5);
      if (c.bias) check_close(b.grad(), fixture(p + "gb"), 1e-5, 1e-5);
      CHECK(x.grad().dtype() == kFloat32);
    }
  }
}

TEST_CASE("conv2d gradients in float16 / bfloat16 are float32 gradients rounded") {
  Generator gen(11);
  const Conv2dOptions o{{1, 1}, {1, 1}, {1, 1}, 1};
  for (DType dt : {kFloat16, kBFloat16}) {
    CAPTURE(dt);
    Tensor x = randn({2, 3, 6, 6}, kFloat32, gen).to(dt), w = randn({4, 3, 3, 3}, kFloat32, gen).to(dt);
    Tensor b = randn({4}, kFloat32, gen).to(dt);
    const Tensor go = randn({2, 4, 6, 6}, kFloat32, gen).to(dt);
    Tensor xf = x.to(kFloat32), wf = w.to(kFloat32), bf = b.to(kFloat32);
    for (Tensor* t : {&x, &w, &b, &xf, &wf, &bf}) t->requires_grad_();
    conv2d(x, w, b, o).backward(go);
    conv2d(xf, wf, bf, o).backward(go.to(kFloat32));
    CHECK(x.grad().dtype() == dt);
    CHECK(w.grad().dtype() == dt);
    const double tol = dt == kFloat16 ? 2e-3 : 1e-2;
    check_close(x.grad(), xf.grad(), tol, tol);
    check_close(w.grad(), wf.grad(), tol, tol);
    check_close(b.grad(), bf.grad(), tol, tol);
  }
}

TEST_CASE("a frozen conv stack runs no conv backward kernel; a trainable conv computes only what it needs") {
  Generator gen(3);
  const Conv2dOptions pad1{{1, 1}, {1, 1}, {1, 1}, 1};
  const Tensor x = randn({2, 3, 8, 8}, kFloat32, gen);  // the input needs no grad
  const Tensor w1 = randn({4, 3, 3, 3}, kFloat32, gen), b1 = randn({4}, kFloat32, gen);  // frozen backbone
  const Tensor w2 = randn({4, 4, 3, 3}, kFloat32, gen), b2 = randn({4}, kFloat32, gen);
  Tensor wt = randn({5, 4, 3, 3}, kFloat32, gen).requires_grad_(), bt = randn({5}, kFloat32, gen).requires_grad_();
  Tensor lw = randn({3, 5 * 4 * 4}, kFloat32, gen).requires_grad_(), lb = randn({3}, kFloat32, gen).requires_grad_();

  const Tensor h1 = relu(conv2d(x, w1, b1, pad1));
  const Tensor h2 = relu(conv2d(h1, w2, b2, pad1));
  CHECK_FALSE(h1.requires_grad());
  CHECK(h1.grad_fn() == nullptr);  // nothing recorded for the frozen convs
  CHECK(h2.grad_fn() == nullptr);
  const Tensor y = conv2d(h2, wt, bt, {{2, 2}, {1, 1}, {1, 1}, 1});
  REQUIRE(y.grad_fn() != nullptr);
  CHECK(y.grad_fn()->name() == "Conv2dBackward0");
  const Tensor loss = sum(linear(y.reshape({2, -1}), lw, lb));

  const Counts before = counts();
  loss.backward();
  const Counts after = counts();
  CHECK(after.input - before.input == 0);  // h2 needs no grad: no input gradient, and the frozen convs none at all
  CHECK(after.weight - before.weight == 1);
  CHECK(after.bias - before.bias == 1);
  CHECK(after.total - before.total == 2);
  CHECK(wt.grad().defined());
  CHECK(bt.grad().defined());
  CHECK_FALSE(w1.grad().defined());
  CHECK_FALSE(w2.grad().defined());

  // two trainable convs: the second needs its input's gradient, the first does not
  Tensor wa = w2.clone().requires_grad_();
  const Tensor z = conv2d(relu(conv2d(h1, wa, Tensor(), pad1)), wt, bt, pad1);
  const Counts before2 = counts();
  sum(z).backward();
  const Counts after2 = counts();
  CHECK(after2.input - before2.input == 1);
  CHECK(after2.weight - before2.weight == 2);
  CHECK(after2.bias - before2.bias == 1);  // the first conv has no bias
  CHECK(after2.total - before2.total == 4);

  // only the input requires grad: one kernel, the input gradient
  Tensor xi = x.clone().requires_grad_();
  const Counts before3 = counts();
  sum(conv2d(xi, w1, b1, pad1)).backward();
  const Counts after3 = counts();
  CHECK(after3.input - before3.input == 1);
  CHECK(after3.total - before3.total == 1);
}

TEST_CASE("conv2d gradients match a direct double loop on shapes that tile and thread, deterministically") {
  ThreadsGuard guard;
  Generator gen(123);
  struct Shapes {
    Shape x, w;
    Conv2dOptions o;
  };
  const std::vector<Shapes> shapes = {
      {{4, 32, 14, 14}, {32, 32, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}},
      {{1, 32, 14, 14}, {16, 32, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}},   // one task: threaded GEMM path
      {{3, 16, 15, 13}, {24, 16, 3, 3}, {{2, 2}, {1, 1}, {1, 1}, 1}},   // odd task count
      {{4, 32, 14, 14}, {16, 32, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 1}},   // pointwise
      {{2, 16, 16, 16}, {16, 2, 3, 3}, {{1, 1}, {2, 2}, {2, 2}, 8}},    // groups, dilation
      {{2, 8, 40, 40}, {8, 8, 5, 5}, {{1, 1}, {2, 2}, {1, 1}, 1}},      // several tiles per image
      {{1, 3, 56, 56}, {8, 3, 7, 7}, {{2, 2}, {3, 3}, {1, 1}, 1}},      // stem
  };
  for (const Shapes& s : shapes) {
    CAPTURE(shape_str(s.x));
    CAPTURE(shape_str(s.w));
    const Tensor x = randn(s.x, kFloat32, gen), w = randn(s.w, kFloat32, gen), b = randn({s.w[0]}, kFloat32, gen);
    const Tensor go_shape = conv2d(x, w, b, s.o);
    const Tensor go = randn(go_shape.sizes(), kFloat32, gen);
    const auto ref = reference_grads(x, w, go, s.o);
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      set_num_threads(threads);
      std::vector<Tensor> first;
      for (int rep = 0; rep < 2; ++rep) {
        Tensor xr = x.clone().requires_grad_(), wr = w.clone().requires_grad_(), br = b.clone().requires_grad_();
        conv2d(xr, wr, br, s.o).backward(go);
        if (rep == 0) {
          check_close(xr.grad(), ref[0], 1e-4, 1e-4);
          check_close(wr.grad(), ref[1], 1e-4, 1e-3);
          check_close(br.grad(), ref[2], 1e-4, 1e-3);
          first = {xr.grad(), wr.grad(), br.grad()};
        } else {  // the same thread count gives bit-identical gradients
          testing::check_equal(xr.grad(), first[0]);
          testing::check_equal(wr.grad(), first[1]);
          testing::check_equal(br.grad(), first[2]);
        }
      }
    }
  }
}
