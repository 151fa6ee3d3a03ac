// The `torchlet` tool's model commands: predict, check and info for every architecture of the registry
// (models::model_names(): the ResNets, alexnet, the VGGs, the SqueezeNets).
//
//   torchlet predict --arch ARCH --weights FILE [--num-classes N] [--rename 'REGEX=>REPL']... [--non-strict]
//                    --input X.npy --output Y.npy [--device cpu|cuda] [--batch-size B]
//   torchlet check FILE --arch ARCH [--num-classes N] [--rename 'REGEX=>REPL']...
//   torchlet info --arch ARCH [--num-classes N]
#include "model_commands.hpp"

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "torchlet/checkpoint.hpp"
#include "torchlet/io/load.hpp"
#include "torchlet/io/npy.hpp"
#include "torchlet/models.hpp"
#include "torchlet/nn/flatten.hpp"
#include "torchlet/ops/join.hpp"

namespace torchlet::cli {
namespace {

struct ModelArgs {
  std::string arch, weights, input, output, device = "cpu", file;
  int64_t num_classes = 1000, batch_size = 32;
  bool non_strict = false;
  std::vector<RenameRule> renames;
};

int64_t to_int(const std::string& flag, const std::string& text) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size() && v > 0) return v;
  } catch (const std::exception&) {
  }
  throw UsageError(flag + " expects a positive integer, got '" + text + "'");
}

ModelArgs parse(const std::vector<std::string>& args, bool takes_file) {
  ModelArgs a;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& f = args[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) throw UsageError(f + " needs a value");
      return args[++i];
    };
    if (f == "--arch") a.arch = value();
    else if (f == "--weights") a.weights = value();
    else if (f == "--num-classes") a.num_classes = to_int(f, value());
    else if (f == "--rename") a.renames.push_back(RenameRule::parse(value()));
    else if (f == "--non-strict") a.non_strict = true;
    else if (f == "--input") a.input = value();
    else if (f == "--output") a.output = value();
    else if (f == "--device") a.device = value();
    else if (f == "--batch-size") a.batch_size = to_int(f, value());
    else if (f.rfind("--", 0) == 0) throw UsageError("unknown option " + f);
    else if (takes_file && a.file.empty()) a.file = f;
    else throw UsageError("unexpected argument '" + f + "'");
  }
  if (a.arch.empty()) throw UsageError("--arch is required (one of: " + [] {
    std::string names;
    for (const auto& n : architecture_names()) names += (names.empty() ? "" : ", ") + n;
    return names;
  }() + ")");
  return a;
}

// The registered architecture `a.arch` with `a.num_classes` outputs (ValueError naming the choices when unknown).
std::shared_ptr<nn::Module> build(const ModelArgs& a) {
  return build_architecture(a.arch, Value::dict({{"num_classes", a.num_classes}}));
}

