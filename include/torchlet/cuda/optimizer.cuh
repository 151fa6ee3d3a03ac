#pragma once
/// \file Multi-tensor optimizer steps on CUDA: SGD and Adam/AdamW over lists of parameters in few launches. Each
/// launch carries a chunk table (up to kMultiTensorMax tensors, and for each block the tensor and the chunk of
/// kMultiChunk elements it updates) by value, so a ResNet-50's 161 parameters step in a handful of launches
/// instead of 161. Tensors that are not all contiguous fall back to one strided elementwise launch each. The math
/// is PyTorch 1.13's single-tensor formulas in math_t (float32 for 16-bit params), with each intermediate
/// rounded as torchlet's CPU optimizers round it and no contraction into FMAs beyond the ones the CPU makes.
/// Compiled by nvcc only.
#include <cuda_runtime.h>

#include <array>
#include <vector>

#include "torchlet/backend/device_kernels.hpp"
#include "torchlet/cuda/elementwise.cuh"

namespace torchlet::cuda {

/// Most tensors in one multi-tensor launch.
inline constexpr int kMultiTensorMax = 24;
/// Most blocks (chunks) in one multi-tensor launch.
inline constexpr int kMultiChunkMax = 160;
/// Elements one block updates.
inline constexpr int64_t kMultiChunk = 16384;

/// The operands of one multi-tensor launch: K base pointers per tensor (nullptr for an unused operand), each
/// tensor's element count and two per-tensor numbers, and per block the tensor and the chunk it updates.
/// Passed to the kernel by value (about 2.3 KB for K = 5, under the 4 KB kernel-parameter limit).
template <int K>
struct ChunkTable {
  void* base[K][kMultiTensorMax];
  int64_t numel[kMultiTensorMax];
  double scalar[2][kMultiTensorMax];
  unsigned char tensor_of[kMultiChunkMax];
  int chunk_of[kMultiChunkMax];
};
static_assert(sizeof(ChunkTable<5>) < 4000, "the chunk table must fit the kernel-parameter limit");

/// Block b updates elements [chunk_of[b] * kMultiChunk, + kMultiChunk) of tensor tensor_of[b]: f(table, t, i).
template <int K, class F>
__global__ void multi_tensor_kernel(ChunkTable<K> table, F f) {
  const int t = table.tensor_of[blockIdx.x];
  const int64_t start = static_cast<int64_t>(table.chunk_of[blockIdx.x]) * kMultiChunk;
  const int64_t stop = start + kMultiChunk < table.numel[t] ? start + kMultiChunk : table.numel[t];
  for (int64_t i = start + threadIdx.x; i < stop; i += blockDim.x) f(table, t, i);
}

/// Launches f over lists[k][i] (K lists of one length; an empty list is an unused operand) on the current
/// stream of the tensors' device, all contiguous with one dtype per list; scalars(i) gives tensor i's two numbers.
template <int K, class F, class Scalars>
void launch_multi_tensor(const std::array<const std::vector<Tensor>*, K>& lists, const Scalars& scalars, const F& f,
                         const char* op) {
  (void)op;  // named by the caller's errors; the launch check names the kernel
  const std::vector<Tensor>& first = *lists[0];
  if (first.empty()) return;
  const int dev = first[0].device().index;
  DeviceGuard guard(dev);
  ChunkTable<K> table{};
  int tensors = 0, blocks = 0;
  auto flush = [&] {
    if (blocks > 0) {
      multi_tensor_kernel<K, F><<<static_cast<unsigned>(blocks), kBlock, 0, current_stream(dev)>>>(table, f);
      TORCHLET_CUDA_CHECK_LAUNCH("multi_tensor_kernel");
    }
    tensors = 0;
    blocks = 0;
  };
  for (size_t i = 0; i < first.size(); ++i) {
    const int64_t n = first[i].numel();
    if (n == 0) continue;
    const auto [s0, s1] = scalars(i);
    auto add_tensor = [&] {
      for (int k = 0; k < K; ++k) table.base[k][tensors] = lists[k]->empty() ? nullptr : (*lists[k])[i].data_ptr();
      table.numel[tensors] = n;
      table.scalar[0][tensors] = s0;
      table.scalar[1][tensors] = s1;
      ++tensors;
    };
    if (tensors == kMultiTensorMax) flush();
    add_tensor();
    const int64_t chunks = (n + kMultiChunk - 1) / kMultiChunk;
    for (int64_t c = 0; c < chunks; ++c) {
      if (blocks == kMultiChunkMax) {  // the table is full: launch it, and go on with this tensor in a new one
        flush();
        add_tensor();
      }
      table.tensor_of[blocks] = static_cast<unsigned char>(tensors - 1);
      table.chunk_of[blocks] = static_cast<int>(c);
      ++blocks;
    }
  }
  flush();
}

/// True when every tensor i of the used lists is contiguous and has the first list's shape.
template <int K>
bool all_contiguous(const std::array<const std::vector<Tensor>*, K>& lists, size_t i) {
  for (int k = 0; k < K; ++k)
    if (!lists[k]->empty() && (!(*lists[k])[i].is_contiguous() || (*lists[k])[i].sizes() != (*lists[0])[i].sizes()))
      return false;
  return true;
}

// ---- correctly rounded arithmetic that nvcc never contracts into an FMA (the CPU's optimizers do not) ----
/// a * b, rounded to nearest.
template <class M>
__device__ __forceinline__ M mul_rn(M a, M b) {
  if constexpr (std::is_same_v<M, float>) return __fmul_rn(a, b);
  else return __dmul_rn(a, b);
}
/// a + b, rounded to nearest.
template <class M>
__device__ __forceinline__ M add_rn(M a, M b) {
  if constexpr (std::is_same_v<M, float>) return __fadd_rn(a, b);
  else return __dadd_rn(a, b);
}
/// a / b, rounded to nearest.
template <class M>
__device__ __forceinline__ M div_rn(M a, M b) {
  if constexpr (std::is_same_v<M, float>) return __fdiv_rn(a, b);
  else return __ddiv_rn(a, b);
}
/// sqrt(a), rounded to nearest.
template <class M>
__device__ __forceinline__ M sqrt_rn(M a) {
  if constexpr (std::is_same_v<M, float>) return __fsqrt_rn(a);
  else return __dsqrt_rn(a);
}

/// One element of an Adam / AdamW step (torchlet's CPU adam_update, element for element).
template <class T>
struct AdamMath {
  using M = math_t<T>;
  M b1, b2, one_minus_b1, one_minus_b2, wd, shrink, eps;
  bool decoupled, coupled_decay, maximize, amsgrad;

