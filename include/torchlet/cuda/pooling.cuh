#pragma once
/// \file 2-D pooling on CUDA: max (with argmax indices, dilation, ceil_mode and PyTorch's NaN rule), average
/// (count_include_pad, divisor_override) and adaptive average, forward and backward, on contiguous NCHW float32 /
/// float64 tensors. These are direct kernels rather than cuDNN's pooling, which has neither indices nor dilation
/// (PyTorch's CUDA pooling is native too): one thread per output element forward; the average backwards gather
/// per input element (deterministic), the max backward scatters with atomicAdd to the saved indices. The
/// arithmetic is the CPU kernels' (backend/cpu/pooling.hpp). Compiled by nvcc only.
#include <cuda_runtime.h>

#include <type_traits>

#include "torchlet/backend/device_kernels.hpp"
#include "torchlet/cuda/allocator.cuh"
#include "torchlet/cuda/check.cuh"
#include "torchlet/cuda/types.cuh"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::cuda {
namespace detail {
/// Grid size for `n` threads of 256 (grid-stride loops cover the rest).
inline unsigned pool_blocks(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 1 << 20)); }

/// Start of average window `o` (may be negative), its end clipped to the padded input, clipped to the input.
__device__ __forceinline__ void avg_window(int64_t o, int64_t stride, int64_t pad, int64_t kernel, int64_t in,
                                           int64_t& begin, int64_t& end, int64_t& padded) {
  const int64_t b = o * stride - pad;
  const int64_t e = min(b + kernel, in + pad);
  padded = e - b;
  begin = max(b, int64_t(0));
  end = min(e, in);
}
__device__ __forceinline__ int64_t adaptive_begin(int64_t i, int64_t out, int64_t in) {
  return (i / out) * in + ((i % out) * in) / out;
}
__device__ __forceinline__ int64_t adaptive_stop(int64_t i, int64_t out, int64_t in) {
  return 1 + ((i + 1) * in - 1) / out;
}

/// The divisor of average window (oh, ow) as the CPU computes it (0 for an empty window).
__device__ __forceinline__ int64_t avg_divisor(const Pool2dShape& s, int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                                               int64_t ph, int64_t pw) {
  return s.divisor_override ? s.divisor_override : s.count_include_pad ? ph * pw : (h1 - h0) * (w1 - w0);
}

template <class T>
__global__ void max_pool_kernel(const T* x, T* out, int64_t* indices, Pool2dShape s) {
  const int64_t total = s.batch * s.channels * s.out_h * s.out_w;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % s.out_w, oh = (i / s.out_w) % s.out_h, plane = i / (s.out_w * s.out_h);
    const T* src = x + plane * s.in_h * s.in_w;
    int64_t h0 = oh * s.stride_h - s.pad_h, w0 = ow * s.stride_w - s.pad_w;
    const int64_t h1 = min(h0 + (s.kernel_h - 1) * s.dilation_h + 1, s.in_h);
    const int64_t w1 = min(w0 + (s.kernel_w - 1) * s.dilation_w + 1, s.in_w);
    while (h0 < 0) h0 += s.dilation_h;
    while (w0 < 0) w0 += s.dilation_w;
    int64_t best_idx = h0 * s.in_w + w0;
    T best = -INFINITY;
    for (int64_t h = h0; h < h1; h += s.dilation_h)
      for (int64_t w = w0; w < w1; w += s.dilation_w) {
        const T v = src[h * s.in_w + w];
        if (v > best || v != v) {
          best = v;
          best_idx = h * s.in_w + w;
        }
      }
    out[i] = best;
    if (indices) indices[i] = best_idx;
  }
}

template <class T>
__global__ void avg_pool_kernel(const T* x, T* out, Pool2dShape s) {
  const int64_t total = s.batch * s.channels * s.out_h * s.out_w;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % s.out_w, oh = (i / s.out_w) % s.out_h, plane = i / (s.out_w * s.out_h);
    const T* src = x + plane * s.in_h * s.in_w;
    int64_t h0, h1, ph, w0, w1, pw;
    avg_window(oh, s.stride_h, s.pad_h, s.kernel_h, s.in_h, h0, h1, ph);
    avg_window(ow, s.stride_w, s.pad_w, s.kernel_w, s.in_w, w0, w1, pw);
    if (h0 >= h1 || w0 >= w1) {
      out[i] = T(0);
      continue;
    }
    T sum = 0;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) sum += src[h * s.in_w + w];
    out[i] = sum / static_cast<T>(avg_divisor(s, h0, h1, w0, w1, ph, pw));
  }
}

