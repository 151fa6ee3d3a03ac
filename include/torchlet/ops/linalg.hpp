#pragma once
/// \file Matrix products with PyTorch's semantics: matmul (every rank combination, broadcast batch dims), mm,
/// bmm, addmm, linear. float16/bfloat16 are computed in float32 and rounded back (on a device the kernels take them
/// as they are and accumulate in float32, as cuBLAS does on tensor cores); integer dtypes are allowed
/// as on PyTorch's CPU; bool is not. All are differentiable (gradients of broadcast batch dims are summed back).
#include <string>

#include "torchlet/backend/cpu/linalg.hpp"
#include "torchlet/ops/arithmetic.hpp"
#include "torchlet/ops/autocast.hpp"
#include "torchlet/tensor/factory.hpp"

namespace torchlet {
namespace detail {
/// "2x3" for an error message.
inline std::string matrix_str(int64_t rows, int64_t cols) { return std::to_string(rows) + "x" + std::to_string(cols); }

/// Checks that both operands are on one device (0-dim ones aside, none are), share a dtype and that dtype has a
/// matmul kernel.
inline void check_matmul_operands(const Tensor& a, const Tensor& b, const char* op) {
  TORCHLET_CHECK(a.defined() && b.defined(), ValueError, "[", op, "] undefined operand");
  TORCHLET_CHECK(a.device() == b.device(), DeviceError, "[", op, "] expected all tensors to be on the same device, "
                 "but found at least two devices, ", a.device(), " and ", b.device());
  TORCHLET_CHECK(a.dtype() == b.dtype(), DTypeError, "[", op, "] expected both operands to have the same dtype, got ",
                 a.dtype(), " and ", b.dtype());
  TORCHLET_CHECK(a.dtype() != kBool && has_kernels(a.dtype()), DTypeError, "[", op, "] not implemented for ",
                 a.dtype());
}

/// The dtype the product is computed in on the CPU: float32 for the 16-bit floats, the dtype itself otherwise.
inline DType matmul_compute_dtype(DType t) { return t == kFloat16 || t == kBFloat16 ? kFloat32 : t; }
/// The dtype a product of `t`'s dtype is handed to the kernels in: on the CPU matmul_compute_dtype(dtype); on a
/// device the dtype itself (16-bit operands run natively, accumulating in float32, e.g. on tensor cores).
inline DType matmul_compute_dtype(const Tensor& t) {
  return t.is_cpu() ? matmul_compute_dtype(t.dtype()) : t.dtype();
}

/// out (contiguous, [..., M, N], the compute dtype) = alpha * a @ b + beta * out, converting 16-bit operands on
/// the CPU.
inline void matmul_compute(const Tensor& out, const Tensor& a, const Tensor& b, const Scalar& alpha,
                           const Scalar& beta) {
  const DType ct = matmul_compute_dtype(a);
  const Tensor a2 = a.dtype() == ct ? a : a.to(ct), b2 = b.dtype() == ct ? b : b.to(ct);
  if (out.is_cpu()) cpu::matmul_into(out, a2, b2, alpha, beta);
  else if (out.numel() > 0) device_kernels(out.device(), "matmul").matmul(out, a2, b2, alpha, beta);
}

/// 2-D product with the size check every 2-D path shares.
inline Tensor mm_impl(const Tensor& a, const Tensor& b, const char* op) {
  TORCHLET_CHECK(a.size(1) == b.size(0), ShapeError, "[", op, "] mat1 and mat2 shapes cannot be multiplied (",
                 matrix_str(a.size(0), a.size(1)), " and ", matrix_str(b.size(0), b.size(1)), ")");
  const DType ct = matmul_compute_dtype(a);
  Tensor out = empty({a.size(0), b.size(1)}, TensorOptions(ct, a.device()));
  matmul_compute(out, a, b, 1, 0);
  return ct == a.dtype() ? out : out.to(a.dtype());
}

/// mm without autograd (see torchlet::mm).
inline Tensor mm_forward(const Tensor& a, const Tensor& b) {
  check_matmul_operands(a, b, "mm");
  TORCHLET_CHECK(a.dim() == 2 && b.dim() == 2, ShapeError, "[mm] expected two 2-D tensors, got ",
                 shape_str(a.sizes()), " and ", shape_str(b.sizes()));
  return mm_impl(a, b, "mm");
}

/// bmm without autograd (see torchlet::bmm).
inline Tensor bmm_forward(const Tensor& a, const Tensor& b) {
  check_matmul_operands(a, b, "bmm");
  TORCHLET_CHECK(a.dim() == 3 && b.dim() == 3, ShapeError, "[bmm] expected two 3-D tensors, got ",
                 shape_str(a.sizes()), " and ", shape_str(b.sizes()));
  TORCHLET_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(1), ShapeError,
                 "[bmm] expected size for first two dimensions of batch2 tensor to be: [", a.size(0), ", ", a.size(2),
                 "], got [", b.size(0), ", ", b.size(1), "] (shapes ", shape_str(a.sizes()), " and ",
                 shape_str(b.sizes()), ")");
  const DType ct = matmul_compute_dtype(a);
  Tensor out = empty({a.size(0), a.size(1), b.size(2)}, TensorOptions(ct, a.device()));
  matmul_compute(out, a, b, 1, 0);
  return ct == a.dtype() ? out : out.to(a.dtype());
}

/// matmul without autograd (see torchlet::matmul).
inline Tensor matmul_forward(const Tensor& a, const Tensor& b) {
  check_matmul_operands(a, b, "matmul");
  const int64_t da = a.dim(), db = b.dim();
  TORCHLET_CHECK(da >= 1 && db >= 1, ShapeError, "[matmul] both arguments to matmul need to be at least 1D, but they "
                 "are ", da, "D and ", db, "D");
  const DType ct = matmul_compute_dtype(a);
  auto finish = [&](const Tensor& r) { return ct == a.dtype() ? r : r.to(a.dtype()); };
  if (da == 1 && db == 1) {
    TORCHLET_CHECK(a.size(0) == b.size(0), ShapeError, "[matmul] inconsistent tensor size: 1-D operands with ",
                   a.size(0), " and ", b.size(0), " elements (shapes ", shape_str(a.sizes()), " and ",
                   shape_str(b.sizes()), ")");
    Tensor out = empty({1, 1}, TensorOptions(ct, a.device()));
    matmul_compute(out, a.unsqueeze(0), b.unsqueeze(1), 1, 0);
    return finish(out.view({}));
  }
  if (da <= 2 && db <= 2) {
    const Tensor a2 = da == 1 ? a.unsqueeze(0) : a, b2 = db == 1 ? b.unsqueeze(1) : b;
    Tensor out = mm_impl(a2, b2, "matmul");
    if (da == 1) return out.squeeze(0);
    if (db == 1) return out.squeeze(1);
    return out;
  }
  // fold a's batch dims into its rows when b is a single matrix or vector (as PyTorch does)
  if (da >= 3 && db <= 2) {
    const int64_t k = a.size(-1);
    const Tensor b2 = db == 1 ? b.unsqueeze(1) : b;
    TORCHLET_CHECK(k == b2.size(0), ShapeError, "[matmul] mat1 and mat2 shapes cannot be multiplied (",
                   matrix_str(a.numel() / std::max<int64_t>(k, 1), k), " and ",
                   matrix_str(b2.size(0), b2.size(1)), "), from shapes ", shape_str(a.sizes()), " and ",
                   shape_str(b.sizes()));
    Shape out_sizes(a.sizes().begin(), a.sizes().end() - 1);
    if (db == 2) out_sizes.push_back(b.size(1));
    const Tensor a2 = a.reshape({-1, k});
    Tensor out = empty({a2.size(0), b2.size(1)}, TensorOptions(ct, a.device()));
    matmul_compute(out, a2, b2, 1, 0);
    return finish(out.view(out_sizes));
  }
  // general batched case: broadcast the batch dims
  const Tensor a3 = da == 1 ? a.unsqueeze(0) : a;            // [.., n, k]
  const Tensor b3 = db == 1 ? b.unsqueeze(1) : b;            // [.., k, m]
  const int64_t n = a3.size(-2), k = a3.size(-1), k2 = b3.size(-2), m = b3.size(-1);
  TORCHLET_CHECK(k == k2, ShapeError, "[matmul] mat1 and mat2 shapes cannot be multiplied (",
                 matrix_str(n, k), " and ", matrix_str(k2, m), "), from shapes ",
                 shape_str(a.sizes()), " and ", shape_str(b.sizes()));
  const Shape ba(a3.sizes().begin(), a3.sizes().end() - 2), bb(b3.sizes().begin(), b3.sizes().end() - 2);
  const Shape batch = broadcast_shapes(ba, bb, "matmul");
  Shape ea = batch, eb = batch, out_sizes = batch;
  ea.insert(ea.end(), {n, k});
  eb.insert(eb.end(), {k, m});
  out_sizes.insert(out_sizes.end(), {n, m});
  Tensor out = empty(out_sizes, TensorOptions(ct, a.device()));
  matmul_compute(out, a3.expand(ea), b3.expand(eb), 1, 0);
  if (da == 1) out = out.squeeze(-2);
  if (db == 1) out = out.squeeze(-1);
  return finish(out);
}

/// addmm without autograd (see torchlet::addmm).
inline Tensor addmm_forward(const Tensor& c, const Tensor& a, const Tensor& b, const Scalar& beta,
                            const Scalar& alpha) {
  check_matmul_operands(a, b, "addmm");
  TORCHLET_CHECK(c.device() == a.device() || (c.is_cpu() && c.dim() == 0), DeviceError, "[addmm] expected all "
                 "tensors to be on the same device, but found at least two devices, ", a.device(), " and ", c.device());
  TORCHLET_CHECK(c.dtype() == a.dtype(), DTypeError, "[addmm] expected self and the matrices to have the same dtype, "
                 "got ", c.dtype(), " and ", a.dtype());
  TORCHLET_CHECK(a.dim() == 2 && b.dim() == 2, ShapeError, "[addmm] expected two 2-D matrices, got ",
                 shape_str(a.sizes()), " and ", shape_str(b.sizes()));
  TORCHLET_CHECK(a.size(1) == b.size(0), ShapeError, "[addmm] mat1 and mat2 shapes cannot be multiplied (",
                 matrix_str(a.size(0), a.size(1)), " and ", matrix_str(b.size(0), b.size(1)), ")");
  const Shape out_sizes{a.size(0), b.size(1)};
  TORCHLET_CHECK(c.dim() <= 2 && broadcast_shapes(c.sizes(), out_sizes, "addmm") == out_sizes, ShapeError,
                 "[addmm] self of shape ", shape_str(c.sizes()), " does not broadcast to the product's shape ",
                 shape_str(out_sizes));
  const DType ct = matmul_compute_dtype(a);
  Tensor out = empty(out_sizes, TensorOptions(ct, a.device()));
  const bool use_c = beta.is_floating_point() ? beta.to<double>() != 0 : beta.to<int64_t>() != 0;
  if (use_c) out.copy_(c.expand(out_sizes));
  matmul_compute(out, a, b, alpha, use_c ? beta : Scalar(0));
  return ct == a.dtype() ? out : out.to(a.dtype());
}

/// linear without autograd (see torchlet::linear).
inline Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_matmul_operands(x, weight, "linear");
  TORCHLET_CHECK(weight.dim() == 2, ShapeError, "[linear] expected a 2-D weight [out_features, in_features], got ",
                 shape_str(weight.sizes()));
  TORCHLET_CHECK(x.dim() >= 1, ShapeError, "[linear] expected an input with at least 1 dim, got a 0-dim tensor");
  const int64_t in = x.size(-1), out_f = weight.size(0);
  const int64_t nrows = numel_of(Shape(x.sizes().begin(), x.sizes().end() - 1));
  TORCHLET_CHECK(in == weight.size(1), ShapeError, "[linear] mat1 and mat2 shapes cannot be multiplied (",
                 matrix_str(nrows, in), " and ", matrix_str(weight.size(1), out_f), ")");
  Shape out_sizes(x.sizes().begin(), x.sizes().end() - 1);
  out_sizes.push_back(out_f);
  const DType ct = matmul_compute_dtype(x);
  Tensor out = empty(out_sizes, TensorOptions(ct, x.device()));
  bool use_bias = false;
  if (bias.defined()) {
    TORCHLET_CHECK(bias.device() == x.device(), DeviceError, "[linear] expected all tensors to be on the same "
                   "device, but found at least two devices, ", x.device(), " and ", bias.device());
    TORCHLET_CHECK(bias.dtype() == x.dtype(), DTypeError, "[linear] expected bias to have dtype ", x.dtype(),
                   ", got ", bias.dtype());
    TORCHLET_CHECK(broadcast_shapes(bias.sizes(), out_sizes, "linear") == out_sizes, ShapeError, "[linear] bias of "
                   "shape ", shape_str(bias.sizes()), " does not broadcast to the output shape ", shape_str(out_sizes));
    out.copy_(bias.expand(out_sizes));
    use_bias = true;
  }
  const Tensor x2 = x.reshape({nrows, in});
  matmul_compute(out.view({nrows, out_f}), x2, weight.t(), 1, use_bias ? 1 : 0);
  return ct == x.dtype() ? out : out.to(x.dtype());
}

