#pragma once
/// \file torchlet's CUDA backend. Include this header in exactly one translation unit of your program, compiled
/// by nvcc (C++20, linked with cudart and cuBLAS): it registers the caching allocator, the host <-> device copies
/// and the CUDA kernels before main, after which Tensor::to(Device("cuda")) and the routed ops (elementwise,
/// reductions, matmul/linear on cuBLAS, conv2d and batch norm on cuDNN, pooling, softmax, nll_loss / cross_entropy,
/// dropout, cat, the SGD step) run on the GPU, and cuda::Graph captures and replays them as CUDA graphs. Every
/// other translation unit includes the ordinary headers and needs no CUDA toolkit.
#include "torchlet/cuda/backend.cuh"
#include "torchlet/cuda/graph.cuh"
