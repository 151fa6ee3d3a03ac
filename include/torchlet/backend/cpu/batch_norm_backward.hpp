#pragma once
/// \file CPU kernel for the backward pass of batch normalisation on inputs viewed as [N, C, S] with any strides,
/// PyTorch's batch_norm_backward_cpu formula: per channel, sum_dy = sum(dy) and dot = sum((x - mean) dy)
/// (accumulated in double); grad_input = (dy - sum_dy / n - (x - mean) dot invstd^2 / n) invstd w in training,
/// dy invstd w in evaluation; grad_weight = dot invstd and grad_bias = sum_dy (computed by the caller).
#include <cstdint>
#include <vector>

#include "torchlet/core/threads.hpp"
#include "torchlet/tensor/dispatch.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {
namespace cpu {

/// Batch-norm backward over channels (in parallel). x3 and dy3 are [N, C, S] of one floating dtype, any strides;
/// mean, invstd and weight have C entries (the saved batch statistics in training, the running ones in
/// evaluation; weight all ones without affine). When `grad_input3` ([N, C, S], contiguous, x3's dtype) is defined
/// it receives the input gradient; when `want_sums` (or training needs them) sum_dy and dot get C entries.
inline void batch_norm_backward(const Tensor& x3, const Tensor& dy3, const std::vector<double>& mean,
                                const std::vector<double>& invstd, const std::vector<double>& weight, bool training,
                                const Tensor& grad_input3, bool want_sums, std::vector<double>& sum_dy,
                                std::vector<double>& dot) {
  const int64_t N = x3.size(0), C = x3.size(1), S = x3.size(2);
  const int64_t xN = x3.stride(0), xC = x3.stride(1), xS = x3.stride(2);
  const int64_t gN = dy3.stride(0), gC = dy3.stride(1), gS = dy3.stride(2);
  const bool want_gi = grad_input3.defined();
  const bool sums = want_sums || (want_gi && training);
  sum_dy.assign(static_cast<size_t>(C), 0.0);
  dot.assign(static_cast<size_t>(C), 0.0);
  if (N * S == 0 || C == 0 || (!want_gi && !sums)) return;
  const double n = static_cast<double>(N * S);
  torchlet::detail::dispatch_floating(x3.dtype(), "batch_norm_backward", [&]<class T>() {
    using acc = torchlet::detail::opmath_t<T>;
    const T* xp = static_cast<const T*>(x3.data_ptr());
    const T* gp = static_cast<const T*>(dy3.data_ptr());
    T* gi = want_gi ? static_cast<T*>(grad_input3.data_ptr()) : nullptr;
    torchlet::detail::parallel_for_work(C, 3 * N * S, [&](int64_t c) {
      const size_t ci = static_cast<size_t>(c);
      const double m = mean[ci];
      if (sums) {
        double s = 0, d = 0;
        for (int64_t b = 0; b < N; ++b) {
          const T* xr = xp + b * xN + c * xC;
          const T* gr = gp + b * gN + c * gC;
          for (int64_t i = 0; i < S; ++i) {
            const double dy = static_cast<double>(static_cast<acc>(gr[i * gS]));
            s += dy;
            d += (static_cast<double>(static_cast<acc>(xr[i * xS])) - m) * dy;
          }
        }
        sum_dy[ci] = s;
        dot[ci] = d;
      }
      if (!want_gi) return;
      const acc scale = static_cast<acc>(invstd[ci] * weight[ci]);
      const acc am = static_cast<acc>(m);
      const acc k = training ? static_cast<acc>(dot[ci] * invstd[ci] * invstd[ci] / n) : acc(0);
      const acc grad_mean = training ? static_cast<acc>(sum_dy[ci] / n) : acc(0);
      for (int64_t b = 0; b < N; ++b) {
        const T* xr = xp + b * xN + c * xC;
        const T* gr = gp + b * gN + c * gC;
        T* out = gi + (b * C + c) * S;
        if (training) {
          for (int64_t i = 0; i < S; ++i) {
            const acc dx = (static_cast<acc>(xr[i * xS]) - am) * k;
            out[i] = static_cast<T>((static_cast<acc>(gr[i * gS]) - grad_mean - dx) * scale);
          }
        } else {
          for (int64_t i = 0; i < S; ++i) out[i] = static_cast<T>(static_cast<acc>(gr[i * gS]) * scale);
        }
      }
    });
  });
}
}  // namespace cpu
}  // namespace torchlet
