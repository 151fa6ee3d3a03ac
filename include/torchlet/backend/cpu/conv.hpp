#pragma once
/// \file 2-D convolution forward on the CPU: im2col (on tiles of output pixels, from a zero-padded copy of the
/// image) + the shared GEMM, with a no-copy path for 1x1 stride-1 unpadded convolutions and one GEMM for several
/// small images. Takes raw contiguous NCHW data that ops/conv.hpp has validated; knows nothing about Tensor.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "torchlet/backend/cpu/gemm.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/core/threads.hpp"

namespace torchlet::cpu {

/// Geometry of one 2-D convolution over contiguous NCHW input, [Cout, C/groups, kh, kw] weight and
/// NCHW output (sizes in elements).
struct Conv2dGeometry {
  int64_t batch = 1;         ///< N
  int64_t in_channels = 1;   ///< C (all groups)
  int64_t in_h = 1;          ///< H
  int64_t in_w = 1;          ///< W
  int64_t out_channels = 1;  ///< Cout (all groups)
  int64_t kernel_h = 1;      ///< kh
  int64_t kernel_w = 1;      ///< kw
  int64_t stride_h = 1;      ///< vertical stride
  int64_t stride_w = 1;      ///< horizontal stride
  int64_t pad_h = 0;         ///< zero rows added above and below
  int64_t pad_w = 0;         ///< zero columns added left and right
  int64_t dilation_h = 1;    ///< vertical spacing of kernel taps
  int64_t dilation_w = 1;    ///< horizontal spacing of kernel taps
  int64_t groups = 1;        ///< channel groups
  int64_t out_h = 1;         ///< Ho
  int64_t out_w = 1;         ///< Wo

  /// Input channels per group.
  int64_t group_in() const { return in_channels / groups; }
  /// Output channels per group.
  int64_t group_out() const { return out_channels / groups; }
  /// Rows of one group's im2col matrix: (C/groups) * kh * kw.
  int64_t patch() const { return group_in() * kernel_h * kernel_w; }
  /// True for a 1x1, stride-1, unpadded convolution: a plain GEMM on the input, no im2col.
  bool is_pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0;
  }
  /// Multiply-adds of the whole convolution.
  double macs() const {
    return static_cast<double>(batch) * out_channels * out_h * out_w * patch();
  }
};

}  // namespace torchlet::cpu

