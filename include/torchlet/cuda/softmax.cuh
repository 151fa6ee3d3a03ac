#pragma once
/// \file softmax / log_softmax on CUDA along one dim of a tensor of any layout: one block per row, max-subtracted,
/// computed in float for the 16-bit floats and float32 and in double for float64 (as torchlet's CPU). Compiled by
/// nvcc only.
#include <cuda_runtime.h>

#include "torchlet/cuda/reduce.cuh"

namespace torchlet::cuda {

/// Rows of a softmax: the other dims with the input's and the output's strides, and the dim's stride in each.
struct SoftmaxDims {
  int nk = 0;
  int64_t rows = 1, n = 1, xs = 0, os = 0;
  int64_t ksz[kMaxDims] = {}, kxs[kMaxDims] = {}, kos[kMaxDims] = {};
};

/// Block-wide reduction of one value per thread (sum or max), the result returned to every thread.
template <class A, bool is_max>
__device__ A block_reduce(A v, A* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const A a = shared[threadIdx.x], b = shared[threadIdx.x + s];
      shared[threadIdx.x] = is_max ? (a != a || a > b ? a : b) : a + b;
    }
    __syncthreads();
  }
  const A r = shared[0];
  __syncthreads();
  return r;
}

/// softmax (or log_softmax) of each row.
template <class T, class A>
__global__ void softmax_kernel(const T* x, T* out, SoftmaxDims sd, bool take_log) {
  extern __shared__ __align__(16) unsigned char smem[];
  A* shared = reinterpret_cast<A*>(smem);
  for (int64_t row = blockIdx.x; row < sd.rows; row += gridDim.x) {
    const T* xr = x + space_offset(row, sd.ksz, sd.kxs, sd.nk);
    T* orow = out + space_offset(row, sd.ksz, sd.kos, sd.nk);
    A m = -INFINITY;
    for (int64_t j = threadIdx.x; j < sd.n; j += blockDim.x) {
      const A v = static_cast<A>(load_math(xr[j * sd.xs]));
      if (v != v || v > m) m = v;
    }
    m = block_reduce<A, true>(m, shared);
    A s = 0;
    for (int64_t j = threadIdx.x; j < sd.n; j += blockDim.x) s += exp(static_cast<A>(load_math(xr[j * sd.xs])) - m);
    s = block_reduce<A, false>(s, shared);
    const A log_s = log(s);
    for (int64_t j = threadIdx.x; j < sd.n; j += blockDim.x) {
      const A v = static_cast<A>(load_math(xr[j * sd.xs])) - m;
      orow[j * sd.os] = store_math<T>(take_log ? v - log_s : exp(v) / s);
    }
  }
}

/// out = softmax(x, dim) or log_softmax; out of x's sizes and dtype, any layout.
inline void softmax(const Tensor& out, const Tensor& x, int64_t dim, bool log) {
  if (x.numel() == 0) return;
  SoftmaxDims sd;
  const int64_t nd = x.dim();
  sd.n = nd == 0 ? 1 : x.size(dim);
  sd.xs = nd == 0 ? 0 : x.stride(dim);
  sd.os = nd == 0 ? 0 : out.stride(dim);
  for (int64_t d = 0; d < nd; ++d) {
    if (d == dim || x.size(d) == 1) continue;
    TORCHLET_CHECK(sd.nk < kMaxDims, ShapeError, "[softmax] too many dims for the cuda kernel: ",
                   shape_str(x.sizes()));
    sd.ksz[sd.nk] = x.size(d);
    sd.kxs[sd.nk] = x.stride(d);
    sd.kos[sd.nk] = out.stride(d);
    sd.rows *= x.size(d);
    ++sd.nk;
  }
  const int dev = x.device().index;
  DeviceGuard guard(dev);
  unsigned threads = 32;
  while (threads < 256 && threads < sd.n) threads *= 2;
  const int64_t blocks = std::min<int64_t>(sd.rows, int64_t{1} << 20);
  dispatch_floating(x.dtype(), log ? "log_softmax" : "softmax", [&]<class H, class D>() {
    using A = std::conditional_t<std::is_same_v<D, double>, double, float>;
    softmax_kernel<D, A><<<static_cast<unsigned>(blocks), threads, threads * sizeof(A), current_stream(dev)>>>(
        static_cast<const D*>(x.data_ptr()), static_cast<D*>(out.data_ptr()), sd, log);
    TORCHLET_CUDA_CHECK_LAUNCH("softmax_kernel");
  });
}
}  // namespace torchlet::cuda
