// Benchmark: (a) the shared GEMM on ResNet-50's 1x1 convolutions seen as GEMMs, (b) conv2d on every distinct
// conv layer shape of ResNet-50 (224x224 input) at batch 1 and 8, (c) conv2d backward (input + weight gradients)
// on a few ResNet-50 shapes at batch 8. Prints a table; --json PATH writes the results.
// Compare with PyTorch on the same machine: /usr/bin/python3 bench/compare_torch.py build/bench/conv_gemm
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "torchlet/backend/cpu/gemm.hpp"
#include "torchlet/core/threads.hpp"
#include "torchlet/ops/conv.hpp"
#include "torchlet/tensor/random.hpp"

using namespace torchlet;

namespace {
struct ConvShape {
  const char* name;
  int64_t cin, cout, k, stride, pad, h;  // square kernels and inputs
  int count;                             // how often the shape occurs in ResNet-50
};

// torchvision's ResNet-50 (v1.5: stride on the 3x3 conv), input 224x224
const std::vector<ConvShape> kResNet50 = {
    {"stem 7x7/2 3->64 @224", 3, 64, 7, 2, 3, 224, 1},
    {"l1 1x1 64->64 @56", 64, 64, 1, 1, 0, 56, 1},
    {"l1 3x3 64->64 @56", 64, 64, 3, 1, 1, 56, 3},
    {"l1 1x1 64->256 @56", 64, 256, 1, 1, 0, 56, 4},
    {"l1 1x1 256->64 @56", 256, 64, 1, 1, 0, 56, 2},
    {"l2 1x1 256->128 @56", 256, 128, 1, 1, 0, 56, 1},
    {"l2 3x3/2 128->128 @56", 128, 128, 3, 2, 1, 56, 1},
    {"l2 1x1/2 256->512 @56", 256, 512, 1, 2, 0, 56, 1},
    {"l2 1x1 128->512 @28", 128, 512, 1, 1, 0, 28, 4},
    {"l2 1x1 512->128 @28", 512, 128, 1, 1, 0, 28, 3},
    {"l2 3x3 128->128 @28", 128, 128, 3, 1, 1, 28, 3},
    {"l3 1x1 512->256 @28", 512, 256, 1, 1, 0, 28, 1},
    {"l3 3x3/2 256->256 @28", 256, 256, 3, 2, 1, 28, 1},
    {"l3 1x1/2 512->1024 @28", 512, 1024, 1, 2, 0, 28, 1},
    {"l3 1x1 256->1024 @14", 256, 1024, 1, 1, 0, 14, 6},
    {"l3 1x1 1024->256 @14", 1024, 256, 1, 1, 0, 14, 5},
    {"l3 3x3 256->256 @14", 256, 256, 3, 1, 1, 14, 5},
    {"l4 1x1 1024->512 @14", 1024, 512, 1, 1, 0, 14, 1},
    {"l4 3x3/2 512->512 @14", 512, 512, 3, 2, 1, 14, 1},
    {"l4 1x1/2 1024->2048 @14", 1024, 2048, 1, 2, 0, 14, 1},
    {"l4 1x1 512->2048 @7", 512, 2048, 1, 1, 0, 7, 3},
    {"l4 1x1 2048->512 @7", 2048, 512, 1, 1, 0, 7, 2},
    {"l4 3x3 512->512 @7", 512, 512, 3, 1, 1, 7, 2},
};

int64_t out_size(const ConvShape& s) { return (s.h + 2 * s.pad - s.k) / s.stride + 1; }

struct Options {
  int threads = available_cores();
  std::vector<int64_t> batches{1, 8};
  double min_time = 0.3;  // seconds of timed runs per entry (at least 3 runs)
  std::string json, filter;
  bool gemm = true, conv = true, backward = true;
};

// Best wall time of f() in milliseconds over runs filling min_time (at least 3), after one warm-up run: on a
// shared machine the minimum is the run least disturbed by other work.
template <class F>
double time_ms(F&& f, double min_time) {
  using clock = std::chrono::steady_clock;
  f();
  std::vector<double> runs;
  const auto start = clock::now();
  while (runs.size() < 3 || (std::chrono::duration<double>(clock::now() - start).count() < min_time &&
                             runs.size() < 1000)) {
    const auto t0 = clock::now();
    f();
    runs.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
  }
  std::sort(runs.begin(), runs.end());
  return runs.front();
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  size_t at = 0;
  while (at < s.size()) {
    const size_t comma = s.find(',', at);
    out.push_back(std::stoll(s.substr(at, comma - at)));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

[[noreturn]] void usage(int code) {
  std::printf(
      "usage: conv_gemm [--threads N] [--batch 1,8] [--min-time SECONDS] [--json PATH] [--only gemm|conv|backward]\n"
      "                 [--filter TEXT]\n"
      "Times torchlet's GEMM on ResNet-50's 1x1 convolutions seen as GEMMs and conv2d (float32, NCHW) on\n"
      "ResNet-50's distinct conv layer shapes, and conv2d backward (grad_input + grad_weight) on a few of them\n"
      "at batch 8; prints a table and optionally writes JSON.\n");
  std::exit(code);
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) out += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    if (a == "--threads") opt.threads = std::stoi(next());
    else if (a == "--batch") opt.batches = parse_list(next());
    else if (a == "--min-time") opt.min_time = std::stod(next());
    else if (a == "--json") opt.json = next();
    else if (a == "--filter") opt.filter = next();
    else if (a == "--only") {
      const std::string w = next();
      opt.gemm = w == "gemm";
      opt.conv = w == "conv";
      opt.backward = w == "backward";
    } else if (a == "-h" || a == "--help") usage(0);
    else usage(2);
  }
  set_num_threads(opt.threads);
  Generator gen(0);
  std::string json = "{\n  \"threads\": " + std::to_string(get_num_threads()) + ",\n  \"gemm\": [";

  if (opt.gemm) {
    std::printf("GEMM (float32, row-major C[M,N] = A[M,K] * B[K,N]; a 1x1 conv at batch 1), %d threads\n",
                get_num_threads());
    std::printf("%-28s %6s %6s %6s %10s %9s\n", "shape", "M", "N", "K", "ms", "GFLOP/s");
    bool first = true;
    for (const auto& s : kResNet50) {
      if (s.k != 1 || s.stride != 1) continue;
      if (!opt.filter.empty() && std::string(s.name).find(opt.filter) == std::string::npos) continue;
      const int64_t M = s.cout, N = s.h * s.h, K = s.cin;
      const Tensor a = randn({M, K}, kFloat32, gen), b = randn({K, N}, kFloat32, gen);
      Tensor c = empty({M, N}, kFloat32);
      const double ms = time_ms([&] {
        cpu::gemm<float>(false, false, M, N, K, 1.f, a.data<float>(), K, b.data<float>(), N, 0.f, c.data<float>(), N);
      }, opt.min_time);
      const double gflops = 2.0 * M * N * K / (ms * 1e6);
      std::printf("%-28s %6ld %6ld %6ld %10.3f %9.1f\n", s.name, long(M), long(N), long(K), ms, gflops);
      std::fflush(stdout);
      json += std::string(first ? "\n" : ",\n") + "    {\"name\": \"" + json_escape(s.name) + "\", \"M\": " +
              std::to_string(M) + ", \"N\": " + std::to_string(N) + ", \"K\": " + std::to_string(K) +
              ", \"ms\": " + std::to_string(ms) + ", \"gflops\": " + std::to_string(gflops) + "}";
      first = false;
    }
    std::printf("\n");
  }
  json += "\n  ],\n  \"conv\": [";

  if (opt.conv) {
    std::printf("conv2d (float32, NCHW, with bias), %d threads\n", get_num_threads());
    std::printf("%-28s %5s %5s %10s %9s\n", "layer", "batch", "count", "ms", "GFLOP/s");
    bool first = true;
    for (int64_t batch : opt.batches) {
      double total = 0;  // the time of all 53 convolutions of ResNet-50
      for (const auto& s : kResNet50) {
        if (!opt.filter.empty() && std::string(s.name).find(opt.filter) == std::string::npos) continue;
        const Tensor x = randn({batch, s.cin, s.h, s.h}, kFloat32, gen);
        const Tensor w = randn({s.cout, s.cin, s.k, s.k}, kFloat32, gen);
        const Tensor b = randn({s.cout}, kFloat32, gen);
        const Conv2dOptions o{.stride = {s.stride, s.stride}, .padding = {s.pad, s.pad}};
        const double ms = time_ms([&] { conv2d(x, w, b, o); }, opt.min_time);
        const int64_t ho = out_size(s);
        const double flops = 2.0 * batch * s.cout * ho * ho * s.cin * s.k * s.k;
        std::printf("%-28s %5ld %5d %10.3f %9.1f\n", s.name, long(batch), s.count, ms, flops / (ms * 1e6));
        std::fflush(stdout);
        total += ms * s.count;
        json += std::string(first ? "\n" : ",\n") + "    {\"name\": \"" + json_escape(s.name) +
                "\", \"batch\": " + std::to_string(batch) + ", \"cin\": " + std::to_string(s.cin) +
                ", \"cout\": " + std::to_string(s.cout) + ", \"k\": " + std::to_string(s.k) +
                ", \"stride\": " + std::to_string(s.stride) + ", \"pad\": " + std::to_string(s.pad) +
                ", \"h\": " + std::to_string(s.h) + ", \"count\": " + std::to_string(s.count) +
                ", \"ms\": " + std::to_string(ms) + ", \"gflops\": " + std::to_string(flops / (ms * 1e6)) + "}";
        first = false;
      }
      if (opt.filter.empty())
        std::printf("%-28s %5ld %5d %10.3f\n", "all 53 convs of ResNet-50", long(batch), 53, total);
    }
  }
  json += "\n  ],\n  \"backward\": [";

  if (opt.backward) {
    // the layers of kBackwardShapes, at batch 8: grad_input and grad_weight (no bias) from a given grad_out
    const std::vector<std::string> kBackwardShapes = {"l1 3x3 64->64 @56", "l1 1x1 64->256 @56",
                                                      "l2 3x3 128->128 @28", "l3 3x3 256->256 @14",
                                                      "l3 1x1 1024->256 @14", "l4 3x3 512->512 @7"};
    const int64_t batch = 8;
    std::printf("\nconv2d backward (float32, NCHW, grad_input + grad_weight), %d threads\n", get_num_threads());
    std::printf("%-28s %5s %10s %9s\n", "layer", "batch", "ms", "GFLOP/s");
    bool first = true;
    for (const auto& s : kResNet50) {
      if (std::find(kBackwardShapes.begin(), kBackwardShapes.end(), s.name) == kBackwardShapes.end()) continue;
      if (!opt.filter.empty() && std::string(s.name).find(opt.filter) == std::string::npos) continue;
      const Tensor x = randn({batch, s.cin, s.h, s.h}, kFloat32, gen);
      const Tensor w = randn({s.cout, s.cin, s.k, s.k}, kFloat32, gen);
      const Conv2dOptions o{.stride = {s.stride, s.stride}, .padding = {s.pad, s.pad}};
      const cpu::Conv2dGeometry g = detail::conv2d_geometry(x, w, Tensor(), o);
      const Tensor go = randn({batch, s.cout, g.out_h, g.out_w}, kFloat32, gen);
      const double ms = time_ms([&] { detail::conv2d_backward(go, x, w, false, g, {true, true, false}); },
                                opt.min_time);
      const double flops = 2 * 2.0 * g.macs();  // two products of the forward's size
      std::printf("%-28s %5ld %10.3f %9.1f\n", s.name, long(batch), ms, flops / (ms * 1e6));
      std::fflush(stdout);
      json += std::string(first ? "\n" : ",\n") + "    {\"name\": \"" + json_escape(s.name) +
              "\", \"batch\": " + std::to_string(batch) + ", \"cin\": " + std::to_string(s.cin) +
              ", \"cout\": " + std::to_string(s.cout) + ", \"k\": " + std::to_string(s.k) +
              ", \"stride\": " + std::to_string(s.stride) + ", \"pad\": " + std::to_string(s.pad) +
              ", \"h\": " + std::to_string(s.h) + ", \"ms\": " + std::to_string(ms) +
              ", \"gflops\": " + std::to_string(flops / (ms * 1e6)) + "}";
      first = false;
    }
  }
  json += "\n  ]\n}\n";
  if (!opt.json.empty()) {
    std::ofstream f(opt.json);
    f << json;
    if (!f) {
      std::fprintf(stderr, "conv_gemm: cannot write %s\n", opt.json.c_str());
      return 1;
    }
  }
  return 0;
}
