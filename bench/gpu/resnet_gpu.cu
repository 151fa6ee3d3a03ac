// torchlet's side of the H200 benchmark (bench/gpu/run.sh, bench/gpu/compare_gpu.py): one ResNet workload on
// cuda:0, timed with CUDA events, printed as one JSON line; or, with --check, the eval logits of given weights
// and input, written for the script to compare with PyTorch's.
//
// usage: resnet_gpu --work infer|train|frozen --batch N [--arch resnet50] [--precision fp32|tf32|bf16]
//                   [--channels-last] [--warmup N] [--iters N] [--cuda-graph]
//        resnet_gpu --check WEIGHTS.pth INPUT.pth OUT.pth [--arch resnet50] [--precision ...] [--channels-last]
// Precision: fp32 computes float32 without TF32; tf32 lets cuBLAS and cuDNN use TF32 tensor cores (PyTorch's
// allow_tf32 flags); bf16 runs the step inside torchlet::Autocast(cuda, bfloat16), as PyTorch's torch.autocast:
// convolutions and linear layers in bf16, float32 master weights and batch-norm statistics.
// --cuda-graph: after the warm-up (cuDNN's algorithm search, grads and momentum buffers exist), one step is
// captured as a CUDA graph (cuda::Graph) with the static input and labels, and the replays are timed; training
// steps then zero grads in place (zero_grad(set_to_none=false)) so that the captured grads stay allocated.
// Exit status: 0 ok, 1 error (one line on stderr), 2 bad usage, 77 no CUDA device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "torchlet/checkpoint.hpp"
#include "torchlet/cuda.cuh"
#include "torchlet/io/save.hpp"
#include "torchlet/models.hpp"
#include "torchlet/torchlet.hpp"

using namespace torchlet;

namespace {

struct Options {
  std::string arch = "resnet50", work = "infer", precision = "tf32";
  int64_t batch = 1;
  bool channels_last = false;
  bool cuda_graph = false;
  int warmup = 10, iters = 50;
  std::string check_weights, check_input, check_out;
};

int usage(const char* why) {
  std::fprintf(stderr, "resnet_gpu: %s\nusage: resnet_gpu --work infer|train|frozen --batch N [--arch A] "
               "[--precision fp32|tf32|bf16] [--channels-last] [--warmup N] [--iters N] [--cuda-graph]\n"
               "       resnet_gpu --check WEIGHTS.pth INPUT.pth OUT.pth [--arch A] [--precision P] [--channels-last]\n",
               why);
  return 2;
}

// Milliseconds per call of `step`, from CUDA events on the current stream around `iters` calls after `warmup`.
double time_ms(const std::function<void()>& step, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) step();
  cuda::synchronize();
  cudaEvent_t start, stop;
  TORCHLET_CUDA_CHECK(cudaEventCreate(&start));
  TORCHLET_CUDA_CHECK(cudaEventCreate(&stop));
  const cudaStream_t stream = cuda::current_stream(0);
  TORCHLET_CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < iters; ++i) step();
  TORCHLET_CUDA_CHECK(cudaEventRecord(stop, stream));
  TORCHLET_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  TORCHLET_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return static_cast<double>(ms) / iters;
}

void set_precision(const std::string& p) {
  cuda::allow_tf32() = p == "tf32";
  cuda::cudnn_allow_tf32() = p == "tf32";
}

int check(const Options& o) {
  auto model = models::resnet(o.arch);
  load_weights(*model, o.check_weights);
  const Device dev("cuda:0");
  model->to(dev);
  model->eval();
  Tensor x = load(o.check_input).at("input").as_tensor().to(dev);
  if (o.channels_last) {
    model->to(MemoryFormat::ChannelsLast);
    x = x.contiguous(MemoryFormat::ChannelsLast);
  }
  autograd::NoGradGuard no_grad;
  Autocast mixed(DeviceType::CUDA, kBFloat16, o.precision == "bf16");
  Value::Dict out;
  out.set("logits", (*model)(x).to(kFloat32).to(kCPU).contiguous());
  save(o.check_out, Value(std::move(out)));
  return 0;
}