std::string shape_of(const Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

// Output size of a conv/pool window along one axis (PyTorch's formula; with ceil_mode the last window must start
// inside the input or its left padding).
int64_t window_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode = false) {
  const int64_t span = in + 2 * p - d * (k - 1) - 1;
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

// The activation a shape walk carries: channels (or features, after a Linear) and spatial size.
struct ActShape {
  int64_t c, h, w;
};

// Multiply-adds of `m` on an input of shape `s` (what torchvision's model cards count: convolutions and Linear
// layers); updates `s` to its output shape. Walks the children in registration order, which is the order of the
// forward pass for every registered model, with two exceptions: a ResNet block's `downsample` branch runs on the
// block's input, and a Fire module's two expands both read the squeeze output and are concatenated.
int64_t walk_macs(const nn::Module& m, ActShape& s) {
  if (const auto* c = dynamic_cast<const nn::Conv2d*>(&m)) {
    s.h = window_out(s.h, c->kernel_size.h, c->stride.h, c->padding.h, c->dilation.h);
    s.w = window_out(s.w, c->kernel_size.w, c->stride.w, c->padding.w, c->dilation.w);
    s.c = c->out_channels;
    return c->out_channels * s.h * s.w * (c->in_channels / c->groups) * c->kernel_size.h * c->kernel_size.w;
  }
  if (const auto* l = dynamic_cast<const nn::Linear*>(&m)) {
    s = {l->out_features, 1, 1};
    return l->in_features * l->out_features;
  }
  if (const auto* p = dynamic_cast<const nn::MaxPool2d*>(&m)) {
    s.h = window_out(s.h, p->kernel_size.h, p->stride.h, p->padding.h, p->dilation.h, p->ceil_mode);
    s.w = window_out(s.w, p->kernel_size.w, p->stride.w, p->padding.w, p->dilation.w, p->ceil_mode);
    return 0;
  }
  if (const auto* p = dynamic_cast<const nn::AvgPool2d*>(&m)) {
    s.h = window_out(s.h, p->kernel_size.h, p->stride.h, p->padding.h, 1, p->ceil_mode);
    s.w = window_out(s.w, p->kernel_size.w, p->stride.w, p->padding.w, 1, p->ceil_mode);
    return 0;
  }
  if (const auto* p = dynamic_cast<const nn::AdaptiveAvgPool2d*>(&m)) {
    s.h = p->output_size.h, s.w = p->output_size.w;
    return 0;
  }
  if (dynamic_cast<const nn::Flatten*>(&m)) {
    s = {s.c * s.h * s.w, 1, 1};
    return 0;
  }
  if (const auto* f = dynamic_cast<const models::Fire*>(&m)) {
    int64_t macs = walk_macs(*f->squeeze, s);
    ActShape e1 = s, e3 = s;
    macs += walk_macs(*f->expand1x1, e1) + walk_macs(*f->expand3x3, e3);
    s = {e1.c + e3.c, e1.h, e1.w};
    return macs;
  }
  const ActShape input = s;
  int64_t macs = 0;
  for (const auto& [name, child] : m.named_children()) {
    if (name == "downsample") {
      ActShape branch = input;
      macs += walk_macs(*child, branch);
    } else {
      macs += walk_macs(*child, s);
    }
  }
  return macs;
}

// Multiply-adds of one 3 x size x size image through `model`.
int64_t model_macs(const nn::Module& model, int64_t size) {
  ActShape s{3, size, size};
  return walk_macs(model, s);
}

int cmd_info(const ModelArgs& a) {
  auto model = build(a);
  int64_t params = 0;
  for (const auto& [k, p] : model->named_parameters()) params += p.numel();
  std::printf("%s: %lld parameters, %.3f G multiply-adds at 224x224 (convolutions and fc)\n", a.arch.c_str(),
              static_cast<long long>(params), static_cast<double>(model_macs(*model, 224)) / 1e9);
  const auto sd = model->state_dict();
  std::printf("state_dict: %zu entries\n", sd.size());
  for (const auto& [k, t] : sd) std::printf("%s %s %s\n", k.c_str(), shape_of(t).c_str(), std::string(dtype_name(t.dtype())).c_str());
  return 0;
}

int cmd_check(const ModelArgs& a) {
  if (a.file.empty()) throw UsageError("check takes a FILE");
  auto model = build(a);
  WeightLoadOptions o;
  o.strict = false;
  o.skip_shape_mismatch = true;
  o.renames = a.renames;
  const LoadReport r = load_weights(*model, load(a.file), o);
  std::printf("%s into %s (num_classes %lld):\n", a.file.c_str(), a.arch.c_str(), static_cast<long long>(a.num_classes));
  std::fputs(format(r).c_str(), stdout);
  const bool strict_ok = r.missing_keys.empty() && r.unexpected_keys.empty() && r.shape_mismatches.empty();
  std::printf("\n%s\n", strict_ok ? "a strict load succeeds" : "a strict load would fail");
  return strict_ok ? 0 : 1;
}

int cmd_predict(const ModelArgs& a) {
  if (a.weights.empty() || a.input.empty() || a.output.empty()) {
    throw UsageError("predict needs --weights, --input and --output");
  }
  if (a.device != "cpu") {
    throw Error("[predict] --device " + a.device + ": this build has no CUDA backend for the models yet; use --device cpu");
  }
  auto model = build(a);
  WeightLoadOptions o;
  o.strict = !a.non_strict;
  o.renames = a.renames;
  try {
    load_weights(*model, load(a.weights), o);
  } catch (const nn::StateDictError& e) {
    std::cerr << e.what() << "\n";  // PyTorch's own text, several lines
    return 1;
  }
  model->eval();
  const Tensor x = load_npy(a.input);
  TORCHLET_CHECK(x.dim() == 4 && x.size(1) == 3, ShapeError, "[predict] ", a.input,
                 ": expected a float32 NCHW batch [N, 3, H, W], got ", shape_of(x));
  TORCHLET_CHECK(x.dtype() == kFloat32, DTypeError, "[predict] ", a.input, ": expected float32, got ",
                 std::string(dtype_name(x.dtype())));
  autograd::NoGradGuard no_grad;
  std::vector<Tensor> outs;
  for (int64_t i = 0; i < x.size(0); i += a.batch_size) {
    outs.push_back((*model)(x.narrow(0, i, std::min(a.batch_size, x.size(0) - i)).contiguous()));
  }
  const Tensor logits = outs.empty() ? zeros({0, a.num_classes}) : cat(outs, 0);
  save_npy(a.output, logits);
  std::printf("%s: logits %s -> %s\n", a.arch.c_str(), shape_of(logits).c_str(), a.output.c_str());
  return 0;
}

}  // namespace

int run_model_command(const std::vector<std::string>& args) {
  const std::string& cmd = args.at(0);
  if (cmd == "info") return cmd_info(parse(args, false));
  if (cmd == "check") return cmd_check(parse(args, true));
  if (cmd == "predict") return cmd_predict(parse(args, false));
  throw UsageError("unknown command '" + cmd + "'");
}

}  // namespace torchlet::cli
