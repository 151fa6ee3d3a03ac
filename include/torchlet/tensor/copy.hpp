#pragma once
/// \file Copies between tensors (broadcasting, dtype conversion), fill, item, and the device-copy seam.
/// Included at the end of tensor.hpp: it defines Tensor's copy and conversion members.
#include <cstring>

#include "torchlet/backend/device_kernels.hpp"
#include "torchlet/tensor/dispatch.hpp"
#include "torchlet/tensor/strided_loop.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {
namespace detail {
/// Copies between tensors of equal shape when at least one is not on the CPU. The CUDA backend installs it;
/// without one, any copy involving a non-CPU tensor raises DeviceError.
using DeviceCopyFn = void (*)(const Tensor& dst, const Tensor& src);
inline DeviceCopyFn& device_copy_hook() {
  static DeviceCopyFn fn = nullptr;
  return fn;
}

/// Raises DeviceError naming `op` unless `t` is on the CPU.
inline void check_cpu(const Tensor& t, const char* op) {
  TORCHLET_CHECK(t.is_cpu(), DeviceError, "[", op, "] expected a cpu tensor, got one on ", t.device(),
                 " (no CUDA kernel for this op in this build)");
}

/// The device an op on these operands computes on (undefined ones are skipped): the CPU when all are there,
/// else their one non-CPU device, where 0-dim CPU tensors may join (they act as numbers, as in PyTorch).
/// Raises DeviceError naming both devices when operands live on two devices.
inline Device op_device(const char* op, const Tensor& a, const Tensor& b = Tensor(), const Tensor& c = Tensor()) {
  const Tensor* ts[3] = {&a, &b, &c};
  Device dev = kCPU;
  for (const Tensor* t : ts)
    if (t->defined() && !t->is_cpu()) {
      dev = t->device();
      break;
    }
  if (dev.is_cpu()) return dev;
  for (const Tensor* t : ts) {
    if (!t->defined() || t->device() == dev || (t->is_cpu() && t->dim() == 0)) continue;
    TORCHLET_THROW(DeviceError, "[", op, "] expected all tensors to be on the same device, but found at least two "
                   "devices, ", dev, " and ", t->device());
  }
  return dev;
}

/// `t` on `device` (a copy of a 0-dim CPU operand that joins a device op; itself when already there).
inline Tensor on_device(const Tensor& t, Device device) {
  return t.device() == device ? t : t.detach().to(device);
}

/// dst[i] = convert(src[i]) for CPU tensors of the same shape.
inline void copy_cpu(const Tensor& dst, const Tensor& src) {
  std::array<char*, 2> base{static_cast<char*>(dst.data_ptr()), static_cast<char*>(src.data_ptr())};
  std::array<Shape, 2> st{byte_strides(dst.strides(), dst.element_size()),
                          byte_strides(src.strides(), src.element_size())};
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    std::memcpy(base[0], base[1], static_cast<size_t>(dst.nbytes()));
    return;
  }
  if (dst.dtype() == src.dtype() || !has_kernels(dst.dtype()) || !has_kernels(src.dtype())) {
    TORCHLET_CHECK(dst.dtype() == src.dtype(), DTypeError, "[copy_] cannot convert ", src.dtype(), " to ",
                   dst.dtype(), ": storage-only dtypes are copied as they are, not converted");
    dispatch_bits(dst.dtype(), "copy_", [&]<class T>() {
      for_each_strided<2>(dst.sizes(), base, st, [](std::array<char*, 2> p, std::array<int64_t, 2> s, int64_t n) {
        for (int64_t i = 0; i < n; ++i)
          *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<const T*>(p[1] + i * s[1]);
      });
    });
    return;
  }
  dispatch_all(dst.dtype(), "copy_", [&]<class To>() {
    dispatch_all(src.dtype(), "copy_", [&]<class From>() {
      for_each_strided<2>(dst.sizes(), base, st, [](std::array<char*, 2> p, std::array<int64_t, 2> s, int64_t n) {
        for (int64_t i = 0; i < n; ++i)
          *reinterpret_cast<To*>(p[0] + i * s[0]) = convert<To>(*reinterpret_cast<const From*>(p[1] + i * s[1]));
      });
    });
  });
}

/// True when two tensors may share bytes (same storage); a conservative overlap test.
inline bool may_overlap(const Tensor& a, const Tensor& b) {
  return a.storage().is_same(b.storage()) && a.numel() > 0 && b.numel() > 0;
}
}  // namespace detail

