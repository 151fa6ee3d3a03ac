// Channels-last (NHWC) layout: the tensor layer (is_contiguous / contiguous / empty with a MemoryFormat), ops that
// keep the layout (elementwise, batch norm, max pooling, conv2d on its NHWC kernel), Module::to(MemoryFormat), and
// whole ResNets giving the same logits and gradients in both layouts. Reference values are the NCHW results
// (themselves checked against PyTorch in the conv, pool_norm and resnet suites; tests/interop/resnet_conformance.py
// compares channels-last logits of every ResNet with torchvision's).
#include <string>
#include <vector>

#include "helpers.hpp"
#include "torchlet/checkpoint/state_dict_value.hpp"
#include "torchlet/io/load.hpp"
#include "torchlet/io/save.hpp"
#include "torchlet/models.hpp"
#include "torchlet/ops/conv.hpp"
#include "torchlet/ops/loss.hpp"
#include "torchlet/ops/normalization.hpp"
#include "torchlet/ops/pooling.hpp"
#include "torchlet/ops/reduction.hpp"
#include "torchlet/tensor/random.hpp"

using namespace torchlet;
using namespace testing;

namespace {

constexpr MemoryFormat kCL = MemoryFormat::ChannelsLast;

/// Uniform values in [-1, 1) from a fixed seed.
Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype = kFloat32) {
  Generator g(seed);
  Tensor t = empty(shape, dtype);
  uniform_(t, -1, 1, g);
  return t;
}

/// Checks that t is laid out channels-last (and not also in C order, so the check means something).
void check_channels_last(const Tensor& t) {
  CHECK(t.is_contiguous(kCL));
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.suggest_memory_format() == kCL);
}

}  // namespace

TEST_CASE("channels-last tensors: strides, contiguity, copies, autograd") {
  const Tensor x = arange(0, 2 * 3 * 4 * 5, 1, kFloat32).reshape({2, 3, 4, 5});
  CHECK(x.is_contiguous(MemoryFormat::Contiguous));
  CHECK_FALSE(x.is_contiguous(kCL));
  CHECK(x.suggest_memory_format() == MemoryFormat::Contiguous);
  const Tensor y = x.contiguous(kCL);
  CHECK(y.strides() == Shape{60, 1, 15, 3});
  check_channels_last(y);
  check_equal(y, x);
  CHECK(y.contiguous(kCL).is_same(y));           // already laid out: the same tensor
  check_equal(y.contiguous(), x);                // and back to C order
  CHECK(y.contiguous().is_contiguous());
  // the NHWC order in memory: element (n, c, h, w) sits at ((n * H + h) * W + w) * C + c
  CHECK(static_cast<const float*>(y.data_ptr())[((1 * 4 + 2) * 5 + 3) * 3 + 1] == x.select(0, 1).select(0, 1).select(0, 2).select(0, 3).item<float>());
  const Tensor e = empty({2, 3, 4, 5}, kFloat64, kCL);
  CHECK(e.strides() == Shape{60, 1, 15, 3});
  CHECK(e.dtype() == kFloat64);
  // size-1 dims do not decide: [N, C, 1, 1] and [N, 1, H, W] are both layouts at once
  CHECK(zeros({2, 3, 1, 1}).is_contiguous(kCL));
  CHECK(zeros({2, 1, 4, 5}).is_contiguous(kCL));
  CHECK(zeros({2, 3, 1, 1}).suggest_memory_format() == MemoryFormat::Contiguous);
  CHECK_THROWS_WITH_AS(zeros({3, 4}).contiguous(kCL), doctest::Contains("4-D"), ShapeError);
  CHECK_FALSE(zeros({3, 4}).is_contiguous(kCL));

  // contiguous(ChannelsLast) is differentiable: the gradient comes back in the input's shape
  const Tensor a = leaf({2, 3, 2, 2}, 7);
  const Tensor w = leaf({2, 3, 2, 2}, 8);
  sum(a.contiguous(kCL) * w).backward();
  check_equal(a.grad(), w.detach());
}

