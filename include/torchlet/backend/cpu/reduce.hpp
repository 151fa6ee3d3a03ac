#pragma once
/// \file CPU reductions over any set of dimensions of a tensor of any layout: sum, mean, var (Welford), max / min
/// with the index of the first extreme (NaN wins, as in PyTorch). One generic driver walks the input either
/// "inner" (each output reduces a run of elements) or "outer" (a row of outputs is updated per reduced element,
/// when the kept dims are the ones laid out contiguously), and splits large reductions into chunks across threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "torchlet/core/threads.hpp"
#include "torchlet/tensor/dispatch.hpp"
#include "torchlet/tensor/strided_loop.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {
namespace detail {

/// The iteration space of a reduction: kept dims (output order, outer to inner) and reduced dims (input order),
/// each coalesced where the input's layout allows; strides are the input's, in elements.
struct ReducePlan {
  Shape ksz, kst;  ///< kept dims
  Shape rsz, rst;  ///< reduced dims
  int64_t n_out = 1, n_red = 1;  ///< number of outputs and of elements each reduces
};

/// Builds the plan for reducing the dims where `mask` is true.
inline ReducePlan make_reduce_plan(const Shape& sizes, const Shape& strides, const std::vector<bool>& mask) {
  ReducePlan p;
  for (size_t d = 0; d < sizes.size(); ++d) {
    Shape& sz = mask[d] ? p.rsz : p.ksz;
    Shape& st = mask[d] ? p.rst : p.kst;
    (mask[d] ? p.n_red : p.n_out) *= sizes[d];
    if (sizes[d] == 1) continue;
    if (!sz.empty() && st.back() == strides[d] * sizes[d]) {
      sz.back() *= sizes[d];
      st.back() = strides[d];
    } else {
      sz.push_back(sizes[d]);
      st.push_back(strides[d]);
    }
  }
  return p;
}

/// Element offset of flat index `i` in the row-major space `sz` with strides `st`.
inline int64_t flat_offset(int64_t i, const Shape& sz, const Shape& st) {
  int64_t off = 0;
  for (int64_t d = static_cast<int64_t>(sz.size()) - 1; d >= 0 && i > 0; --d) {
    off += (i % sz[d]) * st[d];
    i /= sz[d];
  }
  return off;
}

/// Calls `run(offset, index, n, stride)` on runs of consecutive elements along the innermost dim of (sz, st),
/// covering flat indices [start, start + count).
template <class Run>
void walk_runs(const Shape& sz, const Shape& st, int64_t start, int64_t count, Run&& run) {
  if (count <= 0) return;
  if (sz.empty()) {
    run(int64_t{0}, int64_t{0}, int64_t{1}, int64_t{0});
    return;
  }
  const int64_t nd = static_cast<int64_t>(sz.size());
  Shape idx(nd);
  int64_t off = 0, rem = start;
  for (int64_t d = nd - 1; d >= 0; --d) {
    idx[d] = rem % sz[d];
    off += idx[d] * st[d];
    rem /= sz[d];
  }
  const int64_t inner = sz[nd - 1], inner_st = st[nd - 1];
  int64_t flat = start;
  while (count > 0) {
    const int64_t n = std::min(inner - idx[nd - 1], count);
    run(off, flat, n, inner_st);
    flat += n;
    count -= n;
    off += n * inner_st;
    idx[nd - 1] += n;
    for (int64_t d = nd - 1; d > 0 && idx[d] == sz[d]; --d) {  // carry
      off -= sz[d] * st[d];
      idx[d] = 0;
      ++idx[d - 1];
      off += st[d - 1];
    }
  }
}

/// NaN test for any element type (false for integers and bool).
template <class T>
inline bool is_nan_value(T v) {
  if constexpr (is_float_v<T>) return std::isnan(static_cast<opmath_t<T>>(v));
  else return false;
}

/// Runs reduction `op` over `x` (CPU, element type T) as planned and returns one accumulator per output,
/// in row-major order of the kept dims. `op` provides `acc_t`, `identity()`, `step(acc&, T, int64_t index)`
/// and `merge(acc&, const acc&)` (the second argument covers later indices than the first).
template <class T, class Op>
std::vector<typename Op::acc_t> reduce_accumulate(const Tensor& x, const ReducePlan& p, const Op& op) {
  using Acc = typename Op::acc_t;
  std::vector<Acc> out(static_cast<size_t>(p.n_out), op.identity());
  if (p.n_out == 0 || p.n_red == 0) return out;
  const T* base = static_cast<const T*>(x.data_ptr());
  const int threads = get_num_threads();
  const int64_t total = p.n_out * p.n_red;
  const bool par = threads > 1 && total >= kParallelGrain;
  const int64_t k_inner_st = p.kst.empty() ? 0 : p.kst.back();
  const int64_t r_inner_st = p.rst.empty() ? 0 : p.rst.back();
  bool outer = !p.ksz.empty() && !p.rsz.empty() && std::abs(k_inner_st) < std::abs(r_inner_st);
  // too few rows of outputs to share among threads: split the reduced elements instead
  if (outer && par && (p.n_out / p.ksz.back()) * ((p.ksz.back() + 255) / 256) < threads) outer = false;

  if (outer) {
    // vector over the innermost kept dim: for each reduced element, update a block of outputs
    const int64_t kin = p.ksz.back();
    const Shape ksz_outer(p.ksz.begin(), p.ksz.end() - 1), kst_outer(p.kst.begin(), p.kst.end() - 1);
    const int64_t rows = p.n_out / kin;
    const int64_t block = 256;
    const int64_t nblocks = (kin + block - 1) / block;
    auto task = [&](int64_t t) {
      const int64_t row = t / nblocks, j0 = (t % nblocks) * block, jn = std::min(block, kin - j0);
      const T* src = base + flat_offset(row, ksz_outer, kst_outer) + j0 * k_inner_st;
      Acc* acc = out.data() + row * kin + j0;
      walk_runs(p.rsz, p.rst, 0, p.n_red, [&](int64_t off, int64_t index, int64_t n, int64_t st) {
        for (int64_t i = 0; i < n; ++i) {
          const T* s = src + off + i * st;
          for (int64_t j = 0; j < jn; ++j) op.step(acc[j], s[j * k_inner_st], index + i);
        }
      });
    };
    const int64_t tasks = rows * nblocks;
    torchlet::detail::parallel_for(tasks, par && tasks > 1, task);
    return out;
  }

  // inner: each output reduces its own elements; few outputs over many elements are split into chunks
  int64_t chunks = 1;
  if (par && p.n_out < 2 * threads) chunks = std::clamp<int64_t>(p.n_red / 8192, 1, 4 * threads);
  const int64_t chunk_len = (p.n_red + chunks - 1) / chunks;
  chunks = (p.n_red + chunk_len - 1) / chunk_len;
  const int64_t tasks = p.n_out * chunks;
  std::vector<Acc> partial;
  if (chunks > 1) partial.assign(static_cast<size_t>(tasks), op.identity());
  auto task = [&](int64_t t) {
    const int64_t o = t / chunks, c = t % chunks;
    const T* src = base + flat_offset(o, p.ksz, p.kst);
    Acc acc = op.identity();
    walk_runs(p.rsz, p.rst, c * chunk_len, std::min(chunk_len, p.n_red - c * chunk_len),
              [&](int64_t off, int64_t index, int64_t n, int64_t st) {
                const T* s = src + off;
                if (st == 1) {
                  if constexpr (requires { op.step_run(acc, s, n); }) op.step_run(acc, s, n);
                  else for (int64_t i = 0; i < n; ++i) op.step(acc, s[i], index + i);
                } else {
                  for (int64_t i = 0; i < n; ++i) op.step(acc, s[i * st], index + i);
                }
              });
    (chunks > 1 ? partial[t] : out[o]) = acc;
  };
  torchlet::detail::parallel_for(tasks, par && tasks > 1, task);
  if (chunks > 1)
    for (int64_t o = 0; o < p.n_out; ++o) {
      out[o] = partial[o * chunks];
      for (int64_t c = 1; c < chunks; ++c) op.merge(out[o], partial[o * chunks + c]);
    }
  return out;
}

/// Sum in a wide accumulator: double for floating types, int64 (wrapping) for integers and bool.
template <class T>
struct SumOp {
  using acc_t = std::conditional_t<is_float_v<T>, double, int64_t>;  ///< The accumulator.
  acc_t identity() const { return 0; }                                 ///< The empty sum.
  /// Adds one element.
  void step(acc_t& a, T v, int64_t) const {
    if constexpr (is_float_v<T>) a += static_cast<double>(static_cast<opmath_t<T>>(v));
    else a = static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(static_cast<int64_t>(v)));
  }
  /// Adds n contiguous elements (eight independent lanes, so the compiler can vectorise).
  void step_run(acc_t& a, const T* p, int64_t n) const {
    acc_t lane[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int k = 0; k < 8; ++k) step(lane[k], p[i + k], 0);
    for (; i < n; ++i) step(lane[0], p[i], 0);
    for (int k = 0; k < 8; ++k) merge(a, lane[k]);
  }
  /// Adds a partial sum.
  void merge(acc_t& a, const acc_t& b) const {
    if constexpr (is_float_v<T>) a += b;
    else a = static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
  }
};

