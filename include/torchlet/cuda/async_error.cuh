#pragma once
/// \file Errors that kernels find in the data (an out-of-range class index), reported without a host
/// synchronisation: the kernel writes the first one into host-mapped pinned memory, and the host raises it at its
/// next synchronisation with the device (cuda::synchronize, a copy to the host), as PyTorch reports a device-side
/// assert. A training step therefore never waits on the GPU to validate its targets. Compiled by nvcc only.
#include <cuda_runtime.h>

#include <cstdint>

#include "torchlet/core/error.hpp"
#include "torchlet/cuda/check.cuh"

namespace torchlet::cuda {

/// What a kernel found: set once (the first error wins) until the host raises it.
struct AsyncErrorRecord {
  int flag;           ///< 0: nothing; 1: a class index out of range
  int device;         ///< where
  int64_t value;      ///< the offending index
  int64_t bound;      ///< the class count it had to stay below
};

/// The process's record, in host memory the device writes through (host-mapped, pinned; one for every device).
inline AsyncErrorRecord* async_error_record() {
  static AsyncErrorRecord* record = [] {
    void* p = nullptr;
    TORCHLET_CUDA_CHECK(cudaHostAlloc(&p, sizeof(AsyncErrorRecord), cudaHostAllocMapped | cudaHostAllocPortable));
    auto* r = static_cast<AsyncErrorRecord*>(p);
    *r = AsyncErrorRecord{0, -1, 0, 0};
    return r;
  }();
  return record;
}

/// Device side: records a class index `value` outside [0, bound) unless an error is already recorded.
__device__ inline void report_index_error(AsyncErrorRecord* record, int device, int64_t value, int64_t bound) {
  if (atomicCAS(&record->flag, 0, 1) == 0) {
    record->device = device;
    record->value = value;
    record->bound = bound;
    __threadfence_system();
  }
}

/// Host side, after a synchronisation: raises (and clears) the recorded error, if any, as the IndexError the CPU
/// would have raised, naming the device.
inline void raise_async_errors() {
  volatile AsyncErrorRecord* r = async_error_record();
  if (r->flag == 0) return;
  const int64_t value = r->value, bound = r->bound;
  const int device = r->device;
  r->flag = 0;
  TORCHLET_THROW(IndexError, "[nll_loss] target ", value, " is out of bounds for ", bound,
                 " classes (found by a kernel on cuda:", device, " and reported at the next synchronisation)");
}
}  // namespace torchlet::cuda
