#pragma once
/// \file StateDict: the ordered (key, tensor) list that Module::state_dict() returns and load_state_dict() takes,
/// with PyTorch's `_metadata` versions; LoadResult and StateDictError for loading.
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "torchlet/core/error.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::nn {

/// Raised by load_state_dict with PyTorch's exact RuntimeError text ("Error(s) in loading state_dict for ...").
struct StateDictError : Error {
  using Error::Error;
};

/// An ordered dict of named tensors, like the OrderedDict PyTorch's state_dict() returns: insertion order is kept,
/// keys are unique, lookup by key is O(1).
class StateDict {
 public:
  using value_type = std::pair<std::string, Tensor>;  ///< one (key, tensor) entry
  using const_iterator = std::vector<value_type>::const_iterator;  ///< iterates in order

  /// Module versions by module prefix ("" for the root, "layer1.0.bn1", ...), PyTorch's
  /// `state_dict._metadata[prefix]["version"]`; nullopt when the source had no metadata (then BatchNorm treats the
  /// checkpoint as older than version 2 and tolerates a missing num_batches_tracked, as PyTorch does).
  std::optional<std::map<std::string, int64_t>> versions;

  StateDict() = default;
  /// Entries in the given order (a repeated key keeps its first position and takes the last value).
  StateDict(std::initializer_list<value_type> entries) {
    for (const auto& [k, v] : entries) insert(k, v);
  }

  /// `sd[key] = value`: replaces the value of an existing key in place, or appends a new entry.
  void insert(const std::string& key, Tensor value) {
    if (auto it = index_.find(key); it != index_.end()) {
      items_[it->second].second = std::move(value);
      return;
    }
    index_.emplace(key, items_.size());
    items_.emplace_back(key, std::move(value));
  }
  /// True when `key` is present.
  bool contains(const std::string& key) const { return index_.count(key) != 0; }
  /// The tensor of `key`, or nullptr.
  const Tensor* find(const std::string& key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  /// The tensor of `key`, or nullptr (assigning through it replaces the value).
  Tensor* find(const std::string& key) {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  /// The tensor of `key`; raises IndexError when absent.
  const Tensor& at(const std::string& key) const {
    const Tensor* t = find(key);
    TORCHLET_CHECK(t != nullptr, IndexError, "[StateDict] no key \"", key, "\"");
    return *t;
  }
  /// The tensor of `key`; raises IndexError when absent.
  Tensor& at(const std::string& key) {
    Tensor* t = find(key);
    TORCHLET_CHECK(t != nullptr, IndexError, "[StateDict] no key \"", key, "\"");
    return *t;
  }
  /// Removes `key`; returns whether it was present.
  bool erase(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(it->second));
    reindex();
    return true;
  }
  /// Removes every entry for which pred(key, tensor) is true; returns how many went (recipe 4's filtering).
  template <class Pred>
  size_t erase_if(Pred pred) {
    const size_t before = items_.size();
    std::vector<value_type> kept;
    for (auto& e : items_)
      if (!pred(static_cast<const std::string&>(e.first), static_cast<const Tensor&>(e.second)))
        kept.push_back(std::move(e));
    items_ = std::move(kept);
    reindex();
    return before - items_.size();
  }
  /// Python's dict.update: each entry of `other` replaces or appends (versions are left as they are).
  void update(const StateDict& other) {
    for (const auto& [k, v] : other) insert(k, v);
  }
  /// The keys in order.
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    out.reserve(items_.size());
    for (const auto& e : items_) out.push_back(e.first);
    return out;
  }
  size_t size() const { return items_.size(); }      ///< Number of entries.
  bool empty() const { return items_.empty(); }       ///< True without entries.
  const_iterator begin() const { return items_.begin(); }  ///< First entry.
  const_iterator end() const { return items_.end(); }      ///< Past the last entry.
  /// The entries in order.
  const std::vector<value_type>& items() const { return items_; }

 private:
  void reindex() {
    index_.clear();
    for (size_t i = 0; i < items_.size(); ++i) index_.emplace(items_[i].first, i);
  }
  std::vector<value_type> items_;
  std::unordered_map<std::string, size_t> index_;
};

/// What load_state_dict(strict = false) reports, like PyTorch's `_IncompatibleKeys`, plus the keys whose dtype was
/// converted while copying.
struct LoadResult {
  std::vector<std::string> missing_keys;     ///< in the model, not in the state dict
  std::vector<std::string> unexpected_keys;  ///< in the state dict, not in the model
  std::vector<std::string> converted_keys;   ///< copied with a dtype conversion (e.g. float64 -> float32)
};
}  // namespace torchlet::nn