/// Welford's running mean and sum of squared deviations, in double.
struct WelfordAcc {
  double mean = 0;  ///< Running mean.
  double m2 = 0;    ///< Sum of squared deviations from the mean.
  int64_t n = 0;    ///< Elements seen.
};

/// Variance accumulation (Welford, merged with Chan's formula).
template <class T>
struct WelfordOp {
  using acc_t = WelfordAcc;               ///< The accumulator.
  acc_t identity() const { return {}; }  ///< No elements yet.
  /// Takes in one element.
  void step(acc_t& a, T v, int64_t) const {
    const double x = static_cast<double>(static_cast<opmath_t<T>>(v));
    ++a.n;
    const double delta = x - a.mean;
    a.mean += delta / static_cast<double>(a.n);
    a.m2 += delta * (x - a.mean);
  }
  /// Combines with the statistics of another part.
  void merge(acc_t& a, const acc_t& b) const {
    if (b.n == 0) return;
    if (a.n == 0) {
      a = b;
      return;
    }
    const double na = static_cast<double>(a.n), nb = static_cast<double>(b.n), n = na + nb;
    const double delta = b.mean - a.mean;
    a.mean += delta * nb / n;
    a.m2 += b.m2 + delta * delta * na * nb / n;
    a.n += b.n;
  }
};