TEST_CASE("elementwise ops, batch norm and max pooling keep the channels-last layout and the values") {
  const Tensor x = random_tensor({2, 5, 6, 7}, 1), b = random_tensor({2, 5, 6, 7}, 2);
  const Tensor xc = x.contiguous(kCL), bc = b.contiguous(kCL);
  const Tensor r = relu(xc);
  check_channels_last(r);
  check_equal(r, relu(x));
  const Tensor s = xc + bc;
  check_channels_last(s);
  check_equal(s, x + b);
  check_channels_last(xc * 2.5);
  check_equal(xc * 2.5, x * 2.5);
  // mixed layouts follow the first operand of full shape; broadcasting a per-channel tensor keeps the layout
  CHECK((x + bc).is_contiguous());
  check_channels_last(xc + b);
  check_equal(xc + b, x + b);
  const Tensor per_channel = random_tensor({1, 5, 1, 1}, 3);
  check_channels_last(xc * per_channel);
  check_equal(xc * per_channel, x * per_channel);

  const Tensor mean = random_tensor({5}, 4) * 0.1, var = random_tensor({5}, 5) * 0.2 + 1.0;
  const Tensor weight = random_tensor({5}, 6), bias = random_tensor({5}, 7);
  for (const bool training : {false, true}) {
    INFO("training ", training);
    Tensor rm1 = mean.clone(), rv1 = var.clone(), rm2 = mean.clone(), rv2 = var.clone();
    const Tensor want = batch_norm(x, rm1, rv1, weight, bias, {.training = training});
    const Tensor got = batch_norm(xc, rm2, rv2, weight, bias, {.training = training});
    check_channels_last(got);
    check_close(got, want, 1e-6, 1e-6);
    check_close(rm2, rm1, 1e-6, 1e-7);
    check_close(rv2, rv1, 1e-6, 1e-7);
  }

  const Tensor p = max_pool2d(xc, {.kernel_size = {3, 3}, .stride = {2, 2}, .padding = {1, 1}});
  check_channels_last(p);
  check_equal(p, max_pool2d(x, {.kernel_size = {3, 3}, .stride = {2, 2}, .padding = {1, 1}}));
}

TEST_CASE("conv2d on channels-last input runs the NHWC kernel and equals the NCHW result") {
  struct Case {
    const char* name;
    int64_t n, c, h, w, cout, k;
    Conv2dOptions o;
    bool bias;
  };
  const std::vector<Case> cases = {
      {"1x1 pointwise", 2, 8, 5, 6, 12, 1, {}, false},
      {"1x1 pointwise, bias, groups 4", 3, 8, 4, 4, 12, 1, {.groups = 4}, true},
      {"1x1 stride 2 (a downsample)", 2, 8, 7, 7, 16, 1, {.stride = {2, 2}}, false},
      {"3x3 padding 1", 2, 6, 9, 7, 10, 3, {.padding = {1, 1}}, true},
      {"3x3 stride 2 padding 1", 1, 6, 9, 8, 4, 3, {.stride = {2, 2}, .padding = {1, 1}}, false},
      {"3x3 dilation 2 padding 2 groups 3", 2, 9, 8, 8, 6, 3, {.padding = {2, 2}, .dilation = {2, 2}, .groups = 3}, true},
      {"7x7 stride 2 padding 3 on 3 channels (a stem)", 2, 3, 20, 18, 8, 7, {.stride = {2, 2}, .padding = {3, 3}}, false},
      {"3x3 on a batch big enough for parallel tiles", 4, 16, 28, 28, 32, 3, {.padding = {1, 1}}, true},
      {"3x3 grouped 32 (ResNeXt)", 2, 64, 8, 8, 64, 3, {.padding = {1, 1}, .groups = 32}, false},
  };
  for (const auto& c : cases) {
    for (const DType dt : {kFloat32, kFloat64}) {
      INFO(c.name, ", ", dt);
      const Tensor x = random_tensor({c.n, c.c, c.h, c.w}, 11, dt);
      const Tensor w = random_tensor({c.cout, c.c / c.o.groups, c.k, c.k}, 12, dt);
      const Tensor b = c.bias ? random_tensor({c.cout}, 13, dt) : Tensor();
      const Tensor want = conv2d(x, w, b, c.o);
      // channels-last input with a C-order weight, and with a channels-last weight (what Module::to gives)
      for (const Tensor& wl : {w, w.contiguous(kCL)}) {
        const Tensor got = conv2d(x.contiguous(kCL), wl, b, c.o);
        check_channels_last(got);
        check_close(got, want, dt == kFloat32 ? 1e-4 : 1e-12, dt == kFloat32 ? 1e-5 : 1e-12);
      }
    }
  }
  // a C-order input is untouched by a channels-last weight: the result stays in C order
  const Tensor x = random_tensor({2, 4, 6, 6}, 14), w = random_tensor({5, 4, 3, 3}, 15);
  CHECK(conv2d(x, w.contiguous(kCL)).is_contiguous());
  check_close(conv2d(x, w.contiguous(kCL)), conv2d(x, w), 1e-5, 1e-6);
}

