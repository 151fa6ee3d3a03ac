#pragma once
/// \file CPU kernels for 2-D pooling (max with indices, average, adaptive average) on validated [N, C, H, W]
/// tensors of any strides. Each (n, c) plane is independent; planes are split across OpenMP threads.
/// Arithmetic follows PyTorch's CPU kernels (MaxPoolKernel.cpp, AvgPoolKernel.cpp, AdaptiveAvgPoolKernel.cpp).
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>

#include "torchlet/core/threads.hpp"
#include "torchlet/tensor/dispatch.hpp"
#include "torchlet/tensor/strided_loop.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {
namespace detail {
/// Element strides of a [N, C, H, W] tensor and where plane `p` = n * C + c starts (in elements).
struct PlaneLayout {
  int64_t C, sN, sC, sH, sW;
  /// Element offset of plane p from the data pointer.
  int64_t offset(int64_t p) const { return (p / C) * sN + (p % C) * sC; }
};

/// One average-pooling window along a dimension: [begin, end) clipped to the input, and its size clipped only
/// to the padded input (the divisor when count_include_pad is true).
struct AvgPoolWindow {
  int64_t begin, end, padded;
};
/// The window of output position `o` (PyTorch's avg_pool2d arithmetic).
inline AvgPoolWindow avg_pool_window(int64_t o, int64_t stride, int64_t pad, int64_t kernel, int64_t in) {
  const int64_t b = o * stride - pad;
  const int64_t e = std::min(b + kernel, in + pad);
  return {std::max<int64_t>(b, 0), std::min(e, in), e - b};
}

/// The layout of a 4-D tensor's planes.
inline PlaneLayout plane_layout(const Tensor& x) {
  return {x.size(1), x.stride(0), x.stride(1), x.stride(2), x.stride(3)};
}
}  // namespace detail

namespace cpu {

/// Geometry of a 2-D pooling window: kernel, stride, padding, dilation and the resulting output size.
struct Pool2dGeometry {
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t out_h, out_w;
};

/// PyTorch's pooling output size along one dimension (pooling_output_shape): floor or ceil of
/// (in + 2 pad - dilation (k - 1) - 1) / stride + 1, where with ceil_mode the last window must start
/// inside the input or the left padding.
inline int64_t pool_output_size(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dilation,
                                bool ceil_mode) {
  const int64_t num = in + 2 * pad - dilation * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  // floor division (num may be negative)
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

/// Max pooling of x [N, C, H, W] into out [N, C, OH, OW] (contiguous, x's dtype), and, when `indices` is
/// defined, the flat index (h * W + w) of each maximum into indices [N, C, OH, OW] (contiguous int64).
/// Padding never wins; a NaN in the window is taken as the maximum (the last NaN's index), ties keep the first.
inline void max_pool2d(const Tensor& x, const Pool2dGeometry& g, const Tensor& out, const Tensor& indices) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t planes = N * C, OH = g.out_h, OW = g.out_w;
  if (planes == 0 || OH == 0 || OW == 0) return;
  const torchlet::detail::PlaneLayout L = torchlet::detail::plane_layout(x);
  const bool want_idx = indices.defined();
  torchlet::detail::dispatch_floating(x.dtype(), "max_pool2d", [&]<class T>() {
    using acc = torchlet::detail::opmath_t<T>;
    const T* in = static_cast<const T*>(x.data_ptr());
    T* o = static_cast<T*>(out.data_ptr());
    int64_t* ix = want_idx ? static_cast<int64_t*>(indices.data_ptr()) : nullptr;
    torchlet::detail::parallel_for_work(planes, OH * OW * g.kernel_h * g.kernel_w, [&](int64_t p) {
      const T* src = in + L.offset(p);
      T* dst = o + p * OH * OW;
      int64_t* dix = want_idx ? ix + p * OH * OW : nullptr;
      for (int64_t oh = 0; oh < OH; ++oh) {
        int64_t h0 = oh * g.stride_h - g.pad_h;
        const int64_t h1 = std::min(h0 + (g.kernel_h - 1) * g.dilation_h + 1, H);
        while (h0 < 0) h0 += g.dilation_h;
        for (int64_t ow = 0; ow < OW; ++ow) {
          int64_t w0 = ow * g.stride_w - g.pad_w;
          const int64_t w1 = std::min(w0 + (g.kernel_w - 1) * g.dilation_w + 1, W);
          while (w0 < 0) w0 += g.dilation_w;
          int64_t best_idx = h0 * W + w0;
          acc best = -std::numeric_limits<acc>::infinity();
          for (int64_t h = h0; h < h1; h += g.dilation_h) {
            const T* row = src + h * L.sH;
            for (int64_t w = w0; w < w1; w += g.dilation_w) {
              const acc v = static_cast<acc>(row[w * L.sW]);
              if (v > best || std::isnan(v)) {
                best = v;
                best_idx = h * W + w;
              }
            }
          }
          dst[oh * OW + ow] = static_cast<T>(best);
          if (dix) dix[oh * OW + ow] = best_idx;
        }
      }
    });
  });
}

/// Average pooling of x [N, C, H, W] (a floating dtype or int64) into out [N, C, OH, OW] (contiguous).
/// The divisor is `divisor_override` when given, else the window size clipped to the padded input
/// (count_include_pad) or to the input itself; int64 sums divide with truncation, as PyTorch does.
inline void avg_pool2d(const Tensor& x, const Pool2dGeometry& g, bool count_include_pad,
                       std::optional<int64_t> divisor_override, const Tensor& out) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t planes = N * C, OH = g.out_h, OW = g.out_w;
  if (planes == 0 || OH == 0 || OW == 0) return;
  const torchlet::detail::PlaneLayout L = torchlet::detail::plane_layout(x);
  auto run = [&]<class T>() {
    using acc = torchlet::detail::opmath_t<T>;
    const T* in = static_cast<const T*>(x.data_ptr());
    T* o = static_cast<T*>(out.data_ptr());
    torchlet::detail::parallel_for_work(planes, OH * OW * g.kernel_h * g.kernel_w, [&](int64_t p) {
      const T* src = in + L.offset(p);
      T* dst = o + p * OH * OW;
      for (int64_t oh = 0; oh < OH; ++oh) {
        const auto wh = torchlet::detail::avg_pool_window(oh, g.stride_h, g.pad_h, g.kernel_h, H);
        const int64_t h0 = wh.begin, h1 = wh.end, ph = wh.padded;
        for (int64_t ow = 0; ow < OW; ++ow) {
          const auto ww = torchlet::detail::avg_pool_window(ow, g.stride_w, g.pad_w, g.kernel_w, W);
          const int64_t w0 = ww.begin, w1 = ww.end, pool_size = ph * ww.padded;
          if (h0 >= h1 || w0 >= w1) {
            dst[oh * OW + ow] = static_cast<T>(acc(0));
            continue;
          }
          const int64_t divide = divisor_override ? *divisor_override
                                 : count_include_pad ? pool_size
                                                     : (h1 - h0) * (w1 - w0);
          acc sum = 0;
          for (int64_t h = h0; h < h1; ++h) {
            const T* row = src + h * L.sH;
            for (int64_t w = w0; w < w1; ++w) sum += static_cast<acc>(row[w * L.sW]);
          }
          dst[oh * OW + ow] = static_cast<T>(sum / static_cast<acc>(divide));
        }
      }
    });
  };
  if (x.dtype() == kInt64) run.template operator()<int64_t>();
  else torchlet::detail::dispatch_floating(x.dtype(), "avg_pool2d", run);
}

