#pragma once
/// \file The negative log-likelihood loss on CUDA over log-probabilities [N, C, S] and int64 targets [N, S]
/// (cross_entropy is log_softmax + nll in the op layer): the forward writes the per-element losses and one
/// block sums them and the weights in double (PyTorch's weighted mean divides by the summed weights of the targets
/// not ignored) and reports a target out of range through async_error.cuh, without a host synchronisation; the
/// backward writes the whole input gradient (zero except at the targets). Compiled by nvcc only.
#include <cuda_runtime.h>

#include "torchlet/cuda/allocator.cuh"
#include "torchlet/cuda/async_error.cuh"
#include "torchlet/cuda/block_sum.cuh"
#include "torchlet/cuda/check.cuh"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::cuda {
namespace detail {
constexpr int kNllThreads = 256;

/// One block: losses (when wanted), their double sum into *total (divided by the weight sum when `mean`) and the
/// weight sum into *total_weight.
template <class T>
__global__ void nll_forward_kernel(const T* x, const int64_t* target, const T* weight, T* losses, T* total,
                                   double* total_weight, int64_t N, int64_t C, int64_t S, int64_t ignore_index,
                                   bool mean, AsyncErrorRecord* errors, int device) {
  __shared__ double sums[2][kNllThreads];
  double s = 0, ws = 0;
  for (int64_t k = threadIdx.x; k < N * S; k += blockDim.x) {
    const int64_t n = k / S, j = k % S, cls = target[k];
    double loss = 0;
    if (cls != ignore_index && (cls < 0 || cls >= C)) {
      report_index_error(errors, device, cls, C);  // raised by the host at its next synchronisation
    } else if (cls != ignore_index) {
      const double wt = weight ? static_cast<double>(weight[cls]) : 1.0;
      loss = -wt * static_cast<double>(x[(n * C + cls) * S + j]);
      s += loss;
      ws += wt;
    }
    if (losses) losses[k] = static_cast<T>(loss);
  }
  sums[0][threadIdx.x] = s;
  sums[1][threadIdx.x] = ws;
  block_sum_pairs(sums);
  if (threadIdx.x == 0) {
    *total_weight = sums[1][0];
    if (total) *total = static_cast<T>(mean ? sums[0][0] / sums[1][0] : sums[0][0]);
  }
}

/// grad_input [N, C, S]: zero, except -weight[t] * scale * g at the targets (the CPU's arithmetic in T).
template <class T>
__global__ void nll_backward_kernel(T* gi, const T* go, const int64_t* target, const T* weight,
                                    const double* total_weight, int64_t N, int64_t C, int64_t S,
                                    int64_t ignore_index, bool per_element, bool mean) {
  const int64_t total = N * C * S;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % S, c = (i / S) % C, n = i / (S * C), k = n * S + j;
    const int64_t cls = target[k];
    T v = 0;
    if (cls == c && cls != ignore_index) {
      const double scale = per_element ? 1.0 : static_cast<double>(go[0]) / (mean ? *total_weight : 1.0);
      const T wt = weight ? weight[cls] : T(1);
      const T g = per_element ? go[k] : T(1);
      v = -wt * static_cast<T>(scale) * g;
    }
    gi[i] = v;
  }
}

inline void check_nll_dtype(const Tensor& t) {
  TORCHLET_CHECK(t.dtype() == kFloat32 || t.dtype() == kFloat64, DTypeError, "[nll_loss] the cuda backend takes "
                 "float32 and float64 (16-bit inputs are computed in float32), got ", t.dtype());
}
}  // namespace detail

/// DeviceKernels::nll_forward (see its contract).
inline void nll_forward(const Tensor& losses, const Tensor& total, const Tensor& total_weight, const Tensor& input,
                        const Tensor& target, const Tensor& weight, int64_t ignore_index, bool mean) {
  detail::check_nll_dtype(input);
  const int dev = input.device().index;
  DeviceGuard guard(dev);
  const int64_t N = input.size(0), C = input.size(1), S = input.size(2);
  auto run = [&]<class T>() {
    auto ptr = [](const Tensor& t) { return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr; };
    detail::nll_forward_kernel<T><<<1, detail::kNllThreads, 0, current_stream(dev)>>>(
        ptr(input), static_cast<const int64_t*>(target.data_ptr()), ptr(weight), ptr(losses), ptr(total),
        static_cast<double*>(total_weight.data_ptr()), N, C, S, ignore_index, mean, async_error_record(), dev);
    TORCHLET_CUDA_CHECK_LAUNCH("nll_forward_kernel");
  };
  if (input.dtype() == kFloat32) run.template operator()<float>();
  else run.template operator()<double>();
}

/// DeviceKernels::nll_backward (see its contract).
inline void nll_backward(const Tensor& grad_input, const Tensor& grad_out, const Tensor& target, const Tensor& weight,
                         const Tensor& total_weight, int64_t ignore_index, bool per_element, bool mean) {
  detail::check_nll_dtype(grad_input);
  const int64_t n = grad_input.numel();
  if (n == 0) return;
  const int dev = grad_input.device().index;
  DeviceGuard guard(dev);
  const int64_t N = grad_input.size(0), C = grad_input.size(1), S = grad_input.size(2);
  auto run = [&]<class T>() {
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 1 << 20));
    detail::nll_backward_kernel<T><<<blocks, 256, 0, current_stream(dev)>>>(
        static_cast<T*>(grad_input.data_ptr()), static_cast<const T*>(grad_out.data_ptr()),
        static_cast<const int64_t*>(target.data_ptr()),
        weight.defined() ? static_cast<const T*>(weight.data_ptr()) : nullptr,
        static_cast<const double*>(total_weight.data_ptr()), N, C, S, ignore_index, per_element, mean);
    TORCHLET_CUDA_CHECK_LAUNCH("nll_backward_kernel");
  };
  if (grad_input.dtype() == kFloat32) run.template operator()<float>();
  else run.template operator()<double>();
}
}  // namespace torchlet::cuda