namespace torchlet::detail {
/// One thread's slice of a ConvScratch: the im2col tile, the zero-padded copy of one image group, and an extra
/// buffer (the forward's shared-GEMM output, or the backward's partial weight gradient).
template <class T>
struct ConvThreadScratch {
  T* col;
  T* padded;
  T* extra;
  int64_t padded_key;  ///< which (image, group) `padded` holds, -1 for none
  /// Lays the three buffers out one after another from `base` (all null when base is null).
  static ConvThreadScratch carve(T* base, int64_t col_size, int64_t pad_size) {
    return {base, base ? base + col_size : nullptr, base ? base + col_size + pad_size : nullptr, -1};
  }
};

/// An uninitialised, 64-byte aligned scratch buffer of n elements.
template <class T>
struct ConvScratch {
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> ptr;
  explicit ConvScratch(int64_t n) {
    if (n <= 0) return;
    const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64;
    ptr.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
    TORCHLET_CHECK(ptr != nullptr, ValueError, "[conv2d] cannot allocate ", bytes, " bytes of scratch memory");
  }
  T* get() const { return ptr.get(); }
};

/// Bytes of im2col scratch one thread works on at a time (a tile of output pixels); about an L2 cache.
inline constexpr int64_t kConvTileBytes = int64_t{1} << 20;
/// The padded copy of one image group is made only up to this size (bounds-checked im2col above it).
inline constexpr int64_t kConvPaddedCopyBytes = int64_t{16} << 20;
/// Below this many output pixels per image, several images share one GEMM (the weights are packed once for all).
inline constexpr int64_t kConvBatchColumns = 384;
/// Tiles are not made narrower than this many output pixels (GEMM efficiency drops below).
inline constexpr int64_t kConvMinTilePixels = 64;

/// Copies n elements src[0], src[step], ... to dst (a constant step lets the compiler vectorise the common cases).
template <class T>
inline void conv_copy_strided(T* dst, const T* src, int64_t n, int64_t step) {
  if (step == 1) {
    for (int64_t j = 0; j < n; ++j) dst[j] = src[j];
  } else if (step == 2) {
    for (int64_t j = 0; j < n; ++j) dst[j] = src[2 * j];
  } else {
    for (int64_t j = 0; j < n; ++j) dst[j] = src[j * step];
  }
}

/// Copies channels [c0, c1) of an image [channels, H, W] into `dst` [channels, H + 2 * pad_h, W + 2 * pad_w]
/// with zero borders.
template <class T>
void pad_channels(const T* image, int64_t c0, int64_t c1, const cpu::Conv2dGeometry& g, T* dst) {
  const int64_t H = g.in_h, W = g.in_w, Hp = H + 2 * g.pad_h, Wp = W + 2 * g.pad_w;
  for (int64_t c = c0; c < c1; ++c) {
    T* d = dst + c * Hp * Wp;
    const T* s = image + c * H * W;
    std::fill_n(d, g.pad_h * Wp + g.pad_w, T(0));
    for (int64_t h = 0; h < H; ++h) {
      T* row = d + (h + g.pad_h) * Wp + g.pad_w;
      std::copy_n(s + h * W, W, row);
      std::fill_n(row + W, h + 1 < H ? 2 * g.pad_w : g.pad_w, T(0));  // right border + next row's left
    }
    std::fill_n(d + (H + g.pad_h) * Wp, g.pad_h * Wp, T(0));
  }
}

/// Writes the im2col rows of channels [c0, c1) for output pixels [p0, p0 + np), rows `ld` apart:
/// col[((c * kh + ki) * kw + kj) * ld + j] = the input pixel tap (ki, kj) of channel c sees at output pixel p0 + j.
/// `src` is the image already padded by g.pad_h / g.pad_w, i.e. [channels, Hs, Ws] with Hs = H + 2 * pad_h,
/// Ws = W + 2 * pad_w (the image itself when there is no padding), so no tap falls outside it.
template <class T>
void im2col_padded(const T* src, int64_t c0, int64_t c1, const cpu::Conv2dGeometry& g, int64_t p0, int64_t np, T* col,
                   int64_t ld) {
  const int64_t Hs = g.in_h + 2 * g.pad_h, Ws = g.in_w + 2 * g.pad_w, Wo = g.out_w, sw = g.stride_w;
  const int64_t end = p0 + np, oh_first = p0 / Wo, oh_last = (end - 1) / Wo;
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        T* dst = col + ((c * g.kernel_h + ki) * g.kernel_w + kj) * ld;
        const T* tap = src + c * Hs * Ws + ki * g.dilation_h * Ws + kj * g.dilation_w;
        for (int64_t oh = oh_first; oh <= oh_last; ++oh) {
          const int64_t a = oh == oh_first ? p0 - oh * Wo : 0;   // first output column of this row in the tile
          const int64_t b = oh == oh_last ? end - oh * Wo : Wo;  // one past the last
          conv_copy_strided(dst, tap + oh * g.stride_h * Ws + a * sw, b - a, sw);
          dst += b - a;
        }
      }
    }
  }
}

/// The output columns [lo, hi) whose input column ow * stride + kj * dilation - pad lies inside the image.
inline std::pair<int64_t, int64_t> inside_columns(const cpu::Conv2dGeometry& g, int64_t kj) {
  const int64_t W = g.in_w, Wo = g.out_w, sw = g.stride_w;
  const int64_t dx = kj * g.dilation_w - g.pad_w;
  const int64_t lo = std::min(Wo, dx >= 0 ? 0 : (-dx + sw - 1) / sw);
  return {lo, std::clamp(dx >= W ? 0 : (W - dx + sw - 1) / sw, lo, Wo)};
}

