// Every CUDA op against the CPU on random inputs: prints one row per (op, dtype) with the largest absolute and
// relative error and the tolerance, plus checks of the caching allocator, the copy paths, device errors and an
// MLP training step, and CUDA graphs (a captured MLP train step against eager steps). Exits 0 when every row is
// within tolerance, 1 otherwise, and 77 (meson's "skipped") without a CUDA device. Built when the build has CUDA
// (-Dcuda=enabled, or auto with nvcc found).
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "torchlet/cuda.cuh"
#include "torchlet/nn.hpp"
#include "torchlet/ops/activation.hpp"
#include "torchlet/ops/conv.hpp"
#include "torchlet/ops/join.hpp"
#include "torchlet/ops/linalg.hpp"
#include "torchlet/ops/loss.hpp"
#include "torchlet/ops/normalization.hpp"
#include "torchlet/ops/pooling.hpp"
#include "torchlet/optim.hpp"
#include "torchlet/tensor/random.hpp"

using namespace torchlet;

namespace {
const Device kGPU("cuda:0");
int g_failures = 0;
int g_rows = 0;

/// Tolerance of a result dtype: |gpu - cpu| <= tol * (1 + |cpu|).
double tolerance(DType t, double scale = 1) {
  switch (t) {
    case DType::Float64: return 1e-12 * scale;
    case DType::Float32: return 2e-6 * scale;
    case DType::Float16: return 2e-3 * scale;
    case DType::BFloat16: return 1.6e-2 * scale;
    default: return 0;  // integers and bool: exact
  }
}

void report(const std::string& op, DType t, double max_abs, double max_rel, double tol, bool ok, const char* note = "") {
  ++g_rows;
  if (!ok) ++g_failures;
  std::printf("%-34s %-9s %12.3e %12.3e %10.1e  %s %s\n", op.c_str(), std::string(dtype_name(t)).c_str(), max_abs, max_rel, tol,
              ok ? "ok" : "FAIL", note);
}

/// Compares a GPU result with the CPU's: same dtype and shape, NaN where the CPU has NaN, and
/// |gpu - cpu| <= tol * (1 + |cpu|) elementwise.
void compare(const std::string& op, const Tensor& gpu, const Tensor& cpu, double tol) {
  if (!gpu.is_cuda() || gpu.dtype() != cpu.dtype() || gpu.sizes() != cpu.sizes()) {
    report(op, cpu.dtype(), NAN, NAN, tol, false, "(device, dtype or shape differs)");
    return;
  }
  const Tensor a = gpu.to(kCPU).to(kFloat64).contiguous(), b = cpu.to(kFloat64).contiguous();
  const double* x = a.data<double>();
  const double* y = b.data<double>();
  double max_abs = 0, max_rel = 0;
  bool ok = true;
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (std::isnan(y[i]) || std::isnan(x[i])) {
      ok = ok && std::isnan(x[i]) && std::isnan(y[i]);
      continue;
    }
    if (x[i] == y[i]) continue;  // equal infinities included
    const double d = std::fabs(x[i] - y[i]);
    max_abs = std::max(max_abs, d);
    max_rel = std::max(max_rel, d / std::max(std::fabs(y[i]), 1e-300));
    ok = ok && d <= tol * (1 + std::fabs(y[i]));
  }
  report(op, cpu.dtype(), max_abs, max_rel, tol, ok);
}

/// Runs f on CPU inputs and on their GPU copies and compares the results.
void check(const std::string& op, const std::vector<Tensor>& inputs, const std::function<Tensor(const std::vector<Tensor>&)>& f,
           double tol) {
  std::vector<Tensor> on_gpu;
  for (const Tensor& t : inputs) on_gpu.push_back(t.to(kGPU));
  try {
    const Tensor want = f(inputs);
    const Tensor got = f(on_gpu);
    compare(op, got, want, tol);
  } catch (const std::exception& e) {
    report(op, inputs.empty() ? kFloat32 : inputs[0].dtype(), NAN, NAN, tol, false, e.what());
  }
}

Tensor random_of(DType t, const Shape& sizes, Generator& gen, double lo = -2, double hi = 2) {
  if (t == kBool) return gt(rand(sizes, kFloat32, gen), 0.5);
  if (!is_floating_point(t)) return randint(static_cast<int64_t>(lo) * 5, static_cast<int64_t>(hi) * 5 + 1, sizes, t, gen);
  return add(mul(rand(sizes, kFloat64, gen), hi - lo), lo).to(t);
}