/// First input index of adaptive window `i` of `out` over `in` elements: floor(i * in / out).
inline int64_t adaptive_start(int64_t i, int64_t out, int64_t in) { return (i / out) * in + ((i % out) * in) / out; }
/// One past the last input index of adaptive window `i`: ceil((i + 1) * in / out).
inline int64_t adaptive_end(int64_t i, int64_t out, int64_t in) { return 1 + ((i + 1) * in - 1) / out; }

/// Adaptive average pooling of x [N, C, H, W] (floating) into out [N, C, OH, OW] (contiguous): output
/// (oh, ow) averages rows [floor(oh H / OH), ceil((oh + 1) H / OH)) and the matching columns.
inline void adaptive_avg_pool2d(const Tensor& x, const Tensor& out) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t planes = N * C, OH = out.size(2), OW = out.size(3);
  if (planes == 0 || OH == 0 || OW == 0) return;
  const torchlet::detail::PlaneLayout L = torchlet::detail::plane_layout(x);
  torchlet::detail::dispatch_floating(x.dtype(), "adaptive_avg_pool2d", [&]<class T>() {
    using acc = torchlet::detail::opmath_t<T>;
    const T* in = static_cast<const T*>(x.data_ptr());
    T* o = static_cast<T*>(out.data_ptr());
    // each window covers about (H / OH + 1) x (W / OW + 1) inputs
    const int64_t work = OH * OW * (H / OH + 1) * (W / OW + 1);
    torchlet::detail::parallel_for_work(planes, work, [&](int64_t p) {
      const T* src = in + L.offset(p);
      T* dst = o + p * OH * OW;
      for (int64_t oh = 0; oh < OH; ++oh) {
        const int64_t h0 = adaptive_start(oh, OH, H), h1 = adaptive_end(oh, OH, H);
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t w0 = adaptive_start(ow, OW, W), w1 = adaptive_end(ow, OW, W);
          acc sum = 0;
          for (int64_t h = h0; h < h1; ++h) {
            const T* row = src + h * L.sH;
            for (int64_t w = w0; w < w1; ++w) sum += static_cast<acc>(row[w * L.sW]);
          }
          dst[oh * OW + ow] = static_cast<T>(sum / static_cast<acc>(h1 - h0) / static_cast<acc>(w1 - w0));
        }
      }
    });
  });
}
}  // namespace cpu
}  // namespace torchlet
