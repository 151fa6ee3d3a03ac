// The device seam proven on the CPU: a fake "cuda:0" backed by host memory (an allocator labelling host blocks
// cuda:0, a copy hook that copies through the CPU, and DeviceKernels that view the storages as CPU tensors and run
// the CPU kernels). Every routed op must then give the CPU's values bit for bit, without registration every device
// op must raise DeviceError, and operands on two devices must raise the one-line same-device error.
#include <doctest/doctest.h>

#include <functional>
#include <string>

#include "fake_device.hpp"

using namespace torchlet;
using namespace fake_device;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const DeviceError& e) {
    return e.what();
  }
  return "(no DeviceError)";
}
}  // namespace

TEST_CASE("device seam: without a backend every cuda tensor and op raises DeviceError") {
  CHECK_THROWS_AS(empty({2}, kFake), DeviceError);
  CHECK_THROWS_AS(zeros({2}).to(kFake), DeviceError);
  CHECK_THROWS_AS(device_kernels(kFake, "add"), DeviceError);
  CHECK(error_of([] { device_kernels(kFake, "add"); }).find("[add] cannot compute on cuda:0: this program was built "
                                                             "without torchlet's CUDA backend") != std::string::npos);
  // memory but no kernels: each routed op names itself
  FakeCuda fake(/*with_kernels=*/false);
  const Tensor x = arange(0, 6, 1, kFloat32).view({2, 3}).to(kFake);
  CHECK(x.device() == kFake);
  CHECK_THROWS_AS(add(x, x), DeviceError);
  CHECK_THROWS_AS(add(x, 1), DeviceError);
  CHECK_THROWS_AS(exp(x), DeviceError);
  CHECK_THROWS_AS(relu(x), DeviceError);
  CHECK_THROWS_AS(clamp(x, 0, 1), DeviceError);
  CHECK_THROWS_AS(where(gt(x, 1), x, x), DeviceError);
  CHECK_THROWS_AS(sum(x), DeviceError);
  CHECK_THROWS_AS(mean(x, {0}), DeviceError);
  CHECK_THROWS_AS(var(x), DeviceError);
  CHECK_THROWS_AS(max(x, 1), DeviceError);
  CHECK_THROWS_AS(argmax(x), DeviceError);
  CHECK_THROWS_AS(matmul(x, x.t()), DeviceError);
  CHECK_THROWS_AS(softmax(x, 1), DeviceError);
  CHECK_THROWS_AS(ones({2}, kFake), DeviceError);
  CHECK(error_of([&] { (void)exp(x); }).find("[exp] cannot compute on cuda:0") != std::string::npos);
  // ops that are not routed keep their CPU-only message
  CHECK(error_of([&] { (void)dropout(x, 0.5, true); }).find("expected a cpu tensor, got one on cuda:0") !=
        std::string::npos);
}

TEST_CASE("device seam: to(cuda) and back keeps values, dtype and strides") {
  FakeCuda fake;
  for (DType t : {kFloat32, kFloat64, kFloat16, kBFloat16, kInt64, kInt32, kBool, kUInt8}) {
    INFO(t);
    const Tensor src = sub(arange(0, 24, 1, kFloat64), 11).view({2, 3, 4}).to(t);
    const Tensor d = src.to(kFake);
    CHECK(d.device() == kFake);
    CHECK(d.dtype() == t);
    CHECK(d.strides() == src.strides());
    const Tensor back = d.to(kCPU);
    CHECK(back.is_cpu());
    CHECK(std::memcmp(back.data_ptr(), src.data_ptr(), static_cast<size_t>(src.nbytes())) == 0);
    // a non-contiguous source arrives contiguous with the same values
    const Tensor p = src.permute({2, 0, 1});
    const Tensor dp = p.to(kFake);
    CHECK(dp.is_contiguous());
    check_same(dp, p.contiguous(), "permuted");
    // dtype conversion and clone on the device
    check_same(d.to(kFloat32), src.to(kFloat32), "to(float32) on the device");
    check_same(d.clone(), src.clone(), "clone");
    check_same(d.permute({2, 0, 1}).contiguous(), p.contiguous(), "contiguous");
  }
  CHECK(kFake.str() == "cuda:0");
}

