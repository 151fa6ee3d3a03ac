#pragma once
/// \file Elementwise kernels on CUDA: one grid-stride kernel template over K operands of one shape with any byte
/// strides (N-d index math after merging the dims every operand lays out contiguously, so most calls see 1-3
/// dims), with a contiguous fast path; and on it fill, copy with dtype conversion, the unary and binary ops of
/// DeviceKernels, clamp, where and the SGD step. Compiled by nvcc only.
#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <optional>

#include "torchlet/backend/device_kernels.hpp"
#include "torchlet/cuda/allocator.cuh"
#include "torchlet/cuda/types.cuh"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::cuda {

/// Most dims an operand may have after merging (more raises ShapeError).
inline constexpr int kMaxDims = 16;

/// K operands of one shape (operand 0 is the output): base addresses, element sizes, and byte strides over the
/// merged dims. Passed to kernels by value.
template <int K>
struct StridedPlan {
  int ndim = 0;
  bool contiguous = true;  ///< every operand dense in C order: offset = i * element size
  int64_t numel = 0;
  char* base[K] = {};
  int64_t elsize[K] = {};
  int64_t sizes[kMaxDims] = {};
  int64_t strides[K][kMaxDims] = {};
};

/// The plan of operands that all have ts[0]'s shape: size-1 dims dropped, neighbours merged when every operand
/// steps through them as through one dim.
template <int K>
StridedPlan<K> make_plan(const std::array<const Tensor*, K>& ts, const char* op) {
  StridedPlan<K> plan;
  const Tensor& out = *ts[0];
  plan.numel = out.numel();
  for (int k = 0; k < K; ++k) {
    TORCHLET_CHECK(ts[k]->sizes() == out.sizes(), ShapeError, "[", op, "] cuda operand ", k, " has shape ",
                   shape_str(ts[k]->sizes()), ", expected ", shape_str(out.sizes()));
    plan.base[k] = static_cast<char*>(ts[k]->data_ptr());
    plan.elsize[k] = ts[k]->element_size();
  }
  // innermost first while merging, then reversed
  int64_t sizes[64];
  int64_t strides[K][64];
  int nd = 0;
  for (int64_t d = out.dim() - 1; d >= 0; --d) {
    const int64_t n = out.size(d);
    if (n == 1) continue;
    bool merge = nd > 0;
    for (int k = 0; k < K && merge; ++k)
      merge = ts[k]->stride(d) * ts[k]->element_size() == strides[k][nd - 1] * sizes[nd - 1];
    if (merge) {
      sizes[nd - 1] *= n;
      continue;
    }
    sizes[nd] = n;
    for (int k = 0; k < K; ++k) strides[k][nd] = ts[k]->stride(d) * ts[k]->element_size();
    ++nd;
  }
  TORCHLET_CHECK(nd <= kMaxDims, ShapeError, "[", op, "] cuda kernels take at most ", kMaxDims,
                 " non-mergeable dims, got ", nd, " for shape ", shape_str(out.sizes()));
  plan.ndim = nd;
  for (int d = 0; d < nd; ++d) {
    plan.sizes[d] = sizes[nd - 1 - d];
    for (int k = 0; k < K; ++k) plan.strides[k][d] = strides[k][nd - 1 - d];
  }
  for (int k = 0; k < K; ++k) plan.contiguous = plan.contiguous && (nd == 0 || (nd == 1 && strides[k][0] == plan.elsize[k]));
  return plan;
}

/// Runs f(p) for every element, p[k] pointing at operand k's element.
template <int K, class F>
__global__ void elementwise_kernel(StridedPlan<K> plan, F f) {
  const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < plan.numel; i += step) {
    char* p[K];
    if (plan.contiguous) {
#pragma unroll
      for (int k = 0; k < K; ++k) p[k] = plan.base[k] + i * plan.elsize[k];
    } else {
#pragma unroll
      for (int k = 0; k < K; ++k) p[k] = plan.base[k];
      int64_t rem = i;
      for (int d = plan.ndim - 1; d >= 0; --d) {
        const int64_t idx = rem % plan.sizes[d];
        rem /= plan.sizes[d];
#pragma unroll
        for (int k = 0; k < K; ++k) p[k] += idx * plan.strides[k][d];
      }
    }
    f(p);
  }
}

/// Threads per block of the elementwise kernels.
inline constexpr int kBlock = 256;

/// Launches f over the operands (operand 0 is the output) on the current stream of its device.
template <int K, class F>
void launch_elementwise(const std::array<const Tensor*, K>& ts, const F& f, const char* op) {
  const int64_t n = ts[0]->numel();
  if (n == 0) return;
  const StridedPlan<K> plan = make_plan<K>(ts, op);
  const int dev = ts[0]->device().index;
  DeviceGuard guard(dev);
  const int64_t blocks = std::min<int64_t>((n + kBlock - 1) / kBlock, int64_t{1} << 16);
  elementwise_kernel<K, F><<<static_cast<unsigned>(blocks), kBlock, 0, current_stream(dev)>>>(plan, f);
  TORCHLET_CUDA_CHECK_LAUNCH("elementwise_kernel");
}

