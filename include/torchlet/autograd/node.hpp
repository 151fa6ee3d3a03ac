// tensor.hpp includes this header at its end, so the two include each other: tensor.hpp goes first,
// outside the guard, and the guard (not #pragma once) lets the inner inclusion define everything.
#include "torchlet/tensor/tensor.hpp"

#ifndef TORCHLET_AUTOGRAD_NODE_HPP
#define TORCHLET_AUTOGRAD_NODE_HPP
/// \file The autograd graph: nodes (one per recorded operation), edges to the inputs' nodes, leaves'
/// gradient accumulators, saved tensors with version checks, and the `record` call ops use.
#include <atomic>
#include <cctype>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "torchlet/autograd/grad_mode.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {
namespace autograd {
class Node;
/// A list of tensors: the gradients flowing into or out of a node.
using TensorList = std::vector<Tensor>;

/// Where one input's gradient goes: input slot `input_nr` of node `fn` (no node: the input needs no grad).
struct Edge {
  std::shared_ptr<Node> fn;
  uint32_t input_nr = 0;
  bool valid() const { return fn != nullptr; }  ///< True when the gradient is wanted.
};

/// Shape, dtype and device of a tensor a node produced or consumed (to build and check gradients).
struct TensorMeta {
  Shape sizes;
  DType dtype = kFloat32;
  Device device;
};

namespace detail {
inline uint64_t next_sequence_nr() {
  static std::atomic<uint64_t> counter{0};
  return counter++;
}
}  // namespace detail

/// One recorded operation. apply() maps the gradients of its outputs to the gradients of its inputs.
class Node {
 public:
  virtual ~Node() = default;
  /// PyTorch-style name, e.g. "MulBackward0".
  virtual std::string name() const = 0;
  /// grads[i] is the gradient of output i (always defined); returns one gradient per next edge
  /// (undefined where next_edges[i] is not valid).
  virtual TensorList apply(TensorList&& grads) = 0;
  /// Frees what the node saved for backward; a later apply() raises.
  virtual void release() {}

  std::vector<Edge> next_edges;       ///< one per input of the operation
  std::vector<TensorMeta> outputs;    ///< one per output of the operation
  uint64_t sequence_nr = detail::next_sequence_nr();  ///< creation order; later nodes run first
};
}  // namespace autograd

namespace detail {
/// The autograd slot of a tensor: its gradient (leaves), or the node that produced it.
struct AutogradMeta {
  Tensor grad;
  std::shared_ptr<autograd::Node> grad_fn;
  uint32_t output_nr = 0;
  std::weak_ptr<autograd::Node> grad_accumulator;
};

inline AutogradMeta& autograd_meta(const Tensor& t) {
  auto& slot = t.unsafe_impl().autograd;
  if (!slot) slot = std::make_shared<AutogradMeta>();
  return *slot;
}
}  // namespace detail

namespace autograd {

/// Adds incoming gradients into a leaf's grad(); the sink of every path to a parameter.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(Tensor leaf) : leaf_(std::move(leaf)) {
    outputs.push_back({leaf_.sizes(), leaf_.dtype(), leaf_.device()});
  }
  std::string name() const override { return "AccumulateGrad"; }
  TensorList apply(TensorList&& grads) override;
  const Tensor& variable() const { return leaf_; }  ///< The leaf it feeds.

 private:
  Tensor leaf_;
};

/// A tensor kept for backward, detached, with the version it had; get() raises if it was modified in place since.
class SavedTensor {
 public:
  SavedTensor() = default;
  /// Saves `t` (undefined is allowed).
  SavedTensor(const Tensor& t) : data_(t.defined() ? t.detach() : Tensor()), version_(t.defined() ? t.version() : 0) {}  // NOLINT
  /// The saved tensor, after checking that no in-place operation changed it.
  Tensor get() const {
    if (data_.defined())
      TORCHLET_CHECK(data_.version() == version_, ValueError,
                     "[autograd] one of the tensors needed for gradient computation has been modified by an "
                     "inplace operation: [", data_.dtype(), " ", shape_str(data_.sizes()), "] is at version ",
                     data_.version(), "; expected version ", version_, " instead");
    return data_;
  }