TEST_CASE("device seam: every routed op gives the CPU's values") {
  FakeCuda fake;
  Generator gen(7);
  const Tensor a = randn({3, 4}, kFloat32, gen), b = randn({3, 4}, kFloat32, gen), row = randn({4}, kFloat32, gen);
  const Tensor pos = add(rand({3, 4}, kFloat32, gen), 0.5);
  const Tensor ia = randint(-9, 10, {3, 4}, kInt64, gen), ib = add(randint(1, 5, {3, 4}, kInt64, gen), 0);
  const Tensor da = a.to(kFake), db = b.to(kFake), drow = row.to(kFake), dpos = pos.to(kFake);
  const Tensor dia = ia.to(kFake), dib = ib.to(kFake);

  check_same(zeros({2, 3}, kFake), zeros({2, 3}), "zeros");
  check_same(ones({2, 3}, TensorOptions(kInt64, kFake)), ones({2, 3}, kInt64), "ones");
  check_same(full({4}, 2.5, TensorOptions(kFloat64, kFake)), full({4}, 2.5, kFloat64), "full");
  check_same(eye(3, 4, TensorOptions(kFloat32, kFake)), eye(3, 4, kFloat32), "eye");
  {
    Tensor f = empty({2, 2}, kFake);
    f.fill_(-3);
    check_same(f, full({2, 2}, -3.0, kFloat32), "fill_");
  }
  check_same(add(da, db), add(a, b), "add");
  check_same(add(da, drow, 2.5), add(a, row, 2.5), "add broadcast alpha");
  check_same(add(da, 3), add(a, 3), "add scalar");
  check_same(sub(da, db), sub(a, b), "sub");
  check_same(sub(da, 1.5), sub(a, 1.5), "sub scalar");
  check_same(mul(da, drow), mul(a, row), "mul broadcast");
  check_same(mul(da, 0.25), mul(a, 0.25), "mul scalar");
  check_same(div(da, db), div(a, b), "div");
  check_same(div(da, db, "trunc"), div(a, b, "trunc"), "div trunc");
  check_same(div(da, db, "floor"), div(a, b, "floor"), "div floor");
  check_same(div(da, 3), div(a, 3), "div scalar");
  check_same(div(dia, dib, "floor"), div(ia, ib, "floor"), "int div floor");
  check_same(div(dia, dib), div(ia, ib), "int true div");
  check_same(add(dia, da), add(ia, a), "int + float promotes");
  check_same(add(dia, 2), add(ia, 2), "int + scalar");
  check_same(pow(dpos, db), pow(pos, b), "pow tensor");
  check_same(pow(da, 2), pow(a, 2), "pow 2");
  check_same(pow(dpos, 0.5), pow(pos, 0.5), "pow 0.5");
  check_same(pow(dpos, 3.5), pow(pos, 3.5), "pow 3.5");
  check_same(pow(dia, 3), pow(ia, 3), "int pow");
  check_same(neg(da), neg(a), "neg");
  check_same(abs(da), abs(a), "abs");
  check_same(abs(dia), abs(ia), "int abs");
  check_same(exp(da), exp(a), "exp");
  check_same(exp(dia), exp(ia), "exp of int");
  check_same(log(dpos), log(pos), "log");
  check_same(sqrt(dpos), sqrt(pos), "sqrt");
  check_same(relu(da), relu(a), "relu");
  check_same(clamp(da, -0.5, 0.5), clamp(a, -0.5, 0.5), "clamp");
  check_same(clamp(da, std::nullopt, 0.1), clamp(a, std::nullopt, 0.1), "clamp max");
  check_same(clamp(dia, 0), clamp(ia, 0), "int clamp");
  check_same(maximum(da, db), maximum(a, b), "maximum");
  check_same(minimum(da, drow), minimum(a, row), "minimum");
  check_same(eq(da, da), eq(a, a), "eq");
  check_same(ne(da, db), ne(a, b), "ne");
  check_same(lt(da, db), lt(a, b), "lt");
  check_same(le(da, 0), le(a, 0), "le scalar");
  check_same(gt(da, drow), gt(a, row), "gt");
  check_same(ge(dia, 0), ge(ia, 0), "ge int scalar");
  check_same(where(gt(da, 0), da, db), where(gt(a, 0), a, b), "where");
  check_same(where(gt(da, 0), da, 0.0), where(gt(a, 0), a, 0.0), "where scalar");
  check_same(da + db * 2 - db / 4, a + b * 2 - b / 4, "operators");
  check_same(1.0 / dpos, 1.0 / pos, "scalar / tensor");
  {
    Tensor x = a.clone(), dx = a.to(kFake);
    add_(x, b, 0.5);
    add_(dx, db, 0.5);
    mul_(x, 3);
    mul_(dx, 3);
    relu_(x);
    relu_(dx);
    check_same(dx, x, "in place");
  }

  const Tensor c = randn({2, 3, 4}, kFloat64, gen), dc = c.to(kFake);
  check_same(sum(dc), sum(c), "sum all");
  check_same(sum(dc, {0, 2}, true), sum(c, {0, 2}, true), "sum dims keepdim");
  check_same(sum(dia, {1}), sum(ia, {1}), "int sum");
  check_same(sum(dc, {1}, false, kFloat32), sum(c, {1}, false, kFloat32), "sum dtype");
  check_same(mean(dc, {1}), mean(c, {1}), "mean");
  check_same(mean(dc), mean(c), "mean all");
  check_same(var(dc, {2}), var(c, {2}), "var");
  check_same(std_(dc, {0, 1}, 0, true), std_(c, {0, 1}, 0, true), "std");
  check_same(max(dc), max(c), "max all");
  check_same(min(dc), min(c), "min all");
  check_same(max(dc, 1).first, max(c, 1).first, "max dim values");
  check_same(max(dc, 1).second, max(c, 1).second, "max dim indices");
  check_same(min(dc, -1, true).second, min(c, -1, true).second, "min dim keepdim");
  check_same(argmax(dc), argmax(c), "argmax");
  check_same(argmin(dc, 2), argmin(c, 2), "argmin dim");
  check_same(softmax(dc, 1), softmax(c, 1), "softmax");
  check_same(log_softmax(dc, -1), log_softmax(c, -1), "log_softmax");

  const Tensor m = randn({4, 5}, kFloat32, gen), dm = m.to(kFake);
  const Tensor bm = randn({2, 5, 3}, kFloat32, gen), dbm = bm.to(kFake);
  const Tensor ba = randn({2, 3, 5}, kFloat32, gen), dba = ba.to(kFake);
  check_same(mm(da, dm), mm(a, m), "mm");
  check_same(mm(da, dm.t().contiguous().t()), mm(a, m.t().contiguous().t()), "mm strided");
  check_same(matmul(drow, dm), matmul(row, m), "vector @ matrix");
  check_same(matmul(drow, drow), matmul(row, row), "dot");
  check_same(bmm(dba, dbm), bmm(ba, bm), "bmm");
  check_same(matmul(dba, dbm[0].t().contiguous().t()), matmul(ba, bm[0]), "batched @ matrix");
  check_same(matmul(da.unsqueeze(0), dbm.slice(1, 0, 4)), matmul(a.unsqueeze(0), bm.slice(1, 0, 4)),
             "broadcast batch");
  const Tensor bias = randn({5}, kFloat32, gen), dbias = bias.to(kFake);
  check_same(addmm(dbias, da, dm, 0.5, 2), addmm(bias, a, m, 0.5, 2), "addmm");
  check_same(linear(da, dm.t(), dbias), linear(a, m.t(), bias), "linear");
  check_same(matmul(da.to(kBFloat16), dm.to(kBFloat16)), matmul(a.to(kBFloat16), m.to(kBFloat16)), "bf16 matmul");

  // the work happened in the fake's kernels
  for (const char* k : {"add", "add_scalar", "exp", "clamp", "where", "sum", "var", "extreme", "matmul", "softmax",
                        "fill", "div_floor", "pow_scalar", "lt"})
    CHECK_MESSAGE(fake.kernels.calls[k] > 0, k);
}