void check_elementwise(Generator& gen) {
  const std::vector<DType> floats{kFloat32, kFloat64, kFloat16, kBFloat16};
  for (DType t : floats) {
    const Tensor a = random_of(t, {33, 65}, gen), b = random_of(t, {33, 65}, gen), row = random_of(t, {65}, gen);
    const Tensor pos = random_of(t, {33, 65}, gen, 0.1, 3);
    const double tol = tolerance(t);
    using V = std::vector<Tensor>;
    check("add", {a, b}, [](const V& v) { return add(v[0], v[1]); }, tol);
    check("add broadcast, alpha 0.5", {a, row}, [](const V& v) { return add(v[0], v[1], 0.5); }, tol);
    check("add scalar", {a}, [](const V& v) { return add(v[0], 1.25); }, tol);
    check("sub", {a, b}, [](const V& v) { return sub(v[0], v[1]); }, tol);
    check("mul", {a, row}, [](const V& v) { return mul(v[0], v[1]); }, tol);
    check("mul scalar", {a}, [](const V& v) { return mul(v[0], -3.0); }, tol);
    check("div", {a, pos}, [](const V& v) { return div(v[0], v[1]); }, tol);
    check("div trunc", {a, pos}, [](const V& v) { return div(v[0], v[1], "trunc"); }, tol);
    check("div floor", {a, pos}, [](const V& v) { return div(v[0], v[1], "floor"); }, tol);
    check("pow tensor", {pos, b}, [](const V& v) { return pow(v[0], v[1]); }, tolerance(t, 4));
    check("pow 2", {a}, [](const V& v) { return pow(v[0], 2); }, tol);
    check("pow 0.5", {pos}, [](const V& v) { return pow(v[0], 0.5); }, tol);
    check("pow 3.5", {pos}, [](const V& v) { return pow(v[0], 3.5); }, tolerance(t, 4));
    check("maximum", {a, b}, [](const V& v) { return maximum(v[0], v[1]); }, 0);
    check("minimum", {a, row}, [](const V& v) { return minimum(v[0], v[1]); }, 0);
    check("neg", {a}, [](const V& v) { return neg(v[0]); }, 0);
    check("abs", {a}, [](const V& v) { return abs(v[0]); }, 0);
    check("relu", {a}, [](const V& v) { return relu(v[0]); }, 0);
    check("exp", {a}, [](const V& v) { return exp(v[0]); }, tolerance(t, 2));
    check("log", {pos}, [](const V& v) { return log(v[0]); }, tolerance(t, 2));
    check("sqrt", {pos}, [](const V& v) { return sqrt(v[0]); }, tol);
    check("clamp", {a}, [](const V& v) { return clamp(v[0], -0.5, 0.75); }, 0);
    check("lt (bool)", {a, b}, [](const V& v) { return lt(v[0], v[1]).to(kFloat32); }, 0);
    check("ge scalar (bool)", {a}, [](const V& v) { return ge(v[0], 0.25).to(kFloat32); }, 0);
    check("eq (bool)", {a, a}, [](const V& v) { return eq(v[0], v[1]).to(kFloat32); }, 0);
    check("where", {a, b}, [](const V& v) { return where(gt(v[0], 0), v[0], v[1]); }, 0);
    check("to float32", {a}, [](const V& v) { return v[0].to(kFloat32); }, 0);
    check("to float16", {a}, [](const V& v) { return v[0].to(kFloat16); }, 0);
    check("to int64", {a}, [](const V& v) { return v[0].to(kInt64); }, 0);
    check("permute + contiguous", {a.view({3, 11, 65})},
          [](const V& v) { return v[0].permute({2, 0, 1}).contiguous(); }, 0);
    check("copy_ broadcast", {row}, [](const V& v) {
      Tensor out = zeros({4, 65}, TensorOptions(v[0].dtype(), v[0].device()));
      out.copy_(v[0]);
      return out;
    }, 0);
  }
  for (DType t : {kInt64, kInt32, kUInt8}) {
    const Tensor a = random_of(t, {17, 31}, gen, 0, 5), b = add(random_of(t, {17, 31}, gen, 0, 3), 1).to(t);
    using V = std::vector<Tensor>;
    check("int add", {a, b}, [](const V& v) { return add(v[0], v[1]); }, 0);
    check("int mul", {a, b}, [](const V& v) { return mul(v[0], v[1]); }, 0);
    check("int div floor", {a, b}, [](const V& v) { return div(v[0], v[1], "floor"); }, 0);
    check("int true div", {a, b}, [](const V& v) { return div(v[0], v[1]); }, tolerance(kFloat32));
    check("int pow 3", {b}, [](const V& v) { return pow(v[0], 3); }, 0);
    check("int abs", {a}, [](const V& v) { return abs(v[0]); }, 0);
    check("int maximum", {a, b}, [](const V& v) { return maximum(v[0], v[1]); }, 0);
    check("int clamp", {a}, [](const V& v) { return clamp(v[0], 1, 8); }, 0);
    check("int -> float32", {a}, [](const V& v) { return v[0].to(kFloat32); }, 0);
  }
  const Tensor z = zeros({5});
  check("zeros/ones/full/fill_", {z}, [](const std::vector<Tensor>& v) {
    Tensor f = full({3, 4}, 2.5, TensorOptions(kFloat32, v[0].device()));
    f.slice(1, 0, 2).fill_(-1);
    return add(f, ones({3, 4}, TensorOptions(kFloat32, v[0].device())));
  }, 0);
}

