#pragma once
/// \file Elementwise arithmetic with broadcasting and PyTorch's type promotion: add, sub, mul, div, neg,
/// abs, exp, log, sqrt, pow, clamp, relu, maximum/minimum, comparisons and where; operators + - * /.
#include <cmath>
#include <optional>
#include <string_view>

#include "torchlet/autograd/node.hpp"
#include "torchlet/backend/cpu/elementwise.hpp"
#include "torchlet/ops/autograd_support.hpp"
#include "torchlet/tensor/dispatch.hpp"
#include "torchlet/tensor/factory.hpp"

namespace torchlet {

namespace detail {
enum class Category { Bool, Integral, Floating };
inline Category category(DType t) {
  return t == kBool ? Category::Bool : is_floating_point(t) ? Category::Floating : Category::Integral;
}
// PyTorch's combine_categories: the higher-priority operand keeps its dtype unless the lower one is of a
// higher category (bool < integer < floating), in which case the two are promoted.
inline DType combine_categories(DType higher, DType lower) {
  if (is_floating_point(higher)) return higher;
  if (higher == kBool || is_floating_point(lower)) return promote_types(higher, lower);
  return higher;
}
}  // namespace detail

/// The dtype of `a op b` by PyTorch's rules: tensors with dims outrank 0-dim tensors, which outrank scalars,
/// unless the lower-ranked operand is of a higher category (e.g. int64 tensor + 0-dim float64 -> float64).
inline DType result_type(const Tensor& a, const Tensor& b) {
  if ((a.dim() == 0) == (b.dim() == 0)) return promote_types(a.dtype(), b.dtype());
  return a.dim() > 0 ? detail::combine_categories(a.dtype(), b.dtype())
                     : detail::combine_categories(b.dtype(), a.dtype());
}
/// The dtype of `t op s` for a tensor and a C++ number (which acts like a Python scalar).
inline DType result_type(const Tensor& t, const Scalar& s) {
  return detail::combine_categories(t.dtype(), s.default_dtype());
}

namespace detail {
// The operands converted to `compute` and broadcast to a common shape (views, no copy when the dtype fits).
// `device` is where the op computes (see op_device); 0-dim CPU operands of a device op are moved there.
struct Broadcast2 {
  Tensor a, b;
  Shape shape;
  Device device;
};
inline Broadcast2 broadcast_pair(const char* op, const Tensor& a, const Tensor& b, DType compute) {
  const Device dev = op_device(op, a, b);
  Shape shape = broadcast_shapes(a.sizes(), b.sizes(), op);
  if (dev.is_cpu()) return {a.to(compute).expand(shape), b.to(compute).expand(shape), shape, dev};
  return {on_device(a, dev).to(compute).expand(shape), on_device(b, dev).to(compute).expand(shape), shape, dev};
}

// The layout of an elementwise result of `shape`: that of the first operand of that very shape (an operand that is
// broadcast does not decide), as PyTorch's TensorIterator follows its inputs; C order otherwise.
inline MemoryFormat result_format(const Shape& shape, const Tensor& a, const Tensor& b = Tensor()) {
  for (const Tensor* t : {&a, &b})
    if (t->defined() && t->sizes() == shape) return t->suggest_memory_format();
  return MemoryFormat::Contiguous;
}

// out = f(a, b) computed in opmath of `compute`; the result has dtype `compute`, or bool when `to_bool`.
// Off the CPU, the device computes `kind` (with `alpha` for Add / Sub) instead of f.
template <class F>
Tensor binary_op(const char* op, BinaryOp kind, const Tensor& a, const Tensor& b, DType compute, bool to_bool,
                 const F& f, const Scalar& alpha = 1) {
  autograd::NoGradGuard untracked;  // callers record the op as a whole
  auto in = broadcast_pair(op, a, b, compute);
  Tensor out = empty(in.shape, TensorOptions(to_bool ? kBool : compute, in.device), result_format(in.shape, a, b));
  if (!in.device.is_cpu()) {
    if (out.numel() > 0) device_kernels(in.device, op).binary(kind, out, in.a, in.b, alpha);
    return out;
  }
  dispatch_all(compute, op, [&]<class T>() {
    using M = opmath_t<T>;
    if (to_bool) cpu::map_elements<bool, T, T>(out, [&f](T x, T y) { return static_cast<bool>(f(M(x), M(y))); }, in.a, in.b);
    else cpu::map_elements<T, T, T>(out, [&f](T x, T y) { return convert<T>(f(M(x), M(y))); }, in.a, in.b);
  });
  return out;
}

// out = f(x, s) for a tensor and a scalar, computed in opmath of `compute` (off the CPU: `kind`).
template <class F>
Tensor scalar_op(const char* op, BinaryOp kind, const Tensor& t, const Scalar& s, DType compute, bool to_bool,
                 const F& f) {
  autograd::NoGradGuard untracked;  // callers record the op as a whole
  const Tensor x = t.to(compute);
  Tensor out = empty(t.sizes(), TensorOptions(to_bool ? kBool : compute, t.device()), result_format(t.sizes(), t));
  if (!t.is_cpu()) {
    if (out.numel() > 0) device_kernels(t.device(), op).binary_scalar(kind, out, x, s);
    return out;
  }
  dispatch_all(compute, op, [&]<class T>() {
    using M = opmath_t<T>;
    const M v = static_cast<M>(s.to<T>());  // the number is first cast to the result dtype, as PyTorch does
    if (to_bool) cpu::map_elements<bool, T>(out, [&f, v](T x) { return static_cast<bool>(f(M(x), v)); }, x);
    else cpu::map_elements<T, T>(out, [&f, v](T x) { return convert<T>(f(M(x), v)); }, x);
  });
  return out;
}

// out = f(x) elementwise, computed in opmath of `compute` (the input is converted first; off the CPU: `kind`).
template <class F>
Tensor unary_op(const char* op, UnaryOp kind, const Tensor& t, DType compute, const F& f) {
  autograd::NoGradGuard untracked;  // callers record the op as a whole
  const Tensor x = t.to(compute);
  Tensor out = empty(t.sizes(), TensorOptions(compute, t.device()), result_format(t.sizes(), t));
  if (!t.is_cpu()) {
    if (out.numel() > 0) device_kernels(t.device(), op).unary(kind, out, x);
    return out;
  }
  dispatch_all(compute, op, [&]<class T>() {
    using M = opmath_t<T>;
    cpu::map_elements<T, T>(out, [&f](T v) { return convert<T>(f(M(v))); }, x);
  });
  return out;
}

// PyTorch's canCast: no floating -> integral, no non-bool -> bool.
inline void check_can_cast(const char* op, DType from, DType to) {
  const bool ok = !(is_floating_point(from) && !is_floating_point(to)) && !(from != kBool && to == kBool);
  TORCHLET_CHECK(ok, DTypeError, "[", op, "] result type ", from, " can't be cast to the desired output type ", to);
}

// Records `out = op(inputs)` with backward `fn` when any input requires grad; returns out.
inline Tensor recorded(const char* op, const autograd::TensorList& inputs, Tensor out, autograd::BackwardFn fn) {
  bool any = false;
  for (const Tensor& t : inputs) any = any || autograd::any_requires_grad({t});
  if (any) autograd::record(op, inputs, {out}, std::move(fn));
  return out;
}
using autograd::SavedTensor;
using autograd::TensorList;
using Needs = std::vector<bool>;

// Writes `result` (already computed) into `self` in place; `result` must broadcast to self's shape.
inline Tensor& assign_inplace(const char* op, Tensor& self, const Tensor& result) {
  check_can_cast(op, result.dtype(), self.dtype());
  TORCHLET_CHECK(broadcast_shapes(self.sizes(), result.sizes(), op) == self.sizes(), ShapeError, "[", op,
                 "] output with shape ", shape_str(self.sizes()), " doesn't match the broadcast shape ",
                 shape_str(broadcast_shapes(self.sizes(), result.sizes(), op)));
  return self.copy_(result);
}

// An integer alpha for integer results, as PyTorch requires.
inline void check_alpha(const char* op, DType t, const Scalar& alpha) {
  TORCHLET_CHECK(is_floating_point(t) || !alpha.is_floating_point(), DTypeError, "[", op,
                 "] for integral input tensors, argument alpha must not be a floating point number");
  TORCHLET_CHECK(t != kBool || alpha.is_bool() || alpha.to<int64_t>() == 1, DTypeError, "[", op,
                 "] boolean alpha only supported for boolean results");
}

// The float dtype a math function of `t` returns: t's dtype if floating, else float32.
inline DType float_result(DType t) { return is_floating_point(t) ? t : kFloat32; }

template <class M>
inline M nan_max(M a, M b) { if constexpr (is_float_v<M>) { if (a != a) return a; if (b != b) return b; } return a > b ? a : b; }
template <class M>
inline M nan_min(M a, M b) { if constexpr (is_float_v<M>) { if (a != a) return a; if (b != b) return b; } return a < b ? a : b; }

// Integer power by squaring (wraps on overflow like PyTorch); 0^0 = 1.
template <class M>
inline M int_pow(M base, M exp) {
  M result = 1;
  while (exp > 0) {
    if (exp & 1) result = static_cast<M>(result * base);
    base = static_cast<M>(base * base);
    exp >>= 1;
  }
  return result;
}
}  // namespace detail

// declared here, defined below: backward formulas use them
Tensor mul(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& t, const Scalar& s);
Tensor div(const Tensor& a, const Tensor& b, std::string_view rounding_mode);
Tensor div(const Tensor& t, const Scalar& s, std::string_view rounding_mode);
Tensor neg(const Tensor& t);
Tensor pow(const Tensor& t, const Scalar& exponent);
Tensor log(const Tensor& t);
Tensor sub(const Tensor& t, const Scalar& s, const Scalar& alpha);
Tensor eq(const Tensor& a, const Scalar& s);
Tensor lt(const Tensor& a, const Scalar& s);
Tensor gt(const Tensor& a, const Scalar& s);
Tensor ge(const Tensor& a, const Scalar& s);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Scalar& b);
Tensor where(const Tensor& cond, const Scalar& a, const Tensor& b);

