#pragma once
// A fake "cuda:0" for the CPU-side device tests: an allocator labelling host blocks cuda:0, a copy hook that copies
// through the CPU, and DeviceKernels that view the storages as CPU tensors and run the CPU kernels, counting the
// calls per kernel. Every routed op must then give the CPU's values bit for bit (check_same).
#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <optional>
#include <string>

#include "torchlet/nn.hpp"
#include "torchlet/ops/conv.hpp"
#include "torchlet/ops/activation.hpp"
#include "torchlet/ops/loss.hpp"
#include "torchlet/ops/normalization.hpp"
#include "torchlet/ops/pooling.hpp"
#include "torchlet/ops/linalg.hpp"
#include "torchlet/optim.hpp"
#include "torchlet/tensor/random.hpp"

namespace fake_device {
using namespace torchlet;

inline const Device kFake("cuda:0");

// The same bytes viewed as a CPU tensor (undefined stays undefined).
inline Tensor host_view(const Tensor& t) {
  if (!t.defined()) return t;
  return Tensor(Storage::borrow(t.storage().data(), t.storage().nbytes(), nullptr, kCPU), t.dtype(), t.sizes(),
                t.strides(), t.storage_offset());
}

// Host blocks labelled cuda:0.
class FakeAllocator final : public Allocator {
 public:
  DataPtr allocate(size_t nbytes, Device) override { return cpu_.allocate(nbytes, kCPU); }

 private:
  CPUAllocator cpu_;
};

// Device -> host copies so far: on a real GPU each one waits for the device (a host synchronisation).
inline int host_reads = 0;

// Copies between any two of cpu / fake cuda through the CPU copy (a source sharing the destination's bytes is
// copied aside first, as copy_ does on the CPU).
inline void fake_copy(const Tensor& dst, const Tensor& src) {
  if (dst.is_cpu() && !src.is_cpu()) ++host_reads;
  Tensor s = host_view(src);
  if (src.storage().data() == dst.storage().data()) s = s.clone();
  detail::copy_cpu(host_view(dst), s);
}

// Writes a CPU result into a device output.
inline void put(const Tensor& out, const Tensor& cpu_result) { detail::copy_cpu(host_view(out), cpu_result); }

// DeviceKernels running the CPU's ops and kernels on host views, counting the calls per kernel.
class FakeKernels final : public DeviceKernels {
 public:
  std::map<std::string, int> calls;

