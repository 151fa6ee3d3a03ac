// conv2d forward: values from real PyTorch (fixtures made by tests/fixtures/gen/conv.py) on contiguous and
// strided layouts, a direct-loop reference on shapes large enough to tile and thread, and the error messages.
#include <string>
#include <vector>

#include "helpers.hpp"
#include "torchlet/core/threads.hpp"
#include "torchlet/ops/conv.hpp"
#include "torchlet/tensor/random.hpp"

using namespace torchlet;
using testing::check_close;
using testing::fixture;
using testing::strided_versions;

namespace {
struct FixtureCase {
  const char* name;
  Conv2dOptions options;
  bool has_bias;
  DType dtype;  // the dtype the case is run in (bfloat16 fixtures are stored as float32)
  double rtol, atol;
};

// the same cases, in the same order, as CASES in tests/fixtures/gen/conv.py
const std::vector<FixtureCase>& fixture_cases() {
  static const std::vector<FixtureCase> cases = {
      {"basic3x3", {{1, 1}, {0, 0}, {1, 1}, 1}, true, kFloat32, 1e-5, 1e-5},
      {"stride2", {{2, 2}, {0, 0}, {1, 1}, 1}, true, kFloat32, 1e-5, 1e-5},
      {"padding", {{1, 1}, {1, 1}, {1, 1}, 1}, true, kFloat32, 1e-5, 1e-5},
      {"dilation2", {{1, 1}, {2, 1}, {2, 2}, 1}, true, kFloat32, 1e-5, 1e-5},
      {"groups2", {{1, 1}, {1, 1}, {1, 1}, 2}, true, kFloat32, 1e-5, 1e-5},
      {"depthwise", {{2, 1}, {1, 1}, {1, 1}, 5}, true, kFloat32, 1e-5, 1e-5},
      {"pointwise", {{1, 1}, {0, 0}, {1, 1}, 1}, true, kFloat32, 1e-5, 1e-5},
      {"pointwise_s2", {{2, 2}, {0, 0}, {1, 1}, 1}, false, kFloat32, 1e-5, 1e-5},
      {"stem7x7", {{2, 2}, {3, 3}, {1, 1}, 1}, false, kFloat32, 1e-5, 1e-5},
      {"nobias", {{1, 1}, {1, 1}, {1, 1}, 1}, false, kFloat32, 1e-5, 1e-5},
      {"nonsquare", {{2, 3}, {1, 2}, {2, 1}, 1}, true, kFloat32, 1e-5, 1e-5},
      {"f64", {{1, 2}, {1, 0}, {1, 1}, 1}, true, kFloat64, 1e-12, 1e-12},
      {"unbatched", {{1, 1}, {1, 1}, {1, 1}, 1}, true, kFloat32, 1e-5, 1e-5},
      // float16: both sides accumulate in float32 and round once; a different summation order may flip the
      // last bit. bfloat16: PyTorch (oneDNN) rounds once too; allow one bfloat16 ulp.
      {"f16", {{1, 1}, {1, 1}, {1, 1}, 1}, true, kFloat16, 1e-3, 1e-3},
      {"bf16", {{1, 1}, {1, 1}, {1, 1}, 1}, true, kBFloat16, 8e-3, 1e-2},
  };
  return cases;
}

// conv2d by its definition, in double, for any layout and dtype
Tensor reference_conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o) {
  const Tensor x = input.to(kFloat64).contiguous(), w = weight.to(kFloat64).contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Co = w.size(0), Cg = w.size(1), kh = w.size(2), kw = w.size(3), G = o.groups;
  const int64_t Ho = (H + 2 * o.padding[0] - o.dilation[0] * (kh - 1) - 1) / o.stride[0] + 1;
  const int64_t Wo = (W + 2 * o.padding[1] - o.dilation[1] * (kw - 1) - 1) / o.stride[1] + 1;
  Tensor y = zeros({N, Co, Ho, Wo}, kFloat64);
  const double *xp = x.data<double>(), *wp = w.data<double>();
  double* yp = y.data<double>();
  const std::vector<double> b = bias.defined() ? testing::values(bias) : std::vector<double>(Co, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t co = 0; co < Co; ++co) {
      const int64_t grp = co / (Co / G);
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          double acc = b[co];
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ih = oh * o.stride[0] - o.padding[0] + i * o.dilation[0];
                const int64_t iw = ow * o.stride[1] - o.padding[1] + j * o.dilation[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += xp[((n * C + grp * Cg + c) * H + ih) * W + iw] * wp[((co * Cg + c) * kh + i) * kw + j];
              }
          yp[((n * Co + co) * Ho + oh) * Wo + ow] = acc;
        }
    }
  (void)C;
  return y;
}

// restores the thread setting at the end of a test
struct ThreadsGuard {
  int saved = get_num_threads();
  ~ThreadsGuard() { set_num_threads(saved); }
};
}  // namespace