TEST_CASE("device seam: operands on two devices raise one DeviceError naming both") {
  FakeCuda fake;
  const Tensor c = ones({2, 2}), d = ones({2, 2}).to(kFake);
  for (const auto& f : std::vector<std::function<void()>>{
           [&] { (void)add(c, d); }, [&] { (void)mul(d, c); }, [&] { (void)where(gt(d, 0), c, d); },
           [&] { (void)matmul(c, d); }, [&] { (void)mm(d, c); }, [&] { (void)linear(d, d, sum(c, {0})); },
           [&] { (void)maximum(c, d); }}) {
    const std::string msg = error_of(f);
    CHECK_MESSAGE(msg.find("expected all tensors to be on the same device, but found at least two devices") !=
                      std::string::npos, msg);
    CHECK_MESSAGE((msg.find("cuda:0") != std::string::npos && msg.find("cpu") != std::string::npos), msg);
    CHECK(msg.find('\n') == std::string::npos);
  }
  // a 0-dim CPU tensor joins a device op as a number would, as in PyTorch
  check_same(add(d, scalar_tensor(2.0, kFloat32)), add(c, scalar_tensor(2.0, kFloat32)), "0-dim cpu operand");
}

TEST_CASE("device seam: conv2d forward and backward on the device match the CPU") {
  FakeCuda fake;
  Generator gen(5);
  for (DType t : {kFloat32, kFloat64, kBFloat16}) {
    INFO(t);
    const Tensor x = randn({2, 4, 7, 6}, t, gen), w = randn({6, 2, 3, 3}, t, gen), b = randn({6}, t, gen);
    const Conv2dOptions opt{{2, 1}, {1, 1}, {1, 2}, 2};
    auto run = [&](Device dev) {
      Tensor xd = x.detach().to(dev), wd = w.detach().to(dev), bd = b.detach().to(dev);
      xd.requires_grad_();
      wd.requires_grad_();
      bd.requires_grad_();
      const Tensor y = conv2d(xd, wd, bd, opt);
      sum(mul(y, y)).backward();
      return std::vector<Tensor>{y, xd.grad(), wd.grad(), bd.grad()};
    };
    const auto cpu_r = run(kCPU), dev_r = run(kFake);
    const char* names[] = {"output", "grad input", "grad weight", "grad bias"};
    for (int i = 0; i < 4; ++i) check_same(dev_r[i], cpu_r[i], names[i]);
  }
  // a channels-last input keeps its layout, an unbatched one stays unbatched
  const Tensor x = randn({1, 3, 5, 5}, kFloat32, gen).contiguous(MemoryFormat::ChannelsLast), w = randn({2, 3, 3, 3}, kFloat32, gen);
  const Tensor y = conv2d(x.to(kFake), w.to(kFake));
  CHECK(y.is_contiguous(MemoryFormat::ChannelsLast));
  CHECK(std::memcmp(y.to(kCPU).contiguous().data_ptr(), conv2d(x.contiguous(), w).data_ptr(), 4 * 18) == 0);
  check_same(conv2d(x[0].to(kFake), w.to(kFake)), conv2d(x[0].contiguous(), w), "unbatched");
  CHECK(fake.kernels.calls["conv2d_forward"] > 0);
  CHECK(fake.kernels.calls["conv2d_backward_weight"] > 0);
  CHECK_THROWS_AS(conv2d(x, w.to(kFake)), DeviceError);
}

