#pragma once
/// \file Optimizers and LR schedulers in one include: SGD, Adam, AdamW, StepLR, MultiStepLR, CosineAnnealingLR,
/// LinearLR, with PyTorch 1.13's formulas and state_dict layout.
#include "torchlet/io/value.hpp"
#include "torchlet/optim/adam.hpp"
#include "torchlet/optim/lr_scheduler.hpp"
#include "torchlet/optim/optimizer.hpp"
#include "torchlet/optim/sgd.hpp"
