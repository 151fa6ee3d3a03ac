#pragma once
/// \file Reductions on CUDA over any set of dims of a tensor of any layout: sum (accumulated in double / int64, as
/// torchlet's CPU does), mean, var / std (Welford, merged across threads with Chan's formula), and max / min with
/// the flat index of the first extreme (a NaN is the extreme). One block reduces one output (grid-stride over the
/// outputs), threads stride over the reduced elements and combine in shared memory. Compiled by nvcc only.
#include <cuda_runtime.h>

#include <vector>

#include "torchlet/backend/cpu/reduce.hpp"
#include "torchlet/cuda/allocator.cuh"
#include "torchlet/cuda/elementwise.cuh"
#include "torchlet/cuda/types.cuh"

namespace torchlet::cuda {

/// Kept and reduced dims of a reduction (element strides of the input), for the kernels.
struct ReduceDims {
  int nk = 0, nr = 0;
  int64_t n_out = 1, n_red = 1;
  int64_t ksz[kMaxDims] = {}, kst[kMaxDims] = {}, rsz[kMaxDims] = {}, rst[kMaxDims] = {};
};

/// The kernel form of torchlet's CPU reduce plan.
inline ReduceDims make_reduce_dims(const Tensor& x, const std::vector<bool>& mask, const char* op) {
  const auto plan = torchlet::detail::make_reduce_plan(x.sizes(), x.strides(), mask);
  TORCHLET_CHECK(static_cast<int>(plan.ksz.size()) <= kMaxDims && static_cast<int>(plan.rsz.size()) <= kMaxDims,
                 ShapeError, "[", op, "] cuda reductions take at most ", kMaxDims, " non-mergeable dims, shape ",
                 shape_str(x.sizes()));
  ReduceDims d;
  d.nk = static_cast<int>(plan.ksz.size());
  d.nr = static_cast<int>(plan.rsz.size());
  d.n_out = plan.n_out;
  d.n_red = plan.n_red;
  for (int i = 0; i < d.nk; ++i) {
    d.ksz[i] = plan.ksz[i];
    d.kst[i] = plan.kst[i];
  }
  for (int i = 0; i < d.nr; ++i) {
    d.rsz[i] = plan.rsz[i];
    d.rst[i] = plan.rst[i];
  }
  return d;
}

/// Element offset of flat index i in a row-major space of n dims.
__device__ __forceinline__ int64_t space_offset(int64_t i, const int64_t* sz, const int64_t* st, int n) {
  int64_t off = 0;
  for (int d = n - 1; d >= 0; --d) {
    off += (i % sz[d]) * st[d];
    i /= sz[d];
  }
  return off;
}

/// Reduces x (element type T) with `op`: one block per output, blockDim a power of two.
template <class T, class Op>
__global__ void reduce_kernel(const T* x, ReduceDims rd, Op op) {
  using Acc = typename Op::Acc;
  extern __shared__ __align__(16) unsigned char smem[];
  Acc* shared = reinterpret_cast<Acc*>(smem);
  for (int64_t o = blockIdx.x; o < rd.n_out; o += gridDim.x) {
    const int64_t base = space_offset(o, rd.ksz, rd.kst, rd.nk);
    Acc acc = op.init();
    for (int64_t r = threadIdx.x; r < rd.n_red; r += blockDim.x)
      acc = op.step(acc, load_math(x[base + space_offset(r, rd.rsz, rd.rst, rd.nr)]), r);
    shared[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) shared[threadIdx.x] = op.combine(shared[threadIdx.x], shared[threadIdx.x + s]);
      __syncthreads();
    }
    if (threadIdx.x == 0) op.finish(shared[0], o);
    __syncthreads();
  }
}

/// Sum (or mean with `divide`) into out elements of type O; A is double or int64.
template <class O, class A>
struct SumOp {
  using Acc = A;
  O* out;
  bool divide;
  double n;
  __device__ A init() const { return A(0); }
  template <class M>
  __device__ A step(A acc, M v, int64_t) const { return acc + static_cast<A>(v); }
  __device__ A combine(A a, A b) const { return a + b; }
  __device__ void finish(A acc, int64_t o) const {
    if (divide) out[o] = store_math<O>(static_cast<double>(acc) / n);
    else out[o] = store_math<O>(acc);
  }
};

/// Welford's running (count, mean, M2).
struct WelfordAcc {
  double n, mean, m2;
};
/// var / std into out elements of type O.
template <class O>
struct VarOp {
  using Acc = WelfordAcc;
  O* out;
  double correction;
  bool take_sqrt;
  __device__ Acc init() const { return {0, 0, 0}; }
  template <class M>
  __device__ Acc step(Acc a, M v, int64_t) const {
    const double x = static_cast<double>(v);
    a.n += 1;
    const double delta = x - a.mean;
    a.mean += delta / a.n;
    a.m2 += delta * (x - a.mean);
    return a;
  }
  __device__ Acc combine(Acc a, Acc b) const {
    if (b.n == 0) return a;
    if (a.n == 0) return b;
    const double n = a.n + b.n, delta = b.mean - a.mean;
    return {n, a.mean + delta * b.n / n, a.m2 + b.m2 + delta * delta * a.n * b.n / n};
  }
  __device__ void finish(Acc a, int64_t o) const {
    const double div = fmax(0.0, a.n - correction);
    const double v = a.m2 / div;
    out[o] = store_math<O>(take_sqrt ? sqrt(v) : v);
  }
};

