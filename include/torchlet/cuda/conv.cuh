#pragma once
/// \file conv2d on cuDNN: forward, backward data and backward filter for float32 / float64 / float16 / bfloat16
/// tensors, all contiguous NCHW or all channels-last (NHWC, Conv2dShape::channels_last), with groups, stride,
/// padding and dilation. 16-bit tensors run as they are with float32 compute (tensor cores). The algorithm of each (direction, shape, dtype, math) is
/// chosen once by cuDNN's benchmark (cudnnFind*, like torch.backends.cudnn.benchmark) and cached; workspaces come
/// from the caching allocator. float32 may use TF32 unless cudnn_allow_tf32() is false (PyTorch's
/// torch.backends.cudnn.allow_tf32, on by default). Compiled by nvcc only.
#include <cudnn.h>

#include <map>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "torchlet/backend/device_kernels.hpp"
#include "torchlet/cuda/allocator.cuh"
#include "torchlet/cuda/check.cuh"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::cuda {

/// Whether float32 convolutions may use TF32 tensor cores (torch.backends.cudnn.allow_tf32); true by default.
inline bool& cudnn_allow_tf32() {
  static bool on = true;
  return on;
}

/// The cuDNN handle of (device, stream), made on first use and kept for the process's life.
inline cudnnHandle_t cudnn_handle(int device, cudaStream_t stream) {
  static std::mutex mutex;
  static auto* handles = new std::map<std::pair<int, cudaStream_t>, cudnnHandle_t>();
  std::lock_guard<std::mutex> lock(mutex);
  auto it = handles->find({device, stream});
  if (it != handles->end()) return it->second;
  DeviceGuard guard(device);
  cudnnHandle_t h = nullptr;
  TORCHLET_CUDNN_CHECK(cudnnCreate(&h));
  TORCHLET_CUDNN_CHECK(cudnnSetStream(h, stream));
  handles->emplace(std::make_pair(device, stream), h);
  return h;
}

namespace detail {
/// cuDNN's data type of a floating dtype.
inline cudnnDataType_t cudnn_data_type(DType t) {
  switch (t) {
    case DType::Float64: return CUDNN_DATA_DOUBLE;
    case DType::Float16: return CUDNN_DATA_HALF;
    case DType::BFloat16: return CUDNN_DATA_BFLOAT16;
    default: return CUDNN_DATA_FLOAT;
  }
}

/// The descriptors of one convolution, destroyed with it.
struct ConvDescriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;

  ConvDescriptors(const Conv2dShape& g, DType t) {
    const cudnnDataType_t dt = cudnn_data_type(t);
    // 16-bit data computes in float32; float32 and float64 in themselves
    const cudnnDataType_t compute = t == kFloat64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    const cudnnTensorFormat_t format = g.channels_last ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    TORCHLET_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    TORCHLET_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    TORCHLET_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    TORCHLET_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    TORCHLET_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, format, dt, int(g.batch), int(g.in_channels),
                                                    int(g.in_h), int(g.in_w)));
    TORCHLET_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, format, dt, int(g.batch), int(g.out_channels),
                                                    int(g.out_h), int(g.out_w)));
    TORCHLET_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, dt, format, int(g.out_channels),
                                                    int(g.in_channels / g.groups), int(g.kernel_h),
                                                    int(g.kernel_w)));
    TORCHLET_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, int(g.pad_h), int(g.pad_w), int(g.stride_h),
                                                         int(g.stride_w), int(g.dilation_h), int(g.dilation_w),
                                                         CUDNN_CROSS_CORRELATION, compute));
    TORCHLET_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, int(g.groups)));
    const bool tensor_ops = (t == kFloat32 && cudnn_allow_tf32()) || t == kFloat16 || t == kBFloat16;
    TORCHLET_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, tensor_ops ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
  }
  ~ConvDescriptors() {
    cudnnDestroyConvolutionDescriptor(conv);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(x);
  }
  ConvDescriptors(const ConvDescriptors&) = delete;
  ConvDescriptors& operator=(const ConvDescriptors&) = delete;
};

/// Which pass an algorithm is for.
enum class ConvPass { Forward, BackwardData, BackwardFilter };

/// The cache key of an algorithm choice.
using ConvKey = std::tuple<int, int, int, bool, bool, std::vector<int64_t>>;

