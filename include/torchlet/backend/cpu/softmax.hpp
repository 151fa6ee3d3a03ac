#pragma once
/// \file CPU softmax and log_softmax along one dim of a tensor of any layout: max-subtracted (stable), computed
/// in float for float16/bfloat16/float32 and in double for float64.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "torchlet/core/threads.hpp"
#include "torchlet/tensor/dispatch.hpp"
#include "torchlet/tensor/strided_loop.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::cpu {

/// out = softmax(x, dim) (or log_softmax with `log`); out has x's sizes and any layout, x any layout.
inline void softmax_into(const Tensor& out, const Tensor& x, int64_t dim, bool log) {
  if (x.numel() == 0) return;
  const int64_t nd = x.dim();
  const int64_t n = nd == 0 ? 1 : x.size(dim);
  const int64_t xs = nd == 0 ? 0 : x.stride(dim), os = nd == 0 ? 0 : out.stride(dim);
  // kept dims, outer to inner, with both tensors' strides
  Shape ksz, kxs, kos;
  for (int64_t d = 0; d < nd; ++d) {
    if (d == dim || x.size(d) == 1) continue;
    ksz.push_back(x.size(d));
    kxs.push_back(x.stride(d));
    kos.push_back(out.stride(d));
  }
  const int64_t rows = numel_of(ksz);
  // vectorise over the innermost kept dim when it, not `dim`, is the one laid out contiguously
  const bool outer = !ksz.empty() && n > 1 && std::abs(kxs.back()) < std::abs(xs);
  const int64_t vec = outer ? ksz.back() : 1;
  const int64_t block = outer ? std::min<int64_t>(vec, 64) : 1;
  const int64_t nblocks = (vec + block - 1) / block;
  const int64_t tasks = rows / vec * nblocks;
  const int64_t kdims = static_cast<int64_t>(ksz.size()) - (outer ? 1 : 0);
  const int64_t vxs = outer ? kxs.back() : 0, vos = outer ? kos.back() : 0;
  const int threads = get_num_threads();
  const bool par = threads > 1 && tasks > 1 && x.numel() >= torchlet::detail::kParallelGrain / 4;

  torchlet::detail::dispatch_floating(x.dtype(), log ? "log_softmax" : "softmax", [&]<class T>() {
    using A = torchlet::detail::opmath_t<T>;
    const T* xb = static_cast<const T*>(x.data_ptr());
    T* ob = static_cast<T*>(out.data_ptr());
    auto task = [&](int64_t t) {
      int64_t row = t / nblocks, xo = 0, oo = 0;
      const int64_t j0 = (t % nblocks) * block, jn = std::min(block, vec - j0);
      for (int64_t d = kdims - 1; d >= 0 && row > 0; --d) {
        const int64_t i = row % ksz[d];
        row /= ksz[d];
        xo += i * kxs[d];
        oo += i * kos[d];
      }
      xo += j0 * vxs;
      oo += j0 * vos;
      A mx[64], sum[64];
      for (int64_t j = 0; j < jn; ++j) {
        mx[j] = -std::numeric_limits<A>::infinity();
        sum[j] = 0;
      }
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < jn; ++j) {
          const A v = static_cast<A>(xb[xo + i * xs + j * vxs]);
          if (!(v <= mx[j])) mx[j] = v;  // NaN is taken as the max, so the row becomes NaN
        }
      // softmax in float32/float64 keeps exp(x - max) in the output between the passes
      constexpr bool keep_exp = std::is_same_v<T, A>;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < jn; ++j) {
          const A e = std::exp(static_cast<A>(xb[xo + i * xs + j * vxs]) - mx[j]);
          sum[j] += e;
          if constexpr (keep_exp) {
            if (!log) ob[oo + i * os + j * vos] = e;
          }
        }
      for (int64_t j = 0; j < jn; ++j) {
        if (log) sum[j] = std::log(sum[j]);
        else sum[j] = A(1) / sum[j];
      }
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < jn; ++j) {
          T& o = ob[oo + i * os + j * vos];
          if (log) {
            o = static_cast<T>(static_cast<A>(xb[xo + i * xs + j * vxs]) - mx[j] - sum[j]);
          } else if constexpr (keep_exp) {
            o = static_cast<T>(static_cast<A>(o) * sum[j]);
          } else {
            o = static_cast<T>(std::exp(static_cast<A>(xb[xo + i * xs + j * vxs]) - mx[j]) * sum[j]);
          }
        }
    };
    torchlet::detail::parallel_for(tasks, par, task);
  });
}
}  // namespace torchlet::cpu