// ---- add / sub / mul / div -----------------------------------------------------------------------
/// a + alpha * b, broadcast and promoted.
inline Tensor add(const Tensor& a, const Tensor& b, const Scalar& alpha = 1) {
  const DType t = result_type(a, b);
  detail::check_alpha("add", t, alpha);
  Tensor out = alpha.to<double>() == 1
                   ? detail::binary_op("add", BinaryOp::Add, a, b, t, false, [](auto x, auto y) { return x + y; })
                   : detail::binary_op("add", BinaryOp::Add, a, b, t, false, [alpha](auto x, auto y) {
                       return x + alpha.to<decltype(y)>() * y;
                     }, alpha);
  return detail::recorded("add", {a, b}, out, [sa = a.sizes(), sb = b.sizes(), alpha](const detail::TensorList& g,
                                                                                      const detail::Needs& need) {
    return detail::TensorList{need[0] ? sum_to(g[0], sa) : Tensor(),
                              need[1] ? sum_to(alpha.to<double>() == 1 ? g[0] : mul(g[0], alpha), sb) : Tensor()};
  });
}
/// t + alpha * s.
inline Tensor add(const Tensor& t, const Scalar& s, const Scalar& alpha = 1) {
  const DType r = result_type(t, s);
  detail::check_alpha("add", r, alpha);
  const double prod = s.to<double>() * alpha.to<double>();
  const Scalar v = is_floating_point(r) ? Scalar(prod) : Scalar(s.to<int64_t>() * alpha.to<int64_t>());
  return detail::recorded("add", {t}, detail::scalar_op("add", BinaryOp::Add, t, v, r, false, [](auto x, auto y) { return x + y; }),
                          [](const detail::TensorList& g, const detail::Needs&) { return g; });
}
/// a - alpha * b.
inline Tensor sub(const Tensor& a, const Tensor& b, const Scalar& alpha = 1) {
  TORCHLET_CHECK(a.dtype() != kBool || b.dtype() != kBool, DTypeError,
                 "[sub] subtraction with two bool tensors is not supported; use logical_xor");
  const DType t = result_type(a, b);
  detail::check_alpha("sub", t, alpha);
  Tensor out = detail::binary_op("sub", BinaryOp::Sub, a, b, t, false, [alpha](auto x, auto y) {
    return x - alpha.to<decltype(y)>() * y;
  }, alpha);
  return detail::recorded("sub", {a, b}, out, [sa = a.sizes(), sb = b.sizes(), alpha](const detail::TensorList& g,
                                                                                      const detail::Needs& need) {
    return detail::TensorList{need[0] ? sum_to(g[0], sa) : Tensor(),
                              need[1] ? sum_to(mul(g[0], -alpha.to<double>()), sb) : Tensor()};
  });
}
/// t - alpha * s.
inline Tensor sub(const Tensor& t, const Scalar& s, const Scalar& alpha = 1) {
  const DType r = result_type(t, s);
  detail::check_alpha("sub", r, alpha);
  const Scalar v = is_floating_point(r) ? Scalar(s.to<double>() * alpha.to<double>())
                                        : Scalar(s.to<int64_t>() * alpha.to<int64_t>());
  return detail::recorded("sub", {t}, detail::scalar_op("sub", BinaryOp::Sub, t, v, r, false, [](auto x, auto y) { return x - y; }),
                          [](const detail::TensorList& g, const detail::Needs&) { return g; });
}
/// a * b.
inline Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = detail::binary_op("mul", BinaryOp::Mul, a, b, result_type(a, b), false, [](auto x, auto y) { return x * y; });
  return detail::recorded("mul", {a, b}, out,
                          [sa = detail::SavedTensor(a), sb = detail::SavedTensor(b)](const detail::TensorList& g,
                                                                                     const detail::Needs& need) {
                            const Tensor x = sa.get(), y = sb.get();
                            return detail::TensorList{need[0] ? sum_to(mul(g[0], y), x.sizes()) : Tensor(),
                                                      need[1] ? sum_to(mul(g[0], x), y.sizes()) : Tensor()};
                          });
}
/// t * s.
inline Tensor mul(const Tensor& t, const Scalar& s) {
  return detail::recorded("mul", {t}, detail::scalar_op("mul", BinaryOp::Mul, t, s, result_type(t, s), false,
                                                        [](auto x, auto y) { return x * y; }),
                          [s](const detail::TensorList& g, const detail::Needs&) {
                            return detail::TensorList{mul(g[0], s)};
                          });
}