void check_reductions(Generator& gen) {
  for (DType t : {kFloat32, kFloat64, kFloat16, kBFloat16}) {
    const Tensor x = random_of(t, {8, 37, 129}, gen);
    const double tol = tolerance(t, 8);
    using V = std::vector<Tensor>;
    check("sum all", {x}, [](const V& v) { return sum(v[0]); }, tol);
    check("sum dim 1", {x}, [](const V& v) { return sum(v[0], {1}); }, tol);
    check("sum dims 0,2 keepdim", {x}, [](const V& v) { return sum(v[0], {0, 2}, true); }, tol);
    check("sum of a permuted view", {x}, [](const V& v) { return sum(v[0].permute({2, 0, 1}), {2}); }, tol);
    check("mean dim 2", {x}, [](const V& v) { return mean(v[0], {2}); }, tol);
    check("var dim 0", {x}, [](const V& v) { return var(v[0], {0}); }, tol);
    check("std dims 1,2 (correction 0)", {x}, [](const V& v) { return std_(v[0], {1, 2}, 0); }, tol);
    check("max all", {x}, [](const V& v) { return max(v[0]); }, 0);
    check("max dim 1 values", {x}, [](const V& v) { return max(v[0], 1).first; }, 0);
    check("min dim 2 indices", {x}, [](const V& v) { return min(v[0], 2).second; }, 0);
    check("argmax all", {x}, [](const V& v) { return argmax(v[0]); }, 0);
    check("argmin dim 0", {x}, [](const V& v) { return argmin(v[0], 0); }, 0);
    check("softmax dim 2", {x}, [](const V& v) { return softmax(v[0], 2); }, tolerance(t, 4));
    check("softmax dim 0", {x}, [](const V& v) { return softmax(v[0], 0); }, tolerance(t, 4));
    check("log_softmax dim 1", {x}, [](const V& v) { return log_softmax(v[0], 1); }, tolerance(t, 4));
  }
  const Tensor i = random_of(kInt64, {16, 33}, gen);
  check("int64 sum dim 1", {i}, [](const std::vector<Tensor>& v) { return sum(v[0], {1}); }, 0);
  check("int64 max dim 0", {i}, [](const std::vector<Tensor>& v) { return max(v[0], 0).first; }, 0);
  const Tensor withnan = where(gt(rand({6, 9}, kFloat32, gen), 0.8), NAN, rand({6, 9}, kFloat32, gen));
  check("max with NaN", {withnan}, [](const std::vector<Tensor>& v) { return max(v[0], 1).second; }, 0);
}

void check_matmul(Generator& gen) {
  using V = std::vector<Tensor>;
  for (DType t : {kFloat32, kFloat64, kBFloat16, kFloat16}) {
    const Tensor a = random_of(t, {67, 129}, gen), b = random_of(t, {129, 45}, gen);
    const Tensor ba = random_of(t, {3, 67, 129}, gen), bb = random_of(t, {3, 129, 45}, gen);
    const Tensor bias = random_of(t, {45}, gen), vec = random_of(t, {129}, gen);
    const double tol = tolerance(t, 64);
    check("mm", {a, b}, [](const V& v) { return mm(v[0], v[1]); }, tol);
    check("mm transposed operands", {a, b}, [](const V& v) {
      return mm(v[0].t().contiguous().t(), v[1].t().contiguous().t());
    }, tol);
    check("bmm", {ba, bb}, [](const V& v) { return bmm(v[0], v[1]); }, tol);
    check("matmul batched @ matrix", {ba, b}, [](const V& v) { return matmul(v[0], v[1]); }, tol);
    check("matmul broadcast batch", {a, bb}, [](const V& v) { return matmul(v[0], v[1]); }, tol);
    check("matmul matrix @ vector", {a, vec}, [](const V& v) { return matmul(v[0], v[1]); }, tol);
    check("addmm beta 0.5 alpha 2", {bias, a, b}, [](const V& v) { return addmm(v[0], v[1], v[2], 0.5, 2); }, tol);
    check("linear", {a, b, bias}, [](const V& v) { return linear(v[0], v[1].t(), v[2]); }, tol);
  }
  const Tensor a = random_of(kFloat32, {256, 512}, gen), b = random_of(kFloat32, {512, 128}, gen);
  cuda::allow_tf32() = true;
  check("mm float32 with TF32", {a, b}, [](const V& v) { return mm(v[0], v[1]); }, 5e-3);
  cuda::allow_tf32() = false;
}

