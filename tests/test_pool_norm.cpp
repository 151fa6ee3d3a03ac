// Pooling (max with indices, average, adaptive average) and batch norm against values from real PyTorch
// (tests/fixtures/gen/pool_norm.py), on contiguous and strided inputs, plus the validation messages.
#include <cmath>
#include <functional>
#include <string>

#include "helpers.hpp"
#include "torchlet/core/threads.hpp"
#include "torchlet/ops/normalization.hpp"
#include "torchlet/ops/pooling.hpp"
#include "torchlet/tensor/random.hpp"

using namespace torchlet;
using testing::check_close;
using testing::check_equal;
using testing::fixture;

namespace {
std::vector<Tensor> layouts(const Tensor& x) { return testing::all_layouts(x); }

/// A fixture input converted to `dtype` (bfloat16 inputs are stored as float32 holding exact bfloat16 values).
Tensor input(const std::string& name, std::optional<DType> dtype = std::nullopt) {
  const Tensor x = fixture(name);
  return dtype ? x.to(*dtype) : x;
}

/// max_pool2d_with_indices on each layout of pool_<name>_x: values and indices exactly as PyTorch's, and
/// max_pool2d giving the same values.
void check_max_pool(const std::string& name, const MaxPool2dOptions& o, std::optional<DType> dtype = std::nullopt) {
  const Tensor x = input("pool_" + name + "_x", dtype);
  const Tensor want = fixture("pool_" + name + "_out"), want_idx = fixture("pool_" + name + "_idx");
  for (const Tensor& xs : layouts(x)) {
    CAPTURE(name);
    CAPTURE(shape_str(xs.strides()));
    auto [out, idx] = max_pool2d_with_indices(xs, o);
    CHECK(out.dtype() == x.dtype());
    check_close(out, want, 0, 0);
    check_equal(idx, want_idx);
    check_close(max_pool2d(xs, o), want, 0, 0);
  }
}

/// `fn` on each layout of pool_<name>_x against pool_<name>_out within rtol/atol.
void check_pool(const std::string& name, const std::function<Tensor(const Tensor&)>& fn,
                std::optional<DType> dtype = std::nullopt, double rtol = 1e-5, double atol = 1e-6) {
  const Tensor x = input("pool_" + name + "_x", dtype);
  const Tensor want = fixture("pool_" + name + "_out");
  for (const Tensor& xs : layouts(x)) {
    CAPTURE(name);
    CAPTURE(shape_str(xs.strides()));
    const Tensor out = fn(xs);
    CHECK(out.dtype() == x.dtype());
    check_close(out, want, rtol, atol);
  }
}
}  // namespace

// ---- max_pool2d ------------------------------------------------------------------------------------------

TEST_CASE("max_pool2d matches PyTorch: values and indices, exactly") {
  check_max_pool("max_resnet", {.kernel_size = {3}, .stride = {2}, .padding = {1}});
  check_max_pool("max_2x2", {.kernel_size = {2, 2}});
  check_max_pool("max_ceil", {.kernel_size = {3}, .stride = {2}, .ceil_mode = true});
  check_max_pool("max_ceil_pad", {.kernel_size = {2}, .stride = {2}, .padding = {1}, .ceil_mode = true});
  check_max_pool("max_dilation", {.kernel_size = {3}, .stride = {1}, .padding = {1}, .dilation = {2}});
  check_max_pool("max_nonsquare",
                 {.kernel_size = {2, 3}, .stride = {2, 1}, .padding = {1, 1}, .dilation = {1, 2}});
  check_max_pool("max_f64", {.kernel_size = {3}, .stride = {1}, .padding = {1}});
}

TEST_CASE("max_pool2d: NaN is the max, ties keep the first index, -inf-only windows") {
  check_max_pool("max_special", {.kernel_size = {2}});
  const auto [out, idx] = max_pool2d_with_indices(fixture("pool_max_special_x"), {.kernel_size = {2}});
  CHECK(std::isnan(out.view({-1})[1].item<double>()));
  CHECK(idx.view({-1})[1].item<int64_t>() == 9);  // the last NaN of the window (row 1, col 3)
}

TEST_CASE("max_pool2d on unbatched [C, H, W] input") {
  check_max_pool("max_unbatched", {.kernel_size = {3}, .stride = {2}, .padding = {1}});
  const Tensor x = fixture("pool_max_unbatched_x");
  CHECK(max_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}}).sizes() == Shape{3, 4, 3});
}