namespace detail {
// Division of promoted operands; rounding_mode: "" (true division), "trunc" or "floor".
template <class M>
inline M divide(M x, M y, std::string_view mode) {
  if constexpr (is_float_v<M>) {
    const M q = x / y;
    if (mode == "trunc") return std::trunc(q);
    if (mode == "floor") {
      // Python's floor division: floor of the exact quotient, computed as PyTorch does via fmod
      if (y == 0) return q;
      const M mod = std::fmod(x, y);
      M div = (x - mod) / y;
      if (mod != 0 && ((y < 0) != (mod < 0))) div -= 1;
      if (div == 0) return std::copysign(M(0), q);
      const M floordiv = std::floor(div);
      return div - floordiv > M(0.5) ? floordiv + 1 : floordiv;
    }
    return q;
  } else {
    TORCHLET_CHECK(y != 0, ValueError, "[div] integer division by zero");
    if constexpr (std::is_same_v<M, bool>) {
      return x;
    } else {
      M q = static_cast<M>(x / y);
      if (mode == "floor" && (x % y != 0) && ((x < 0) != (y < 0))) --q;
      return q;
    }
  }
}
inline BinaryOp div_kind(std::string_view mode) {
  return mode == "trunc" ? BinaryOp::DivTrunc : mode == "floor" ? BinaryOp::DivFloor : BinaryOp::Div;
}
inline DType div_type(DType promoted, std::string_view mode) {
  TORCHLET_CHECK(mode.empty() || mode == "trunc" || mode == "floor", ValueError,
                 "[div] expected rounding_mode to be one of \"\", \"trunc\" or \"floor\", got \"", mode, "\"");
  return mode.empty() && !is_floating_point(promoted) ? kFloat32 : promoted;
}
}  // namespace detail

