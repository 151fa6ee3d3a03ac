#pragma once
/// \file The models layer in one include: torchvision's ResNet family with its exact keys (models/resnet.hpp) and
/// inference-time BatchNorm folding (models/fold_batchnorm.hpp), registered for save_model / load_model
/// (models/architectures.hpp).
#include "torchlet/models/architectures.hpp"
#include "torchlet/models/fold_batchnorm.hpp"
#include "torchlet/models/resnet.hpp"