TEST_CASE("device seam: an MLP forward, backward and SGD step on the device match the CPU") {
  FakeCuda fake;
  auto make = [] {
    manual_seed(3);
    auto net = std::make_shared<nn::Sequential>();
    net->push_back(std::make_shared<nn::Linear>(5, 8));
    net->push_back(std::make_shared<nn::ReLU>());
    net->push_back(std::make_shared<nn::Linear>(8, 3));
    return net;
  };
  Generator gen(11);
  const Tensor x = randn({6, 5}, kFloat32, gen), target = randn({6, 3}, kFloat32, gen);
  auto step = [&](const std::shared_ptr<nn::Sequential>& net, Device dev) {
    net->to(dev);
    optim::SGD opt(net->parameters(), {.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-2});
    Tensor loss;
    for (int i = 0; i < 3; ++i) {  // three steps: the first and later momentum steps
      opt.zero_grad();
      const Tensor y = net->forward(x.to(dev));
      loss = mean(pow(sub(y, target.to(dev)), 2));
      loss.backward();
      opt.step();
    }
    return loss;
  };
  auto cpu_net = make(), dev_net = make();
  const Tensor cpu_loss = step(cpu_net, kCPU), dev_loss = step(dev_net, kFake);
  check_same(dev_loss, cpu_loss, "loss");
  const auto cp = cpu_net->named_parameters(), dp = dev_net->named_parameters();
  REQUIRE(cp.size() == dp.size());
  for (size_t i = 0; i < cp.size(); ++i) {
    check_same(dp[i].second, cp[i].second, cp[i].first.c_str());
    check_same(dp[i].second.grad(), cp[i].second.grad(), (cp[i].first + ".grad").c_str());
  }
  CHECK(fake.kernels.calls["sgd_step"] == 12);
}
