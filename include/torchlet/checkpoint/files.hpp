#pragma once
/// \file The file-level recipes: load_weights from a `.pth` path, the seed's training checkpoint saved to and
/// restored from a file, and whole-model files (`save_model` / `load_model`) that store the architecture's name
/// and options next to the weights instead of pickled code. Files are written with torchlet::save (atomic,
/// `torch.load` opens them) and read with torchlet::load (never executes anything).
#include <memory>
#include <string>

#include "torchlet/checkpoint/architecture.hpp"
#include "torchlet/checkpoint/checkpoint.hpp"
#include "torchlet/checkpoint/load_weights.hpp"
#include "torchlet/io/load.hpp"
#include "torchlet/io/save.hpp"
#include "torchlet/nn/module.hpp"
#include "torchlet/optim/optimizer.hpp"

namespace torchlet {

/// load_weights from a checkpoint file (`torch.save(model.state_dict(), path)`, a training checkpoint, or
/// `torch.save(model, path)`), read with torchlet::load.
inline LoadReport load_weights(nn::Module& model, const std::string& path, const WeightLoadOptions& options = {},
                               const LoadFileOptions& file_options = {}) {
  return load_weights(model, load(path, file_options), options);
}
/// load_weights from a checkpoint file (for string literals).
inline LoadReport load_weights(nn::Module& model, const char* path, const WeightLoadOptions& options = {},
                               const LoadFileOptions& file_options = {}) {
  return load_weights(model, std::string(path), options, file_options);
}

/// The seed's save: `torch.save({'epoch', 'state_dict', 'best_acc', 'optimizer'}, path)` (see make_checkpoint;
/// checkpoint_path makes the seed's file name).
inline void save_checkpoint(const std::string& path, int64_t epoch, const nn::Module& model, double best_acc,
                            const optim::Optimizer& optimizer, const SaveOptions& save_options = {}) {
  save(path, make_checkpoint(epoch, model, best_acc, optimizer), save_options);
}

/// The seed's `load_model(model, checkpoint, optimizer)`: reads the checkpoint file and restores the model
/// (strict) and, when given, the optimizer; returns the stored epoch and best accuracy (see restore_checkpoint).
inline RestoredCheckpoint load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* optimizer,
                                          const WeightLoadOptions& options = {},
                                          const LoadFileOptions& file_options = {}) {
  return restore_checkpoint(load(path, file_options), model, optimizer, options);
}

/// Saves `model` as `{'arch': spec.name, 'arch_options': spec.options, 'state_dict': ...}` (a plain dict that
/// `torch.load` opens), to be rebuilt by load_model.
inline void save_model(const std::string& path, const nn::Module& model, const ArchitectureSpec& spec,
                       const SaveOptions& save_options = {}) {
  save(path, model_record(model, spec), save_options);
}
/// save_model for a model made by build_architecture (which remembers its name and options).
inline void save_model(const std::string& path, const nn::Module& model, const SaveOptions& save_options = {}) {
  save(path, model_record(model), save_options);
}

/// Rebuilds a model saved by save_model: the registered architecture, built with the stored options, with the
/// stored weights loaded (strict unless `options` say otherwise).
inline std::shared_ptr<nn::Module> load_model(const std::string& path, const WeightLoadOptions& options = {},
                                              const LoadFileOptions& file_options = {}) {
  return model_from_record(load(path, file_options), options);
}

}  // namespace torchlet
