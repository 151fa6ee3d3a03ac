#pragma once
/// \file The autocast state (torch.autocast): per thread and per device type, whether mixed precision is on and
/// in which 16-bit dtype. The `Autocast` scope sets it; the ops read it through ops/autocast.hpp.
#include "torchlet/core/device.hpp"
#include "torchlet/core/dtype.hpp"
#include "torchlet/core/error.hpp"

namespace torchlet {
namespace detail {
/// This thread's autocast settings; `paused` counts autocast ops running on inputs they have already cast, and
/// backward passes (whose ops run in the dtypes the forward chose, as in PyTorch).
struct AutocastState {
  bool enabled[2] = {false, false};       ///< per DeviceType
  DType dtype[2] = {kBFloat16, kFloat16};  ///< per DeviceType: PyTorch's defaults (CPU bfloat16, CUDA float16)
  int paused = 0;
};
inline AutocastState& autocast_state() {
  thread_local AutocastState state;
  return state;
}
/// Autocast is off while one of these lives (an autocast op running on its cast inputs; a backward pass).
struct AutocastPause {
  AutocastPause() { ++autocast_state().paused; }
  ~AutocastPause() { --autocast_state().paused; }
  AutocastPause(const AutocastPause&) = delete;
  AutocastPause& operator=(const AutocastPause&) = delete;
};
}  // namespace detail

/// `with torch.autocast(device_type, dtype)` as a scope: until destroyed, on this thread, the ops PyTorch runs in
/// lower precision (conv2d, linear, matmul, mm, bmm, addmm) cast their floating inputs of devices of type `type`
/// to `dtype` (bfloat16 or float16), and the ops it runs in float32 (softmax, log_softmax, cross_entropy,
/// nll_loss, mse_loss) cast 16-bit inputs to float32. Parameters stay float32 (master weights; their gradients
/// come back through the casts in float32) and batch norm keeps float32 statistics. `enabled = false` turns it
/// off inside an enclosing scope. Scopes nest and restore what was before.
class Autocast {
 public:
  explicit Autocast(DeviceType type, DType dtype = kBFloat16, bool enabled = true)
      : type_(type),
        was_enabled_(detail::autocast_state().enabled[static_cast<int>(type)]),
        was_dtype_(detail::autocast_state().dtype[static_cast<int>(type)]) {
    TORCHLET_CHECK(dtype == kBFloat16 || dtype == kFloat16, DTypeError, "[autocast] expected bfloat16 or float16, got ",
                   dtype);
    detail::autocast_state().enabled[static_cast<int>(type)] = enabled;
    detail::autocast_state().dtype[static_cast<int>(type)] = dtype;
  }
  ~Autocast() {
    detail::autocast_state().enabled[static_cast<int>(type_)] = was_enabled_;
    detail::autocast_state().dtype[static_cast<int>(type_)] = was_dtype_;
  }
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  DeviceType type_;
  bool was_enabled_;
  DType was_dtype_;
};

/// True when an Autocast scope is on for devices of type `type` on this thread (torch.is_autocast_enabled).
inline bool is_autocast_enabled(DeviceType type) { return detail::autocast_state().enabled[static_cast<int>(type)]; }
/// The 16-bit dtype autocast casts to for devices of type `type` (torch.get_autocast_gpu_dtype and friends).
inline DType autocast_dtype(DeviceType type) { return detail::autocast_state().dtype[static_cast<int>(type)]; }
}  // namespace torchlet