/// a^T over the last two dims.
inline Tensor mT(const Tensor& a) { return a.transpose(-2, -1); }
}  // namespace detail

/// Matrix product of two 2-D tensors: [n, k] @ [k, m] -> [n, m]. Differentiable.
inline Tensor mm(const Tensor& a, const Tensor& b) {
  if (detail::autocast_applies(a)) {  // an Autocast scope: computed in its 16-bit dtype
    detail::AutocastPause cast_once;
    return mm(detail::autocast_lower(a), detail::autocast_lower(b));
  }
  Tensor out;
  {
    autograd::NoGradGuard untracked;
    out = detail::mm_forward(a, b);
  }
  return detail::recorded("mm", {a, b}, out, [sa = detail::SavedTensor(a), sb = detail::SavedTensor(b)](
                                                 const detail::TensorList& g, const detail::Needs& need) {
    return detail::TensorList{need[0] ? mm(g[0], sb.get().t()) : Tensor(), need[1] ? mm(sa.get().t(), g[0]) : Tensor()};
  });
}

/// Batched matrix product of two 3-D tensors: [B, n, k] @ [B, k, m] -> [B, n, m] (no broadcasting). Differentiable.
inline Tensor bmm(const Tensor& a, const Tensor& b) {
  if (detail::autocast_applies(a)) {  // an Autocast scope: computed in its 16-bit dtype
    detail::AutocastPause cast_once;
    return bmm(detail::autocast_lower(a), detail::autocast_lower(b));
  }
  Tensor out;
  {
    autograd::NoGradGuard untracked;
    out = detail::bmm_forward(a, b);
  }
  return detail::recorded("bmm", {a, b}, out, [sa = detail::SavedTensor(a), sb = detail::SavedTensor(b)](
                                                  const detail::TensorList& g, const detail::Needs& need) {
    return detail::TensorList{need[0] ? bmm(g[0], detail::mT(sb.get())) : Tensor(),
                              need[1] ? bmm(detail::mT(sa.get()), g[0]) : Tensor()};
  });
}

