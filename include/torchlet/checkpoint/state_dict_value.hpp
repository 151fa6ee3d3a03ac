#pragma once
/// \file StateDict <-> Value: a model's state_dict as the Value tree a checkpoint holds, with PyTorch's layout
/// (an OrderedDict of key -> tensor whose `_metadata` attribute maps each module prefix to `{'version': v}`),
/// and back. The `_metadata` sits in the dict's trailing `"__attributes__"` entry, as the unpickler reads it and
/// the writer writes it.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "torchlet/core/error.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/nn/state_dict.hpp"

namespace torchlet {

/// The reserved dict key under which a pickled OrderedDict's attributes (PyTorch's `_metadata`) are kept.
inline constexpr const char* kAttributesKey = "__attributes__";

namespace detail {
/// Depth of a module prefix: 0 for the root "", 1 for "fc", 2 for "layer1.0", ...
inline size_t prefix_depth(const std::string& prefix) {
  return prefix.empty() ? 0 : 1 + static_cast<size_t>(std::count(prefix.begin(), prefix.end(), '.'));
}

/// The `_metadata` dict for `versions`, with prefixes in the order given.
inline Value metadata_value(const std::map<std::string, int64_t>& versions, const std::vector<std::string>& order) {
  ValueDict meta;
  for (const std::string& p : order) meta.set(Value(p), Value::dict({{"version", versions.at(p)}}));
  return Value(std::move(meta));
}

/// The dict of `sd`'s tensors followed by `"__attributes__": {"_metadata": meta}` when meta is given.
inline Value state_dict_dict(const nn::StateDict& sd, std::optional<Value> meta) {
  ValueDict d;
  for (const auto& [k, t] : sd) d.set(Value(k), Value(t));
  if (meta) d.set(Value(kAttributesKey), Value::dict({{"_metadata", std::move(*meta)}}));
  return Value(std::move(d));
}
}  // namespace detail

/// `sd` as a Value: an ordered dict key -> tensor (tensors shared, not copied), plus
/// `"__attributes__": {"_metadata": {prefix: {"version": v}, ...}}` when `sd.versions` is known. PyTorch lists the
/// prefixes in module order; a StateDict only knows them as a set, so they are ordered by the first key below each
/// prefix (a parent before its children), and prefixes without any key (ReLU, pools) follow in sorted order. Use
/// to_value(const nn::Module&) for PyTorch's exact order.
inline Value to_value(const nn::StateDict& sd) {
  if (!sd.versions) return detail::state_dict_dict(sd, std::nullopt);
  constexpr size_t kNone = std::numeric_limits<size_t>::max();
  struct Entry {
    std::string prefix;
    size_t first_key;
    size_t depth;
  };
  std::vector<Entry> entries;
  const auto& items = sd.items();
  for (const auto& [prefix, v] : *sd.versions) {
    size_t first = kNone;
    for (size_t i = 0; i < items.size() && first == kNone; ++i)
      if (prefix.empty() || items[i].first.compare(0, prefix.size() + 1, prefix + ".") == 0) first = i;
    entries.push_back({prefix, first, detail::prefix_depth(prefix)});
  }
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.first_key != b.first_key) return a.first_key < b.first_key;
    return a.first_key != kNone && a.depth < b.depth;
  });
  std::vector<std::string> order;
  for (const auto& e : entries) order.push_back(e.prefix);
  return detail::state_dict_dict(sd, detail::metadata_value(*sd.versions, order));
}

/// `model.state_dict()` as a Value, with `_metadata` in PyTorch's exact module order (named_modules()).
inline Value to_value(const nn::Module& model) {
  const nn::StateDict sd = model.state_dict();
  std::vector<std::string> order;
  for (const auto& [prefix, m] : model.named_modules())
    if (sd.versions->count(prefix)) order.push_back(prefix);
  return detail::state_dict_dict(sd, detail::metadata_value(*sd.versions, order));
}

/// The versions a Value state_dict carries in `"__attributes__"._metadata` (prefix -> version; prefixes whose
/// entry has no int "version" are skipped), or nullopt when it has no `_metadata` (PyTorch then treats every
/// module as an old version: BatchNorm tolerates a missing num_batches_tracked).
inline std::optional<std::map<std::string, int64_t>> state_dict_versions(const Value& state_dict) {
  if (!state_dict.is_dict()) return std::nullopt;
  const Value* attrs = state_dict.find(Value(kAttributesKey));
  if (attrs == nullptr || !attrs->is_dict()) return std::nullopt;
  const Value* meta = attrs->find(Value("_metadata"));
  if (meta == nullptr || !meta->is_dict()) return std::nullopt;
  std::map<std::string, int64_t> versions;
  for (const auto& [prefix, entry] : meta->as_dict()) {
    if (!prefix.is_string() || !entry.is_dict()) continue;
    const Value* v = entry.find(Value("version"));
    if (v != nullptr && v->is_int()) versions[prefix.as_string()] = v->as_int();
  }
  return versions;
}

/// True when `v` is a dict whose entries (the `"__attributes__"` entry aside) are all str -> Tensor and there is
/// at least one: what a state_dict looks like.
inline bool is_state_dict_value(const Value& v) {
  if (!v.is_dict()) return false;
  size_t tensors = 0;
  for (const auto& [k, x] : v.as_dict()) {
    if (k.is_string() && k.as_string() == kAttributesKey) continue;
    if (!k.is_string() || !x.is_tensor()) return false;
    ++tensors;
  }
  return tensors > 0;
}

/// A Value state_dict (what torch.load of `torch.save(model.state_dict())` gives) as an nn::StateDict, in order;
/// versions come from `_metadata` (see state_dict_versions). Tensors are shared, not copied. Raises ValueError
/// naming the key when an entry is not str -> Tensor, or when `state_dict` is not a dict.
inline nn::StateDict to_state_dict(const Value& state_dict) {
  TORCHLET_CHECK(state_dict.is_dict(), ValueError, "[to_state_dict] expected a dict of tensors, got a ",
                 state_dict.kind_name());
  nn::StateDict sd;
  for (const auto& [k, x] : state_dict.as_dict()) {
    TORCHLET_CHECK(k.is_string(), ValueError, "[to_state_dict] expected str keys, got the ", k.kind_name(), " key ",
                   k.repr());
    if (k.as_string() == kAttributesKey) continue;
    TORCHLET_CHECK(x.is_tensor(), ValueError, "[to_state_dict] entry \"", k.as_string(), "\" is a ", x.kind_name(),
                   ", expected a Tensor");
    sd.insert(k.as_string(), x.as_tensor());
  }
  sd.versions = state_dict_versions(state_dict);
  return sd;
}

}  // namespace torchlet
