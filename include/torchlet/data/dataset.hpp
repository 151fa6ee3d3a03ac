#pragma once
/// \file Datasets: the Example a dataset yields, the Dataset interface the DataLoader reads, and TensorDataset
/// (images and labels held in memory) with class filtering / remapping and subsets.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "torchlet/tensor/tensor.hpp"

namespace torchlet::data {

namespace detail {
/// Raises ValueError, prefixed with `who`, when a class is listed twice in `keep`.
inline void check_distinct_classes(const std::vector<int64_t>& keep, const char* who) {
  for (size_t j = 0; j < keep.size(); ++j)
    for (size_t k = 0; k < j; ++k)
      TORCHLET_CHECK(keep[j] != keep[k], ValueError, who, "class ", keep[j], " is listed twice");
}
/// The names of the classes `keep` (in that order) out of `all`; a class without a name is its number.
inline std::vector<std::string> kept_class_names(const std::vector<std::string>& all,
                                                 const std::vector<int64_t>& keep) {
  std::vector<std::string> names;
  for (int64_t c : keep)
    names.push_back(c >= 0 && c < static_cast<int64_t>(all.size()) ? all[static_cast<size_t>(c)] : std::to_string(c));
  return names;
}
}  // namespace detail

/// One sample: an image tensor (uint8 [C,H,W] as stored, or whatever a transform made of it) and its class index.
struct Example {
  Tensor image;       ///< The image, channels first.
  int64_t label = 0;  ///< The class index.
};

/// A random-access collection of examples, read by the DataLoader. get() is called from the loader's worker
/// thread; it must not change shared state (two epochs iterated at once call it from two threads).
class Dataset {
 public:
  virtual ~Dataset() = default;
  /// Number of samples.
  virtual int64_t size() const = 0;
  /// Sample `index` (0 <= index < size()).
  virtual Example get(int64_t index) const = 0;
  /// Class names, index = label (empty when unknown).
  virtual std::vector<std::string> classes() const { return {}; }
  /// The label of sample `index` alone; datasets that know it without decoding the image override this.
  virtual int64_t label(int64_t index) const { return get(index).label; }
};

/// Images and labels held in memory: uint8 images [N,H,W] or [N,C,H,W] and int64 labels [N] (like
/// torchvision's MNIST / CIFAR10 `.data` and `.targets`). get(i) returns a [C,H,W] view (C = 1 for [N,H,W]).
class TensorDataset : public Dataset {
 public:
  /// An empty dataset.
  TensorDataset() = default;
  /// Takes images [N,...] (any dtype, N first) and labels [N] (any integer dtype, stored as int64).
  TensorDataset(Tensor images, Tensor labels, std::vector<std::string> class_names = {})
      : classes_(std::move(class_names)) {
    TORCHLET_CHECK(images.defined() && labels.defined(), ValueError, "[TensorDataset] images and labels must be "
                   "defined tensors");
    TORCHLET_CHECK(images.dim() == 3 || images.dim() == 4, ShapeError, "[TensorDataset] expected images [N,H,W] or "
                   "[N,C,H,W], got ", shape_str(images.sizes()));
    TORCHLET_CHECK(labels.dim() == 1 && labels.size(0) == images.size(0), ShapeError, "[TensorDataset] expected "
                   "labels [", images.size(0), "] to match images ", shape_str(images.sizes()), ", got ",
                   shape_str(labels.sizes()));
    TORCHLET_CHECK(!labels.is_floating_point() && labels.dtype() != kBool, DTypeError, "[TensorDataset] expected "
                   "integer labels, got ", labels.dtype());
    images_ = images.contiguous();
    labels_ = labels.to(kInt64).contiguous();
  }

  int64_t size() const override { return images_.defined() ? images_.size(0) : 0; }  ///< Number of samples.
  /// Sample `index`: the image as a [C,H,W] view of images() and its label.
  Example get(int64_t index) const override {
    TORCHLET_CHECK(index >= 0 && index < size(), IndexError, "[TensorDataset] index ", index,
                   " is out of range for a dataset of ", size(), " samples");
    Tensor img = images_.select(0, index);
    if (img.dim() == 2) img = img.unsqueeze(0);
    return {img, labels_.data<int64_t>()[index]};
  }
  std::vector<std::string> classes() const override { return classes_; }  ///< Class names, index = label.
  /// The label of sample `index`.
  int64_t label(int64_t index) const override {
    TORCHLET_CHECK(index >= 0 && index < size(), IndexError, "[TensorDataset] index ", index,
                   " is out of range for a dataset of ", size(), " samples");
    return labels_.data<int64_t>()[index];
  }