TEST_CASE("max_pool2d in bfloat16 and float16") {
  check_max_pool("max_bf16", {.kernel_size = {3}, .stride = {2}, .padding = {1}}, kBFloat16);
  check_max_pool("max_f16", {.kernel_size = {3}, .stride = {2}, .padding = {1}}, kFloat16);
}

TEST_CASE("max_pool2d with an empty batch gives an empty output") {
  const auto [out, idx] = max_pool2d_with_indices(zeros({0, 3, 8, 8}), {.kernel_size = {2}});
  CHECK(out.sizes() == Shape{0, 3, 4, 4});
  CHECK(idx.sizes() == Shape{0, 3, 4, 4});
  CHECK(idx.dtype() == kInt64);
}

// ---- avg_pool2d ------------------------------------------------------------------------------------------

TEST_CASE("avg_pool2d matches PyTorch") {
  check_pool("avg_2x2", [](const Tensor& x) { return avg_pool2d(x, {.kernel_size = {2}}); });
  check_pool("avg_pad_incl",
             [](const Tensor& x) { return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}}); });
  check_pool("avg_pad_excl", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}, .count_include_pad = false});
  });
  check_pool("avg_ceil_incl", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}, .ceil_mode = true});
  });
  check_pool("avg_ceil_excl", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}, .ceil_mode = true,
                          .count_include_pad = false});
  });
  check_pool("avg_ceil_nopad",
             [](const Tensor& x) { return avg_pool2d(x, {.kernel_size = {4}, .stride = {3}, .ceil_mode = true}); });
  check_pool("avg_divisor", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}, .divisor_override = 5});
  });
  check_pool("avg_nonsquare", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3, 2}, .stride = {1, 2}, .padding = {1, 0}});
  });
  check_pool("avg_f64", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3}, .stride = {1}, .padding = {1}, .count_include_pad = false});
  }, std::nullopt, 1e-12, 1e-14);
  check_pool("avg_unbatched", [](const Tensor& x) { return avg_pool2d(x, {.kernel_size = {2}, .stride = {1}}); });
}

TEST_CASE("avg_pool2d on int64 divides with truncation, as PyTorch") {
  check_pool("avg_int64", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {2}, .stride = {2}, .padding = {1}, .ceil_mode = true});
  }, std::nullopt, 0, 0);
  check_pool("avg_int64_excl", [](const Tensor& x) {
    return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}, .count_include_pad = false});
  }, std::nullopt, 0, 0);
  const Tensor x = tensor(std::vector<int64_t>{-5, -6, 1, 1}, {1, 1, 2, 2});
  CHECK(avg_pool2d(x, {.kernel_size = {2}}).item<int64_t>() == -2);  // -11 / 4 truncated
}

TEST_CASE("avg_pool2d in bfloat16 and float16") {
  auto fn = [](const Tensor& x) { return avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}}); };
  check_pool("avg_bf16", fn, kBFloat16, 8e-3, 1e-6);
  check_pool("avg_f16", fn, kFloat16, 1e-3, 1e-6);
}

// ---- adaptive_avg_pool2d ---------------------------------------------------------------------------------

TEST_CASE("adaptive_avg_pool2d matches PyTorch, also where the sizes do not divide") {
  check_pool("adaptive_1x1", [](const Tensor& x) { return adaptive_avg_pool2d(x, {1}); });
  check_pool("adaptive_7to3", [](const Tensor& x) { return adaptive_avg_pool2d(x, {3, 3}); });
  check_pool("adaptive_5to2x4", [](const Tensor& x) { return adaptive_avg_pool2d(x, {2, 4}); });
  check_pool("adaptive_up", [](const Tensor& x) { return adaptive_avg_pool2d(x, {5, 7}); });
  check_pool("adaptive_unbatched", [](const Tensor& x) { return adaptive_avg_pool2d(x, {4, 5}); });
  check_pool("adaptive_f64", [](const Tensor& x) { return adaptive_avg_pool2d(x, {3, 4}); }, std::nullopt, 1e-12,
             1e-14);
  check_pool("adaptive_bf16", [](const Tensor& x) { return adaptive_avg_pool2d(x, {3, 2}); }, kBFloat16, 8e-3);
  check_pool("adaptive_f16", [](const Tensor& x) { return adaptive_avg_pool2d(x, {3, 2}); }, kFloat16, 1e-3);
}