TEST_CASE("conv2d matches PyTorch on contiguous and strided layouts") {
  for (const auto& c : fixture_cases()) {
    const std::string n = std::string("conv_") + c.name;
    CAPTURE(n);
    const Tensor x = fixture(n + "_x").to(c.dtype), w = fixture(n + "_w").to(c.dtype);
    const Tensor b = c.has_bias ? fixture(n + "_b").to(c.dtype) : Tensor();
    const Tensor y = fixture(n + "_y");
    const Tensor out = conv2d(x, w, b, c.options);
    CHECK(out.dtype() == c.dtype);
    check_close(out, y, c.rtol, c.atol);
    for (const Tensor& xs : strided_versions(x)) {
      REQUIRE_FALSE(xs.is_contiguous());
      check_close(conv2d(xs, w, b, c.options), y, c.rtol, c.atol);
    }
    // non-contiguous weight and bias too
    const Tensor ws = strided_versions(w).front(), bs = c.has_bias ? strided_versions(b).front() : Tensor();
    REQUIRE_FALSE(ws.is_contiguous());
    check_close(conv2d(strided_versions(x).back(), ws, bs, c.options), y, c.rtol, c.atol);
  }
}

TEST_CASE("conv2d: unbatched 3-D input gives 3-D output, like the batch of one") {
  const Tensor x = fixture("conv_unbatched_x"), w = fixture("conv_unbatched_w"), b = fixture("conv_unbatched_b");
  const Tensor out = conv2d(x, w, b, {.padding = {1, 1}});
  CHECK(out.sizes() == Shape{4, 8, 7});
  check_close(conv2d(x.unsqueeze(0), w, b, {.padding = {1, 1}}).squeeze(0), out, 0, 0);
}

TEST_CASE("conv2d matches a direct loop on shapes that tile and thread, with any thread count") {
  ThreadsGuard guard;
  Generator gen(123);
  struct Big {
    Shape x, w;
    Conv2dOptions o;
    bool bias;
  };
  const std::vector<Big> shapes = {
      {{1, 32, 48, 48}, {16, 32, 3, 3}, {.padding = {1, 1}}, true},                // several tiles, batch 1
      {{3, 24, 50, 47}, {8, 24, 3, 3}, {.stride = {2, 2}, .padding = {1, 1}}, true},  // odd batch, tiles mid-row
      {{2, 64, 30, 30}, {32, 64, 1, 1}, {}, true},                                // pointwise, tiles
      {{2, 64, 30, 31}, {32, 64, 1, 1}, {.stride = {2, 2}}, false},               // strided 1x1
      {{1, 8, 70, 66}, {12, 2, 3, 3}, {.padding = {2, 2}, .dilation = {2, 2}, .groups = 4}, true},
      {{5, 6, 9, 9}, {6, 1, 3, 3}, {.padding = {1, 1}, .groups = 6}, false},      // depthwise
      // small images: several images share one GEMM
      {{4, 16, 9, 7}, {24, 16, 3, 3}, {.padding = {1, 1}}, true},
      {{6, 32, 5, 5}, {40, 32, 1, 1}, {}, true},                                 // pointwise, gathered
      {{3, 8, 6, 6}, {5, 8, 3, 3}, {.stride = {2, 1}}, true},                     // odd batch
      {{8, 12, 7, 7}, {12, 4, 3, 3}, {.padding = {1, 1}, .groups = 3}, true},
  };
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (const auto& s : shapes) {
      CAPTURE(threads);
      CAPTURE(shape_str(s.x));
      const Tensor x = randn(s.x, kFloat32, gen), w = randn(s.w, kFloat32, gen);
      const Tensor b = s.bias ? randn({s.w[0]}, kFloat32, gen) : Tensor();
      const Tensor expected = reference_conv2d(x, w, b, s.o);
      check_close(conv2d(x, w, b, s.o), expected, 1e-4, 1e-4);
      check_close(conv2d(x.to(kFloat64), w.to(kFloat64), b.defined() ? b.to(kFloat64) : b, s.o), expected, 1e-11,
                  1e-11);
    }
  }
}

TEST_CASE("conv2d: empty batch and the output size formula") {
  const Tensor w = ones({4, 3, 3, 3});
  CHECK(conv2d(zeros({0, 3, 5, 5}), w).sizes() == Shape{0, 4, 3, 3});
  // Ho = (H + 2 * pad - dil * (k - 1) - 1) / stride + 1 = (10 + 2 - 4 - 1) / 3 + 1 = 3; Wo = (7 - 3) / 2 + 1 = 3
  CHECK(conv2d(zeros({1, 3, 10, 7}), w, {}, {.stride = {3, 2}, .padding = {1, 0}, .dilation = {2, 1}}).sizes() ==
        Shape{1, 4, 3, 3});
  // a kernel exactly as large as the padded input gives one pixel
  CHECK(conv2d(ones({1, 3, 1, 1}), w, {}, {.padding = {1, 1}}).sizes() == Shape{1, 4, 1, 1});
  CHECK(conv2d(ones({1, 3, 1, 1}), w, {}, {.padding = {1, 1}})[0][2][0][0].item<float>() == 3.f);
}

