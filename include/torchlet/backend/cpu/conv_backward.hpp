#pragma once
/// \file 2-D convolution backward on the CPU: the input gradient (W^T * grad_out per image and group, then
/// col2im), the weight gradient (grad_out * im2col(x)^T summed over the batch, per-thread partial sums reduced
/// in a fixed order) and the bias gradient. Takes raw contiguous NCHW data that ops/conv.hpp has validated;
/// shares the geometry, planning constants, scratch buffers and im2col of backend/cpu/conv.hpp.
#include <algorithm>
#include <atomic>
#include <cstdint>

#include "torchlet/backend/cpu/conv.hpp"

namespace torchlet::cpu {

/// Statistic for tests and profiling: how many conv2d backward kernels ran (input, weight and bias gradients
/// each count one). Not a synchronisation primitive; read it before and after the work of interest.
inline std::atomic<int64_t>& conv2d_backward_calls() {
  static std::atomic<int64_t> n{0};
  return n;
}
/// Statistic for tests and profiling: how many conv2d input-gradient kernels ran.
inline std::atomic<int64_t>& conv2d_input_grad_calls() {
  static std::atomic<int64_t> n{0};
  return n;
}
/// Statistic for tests and profiling: how many conv2d weight-gradient kernels ran.
inline std::atomic<int64_t>& conv2d_weight_grad_calls() {
  static std::atomic<int64_t> n{0};
  return n;
}
/// Statistic for tests and profiling: how many conv2d bias-gradient kernels ran.
inline std::atomic<int64_t>& conv2d_bias_grad_calls() {
  static std::atomic<int64_t> n{0};
  return n;
}

}  // namespace torchlet::cpu

namespace torchlet::detail {
/// Adds src[0], src[1], ... to dst[0], dst[step], ... (n elements): the adjoint of conv_copy_strided.
template <class T>
inline void conv_add_strided(T* dst, const T* src, int64_t n, int64_t step) {
  if (step == 1) {
    for (int64_t j = 0; j < n; ++j) dst[j] += src[j];
  } else if (step == 2) {
    for (int64_t j = 0; j < n; ++j) dst[2 * j] += src[j];
  } else {
    for (int64_t j = 0; j < n; ++j) dst[j * step] += src[j];
  }
}

/// col2im, the adjoint of im2col_tile: adds the im2col rows of channels [c0, c1) for output pixels
/// [p0, p0 + np) (rows `ld` apart, laid out as im2col_tile writes them) into `image` [channels, H, W] at the
/// input pixels their taps see; taps that fall into the padding are dropped. Different channels touch disjoint
/// data, so channel ranges may run concurrently.
template <class T>
void col2im_tile_add(const T* col, int64_t c0, int64_t c1, const cpu::Conv2dGeometry& g, int64_t p0, int64_t np,
                     int64_t ld, T* image) {
  const int64_t H = g.in_h, W = g.in_w, Wo = g.out_w, sw = g.stride_w, end = p0 + np;
  const int64_t oh_first = p0 / Wo, oh_last = (end - 1) / Wo;
  for (int64_t c = c0; c < c1; ++c) {
    T* plane = image + c * H * W;
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        const T* src = col + ((c * g.kernel_h + ki) * g.kernel_w + kj) * ld;
        const int64_t dx = kj * g.dilation_w - g.pad_w;
        const auto [ow_lo, ow_hi] = torchlet::detail::inside_columns(g, kj);
        for (int64_t oh = oh_first; oh <= oh_last; ++oh) {
          const int64_t a = oh == oh_first ? p0 - oh * Wo : 0;
          const int64_t b = oh == oh_last ? end - oh * Wo : Wo;
          const int64_t ih = oh * g.stride_h - g.pad_h + ki * g.dilation_h;
          if (ih >= 0 && ih < H) {
            const int64_t lo = std::clamp(ow_lo, a, b), hi = std::clamp(ow_hi, lo, b);
            conv_add_strided(plane + ih * W + lo * sw + dx, src + (lo - a), hi - lo, sw);
          }
          src += b - a;
        }
      }
    }
  }
}

