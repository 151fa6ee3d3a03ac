#pragma once
/// \file Printing tensors as PyTorch prints them: `tensor([[1., 2.], [3., 4.]], dtype=torch.float64)`.
#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

#include "torchlet/tensor/tensor.hpp"

namespace torchlet {
namespace detail {
/// PyTorch's print options: 4 decimals, summarise above 1000 elements with 3 edge items, 80 columns.
struct PrintOptions {
  int precision = 4;
  int64_t threshold = 1000;
  int64_t edgeitems = 3;
  int64_t linewidth = 80;
};

// Chooses fixed, integer or scientific notation and the column width from the values shown (PyTorch's _Formatter).
class ValueFormatter {
 public:
  ValueFormatter(const std::vector<double>& values, bool floating, bool is_bool, const PrintOptions& o)
      : floating_(floating), bool_(is_bool), precision_(o.precision) {
    if (!floating_) {
      for (double v : values) width_ = std::max<size_t>(width_, format_plain(v).size());
      return;
    }
    double lo = INFINITY, hi = 0;
    bool any = false;
    for (double v : values) {
      if (!std::isfinite(v) || v == 0) continue;
      any = true;
      lo = std::min(lo, std::fabs(v));
      hi = std::max(hi, std::fabs(v));
      if (v != std::ceil(v)) int_mode_ = false;
    }
    if (!any) return;
    sci_ = hi / lo > 1000.0 || hi > 1e8 || (!int_mode_ && lo < 1e-4);
    for (double v : values) {
      if (!std::isfinite(v) || v == 0) continue;
      const size_t len = sci_ ? printf_str("%.*e", v).size()
                              : int_mode_ ? printf_str("%.0f", v).size() + 1 : printf_str("%.*f", v).size();
      width_ = std::max(width_, len);
    }
  }
  size_t width() const { return width_; }
  std::string format(double v) const {
    std::string s;
    if (!floating_) {
      s = format_plain(v);
    } else if (std::isnan(v)) {
      s = "nan";
    } else if (std::isinf(v)) {
      s = v > 0 ? "inf" : "-inf";
    } else if (sci_) {
      s = printf_str("%.*e", v);
    } else if (int_mode_) {
      s = printf_str("%.0f", v) + ".";
    } else {
      s = printf_str("%.*f", v);
    }
    return std::string(width_ > s.size() ? width_ - s.size() : 0, ' ') + s;
  }

