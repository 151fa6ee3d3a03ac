// The factories and random fills on the fake "cuda:0" of fake_device.hpp: arange, linspace, eye, full, rand, randn,
// randint, uniform_, normal_ and nn.init give a device tensor holding exactly the CPU's values for the same seed
// (they compute on the CPU with the CPU generator and copy), and advance the generator as the CPU calls do.
#include <doctest/doctest.h>

#include "fake_device.hpp"
#include "torchlet/nn/init.hpp"

using namespace torchlet;
using namespace fake_device;

TEST_CASE("device factories: arange and linspace on the device hold the CPU's values") {
  FakeCuda fake;
  check_same(arange(0, 10, 3, TensorOptions(kInt64, kFake)), arange(0, 10, 3, kInt64), "arange int64");
  check_same(arange(-1.5, 2.0, 0.25, TensorOptions(kFloat32, kFake)), arange(-1.5, 2.0, 0.25, kFloat32),
             "arange float32");
  check_same(arange(5, 0, -1, TensorOptions(kFloat64, kFake)), arange(5, 0, -1, kFloat64), "arange down");
  check_same(linspace(-3, 7, 11, TensorOptions(kFloat32, kFake)), linspace(-3, 7, 11, kFloat32), "linspace");
  check_same(linspace(0, 1, 7, TensorOptions(kBFloat16, kFake)), linspace(0, 1, 7, kBFloat16), "linspace bf16");
  check_same(linspace(0, 10, 4, TensorOptions(kInt32, kFake)), linspace(0, 10, 4, kInt32), "linspace int32");
  check_same(linspace(2, 2, 0, TensorOptions(kFloat32, kFake)), linspace(2, 2, 0, kFloat32), "linspace empty");
  CHECK_THROWS_AS(arange(0, 3, 0, TensorOptions(kInt64, kFake)), ValueError);
}

TEST_CASE("device factories: random tensors on the device equal the CPU's for the same seed") {
  FakeCuda fake;
  Generator cpu_gen(42), dev_gen(42);
  check_same(rand({3, 4}, TensorOptions(kFloat32, kFake), dev_gen), rand({3, 4}, kFloat32, cpu_gen), "rand");
  check_same(randn({5}, TensorOptions(kFloat64, kFake), dev_gen), randn({5}, kFloat64, cpu_gen), "randn");
  check_same(randint(-4, 9, {2, 3}, TensorOptions(kInt64, kFake), dev_gen), randint(-4, 9, {2, 3}, kInt64, cpu_gen),
             "randint");
  check_same(randn({6}, TensorOptions(kBFloat16, kFake), dev_gen), randn({6}, kBFloat16, cpu_gen), "randn bf16");
  // the generators advanced alike
  CHECK(dev_gen.uniform() == cpu_gen.uniform());

  // in-place fills, of a non-contiguous device view too
  Tensor d = zeros({4, 3}, kFake), c = zeros({4, 3});
  Tensor dv = d.t(), cv = c.t();
  uniform_(dv, -2, 3, dev_gen);
  uniform_(cv, -2, 3, cpu_gen);
  check_same(d, c, "uniform_ of a transposed view");
  normal_(d, 1, 0.5, dev_gen);
  normal_(c, 1, 0.5, cpu_gen);
  check_same(d, c, "normal_");

  // the default generator, as nn.init and the module constructors use it
  manual_seed(7);
  const Tensor a = rand({8}, TensorOptions(kFloat32, kFake));
  manual_seed(7);
  check_same(a, rand({8}, kFloat32), "rand with the default generator");
}

TEST_CASE("device factories: nn.init on device parameters draws the CPU's values") {
  FakeCuda fake;
  Tensor d = empty({4, 5}, kFake), c = empty({4, 5});
  manual_seed(3);
  nn::init::kaiming_uniform_(d, {.a = std::sqrt(5.0)});
  manual_seed(3);
  nn::init::kaiming_uniform_(c, {.a = std::sqrt(5.0)});
  check_same(d, c, "kaiming_uniform_");
}
