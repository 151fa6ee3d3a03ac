#pragma once
/// \file The bookkeeping of a caching device allocator, free of any device API so that it can be tested on the
/// CPU: blocks come back to a free list keyed by (device, stream, private pool, small/large) when released, and
/// the next request of a fitting size takes one from there, so a training loop stops calling the raw allocator
/// after its first step. Requests are rounded to 512 B up to 1 MiB ("small") and to 2 MiB above; the smallest
/// cached block that fits is taken if it wastes at most a quarter of itself. The raw allocator runs only on a
/// miss; when it reports out-of-memory the cache of that device is freed and the request retried once.
///
/// Private pools (CUDA graphs): while a stream is routed to a pool, every block allocated on it comes from and
/// returns to that pool, blocks freed during the routing may be reused by later requests of the routing, and
/// the pool's cached blocks are never handed to other streams nor freed by empty_cache() until the pool is
/// dropped. The CUDA wrapper (cuda/allocator.cuh) plugs cudaMalloc/cudaFree and streams in.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

#include "torchlet/core/error.hpp"

namespace torchlet {

/// Memory counters of one device of a BlockPool, in bytes.
struct BlockPoolStats {
  size_t allocated = 0;       ///< held by live blocks (block sizes)
  size_t reserved = 0;        ///< obtained from the raw allocator: live plus cached
  size_t peak_allocated = 0;  ///< the most `allocated` has been
  size_t raw_mallocs = 0;     ///< raw allocations made (misses)
  size_t cache_hits = 0;      ///< requests served from the cache
};

/// The raw memory a BlockPool manages: callbacks to the device API.
struct RawMemory {
  /// Returns `bytes` of fresh memory on `device`, nullptr when the device is out of memory (other failures raise).
  std::function<void*(size_t bytes, int device)> allocate;
  /// Gives back a block `allocate` returned.
  std::function<void(void* ptr, size_t bytes, int device)> free;
  /// Waits for the work queued on `stream` of `device` (called before cached blocks of that stream are freed).
  std::function<void(int device, uintptr_t stream)> wait_stream;
};

/// A caching allocator's block bookkeeping over a RawMemory (see the file comment). Thread-safe.
class BlockPool {
 public:
  /// Requests up to this size use the small pools (rounded to kSmallRound).
  static constexpr size_t kSmallLimit = size_t{1} << 20;
  /// Rounding of small requests.
  static constexpr size_t kSmallRound = 512;
  /// Rounding of large requests.
  static constexpr size_t kLargeRound = size_t{2} << 20;
  /// The id of no private pool (the per-stream pools).
  static constexpr uint64_t kNoPool = 0;

  /// A pool over `raw`; `name` ("[CUDA caching allocator]") and `device_prefix` ("cuda:") label its errors.
  explicit BlockPool(RawMemory raw, std::string name = "[block pool]", std::string device_prefix = "device:")
      : raw_(std::move(raw)), name_(std::move(name)), device_prefix_(std::move(device_prefix)) {}
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  /// The size a request of `nbytes` is served with.
  static size_t rounded_size(size_t nbytes) {
    const size_t r = nbytes <= kSmallLimit ? kSmallRound : kLargeRound;
    return (nbytes + r - 1) / r * r;
  }

  /// A block of at least `nbytes` (> 0) on `device` for work on `stream` (from the stream's private pool while
  /// it is routed to one); raises DeviceError when the raw allocator is out of memory even after freeing the cache.
  void* allocate(size_t nbytes, int device, uintptr_t stream) {
    TORCHLET_CHECK(nbytes > 0, ValueError, name_, " zero-byte request: expected at least 1 byte, got 0");
    const size_t size = rounded_size(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    const auto route = routes_.find({device, stream});
    const uint64_t pool = route == routes_.end() ? kNoPool : route->second;
    const Key key{device, pool == kNoPool ? stream : 0, pool, size <= kSmallLimit};
    auto& free_list = free_[key];
    // the smallest cached block that fits, if it wastes at most a quarter of itself
    auto it = free_list.lower_bound(size);
    if (it != free_list.end() && it->first - size <= it->first / 4) {
      void* p = it->second;
      const size_t block_size = it->first;
      free_list.erase(it);
      live_[p] = Block{block_size, key, stream};
      ++stats_[device].cache_hits;
      count_allocated(device, block_size);
      return p;
    }
    void* p = raw_.allocate(size, device);
    if (!p) {
      free_cached(device);
      p = raw_.allocate(size, device);
    }
    if (!p) {
      const BlockPoolStats& s = stats_[device];
      TORCHLET_THROW(DeviceError, name_, " out of memory allocating ", size, " bytes on ", device_prefix_, device,
                     " (allocated ", s.allocated, " bytes, reserved ", s.reserved, " bytes)");
    }
    live_[p] = Block{size, key, stream};
    ++stats_[device].raw_mallocs;
    stats_[device].reserved += size;
    count_allocated(device, size);
    return p;
  }

  /// Returns block `p` to the free list it came from (to its stream's when its private pool has been dropped).
  /// Unknown pointers are ignored.
  void release(void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) return;
    Block b = it->second;
    live_.erase(it);
    stats_[b.key.device].allocated -= b.size;
    if (b.key.pool != kNoPool && !pools_.count(b.key.pool)) b.key = Key{b.key.device, b.stream, kNoPool, b.key.small};
    free_[b.key].emplace(b.size, p);
  }

