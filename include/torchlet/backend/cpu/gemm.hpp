#pragma once
/// \file The one GEMM every CPU kernel uses (matmul, linear, conv2d's im2col path): Eigen's blocked,
/// vectorised matrix product, multithreaded through OpenMP when built with it.
#include <Eigen/Core>
#include <cstdint>

namespace torchlet::cpu {

/// C = alpha * op(A) * op(B) + beta * C on row-major matrices, where op(X) is X or its transpose.
/// op(A) is M x K, op(B) is K x N, C is M x N; lda/ldb/ldc are the row strides (in elements) of the
/// matrices as stored. With beta == 0, C's prior contents are ignored (may be uninitialised).
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using CMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  using OutMap = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
  OutMap c(C, M, N, Eigen::OuterStride<>(ldc));
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (beta == T(0)) c.setZero(); else c *= beta;
    return;
  }
  const CMap a(A, trans_a ? K : M, trans_a ? M : K, Eigen::OuterStride<>(lda));
  const CMap b(B, trans_b ? N : K, trans_b ? K : N, Eigen::OuterStride<>(ldb));
  auto run = [&](const auto& opa, const auto& opb) {
    if (beta == T(0)) {
      if (alpha == T(1)) c.noalias() = opa * opb;
      else c.noalias() = alpha * (opa * opb);
    } else {
      if (beta != T(1)) c *= beta;
      c.noalias() += alpha * (opa * opb);
    }
  };
  if (trans_a && trans_b) run(a.transpose(), b.transpose());
  else if (trans_a) run(a.transpose(), b);
  else if (trans_b) run(a, b.transpose());
  else run(a, b);
}
}  // namespace torchlet::cpu
