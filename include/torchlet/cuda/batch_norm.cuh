#pragma once
/// \file Batch normalisation on cuDNN (spatial mode): training forward with cudnnBatchNormalizationForwardTraining
/// (exponentialAverageFactor = PyTorch's momentum, so running = (1 - m) * running + m * batch, the variance's
/// unbiased, as cuDNN and PyTorch both do), evaluation forward with cudnnBatchNormalizationForwardInference, and
/// the training backward with cudnnBatchNormalizationBackward from the saved mean and inverse std. The
/// evaluation backward, which cuDNN has no call for, is a per-channel kernel. Inputs are float32 or float64,
/// contiguous or channels-last; the statistics are float32 (float64 for float64) inside and float64 at the
/// DeviceKernels seam. Compiled by nvcc only.
#include <cudnn.h>
#include <cuda_runtime.h>

#include <cmath>
#include <limits>
#include <type_traits>

#include "torchlet/backend/device_kernels.hpp"
#include "torchlet/cuda/allocator.cuh"
#include "torchlet/cuda/block_sum.cuh"
#include "torchlet/cuda/check.cuh"
#include "torchlet/cuda/conv.cuh"
#include "torchlet/cuda/copy.cuh"
#include "torchlet/cuda/elementwise.cuh"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::cuda {
namespace detail {
/// x as cuDNN sees it: [N, C, H, W] with x's own strides (a 2-D or 3-D input is [N, C, S, 1]).
struct BnTensorDesc {
  cudnnTensorDescriptor_t desc = nullptr;
  BnTensorDesc(const Tensor& x) {
    const cudnnDataType_t dt = x.dtype() == kFloat64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    int64_t n[4], s[4];
    if (x.dim() == 4) {
      for (int i = 0; i < 4; ++i) n[i] = x.size(i), s[i] = x.stride(i);
    } else {  // [N, C] or [N, C, S], contiguous
      const int64_t S = x.dim() == 3 ? x.size(2) : 1;
      n[0] = x.size(0), n[1] = x.size(1), n[2] = S, n[3] = 1;
      s[0] = x.size(1) * S, s[1] = S, s[2] = 1, s[3] = 1;
    }
    TORCHLET_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc));
    TORCHLET_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(desc, dt, int(n[0]), int(n[1]), int(n[2]), int(n[3]),
                                                      int(s[0]), int(s[1]), int(s[2]), int(s[3])));
  }
  ~BnTensorDesc() { cudnnDestroyTensorDescriptor(desc); }
  BnTensorDesc(const BnTensorDesc&) = delete;
  BnTensorDesc& operator=(const BnTensorDesc&) = delete;
};

/// The per-channel descriptor cuDNN derives from x's (float for float32, double for float64).
struct BnParamDesc {
  cudnnTensorDescriptor_t desc = nullptr;
  explicit BnParamDesc(const BnTensorDesc& x) {
    TORCHLET_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc));
    TORCHLET_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(desc, x.desc, CUDNN_BATCHNORM_SPATIAL));
  }
  ~BnParamDesc() { cudnnDestroyTensorDescriptor(desc); }
  BnParamDesc(const BnParamDesc&) = delete;
  BnParamDesc& operator=(const BnParamDesc&) = delete;
};

/// A defined per-channel tensor, or a new [C] one filled with `value` (weight 1, bias 0 when undefined).
inline Tensor channel_or(const Tensor& t, int64_t channels, DType dtype, Device device, double value) {
  if (t.defined()) return t;
  Tensor r = empty({channels}, TensorOptions(dtype, device));
  fill(r, value);
  return r;
}

/// save_mean = running_mean, save_invstd = 1 / sqrt(running_var + eps) (double results).
template <class T>
__global__ void bn_eval_stats_kernel(const T* rm, const T* rv, double* mean, double* invstd, int64_t C, double eps) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  mean[c] = static_cast<double>(rm[c]);
  invstd[c] = 1.0 / sqrt(static_cast<double>(rv[c]) + eps);
}