void check_conv(Generator& gen) {
  using V = std::vector<Tensor>;
  cuda::cudnn_allow_tf32() = false;
  for (DType t : {kFloat32, kFloat64, kBFloat16}) {
    const Tensor x = random_of(t, {4, 8, 17, 15}, gen), w = random_of(t, {12, 4, 3, 3}, gen), b = random_of(t, {12}, gen);
    const Conv2dOptions opt{{2, 1}, {1, 2}, {1, 2}, 2};
    const double tol = tolerance(t, 64);
    check("conv2d groups/stride/pad/dilation", {x, w, b}, [&](const V& v) { return conv2d(v[0], v[1], v[2], opt); },
          tol);
    const Tensor w1 = random_of(t, {6, 8, 1, 1}, gen);
    check("conv2d 1x1, channels-last input", {x, w1}, [&](const V& v) {
      return conv2d(v[0].contiguous(MemoryFormat::ChannelsLast), v[1]);
    }, tol);
    auto grads = [&](const V& v, int which) {
      Tensor xi = v[0].detach(), wi = v[1].detach(), bi = v[2].detach();
      xi.requires_grad_();
      wi.requires_grad_();
      bi.requires_grad_();
      const Tensor y = conv2d(xi, wi, bi, opt);
      sum(mul(y, y)).backward();
      return which == 0 ? xi.grad() : which == 1 ? wi.grad() : bi.grad();
    };
    check("conv2d grad input", {x, w, b}, [&](const V& v) { return grads(v, 0); }, tol * 4);
    check("conv2d grad weight", {x, w, b}, [&](const V& v) { return grads(v, 1); }, tol * 4);
    check("conv2d grad bias", {x, w, b}, [&](const V& v) { return grads(v, 2); }, tol * 4);
  }
  cuda::cudnn_allow_tf32() = true;
  const Tensor x = random_of(kFloat32, {8, 64, 28, 28}, gen), w = random_of(kFloat32, {64, 64, 3, 3}, gen);
  check("conv2d float32 with TF32", {x, w}, [&](const V& v) { return conv2d(v[0], v[1], Tensor(), {{1, 1}, {1, 1}}); },
        5e-3);
}

/// 16-bit convolutions run natively (cuDNN, float32 compute) and channels-last ones run NHWC on cuDNN: forward
/// and both backward passes of channels-last inputs in float32, bfloat16 and float16, against the CPU's NCHW.
void check_conv_layouts(Generator& gen) {
  using V = std::vector<Tensor>;
  cuda::cudnn_allow_tf32() = false;
  for (DType t : {kFloat32, kBFloat16, kFloat16}) {
    const Tensor x = random_of(t, {4, 16, 14, 13}, gen), w = random_of(t, {32, 16, 3, 3}, gen);
    const Tensor b = random_of(t, {32}, gen);
    const Conv2dOptions opt{{1, 2}, {1, 1}, {1, 1}, 1};
    const double tol = tolerance(t, 64);
    auto nhwc = [](const Tensor& v) { return v.contiguous(MemoryFormat::ChannelsLast); };
    check("conv2d channels-last", {x, w, b}, [&](const V& v) {
      const Tensor y = conv2d(nhwc(v[0]), nhwc(v[1]), v[2], opt);
      if (y.is_cuda() && !y.is_contiguous(MemoryFormat::ChannelsLast)) throw std::runtime_error("output not NHWC");
      return y.contiguous();
    }, tol);
    auto grads = [&](const V& v, int which) {
      Tensor xi = nhwc(v[0].detach()), wi = nhwc(v[1].detach()), bi = v[2].detach();
      xi.requires_grad_();
      wi.requires_grad_();
      bi.requires_grad_();
      const Tensor y = conv2d(xi, wi, bi, opt);
      sum(mul(y, y.detach())).backward();
      return (which == 0 ? xi.grad() : which == 1 ? wi.grad() : bi.grad()).contiguous();
    };
    check("conv2d channels-last grad input", {x, w, b}, [&](const V& v) { return grads(v, 0); }, tol * 4);
    check("conv2d channels-last grad weight", {x, w, b}, [&](const V& v) { return grads(v, 1); }, tol * 4);
    check("conv2d channels-last grad bias", {x, w, b}, [&](const V& v) { return grads(v, 2); }, tol * 4);
    if (t == kFloat16)
      check("conv2d float16 NCHW", {x, w, b}, [&](const V& v) { return conv2d(v[0], v[1], v[2], opt); }, tol);
  }
  cuda::cudnn_allow_tf32() = true;
}