/// The running extreme and the index of its first occurrence.
template <class V>
struct ExtremeAcc {
  V value{};           ///< The extreme so far.
  int64_t index = -1;  ///< -1 until the first element
};

/// max (`is_max`) or min with the first occurrence's index; a NaN beats everything and the first NaN is kept.
template <class T, bool is_max>
struct ExtremeOp {
  using V = std::conditional_t<is_float_v<T>, opmath_t<T>, T>;  ///< Values are compared as this type.
  using acc_t = ExtremeAcc<V>;                                   ///< The accumulator.
  acc_t identity() const { return {}; }                          ///< No element yet.
  /// True when `cand` replaces `cur` (strictly more extreme, or NaN where cur is not).
  static bool better(V cand, V cur) {
    if (is_nan_value(cur)) return false;
    if (is_nan_value(cand)) return true;
    if constexpr (is_max) return cand > cur;
    else return cand < cur;
  }
  /// Takes in the element at `index`.
  void step(acc_t& a, T v, int64_t index) const {
    const V x = static_cast<V>(v);
    if (a.index < 0 || better(x, a.value)) {
      a.value = x;
      a.index = index;
    }
  }
  /// Combines with a later part (ties keep the earlier index).
  void merge(acc_t& a, const acc_t& b) const {
    if (b.index < 0) return;
    if (a.index < 0 || better(b.value, a.value)) a = b;
  }
};
}  // namespace detail