/// The evaluation backward, one block per channel over x3 [N, C, S] with strides (sN, sC, sS) for dy and x:
/// sum_dy and dot = sum((x - mean) dy) accumulated in double; grad_input = dy * invstd * weight.
template <class T>
__global__ void bn_eval_backward_kernel(const T* x, const T* dy, const T* w, const double* mean, const double* invstd,
                                        T* gi, T* gw, T* gb, int64_t N, int64_t C, int64_t S, int64_t sN,
                                        int64_t sC, int64_t sS, int64_t gN, int64_t gC, int64_t gS) {
  __shared__ double sums[2][256];
  const int64_t c = blockIdx.x;
  const double m = mean[c], is = invstd[c];
  const T scale = static_cast<T>(is * (w ? static_cast<double>(w[c]) : 1.0));
  double s = 0, d = 0;
  for (int64_t i = threadIdx.x; i < N * S; i += blockDim.x) {
    const int64_t n = i / S, k = i % S;
    const T g = dy[n * sN + c * sC + k * sS];
    if (gw || gb) {
      s += static_cast<double>(g);
      d += (static_cast<double>(x[n * sN + c * sC + k * sS]) - m) * static_cast<double>(g);
    }
    if (gi) gi[n * gN + c * gC + k * gS] = g * scale;
  }
  sums[0][threadIdx.x] = s;
  sums[1][threadIdx.x] = d;
  block_sum_pairs(sums);
  if (threadIdx.x == 0) {
    if (gb) gb[c] = static_cast<T>(sums[0][0]);
    if (gw) gw[c] = static_cast<T>(sums[1][0] == 0 ? 0.0 : sums[1][0] * is);
  }
}

inline void check_bn_dtype(const Tensor& x) {
  TORCHLET_CHECK(x.dtype() == kFloat32 || x.dtype() == kFloat64, DTypeError, "[batch_norm] the cuda backend "
                 "normalises float32 and float64 (16-bit inputs are computed in float32), got ", x.dtype());
}

/// [N, C, S] strides of a contiguous or channels-last tensor of 2 to 4 dims.
inline void bn_strides(const Tensor& t, int64_t& sN, int64_t& sC, int64_t& sS) {
  sN = t.stride(0), sC = t.stride(1);
  sS = t.dim() == 2 ? 1 : t.stride(t.dim() - 1);
}
}  // namespace detail

/// DeviceKernels::batch_norm_forward on cuDNN (see its contract).
inline void batch_norm_forward(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd, const Tensor& x,
                               const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                               const Tensor& running_var, bool training, double momentum, double eps) {
  detail::check_bn_dtype(x);
  TORCHLET_CHECK(x.dim() <= 4, ShapeError, "[batch_norm] the cuda backend takes inputs of 2 to 4 dims, got ",
                 shape_str(x.sizes()));
  const Device dev = x.device();
  DeviceGuard guard(dev.index);
  const cudaStream_t stream = current_stream(dev.index);
  const int64_t C = x.size(1);
  const DType stat_t = x.dtype() == kFloat64 ? kFloat64 : kFloat32;  // what cuDNN reads and writes per channel
  // evaluation's saved statistics: the running mean and 1 / sqrt(running_var + eps)
  auto eval_stats = [&] {
    dispatch_floating(x.dtype(), "batch_norm", [&]<class H, class D>() {
      if constexpr (std::is_same_v<D, float> || std::is_same_v<D, double>)
        detail::bn_eval_stats_kernel<D><<<unsigned((C + 255) / 256), 256, 0, stream>>>(
            static_cast<const D*>(running_mean.data_ptr()), static_cast<const D*>(running_var.data_ptr()),
            static_cast<double*>(save_mean.data_ptr()), static_cast<double*>(save_invstd.data_ptr()), C, eps);
    });
    TORCHLET_CUDA_CHECK_LAUNCH("bn_eval_stats_kernel");
  };
  if (x.numel() == 0 || (training && x.numel() / C <= 1)) {  // nothing to normalise: statistics only
    if (training) {
      fill(save_mean, std::numeric_limits<double>::quiet_NaN());
      fill(save_invstd, std::numeric_limits<double>::quiet_NaN());
    } else if (C > 0) {
      eval_stats();
    }
    return;
  }
  const cudnnHandle_t h = cudnn_handle(dev.index, stream);
  const detail::BnTensorDesc xd(x), yd(out);
  const detail::BnParamDesc pd(xd);
  const Tensor w = detail::channel_or(weight, C, x.dtype(), dev, 1.0);
  const Tensor b = detail::channel_or(bias, C, x.dtype(), dev, 0.0);
  const float one_f = 1, zero_f = 0;
  const double one_d = 1, zero_d = 0;
  const void* one = x.dtype() == kFloat64 ? static_cast<const void*>(&one_d) : &one_f;
  const void* zero = x.dtype() == kFloat64 ? static_cast<const void*>(&zero_d) : &zero_f;
  if (training) {
    // cuDNN writes its saved statistics in stat_t; the seam's are float64
    const Tensor sm = stat_t == kFloat64 ? save_mean : empty({C}, TensorOptions(stat_t, dev));
    const Tensor si = stat_t == kFloat64 ? save_invstd : empty({C}, TensorOptions(stat_t, dev));
    TORCHLET_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
        h, CUDNN_BATCHNORM_SPATIAL, one, zero, xd.desc, x.data_ptr(), yd.desc, out.data_ptr(), pd.desc, w.data_ptr(),
        b.data_ptr(), momentum, running_mean.defined() ? running_mean.data_ptr() : nullptr,
        running_var.defined() ? running_var.data_ptr() : nullptr, eps, sm.data_ptr(), si.data_ptr()));
    if (stat_t != kFloat64) {
      copy_between(save_mean, sm);
      copy_between(save_invstd, si);
    }
    return;
  }
  TORCHLET_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
      h, CUDNN_BATCHNORM_SPATIAL, one, zero, xd.desc, x.data_ptr(), yd.desc, out.data_ptr(), pd.desc, w.data_ptr(),
      b.data_ptr(), running_mean.data_ptr(), running_var.data_ptr(), eps));
  eval_stats();
}