// ---- functors (device code) ------------------------------------------------------------------------------
/// *p[0] = value.
template <class T>
struct FillFn {
  T value;
  __device__ void operator()(char** p) const { *reinterpret_cast<T*>(p[0]) = value; }
};
/// *p[0] = convert(*p[1]).
template <class To, class From>
struct CopyFn {
  __device__ void operator()(char** p) const {
    *reinterpret_cast<To*>(p[0]) = convert_element<To>(*reinterpret_cast<const From*>(p[1]));
  }
};

/// The value of a unary op in math type M.
template <class M>
__device__ __forceinline__ M unary_math(UnaryOp op, M x) {
  switch (op) {
    case UnaryOp::Neg:
      if constexpr (std::is_same_v<M, bool>) return x;
      else return static_cast<M>(-x);
    case UnaryOp::Abs:
      if constexpr (std::is_unsigned_v<M>) return x;
      else return x < M(0) ? static_cast<M>(-x) : x == M(0) ? M(0) : x;
    case UnaryOp::Relu:
      if constexpr (std::is_unsigned_v<M>) return x;
      else return x < M(0) ? M(0) : x;
    case UnaryOp::Exp:
      if constexpr (std::is_same_v<M, float>) return expf(x);
      else if constexpr (std::is_same_v<M, double>) return exp(x);
      else return x;  // the op layer makes the input floating
    case UnaryOp::Log:
      if constexpr (std::is_same_v<M, float>) return logf(x);
      else if constexpr (std::is_same_v<M, double>) return log(x);
      else return x;
    case UnaryOp::Sqrt:
      if constexpr (std::is_same_v<M, float>) return sqrtf(x);
      else if constexpr (std::is_same_v<M, double>) return sqrt(x);
      else return x;
  }
  return x;
}

/// *p[0] = op(*p[1]) computed in the math type.
template <class T>
struct UnaryFn {
  UnaryOp op;
  __device__ void operator()(char** p) const {
    *reinterpret_cast<T*>(p[0]) = store_math<T>(unary_math(op, load_math(*reinterpret_cast<const T*>(p[1]))));
  }
};

/// Integer power by squaring (wraps like PyTorch); a negative exponent gives 0 on the device (the CPU raises).
template <class M>
__device__ __forceinline__ M int_pow(M base, M e) {
  if (e < 0) return M(0);
  M r = 1;
  while (e > 0) {
    if (e & 1) r = static_cast<M>(r * base);
    base = static_cast<M>(base * base);
    e >>= 1;
  }
  return r;
}

/// The value of a non-comparison binary op in math type M (alpha for Add / Sub; `alpha_one` takes the exact
/// a + b path).
template <class M>
__device__ __forceinline__ M binary_math(BinaryOp op, M x, M y, M alpha, bool alpha_one) {
  constexpr bool is_float = std::is_floating_point_v<M>;
  switch (op) {
    case BinaryOp::Add:
      if constexpr (std::is_same_v<M, bool>) return x || (alpha && y);
      else return alpha_one ? static_cast<M>(x + y) : static_cast<M>(x + alpha * y);
    case BinaryOp::Sub:
      if constexpr (std::is_same_v<M, bool>) return x;
      else return alpha_one ? static_cast<M>(x - y) : static_cast<M>(x - alpha * y);
    case BinaryOp::Mul:
      if constexpr (std::is_same_v<M, bool>) return x && y;
      else return static_cast<M>(x * y);
    case BinaryOp::Div:
    case BinaryOp::DivTrunc:
    case BinaryOp::DivFloor:
      if constexpr (is_float) {
        const M q = x / y;
        if (op == BinaryOp::Div) return q;
        if (op == BinaryOp::DivTrunc) return trunc(q);
        if (y == M(0)) return q;
        const M mod = fmod(x, y);
        M div = (x - mod) / y;
        if (mod != M(0) && ((y < M(0)) != (mod < M(0)))) div -= M(1);
        if (div == M(0)) return copysign(M(0), q);
        const M fl = floor(div);
        return div - fl > M(0.5) ? fl + M(1) : fl;
      } else if constexpr (std::is_same_v<M, bool>) {
        return x;
      } else {
        if (y == M(0)) return M(0);  // the CPU raises; the device cannot
        M q = static_cast<M>(x / y);
        if constexpr (std::is_signed_v<M>)
          if (op == BinaryOp::DivFloor && (x % y != 0) && ((x < 0) != (y < 0))) --q;
        return q;
      }
    case BinaryOp::Pow:
      if constexpr (is_float) return pow(x, y);
      else if constexpr (std::is_same_v<M, bool>) return y ? x : true;
      else return int_pow(x, y);
    case BinaryOp::Maximum:
      if constexpr (is_float) {
        if (x != x) return x;
        if (y != y) return y;
      }
      return x > y ? x : y;
    case BinaryOp::Minimum:
      if constexpr (is_float) {
        if (x != x) return x;
        if (y != y) return y;
      }
      return x < y ? x : y;
    default: return x;
  }
}