TEST_CASE("adaptive_avg_pool2d: empty batch and zero output size") {
  CHECK(adaptive_avg_pool2d(zeros({0, 3, 8, 8}), {2}).sizes() == Shape{0, 3, 2, 2});
  CHECK(adaptive_avg_pool2d(zeros({2, 3, 8, 8}), {0, 2}).sizes() == Shape{2, 3, 0, 2});
}

TEST_CASE("pooling gives the same values on one thread and on several") {
  Generator gen(3);
  const Tensor x = randn({4, 16, 33, 31}, kFloat32, gen);
  const int saved = get_num_threads();
  set_num_threads(1);
  const auto [m1, i1] = max_pool2d_with_indices(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}});
  const Tensor a1 = avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}});
  const Tensor d1 = adaptive_avg_pool2d(x, {5, 3});
  const Tensor b1 = batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), {.training = true});
  set_num_threads(4);
  const auto [m4, i4] = max_pool2d_with_indices(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}});
  check_equal(m4, m1);
  check_equal(i4, i1);
  check_equal(avg_pool2d(x, {.kernel_size = {3}, .stride = {2}, .padding = {1}}), a1);
  check_equal(adaptive_avg_pool2d(x, {5, 3}), d1);
  check_equal(batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), {.training = true}), b1);
  set_num_threads(saved);
}

// ---- pooling errors --------------------------------------------------------------------------------------

TEST_CASE("pooling validates its input and options with PyTorch's rules") {
  const Tensor x = zeros({2, 3, 8, 8});
  CHECK_THROWS_WITH_AS(max_pool2d(zeros({224, 224}), {.kernel_size = {2}}),
                       "[max_pool2d] expected input of 3 or 4 dims, got [224, 224]", ShapeError);
  CHECK_THROWS_WITH_AS(avg_pool2d(zeros({1, 1, 1, 8, 8}), {.kernel_size = {2}}),
                       "[avg_pool2d] expected input of 3 or 4 dims, got [1, 1, 1, 8, 8]", ShapeError);
  CHECK_THROWS_WITH_AS(max_pool2d(zeros({2, 3, 0, 8}), {.kernel_size = {2}}),
                       "[max_pool2d] expected non-zero sizes except for the batch dim, got input [2, 3, 0, 8]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(max_pool2d(x, {.kernel_size = {3}, .padding = {2}}),
                       "[max_pool2d] pad should be at most half of kernel size: expected padding <= [1, 1], got "
                       "[2, 2] (kernel_size [3, 3])",
                       ValueError);
  CHECK_THROWS_AS(avg_pool2d(x, {.kernel_size = {3}, .padding = {0, 2}}), ValueError);
  CHECK_THROWS_WITH_AS(max_pool2d(zeros({1, 1, 2, 2}), {.kernel_size = {3}}),
                       "[max_pool2d] output size is too small: input [C, H, W] = [1, 2, 2] gives [1, 0, 0]",
                       ShapeError);
  CHECK_THROWS_AS(avg_pool2d(zeros({1, 1, 2, 2}), {.kernel_size = {3}}), ShapeError);
  CHECK_THROWS_WITH_AS(max_pool2d(x, {.kernel_size = {0}}), "[max_pool2d] kernel_size must be positive, got [0, 0]",
                       ValueError);
  CHECK_THROWS_WITH_AS(max_pool2d(x, {.kernel_size = {2}, .stride = {0}}),
                       "[max_pool2d] stride must be positive, got [0, 0]", ValueError);
  CHECK_THROWS_WITH_AS(max_pool2d(x, {.kernel_size = {2}, .dilation = {1, 0}}),
                       "[max_pool2d] dilation must be positive, got [1, 0]", ValueError);
  CHECK_THROWS_WITH_AS(max_pool2d(x, {.kernel_size = {2, 2, 2}}),
                       "[max_pool2d] kernel_size must have 1 or 2 elements, got [2, 2, 2]", ValueError);
  CHECK_THROWS_AS(max_pool2d(x, {.kernel_size = {}}), ValueError);
  CHECK_THROWS_WITH_AS(avg_pool2d(x, {.kernel_size = {2}, .divisor_override = 0}),
                       "[avg_pool2d] divisor_override must be non-zero, got 0", ValueError);
  CHECK_THROWS_WITH_AS(adaptive_avg_pool2d(x, {-1, 2}),
                       "[adaptive_avg_pool2d] output_size must be non-negative, got [-1, 2]", ValueError);
  CHECK_THROWS_AS(adaptive_avg_pool2d(zeros({8, 8}), {2}), ShapeError);
  CHECK_THROWS_AS(max_pool2d(Tensor(), {.kernel_size = {2}}), ValueError);
}