/// a / b: true division (integers give float32), or rounded with rounding_mode "trunc" or "floor".
inline Tensor div(const Tensor& a, const Tensor& b, std::string_view rounding_mode = "") {
  const DType t = detail::div_type(result_type(a, b), rounding_mode);
  Tensor out = detail::binary_op("div", detail::div_kind(rounding_mode), a, b, t, false, [rounding_mode](auto x, auto y) {
    return detail::divide(x, y, rounding_mode);
  });
  if (!rounding_mode.empty()) return out;  // piecewise constant: no gradient, like PyTorch's zero grad
  return detail::recorded("div", {a, b}, out,
                          [sa = detail::SavedTensor(a), sb = detail::SavedTensor(b)](const detail::TensorList& g,
                                                                                     const detail::Needs& need) {
                            const Tensor x = sa.get(), y = sb.get();
                            const Tensor ga = div(g[0], y);
                            return detail::TensorList{
                                need[0] ? sum_to(ga, x.sizes()) : Tensor(),
                                need[1] ? sum_to(neg(mul(ga, div(x, y))), y.sizes()) : Tensor()};
                          });
}
/// t / s, with the same rounding modes.
inline Tensor div(const Tensor& t, const Scalar& s, std::string_view rounding_mode = "") {
  const DType r = detail::div_type(result_type(t, s), rounding_mode);
  Tensor out = detail::scalar_op("div", detail::div_kind(rounding_mode), t, s, r, false, [rounding_mode](auto x, auto y) {
    return detail::divide(x, y, rounding_mode);
  });
  if (!rounding_mode.empty()) return out;
  return detail::recorded("div", {t}, out, [s](const detail::TensorList& g, const detail::Needs&) {
    return detail::TensorList{div(g[0], s)};
  });
}

