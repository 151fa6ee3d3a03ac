// The main job: fine-tune a torchvision ResNet from a PyTorch checkpoint on real data, end to end and resumable.
//
// What a PyTorch user writes:
//   model = torchvision.models.resnet18()
//   model.load_state_dict(torch.load(weights), strict=False)        # drop what does not fit (the old fc)
//   model.fc = nn.Linear(model.fc.in_features, num_classes)         # a new head
//   for p in model.parameters(): p.requires_grad = False            # freeze the backbone ...
//   for p in model.fc.parameters(): p.requires_grad = True          # ... train the head
//   optimizer = torch.optim.SGD((p for p in model.parameters() if p.requires_grad), lr=0.05, momentum=0.9)
//   ... then optionally unfreeze layer4 with a lower learning rate (param groups), saving
//   {'epoch', 'arch', 'state_dict', 'best_acc', 'optimizer', 'scheduler', 'rng'} every epoch.
//
// With no --weights, no pretrained file can be downloaded here, so the job makes its pretrained backbone honestly:
// it trains the ResNet on a source task (the first half of the classes: Fashion-MNIST's T-shirt, trouser,
// pullover, dress, coat), saves it as a PyTorch .pth, and fine-tunes from that file on the target task (the other
// half: sandal, shirt, sneaker, bag, ankle boot). With --weights FILE (e.g. torchvision's resnet18-f37072fd.pth)
// the target task is every class of the dataset.
//
// Run `finetune_resnet --help` for the options.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "torchlet/checkpoint.hpp"
#define TORCHLET_STB_IMPLEMENTATION  // this program decodes --data folder: images with stb_image (image_folder.hpp)
#include "torchlet/data.hpp"
#include "torchlet/io/load.hpp"
#include "torchlet/io/save.hpp"
#include "torchlet/io/sha256.hpp"
#include "torchlet/models.hpp"
#include "torchlet/torchlet.hpp"
#include "torchlet/train/checkpoint_manager.hpp"
#include "torchlet/train/metrics_log.hpp"
#include "torchlet/train/progress.hpp"

using namespace torchlet;