/// DeviceKernels::batch_norm_backward: cuDNN in training, a per-channel kernel in evaluation.
inline void batch_norm_backward(const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias,
                                const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                                const Tensor& save_invstd, bool training, double eps) {
  detail::check_bn_dtype(x);
  const Device dev = x.device();
  DeviceGuard guard(dev.index);
  const cudaStream_t stream = current_stream(dev.index);
  const int64_t C = x.size(1), N = x.size(0), S = x.numel() / std::max<int64_t>(1, N * C);
  if (x.numel() == 0) {  // empty batch: zero gradients
    if (grad_weight.defined()) fill(grad_weight, 0);
    if (grad_bias.defined()) fill(grad_bias, 0);
    return;
  }
  if (!training) {
    int64_t sN, sC, sS, gN, gC, gS;
    detail::bn_strides(x, sN, sC, sS);
    if (grad_input.defined()) detail::bn_strides(grad_input, gN, gC, gS);
    else gN = gC = gS = 0;
    dispatch_floating(x.dtype(), "batch_norm backward", [&]<class H, class D>() {
      if constexpr (std::is_same_v<D, float> || std::is_same_v<D, double>) {
        auto ptr = [](const Tensor& t) { return t.defined() ? static_cast<D*>(t.data_ptr()) : nullptr; };
        detail::bn_eval_backward_kernel<D><<<unsigned(C), 256, 0, stream>>>(
            ptr(x), ptr(grad_out), ptr(weight), static_cast<const double*>(save_mean.data_ptr()),
            static_cast<const double*>(save_invstd.data_ptr()), ptr(grad_input), ptr(grad_weight), ptr(grad_bias), N,
            C, S, sN, sC, sS, gN, gC, gS);
      }
    });
    TORCHLET_CUDA_CHECK_LAUNCH("bn_eval_backward_kernel");
    return;
  }
  const cudnnHandle_t h = cudnn_handle(dev.index, stream);
  const Tensor gi =
      grad_input.defined() ? grad_input : empty(x.sizes(), TensorOptions(x.dtype(), dev), x.suggest_memory_format());
  const detail::BnTensorDesc xd(x), dyd(grad_out), dxd(gi);
  const detail::BnParamDesc pd(xd);
  const DType stat_t = x.dtype() == kFloat64 ? kFloat64 : kFloat32;
  const Tensor w = detail::channel_or(weight, C, x.dtype(), dev, 1.0);
  const Tensor gw = grad_weight.defined() ? grad_weight : empty({C}, TensorOptions(x.dtype(), dev));
  const Tensor gb = grad_bias.defined() ? grad_bias : empty({C}, TensorOptions(x.dtype(), dev));
  Tensor sm = save_mean, si = save_invstd;
  if (stat_t != kFloat64) {
    sm = empty({C}, TensorOptions(stat_t, dev));
    si = empty({C}, TensorOptions(stat_t, dev));
    copy_between(sm, save_mean);
    copy_between(si, save_invstd);
  }
  const float one_f = 1, zero_f = 0;
  const double one_d = 1, zero_d = 0;
  const void* one = x.dtype() == kFloat64 ? static_cast<const void*>(&one_d) : &one_f;
  const void* zero = x.dtype() == kFloat64 ? static_cast<const void*>(&zero_d) : &zero_f;
  TORCHLET_CUDNN_CHECK(cudnnBatchNormalizationBackward(
      h, CUDNN_BATCHNORM_SPATIAL, one, zero, one, zero, xd.desc, x.data_ptr(), dyd.desc, grad_out.data_ptr(),
      dxd.desc, gi.data_ptr(), pd.desc, w.data_ptr(), gw.data_ptr(), gb.data_ptr(), eps, sm.data_ptr(),
      si.data_ptr()));
}
}  // namespace torchlet::cuda
