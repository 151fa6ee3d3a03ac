#pragma once
/// \file Matrix products on cuBLAS: out [..., M, N] (contiguous) = alpha * a [..., M, K] @ b [..., K, N] + beta * out
/// through cublasGemmStridedBatchedEx, one cuBLAS handle per device and stream. Operands with a unit stride in one
/// of their last two dims are used in place (transposed ones as such); batch dims that do not flatten to one
/// stride are made contiguous first. float32 runs in full fp32 unless allow_tf32() is set (like
/// torch.backends.cuda.matmul.allow_tf32, off by default); float64 in fp64; float16 / bfloat16 in and out with
/// float32 accumulation (CUBLAS_COMPUTE_32F, tensor cores). Compiled by nvcc only.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <utility>

#include "torchlet/cuda/allocator.cuh"
#include "torchlet/cuda/check.cuh"
#include "torchlet/cuda/elementwise.cuh"

namespace torchlet::cuda {

/// Whether float32 matmuls may use TF32 tensor cores (torch.backends.cuda.matmul.allow_tf32); false by default.
inline bool& allow_tf32() {
  static bool on = false;
  return on;
}

/// The cuBLAS handle of (device, stream), made on first use and kept for the process's life.
inline cublasHandle_t cublas_handle(int device, cudaStream_t stream) {
  static std::mutex mutex;
  static auto* handles = new std::map<std::pair<int, cudaStream_t>, cublasHandle_t>();
  std::lock_guard<std::mutex> lock(mutex);
  auto it = handles->find({device, stream});
  if (it != handles->end()) return it->second;
  DeviceGuard guard(device);
  cublasHandle_t h = nullptr;
  TORCHLET_CUBLAS_CHECK(cublasCreate(&h));
  TORCHLET_CUBLAS_CHECK(cublasSetStream(h, stream));
  handles->emplace(std::make_pair(device, stream), h);
  return h;
}

namespace detail {
/// One operand as cuBLAS sees it: pointer, whether it is transposed in column-major terms, leading dim and
/// batch stride (elements).
struct GemmOperand {
  const void* ptr = nullptr;
  bool row_major = true;  ///< last dim has unit stride
  int64_t ld = 1;
  int64_t batch_stride = 0;
  Tensor keep;  ///< a contiguous copy when the original could not be used
};

/// The single stride of the flattened batch dims of t (all but the last two), if there is one.
inline bool flat_batch_stride(const Tensor& t, int64_t* stride) {
  int64_t expect = -1;
  *stride = 0;
  bool first = true;
  for (int64_t d = t.dim() - 3; d >= 0; --d) {
    const int64_t n = t.size(d), s = t.stride(d);
    if (n == 1) continue;
    if (first) {
      *stride = s;
      expect = s * n;
      first = false;
    } else {
      if (s != expect) return false;
      expect = s * n;
    }
  }
  return true;
}

/// The GemmOperand of a rows x cols matrix stack t, copying it contiguous when its layout does not fit cuBLAS.
inline GemmOperand gemm_operand(const Tensor& t) {
  const int64_t rows = t.size(-2), cols = t.size(-1);
  const int64_t sr = t.stride(-2), sc = t.stride(-1);
  GemmOperand g;
  int64_t bs = 0;
  const bool batch_ok = flat_batch_stride(t, &bs);
  if (batch_ok && (sc == 1 || cols == 1) && (sr >= std::max<int64_t>(cols, 1) || rows == 1)) {
    g = {t.data_ptr(), true, rows == 1 ? std::max<int64_t>(cols, 1) : sr, bs, Tensor()};
    return g;
  }
  if (batch_ok && (sr == 1 || rows == 1) && (sc >= std::max<int64_t>(rows, 1) || cols == 1)) {
    g = {t.data_ptr(), false, cols == 1 ? std::max<int64_t>(rows, 1) : sc, bs, Tensor()};
    return g;
  }
  Tensor c = empty(t.sizes(), TensorOptions(t.dtype(), t.device()));
  copy_same_device(c, t);
  g = {c.data_ptr(), true, std::max<int64_t>(cols, 1), rows * cols, c};
  return g;
}
}  // namespace detail

/// out = alpha * a @ b + beta * out for float32 / float64 / float16 / bfloat16 stacks (batch dims of a and b broadcast to out's).
inline void matmul(const Tensor& out, const Tensor& a, const Tensor& b, const Scalar& alpha, const Scalar& beta) {
  const DType t = out.dtype();
  const bool half16 = t == kFloat16 || t == kBFloat16;
  TORCHLET_CHECK(t == kFloat32 || t == kFloat64 || half16, DTypeError, "[matmul] the cuda backend multiplies "
                 "float32, float64, float16 and bfloat16, got ", t);
  TORCHLET_CHECK(out.is_contiguous(), ValueError, "[matmul] the cuda output must be contiguous");
  const int64_t M = out.size(-2), N = out.size(-1), K = a.size(-1);
  const int64_t batch = M * N == 0 ? 0 : out.numel() / (M * N);
  if (out.numel() == 0) return;
  // the batch dims of a and b, expanded to out's, must each flatten to one stride
  Shape ea = out.sizes(), eb = out.sizes();
  ea[ea.size() - 1] = K;
  eb[eb.size() - 2] = K;
  const detail::GemmOperand A = detail::gemm_operand(a.expand(ea)), B = detail::gemm_operand(b.expand(eb));
  const int dev = out.device().index;
  DeviceGuard guard(dev);
  cublasHandle_t h = cublas_handle(dev, current_stream(dev));
  // row-major C = A B is column-major C^T = B^T A^T: cuBLAS gets (B, A) with m = N, n = M
  const cublasOperation_t opB = B.row_major ? CUBLAS_OP_N : CUBLAS_OP_T;
  const cublasOperation_t opA = A.row_major ? CUBLAS_OP_N : CUBLAS_OP_T;
  if (K == 0) {  // a product over nothing: out = beta * out
    Tensor scaled = empty(out.sizes(), TensorOptions(t, out.device()));
    if (beta.to<double>() == 0) fill(out, 0);
    else {
      binary(BinaryOp::Mul, scaled, out, Tensor(), 1, beta);
      copy_same_device(out, scaled);
    }
    return;
  }
  if (half16) {  // 16-bit in and out on tensor cores, accumulated in float32 (alpha and beta are float32)
    const cudaDataType_t dt = t == kFloat16 ? CUDA_R_16F : CUDA_R_16BF;
    const float al = alpha.to<float>(), be = beta.to<float>();
    TORCHLET_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, opB, opA, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &al, B.ptr, dt,
        static_cast<int>(B.ld), B.batch_stride, A.ptr, dt, static_cast<int>(A.ld), A.batch_stride, &be,
        out.data_ptr(), dt, static_cast<int>(N), M * N, static_cast<int>(batch), CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT));
  } else if (t == kFloat32) {
    const float al = alpha.to<float>(), be = beta.to<float>();
    const cublasComputeType_t compute = allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    TORCHLET_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, opB, opA, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &al, B.ptr, CUDA_R_32F,
        static_cast<int>(B.ld), B.batch_stride, A.ptr, CUDA_R_32F, static_cast<int>(A.ld), A.batch_stride, &be,
        out.data_ptr(), CUDA_R_32F, static_cast<int>(N), M * N, static_cast<int>(batch), compute,
        CUBLAS_GEMM_DEFAULT));
  } else {
    const double al = alpha.to<double>(), be = beta.to<double>();
    TORCHLET_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, opB, opA, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &al, B.ptr, CUDA_R_64F,
        static_cast<int>(B.ld), B.batch_stride, A.ptr, CUDA_R_64F, static_cast<int>(A.ld), A.batch_stride, &be,
        out.data_ptr(), CUDA_R_64F, static_cast<int>(N), M * N, static_cast<int>(batch), CUBLAS_COMPUTE_64F,
        CUBLAS_GEMM_DEFAULT));
  }
}
}  // namespace torchlet::cuda