// ---- in place --------------------------------------------------------------------------------------
/// self += alpha * other, in place (the result type must be castable to self's dtype).
inline Tensor& add_(Tensor& self, const Tensor& other, const Scalar& alpha = 1) {
  return detail::assign_inplace("add_", self, add(self, other, alpha));
}
/// self += alpha * s, in place.
inline Tensor& add_(Tensor& self, const Scalar& s, const Scalar& alpha = 1) {
  return detail::assign_inplace("add_", self, add(self, s, alpha));
}
/// self -= alpha * other, in place.
inline Tensor& sub_(Tensor& self, const Tensor& other, const Scalar& alpha = 1) {
  return detail::assign_inplace("sub_", self, sub(self, other, alpha));
}
/// self *= other, in place.
inline Tensor& mul_(Tensor& self, const Tensor& other) { return detail::assign_inplace("mul_", self, mul(self, other)); }
/// self *= s, in place.
inline Tensor& mul_(Tensor& self, const Scalar& s) { return detail::assign_inplace("mul_", self, mul(self, s)); }
/// self /= other, in place.
inline Tensor& div_(Tensor& self, const Tensor& other) { return detail::assign_inplace("div_", self, div(self, other)); }
/// self /= s, in place.
inline Tensor& div_(Tensor& self, const Scalar& s) { return detail::assign_inplace("div_", self, div(self, s)); }

// ---- unary -----------------------------------------------------------------------------------------
/// -t (not defined for bool, as in PyTorch).
inline Tensor neg(const Tensor& t) {
  TORCHLET_CHECK(t.dtype() != kBool, DTypeError,
                 "[neg] negation, the `-` operator, on a bool tensor is not supported; use logical_not");
  return detail::recorded("neg", {t}, detail::unary_op("neg", UnaryOp::Neg, t, t.dtype(), [](auto x) { return -x; }),
                          [](const detail::TensorList& g, const detail::Needs&) { return detail::TensorList{neg(g[0])}; });
}
/// |t|.
inline Tensor abs(const Tensor& t) {
  Tensor out = detail::unary_op("abs", UnaryOp::Abs, t, t.dtype(), [](auto x) {
    if constexpr (std::is_same_v<decltype(x), bool>) return x;
    else return x < 0 ? static_cast<decltype(x)>(-x) : x == 0 ? static_cast<decltype(x)>(0) : x;
  });
  return detail::recorded("abs", {t}, out, [st = detail::SavedTensor(t)](const detail::TensorList& g, const detail::Needs&) {
    const Tensor x = st.get();  // d|x|/dx = sign(x), 0 at 0
    return detail::TensorList{where(gt(x, 0), g[0], where(lt(x, 0), neg(g[0]), 0))};
  });
}
/// e^t (integer inputs give float32).
inline Tensor exp(const Tensor& t) {
  Tensor out = detail::unary_op("exp", UnaryOp::Exp, t, detail::float_result(t.dtype()), [](auto x) { return std::exp(x); });
  return detail::recorded("exp", {t}, out, [so = detail::SavedTensor(out)](const detail::TensorList& g, const detail::Needs&) {
    return detail::TensorList{mul(g[0], so.get())};
  });
}
/// Natural logarithm (negative -> nan, 0 -> -inf).
inline Tensor log(const Tensor& t) {
  Tensor out = detail::unary_op("log", UnaryOp::Log, t, detail::float_result(t.dtype()), [](auto x) { return std::log(x); });
  return detail::recorded("log", {t}, out, [st = detail::SavedTensor(t)](const detail::TensorList& g, const detail::Needs&) {
    return detail::TensorList{div(g[0], st.get())};
  });
}
/// Square root (negative -> nan).
inline Tensor sqrt(const Tensor& t) {
  Tensor out = detail::unary_op("sqrt", UnaryOp::Sqrt, t, detail::float_result(t.dtype()), [](auto x) { return std::sqrt(x); });
  return detail::recorded("sqrt", {t}, out, [so = detail::SavedTensor(out)](const detail::TensorList& g, const detail::Needs&) {
    return detail::TensorList{div(g[0], mul(so.get(), 2))};
  });
}
/// max(t, 0), keeping NaN.
inline Tensor relu(const Tensor& t) {
  TORCHLET_CHECK(t.dtype() != kBool, DTypeError, "[relu] not implemented for bool tensors");
  Tensor out = detail::unary_op("relu", UnaryOp::Relu, t, t.dtype(), [](auto x) {
    if constexpr (std::is_same_v<decltype(x), bool>) return x;  // not reached: refused above
    else return x < 0 ? static_cast<decltype(x)>(0) : x;
  });
  return detail::recorded("relu", {t}, out, [so = detail::SavedTensor(out)](const detail::TensorList& g, const detail::Needs&) {
    return detail::TensorList{where(gt(so.get(), 0), g[0], 0)};  // PyTorch's threshold_backward: 0 where out <= 0
  });
}
/// relu in place.
inline Tensor& relu_(Tensor& t) { return t.copy_(relu(t)); }