void check_training_step() {
  auto make = [] {
    manual_seed(5);
    auto net = std::make_shared<nn::Sequential>();
    net->push_back(std::make_shared<nn::Linear>(32, 64));
    net->push_back(std::make_shared<nn::ReLU>());
    net->push_back(std::make_shared<nn::Linear>(64, 10));
    return net;
  };
  Generator gen(9);
  const Tensor x = randn({16, 32}, kFloat32, gen), target = randn({16, 10}, kFloat32, gen);
  auto train = [&](const std::shared_ptr<nn::Sequential>& net, Device dev) {
    net->to(dev);
    optim::SGD opt(net->parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3});
    for (int i = 0; i < 5; ++i) {
      opt.zero_grad();
      const Tensor loss = mean(pow(sub(softmax(net->forward(x.to(dev)), 1), target.to(dev)), 2));
      loss.backward();
      opt.step();
    }
  };
  auto cpu_net = make(), gpu_net = make();
  try {
    train(cpu_net, kCPU);
    train(gpu_net, kGPU);
    const auto cp = cpu_net->named_parameters(), gp = gpu_net->named_parameters();
    for (size_t i = 0; i < cp.size(); ++i) {
      compare("MLP 5 SGD steps: " + cp[i].first, gp[i].second, cp[i].second, 1e-5);
      compare("MLP 5 SGD steps: " + cp[i].first + ".grad", gp[i].second.grad(), cp[i].second.grad(), 1e-5);
    }
  } catch (const std::exception& e) {
    report("MLP 5 SGD steps", kFloat32, NAN, NAN, 0, false, e.what());
  }
}

/// The gradient of sum(f(v)^2) with respect to v[which], for leaf copies of v (the floating ones among the first
/// `differentiable` require grad).
Tensor grad_of(const std::vector<Tensor>& v, size_t which, const std::function<Tensor(const std::vector<Tensor>&)>& f,
               size_t differentiable = 3) {
  std::vector<Tensor> leaves;
  for (const Tensor& t : v) {
    Tensor l = t.defined() ? t.detach() : t;
    if (l.defined() && l.is_floating_point() && leaves.size() < differentiable) l.requires_grad_();
    leaves.push_back(l);
  }
  const Tensor y = f(leaves);
  sum(mul(y, y)).backward();
  return leaves[which].grad();
}

void check_batch_norm(Generator& gen) {
  using V = std::vector<Tensor>;
  for (DType t : {kFloat32, kFloat64, kBFloat16}) {
    const DType pt = t == kBFloat16 ? kFloat32 : t;
    const double tol = tolerance(t, 64);
    for (bool channels_last : {false, true}) {
      const std::string layout = channels_last ? " channels-last" : "";
      Tensor x = random_of(t, {8, 16, 9, 7}, gen);
      if (channels_last) x = x.contiguous(MemoryFormat::ChannelsLast);
      const Tensor w = random_of(pt, {16}, gen), b = random_of(pt, {16}, gen);
      const Tensor rm = random_of(pt, {16}, gen), rv = add(rand({16}, pt, gen), 0.5);
      for (bool training : {true, false}) {
        const std::string mode = training ? " train" : " eval";
        auto f = [&](const V& v) {
          return batch_norm(v[0], v[3].clone(), v[4].clone(), v[1], v[2], {training, 0.1, 1e-5});
        };
        check("batch_norm" + mode + layout, {x, w, b, rm, rv}, f, tol);
        for (size_t k = 0; k < 3; ++k)
          check("batch_norm" + mode + layout + (k == 0 ? " grad input" : k == 1 ? " grad weight" : " grad bias"),
                {x, w, b, rm, rv}, [&](const V& v) { return grad_of(v, k, f); }, tol * 16);
      }
      // the running statistics after one training step (momentum 0.1, unbiased variance)
      for (int k = 0; k < 2; ++k)
        check(std::string("batch_norm running_") + (k == 0 ? "mean" : "var") + layout, {x, w, b, rm, rv},
              [&](const V& v) {
                Tensor m = v[3].clone(), var = v[4].clone();
                (void)batch_norm(v[0], m, var, v[1], v[2], {true, 0.1, 1e-5});
                return k == 0 ? m : var;
              }, tol);
    }
  }
}

void check_pooling(Generator& gen) {
  using V = std::vector<Tensor>;
  for (DType t : {kFloat32, kFloat64, kBFloat16}) {
    const double tol = tolerance(t, 16);
    const Tensor x = random_of(t, {4, 8, 17, 15}, gen);
    const std::vector<std::pair<std::string, std::function<Tensor(const V&)>>> pools{
        {"max_pool2d 3x3/2 pad 1", [](const V& v) { return max_pool2d(v[0], {{3}, {2}, {1}}); }},
        {"max_pool2d dilation 2 ceil", [](const V& v) { return max_pool2d(v[0], {{3, 2}, {2, 1}, {1, 1}, {2, 2}, true}); }},
        {"max_pool2d indices", [](const V& v) { return max_pool2d_with_indices(v[0], {{3}, {2}, {1}}).second.to(kFloat64); }},
        {"avg_pool2d 3x3/2 pad 1", [](const V& v) { return avg_pool2d(v[0], {{3}, {2}, {1}}); }},
        {"avg_pool2d no pad count, ceil", [](const V& v) { return avg_pool2d(v[0], {{3}, {2}, {1}, true, false}); }},
        {"avg_pool2d divisor 5", [](const V& v) { return avg_pool2d(v[0], {{2}, {2}, {0}, false, true, 5}); }},
        {"adaptive_avg_pool2d 1x1", [](const V& v) { return adaptive_avg_pool2d(v[0], {1, 1}); }},
        {"adaptive_avg_pool2d 5x4", [](const V& v) { return adaptive_avg_pool2d(v[0], {5, 4}); }},
    };
    for (const auto& [name, f] : pools) {
      check(name, {x}, f, tol);
      if (name != "max_pool2d indices") check(name + " grad", {x}, [&](const V& v) { return grad_of(v, 0, f); }, tol * 4);
    }
    check("max_pool2d channels-last", {x}, [](const V& v) {
      return max_pool2d(v[0].contiguous(MemoryFormat::ChannelsLast), {{2}, {2}});
    }, tol);
  }
}