  /// Updates param, m, v (and *vmax with amsgrad) in place; neg_step_size = -lr / bias_correction1.
  __device__ __forceinline__ void operator()(T& param, T grad_in, T& m, T& v, T* vmax, M neg_step_size,
                                             M bc2_sqrt) const {
    M x = load_math(param);
    if (decoupled) x = round_to<T>(mul_rn(x, shrink));  // param.mul_(1 - lr * weight_decay)
    M g = load_math(grad_in);
    if (maximize) g = -g;
    if (coupled_decay) g = round_to<T>(fmadd(x, wd, g));  // grad.add(param, alpha=weight_decay)
    const M ma = round_to<T>(fmadd(g, one_minus_b1, round_to<T>(mul_rn(load_math(m), b1))));
    const M va = round_to<T>(add_rn(round_to<T>(mul_rn(load_math(v), b2)), mul_rn(mul_rn(one_minus_b2, g), g)));
    m = store_math<T>(ma);
    v = store_math<T>(va);
    M vhat = va;
    if (amsgrad) {  // torch.maximum, NaN propagating
      const M a = load_math(*vmax);
      vhat = (a != a) ? a : (va != va) ? va : (a > va ? a : va);
      *vmax = store_math<T>(vhat);
    }
    const M denom = round_to<T>(add_rn(round_to<T>(div_rn(round_to<T>(sqrt_rn(vhat)), bc2_sqrt)), eps));
    param = store_math<T>(add_rn(x, div_rn(mul_rn(neg_step_size, ma), denom)));
  }

