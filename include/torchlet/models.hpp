#pragma once
/// \file The models layer in one include: torchvision's ResNet family (models/resnet.hpp), AlexNet
/// (models/alexnet.hpp), the VGGs (models/vgg.hpp) and the SqueezeNets (models/squeezenet.hpp) with their exact keys,
/// inference-time BatchNorm folding (models/fold_batchnorm.hpp), all registered for save_model / load_model
/// (models/architectures.hpp).
#include "torchlet/models/alexnet.hpp"
#include "torchlet/models/architectures.hpp"
#include "torchlet/models/fold_batchnorm.hpp"
#include "torchlet/models/resnet.hpp"
#include "torchlet/models/squeezenet.hpp"
#include "torchlet/models/vgg.hpp"