/// Output pixels per tile for the backward kernels: a K x tile im2col block stays about kConvTileBytes.
inline int64_t conv_backward_tile(const cpu::Conv2dGeometry& g, int64_t elem_bytes) {
  const int64_t pixels = g.out_h * g.out_w;
  const int64_t row_bytes = std::max<int64_t>(1, g.is_pointwise() ? 0 : g.patch() * elem_bytes);
  int64_t tiles = std::max<int64_t>(1, (pixels * row_bytes + kConvTileBytes - 1) / kConvTileBytes);
  tiles = std::min(tiles, std::max<int64_t>(1, pixels / kConvMinTilePixels));
  int64_t tile = (pixels + tiles - 1) / tiles;
  if (tiles > 1) tile = std::min(pixels, (tile + 15) / 16 * 16);
  return std::max<int64_t>(1, tile);
}

/// True when `tasks` equal tasks share out evenly enough over `threads` threads to run them concurrently.
inline bool conv_tasks_balanced(int64_t tasks, int threads) {
  return threads > 1 && (tasks % threads == 0 || tasks >= 4 * threads);
}

/// Upper bound on the per-thread partial weight gradients (all threads together); above it the weight
/// gradient accumulates in place with a multithreaded GEMM instead.
inline constexpr int64_t kConvPartialBytes = int64_t{256} << 20;
}  // namespace torchlet::detail

namespace torchlet::cpu {

/// Input gradient of a convolution: grad_input[N, C, H, W] = conv2d's adjoint applied to grad_out[N, Cout, Ho, Wo]
/// with weight[Cout, C/groups, kh, kw]. All pointers are to contiguous data; grad_input is overwritten.
/// Tasks are (image, group) pairs: concurrent with per-thread scratch when they share out evenly, else one
/// after the other with a multithreaded GEMM and col2im split over channels.
template <class T>
void conv2d_backward_input(const Conv2dGeometry& g, const T* grad_out, const T* weight, T* grad_input) {
  ++conv2d_backward_calls();
  ++conv2d_input_grad_calls();
  const int64_t pixels = g.out_h * g.out_w, image_size = g.in_h * g.in_w;
  const int64_t Mg = g.group_out(), Cg = g.group_in(), K = g.patch();
  const int64_t in_image = g.in_channels * image_size, in_group = Cg * image_size, out_image = g.out_channels * pixels;
  if (g.batch == 0 || in_image == 0) return;
  if (pixels == 0 || g.out_channels == 0) {
    std::fill_n(grad_input, g.batch * in_image, T(0));
    return;
  }
  const bool pointwise = g.is_pointwise();
  const int threads = get_num_threads();
  const int64_t tile = torchlet::detail::conv_backward_tile(g, static_cast<int64_t>(sizeof(T)));
  const int64_t tiles = (pixels + tile - 1) / tile;
  const int64_t tasks = g.batch * g.groups;
  const bool parallel = torchlet::detail::conv_tasks_balanced(tasks, threads);
  const int64_t per_thread = pointwise ? 0 : K * tile;

  auto run_task = [&](int64_t task, T* col, auto&& for_channels) {
    const int64_t n = task / g.groups, grp = task % g.groups;
    const T* w = weight + grp * Mg * K;                        // [Mg, K]
    const T* go = grad_out + n * out_image + grp * Mg * pixels;  // [Mg, pixels]
    T* gi = grad_input + n * in_image + grp * in_group;        // [Cg, H, W]
    if (pointwise) {  // grad_input = W^T * grad_out, straight into place
      gemm<T>(true, false, Cg, pixels, Mg, T(1), w, K, go, pixels, T(0), gi, pixels);
      return;
    }
    for_channels([&](int64_t c0, int64_t c1) { std::fill_n(gi + c0 * image_size, (c1 - c0) * image_size, T(0)); });
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t p0 = t * tile, np = std::min(tile, pixels - p0);
      gemm<T>(true, false, K, np, Mg, T(1), w, K, go + p0, pixels, T(0), col, np);
      for_channels([&](int64_t c0, int64_t c1) { torchlet::detail::col2im_tile_add(col, c0, c1, g, p0, np, np, gi); });
    }
  };
  auto serial_channels = [&](auto&& f) { f(int64_t{0}, Cg); };

