// Reductions, matrix products, softmax / log_softmax, dropout, cat / stack: values from real PyTorch
// (fixtures rl_*, made by tests/fixtures/gen/reduce_linalg.py), every kernel on contiguous and strided inputs.
#include <cmath>
#include <functional>

#include "helpers.hpp"
#include "torchlet/ops/activation.hpp"
#include "torchlet/ops/join.hpp"
#include "torchlet/ops/linalg.hpp"
#include "torchlet/ops/reduction.hpp"
#include "torchlet/tensor/random.hpp"

using namespace torchlet;
using testing::check_close;
using testing::check_equal;
using testing::fixture;
using testing::check_layouts;
using testing::strided_versions;

namespace {
/// Same as check_layouts for an op of two operands: every combination of layouts of a and b.
void check_layouts2(const Tensor& a, const Tensor& b, const std::function<Tensor(const Tensor&, const Tensor&)>& f,
                    const Tensor& expected, double rtol = 1e-5, double atol = 1e-5) {
  std::vector<Tensor> as{a}, bs{b};
  for (const Tensor& s : strided_versions(a)) as.push_back(s);
  for (const Tensor& s : strided_versions(b)) bs.push_back(s);
  for (size_t i = 0; i < as.size(); ++i)
    for (size_t j = 0; j < bs.size(); ++j) {
      INFO("layout of a: ", i, ", layout of b: ", j);
      check_close(f(as[i], bs[j]), expected, rtol, atol);
    }
}

/// The float32 values ((i * 7919) % 1000) / 8 + 1000 that the fixture generator also builds.
Tensor big_input(int64_t n) {
  Tensor t = empty({n}, kFloat32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>((i * 7919) % 1000) / 8.0f + 1000.0f;
  return t;
}
}  // namespace

// ---------------------------------------------------------------------------------------------------------
TEST_CASE("sum, mean, var, std over single dims, several dims, all, keepdim") {
  const Tensor x = fixture("rl_x345");
  check_layouts(x, [](const Tensor& t) { return sum(t, {1}); }, fixture("rl_sum_d1"));
  check_layouts(x, [](const Tensor& t) { return sum(t, {0, 2}); }, fixture("rl_sum_d02"));
  check_layouts(x, [](const Tensor& t) { return sum(t, {0, -1}, true); }, fixture("rl_sum_d02_keep"));
  check_layouts(x, [](const Tensor& t) { return sum(t, {-1}, true); }, fixture("rl_sum_dm1_keep"));
  check_layouts(x, [](const Tensor& t) { return sum(t); }, fixture("rl_sum_all"));
  check_layouts(x, [](const Tensor& t) { return mean(t, {0}); }, fixture("rl_mean_d0"));
  check_layouts(x, [](const Tensor& t) { return mean(t, {1, 2}, true); }, fixture("rl_mean_d12_keep"));
  check_layouts(x, [](const Tensor& t) { return mean(t); }, fixture("rl_mean_all"));
  check_layouts(x, [](const Tensor& t) { return var(t, {1}); }, fixture("rl_var_d1"));
  check_layouts(x, [](const Tensor& t) { return var(t, {0, 2}, 0); }, fixture("rl_var_d02_c0"));
  check_layouts(x, [](const Tensor& t) { return var(t); }, fixture("rl_var_all"));
  check_layouts(x, [](const Tensor& t) { return std_(t, {2}); }, fixture("rl_std_d2"));
  CHECK(sum(x, {1}).dtype() == kFloat32);
  CHECK(sum(x).dim() == 0);
  CHECK(sum(x, {0, 2}, true).sizes() == Shape{1, 4, 1});
  CHECK(mean(x, {}).dim() == 0);  // an empty dim list reduces everything (PyTorch 1.x)

  const Tensor xd = fixture("rl_xd46");
  check_layouts(xd, [](const Tensor& t) { return sum(t, {0}); }, fixture("rl_sum_f64_d0"), 1e-12, 1e-12);
  check_layouts(xd, [](const Tensor& t) { return var(t, {1}); }, fixture("rl_var_f64_d1"), 1e-12, 1e-12);
}

TEST_CASE("integer and bool sums give int64, or the requested dtype") {
  const Tensor xi = fixture("rl_xi46");
  REQUIRE(xi.dtype() == kInt32);
  check_layouts(xi, [](const Tensor& t) { return sum(t, {1}); }, fixture("rl_sum_i32_d1"), 0, 0);
  CHECK(sum(xi, {1}).dtype() == kInt64);
  check_equal(sum(xi), fixture("rl_sum_i32_all"));
  check_equal(sum(xi, {0}, false, kFloat64), fixture("rl_sum_i32_f64_d0"));
  CHECK(sum(xi, {0}, false, kInt32).dtype() == kInt32);
  const Tensor b = tensor<bool>({true, false, true, true});
  CHECK(sum(b).dtype() == kInt64);
  CHECK(sum(b).item<int64_t>() == 3);
  CHECK(sum(tensor({Half(1.5f), Half(2.f)})).dtype() == kFloat16);
  CHECK_THROWS_AS(mean(xi), DTypeError);
  CHECK_THROWS_AS(var(xi, {0}), DTypeError);
}

TEST_CASE("float32 sums of many elements stay within 1e-6 of PyTorch") {
  const Tensor big = big_input(200003);
  check_close(sum(big), fixture("rl_big_sum"), 1e-6, 0);
  check_close(mean(big), fixture("rl_big_mean"), 1e-6, 0);
  check_close(var(big), fixture("rl_big_var"), 1e-5, 0);
  const Tensor m = big.slice(0, 0, 200000).view({400, 500});
  check_layouts(m, [](const Tensor& t) { return sum(t, {0}); }, fixture("rl_big2_sum_d0"), 1e-6, 0);
  check_layouts(m, [](const Tensor& t) { return sum(t, {1}); }, fixture("rl_big2_sum_d1"), 1e-6, 0);
  check_layouts(m, [](const Tensor& t) { return var(t, {0}); }, fixture("rl_big2_var_d0"), 1e-5, 0);
  // single- and multi-threaded agree
  const int saved = get_num_threads();
  set_num_threads(1);
  const Tensor one = sum(m, {1});
  const double all1 = sum(big).item<double>();
  set_num_threads(4);
  check_close(sum(m, {1}), one, 1e-7, 0);
  CHECK(sum(big).item<double>() == doctest::Approx(all1).epsilon(1e-7));
  set_num_threads(saved);
}

TEST_CASE("reducing empty dims: sum gives 0, mean NaN, max raises") {
  const Tensor e = zeros({0, 3});
  check_equal(sum(e, {0}), zeros({3}));
  CHECK(sum(e).item<double>() == 0);
  CHECK(std::isnan(mean(e, {0})[1].item<double>()));
  CHECK(sum(e, {1}).sizes() == Shape{0});
  CHECK_THROWS_WITH_AS(max(e, 0), doctest::Contains("[max] cannot reduce over an empty dimension"), IndexError);
  CHECK_THROWS_WITH_AS(max(e), doctest::Contains("[max] cannot reduce over an empty dimension"), IndexError);
  CHECK_THROWS_AS(argmin(e), IndexError);
  auto [v, i] = max(e, 1);  // nothing to reduce per output, and no outputs
  CHECK(v.sizes() == Shape{0});
  CHECK(i.dtype() == kInt64);
  // 0-dim inputs reduce over "dim 0"
  const Tensor s = scalar_tensor(2.5);
  CHECK(sum(s, {0}).item<double>() == 2.5);
  CHECK(max(s, 0).second.item<int64_t>() == 0);
}

TEST_CASE("reduction errors: dims out of range or repeated") {
  const Tensor x = zeros({2, 3});
  CHECK_THROWS_AS(sum(x, {2}), IndexError);
  CHECK_THROWS_AS(sum(x, {-3}), IndexError);
  CHECK_THROWS_WITH_AS(sum(x, {0, -2}), doctest::Contains("appears multiple times"), ValueError);
  CHECK_THROWS_AS(max(x, 5), IndexError);
  CHECK_THROWS_AS(argmax(tensor<bool>({true})), DTypeError);
}

TEST_CASE("max, min, argmax, argmin: first of ties, NaN propagates with its index") {
  const Tensor t = fixture("rl_ties");
  for (int d = 0; d < 2; ++d) {
    const std::string s = std::to_string(d);
    CAPTURE(d);
    check_layouts(t, [d](const Tensor& x) { return max(x, d).first; }, fixture("rl_ties_max" + s + "_v"));
    check_layouts(t, [d](const Tensor& x) { return max(x, d).second; }, fixture("rl_ties_max" + s + "_i"), 0, 0);
    check_layouts(t, [d](const Tensor& x) { return min(x, d).first; }, fixture("rl_ties_min" + s + "_v"));
    check_layouts(t, [d](const Tensor& x) { return min(x, d).second; }, fixture("rl_ties_min" + s + "_i"), 0, 0);
    check_layouts(t, [d](const Tensor& x) { return argmax(x, d); }, fixture("rl_ties_argmax" + s), 0, 0);
    check_layouts(t, [d](const Tensor& x) { return argmin(x, d); }, fixture("rl_ties_argmin" + s), 0, 0);
  }
  check_layouts(t, [](const Tensor& x) { return argmax(x); }, fixture("rl_ties_argmax_all"), 0, 0);
  check_layouts(t, [](const Tensor& x) { return argmin(x); }, fixture("rl_ties_argmin_all"), 0, 0);
  CHECK(std::isnan(max(t).item<double>()));
  CHECK(std::isnan(min(t).item<double>()));
  const Tensor t2 = t.slice(0, 0, 2);
  check_equal(argmax(t2), fixture("rl_ties2_argmax"));
  check_equal(argmin(t2), fixture("rl_ties2_argmin"));
  check_equal(max(t2), fixture("rl_ties2_max"));
  check_equal(min(t2), fixture("rl_ties2_min"));

  const Tensor ti = fixture("rl_ities");
  check_layouts(ti, [](const Tensor& x) { return max(x, 1, true).first; }, fixture("rl_ities_max1k_v"), 0, 0);
  check_layouts(ti, [](const Tensor& x) { return max(x, -1, true).second; }, fixture("rl_ities_max1k_i"), 0, 0);
  check_layouts(ti, [](const Tensor& x) { return min(x, 0).first; }, fixture("rl_ities_min0_v"), 0, 0);
  check_layouts(ti, [](const Tensor& x) { return min(x, 0).second; }, fixture("rl_ities_min0_i"), 0, 0);
  CHECK(max(ti, 1).first.dtype() == kInt64);

  const Tensor x = fixture("rl_x345");
  check_layouts(x, [](const Tensor& a) { return max(a, 1).first; }, fixture("rl_max_x_d1_v"));
  check_layouts(x, [](const Tensor& a) { return max(a, 1).second; }, fixture("rl_max_x_d1_i"), 0, 0);
  check_layouts(x, [](const Tensor& a) { return argmin(a, -1); }, fixture("rl_argmin_x_d2"), 0, 0);
  CHECK(max(tensor<bool>({false, true})).item<bool>());

  // a long run split across threads still returns the first extreme
  Tensor big = zeros({300000});
  big.narrow(0, 123456, 1).fill_(7);
  big.narrow(0, 234567, 1).fill_(7);
  big.narrow(0, 200000, 1).fill_(-3);
  CHECK(argmax(big).item<int64_t>() == 123456);
  CHECK(argmin(big).item<int64_t>() == 200000);
  big.narrow(0, 250000, 1).fill_(NAN);
  big.narrow(0, 260000, 1).fill_(NAN);
  CHECK(argmax(big).item<int64_t>() == 250000);
  CHECK(argmin(big).item<int64_t>() == 250000);
}

// ---------------------------------------------------------------------------------------------------------
TEST_CASE("matmul in every rank combination, with broadcast batch dims and strided operands") {
  auto m = [](const char* n) { return fixture(std::string("rl_mm_") + n); };
  auto mat = [](const Tensor& a, const Tensor& b) { return matmul(a, b); };
  check_layouts2(m("v4"), m("v4b"), mat, m("dot"));
  check_layouts2(m("m34"), m("m45"), mat, m("2d2d"));
  check_layouts2(m("v4"), m("m45"), mat, m("1d2d"));
  check_layouts2(m("m34"), m("v4"), mat, m("2d1d"));
  check_layouts2(m("b234"), m("m45"), mat, m("3d2d"));
  check_layouts2(m("b234"), m("v4"), mat, m("3d1d"));
  check_layouts2(m("v4"), m("b245"), mat, m("1d3d"));
  check_layouts2(m("m34"), m("b245"), mat, m("2d3d"));
  check_layouts2(m("b234"), m("b245"), mat, m("3d3d"));
  check_layouts2(m("b2134"), m("b345"), mat, m("bcast"));
  CHECK(matmul(m("v4"), m("v4b")).dim() == 0);
  CHECK(matmul(m("b2134"), m("b345")).sizes() == Shape{2, 3, 3, 5});
  // transposed views go to gemm with transposition flags
  check_close(matmul(m("m43").t(), m("m54").t()), m("trans"), 1e-5, 1e-5);
  check_close(mm(m("m43").t(), m("m54").t()), m("trans"), 1e-5, 1e-5);
  check_layouts2(m("b234"), m("b254").transpose(1, 2), [](const Tensor& a, const Tensor& b) { return bmm(a, b); },
                 m("bmm_transb"));
  check_close(bmm(m("b234"), m("b245")), m("3d3d"), 1e-5, 1e-5);
  // a batch operand broadcast with zero strides
  check_close(matmul(m("m34").expand({2, 3, 4}), m("b245")), m("2d3d"), 1e-5, 1e-5);
}

TEST_CASE("mm in float64, float16, integers") {
  check_layouts2(fixture("rl_mm_f64_a"), fixture("rl_mm_f64_b"), [](const Tensor& a, const Tensor& b) {
    return mm(a, b);
  }, fixture("rl_mm_f64"), 1e-12, 1e-12);
  const Tensor h = matmul(fixture("rl_mm_m34").to(kFloat16), fixture("rl_mm_m45").to(kFloat16));
  CHECK(h.dtype() == kFloat16);
  check_close(h, fixture("rl_mm_f16"), 1e-3, 1e-3);
  const Tensor bf = mm(fixture("rl_mm_m34").to(kBFloat16), fixture("rl_mm_m45").to(kBFloat16));
  CHECK(bf.dtype() == kBFloat16);
  check_close(bf, fixture("rl_mm_2d2d"), 2e-2, 5e-2);
  check_layouts2(fixture("rl_mm_i64_a"), fixture("rl_mm_i64_b"), [](const Tensor& a, const Tensor& b) {
    return matmul(a, b);
  }, fixture("rl_mm_i64"), 0, 0);
  const Tensor i8 = mm(full({2, 3}, 100, kInt8), full({3, 2}, 3, kInt8));
  check_equal(i8, fixture("rl_mm_i8_wrap"));  // wraps like PyTorch
  CHECK_THROWS_AS(mm(ones({2, 2}, kBool), ones({2, 2}, kBool)), DTypeError);
}

TEST_CASE("larger products agree with a plain double loop, single- and multi-threaded") {
  auto filled = [](int64_t r, int64_t c, int salt) {
    Tensor t = empty({r, c}, kFloat32);
    float* p = t.data<float>();
    for (int64_t i = 0; i < r * c; ++i) p[i] = static_cast<float>((i * 37 + salt) % 23 - 11) / 8.0f;
    return t;
  };
  const Tensor a = filled(70, 90, 1), b = filled(90, 40, 5);
  Tensor ref = empty({70, 40}, kFloat64);
  for (int64_t i = 0; i < 70; ++i)
    for (int64_t j = 0; j < 40; ++j) {
      double s = 0;
      for (int64_t k = 0; k < 90; ++k) s += double(a.data<float>()[i * 90 + k]) * b.data<float>()[k * 40 + j];
      ref.data<double>()[i * 40 + j] = s;
    }
  check_layouts2(a, b, [](const Tensor& x, const Tensor& y) { return matmul(x, y); }, ref, 1e-6, 1e-4);
  // many small batches run one per thread
  const Tensor ab = a.view({7, 10, 90}), bb = b.unsqueeze(0).expand({7, 90, 40});
  check_close(matmul(ab, bb).view({70, 40}), ref, 1e-6, 1e-4);
  const int saved = get_num_threads();
  set_num_threads(1);
  check_close(matmul(ab, bb).view({70, 40}), ref, 1e-6, 1e-4);
  set_num_threads(saved);
  // int32 through the integer loop
  const Tensor ai = a.to(kInt32), bi = b.to(kInt32);
  Tensor refi = empty({70, 40}, kInt64);
  for (int64_t i = 0; i < 70; ++i)
    for (int64_t j = 0; j < 40; ++j) {
      int64_t s = 0;
      for (int64_t k = 0; k < 90; ++k) s += int64_t(ai.data<int32_t>()[i * 90 + k]) * bi.data<int32_t>()[k * 40 + j];
      refi.data<int64_t>()[i * 40 + j] = s;
    }
  check_close(matmul(ai, bi.t().contiguous().t()), refi, 0, 0);
}

TEST_CASE("addmm with beta and alpha; linear with 3-D input") {
  auto m = [](const char* n) { return fixture(std::string("rl_mm_") + n); };
  check_layouts2(m("m34"), m("m45"), [&](const Tensor& a, const Tensor& b) { return addmm(m("m35"), a, b, 0.5, 2.0); },
                 m("addmm"));
  check_layouts(m("m35"), [&](const Tensor& c) { return addmm(c, m("m34"), m("m45"), 0.5, 2.0); }, m("addmm"), 1e-5,
                1e-5);
  check_close(addmm(m("bias5"), m("m34"), m("m45"), -1.5, 0.25), m("addmm_bias"), 1e-5, 1e-5);
  // beta == 0 ignores c, even NaN
  check_close(addmm(full({3, 5}, NAN), m("m34"), m("m45"), 0, 1), m("2d2d"), 1e-5, 1e-5);
  // integer addmm: beta/alpha converted to the integer type (0.5 -> 0)
  const Tensor ia = ones({2, 2}, kInt64), ib = ones({2, 3}, kInt64);
  check_equal(addmm(ones({2, 3}, kInt64), ia, ib, 0.5, 2), full({2, 3}, 4, kInt64));

  check_layouts2(m("x234"), m("w54"), [&](const Tensor& x, const Tensor& w) { return linear(x, w, m("bias5")); },
                 m("linear"));
  check_layouts2(m("x234"), m("w54"), [&](const Tensor& x, const Tensor& w) { return linear(x, w); },
                 m("linear_nobias"));
  CHECK(linear(m("x234"), m("w54")).sizes() == Shape{2, 3, 5});
  check_close(linear(m("x234")[0][1], m("w54"), m("bias5")), fixture("rl_mm_linear")[0][1], 1e-5, 1e-5);
}

TEST_CASE("matrix product errors") {
  CHECK_THROWS_WITH_AS(matmul(ones({2, 3}), ones({4, 5})),
                       "[matmul] mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)", ShapeError);
  CHECK_THROWS_WITH_AS(mm(ones({2, 3}), ones({4, 5})), "[mm] mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(mm(ones({2, 2}), ones({2, 2}, kFloat64)),
                       "[mm] expected both operands to have the same dtype, got float32 and float64", DTypeError);
  CHECK_THROWS_AS(matmul(ones({3}), ones({4})), ShapeError);
  CHECK_THROWS_AS(matmul(ones({2, 2, 3}), ones({3, 3, 5})), ShapeError);  // batch dims 2 vs 3
  CHECK_THROWS_AS(matmul(ones({2, 2, 3}), ones({2, 4, 5})), ShapeError);
  CHECK_THROWS_AS(matmul(scalar_tensor(1.0), ones({2})), ShapeError);
  CHECK_THROWS_AS(mm(ones({2, 3, 4}), ones({4, 5})), ShapeError);
  CHECK_THROWS_AS(bmm(ones({2, 3, 4}), ones({3, 4, 5})), ShapeError);
  CHECK_THROWS_AS(addmm(ones({4, 5}), ones({2, 3}), ones({3, 5})), ShapeError);
  CHECK_THROWS_WITH_AS(linear(ones({2, 3, 4}), ones({5, 3})),
                       "[linear] mat1 and mat2 shapes cannot be multiplied (6x4 and 3x5)", ShapeError);
  CHECK_THROWS_AS(linear(ones({2, 4}), ones({5, 4}), ones({4})), ShapeError);
  CHECK(matmul(ones({0, 3}), ones({3, 4})).sizes() == Shape{0, 4});
  check_equal(matmul(ones({2, 0}), ones({0, 4})), zeros({2, 4}));
}

// ---------------------------------------------------------------------------------------------------------
TEST_CASE("softmax and log_softmax on dims 0, 1, -1, stable for large values") {
  const Tensor x = fixture("rl_x345");
  for (int d : {0, 1, -1}) {
    CAPTURE(d);
    const std::string s = std::to_string(d);
    check_layouts(x, [d](const Tensor& t) { return softmax(t, d); }, fixture("rl_softmax_d" + s));
    check_layouts(x, [d](const Tensor& t) { return log_softmax(t, d); }, fixture("rl_log_softmax_d" + s));
  }
  // x * 1000 + 1e4 overflows exp without the max subtraction
  Tensor xl = empty(x.sizes(), kFloat32);
  for (int64_t i = 0; i < x.numel(); ++i) xl.data<float>()[i] = x.data<float>()[i] * 1000.f + 1e4f;
  check_layouts(xl, [](const Tensor& t) { return softmax(t, -1); }, fixture("rl_softmax_large"), 1e-5, 1e-6);
  check_layouts(xl, [](const Tensor& t) { return log_softmax(t, -1); }, fixture("rl_log_softmax_large"), 1e-5, 1e-4);
  check_layouts(xl, [](const Tensor& t) { return softmax(t, 0); }, fixture("rl_softmax_large_d0"), 1e-5, 1e-6);

  const Tensor xd = fixture("rl_xd46");
  check_layouts(xd, [](const Tensor& t) { return softmax(t, 1); }, fixture("rl_softmax_f64_d1"), 1e-12, 1e-14);
  check_layouts(xd, [](const Tensor& t) { return log_softmax(t, 0); }, fixture("rl_log_softmax_f64_d0"), 1e-12, 1e-12);
  const Tensor h = softmax(x.to(kFloat16), 1);
  CHECK(h.dtype() == kFloat16);
  check_close(h, fixture("rl_softmax_f16_d1"), 1e-3, 1e-4);

  CHECK(softmax(scalar_tensor(3.0f), 0).item<float>() == 1.0f);
  CHECK(softmax(zeros({2, 0}), 1).sizes() == Shape{2, 0});
  CHECK_THROWS_AS(softmax(ones({3}, kInt64), 0), DTypeError);
  CHECK_THROWS_AS(log_softmax(ones({3}), 1), IndexError);

  // a wide row split over threads
  Tensor w = zeros({8, 40000});
  const Tensor sw = softmax(w, 1);
  CHECK(sw[3][12345].item<float>() == doctest::Approx(1.0 / 40000));
  const Tensor sw0 = softmax(w, 0);
  CHECK(sw0[5][39999].item<float>() == doctest::Approx(0.125));
}

// ---------------------------------------------------------------------------------------------------------
TEST_CASE("dropout: identity when off, exact scaling, keep fraction, deterministic per seed") {
  const Tensor x = ones({200, 500});
  CHECK(dropout(x, 0.3, false).is_same(x));
  CHECK(dropout(x, 0.0, true).is_same(x));
  check_equal(dropout(x, 1.0, true), zeros({200, 500}));
  CHECK_THROWS_AS(dropout(x, 1.5, true), ValueError);
  CHECK_THROWS_AS(dropout(x, -0.1, true), ValueError);
  CHECK_THROWS_AS(dropout(ones({3}, kInt64), 0.5, true), DTypeError);
  CHECK(dropout(ones({3}, kInt64), 0.5, false).dtype() == kInt64);  // eval mode passes anything through
  CHECK_THROWS_AS(dropout(x, 2.0, false), ValueError);

  Generator g(42);
  auto [y, mask] = dropout_with_mask(x, 0.3, true, g);
  REQUIRE(mask.dtype() == kBool);
  const float scale = 1.0f / static_cast<float>(1.0 - 0.3);
  int64_t kept = 0, bad = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const bool k = mask.data<bool>()[i];
    kept += k;
    bad += y.data<float>()[i] != (k ? scale : 0.0f);
  }
  CHECK(bad == 0);
  const double frac = static_cast<double>(kept) / static_cast<double>(x.numel());
  CHECK(frac == doctest::Approx(0.7).epsilon(0.02));  // 100000 draws: std of the fraction ~0.0015