inline ConvKey conv_key(ConvPass pass, const Conv2dShape& g, DType t, int device) {
  return {static_cast<int>(pass), static_cast<int>(t), device, t == kFloat32 && cudnn_allow_tf32(), g.channels_last,
          std::vector<int64_t>{g.batch, g.in_channels, g.in_h, g.in_w, g.out_channels, g.kernel_h, g.kernel_w,
                               g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dilation_h, g.dilation_w, g.groups}};
}

/// The chosen algorithm (as an int) and its workspace size.
struct ConvChoice {
  int algo = 0;
  size_t workspace = 0;
};

inline std::map<ConvKey, ConvChoice>& conv_cache() {
  static auto* cache = new std::map<ConvKey, ConvChoice>();
  return *cache;
}
inline std::mutex& conv_cache_mutex() {
  static std::mutex m;
  return m;
}

/// Device memory of `n` bytes from the caching allocator (a tensor keeps it alive).
inline Tensor workspace(size_t n, Device device) {
  return empty({static_cast<int64_t>(std::max<size_t>(n, 1))}, TensorOptions(kUInt8, device));
}

/// The first successful result of a cudnnFind* call.
template <class Perf>
ConvChoice first_ok(const Perf* perf, int count, const char* what) {
  for (int i = 0; i < count; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS) return {static_cast<int>(perf[i].algo), perf[i].memory};
  TORCHLET_THROW(DeviceError, "[conv2d] cuDNN found no ", what, " algorithm for this convolution");
}

/// The algorithm of `pass` for this convolution, benchmarked once per key.
inline ConvChoice choose(ConvPass pass, const Conv2dShape& g, DType t, int device, cudnnHandle_t h,
                         const ConvDescriptors& d) {
  const ConvKey key = conv_key(pass, g, t, device);
  {
    std::lock_guard<std::mutex> lock(conv_cache_mutex());
    auto it = conv_cache().find(key);
    if (it != conv_cache().end()) return it->second;
  }
  constexpr int kMax = 16;
  int found = 0;
  ConvChoice c;
  if (pass == ConvPass::Forward) {
    cudnnConvolutionFwdAlgoPerf_t perf[kMax];
    TORCHLET_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(h, d.x, d.w, d.conv, d.y, kMax, &found, perf));
    c = first_ok(perf, found, "forward");
  } else if (pass == ConvPass::BackwardData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[kMax];
    TORCHLET_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(h, d.w, d.y, d.conv, d.x, kMax, &found, perf));
    c = first_ok(perf, found, "backward data");
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[kMax];
    TORCHLET_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(h, d.x, d.y, d.conv, d.w, kMax, &found, perf));
    c = first_ok(perf, found, "backward filter");
  }
  std::lock_guard<std::mutex> lock(conv_cache_mutex());
  conv_cache()[key] = c;
  return c;
}

inline void check_conv_dtype(DType t) {
  TORCHLET_CHECK(t == kFloat32 || t == kFloat64 || t == kFloat16 || t == kBFloat16, DTypeError,
                 "[conv2d] the cuda backend convolves float32, float64, float16 and bfloat16, got ", t);
}

/// What every cuDNN call of one convolution needs: the dtype checked, its device made current, the cuDNN handle
/// on the device's current stream, the descriptors, and the scaling factors 1 and 0 in the type cuDNN reads for
/// the dtype (double for float64, float otherwise, 16-bit included).
struct ConvContext {
  ConvContext(const Conv2dShape& shape, const Tensor& like)
      : g(shape), dtype((check_conv_dtype(like.dtype()), like.dtype())), device(like.device()),
        guard(device.index), h(cudnn_handle(device.index, current_stream(device.index))), d(shape, dtype) {}
  const void* one() const { return dtype == kFloat64 ? static_cast<const void*>(&one_d) : &one_f; }
  const void* zero() const { return dtype == kFloat64 ? static_cast<const void*>(&zero_d) : &zero_f; }

  const Conv2dShape& g;
  const DType dtype;
  const Device device;
  DeviceGuard guard;
  cudnnHandle_t h;
  const ConvDescriptors d;
  const double one_d = 1, zero_d = 0;
  const float one_f = 1, zero_f = 0;
};

/// The algorithm of one pass (benchmarked once per shape) and its workspace, allocated for the call.
struct ConvAlgorithm {
  ConvAlgorithm(ConvPass pass, const ConvContext& c)
      : choice(choose(pass, c.g, c.dtype, c.device.index, c.h, c.d)), buffer(workspace(choice.workspace, c.device)) {}
  const ConvChoice choice;
  const Tensor buffer;  ///< choice.workspace bytes on the device
};

