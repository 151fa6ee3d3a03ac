#pragma once
/// \file Subset: some samples of any dataset, without copying it (torch.utils.data.Subset), optionally with the
/// labels of the kept classes renumbered 0..k-1 — class filtering for datasets that decode lazily (ImageFolder).
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "torchlet/data/dataset.hpp"

namespace torchlet::data {

/// The samples `indices` of a shared dataset, in that order. With a label map, a sample's label l becomes
/// label_map[l] (and classes() follows `class_names`).
class Subset : public Dataset {
 public:
  /// Samples `indices` of `dataset` with their labels unchanged. Raises IndexError for an index out of range.
  Subset(std::shared_ptr<const Dataset> dataset, std::vector<int64_t> indices)
      : dataset_(std::move(dataset)), indices_(std::move(indices)) {
    TORCHLET_CHECK(dataset_ != nullptr, ValueError, "[Subset] the dataset is null");
    for (int64_t i : indices_)
      TORCHLET_CHECK(i >= 0 && i < dataset_->size(), IndexError, "[Subset] index ", i,
                     " is out of range for a dataset of ", dataset_->size(), " samples");
    classes_ = dataset_->classes();
  }

  /// The samples of `dataset` whose label is in `keep`, in their original order. With `remap`, label keep[j]
  /// becomes j (keep {5,6,7,8,9} gives labels 0..4) and classes() lists the kept names; without it labels stay.
  /// Raises ValueError when a class is listed twice.
  static Subset of_classes(std::shared_ptr<const Dataset> dataset, const std::vector<int64_t>& keep,
                           bool remap = true) {
    TORCHLET_CHECK(dataset != nullptr, ValueError, "[Subset] the dataset is null");
    detail::check_distinct_classes(keep, "[Subset] ");
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < dataset->size(); ++i)
      if (std::find(keep.begin(), keep.end(), dataset->label(i)) != keep.end()) idx.push_back(i);
    Subset s(std::move(dataset), std::move(idx));
    if (remap) {
      for (size_t j = 0; j < keep.size(); ++j) {
        const int64_t c = keep[j];
        if (c >= static_cast<int64_t>(s.label_map_.size())) s.label_map_.resize(static_cast<size_t>(c) + 1, -1);
        if (c >= 0) s.label_map_[static_cast<size_t>(c)] = static_cast<int64_t>(j);
      }
      s.classes_ = detail::kept_class_names(s.classes_, keep);
    }
    return s;
  }

  /// The first `n` samples of this subset (all of them when n >= size()), sharing the dataset.
  Subset first(int64_t n) const {
    TORCHLET_CHECK(n >= 0, ValueError, "[Subset] first: expected n >= 0, got ", n);
    Subset s = *this;
    if (n < size()) s.indices_.resize(static_cast<size_t>(n));
    return s;
  }

  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }  ///< Number of samples.
  /// Sample `index` of the subset: the dataset's sample indices()[index], label mapped.
  Example get(int64_t index) const override {
    Example e = dataset_->get(source_index(index));
    e.label = map_label(e.label);
    return e;
  }
  /// The (mapped) label of sample `index`, from the dataset's label() (no image decoded).
  int64_t label(int64_t index) const override { return map_label(dataset_->label(source_index(index))); }
  std::vector<std::string> classes() const override { return classes_; }  ///< Class names, index = label.

  const std::vector<int64_t>& indices() const { return indices_; }  ///< Indices into the dataset.
  const Dataset& dataset() const { return *dataset_; }              ///< The dataset it selects from.

 private:
  int64_t source_index(int64_t index) const {
    TORCHLET_CHECK(index >= 0 && index < size(), IndexError, "[Subset] index ", index,
                   " is out of range for a subset of ", size(), " samples");
    return indices_[static_cast<size_t>(index)];
  }
  int64_t map_label(int64_t l) const {
    if (label_map_.empty()) return l;
    return l >= 0 && l < static_cast<int64_t>(label_map_.size()) ? label_map_[static_cast<size_t>(l)] : -1;
  }

  std::shared_ptr<const Dataset> dataset_;
  std::vector<int64_t> indices_;
  std::vector<int64_t> label_map_;  ///< old label -> new label; empty = labels unchanged
  std::vector<std::string> classes_;
};
}  // namespace torchlet::data
