#pragma once
/// \file Reductions with PyTorch's semantics: sum, mean, var, std_, max, min, argmax, argmin.
/// Dims may be negative; an empty dim list reduces over every dim (PyTorch 1.x's rule for sum/mean/var).
/// sum, mean, var, std_, max and min (values) are differentiable; argmax / argmin are not.
#include <cmath>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "torchlet/autograd/node.hpp"
#include "torchlet/backend/device_kernels.hpp"
#include "torchlet/backend/cpu/reduce.hpp"
#include "torchlet/tensor/factory.hpp"

namespace torchlet {
// declared here, defined in ops/arithmetic.hpp and ops/autograd_support.hpp (included at the end of this file,
// which they include in turn): the backward formulas below use them
Tensor mul(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& t, const Scalar& s);
Tensor sub(const Tensor& a, const Tensor& b, const Scalar& alpha);
Tensor div(const Tensor& a, const Tensor& b, std::string_view rounding_mode);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Scalar& b);
Tensor where(const Tensor& cond, const Scalar& a, const Tensor& b);
Tensor sum_to(const Tensor& g, const Shape& shape);

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

/// Records `out = op(x)` with backward `fn` when x requires grad (and grad mode is on); returns out.
inline Tensor record_reduction(const char* op, const Tensor& x, Tensor out, autograd::BackwardFn fn) {
  if (autograd::any_requires_grad({x})) autograd::record(op, {x}, {out}, std::move(fn));
  return out;
}

/// The sizes of a reduction's output with the reduced dims kept as 1 (to broadcast a gradient back).
inline Shape keepdim_sizes(const Shape& sizes, const std::vector<bool>& mask) { return reduced_sizes(sizes, mask, true); }

/// The gradient of a sum: `g` (the output's gradient) broadcast back over the reduced dims of `sizes`.
inline Tensor expand_reduced(const Tensor& g, const Shape& sizes, const std::vector<bool>& mask) {
  return g.reshape(keepdim_sizes(sizes, mask)).expand(sizes);
}

/// Number of elements each output of a reduction over `mask` combines.
inline int64_t reduced_count(const Shape& sizes, const std::vector<bool>& mask) {
  int64_t n = 1;
  for (size_t d = 0; d < sizes.size(); ++d)
    if (mask[d]) n *= sizes[d];
  return n;
}

/// Max / min values and indices over the masked dims, on x's device.
template <bool is_max>
void extreme_into(const Tensor& values, const Tensor& indices, const Tensor& x, const std::vector<bool>& mask,
                  const char* op) {
  if (x.is_cpu()) cpu::extreme_into<is_max>(values, indices, x, mask);
  else if (x.numel() > 0) device_kernels(x.device(), op).extreme(is_max, values, indices, x, mask);
}

/// max/min/argmax/argmin over one dim: values (if wanted) and int64 indices.
template <bool is_max>
std::pair<Tensor, Tensor> extreme_dim(const Tensor& x, int64_t dim, bool keepdim, bool want_values, const char* op) {
  dim = wrap_dim(dim, x.dim(), op);
  const int64_t n = x.dim() == 0 ? 1 : x.size(dim);
  TORCHLET_CHECK(n > 0, IndexError, "[", op, "] cannot reduce over an empty dimension: expected dim ", dim,
                 " to have non-zero size, input shape ", shape_str(x.sizes()));
  const auto mask = single_dim_mask(x.dim(), dim);
  const Shape out_sizes = reduced_sizes(x.sizes(), mask, keepdim);
  Tensor values = want_values ? empty(out_sizes, TensorOptions(x.dtype(), x.device())) : Tensor();
  Tensor indices = empty(out_sizes, TensorOptions(kInt64, x.device()));
  extreme_into<is_max>(values, indices, x, mask, op);
  return {values, indices};
}
}  // namespace detail

/// Sum over `dims` (all when empty); integer and bool inputs give int64, unless `dtype` says otherwise
/// (the input is then converted first, as PyTorch does). Differentiable.
inline Tensor sum(const Tensor& x, const Shape& dims, bool keepdim = false, std::optional<DType> dtype = {}) {
  std::vector<bool> mask;
  Tensor out;
  {
    autograd::NoGradGuard untracked;  // recorded below as a whole
    const Tensor in = dtype && *dtype != x.dtype() ? x.to(*dtype) : x;
    const DType natural = in.is_floating_point() ? in.dtype() : kInt64;
    mask = detail::reduction_mask(in, dims, "sum");
    out = empty(detail::reduced_sizes(in.sizes(), mask, keepdim), TensorOptions(natural, x.device()));
    if (x.is_cpu()) cpu::sum_into(out, in, mask);
    else if (out.numel() > 0) device_kernels(x.device(), "sum").sum(out, in, mask);
    if (dtype && *dtype != natural) out = out.to(*dtype);
  }
  return detail::record_reduction("sum", x, out, [sizes = x.sizes(), mask](const autograd::TensorList& g,
                                                                           const std::vector<bool>&) {
    return autograd::TensorList{detail::expand_reduced(g[0], sizes, mask)};
  });
}
/// Sum of all elements (0-dim; int64 for integer and bool inputs).
inline Tensor sum(const Tensor& x) { return sum(x, Shape{}); }

