#pragma once
/// \file CPU batched matrix products on strided operands: float32/float64 through cpu::gemm (transposition flags
/// and leading dims instead of copies where the layout allows), integer dtypes through a plain wrapping loop.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "torchlet/backend/cpu/gemm.hpp"
#include "torchlet/core/threads.hpp"
#include "torchlet/tensor/dispatch.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {
namespace detail {
/// How a strided rows x cols matrix can be handed to gemm: as stored (row-major, leading dim `ld`) or as the
/// transpose of a row-major matrix; `ok` is false when neither dim has unit stride.
struct GemmLayout {
  bool ok = false;
  bool trans = false;
  int64_t ld = 0;
};

/// The gemm layout of a matrix with the given sizes and element strides.
inline GemmLayout gemm_layout(int64_t rows, int64_t cols, int64_t srow, int64_t scol) {
  if (cols <= 1 || scol == 1) {
    const int64_t ld = rows <= 1 ? std::max<int64_t>(cols, 1) : srow;
    if (ld >= std::max<int64_t>(cols, 1)) return {true, false, ld};
  }
  if (rows <= 1 || srow == 1) {
    const int64_t ld = cols <= 1 ? std::max<int64_t>(rows, 1) : scol;
    if (ld >= std::max<int64_t>(rows, 1)) return {true, true, ld};
  }
  return {};
}

/// Per-matrix element offsets of the batch dims (all but the last two) of `t`, in row-major batch order.
inline std::vector<int64_t> batch_offsets(const Tensor& t) {
  const int64_t nb = t.dim() - 2;
  const Shape bsz(t.sizes().begin(), t.sizes().begin() + nb);
  const int64_t count = numel_of(bsz);
  std::vector<int64_t> off(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    int64_t rem = i, o = 0;
    for (int64_t d = nb - 1; d >= 0; --d) {
      o += (rem % bsz[d]) * t.strides()[d];
      rem /= bsz[d];
    }
    off[i] = o;
  }
  return off;
}
}  // namespace detail

namespace cpu {

/// out = alpha * (a @ b) + beta * out for a [..., M, K], b [..., K, N] and out [..., M, N] with equal batch
/// sizes (a and b may be broadcast views with zero strides; any layout). out must be contiguous; with
/// beta == 0 its prior contents are ignored. float32/float64 and integer dtypes (all three alike).
inline void matmul_into(const Tensor& out, Tensor a, Tensor b, const Scalar& alpha, const Scalar& beta) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  if (out.numel() == 0) return;
  const auto& as = a.strides();
  const auto& bs = b.strides();
  auto la = torchlet::detail::gemm_layout(M, K, as[as.size() - 2], as.back());
  auto lb = torchlet::detail::gemm_layout(K, N, bs[bs.size() - 2], bs.back());
  if (a.is_floating_point() && !la.ok) {
    a = a.contiguous();
    la = torchlet::detail::gemm_layout(M, K, K, 1);
  }
  if (b.is_floating_point() && !lb.ok) {
    b = b.contiguous();
    lb = torchlet::detail::gemm_layout(K, N, N, 1);
  }
  const auto aoff = torchlet::detail::batch_offsets(a), boff = torchlet::detail::batch_offsets(b);
  const int64_t batches = static_cast<int64_t>(aoff.size());
  const int64_t flops = M * N * std::max<int64_t>(K, 1);
  const int threads = get_num_threads();
  // many small products: one per thread (Eigen then runs single-threaded inside); otherwise Eigen threads
  const bool par_batches = threads > 1 && batches > 1 && flops < 128 * 128 * 128 && batches * flops >= 65536;

  if (a.dtype() == kFloat32 || a.dtype() == kFloat64) {
    torchlet::detail::dispatch_floating(a.dtype(), "matmul", [&]<class T>() {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
        const T* A = static_cast<const T*>(a.data_ptr());
        const T* B = static_cast<const T*>(b.data_ptr());
        T* C = static_cast<T*>(out.data_ptr());
        const T al = alpha.to<T>(), be = beta.to<T>();
        auto one = [&](int64_t i) {
          gemm<T>(la.trans, lb.trans, M, N, K, al, A + aoff[i], la.ld, B + boff[i], lb.ld, be, C + i * M * N,
                  std::max<int64_t>(N, 1));
        };
        torchlet::detail::parallel_for(batches, par_batches, one);
      }
    });
    return;
  }
  TORCHLET_CHECK(is_integral(a.dtype()) && has_kernels(a.dtype()), DTypeError, "[matmul] not implemented for ",
                 a.dtype(), " (as in PyTorch)");
  torchlet::detail::dispatch_all(a.dtype(), "matmul", [&]<class T>() {
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      // products and sums wrap modulo 2^64; truncating to T gives what T's own wrapping arithmetic gives
      const T* A = static_cast<const T*>(a.data_ptr());
      const T* B = static_cast<const T*>(b.data_ptr());
      T* C = static_cast<T*>(out.data_ptr());
      const auto al = static_cast<uint64_t>(alpha.to<int64_t>()), be = static_cast<uint64_t>(beta.to<int64_t>());
      const int64_t am = as[as.size() - 2], ak = as.back(), bk = bs[bs.size() - 2], bn = bs.back();
      auto one = [&](int64_t i) {
        std::vector<uint64_t> acc(static_cast<size_t>(N));
        for (int64_t m = 0; m < M; ++m) {
          std::fill(acc.begin(), acc.end(), 0);
          const T* arow = A + aoff[i] + m * am;
          for (int64_t k = 0; k < K; ++k) {
            const auto av = static_cast<uint64_t>(static_cast<int64_t>(arow[k * ak]));
            const T* brow = B + boff[i] + k * bk;
            for (int64_t n = 0; n < N; ++n) acc[n] += av * static_cast<uint64_t>(static_cast<int64_t>(brow[n * bn]));
          }
          T* crow = C + (i * M + m) * N;
          for (int64_t n = 0; n < N; ++n) {
            uint64_t v = al * acc[n];
            if (be != 0) v += be * static_cast<uint64_t>(static_cast<int64_t>(crow[n]));
            crow[n] = static_cast<T>(static_cast<int64_t>(v));
          }
        }
      };
      torchlet::detail::parallel_for(batches, threads > 1 && batches > 1 && batches * flops >= 65536, one);
    }
  });
}
}  // namespace cpu
}  // namespace torchlet