void check_losses(Generator& gen) {
  using V = std::vector<Tensor>;
  for (DType t : {kFloat32, kFloat64}) {
    const double tol = tolerance(t, 64);
    const Tensor x = random_of(t, {64, 10}, gen), w = add(rand({10}, t, gen), 0.5);
    Tensor target = randint(0, 10, {64}, kInt64, gen);
    target[5].fill_(-100);
    for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
      const std::string red = r == Reduction::Mean ? " mean" : r == Reduction::Sum ? " sum" : " none";
      for (double smoothing : {0.0, 0.1}) {
        const std::string name = "cross_entropy weight ignore" + red + (smoothing > 0 ? " smooth 0.1" : "");
        auto f = [=](const V& v) { return cross_entropy(v[0], v[1], {v[2], -100, r, smoothing}); };
        check(name, {x, target, w}, f, tol);
        check(name + " grad", {x, target, w}, [&](const V& v) { return grad_of(v, 0, f); }, tol);
      }
      auto nll = [=](const V& v) { return nll_loss(log_softmax(v[0], 1), v[1], {Tensor(), -100, r}); };
      check("nll_loss" + red, {x, target}, nll, tol);
      check("nll_loss" + red + " grad", {x, target}, [&](const V& v) { return grad_of(v, 0, nll); }, tol);
    }
  }
  const Tensor a = random_of(kFloat32, {3, 4}, gen), b = random_of(kFloat32, {3, 2}, gen);
  check("cat dim 1", {a, b}, [](const V& v) { return cat({v[0], v[1]}, 1); }, 0);
  check("dropout p 0.3 (CPU-drawn mask)", {a}, [](const V& v) {
    Generator g(3);
    return dropout(v[0], 0.3, true, g);
  }, 0);
}

