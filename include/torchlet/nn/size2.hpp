#pragma once
/// \file Size2: a (height, width) option given as one int for both, or as a pair, like PyTorch's `_pair`.
#include <cstdint>
#include <string>

#include "torchlet/core/shape.hpp"

namespace torchlet::nn {

/// A (height, width) pair for kernel sizes, strides, paddings; `3` means {3, 3}. Remembers whether it was given
/// as one value, because some of PyTorch's printed forms (MaxPool2d, AvgPool2d) keep the value as given.
struct Size2 {
  int64_t h = 0;       ///< height (first) value
  int64_t w = 0;       ///< width (second) value
  bool single = true;  ///< made from one value
  /// The same value for both dims (implicit, so `.stride = 2` works).
  constexpr Size2(int64_t v) : h(v), w(v), single(true) {}  // NOLINT(google-explicit-constructor)
  /// Separate values, e.g. `.kernel_size = {3, 1}`.
  constexpr Size2(int64_t height, int64_t width) : h(height), w(width), single(false) {}
  /// {h, w} as a Shape (what the functional ops take).
  Shape shape() const { return {h, w}; }
  /// True when both values equal `v`.
  constexpr bool all(int64_t v) const { return h == v && w == v; }
  /// Equal values (however they were given).
  friend constexpr bool operator==(const Size2& a, const Size2& b) { return a.h == b.h && a.w == b.w; }
  /// Python's tuple form "(h, w)".
  std::string tuple_str() const { return "(" + std::to_string(h) + ", " + std::to_string(w) + ")"; }
  /// As PyTorch prints an option kept as given: "3" when made from one value, else "(h, w)".
  std::string as_given_str() const { return single ? std::to_string(h) : tuple_str(); }
};
}  // namespace torchlet::nn