  void fill(const Tensor& out, const Scalar& v) override {
    ++calls["fill"];
    detail::fill_into(host_view(out), v);
  }
  void copy(const Tensor& dst, const Tensor& src) override {
    ++calls["copy"];
    fake_copy(dst, src);
  }
  void unary(UnaryOp op, const Tensor& out, const Tensor& x) override {
    ++calls[op_name(op)];
    const Tensor h = host_view(x);
    switch (op) {
      case UnaryOp::Neg: return put(out, neg(h));
      case UnaryOp::Abs: return put(out, abs(h));
      case UnaryOp::Exp: return put(out, exp(h));
      case UnaryOp::Log: return put(out, log(h));
      case UnaryOp::Sqrt: return put(out, sqrt(h));
      case UnaryOp::Relu: return put(out, relu(h));
    }
  }
  static Tensor binary_cpu(BinaryOp op, const Tensor& a, const Tensor& b, const Scalar& alpha) {
    switch (op) {
      case BinaryOp::Add: return add(a, b, alpha);
      case BinaryOp::Sub: return sub(a, b, alpha);
      case BinaryOp::Mul: return mul(a, b);
      case BinaryOp::Div: return div(a, b);
      case BinaryOp::DivTrunc: return div(a, b, "trunc");
      case BinaryOp::DivFloor: return div(a, b, "floor");
      case BinaryOp::Pow: return pow(a, b);
      case BinaryOp::Maximum: return maximum(a, b);
      case BinaryOp::Minimum: return minimum(a, b);
      case BinaryOp::Eq: return eq(a, b);
      case BinaryOp::Ne: return ne(a, b);
      case BinaryOp::Lt: return lt(a, b);
      case BinaryOp::Le: return le(a, b);
      case BinaryOp::Gt: return gt(a, b);
      case BinaryOp::Ge: return ge(a, b);
    }
    return {};
  }
  void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b, const Scalar& alpha) override {
    ++calls[op_name(op)];
    put(out, binary_cpu(op, host_view(a), host_view(b), alpha));
  }
  void binary_scalar(BinaryOp op, const Tensor& out, const Tensor& x, const Scalar& s) override {
    ++calls[std::string(op_name(op)) + "_scalar"];
    const Tensor h = host_view(x);
    switch (op) {
      case BinaryOp::Add: return put(out, add(h, s));
      case BinaryOp::Sub: return put(out, sub(h, s));
      case BinaryOp::Mul: return put(out, mul(h, s));
      case BinaryOp::Div: return put(out, div(h, s));
      case BinaryOp::DivTrunc: return put(out, div(h, s, "trunc"));
      case BinaryOp::DivFloor: return put(out, div(h, s, "floor"));
      case BinaryOp::Pow: return put(out, pow(h, s));
      case BinaryOp::Eq: return put(out, eq(h, s));
      case BinaryOp::Ne: return put(out, ne(h, s));
      case BinaryOp::Lt: return put(out, lt(h, s));
      case BinaryOp::Le: return put(out, le(h, s));
      case BinaryOp::Gt: return put(out, gt(h, s));
      case BinaryOp::Ge: return put(out, ge(h, s));
      default: FAIL("binary_scalar got ", op_name(op));
    }
  }
  void clamp(const Tensor& out, const Tensor& x, const std::optional<Scalar>& lo,
             const std::optional<Scalar>& hi) override {
    ++calls["clamp"];
    put(out, torchlet::clamp(host_view(x), lo, hi));
  }
  void where(const Tensor& out, const Tensor& c, const Tensor& a, const Tensor& b) override {
    ++calls["where"];
    put(out, torchlet::where(host_view(c), host_view(a), host_view(b)));
  }
  void sum(const Tensor& out, const Tensor& x, const std::vector<bool>& mask) override {
    ++calls["sum"];
    cpu::sum_into(host_view(out), host_view(x), mask);
  }
  void mean(const Tensor& out, const Tensor& x, const std::vector<bool>& mask) override {
    ++calls["mean"];
    cpu::mean_into(host_view(out), host_view(x), mask);
  }
  void var(const Tensor& out, const Tensor& x, const std::vector<bool>& mask, int64_t correction,
           bool take_sqrt) override {
    ++calls["var"];
    cpu::var_into(host_view(out), host_view(x), mask, correction, take_sqrt);
  }
  void extreme(bool is_max, const Tensor& values, const Tensor& indices, const Tensor& x,
               const std::vector<bool>& mask) override {
    ++calls["extreme"];
    if (is_max) cpu::extreme_into<true>(host_view(values), host_view(indices), host_view(x), mask);
    else cpu::extreme_into<false>(host_view(values), host_view(indices), host_view(x), mask);
  }
  void matmul(const Tensor& out, const Tensor& a, const Tensor& b, const Scalar& alpha, const Scalar& beta) override {
    ++calls["matmul"];
    if (out.dtype() == kFloat16 || out.dtype() == kBFloat16) {  // in float32, rounded once, as the CPU op does
      ++calls["matmul_16bit"];
      const Tensor acc = host_view(out).to(kFloat32);
      cpu::matmul_into(acc, host_view(a).to(kFloat32), host_view(b).to(kFloat32), alpha, beta);
      return put(out, acc.to(out.dtype()));
    }
    cpu::matmul_into(host_view(out), host_view(a), host_view(b), alpha, beta);
  }
  void softmax(const Tensor& out, const Tensor& x, int64_t dim, bool log) override {
    ++calls["softmax"];
    cpu::softmax_into(host_view(out), host_view(x), dim, log);
  }
  static cpu::Conv2dGeometry geometry(const Conv2dShape& s) {
    cpu::Conv2dGeometry g;
    g.batch = s.batch, g.in_channels = s.in_channels, g.in_h = s.in_h, g.in_w = s.in_w;
    g.out_channels = s.out_channels, g.kernel_h = s.kernel_h, g.kernel_w = s.kernel_w;
    g.stride_h = s.stride_h, g.stride_w = s.stride_w, g.pad_h = s.pad_h, g.pad_w = s.pad_w;
    g.dilation_h = s.dilation_h, g.dilation_w = s.dilation_w, g.groups = s.groups, g.out_h = s.out_h, g.out_w = s.out_w;
    return g;
  }
  template <class T>
  static const T* ptr_or_null(const Tensor& t) {
    return t.defined() ? static_cast<const T*>(t.data_ptr()) : nullptr;
  }
  // A conv operand as the CPU kernels take it: the layout the shape names checked, then a contiguous NCHW host
  // copy in the compute dtype (float32 for 16-bit), counting the 16-bit and channels-last calls.
  Tensor conv_operand(const Tensor& t, const Conv2dShape& s) {
    if (!t.defined()) return t;
    if (s.channels_last && t.dim() == 4) REQUIRE(t.is_contiguous(MemoryFormat::ChannelsLast));
    else REQUIRE(t.is_contiguous());
    const Tensor h = host_view(t);
    const bool half16 = t.dtype() == kFloat16 || t.dtype() == kBFloat16;
    return (half16 ? h.to(kFloat32) : h).contiguous();
  }
  // Counts the layout and dtype of one conv call.
  void count_conv(const Conv2dShape& s, DType t) {
    if (s.channels_last) ++calls["conv2d_nhwc"];
    if (t == kFloat16 || t == kBFloat16) ++calls["conv2d_16bit"];
  }
  // A new contiguous NCHW result of `like`'s shape in the compute dtype.
  static Tensor conv_result(const Tensor& like) {
    const DType t = like.dtype() == kFloat16 || like.dtype() == kBFloat16 ? kFloat32 : like.dtype();
    return empty(like.sizes(), t);
  }
  // Writes a compute-dtype result into the device output (rounded once for 16-bit, in the output's layout).
  static void put_result(const Tensor& out, const Tensor& r) { put(out, r.to(out.dtype())); }
  void conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                      const Conv2dShape& s) override {
    ++calls["conv2d_forward"];
    count_conv(s, x.dtype());
    const Tensor xc = conv_operand(x, s), wc = conv_operand(w, s), bc = conv_operand(bias, s);
    conv_operand(out, s);
    const Tensor r = conv_result(out);
    detail::dispatch_floating(xc.dtype(), "conv2d", [&]<class T>() {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
        cpu::conv2d_forward<T>(geometry(s), ptr_or_null<T>(xc), ptr_or_null<T>(wc), ptr_or_null<T>(bc),
                               static_cast<T*>(r.data_ptr()));
      else FAIL("conv2d compute dtype");
    });
    put_result(out, r);
  }
  void conv2d_backward_input(const Tensor& gi, const Tensor& go, const Tensor& w, const Conv2dShape& s) override {
    ++calls["conv2d_backward_input"];
    count_conv(s, w.dtype());
    const Tensor goc = conv_operand(go, s), wc = conv_operand(w, s);
    conv_operand(gi, s);
    const Tensor r = conv_result(gi);
    detail::dispatch_floating(wc.dtype(), "conv2d", [&]<class T>() {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
        cpu::conv2d_backward_input<T>(geometry(s), ptr_or_null<T>(goc), ptr_or_null<T>(wc), static_cast<T*>(r.data_ptr()));
    });
    put_result(gi, r);
  }
  void conv2d_backward_weight(const Tensor& gw, const Tensor& go, const Tensor& x, const Conv2dShape& s) override {
    ++calls["conv2d_backward_weight"];
    count_conv(s, x.dtype());
    const Tensor goc = conv_operand(go, s), xc = conv_operand(x, s);
    conv_operand(gw, s);
    const Tensor r = conv_result(gw);
    detail::dispatch_floating(xc.dtype(), "conv2d", [&]<class T>() {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
        cpu::conv2d_backward_weight<T>(geometry(s), ptr_or_null<T>(goc), ptr_or_null<T>(xc), static_cast<T*>(r.data_ptr()));
    });
    put_result(gw, r);
  }
  void conv2d_backward_bias(const Tensor& gb, const Tensor& go, const Conv2dShape& s) override {
    ++calls["conv2d_backward_bias"];
    count_conv(s, go.dtype());
    const Tensor goc = conv_operand(go, s);
    const Tensor r = conv_result(gb);
    detail::dispatch_floating(goc.dtype(), "conv2d", [&]<class T>() {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
        cpu::conv2d_backward_bias<T>(geometry(s), ptr_or_null<T>(goc), static_cast<T*>(r.data_ptr()));
    });
    put_result(gb, r);
  }
  // ---- normalization, pooling, losses: the CPU kernels on host views ----
  static std::vector<double> host_values(const Tensor& t) {
    const Tensor c = host_view(t).to(kFloat64).contiguous();
    return std::vector<double>(c.data<double>(), c.data<double>() + c.numel());
  }
  void batch_norm_forward(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd, const Tensor& x,
                          const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                          const Tensor& running_var, bool training, double momentum, double eps) override {
    ++calls["batch_norm_forward"];
    REQUIRE(save_mean.dtype() == kFloat64);
    REQUIRE((x.dtype() == kFloat32 || x.dtype() == kFloat64));
    REQUIRE(x.is_contiguous(x.suggest_memory_format()));
    REQUIRE(out.strides() == x.strides());
    const auto [mean, invstd] =
        detail::batch_norm_cpu_forward(host_view(x), host_view(running_mean), host_view(running_var),
                                       host_view(weight), host_view(bias), {training, momentum, eps}, host_view(out));
    put(save_mean, tensor(mean));
    put(save_invstd, tensor(invstd));
  }
  void batch_norm_backward(const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias,
                           const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                           const Tensor& save_invstd, bool training, double) override {
    ++calls["batch_norm_backward"];
    REQUIRE(grad_out.strides() == x.strides());
    const std::vector<bool> need{grad_input.defined(), grad_weight.defined(), grad_bias.defined()};
    const Shape c{x.size(1)};
    const auto r = detail::batch_norm_cpu_backward(host_view(grad_out), host_view(x), host_view(weight),
                                                   host_values(save_mean), host_values(save_invstd), training, need, c,
                                                   x.dtype(), c, x.dtype());
    if (need[0]) put(grad_input, r[0]);
    if (need[1]) put(grad_weight, r[1]);
    if (need[2]) put(grad_bias, r[2]);
  }
  static cpu::Pool2dGeometry geometry(const Pool2dShape& s) {
    return {s.kernel_h, s.kernel_w, s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dilation_h, s.dilation_w, s.out_h,
            s.out_w};
  }
  static std::optional<int64_t> divisor(const Pool2dShape& s) {
    return s.divisor_override ? std::optional<int64_t>(s.divisor_override) : std::nullopt;
  }
  void pool2d_forward(PoolKind kind, const Tensor& out, const Tensor& indices, const Tensor& x,
                      const Pool2dShape& s) override {
    ++calls[kind == PoolKind::Max ? "max_pool2d" : kind == PoolKind::Avg ? "avg_pool2d" : "adaptive_avg_pool2d"];
    REQUIRE((x.is_contiguous() && out.is_contiguous() && x.dim() == 4));
    REQUIRE((x.dtype() == kFloat32 || x.dtype() == kFloat64));
    switch (kind) {
      case PoolKind::Max: return cpu::max_pool2d(host_view(x), geometry(s), host_view(out), host_view(indices));
      case PoolKind::Avg:
        return cpu::avg_pool2d(host_view(x), geometry(s), s.count_include_pad, divisor(s), host_view(out));
      case PoolKind::AdaptiveAvg: return cpu::adaptive_avg_pool2d(host_view(x), host_view(out));
    }
  }
  void pool2d_backward(PoolKind kind, const Tensor& grad_input, const Tensor& grad_output, const Tensor& indices,
                       const Pool2dShape& s) override {
    ++calls[kind == PoolKind::Max ? "max_pool2d_backward" : kind == PoolKind::Avg ? "avg_pool2d_backward"
                                                                                  : "adaptive_avg_pool2d_backward"];
    REQUIRE((grad_input.is_contiguous() && grad_output.is_contiguous()));
    switch (kind) {
      case PoolKind::Max: return cpu::max_pool2d_backward(host_view(grad_output), host_view(indices), host_view(grad_input));
      case PoolKind::Avg:
        return cpu::avg_pool2d_backward(host_view(grad_output), geometry(s), s.count_include_pad, divisor(s),
                                        host_view(grad_input));
      case PoolKind::AdaptiveAvg: return cpu::adaptive_avg_pool2d_backward(host_view(grad_output), host_view(grad_input));
    }
  }
  void nll_forward(const Tensor& losses, const Tensor& total, const Tensor& total_weight, const Tensor& input,
                   const Tensor& target, const Tensor& weight, int64_t ignore_index, bool mean) override {
    ++calls["nll_forward"];
    REQUIRE((input.is_contiguous() && target.is_contiguous()));
    REQUIRE((input.dim() == 3 && target.dim() == 2));
    const cpu::NllShape sh{input.size(0), input.size(1), input.size(2)};
    const Tensor t = host_view(target);  // the op layer leaves device targets to the kernel
    for (int64_t i = 0; i < t.numel(); ++i) {
      const int64_t c = t.data<int64_t>()[i];
      TORCHLET_CHECK(c == ignore_index || (c >= 0 && c < sh.c), IndexError, "[nll_loss] target ", c,
                     " is out of bounds for ", sh.c, " classes");
    }
    const auto [sum, tw] = cpu::nll_forward(host_view(input), host_view(target), host_view(weight), ignore_index,
                                            host_view(losses), sh);
    put(total_weight, scalar_tensor(tw, kFloat64));
    if (total.defined()) put(total, scalar_tensor(mean ? sum / tw : sum, total.dtype()));
  }
  void nll_backward(const Tensor& grad_input, const Tensor& grad_out, const Tensor& target, const Tensor& weight,
                    const Tensor& total_weight, int64_t ignore_index, bool per_element, bool mean) override {
    ++calls["nll_backward"];
    REQUIRE(grad_input.dim() == 3);
    const cpu::NllShape sh{grad_input.size(0), grad_input.size(1), grad_input.size(2)};
    detail::fill_into(host_view(grad_input), 0);
    double scale = 1;
    if (!per_element) scale = host_view(grad_out).item<double>() / (mean ? host_view(total_weight).item<double>() : 1.0);
    cpu::nll_backward(host_view(grad_input), host_view(grad_out), host_view(target), host_view(weight), ignore_index,
                      per_element, scale, sh);
  }

  void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& buffer, bool first,
                const SGDStepOptions& o) override {
    ++calls["sgd_step"];
    // the CPU's SGD on host views; on a first step it makes its own buffer, copied into ours afterwards
    const optim::SGDOptions opts{o.lr, o.momentum, o.dampening, o.weight_decay, o.nesterov, o.maximize};
    std::optional<optim::SGDState> state;
    if (!first && buffer.defined()) state = optim::SGDState{host_view(buffer)};
    optim::SGD sgd(std::vector<Tensor>{zeros({1})}, opts);  // update() uses only its arguments
    sgd.update(host_view(param), host_view(grad), state, opts);
    if (first && buffer.defined()) put(buffer, state->momentum_buffer);
  }
  void sgd_steps(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& buffers, const std::vector<bool>& firsts,
                 const SGDStepOptions& o) override {
    ++calls["sgd_steps"];
    REQUIRE((grads.size() == params.size() && buffers.size() == params.size() && firsts.size() == params.size()));
    for (size_t i = 0; i < params.size(); ++i) sgd_step(params[i], grads[i], buffers[i], firsts[i], o);
  }
  void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                 const std::vector<Tensor>& max_exp_avg_sqs, const std::vector<double>& steps,
                 const AdamStepOptions& o) override {
    ++calls["adam_step"];
    const size_t n = params.size();
    REQUIRE((grads.size() == n && exp_avgs.size() == n && exp_avg_sqs.size() == n && max_exp_avg_sqs.size() == n &&
             steps.size() == n));
    // the CPU's Adam on host views, its step counter set one below the step to take
    const optim::AdamOptions opts{o.lr, {o.beta1, o.beta2}, o.eps, o.weight_decay, o.amsgrad, o.maximize};
    for (size_t i = 0; i < n; ++i) {
      ++calls["adam_tensor"];
      CHECK(params[i].dtype() == params[0].dtype());
      std::optional<optim::AdamState> state =
          optim::AdamState{full({}, steps[i] - 1, kFloat32), host_view(exp_avgs[i]), host_view(exp_avg_sqs[i]),
                           o.amsgrad ? host_view(max_exp_avg_sqs[i]) : Tensor()};
      optim::detail::adam_update(o.decoupled ? "AdamW" : "Adam", host_view(params[i]), host_view(grads[i]), state,
                                 opts, o.decoupled);
    }
  }
};