/// torch.matmul: dot for 1-D @ 1-D, mm for 2-D @ 2-D, 1-D operands promoted to a row / column matrix and the
/// added dim removed again, batched products with broadcast batch dims otherwise. Differentiable (gradients
/// of broadcast batch dims are summed back).
inline Tensor matmul(const Tensor& a, const Tensor& b) {
  if (detail::autocast_applies(a)) {  // an Autocast scope: computed in its 16-bit dtype
    detail::AutocastPause cast_once;
    return matmul(detail::autocast_lower(a), detail::autocast_lower(b));
  }
  Tensor out;
  {
    autograd::NoGradGuard untracked;
    out = detail::matmul_forward(a, b);
  }
  return detail::recorded("matmul", {a, b}, out, [sa = detail::SavedTensor(a), sb = detail::SavedTensor(b)](
                                                     const detail::TensorList& g, const detail::Needs& need) {
    const Tensor a = sa.get(), b = sb.get();
    const int64_t da = a.dim(), db = b.dim();
    if (da == 1 && db == 1)  // dot
      return detail::TensorList{need[0] ? mul(b, g[0]) : Tensor(), need[1] ? mul(a, g[0]) : Tensor()};
    // as matrices: a3 [.., n, k] @ b3 [.., k, m] = g3 [.., n, m]
    const Tensor a3 = da == 1 ? a.unsqueeze(0) : a, b3 = db == 1 ? b.unsqueeze(1) : b;
    Tensor g3 = g[0];
    if (da == 1) g3 = g3.unsqueeze(-2);
    if (db == 1) g3 = g3.unsqueeze(-1);
    Tensor ga, gb;
    if (need[0]) {
      if (db <= 2 && da >= 2) ga = matmul(g3, b3.t());  // a's batch dims are g's
      else ga = sum_to(matmul(g3, detail::mT(b3)), a3.sizes());
      ga = ga.reshape(a.sizes());
    }
    if (need[1]) {
      if (db <= 2 && da >= 2) {  // fold the batch dims of a and g into rows: a2^T @ g2
        const int64_t k = a3.size(-1), m = g3.size(-1);
        gb = mm(a3.reshape({-1, k}).t(), g3.reshape({-1, m}));
      } else {
        gb = sum_to(matmul(detail::mT(a3), g3), b3.sizes());
      }
      gb = gb.reshape(b.sizes());
    }
    return detail::TensorList{ga, gb};
  });
}