void check_cnn_training_step() {
  auto make = [] {
    manual_seed(6);
    auto net = std::make_shared<nn::Sequential>();
    net->push_back(std::make_shared<nn::Conv2d>(3, 16, 3, nn::Conv2dOptions{.padding = 1, .bias = false}));
    net->push_back(std::make_shared<nn::BatchNorm2d>(16));
    net->push_back(std::make_shared<nn::ReLU>());
    net->push_back(std::make_shared<nn::MaxPool2d>(3, nn::MaxPool2dOptions{.stride = 2, .padding = 1}));
    net->push_back(std::make_shared<nn::AdaptiveAvgPool2d>(1));
    net->push_back(std::make_shared<nn::Flatten>());
    net->push_back(std::make_shared<nn::Linear>(16, 10));
    return net;
  };
  Generator gen(10);
  const Tensor x = randn({8, 3, 16, 16}, kFloat32, gen), target = randint(0, 10, {8}, kInt64, gen);
  auto train = [&](const std::shared_ptr<nn::Sequential>& net, Device dev) {
    net->to(dev);
    net->train();
    optim::SGD opt(net->parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
    for (int i = 0; i < 3; ++i) {
      opt.zero_grad();
      const Tensor loss = cross_entropy(net->forward(x.to(dev)), target.to(dev));
      loss.backward();
      opt.step();
    }
  };
  cuda::cudnn_allow_tf32() = false;
  auto cpu_net = make(), gpu_net = make();
  try {
    train(cpu_net, kCPU);
    train(gpu_net, kGPU);
    const auto cs = cpu_net->state_dict(), gs = gpu_net->state_dict();
    for (size_t i = 0; i < cs.size(); ++i) {
      const auto& [k, v] = cs.items()[i];
      if (v.is_floating_point()) compare("conv-BN-pool-CE 3 SGD steps: " + k, gs.items()[i].second, v, 1e-4);
    }
  } catch (const std::exception& e) {
    report("conv-BN-pool-CE 3 SGD steps", kFloat32, NAN, NAN, 0, false, e.what());
  }
  cuda::cudnn_allow_tf32() = true;
}

/// SGD, Adam and AdamW as multi-tensor steps against the CPU's optimizers, with the same gradients set on both:
/// 30 tensors (more than one launch's 24), one of 3M elements (more than one launch's chunks), one transposed
/// (the strided fallback), in float32 and bfloat16, 3 steps each.
void check_optimizers(Generator& gen) {
  using MakeOpt = std::function<std::unique_ptr<optim::Optimizer>(const std::vector<Tensor>&)>;
  const std::vector<std::pair<std::string, MakeOpt>> cases = {
      {"SGD nesterov wd", [](const auto& p) {
         return std::make_unique<optim::SGD>(p, optim::SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-2,
                                                                  .nesterov = true}); }},
      {"Adam wd amsgrad", [](const auto& p) {
         return std::make_unique<optim::Adam>(p, optim::AdamOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true}); }},
      {"Adam maximize", [](const auto& p) {
         return std::make_unique<optim::Adam>(p, optim::AdamOptions{.lr = 0.01, .maximize = true}); }},
      {"AdamW amsgrad", [](const auto& p) {
         return std::make_unique<optim::AdamW>(p, optim::AdamWOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true}); }},
  };
  for (DType t : {kFloat32, kBFloat16}) {
    std::vector<Shape> shapes;
    for (int i = 0; i < 28; ++i) shapes.push_back({(i % 5) + 1, 7 * i + 3});
    shapes.push_back({3000, 1000});
    shapes.push_back({40, 30});
    std::vector<Tensor> init, grads;
    for (const Shape& s : shapes) {
      init.push_back(random_of(t, s, gen));
      grads.push_back(random_of(t, s, gen));
    }
    for (const auto& [name, make_opt] : cases) {
      try {
        auto params_on = [&](Device dev) {
          std::vector<Tensor> ps;
          for (size_t i = 0; i < init.size(); ++i) {
            Tensor p = init[i].to(dev).clone();
            if (i + 1 == init.size()) p = p.t().contiguous().t();  // a transposed parameter
            ps.push_back(p.requires_grad_());
          }
          return ps;
        };
        std::vector<Tensor> cp = params_on(kCPU), gp = params_on(kGPU);
        auto copt = make_opt(cp), gopt = make_opt(gp);
        for (int step = 0; step < 3; ++step) {
          for (size_t i = 0; i < cp.size(); ++i) {
            const Tensor g = mul(grads[i], 1.0 + step).to(t);
            cp[i].set_grad(i + 1 == cp.size() ? g.t().contiguous().t() : g);
            gp[i].set_grad(i + 1 == gp.size() ? g.to(kGPU).t().contiguous().t() : g.to(kGPU));
          }
          copt->step();
          gopt->step();
        }
        for (size_t i : {size_t{0}, size_t{27}, size_t{28}, size_t{29}})
          compare(name + " 3 steps: param " + std::to_string(i), gp[i], cp[i], tolerance(t, 4));
      } catch (const std::exception& e) {
        report(name, t, NAN, NAN, 0, false, e.what());
      }
    }
  }
}

void check_allocator_and_errors() {
  // steady state: the same sizes again are served from the cache
  for (int i = 0; i < 3; ++i) (void)add(ones({1000, 1000}, kGPU), 1);
  const auto before = cuda::memory_stats(0);
  for (int i = 0; i < 10; ++i) (void)add(ones({1000, 1000}, kGPU), 1);
  cuda::synchronize(0);
  const auto after = cuda::memory_stats(0);
  const bool steady = after.cuda_mallocs == before.cuda_mallocs && after.cache_hits > before.cache_hits;
  ++g_rows;
  if (!steady) ++g_failures;
  std::printf("%-34s cudaMallocs %zu -> %zu, cache hits %zu -> %zu, allocated %zu, reserved %zu, peak %zu  %s\n",
              "allocator steady state", before.cuda_mallocs, after.cuda_mallocs, before.cache_hits, after.cache_hits,
              after.allocated, after.reserved, after.peak_allocated, steady ? "ok" : "FAIL");
  cuda::empty_cache();
  // operands on two devices
  bool raised = false;
  try {
    (void)add(ones({2}), ones({2}, kGPU));
  } catch (const DeviceError& e) {
    raised = std::string(e.what()).find("same device") != std::string::npos;
  }
  ++g_rows;
  if (!raised) ++g_failures;
  std::printf("%-34s %s\n", "cpu + cuda raises DeviceError", raised ? "ok" : "FAIL");
  // a CUDA error turns into DeviceError naming the call
  bool named = false;
  try {
    TORCHLET_CUDA_CHECK(cudaSetDevice(1 << 20));
  } catch (const DeviceError& e) {
    named = std::string(e.what()).find("cudaSetDevice") != std::string::npos;
  }
  ++g_rows;
  if (!named) ++g_failures;
  std::printf("%-34s %s\n", "CUDA status -> DeviceError", named ? "ok" : "FAIL");
}

