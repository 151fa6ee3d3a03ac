#pragma once
/// \file The loop under every elementwise CPU kernel: walks K operands of one shape with their own byte
/// strides, merging dimensions that are contiguous together and splitting the work across threads.
#include <array>
#include <cstdint>
#include <utility>

#include "torchlet/core/shape.hpp"
#include "torchlet/core/threads.hpp"

namespace torchlet::detail {

/// The dims of `sizes` (size-1 dims left out) from outermost to innermost for walking K operands: ordered by
/// the first operand's byte strides, largest first (the operand written, e.g. the output), ties and stride-0
/// (broadcast) dims decided by the next operands, as PyTorch's TensorIterator orders them — so a channels-last or
/// transposed tensor is walked in memory order, not with a large inner step. Stable: C-order operands keep their
/// order.
template <size_t K>
Shape walk_order(const Shape& sizes, const std::array<Shape, K>& strides) {
  Shape order;
  for (size_t d = 0; d < sizes.size(); ++d)
    if (sizes[d] != 1) order.push_back(static_cast<int64_t>(d));
  // true when dim a must be walked outside dim b: the first operand with nonzero, different strides decides
  auto outer = [&strides](int64_t a, int64_t b) {
    for (size_t k = 0; k < K; ++k) {
      const int64_t sa = strides[k][static_cast<size_t>(a)] < 0 ? -strides[k][static_cast<size_t>(a)]
                                                                 : strides[k][static_cast<size_t>(a)];
      const int64_t sb = strides[k][static_cast<size_t>(b)] < 0 ? -strides[k][static_cast<size_t>(b)]
                                                                 : strides[k][static_cast<size_t>(b)];
      if (sa == 0 || sb == 0 || sa == sb) continue;
      return sa > sb;
    }
    return false;
  };
  // insertion sort: few dims, stable, and no work when the operands are already in order
  for (size_t i = 1; i < order.size(); ++i) {
    for (size_t j = i; j > 0 && outer(order[j], order[j - 1]); --j) std::swap(order[j], order[j - 1]);
  }
  return order;
}

/// For K operands viewed with `sizes` and byte strides `strides[k]` from `base[k]`, calls
/// `inner(ptrs, inner_strides, n)` on runs of n elements along the innermost dimension, where
/// ptrs[k] is the first element of operand k in the run and inner_strides[k] its byte step.
/// Dims are walked in memory order of the first operand (walk_order), so every element is visited once but not
/// necessarily in C order. With `parallel`, runs may be processed concurrently (each run writes only its own
/// elements).
template <size_t K, class Inner>
void for_each_strided(const Shape& sizes, std::array<char*, K> base, std::array<Shape, K> strides, Inner&& inner,
                      bool parallel = true) {
  for (int64_t s : sizes)
    if (s == 0) return;
  // coalesce: walk the dims outermost first and merge neighbours laid out as one
  Shape sz;
  std::array<Shape, K> st;
  for (int64_t dim : walk_order<K>(sizes, strides)) {
    const auto d = static_cast<size_t>(dim);
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