/// Like im2col_padded, on the unpadded image (bounds checked per row): for images too large to copy padded.
template <class T>
void im2col_tile(const T* image, int64_t c0, int64_t c1, const cpu::Conv2dGeometry& g, int64_t p0, int64_t np, T* col,
                   int64_t ld) {
  const int64_t H = g.in_h, W = g.in_w, Wo = g.out_w, sw = g.stride_w, end = p0 + np;
  const int64_t oh_first = p0 / Wo, oh_last = (end - 1) / Wo;
  for (int64_t c = c0; c < c1; ++c) {
    const T* plane = image + c * H * W;
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        T* dst = col + ((c * g.kernel_h + ki) * g.kernel_w + kj) * ld;
        const int64_t dx = kj * g.dilation_w - g.pad_w;
        const auto [ow_lo, ow_hi] = inside_columns(g, kj);
        for (int64_t oh = oh_first; oh <= oh_last; ++oh) {
          const int64_t a = oh == oh_first ? p0 - oh * Wo : 0;
          const int64_t b = oh == oh_last ? end - oh * Wo : Wo;
          const int64_t ih = oh * g.stride_h - g.pad_h + ki * g.dilation_h;
          if (ih < 0 || ih >= H) {
            std::fill_n(dst, b - a, T(0));
          } else {
            const int64_t lo = std::clamp(ow_lo, a, b), hi = std::clamp(ow_hi, lo, b);
            std::fill_n(dst, lo - a, T(0));
            conv_copy_strided(dst + (lo - a), plane + ih * W + lo * sw + dx, hi - lo, sw);
            std::fill_n(dst + (hi - a), b - hi, T(0));
          }
          dst += b - a;
        }
      }
    }
  }
}

/// How conv2d_forward splits its work: tasks of (`images` images, one group, one tile of output pixels).
struct ConvPlan {
  int64_t images = 1;           ///< images per task (> 1 only for small images, with one tile per image)
  int64_t tile = 1;             ///< output pixels per task and image
  int64_t tiles = 1;            ///< tiles per image
  bool parallel_tasks = false;  ///< tasks run concurrently (GEMM single-threaded), else GEMM threads itself
};

/// Chooses the task shape and the threading mode for `threads` threads.
inline ConvPlan plan_conv(const cpu::Conv2dGeometry& g, int64_t elem_bytes, int threads) {
  const int64_t pixels = g.out_h * g.out_w;
  ConvPlan plan;
  const auto balanced = [&](int64_t tasks) { return tasks % threads == 0 || tasks >= 4 * threads; };
  if (g.batch > 1 && pixels < kConvBatchColumns) {
    // small images: several per GEMM, as many as fill kConvBatchColumns, in chunks that share out evenly
    const int64_t most = std::min(g.batch, (kConvBatchColumns + pixels - 1) / pixels);
    plan.images = most;
    for (int64_t nb = most; nb > 1 && threads > 1; --nb) {
      const int64_t chunks = (g.batch + nb - 1) / nb;
      if (g.batch % nb == 0 && balanced(g.groups * chunks)) {
        plan.images = nb;
        break;
      }
    }
    plan.tile = pixels;
    const int64_t tasks = g.groups * ((g.batch + plan.images - 1) / plan.images);
    plan.parallel_tasks = threads > 1 && balanced(tasks);
    return plan;
  }
  const int64_t outer = g.batch * g.groups;
  const int64_t row_bytes = std::max<int64_t>(1, g.is_pointwise() ? 0 : g.patch() * elem_bytes);
  plan.tiles = std::max<int64_t>(1, (pixels * row_bytes + kConvTileBytes - 1) / kConvTileBytes);
  plan.tiles = std::min(plan.tiles, std::max<int64_t>(1, pixels / kConvMinTilePixels));
  if (threads > 1) {
    if (!balanced(outer * plan.tiles)) {
      // split the pixels further so that the tasks share out evenly, if tiles stay wide enough
      int64_t t = plan.tiles;
      while ((outer * t) % threads != 0) ++t;
      if (pixels / t >= kConvMinTilePixels) plan.tiles = t;
    }
    plan.parallel_tasks = balanced(outer * plan.tiles);
  }
  plan.tile = (pixels + plan.tiles - 1) / plan.tiles;
  if (plan.tiles > 1) plan.tile = std::min(pixels, (plan.tile + 15) / 16 * 16);  // whole SIMD vectors
  plan.tiles = (pixels + plan.tile - 1) / plan.tile;
  return plan;
}
}  // namespace torchlet::detail

