#pragma once
/// \file Umbrella header: everything torchlet offers on the CPU.
#include "torchlet/core/config.hpp"
#include "torchlet/core/device.hpp"
#include "torchlet/core/dtype.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/core/shape.hpp"
#include "torchlet/core/threads.hpp"
#include "torchlet/tensor/factory.hpp"
#include "torchlet/tensor/random.hpp"
#include "torchlet/tensor/tensor.hpp"
#include "torchlet/io/npy.hpp"
#include "torchlet/tensor/print.hpp"
