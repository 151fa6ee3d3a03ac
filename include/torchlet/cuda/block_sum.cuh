#pragma once
/// \file One block-wide reduction shared by the kernels that sum two running totals per block (batch norm's
/// gradient sums, the nll loss and its weights). Compiled by nvcc only.
#include <cuda_runtime.h>

namespace torchlet::cuda::detail {
/// Adds up sums[0][t] and sums[1][t] over the block's threads t into sums[0][0] and sums[1][0]; every thread has
/// written its own entries first, blockDim.x is a power of two not above N. Every thread of the block must call it.
template <int N>
__device__ inline void block_sum_pairs(double (&sums)[2][N]) {
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half) {
      sums[0][threadIdx.x] += sums[0][threadIdx.x + half];
      sums[1][threadIdx.x] += sums[1][threadIdx.x + half];
    }
    __syncthreads();
  }
}
}  // namespace torchlet::cuda::detail
