// CUDA smoke test: proves the toolchain setup works — nvcc compiles torchlet's core headers in C++20 and
// links cuBLAS and cuDNN. On a machine with a GPU it also runs a kernel, a cuBLAS SAXPY and a cuDNN handle;
// without one it exits 77 (meson's "skipped").
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "torchlet/tensor/factory.hpp"

namespace {
__global__ void scale_kernel(float* x, float s, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}

int fail(const char* what, const char* detail) {
  std::fprintf(stderr, "cuda smoke: %s failed: %s\n", what, detail);
  return 1;
}
}  // namespace

int main() {
  // host side: torchlet's headers work in a translation unit compiled by nvcc
  torchlet::Tensor host = torchlet::arange(0, 256, 1, torchlet::kFloat32);
  std::printf("cuDNN headers %d.%d.%d, library %zu; cuBLAS headers %d.%d\n", CUDNN_MAJOR, CUDNN_MINOR,
              CUDNN_PATCHLEVEL, cudnnGetVersion(), CUBLAS_VER_MAJOR, CUBLAS_VER_MINOR);

  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("cuda smoke: no CUDA device here, skipping the device part\n");
    return 77;
  }
  const int n = static_cast<int>(host.numel());
  float* d = nullptr;
  if (cudaMalloc(&d, n * sizeof(float)) != cudaSuccess) return fail("cudaMalloc", "");
  cudaMemcpy(d, host.data_ptr(), n * sizeof(float), cudaMemcpyHostToDevice);
  scale_kernel<<<(n + 127) / 128, 128>>>(d, 2.f, n);
  cublasHandle_t blas;
  if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) return fail("cublasCreate", "");
  const float alpha = 1.f;
  cublasSaxpy(blas, n, &alpha, d, 1, d, 1);  // d = 4 * x
  cudnnHandle_t dnn;
  if (cudnnCreate(&dnn) != CUDNN_STATUS_SUCCESS) return fail("cudnnCreate", "");
  std::vector<float> back(n);
  if (cudaMemcpy(back.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess)
    return fail("cudaMemcpy", cudaGetErrorString(cudaGetLastError()));
  for (int i = 0; i < n; ++i)
    if (std::fabs(back[i] - 4.f * i) > 0) return fail("result check", "x*2 then x+x should give 4x");
  cudnnDestroy(dnn);
  cublasDestroy(blas);
  cudaFree(d);
  std::printf("cuda smoke: kernel, cuBLAS and cuDNN ran on the device\n");
  return 0;
}
