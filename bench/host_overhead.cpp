// torchlet's host-side cost of ResNet work on a GPU, measured without one (issue 9): a "null" CUDA device whose
// kernels do nothing runs the workloads of bench/gpu/. Its allocator hands out address space that is never
// touched, its copy hook and kernels only count. What remains is torchlet's own host work: op dispatch, checks,
// the autograd graph, allocations. On a GPU that work overlaps with the kernels as long as it is shorter than
// them; the "GPU budget" column is PyTorch's measured time per step on the H200 (shared/docs/performance.md),
// the time the GPU needs, so host time above it would leave the GPU idle (and batch-1 inference is host-bound).
// Per workload it prints host ms per step, kernel launches, device allocations and device -> host copies per step
// (each copy is a synchronisation on a GPU; a training step should have none).
//
// usage: host_overhead [--arch resnet50] [--batch 256] [--steps 5] [--json PATH]
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "torchlet/models.hpp"
#include "torchlet/torchlet.hpp"

using namespace torchlet;

namespace {

const Device kNull("cuda:0");

// Address space for "device" tensors: mmap'd without reserving memory and never written, cached by rounded size
// like the CUDA caching allocator (so the host cost of an allocation is a map lookup, as there).
class NullAllocator final : public Allocator {
 public:
  size_t allocations = 0;

  DataPtr allocate(size_t nbytes, Device) override {
    if (nbytes == 0) return {};
    const size_t round = nbytes <= (size_t{1} << 20) ? 512 : (size_t{2} << 20);
    const size_t size = (nbytes + round - 1) / round * round;
    ++allocations;
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end()) {
        p = it->second;
        free_.erase(it);
      }
    }
    if (p == nullptr) {
      p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) {
        std::fprintf(stderr, "host_overhead: mmap of %zu bytes failed\n", size);
        std::exit(1);
      }
    }
    NullAllocator* self = this;
    return {p, std::shared_ptr<void>(p, [self, size](void* q) {
              std::lock_guard<std::mutex> lock(self->mutex_);
              self->free_.emplace(size, q);
            })};
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
};

int host_reads = 0, host_writes = 0;

// Device -> host copies read zeros (and are counted: each is a synchronisation on a GPU); the others do nothing.
void null_copy(const Tensor& dst, const Tensor& src) {
  if (dst.is_cpu() && !src.is_cpu()) {
    ++host_reads;
    if (dst.is_contiguous()) std::memset(dst.data_ptr(), 0, static_cast<size_t>(dst.nbytes()));
    else torchlet::detail::fill_into(dst, 0);
  } else if (src.is_cpu()) {
    ++host_writes;
  }
}

// Kernels that only count their launches.
class NullKernels final : public DeviceKernels {
 public:
  int launches = 0;

  void fill(const Tensor&, const Scalar&) override { ++launches; }
  void copy(const Tensor&, const Tensor&) override { ++launches; }
  void unary(UnaryOp, const Tensor&, const Tensor&) override { ++launches; }
  void binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&, const Scalar&) override { ++launches; }
  void binary_scalar(BinaryOp, const Tensor&, const Tensor&, const Scalar&) override { ++launches; }
  void clamp(const Tensor&, const Tensor&, const std::optional<Scalar>&, const std::optional<Scalar>&) override {
    ++launches;
  }
  void where(const Tensor&, const Tensor&, const Tensor&, const Tensor&) override { ++launches; }
  void sum(const Tensor&, const Tensor&, const std::vector<bool>&) override { ++launches; }
  void mean(const Tensor&, const Tensor&, const std::vector<bool>&) override { ++launches; }
  void var(const Tensor&, const Tensor&, const std::vector<bool>&, int64_t, bool) override { ++launches; }
  void extreme(bool, const Tensor&, const Tensor&, const Tensor&, const std::vector<bool>&) override { ++launches; }
  void matmul(const Tensor&, const Tensor&, const Tensor&, const Scalar&, const Scalar&) override { ++launches; }
  void softmax(const Tensor&, const Tensor&, int64_t, bool) override { ++launches; }
  void conv2d_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Conv2dShape&) override {
    ++launches;
  }
  void conv2d_backward_input(const Tensor&, const Tensor&, const Tensor&, const Conv2dShape&) override { ++launches; }
  void conv2d_backward_weight(const Tensor&, const Tensor&, const Tensor&, const Conv2dShape&) override { ++launches; }
  void conv2d_backward_bias(const Tensor&, const Tensor&, const Conv2dShape&) override { ++launches; }
  void batch_norm_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                          const Tensor&, const Tensor&, bool, double, double) override {
    ++launches;
  }
  void batch_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&, const Tensor&, bool, double) override {
    ++launches;
  }
  void pool2d_forward(PoolKind, const Tensor&, const Tensor&, const Tensor&, const Pool2dShape&) override {
    ++launches;
  }
  void pool2d_backward(PoolKind, const Tensor&, const Tensor&, const Tensor&, const Pool2dShape&) override {
    ++launches;
  }
  void nll_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t,
                   bool) override {
    ++launches;
  }
  void nll_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, bool,
                    bool) override {
    ++launches;
  }
  void sgd_step(const Tensor&, const Tensor&, const Tensor&, bool, const SGDStepOptions&) override { ++launches; }
  void sgd_steps(const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<Tensor>&,
                 const std::vector<bool>&, const SGDStepOptions&) override {
    ++launches;
  }
  void adam_step(const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<Tensor>&,
                 const std::vector<Tensor>&, const std::vector<Tensor>&, const std::vector<double>&,
                 const AdamStepOptions&) override {
    ++launches;
  }
};

