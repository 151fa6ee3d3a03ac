#pragma once
/// \file cat and stack with PyTorch's rules: dtype promotion across the inputs, sizes equal except in the cat dim,
/// and the legacy rule that 1-D empty tensors (shape [0]) are skipped by cat.
#include <vector>

#include "torchlet/backend/cpu/join.hpp"
#include "torchlet/tensor/factory.hpp"

namespace torchlet {

/// Concatenates tensors along `dim` (negative counts from the end); the result dtype promotes over all inputs.
inline Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0) {
  TORCHLET_CHECK(!tensors.empty(), ValueError, "[cat] expected a non-empty list of tensors");
  DType dtype = tensors[0].dtype();
  std::vector<bool> skip(tensors.size());
  int64_t ref = -1;  // the first tensor that is not skipped
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    TORCHLET_CHECK(t.defined(), ValueError, "[cat] tensor ", i, " is undefined");
    detail::check_cpu(t, "cat");
    TORCHLET_CHECK(t.dim() > 0, ShapeError, "[cat] zero-dimensional tensor (at position ", i,
                   ") cannot be concatenated");
    dtype = promote_types(dtype, t.dtype());
    skip[i] = t.dim() == 1 && t.size(0) == 0;
    if (!skip[i] && ref < 0) ref = static_cast<int64_t>(i);
  }
  if (ref < 0) return empty({0}, dtype);  // every input is a legacy empty tensor
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
  Tensor out = empty(out_sizes, dtype);
  cpu::cat_into(out, tensors, dim, skip);
  return out;
}

/// Joins tensors of equal shape along a new dim `dim` (in [-(d+1), d] for d-dim inputs).
inline Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0) {
  TORCHLET_CHECK(!tensors.empty(), ValueError, "[stack] expected a non-empty list of tensors");
  for (size_t i = 0; i < tensors.size(); ++i) {
    TORCHLET_CHECK(tensors[i].defined(), ValueError, "[stack] tensor ", i, " is undefined");
    TORCHLET_CHECK(tensors[i].sizes() == tensors[0].sizes(), ShapeError, "[stack] expects each tensor to be equal "
                   "size, but got ", shape_str(tensors[0].sizes()), " at entry 0 and ", shape_str(tensors[i].sizes()),
                   " at entry ", i);
  }
  dim = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  parts.reserve(tensors.size());
  for (const Tensor& t : tensors) parts.push_back(t.unsqueeze(dim));
  return cat(parts, dim);
}
}  // namespace torchlet
