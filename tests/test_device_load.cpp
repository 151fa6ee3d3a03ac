// Checkpoints and devices, on the fake "cuda:0" of fake_device.hpp: a file whose tensors PyTorch saved from cuda:0
// (tests/fixtures/gen/device_location.py) loads on the CPU without any backend; map_location puts every tensor on
// the device with shared storages kept shared; saving device tensors writes the CPU's bytes; and a model on the
// device loads a state_dict from a file.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fake_device.hpp"
#include "fixture_files.hpp"
#include "torchlet/checkpoint/load_weights.hpp"
#include "torchlet/io/load.hpp"
#include "torchlet/io/npy.hpp"
#include "torchlet/io/save.hpp"

using namespace torchlet;
using namespace fake_device;
using testing::fixture_path;

namespace {
const char* const kNames[] = {"weight", "weight_t", "bias", "step"};

bool same_values(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.sizes() != b.sizes()) return false;
  const Tensor x = a.to(kCPU).contiguous(), y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), static_cast<size_t>(y.nbytes())) == 0;
}

bool contains(const std::vector<uint8_t>& bytes, std::string_view s) {
  return std::search(bytes.begin(), bytes.end(), s.begin(), s.end()) != bytes.end();
}
}  // namespace

TEST_CASE("device load: tensors saved from cuda:0 load on the CPU without a CUDA backend") {
  for (bool mmap : {false, true}) {
    INFO("mmap " << mmap);
    const Value v = load(fixture_path("dl_cuda0.pth"), {.mmap = mmap});
    for (const char* name : kNames) {
      INFO(name);
      const Tensor t = v.at(name).as_tensor();
      CHECK(t.is_cpu());
      CHECK(same_values(t, load_npy(fixture_path(std::string("dl_cuda0_") + name + ".npy"))));
    }
    CHECK(v.at("weight_t").as_tensor().storage().data() == v.at("weight").as_tensor().storage().data());
    // an explicit CPU map_location is the same
    const Value c = load(fixture_path("dl_cuda0.pth"), {.mmap = mmap, .map_location = kCPU});
    CHECK(c.at("bias").as_tensor().is_cpu());
  }
}

TEST_CASE("device load: map_location puts every tensor on the device, shared storages stay shared") {
  FakeCuda fake;
  for (bool mmap : {false, true}) {
    INFO("mmap " << mmap);
    const Value v = load(fixture_path("dl_cuda0.pth"), {.mmap = mmap, .map_location = kFake});
    for (const char* name : kNames) {
      INFO(name);
      const Tensor t = v.at(name).as_tensor();
      CHECK(t.device() == kFake);
      CHECK(same_values(t, load_npy(fixture_path(std::string("dl_cuda0_") + name + ".npy"))));
    }
    const Tensor w = v.at("weight").as_tensor(), wt = v.at("weight_t").as_tensor();
    CHECK(wt.storage().data() == w.storage().data());
    CHECK(wt.strides() == Shape{1, 3});
  }
  const std::vector<uint8_t> bytes = testing::file_bytes(fixture_path("dl_cuda0.pth"));
  const Value m = load_from_bytes(bytes, {.map_location = kFake});
  CHECK(m.at("step").as_tensor().device() == kFake);
  CHECK(m.at("step").as_tensor().dim() == 0);
}

TEST_CASE("device load: map_location to a device without a backend raises DeviceError") {
  CHECK_THROWS_AS(load(fixture_path("dl_cuda0.pth"), {.map_location = kFake}), DeviceError);
}

TEST_CASE("device load: saving device tensors writes what saving their CPU copies writes (location 'cpu')") {
  FakeCuda fake;
  Generator gen(3);
  const Tensor a = randn({4, 5}, kFloat32, gen), b = randn({7}, kFloat64, gen);
  const Tensor da = a.to(kFake), db = b.to(kFake);
  const Value on_cpu = Value::dict({{"a", a}, {"a_t", a.t()}, {"b", b}});
  const Value on_dev = Value::dict({{"a", da}, {"a_t", da.t()}, {"b", db}});
  const std::vector<uint8_t> bytes = save_to_bytes(on_dev);
  CHECK(bytes == save_to_bytes(on_cpu));
  CHECK(contains(bytes, "cpu"));
  CHECK(!contains(bytes, "cuda"));
  const Value back = load_from_bytes(bytes, {.map_location = kFake});
  check_same(back.at("a").as_tensor(), a, "a");
  check_same(back.at("a_t").as_tensor(), a.t(), "a_t");
  check_same(back.at("b").as_tensor(), b, "b");
}

TEST_CASE("device load: a model on the device loads a state_dict saved from the CPU") {
  FakeCuda fake;
  auto make = [](uint64_t seed) {
    manual_seed(seed);
    auto net = std::make_shared<nn::Sequential>();
    net->push_back(std::make_shared<nn::Linear>(3, 4));
    net->push_back(std::make_shared<nn::BatchNorm1d>(4));
    return net;
  };
  auto source = make(1);
  const std::vector<uint8_t> bytes = save_to_bytes(to_value(*source));
  for (bool to_device_first : {false, true}) {
    INFO("map_location " << to_device_first);
    auto target = make(2);
    target->to(kFake);
    const Value file = to_device_first ? load_from_bytes(bytes, {.map_location = kFake}) : load_from_bytes(bytes);
    const LoadReport report = load_weights(*target, file);
    CHECK(report.all_matched());
    const auto want = source->state_dict(), got = target->state_dict();
    REQUIRE(want.size() == got.size());
    for (const auto& [key, t] : want) {
      const Tensor* g = got.find(key);
      REQUIRE(g != nullptr);
      check_same(*g, t, key.c_str());
    }
  }
  // nn::Module::load_state_dict straight from CPU tensors
  auto direct = make(3);
  direct->to(kFake);
  direct->load_state_dict(source->state_dict());
  check_same(direct->named_parameters()[0].second, source->named_parameters()[0].second, "0.weight");
}
