#pragma once
/// \file What backward formulas share: sum_to (undoing broadcasting) and the gradients of views and copies,
/// which the tensor layer reports through detail::grad_flow_recorder().
#include "torchlet/autograd/node.hpp"
#include "torchlet/ops/reduction.hpp"

namespace torchlet {

/// Sums `g` down to `shape`, the inverse of broadcasting `shape` up to g's shape.
inline Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.sizes() == shape) return g;
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  Shape dims;
  for (int64_t i = 0; i < g.dim(); ++i)
    if (i < lead || (shape[i - lead] == 1 && g.size(i) != 1)) dims.push_back(i);
  Tensor r = dims.empty() ? g : sum(g, dims, true);
  return r.reshape(shape);
}

namespace detail {
// Builds the backward of a view or copy (see GradFlow) and connects `out` to `source`.
inline void record_grad_flow(const Tensor& source, Tensor& out, const char* name, GradFlow flow, ViewReplay replay) {
  const Shape sizes = source.sizes();
  const DType dtype = source.dtype();
  const Device device = source.device();
  autograd::record(name, {source}, {out},
                   [=](const autograd::TensorList& g, const std::vector<bool>&) -> autograd::TensorList {
                     switch (flow) {
                       case GradFlow::Reshape: return {g[0].reshape(sizes)};
                       case GradFlow::Expand: return {sum_to(g[0], sizes)};
                       case GradFlow::Cast: return {g[0].to(dtype).to(device)};
                       case GradFlow::Embed: {
                         Tensor z = empty(sizes, TensorOptions(g[0].dtype(), device)).zero_();
                         replay(z).copy_(g[0]);
                         return {z};
                       }
                     }
                     return {Tensor()};
                   });
}

/// Installs record_grad_flow once per program (before main), so views and copies of tensors that require
/// grad are recorded.
inline const bool grad_flow_installed = (grad_flow_recorder() = &record_grad_flow, true);
}  // namespace detail
}  // namespace torchlet