/// The extreme so far and its flat index (valid = false before the first element).
template <class M>
struct ExtremeAcc {
  M value;
  int64_t index;
  bool valid;
};
/// Max (`is_max`) or min: values of type T (if non-null) and int64 indices (if non-null).
template <class T, bool is_max>
struct ExtremeOp {
  using M = math_t<T>;
  using Acc = ExtremeAcc<M>;
  T* values;
  int64_t* indices;
  __device__ static bool is_nan(M v) {
    if constexpr (std::is_floating_point_v<M>) return v != v;
    else return false;
  }
  // true when a should be kept over b (a NaN wins; ties go to the lower index)
  __device__ static bool better(const Acc& a, const Acc& b) {
    if (!b.valid) return a.valid;
    if (!a.valid) return false;
    const bool an = is_nan(a.value), bn = is_nan(b.value);
    if (an || bn) return an && (!bn || a.index < b.index);
    if (a.value == b.value) return a.index < b.index;
    return is_max ? a.value > b.value : a.value < b.value;
  }
  __device__ Acc init() const { return {M(0), 0, false}; }
  __device__ Acc step(Acc acc, M v, int64_t r) const {
    const Acc c{v, r, true};
    return better(c, acc) ? c : acc;
  }
  __device__ Acc combine(Acc a, Acc b) const { return better(b, a) ? b : a; }
  __device__ void finish(Acc a, int64_t o) const {
    if (values) values[o] = store_math<T>(a.value);
    if (indices) indices[o] = a.index;
  }
};

/// Launches reduce_kernel for x with `op` on x's device.
template <class T, class Op>
void launch_reduce(const Tensor& x, const ReduceDims& rd, const Op& op) {
  if (rd.n_out == 0) return;
  unsigned threads = 32;
  while (threads < 256 && threads < rd.n_red) threads *= 2;
  const int64_t blocks = std::min<int64_t>(rd.n_out, int64_t{1} << 20);
  const int dev = x.device().index;
  DeviceGuard guard(dev);
  reduce_kernel<T, Op><<<static_cast<unsigned>(blocks), threads, threads * sizeof(typename Op::Acc),
                         current_stream(dev)>>>(static_cast<const T*>(x.data_ptr()), rd, op);
  TORCHLET_CUDA_CHECK_LAUNCH("reduce_kernel");
}

/// Sum over the masked dims into contiguous out (x's dtype for floating x, else int64 or out's dtype).
inline void sum(const Tensor& out, const Tensor& x, const std::vector<bool>& mask, bool mean = false) {
  const ReduceDims rd = make_reduce_dims(x, mask, mean ? "mean" : "sum");
  dispatch(x.dtype(), "sum", [&]<class HX, class DX>() {
    dispatch(out.dtype(), "sum", [&]<class HO, class DO>() {
      using A = std::conditional_t<is_device_float_v<DX>, double, int64_t>;
      launch_reduce<DX>(x, rd, SumOp<DO, A>{static_cast<DO*>(out.data_ptr()), mean, static_cast<double>(rd.n_red)});
    });
  });
}

/// Variance or standard deviation over the masked dims into contiguous out (x's floating dtype).
inline void var(const Tensor& out, const Tensor& x, const std::vector<bool>& mask, int64_t correction,
                bool take_sqrt) {
  const ReduceDims rd = make_reduce_dims(x, mask, "var");
  dispatch_floating(x.dtype(), "var", [&]<class H, class D>() {
    launch_reduce<D>(x, rd, VarOp<D>{static_cast<D*>(out.data_ptr()), static_cast<double>(correction), take_sqrt});
  });
}

/// Max or min values (if defined) and indices (if defined) over the masked dims.
inline void extreme(bool is_max, const Tensor& values, const Tensor& indices, const Tensor& x,
                    const std::vector<bool>& mask) {
  const ReduceDims rd = make_reduce_dims(x, mask, is_max ? "max" : "min");
  dispatch(x.dtype(), is_max ? "max" : "min", [&]<class H, class D>() {
    D* v = values.defined() ? static_cast<D*>(values.data_ptr()) : nullptr;
    int64_t* i = indices.defined() ? static_cast<int64_t*>(indices.data_ptr()) : nullptr;
    if (is_max) launch_reduce<D>(x, rd, ExtremeOp<D, true>{v, i});
    else launch_reduce<D>(x, rd, ExtremeOp<D, false>{v, i});
  });
}
}  // namespace torchlet::cuda
