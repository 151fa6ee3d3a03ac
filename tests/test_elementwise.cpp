// Elementwise kernels against PyTorch: broadcasting, promotion, math functions, comparisons, where,
// each on contiguous and strided layouts of the same values.
#include "helpers.hpp"
#include "torchlet/ops/arithmetic.hpp"

using namespace torchlet;
using testing::check_close;
using testing::check_equal;
using testing::fixture;
using testing::strided_versions;

namespace {
// Runs `op` on x and on every strided layout of x, comparing with `expected` (dtype included).
template <class Op>
void check_op(const Tensor& x, const Tensor& expected, Op op, double rtol = 1e-6, double atol = 1e-7) {
  CHECK(op(x).dtype() == expected.dtype());
  testing::check_layouts(x, op, expected, rtol, atol);
}
}  // namespace

TEST_CASE("binary arithmetic broadcasts like PyTorch") {
  const Tensor a = fixture("ew_a"), b = fixture("ew_b");
  check_op(a, fixture("ew_add"), [&](const Tensor& x) { return x + b; });
  check_op(a, fixture("ew_add_alpha"), [&](const Tensor& x) { return add(x, b, -2.5); });
  check_op(a, fixture("ew_sub"), [&](const Tensor& x) { return x - b; });
  check_op(a, fixture("ew_mul"), [&](const Tensor& x) { return x * b; });
  check_op(a, fixture("ew_div"), [&](const Tensor& x) { return x / b; });
  // the broadcast operand strided too
  for (const Tensor& bs : strided_versions(b)) check_close(a * bs, fixture("ew_mul"));
}

TEST_CASE("tensor-scalar arithmetic") {
  const Tensor a = fixture("ew_a");
  check_op(a, fixture("ew_add_scalar"), [](const Tensor& x) { return x + 1.25; });
  check_op(a, fixture("ew_rsub_scalar"), [](const Tensor& x) { return 2 - x; });
  check_op(a, fixture("ew_mul_scalar"), [](const Tensor& x) { return x * -3; });
  check_op(a, fixture("ew_div_scalar"), [](const Tensor& x) { return x / 7; });
}

TEST_CASE("unary math functions") {
  const Tensor a = fixture("ew_a"), pos = fixture("ew_pos"), b = fixture("ew_b");
  check_op(a, fixture("ew_neg"), [](const Tensor& x) { return -x; });
  check_op(a, fixture("ew_abs"), [](const Tensor& x) { return abs(x); });
  check_op(a, fixture("ew_exp"), [](const Tensor& x) { return exp(x); });
  check_op(pos, fixture("ew_log"), [](const Tensor& x) { return log(x); });
  check_op(a, fixture("ew_log_neg"), [](const Tensor& x) { return log(x); });  // nan for negatives
  check_op(pos, fixture("ew_sqrt"), [](const Tensor& x) { return sqrt(x); });
  check_op(pos, fixture("ew_pow_scalar"), [](const Tensor& x) { return pow(x, 1.7); });
  check_op(a, fixture("ew_pow_2"), [](const Tensor& x) { return pow(x, 2); });
  check_op(pos, fixture("ew_pow_tensor"), [&](const Tensor& x) { return pow(x, b); });
  check_op(a, fixture("ew_clamp"), [](const Tensor& x) { return clamp(x, -0.5, 0.75); });
  check_op(a, fixture("ew_clamp_min"), [](const Tensor& x) { return clamp(x, 0.1); });
  check_op(a, fixture("ew_relu"), [](const Tensor& x) { return relu(x); });
  check_op(a, fixture("ew_maximum"), [&](const Tensor& x) { return maximum(x, b); });
  check_op(a, fixture("ew_minimum"), [&](const Tensor& x) { return minimum(x, b); });
}

TEST_CASE("comparisons and where") {
  const Tensor a = fixture("ew_a"), b = fixture("ew_b");
  check_op(a, fixture("ew_lt"), [&](const Tensor& x) { return lt(x, b); });
  check_op(a, fixture("ew_ge_scalar"), [](const Tensor& x) { return ge(x, 0.25); });
  check_op(a, fixture("ew_eq"), [](const Tensor& x) { return eq(x, clamp(x, -0.5, 0.75)); });
  check_op(a, fixture("ew_where"), [&](const Tensor& x) { return where(gt(x, b), x, b * 10); });
  CHECK_THROWS_WITH_AS(where(a, a, b), "[where] expected condition to be a bool tensor, got float32", DTypeError);
}