TEST_CASE("conv2d raises one-line errors on bad arguments") {
  const Tensor x = zeros({1, 3, 8, 8}), w = zeros({6, 3, 3, 3}), b = zeros({6});
  CHECK_THROWS_WITH_AS(conv2d(zeros({3, 224}), w),
                       "[conv2d] expected input of 3 dims (C, H, W) or 4 dims (N, C, H, W), got [3, 224]", ShapeError);
  CHECK_THROWS_AS(conv2d(zeros({1, 1, 3, 8, 8}), w), ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({6, 3, 3})),
                       "[conv2d] expected weight of 4 dims (out_channels, in_channels / groups, kH, kW), got [6, 3, 3]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({6, 2, 3, 3}), {}, {.groups = 3}),
                       "[conv2d] input [1, 3, 8, 8] has 3 channels, weight [6, 2, 3, 3] expects 6 (= 2 per group x 3 "
                       "groups)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, zeros({6, 4, 3, 3})),
                       "[conv2d] input [1, 3, 8, 8] has 3 channels, weight [6, 4, 3, 3] expects 4", ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 4, 8, 8}), zeros({6, 2, 3, 3}), {}, {.groups = 4}),
                       "[conv2d] weight [6, 2, 3, 3] has 6 output channels, not divisible by groups=4", ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, {}, {.groups = 0}), "[conv2d] groups must be positive, got 0", ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, {}, {.stride = {0, 1}}), "[conv2d] stride must be positive, got [0, 1]",
                       ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, {}, {.dilation = {1, -2}}), "[conv2d] dilation must be positive, got [1, -2]",
                       ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, {}, {.padding = {-1, 0}}), "[conv2d] padding must be non-negative, got [-1, 0]",
                       ValueError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, {}, {.stride = {1, 1, 1}}),
                       "[conv2d] expected stride of 2 values (height, width), got [1, 1, 1]", ValueError);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 3, 2, 2}), w),
                       "[conv2d] input [1, 3, 2, 2] (padded 2x2) is smaller than the kernel 3x3", ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 3, 4, 4}), w, {}, {.padding = {1, 1}, .dilation = {3, 1}}),
                       "[conv2d] input [1, 3, 4, 4] (padded 6x6) is smaller than the dilated kernel 7x3", ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, zeros({5})), "[conv2d] expected bias of shape [6], got [5]", ShapeError);
  CHECK_THROWS_AS(conv2d(x, w, zeros({1, 6})), ShapeError);
  CHECK_THROWS_WITH_AS(conv2d(x, w.to(kFloat64)), "[conv2d] input (float32) and weight (float64) must have the same dtype",
                       DTypeError);
  CHECK_THROWS_WITH_AS(conv2d(x, w, b.to(kFloat16)),
                       "[conv2d] input (float32) and bias (float16) must have the same dtype", DTypeError);
  CHECK_THROWS_WITH_AS(conv2d(x.to(kInt64), w.to(kInt64)),
                       "[conv2d] expected a floating point input (float16, bfloat16, float32, float64), got int64",
                       DTypeError);
  CHECK_THROWS_AS(conv2d(Tensor(), w), ValueError);
  CHECK_THROWS_AS(conv2d(x, Tensor()), ValueError);
  CHECK_THROWS_AS(conv2d(x, zeros({6, 3, 0, 3})), ShapeError);
}

TEST_CASE("conv2d internals: the bounds-checked im2col (for large images) equals the padded-copy im2col") {
  // the bounds-checked path only runs on images whose padded copy exceeds kPaddedCopyBytes; compare it here
  Generator gen(5);
  cpu::Conv2dGeometry g;
  g.in_channels = 3, g.in_h = 11, g.in_w = 13, g.kernel_h = 3, g.kernel_w = 4;
  g.stride_h = 2, g.stride_w = 3, g.pad_h = 2, g.pad_w = 3, g.dilation_h = 2, g.dilation_w = 1;
  g.out_h = (11 + 4 - 2 * 2 - 1) / 2 + 1, g.out_w = (13 + 6 - 3 - 1) / 3 + 1;
  const Tensor x = randn({3, 11, 13}, kFloat32, gen);
  const int64_t K = g.patch(), P = g.out_h * g.out_w;
  std::vector<float> padded(3 * 15 * 19);
  detail::pad_channels(x.data<float>(), 0, 3, g, padded.data());
  for (int64_t p0 : {int64_t{0}, int64_t{3}, int64_t{7}}) {
    const int64_t np = P - p0 - (p0 ? 2 : 0);  // tiles starting and ending mid-row
    std::vector<float> a(K * np, -1.f), b(K * np, -2.f);
    detail::im2col_tile(x.data<float>(), 0, 3, g, p0, np, a.data(), np);
    detail::im2col_padded(padded.data(), 0, 3, g, p0, np, b.data(), np);
    CHECK(a == b);
  }
}
