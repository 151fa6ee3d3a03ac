#pragma once
/// \file cat and stack with PyTorch's rules: dtype promotion across the inputs, sizes equal except in the cat dim,
/// and the legacy rule that 1-D empty tensors (shape [0]) are skipped by cat. Both are differentiable: the
/// gradient is split back into one piece per input (skipped inputs get none). All inputs share one device; on a
/// non-CPU device cat is one routed copy_ per input into its slice of the output.
#include <vector>

#include "torchlet/backend/cpu/join.hpp"
#include "torchlet/ops/arithmetic.hpp"
#include "torchlet/tensor/factory.hpp"

namespace torchlet {
namespace detail {
/// cat without autograd; `skip` says which inputs were skipped (legacy [0]-shaped) and `dim` is wrapped.
inline Tensor cat_forward(const std::vector<Tensor>& tensors, int64_t& dim, std::vector<bool>& skip) {
  TORCHLET_CHECK(!tensors.empty(), ValueError, "[cat] expected a non-empty list of tensors");
  DType dtype = tensors[0].dtype();
  skip.assign(tensors.size(), false);
  int64_t ref = -1;  // the first tensor that is not skipped
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    TORCHLET_CHECK(t.defined(), ValueError, "[cat] tensor ", i, " is undefined");
    TORCHLET_CHECK(t.device() == tensors[0].device(), DeviceError, "[cat] expected all tensors to be on the same "
                   "device, but found at least two devices, ", tensors[0].device(), " and ", t.device(), " (tensor ", i,
                   ")");
    TORCHLET_CHECK(t.dim() > 0, ShapeError, "[cat] zero-dimensional tensor (at position ", i,
                   ") cannot be concatenated");
    dtype = promote_types(dtype, t.dtype());
    skip[i] = t.dim() == 1 && t.size(0) == 0;
    if (!skip[i] && ref < 0) ref = static_cast<int64_t>(i);
  }
  if (ref < 0) return empty({0}, TensorOptions(dtype, tensors[0].device()));  // every input is a legacy empty one
  const Tensor& first = tensors[ref];
  dim = wrap_dim(dim, first.dim(), "cat");
  Shape out_sizes = first.sizes();
  out_sizes[dim] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (skip[i]) continue;
    const Tensor& t = tensors[i];
    TORCHLET_CHECK(t.dim() == first.dim(), ShapeError, "[cat] tensors must have the same number of dimensions: "
                   "tensor ", ref, " has shape ", shape_str(first.sizes()), ", tensor ", i, " has shape ",
                   shape_str(t.sizes()));
    for (int64_t d = 0; d < t.dim(); ++d)
      TORCHLET_CHECK(d == dim || t.size(d) == first.size(d), ShapeError, "[cat] sizes of tensors must match except in "
                     "dimension ", dim, ": expected size ", first.size(d), " in dimension ", d, ", got ", t.size(d),
                     " for tensor ", i, " (shape ", shape_str(t.sizes()), ", tensor ", ref, " has shape ",
                     shape_str(first.sizes()), ")");
    out_sizes[dim] += t.size(dim);
  }
  const Device device = tensors[0].device();
  Tensor out = empty(out_sizes, TensorOptions(dtype, device));
  if (device.is_cpu()) {
    cpu::cat_into(out, tensors, dim, skip);
    return out;
  }
  int64_t at = 0;  // on a device: one routed copy per input into its slice
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (skip[i]) continue;
    const int64_t length = tensors[i].size(dim);
    if (length > 0) out.narrow(dim, at, length).copy_(tensors[i]);
    at += length;
  }
  return out;
}
}  // namespace detail

/// Concatenates tensors along `dim` (negative counts from the end); the result dtype promotes over all inputs.
/// Differentiable: each input gets its slice of the gradient.
inline Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0) {
  std::vector<bool> skip;
  Tensor out;
  {
    autograd::NoGradGuard untracked;
    out = detail::cat_forward(tensors, dim, skip);
  }
  std::vector<int64_t> lengths;
  for (size_t i = 0; i < tensors.size(); ++i) lengths.push_back(skip[i] ? 0 : tensors[i].size(dim));
  return detail::recorded("cat", tensors, out, [skip, lengths, dim](const detail::TensorList& g,
                                                                    const detail::Needs& need) {
    detail::TensorList grads(skip.size());
    int64_t at = 0;
    for (size_t i = 0; i < skip.size(); ++i) {
      if (skip[i]) continue;
      if (need[i]) grads[i] = g[0].narrow(dim, at, lengths[i]);
      at += lengths[i];
    }
    return grads;
  });
}

/// Joins tensors of equal shape along a new dim `dim` (in [-(d+1), d] for d-dim inputs). Differentiable.
inline Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0) {
  TORCHLET_CHECK(!tensors.empty(), ValueError, "[stack] expected a non-empty list of tensors");
  for (size_t i = 0; i < tensors.size(); ++i) {
    TORCHLET_CHECK(tensors[i].defined(), ValueError, "[stack] tensor ", i, " is undefined");
    TORCHLET_CHECK(tensors[i].sizes() == tensors[0].sizes(), ShapeError, "[stack] expects each tensor to be equal "
                   "size, but got ", shape_str(tensors[0].sizes()), " at entry 0 and ", shape_str(tensors[i].sizes()),
                   " at entry ", i);
  }
  dim = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  Tensor out;
  {
    autograd::NoGradGuard untracked;
    std::vector<Tensor> parts;
    parts.reserve(tensors.size());
    for (const Tensor& t : tensors) parts.push_back(t.unsqueeze(dim));
    out = cat(parts, dim);
  }
  return detail::recorded("stack", tensors, out, [dim](const detail::TensorList& g, const detail::Needs& need) {
    detail::TensorList grads(need.size());
    for (size_t i = 0; i < need.size(); ++i)
      if (need[i]) grads[i] = g[0].select(dim, static_cast<int64_t>(i));
    return grads;
  });
}
}  // namespace torchlet