  if (parallel) {
    torchlet::detail::ConvScratch<T> buf(per_thread * threads);
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
    {
      T* col = buf.get() ? buf.get() + per_thread * omp_get_thread_num() : nullptr;
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tasks; ++t) run_task(t, col, serial_channels);
    }
#else
    for (int64_t t = 0; t < tasks; ++t) run_task(t, buf.get(), serial_channels);
#endif
  } else {
    torchlet::detail::ConvScratch<T> buf(per_thread);
    const int64_t parts = std::min<int64_t>(Cg, threads);
    const bool split = parts > 1 && K * tile >= torchlet::detail::kParallelGrain;
    auto parallel_channels = [&](auto&& f) {
      torchlet::detail::parallel_for(parts, split, [&](int64_t i) { f(Cg * i / parts, Cg * (i + 1) / parts); });
    };
    for (int64_t t = 0; t < tasks; ++t) run_task(t, buf.get(), parallel_channels);
  }
}

/// Weight gradient of a convolution: grad_weight[Cout, C/groups, kh, kw] = sum over images n of
/// grad_out[n] * im2col(input[n])^T, per group. All pointers are to contiguous data; grad_weight is overwritten.
/// Tasks are (image, group, tile of output pixels); when they share out evenly each thread sums its own
/// (statically assigned) tasks into a private partial gradient and the partials are added in thread order, so
/// results are deterministic for a given thread count. Otherwise the tasks accumulate in place one after the
/// other through a multithreaded GEMM (beta = 1).
template <class T>
void conv2d_backward_weight(const Conv2dGeometry& g, const T* grad_out, const T* input, T* grad_weight) {
  ++conv2d_backward_calls();
  ++conv2d_weight_grad_calls();
  const int64_t pixels = g.out_h * g.out_w, image_size = g.in_h * g.in_w;
  const int64_t Mg = g.group_out(), Cg = g.group_in(), K = g.patch();
  const int64_t in_image = g.in_channels * image_size, in_group = Cg * image_size, out_image = g.out_channels * pixels;
  const int64_t wsize = g.out_channels * K;
  if (wsize == 0) return;
  std::fill_n(grad_weight, wsize, T(0));
  if (g.batch == 0 || pixels == 0) return;
  const bool pointwise = g.is_pointwise();
  const int threads = get_num_threads();
  const int64_t tile = torchlet::detail::conv_backward_tile(g, static_cast<int64_t>(sizeof(T)));
  const int64_t tiles = (pixels + tile - 1) / tile;
  const int64_t tasks = g.batch * g.groups * tiles;
  const bool parallel = torchlet::detail::conv_tasks_balanced(tasks, threads) &&
                        wsize * threads * static_cast<int64_t>(sizeof(T)) <= torchlet::detail::kConvPartialBytes;
  const bool has_pad = g.pad_h > 0 || g.pad_w > 0;
  const int64_t padded_size = Cg * (g.in_h + 2 * g.pad_h) * (g.in_w + 2 * g.pad_w);
  const bool pad_copy = !pointwise && has_pad &&
                        padded_size * static_cast<int64_t>(sizeof(T)) <= torchlet::detail::kConvPaddedCopyBytes;
  const int64_t col_size = pointwise ? 0 : K * tile, pad_size = pad_copy ? padded_size : 0;
  const int64_t partial_size = parallel ? wsize : 0, per_thread = col_size + pad_size + partial_size;
  using Scratch = torchlet::detail::ConvThreadScratch<T>;
  const auto scratch_at = [&](T* base) { return Scratch::carve(base, col_size, pad_size); };

  auto run_task = [&](int64_t task, Scratch& ws, auto&& for_channels, T* acc) {
    const int64_t t = task % tiles, cg = task / tiles, n = cg / g.groups, grp = cg % g.groups;
    const int64_t p0 = t * tile, np = std::min(tile, pixels - p0);
    const T* image = input + n * in_image + grp * in_group;
    const T* go = grad_out + n * out_image + grp * Mg * pixels + p0;  // [Mg, np], rows `pixels` apart
    const T* B = image + p0;                                          // pointwise: the input itself
    int64_t ldb = pixels;
    if (!pointwise) {
      if (pad_copy) {
        const int64_t key = n * g.groups + grp;
        if (ws.padded_key != key) {
          for_channels([&](int64_t c0, int64_t c1) { torchlet::detail::pad_channels(image, c0, c1, g, ws.padded); });
          ws.padded_key = key;
        }
        for_channels([&](int64_t c0, int64_t c1) {
          torchlet::detail::im2col_padded(ws.padded, c0, c1, g, p0, np, ws.col, np);
        });
      } else if (!has_pad) {
        for_channels([&](int64_t c0, int64_t c1) { torchlet::detail::im2col_padded(image, c0, c1, g, p0, np, ws.col, np); });
      } else {
        for_channels([&](int64_t c0, int64_t c1) { torchlet::detail::im2col_tile(image, c0, c1, g, p0, np, ws.col, np); });
      }
      B = ws.col;
      ldb = np;
    }
    gemm<T>(false, true, Mg, K, np, T(1), go, pixels, B, ldb, T(1), acc + grp * Mg * K, K);
  };
  auto serial_channels = [&](auto&& f) { f(int64_t{0}, Cg); };

  if (parallel) {
    torchlet::detail::ConvScratch<T> buf(per_thread * threads);
    T* base = buf.get();
    for (int i = 0; i < threads; ++i) std::fill_n(base + per_thread * i + col_size + pad_size, wsize, T(0));
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
    {
      Scratch ws = scratch_at(base + per_thread * omp_get_thread_num());
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tasks; ++t) run_task(t, ws, serial_channels, ws.extra);
    }
#else
    {
      Scratch ws = scratch_at(base);
      for (int64_t t = 0; t < tasks; ++t) run_task(t, ws, serial_channels, ws.extra);
    }
#endif
    // fixed-order reduction: element i is partial_0[i] + partial_1[i] + ... whatever the thread split of i
    constexpr int64_t chunk = 4096;
    const int64_t chunks = (wsize + chunk - 1) / chunk;
    torchlet::detail::parallel_for_work(chunks, chunk * threads, [&](int64_t c) {
      const int64_t i0 = c * chunk, i1 = std::min(wsize, i0 + chunk);
      for (int th = 0; th < threads; ++th) {
        const T* p = base + per_thread * th + col_size + pad_size;
        for (int64_t i = i0; i < i1; ++i) grad_weight[i] += p[i];
      }
    });
  } else {
    torchlet::detail::ConvScratch<T> buf(per_thread);
    Scratch ws = scratch_at(buf.get());
    const int64_t parts = std::min<int64_t>(Cg, threads);
    const bool split = parts > 1 && K * tile >= torchlet::detail::kParallelGrain;
    auto parallel_channels = [&](auto&& f) {
      torchlet::detail::parallel_for(parts, split, [&](int64_t i) { f(Cg * i / parts, Cg * (i + 1) / parts); });
    };
    for (int64_t t = 0; t < tasks; ++t) run_task(t, ws, parallel_channels, grad_weight);
  }
}

/// Bias gradient of a convolution: grad_bias[co] = sum of grad_out[n, co, :, :] over images and pixels,
/// accumulated in double. grad_out is contiguous [N, Cout, Ho, Wo]; grad_bias is overwritten.
template <class T>
void conv2d_backward_bias(const Conv2dGeometry& g, const T* grad_out, T* grad_bias) {
  ++conv2d_backward_calls();
  ++conv2d_bias_grad_calls();
  const int64_t pixels = g.out_h * g.out_w, C = g.out_channels;
  torchlet::detail::parallel_for_work(C, g.batch * pixels, [&](int64_t co) {
    double acc = 0;
    for (int64_t n = 0; n < g.batch; ++n) {
      const T* p = grad_out + (n * C + co) * pixels;
      double s = 0;
      for (int64_t j = 0; j < pixels; ++j) s += static_cast<double>(p[j]);
      acc += s;
    }
    grad_bias[co] = static_cast<T>(acc);
  });
}
}  // namespace torchlet::cpu