// Registers the fake device for one test case: allocator and copy hook, and the kernels unless `with_kernels` is
// false; restores the defaults on destruction.
struct FakeCuda {
  FakeAllocator allocator;
  FakeKernels kernels;
  explicit FakeCuda(bool with_kernels = true) {
    set_allocator(DeviceType::CUDA, &allocator);
    detail::device_copy_hook() = &fake_copy;
    if (with_kernels) set_device_kernels(DeviceType::CUDA, &kernels);
  }
  ~FakeCuda() {
    set_allocator(DeviceType::CUDA, nullptr);
    detail::device_copy_hook() = nullptr;
    set_device_kernels(DeviceType::CUDA, nullptr);
  }
  FakeCuda(const FakeCuda&) = delete;
  FakeCuda& operator=(const FakeCuda&) = delete;
};

// Bitwise equality of a device result with the CPU's: device, dtype, shape and every byte.
inline void check_same(const Tensor& on_device, const Tensor& on_cpu, const char* what) {
  INFO(std::string(what));
  REQUIRE(on_device.defined());
  CHECK(on_device.device() == kFake);
  REQUIRE(on_device.dtype() == on_cpu.dtype());
  REQUIRE(on_device.sizes() == on_cpu.sizes());
  const Tensor a = on_device.to(kCPU).contiguous(), b = on_cpu.contiguous();
  CHECK(a.is_cpu());
  CHECK(std::memcmp(a.data_ptr(), b.data_ptr(), static_cast<size_t>(b.nbytes())) == 0);
}
}  // namespace fake_device
