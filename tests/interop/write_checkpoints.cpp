// Writes checkpoints with torchlet::save into the directory given as argv[1], for
// tests/interop/check_torch_reads.py to open with real PyTorch. Tensor contents follow formulas both sides compute
// (see fill()): the checker rebuilds every expected tensor and compares bits, plus every non-tensor leaf.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "torchlet/io/save.hpp"
#include "torchlet/tensor/factory.hpp"

using namespace torchlet;

namespace {

/// A contiguous tensor whose flat element i is (with k = i*7 + seed): floats ((k % 19) * 0.25 - 2.0); signed
/// ints (k % 23) - 11; uint8 k % 251; bool (i + seed) % 3 == 0; the storage-only dtypes (uint16/32/64, float8)
/// get raw bytes (b*37 + seed) & 0xFF for byte b.
Tensor fill(DType dt, const Shape& shape, int64_t seed) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  if (!has_kernels(dt)) {
    Tensor t = empty(shape, dt);
    auto* p = static_cast<uint8_t*>(t.data_ptr());
    for (int64_t b = 0; b < n * element_size(dt); ++b) p[b] = uint8_t((b * 37 + seed) & 0xFF);
    return t;
  }
  if (is_floating_point(dt)) {
    Tensor t = empty(shape, kFloat64);
    double* p = t.data<double>();
    for (int64_t i = 0; i < n; ++i) p[i] = double((i * 7 + seed) % 19) * 0.25 - 2.0;
    return t.to(dt, /*copy=*/true);
  }
  Tensor t = empty(shape, kInt64);
  int64_t* p = t.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = i * 7 + seed;
    p[i] = dt == kBool ? int64_t((i + seed) % 3 == 0) : dt == kUInt8 ? k % 251 : k % 23 - 11;
  }
  return t.to(dt, /*copy=*/true);
}

Value metadata(std::initializer_list<std::pair<const char*, int>> modules) {
  ValueDict m;
  for (const auto& [name, version] : modules) m.set(name, Value::dict({{"version", version}}));
  return Value(std::move(m));
}

/// conv(3->4, 3x3) + bn(4) + fc(4->10): the keys and shapes of torch.nn modules the checker builds.
Value state_dict() {
  return Value::dict({{"conv.weight", fill(kFloat32, {4, 3, 3, 3}, 1)},
                      {"conv.bias", fill(kFloat32, {4}, 2)},
                      {"bn.weight", fill(kFloat32, {4}, 3)},
                      {"bn.bias", fill(kFloat32, {4}, 4)},
                      {"bn.running_mean", fill(kFloat32, {4}, 5)},
                      {"bn.running_var", fill(kFloat32, {4}, 6)},
                      {"bn.num_batches_tracked", scalar_tensor(12, kInt64)},
                      {"fc.weight", fill(kFloat32, {10, 4}, 7)},
                      {"fc.bias", fill(kFloat32, {10}, 8)},
                      {"__attributes__",
                       Value::dict({{"_metadata", metadata({{"", 1}, {"conv", 1}, {"bn", 2}, {"fc", 1}})}})}});
}

Value dtypes() {
  Value d = Value::dict();
  int64_t seed = 0;
  for (DType dt : {kFloat32, kFloat64, kFloat16, kBFloat16, kInt8, DType::Int16, kInt32, kInt64, kUInt8, kBool})
    d[std::string(dtype_name(dt))] = fill(dt, {3, 5}, seed++);
  d["scalar_f64"] = fill(kFloat64, {}, 3);
  d["empty_i32"] = fill(kInt32, {0, 4}, 0);
  return d;
}

Value views() {
  Tensor base = fill(kFloat32, {24}, 9);
  Tensor other = fill(kInt64, {2, 6}, 4);
  return Value::dict({{"base", base},
                      {"slice", base.slice(0, 5, 17)},
                      {"strided", base.slice(0, 1, 24, 3)},
                      {"t", base.view({4, 6}).t()},
                      {"cube", base.view({2, 3, 4}).permute({2, 0, 1})},
                      {"row", base.view({4, 6}).select(0, 2)},
                      {"expanded", base.slice(0, 0, 1).expand({3, 5})},
                      {"other", other},
                      {"other_col", other.select(1, 3)},
                      {"same_again", Value::list({base, other})}});
}