  const Tensor& images() const { return images_; }  ///< All images, [N,H,W] or [N,C,H,W], contiguous.
  const Tensor& labels() const { return labels_; }  ///< All labels, int64 [N].
  /// Number of samples per label value 0..max (labels must be >= 0).
  std::vector<int64_t> label_counts() const {
    std::vector<int64_t> counts;
    const int64_t* l = size() ? labels_.data<int64_t>() : nullptr;
    for (int64_t i = 0; i < size(); ++i) {
      TORCHLET_CHECK(l[i] >= 0, ValueError, "[TensorDataset] label_counts: sample ", i, " has negative label ", l[i]);
      if (static_cast<size_t>(l[i]) >= counts.size()) counts.resize(static_cast<size_t>(l[i]) + 1, 0);
      ++counts[static_cast<size_t>(l[i])];
    }
    return counts;
  }

  /// The samples at `indices`, in that order (copies the images).
  TensorDataset subset(const std::vector<int64_t>& indices) const {
    const int64_t n = static_cast<int64_t>(indices.size());
    Shape shape = images_.sizes();
    shape[0] = n;
    Tensor imgs = empty(shape, images_.dtype());
    Tensor labs = empty({n}, kInt64);
    const int64_t row = size() ? images_.nbytes() / size() : 0;
    const auto* src = static_cast<const char*>(images_.data_ptr());
    auto* dst = static_cast<char*>(imgs.data_ptr());
    for (int64_t k = 0; k < n; ++k) {
      const int64_t i = indices[static_cast<size_t>(k)];
      TORCHLET_CHECK(i >= 0 && i < size(), IndexError, "[TensorDataset] subset index ", i,
                     " is out of range for a dataset of ", size(), " samples");
      std::memcpy(dst + k * row, src + i * row, static_cast<size_t>(row));
      labs.data<int64_t>()[k] = labels_.data<int64_t>()[i];
    }
    return TensorDataset(imgs, labs, classes_);
  }
  /// The first `n` samples (all of them when n >= size()).
  TensorDataset subset_first(int64_t n) const {
    TORCHLET_CHECK(n >= 0, ValueError, "[TensorDataset] subset_first: expected n >= 0, got ", n);
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < std::min(n, size()); ++i) idx.push_back(i);
    return subset(idx);
  }
  /// Every `k`-th sample starting at `offset` (offset, offset + k, ...).
  TensorDataset subset_every(int64_t k, int64_t offset = 0) const {
    TORCHLET_CHECK(k >= 1 && offset >= 0, ValueError, "[TensorDataset] subset_every: expected k >= 1 and offset >= 0,"
                   " got k ", k, ", offset ", offset);
    std::vector<int64_t> idx;
    for (int64_t i = offset; i < size(); i += k) idx.push_back(i);
    return subset(idx);
  }
  /// The samples whose label is in `keep`, in their original order. With `remap`, label keep[j] becomes j
  /// (e.g. keep {5,6,7,8,9} gives labels 0..4) and classes() follows; without it labels stay as they are.
  TensorDataset filter_classes(const std::vector<int64_t>& keep, bool remap = true) const {
    detail::check_distinct_classes(keep, "[TensorDataset] filter_classes: ");
    std::vector<int64_t> idx;
    std::vector<int64_t> new_label;
    const int64_t* l = size() ? labels_.data<int64_t>() : nullptr;
    for (int64_t i = 0; i < size(); ++i) {
      const auto it = std::find(keep.begin(), keep.end(), l[i]);
      if (it == keep.end()) continue;
      idx.push_back(i);
      new_label.push_back(remap ? static_cast<int64_t>(it - keep.begin()) : l[i]);
    }
    TensorDataset out = subset(idx);
    std::memcpy(out.labels_.data_ptr(), new_label.data(), new_label.size() * sizeof(int64_t));
    if (remap && !classes_.empty()) out.classes_ = detail::kept_class_names(classes_, keep);
    return out;
  }

 private:
  Tensor images_, labels_;
  std::vector<std::string> classes_;
};
}  // namespace torchlet::data
