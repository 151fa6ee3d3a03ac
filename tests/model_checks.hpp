#pragma once
// Helpers shared by the model suites (test_resnet.cpp, test_classics.cpp): shape and key texts as the fixture
// generators write them, a scale-relative closeness check, and the spread of initialised weights.
#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "torchlet/nn/module.hpp"
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

/// Per architecture, {parameter elements, parameters, state_dict entries} from a `*_counts` fixture (lines of
/// "arch numel n_params n_state", as the generators write them).
inline std::map<std::string, std::vector<int64_t>> read_counts(const std::string& fixture_name) {
  std::map<std::string, std::vector<int64_t>> counts;
  std::istringstream in(text_fixture(fixture_name));
  std::string arch;
  int64_t numel, n_params, n_state;
  while (in >> arch >> numel >> n_params >> n_state) counts[arch] = {numel, n_params, n_state};
  return counts;
}

/// Checks `model`'s state_dict keys, shapes and order against the text fixture `keys_fixture` ("key shape" lines),
/// that named_parameters() lists the state_dict's non-buffer keys in the same order, and the counts `expected`
/// ({numel, parameters, state_dict entries}). Returns the number of parameter elements.
inline int64_t check_keys_and_counts(const nn::Module& model, const std::string& keys_fixture,
                                     const std::vector<int64_t>& expected) {
  std::string keys;
  const nn::StateDict sd = model.state_dict();
  for (const auto& [k, v] : sd) keys += k + " " + shape_text(v.sizes()) + "\n";
  CHECK(keys == text_fixture(keys_fixture));
  int64_t numel = 0;
  std::vector<std::string> param_names, expected_names;
  for (const auto& [n, p] : model.named_parameters()) {
    numel += p.numel();
    param_names.push_back(n);
  }
  for (const auto& [k, v] : sd)
    if (!is_buffer_key(k)) expected_names.push_back(k);
  CHECK(param_names == expected_names);
  REQUIRE(expected.size() == 3);
  CHECK(numel == expected[0]);
  CHECK(static_cast<int64_t>(param_names.size()) == expected[1]);
  CHECK(static_cast<int64_t>(sd.size()) == expected[2]);
  return numel;
}

}  // namespace testing::model_checks