TEST_CASE("integer arithmetic and type promotion") {
  const Tensor ai = fixture("ew_ai"), bi = fixture("ew_bi");
  REQUIRE(ai.dtype() == kInt32);
  check_op(ai, fixture("ew_int_add"), [&](const Tensor& x) { return x + bi; });
  check_op(ai, fixture("ew_int_mul_scalar"), [](const Tensor& x) { return x * 3; });
  check_op(ai, fixture("ew_int_mul_float"), [](const Tensor& x) { return x * 0.5; });
  check_op(ai, fixture("ew_int_div"), [&](const Tensor& x) { return x / bi; });
  check_op(ai, fixture("ew_int_div_trunc"), [&](const Tensor& x) { return div(x, bi, "trunc"); });
  check_op(ai, fixture("ew_int_div_floor"), [&](const Tensor& x) { return div(x, bi, "floor"); });
  check_op(fixture("ew_a"), fixture("ew_float_div_floor"),
           [&](const Tensor& x) { return div(x, fixture("ew_b"), "floor"); });
  check_op(ai, fixture("ew_int_pow"), [](const Tensor& x) { return pow(x, 3); });
  check_op(ai, fixture("ew_int_abs"), [](const Tensor& x) { return abs(x); });
  check_op(ai, fixture("ew_int_clamp"), [](const Tensor& x) { return clamp(x, -5, 5); });
  check_op(ai, fixture("ew_int_exp"), [](const Tensor& x) { return exp(clamp(x, -5, 5)); });
  check_op(ai, fixture("ew_int_gt"), [&](const Tensor& x) { return gt(x, bi); });

  // promotion rules, including 0-dim tensors ranking below tensors with dims
  CHECK(result_type(arange(3), scalar_tensor(1.5, kFloat64)) == kFloat64);
  CHECK(result_type(ones({2}, kFloat16), scalar_tensor(1.5, kFloat64)) == kFloat16);
  CHECK(result_type(ones({2}, kInt32), scalar_tensor(3)) == kInt32);
  CHECK(result_type(ones({2}, kUInt8), ones({2}, kInt8)) == kInt16);
  CHECK(result_type(ones({2}, kInt32), Scalar(2.5)) == kFloat32);
  CHECK(result_type(ones({2}, kBool), Scalar(3)) == kInt64);
  const Tensor t = tensor(std::vector<bool>{true, false});
  CHECK(testing::values(t + t) == std::vector<double>{1, 0});
  CHECK((t + t).dtype() == kBool);
  CHECK((t * 3).dtype() == kInt64);
  CHECK(div(tensor({-7, 7}).to(kInt8), tensor({2, -2}).to(kInt8), "floor").dtype() == kInt8);
  CHECK(testing::values(div(tensor({-7, 7}), tensor({2, -2}), "floor")) == std::vector<double>{-4, -4});
}

TEST_CASE("16-bit floats compute through float32 and round back") {
  const Tensor a = fixture("ew_a"), b = fixture("ew_b");
  const Tensor ah = a.to(kFloat16);
  check_equal(ah.to(kFloat32), fixture("ew_half_in").to(kFloat32));
  check_op(ah, fixture("ew_half_add"), [&](const Tensor& x) { return x + b.to(kFloat16); }, 0, 0);
  check_op(ah, fixture("ew_half_mul_scalar"), [](const Tensor& x) { return x * 1.1; }, 0, 0);
  // bfloat16 exp: PyTorch's vectorised exp may differ from libm by an ulp before rounding to bf16
  Tensor e = exp(a.to(kBFloat16));
  CHECK(e.dtype() == kBFloat16);
  check_close(e.to(kFloat32), fixture("ew_bf16_exp"), 8e-3, 0);
  Tensor mix = a.to(kBFloat16) + b.to(kFloat16);
  CHECK(mix.dtype() == kFloat32);
  check_close(mix, fixture("ew_bf16_plus_half"), 0, 0);
}

TEST_CASE("in-place arithmetic writes through views") {
  Tensor m = zeros({3, 4});
  Tensor col = m.select(1, 2);
  add_(col, tensor({1.f, 2.f, 3.f}));
  mul_(col, 2);
  CHECK(testing::values(m.select(1, 2)) == std::vector<double>{2, 4, 6});
  CHECK(testing::values(m.select(1, 1)) == std::vector<double>{0, 0, 0});
}

