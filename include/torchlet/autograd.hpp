#pragma once
/// \file Autograd in one include: grad mode, the graph, backward, gradcheck, and the gradients of views.
#include "torchlet/autograd/engine.hpp"
#include "torchlet/autograd/grad_mode.hpp"
#include "torchlet/autograd/gradcheck.hpp"
#include "torchlet/autograd/node.hpp"
#include "torchlet/ops/autograd_support.hpp"
