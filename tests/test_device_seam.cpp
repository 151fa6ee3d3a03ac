// The device seam proven on the CPU: a fake "cuda:0" backed by host memory (an allocator labelling host blocks
// cuda:0, a copy hook that copies through the CPU, and DeviceKernels that view the storages as CPU tensors and run
// the CPU kernels). Every routed op must then give the CPU's values bit for bit, without registration every device
// op must raise DeviceError, and operands on two devices must raise the one-line same-device error.
#include <doctest/doctest.h>

#include <functional>
#include <string>

#include "fake_device.hpp"
#include "torchlet/checkpoint.hpp"
#include "torchlet/data/transforms.hpp"
#include "torchlet/io.hpp"
#include "torchlet/models.hpp"
#include "torchlet/tensor/print.hpp"

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
  CHECK(error_of([&] { (void)max_pool2d(x.view({1, 1, 2, 3}), {.kernel_size = {2}}); })
            .find("[max_pool2d] cannot compute on cuda:0") != std::string::npos);
  CHECK(error_of([&] { (void)batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), {.training = true}); })
            .find("[batch_norm] cannot compute on cuda:0") != std::string::npos);
  CHECK_THROWS_AS(dropout(x, 0.5, true), DeviceError);
  // what is CPU-only by design (the data transforms, which work on decoded images before batching) says so
  CHECK(error_of([&] { (void)data::resize(x.view({1, 2, 3}), 4, 4); })
            .find("[resize] expected a CPU tensor, got cuda:0") != std::string::npos);
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

namespace {
// Runs `f` on leaf copies of `inputs` placed on `dev` and returns its outputs and the leaves' gradients of
// sum(out * out) over the first output (floating outputs only).
std::vector<Tensor> forward_backward(const std::vector<Tensor>& inputs, Device dev,
                                     const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f) {
  std::vector<Tensor> leaves;
  for (const Tensor& t : inputs) {
    Tensor l = t.defined() ? t.detach().to(dev) : t;
    if (l.defined() && l.is_floating_point()) l.requires_grad_();
    leaves.push_back(l);
  }
  std::vector<Tensor> r = f(leaves);
  sum(mul(r[0], r[0])).backward();
  for (const Tensor& l : leaves)
    if (l.defined() && l.requires_grad()) r.push_back(l.grad());
  return r;
}

void check_all_same(const std::vector<Tensor>& dev, const std::vector<Tensor>& cpu, const std::string& what) {
  REQUIRE(dev.size() == cpu.size());
  for (size_t i = 0; i < dev.size(); ++i) {
    CHECK(dev[i].defined() == cpu[i].defined());  // e.g. the gradient of an unused weight
    if (cpu[i].defined()) check_same(dev[i], cpu[i], (what + " #" + std::to_string(i)).c_str());
  }
}
}  // namespace

TEST_CASE("device seam: batch_norm train and eval, forward and backward, match the CPU") {
  FakeCuda fake;
  Generator gen(31);
  for (DType t : {kFloat32, kFloat64, kBFloat16}) {
    for (bool channels_last : {false, true}) {
      for (bool training : {true, false}) {
        INFO(t, " channels_last ", channels_last, " training ", training);
        Tensor x = randn({3, 4, 5, 2}, t, gen);
        if (channels_last) x = x.contiguous(MemoryFormat::ChannelsLast);
        const DType pt = t == kBFloat16 ? kFloat32 : t;
        const Tensor w = randn({4}, pt, gen), b = randn({4}, pt, gen);
        const Tensor rm0 = randn({4}, pt, gen), rv0 = add(rand({4}, pt, gen), 0.5);
        std::vector<Tensor> running;  // per device: running_mean, running_var after the call
        auto run = [&](Device dev) {
          const Tensor rm = rm0.clone().to(dev), rv = rv0.clone().to(dev);
          auto r = forward_backward({x, w, b}, dev, [&](const std::vector<Tensor>& in) {
            auto [y, sm, si] = batch_norm_with_stats(in[0], rm, rv, in[1], in[2], {training, 0.2, 1e-4});
            return std::vector<Tensor>{y, sm, si};
          });
          r.push_back(rm);
          r.push_back(rv);
          return r;
        };
        const auto cpu_r = run(kCPU), dev_r = run(kFake);
        check_all_same(dev_r, cpu_r, "batch_norm");
        CHECK(dev_r[0].is_contiguous(MemoryFormat::ChannelsLast) == channels_last);
      }
    }
  }
  // no affine, no running statistics, 2-D and 3-D inputs
  for (const Shape& s : {Shape{5, 3}, Shape{2, 3, 7}}) {
    const Tensor x = randn(s, kFloat32, gen);
    auto f = [](const std::vector<Tensor>& in) {
      return std::vector<Tensor>{batch_norm(in[0], Tensor(), Tensor(), Tensor(), Tensor(), {.training = true})};
    };
    check_all_same(forward_backward({x}, kFake, f), forward_backward({x}, kCPU, f), "batch_norm without affine");
  }
  CHECK(fake.kernels.calls["batch_norm_forward"] >= 14);
  CHECK(fake.kernels.calls["batch_norm_backward"] >= 14);
  const Tensor x = randn({2, 3, 4}, kFloat32, gen).to(kFake);
  CHECK_THROWS_AS(batch_norm(x, Tensor(), Tensor(), ones({3}), Tensor(), {.training = true}), DeviceError);
}