namespace detail {
// Copies src (broadcast to dst's shape) into dst, converting dtype; no autograd checks.
inline void copy_into(const Tensor& dst, const Tensor& src) {
  Tensor from = src.detach().expand(dst.sizes());  // raises ShapeError when src does not broadcast
  if (!dst.is_cpu() || !from.is_cpu()) {
    auto hook = device_copy_hook();
    TORCHLET_CHECK(hook != nullptr, DeviceError, "[copy_] cannot copy from ", from.device(), " to ", dst.device(),
                   ": this program was built without torchlet's CUDA backend");
    hook(dst, from);
    return;
  }
  if (may_overlap(dst, from)) from = from.clone();
  copy_cpu(dst, from);
}

// Raises for an in-place write that autograd cannot follow.
inline void check_inplace(const Tensor& self, const char* op, const Tensor* src = nullptr) {
  if (!grad_mode_enabled()) return;
  TORCHLET_CHECK(!self.requires_grad(), ValueError, "[", op, "] a tensor that requires grad (shape ",
                 shape_str(self.sizes()), ") is being used in an in-place operation; wrap the update in "
                 "autograd::NoGradGuard, or use an out-of-place op");
  TORCHLET_CHECK(src == nullptr || !src->requires_grad(), ValueError, "[", op, "] copying a tensor that requires "
                 "grad into another tensor in place is not differentiable; use clone() or an out-of-place op");
}
}  // namespace detail

inline Tensor& Tensor::copy_(const Tensor& src) {
  TORCHLET_CHECK(src.defined(), ValueError, "[copy_] source tensor is undefined");
  if (is_same(src)) return *this;
  detail::check_inplace(*this, "copy_", &src);
  detail::copy_into(*this, src);
  storage().bump_version();
  return *this;
}

inline Tensor Tensor::clone() const {
  Tensor out = empty(sizes(), TensorOptions(dtype(), device()));
  detail::copy_into(out, *this);
  return track(out, "clone", detail::GradFlow::Cast);
}

inline Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

inline Tensor Tensor::contiguous(MemoryFormat format) const {
  if (format == MemoryFormat::Contiguous) return contiguous();
  TORCHLET_CHECK(dim() == 4, ShapeError, "[contiguous] channels_last needs a 4-D [N, C, H, W] tensor, got sizes ",
                 shape_str(sizes()));
  if (is_contiguous(format)) return *this;
  Tensor out = empty(sizes(), TensorOptions(dtype(), device()), format);
  detail::copy_into(out, *this);
  return track(out, "contiguous", detail::GradFlow::Cast);
}

inline Tensor Tensor::to(DType t, bool copy) const {
  if (t == dtype() && !copy) return *this;
  Tensor out = empty(sizes(), TensorOptions(t, device()));
  detail::copy_into(out, *this);
  return track(out, "to", detail::GradFlow::Cast);
}

inline Tensor Tensor::to(Device d, bool copy) const {
  if (d == device() && !copy) return *this;
  // a channels-last tensor stays channels-last, as PyTorch's preserve_format does
  Tensor out = empty(sizes(), TensorOptions(dtype(), d), suggest_memory_format());
  detail::copy_into(out, *this);
  return track(out, "to", detail::GradFlow::Cast);
}

namespace detail {
// Sets every element of t to value (no autograd checks, no version bump: for new tensors).
inline void fill_into(const Tensor& t, const Scalar& value) {
  if (!t.is_cpu()) {
    if (t.numel() > 0) device_kernels(t.device(), "fill_").fill(t, value);
    return;
  }
  std::array<char*, 1> base{static_cast<char*>(t.data_ptr())};
  std::array<Shape, 1> st{byte_strides(t.strides(), t.element_size())};
  dispatch_all(t.dtype(), "fill_", [&]<class T>() {
    const T v = value.to<T>();
    for_each_strided<1>(t.sizes(), base, st, [v](std::array<char*, 1> p, std::array<int64_t, 1> s, int64_t n) {
      for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * s[0]) = v;
    });
  });
}
}  // namespace detail

inline Tensor& Tensor::fill_(const Scalar& value) {
  detail::check_inplace(*this, "fill_");
  detail::fill_into(*this, value);
  storage().bump_version();
  return *this;
}

template <class T>
T Tensor::item() const {
  TORCHLET_CHECK(numel() == 1, ValueError, "[item] a tensor with ", numel(), " elements (shape ", shape_str(sizes()),
                 ") cannot be converted to a scalar");
  const Tensor host = to(kCPU);
  return detail::dispatch_all(dtype(), "item", [&]<class S>() {
    return detail::convert<T>(*static_cast<const S*>(host.data_ptr()));
  });
}

inline Scalar Tensor::item() const {
  if (dtype() == kBool) return Scalar(item<bool>());
  if (is_floating_point()) return Scalar(item<double>());
  return Scalar(item<int64_t>());
}
}  // namespace torchlet