TEST_CASE("in-place: lossy casts and bad broadcasts are refused") {
  Tensor i = arange(4);
  CHECK_THROWS_WITH_AS(add_(i, 0.5), "[add_] result type float32 can't be cast to the desired output type int64",
                       DTypeError);
  Tensor f = zeros({2, 3});
  f += 1;
  f *= tensor({1.f, 2.f, 3.f});
  check_close(f, tensor({{1.f, 2.f, 3.f}, {1.f, 2.f, 3.f}}));
  Tensor small = zeros({3});
  CHECK_THROWS_AS(add_(small, zeros({2, 3})), ShapeError);
  Tensor r = tensor({-1.f, 2.f});
  relu_(r);
  CHECK(testing::values(r) == std::vector<double>{0, 2});
}

TEST_CASE("bad operands give one-line errors") {
  CHECK_THROWS_WITH_AS(zeros({2, 3}) + zeros({4}),
                       "[add] shapes [2, 3] and [4] do not broadcast (dimension 1: 3 vs 4)", ShapeError);
  CHECK_THROWS_AS(neg(tensor(std::vector<bool>{true})), DTypeError);
  CHECK_THROWS_AS(pow(arange(3), -1), ValueError);
  CHECK_THROWS_AS(div(arange(3), 0, "trunc"), ValueError);
  CHECK_THROWS_AS(div(zeros({1}), 1, "round"), ValueError);
  CHECK_THROWS_AS(add(arange(3), arange(3), 0.5), DTypeError);
  CHECK_THROWS_AS(clamp(zeros({1}), std::nullopt, std::nullopt), ValueError);
  CHECK_THROWS_AS(exp(empty({2}, DType::UInt16)), DTypeError);
}

TEST_CASE("the strided loop walks operands in the written operand's memory order") {
  // channels-last [N,C,H,W] = [2,3,4,5]: element strides (60, 1, 15, 3); in bytes for float
  const Shape sizes{2, 3, 4, 5};
  const Shape cl{240, 4, 60, 12}, c_order{240, 80, 20, 4}, bias{0, 4, 0, 0};
  CHECK(detail::walk_order<1>(sizes, {cl}) == Shape{0, 2, 3, 1});
  CHECK(detail::walk_order<1>(sizes, {c_order}) == Shape{0, 1, 2, 3});
  // a broadcast operand does not decide; size-1 dims are left out
  CHECK(detail::walk_order<2>(sizes, {cl, bias}) == Shape{0, 2, 3, 1});
  CHECK(detail::walk_order<2>(Shape{2, 1, 3}, {Shape{12, 12, 4}, Shape{0, 0, 4}}) == Shape{0, 2});
  // ties on the first operand go to the next one
  CHECK(detail::walk_order<2>(Shape{3, 4}, {Shape{0, 0}, Shape{4, 12}}) == Shape{1, 0});

  // elementwise ops on channels-last tensors run as one dense run, not 24 runs with a stride of C
  float out[120], a[120], b[120];
  int runs = 0;
  int64_t longest = 0, step = 0;
  detail::for_each_strided<3>(
      sizes, std::array<char*, 3>{reinterpret_cast<char*>(out), reinterpret_cast<char*>(a), reinterpret_cast<char*>(b)},
      std::array<Shape, 3>{cl, cl, cl},
      [&](std::array<char*, 3>, std::array<int64_t, 3> s, int64_t n) {
        ++runs;
        longest = std::max(longest, n);
        step = s[0];
      },
      /*parallel=*/false);
  CHECK(runs == 1);
  CHECK(longest == 120);
  CHECK(step == 4);

  // and the values are right: a channels-last add with a broadcast per-channel bias, against the C-order result
  const Tensor x = arange(0, 120, 1, kFloat32).reshape({2, 3, 4, 5});
  const Tensor bias_t = tensor<float>({10, 20, 30}).reshape({1, 3, 1, 1});
  const Tensor got = x.contiguous(MemoryFormat::ChannelsLast) + bias_t;
  CHECK(got.is_contiguous(MemoryFormat::ChannelsLast));
  check_equal(got.contiguous(), x + bias_t);
  // a transposed destination written from a C-order source
  Tensor t = empty({5, 4}, kFloat32).t();
  t.copy_(arange(0, 20, 1, kFloat32).reshape({4, 5}));
  check_equal(t.contiguous(), arange(0, 20, 1, kFloat32).reshape({4, 5}));
}