TEST_CASE("device seam: max, average and adaptive average pooling forward and backward match the CPU") {
  FakeCuda fake;
  Generator gen(37);
  for (DType t : {kFloat32, kFloat64, kBFloat16}) {
    for (bool channels_last : {false, true}) {
      INFO(t, " channels_last ", channels_last);
      Tensor x = randn({2, 3, 9, 8}, t, gen);
      if (channels_last) x = x.contiguous(MemoryFormat::ChannelsLast);
      const MaxPool2dOptions mo{{3, 2}, {2, 1}, {1, 1}, {1, 2}, true};
      auto max_f = [&](const std::vector<Tensor>& in) {
        auto [y, idx] = max_pool2d_with_indices(in[0], mo);
        return std::vector<Tensor>{y, idx};
      };
      const auto max_dev = forward_backward({x}, kFake, max_f), max_cpu = forward_backward({x}, kCPU, max_f);
      check_all_same(max_dev, max_cpu, "max_pool2d");
      CHECK(max_dev[0].is_contiguous(MemoryFormat::ChannelsLast) == channels_last);
      for (bool include_pad : {true, false}) {
        for (int64_t divisor : {0, 5}) {
          AvgPool2dOptions ao{{3, 3}, {2, 2}, {1, 1}, true, include_pad};
          if (divisor) ao.divisor_override = divisor;
          auto avg_f = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{avg_pool2d(in[0], ao)}; };
          check_all_same(forward_backward({x}, kFake, avg_f), forward_backward({x}, kCPU, avg_f), "avg_pool2d");
        }
      }
      for (const Shape& os : {Shape{1, 1}, Shape{4, 3}, Shape{9, 8}}) {
        auto ad_f = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{adaptive_avg_pool2d(in[0], os)}; };
        check_all_same(forward_backward({x}, kFake, ad_f), forward_backward({x}, kCPU, ad_f), "adaptive_avg_pool2d");
      }
    }
  }
  // unbatched input, max_pool2d without indices
  const Tensor u = randn({3, 6, 6}, kFloat32, gen);
  auto f = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{max_pool2d(in[0], {.kernel_size = {2}})}; };
  check_all_same(forward_backward({u}, kFake, f), forward_backward({u}, kCPU, f), "unbatched max_pool2d");
  CHECK(fake.kernels.calls["max_pool2d"] >= 7);
  CHECK(fake.kernels.calls["max_pool2d_backward"] >= 7);
  CHECK(fake.kernels.calls["avg_pool2d_backward"] >= 24);
  CHECK(fake.kernels.calls["adaptive_avg_pool2d_backward"] >= 18);
  CHECK_THROWS_AS(avg_pool2d(ones({1, 1, 2, 2}, kInt64).to(kFake), {.kernel_size = {2}}), DTypeError);
}

TEST_CASE("device seam: nll_loss and cross_entropy with weights, ignore_index, smoothing and reductions match the CPU") {
  FakeCuda fake;
  Generator gen(41);
  for (DType t : {kFloat32, kFloat64}) {
    for (const Shape& s : {Shape{5}, Shape{6, 5}, Shape{3, 5, 2, 2}}) {
      const Tensor x = randn(s, t, gen);
      Shape ts = s;
      ts.erase(ts.begin() + (s.size() == 1 ? 0 : 1));
      Tensor target = randint(0, 5, ts, kInt64, gen);
      if (target.numel() > 2) target.view({-1})[1].fill_(-100);  // one ignored target
      const Tensor w = add(rand({5}, t, gen), 0.5);
      for (Reduction red : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
        for (bool weighted : {false, true}) {
          for (double smoothing : {0.0, 0.1}) {
            INFO(t, " ", shape_str(s), " reduction ", static_cast<int>(red), " weighted ", weighted, " smoothing ",
                 smoothing);
            auto ce = [&](const std::vector<Tensor>& in) {
              CrossEntropyOptions o{weighted ? in[2] : Tensor(), -100, red, smoothing};
              return std::vector<Tensor>{cross_entropy(in[0], in[1], o)};
            };
            check_all_same(forward_backward({x, target, w}, kFake, ce), forward_backward({x, target, w}, kCPU, ce),
                           "cross_entropy");
            auto nll = [&](const std::vector<Tensor>& in) {
              return std::vector<Tensor>{nll_loss(in[0], in[1], {weighted ? in[2] : Tensor(), -100, red})};
            };
            check_all_same(forward_backward({x, target, w}, kFake, nll), forward_backward({x, target, w}, kCPU, nll),
                           "nll_loss");
          }
        }
      }
    }
  }
  CHECK(fake.kernels.calls["nll_forward"] >= 144);
  CHECK(fake.kernels.calls["nll_backward"] >= 144);
  // a bad target is still one IndexError; a CPU weight with device input is a DeviceError
  const Tensor x = randn({2, 3}, kFloat32, gen).to(kFake);
  CHECK_THROWS_AS(cross_entropy(x, tensor(std::vector<int64_t>{0, 3}).to(kFake)), IndexError);
  CHECK_THROWS_AS(cross_entropy(x, tensor(std::vector<int64_t>{0, 1}).to(kFake), {.weight = ones({3})}), DeviceError);
}

