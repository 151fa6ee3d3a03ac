#pragma once
/// \file Copies that involve a CUDA tensor (torchlet's device copy hook): host to device and back through a pinned
/// staging buffer, device to device on one GPU by the elementwise copy kernel, and between GPUs by a peer copy.
/// A non-contiguous or differently typed source is first made contiguous in the destination's dtype on its own
/// side (the CPU for host sources, its GPU for device sources), so the bus only carries dense bytes.
/// Host <-> device copies are synchronous, as Tensor::to(device) is in PyTorch by default. Compiled by nvcc only.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "torchlet/cuda/allocator.cuh"
#include "torchlet/cuda/async_error.cuh"
#include "torchlet/cuda/elementwise.cuh"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::cuda {

/// A pinned (page-locked) host buffer that host <-> device copies go through in chunks of its size.
class PinnedStaging {
 public:
  /// Bytes per chunk.
  static constexpr size_t kChunk = size_t{32} << 20;

  /// Copies `n` bytes from host `src` to device `dst` on `stream` and waits for it.
  void to_device(void* dst, const void* src, size_t n, int device, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceGuard guard(device);
    for (size_t done = 0; done < n;) {
      const size_t len = std::min(kChunk, n - done);
      char* buf = buffer();
      std::memcpy(buf, static_cast<const char*>(src) + done, len);
      TORCHLET_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + done, buf, len, cudaMemcpyHostToDevice, stream));
      TORCHLET_CUDA_CHECK(cudaStreamSynchronize(stream));  // the buffer is refilled next
      done += len;
    }
  }
  /// Copies `n` bytes from device `src` to host `dst` after the work queued on `stream`.
  void to_host(void* dst, const void* src, size_t n, int device, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceGuard guard(device);
    for (size_t done = 0; done < n;) {
      const size_t len = std::min(kChunk, n - done);
      char* buf = buffer();
      TORCHLET_CUDA_CHECK(
          cudaMemcpyAsync(buf, static_cast<const char*>(src) + done, len, cudaMemcpyDeviceToHost, stream));
      TORCHLET_CUDA_CHECK(cudaStreamSynchronize(stream));
      std::memcpy(static_cast<char*>(dst) + done, buf, len);
      done += len;
    }
  }

 private:
  char* buffer() {
    if (!buf_) TORCHLET_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&buf_), kChunk, cudaHostAllocPortable));
    return buf_;
  }
  std::mutex mutex_;
  char* buf_ = nullptr;  // kept for the process's life
};

/// The process's staging buffer.
inline PinnedStaging& pinned_staging() {
  static PinnedStaging* s = new PinnedStaging();
  return *s;
}

/// The device copy hook: dst = convert(src) for tensors of one shape where at least one is on a CUDA device.
inline void copy_between(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  TORCHLET_CHECK(dst.device().is_cpu() || dst.is_cuda(), DeviceError, "[copy_] unsupported device ", dst.device());
  TORCHLET_CHECK(src.device().is_cpu() || src.is_cuda(), DeviceError, "[copy_] unsupported device ", src.device());
  if (dst.device() == src.device()) {  // one GPU; a source sharing dst's bytes is copied aside first
    if (dst.storage().is_same(src.storage())) {
      Tensor aside = empty(src.sizes(), TensorOptions(src.dtype(), src.device()));
      copy_same_device(aside, src);
      copy_same_device(dst, aside);
    } else {
      copy_same_device(dst, src);
    }
    return;
  }
  if (src.is_cpu()) {  // host -> device: dense bytes of dst's dtype
    Tensor host = src;
    if (src.dtype() != dst.dtype() || !src.is_contiguous()) {
      host = empty(src.sizes(), dst.dtype());
      torchlet::detail::copy_cpu(host, src);
    }
    const Tensor target = dst.is_contiguous() ? dst : empty(dst.sizes(), TensorOptions(dst.dtype(), dst.device()));
    const int dev = dst.device().index;
    pinned_staging().to_device(target.data_ptr(), host.data_ptr(), static_cast<size_t>(host.nbytes()), dev,
                               current_stream(dev));
    if (!target.is_same(dst)) copy_same_device(dst, target);
    return;
  }
  // source on a GPU: dense bytes of its dtype on its device first
  const Tensor dense = src.is_contiguous() ? src : [&] {
    Tensor t = empty(src.sizes(), TensorOptions(src.dtype(), src.device()));
    copy_same_device(t, src);
    return t;
  }();
  const int sdev = src.device().index;
  if (dst.is_cpu()) {  // device -> host
    const bool direct = dst.is_contiguous() && dst.dtype() == src.dtype();
    const Tensor host = direct ? dst : empty(src.sizes(), src.dtype());
    pinned_staging().to_host(host.data_ptr(), dense.data_ptr(), static_cast<size_t>(dense.nbytes()), sdev,
                             current_stream(sdev));
    raise_async_errors();  // the copy synchronised: what kernels found before it surfaces here
    if (!direct) torchlet::detail::copy_cpu(dst, host);
    return;
  }
  // GPU -> other GPU: a peer copy into a dense tensor of the source dtype on dst's device, then convert there
  const int ddev = dst.device().index;
  const bool direct = dst.is_contiguous() && dst.dtype() == src.dtype();
  const Tensor landing = direct ? dst : empty(src.sizes(), TensorOptions(src.dtype(), dst.device()));
  {
    DeviceGuard guard(sdev);
    TORCHLET_CUDA_CHECK(cudaStreamSynchronize(current_stream(sdev)));
  }
  DeviceGuard guard(ddev);
  TORCHLET_CUDA_CHECK(cudaMemcpyPeerAsync(landing.data_ptr(), ddev, dense.data_ptr(), sdev,
                                          static_cast<size_t>(dense.nbytes()), current_stream(ddev)));
  if (!direct) copy_same_device(dst, landing);
}
}  // namespace torchlet::cuda