/// Mean over `dims` (all when empty); floating dtypes only (DTypeError otherwise, as PyTorch). Differentiable.
inline Tensor mean(const Tensor& x, const Shape& dims, bool keepdim = false) {
  TORCHLET_CHECK(x.is_floating_point(), DTypeError, "[mean] could not infer output dtype: expected a floating "
                 "point input, got ", x.dtype());
  const auto mask = detail::reduction_mask(x, dims, "mean");
  Tensor out = empty(detail::reduced_sizes(x.sizes(), mask, keepdim), TensorOptions(x.dtype(), x.device()));
  if (x.is_cpu()) cpu::mean_into(out, x, mask);
  else if (out.numel() > 0) device_kernels(x.device(), "mean").mean(out, x, mask);
  return detail::record_reduction("mean", x, out, [sizes = x.sizes(), mask](const autograd::TensorList& g,
                                                                            const std::vector<bool>&) {
    const double n = static_cast<double>(detail::reduced_count(sizes, mask));
    return autograd::TensorList{detail::expand_reduced(mul(g[0], 1.0 / n), sizes, mask)};
  });
}
/// Mean of all elements (0-dim).
inline Tensor mean(const Tensor& x) { return mean(x, Shape{}); }

namespace detail {
/// var (or std with `take_sqrt`) over `dims`, recorded: d var / dx = 2 (x - mean) / (N - correction), and
/// d std / dx = d var / dx / (2 std), taken as 0 where std is 0 (as PyTorch).
inline Tensor var_std(const Tensor& x, const Shape& dims, int64_t correction, bool keepdim, bool take_sqrt) {
  const char* op = take_sqrt ? "std" : "var";
  TORCHLET_CHECK(x.is_floating_point(), DTypeError, "[", op, "] std and var only support floating point dtypes, "
                 "got ", x.dtype());
  const auto mask = reduction_mask(x, dims, op);
  Tensor out = empty(reduced_sizes(x.sizes(), mask, keepdim), TensorOptions(x.dtype(), x.device()));
  if (x.is_cpu()) cpu::var_into(out, x, mask, correction, take_sqrt);
  else if (out.numel() > 0) device_kernels(x.device(), op).var(out, x, mask, correction, take_sqrt);
  if (!autograd::any_requires_grad({x})) return out;
  autograd::record(op, {x}, {out}, [sx = autograd::SavedTensor(x), so = autograd::SavedTensor(take_sqrt ? out : Tensor()),
                                    dims, mask, correction, take_sqrt](const autograd::TensorList& g,
                                                                       const std::vector<bool>&) {
    const Tensor xv = sx.get();
    const Shape& sizes = xv.sizes();
    const double n = static_cast<double>(reduced_count(sizes, mask)) - static_cast<double>(correction);
    Tensor gv = g[0];  // the gradient with respect to the variance
    if (take_sqrt) {
      const Tensor sd = so.get();
      gv = where(eq(sd, zeros({}, sd.dtype())), 0.0, div(g[0], mul(sd, 2.0), ""));
    }
    const Tensor centered = sub(xv, mean(xv, dims, true), 1);
    return autograd::TensorList{mul(mul(centered, gv.reshape(keepdim_sizes(sizes, mask))), 2.0 / n)};
  });
  return out;
}

/// The gradient of an all-reduce max / min: `g` split evenly among the elements equal to the result (the NaNs
/// when the result is NaN), as PyTorch's evenly_distribute_backward.
inline Tensor evenly_distribute(const Tensor& g, const Tensor& x, const Tensor& value) {
  const bool is_nan = std::isnan(value.item<double>());
  const Tensor hit = is_nan ? ne(x, x) : eq(x, value);
  const int64_t count = sum(hit).item<int64_t>();
  return where(hit, mul(g, 1.0 / static_cast<double>(count)), 0.0);
}

/// The gradient of max / min along `dim`: `g` at the returned indices, zero elsewhere.
inline Tensor index_select_backward(const Tensor& g, const Tensor& indices, const Shape& sizes, int64_t dim,
                                    bool keepdim) {
  if (sizes.empty()) return g.reshape({});
  const Tensor gk = keepdim ? g : g.unsqueeze(dim), ik = keepdim ? indices : indices.unsqueeze(dim);
  Shape pos_shape(sizes.size(), 1);
  pos_shape[dim] = sizes[dim];
  const Tensor positions = arange(sizes[dim]).view(pos_shape).to(g.device());
  return where(eq(positions, ik), gk, 0.0).expand(sizes);
}

/// max / min of all elements, recorded with evenly_distribute as backward.
template <bool is_max>
Tensor extreme_all(const Tensor& x, const char* op) {
  TORCHLET_CHECK(x.numel() > 0, IndexError, "[", op, "] cannot reduce over an empty dimension: the input of shape ",
                 shape_str(x.sizes()), " has no elements (specify a dim)");
  Tensor out = empty({}, TensorOptions(x.dtype(), x.device()));
  extreme_into<is_max>(out, Tensor(), x, std::vector<bool>(static_cast<size_t>(x.dim()), true), op);
  if (!autograd::any_requires_grad({x})) return out;
  autograd::record(op, {x}, {out}, [sx = autograd::SavedTensor(x), so = autograd::SavedTensor(out)](
                                       const autograd::TensorList& g, const std::vector<bool>&) {
    return autograd::TensorList{evenly_distribute(g[0], sx.get(), so.get())};
  });
  return out;
}

/// max / min along `dim` (values and indices), the values recorded with the gradient going to the indices.
template <bool is_max>
std::pair<Tensor, Tensor> extreme_values_dim(const Tensor& x, int64_t dim, bool keepdim, const char* op) {
  // named tensors, not a structured binding: nvcc's host pass (cudafe) turns bindings into tuple_element refs
  const std::pair<Tensor, Tensor> both = extreme_dim<is_max>(x, dim, keepdim, true, op);
  const Tensor values = both.first, indices = both.second;
  if (!autograd::any_requires_grad({x})) return {values, indices};
  const int64_t d = wrap_dim(dim, x.dim(), op);
  autograd::record(op, {x}, {values}, [si = autograd::SavedTensor(indices), sizes = x.sizes(), d, keepdim](
                                          const autograd::TensorList& g, const std::vector<bool>&) {
    return autograd::TensorList{index_select_backward(g[0], si.get(), sizes, d, keepdim)};
  });
  return {values, indices};
}
}  // namespace detail