/// beta * c + alpha * (a @ b) for 2-D a, b and c broadcastable to the product's shape; with beta == 0, c's
/// values are ignored (NaN in c does not propagate), as in PyTorch. Differentiable in c, a and b.
inline Tensor addmm(const Tensor& c, const Tensor& a, const Tensor& b, const Scalar& beta = 1,
                    const Scalar& alpha = 1) {
  if (detail::autocast_applies(c)) {  // an Autocast scope: computed in its 16-bit dtype
    detail::AutocastPause cast_once;
    return addmm(detail::autocast_lower(c), detail::autocast_lower(a), detail::autocast_lower(b), beta, alpha);
  }
  Tensor out;
  {
    autograd::NoGradGuard untracked;
    out = detail::addmm_forward(c, a, b, beta, alpha);
  }
  return detail::recorded("addmm", {c, a, b}, out, [sc = c.sizes(), sa = detail::SavedTensor(a),
                                                     sb = detail::SavedTensor(b), beta, alpha](
                                                        const detail::TensorList& g, const detail::Needs& need) {
    auto scaled = [](const Tensor& t, const Scalar& s) { return s.to<double>() == 1 ? t : mul(t, s); };
    return detail::TensorList{need[0] ? sum_to(scaled(g[0], beta), sc) : Tensor(),
                              need[1] ? scaled(mm(g[0], sb.get().t()), alpha) : Tensor(),
                              need[2] ? scaled(mm(sa.get().t(), g[0]), alpha) : Tensor()};
  });
}

