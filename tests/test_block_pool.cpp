// The caching allocator's bookkeeping (backend/block_pool.hpp) on a fake raw allocator over the C heap: reuse per
// stream, rounding, the waste rule, the counters, the out-of-memory retry, empty_cache, and the private pools
// CUDA graphs allocate from.
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "torchlet/backend/block_pool.hpp"

using namespace torchlet;

namespace {

/// A raw allocator over malloc with a capacity, an optional one-time failure and a log of its calls.
struct FakeRaw {
  size_t capacity = size_t{1} << 40;
  size_t in_use = 0;
  int fail_next = 0;  // how many of the next allocations report out-of-memory
  int mallocs = 0, frees = 0;
  std::vector<std::pair<int, uintptr_t>> waits;
  std::map<void*, size_t> blocks;

  RawMemory memory() {
    return RawMemory{
        [this](size_t bytes, int) -> void* {
          if (fail_next > 0) {
            --fail_next;
            return nullptr;
          }
          if (in_use + bytes > capacity) return nullptr;
          void* p = std::malloc(bytes);
          ++mallocs;
          in_use += bytes;
          blocks[p] = bytes;
          return p;
        },
        [this](void* p, size_t bytes, int) {
          REQUIRE(blocks.count(p));
          CHECK(blocks[p] == bytes);
          blocks.erase(p);
          in_use -= bytes;
          ++frees;
          std::free(p);
        },
        [this](int device, uintptr_t stream) { waits.emplace_back(device, stream); }};
  }
  ~FakeRaw() {
    for (auto& [p, n] : blocks) std::free(p);
  }
};

constexpr size_t KiB = 1024, MiB = 1024 * 1024;

std::string error_of(BlockPool& pool, size_t n) {
  try {
    pool.allocate(n, 0, 0);
  } catch (const DeviceError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("block pool: rounding to 512 B up to 1 MiB and to 2 MiB above") {
  CHECK(BlockPool::rounded_size(1) == 512);
  CHECK(BlockPool::rounded_size(512) == 512);
  CHECK(BlockPool::rounded_size(513) == 1024);
  CHECK(BlockPool::rounded_size(MiB) == MiB);
  CHECK(BlockPool::rounded_size(MiB + 1) == 2 * MiB);
  CHECK(BlockPool::rounded_size(5 * MiB) == 6 * MiB);
  FakeRaw raw;
  BlockPool pool(raw.memory());
  void* p = pool.allocate(1000, 0, 0);
  CHECK(raw.blocks.at(p) == 1024);
  void* q = pool.allocate(3 * MiB, 0, 0);
  CHECK(raw.blocks.at(q) == 4 * MiB);
  CHECK(pool.stats(0).allocated == 1024 + 4 * MiB);
}

TEST_CASE("block pool: a released block is reused on its stream only") {
  FakeRaw raw;
  BlockPool pool(raw.memory());
  void* a = pool.allocate(4 * KiB, 0, /*stream=*/1);
  pool.release(a);
  CHECK(pool.allocate(4 * KiB, 0, 2) != a);  // another stream: a miss
  CHECK(raw.mallocs == 2);
  CHECK(pool.allocate(4 * KiB, 0, 1) == a);  // its own stream: a hit
  CHECK(raw.mallocs == 2);
  void* b = pool.allocate(4 * KiB, 1, 1);  // same stream id on another device: a miss
  CHECK(b != a);
  CHECK(raw.mallocs == 3);
  const BlockPoolStats s = pool.stats(0);
  CHECK(s.raw_mallocs == 2);
  CHECK(s.cache_hits == 1);
  CHECK(pool.stats(1).raw_mallocs == 1);
}

TEST_CASE("block pool: the waste rule takes the smallest fitting block wasting at most a quarter") {
  FakeRaw raw;
  BlockPool pool(raw.memory());
  void* big = pool.allocate(8 * KiB, 0, 0);
  void* mid = pool.allocate(5 * KiB, 0, 0);
  pool.release(big);
  pool.release(mid);
  // 4 KiB: the 5 KiB block wastes 1 KiB <= 5/4 KiB -> taken (the smallest fitting one)
  CHECK(pool.allocate(4 * KiB, 0, 0) == mid);
  // 4 KiB again: only the 8 KiB block is left and it would waste half of itself -> a new block
  void* fresh = pool.allocate(4 * KiB, 0, 0);
  CHECK(fresh != big);
  CHECK(raw.mallocs == 3);
  // 6.5 KiB: the 8 KiB block wastes 1.5 KiB <= 2 KiB -> taken
  CHECK(pool.allocate(6 * KiB + 512, 0, 0) == big);
  // small and large requests never share blocks
  void* large = pool.allocate(2 * MiB, 0, 0);
  pool.release(large);
  CHECK(pool.allocate(MiB, 0, 0) != large);
}

TEST_CASE("block pool: allocated, reserved, peak and reset_peak") {
  FakeRaw raw;
  BlockPool pool(raw.memory());
  void* a = pool.allocate(1000, 0, 0);        // 1024
  void* b = pool.allocate(3 * MiB, 0, 0);     // 4 MiB
  CHECK(pool.stats(0).allocated == 1024 + 4 * MiB);
  CHECK(pool.stats(0).reserved == 1024 + 4 * MiB);
  pool.release(b);
  BlockPoolStats s = pool.stats(0);
  CHECK(s.allocated == 1024);
  CHECK(s.reserved == 1024 + 4 * MiB);  // cached, not freed
  CHECK(s.peak_allocated == 1024 + 4 * MiB);
  pool.reset_peak(0);
  CHECK(pool.stats(0).peak_allocated == 1024);
  pool.release(a);
  CHECK(pool.stats(0).allocated == 0);
  pool.release(a);  // unknown (already released): ignored
  CHECK(pool.stats(0).allocated == 0);
  CHECK(pool.stats(7).reserved == 0);  // a device never used
}

TEST_CASE("block pool: empty_cache frees cached blocks after their stream's work, live blocks stay") {
  FakeRaw raw;
  BlockPool pool(raw.memory());
  void* live = pool.allocate(4 * KiB, 0, 3);
  void* cached = pool.allocate(4 * MiB, 0, 3);
  pool.release(cached);
  pool.empty_cache();
  CHECK(raw.frees == 1);
  CHECK(raw.blocks.count(cached) == 0);
  CHECK(raw.blocks.count(live) == 1);
  REQUIRE(raw.waits.size() == 1);
  CHECK(raw.waits[0] == std::pair<int, uintptr_t>(0, 3));
  CHECK(pool.stats(0).reserved == 4 * KiB);
  CHECK(pool.stats(0).allocated == 4 * KiB);
  pool.empty_cache();  // nothing cached: no waits
  CHECK(raw.waits.size() == 1);
}

TEST_CASE("block pool: out of memory frees the device's cache and retries once") {
  FakeRaw raw;
  BlockPool pool(raw.memory(), "[CUDA caching allocator]", "cuda:");
  void* a = pool.allocate(4 * MiB, 0, 0);
  void* other = pool.allocate(4 * MiB, 1, 0);
  pool.release(a);
  pool.release(other);
  raw.fail_next = 1;
  void* b = pool.allocate(6 * MiB, 0, 0);  // fails once, frees device 0's cache, succeeds
  CHECK(b != nullptr);
  CHECK(raw.blocks.count(a) == 0);
  CHECK(raw.blocks.count(other) == 1);  // device 1's cache untouched
  CHECK(pool.stats(0).reserved == 6 * MiB);
  CHECK(pool.stats(0).raw_mallocs == 2);
  // failing twice raises one line naming the size, device and counters
  raw.fail_next = 2;
  const std::string msg = error_of(pool, 100);
  CHECK(msg == "[CUDA caching allocator] out of memory allocating 512 bytes on cuda:0 (allocated 6291456 bytes, "
               "reserved 6291456 bytes)");
  // a capacity limit: the retry succeeds only because the cache was freed
  FakeRaw tight;
  tight.capacity = 4 * MiB;
  BlockPool small(tight.memory());
  small.release(small.allocate(4 * MiB, 0, 0));
  CHECK(small.allocate(2 * MiB, 0, 0) != nullptr);  // 4 MiB cached block wastes half -> miss -> OOM -> retry
  CHECK(tight.frees == 1);
  CHECK(small.stats(0).reserved == 2 * MiB);
}

TEST_CASE("block pool: a private pool serves its routed stream, reuses within, survives empty_cache") {
  FakeRaw raw;
  BlockPool pool(raw.memory());
  // a block cached on the capture stream before the capture is not used by the capture
  void* before = pool.allocate(4 * KiB, 0, 5);
  pool.release(before);
  const uint64_t graph = pool.create_pool();
  CHECK(graph != BlockPool::kNoPool);
  pool.route_to_pool(0, 5, graph);
  void* a = pool.allocate(4 * KiB, 0, 5);
  CHECK(a != before);
  CHECK(pool.live_bytes(graph) == 4 * KiB);
  pool.release(a);  // freed during the capture: reusable by the capture
  CHECK(pool.cached_bytes(graph) == 4 * KiB);
  CHECK(pool.allocate(4 * KiB, 0, 5) == a);
  void* out = pool.allocate(3 * MiB, 0, 5);
  pool.end_routing(0, 5);
  // after the capture: the stream's own pool again, and the graph's blocks are not handed out
  CHECK(pool.allocate(4 * KiB, 0, 5) == before);
  pool.release(out);
  CHECK(pool.allocate(3 * MiB, 0, 5) != out);
  CHECK(pool.allocate(3 * MiB, 0, 6) != out);
  // empty_cache leaves the private pool alone
  pool.empty_cache();
  CHECK(raw.blocks.count(out) == 1);
  CHECK(pool.cached_bytes(graph) == 4 * MiB);
  // another stream routed to the same pool later (a second capture into the pool) reuses its blocks
  pool.route_to_pool(0, 9, graph);
  CHECK(pool.allocate(3 * MiB, 0, 9) == out);
  pool.release(out);
  pool.end_routing(0, 9);
  // dropping the pool frees its cached blocks; its live ones go to their stream's list when released
  const int frees = raw.frees;
  pool.drop_pool(graph);
  CHECK(raw.blocks.count(out) == 0);
  CHECK(raw.frees == frees + 1);
  CHECK(pool.cached_bytes(graph) == 0);
  CHECK(pool.live_bytes(graph) == 4 * KiB);  // `a`, allocated again during the capture, is still live
  pool.release(a);
  CHECK(pool.live_bytes(graph) == 0);
  CHECK(pool.allocate(4 * KiB, 0, 5) == a);  // now an ordinary block of stream 5
  CHECK_THROWS_AS(pool.route_to_pool(0, 5, graph), ValueError);
}

TEST_CASE("block pool: routing is per (device, stream) and ends with the pool") {
  FakeRaw raw;
  BlockPool pool(raw.memory());
  const uint64_t graph = pool.create_pool();
  pool.route_to_pool(0, 5, graph);
  void* routed = pool.allocate(4 * KiB, 0, 5);
  void* other_device = pool.allocate(4 * KiB, 1, 5);
  void* other_stream = pool.allocate(4 * KiB, 0, 6);
  CHECK(pool.live_bytes(graph) == 4 * KiB);
  CHECK(pool.live_bytes(BlockPool::kNoPool) == 8 * KiB);
  pool.release(routed);
  pool.release(other_device);
  pool.release(other_stream);
  CHECK(pool.cached_bytes(graph) == 4 * KiB);
  // dropping a pool that is still routed ends the routing: stream 5 allocates from its own pool again
  pool.drop_pool(graph);
  CHECK(pool.cached_bytes(graph) == 0);
  void* after = pool.allocate(4 * KiB, 0, 5);
  CHECK(pool.live_bytes(BlockPool::kNoPool) == 4 * KiB);
  pool.release(after);
  pool.drop_pool(graph);  // twice: nothing happens
  CHECK(pool.create_pool() != graph);  // ids are not reused
  // the counters see private-pool blocks like any other
  CHECK(pool.stats(0).raw_mallocs == 3);
  CHECK(pool.stats(0).allocated == 0);
}