Value sgd_checkpoint() {
  Value sd = state_dict();
  Value opt = Value::dict(
      {{"state", Value::dict({{0, Value::dict({{"momentum_buffer", fill(kFloat32, {4, 3, 3, 3}, 21)}})},
                              {1, Value::dict({{"momentum_buffer", fill(kFloat32, {4}, 22)}})}})},
       {"param_groups", Value::list({Value::dict({{"lr", 0.1},
                                                  {"momentum", 0.9},
                                                  {"dampening", 0},
                                                  {"weight_decay", 0.0001},
                                                  {"nesterov", false},
                                                  {"maximize", false},
                                                  {"foreach", nullptr},
                                                  {"differentiable", false},
                                                  {"params", Value::list({0, 1})}})})}});
  return Value::dict({{"epoch", 3},
                      {"arch", "tiny"},
                      {"state_dict", sd},
                      {"optimizer", opt},
                      {"best_acc1", 71.5},
                      {"history", Value::list({Value::tuple({1, 0.5}), Value::tuple({2, 0.25})})},
                      {"note", "h\xc3\xa9llo \xe2\x9c\x93"},
                      {"big", int64_t(1) << 50},
                      {"neg", int64_t(-123456789012)},
                      {"none", nullptr},
                      {"flags", Value::list({true, false})}});
}

Value adam_state() {
  auto state = [](int64_t shape0, int64_t seed) {
    return Value::dict({{"step", scalar_tensor(2.0, kFloat32)},
                        {"exp_avg", fill(kFloat32, {shape0}, seed)},
                        {"exp_avg_sq", full({shape0}, 0.25, kFloat32)}});
  };
  Value betas = Value::tuple({0.9, 0.999});
  auto group = [&](double lr, std::initializer_list<int> params) {
    Value::List p;
    for (int i : params) p.emplace_back(i);
    return Value::dict({{"lr", lr},
                        {"betas", betas},
                        {"eps", 1e-08},
                        {"weight_decay", 0},
                        {"amsgrad", false},
                        {"maximize", false},
                        {"foreach", nullptr},
                        {"capturable", false},
                        {"differentiable", false},
                        {"fused", false},
                        {"params", Value::list(std::move(p))}});
  };
  return Value::dict({{"state", Value::dict({{0, state(10, 31)}, {1, state(4, 33)}})},
                      {"param_groups", Value::list({group(0.001, {0}), group(0.01, {1})})}});
}

/// 2500 0-dim views of one storage under 2500 keys: long memo indices, SETITEMS batches, one storage record.
Value many() {
  Tensor base = fill(kInt64, {2500}, 5);
  ValueDict d;
  for (int64_t i = 0; i < 2500; ++i) {
    std::string key = "p";
    key += std::to_string(i);
    d.set(key, base.select(0, i));
  }
  return Value(std::move(d));
}

Value new_dtypes() {
  Value d = Value::dict();
  int64_t seed = 40;
  for (DType dt : {DType::UInt16, DType::UInt32, DType::UInt64, DType::Float8_e4m3fn, DType::Float8_e5m2})
    d[std::string(dtype_name(dt))] = fill(dt, {2, 3}, seed++);
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  try {
    save(dir + "/state_dict.pth", state_dict());
    save(dir + "/dtypes.pth", dtypes());
    save(dir + "/views.pth", views());
    save(dir + "/checkpoint.pth", sgd_checkpoint());
    save(dir + "/adam.pth", adam_state());
    save(dir + "/many.pth", many());
    save(dir + "/new_dtypes.pth", new_dtypes());
    SaveOptions o;
    o.archive_name = "my.model";
    o.durable = false;
    save(dir + "/folder.pth", state_dict(), o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "write_checkpoints: %s\n", e.what());
    return 1;
  }
  std::printf("wrote 8 checkpoints to %s\n", dir.c_str());
  return 0;
}
