#pragma once
/// \file Loading checkpoints into models and optimizers in one include: StateDict <-> Value with `_metadata`,
/// rename rules, load_weights (strict / filtered / shape-mismatch skipping / renamed / top-level key) with its
/// LoadReport, the seed's training checkpoint dict, the architecture registry for whole-model records, and the
/// file-level save_checkpoint / load_checkpoint / save_model / load_model.
#include "torchlet/checkpoint/architecture.hpp"
#include "torchlet/checkpoint/checkpoint.hpp"
#include "torchlet/checkpoint/files.hpp"
#include "torchlet/checkpoint/load_weights.hpp"
#include "torchlet/checkpoint/rename.hpp"
#include "torchlet/checkpoint/state_dict_value.hpp"