template <class T>
__global__ void adaptive_avg_pool_kernel(const T* x, T* out, Pool2dShape s) {
  const int64_t total = s.batch * s.channels * s.out_h * s.out_w;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % s.out_w, oh = (i / s.out_w) % s.out_h, plane = i / (s.out_w * s.out_h);
    const T* src = x + plane * s.in_h * s.in_w;
    const int64_t h0 = adaptive_begin(oh, s.out_h, s.in_h), h1 = adaptive_stop(oh, s.out_h, s.in_h);
    const int64_t w0 = adaptive_begin(ow, s.out_w, s.in_w), w1 = adaptive_stop(ow, s.out_w, s.in_w);
    T sum = 0;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) sum += src[h * s.in_w + w];
    out[i] = sum / static_cast<T>(h1 - h0) / static_cast<T>(w1 - w0);
  }
}

/// grad_input must be zeroed first; each output's gradient is added at its argmax.
template <class T>
__global__ void max_pool_backward_kernel(const T* go, const int64_t* indices, T* gi, Pool2dShape s) {
  const int64_t total = s.batch * s.channels * s.out_h * s.out_w;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t plane = i / (s.out_w * s.out_h);
    atomicAdd(gi + plane * s.in_h * s.in_w + indices[i], go[i]);
  }
}

/// One thread per input element gathers the gradients of the windows that cover it.
template <class T>
__global__ void avg_pool_backward_kernel(const T* go, T* gi, Pool2dShape s) {
  const int64_t total = s.batch * s.channels * s.in_h * s.in_w;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = i % s.in_w, h = (i / s.in_w) % s.in_h, plane = i / (s.in_w * s.in_h);
    const T* g = go + plane * s.out_h * s.out_w;
    // windows o with o * stride - pad <= h < o * stride - pad + kernel
    const int64_t oh0 = max(int64_t(0), (h + s.pad_h - s.kernel_h + s.stride_h) / s.stride_h);
    const int64_t oh1 = min(s.out_h, (h + s.pad_h) / s.stride_h + 1);
    const int64_t ow0 = max(int64_t(0), (w + s.pad_w - s.kernel_w + s.stride_w) / s.stride_w);
    const int64_t ow1 = min(s.out_w, (w + s.pad_w) / s.stride_w + 1);
    T acc = 0;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      int64_t h0, h1, ph;
      avg_window(oh, s.stride_h, s.pad_h, s.kernel_h, s.in_h, h0, h1, ph);
      if (h < h0 || h >= h1) continue;
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        int64_t w0, w1, pw;
        avg_window(ow, s.stride_w, s.pad_w, s.kernel_w, s.in_w, w0, w1, pw);
        if (w < w0 || w >= w1) continue;
        acc += g[oh * s.out_w + ow] / static_cast<T>(avg_divisor(s, h0, h1, w0, w1, ph, pw));
      }
    }
    gi[i] = acc;
  }
}

template <class T>
__global__ void adaptive_avg_pool_backward_kernel(const T* go, T* gi, Pool2dShape s) {
  const int64_t total = s.batch * s.channels * s.in_h * s.in_w;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = i % s.in_w, h = (i / s.in_w) % s.in_h, plane = i / (s.in_w * s.in_h);
    const T* g = go + plane * s.out_h * s.out_w;
    // the output windows covering input h are [floor(h OH / H), ceil((h + 1) OH / H))
    const int64_t oh0 = adaptive_begin(h, s.in_h, s.out_h), oh1 = adaptive_stop(h, s.in_h, s.out_h);
    const int64_t ow0 = adaptive_begin(w, s.in_w, s.out_w), ow1 = adaptive_stop(w, s.in_w, s.out_w);
    T acc = 0;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      const int64_t b_h = adaptive_begin(oh, s.out_h, s.in_h), e_h = adaptive_stop(oh, s.out_h, s.in_h);
      if (h < b_h || h >= e_h) continue;
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        const int64_t b_w = adaptive_begin(ow, s.out_w, s.in_w), e_w = adaptive_stop(ow, s.out_w, s.in_w);
        if (w < b_w || w >= e_w) continue;
        const int64_t kh = e_h - b_h, kw = e_w - b_w;
        acc += g[oh * s.out_w + ow] / static_cast<T>(kh) / static_cast<T>(kw);
      }
    }
    gi[i] = acc;
  }
}

