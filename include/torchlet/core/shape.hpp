#pragma once
/// \file Shapes and strides (in elements), their printing, broadcasting and dimension wrapping.
#include <algorithm>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "torchlet/core/error.hpp"

namespace torchlet {

/// Sizes or strides of a tensor, one entry per dimension.
using Shape = std::vector<int64_t>;

/// "[2, 3, 4]", the form error messages use.
inline std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

namespace detail {
/// Streamable wrapper so shapes can go straight into error messages.
struct ShapeStr { const Shape& s; };
inline std::ostream& operator<<(std::ostream& os, ShapeStr p) { return os << shape_str(p.s); }
}  // namespace detail

/// Product of the sizes (1 for a 0-dim shape).
inline int64_t numel_of(const Shape& sizes) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  return n;
}

/// Row-major (C order) strides for `sizes`.
inline Shape contiguous_strides(const Shape& sizes) {
  Shape st(sizes.size());
  int64_t acc = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    st[i] = acc;
    acc *= sizes[i] > 1 ? sizes[i] : 1;
  }
  return st;
}

/// Turns a possibly negative dim into [0, ndim), or raises IndexError naming `op`.
inline int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t n = ndim == 0 ? 1 : ndim;  // a 0-dim tensor accepts dim 0 / -1 like PyTorch
  TORCHLET_CHECK(dim >= -n && dim < n, IndexError, "[", op, "] dimension out of range: expected in [", -n, ", ",
                 n - 1, "], got ", dim);
  return dim < 0 ? dim + n : dim;
}

/// The shape two broadcastable shapes broadcast to (numpy/PyTorch rules), or ShapeError naming `op`.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    TORCHLET_CHECK(da == db || da == 1 || db == 1, ShapeError, "[", op, "] shapes ", shape_str(a), " and ",
                   shape_str(b), " do not broadcast (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}
}  // namespace torchlet
