#pragma once
/// \file The seam between the ops and a non-CPU backend: DeviceKernels, the abstract set of kernels a device
/// computes (no CUDA types here), and the registry the ops look them up in. The CPU path never goes through it:
/// every op computes CPU tensors itself and calls device_kernels() only when its operands live elsewhere.
/// The CUDA backend (include/torchlet/cuda/backend.cuh) registers its implementation before main.
#include <cstdint>
#include <optional>
#include <vector>

#include "torchlet/core/device.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/tensor/scalar.hpp"

namespace torchlet {

class Tensor;

/// Elementwise functions of one tensor, computed in the output's dtype (the op layer converts the input first).
enum class UnaryOp : uint8_t {
  Neg,   ///< -x
  Abs,   ///< |x|
  Exp,   ///< e^x
  Log,   ///< ln x
  Sqrt,  ///< square root
  Relu,  ///< max(x, 0), NaN kept
};

/// Elementwise functions of two operands, computed in the operands' dtype (opmath for 16-bit floats); the
/// comparisons write bool.
enum class BinaryOp : uint8_t {
  Add,       ///< a + alpha * b
  Sub,       ///< a - alpha * b
  Mul,       ///< a * b
  Div,       ///< a / b (true division)
  DivTrunc,  ///< a / b rounded toward zero
  DivFloor,  ///< a / b rounded down (Python's //)
  Pow,       ///< a ** b
  Maximum,   ///< max(a, b), NaN if either is NaN
  Minimum,   ///< min(a, b), NaN if either is NaN
  Eq,        ///< a == b (bool)
  Ne,        ///< a != b (bool)
  Lt,        ///< a < b (bool)
  Le,        ///< a <= b (bool)
  Gt,        ///< a > b (bool)
  Ge,        ///< a >= b (bool)
};

/// The name of a unary op ("neg", "exp", ...) for messages and test tables.
inline const char* op_name(UnaryOp op) {
  static constexpr const char* names[] = {"neg", "abs", "exp", "log", "sqrt", "relu"};
  return names[static_cast<int>(op)];
}
/// The name of a binary op ("add", "lt", ...) for messages and test tables.
inline const char* op_name(BinaryOp op) {
  static constexpr const char* names[] = {"add", "sub", "mul", "div", "div_trunc", "div_floor", "pow", "maximum",
                                          "minimum", "eq", "ne", "lt", "le", "gt", "ge"};
  return names[static_cast<int>(op)];
}
/// True for the comparisons, whose result is bool.
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::Eq; }

/// Options of one SGD step (torch.optim.SGD's, without the learning-rate schedule).
struct SGDStepOptions {
  double lr = 1e-3;          ///< Learning rate.
  double momentum = 0;       ///< Momentum factor.
  double dampening = 0;      ///< Dampening of the momentum.
  double weight_decay = 0;   ///< L2 penalty.
  bool nesterov = false;     ///< Nesterov momentum.
  bool maximize = false;     ///< Ascend instead of descend.
};

/// Options of one Adam or AdamW step (torch.optim.Adam's / AdamW's, without the learning-rate schedule).
struct AdamStepOptions {
  double lr = 1e-3;            ///< Learning rate.
  double beta1 = 0.9;          ///< Decay rate of the first moment.
  double beta2 = 0.999;        ///< Decay rate of the second moment.
  double eps = 1e-8;           ///< Added to the denominator.
  double weight_decay = 0;     ///< L2 penalty (Adam) or decoupled decay (AdamW, `decoupled`).
  bool amsgrad = false;        ///< Keep and use the maximum of past second moments.
  bool maximize = false;       ///< Ascend instead of descend.
  bool decoupled = false;      ///< AdamW: param *= 1 - lr * weight_decay instead of adding it to the gradient.
};

/// The geometry of a batched 2-D convolution (all sizes already checked by the op layer).
struct Conv2dShape {
  int64_t batch = 1, in_channels = 1, in_h = 1, in_w = 1;  ///< input [N, C, H, W]
  int64_t out_channels = 1, kernel_h = 1, kernel_w = 1;     ///< weight [Cout, C / groups, kh, kw]
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;                                       ///< channel groups
  int64_t out_h = 1, out_w = 1;                             ///< output [N, Cout, Ho, Wo]
  bool channels_last = false;  ///< x, w, out and their gradients are channels-last (NHWC) instead of NCHW
};

