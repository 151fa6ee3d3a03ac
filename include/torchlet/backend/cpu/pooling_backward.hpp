#pragma once
/// \file CPU kernels for the backward passes of 2-D pooling (max via saved indices, average, adaptive average):
/// grad_output [N, C, OH, OW] of any strides in, grad_input [N, C, H, W] (contiguous) out. Each (n, c) plane is
/// independent (max pooling scatters only within its own plane), so planes are split across threads; 16-bit floats
/// accumulate in float. Arithmetic follows PyTorch's CPU kernels (MaxPoolKernel.cpp, AvgPoolKernel.cpp,
/// AdaptiveAvgPoolKernel.cpp).
#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#include "torchlet/backend/cpu/pooling.hpp"
#include "torchlet/core/threads.hpp"
#include "torchlet/tensor/dispatch.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {
namespace detail {
/// For each plane p of grad_input (contiguous T, `plane_size` elements per plane), calls body(p, acc) with a
/// zeroed accumulator of plane_size opmath_t<T> values (grad_input's own memory when T is its opmath type) and
/// stores it into plane p; planes run in parallel (`work` steps each).
template <class T, class F>
inline void accumulate_planes(T* grad_input, int64_t planes, int64_t plane_size, int64_t work, const F& body) {
  using acc = opmath_t<T>;
  parallel_for_work(planes, work + plane_size, [&](int64_t p) {
    T* dst = grad_input + p * plane_size;
    if constexpr (std::is_same_v<acc, T>) {
      std::fill(dst, dst + plane_size, T(0));
      body(p, dst);
    } else {
      std::vector<acc> buf(static_cast<size_t>(plane_size), acc(0));
      body(p, buf.data());
      for (int64_t i = 0; i < plane_size; ++i) dst[i] = static_cast<T>(buf[static_cast<size_t>(i)]);
    }
  });
}
}  // namespace detail

namespace cpu {

/// Backward of max_pool2d: grad_input [N, C, H, W] (contiguous, grad_output's dtype) is zero except that each
/// grad_output[n, c, oh, ow] is added at the flat position indices[n, c, oh, ow] (h * W + w) of its plane, so
/// overlapping windows that share a maximum accumulate. grad_output and indices (int64) may have any strides.
inline void max_pool2d_backward(const Tensor& grad_output, const Tensor& indices, const Tensor& grad_input) {
  const int64_t N = grad_input.size(0), C = grad_input.size(1), H = grad_input.size(2), W = grad_input.size(3);
  const int64_t OH = grad_output.size(2), OW = grad_output.size(3);
  const torchlet::detail::PlaneLayout G = torchlet::detail::plane_layout(grad_output);
  const torchlet::detail::PlaneLayout I = torchlet::detail::plane_layout(indices);
  const int64_t* ix = static_cast<const int64_t*>(indices.data_ptr());
  torchlet::detail::dispatch_floating(grad_input.dtype(), "max_pool2d_backward", [&]<class T>() {
    using acc = torchlet::detail::opmath_t<T>;
    const T* go = static_cast<const T*>(grad_output.data_ptr());
    torchlet::detail::accumulate_planes<T>(
        static_cast<T*>(grad_input.data_ptr()), N * C, H * W, OH * OW, [&](int64_t p, acc* gin) {
          const T* src = go + G.offset(p);
          const int64_t* idx = ix + I.offset(p);
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
              // indices come from the forward kernel, always within the plane
              gin[idx[oh * I.sH + ow * I.sW]] += static_cast<acc>(src[oh * G.sH + ow * G.sW]);
            }
        });
  });
}

