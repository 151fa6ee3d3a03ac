#pragma once
/// \file Reductions with PyTorch's semantics: sum, mean, var, std_, max, min, argmax, argmin.
/// Dims may be negative; an empty dim list reduces over every dim (PyTorch 1.x's rule for sum/mean/var).
#include <optional>
#include <utility>
#include <vector>

#include "torchlet/backend/cpu/reduce.hpp"
#include "torchlet/tensor/factory.hpp"

namespace torchlet {
namespace detail {
/// Which dims of `x` are reduced (all when `dims` is empty); raises on out-of-range or repeated dims.
inline std::vector<bool> reduction_mask(const Tensor& x, const Shape& dims, const char* op) {
  const int64_t nd = x.dim();
  std::vector<bool> mask(static_cast<size_t>(nd), dims.empty());
  for (int64_t d : dims) {
    const int64_t w = wrap_dim(d, nd, op);
    if (nd == 0) continue;
    TORCHLET_CHECK(!mask[w], ValueError, "[", op, "] dim ", w, " appears multiple times in the list of dims ",
                   shape_str(dims));
    mask[w] = true;
  }
  return mask;
}

/// Output sizes of a reduction: reduced dims removed, or kept as 1 with `keepdim`.
inline Shape reduced_sizes(const Shape& sizes, const std::vector<bool>& mask, bool keepdim) {
  Shape out;
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (!mask[d]) out.push_back(sizes[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

/// Mask reducing the single dim `dim` (already wrapped).
inline std::vector<bool> single_dim_mask(int64_t ndim, int64_t dim) {
  std::vector<bool> mask(static_cast<size_t>(ndim), false);
  if (ndim > 0) mask[dim] = true;
  return mask;
}

/// max/min/argmax/argmin over one dim: values (if wanted) and int64 indices.
template <bool is_max>
std::pair<Tensor, Tensor> extreme_dim(const Tensor& x, int64_t dim, bool keepdim, bool want_values, const char* op) {
  check_cpu(x, op);
  dim = wrap_dim(dim, x.dim(), op);
  const int64_t n = x.dim() == 0 ? 1 : x.size(dim);
  TORCHLET_CHECK(n > 0, IndexError, "[", op, "] cannot reduce over an empty dimension: expected dim ", dim,
                 " to have non-zero size, input shape ", shape_str(x.sizes()));
  const auto mask = single_dim_mask(x.dim(), dim);
  const Shape out_sizes = reduced_sizes(x.sizes(), mask, keepdim);
  Tensor values = want_values ? empty(out_sizes, x.dtype()) : Tensor();
  Tensor indices = empty(out_sizes, kInt64);
  cpu::extreme_into<is_max>(values, indices, x, mask);
  return {values, indices};
}
}  // namespace detail

/// Sum over `dims` (all when empty); integer and bool inputs give int64, unless `dtype` says otherwise
/// (the input is then converted first, as PyTorch does).
inline Tensor sum(const Tensor& x, const Shape& dims, bool keepdim = false, std::optional<DType> dtype = {}) {
  detail::check_cpu(x, "sum");
  const Tensor in = dtype && *dtype != x.dtype() ? x.to(*dtype) : x;
  const DType natural = in.is_floating_point() ? in.dtype() : kInt64;
  const auto mask = detail::reduction_mask(in, dims, "sum");
  Tensor out = empty(detail::reduced_sizes(in.sizes(), mask, keepdim), natural);
  cpu::sum_into(out, in, mask);
  return dtype && *dtype != natural ? out.to(*dtype) : out;
}
/// Sum of all elements (0-dim; int64 for integer and bool inputs).
inline Tensor sum(const Tensor& x) { return sum(x, Shape{}); }

/// Mean over `dims` (all when empty); floating dtypes only (DTypeError otherwise, as PyTorch).
inline Tensor mean(const Tensor& x, const Shape& dims, bool keepdim = false) {
  detail::check_cpu(x, "mean");
  TORCHLET_CHECK(x.is_floating_point(), DTypeError, "[mean] could not infer output dtype: expected a floating "
                 "point input, got ", x.dtype());
  const auto mask = detail::reduction_mask(x, dims, "mean");
  Tensor out = empty(detail::reduced_sizes(x.sizes(), mask, keepdim), x.dtype());
  cpu::mean_into(out, x, mask);
  return out;
}
/// Mean of all elements (0-dim).
inline Tensor mean(const Tensor& x) { return mean(x, Shape{}); }

/// Variance over `dims` (all when empty), dividing by N - correction (1: unbiased, 0: population).
inline Tensor var(const Tensor& x, const Shape& dims, int64_t correction = 1, bool keepdim = false) {
  detail::check_cpu(x, "var");
  TORCHLET_CHECK(x.is_floating_point(), DTypeError, "[var] std and var only support floating point dtypes, got ",
                 x.dtype());
  const auto mask = detail::reduction_mask(x, dims, "var");
  Tensor out = empty(detail::reduced_sizes(x.sizes(), mask, keepdim), x.dtype());
  cpu::var_into(out, x, mask, correction, false);
  return out;
}
/// Unbiased variance of all elements (0-dim).
inline Tensor var(const Tensor& x) { return var(x, Shape{}); }

/// Standard deviation over `dims` (all when empty), dividing by N - correction (torch.std; named std_ here).
inline Tensor std_(const Tensor& x, const Shape& dims, int64_t correction = 1, bool keepdim = false) {
  detail::check_cpu(x, "std");
  TORCHLET_CHECK(x.is_floating_point(), DTypeError, "[std] std and var only support floating point dtypes, got ",
                 x.dtype());
  const auto mask = detail::reduction_mask(x, dims, "std");
  Tensor out = empty(detail::reduced_sizes(x.sizes(), mask, keepdim), x.dtype());
  cpu::var_into(out, x, mask, correction, true);
  return out;
}
/// Unbiased standard deviation of all elements (0-dim).
inline Tensor std_(const Tensor& x) { return std_(x, Shape{}); }

/// Largest element (0-dim); NaN if any element is NaN; raises on an empty tensor.
inline Tensor max(const Tensor& x) {
  detail::check_cpu(x, "max");
  TORCHLET_CHECK(x.numel() > 0, IndexError, "[max] cannot reduce over an empty dimension: the input of shape ",
                 shape_str(x.sizes()), " has no elements (specify a dim)");
  Tensor out = empty({}, x.dtype());
  cpu::extreme_into<true>(out, Tensor(), x, std::vector<bool>(static_cast<size_t>(x.dim()), true));
  return out;
}
/// Smallest element (0-dim); NaN if any element is NaN; raises on an empty tensor.
inline Tensor min(const Tensor& x) {
  detail::check_cpu(x, "min");
  TORCHLET_CHECK(x.numel() > 0, IndexError, "[min] cannot reduce over an empty dimension: the input of shape ",
                 shape_str(x.sizes()), " has no elements (specify a dim)");
  Tensor out = empty({}, x.dtype());
  cpu::extreme_into<false>(out, Tensor(), x, std::vector<bool>(static_cast<size_t>(x.dim()), true));
  return out;
}

/// Max along `dim`: (values, int64 indices of the first maximum; a NaN is the maximum).
inline std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false) {
  return detail::extreme_dim<true>(x, dim, keepdim, true, "max");
}
/// Min along `dim`: (values, int64 indices of the first minimum; a NaN is the minimum).
inline std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false) {
  return detail::extreme_dim<false>(x, dim, keepdim, true, "min");
}

/// Flat (row-major) index of the first maximum of all elements (0-dim int64).
inline Tensor argmax(const Tensor& x) {
  detail::check_cpu(x, "argmax");
  TORCHLET_CHECK(x.dtype() != kBool, DTypeError, "[argmax] not implemented for bool (as in PyTorch)");
  TORCHLET_CHECK(x.numel() > 0, IndexError, "[argmax] cannot reduce over an empty dimension: the input of shape ",
                 shape_str(x.sizes()), " has no elements (specify a dim)");
  Tensor out = empty({}, kInt64);
  cpu::extreme_into<true>(Tensor(), out, x, std::vector<bool>(static_cast<size_t>(x.dim()), true));
  return out;
}
/// Flat (row-major) index of the first minimum of all elements (0-dim int64).
inline Tensor argmin(const Tensor& x) {
  detail::check_cpu(x, "argmin");
  TORCHLET_CHECK(x.dtype() != kBool, DTypeError, "[argmin] not implemented for bool (as in PyTorch)");
  TORCHLET_CHECK(x.numel() > 0, IndexError, "[argmin] cannot reduce over an empty dimension: the input of shape ",
                 shape_str(x.sizes()), " has no elements (specify a dim)");
  Tensor out = empty({}, kInt64);
  cpu::extreme_into<false>(Tensor(), out, x, std::vector<bool>(static_cast<size_t>(x.dim()), true));
  return out;
}
/// Index of the first maximum along `dim` (int64).
inline Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false) {
  TORCHLET_CHECK(x.dtype() != kBool, DTypeError, "[argmax] not implemented for bool (as in PyTorch)");
  return detail::extreme_dim<true>(x, dim, keepdim, false, "argmax").second;
}
/// Index of the first minimum along `dim` (int64).
inline Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false) {
  TORCHLET_CHECK(x.dtype() != kBool, DTypeError, "[argmin] not implemented for bool (as in PyTorch)");
  return detail::extreme_dim<false>(x, dim, keepdim, false, "argmin").second;
}
}  // namespace torchlet