namespace {

constexpr const char* kUsage = R"(usage: finetune_resnet [options]

Fine-tunes a torchvision ResNet on an image classification dataset, from a PyTorch checkpoint.

data
  --data SPEC            fashion-mnist[:DIR] (default; Debian package dataset-fashion-mnist),
                         cifar10:DIR (the binary version's folder), or
                         folder:DIR, your own images: DIR/train/<class>/*.png|jpg|... and DIR/val/<class>/...
                         (or DIR/test/), one sub-folder per class like torchvision's ImageFolder
  --train-subset N       use N training images (default 6000; 0 = all)
  --test-subset N        use N test images (default 0 = all)
  --image-size N         resize images to NxN (default: the dataset's size, 224 for folder:; torchvision's
                         weights expect 224)
  --augment              random crop (padding 2) and horizontal flip (turns the feature cache off)
model
  --arch ARCH            resnet18 (default), resnet34/50/101/152, resnext50_32x4d, resnext101_32x8d,
                         resnext101_64x4d, wide_resnet50_2, wide_resnet101_2
  --weights FILE         pretrained weights: any PyTorch checkpoint (torchvision file, training checkpoint dict,
                         DataParallel checkpoint with --rename). Without it a source model is trained first.
  --rename 'REGEX=>REPL' rename checkpoint keys before loading (repeatable), e.g. '^module\.=>'
training
  --source-epochs N      epochs of the source task when no --weights (default 1)
  --epochs N             epochs training the new head on the frozen backbone (default 5)
  --finetune-epochs N    further epochs with layer4 unfrozen at lr/10 (default 1; 0 = none)
  --batch-size N         (default 64)
  --lr X                 learning rate of the head (default 0.05; SGD momentum 0.9, cosine schedule)
  --seed N               seed of the data order, augmentation and new layers (default 0)
  --no-cache             do not cache the frozen backbone's features
  --device cpu|cuda[:N]  (default cpu; cuda needs the finetune_resnet_cuda build, made with -Dcuda=enabled:
                         the model and each batch move to the GPU, the feature cache stays on the CPU)
output
  --out DIR              checkpoints, metrics.csv and metrics.svg (default runs/finetune)
  --keep N               epoch checkpoints kept besides last.pth and model_best.pth (default 3)
  --resume FILE          continue a run from its checkpoint (e.g. DIR/last.pth): same data order and RNG stream
  --stop-after N         stop after epoch N (to test resuming)
  --min-accuracy X       exit 2 when the final test accuracy is below X percent (for CI)
)";

struct Args {
  std::string data = "fashion-mnist";
  int64_t train_subset = 6000, test_subset = 0, image_size = -1;  // -1: the dataset's own size
  bool augment = false;
  std::string arch = "resnet18", weights;
  std::vector<std::string> renames;
  int64_t source_epochs = 1, epochs = 5, finetune_epochs = 1, batch_size = 64;
  double lr = 0.05;
  uint64_t seed = 0;
  bool cache = true;
  std::string device = "cpu", out = "runs/finetune", resume;
  int64_t keep = 3, stop_after = 0;
  double min_accuracy = -1;
};

[[noreturn]] void usage_error(const std::string& what) {
  std::fprintf(stderr, "finetune_resnet: %s (see --help)\n", what.c_str());
  std::exit(1);
}

int64_t parse_int(const std::string& flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < 0) usage_error(flag + " expects a non-negative integer, got '" + text + "'");
  return v;
}

double parse_double(const std::string& flag, const char* text) {
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || !std::isfinite(v)) usage_error(flag + " expects a number, got '" + text + "'");
  return v;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage_error(f + " needs a value");
      return argv[++i];
    };
    if (f == "--help" || f == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (f == "--data") a.data = value();
    else if (f == "--train-subset") a.train_subset = parse_int(f, value());
    else if (f == "--test-subset") a.test_subset = parse_int(f, value());
    else if (f == "--image-size") a.image_size = parse_int(f, value());
    else if (f == "--augment") a.augment = true;
    else if (f == "--arch") a.arch = value();
    else if (f == "--weights") a.weights = value();
    else if (f == "--rename") a.renames.emplace_back(value());
    else if (f == "--source-epochs") a.source_epochs = parse_int(f, value());
    else if (f == "--epochs") a.epochs = parse_int(f, value());
    else if (f == "--finetune-epochs") a.finetune_epochs = parse_int(f, value());
    else if (f == "--batch-size") a.batch_size = std::max<int64_t>(1, parse_int(f, value()));
    else if (f == "--lr") a.lr = parse_double(f, value());
    else if (f == "--seed") a.seed = static_cast<uint64_t>(parse_int(f, value()));
    else if (f == "--no-cache") a.cache = false;
    else if (f == "--device") a.device = value();
    else if (f == "--out") a.out = value();
    else if (f == "--keep") a.keep = std::max<int64_t>(1, parse_int(f, value()));
    else if (f == "--resume") a.resume = value();
    else if (f == "--stop-after") a.stop_after = parse_int(f, value());
    else if (f == "--min-accuracy") a.min_accuracy = parse_double(f, value());
    else usage_error("unknown option " + f);
  }
  if (a.device != "cpu") {
    if (a.device != "cuda" && a.device.rfind("cuda:", 0) != 0) {
      usage_error("--device expects cpu, cuda or cuda:N, got '" + a.device + "'");
    }
    try {
      (void)device_kernels(Device(a.device), "finetune");
    } catch (const Error&) {
      usage_error("--device " + a.device + ": this program was built without torchlet's CUDA backend; use "
                  "finetune_resnet_cuda (built with -Dcuda=enabled) or --device cpu");
    }
  }
  if (a.epochs + a.finetune_epochs == 0) usage_error("nothing to do: --epochs and --finetune-epochs are both 0");
  return a;
}

// ---- data -------------------------------------------------------------------------------------------------

// The train and test split of the chosen data, whatever it is read from.
struct Split {
  std::shared_ptr<const data::Dataset> train, test;
  std::vector<std::string> classes;
  std::vector<double> mean, std;  // per channel of the raw images, for Normalize
  int64_t native_size = 0;        // the images' side when they all have one size (in-memory datasets), else 0
};

bool is_folder(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// folder:DIR -> DIR/train and DIR/val (or DIR/test), both with the same class sub-folders.
void load_image_folders(Split& s, const std::string& dir) {
  if (dir.empty()) usage_error("--data folder:DIR needs the folder holding train/ and val/ (or test/)");
  if (!is_folder(dir)) usage_error("--data folder:" + dir + ": no such folder");
  const std::string train = dir + "/train";
  const std::string test = is_folder(dir + "/val") ? dir + "/val" : dir + "/test";
  if (!is_folder(train) || !is_folder(test)) {
    usage_error("--data folder:" + dir + " needs two sub-folders, train/ and val/ (or test/), each with one folder "
                "per class");
  }
  auto tr = std::make_shared<const data::ImageFolder>(train);
  auto te = std::make_shared<const data::ImageFolder>(test);
  if (tr->classes() != te->classes()) {
    TORCHLET_THROW(ValueError, "[finetune] ", train, " has ", tr->classes().size(), " classes and ", test, " has ",
                   te->classes().size(), ": both need the same class sub-folders");
  }
  s.train = std::move(tr);
  s.test = std::move(te);
  s.mean = {0.485, 0.456, 0.406};  // ImageNet's, for photos of unknown statistics
  s.std = {0.229, 0.224, 0.225};
}

Split load_split(const std::string& spec) {
  Split s;
  const auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon), dir = colon == std::string::npos ? "" : spec.substr(colon + 1);
  auto in_memory = [&s](data::TensorDataset train, data::TensorDataset test) {
    s.native_size = train.images().size(-1);
    s.train = std::make_shared<const data::TensorDataset>(std::move(train));
    s.test = std::make_shared<const data::TensorDataset>(std::move(test));
  };
  if (kind == "fashion-mnist") {
    const std::string root = dir.empty() ? data::kFashionMnistRoot : dir;
    in_memory(data::fashion_mnist(root, true), data::fashion_mnist(root, false));
    s.mean = {0.2860};
    s.std = {0.3530};
  } else if (kind == "cifar10") {
    if (dir.empty()) usage_error("--data cifar10:DIR needs the folder of data_batch_1.bin ... test_batch.bin");
    in_memory(data::cifar10(dir, true), data::cifar10(dir, false));
    s.mean = {0.4914, 0.4822, 0.4465};
    s.std = {0.2470, 0.2435, 0.2616};
  } else if (kind == "folder") {
    load_image_folders(s, dir);
  } else {
    usage_error("unknown --data '" + spec + "' (fashion-mnist[:DIR], cifar10:DIR, folder:DIR)");
  }
  s.classes = s.train->classes();
  if (s.classes.size() < 2) usage_error("--data " + spec + " has fewer than 2 classes");
  return s;
}

std::vector<int64_t> range(int64_t from, int64_t to) {
  std::vector<int64_t> v;
  for (int64_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

// The samples of `classes` (labels renumbered 0..k-1), the first n of them (all when n is 0).
std::shared_ptr<const data::Dataset> select(const std::shared_ptr<const data::Dataset>& d,
                                            const std::vector<int64_t>& classes, int64_t n) {
  data::Subset s = data::Subset::of_classes(d, classes);
  return std::make_shared<const data::Subset>(n > 0 ? s.first(n) : std::move(s));
}

data::Compose make_transform(const Split& s, int64_t image_size, bool pretrained, bool augment) {
  data::Compose t;
  t.add(data::transforms::ToTensor());
  if (s.mean.size() == 1) t.add(data::transforms::GrayscaleToRgb());
  if (image_size != s.native_size) t.add(data::transforms::Resize(image_size, image_size));
  if (augment) {
    t.add(data::transforms::RandomCrop(image_size, image_size / 14 > 0 ? image_size / 14 : 2));
    t.add(data::transforms::RandomHorizontalFlip());
  }
  if (pretrained) {
    t.add(data::transforms::Normalize({0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}));  // ImageNet's
  } else {
    std::vector<double> m = s.mean, d = s.std;
    if (m.size() == 1) m.assign(3, m[0]), d.assign(3, d[0]);
    t.add(data::transforms::Normalize(m, d));
  }
  return t;
}

// Correct predictions of a batch; logits and labels may live on the device (they are read on the CPU).
int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const Tensor pred = argmax(logits.to(kCPU), 1).contiguous();
  const Tensor lab = labels.to(kCPU).contiguous();
  const auto* p = pred.data<int64_t>();
  const auto* l = lab.data<int64_t>();
  int64_t c = 0;
  for (int64_t i = 0; i < lab.numel(); ++i) c += p[i] == l[i];
  return c;
}

// ---- the feature cache ------------------------------------------------------------------------------------

// Pooled backbone features [N, F] of every sample of a loader's dataset in dataset order (eval-mode backbone),
// computed on `device` and kept on the CPU.
Tensor pooled_features(models::ResNet& model, const data::DataLoader& loader, const std::string& title,
                       Device device) {
  autograd::NoGradGuard no_grad;
  const int64_t n = loader.dataset().size(), f = model.fc_in_features();
  Tensor out = empty({n, f});
  train::ProgressBar bar(title, n);
  int64_t row = 0;
  for (const data::Batch& b : data::DataLoader::Epoch(loader, 0, 0)) {
    Tensor feats = model.avgpool(model.forward_features(b.images.to(device))).flatten(1).to(kCPU).contiguous();
    std::memcpy(out.data<float>() + row * f, feats.data<float>(), sizeof(float) * static_cast<size_t>(feats.numel()));
    row += feats.size(0);
    bar.update(feats.size(0), 0.0, 0);
  }
  bar.finish();
  return out;
}

// Rows `idx` of a [N, F] tensor.
Tensor gather_rows(const Tensor& m, const std::vector<int64_t>& idx, size_t begin, size_t end) {
  const int64_t f = m.size(1);
  Tensor out = empty({static_cast<int64_t>(end - begin), f}, m.dtype());
  const size_t es = element_size(m.dtype());
  for (size_t i = begin; i < end; ++i) {
    std::memcpy(static_cast<char*>(out.data_ptr()) + (i - begin) * f * es,
                static_cast<const char*>(m.data_ptr()) + idx[i] * f * es, f * es);
  }
  return out;
}

Tensor gather_labels(const data::Dataset& d, const std::vector<int64_t>& idx, size_t begin, size_t end) {
  Tensor out = empty({static_cast<int64_t>(end - begin)}, kInt64);
  for (size_t i = begin; i < end; ++i) out.data<int64_t>()[i - begin] = d.label(idx[i]);
  return out;
}

// ---- one epoch --------------------------------------------------------------------------------------------

struct PassResult {
  double loss = 0, acc = 0, seconds = 0, images_per_s = 0;
};

// Ends a pass: its progress line, and the loss, accuracy, time and throughput it recorded.
PassResult finish(train::ProgressBar& bar) {
  PassResult r;
  r.seconds = bar.finish();
  r.loss = bar.mean_loss();
  r.acc = bar.accuracy();
  r.images_per_s = bar.rate();
  return r;
}

// Calls f(features, labels) for the batches of cached features in the order and sizes the loader gives for `epoch`.
template <class F>
void for_each_cached_batch(const data::DataLoader& loader, const Tensor& features, int64_t epoch, F&& f) {
  const data::Dataset& ds = loader.dataset();
  const auto order = loader.order(epoch);
  const auto bs = static_cast<size_t>(loader.options().batch_size);
  for (size_t begin = 0; begin < order.size(); begin += bs) {
    const size_t end = std::min(order.size(), begin + bs);
    f(gather_rows(features, order, begin, end), gather_labels(ds, order, begin, end));
  }
}

PassResult train_epoch(models::ResNet& model, optim::Optimizer& opt, const data::DataLoader& loader, int64_t epoch,
                       const std::string& title, Device device) {
  model.train();
  train::ProgressBar bar(title, loader.dataset().size());
  for (data::Batch& b : data::DataLoader::Epoch(loader, epoch, 0)) {
    opt.zero_grad();
    Tensor logits = model(b.images.to(device));
    Tensor loss = cross_entropy(logits, b.labels.to(device));
    loss.backward();
    opt.step();
    bar.update(b.labels.numel(), loss.item<double>(), count_correct(logits.detach(), b.labels));
  }
  return finish(bar);
}

// A head epoch on cached features, in exactly the order and batches the loader would give (each batch copied to
// `device`).
PassResult train_head_epoch_cached(models::ResNet& model, optim::Optimizer& opt, const data::DataLoader& loader,
                                   const Tensor& features, int64_t epoch, const std::string& title, Device device) {
  model.train();
  train::ProgressBar bar(title, loader.dataset().size());
  for_each_cached_batch(loader, features, epoch, [&](const Tensor& x, const Tensor& y) {
    opt.zero_grad();
    Tensor logits = model.fc(x.to(device));
    Tensor loss = cross_entropy(logits, y.to(device));
    loss.backward();
    opt.step();
    bar.update(y.numel(), loss.item<double>(), count_correct(logits.detach(), y));
  });
  return finish(bar);
}

PassResult evaluate(models::ResNet& model, const data::DataLoader& loader, const Tensor* cached_features,
                    const std::string& title, Device device) {
  autograd::NoGradGuard no_grad;
  model.eval();
  train::ProgressBar bar(title, loader.dataset().size());
  if (cached_features != nullptr) {
    for_each_cached_batch(loader, *cached_features, 0, [&](const Tensor& x, const Tensor& y) {
      Tensor logits = model.fc(x.to(device));
      bar.update(y.numel(), cross_entropy(logits, y.to(device)).item<double>(), count_correct(logits, y));
    });
  } else {
    for (const data::Batch& b : data::DataLoader::Epoch(loader, 0, 0)) {
      Tensor logits = model(b.images.to(device));
      bar.update(b.labels.numel(), cross_entropy(logits, b.labels.to(device)).item<double>(),
                 count_correct(logits, b.labels));
    }
  }
  return finish(bar);
}

std::string state_dict_sha256(const nn::Module& model) {
  io::Sha256 h;
  for (const auto& [k, t] : model.state_dict()) {
    const Tensor c = t.to(kCPU).contiguous();
    h.update(k.data(), k.size());
    h.update(c.data_ptr(), static_cast<size_t>(c.numel()) * element_size(c.dtype()));
  }
  return h.hexdigest();
}

bool file_exists(const std::string& p) { return ::access(p.c_str(), F_OK) == 0; }

// ---- the stages of the target job ---------------------------------------------------------------------------

// Epochs 1..epochs train the head ("head"); the next finetune_epochs also train layer4 ("finetune").
std::string stage_of(const Args& a, int64_t epoch) { return epoch <= a.epochs ? "head" : "finetune"; }

struct Stage {
  std::unique_ptr<optim::SGD> opt;
  std::unique_ptr<optim::CosineAnnealingLR> sched;
};

Stage make_stage(const Args& a, models::ResNet& model, const std::string& stage) {
  Stage s;
  if (stage == "head") {
    model.freeze_backbone({.batchnorm_eval = true});
    s.opt = std::make_unique<optim::SGD>(nn::trainable_parameters(model),
                                         optim::SGDOptions{.lr = a.lr, .momentum = 0.9, .weight_decay = 1e-4});
    s.sched = std::make_unique<optim::CosineAnnealingLR>(*s.opt, std::max<int64_t>(a.epochs, 1));
  } else {
    model.freeze_backbone({.batchnorm_eval = true});
    nn::unfreeze(*model.layer4);
    s.opt = std::make_unique<optim::SGD>(
        std::vector<optim::ParamGroupSpec>{{model.layer4->parameters(), {{"lr", a.lr / 10}}}, {model.fc->parameters()}},
        optim::SGDOptions{.lr = a.lr, .momentum = 0.9, .weight_decay = 1e-4});
    s.sched = std::make_unique<optim::CosineAnnealingLR>(*s.opt, std::max<int64_t>(a.finetune_epochs, 1));
  }
  return s;
}

// Trains the source model (first half of the classes) and saves it as a PyTorch state_dict file.
void make_source_model(const Args& a, const Split& split, int64_t image_size, const std::string& path) {
  const int64_t n = static_cast<int64_t>(split.classes.size()), half = n / 2;
  std::printf("\n== source task: %s from scratch on classes 0-%lld (%s ... %s), %lld epoch(s)\n", a.arch.c_str(),
              static_cast<long long>(half - 1), split.classes.front().c_str(), split.classes[half - 1].c_str(),
              static_cast<long long>(a.source_epochs));
  manual_seed(a.seed + 1000);
  auto model = models::resnet(a.arch, {.num_classes = half});
  model->to(Device(a.device));
  data::DataLoader loader(select(split.train, range(0, half), a.train_subset * 2),
                          make_transform(split, image_size, false, a.augment),
                          {.batch_size = a.batch_size, .shuffle = true, .seed = a.seed + 1000, .prefetch = 2});
  optim::SGD opt(model->parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4});
  optim::CosineAnnealingLR sched(opt, std::max<int64_t>(a.source_epochs, 1));
  for (int64_t e = 0; e < a.source_epochs; ++e) {
    const auto r = train_epoch(*model, opt, loader, e, "source " + std::to_string(e + 1), Device(a.device));
    sched.step();
    (void)r;
  }
  torchlet::save(path, to_value(model->state_dict()));
  std::printf("saved the source model as a PyTorch state_dict: %s\n", path.c_str());
}

int run(const Args& a) {
  train::CheckpointManager ckpts(a.out, static_cast<int>(a.keep));  // an unwritable --out fails here, before work
  const Split split = load_split(a.data);
  const int64_t image_size = a.image_size > 0 ? a.image_size : split.native_size > 0 ? split.native_size : 224;
  const bool pretrained = !a.weights.empty();
  const int64_t n_classes = static_cast<int64_t>(split.classes.size()), half = n_classes / 2;
  const std::vector<int64_t> target_classes = pretrained ? range(0, n_classes) : range(half, n_classes);
  const int64_t num_classes = static_cast<int64_t>(target_classes.size());

  // resume first: it decides where we start
  std::optional<train::ResumedCheckpoint> resumed;
  if (!a.resume.empty()) {
    resumed = train::CheckpointManager::resume(a.resume);
    for (const auto& s : resumed->skipped) std::printf("resume: skipped %s\n", s.c_str());
    std::printf("resume: continuing from %s\n", resumed->path.c_str());
    const std::string arch = resumed->checkpoint.at("arch").as_string();
    if (arch != a.arch) {
      TORCHLET_THROW(ValueError, "[finetune] ", resumed->path, " is a checkpoint of ", arch, ", not ", a.arch,
                     ": pass --arch ", arch);
    }
  }

  // the pretrained weights
  std::string weights = a.weights;
  if (!resumed && weights.empty()) {
    weights = a.out + "/source_" + a.arch + ".pth";
    if (file_exists(weights)) {
      std::printf("using the source model %s from an earlier run (delete it to train it again)\n", weights.c_str());
    } else {
      make_source_model(a, split, image_size, weights);
    }
  }

  // the target model: torchvision's architecture, pretrained weights minus what does not fit, a new head
  manual_seed(a.seed);
  auto model = models::resnet(a.arch);  // 1000 classes, like torchvision.models.resnet18()
  if (!resumed) {
    WeightLoadOptions lo;
    lo.strict = false;
    lo.skip_shape_mismatch = true;
    for (const auto& r : a.renames) lo.renames.push_back(RenameRule::parse(r));
    const auto report = load_weights(*model, torchlet::load(weights), lo);
    std::printf("\n== loaded %s: %zu tensors; skipped (shape differs): %zu; missing: %zu; unexpected: %zu\n",
                weights.c_str(), report.loaded, report.shape_mismatches.size(), report.missing_keys.size(),
                report.unexpected_keys.size());
    const size_t backbone_missing = std::count_if(report.missing_keys.begin(), report.missing_keys.end(),
                                                  [](const std::string& k) { return k.rfind("fc.", 0) != 0; });
    if (backbone_missing > 0 || report.loaded == 0) {
      TORCHLET_THROW(ValueError, "[finetune] ", weights, " does not fit ", a.arch, ": ", backbone_missing,
                     " backbone tensors missing (", torchlet::format(report), "); check --arch or add --rename");
    }
  }
  model->replace_fc(num_classes);  // model.fc = nn.Linear(model.fc.in_features, num_classes)

  int64_t start_epoch = 1;
  double best_acc = 0;
  train::MetricsLog metrics;
  if (resumed) {
    const Value& ck = resumed->checkpoint;
    load_weights(*model, ck.at("state_dict"));  // strict
    start_epoch = ck.at("epoch").as_int() + 1;
    best_acc = ck.at("best_acc").as_double();
    default_generator().set_state(ck.at("rng").at("generator").as_string());
    metrics = train::MetricsLog::read(a.out + "/metrics.csv", start_epoch - 1);
  }

  const Device device(a.device);
  model->to(device);  // parameters and buffers, in place: names and the optimizer's view are unchanged

  // data of the target task
  const auto train_set = select(split.train, target_classes, a.train_subset);
  const auto test_set = select(split.test, target_classes, a.test_subset);
  const auto transform = make_transform(split, image_size, pretrained, a.augment);
  const auto plain = make_transform(split, image_size, pretrained, false);
  data::DataLoader train_loader(train_set, transform,
                                {.batch_size = a.batch_size, .shuffle = true, .seed = a.seed, .prefetch = 2});
  data::DataLoader train_features_loader(train_set, plain, {.batch_size = a.batch_size, .prefetch = 2});
  data::DataLoader test_loader(test_set, plain, {.batch_size = a.batch_size, .prefetch = 2});
  std::printf("\n== target task: %lld classes (%s ... %s), %lld train / %lld test images, %s, out %s\n",
              static_cast<long long>(num_classes), split.classes[target_classes.front()].c_str(),
              split.classes[target_classes.back()].c_str(), static_cast<long long>(train_set->size()),
              static_cast<long long>(test_set->size()), a.arch.c_str(), a.out.c_str());

  const int64_t last_epoch = a.epochs + a.finetune_epochs;
  if (start_epoch > last_epoch) {
    std::printf("%s already finished all %lld epochs; evaluating it\n", resumed->path.c_str(),
                static_cast<long long>(last_epoch));
    const PassResult r = evaluate(*model, test_loader, nullptr, "  test     ", device);
    std::printf("\nfinal test accuracy: %.2f%%  (best %.2f%%)\n", r.acc, best_acc);
    std::printf("state_dict sha256: %s\n", state_dict_sha256(*model).c_str());
    return 0;
  }
  std::string stage_name;
  Stage stage;
  Tensor train_cache, test_cache;  // pooled features of the frozen backbone
  double cache_build_seconds = 0, first_head_epoch_seconds = 0;
  PassResult final_eval;
  for (int64_t epoch = start_epoch; epoch <= last_epoch; ++epoch) {
    const std::string name = stage_of(a, epoch);
    if (name != stage_name) {
      stage_name = name;
      stage = make_stage(a, *model, name);
      if (resumed && resumed->checkpoint.at("stage").as_string() == name) {
        stage.opt->load_state_dict(resumed->checkpoint.at("optimizer"));
        stage.sched->load_state_dict(resumed->checkpoint.at("scheduler"));
      }
      std::printf("\n-- stage '%s': training %s\n", name.c_str(),
                  name == "head" ? "the new head on the frozen backbone" : "layer4 (lr/10) and the head");
    }
    const bool cached = name == "head" && a.cache && !a.augment;
    if (cached && !train_cache.defined()) {
      const auto t0 = std::chrono::steady_clock::now();
      model->eval();
      train_cache = pooled_features(*model, train_features_loader, "caching train features", device);
      test_cache = pooled_features(*model, test_loader, "caching test features ", device);
      cache_build_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    if (name != "head") train_cache = test_cache = Tensor();
    const double lr = stage.opt->lr(0);
    const std::string title = "epoch " + std::to_string(epoch) + "/" + std::to_string(last_epoch);
    const PassResult tr = cached ? train_head_epoch_cached(*model, *stage.opt, train_loader, train_cache, epoch, title,
                                                           device)
                                 : train_epoch(*model, *stage.opt, train_loader, epoch, title, device);
    stage.sched->step();
    final_eval = evaluate(*model, test_loader, cached ? &test_cache : nullptr, "  test     ", device);
    if (cached && first_head_epoch_seconds == 0) first_head_epoch_seconds = tr.seconds + final_eval.seconds;
    const bool is_best = final_eval.acc > best_acc;
    best_acc = std::max(best_acc, final_eval.acc);
    std::printf("epoch %lld: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | best %.2f%% | lr %.4g\n",
                static_cast<long long>(epoch), tr.loss, tr.acc, final_eval.loss, final_eval.acc, best_acc, lr);

    Value ck = Value::dict({{"epoch", epoch},
                            {"arch", a.arch},
                            {"stage", name},
                            {"num_classes", num_classes},
                            {"state_dict", to_value(model->state_dict())},
                            {"best_acc", best_acc},
                            {"optimizer", stage.opt->state_dict()},
                            {"scheduler", stage.sched->state_dict()},
                            {"rng", Value::dict({{"seed", static_cast<int64_t>(a.seed)},
                                                 {"generator", default_generator().state()}})}});
    const std::string saved = ckpts.save(ck, epoch, is_best);
    std::printf("saved %s (+ last.pth%s)\n", saved.c_str(), is_best ? ", model_best.pth" : "");
    metrics.add({.epoch = epoch, .stage = name, .train_loss = tr.loss, .train_acc = tr.acc,
                 .test_loss = final_eval.loss, .test_acc = final_eval.acc, .lr = lr,
                 .seconds = tr.seconds + final_eval.seconds, .images_per_s = tr.images_per_s});
    metrics.write(a.out);
    if (a.stop_after > 0 && epoch >= a.stop_after && epoch < last_epoch) {
      std::printf("stopping after epoch %lld as asked; continue with --resume %s/last.pth\n",
                  static_cast<long long>(epoch), a.out.c_str());
      return 0;
    }
  }
  if (cache_build_seconds > 0) {
    const auto& rows = metrics.rows();
    double later = 0;
    int n = 0;
    for (const auto& r : rows) {
      if (r.stage == "head" && r.epoch > start_epoch) later += r.seconds, ++n;
    }
    if (n > 0) {
      // without the cache every head epoch runs the frozen backbone over the train and test images again, which is
      // what building the cache did once
      const double cached = later / n, uncached = cache_build_seconds + cached;
      std::printf("feature cache: built in %.1f s; a cached head epoch takes %.2f s instead of about %.1f s "
                  "(%.0fx faster; --no-cache to compare)\n", cache_build_seconds, cached, uncached,
                  uncached / std::max(cached, 1e-3));
    }
  }
  std::printf("\nfinal test accuracy: %.2f%%  (best %.2f%%)\n", final_eval.acc, best_acc);
  std::printf("state_dict sha256: %s\n", state_dict_sha256(*model).c_str());
  std::printf("metrics: %s/metrics.csv, %s/metrics.svg; checkpoints: %s/last.pth, %s/model_best.pth\n",
              a.out.c_str(), a.out.c_str(), a.out.c_str(), a.out.c_str());
  if (a.min_accuracy >= 0 && final_eval.acc < a.min_accuracy) {
    std::fprintf(stderr, "finetune_resnet: final test accuracy %.2f%% is below --min-accuracy %.2f%%\n",
                 final_eval.acc, a.min_accuracy);
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  try {
    return run(args);
  } catch (const Error& e) {
    std::fprintf(stderr, "finetune_resnet: %s\n", e.what());
    return 1;
  }
}
