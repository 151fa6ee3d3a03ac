#pragma once
/// \file The CUDA caching allocator: blocks come back to a free list of their device and stream when their last
/// tensor goes, and the next request of a fitting size takes one from there, so a training loop stops calling
/// cudaMalloc after its first step. Requests are rounded to 512 B up to 1 MiB ("small") and to 2 MiB above;
/// cudaMalloc runs only on a miss, and on out-of-memory the cache is freed and the allocation retried once.
/// The bookkeeping (and the private pools of CUDA graphs) is backend/block_pool.hpp, tested on the CPU; this file
/// plugs cudaMalloc, cudaFree and streams into it. Also: the current stream per device and a device guard.
/// Compiled by nvcc only.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "torchlet/backend/block_pool.hpp"
#include "torchlet/cuda/check.cuh"
#include "torchlet/tensor/storage.hpp"

namespace torchlet::cuda {

/// Most devices a process uses.
inline constexpr int kMaxDevices = 64;

/// Makes `index` the current CUDA device for its lifetime and restores the previous one.
class DeviceGuard {
 public:
  /// Switches to device `index` (no call when it is current already).
  explicit DeviceGuard(int index) {
    TORCHLET_CUDA_CHECK(cudaGetDevice(&previous_));
    if (index != previous_) TORCHLET_CUDA_CHECK(cudaSetDevice(index));
  }
  ~DeviceGuard() {
    int now = previous_;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous_) (void)cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

namespace detail {
inline cudaStream_t& stream_slot(int device) {
  thread_local cudaStream_t streams[kMaxDevices] = {};
  TORCHLET_CHECK(device >= 0 && device < kMaxDevices, DeviceError, "[cuda] device index ", device,
                 " out of range [0, ", kMaxDevices, ")");
  return streams[device];
}
}  // namespace detail

/// The stream this thread's kernels and copies on `device` run on (the legacy default stream unless set).
inline cudaStream_t current_stream(int device) { return detail::stream_slot(device); }
/// Makes `stream` the current stream of `device` for this thread (nullptr: the legacy default stream).
/// Memory freed while a stream is current returns to that stream's free list.
inline void set_current_stream(int device, cudaStream_t stream) { detail::stream_slot(device) = stream; }

/// Memory counters of one device, in bytes.
struct MemoryStats {
  size_t allocated = 0;       ///< held by live tensors (block sizes)
  size_t reserved = 0;        ///< obtained from cudaMalloc: live plus cached
  size_t peak_allocated = 0;  ///< the most `allocated` has been
  size_t cuda_mallocs = 0;    ///< cudaMalloc calls made (misses)
  size_t cache_hits = 0;      ///< requests served from the cache
};

/// The caching allocator registered for DeviceType::CUDA (see caching_allocator()): backend/block_pool.hpp's
/// bookkeeping over cudaMalloc/cudaFree, pools keyed by the current stream (or by a CUDA graph's private pool
/// while its stream is being captured).
class CachingAllocator final : public Allocator {
 public:
  /// Requests up to this size use the small pool (rounded to kSmallRound).
  static constexpr size_t kSmallLimit = BlockPool::kSmallLimit;
  /// Rounding of small requests.
  static constexpr size_t kSmallRound = BlockPool::kSmallRound;
  /// Rounding of large requests.
  static constexpr size_t kLargeRound = BlockPool::kLargeRound;

  CachingAllocator() : pool_(cuda_memory(), "[CUDA caching allocator]", "cuda:") {}

  /// The size a request of `nbytes` is served with.
  static size_t rounded_size(size_t nbytes) { return BlockPool::rounded_size(nbytes); }

  DataPtr allocate(size_t nbytes, Device device) override {
    if (nbytes == 0) return {};
    const int dev = device.index;
    TORCHLET_CHECK(dev >= 0 && dev < kMaxDevices, DeviceError, "[CUDA caching allocator] device index ", dev,
                   " out of range");
    void* ptr = pool_.allocate(nbytes, dev, stream_key(current_stream(dev)));
    CachingAllocator* self = this;
    return {ptr, std::shared_ptr<void>(ptr, [self](void* p) { self->pool_.release(p); })};
  }

  /// Returns every cached (free) block to CUDA, like torch.cuda.empty_cache(). Live blocks and the private pools
  /// of CUDA graphs stay.
  void empty_cache() { pool_.empty_cache(); }

  /// The counters of device `index`.
  MemoryStats stats(int index) const {
    const BlockPoolStats s = pool_.stats(index);
    return MemoryStats{s.allocated, s.reserved, s.peak_allocated, s.raw_mallocs, s.cache_hits};
  }
  /// Sets peak_allocated of device `index` to the current allocation.
  void reset_peak(int index) { pool_.reset_peak(index); }

  /// A new private pool (for a CUDA graph; see BlockPool).
  uint64_t create_pool() { return pool_.create_pool(); }
  /// Serves every allocation on `stream` of `device` from private pool `pool` until end_routing().
  void route_to_pool(int device, cudaStream_t stream, uint64_t pool) {
    pool_.route_to_pool(device, stream_key(stream), pool);
  }
  /// Ends route_to_pool() for `stream` of `device`.
  void end_routing(int device, cudaStream_t stream) { pool_.end_routing(device, stream_key(stream)); }
  /// Frees the cached blocks of private pool `pool` and forgets it.
  void drop_pool(uint64_t pool) { pool_.drop_pool(pool); }

 private:
  static uintptr_t stream_key(cudaStream_t s) { return reinterpret_cast<uintptr_t>(s); }

  // cudaMalloc / cudaFree / cudaStreamSynchronize for the block pool; out-of-memory is reported as nullptr
  static RawMemory cuda_memory() {
    return RawMemory{
        [](size_t bytes, int device) -> void* {
          DeviceGuard guard(device);
          void* p = nullptr;
          const cudaError_t e = cudaMalloc(&p, bytes);
          if (e == cudaErrorMemoryAllocation) {
            (void)cudaGetLastError();
            return nullptr;
          }
          TORCHLET_CUDA_CHECK(e);
          return p;
        },
        [](void* p, size_t, int device) {
          DeviceGuard guard(device);
          (void)cudaFree(p);
        },
        [](int device, uintptr_t stream) {
          DeviceGuard guard(device);
          // blocks may still be read by queued work on their stream
          (void)cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(stream));
        }};
  }

  BlockPool pool_;
};

/// The process's caching allocator (never destroyed: blocks may be released after main returns).
inline CachingAllocator& caching_allocator() {
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}

/// Frees the cached blocks of every device (like torch.cuda.empty_cache()).
inline void empty_cache() { caching_allocator().empty_cache(); }
/// The memory counters of cuda:`index`.
inline MemoryStats memory_stats(int index = 0) { return caching_allocator().stats(index); }
}  // namespace torchlet::cuda