/// A [1, C, 1, 1] tensor descriptor (a per-channel bias), destroyed with the object.
struct ChannelDescriptor {
  ChannelDescriptor(int64_t channels, DType t) {
    TORCHLET_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc));
    const cudnnStatus_t s = cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, cudnn_data_type(t), 1,
                                                       int(channels), 1, 1);
    if (s != CUDNN_STATUS_SUCCESS) cudnnDestroyTensorDescriptor(desc);
    TORCHLET_CUDNN_CHECK(s);
  }
  ~ChannelDescriptor() { cudnnDestroyTensorDescriptor(desc); }
  ChannelDescriptor(const ChannelDescriptor&) = delete;
  ChannelDescriptor& operator=(const ChannelDescriptor&) = delete;
  cudnnTensorDescriptor_t desc = nullptr;
};
}  // namespace detail

/// out [N, Cout, Ho, Wo] = conv2d(x [N, C, H, W], w) (+ bias [Cout] if defined); one dtype, x, w and out all
/// contiguous NCHW or all channels-last (g.channels_last).
inline void conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                           const Conv2dShape& g) {
  const detail::ConvContext c(g, x);
  const detail::ConvAlgorithm a(detail::ConvPass::Forward, c);
  TORCHLET_CUDNN_CHECK(cudnnConvolutionForward(c.h, c.one(), c.d.x, x.data_ptr(), c.d.w, w.data_ptr(), c.d.conv,
                                               static_cast<cudnnConvolutionFwdAlgo_t>(a.choice.algo),
                                               a.buffer.data_ptr(), a.choice.workspace, c.zero(), c.d.y,
                                               out.data_ptr()));
  if (bias.defined()) {
    const detail::ChannelDescriptor b(g.out_channels, c.dtype);
    TORCHLET_CUDNN_CHECK(cudnnAddTensor(c.h, c.one(), b.desc, bias.data_ptr(), c.one(), c.d.y, out.data_ptr()));
  }
}

/// grad_in [N, C, H, W] = the input gradient of conv2d for grad_out and w (all NCHW or all channels-last).
inline void conv2d_backward_input(const Tensor& grad_in, const Tensor& grad_out, const Tensor& w,
                                  const Conv2dShape& g) {
  const detail::ConvContext c(g, w);
  const detail::ConvAlgorithm a(detail::ConvPass::BackwardData, c);
  TORCHLET_CUDNN_CHECK(cudnnConvolutionBackwardData(c.h, c.one(), c.d.w, w.data_ptr(), c.d.y, grad_out.data_ptr(),
                                                    c.d.conv, static_cast<cudnnConvolutionBwdDataAlgo_t>(a.choice.algo),
                                                    a.buffer.data_ptr(), a.choice.workspace, c.zero(), c.d.x,
                                                    grad_in.data_ptr()));
}

/// grad_w [Cout, C/groups, kh, kw] = the weight gradient of conv2d for grad_out and x (all NCHW or all
/// channels-last).
inline void conv2d_backward_weight(const Tensor& grad_w, const Tensor& grad_out, const Tensor& x,
                                   const Conv2dShape& g) {
  const detail::ConvContext c(g, x);
  const detail::ConvAlgorithm a(detail::ConvPass::BackwardFilter, c);
  TORCHLET_CUDNN_CHECK(cudnnConvolutionBackwardFilter(c.h, c.one(), c.d.x, x.data_ptr(), c.d.y, grad_out.data_ptr(),
                                                      c.d.conv,
                                                      static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.choice.algo),
                                                      a.buffer.data_ptr(), a.choice.workspace, c.zero(), c.d.w,
                                                      grad_w.data_ptr()));
}

/// grad_b [Cout] = grad_out [N, Cout, Ho, Wo] summed over N, Ho and Wo (cudnnConvolutionBackwardBias).
inline void conv2d_backward_bias(const Tensor& grad_b, const Tensor& grad_out, const Conv2dShape& g) {
  const detail::ConvContext c(g, grad_out);
  const detail::ChannelDescriptor b(g.out_channels, c.dtype);
  TORCHLET_CUDNN_CHECK(cudnnConvolutionBackwardBias(c.h, c.one(), c.d.y, grad_out.data_ptr(), c.zero(), b.desc,
                                                    grad_b.data_ptr()));
}
}  // namespace torchlet::cuda