/// t ** exponent (a number): integer tensors with an integer exponent stay integers.
inline Tensor pow(const Tensor& t, const Scalar& exponent) {
  const DType r = result_type(t, exponent);
  if (!is_floating_point(r)) {
    TORCHLET_CHECK(exponent.to<int64_t>() >= 0, ValueError, "[pow] integers to negative integer powers are not allowed");
    return detail::scalar_op("pow", BinaryOp::Pow, t, exponent, r, false, [](auto x, auto e) {
      using M = decltype(x);
      if constexpr (std::is_same_v<M, bool>) return e == 0 ? true : x;
      else if constexpr (std::is_integral_v<M>) return detail::int_pow<M>(x, e);
      else return std::pow(x, e);  // not reached: r is integral here
    });
  }
  const double e = exponent.to<double>();
  Tensor out = e == 2     ? detail::scalar_op("pow", BinaryOp::Pow, t, exponent, r, false, [](auto x, auto) { return x * x; })
               : e == 0.5 ? detail::scalar_op("pow", BinaryOp::Pow, t, exponent, r, false, [](auto x, auto) { return std::sqrt(x); })
                          : detail::scalar_op("pow", BinaryOp::Pow, t, exponent, r, false, [](auto x, auto y) { return std::pow(x, y); });
  return detail::recorded("pow", {t}, out, [st = detail::SavedTensor(t), e](const detail::TensorList& g,
                                                                            const detail::Needs&) {
    if (e == 0) return detail::TensorList{mul(g[0], 0)};
    return detail::TensorList{mul(g[0], mul(pow(st.get(), e - 1), e))};
  });
}
/// base ** exponent elementwise, broadcast and promoted.
inline Tensor pow(const Tensor& base, const Tensor& exponent) {
  const DType r = result_type(base, exponent);
  Tensor out = detail::binary_op("pow", BinaryOp::Pow, base, exponent, r, false, [](auto x, auto y) {
    using M = decltype(x);
    if constexpr (std::is_same_v<M, bool>) return y ? x : true;
    else if constexpr (std::is_integral_v<M>) {
      TORCHLET_CHECK(y >= 0, ValueError, "[pow] integers to negative integer powers are not allowed");
      return detail::int_pow<M>(x, y);
    } else {
      return std::pow(x, y);
    }
  });
  return detail::recorded("pow", {base, exponent}, out,
                          [sb = detail::SavedTensor(base), se = detail::SavedTensor(exponent),
                           so = detail::SavedTensor(out)](const detail::TensorList& g, const detail::Needs& need) {
    const Tensor b = sb.get(), e = se.get();
    Tensor gb, ge;
    if (need[0]) gb = sum_to(mul(g[0], mul(e, pow(b, sub(e, 1)))), b.sizes());
    // d/de b^e = b^e log b, taken as 0 where b == 0 and e >= 0 (as PyTorch)
    if (need[1]) ge = sum_to(where(mul(eq(b, 0), torchlet::ge(e, 0)), 0, mul(g[0], mul(so.get(), log(b)))), e.sizes());
    return detail::TensorList{gb, ge};
  });
}