namespace cpu {

/// Sums `x` over the dims where `mask` is true into `out` (contiguous, the kept sizes, dtype float for floating
/// inputs or int64/any for the rest); accumulates in double or int64.
inline void sum_into(const Tensor& out, const Tensor& x, const std::vector<bool>& mask) {
  const auto plan = torchlet::detail::make_reduce_plan(x.sizes(), x.strides(), mask);
  torchlet::detail::dispatch_all(x.dtype(), "sum", [&]<class T>() {
    const auto acc = torchlet::detail::reduce_accumulate<T>(x, plan, torchlet::detail::SumOp<T>{});
    torchlet::detail::dispatch_all(out.dtype(), "sum", [&]<class O>() {
      O* o = static_cast<O*>(out.data_ptr());
      for (int64_t i = 0; i < plan.n_out; ++i) o[i] = torchlet::detail::convert<O>(acc[i]);
    });
  });
}

/// Means of floating `x` over the dims where `mask` is true into `out` (contiguous, same dtype as x);
/// an empty reduction gives NaN.
inline void mean_into(const Tensor& out, const Tensor& x, const std::vector<bool>& mask) {
  const auto plan = torchlet::detail::make_reduce_plan(x.sizes(), x.strides(), mask);
  torchlet::detail::dispatch_floating(x.dtype(), "mean", [&]<class T>() {
    const auto acc = torchlet::detail::reduce_accumulate<T>(x, plan, torchlet::detail::SumOp<T>{});
    T* o = static_cast<T*>(out.data_ptr());
    const double n = static_cast<double>(plan.n_red);
    for (int64_t i = 0; i < plan.n_out; ++i) o[i] = torchlet::detail::convert<T>(acc[i] / n);
  });
}

/// Variances (or standard deviations with `take_sqrt`) of floating `x` over the masked dims into `out`
/// (contiguous, same dtype), dividing by max(0, N - correction) as PyTorch does.
inline void var_into(const Tensor& out, const Tensor& x, const std::vector<bool>& mask, int64_t correction,
                     bool take_sqrt) {
  const auto plan = torchlet::detail::make_reduce_plan(x.sizes(), x.strides(), mask);
  torchlet::detail::dispatch_floating(x.dtype(), take_sqrt ? "std" : "var", [&]<class T>() {
    const auto acc = torchlet::detail::reduce_accumulate<T>(x, plan, torchlet::detail::WelfordOp<T>{});
    T* o = static_cast<T*>(out.data_ptr());
    for (int64_t i = 0; i < plan.n_out; ++i) {
      const double div = std::max<double>(0.0, static_cast<double>(acc[i].n - correction));
      const double v = acc[i].m2 / div;
      o[i] = torchlet::detail::convert<T>(take_sqrt ? std::sqrt(v) : v);
    }
  });
}

/// Max (`is_max`) or min of `x` over the masked dims: values into `values` (same dtype) and, if defined, the
/// flat index of the first extreme within the reduced dims into `indices` (int64). Every reduced dim must be
/// non-empty (checked by the caller).
template <bool is_max>
void extreme_into(const Tensor& values, const Tensor& indices, const Tensor& x, const std::vector<bool>& mask) {
  const auto plan = torchlet::detail::make_reduce_plan(x.sizes(), x.strides(), mask);
  torchlet::detail::dispatch_all(x.dtype(), is_max ? "max" : "min", [&]<class T>() {
    const auto acc = torchlet::detail::reduce_accumulate<T>(x, plan, torchlet::detail::ExtremeOp<T, is_max>{});
    if (values.defined()) {
      T* o = static_cast<T*>(values.data_ptr());
      for (int64_t i = 0; i < plan.n_out; ++i) o[i] = static_cast<T>(acc[i].value);
    }
    if (indices.defined()) {
      int64_t* o = static_cast<int64_t*>(indices.data_ptr());
      for (int64_t i = 0; i < plan.n_out; ++i) o[i] = acc[i].index;
    }
  });
}
}  // namespace cpu
}  // namespace torchlet