inline void check_pool_dtype(const Tensor& t) {
  TORCHLET_CHECK(t.dtype() == kFloat32 || t.dtype() == kFloat64, DTypeError, "[pooling] the cuda backend pools "
                 "float32 and float64 (16-bit inputs are computed in float32), got ", t.dtype());
}
}  // namespace detail

/// DeviceKernels::pool2d_forward (see its contract).
inline void pool2d_forward(PoolKind kind, const Tensor& out, const Tensor& indices, const Tensor& x,
                           const Pool2dShape& s) {
  detail::check_pool_dtype(x);
  const int64_t n = out.numel();
  if (n == 0) return;
  const int dev = x.device().index;
  DeviceGuard guard(dev);
  const cudaStream_t stream = current_stream(dev);
  auto run = [&]<class T>() {
    const T* xp = static_cast<const T*>(x.data_ptr());
    T* op = static_cast<T*>(out.data_ptr());
    switch (kind) {
      case PoolKind::Max:
        detail::max_pool_kernel<T><<<detail::pool_blocks(n), 256, 0, stream>>>(
            xp, op, indices.defined() ? static_cast<int64_t*>(indices.data_ptr()) : nullptr, s);
        break;
      case PoolKind::Avg: detail::avg_pool_kernel<T><<<detail::pool_blocks(n), 256, 0, stream>>>(xp, op, s); break;
      case PoolKind::AdaptiveAvg:
        detail::adaptive_avg_pool_kernel<T><<<detail::pool_blocks(n), 256, 0, stream>>>(xp, op, s);
        break;
    }
    TORCHLET_CUDA_CHECK_LAUNCH("pool2d forward kernel");
  };
  if (x.dtype() == kFloat32) run.template operator()<float>();
  else run.template operator()<double>();
}

/// DeviceKernels::pool2d_backward (see its contract).
inline void pool2d_backward(PoolKind kind, const Tensor& grad_input, const Tensor& grad_output, const Tensor& indices,
                            const Pool2dShape& s) {
  detail::check_pool_dtype(grad_input);
  if (grad_input.numel() == 0) return;
  const int dev = grad_input.device().index;
  DeviceGuard guard(dev);
  const cudaStream_t stream = current_stream(dev);
  const int64_t n_out = grad_output.numel(), n_in = grad_input.numel();
  auto run = [&]<class T>() {
    const T* go = static_cast<const T*>(grad_output.data_ptr());
    T* gi = static_cast<T*>(grad_input.data_ptr());
    switch (kind) {
      case PoolKind::Max:
        TORCHLET_CUDA_CHECK(cudaMemsetAsync(gi, 0, static_cast<size_t>(grad_input.nbytes()), stream));
        if (n_out > 0)
          detail::max_pool_backward_kernel<T><<<detail::pool_blocks(n_out), 256, 0, stream>>>(
              go, static_cast<const int64_t*>(indices.data_ptr()), gi, s);
        break;
      case PoolKind::Avg:
        detail::avg_pool_backward_kernel<T><<<detail::pool_blocks(n_in), 256, 0, stream>>>(go, gi, s);
        break;
      case PoolKind::AdaptiveAvg:
        detail::adaptive_avg_pool_backward_kernel<T><<<detail::pool_blocks(n_in), 256, 0, stream>>>(go, gi, s);
        break;
    }
    TORCHLET_CUDA_CHECK_LAUNCH("pool2d backward kernel");
  };
  if (grad_input.dtype() == kFloat32) run.template operator()<float>();
  else run.template operator()<double>();
}
}  // namespace torchlet::cuda
