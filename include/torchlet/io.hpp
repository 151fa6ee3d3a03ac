#pragma once
/// \file PyTorch files in one include: torchlet::load / torchlet::save of `.pth` checkpoints (zip and legacy
/// formats; copy or zero-copy), safetensors, `.npy`, and the Value tree a checkpoint holds.
#include "torchlet/io/load.hpp"
#include "torchlet/io/npy.hpp"
#include "torchlet/io/safetensors.hpp"
#include "torchlet/io/save.hpp"
#include "torchlet/io/value.hpp"
