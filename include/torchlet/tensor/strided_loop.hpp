#pragma once
/// \file The loop under every elementwise CPU kernel: walks K operands of one shape with their own byte
/// strides, merging dimensions that are contiguous together and splitting the work across threads.
#include <array>
#include <cstdint>

#include "torchlet/core/shape.hpp"
#include "torchlet/core/threads.hpp"

namespace torchlet::detail {

/// For K operands viewed with `sizes` and byte strides `strides[k]` from `base[k]`, calls
/// `inner(ptrs, inner_strides, n)` on runs of n elements along the innermost dimension, where
/// ptrs[k] is the first element of operand k in the run and inner_strides[k] its byte step.
/// With `parallel`, runs may be processed concurrently (each run writes only its own elements).
template <size_t K, class Inner>
void for_each_strided(const Shape& sizes, std::array<char*, K> base, std::array<Shape, K> strides, Inner&& inner,
                      bool parallel = true) {
  // coalesce: drop size-1 dims and merge neighbours laid out as one
  Shape sz;
  std::array<Shape, K> st;
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] == 0) return;
    if (sizes[d] == 1) continue;
    bool merge = !sz.empty();
    for (size_t k = 0; k < K && merge; ++k) merge = st[k].back() == strides[k][d] * sizes[d];
    if (merge) {
      sz.back() *= sizes[d];
      for (size_t k = 0; k < K; ++k) st[k].back() = strides[k][d];
    } else {
      sz.push_back(sizes[d]);
      for (size_t k = 0; k < K; ++k) st[k].push_back(strides[k][d]);
    }
  }
  std::array<int64_t, K> inner_st{};
  if (sz.empty()) {
    inner(base, inner_st, int64_t{1});
    return;
  }
  const int64_t ndim = static_cast<int64_t>(sz.size());
  const int64_t n = sz.back();
  for (size_t k = 0; k < K; ++k) inner_st[k] = st[k].back();
  const int64_t rows = numel_of(sz) / n;
  const int threads = parallel && rows * n >= kParallelGrain ? get_num_threads() : 1;
  int64_t block = n;
  if (threads > 1 && rows < 4 * threads) block = std::max<int64_t>(4096, (n + 4 * threads - 1) / (4 * threads));
  const int64_t nblocks = (n + block - 1) / block;
  const int64_t tasks = rows * nblocks;

  auto run_task = [&](int64_t task) {
    int64_t row = task / nblocks;
    const int64_t b = task % nblocks;
    std::array<char*, K> p = base;
    for (int64_t d = ndim - 2; d >= 0 && row > 0; --d) {
      const int64_t i = row % sz[d];
      row /= sz[d];
      for (size_t k = 0; k < K; ++k) p[k] += i * st[k][d];
    }
    for (size_t k = 0; k < K; ++k) p[k] += b * block * inner_st[k];
    inner(p, inner_st, std::min(block, n - b * block));
  };
  parallel_for(tasks, threads > 1, run_task);
}

/// Byte strides of a tensor's element strides.
inline Shape byte_strides(const Shape& strides, int64_t element_size) {
  Shape out(strides.size());
  for (size_t i = 0; i < strides.size(); ++i) out[i] = strides[i] * element_size;
  return out;
}
}  // namespace torchlet::detail
