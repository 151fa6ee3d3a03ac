#pragma once
// Shared test helpers: reading fixtures, comparing tensors, and making strided copies of an input.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include <functional>

#include "fixture_files.hpp"
#include "torchlet/autograd/gradcheck.hpp"
#include "torchlet/io/npy.hpp"
#include "torchlet/tensor/factory.hpp"
#include "torchlet/tensor/print.hpp"

namespace testing {
using namespace torchlet;

/// A fixture written by tests/fixtures/make_fixtures.py.
inline Tensor fixture(const std::string& name) { return load_npy(std::string(TORCHLET_FIXTURES) + "/" + name + ".npy"); }


/// Values of any tensor as doubles (row-major).
inline std::vector<double> values(const Tensor& t) {
  const Tensor c = t.to(kFloat64).contiguous();
  return std::vector<double>(c.data<double>(), c.data<double>() + c.numel());
}

/// Checks shape and |a - b| <= atol + rtol * |b| elementwise (NaNs must match), reporting the first miss.
inline void check_close(const Tensor& actual, const Tensor& expected, double rtol = 1e-5, double atol = 1e-6) {
  REQUIRE_MESSAGE(actual.sizes() == expected.sizes(), "shape ", shape_str(actual.sizes()), " vs expected ",
                  shape_str(expected.sizes()));
  const auto a = values(actual), b = values(expected);
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const bool ok = (std::isnan(a[i]) && std::isnan(b[i])) || a[i] == b[i] ||
                    std::fabs(a[i] - b[i]) <= atol + rtol * std::fabs(b[i]);
    if (!ok && bad++ == 0) first = i;
  }
  CHECK_MESSAGE(bad == 0, bad, " of ", a.size(), " elements differ; first at flat index ", first, ": ",
                (a.empty() ? 0.0 : a[first]), " vs expected ", (b.empty() ? 0.0 : b[first]));
}

/// Checks equal shape, dtype and bit-identical values.
inline void check_equal(const Tensor& actual, const Tensor& expected) {
  CHECK(actual.dtype() == expected.dtype());
  check_close(actual, expected, 0, 0);
}

/// A float64 leaf that requires grad, uniform in [lo, hi) from a fixed seed: an input for gradchecks.
inline Tensor leaf(const Shape& shape, uint64_t seed, double lo = -1, double hi = 1) {
  Generator g(seed);
  Tensor t = empty(shape, kFloat64);
  uniform_(t, lo, hi, g);
  return t.requires_grad_();
}

/// Runs autograd::gradcheck on f at `inputs` and reports the first mismatch.
inline void check_grad(const std::function<Tensor(const autograd::TensorList&)>& f,
                       const autograd::TensorList& inputs) {
  const auto r = autograd::gradcheck(f, inputs);
  CHECK_MESSAGE(r.ok, r.message);
}

/// The same values as `t` in layouts that are not contiguous: every-other-element along the last dim,
/// and (for >= 2 dims) a transposed buffer viewed back. Kernels must give identical results on them.
inline std::vector<Tensor> strided_versions(const Tensor& t) {
  std::vector<Tensor> out;
  if (t.dim() == 0) return out;
  Shape wide = t.sizes();
  wide.back() *= 2;
  Tensor buf = zeros(wide, t.dtype());
  Tensor every_other = buf.slice(-1, 0, std::nullopt, 2);
  every_other.copy_(t);
  out.push_back(every_other);
  if (t.dim() >= 2) out.push_back(t.transpose(0, t.dim() - 1).contiguous().transpose(0, t.dim() - 1));
  return out;
}

/// The input in every layout a kernel must handle: as stored, the strided versions, and (4-D) channels-last.
inline std::vector<Tensor> all_layouts(const Tensor& x) {
  std::vector<Tensor> out{x};
  for (const Tensor& s : strided_versions(x)) out.push_back(s);
  if (x.dim() == 4) out.push_back(x.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2}));
  return out;
}

/// Runs `f` on `x` and on each strided version of it, checking every result against `expected`.
inline void check_layouts(const Tensor& x, const std::function<Tensor(const Tensor&)>& f, const Tensor& expected,
                          double rtol = 1e-5, double atol = 1e-6) {
  {
    INFO("contiguous input");
    check_close(f(x), expected, rtol, atol);
  }
  int k = 0;
  for (const Tensor& s : strided_versions(x)) {
    INFO("strided version ", k++, " with strides ", shape_str(s.strides()));
    REQUIRE_FALSE(s.is_contiguous());
    check_close(f(s), expected, rtol, atol);
  }
}
}  // namespace testing
