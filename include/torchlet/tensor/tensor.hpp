#pragma once
/// \file Tensor: a view (offset, sizes, strides in elements) of a Storage, with a dtype and a device.
/// Copies of a Tensor are handles to the same tensor; view operations make new tensors sharing the storage.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "torchlet/autograd/grad_mode.hpp"
#include "torchlet/core/device.hpp"
#include "torchlet/core/dtype.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/core/shape.hpp"
#include "torchlet/tensor/scalar.hpp"
#include "torchlet/tensor/storage.hpp"

namespace torchlet {

class Tensor;
namespace autograd {
class Node;
}

/// How a 4-D [N, C, H, W] tensor lays out its elements, like torch.memory_format: C order (NCHW), or channels
/// last (NHWC order in memory, sizes still [N, C, H, W]: strides H*W*C, 1, W*C, C).
enum class MemoryFormat : uint8_t {
  Contiguous,    ///< C order (torch.contiguous_format)
  ChannelsLast,  ///< NHWC in memory (torch.channels_last); 4-D tensors only
};

/// Strides of a [N, C, H, W] tensor in channels-last order.
inline Shape channels_last_strides(const Shape& sizes) {
  TORCHLET_CHECK(sizes.size() == 4, ShapeError, "[channels_last] expected a 4-D [N, C, H, W] shape, got ",
                 shape_str(sizes));
  const int64_t C = sizes[1], H = sizes[2], W = sizes[3];
  return {H * W * C, 1, W * C, C};
}

namespace detail {
struct AutogradMeta;  // defined in autograd/meta.hpp; the slot stays empty until a tensor takes part in autograd

/// Everything a tensor is; shared by all handles to the same tensor.
struct TensorImpl {
  Storage storage;
  int64_t offset = 0;  ///< in elements
  Shape sizes;
  Shape strides;  ///< in elements
  DType dtype = kFloat32;
  bool requires_grad = false;  ///< a leaf marked by requires_grad_(), or the output of a recorded op
  std::shared_ptr<AutogradMeta> autograd;
};

/// How the gradient of a view or a copy flows back to its source:
/// Reshape: grad.reshape(source sizes); Embed: zeros of the source with the same view of it set to grad;
/// Expand: grad summed back to the source sizes; Cast: grad converted to the source dtype.
enum class GradFlow { Reshape, Embed, Expand, Cast };
/// Applies the same view to another tensor of the source's shape (used by GradFlow::Embed).
using ViewReplay = std::function<Tensor(const Tensor&)>;
/// Connects `out` to `source` in the autograd graph; installed by the autograd layer (autograd/views.hpp).
using GradFlowRecorder = void (*)(const Tensor& source, Tensor& out, const char* name, GradFlow flow,
                                  ViewReplay replay);
inline GradFlowRecorder& grad_flow_recorder() {
  static GradFlowRecorder recorder = nullptr;
  return recorder;
}

/// Strides for viewing (sizes, strides) as `shape` without copying, or nullopt when impossible.
inline std::optional<Shape> view_strides(const Shape& sizes, const Shape& strides, const Shape& shape) {
  if (sizes.empty() || numel_of(sizes) == 0) return contiguous_strides(shape);
  Shape out(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_stride = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    tensor_numel *= sizes[d];
    // a chunk of dims that are laid out contiguously ends here
    if (d == 0 || (sizes[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}
}  // namespace detail

/// An n-dimensional array with PyTorch's semantics: runtime dtype and device, views sharing storage.
class Tensor {
 public:
  /// An undefined tensor (defined() is false).
  Tensor() = default;

  /// A tensor over `storage` at `offset` elements with the given sizes and strides (bounds checked).
  Tensor(Storage storage, DType dtype, Shape sizes, Shape strides, int64_t offset = 0) {
    TORCHLET_CHECK(sizes.size() == strides.size(), ShapeError, "[Tensor] sizes ", shape_str(sizes), " and strides ",
                   shape_str(strides), " differ in length");
    int64_t lo = offset, hi = offset;  // element range touched
    bool empty = false;
    for (size_t i = 0; i < sizes.size(); ++i) {
      TORCHLET_CHECK(sizes[i] >= 0, ValueError, "[Tensor] negative size in ", shape_str(sizes));
      if (sizes[i] == 0) empty = true;
      (strides[i] >= 0 ? hi : lo) += (sizes[i] - 1) * strides[i];
    }
    TORCHLET_CHECK(offset >= 0, ValueError, "[Tensor] negative storage offset ", offset);
    if (!empty) {
      const int64_t need = (hi + 1) * torchlet::element_size(dtype);
      TORCHLET_CHECK(lo >= 0 && need <= static_cast<int64_t>(storage.nbytes()), IndexError,
                     "[Tensor] sizes ", shape_str(sizes), " strides ", shape_str(strides), " offset ", offset,
                     " of ", dtype, " need ", need, " bytes, storage has ", storage.nbytes());
    }
    impl_ = std::make_shared<detail::TensorImpl>();
    impl_->storage = std::move(storage);
    impl_->offset = offset;
    impl_->sizes = std::move(sizes);
    impl_->strides = std::move(strides);
    impl_->dtype = dtype;
  }

  // ---- properties -------------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }                      ///< False for Tensor().
  const Shape& sizes() const { return impl().sizes; }                    ///< Size of each dimension.
  const Shape& shape() const { return impl().sizes; }                    ///< Same as sizes().
  const Shape& strides() const { return impl().strides; }                ///< Strides in elements.
  int64_t dim() const { return static_cast<int64_t>(impl().sizes.size()); }  ///< Number of dimensions.
  int64_t numel() const { return numel_of(impl().sizes); }               ///< Number of elements.
  DType dtype() const { return impl().dtype; }                           ///< Element type.
  Device device() const { return impl().storage.device(); }              ///< Where the data lives.
  bool is_cpu() const { return device().is_cpu(); }                      ///< True on the CPU.
  bool is_cuda() const { return device().is_cuda(); }                    ///< True on a CUDA device.
  int64_t storage_offset() const { return impl().offset; }               ///< Offset in elements.
  const Storage& storage() const { return impl().storage; }              ///< The shared bytes.
  int64_t element_size() const { return torchlet::element_size(dtype()); }  ///< Bytes per element.
  int64_t nbytes() const { return numel() * element_size(); }            ///< numel() * element_size().
  bool is_floating_point() const { return torchlet::is_floating_point(dtype()); }  ///< Floating dtype?
  /// Size of dimension `d` (negative counts from the end).
  int64_t size(int64_t d) const { return sizes()[wrap_dim(d, dim(), "size")]; }
  /// Stride of dimension `d` (negative counts from the end).
  int64_t stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }

  /// True when the elements are laid out in C order without gaps (size-1 dims may have any stride).
  bool is_contiguous() const {
    int64_t expected = 1;
    for (int64_t i = dim() - 1; i >= 0; --i) {
      if (sizes()[i] == 1) continue;
      if (sizes()[i] == 0) return true;
      if (strides()[i] != expected) return false;
      expected *= sizes()[i];
    }
    return true;
  }

  /// True when laid out without gaps in `format`'s order (size-1 dims may have any stride); ChannelsLast needs 4 dims.
  bool is_contiguous(MemoryFormat format) const {
    if (format == MemoryFormat::Contiguous) return is_contiguous();
    if (dim() != 4) return false;
    int64_t expected = 1;
    for (int64_t d : {1, 3, 2, 0}) {  // innermost first: C, W, H, N
      if (sizes()[d] == 1) continue;
      if (sizes()[d] == 0) return true;
      if (strides()[d] != expected) return false;
      expected *= sizes()[d];
    }
    return true;
  }
  /// ChannelsLast for a 4-D tensor laid out channels-last but not in C order, Contiguous otherwise (what an op's
  /// result should follow, like PyTorch's suggest_memory_format).
  MemoryFormat suggest_memory_format() const {
    return dim() == 4 && !is_contiguous() && is_contiguous(MemoryFormat::ChannelsLast) ? MemoryFormat::ChannelsLast
                                                                                       : MemoryFormat::Contiguous;
  }

  /// Address of the first element (after the storage offset).
  void* data_ptr() const {
    return static_cast<char*>(storage().data()) + storage_offset() * element_size();
  }
  /// Typed address of the first element; raises DTypeError if T is not this tensor's element type.
  template <class T>
  T* data() const {
    TORCHLET_CHECK(dtype_of<T>() == dtype(), DTypeError, "[data] expected dtype ", dtype_of<T>(), ", tensor is ",
                   dtype());
    return static_cast<T*>(data_ptr());
  }

  /// True when both handles refer to the same tensor (not merely equal values).
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
  /// Internal: the shared implementation (used by the autograd and backend layers).
  detail::TensorImpl& unsafe_impl() const { return impl(); }

  // ---- views (share storage) --------------------------------------------------------------------
  /// The same storage with new sizes, strides and offset (bounds checked). Not differentiable.
  Tensor as_strided(Shape sizes, Shape strides, std::optional<int64_t> offset = std::nullopt) const {
    TORCHLET_CHECK(!tracks_grad(), ValueError, "[as_strided] not differentiable: the tensor requires grad "
                   "(use view/permute/slice/select/expand, or detach() first)");
    return restride(std::move(sizes), std::move(strides), offset);
  }

  /// A view with a new shape (one entry may be -1); raises if the strides do not allow it (use reshape).
  Tensor view(Shape shape) const {
    shape = infer_size(std::move(shape), "view");
    auto st = detail::view_strides(sizes(), strides(), shape);
    TORCHLET_CHECK(st.has_value(), ShapeError, "[view] size ", shape_str(shape), " is not compatible with input of size ",
                   shape_str(sizes()), " and stride ", shape_str(strides()),
                   " (at least one dimension spans across two contiguous subspaces): use reshape()");
    return track(restride(std::move(shape), std::move(*st)), "view", detail::GradFlow::Reshape);
  }

  /// view() when possible, otherwise a contiguous copy with the new shape.
  Tensor reshape(Shape shape) const {
    shape = infer_size(std::move(shape), "reshape");
    if (auto st = detail::view_strides(sizes(), strides(), shape))
      return track(restride(std::move(shape), std::move(*st)), "reshape", detail::GradFlow::Reshape);
    return contiguous().view(std::move(shape));
  }

  /// Reorders the dimensions: result dim i is input dim order[i].
  Tensor permute(const Shape& order) const {
    TORCHLET_CHECK(static_cast<int64_t>(order.size()) == dim(), ShapeError, "[permute] expected ", dim(),
                   " dims in the order, got ", shape_str(order));
    Shape sz(order.size()), st(order.size());
    std::vector<bool> seen(order.size(), false);
    for (size_t i = 0; i < order.size(); ++i) {
      const int64_t d = wrap_dim(order[i], dim(), "permute");
      TORCHLET_CHECK(!seen[d], ValueError, "[permute] dimension ", d, " repeated in ", shape_str(order));
      seen[d] = true;
      sz[i] = sizes()[d];
      st[i] = strides()[d];
    }
    return track(restride(std::move(sz), std::move(st)), "permute", detail::GradFlow::Embed,
                 [order](const Tensor& t) { return t.permute(order); });
  }

  /// Swaps two dimensions.
  Tensor transpose(int64_t d0, int64_t d1) const {
    d0 = wrap_dim(d0, dim(), "transpose");
    d1 = wrap_dim(d1, dim(), "transpose");
    Shape sz = sizes(), st = strides();
    if (dim() > 0) {
      std::swap(sz[d0], sz[d1]);
      std::swap(st[d0], st[d1]);
    }
    return track(restride(std::move(sz), std::move(st)), "transpose", detail::GradFlow::Embed,
                 [d0, d1](const Tensor& t) { return t.transpose(d0, d1); });
  }

  /// Transpose of a tensor of at most 2 dims.
  Tensor t() const {
    TORCHLET_CHECK(dim() <= 2, ShapeError, "[t] expects a tensor with <= 2 dimensions, got ", dim(), " (",
                   shape_str(sizes()), ")");
    return dim() < 2 ? *this : transpose(0, 1);
  }

  /// Broadcasts to `shape` without copying (size-1 dims get stride 0; -1 keeps a size; new dims lead).
  Tensor expand(const Shape& shape) const {
    TORCHLET_CHECK(static_cast<int64_t>(shape.size()) >= dim(), ShapeError, "[expand] the target ",
                   shape_str(shape), " has fewer dims than the tensor ", shape_str(sizes()));
    const size_t lead = shape.size() - sizes().size();
    Shape sz(shape.size()), st(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) {
      if (i < lead) {
        TORCHLET_CHECK(shape[i] >= 0, ShapeError, "[expand] size -1 not allowed in a new leading dim of ",
                       shape_str(shape));
        sz[i] = shape[i];
        st[i] = 0;
        continue;
      }
      const int64_t have = sizes()[i - lead];
      const int64_t want = shape[i] == -1 ? have : shape[i];
      TORCHLET_CHECK(want == have || have == 1, ShapeError, "[expand] cannot expand ", shape_str(sizes()), " to ",
                     shape_str(shape), " (dimension ", i, ": ", have, " vs ", want, ")");
      sz[i] = want;
      st[i] = want == have ? strides()[i - lead] : 0;
    }
    return track(restride(std::move(sz), std::move(st)), "expand", detail::GradFlow::Expand);
  }
  /// expand(other.sizes()).
  Tensor expand_as(const Tensor& other) const { return expand(other.sizes()); }
  /// view(other.sizes()).
  Tensor view_as(const Tensor& other) const { return view(other.sizes()); }

  /// Removes every size-1 dimension.
  Tensor squeeze() const {
    Shape sz, st;
    for (int64_t i = 0; i < dim(); ++i)
      if (sizes()[i] != 1) {
        sz.push_back(sizes()[i]);
        st.push_back(strides()[i]);
      }
    return track(restride(std::move(sz), std::move(st)), "squeeze", detail::GradFlow::Reshape);
  }
  /// Removes dimension `d` if its size is 1 (otherwise returns an unchanged view).
  Tensor squeeze(int64_t d) const {
    if (dim() == 0) return *this;
    d = wrap_dim(d, dim(), "squeeze");
    if (sizes()[d] != 1) return track(restride(sizes(), strides()), "squeeze", detail::GradFlow::Reshape);
    Shape sz = sizes(), st = strides();
    sz.erase(sz.begin() + d);
    st.erase(st.begin() + d);
    return track(restride(std::move(sz), std::move(st)), "squeeze", detail::GradFlow::Reshape);
  }
  /// Inserts a size-1 dimension at `d` (in [-dim()-1, dim()]).
  Tensor unsqueeze(int64_t d) const {
    d = wrap_dim(d, dim() + 1, "unsqueeze");
    Shape sz = sizes(), st = strides();
    const int64_t s = d < dim() ? sizes()[d] * strides()[d] : 1;
    sz.insert(sz.begin() + d, 1);
    st.insert(st.begin() + d, s);
    return track(restride(std::move(sz), std::move(st)), "unsqueeze", detail::GradFlow::Reshape);
  }
  /// Merges dims start..end into one (a view when the layout allows, like reshape).
  Tensor flatten(int64_t start = 0, int64_t end = -1) const {
    if (dim() == 0) return reshape({1});
    start = wrap_dim(start, dim(), "flatten");
    end = wrap_dim(end, dim(), "flatten");
    TORCHLET_CHECK(start <= end, ValueError, "[flatten] start_dim ", start, " comes after end_dim ", end);
    Shape sz(sizes().begin(), sizes().begin() + start);
    int64_t merged = 1;
    for (int64_t i = start; i <= end; ++i) merged *= sizes()[i];
    sz.push_back(merged);
    sz.insert(sz.end(), sizes().begin() + end + 1, sizes().end());
    return reshape(std::move(sz));
  }

  /// Elements start..end-1 (Python-style clamping; negative values count from the end) with a step >= 1.
  Tensor slice(int64_t d, std::optional<int64_t> start = std::nullopt, std::optional<int64_t> end = std::nullopt,
               int64_t step = 1) const {
    TORCHLET_CHECK(dim() > 0, IndexError, "[slice] cannot slice a 0-dim tensor");
    d = wrap_dim(d, dim(), "slice");
    TORCHLET_CHECK(step > 0, ValueError, "[slice] step must be positive, got ", step);
    const int64_t n = sizes()[d];
    auto clampi = [n](int64_t v) { return v < 0 ? std::max<int64_t>(v + n, 0) : std::min(v, n); };
    const int64_t b = clampi(start.value_or(0));
    const int64_t e = std::max(b, clampi(end.value_or(n)));
    Shape sz = sizes(), st = strides();
    sz[d] = (e - b + step - 1) / step;
    st[d] *= step;
    return track(restride(std::move(sz), std::move(st), storage_offset() + (sz[d] ? b * strides()[d] : 0)), "slice",
                 detail::GradFlow::Embed, [d, b, e, step](const Tensor& t) { return t.slice(d, b, e, step); });
  }
  /// `length` elements of dimension `d` from `start` (which may be negative); raises if out of range.
  Tensor narrow(int64_t d, int64_t start, int64_t length) const {
    TORCHLET_CHECK(dim() > 0, IndexError, "[narrow] cannot narrow a 0-dim tensor");
    d = wrap_dim(d, dim(), "narrow");
    const int64_t n = sizes()[d];
    if (start < 0) start += n;
    TORCHLET_CHECK(start >= 0 && length >= 0 && start + length <= n, IndexError, "[narrow] start ", start,
                   " + length ", length, " exceeds dimension ", d, " of size ", n);
    return slice(d, start, start + length);
  }
  /// The sub-tensor at `index` of dimension `d`, which is removed.
  Tensor select(int64_t d, int64_t index) const {
    TORCHLET_CHECK(dim() > 0, IndexError, "[select] cannot index a 0-dim tensor");
    d = wrap_dim(d, dim(), "select");
    const int64_t n = sizes()[d];
    TORCHLET_CHECK(index >= -n && index < n, IndexError, "[select] index ", index, " is out of bounds for dimension ",
                   d, " with size ", n);
    if (index < 0) index += n;
    Shape sz = sizes(), st = strides();
    sz.erase(sz.begin() + d);
    st.erase(st.begin() + d);
    return track(restride(std::move(sz), std::move(st), storage_offset() + index * strides()[d]), "select",
                 detail::GradFlow::Embed, [d, index](const Tensor& t) { return t.select(d, index); });
  }
  /// select(0, index), like `t[index]` in Python.
  Tensor operator[](int64_t index) const { return select(0, index); }

  /// Splits into pieces of `split_size` along `d` (the last may be smaller).
  std::vector<Tensor> split(int64_t split_size, int64_t d = 0) const {
    TORCHLET_CHECK(dim() > 0, IndexError, "[split] cannot split a 0-dim tensor");
    d = wrap_dim(d, dim(), "split");
    TORCHLET_CHECK(split_size > 0 || sizes()[d] == 0, ValueError, "[split] split_size must be positive, got ",
                   split_size);
    std::vector<Tensor> out;
    const int64_t n = sizes()[d];
    if (n == 0) return {narrow(d, 0, 0)};
    for (int64_t s = 0; s < n; s += split_size) out.push_back(narrow(d, s, std::min(split_size, n - s)));
    return out;
  }
  /// Splits into pieces of the given sizes along `d` (they must add up to size(d)).
  std::vector<Tensor> split(const Shape& split_sizes, int64_t d = 0) const {
    d = wrap_dim(d, dim(), "split");
    int64_t total = 0;
    for (int64_t s : split_sizes) {
      TORCHLET_CHECK(s >= 0, ValueError, "[split] negative size in ", shape_str(split_sizes));
      total += s;
    }
    TORCHLET_CHECK(total == sizes()[d], ShapeError, "[split] sizes ", shape_str(split_sizes), " add up to ", total,
                   ", dimension ", d, " has size ", sizes()[d]);
    std::vector<Tensor> out;
    int64_t at = 0;
    for (int64_t s : split_sizes) {
      out.push_back(narrow(d, at, s));
      at += s;
    }
    return out;
  }
  /// Splits into `chunks` pieces of ceil(size/chunks) along `d` (fewer if the size is small).
  std::vector<Tensor> chunk(int64_t chunks, int64_t d = 0) const {
    TORCHLET_CHECK(chunks > 0, ValueError, "[chunk] number of chunks must be positive, got ", chunks);
    TORCHLET_CHECK(dim() > 0, IndexError, "[chunk] cannot chunk a 0-dim tensor");
    const int64_t n = sizes()[wrap_dim(d, dim(), "chunk")];
    return split(std::max<int64_t>((n + chunks - 1) / chunks, 1), d);
  }
  /// The sub-tensors along `d`, each with that dimension removed.
  std::vector<Tensor> unbind(int64_t d = 0) const {
    d = wrap_dim(d, dim(), "unbind");
    std::vector<Tensor> out;
    for (int64_t i = 0; i < sizes()[d]; ++i) out.push_back(select(d, i));
    return out;
  }

  // ---- autograd (defined in autograd/engine.hpp) -----------------------------------------------------
  /// True when gradients flow to or through this tensor.
  bool requires_grad() const { return impl().requires_grad; }
  /// Marks a leaf tensor (a parameter) as requiring grad, or freezes it; like `p.requires_grad_(False)`.
  Tensor& requires_grad_(bool on = true);
  /// True for tensors not produced by a recorded operation (parameters, inputs, detached tensors).
  bool is_leaf() const;
  /// The accumulated gradient of a leaf (undefined until a backward pass reaches it, or after zero_grad).
  Tensor grad() const;
  /// Replaces the accumulated gradient (an undefined tensor clears it, like `p.grad = None`).
  void set_grad(const Tensor& grad);
  /// The node that produced this tensor in the autograd graph (null for leaves).
  std::shared_ptr<autograd::Node> grad_fn() const;
  /// Backpropagates from this tensor: a scalar by default, else with `gradient` of the same shape.
  /// The graph is freed afterwards unless `retain_graph`.
  void backward(const Tensor& gradient = {}, bool retain_graph = false) const;
  /// The same data without autograd history (shares storage and the version counter).
  Tensor detach() const {
    return Tensor(storage(), dtype(), sizes(), strides(), storage_offset());
  }
  /// Number of in-place writes to this tensor's storage (PyTorch's `t._version`).
  uint32_t version() const { return storage().version(); }

  // ---- copies and conversions (defined in tensor/copy.hpp) ----------------------------------------
  /// This tensor if it is contiguous, otherwise a contiguous copy.
  Tensor contiguous() const;
  /// This tensor if it is laid out in `format`, otherwise a copy that is (differentiable), like
  /// t.contiguous(memory_format=...).
  Tensor contiguous(MemoryFormat format) const;
  /// A contiguous copy with its own storage.
  Tensor clone() const;
  /// This tensor converted to `dtype` (itself when the dtype already matches, unless `copy`).
  Tensor to(DType dtype, bool copy = false) const;
  /// This tensor on `device` (itself when already there, unless `copy`).
  Tensor to(Device device, bool copy = false) const;
  /// Copies `src` into this tensor in place, broadcasting and converting the dtype; returns *this.
  Tensor& copy_(const Tensor& src);
  /// Sets every element to `value`; returns *this.
  Tensor& fill_(const Scalar& value);
  /// Sets every element to zero; returns *this.
  Tensor& zero_() { return fill_(0); }
  /// The value of a one-element tensor converted to T.
  template <class T>
  T item() const;
  /// The value of a one-element tensor as a Scalar of its kind.
  Scalar item() const;

 private:
  // A new tensor over the same storage (no autograd bookkeeping; see track()).
  Tensor restride(Shape sizes, Shape strides, std::optional<int64_t> offset = std::nullopt) const {
    return Tensor(storage(), dtype(), std::move(sizes), std::move(strides), offset.value_or(storage_offset()));
  }
  // True when operations on this tensor must be recorded for backward.
  bool tracks_grad() const { return impl().requires_grad && detail::grad_mode_enabled(); }
  // Records `out` as a view of this tensor when autograd is tracking it; returns `out`.
  Tensor track(Tensor out, const char* name, detail::GradFlow flow, detail::ViewReplay replay = {}) const;

  detail::TensorImpl& impl() const {
    TORCHLET_CHECK(impl_ != nullptr, ValueError, "[Tensor] use of an undefined tensor");
    return *impl_;
  }
  // Replaces one -1 entry by the size that keeps numel, and checks the product.
  Shape infer_size(Shape shape, const char* op) const {
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == -1) {
        TORCHLET_CHECK(infer < 0, ValueError, "[", op, "] only one dimension can be -1 in ", shape_str(shape));
        infer = static_cast<int64_t>(i);
      } else {
        TORCHLET_CHECK(shape[i] >= 0, ValueError, "[", op, "] invalid size ", shape[i], " in ", shape_str(shape));
        known *= shape[i];
      }
    }
    if (infer >= 0) {
      TORCHLET_CHECK(known != 0 && numel() % known == 0, ShapeError, "[", op, "] shape ", shape_str(shape),
                     " is invalid for input of size ", numel());
      shape[infer] = numel() / known;
    }
    TORCHLET_CHECK(numel_of(shape) == numel(), ShapeError, "[", op, "] shape ", shape_str(shape),
                   " is invalid for input of size ", numel());
    return shape;
  }

  std::shared_ptr<detail::TensorImpl> impl_;
};

/// The dtype and device of a new tensor; implicitly made from either alone.
struct TensorOptions {
  DType dtype = kFloat32;
  Device device = kCPU;
  TensorOptions() = default;
  TensorOptions(DType t) : dtype(t) {}           // NOLINT(google-explicit-constructor)
  TensorOptions(Device d) : device(d) {}         // NOLINT(google-explicit-constructor)
  TensorOptions(DType t, Device d) : dtype(t), device(d) {}
};

/// A new contiguous tensor with uninitialised elements.
inline Tensor empty(const Shape& sizes, TensorOptions options = {}) {
  for (int64_t s : sizes) TORCHLET_CHECK(s >= 0, ValueError, "[empty] negative size in ", shape_str(sizes));
  const int64_t bytes = numel_of(sizes) * element_size(options.dtype);
  return Tensor(Storage::allocate(static_cast<size_t>(bytes), options.device), options.dtype, sizes,
                contiguous_strides(sizes));
}

/// A new tensor with uninitialised elements laid out in `format` (ChannelsLast: sizes [N, C, H, W], NHWC memory).
inline Tensor empty(const Shape& sizes, TensorOptions options, MemoryFormat format) {
  if (format == MemoryFormat::Contiguous) return empty(sizes, options);
  const Tensor nhwc = empty(Shape{sizes.at(0), sizes.at(2), sizes.at(3), sizes.at(1)}, options);
  return Tensor(nhwc.storage(), options.dtype, sizes, channels_last_strides(sizes));
}

inline Tensor Tensor::track(Tensor out, const char* name, detail::GradFlow flow, detail::ViewReplay replay) const {
  if (!tracks_grad()) return out;
  const auto record = detail::grad_flow_recorder();
  TORCHLET_CHECK(record != nullptr, Error, "[", name, "] the tensor requires grad, but torchlet's autograd layer "
                 "is not compiled in: #include <torchlet/autograd.hpp>");
  record(*this, out, name, flow, std::move(replay));
  return out;
}
}  // namespace torchlet

#include "torchlet/tensor/copy.hpp"
#include "torchlet/autograd/engine.hpp"