 private:
  Tensor data_;
  uint32_t version_ = 0;
};

/// Computes input gradients from output gradients; needs_input_grad[i] says whether input i wants one
/// (skip the work otherwise and return an undefined tensor there).
using BackwardFn = std::function<TensorList(const TensorList& grads, const std::vector<bool>& needs_input_grad)>;

/// A node whose backward is a closure (its captures are the saved state, freed by release()).
class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn, std::vector<TensorMeta> inputs)
      : name_(std::move(name)), fn_(std::move(fn)), inputs_(std::move(inputs)) {}
  std::string name() const override { return name_; }
  void release() override { fn_ = nullptr; }
  TensorList apply(TensorList&& grads) override {
    TORCHLET_CHECK(fn_ != nullptr, ValueError, "[autograd] trying to backward through the graph a second time (",
                   name_, "): the saved tensors were freed; pass retain_graph=true to the first backward");
    std::vector<bool> needs(next_edges.size());
    for (size_t i = 0; i < needs.size(); ++i) needs[i] = next_edges[i].valid();
    TensorList out = fn_(grads, needs);
    TORCHLET_CHECK(out.size() == next_edges.size(), Error, "[autograd] ", name_, " returned ", out.size(),
                   " gradients for ", next_edges.size(), " inputs");
    for (size_t i = 0; i < out.size(); ++i) {
      if (!needs[i] || !out[i].defined()) {
        out[i] = Tensor();
        continue;
      }
      TORCHLET_CHECK(out[i].sizes() == inputs_[i].sizes, Error, "[autograd] ", name_, " returned a gradient of shape ",
                     shape_str(out[i].sizes()), " for input ", i, " of shape ", shape_str(inputs_[i].sizes));
      if (out[i].dtype() != inputs_[i].dtype) out[i] = out[i].to(inputs_[i].dtype);
    }
    return out;
  }

 private:
  std::string name_;
  BackwardFn fn_;
  std::vector<TensorMeta> inputs_;
};

/// The edge a gradient for `t` should follow: its producer's node, its accumulator if it is a leaf that
/// requires grad, or none.
inline Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  auto& meta = torchlet::detail::autograd_meta(t);
  if (meta.grad_fn) return {meta.grad_fn, meta.output_nr};
  std::shared_ptr<Node> acc = meta.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t);
    meta.grad_accumulator = acc;
  }
  return {acc, 0};
}

/// True when grad mode is on and any of the (possibly undefined) tensors requires grad: only then do ops record.
inline bool any_requires_grad(std::initializer_list<std::reference_wrapper<const Tensor>> tensors) {
  if (!is_grad_enabled()) return false;
  for (const Tensor& t : tensors)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

/// "conv2d" -> "Conv2DBackward0"-style names: the op name with its first letter (and each after '_') upper-cased.
inline std::string backward_name(std::string_view op) {
  std::string out;
  bool up = true;
  for (char c : op) {
    if (c == '_') { up = true; continue; }
    out += up ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    up = false;
  }
  return out + "Backward0";
}

/// Records an operation: `outputs` (fresh tensors the op just made) become outputs of a new node whose
/// backward `fn` maps their gradients to gradients of `inputs` (undefined inputs get no edge).
inline void record(std::string_view op, const TensorList& inputs, const TensorList& outputs, BackwardFn fn) {
  std::vector<TensorMeta> in_meta;
  std::vector<Edge> edges;
  for (const Tensor& t : inputs) {
    edges.push_back(gradient_edge(t));
    in_meta.push_back(t.defined() ? TensorMeta{t.sizes(), t.dtype(), t.device()} : TensorMeta{});
  }
  auto node = std::make_shared<FunctionNode>(backward_name(op), std::move(fn), std::move(in_meta));
  node->next_edges = std::move(edges);
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& o = outputs[i];
    node->outputs.push_back({o.sizes(), o.dtype(), o.device()});
    o.unsafe_impl().requires_grad = true;
    auto& meta = torchlet::detail::autograd_meta(o);
    meta.grad_fn = node;
    meta.output_nr = static_cast<uint32_t>(i);
  }
}
}  // namespace autograd
}  // namespace torchlet

#endif  // TORCHLET_AUTOGRAD_NODE_HPP
