#pragma once
/// \file The CUDA caching allocator: blocks come back to a free list of their device and stream when their last
/// tensor goes, and the next request of a fitting size takes one from there, so a training loop stops calling
/// cudaMalloc after its first step. Requests are rounded to 512 B up to 1 MiB ("small") and to 2 MiB above;
/// cudaMalloc runs only on a miss, and on out-of-memory the cache is freed and the allocation retried once.
/// Also: the current stream per device and a device guard. Compiled by nvcc only.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

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

/// The caching allocator registered for DeviceType::CUDA (see caching_allocator()).
class CachingAllocator final : public Allocator {
 public:
  /// Requests up to this size use the small pool (rounded to kSmallRound).
  static constexpr size_t kSmallLimit = size_t{1} << 20;
  /// Rounding of small requests.
  static constexpr size_t kSmallRound = 512;
  /// Rounding of large requests.
  static constexpr size_t kLargeRound = size_t{2} << 20;

  /// The size a request of `nbytes` is served with.
  static size_t rounded_size(size_t nbytes) {
    const size_t r = nbytes <= kSmallLimit ? kSmallRound : kLargeRound;
    return (nbytes + r - 1) / r * r;
  }

  DataPtr allocate(size_t nbytes, Device device) override {
    if (nbytes == 0) return {};
    const int dev = device.index;
    TORCHLET_CHECK(dev >= 0 && dev < kMaxDevices, DeviceError, "[CUDA caching allocator] device index ", dev,
                   " out of range");
    const size_t size = rounded_size(nbytes);
    const cudaStream_t stream = current_stream(dev);
    void* ptr = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto& pool = pools_[PoolKey{dev, stream, size <= kSmallLimit}];
      // the smallest cached block that fits, if it wastes at most a quarter of itself
      auto it = pool.lower_bound(size);
      if (it != pool.end() && it->first - size <= it->first / 4) {
        ptr = it->second;
        const size_t block_size = it->first;
        live_[ptr] = Block{block_size, dev, stream};
        pool.erase(it);
        ++stats_[dev].cache_hits;
        count_allocated(dev, block_size);
      }
    }
    if (!ptr) ptr = malloc_block(size, dev, stream);
    CachingAllocator* self = this;
    return {ptr, std::shared_ptr<void>(ptr, [self](void* p) { self->release(p); })};
  }

  /// Returns every cached (free) block to CUDA, like torch.cuda.empty_cache(). Live blocks stay.
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    free_cached(-1);
  }

  /// The counters of device `index`.
  MemoryStats stats(int index) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = stats_.find(index);
    return it == stats_.end() ? MemoryStats{} : it->second;
  }
  /// Sets peak_allocated of device `index` to the current allocation.
  void reset_peak(int index) {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_[index].peak_allocated = stats_[index].allocated;
  }

 private:
  struct Block {
    size_t size;
    int device;
    cudaStream_t stream;
  };
  struct PoolKey {
    int device;
    cudaStream_t stream;
    bool small;
    bool operator<(const PoolKey& o) const {
      if (device != o.device) return device < o.device;
      if (stream != o.stream) return reinterpret_cast<uintptr_t>(stream) < reinterpret_cast<uintptr_t>(o.stream);
      return small < o.small;
    }
  };

  void count_allocated(int dev, size_t size) {
    MemoryStats& s = stats_[dev];
    s.allocated += size;
    if (s.allocated > s.peak_allocated) s.peak_allocated = s.allocated;
  }

  // cudaMalloc on a miss; on out-of-memory frees this device's cache and tries once more.
  void* malloc_block(size_t size, int dev, cudaStream_t stream) {
    DeviceGuard guard(dev);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      std::lock_guard<std::mutex> lock(mutex_);
      free_cached(dev);
      e = cudaMalloc(&p, size);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      const MemoryStats s = stats_[dev];
      TORCHLET_THROW(DeviceError, "[CUDA caching allocator] out of memory allocating ", size, " bytes on cuda:", dev,
                     " (", cudaGetErrorString(e), "; allocated ", s.allocated, " bytes, reserved ", s.reserved,
                     " bytes)");
    }
    live_[p] = Block{size, dev, stream};
    ++stats_[dev].cuda_mallocs;
    stats_[dev].reserved += size;
    count_allocated(dev, size);
    return p;
  }

  // The deleter of every block: back to its pool.
  void release(void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) return;
    const Block b = it->second;
    live_.erase(it);
    stats_[b.device].allocated -= b.size;
    pools_[PoolKey{b.device, b.stream, b.size <= kSmallLimit}].emplace(b.size, p);
  }

  // cudaFree of the cached blocks of `dev` (all devices when negative); the mutex is held by the caller.
  void free_cached(int dev) {
    for (auto& [key, pool] : pools_) {
      if (dev >= 0 && key.device != dev) continue;
      DeviceGuard guard(key.device);
      // blocks may still be read by queued work on their stream
      if (!pool.empty()) (void)cudaStreamSynchronize(key.stream);
      for (auto& [size, p] : pool) {
        (void)cudaFree(p);
        stats_[key.device].reserved -= size;
      }
      pool.clear();
    }
  }

  mutable std::mutex mutex_;
  std::map<PoolKey, std::multimap<size_t, void*>> pools_;
  std::unordered_map<void*, Block> live_;
  std::map<int, MemoryStats> stats_;
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