TEST_CASE("pooling dtypes: floats everywhere, int64 only for avg_pool2d (as PyTorch 1.13 on the CPU)") {
  const Tensor xi = zeros({1, 1, 4, 4}, kInt64);
  CHECK_THROWS_WITH_AS(max_pool2d(xi, {.kernel_size = {2}}),
                       "[max_pool2d] expected input of dtype float16, bfloat16, float32, float64, got int64",
                       DTypeError);
  CHECK_THROWS_AS(max_pool2d_with_indices(zeros({1, 1, 4, 4}, kUInt8), {.kernel_size = {2}}), DTypeError);
  CHECK_THROWS_WITH_AS(avg_pool2d(zeros({1, 1, 4, 4}, kInt32), {.kernel_size = {2}}),
                       "[avg_pool2d] expected input of dtype float16, bfloat16, float32, float64 or int64, got int32",
                       DTypeError);
  CHECK_THROWS_AS(adaptive_avg_pool2d(xi, {2}), DTypeError);
  CHECK(avg_pool2d(xi, {.kernel_size = {2}}).dtype() == kInt64);
}

// ---- batch_norm ------------------------------------------------------------------------------------------

namespace {
/// The batch_norm case bn_<name>: evaluation and training outputs on every layout, the running statistics
/// after a training call, and the saved mean / inverse std, against PyTorch.
void check_batch_norm(const std::string& name, bool affine, bool running, double momentum, double eps,
                      std::optional<DType> dtype = std::nullopt, std::optional<DType> param_dtype = std::nullopt,
                      double rtol = 1e-5, double atol = 1e-5) {
  CAPTURE(name);
  const std::string p = "bn_" + name + "_";
  const Tensor x = input(p + "x", dtype);
  auto param = [&](const char* s) { return input(p + s, param_dtype); };
  const Tensor w = affine ? param("w") : Tensor(), b = affine ? param("b") : Tensor();
  for (const Tensor& xs : layouts(x)) {
    CAPTURE(shape_str(xs.strides()));
    // evaluation: running statistics are read, never written
    const Tensor rm = param("rm"), rv = param("rv");
    const Tensor eval = batch_norm(xs, rm, rv, w, b, {.eps = eps});
    CHECK(eval.dtype() == x.dtype());
    check_close(eval, fixture(p + "eval"), rtol, atol);
    check_equal(rm, param("rm"));
    check_equal(rv, param("rv"));
    // training: batch statistics, running statistics updated in place
    const Tensor train = batch_norm(xs, running ? rm : Tensor(), running ? rv : Tensor(), w, b,
                                    {.training = true, .momentum = momentum, .eps = eps});
    check_close(train, fixture(p + "train"), rtol, atol);
    if (running) {
      check_close(rm, input(p + "rm_after", param_dtype), rtol, 1e-6);
      check_close(rv, input(p + "rv_after", param_dtype), rtol, 1e-6);
    }
    // what backward needs
    const auto [out, mean, invstd] =
        batch_norm_with_stats(xs, Tensor(), Tensor(), w, b, {.training = true, .momentum = momentum, .eps = eps});
    check_close(out, fixture(p + "train"), rtol, atol);
    CHECK(mean.dtype() == (x.dtype() == kFloat64 ? kFloat64 : kFloat32));
    check_close(mean, fixture(p + "save_mean"), 1e-5, 1e-6);
    check_close(invstd, fixture(p + "save_invstd"), 1e-5, 1e-6);
  }
}
}  // namespace

TEST_CASE("batch_norm matches PyTorch in evaluation and training, with running-statistics updates") {
  check_batch_norm("4d", true, true, 0.1, 1e-5);
  check_batch_norm("4d_m03", true, true, 0.3, 1e-3);
}

TEST_CASE("batch_norm without affine parameters or running statistics") {
  check_batch_norm("noaffine", false, false, 0.1, 1e-5);
}

TEST_CASE("batch_norm on 2-D [N, C] and 3-D [N, C, L] inputs") {
  check_batch_norm("2d", true, true, 0.1, 1e-5);
  check_batch_norm("3d", true, true, 0.1, 1e-5);
}