TEST_CASE("gradients through channels-last conv, batch norm, relu and pooling equal the NCHW ones (float64)") {
  // gradcheck on a small channels-last chain, then the same gradients as in C order
  const Tensor x = leaf({2, 3, 5, 5}, 21), w = leaf({4, 3, 3, 3}, 22), bn_w = leaf({4}, 23, 0.5, 1.5),
               bn_b = leaf({4}, 24);
  const auto chain = [](const autograd::TensorList& in, MemoryFormat f) {
    const Tensor y = conv2d(in[0].contiguous(f), in[1], {}, {.padding = {1, 1}});
    const Tensor z = relu(batch_norm(y, {}, {}, in[2], in[3], {.training = true}));
    return max_pool2d(z, {.kernel_size = {2, 2}});
  };
  check_grad([&](const autograd::TensorList& in) { return chain(in, kCL); }, {x, w, bn_w, bn_b});
  for (Tensor t : {x, w, bn_w, bn_b}) t.set_grad(Tensor());
  sum(chain({x, w, bn_w, bn_b}, kCL)).backward();
  const std::vector<Tensor> cl_grads = {x.grad().clone(), w.grad().clone(), bn_w.grad().clone(), bn_b.grad().clone()};
  for (Tensor t : {x, w, bn_w, bn_b}) t.set_grad(Tensor());
  sum(chain({x, w, bn_w, bn_b}, MemoryFormat::Contiguous)).backward();
  const std::vector<Tensor> grads = {x.grad(), w.grad(), bn_w.grad(), bn_b.grad()};
  for (size_t i = 0; i < grads.size(); ++i) check_close(cl_grads[i], grads[i], 1e-12, 1e-12);
}

TEST_CASE("Module::to(ChannelsLast): a ResNet gives the same logits and gradients, and saves the same state_dict") {
  manual_seed(5);
  auto model = models::resnet18({.num_classes = 10});
  {  // non-trivial running statistics
    autograd::NoGradGuard no_grad;
    model->train();
    (*model)(random_tensor({4, 3, 48, 48}, 31));
  }
  const Tensor x = random_tensor({2, 3, 48, 48}, 32);
  model->eval();
  Tensor want, got;
  {
    autograd::NoGradGuard no_grad;
    want = (*model)(x);
    model->to(kCL);
    check_channels_last(model->get_parameter("layer1.0.conv1.weight"));
    CHECK(model->get_parameter("fc.weight").is_contiguous());  // 2-D tensors are left alone
    got = (*model)(x.contiguous(kCL));
  }
  check_close(got, want, 1e-4, 1e-5);
  // folding the BatchNorms on top keeps the logits too (the fastest inference setting)
  {
    autograd::NoGradGuard no_grad;
    auto folded = models::resnet18({.num_classes = 10});
    folded->load_state_dict(model->state_dict());
    models::fold_batchnorm(*folded);
    folded->to(kCL);
    check_close((*folded)(x.contiguous(kCL)), want, 1e-4, 1e-5);
  }
  // the state_dict saves and loads back into a C-order model with identical values
  auto copy = models::resnet18({.num_classes = 10});
  copy->load_state_dict(to_state_dict(load_from_bytes(save_to_bytes(to_value(model->state_dict())))));
  copy->eval();
  {
    autograd::NoGradGuard no_grad;
    check_close((*copy)(x), want, 1e-6, 1e-7);
  }
  // a float64 training step in channels-last gives the C-order step's gradients
  model->to(MemoryFormat::Contiguous);
  model->to(kFloat64);
  model->train();
  const Tensor target = tensor<int64_t>({3, 7});
  const auto step = [&](MemoryFormat f) {
    model->zero_grad();
    model->to(f);
    cross_entropy((*model)(x.to(kFloat64).contiguous(f)), target).backward();
    std::vector<Tensor> g;
    for (const std::string n : {"conv1.weight", "layer1.0.bn1.weight", "layer3.0.downsample.0.weight", "fc.weight"})
      g.push_back(model->get_parameter(n).grad().contiguous());
    return g;
  };
  const auto g_cl = step(kCL);
  const auto g_nchw = step(MemoryFormat::Contiguous);
  for (size_t i = 0; i < g_cl.size(); ++i) {
    INFO("gradient ", i);
    check_close(g_cl[i], g_nchw[i], 1e-8, 1e-10);
  }
}