struct Row {
  std::string work;
  int64_t batch;
  double gpu_budget_ms;  // PyTorch's time per step on the H200 (0: not measured there)
  double host_ms = 0;
  double launches = 0, allocations = 0, reads = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string arch = "resnet50", json;
  int64_t batch = 256;
  int steps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i];
    if (f == "--arch") arch = argv[i + 1];
    else if (f == "--batch") batch = std::atoll(argv[i + 1]);
    else if (f == "--steps") steps = std::max(1, std::atoi(argv[i + 1]));
    else if (f == "--json") json = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: host_overhead [--arch resnet50] [--batch 256] [--steps 5] [--json PATH]\n");
      return 2;
    }
  }
  NullAllocator allocator;
  NullKernels kernels;
  set_allocator(DeviceType::CUDA, &allocator);
  torchlet::detail::device_copy_hook() = &null_copy;
  set_device_kernels(DeviceType::CUDA, &kernels);

  // PyTorch 2.11 on the H200, ResNet-50 (shared/docs/performance.md): TF32 training 3171 img/s at batch 256,
  // frozen-backbone step 8583 img/s, TF32 inference 9364 img/s, batch-1 TF32 inference 4.1 ms
  const bool r50 = arch == "resnet50";
  std::vector<Row> rows = {{"train", batch, r50 ? 256e3 / 3171 : 0},
                           {"frozen", batch, r50 ? 256e3 / 8583 : 0},
                           {"infer", batch, r50 ? 256e3 / 9364 : 0},
                           {"infer", 1, r50 ? 4.1 : 0}};
  if (batch != 256)
    for (auto& r : rows)
      if (r.batch != 1) r.gpu_budget_ms = 0;
  for (Row& row : rows) {
    manual_seed(0);
    auto model = models::resnet(arch);
    if (row.work == "frozen") {
      model->replace_fc(10);
      model->freeze_backbone({.batchnorm_eval = true});
    }
    model->to(kNull);
    model->to(MemoryFormat::ChannelsLast);
    const Tensor x = empty({row.batch, 3, 224, 224}, TensorOptions(kFloat32, kNull), MemoryFormat::ChannelsLast);
    const Tensor y = zeros({row.batch}, TensorOptions(kInt64, kNull));
    std::function<void()> step;
    std::unique_ptr<optim::SGD> opt;
    if (row.work == "infer") {
      model->eval();
      step = [&] {
        autograd::NoGradGuard no_grad;
        (void)(*model)(x);
      };
    } else {
      model->train();
      if (row.work == "frozen") model->freeze_backbone({.batchnorm_eval = true});
      opt = std::make_unique<optim::SGD>(nn::trainable_parameters(*model),
                                         optim::SGDOptions{.lr = 0.01, .momentum = 0.9});
      step = [&] {
        opt->zero_grad();
        cross_entropy((*model)(x), y).backward();
        opt->step();
      };
    }
    step();  // warm-up: the momentum buffers
    step();
    const int l0 = kernels.launches, r0 = host_reads;
    const size_t a0 = allocator.allocations;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) step();
    row.host_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / steps;
    row.launches = static_cast<double>(kernels.launches - l0) / steps;
    row.allocations = static_cast<double>(allocator.allocations - a0) / steps;
    row.reads = static_cast<double>(host_reads - r0) / steps;
  }

  std::printf("%s, channels-last, float32, host work per step on a null CUDA device (%d steps, %d thread%s)\n",
              arch.c_str(), steps, get_num_threads(), get_num_threads() == 1 ? "" : "s");
  std::printf("%-7s %5s %12s %12s %9s %12s %12s\n", "work", "batch", "host ms", "GPU budget", "launches",
              "allocations", "host reads");
  std::string out = "[";
  for (const Row& r : rows) {
    char budget[32] = "n/a";
    if (r.gpu_budget_ms > 0) std::snprintf(budget, sizeof budget, "%.2f ms", r.gpu_budget_ms);
    std::printf("%-7s %5lld %9.3f ms %12s %9.0f %12.0f %12.1f\n", r.work.c_str(), static_cast<long long>(r.batch),
                r.host_ms, budget, r.launches, r.allocations, r.reads);
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%s{\"work\": \"%s\", \"batch\": %lld, \"host_ms\": %.4f, \"gpu_budget_ms\": %.4f, \"launches\": "
                  "%.1f, \"allocations\": %.1f, \"host_reads\": %.1f}",
                  out.size() > 1 ? ", " : "", r.work.c_str(), static_cast<long long>(r.batch), r.host_ms,
                  r.gpu_budget_ms, r.launches, r.allocations, r.reads);
    out += buf;
  }
  out += "]\n";
  if (!json.empty()) {
    std::FILE* f = std::fopen(json.c_str(), "w");
    if (f == nullptr) return 1;
    std::fputs(out.c_str(), f);
    std::fclose(f);
  }
  set_device_kernels(DeviceType::CUDA, nullptr);
  torchlet::detail::device_copy_hook() = nullptr;
  set_allocator(DeviceType::CUDA, nullptr);
  return 0;
}