/// y = x @ weight^T + bias for x [..., in], weight [out, in] and an optional bias broadcastable to [..., out].
/// Differentiable in x, weight and bias.
inline Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {}) {
  if (detail::autocast_applies(x)) {  // an Autocast scope: computed in its 16-bit dtype
    detail::AutocastPause cast_once;
    return linear(detail::autocast_lower(x), detail::autocast_lower(weight), detail::autocast_lower(bias));
  }
  Tensor out;
  {
    autograd::NoGradGuard untracked;
    out = detail::linear_forward(x, weight, bias);
  }
  return detail::recorded("linear", {x, weight, bias}, out,
                          [sx = detail::SavedTensor(x), sw = detail::SavedTensor(weight),
                           sbias = bias.defined() ? bias.sizes() : Shape{}](const detail::TensorList& g,
                                                                            const detail::Needs& need) {
    Tensor gx, gw, gb;
    const int64_t out_f = g[0].dim() == 0 ? 1 : g[0].size(-1);
    if (need[0]) gx = matmul(g[0], sw.get());  // [..., out] @ [out, in]
    if (need[1]) {
      const Tensor x = sx.get();
      const int64_t in = x.size(-1);
      gw = mm(g[0].reshape({-1, out_f}).t(), x.reshape({-1, in}));
    }
    if (need[2]) gb = sum_to(g[0], sbias);
    return detail::TensorList{gx, gw, gb};
  });
}
}  // namespace torchlet
