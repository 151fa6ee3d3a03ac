#pragma once
/// \file 2-D convolution forward on channels-last (NHWC) data on the CPU. The output pixels of the whole batch are
/// the rows of one GEMM per group: out[P, Cout] = patches[P, kh * kw * C/groups] x weight[Cout, kh, kw, C/groups]^T.
/// A 1x1 stride-1 unpadded convolution needs no patch matrix at all (the input rows are the patches); otherwise
/// patches are gathered tile by tile, each tap a run of C/groups contiguous channels.
#include <algorithm>
#include <cstdint>

#include "torchlet/backend/cpu/conv.hpp"

namespace torchlet::detail {

/// Writes the patch rows of output pixels [p0, p0 + np) (pixels counted over the whole batch) for channel group
/// `grp`: row j holds, for each tap (ki, kj) in order, the C/groups channels that tap reads (zeros outside the
/// image), so row j = [(ki * kw + kj) * Cg + c].
template <class T>
void im2row_nhwc(const T* input, const cpu::Conv2dGeometry& g, int64_t grp, int64_t p0, int64_t np, T* rows) {
  const int64_t H = g.in_h, W = g.in_w, C = g.in_channels, Cg = g.group_in(), K = g.patch();
  const int64_t per_image = g.out_h * g.out_w;
  for (int64_t j = 0; j < np; ++j) {
    const int64_t p = p0 + j, n = p / per_image, oh = (p % per_image) / g.out_w, ow = p % g.out_w;
    const T* image = input + n * H * W * C + grp * Cg;
    T* dst = rows + j * K;
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      const int64_t ih = oh * g.stride_h - g.pad_h + ki * g.dilation_h;
      for (int64_t kj = 0; kj < g.kernel_w; ++kj, dst += Cg) {
        const int64_t iw = ow * g.stride_w - g.pad_w + kj * g.dilation_w;
        if (ih < 0 || ih >= H || iw < 0 || iw >= W) std::fill_n(dst, Cg, T(0));
        else std::copy_n(image + (ih * W + iw) * C, Cg, dst);
      }
    }
  }
}
}  // namespace torchlet::detail

namespace torchlet::cpu {

/// Convolution forward on channels-last data: output[N, Ho, Wo, Cout] = conv(input[N, H, W, C],
/// weight[Cout, kh, kw, C/groups]) + bias (all contiguous in those orders, i.e. channels-last [N, C, H, W] tensors
/// and a channels-last weight); `bias` may be null. Sizes must have been validated by the caller.
///
/// Work is split in tasks (group, tile of output pixels). With enough tasks for the threads, each thread gathers
/// and multiplies its own tiles with a single-threaded GEMM; otherwise the tasks run in turn on a multithreaded GEMM.
template <class T>
void conv2d_forward_nhwc(const Conv2dGeometry& g, const T* input, const T* weight, const T* bias, T* output) {
  const int64_t P = g.batch * g.out_h * g.out_w, Cout = g.out_channels, Mg = g.group_out(), Cg = g.group_in();
  const int64_t K = g.patch();
  if (P == 0 || Cout == 0) return;
  if (bias) {  // the GEMMs accumulate on top of the bias
    detail::parallel_for_work(P, Cout, [&](int64_t p) { std::copy_n(bias, Cout, output + p * Cout); });
  }
  const T beta = bias ? T(1) : T(0);
  if (g.is_pointwise()) {  // the input rows are the patches: one GEMM per group over the whole batch
    for (int64_t grp = 0; grp < g.groups; ++grp)
      gemm<T>(false, true, P, Mg, Cg, T(1), input + grp * Cg, g.in_channels, weight + grp * Mg * K, K, beta,
              output + grp * Mg, Cout);
    return;
  }
  const int threads = get_num_threads();
  const int64_t max_rows = std::max<int64_t>(16, detail::kConvTileBytes / (K * static_cast<int64_t>(sizeof(T))));
  int64_t tiles = (P + max_rows - 1) / max_rows;
  // enough tiles for every thread when the tiles stay at least kConvMinTilePixels rows
  tiles = std::max(tiles, std::min<int64_t>(threads, P / detail::kConvMinTilePixels));
  tiles = std::max<int64_t>(tiles, 1);
  const int64_t tile = (P + tiles - 1) / tiles;
  tiles = (P + tile - 1) / tile;
  const int64_t tasks = tiles * g.groups;
  auto run_task = [&](int64_t task, T* rows) {
    const int64_t grp = task % g.groups, p0 = (task / g.groups) * tile, np = std::min(tile, P - p0);
    detail::im2row_nhwc(input, g, grp, p0, np, rows);
    gemm<T>(false, true, np, Mg, K, T(1), rows, K, weight + grp * Mg * K, K, beta, output + p0 * Cout + grp * Mg,
            Cout);
  };
  const bool parallel_tasks = threads > 1 && (tasks % threads == 0 || tasks >= 4 * threads);
  if (parallel_tasks) {
    detail::ConvScratch<T> buf(tile * K * threads);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t t = 0; t < tasks; ++t) run_task(t, buf.get() + tile * K * omp_get_thread_num());
#else
    for (int64_t t = 0; t < tasks; ++t) run_task(t, buf.get());
#endif
  } else {
    detail::ConvScratch<T> buf(tile * K);
    for (int64_t t = 0; t < tasks; ++t) run_task(t, buf.get());
  }
}
}  // namespace torchlet::cpu