/// Backward of avg_pool2d with the forward's geometry and divisor rules: each grad_output[n, c, oh, ow] divided by
/// its window's divisor (divisor_override, else the window clipped to the padded input with count_include_pad, or
/// to the input itself) is added to every input element of the window clipped to the input. grad_input
/// [N, C, H, W] is contiguous with grad_output's (floating) dtype; grad_output has any strides.
inline void avg_pool2d_backward(const Tensor& grad_output, const Pool2dGeometry& g, bool count_include_pad,
                                std::optional<int64_t> divisor_override, const Tensor& grad_input) {
  const int64_t N = grad_input.size(0), C = grad_input.size(1), H = grad_input.size(2), W = grad_input.size(3);
  const int64_t OH = g.out_h, OW = g.out_w;
  const torchlet::detail::PlaneLayout G = torchlet::detail::plane_layout(grad_output);
  torchlet::detail::dispatch_floating(grad_input.dtype(), "avg_pool2d_backward", [&]<class T>() {
    using acc = torchlet::detail::opmath_t<T>;
    const T* go = static_cast<const T*>(grad_output.data_ptr());
    torchlet::detail::accumulate_planes<T>(
        static_cast<T*>(grad_input.data_ptr()), N * C, H * W, OH * OW * g.kernel_h * g.kernel_w,
        [&](int64_t p, acc* gin) {
          const T* src = go + G.offset(p);
          for (int64_t oh = 0; oh < OH; ++oh) {
            const auto wh = torchlet::detail::avg_pool_window(oh, g.stride_h, g.pad_h, g.kernel_h, H);
            const int64_t h0 = wh.begin, h1 = wh.end, ph = wh.padded;
            for (int64_t ow = 0; ow < OW; ++ow) {
              const auto ww = torchlet::detail::avg_pool_window(ow, g.stride_w, g.pad_w, g.kernel_w, W);
              const int64_t w0 = ww.begin, w1 = ww.end, pool_size = ph * ww.padded;
              if (h0 >= h1 || w0 >= w1) continue;
              const int64_t divide = divisor_override ? *divisor_override
                                     : count_include_pad ? pool_size
                                                         : (h1 - h0) * (w1 - w0);
              const acc delta = static_cast<acc>(src[oh * G.sH + ow * G.sW]) / static_cast<acc>(divide);
              for (int64_t h = h0; h < h1; ++h)
                for (int64_t w = w0; w < w1; ++w) gin[h * W + w] += delta;
            }
          }
        });
  });
}

/// Backward of adaptive_avg_pool2d: each grad_output[n, c, oh, ow] divided by its window's height and width is
/// added to every element of the window [floor(oh H / OH), ceil((oh + 1) H / OH)) x (the same for columns).
/// grad_input [N, C, H, W] is contiguous with grad_output's (floating) dtype; grad_output has any strides.
inline void adaptive_avg_pool2d_backward(const Tensor& grad_output, const Tensor& grad_input) {
  const int64_t N = grad_input.size(0), C = grad_input.size(1), H = grad_input.size(2), W = grad_input.size(3);
  const int64_t OH = grad_output.size(2), OW = grad_output.size(3);
  const torchlet::detail::PlaneLayout G = torchlet::detail::plane_layout(grad_output);
  torchlet::detail::dispatch_floating(grad_input.dtype(), "adaptive_avg_pool2d_backward", [&]<class T>() {
    using acc = torchlet::detail::opmath_t<T>;
    const T* go = static_cast<const T*>(grad_output.data_ptr());
    const int64_t work = OH == 0 || OW == 0 ? 0 : OH * OW * (H / OH + 1) * (W / OW + 1);
    torchlet::detail::accumulate_planes<T>(
        static_cast<T*>(grad_input.data_ptr()), N * C, H * W, work, [&](int64_t p, acc* gin) {
          const T* src = go + G.offset(p);
          for (int64_t oh = 0; oh < OH; ++oh) {
            const int64_t h0 = adaptive_start(oh, OH, H), h1 = adaptive_end(oh, OH, H);
            for (int64_t ow = 0; ow < OW; ++ow) {
              const int64_t w0 = adaptive_start(ow, OW, W), w1 = adaptive_end(ow, OW, W);
              const acc delta = static_cast<acc>(src[oh * G.sH + ow * G.sW]) / static_cast<acc>(h1 - h0) /
                                static_cast<acc>(w1 - w0);
              for (int64_t h = h0; h < h1; ++h)
                for (int64_t w = w0; w < w1; ++w) gin[h * W + w] += delta;
            }
          }
        });
  });
}
}  // namespace cpu
}  // namespace torchlet