TEST_CASE("device seam: cat and dropout match the CPU") {
  FakeCuda fake;
  Generator gen(43);
  const Tensor a = randn({2, 3}, kFloat32, gen), b = randn({2, 1}, kFloat32, gen), e = empty({0}, kFloat32);
  auto cat_f = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{cat({in[0], in[2], in[1]}, 1)}; };
  check_all_same(forward_backward({a, b, e}, kFake, cat_f), forward_backward({a, b, e}, kCPU, cat_f), "cat");
  check_same(cat({a.to(kFake), b.to(kFloat64).to(kFake)}, -1), cat({a, b.to(kFloat64)}, -1), "cat promoting");
  check_same(stack({a.to(kFake), a.to(kFake)}, 1), stack({a, a}, 1), "stack");
  CHECK_THROWS_AS(cat({a, b.to(kFake)}, 1), DeviceError);
  for (DType t : {kFloat32, kFloat16}) {
    for (double p : {0.3, 1.0}) {
      INFO(t, " p ", p);
      const Tensor x = randn({4, 7}, t, gen);
      auto run = [&](Device dev) {
        Generator g(9);
        return forward_backward({x}, dev, [&](const std::vector<Tensor>& in) {
          auto [y, m] = dropout_with_mask(in[0], p, true, g);
          return std::vector<Tensor>{y, m};
        });
      };
      check_all_same(run(kFake), run(kCPU), "dropout");
    }
  }
  check_same(dropout(a.to(kFake), 0.5, false), a, "dropout in evaluation");
}

TEST_CASE("device seam: a ResNet-18 trains on the device as on the CPU, bit for bit") {
  FakeCuda fake;
  auto make = [] {
    manual_seed(7);
    return models::resnet18({.num_classes = 10});
  };
  Generator gen(47);
  const Tensor x = randn({2, 3, 32, 32}, kFloat32, gen), y = tensor(std::vector<int64_t>{3, 7});
  auto train = [&](const std::shared_ptr<models::ResNet>& net, Device dev) {
    net->to(dev);
    net->train();
    optim::SGD opt(nn::trainable_parameters(*net), {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
    std::vector<Tensor> losses;
    const Tensor xd = x.to(dev), yd = y.to(dev);
    const int reads_before = host_reads;
    for (int i = 0; i < 2; ++i) {  // the first step makes the momentum buffers, the second uses them
      opt.zero_grad();
      const Tensor loss = cross_entropy(net->forward(xd), yd);
      loss.backward();
      opt.step();
      losses.push_back(loss);
    }
    // nothing in forward, loss, backward or the optimizer step reads device memory on the host: on a GPU a
    // training step never waits for the device (issue 9; CUDA graphs need it too)
    CHECK_MESSAGE(host_reads == reads_before, "device -> host copies in two training steps: ", host_reads - reads_before);
    net->eval();
    autograd::NoGradGuard no_grad;
    losses.push_back(net->forward(x.to(dev)));
    return losses;
  };
  const auto cpu_net = make(), dev_net = make();
  const auto cpu_r = train(cpu_net, kCPU), dev_r = train(dev_net, kFake);
  check_all_same(dev_r, cpu_r, "losses and evaluation logits");
  const nn::StateDict cs = cpu_net->state_dict(), ds = dev_net->state_dict();
  REQUIRE(cs.size() == ds.size());
  for (size_t i = 0; i < cs.size(); ++i) {
    REQUIRE(cs.items()[i].first == ds.items()[i].first);
    check_same(ds.items()[i].second, cs.items()[i].second, cs.items()[i].first.c_str());
  }
  const auto cp = cpu_net->named_parameters(), dp = dev_net->named_parameters();
  for (size_t i = 0; i < cp.size(); ++i) check_same(dp[i].second.grad(), cp[i].second.grad(), cp[i].first.c_str());
  for (const char* k : {"batch_norm_forward", "batch_norm_backward", "max_pool2d", "max_pool2d_backward",
                        "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "nll_forward", "nll_backward",
                        "conv2d_forward", "softmax", "sgd_step"})
    CHECK_MESSAGE(fake.kernels.calls[k] > 0, k);
  // reading device tensors: item(), printing and saving copy to the CPU
  CHECK(dev_r[1].item<double>() == cpu_r[1].item<double>());
  CHECK(to_string(dev_r[1]).find("device='cuda:0'") != std::string::npos);
  CHECK(save_to_bytes(to_value(ds)) == save_to_bytes(to_value(cs)));
}
