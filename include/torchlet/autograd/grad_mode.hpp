#pragma once
/// \file Grad mode: whether operations record the autograd graph on this thread (`torch.no_grad()`).
/// Self-contained, so that tensor.hpp can include it first.
namespace torchlet {
namespace detail {
/// Whether operations record the autograd graph on this thread.
inline bool& grad_mode_enabled() {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace detail

namespace autograd {

/// True when operations record the graph on this thread (the default).
inline bool is_grad_enabled() { return detail::grad_mode_enabled(); }
/// Turns recording on or off for this thread.
inline void set_grad_enabled(bool enabled) { detail::grad_mode_enabled() = enabled; }

/// Disables recording for its lifetime, like `with torch.no_grad():`; restores the previous mode.
class NoGradGuard {
 public:
  NoGradGuard() : previous_(is_grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

/// Enables recording for its lifetime, like `with torch.enable_grad():`.
class EnableGradGuard {
 public:
  EnableGradGuard() : previous_(is_grad_enabled()) { set_grad_enabled(true); }
  ~EnableGradGuard() { set_grad_enabled(previous_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};
}  // namespace autograd
}  // namespace torchlet