/// The kind of a 2-D pooling.
enum class PoolKind : uint8_t {
  Max,          ///< maximum over the window (padding never wins, NaN is the maximum), with the argmax index
  Avg,          ///< average over the window, divisor as Pool2dShape says
  AdaptiveAvg,  ///< average over PyTorch's adaptive windows [floor(i * in / out), ceil((i + 1) * in / out))
};

/// The geometry of a batched 2-D pooling (all sizes already checked by the op layer). AdaptiveAvg uses only the
/// sizes; Avg ignores dilation.
struct Pool2dShape {
  int64_t batch = 1, channels = 1, in_h = 1, in_w = 1;      ///< input [N, C, H, W]
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;                   ///< Max only
  int64_t out_h = 1, out_w = 1;                             ///< output [N, C, Ho, Wo]
  bool count_include_pad = true;                            ///< Avg: padded zeros count in the divisor
  int64_t divisor_override = 0;                             ///< Avg: divide every window by this when non-zero
};

/// What a non-CPU device computes. Every tensor handed to a kernel lives on that device; outputs are new,
/// contiguous (or channels-last) tensors the op layer allocated with the right dtype and shape, and inputs are
/// already converted to the compute dtype and broadcast (expand()ed, so strides may be 0) to the output's shape
/// unless a method says otherwise. Kernels may run asynchronously on the device's current stream.
class DeviceKernels {
 public:
  virtual ~DeviceKernels() = default;

  // ---- memory ----
  /// Sets every element of `out` (any strides) to `value` converted to out's dtype.
  virtual void fill(const Tensor& out, const Scalar& value) = 0;
  /// dst[i] = convert(src[i]) for two tensors of the same shape on this device (any strides and dtypes).
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;