/// A comparison in math type M.
template <class M>
__device__ __forceinline__ bool compare_math(BinaryOp op, M x, M y) {
  switch (op) {
    case BinaryOp::Eq: return x == y;
    case BinaryOp::Ne: return x != y;
    case BinaryOp::Lt: return x < y;
    case BinaryOp::Le: return x <= y;
    case BinaryOp::Gt: return x > y;
    case BinaryOp::Ge: return x >= y;
    default: return false;
  }
}

/// *p[0] = op(*p[1], *p[2]) (or op(*p[1], scalar) when `with_scalar`), T the operands' type, Out T or bool.
template <class T, class Out>
struct BinaryFn {
  using M = math_t<T>;
  BinaryOp op;
  M alpha;
  bool alpha_one;
  bool with_scalar;
  M scalar;
  __device__ void operator()(char** p) const {
    const M x = load_math(*reinterpret_cast<const T*>(p[1]));
    const M y = with_scalar ? scalar : load_math(*reinterpret_cast<const T*>(p[2]));
    if constexpr (std::is_same_v<Out, bool>) {
      *reinterpret_cast<bool*>(p[0]) = compare_math(op, x, y);
    } else {
      M r;
      if constexpr (std::is_floating_point_v<M>) {
        // pow by a number: PyTorch's CPU special-cases 2 and 0.5, and so does torchlet
        if (with_scalar && op == BinaryOp::Pow && y == M(2)) r = x * x;
        else if (with_scalar && op == BinaryOp::Pow && y == M(0.5)) r = sqrt(x);
        else r = binary_math(op, x, y, alpha, alpha_one);
      } else {
        r = binary_math(op, x, y, alpha, alpha_one);
      }
      *reinterpret_cast<Out*>(p[0]) = store_math<Out>(r);
    }
  }
};

/// *p[0] = clamp(*p[1], lo, hi) with NaN kept.
template <class T>
struct ClampFn {
  using M = math_t<T>;
  bool has_lo, has_hi;
  M lo, hi;
  __device__ void operator()(char** p) const {
    const T in = *reinterpret_cast<const T*>(p[1]);
    M v = load_math(in);
    if constexpr (std::is_floating_point_v<M>) {
      if (v != v) {
        *reinterpret_cast<T*>(p[0]) = in;
        return;
      }
    }
    if (has_lo && v < lo) v = lo;
    if (has_hi && v > hi) v = hi;
    *reinterpret_cast<T*>(p[0]) = store_math<T>(v);
  }
};

/// *p[0] = *p[1] ? *p[2] : *p[3].
template <class T>
struct WhereFn {
  __device__ void operator()(char** p) const {
    *reinterpret_cast<T*>(p[0]) =
        *reinterpret_cast<const bool*>(p[1]) ? *reinterpret_cast<const T*>(p[2]) : *reinterpret_cast<const T*>(p[3]);
  }
};

/// a * b + c, fused (PyTorch's vectorised CPU kernels and torchlet's optimizers use a fused multiply-add).
template <class M>
__device__ __forceinline__ M fmadd(M a, M b, M c) {
  return fma(a, b, c);
}
/// Rounds an intermediate to T and back (a no-op for float and double).
template <class T, class M>
__device__ __forceinline__ M round_to(M x) {
  return load_math(store_math<T>(x));
}

/// One SGD step on (param, grad, momentum buffer), torch.optim.SGD's single-tensor formula.
template <class T>
struct SGDFn {
  using M = math_t<T>;
  M wd, mom, keep, neg_lr;
  bool decay, maximize, nesterov, use_momentum, first;
  __device__ void operator()(char** p) const {
    T& param = *reinterpret_cast<T*>(p[0]);
    const M x = load_math(param);
    M d = load_math(*reinterpret_cast<const T*>(p[1]));
    if (maximize) d = -d;
    if (decay) d = round_to<T>(fmadd(x, wd, d));
    if (use_momentum) {
      T& buf = *reinterpret_cast<T*>(p[2]);
      const M b = first ? d : round_to<T>(fmadd(d, keep, round_to<T>(load_math(buf) * mom)));
      buf = store_math<T>(b);
      d = nesterov ? round_to<T>(fmadd(b, mom, d)) : b;
    }
    param = store_math<T>(fmadd(d, neg_lr, x));
  }
};

