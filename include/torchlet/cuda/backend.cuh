#pragma once
/// \file torchlet's CUDA backend: DeviceKernels implemented with the kernels of include/torchlet/cuda/, and its
/// registration (caching allocator, device copy hook, kernels for DeviceType::CUDA) before main. Compiled by nvcc
/// only, through include/torchlet/cuda.cuh.
#include "torchlet/backend/device_kernels.hpp"
#include "torchlet/cuda/allocator.cuh"
#include "torchlet/cuda/async_error.cuh"
#include "torchlet/cuda/batch_norm.cuh"
#include "torchlet/cuda/blas.cuh"
#include "torchlet/cuda/conv.cuh"
#include "torchlet/cuda/copy.cuh"
#include "torchlet/cuda/elementwise.cuh"
#include "torchlet/cuda/loss.cuh"
#include "torchlet/cuda/pooling.cuh"
#include "torchlet/cuda/optimizer.cuh"
#include "torchlet/cuda/reduce.cuh"
#include "torchlet/cuda/softmax.cuh"

namespace torchlet::cuda {

/// DeviceKernels on CUDA devices (see backend/device_kernels.hpp for each method's contract).
class CudaKernels final : public DeviceKernels {
 public:
  void fill(const Tensor& out, const Scalar& value) override { cuda::fill(out, value); }
  void copy(const Tensor& dst, const Tensor& src) override { copy_between(dst, src); }
  void unary(UnaryOp op, const Tensor& out, const Tensor& x) override { cuda::unary(op, out, x); }
  void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b, const Scalar& alpha) override {
    cuda::binary(op, out, a, b, alpha);
  }
  void binary_scalar(BinaryOp op, const Tensor& out, const Tensor& x, const Scalar& s) override {
    cuda::binary(op, out, x, Tensor(), 1, s);
  }
  void clamp(const Tensor& out, const Tensor& x, const std::optional<Scalar>& lo,
             const std::optional<Scalar>& hi) override {
    cuda::clamp(out, x, lo, hi);
  }
  void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) override {
    cuda::where(out, cond, a, b);
  }
  void sum(const Tensor& out, const Tensor& x, const std::vector<bool>& mask) override { cuda::sum(out, x, mask); }
  void mean(const Tensor& out, const Tensor& x, const std::vector<bool>& mask) override {
    cuda::sum(out, x, mask, /*mean=*/true);
  }
  void var(const Tensor& out, const Tensor& x, const std::vector<bool>& mask, int64_t correction,
           bool take_sqrt) override {
    cuda::var(out, x, mask, correction, take_sqrt);
  }
  void extreme(bool is_max, const Tensor& values, const Tensor& indices, const Tensor& x,
               const std::vector<bool>& mask) override {
    cuda::extreme(is_max, values, indices, x, mask);
  }
  void matmul(const Tensor& out, const Tensor& a, const Tensor& b, const Scalar& alpha, const Scalar& beta) override {
    cuda::matmul(out, a, b, alpha, beta);
  }
  void softmax(const Tensor& out, const Tensor& x, int64_t dim, bool log) override { cuda::softmax(out, x, dim, log); }
  void conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                      const Conv2dShape& shape) override {
    cuda::conv2d_forward(out, x, w, bias, shape);
  }
  void conv2d_backward_input(const Tensor& grad_input, const Tensor& grad_output, const Tensor& w,
                             const Conv2dShape& shape) override {
    cuda::conv2d_backward_input(grad_input, grad_output, w, shape);
  }
  void conv2d_backward_weight(const Tensor& grad_weight, const Tensor& grad_output, const Tensor& x,
                              const Conv2dShape& shape) override {
    cuda::conv2d_backward_weight(grad_weight, grad_output, x, shape);
  }
  void conv2d_backward_bias(const Tensor& grad_bias, const Tensor& grad_output, const Conv2dShape& shape) override {
    cuda::conv2d_backward_bias(grad_bias, grad_output, shape);
  }
  // ---- normalization, pooling, losses (dropout and cat compose routed ops) ----
  void batch_norm_forward(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd, const Tensor& x,
                          const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                          const Tensor& running_var, bool training, double momentum, double eps) override {
    cuda::batch_norm_forward(out, save_mean, save_invstd, x, weight, bias, running_mean, running_var, training,
                             momentum, eps);
  }
  void batch_norm_backward(const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias,
                           const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                           const Tensor& save_invstd, bool training, double eps) override {
    cuda::batch_norm_backward(grad_input, grad_weight, grad_bias, grad_out, x, weight, save_mean, save_invstd,
                              training, eps);
  }
  void pool2d_forward(PoolKind kind, const Tensor& out, const Tensor& indices, const Tensor& x,
                      const Pool2dShape& shape) override {
    cuda::pool2d_forward(kind, out, indices, x, shape);
  }
  void pool2d_backward(PoolKind kind, const Tensor& grad_input, const Tensor& grad_output, const Tensor& indices,
                       const Pool2dShape& shape) override {
    cuda::pool2d_backward(kind, grad_input, grad_output, indices, shape);
  }
  void nll_forward(const Tensor& losses, const Tensor& total, const Tensor& total_weight, const Tensor& input,
                   const Tensor& target, const Tensor& weight, int64_t ignore_index, bool mean) override {
    cuda::nll_forward(losses, total, total_weight, input, target, weight, ignore_index, mean);
  }
  void nll_backward(const Tensor& grad_input, const Tensor& grad_out, const Tensor& target, const Tensor& weight,
                    const Tensor& total_weight, int64_t ignore_index, bool per_element, bool mean) override {
    cuda::nll_backward(grad_input, grad_out, target, weight, total_weight, ignore_index, per_element, mean);
  }
  void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, bool first,
                const SGDStepOptions& options) override {
    cuda::sgd_step(param, grad, momentum_buffer, first, options);
  }
  // ---- multi-tensor optimizer steps (cuda/optimizer.cuh) ----
  void sgd_steps(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& momentum_buffers, const std::vector<bool>& firsts,
                 const SGDStepOptions& options) override {
    cuda::sgd_steps(params, grads, momentum_buffers, firsts, options);
  }
  void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                 const std::vector<Tensor>& max_exp_avg_sqs, const std::vector<double>& steps,
                 const AdamStepOptions& options) override {
    cuda::adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, options);
  }
};

/// The process's CUDA kernels.
inline CudaKernels& kernels() {
  static CudaKernels* k = new CudaKernels();
  return *k;
}

/// Number of CUDA devices visible (0 without a driver or a device; never raises).
inline int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}
/// True when at least one CUDA device is usable, like torch.cuda.is_available().
inline bool is_available() { return device_count() > 0; }

/// Waits for the work queued on the current stream of cuda:`index`.
inline void synchronize(int index = 0) {
  DeviceGuard guard(index);
  TORCHLET_CUDA_CHECK(cudaStreamSynchronize(current_stream(index)));
  raise_async_errors();  // e.g. a class index out of range that nll_loss found on the device
}

/// Registers the caching allocator, the copy hook and the kernels for DeviceType::CUDA (idempotent).
inline bool register_backend() {
  set_allocator(DeviceType::CUDA, &caching_allocator());
  torchlet::detail::device_copy_hook() = &copy_between;
  set_device_kernels(DeviceType::CUDA, &kernels());
  return true;
}

namespace detail {
/// Registers the backend before main in the translation unit that includes torchlet/cuda.cuh.
inline const bool backend_registered = register_backend();
}  // namespace detail
}  // namespace torchlet::cuda