/// Limits t to [min, max] (either may be absent; NaN stays NaN; min > max gives max everywhere).
inline Tensor clamp(const Tensor& t, std::optional<Scalar> min, std::optional<Scalar> max = std::nullopt) {
  TORCHLET_CHECK(min || max, ValueError, "[clamp] at least one of 'min' or 'max' must not be None");
  DType r = t.dtype();
  if (min) r = detail::combine_categories(r, min->default_dtype());
  if (max) r = detail::combine_categories(r, max->default_dtype());
  TORCHLET_CHECK(r != kBool, DTypeError, "[clamp] not implemented for bool tensors");
  const Tensor x = t.detach().to(r);
  Tensor out = empty(t.sizes(), TensorOptions(r, t.device()));
  if (!t.is_cpu()) {
    if (out.numel() > 0) device_kernels(t.device(), "clamp").clamp(out, x, min, max);
  } else detail::dispatch_all(r, "clamp", [&]<class T>() {
    using M = detail::opmath_t<T>;
    const bool has_lo = min.has_value(), has_hi = max.has_value();
    const M lo = has_lo ? min->to<M>() : M(0), hi = has_hi ? max->to<M>() : M(0);
    cpu::map_elements<T, T>(out, [=](T in) {
      M v = static_cast<M>(in);
      if constexpr (detail::is_float_v<M>) if (v != v) return in;
      if (has_lo && v < lo) v = lo;
      if (has_hi && v > hi) v = hi;
      return detail::convert<T>(v);
    }, x);
  });
  return detail::recorded("clamp", {t}, out, [st = detail::SavedTensor(t), min, max](const detail::TensorList& g,
                                                                                    const detail::Needs&) {
    const Tensor x = st.get();  // the gradient passes where min <= x <= max
    Tensor pass = ones(x.sizes(), TensorOptions(kBool, x.device()));
    if (min) pass = where(lt(x, *min), false, pass);
    if (max) pass = where(gt(x, *max), false, pass);
    return detail::TensorList{where(pass, g[0], 0)};
  });
}

/// Elementwise maximum (NaN if either is NaN).
inline Tensor maximum(const Tensor& a, const Tensor& b);
/// Elementwise minimum (NaN if either is NaN).
inline Tensor minimum(const Tensor& a, const Tensor& b);

