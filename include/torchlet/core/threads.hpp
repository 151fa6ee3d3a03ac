#pragma once
/// \file The number of threads CPU kernels use (OpenMP; Eigen's GEMM follows the same setting).
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <utility>
#if defined(__linux__)
#include <sched.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace torchlet {

/// Cores this process may run on (its CPU affinity), at least 1.
inline int available_cores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

namespace detail {
/// The thread count OMP_NUM_THREADS asks for (its first entry, as PyTorch reads it), or 0 when it is unset or not
/// a positive number.
inline int omp_num_threads_env() {
  const char* v = std::getenv("OMP_NUM_THREADS");
  if (v == nullptr) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return end != v && (*end == '\0' || *end == ',') && n > 0 && n <= 4096 ? static_cast<int>(n) : 0;
}
inline int& thread_setting() {
  static int n = omp_num_threads_env() > 0 ? omp_num_threads_env() : available_cores();
  return n;
}
}  // namespace detail

/// Sets how many threads CPU kernels use (n >= 1). Defaults to OMP_NUM_THREADS when that is set (as in PyTorch),
/// else available_cores().
inline void set_num_threads(int n) {
  detail::thread_setting() = n < 1 ? 1 : n;
#if defined(_OPENMP)
  omp_set_num_threads(detail::thread_setting());
#endif
}

/// The number of threads CPU kernels use; 1 when built without OpenMP.
inline int get_num_threads() {
#if defined(_OPENMP)
  return detail::thread_setting();
#else
  return 1;
#endif
}

namespace detail {
/// Work below this many elementary steps runs on one thread.
inline constexpr int64_t kParallelGrain = 32768;

/// Calls f(i) for every i in [0, count): split statically across get_num_threads() threads when
/// `parallel` is true and there is more than one item, serially otherwise. f must only write its own item's data.
template <class F>
inline void parallel_for(int64_t count, bool parallel, F&& f) {
#if defined(_OPENMP)
  const int threads = get_num_threads();
  if (parallel && threads > 1 && count > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < count; ++i) f(i);
    return;
  }
#endif
  for (int64_t i = 0; i < count; ++i) f(i);
}

/// parallel_for over `count` items of `work_per_item` elementary steps each, threaded only when the total
/// reaches kParallelGrain.
template <class F>
inline void parallel_for_work(int64_t count, int64_t work_per_item, F&& f) {
  parallel_for(count, count * work_per_item >= kParallelGrain, std::forward<F>(f));
}
}  // namespace detail
}  // namespace torchlet
