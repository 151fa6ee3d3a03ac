#pragma once
/// \file Creating tensors: zeros, ones, full, arange, linspace, eye, *_like, from_blob, and from C++ values.
#include <cmath>
#include <initializer_list>
#include <vector>

#include "torchlet/tensor/tensor.hpp"

namespace torchlet {

/// A tensor filled with `value`, of the given options.
inline Tensor full(const Shape& sizes, const Scalar& value, TensorOptions options) {
  Tensor t = empty(sizes, options);
  detail::fill_into(t, value);
  return t;
}
/// A tensor of zeros.
inline Tensor zeros(const Shape& sizes, TensorOptions options = {}) { return full(sizes, 0, options); }
/// A tensor of ones.
inline Tensor ones(const Shape& sizes, TensorOptions options = {}) { return full(sizes, 1, options); }
/// A tensor filled with `value`, of the value's default dtype (bool, int64 or float32) as in PyTorch.
inline Tensor full(const Shape& sizes, const Scalar& value) { return full(sizes, value, value.default_dtype()); }

/// Uninitialised, with t's shape, dtype and device.
inline Tensor empty_like(const Tensor& t) { return empty(t.sizes(), TensorOptions(t.dtype(), t.device())); }
/// Zeros with t's shape, dtype and device.
inline Tensor zeros_like(const Tensor& t) { return zeros(t.sizes(), TensorOptions(t.dtype(), t.device())); }
/// Ones with t's shape, dtype and device.
inline Tensor ones_like(const Tensor& t) { return ones(t.sizes(), TensorOptions(t.dtype(), t.device())); }
/// `value` everywhere, with t's shape, dtype and device.
inline Tensor full_like(const Tensor& t, const Scalar& value) {
  return full(t.sizes(), value, TensorOptions(t.dtype(), t.device()));
}

/// start, start+step, ... below `end` (above it for a negative step), in the given dtype. On a device the values
/// are computed on the CPU and copied there (the same values as on the CPU).
inline Tensor arange(const Scalar& start, const Scalar& end, const Scalar& step, TensorOptions options) {
  if (!options.device.is_cpu()) return arange(start, end, step, TensorOptions(options.dtype, kCPU)).to(options.device);
  const double b = start.to<double>(), e = end.to<double>(), s = step.to<double>();
  TORCHLET_CHECK(s != 0, ValueError, "[arange] step must be nonzero");
  TORCHLET_CHECK((s > 0 && e >= b) || (s < 0 && e <= b), ValueError, "[arange] upper bound and larger bound "
                 "inconsistent with step sign: start ", start, ", end ", end, ", step ", step);
  const auto n = static_cast<int64_t>(std::ceil((e - b) / s));
  Tensor out = empty({n}, options);
  detail::check_cpu(out, "arange");
  detail::dispatch_all(options.dtype, "arange", [&]<class T>() {
    T* p = out.data<T>();
    if (start.is_floating_point() || step.is_floating_point()) {
      for (int64_t i = 0; i < n; ++i) p[i] = detail::convert<T>(b + static_cast<double>(i) * s);
    } else {
      const int64_t ib = start.to<int64_t>(), is = step.to<int64_t>();
      for (int64_t i = 0; i < n; ++i) p[i] = detail::convert<T>(ib + i * is);
    }
  });
  return out;
}
/// arange with PyTorch's dtype choice: int64 when all three are integers, float32 otherwise.
inline Tensor arange(const Scalar& start, const Scalar& end, const Scalar& step = 1) {
  const bool all_int = !start.is_floating_point() && !end.is_floating_point() && !step.is_floating_point();
  return arange(start, end, step, all_int ? kInt64 : kFloat32);
}
/// 0, 1, ..., end-1 (int64 for an integer end).
inline Tensor arange(const Scalar& end) { return arange(0, end, 1); }

/// `steps` evenly spaced values from start to end inclusive, computed in the dtype itself (double steps for
/// integer dtypes) with PyTorch's symmetric formula: the first half counts up from start, the rest down from end.
/// On a device the values are computed on the CPU and copied there (the same values as on the CPU).
inline Tensor linspace(double start, double end, int64_t steps, TensorOptions options = {}) {
  if (!options.device.is_cpu()) return linspace(start, end, steps, TensorOptions(options.dtype, kCPU)).to(options.device);
  TORCHLET_CHECK(steps >= 0, ValueError, "[linspace] number of steps must be non-negative, got ", steps);
  Tensor out = empty({steps}, options);
  detail::check_cpu(out, "linspace");
  detail::dispatch_all(options.dtype, "linspace", [&]<class T>() {
    using Step = std::conditional_t<std::is_integral_v<T>, double, detail::opmath_t<T>>;
    T* p = out.data<T>();
    const T b = detail::convert<T>(start), e = detail::convert<T>(end);
    if (steps == 1) p[0] = b;
    if (steps < 2) return;
    const Step step = static_cast<Step>(static_cast<Step>(e) - static_cast<Step>(b)) / static_cast<Step>(steps - 1);
    const int64_t half = steps / 2;
    for (int64_t i = 0; i < steps; ++i)
      p[i] = detail::convert<T>(i < half ? static_cast<Step>(b) + step * static_cast<Step>(i)
                                         : static_cast<Step>(e) - step * static_cast<Step>(steps - 1 - i));
  });
  return out;
}

/// An n x m matrix with ones on the diagonal (m = n when negative).
inline Tensor eye(int64_t n, int64_t m = -1, TensorOptions options = {}) {
  if (m < 0) m = n;
  TORCHLET_CHECK(n >= 0, ValueError, "[eye] n must be non-negative, got ", n);
  Tensor out = zeros({n, m}, options);
  const int64_t k = std::min(n, m);
  if (k > 0) detail::fill_into(out.as_strided({k}, {m + 1}, 0), 1);
  return out;
}

/// A tensor over memory the caller owns (no copy). `keep_alive`, if given, is held as long as the tensor's
/// storage lives; otherwise the caller must keep `data` valid. Strides default to C order.
inline Tensor from_blob(void* data, const Shape& sizes, TensorOptions options = {}, Shape strides = {},
                        std::shared_ptr<void> keep_alive = nullptr) {
  if (strides.empty()) strides = contiguous_strides(sizes);
  int64_t span = 1;
  for (size_t i = 0; i < sizes.size(); ++i) {
    TORCHLET_CHECK(sizes[i] >= 0 && (i >= strides.size() || strides[i] >= 0), ValueError,
                   "[from_blob] negative size or stride: sizes ", shape_str(sizes), ", strides ", shape_str(strides));
    if (sizes[i] == 0) span = 0;
  }
  if (span) for (size_t i = 0; i < sizes.size() && i < strides.size(); ++i) span += (sizes[i] - 1) * strides[i];
  return Tensor(Storage::borrow(data, static_cast<size_t>(span * element_size(options.dtype)), std::move(keep_alive),
                                options.device),
                options.dtype, sizes, std::move(strides));
}

/// A 1-D tensor (or one of `sizes`) holding a copy of `values`; the dtype is T's.
template <class T>
Tensor tensor(const std::vector<T>& values, Shape sizes = {}) {
  if (sizes.empty()) sizes = {static_cast<int64_t>(values.size())};
  TORCHLET_CHECK(numel_of(sizes) == static_cast<int64_t>(values.size()), ShapeError, "[tensor] ", values.size(),
                 " values do not fill shape ", shape_str(sizes));
  Tensor out = empty(sizes, dtype_of<T>());
  if (!values.empty()) std::memcpy(out.data_ptr(), values.data(), values.size() * sizeof(T));
  return out;
}
/// tensor<bool>: std::vector<bool> is packed, so it is unpacked here.
template <>
inline Tensor tensor<bool>(const std::vector<bool>& values, Shape sizes) {
  std::vector<uint8_t> bytes(values.begin(), values.end());
  return tensor(bytes, std::move(sizes)).view(sizes.empty() ? Shape{static_cast<int64_t>(values.size())} : sizes)
      .to(kBool);
}
/// A 1-D tensor from a braced list: `tensor({1.f, 2.f})` is float32, `tensor({1, 2})` is int32 (C++'s int).
template <class T>
Tensor tensor(std::initializer_list<T> values) {
  return tensor(std::vector<T>(values));
}
/// A 2-D tensor from nested braced lists: `tensor({{1., 2.}, {3., 4.}})`.
template <class T>
Tensor tensor(std::initializer_list<std::initializer_list<T>> rows) {
  std::vector<T> flat;
  const int64_t cols = rows.size() ? static_cast<int64_t>(rows.begin()->size()) : 0;
  for (const auto& r : rows) {
    TORCHLET_CHECK(static_cast<int64_t>(r.size()) == cols, ShapeError, "[tensor] ragged rows: expected ", cols,
                   " values per row, got ", r.size());
    flat.insert(flat.end(), r.begin(), r.end());
  }
  return tensor(flat, {static_cast<int64_t>(rows.size()), cols});
}
/// A 0-dim tensor holding `value` (dtype from the scalar's kind unless given).
inline Tensor scalar_tensor(const Scalar& value, std::optional<DType> dtype = std::nullopt) {
  return full({}, value, dtype.value_or(value.default_dtype()));
}
}  // namespace torchlet
