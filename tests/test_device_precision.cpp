// 16-bit and channels-last on the fake "cuda:0" of fake_device.hpp: the op layer hands float16 / bfloat16 operands
// to the device's matmul and conv kernels as they are (the fake computes them in float32 and rounds once, as the
// CPU does, so results match the CPU bit for bit), and channels-last convolutions run channels-last on the device
// (forward and both backward passes) with the CPU's NCHW values.
#include <doctest/doctest.h>

#include "fake_device.hpp"

using namespace torchlet;
using namespace fake_device;

TEST_CASE("device precision: 16-bit matmul, mm, addmm and linear reach the device kernels as 16-bit") {
  for (DType t : {kBFloat16, kFloat16}) {
    INFO(dtype_name(t));
    FakeCuda fake;
    Generator gen(17);
    const Tensor a = randn({2, 3, 5}, t, gen), b = randn({5, 4}, t, gen), c = randn({3, 4}, t, gen);
    const Tensor w = randn({4, 5}, t, gen), bias = randn({4}, t, gen);
    const Tensor da = a.to(kFake), db = b.to(kFake), dc = c.to(kFake), dw = w.to(kFake), dbias = bias.to(kFake);
    check_same(matmul(da, db), matmul(a, b), "matmul batched");
    check_same(mm(da[0], db), mm(a[0], b), "mm");
    check_same(addmm(dc, da[1], db, 0.5, 2), addmm(c, a[1], b, 0.5, 2), "addmm");
    check_same(linear(da, dw, dbias), linear(a, w, bias), "linear");
    CHECK(fake.kernels.calls["matmul_16bit"] == fake.kernels.calls["matmul"]);
    CHECK(fake.kernels.calls["matmul"] >= 4);
    CHECK(fake.kernels.calls["copy"] == 0);  // no conversions on the device
  }
}

TEST_CASE("device precision: 16-bit conv2d forward and backward match the CPU") {
  for (DType t : {kBFloat16, kFloat16}) {
    INFO(dtype_name(t));
    FakeCuda fake;
    Generator gen(5);
    const Tensor x = randn({2, 3, 6, 5}, t, gen), w = randn({4, 3, 3, 3}, t, gen), b = randn({4}, t, gen);
    auto run = [&](Device dev) {
      Tensor xd = x.clone().to(dev).requires_grad_(), wd = w.clone().to(dev).requires_grad_();
      Tensor bd = b.clone().to(dev).requires_grad_();
      const Tensor y = conv2d(xd, wd, bd, {.stride = {2, 1}, .padding = {1, 1}});
      sum(mul(y, y.detach())).backward();
      return std::vector<Tensor>{y, xd.grad(), wd.grad(), bd.grad()};
    };
    const auto cpu = run(kCPU), dev = run(kFake);
    const char* names[] = {"output", "grad input", "grad weight", "grad bias"};
    for (size_t i = 0; i < cpu.size(); ++i) check_same(dev[i], cpu[i], names[i]);
    CHECK(fake.kernels.calls["conv2d_16bit"] == 4);
  }
}

TEST_CASE("device precision: a channels-last conv2d runs channels-last on the device, forward and backward") {
  FakeCuda fake;
  Generator gen(8);
  const Tensor x = randn({2, 3, 7, 6}, kFloat32, gen), w = randn({5, 3, 3, 2}, kFloat32, gen);
  const Tensor b = randn({5}, kFloat32, gen);
  // the CPU's NCHW values
  Tensor xc = x.clone().requires_grad_(), wc = w.clone().requires_grad_(), bc = b.clone().requires_grad_();
  const Tensor yc = conv2d(xc, wc, bc, {.padding = {1, 0}});
  sum(mul(yc, yc.detach())).backward();
  // channels-last input and weight on the device
  Tensor xd = x.contiguous(MemoryFormat::ChannelsLast).to(kFake).requires_grad_();
  Tensor wd = w.contiguous(MemoryFormat::ChannelsLast).to(kFake).requires_grad_();
  Tensor bd = b.to(kFake).requires_grad_();
  REQUIRE(xd.is_contiguous(MemoryFormat::ChannelsLast));
  const Tensor yd = conv2d(xd, wd, bd, {.padding = {1, 0}});
  CHECK(yd.is_contiguous(MemoryFormat::ChannelsLast));
  CHECK(!yd.is_contiguous());
  sum(mul(yd, yd.detach())).backward();
  check_same(yd, yc, "output");
  check_same(xd.grad(), xc.grad(), "grad input");
  check_same(wd.grad(), wc.grad(), "grad weight");
  check_same(bd.grad(), bc.grad(), "grad bias");
  CHECK(fake.kernels.calls["conv2d_nhwc"] == 4);
  // an NCHW input stays NCHW
  const Tensor y2 = conv2d(x.to(kFake), w.to(kFake));
  CHECK(y2.is_contiguous());
  CHECK(fake.kernels.calls["conv2d_nhwc"] == 4);
}