  /// Frees every cached block of the per-stream pools (like torch.cuda.empty_cache()); live blocks and the
  /// cached blocks of private pools stay.
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    free_cached(-1);
  }

  /// A new private pool (its id, never kNoPool).
  uint64_t create_pool() {
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t id = next_pool_++;
    pools_.insert(id);
    return id;
  }
  /// Makes every block allocated on `stream` of `device` come from private pool `pool` until end_routing().
  void route_to_pool(int device, uintptr_t stream, uint64_t pool) {
    std::lock_guard<std::mutex> lock(mutex_);
    TORCHLET_CHECK(pools_.count(pool), ValueError, name_, " route_to_pool: unknown private pool ", pool);
    routes_[{device, stream}] = pool;
  }
  /// Ends the routing of `stream` of `device` (new blocks come from the stream's own pool again).
  void end_routing(int device, uintptr_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    routes_.erase({device, stream});
  }
  /// Frees the cached blocks of private pool `pool` and forgets it; its blocks still live go to their stream's
  /// free list when released.
  void drop_pool(uint64_t pool) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!pools_.erase(pool)) return;
    for (auto r = routes_.begin(); r != routes_.end();) r = r->second == pool ? routes_.erase(r) : std::next(r);
    for (auto it = free_.begin(); it != free_.end();) {
      if (it->first.pool == pool) {
        free_list_blocks(it->first, it->second, /*wait=*/true);
        it = free_.erase(it);
      } else {
        ++it;
      }
    }
  }

  /// Bytes cached (free) in private pool `pool` (kNoPool: in the per-stream pools), over all devices.
  size_t cached_bytes(uint64_t pool) const {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t n = 0;
    for (const auto& [key, list] : free_)
      if (key.pool == pool)
        for (const auto& entry : list) n += entry.first;
    return n;
  }
  /// Bytes held by live blocks of private pool `pool` (kNoPool: of the per-stream pools), over all devices.
  size_t live_bytes(uint64_t pool) const {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t n = 0;
    for (const auto& entry : live_)
      if (entry.second.key.pool == pool) n += entry.second.size;
    return n;
  }

  /// The counters of `device`.
  BlockPoolStats stats(int device) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = stats_.find(device);
    return it == stats_.end() ? BlockPoolStats{} : it->second;
  }
  /// Sets peak_allocated of `device` to its current allocation.
  void reset_peak(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_[device].peak_allocated = stats_[device].allocated;
  }

 private:
  struct Key {
    int device;
    uintptr_t stream;  // 0 for private pools: a graph's pool serves every stream routed to it
    uint64_t pool;
    bool small;
    bool operator<(const Key& o) const {
      if (device != o.device) return device < o.device;
      if (pool != o.pool) return pool < o.pool;
      if (stream != o.stream) return stream < o.stream;
      return small < o.small;
    }
  };
  struct Block {
    size_t size;
    Key key;           // the free list it returns to
    uintptr_t stream;  // the stream it was allocated for
  };

  void count_allocated(int device, size_t size) {
    BlockPoolStats& s = stats_[device];
    s.allocated += size;
    if (s.allocated > s.peak_allocated) s.peak_allocated = s.allocated;
  }

  // raw frees of one free list (after its stream's queued work); the mutex is held by the caller
  void free_list_blocks(const Key& key, std::multimap<size_t, void*>& list, bool wait) {
    if (list.empty()) return;
    if (wait && raw_.wait_stream) raw_.wait_stream(key.device, key.stream);
    for (const auto& [size, p] : list) {
      raw_.free(p, size, key.device);
      stats_[key.device].reserved -= size;
    }
    list.clear();
  }

  // raw frees of the per-stream pools' cached blocks of `device` (every device when negative); mutex held
  void free_cached(int device) {
    for (auto& [key, list] : free_) {
      if ((device >= 0 && key.device != device) || key.pool != kNoPool) continue;
      free_list_blocks(key, list, /*wait=*/true);
    }
  }

  RawMemory raw_;
  std::string name_, device_prefix_;
  mutable std::mutex mutex_;
  std::map<Key, std::multimap<size_t, void*>> free_;
  std::unordered_map<void*, Block> live_;
  std::map<int, BlockPoolStats> stats_;
  std::set<uint64_t> pools_;
  std::map<std::pair<int, uintptr_t>, uint64_t> routes_;
  uint64_t next_pool_ = 1;
};
}  // namespace torchlet