  // ---- elementwise ----
  /// out = op(x); x has out's dtype and shape.
  virtual void unary(UnaryOp op, const Tensor& out, const Tensor& x) = 0;
  /// out = op(a, b) (Add/Sub use `alpha`); a and b share one dtype, out has it too, or bool for comparisons.
  virtual void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b, const Scalar& alpha) = 0;
  /// out = op(x, s) with the number `s` first cast to x's dtype (as PyTorch does); out as for binary().
  virtual void binary_scalar(BinaryOp op, const Tensor& out, const Tensor& x, const Scalar& s) = 0;
  /// out = min(max(x, lo), hi) with either bound absent; NaN stays NaN.
  virtual void clamp(const Tensor& out, const Tensor& x, const std::optional<Scalar>& lo,
                     const std::optional<Scalar>& hi) = 0;
  /// out = cond ? a : b; cond is bool, a and b have out's dtype; all have out's shape.
  virtual void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) = 0;

  // ---- reductions over the dims where mask[d] is true; `out` is contiguous with the kept sizes ----
  /// Sum (accumulated in double / int64), written in out's dtype (floating: x's; else int64).
  virtual void sum(const Tensor& out, const Tensor& x, const std::vector<bool>& mask) = 0;
  /// Mean of floating x (NaN for an empty reduction).
  virtual void mean(const Tensor& out, const Tensor& x, const std::vector<bool>& mask) = 0;
  /// Variance (standard deviation with `take_sqrt`) dividing by max(0, N - correction).
  virtual void var(const Tensor& out, const Tensor& x, const std::vector<bool>& mask, int64_t correction,
                   bool take_sqrt) = 0;
  /// Max (`is_max`) or min: values (if defined) and the flat index of the first extreme within the reduced
  /// dims (if defined); a NaN is the extreme.
  virtual void extreme(bool is_max, const Tensor& values, const Tensor& indices, const Tensor& x,
                       const std::vector<bool>& mask) = 0;

  // ---- linear algebra and activations ----
  /// out [..., M, N] (contiguous) = alpha * a [..., M, K] @ b [..., K, N] + beta * out; a, b (any strides,
  /// batch dims broadcast) have out's dtype: float32, float64, or float16 / bfloat16 as they are (products
  /// accumulated in float32 and the result rounded once to out's dtype, as PyTorch's CUDA matmul does).
  virtual void matmul(const Tensor& out, const Tensor& a, const Tensor& b, const Scalar& alpha,
                      const Scalar& beta) = 0;
  /// softmax or log_softmax of floating x along `dim` into contiguous out of x's dtype.
  virtual void softmax(const Tensor& out, const Tensor& x, int64_t dim, bool log) = 0;

  // ---- convolution: tensors of one floating dtype (float16 / bfloat16 as they are, computed in float32), all
  // contiguous NCHW, or all channels-last (NHWC strides) when shape.channels_last; biases contiguous ----
  /// out [N, Cout, Ho, Wo] = conv2d(x [N, C, H, W], w) + bias [Cout] (when defined).
  virtual void conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                              const Conv2dShape& shape) = 0;
  /// grad_input [N, C, H, W] of conv2d, from grad_output [N, Cout, Ho, Wo] and w.
  virtual void conv2d_backward_input(const Tensor& grad_input, const Tensor& grad_output, const Tensor& w,
                                     const Conv2dShape& shape) = 0;
  /// grad_weight [Cout, C / groups, kh, kw] of conv2d, from grad_output and x.
  virtual void conv2d_backward_weight(const Tensor& grad_weight, const Tensor& grad_output, const Tensor& x,
                                      const Conv2dShape& shape) = 0;
  /// grad_bias [Cout] of conv2d: grad_output summed over N, Ho and Wo.
  virtual void conv2d_backward_bias(const Tensor& grad_bias, const Tensor& grad_output, const Conv2dShape& shape) = 0;

  // ---- normalization, pooling, losses, dropout ----
  // (dropout has no kernel: its mask is drawn by the CPU generator, so a seed gives the same mask on every device,
  // and applied with routed ops; cat is narrow + copy_, both routed)

  /// Batch normalisation over dim 1 of x [N, C, ...] (float32 or float64, contiguous or channels-last) into out
  /// (x's sizes, dtype and layout). weight and bias are [C] of x's dtype or undefined (ones / zeros); running_mean
  /// and running_var are contiguous [C] of x's dtype or both undefined. save_mean and save_invstd are contiguous [C]
  /// float64. Training: save_mean = the batch mean, save_invstd = 1 / sqrt(biased batch variance + eps), and
  /// defined running statistics become (1 - momentum) * running + momentum * batch statistic, the variance's
  /// unbiased (divided by N * S - 1, S the spatial size; the op layer guarantees N * S > 1). Evaluation:
  /// save_mean = running_mean, save_invstd = 1 / sqrt(running_var + eps). Then out = (x - save_mean) *
  /// save_invstd * weight + bias per channel.
  virtual void batch_norm_forward(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                                  const Tensor& x, const Tensor& weight, const Tensor& bias,
                                  const Tensor& running_mean, const Tensor& running_var, bool training,
                                  double momentum, double eps) = 0;
  /// The gradients of batch_norm_forward from grad_out (x's sizes, dtype and layout), x, weight (or undefined)
  /// and the forward's save_mean / save_invstd: each defined one of grad_input (x's sizes, dtype and layout),
  /// grad_weight = sum(grad_out * (x - mean)) * invstd and grad_bias = sum(grad_out) ([C], x's dtype) is written.
  /// Training differentiates through the batch statistics; evaluation gives grad_input = grad_out * invstd * weight.
  /// `eps` is the forward's (the saved invstd already holds it).
  virtual void batch_norm_backward(const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias,
                                   const Tensor& grad_out, const Tensor& x, const Tensor& weight,
                                   const Tensor& save_mean, const Tensor& save_invstd, bool training, double eps) = 0;
  /// 2-D pooling of x [N, C, H, W] (contiguous, float32 or float64) into out [N, C, Ho, Wo] (contiguous, x's
  /// dtype); for Max, `indices` (contiguous int64 of out's shape, when defined) gets the flat index h * W + w of
  /// each window's maximum within its plane (ties keep the first; a NaN wins).
  virtual void pool2d_forward(PoolKind kind, const Tensor& out, const Tensor& indices, const Tensor& x,
                              const Pool2dShape& shape) = 0;
  /// grad_input [N, C, H, W] (contiguous, grad_output's dtype; every element written) of a pooling from
  /// grad_output [N, C, Ho, Wo] (contiguous); Max scatters to the forward's `indices` (accumulating where windows
  /// share a maximum), the averages spread each gradient over its window with the forward's divisor.
  virtual void pool2d_backward(PoolKind kind, const Tensor& grad_input, const Tensor& grad_output,
                               const Tensor& indices, const Pool2dShape& shape) = 0;
  /// Negative log-likelihood of input [N, C, S] (contiguous, float32 or float64 log-probabilities) at target
  /// [N, S] (contiguous int64; the op layer has not looked at the values, so a target outside [0, C) that is not
  /// ignore_index is the kernel's to report as IndexError "[nll_loss] target T is out of bounds for C classes": at
  /// once, or at the device's next synchronisation with the host, never by waiting for the device), weight [C]
  /// of the input's dtype or undefined (ones): the per-element losses -weight[t] * input[n, t, s] (0 where
  /// ignored) go to `losses` (N * S elements, contiguous, input's dtype) when defined; `total_weight` (0-dim float64) gets the summed weights of the
  /// targets not ignored; `total` (0-dim, input's dtype), when defined, gets the losses' sum (accumulated in
  /// double), divided by total_weight when `mean`.
  virtual void nll_forward(const Tensor& losses, const Tensor& total, const Tensor& total_weight, const Tensor& input,
                           const Tensor& target, const Tensor& weight, int64_t ignore_index, bool mean) = 0;
  /// grad_input [N, C, S] (contiguous, grad_out's dtype; every element written) of nll_forward: zero except
  /// -weight[t] * scale * g at [n, t, s] for the targets not ignored, where g = grad_out[n, s] when
  /// `per_element` (grad_out N * S contiguous elements) and 1 otherwise, and scale = 1 when per_element, else
  /// grad_out's one value (divided by total_weight, 0-dim float64, when `mean`), computed in double.
  virtual void nll_backward(const Tensor& grad_input, const Tensor& grad_out, const Tensor& target,
                            const Tensor& weight, const Tensor& total_weight, int64_t ignore_index, bool per_element,
                            bool mean) = 0;

  // ---- optimizer steps ----
  /// One SGD step in place: param, grad and (when momentum != 0) momentum_buffer share shape and dtype;
  /// `first` means the buffer holds nothing yet (it is set to the direction, as PyTorch clones it).
  virtual void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, bool first,
                        const SGDStepOptions& options) = 0;
  /// One SGD step in place over lists of tensors (one entry per parameter, all of one dtype on this device):
  /// for each i, as sgd_step(params[i], grads[i], momentum_buffers[i], firsts[i], options), in as few launches
  /// as the device allows (a multi-tensor kernel on CUDA); momentum_buffers holds undefined tensors when
  /// momentum is 0.
  virtual void sgd_steps(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& momentum_buffers, const std::vector<bool>& firsts,
                         const SGDStepOptions& options) = 0;
  /// One Adam / AdamW step in place over lists of tensors (one entry per parameter, all of one dtype on this
  /// device; max_exp_avg_sqs is used only with amsgrad). steps[i] is parameter i's step count after this step
  /// (1 on the first), from which the bias corrections come; PyTorch 1.13's single-tensor formulas, element for
  /// element, in float32 math for 16-bit params.
  virtual void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                         const std::vector<Tensor>& max_exp_avg_sqs, const std::vector<double>& steps,
                         const AdamStepOptions& options) = 0;
};

namespace detail {
inline DeviceKernels*& device_kernels_slot(DeviceType t) {
  static DeviceKernels* slots[2] = {nullptr, nullptr};
  return slots[static_cast<int>(t)];
}
}  // namespace detail

/// Installs the kernels that compute on devices of type `t` (nullptr removes them). The CUDA backend calls it
/// at static-initialisation time; tests may install their own.
inline void set_device_kernels(DeviceType t, DeviceKernels* kernels) { detail::device_kernels_slot(t) = kernels; }

/// The kernels for `device`; raises DeviceError naming `op` when none are installed.
inline DeviceKernels& device_kernels(Device device, const char* op = "device_kernels") {
  DeviceKernels* k = device.is_cpu() ? nullptr : detail::device_kernels_slot(device.type);
  TORCHLET_CHECK(k != nullptr, DeviceError, "[", op, "] cannot compute on ", device,
                 ": this program was built without torchlet's CUDA backend (include <torchlet/cuda.cuh> in one "
                 "translation unit compiled with nvcc)");
  return *k;
}
}  // namespace torchlet
