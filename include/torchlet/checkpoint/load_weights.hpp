#pragma once
/// \file load_weights: loads a checkpoint's weights into a model the ways PyTorch users do by hand: strictly
/// (PyTorch's load_state_dict), filtered to the keys the model has (the seed's
/// `{k: v for k, v in pretrained.items() if k in model_dict}`), skipping tensors whose shape changed (a new head),
/// with renamed keys (`module.`, `_orig_mod.`, regexes), from a state_dict, a training checkpoint holding one, or a
/// pickled whole module. Returns a LoadReport saying what happened to every key.
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "torchlet/checkpoint/rename.hpp"
#include "torchlet/checkpoint/state_dict_value.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/io/unpickler.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/nn/format.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/nn/state_dict.hpp"

namespace torchlet {

/// How load_weights matches a checkpoint to a model. The defaults are PyTorch's `model.load_state_dict(sd)`.
struct WeightLoadOptions {
  /// Missing or unexpected keys raise nn::StateDictError with PyTorch's text (a shape mismatch raises even when
  /// false, as in PyTorch, unless skip_shape_mismatch).
  bool strict = true;
  /// The seed's partial load: drop the checkpoint's keys the model lacks (reported as filtered) and keep the
  /// model's own tensors for the keys the checkpoint lacks (reported as missing, never an error), exactly like
  /// `pretrained = {k: v for k, v in pretrained.items() if k in model_dict}; model_dict.update(pretrained);
  /// model.load_state_dict(model_dict)`.
  bool filter_to_model = false;
  /// Keys whose shape differs from the model's are reported and not loaded (the model keeps its tensor), e.g. a
  /// 1000-class `fc` into a 10-class model.
  bool skip_shape_mismatch = false;
  /// Applied in order to every key (and to the `_metadata` prefixes) before matching.
  std::vector<RenameRule> renames = {};
  /// Where the state_dict sits in a checkpoint dict ("state_dict", "model", or a dotted path "model.ema"); ""
  /// finds it: the root when it is a state_dict or a pickled module, else the one dict of tensors (or pickled
  /// module) inside; several raise an error listing them.
  std::string top_level_key = {};
};

/// A key whose shape in the checkpoint differs from the model's.
struct ShapeMismatch {
  std::string key;    ///< the (renamed) key
  Shape file_shape;   ///< shape in the checkpoint
  Shape model_shape;  ///< shape in the model
};

/// A key copied with a dtype conversion (e.g. a float16 checkpoint into a float32 model).
struct DTypeConversion {
  std::string key;   ///< the (renamed) key
  DType file_dtype;  ///< dtype in the checkpoint
  DType model_dtype;  ///< dtype in the model (what the tensor holds now)
};

/// A key renamed by the rename rules.
struct RenamedKey {
  std::string from;  ///< the key in the checkpoint
  std::string to;    ///< the key after every rule
};

/// What load_weights did, key by key (PyTorch's `_IncompatibleKeys` and more).
struct LoadReport {
  /// Where the state_dict was found: "" for the root, "state_dict", "model.ema", ...; "(pickled module)" is
  /// appended for a `torch.save(model)` object.
  std::string source;
  size_t loaded = 0;                             ///< tensors copied into the model
  std::vector<std::string> missing_keys;         ///< in the model, not in the checkpoint (the model keeps them)
  std::vector<std::string> unexpected_keys;      ///< in the checkpoint, not in the model
  std::vector<ShapeMismatch> shape_mismatches;   ///< skipped because the shapes differ (skip_shape_mismatch)
  std::vector<DTypeConversion> converted;        ///< copied with a dtype conversion
  std::vector<RenamedKey> renamed;               ///< keys the rename rules changed
  std::vector<std::string> filtered_keys;        ///< dropped by filter_to_model (the model lacks them)
  /// True when every key of the model was loaded from the checkpoint and nothing was left over or skipped.
  bool all_matched() const { return missing_keys.empty() && unexpected_keys.empty() && shape_mismatches.empty() &&
                                    filtered_keys.empty(); }
};

namespace detail {
/// True for a dict (maybe empty) whose entries, `"__attributes__"` aside, are all str -> Tensor.
inline bool is_tensor_dict(const Value& v) { return v.is_dict() && (v.size() == 0 || is_state_dict_value(v) ||
                                                                     (v.size() == 1 && v.contains(Value(kAttributesKey)))); }

/// True for a pickled torch.nn.Module object (`torch.save(model)`).
inline bool is_pickled_module(const Value& v) { return !io::pickled_class(v).empty() && v.contains(Value("_modules")); }

/// `'epoch': int, 'state_dict': dict, ...` for error messages.
inline std::string describe_entries(const Value& v) {
  if (!v.is_dict()) return std::string("a ") + v.kind_name();
  std::string out;
  size_t n = 0;
  for (const auto& [k, x] : v.as_dict()) {
    if (n++ == 12) {
      out += ", ...";
      break;
    }
    out += (out.empty() ? "" : ", ") + k.repr() + ": " + (is_pickled_module(x) ? io::pickled_class(x) : x.kind_name());
  }
  return out.empty() ? "an empty dict" : out;
}

/// Collects the dotted paths of state_dicts (non-empty dicts of tensors) and pickled modules below `v`.
inline void find_state_dicts(const Value& v, const std::string& path, int depth,
                             std::vector<std::pair<std::string, const Value*>>& out) {
  if (!v.is_dict() || depth > 4) return;
  for (const auto& [k, x] : v.as_dict()) {
    if (!x.is_dict()) continue;
    if (k.is_string() && k.as_string() == kAttributesKey) continue;
    const std::string p = (path.empty() ? "" : path + ".") + (k.is_string() ? k.as_string() : k.repr());
    if (is_state_dict_value(x) || is_pickled_module(x)) out.emplace_back(p, &x);
    else if (io::pickled_class(x).empty()) find_state_dicts(x, p, depth + 1, out);
  }
}

/// The value at a key or dotted path of a checkpoint dict, or nullptr.
inline const Value* find_path(const Value& root, const std::string& path) {
  if (const Value* v = root.find(Value(path))) return v;
  const Value* cur = &root;
  size_t start = 0;
  while (cur != nullptr && start <= path.size()) {
    const size_t dot = std::min(path.find('.', start), path.size());
    cur = cur->find(Value(path.substr(start, dot - start)));
    start = dot + 1;
  }
  return cur;
}

/// The state_dict a source holds (see WeightLoadOptions::top_level_key); `where` says where it was found.
inline nn::StateDict resolve_state_dict(const Value& source, const std::string& top_level_key, std::string& where) {
  auto from = [&](const Value& v, const std::string& path) {
    where = path;
    if (is_pickled_module(v)) {
      where += path.empty() ? "(pickled module)" : " (pickled module)";
      return to_state_dict(io::module_state_dict(v));
    }
    return to_state_dict(v);
  };
  TORCHLET_CHECK(source.is_dict(), ValueError, "[load_weights] expected a state_dict, a checkpoint dict or a pickled "
                 "module, got a ", source.kind_name());
  if (!top_level_key.empty()) {
    const Value* v = find_path(source, top_level_key);
    TORCHLET_CHECK(v != nullptr, ValueError, "[load_weights] the checkpoint has no entry \"", top_level_key,
                   "\" (it holds ", describe_entries(source), ")");
    TORCHLET_CHECK(is_tensor_dict(*v) || is_pickled_module(*v), ValueError, "[load_weights] checkpoint entry \"",
                   top_level_key, "\" is not a state_dict (a dict of tensors) or a pickled module: it holds ",
                   describe_entries(*v));
    return from(*v, top_level_key);
  }
  if (is_tensor_dict(source) || is_pickled_module(source)) return from(source, "");
  std::vector<std::pair<std::string, const Value*>> found;
  find_state_dicts(source, "", 0, found);
  TORCHLET_CHECK(!found.empty(), ValueError, "[load_weights] found no state_dict (a dict of tensors) in the checkpoint: "
                 "it holds ", describe_entries(source));
  if (found.size() > 1) {
    std::string names;
    for (const auto& [p, v] : found) names += (names.empty() ? "\"" : ", \"") + p + "\"";
    TORCHLET_THROW(ValueError, "[load_weights] the checkpoint holds several state_dicts: ", names,
                   "; choose one with WeightLoadOptions::top_level_key");
  }
  return from(*found[0].second, found[0].first);
}

/// `sd` with every key (and `_metadata` prefix) passed through `rules` in order; records the changed keys.
/// Raises ValueError when two keys end up the same.
inline nn::StateDict rename_keys(const nn::StateDict& sd, const std::vector<RenameRule>& rules,
                                 std::vector<RenamedKey>& renamed) {
  nn::StateDict out;
  std::unordered_map<std::string, std::string> origin;
  for (const auto& [key, t] : sd) {
    std::string k = key;
    for (const RenameRule& r : rules) k = r.apply(k);
    auto [it, fresh] = origin.emplace(k, key);
    TORCHLET_CHECK(fresh, ValueError, "[load_weights] the rename rules map both \"", it->second, "\" and \"", key,
                   "\" to \"", k, "\"");
    if (k != key) renamed.push_back({key, k});
    out.insert(k, t);
  }
  if (sd.versions) {
    out.versions.emplace();
    std::vector<std::pair<std::string, int64_t>> changed;
    for (const auto& [prefix, v] : *sd.versions) {
      std::string p = prefix;
      for (const RenameRule& r : rules) p = r.apply_to_prefix(p);
      if (p == prefix) (*out.versions)[p] = v;
      else changed.emplace_back(p, v);
    }
    for (const auto& [p, v] : changed) (*out.versions)[p] = v;  // a renamed module wins over an unchanged one
  }
  return out;
}

/// True when load_state_dict accepts `input` for `target`'s shape (equal, or PyTorch's 1-dim into 0-dim rule).
inline bool loadable_shape(const Tensor& input, const Tensor& target) {
  return input.sizes() == target.sizes() || (target.dim() == 0 && input.dim() == 1);
}
}  // namespace detail

/// Loads the weights of `source` into `model` as `options` say and reports what happened. `source` is a
/// state_dict (`torch.load("model_state_dict.pth")`, `_metadata` included), a checkpoint dict holding one
/// (`{'epoch': ..., 'state_dict': {...}, 'optimizer': ...}`), or a pickled whole module (`torch.save(model)`).
/// Tensors are copied into the model's own tensors, converting dtypes. With `strict`, missing or unexpected keys
/// raise nn::StateDictError with PyTorch's exact text (Module::load_state_dict's), as do shape mismatches unless
/// skip_shape_mismatch; BatchNorm's missing num_batches_tracked follows PyTorch's `_metadata` version rule.
inline LoadReport load_weights(nn::Module& model, const Value& source, const WeightLoadOptions& options = {}) {
  LoadReport report;
  nn::StateDict file = detail::resolve_state_dict(source, options.top_level_key, report.source);
  if (!options.renames.empty()) file = detail::rename_keys(file, options.renames, report.renamed);
  const nn::StateDict own = model.state_dict();

  nn::StateDict to_load;
  to_load.versions = file.versions;
  for (const auto& [key, t] : file) {
    const Tensor* target = own.find(key);
    if (target == nullptr) {
      if (options.filter_to_model) report.filtered_keys.push_back(key);
      else to_load.insert(key, t);
      continue;
    }
    if (options.skip_shape_mismatch && !detail::loadable_shape(t, *target)) {
      report.shape_mismatches.push_back({key, t.sizes(), target->sizes()});
      to_load.insert(key, *target);  // the model keeps its tensor (copied onto itself)
      continue;
    }
    to_load.insert(key, t);
  }
  if (options.filter_to_model) {
    // model_dict.update(pretrained): the model's own entries fill what the checkpoint lacks, under the model's
    // _metadata
    for (const auto& [key, t] : own) {
      if (to_load.contains(key)) continue;
      report.missing_keys.push_back(key);
      to_load.insert(key, t);
    }
    to_load.versions = own.versions;
  }

  const nn::LoadResult r = model.load_state_dict(to_load, options.strict);
  if (!options.filter_to_model) report.missing_keys = r.missing_keys;
  report.unexpected_keys = r.unexpected_keys;
  for (const std::string& key : r.converted_keys)
    report.converted.push_back({key, to_load.at(key).dtype(), own.at(key).dtype()});
  const std::unordered_set<std::string> missing(report.missing_keys.begin(), report.missing_keys.end());
  for (const auto& [key, t] : own)
    if (!missing.count(key) && file.contains(key)) ++report.loaded;
  report.loaded -= report.shape_mismatches.size();
  return report;
}

/// load_weights from an in-memory nn::StateDict (versions included), e.g. to rename keys or skip shape
/// mismatches on a state_dict you built or converted yourself.
inline LoadReport load_weights(nn::Module& model, const nn::StateDict& state_dict, const WeightLoadOptions& options = {}) {
  return load_weights(model, to_value(state_dict), options);
}

namespace detail {
/// Appends `title (n): a, b, ...` (at most `limit` items) to `out` when `items` is not empty.
inline void report_list(std::string& out, const std::string& title, const std::vector<std::string>& items,
                        size_t limit = 20) {
  if (items.empty()) return;
  out += "  " + title + " (" + std::to_string(items.size()) + "):";
  for (size_t i = 0; i < items.size() && i < limit; ++i) out += "\n    " + items[i];
  if (items.size() > limit) out += "\n    ... and " + std::to_string(items.size() - limit) + " more";
  out += "\n";
}
}  // namespace detail

/// A readable multi-line summary of a LoadReport:
/// ```
/// loaded 120 tensors from "state_dict"
///   renamed (122):
///     module.conv1.weight -> conv1.weight
///   shape mismatch, kept the model's tensor (2):
///     fc.weight: checkpoint [1000, 512], model [10, 512]
/// ```
inline std::string format(const LoadReport& r) {
  std::string out = "loaded " + std::to_string(r.loaded) + " tensor" + (r.loaded == 1 ? "" : "s") + " from " +
                    (r.source.empty() ? std::string("the root") : "\"" + r.source + "\"") +
                    (r.all_matched() ? ": all keys matched" : "") + "\n";
  std::vector<std::string> lines;
  for (const auto& k : r.renamed) lines.push_back(k.from + " -> " + k.to);
  detail::report_list(out, "renamed", lines);
  detail::report_list(out, "missing, kept the model's tensor", r.missing_keys);
  detail::report_list(out, "unexpected, not loaded", r.unexpected_keys);
  lines.clear();
  for (const auto& m : r.shape_mismatches)
    lines.push_back(m.key + ": checkpoint " + shape_str(m.file_shape) + ", model " + shape_str(m.model_shape));
  detail::report_list(out, "shape mismatch, kept the model's tensor", lines);
  lines.clear();
  for (const auto& c : r.converted)
    lines.push_back(c.key + ": " + std::string(dtype_name(c.file_dtype)) + " -> " + std::string(dtype_name(c.model_dtype)));
  detail::report_list(out, "dtype converted", lines);
  detail::report_list(out, "filtered out (not in the model)", r.filtered_keys);
  return out;
}

}  // namespace torchlet