/// CUDA graphs: an MLP train step captured once and replayed N times gives the parameters of N eager steps, the
/// replays call cudaMalloc no more, and a copy to the host during a capture raises the [cuda graph] error.
void check_graphs() {
  auto make = [] {
    manual_seed(7);
    auto net = std::make_shared<nn::Sequential>();
    net->push_back(std::make_shared<nn::Linear>(32, 64));
    net->push_back(std::make_shared<nn::ReLU>());
    net->push_back(std::make_shared<nn::Linear>(64, 10));
    net->to(kGPU);
    return net;
  };
  Generator gen(11);
  // static inputs: made on the GPU before the capture (a host -> device copy cannot be captured)
  const Tensor x = randn({16, 32}, kFloat32, gen).to(kGPU), target = randn({16, 10}, kFloat32, gen).to(kGPU);
  const optim::SGDOptions options{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3};
  auto step = [&](nn::Sequential& net, optim::SGD& opt) {
    opt.zero_grad(/*set_to_none=*/false);  // grads stay allocated: the replays write into the captured ones
    const Tensor loss = mean(pow(sub(softmax(net.forward(x), 1), target), 2));
    loss.backward();
    opt.step();
  };
  constexpr int kWarmup = 2, kReplays = 6;
  try {
    auto eager = make(), graphed = make();
    optim::SGD eager_opt(eager->parameters(), options), graphed_opt(graphed->parameters(), options);
    for (int i = 0; i < kWarmup + kReplays; ++i) step(*eager, eager_opt);
    for (int i = 0; i < kWarmup; ++i) step(*graphed, graphed_opt);  // grads and momentum buffers exist now
    const cudaStream_t before_stream = cuda::current_stream(0);
    cuda::Graph graph;
    graph.capture([&] { step(*graphed, graphed_opt); });  // records, runs nothing
    const bool restored = cuda::current_stream(0) == before_stream && graph.captured() && graph.pool() != 0;
    const auto before = cuda::memory_stats(0);
    for (int i = 0; i < kReplays; ++i) graph.replay();
    cuda::synchronize(0);
    const auto after = cuda::memory_stats(0);
    const auto ep = eager->named_parameters(), gp = graphed->named_parameters();
    for (size_t i = 0; i < ep.size(); ++i) {
      const std::string name = "graph: " + std::to_string(kReplays) + " replays vs eager: " + ep[i].first;
      compare(name, gp[i].second, ep[i].second.to(kCPU), 1e-6);
    }
    const bool steady = restored && after.cuda_mallocs == before.cuda_mallocs;
    ++g_rows;
    if (!steady) ++g_failures;
    std::printf("%-34s stream restored %d, cudaMallocs during replays %zu  %s\n", "graph: capture and replays",
                restored, after.cuda_mallocs - before.cuda_mallocs, steady ? "ok" : "FAIL");
  } catch (const std::exception& e) {
    report("graph: MLP train step", kFloat32, NAN, NAN, 0, false, e.what());
  }
  // a host synchronisation during the capture raises, ends the capture and restores the stream
  std::string message;
  const cudaStream_t before_stream = cuda::current_stream(0);
  try {
    cuda::Graph graph;
    graph.capture([&] { (void)add(x, 1).to(kCPU); });
  } catch (const DeviceError& e) {
    message = e.what();
  }
  bool usable = false;
  try {
    usable = sum(add(ones({4}, kGPU), 1).to(kCPU)).item<float>() == 8.0f;
  } catch (const std::exception&) {
  }
  const bool ok = message.find("[cuda graph]") == 0 &&
                  message.find("synchronises with the host during capture") != std::string::npos &&
                  cuda::current_stream(0) == before_stream && usable;
  ++g_rows;
  if (!ok) ++g_failures;
  std::printf("%-34s %s (%s)\n", "graph: host sync during capture", ok ? "ok" : "FAIL", message.c_str());
}
}  // namespace

int main() {
  if (!cuda::is_available()) {
    std::printf("test_cuda_ops: no CUDA device here, skipping\n");
    return 77;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device 0: %s (sm_%d%d)\n\n%-34s %-9s %12s %12s %10s\n", prop.name, prop.major, prop.minor, "op",
              "dtype", "max abs err", "max rel err", "tolerance");
  Generator gen(1234);
  check_elementwise(gen);
  check_reductions(gen);
  check_matmul(gen);
  check_conv(gen);
  check_conv_layouts(gen);
  check_training_step();
  check_batch_norm(gen);
  check_pooling(gen);
  check_losses(gen);
  check_cnn_training_step();
  check_optimizers(gen);
  check_allocator_and_errors();
  check_graphs();
  std::printf("\n%d of %d checks failed\n", g_failures, g_rows);
  return g_failures == 0 ? 0 : 1;
}
