#pragma once
/// \file CPU kernels for batch normalisation on validated inputs viewed as [N, C, S] (S = the product of the
/// spatial dims) with any strides: per-channel batch statistics, and the per-channel affine transform
/// out = x * scale[c] + shift[c] that both evaluation and training use (as PyTorch's batch_norm_cpu does).
#include <cstdint>
#include <vector>

#include "torchlet/core/threads.hpp"
#include "torchlet/tensor/dispatch.hpp"
#include "torchlet/tensor/strided_loop.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {
namespace cpu {

/// Per-channel statistics of x3 [N, C, S] (a floating dtype, any strides), accumulated in double:
/// mean[c] and var_sum[c] = sum over (n, s) of (x - mean[c])^2 (two passes, as PyTorch). Both get C entries.
inline void batch_norm_collect_stats(const Tensor& x3, std::vector<double>& mean, std::vector<double>& var_sum) {
  const int64_t N = x3.size(0), C = x3.size(1), S = x3.size(2);
  const int64_t sN = x3.stride(0), sC = x3.stride(1), sS = x3.stride(2);
  mean.assign(static_cast<size_t>(C), 0.0);
  var_sum.assign(static_cast<size_t>(C), 0.0);
  const double count = static_cast<double>(N * S);
  torchlet::detail::dispatch_floating(x3.dtype(), "batch_norm", [&]<class T>() {
    const T* in = static_cast<const T*>(x3.data_ptr());
    torchlet::detail::parallel_for_work(C, 2 * N * S, [&](int64_t c) {
      const T* base = in + c * sC;
      double sum = 0;
      for (int64_t n = 0; n < N; ++n) {
        const T* row = base + n * sN;
        for (int64_t s = 0; s < S; ++s) sum += static_cast<double>(static_cast<torchlet::detail::opmath_t<T>>(row[s * sS]));
      }
      const double m = sum / count;
      double sq = 0;
      for (int64_t n = 0; n < N; ++n) {
        const T* row = base + n * sN;
        for (int64_t s = 0; s < S; ++s) {
          const double d = static_cast<double>(static_cast<torchlet::detail::opmath_t<T>>(row[s * sS])) - m;
          sq += d * d;
        }
      }
      mean[static_cast<size_t>(c)] = m;
      var_sum[static_cast<size_t>(c)] = sq;
    });
  });
}

/// out3[n, c, s] = x3[n, c, s] * scale[c] + shift[c], computed in the input's opmath type; x3 [N, C, S] has any
/// strides, out3 has x3's shape and dtype and is contiguous, or channels-last ([N, C, S] with channel stride 1,
/// as a channels-last 4-D tensor viewed so) when x3 is too.
inline void batch_norm_transform(const Tensor& x3, const std::vector<double>& scale, const std::vector<double>& shift,
                                 const Tensor& out3) {
  const int64_t N = x3.size(0), C = x3.size(1), S = x3.size(2);
  const int64_t sN = x3.stride(0), sC = x3.stride(1), sS = x3.stride(2);
  if (N * C * S == 0) return;
  torchlet::detail::dispatch_floating(x3.dtype(), "batch_norm", [&]<class T>() {
    using acc = torchlet::detail::opmath_t<T>;
    const T* in = static_cast<const T*>(x3.data_ptr());
    T* o = static_cast<T*>(out3.data_ptr());
    if (C > 1 && S > 1 && sC == 1 && out3.stride(1) == 1) {  // channels last: rows of C channels per (n, s)
      std::vector<acc> a(static_cast<size_t>(C)), b(static_cast<size_t>(C));
      for (size_t c = 0; c < a.size(); ++c) a[c] = static_cast<acc>(scale[c]), b[c] = static_cast<acc>(shift[c]);
      const int64_t oN = out3.stride(0), oS = out3.stride(2);
      torchlet::detail::parallel_for_work(N * S, C, [&](int64_t r) {
        const T* src = in + (r / S) * sN + (r % S) * sS;
        T* dst = o + (r / S) * oN + (r % S) * oS;
        for (int64_t c = 0; c < C; ++c) dst[c] = static_cast<T>(static_cast<acc>(src[c]) * a[c] + b[c]);
      });
      return;
    }
    torchlet::detail::parallel_for_work(N * C, S, [&](int64_t p) {
      const int64_t n = p / C, c = p % C;
      const acc a = static_cast<acc>(scale[static_cast<size_t>(c)]);
      const acc b = static_cast<acc>(shift[static_cast<size_t>(c)]);
      const T* src = in + n * sN + c * sC;
      T* dst = o + p * S;
      if (sS == 1) {
        for (int64_t s = 0; s < S; ++s) dst[s] = static_cast<T>(static_cast<acc>(src[s]) * a + b);
      } else {
        for (int64_t s = 0; s < S; ++s) dst[s] = static_cast<T>(static_cast<acc>(src[s * sS]) * a + b);
      }
    });
  });
}
}  // namespace cpu
}  // namespace torchlet