TEST_CASE("batch_norm in float64, bfloat16 (float32 parameters) and float16") {
  check_batch_norm("f64", true, true, 0.1, 1e-5, std::nullopt, std::nullopt, 1e-12, 1e-12);
  check_batch_norm("bf16", true, true, 0.1, 1e-5, kBFloat16, kFloat32, 1e-2, 2e-2);
  check_batch_norm("f16", true, true, 0.1, 1e-5, kFloat16, kFloat16, 2e-3, 2e-3);
}

TEST_CASE("batch_norm updates strided running statistics in place") {
  const std::string p = "bn_4d_";
  Tensor rm_buf = zeros({8}), rv_buf = zeros({8});
  Tensor rm = rm_buf.slice(0, 0, std::nullopt, 2), rv = rv_buf.slice(0, 1, std::nullopt, 2);
  rm.copy_(fixture(p + "rm"));
  rv.copy_(fixture(p + "rv"));
  batch_norm(fixture(p + "x"), rm, rv, fixture(p + "w"), fixture(p + "b"), {.training = true});
  check_close(rm, fixture(p + "rm_after"), 1e-5, 1e-6);
  check_close(rv, fixture(p + "rv_after"), 1e-5, 1e-6);
  CHECK(rm_buf[1].item<float>() == 0.0f);  // the gaps are untouched
  CHECK(rv_buf[0].item<float>() == 0.0f);
}

TEST_CASE("batch_norm with an empty batch returns an empty output and leaves running statistics alone") {
  const Tensor rm = zeros({3}), rv = ones({3});
  const Tensor out = batch_norm(zeros({0, 3, 2, 2}), rm, rv, Tensor(), Tensor(), {.training = true});
  CHECK(out.sizes() == Shape{0, 3, 2, 2});
  check_equal(rm, zeros({3}));
  check_equal(rv, ones({3}));
}

TEST_CASE("batch_norm validates shapes, dtypes and modes") {
  const Tensor x = zeros({2, 4, 5, 5});
  const Tensor c4 = zeros({4}), c3 = zeros({3});
  CHECK_THROWS_WITH_AS(batch_norm(x, c3, ones({3}), Tensor(), Tensor()),
                       "[batch_norm] running_mean has 3 elements, input has 4 channels (input [2, 4, 5, 5])",
                       ShapeError);
  CHECK_THROWS_WITH_AS(batch_norm(x, c4, ones({4}), ones({3}), Tensor()),
                       "[batch_norm] weight has 3 elements, input has 4 channels (input [2, 4, 5, 5])", ShapeError);
  CHECK_THROWS_AS(batch_norm(x, c4, ones({4}), Tensor(), zeros({5})), ShapeError);
  CHECK_THROWS_WITH_AS(batch_norm(zeros({1, 4}), Tensor(), Tensor(), Tensor(), Tensor(), {.training = true}),
                       "[batch_norm] expected more than 1 value per channel when training, got input [1, 4]",
                       ValueError);
  CHECK_THROWS_AS(batch_norm(zeros({1, 4, 1, 1}), c4, ones({4}), Tensor(), Tensor(), {.training = true}),
                  ValueError);
  CHECK_NOTHROW(batch_norm(zeros({1, 4}), c4, ones({4}), Tensor(), Tensor()));  // evaluation is fine
  CHECK_THROWS_WITH_AS(batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor()),
                       "[batch_norm] running_mean and running_var must be defined in evaluation mode", ValueError);
  CHECK_THROWS_AS(batch_norm(x, c4, Tensor(), Tensor(), Tensor(), {.training = true}), ValueError);
  CHECK_THROWS_WITH_AS(batch_norm(zeros({4}), c4, ones({4}), Tensor(), Tensor()),
                       "[batch_norm] expected input of at least 2 dims [N, C, ...], got [4]", ShapeError);
  CHECK_THROWS_AS(batch_norm(zeros({2, 4}, kInt64), c4, ones({4}), Tensor(), Tensor()), DTypeError);
  CHECK_THROWS_WITH_AS(batch_norm(zeros({2, 4}, kFloat64), c4, ones({4}), Tensor(), Tensor()),
                       "[batch_norm] running_mean has dtype float32: expected the input's dtype float64",
                       DTypeError);
  CHECK_NOTHROW(batch_norm(zeros({2, 4}, kBFloat16), c4, ones({4}), Tensor(), Tensor()));
}