/// Variance over `dims` (all when empty), dividing by N - correction (1: unbiased, 0: population). Differentiable.
inline Tensor var(const Tensor& x, const Shape& dims, int64_t correction = 1, bool keepdim = false) {
  return detail::var_std(x, dims, correction, keepdim, false);
}
/// Unbiased variance of all elements (0-dim).
inline Tensor var(const Tensor& x) { return var(x, Shape{}); }

/// Standard deviation over `dims` (all when empty), dividing by N - correction (torch.std; named std_ here).
/// Differentiable (zero gradient where the deviation is 0).
inline Tensor std_(const Tensor& x, const Shape& dims, int64_t correction = 1, bool keepdim = false) {
  return detail::var_std(x, dims, correction, keepdim, true);
}
/// Unbiased standard deviation of all elements (0-dim).
inline Tensor std_(const Tensor& x) { return std_(x, Shape{}); }

/// Largest element (0-dim); NaN if any element is NaN; raises on an empty tensor. The gradient is split evenly
/// among the elements equal to the maximum (PyTorch 1.13).
inline Tensor max(const Tensor& x) { return detail::extreme_all<true>(x, "max"); }
/// Smallest element (0-dim); NaN if any element is NaN; raises on an empty tensor. The gradient is split evenly
/// among the elements equal to the minimum.
inline Tensor min(const Tensor& x) { return detail::extreme_all<false>(x, "min"); }

/// Max along `dim`: (values, int64 indices of the first maximum; a NaN is the maximum). The values are
/// differentiable: the gradient goes to the returned index.
inline std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false) {
  return detail::extreme_values_dim<true>(x, dim, keepdim, "max");
}
/// Min along `dim`: (values, int64 indices of the first minimum; a NaN is the minimum). The values are
/// differentiable: the gradient goes to the returned index.
inline std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false) {
  return detail::extreme_values_dim<false>(x, dim, keepdim, "min");
}

/// Flat (row-major) index of the first maximum of all elements (0-dim int64).
inline Tensor argmax(const Tensor& x) {
  TORCHLET_CHECK(x.dtype() != kBool, DTypeError, "[argmax] not implemented for bool (as in PyTorch)");
  TORCHLET_CHECK(x.numel() > 0, IndexError, "[argmax] cannot reduce over an empty dimension: the input of shape ",
                 shape_str(x.sizes()), " has no elements (specify a dim)");
  Tensor out = empty({}, TensorOptions(kInt64, x.device()));
  detail::extreme_into<true>(Tensor(), out, x, std::vector<bool>(static_cast<size_t>(x.dim()), true), "argmax");
  return out;
}
/// Flat (row-major) index of the first minimum of all elements (0-dim int64).
inline Tensor argmin(const Tensor& x) {
  TORCHLET_CHECK(x.dtype() != kBool, DTypeError, "[argmin] not implemented for bool (as in PyTorch)");
  TORCHLET_CHECK(x.numel() > 0, IndexError, "[argmin] cannot reduce over an empty dimension: the input of shape ",
                 shape_str(x.sizes()), " has no elements (specify a dim)");
  Tensor out = empty({}, TensorOptions(kInt64, x.device()));
  detail::extreme_into<false>(Tensor(), out, x, std::vector<bool>(static_cast<size_t>(x.dim()), true), "argmin");
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

// the definitions of the ops the backward formulas above use (arithmetic.hpp includes this file first)
#include "torchlet/ops/arithmetic.hpp"
