#pragma once
/// \file NumPy .npy files: read (C or Fortran order, little-endian) and write (C order, format 1.0).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>

#include <algorithm>

#include "torchlet/tensor/tensor.hpp"

namespace torchlet {
namespace detail {
struct NpyDescr { std::string_view code; DType dtype; };
inline constexpr NpyDescr kNpyDescrs[] = {
    {"<f4", kFloat32}, {"<f8", kFloat64}, {"<f2", kFloat16}, {"<i8", kInt64}, {"<i4", kInt32},
    {"<i2", kInt16},   {"|i1", kInt8},    {"|u1", kUInt8},   {"|b1", kBool},
};

// Value of `key` in the header dict text, up to the next ',' at depth 0 or '}' (e.g. "'<f4'", "(2, 3)").
inline std::string npy_field(const std::string& header, const std::string& key, const std::string& path) {
  const size_t k = header.find("'" + key + "'");
  TORCHLET_CHECK(k != std::string::npos, IOError, "[load_npy] ", path, ": header has no '", key, "': ", header);
  size_t p = header.find(':', k);
  TORCHLET_CHECK(p != std::string::npos, IOError, "[load_npy] ", path, ": malformed header: ", header);
  ++p;
  while (p < header.size() && header[p] == ' ') ++p;
  size_t e = p;
  int depth = 0;
  for (; e < header.size(); ++e) {
    const char c = header[e];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
  }
  return header.substr(p, e - p);
}
}  // namespace detail

/// Reads a .npy file into a new contiguous CPU tensor. Raises IOError naming the file and the problem.
inline Tensor load_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCHLET_CHECK(in.good(), IOError, "[load_npy] cannot open ", path, ": ", std::strerror(errno));
  char magic[8];
  in.read(magic, 8);
  TORCHLET_CHECK(in.gcount() == 8 && std::memcmp(magic, "\x93NUMPY", 6) == 0, IOError, "[load_npy] ", path,
                 ": not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_len = 0;
  unsigned char len_bytes[4] = {0, 0, 0, 0};
  in.read(reinterpret_cast<char*>(len_bytes), major == 1 ? 2 : 4);
  TORCHLET_CHECK(major >= 1 && major <= 3 && in.good(), IOError, "[load_npy] ", path, ": unsupported .npy version ",
                 major);
  header_len = len_bytes[0] | (len_bytes[1] << 8) | (len_bytes[2] << 16) | (static_cast<uint32_t>(len_bytes[3]) << 24);
  TORCHLET_CHECK(header_len < (1u << 20), IOError, "[load_npy] ", path, ": header length ", header_len,
                 " is implausible");
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  TORCHLET_CHECK(in.gcount() == static_cast<std::streamsize>(header_len), IOError, "[load_npy] ", path,
                 ": truncated header");

  std::string descr = detail::npy_field(header, "descr", path);
  TORCHLET_CHECK(descr.size() >= 2, IOError, "[load_npy] ", path, ": malformed descr ", descr);
  descr = descr.substr(1, descr.size() - 2);
  if (descr == "<b1" || descr == "<u1" || descr == "<i1") descr[0] = '|';
  const DType* dtype = nullptr;
  for (const auto& d : detail::kNpyDescrs)
    if (d.code == descr) dtype = &d.dtype;
  TORCHLET_CHECK(dtype != nullptr, DTypeError, "[load_npy] ", path, ": unsupported dtype '", descr,
                 "' (supported: <f4 <f8 <f2 <i8 <i4 <i2 |i1 |u1 |b1, little-endian)");
  const bool fortran = detail::npy_field(header, "fortran_order", path) == "True";
  Shape shape;
  const std::string tuple = detail::npy_field(header, "shape", path);
  for (size_t p = 0; p < tuple.size();) {
    if (tuple[p] >= '0' && tuple[p] <= '9') {
      size_t e = p;
      while (e < tuple.size() && tuple[e] >= '0' && tuple[e] <= '9') ++e;
      TORCHLET_CHECK(e - p < 16, IOError, "[load_npy] ", path, ": dimension too large in ", tuple);
      shape.push_back(std::stoll(tuple.substr(p, e - p)));
      p = e;
    } else {
      ++p;
    }
  }
  Shape stored = shape;
  if (fortran) std::reverse(stored.begin(), stored.end());
  Tensor out = empty(stored, *dtype);
  in.read(static_cast<char*>(out.data_ptr()), out.nbytes());
  TORCHLET_CHECK(in.gcount() == out.nbytes(), IOError, "[load_npy] ", path, ": truncated data: expected ",
                 out.nbytes(), " bytes for shape ", shape_str(shape), " of ", *dtype, ", got ", in.gcount());
  if (fortran) {
    Shape order(stored.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(order.size() - 1 - i);
    out = out.permute(order).contiguous();
  }
  return out;
}

/// Writes `t` (any layout, CPU) as a C-order .npy file (format 1.0).
inline void save_npy(const std::string& path, const Tensor& t) {
  const char* code = nullptr;
  for (const auto& d : detail::kNpyDescrs)
    if (d.dtype == t.dtype()) code = d.code.data();
  TORCHLET_CHECK(code != nullptr, DTypeError, "[save_npy] dtype ", t.dtype(), " has no .npy code here");
  const Tensor c = t.to(kCPU).contiguous();
  std::string shape = "(";
  for (int64_t i = 0; i < c.dim(); ++i) shape += std::to_string(c.size(i)) + (c.dim() == 1 ? "," : i + 1 < c.dim() ? ", " : "");
  shape += ")";
  std::string header = "{'descr': '" + std::string(code, 3) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  TORCHLET_CHECK(out.good(), IOError, "[save_npy] cannot open ", path, " for writing: ", std::strerror(errno));
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char preamble[10] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<char>(len & 0xff),
                             static_cast<char>(len >> 8)};
  out.write(preamble, 10);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(static_cast<const char*>(c.data_ptr()), c.nbytes());
  out.flush();
  TORCHLET_CHECK(out.good(), IOError, "[save_npy] writing ", path, " failed: ", std::strerror(errno));
}
}  // namespace torchlet