  Generator g1(7), g2(7);
  check_equal(dropout(x, 0.5, true, g1), dropout(x, 0.5, true, g2));
  Generator g3(8), g4(9);
  const Tensor d3 = dropout(x, 0.5, true, g3), d4 = dropout(x, 0.5, true, g4);
  CHECK(sum(d3).item<double>() != sum(d4).item<double>());  // different seeds, different masks

  // strided input: same mask order (row-major) as its contiguous copy
  const Tensor xs = fixture("rl_x345");
  for (const Tensor& s : strided_versions(xs)) {
    Generator ga(3), gb(3);
    check_equal(dropout(s, 0.4, true, ga), dropout(xs, 0.4, true, gb));
  }
  // NaN stays NaN even where dropped, as x * 0 in PyTorch
  CHECK(std::isnan(dropout(full({4}, NAN), 1.0, true)[2].item<float>()));
}

// ---------------------------------------------------------------------------------------------------------
TEST_CASE("cat and stack: dtype promotion, negative dims, skipped empty tensors, strided inputs") {
  const Tensor a = fixture("rl_cat_a"), b = fixture("rl_cat_b"), c = fixture("rl_cat_c");
  const Tensor r = cat({a, b, c}, -1);
  CHECK(r.dtype() == kFloat64);
  check_equal(r, fixture("rl_cat_m1"));
  for (const Tensor& sa : strided_versions(a))
    for (const Tensor& sb : strided_versions(b)) check_equal(cat({sa, sb, c}, -1), fixture("rl_cat_m1"));
  const Tensor b3 = fixture("rl_cat_0").slice(0, 2).to(kInt32);
  check_equal(cat({a, b3}, 0), fixture("rl_cat_0"));
  const Tensor e = cat({zeros({0}, kInt64), a, zeros({0})}, 0);
  CHECK(e.dtype() == kFloat32);
  check_equal(e, fixture("rl_cat_empty"));
  CHECK(cat({zeros({0}), zeros({0})}).sizes() == Shape{0});
  CHECK(cat({zeros({2, 0}), a}, 1).sizes() == Shape{2, 3});

  check_equal(stack({a, fixture("rl_stack_m1").select(-1, 1), b3}, -1), fixture("rl_stack_m1"));
  for (const Tensor& sa : strided_versions(a)) {
    Tensor a1 = empty(a.sizes(), kFloat32);
    for (int64_t i = 0; i < a.numel(); ++i) a1.data<float>()[i] = a.data<float>()[i] + 1;
    check_equal(stack({sa, a1}, 1), fixture("rl_stack_1"));
  }
  CHECK(stack({scalar_tensor(1.0), scalar_tensor(2.0)}).sizes() == Shape{2});

  CHECK_THROWS_WITH_AS(cat({a, zeros({3, 3})}, 1), doctest::Contains("for tensor 1"), ShapeError);
  CHECK_THROWS_WITH_AS(cat({a, zeros({2, 3, 1})}, 0), doctest::Contains("same number of dimensions"), ShapeError);
  CHECK_THROWS_WITH_AS(cat({a, scalar_tensor(1.0)}), doctest::Contains("zero-dimensional tensor (at position 1)"),
                       ShapeError);
  CHECK_THROWS_AS(cat({}), ValueError);
  CHECK_THROWS_AS(cat({a, a}, 2), IndexError);
  CHECK_THROWS_WITH_AS(stack({a, zeros({2, 2})}), doctest::Contains("[2, 2] at entry 1"), ShapeError);
  CHECK_THROWS_AS(stack({a, a}, 3), IndexError);
}
