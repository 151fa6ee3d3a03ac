#pragma once
/// \file The seed's training checkpoint: `{'epoch': e, 'state_dict': model.state_dict(), 'best_acc': a,
/// 'optimizer': optimizer.state_dict()}` made from a model and an optimizer, and restored into them the way the
/// seed's `load_model(model, checkpoint, optimizer)` does (strict load_state_dict, then the optimizer's).
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>

#include "torchlet/checkpoint/load_weights.hpp"
#include "torchlet/checkpoint/state_dict_value.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/optim/optimizer.hpp"

namespace torchlet {

/// The seed's checkpoint dict, in its key order: `{'epoch': epoch, 'state_dict': model.state_dict() (with
/// `_metadata`), 'best_acc': best_acc, 'optimizer': optimizer.state_dict()}`. Like PyTorch's, the tensors are
/// the model's and the optimizer's own (not copies): save it at once, or deep_copy() it to keep a snapshot.
inline Value make_checkpoint(int64_t epoch, const nn::Module& model, double best_acc, const optim::Optimizer& optimizer) {
  return Value::dict({{"epoch", epoch},
                      {"state_dict", to_value(model)},
                      {"best_acc", best_acc},
                      {"optimizer", optimizer.state_dict()}});
}

/// `v` with every tensor replaced by a contiguous copy (same dtype), so it no longer changes with the model or
/// optimizer it came from: an in-memory snapshot (Python's copy.deepcopy of a checkpoint dict).
inline Value deep_copy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Tensor: return v.as_tensor().defined() ? Value(v.as_tensor().clone()) : v;
    case Value::Kind::List:
    case Value::Kind::Tuple: {
      Value::List items;
      items.reserve(v.as_list().size());
      for (const Value& x : v.as_list()) items.push_back(deep_copy(x));
      return v.is_list() ? Value::list(std::move(items)) : Value::tuple(std::move(items));
    }
    case Value::Kind::Dict: {
      ValueDict d;
      for (const auto& [k, x] : v.as_dict()) d.set(k, deep_copy(x));
      return Value(std::move(d));
    }
    default: return v;
  }
}

/// What restore_checkpoint found besides the weights.
struct RestoredCheckpoint {
  std::optional<int64_t> epoch;    ///< ckpt['epoch'], when present
  std::optional<double> best_acc;  ///< ckpt['best_acc'], when present
  LoadReport weights;              ///< how the state_dict went into the model
};

/// The seed's `load_model(model, checkpoint, optimizer)` on a loaded checkpoint dict:
/// `model.load_state_dict(ckpt["state_dict"])` (strict unless `options` say otherwise; options.top_level_key
/// defaults to "state_dict"), then `optimizer.load_state_dict(ckpt["optimizer"])` when `optimizer` is given.
/// Returns the epoch and best accuracy stored with them. Raises ValueError naming the missing entry.
inline RestoredCheckpoint restore_checkpoint(const Value& checkpoint, nn::Module& model, optim::Optimizer* optimizer,
                                             WeightLoadOptions options = {}) {
  TORCHLET_CHECK(checkpoint.is_dict(), ValueError, "[restore_checkpoint] expected a checkpoint dict, got a ",
                 checkpoint.kind_name());
  const ValueRef root(checkpoint);
  RestoredCheckpoint out;
  if (auto e = root.get(Value("epoch"))) out.epoch = e->as_int();
  if (auto a = root.get(Value("best_acc"))) out.best_acc = a->as_double();
  const Value* opt = checkpoint.find(Value("optimizer"));
  TORCHLET_CHECK(optimizer == nullptr || opt != nullptr, ValueError, "[restore_checkpoint] the checkpoint has no "
                 "\"optimizer\" entry to restore the optimizer from");
  if (options.top_level_key.empty()) options.top_level_key = "state_dict";
  out.weights = load_weights(model, checkpoint, options);
  if (optimizer != nullptr) optimizer->load_state_dict(*opt);
  return out;
}

/// The seed's checkpoint file name: `f"{checkpoint_dir}/m-{timestamp}{best_acc:.4f}.pth.tar"`.
inline std::string checkpoint_path(const std::string& checkpoint_dir, const std::string& timestamp, double best_acc) {
  char acc[64];
  std::snprintf(acc, sizeof(acc), "%.4f", best_acc);
  return checkpoint_dir + "/m-" + timestamp + acc + ".pth.tar";
}

}  // namespace torchlet