 private:
  std::string format_plain(double v) const {
    if (bool_) return v != 0 ? "True" : "False";
    return std::to_string(static_cast<long long>(v));
  }
  std::string printf_str(const char* fmt, double v) const {
    char buf[64];
    if (fmt[1] == '.' && fmt[2] == '*') std::snprintf(buf, sizeof buf, fmt, precision_, v);
    else std::snprintf(buf, sizeof buf, fmt, v);
    return buf;
  }
  bool floating_, bool_;
  int precision_;
  bool int_mode_ = true, sci_ = false;
  size_t width_ = 1;
};

// All values of a CPU tensor as doubles, in row-major order.
inline std::vector<double> values_as_double(const Tensor& t) {
  const Tensor c = t.to(kFloat64).contiguous();
  const double* p = c.data<double>();
  return std::vector<double>(p, p + c.numel());
}

// The values the summarised print shows: the first and last `edge` items of every dimension.
inline Tensor summarized(const Tensor& t, const PrintOptions& o) {
  if (t.dim() == 0) return t.reshape({1});
  std::vector<Tensor> parts;
  const int64_t n = t.size(0);
  if (n > 2 * o.edgeitems) {
    for (int64_t i = 0; i < o.edgeitems; ++i) parts.push_back(t[i]);
    for (int64_t i = n - o.edgeitems; i < n; ++i) parts.push_back(t[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) parts.push_back(t[i]);
  }
  std::vector<double> all;
  for (const auto& p : parts) {
    auto v = p.dim() == 0 ? values_as_double(p) : values_as_double(summarized(p, o));
    all.insert(all.end(), v.begin(), v.end());
  }
  return from_blob(all.data(), {static_cast<int64_t>(all.size())}, kFloat64).clone();
}

inline std::string tensor_body(const Tensor& t, int64_t indent, bool summarize, const ValueFormatter& f,
                               const PrintOptions& o) {
  if (t.dim() == 0) return f.format(values_as_double(t)[0]);
  const int64_t n = t.size(0);
  const bool cut = summarize && n > 2 * o.edgeitems;
  if (t.dim() == 1) {
    const int64_t elem_len = static_cast<int64_t>(f.width()) + 2;
    const int64_t per_line = std::max<int64_t>(1, (o.linewidth - indent) / elem_len);
    std::vector<std::string> items;
    const auto vals = values_as_double(t);
    for (int64_t i = 0; i < n; ++i) {
      if (cut && i == o.edgeitems) {
        items.push_back(" ...");
        i = n - o.edgeitems;
      }
      items.push_back(f.format(vals[i]));
    }
    std::string out = "[";
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += (static_cast<int64_t>(i) % per_line == 0) ? ",\n" + std::string(indent + 1, ' ') : ", ";
      out += items[i];
    }
    return out + "]";
  }
  const std::string sep = "," + std::string(t.dim() - 1, '\n') + std::string(indent + 1, ' ');
  std::string out = "[";
  bool first = true;
  for (int64_t i = 0; i < n; ++i) {
    if (!first) out += sep;
    first = false;
    if (cut && i == o.edgeitems) {
      out += "..." + sep;
      i = n - o.edgeitems;
    }
    out += tensor_body(t[i], indent + 1, summarize, f, o);
  }
  return out + "]";
}
}  // namespace detail

/// The text PyTorch prints for this tensor (`print(t)`), with default print options.
inline std::string to_string(const Tensor& t) {
  if (!t.defined()) return "tensor(undefined)";
  const detail::PrintOptions o;
  const Tensor host = t.to(kCPU);
  std::vector<std::string> suffixes;
  if (!t.is_cpu()) suffixes.push_back("device='" + t.device().str() + "'");
  const bool default_dtype = t.dtype() == kFloat32 || t.dtype() == kInt64 || t.dtype() == kBool;
  std::string body;
  if (t.numel() == 0) {
    if (t.dim() != 1) {
      std::string s = "size=(";
      for (int64_t i = 0; i < t.dim(); ++i) s += std::to_string(t.size(i)) + (i + 1 < t.dim() ? ", " : "");
      suffixes.push_back(s + ")");
    }
    if (t.dtype() != kFloat32) suffixes.push_back("dtype=torch." + std::string(dtype_name(t.dtype())));
    body = "[]";
  } else {
    if (!has_kernels(t.dtype())) return "tensor(<" + std::string(dtype_name(t.dtype())) + " values not printable>)";
    const bool summarize = t.numel() > o.threshold;
    const auto shown = detail::values_as_double(summarize ? detail::summarized(host, o) : host);
    const detail::ValueFormatter f(shown, t.is_floating_point(), t.dtype() == kBool, o);
    body = detail::tensor_body(host, 7, summarize, f, o);
    if (!default_dtype) suffixes.push_back("dtype=torch." + std::string(dtype_name(t.dtype())));
  }
  std::string out = "tensor(" + body;
  const size_t newline = out.rfind('\n');
  int64_t last_line = static_cast<int64_t>(out.size()) -
                      (newline == std::string::npos ? -1 : static_cast<int64_t>(newline)) + 1;
  for (const auto& s : suffixes) {
    if (last_line + static_cast<int64_t>(s.size()) + 2 > o.linewidth) {
      out += ",\n" + std::string(7, ' ') + s;
      last_line = 7 + static_cast<int64_t>(s.size());
    } else {
      out += ", " + s;
      last_line += static_cast<int64_t>(s.size()) + 2;
    }
  }
  return out + ")";
}

/// Streams to_string(t).
inline std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << to_string(t); }
}  // namespace torchlet
