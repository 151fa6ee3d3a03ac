// ResNet-18 / ResNet-50 on the CPU: eval-mode inference at batch 1 and 8 (NCHW; channels-last; channels-last with
// BatchNorm folded into the convs), a training step (forward, backward, SGD)
// at batch 16, and a frozen-backbone step (new head, backbone requires_grad=false with BatchNorms in eval mode) at
// batch 16, at 224x224. bench/compare_resnet.py runs the same work in PyTorch and prints the ratios.
//
// usage: resnet [--arch resnet18,resnet50] [--threads N] [--min-time SECONDS] [--json PATH]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "torchlet/models.hpp"
#include "torchlet/torchlet.hpp"

using namespace torchlet;

namespace {

double best_ms(const std::function<void()>& f, double min_time) {
  f();  // warm-up
  double best = 1e300;
  int runs = 0;
  const auto start = std::chrono::steady_clock::now();
  while (runs < 3 || (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < min_time &&
                      runs < 100)) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ++runs;
  }
  return best;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) out.push_back(x);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string archs = "resnet18,resnet50", json;
  double min_time = 3.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i];
    if (f == "--arch") archs = argv[i + 1];
    else if (f == "--threads") set_num_threads(std::atoi(argv[i + 1]));
    else if (f == "--min-time") min_time = std::atof(argv[i + 1]);
    else if (f == "--json") json = argv[i + 1];
  }
  std::string out = "[";
  for (const auto& arch : split(archs)) {
    manual_seed(0);
    auto model = models::resnet(arch);
    auto record = [&](const std::string& work, int64_t batch, double ms) {
      std::printf("%-9s %-14s batch %2lld: %9.2f ms\n", arch.c_str(), work.c_str(), static_cast<long long>(batch), ms);
      std::fflush(stdout);
      char buf[256];
      std::snprintf(buf, sizeof buf, "%s{\"arch\": \"%s\", \"work\": \"%s\", \"batch\": %lld, \"ms\": %.4f}",
                    out.size() > 1 ? ", " : "", arch.c_str(), work.c_str(), static_cast<long long>(batch), ms);
      out += buf;
    };
    model->eval();
    for (int64_t b : {1, 8}) {
      Tensor x = randn({b, 3, 224, 224});
      record("inference", b, best_ms([&] {
               autograd::NoGradGuard g;
               (void)(*model)(x);
             }, min_time));
    }
    // channels-last: the model's 4-D weights and the input laid out NHWC; then also with BatchNorm folded
    model->to(MemoryFormat::ChannelsLast);
    auto folded = models::resnet(arch);
    folded->load_state_dict(model->state_dict());
    models::fold_batchnorm(*folded);
    folded->to(MemoryFormat::ChannelsLast);
    for (const auto& [work, net] : {std::pair{"inference_cl", model}, std::pair{"inference_cl_folded", folded}}) {
      for (int64_t b : {1, 8}) {
        Tensor x = randn({b, 3, 224, 224}).contiguous(MemoryFormat::ChannelsLast);
        record(work, b, best_ms([&, net = net] {
                 autograd::NoGradGuard g;
                 (void)(*net)(x);
               }, min_time));
      }
    }
    folded.reset();
    model->to(MemoryFormat::Contiguous);
    {
      const int64_t b = 16;
      Tensor x = randn({b, 3, 224, 224});
      Tensor y = randint(0, 1000, {b});
      model->train();
      optim::SGD opt(model->parameters(), {.lr = 0.01, .momentum = 0.9});
      record("train_step", b, best_ms([&] {
               opt.zero_grad();
               Tensor loss = cross_entropy((*model)(x), y);
               loss.backward();
               opt.step();
             }, min_time));
      model->replace_fc(10);
      model->freeze_backbone({.batchnorm_eval = true});
      model->train();
      Tensor y10 = randint(0, 10, {b});
      optim::SGD head(nn::trainable_parameters(*model), {.lr = 0.01, .momentum = 0.9});
      record("frozen_step", b, best_ms([&] {
               head.zero_grad();
               Tensor loss = cross_entropy((*model)(x), y10);
               loss.backward();
               head.step();
             }, min_time));
      model->eval();
      record("inference", b, best_ms([&] {
               autograd::NoGradGuard g;
               (void)(*model)(x);
             }, min_time));
    }
  }
  out += "]\n";
  if (!json.empty()) {
    std::FILE* f = std::fopen(json.c_str(), "w");
    if (f == nullptr) return 1;
    std::fputs(out.c_str(), f);
    std::fclose(f);
  }
  return 0;
}
