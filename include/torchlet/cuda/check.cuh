#pragma once
/// \file Turns CUDA runtime, cuBLAS and cuDNN status codes into torchlet's DeviceError naming the call and the
/// status: `TORCHLET_CUDA_CHECK(cudaMalloc(&p, n));` raises "[cuda] cudaMalloc(&p, n) failed: out of memory
/// (cudaErrorMemoryAllocation)". Compiled by nvcc only (include/torchlet/cuda.cuh pulls it in).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "torchlet/core/error.hpp"

namespace torchlet::cuda {

/// cuBLAS's name for a status (cublasGetStatusString exists only from CUDA 11.4 on; this works everywhere).
inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cublasStatus_t";
  }
}

namespace detail {
/// Raises DeviceError for a failed CUDA runtime call (the sticky error is cleared when it can be).
/// Errors of a stream capture (CUDA graphs) say so: a host synchronisation ends the capture.
inline void raise_cuda(cudaError_t e, const char* call, const char* file, int line) {
  (void)cudaGetLastError();
  if (e == cudaErrorStreamCaptureUnsupported)
    TORCHLET_THROW(DeviceError, "[cuda graph] ", call, " synchronises with the host during capture: ",
                   cudaGetErrorString(e), " (", cudaGetErrorName(e), ") at ", file, ":", line);
  if (e == cudaErrorStreamCaptureInvalidated || e == cudaErrorStreamCaptureImplicit ||
      e == cudaErrorStreamCaptureUnjoined || e == cudaErrorStreamCaptureIsolation ||
      e == cudaErrorStreamCaptureUnmatched || e == cudaErrorStreamCaptureMerge ||
      e == cudaErrorStreamCaptureWrongThread)
    TORCHLET_THROW(DeviceError, "[cuda graph] ", call, " failed during capture: ", cudaGetErrorString(e), " (",
                   cudaGetErrorName(e), ") at ", file, ":", line);
  TORCHLET_THROW(DeviceError, "[cuda] ", call, " failed: ", cudaGetErrorString(e), " (", cudaGetErrorName(e),
                 ") at ", file, ":", line);
}
/// Raises DeviceError for a failed cuBLAS call.
inline void raise_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  TORCHLET_THROW(DeviceError, "[cublas] ", call, " failed: ", cublas_status_name(s), " at ", file, ":", line);
}
/// Raises DeviceError for a failed cuDNN call.
inline void raise_cudnn(cudnnStatus_t s, const char* call, const char* file, int line) {
  TORCHLET_THROW(DeviceError, "[cudnn] ", call, " failed: ", cudnnGetErrorString(s), " at ", file, ":", line);
}
}  // namespace detail
}  // namespace torchlet::cuda

/// Raises DeviceError naming `call` unless it returns cudaSuccess.
#define TORCHLET_CUDA_CHECK(call)                                                            \
  do {                                                                                      \
    const cudaError_t torchlet_cuda_status_ = (call);                                       \
    if (torchlet_cuda_status_ != cudaSuccess)                                               \
      ::torchlet::cuda::detail::raise_cuda(torchlet_cuda_status_, #call, __FILE__, __LINE__); \
  } while (0)

/// Raises DeviceError naming `call` unless it returns CUBLAS_STATUS_SUCCESS.
#define TORCHLET_CUBLAS_CHECK(call)                                                              \
  do {                                                                                          \
    const cublasStatus_t torchlet_cublas_status_ = (call);                                      \
    if (torchlet_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                       \
      ::torchlet::cuda::detail::raise_cublas(torchlet_cublas_status_, #call, __FILE__, __LINE__); \
  } while (0)

/// Raises DeviceError naming `call` unless it returns CUDNN_STATUS_SUCCESS.
#define TORCHLET_CUDNN_CHECK(call)                                                             \
  do {                                                                                        \
    const cudnnStatus_t torchlet_cudnn_status_ = (call);                                      \
    if (torchlet_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                       \
      ::torchlet::cuda::detail::raise_cudnn(torchlet_cudnn_status_, #call, __FILE__, __LINE__); \
  } while (0)

/// Raises DeviceError naming the kernel `name` (a string literal) if its launch failed.
#define TORCHLET_CUDA_CHECK_LAUNCH(name)                                                           \
  do {                                                                                            \
    const cudaError_t torchlet_launch_status_ = cudaGetLastError();                               \
    if (torchlet_launch_status_ != cudaSuccess)                                                   \
      ::torchlet::cuda::detail::raise_cuda(torchlet_launch_status_, "launch of " name, __FILE__, __LINE__); \
  } while (0)