  /// The element math for `o` (host side).
  static AdamMath make(const AdamStepOptions& o) {
    return {static_cast<M>(o.beta1), static_cast<M>(o.beta2), static_cast<M>(1 - o.beta1), static_cast<M>(1 - o.beta2),
            static_cast<M>(o.weight_decay), static_cast<M>(1 - o.lr * o.weight_decay), static_cast<M>(o.eps),
            o.decoupled, !o.decoupled && o.weight_decay != 0, o.maximize, o.amsgrad};
  }
};

/// Adam over a chunk table: operands param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq; scalars -step_size and
/// sqrt(bias_correction2).
template <class T>
struct AdamMultiFn {
  AdamMath<T> math;
  __device__ void operator()(const ChunkTable<5>& table, int t, int64_t i) const {
    T* vmax = math.amsgrad ? static_cast<T*>(table.base[4][t]) + i : nullptr;
    math(static_cast<T*>(table.base[0][t])[i], static_cast<const T*>(table.base[1][t])[i],
         static_cast<T*>(table.base[2][t])[i], static_cast<T*>(table.base[3][t])[i], vmax,
         static_cast<math_t<T>>(table.scalar[0][t]), static_cast<math_t<T>>(table.scalar[1][t]));
  }
};

/// Adam over strided operands (param, grad, exp_avg, exp_avg_sq[, max_exp_avg_sq]) of one tensor.
template <class T>
struct AdamStridedFn {
  AdamMath<T> math;
  math_t<T> neg_step_size, bc2_sqrt;
  __device__ void operator()(char** p) const {
    math(*reinterpret_cast<T*>(p[0]), *reinterpret_cast<const T*>(p[1]), *reinterpret_cast<T*>(p[2]),
         *reinterpret_cast<T*>(p[3]), math.amsgrad ? reinterpret_cast<T*>(p[4]) : nullptr, neg_step_size, bc2_sqrt);
  }
};

/// SGD over a chunk table: operands param, grad, momentum buffer; scalar 0 is 1 on the buffer's first step.
template <class T>
struct SGDMultiFn {
  SGDFn<T> fn;
  __device__ void operator()(const ChunkTable<3>& table, int t, int64_t i) const {
    SGDFn<T> f = fn;
    f.first = table.scalar[0][t] != 0;
    char* p[3] = {static_cast<char*>(table.base[0][t]) + i * sizeof(T),
                  static_cast<char*>(table.base[1][t]) + i * sizeof(T),
                  table.base[2][t] ? static_cast<char*>(table.base[2][t]) + i * sizeof(T) : nullptr};
    f(p);
  }
};

/// One SGD step over lists of parameters of one dtype on one device (DeviceKernels::sgd_steps).
inline void sgd_steps(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                      const std::vector<Tensor>& buffers, const std::vector<bool>& firsts, const SGDStepOptions& o) {
  if (params.empty()) return;
  const bool use_momentum = o.momentum != 0;
  static const std::vector<Tensor> none;
  const std::array<const std::vector<Tensor>*, 3> lists{&params, &grads, use_momentum ? &buffers : &none};
  std::vector<Tensor> dense_params, dense_grads, dense_buffers;
  std::vector<double> dense_firsts;
  for (size_t i = 0; i < params.size(); ++i) {
    if (all_contiguous<3>(lists, i)) {
      dense_params.push_back(params[i]);
      dense_grads.push_back(grads[i]);
      if (use_momentum) dense_buffers.push_back(buffers[i]);
      dense_firsts.push_back(firsts[i] ? 1.0 : 0.0);
    } else {
      sgd_step(params[i], grads[i], use_momentum ? buffers[i] : Tensor(), firsts[i], o);
    }
  }
  if (dense_params.empty()) return;
  dispatch_floating(dense_params[0].dtype(), "SGD", [&]<class H, class D>() {
    using M = math_t<D>;
    const SGDFn<D> fn{static_cast<M>(o.weight_decay), static_cast<M>(o.momentum), static_cast<M>(1 - o.dampening),
                      static_cast<M>(-o.lr), o.weight_decay != 0, o.maximize, o.nesterov, use_momentum, false};
    launch_multi_tensor<3>({&dense_params, &dense_grads, &dense_buffers},
                           [&](size_t i) { return std::pair<double, double>{dense_firsts[i], 0.0}; },
                           SGDMultiFn<D>{fn}, "SGD");
  });
}

/// One Adam / AdamW step over lists of parameters of one dtype on one device (DeviceKernels::adam_step).
inline void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                      const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                      const std::vector<Tensor>& max_exp_avg_sqs, const std::vector<double>& steps,
                      const AdamStepOptions& o) {
  if (params.empty()) return;
  const char* op = o.decoupled ? "AdamW" : "Adam";
  // the bias corrections of parameter i, in double as Python computes them: (-step_size, sqrt(bc2))
  auto scalars = [&](double step) {
    const double bias_correction1 = 1 - std::pow(o.beta1, step), bias_correction2 = 1 - std::pow(o.beta2, step);
    return std::pair<double, double>{-(o.lr / bias_correction1), std::sqrt(bias_correction2)};
  };
  static const std::vector<Tensor> none;
  const std::array<const std::vector<Tensor>*, 5> lists{&params, &grads, &exp_avgs, &exp_avg_sqs,
                                                        o.amsgrad ? &max_exp_avg_sqs : &none};
  std::vector<Tensor> dp, dg, dm, dv, dvmax;
  std::vector<double> dsteps;
  dispatch_floating(params[0].dtype(), op, [&]<class H, class D>() {
    using M = math_t<D>;
    const AdamMath<D> math = AdamMath<D>::make(o);
    for (size_t i = 0; i < params.size(); ++i) {
      if (all_contiguous<5>(lists, i)) {
        dp.push_back(params[i]);
        dg.push_back(grads[i]);
        dm.push_back(exp_avgs[i]);
        dv.push_back(exp_avg_sqs[i]);
        if (o.amsgrad) dvmax.push_back(max_exp_avg_sqs[i]);
        dsteps.push_back(steps[i]);
        continue;
      }
      const auto [neg_step_size, bc2_sqrt] = scalars(steps[i]);
      const AdamStridedFn<D> f{math, static_cast<M>(neg_step_size), static_cast<M>(bc2_sqrt)};
      if (o.amsgrad)
        launch_elementwise<5>({&params[i], &grads[i], &exp_avgs[i], &exp_avg_sqs[i], &max_exp_avg_sqs[i]}, f, op);
      else launch_elementwise<4>({&params[i], &grads[i], &exp_avgs[i], &exp_avg_sqs[i]}, f, op);
    }
    launch_multi_tensor<5>({&dp, &dg, &dm, &dv, &dvmax}, [&](size_t i) { return scalars(dsteps[i]); },
                           AdamMultiFn<D>{math}, op);
  });
}
}  // namespace torchlet::cuda