namespace torchlet::cpu {

/// Convolution forward: output[N, Cout, Ho, Wo] = conv(input[N, C, H, W], weight[Cout, C/groups, kh, kw]) + bias.
/// All pointers are to contiguous data; `bias` may be null. Sizes must have been validated by the caller.
///
/// Work is split in tasks (image, group, tile of output pixels). When the tasks share out evenly over the
/// threads, they run concurrently, each thread with its own scratch and a single-threaded GEMM; otherwise they
/// run one after the other with the im2col split over channels and the GEMM using all threads.
template <class T>
void conv2d_forward(const Conv2dGeometry& g, const T* input, const T* weight, const T* bias, T* output) {
  const int64_t pixels = g.out_h * g.out_w;
  const int64_t Mg = g.group_out(), Cg = g.group_in(), K = g.patch();
  const int64_t in_image = g.in_channels * g.in_h * g.in_w, in_group = Cg * g.in_h * g.in_w;
  if (g.batch == 0 || g.out_channels == 0 || pixels == 0) return;
  const bool pointwise = g.is_pointwise();
  const int threads = get_num_threads();
  const detail::ConvPlan plan = detail::plan_conv(g, static_cast<int64_t>(sizeof(T)), threads);
  const int64_t nb = plan.images, chunks = (g.batch + nb - 1) / nb;
  const int64_t tasks = chunks * g.groups * plan.tiles;
  // a zero-padded copy of one group's channels lets im2col run without bounds checks
  const bool has_pad = g.pad_h > 0 || g.pad_w > 0;
  const int64_t padded_size = Cg * (g.in_h + 2 * g.pad_h) * (g.in_w + 2 * g.pad_w);
  const bool pad_copy =
      !pointwise && has_pad && padded_size * static_cast<int64_t>(sizeof(T)) <= detail::kConvPaddedCopyBytes;
  // scratch of one thread: the GEMM's right-hand side (im2col, or gathered images when several share a GEMM),
  // the padded copy of one image group, and the GEMM's output when several images share it
  const int64_t cols = nb * plan.tile;
  const int64_t col_size = (pointwise && nb == 1) ? 0 : K * cols, pad_size = pad_copy ? padded_size : 0;
  const int64_t out_size = nb > 1 ? Mg * cols : 0, per_thread = col_size + pad_size + out_size;
  using Scratch = detail::ConvThreadScratch<T>;
  const auto scratch_at = [&](T* base) { return Scratch::carve(base, col_size, pad_size); };

  // one task: output pixels [p0, p0 + np) of one group of images [n0, n0 + count); `for_channels(f)` runs
  // f(c0, c1) over channel ranges (split over threads or not)
  auto run_task = [&](int64_t task, Scratch& ws, auto&& for_channels) {
    const int64_t tile = task % plan.tiles, cg = task / plan.tiles;
    const int64_t chunk = cg / g.groups, grp = cg % g.groups;
    const int64_t n0 = chunk * nb, count = std::min(nb, g.batch - n0);
    const int64_t p0 = tile * plan.tile, np = std::min(plan.tile, pixels - p0), ld = count * np;
    const T* w = weight + grp * Mg * K;
    // the right-hand side: columns [i * np, (i + 1) * np) belong to image n0 + i
    const T* B = input + n0 * in_image + grp * in_group + p0;  // pointwise, one image: the input itself
    int64_t ldb = pixels;
    if (!(pointwise && count == 1)) {
      for (int64_t i = 0; i < count; ++i) {
        const T* image = input + (n0 + i) * in_image + grp * in_group;
        T* dst = ws.col + i * np;
        if (pointwise) {
          for_channels([&](int64_t c0, int64_t c1) {
            for (int64_t c = c0; c < c1; ++c) std::copy_n(image + c * pixels + p0, np, dst + c * ld);
          });
        } else if (pad_copy) {
          const int64_t key = (n0 + i) * g.groups + grp;
          if (ws.padded_key != key) {
            for_channels([&](int64_t c0, int64_t c1) { detail::pad_channels(image, c0, c1, g, ws.padded); });
            ws.padded_key = key;
          }
          for_channels([&](int64_t c0, int64_t c1) { detail::im2col_padded(ws.padded, c0, c1, g, p0, np, dst, ld); });
        } else if (!has_pad) {
          for_channels([&](int64_t c0, int64_t c1) { detail::im2col_padded(image, c0, c1, g, p0, np, dst, ld); });
        } else {
          for_channels([&](int64_t c0, int64_t c1) { detail::im2col_tile(image, c0, c1, g, p0, np, dst, ld); });
        }
      }
      B = ws.col;
      ldb = ld;
    }
    if (count == 1) {  // straight into the output, on top of the bias
      T* out = output + (n0 * g.out_channels + grp * Mg) * pixels + p0;
      if (bias)
        for (int64_t m = 0; m < Mg; ++m) std::fill_n(out + m * pixels, np, bias[grp * Mg + m]);
      gemm<T>(false, false, Mg, np, K, T(1), w, K, B, ldb, bias ? T(1) : T(0), out, pixels);
      return;
    }
    gemm<T>(false, false, Mg, ld, K, T(1), w, K, B, ldb, T(0), ws.extra, ld);
    for (int64_t i = 0; i < count; ++i) {
      T* out = output + ((n0 + i) * g.out_channels + grp * Mg) * pixels + p0;
      for (int64_t m = 0; m < Mg; ++m) {
        const T* src = ws.extra + m * ld + i * np;
        T* dst = out + m * pixels;
        const T b = bias ? bias[grp * Mg + m] : T(0);
        for (int64_t j = 0; j < np; ++j) dst[j] = src[j] + b;
      }
    }
  };
  auto serial_channels = [&](auto&& f) { f(int64_t{0}, Cg); };

  if (plan.parallel_tasks) {
    detail::ConvScratch<T> buf(per_thread * threads);  // a slice per thread, allocated outside the region
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
    {
      Scratch ws = scratch_at(buf.get() ? buf.get() + per_thread * omp_get_thread_num() : nullptr);
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tasks; ++t) run_task(t, ws, serial_channels);  // single-threaded GEMM in here
    }
#else
    Scratch ws = scratch_at(buf.get());
    for (int64_t t = 0; t < tasks; ++t) run_task(t, ws, serial_channels);
#endif
  } else {
    detail::ConvScratch<T> buf(per_thread);
    Scratch ws = scratch_at(buf.get());
    // copies split over channels; the GEMM uses the threads itself
    const int64_t parts = std::min<int64_t>(Cg, threads);
    const bool split = parts > 1 && K * cols >= detail::kParallelGrain;
    auto parallel_channels = [&](auto&& f) {
      detail::parallel_for(parts, split, [&](int64_t i) { f(Cg * i / parts, Cg * (i + 1) / parts); });
    };
    for (int64_t t = 0; t < tasks; ++t) run_task(t, ws, parallel_channels);
  }
}
}  // namespace torchlet::cpu
