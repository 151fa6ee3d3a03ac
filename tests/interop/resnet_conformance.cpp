// torchvision -> torchlet conformance for one ResNet architecture: loads a state_dict real torchvision saved, and
// writes what tests/interop/resnet_conformance.py compares with torchvision's own results, as one .pth file:
//   eval_logits    float32 eval-mode logits of the input
//   folded_logits  the same after fold_batchnorm (BatchNorm folded into the convs)
//   channels_last_logits, channels_last_folded_logits
//                  the same with the model and the input in channels-last layout (without and with folding)
//   train_logits, train_loss, grad.NAME
//                  one float64 train-mode step (model converted to float64 after loading, cross-entropy against
//                  targets 3, 7, 3, 7, ...), with the gradient of each parameter NAME given on the command line;
//                  only when at least one NAME is given
// usage: resnet_conformance ARCH WEIGHTS.pth INPUT.npy OUT.pth [PARAM...]   (num_classes 10)
#include <cstdio>
#include <string>
#include <vector>

#include "torchlet/checkpoint.hpp"
#include "torchlet/io/npy.hpp"
#include "torchlet/io/save.hpp"
#include "torchlet/models.hpp"
#include "torchlet/ops/loss.hpp"

using namespace torchlet;

namespace {

std::shared_ptr<models::ResNet> loaded(const std::string& arch, const std::string& weights) {
  auto model = models::resnet(arch, {.num_classes = 10});
  load_weights(*model, weights);  // strict, as load_state_dict
  return model;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: resnet_conformance ARCH WEIGHTS.pth INPUT.npy OUT.pth [PARAM...]\n");
    return 2;
  }
  const std::string arch = argv[1], weights = argv[2], input = argv[3], out = argv[4];
  try {
    const Tensor x = load_npy(input);
    Value::Dict results;
    auto model = loaded(arch, weights);
    model->eval();
    {
      autograd::NoGradGuard no_grad;
      results.set("eval_logits", (*model)(x));
      const Tensor x_cl = x.contiguous(MemoryFormat::ChannelsLast);
      model->to(MemoryFormat::ChannelsLast);
      results.set("channels_last_logits", (*model)(x_cl));
      models::fold_batchnorm(*model);
      results.set("channels_last_folded_logits", (*model)(x_cl));
      model->to(MemoryFormat::Contiguous);
      results.set("folded_logits", (*model)(x));
    }
    if (argc == 5) {  // no gradients asked for: no train step
      save(out, Value(std::move(results)));
      return 0;
    }
    model = loaded(arch, weights);
    model->to(kFloat64);
    model->train();
    const Tensor x64 = x.to(kFloat64);
    std::vector<int64_t> targets;
    for (int64_t i = 0; i < x.size(0); ++i) targets.push_back(i % 2 ? 7 : 3);
    const Tensor logits = (*model)(x64);
    const Tensor loss = cross_entropy(logits, tensor<int64_t>(targets));
    loss.backward();
    results.set("train_logits", logits.detach());
    results.set("train_loss", loss.detach());
    for (int i = 5; i < argc; ++i) {
      const Tensor g = model->get_parameter(argv[i]).grad();
      if (!g.defined()) throw ValueError(std::string("no gradient for ") + argv[i]);
      results.set(std::string("grad.") + argv[i], g);
    }
    save(out, Value(std::move(results)));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "resnet_conformance %s: %s\n", arch.c_str(), e.what());
    return 1;
  }
  return 0;
}
