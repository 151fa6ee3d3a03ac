#pragma once
/// \file CUDA graphs, like torch.cuda.CUDAGraph: the kernels a piece of code queues are recorded once and replayed
/// with one launch, which removes the host's per-kernel cost (the larger part of a batch-1 step).
///
///     cuda::Graph graph;
///     graph.capture([&] { out = model.forward(static_input); });   // after a warm-up run of the same code
///     static_input.copy_(next_batch);  graph.replay();              // out now holds the new result
///
/// The capture runs on a side stream (made the current stream for the capture and restored after) in relaxed
/// mode, and every block allocated during it comes from the graph's private pool in the caching allocator: blocks
/// freed during the capture may be reused by it, and the pool is kept, neither handed to other streams nor freed
/// by empty_cache(), until the Graph is destroyed or reset. Tensors made during the capture (outputs) keep their
/// addresses: each replay writes into them. What must not happen during a capture: host synchronisation (a copy
/// to the host, synchronize(), item()), the first run of a convolution shape (cuDNN's algorithm search) or any
/// other work that is not queued on the current stream; these raise DeviceError naming the call. Compiled by
/// nvcc only.
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <utility>

#include "torchlet/cuda/allocator.cuh"
#include "torchlet/cuda/blas.cuh"
#include "torchlet/cuda/check.cuh"
#include "torchlet/cuda/conv.cuh"

namespace torchlet::cuda {

namespace detail {
/// The stream captures on `device` run on (non-blocking, made once per device and kept, so that the cuBLAS and
/// cuDNN handles of (device, stream) are made once too).
inline cudaStream_t capture_stream(int device) {
  static std::mutex mutex;
  static cudaStream_t streams[kMaxDevices] = {};
  TORCHLET_CHECK(device >= 0 && device < kMaxDevices, DeviceError, "[cuda graph] device index ", device,
                 " out of range [0, ", kMaxDevices, ")");
  std::lock_guard<std::mutex> lock(mutex);
  if (!streams[device]) {
    DeviceGuard guard(device);
    TORCHLET_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[device], cudaStreamNonBlocking));
  }
  return streams[device];
}
}  // namespace detail

/// A captured sequence of CUDA work on one device, replayed with one launch (see the file comment).
class Graph {
 public:
  /// An empty graph for cuda:`device`.
  explicit Graph(int device = 0) : device_(device) {}
  ~Graph() {
    if (capturing_) abort_capture();
    reset_noexcept();
  }
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  /// Starts recording: waits for the device's queued work, makes the side stream current and routes its
  /// allocations to a new private pool. Raises when a capture is under way or a graph is held (reset() first).
  void capture_begin() {
    TORCHLET_CHECK(!capturing_, DeviceError, "[cuda graph] capture_begin: a capture is already under way");
    TORCHLET_CHECK(!exec_, DeviceError,
                   "[cuda graph] capture_begin: this graph holds a capture already; reset() it first");
    DeviceGuard guard(device_);
    const cudaStream_t side = detail::capture_stream(device_);
    // handles are made before the capture: their creation may allocate and synchronise
    (void)cublas_handle(device_, side);
    (void)cudnn_handle(device_, side);
    TORCHLET_CUDA_CHECK(cudaDeviceSynchronize());  // work queued before the capture is not part of it
    pool_ = caching_allocator().create_pool();
    previous_stream_ = current_stream(device_);
    set_current_stream(device_, side);
    caching_allocator().route_to_pool(device_, side, pool_);
    const cudaError_t e = cudaStreamBeginCapture(side, cudaStreamCaptureModeRelaxed);
    if (e != cudaSuccess) {
      caching_allocator().end_routing(device_, side);
      set_current_stream(device_, previous_stream_);
      TORCHLET_CUDA_CHECK(e);
    }
    capturing_ = true;
  }

  /// Stops recording, restores the previous stream and instantiates the graph. Raises DeviceError naming the
  /// call when the capture failed (e.g. was invalidated by a host synchronisation).
  void capture_end() {
    TORCHLET_CHECK(capturing_, DeviceError,
                   "[cuda graph] capture_end: no capture under way (call capture_begin first)");
    DeviceGuard guard(device_);
    const cudaStream_t side = detail::capture_stream(device_);
    cudaGraph_t graph = nullptr;
    const cudaError_t e = cudaStreamEndCapture(side, &graph);
    finish_capture();
    if (e != cudaSuccess) {
      if (graph) (void)cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      TORCHLET_THROW(DeviceError, "[cuda graph] cudaStreamEndCapture failed: ", cudaGetErrorString(e), " (",
                     cudaGetErrorName(e), "); the capture was invalidated, e.g. by a host synchronisation or by work "
                     "on a stream that is not the capture's");
    }
    graph_ = graph;
    TORCHLET_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
  }

  /// Records what `f` queues: capture_begin(), f(), capture_end(); an exception from `f` ends the capture
  /// (dropping what was recorded) and propagates.
  template <class F>
  void capture(F&& f) {
    capture_begin();
    try {
      std::forward<F>(f)();
    } catch (...) {
      abort_capture();
      throw;
    }
    capture_end();
  }

  /// Launches the recorded work on the current stream of the graph's device (asynchronously, like any kernel).
  void replay() {
    TORCHLET_CHECK(exec_, DeviceError,
                   "[cuda graph] replay: nothing captured (call capture or capture_begin/end first)");
    DeviceGuard guard(device_);
    TORCHLET_CUDA_CHECK(cudaGraphLaunch(exec_, current_stream(device_)));
  }

  /// Drops the recorded graph and its private pool (after the device's queued work), so that it can capture anew.
  void reset() {
    TORCHLET_CHECK(!capturing_, DeviceError, "[cuda graph] reset: a capture is under way (call capture_end first)");
    reset_noexcept();
  }

  /// Whether a graph has been captured and can be replayed.
  bool captured() const { return exec_ != nullptr; }
  /// The id of the private pool in the caching allocator (0 before the first capture).
  uint64_t pool() const { return pool_; }
  /// The graph's device index.
  int device() const { return device_; }

 private:
  // ends the allocator routing and restores the stream that was current before capture_begin
  void finish_capture() {
    caching_allocator().end_routing(device_, detail::capture_stream(device_));
    set_current_stream(device_, previous_stream_);
    capturing_ = false;
  }
  // ends a failed capture, dropping what it recorded (never raises)
  void abort_capture() {
    DeviceGuard guard(device_);
    cudaGraph_t graph = nullptr;
    (void)cudaStreamEndCapture(detail::capture_stream(device_), &graph);
    if (graph) (void)cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    finish_capture();
  }
  void reset_noexcept() {
    int previous = 0;
    const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != device_ &&
                          cudaSetDevice(device_) == cudaSuccess;
    if (exec_ || graph_ || pool_) (void)cudaDeviceSynchronize();  // replays may still use the pool's blocks
    if (exec_) (void)cudaGraphExecDestroy(exec_);
    if (graph_) (void)cudaGraphDestroy(graph_);
    exec_ = nullptr;
    graph_ = nullptr;
    if (pool_) {
      try {
        caching_allocator().drop_pool(pool_);
      } catch (...) {
      }
      pool_ = 0;
    }
    (void)cudaGetLastError();
    if (switched) (void)cudaSetDevice(previous);
  }

  int device_;
  bool capturing_ = false;
  cudaStream_t previous_stream_ = nullptr;
  uint64_t pool_ = 0;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};
}  // namespace torchlet::cuda