// ---- comparisons (bool results) --------------------------------------------------------------------
#define TORCHLET_COMPARISON(name, kind, expr)                                                                     \
  /** Elementwise a expr b as a bool tensor, broadcast and compared in the promoted dtype. */              \
  inline Tensor name(const Tensor& a, const Tensor& b) {                                                   \
    return detail::binary_op(#name, BinaryOp::kind, a, b, result_type(a, b), true, [](auto x, auto y) { return x expr y; }); \
  }                                                                                                         \
  /** Elementwise t expr s as a bool tensor. */                                                            \
  inline Tensor name(const Tensor& t, const Scalar& s) {                                                   \
    return detail::scalar_op(#name, BinaryOp::kind, t, s, result_type(t, s), true, [](auto x, auto y) { return x expr y; }); \
  }
TORCHLET_COMPARISON(eq, Eq, ==)
TORCHLET_COMPARISON(ne, Ne, !=)
TORCHLET_COMPARISON(lt, Lt, <)
TORCHLET_COMPARISON(le, Le, <=)
TORCHLET_COMPARISON(gt, Gt, >)
TORCHLET_COMPARISON(ge, Ge, >=)
#undef TORCHLET_COMPARISON

/// Elementwise `cond ? a : b`, all three broadcast together; cond must be bool.
inline Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  TORCHLET_CHECK(cond.dtype() == kBool, DTypeError, "[where] expected condition to be a bool tensor, got ", cond.dtype());
  const DType r = result_type(a, b);
  Tensor out;
  {
    autograd::NoGradGuard untracked;
    const Device dev = detail::op_device("where", cond, a, b);
    auto ab = detail::broadcast_pair("where", a, b, r);
    const Shape shape = broadcast_shapes(cond.sizes(), ab.shape, "where");
    out = empty(shape, TensorOptions(r, dev));
    if (!dev.is_cpu()) {
      if (out.numel() > 0)
        device_kernels(dev, "where").where(out, detail::on_device(cond, dev).expand(shape), ab.a.expand(shape),
                                           ab.b.expand(shape));
    } else detail::dispatch_all(r, "where", [&]<class T>() {
      cpu::map_elements<T, bool, T, T>(out, [](bool c, T x, T y) { return c ? x : y; }, cond.expand(shape),
                                       ab.a.expand(shape), ab.b.expand(shape));
    });
  }
  return detail::recorded("where", {a, b}, out, [c = detail::SavedTensor(cond), sa = a.sizes(), sb = b.sizes()](
                                                    const detail::TensorList& g, const detail::Needs& need) {
    const Tensor m = c.get();
    return detail::TensorList{need[0] ? sum_to(where(m, g[0], 0), sa) : Tensor(),
                              need[1] ? sum_to(where(m, 0, g[0]), sb) : Tensor()};
  });
}
/// where() with a number for the false branch.
inline Tensor where(const Tensor& cond, const Tensor& a, const Scalar& b) {
  return where(cond, a, scalar_tensor(b, result_type(a, b)));
}
/// where() with a number for the true branch.
inline Tensor where(const Tensor& cond, const Scalar& a, const Tensor& b) {
  return where(cond, scalar_tensor(a, result_type(b, a)), b);
}

namespace detail {
// maximum / minimum: the gradient goes to the chosen operand, split evenly on ties (as PyTorch).
template <class Pick>
Tensor extremum(const char* op, const Tensor& a, const Tensor& b, const Pick& pick, bool is_max) {
  Tensor out = binary_op(op, is_max ? BinaryOp::Maximum : BinaryOp::Minimum, a, b, result_type(a, b), false, pick);
  return recorded(op, {a, b}, out, [sa = SavedTensor(a), sb = SavedTensor(b), is_max](const TensorList& g,
                                                                                       const Needs& need) {
    const Tensor x = sa.get(), y = sb.get();
    const Tensor wins_a = is_max ? gt(x, y) : lt(x, y), tie = eq(x, y);
    const Tensor half = mul(g[0], 0.5);
    const Tensor ga = where(wins_a, g[0], where(tie, half, 0));
    const Tensor gb = where(wins_a, 0, where(tie, half, g[0]));
    return TensorList{need[0] ? sum_to(ga, x.sizes()) : Tensor(), need[1] ? sum_to(gb, y.sizes()) : Tensor()};
  });
}
}  // namespace detail

inline Tensor maximum(const Tensor& a, const Tensor& b) {
  return detail::extremum("maximum", a, b, [](auto x, auto y) { return detail::nan_max(x, y); }, true);
}
inline Tensor minimum(const Tensor& a, const Tensor& b) {
  return detail::extremum("minimum", a, b, [](auto x, auto y) { return detail::nan_min(x, y); }, false);
}

// ---- operators ---------------------------------------------------------------------------------------
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }   ///< add(a, b)
inline Tensor operator+(const Tensor& a, const Scalar& s) { return add(a, s); }   ///< add(a, s)
inline Tensor operator+(const Scalar& s, const Tensor& a) { return add(a, s); }   ///< add(a, s)
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }   ///< sub(a, b)
inline Tensor operator-(const Tensor& a, const Scalar& s) { return sub(a, s); }   ///< sub(a, s)
/// s - a
inline Tensor operator-(const Scalar& s, const Tensor& a) { return add(neg(a), s); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }   ///< mul(a, b)
inline Tensor operator*(const Tensor& a, const Scalar& s) { return mul(a, s); }   ///< mul(a, s)
inline Tensor operator*(const Scalar& s, const Tensor& a) { return mul(a, s); }   ///< mul(a, s)
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }   ///< div(a, b)
inline Tensor operator/(const Tensor& a, const Scalar& s) { return div(a, s); }   ///< div(a, s)
/// s / a
inline Tensor operator/(const Scalar& s, const Tensor& a) { return div(scalar_tensor(s), a); }
inline Tensor operator-(const Tensor& a) { return neg(a); }                       ///< neg(a)
inline Tensor& operator+=(Tensor& a, const Tensor& b) { return add_(a, b); }      ///< add_(a, b)
inline Tensor& operator+=(Tensor& a, const Scalar& s) { return add_(a, s); }      ///< add_(a, s)
inline Tensor& operator-=(Tensor& a, const Tensor& b) { return sub_(a, b); }      ///< sub_(a, b)
inline Tensor& operator*=(Tensor& a, const Tensor& b) { return mul_(a, b); }      ///< mul_(a, b)
inline Tensor& operator*=(Tensor& a, const Scalar& s) { return mul_(a, s); }      ///< mul_(a, s)
inline Tensor& operator/=(Tensor& a, const Tensor& b) { return div_(a, b); }      ///< div_(a, b)
inline Tensor& operator/=(Tensor& a, const Scalar& s) { return div_(a, s); }      ///< div_(a, s)
}  // namespace torchlet
