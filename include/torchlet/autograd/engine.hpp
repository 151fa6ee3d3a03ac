// tensor.hpp includes this header at its end, so the two include each other: tensor.hpp goes first,
// outside the guard, and the guard (not #pragma once) lets the inner inclusion define everything.
#include "torchlet/tensor/tensor.hpp"

#ifndef TORCHLET_AUTOGRAD_ENGINE_HPP
#define TORCHLET_AUTOGRAD_ENGINE_HPP
/// \file The backward engine and Tensor's autograd members (requires_grad_, grad, backward, ...).
/// Included at the end of tensor.hpp, so every tensor has them.
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "torchlet/autograd/node.hpp"
#include "torchlet/core/autocast.hpp"
#include "torchlet/backend/cpu/elementwise.hpp"
#include "torchlet/tensor/dispatch.hpp"

namespace torchlet {
namespace autograd {
namespace detail {
// a + b for two gradients of the same shape and dtype (a new tensor; neither input is modified).
inline Tensor add_gradients(const Tensor& a, const Tensor& b) {
  TORCHLET_CHECK(a.sizes() == b.sizes(), Error, "[autograd] gradients of shapes ", shape_str(a.sizes()), " and ",
                 shape_str(b.sizes()), " flow into the same tensor");
  const Tensor bb = b.to(a.dtype());
  Tensor out = empty(a.sizes(), TensorOptions(a.dtype(), a.device()));
  if (!a.is_cpu()) {
    const Device dev = torchlet::detail::op_device("autograd", a, bb);
    if (out.numel() > 0) device_kernels(dev, "autograd").binary(BinaryOp::Add, out, a, bb, 1);
    return out;
  }
  torchlet::detail::dispatch_floating(a.dtype(), "autograd", [&]<class T>() {
    using M = torchlet::detail::opmath_t<T>;
    cpu::map_elements<T, T, T>(out, [](T x, T y) { return T(M(x) + M(y)); }, a, bb);
  });
  return out;
}
}  // namespace detail

inline TensorList AccumulateGrad::apply(TensorList&& grads) {
  NoGradGuard no_grad;
  auto& meta = torchlet::detail::autograd_meta(leaf_);
  Tensor g = grads.at(0).to(leaf_.dtype());
  meta.grad = meta.grad.defined() ? detail::add_gradients(meta.grad, g) : g.clone();
  return {};
}

/// Runs backward from `roots` with the given output gradients (one per root, same shape), accumulating
/// into the leaves' grad(). Nodes run in reverse creation order once all their gradients have arrived.
inline void backward(const TensorList& roots, const TensorList& root_grads, bool retain_graph = false) {
  // the backward ops run in the dtypes the forward chose, even inside an Autocast scope (as in PyTorch)
  torchlet::detail::AutocastPause no_autocast;
  TORCHLET_CHECK(roots.size() == root_grads.size(), ValueError, "[backward] got ", roots.size(), " tensors and ",
                 root_grads.size(), " gradients");
  std::vector<std::pair<Edge, Tensor>> seeds;
  for (size_t i = 0; i < roots.size(); ++i) {
    TORCHLET_CHECK(roots[i].requires_grad(), ValueError, "[backward] element ", i,
                   " of tensors does not require grad and does not have a grad_fn");
    TORCHLET_CHECK(root_grads[i].sizes() == roots[i].sizes(), ShapeError, "[backward] gradient of shape ",
                   shape_str(root_grads[i].sizes()), " for a tensor of shape ", shape_str(roots[i].sizes()));
    seeds.emplace_back(gradient_edge(roots[i]), root_grads[i].detach());
  }
  // count how many gradients each node waits for
  std::unordered_map<Node*, int> pending;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (auto& [edge, g] : seeds)
    if (seen.insert(edge.fn.get()).second) stack.push_back(edge.fn.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.valid()) continue;
      ++pending[e.fn.get()];
      if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
    }
  }
  std::unordered_map<Node*, TensorList> buffers;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep;  // owners while queued
  auto deliver = [&](const Edge& e, const Tensor& g) {
    TensorList& buf = buffers[e.fn.get()];
    buf.resize(e.fn->outputs.size());
    Tensor& slot = buf.at(e.input_nr);
    if (g.defined()) slot = slot.defined() ? detail::add_gradients(slot, g) : g;
    keep[e.fn.get()] = e.fn;
  };
  auto later_first = [](Node* a, Node* b) { return a->sequence_nr < b->sequence_nr; };
  std::priority_queue<Node*, std::vector<Node*>, decltype(later_first)> ready(later_first);
  std::unordered_set<Node*> queued;
  for (auto& [edge, g] : seeds) {
    deliver(edge, g);
    if (pending[edge.fn.get()] == 0 && queued.insert(edge.fn.get()).second) ready.push(edge.fn.get());
  }
  NoGradGuard no_grad;
  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    TensorList grads = std::move(buffers[n]);
    buffers.erase(n);
    grads.resize(n->outputs.size());
    bool any = false;
    for (size_t i = 0; i < grads.size(); ++i) {
      if (grads[i].defined()) any = true;
      else grads[i] = empty(n->outputs[i].sizes, TensorOptions(n->outputs[i].dtype, n->outputs[i].device)).zero_();
    }
    TensorList out;
    if (any) out = n->apply(std::move(grads));
    if (!retain_graph) n->release();
    for (size_t i = 0; i < n->next_edges.size(); ++i) {
      const Edge& e = n->next_edges[i];
      if (!e.valid()) continue;
      deliver(e, i < out.size() ? out[i] : Tensor());
      if (--pending[e.fn.get()] == 0 && queued.insert(e.fn.get()).second) ready.push(e.fn.get());
    }
    keep.erase(n);
  }
}
}  // namespace autograd

inline Tensor& Tensor::requires_grad_(bool on) {
  TORCHLET_CHECK(is_leaf(), ValueError, "[requires_grad_] you can only change requires_grad flags of leaf tensors; "
                 "use detach() to get a leaf from a ", grad_fn()->name(), " output");
  TORCHLET_CHECK(!on || is_floating_point(), DTypeError,
                 "[requires_grad_] only tensors of floating point dtype can require gradients, got ", dtype());
  impl().requires_grad = on;
  return *this;
}

inline bool Tensor::is_leaf() const {
  const auto& slot = impl().autograd;
  return !slot || !slot->grad_fn;
}

inline Tensor Tensor::grad() const {
  const auto& slot = impl().autograd;
  return slot ? slot->grad : Tensor();
}

inline void Tensor::set_grad(const Tensor& g) {
  TORCHLET_CHECK(!g.defined() || g.sizes() == sizes(), ShapeError, "[set_grad] assigned grad has shape ",
                 shape_str(g.defined() ? g.sizes() : Shape{}), ", the tensor has shape ", shape_str(sizes()));
  detail::autograd_meta(*this).grad = g;
}

inline std::shared_ptr<autograd::Node> Tensor::grad_fn() const {
  const auto& slot = impl().autograd;
  return slot ? slot->grad_fn : nullptr;
}

inline void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  Tensor g = gradient;
  if (!g.defined()) {
    TORCHLET_CHECK(numel() == 1, ValueError, "[backward] grad can be implicitly created only for scalar outputs; "
                   "this tensor has shape ", shape_str(sizes()));
    g = empty(sizes(), TensorOptions(dtype(), device())).fill_(1);
  }
  autograd::backward({*this}, {g}, retain_graph);
}
}  // namespace torchlet

#endif  // TORCHLET_AUTOGRAD_ENGINE_HPP
