#pragma once
// Helpers shared by the model suites (test_resnet.cpp, test_classics.cpp): shape and key texts as the fixture
// generators write them, a scale-relative closeness check, and the spread of initialised weights.
#include <cmath>
#include <string>

#include "helpers.hpp"
#include "torchlet/ops/reduction.hpp"

namespace testing::model_checks {
using namespace torchlet;

/// "64,3,7,7" or "scalar", as gen/resnet.py writes shapes.
inline std::string shape_text(const Shape& s) {
  if (s.empty()) return "scalar";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(s[i]);
  }
  return out;
}

/// |a - b| <= rtol * max|b| elementwise: a tolerance relative to the tensor's scale.
inline void check_close_scaled(const Tensor& actual, const Tensor& expected, double rtol) {
  const double scale = max(abs(expected)).to(kFloat64).item<double>();
  check_close(actual, expected, rtol, rtol * scale);
}

/// "layer4.1.bn2" -> "layer4_1_bn2", as fixture names spell module paths.
inline std::string underscored(std::string s) {
  for (char& c : s)
    if (c == '.') c = '_';
  return s;
}

/// True for a BatchNorm buffer's state_dict key (running_mean, running_var, num_batches_tracked).
inline bool is_buffer_key(const std::string& k) {
  for (const std::string s : {".running_mean", ".running_var", ".num_batches_tracked"})
    if (k.size() > s.size() && k.compare(k.size() - s.size(), s.size(), s) == 0) return true;
  return false;
}

/// Population standard deviation of a tensor's values.
inline double std_of(const Tensor& t) {
  const auto v = values(t);
  double mean = 0, sq = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  for (double x : v) sq += (x - mean) * (x - mean);
  return std::sqrt(sq / static_cast<double>(v.size()));
}

}  // namespace testing::model_checks