// ---- host entry points ----------------------------------------------------------------------------------------
/// Sets every element of `out` to `value`.
inline void fill(const Tensor& out, const Scalar& value) {
  dispatch(out.dtype(), "fill_", [&]<class H, class D>() {
    launch_elementwise<1>({&out}, FillFn<D>{to_device_value<H>(value)}, "fill_");
  });
}

/// dst = convert(src) for two tensors of one shape on one device (any strides and dtypes); a plain
/// cudaMemcpyAsync when both are contiguous with one dtype.
inline void copy_same_device(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  const int dev = dst.device().index;
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    DeviceGuard guard(dev);
    TORCHLET_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), static_cast<size_t>(dst.nbytes()),
                                        cudaMemcpyDeviceToDevice, current_stream(dev)));
    return;
  }
  if (dst.dtype() == src.dtype() && !torchlet::has_kernels(dst.dtype())) {
    torchlet::detail::dispatch_bits(dst.dtype(), "copy_", [&]<class B>() {
      launch_elementwise<2>({&dst, &src}, CopyFn<B, B>{}, "copy_");
    });
    return;
  }
  dispatch(dst.dtype(), "copy_", [&]<class HT, class To>() {
    dispatch(src.dtype(), "copy_", [&]<class HF, class From>() {
      launch_elementwise<2>({&dst, &src}, CopyFn<To, From>{}, "copy_");
    });
  });
}

/// out = op(x), x of out's dtype and shape.
inline void unary(UnaryOp op, const Tensor& out, const Tensor& x) {
  dispatch(out.dtype(), op_name(op), [&]<class H, class D>() {
    launch_elementwise<2>({&out, &x}, UnaryFn<D>{op}, op_name(op));
  });
}

/// out = op(a, b) or op(a, s) (b undefined), a and b of one dtype; out of it or bool.
inline void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b, const Scalar& alpha,
                   const std::optional<Scalar>& s = std::nullopt) {
  dispatch(a.dtype(), op_name(op), [&]<class H, class D>() {
    using M = math_t<D>;
    using HM = torchlet::detail::opmath_t<H>;
    const bool alpha_one = alpha.to<double>() == 1;
    const M al = static_cast<M>(alpha.to<HM>());
    // the number is first cast to the operands' dtype, as PyTorch does
    const M sv = s ? static_cast<M>(static_cast<HM>(s->to<H>())) : M(0);
    if (is_comparison(op)) {
      const BinaryFn<D, bool> f{op, al, alpha_one, s.has_value(), sv};
      if (s) launch_elementwise<2>({&out, &a}, f, op_name(op));
      else launch_elementwise<3>({&out, &a, &b}, f, op_name(op));
    } else {
      const BinaryFn<D, D> f{op, al, alpha_one, s.has_value(), sv};
      if (s) launch_elementwise<2>({&out, &a}, f, op_name(op));
      else launch_elementwise<3>({&out, &a, &b}, f, op_name(op));
    }
  });
}

/// out = clamp(x, lo, hi).
inline void clamp(const Tensor& out, const Tensor& x, const std::optional<Scalar>& lo,
                  const std::optional<Scalar>& hi) {
  dispatch(out.dtype(), "clamp", [&]<class H, class D>() {
    using M = math_t<D>;
    using HM = torchlet::detail::opmath_t<H>;
    const ClampFn<D> f{lo.has_value(), hi.has_value(), lo ? static_cast<M>(lo->to<HM>()) : M(0),
                       hi ? static_cast<M>(hi->to<HM>()) : M(0)};
    launch_elementwise<2>({&out, &x}, f, "clamp");
  });
}

/// out = cond ? a : b.
inline void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  dispatch(out.dtype(), "where", [&]<class H, class D>() {
    launch_elementwise<4>({&out, &cond, &a, &b}, WhereFn<D>{}, "where");
  });
}

/// One SGD step in place on param (and the momentum buffer when momentum != 0).
inline void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& buffer, bool first,
                     const SGDStepOptions& o) {
  dispatch_floating(param.dtype(), "SGD", [&]<class H, class D>() {
    using M = math_t<D>;
    const bool use_momentum = o.momentum != 0;
    const SGDFn<D> f{static_cast<M>(o.weight_decay), static_cast<M>(o.momentum), static_cast<M>(1 - o.dampening),
                     static_cast<M>(-o.lr), o.weight_decay != 0, o.maximize, o.nesterov, use_momentum, first};
    if (use_momentum) launch_elementwise<3>({&param, &grad, &buffer}, f, "SGD");
    else launch_elementwise<2>({&param, &grad}, f, "SGD");
  });
}
}  // namespace torchlet::cuda