int bench(const Options& o) {
  const Device dev("cuda:0");
  manual_seed(0);
  auto model = models::resnet(o.arch);
  model->to(dev);
  if (o.channels_last) model->to(MemoryFormat::ChannelsLast);
  Tensor x = randn({o.batch, 3, 224, 224}).to(dev);
  if (o.channels_last) x = x.contiguous(MemoryFormat::ChannelsLast);
  std::function<void()> step;
  std::unique_ptr<optim::SGD> opt;
  Tensor y;
  if (o.work == "infer") {
    model->eval();
    step = [&] {
      autograd::NoGradGuard g;
      Autocast mixed(DeviceType::CUDA, kBFloat16, o.precision == "bf16");
      (void)(*model)(x);
    };
  } else if (o.work == "train") {
    model->train();
    y = randint(0, 1000, {o.batch}).to(dev);
    opt = std::make_unique<optim::SGD>(model->parameters(), optim::SGDOptions{.lr = 0.01, .momentum = 0.9});
  } else if (o.work == "frozen") {
    model->replace_fc(10);
    model->to(dev);
    if (o.channels_last) model->to(MemoryFormat::ChannelsLast);
    model->freeze_backbone({.batchnorm_eval = true});
    model->train();
    y = randint(0, 10, {o.batch}).to(dev);
    opt = std::make_unique<optim::SGD>(nn::trainable_parameters(*model), optim::SGDOptions{.lr = 0.01, .momentum = 0.9});
  } else {
    return usage(("unknown --work " + o.work).c_str());
  }
  if (opt) {
    step = [&] {
      opt->zero_grad(/*set_to_none=*/!o.cuda_graph);
      Tensor loss;
      {
        Autocast mixed(DeviceType::CUDA, kBFloat16, o.precision == "bf16");
        loss = cross_entropy((*model)(x), y);
      }
      loss.backward();  // outside the autocast scope, as PyTorch recommends
      opt->step();
    };
  }
  cuda::Graph graph;
  if (o.cuda_graph) {
    for (int i = 0; i < std::max(o.warmup, 3); ++i) step();  // what the capture must not do: search, first allocs
    cuda::synchronize();
    graph.capture(step);
    step = [&] { graph.replay(); };
  }
  const double ms = time_ms(step, o.warmup, o.iters);
  const auto mem = cuda::memory_stats(0);
  std::printf("{\"arch\": \"%s\", \"work\": \"%s\", \"batch\": %lld, \"precision\": \"%s\", \"channels_last\": %s, "
              "\"cuda_graph\": %s, \"ms\": %.4f, \"images_per_s\": %.2f, \"peak_bytes\": %lld}\n",
              o.arch.c_str(), o.work.c_str(), static_cast<long long>(o.batch), o.precision.c_str(),
              o.channels_last ? "true" : "false", o.cuda_graph ? "true" : "false", ms,
              1000.0 * static_cast<double>(o.batch) / ms,
              static_cast<long long>(mem.peak_allocated));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (f == "--arch") o.arch = next();
    else if (f == "--work") o.work = next();
    else if (f == "--precision") o.precision = next();
    else if (f == "--batch") o.batch = std::atoll(next().c_str());
    else if (f == "--channels-last") o.channels_last = true;
    else if (f == "--cuda-graph") o.cuda_graph = true;
    else if (f == "--warmup") o.warmup = std::atoi(next().c_str());
    else if (f == "--iters") o.iters = std::atoi(next().c_str());
    else if (f == "--check") {
      o.check_weights = next();
      o.check_input = next();
      o.check_out = next();
    } else return usage(("unknown argument " + f).c_str());
  }
  if (o.precision != "fp32" && o.precision != "tf32" && o.precision != "bf16")
    return usage(("unknown --precision " + o.precision).c_str());
  if (o.batch < 1 || o.iters < 1 || o.warmup < 0) return usage("--batch and --iters must be at least 1");
  if (!cuda::is_available()) {
    std::printf("skipped: no CUDA device\n");
    return 77;
  }
  set_precision(o.precision);
  try {
    return o.check_out.empty() ? bench(o) : check(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "resnet_gpu %s %s: %s\n", o.arch.c_str(), o.work.c_str(), e.what());
    return 1;
  }
}
