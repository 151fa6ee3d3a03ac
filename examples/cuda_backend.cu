// The one nvcc-compiled translation unit of finetune_resnet_cuda: it includes torchlet's CUDA backend, which
// registers the caching allocator, the device copies and the CUDA kernels before main. The job itself
// (finetune_resnet.cpp) stays plain C++ and finds the kernels through the DeviceKernels registry.
#include "torchlet/cuda.cuh"

namespace {
// registration named here so the linker keeps it whatever the toolchain does with unused inline variables
[[maybe_unused]] const bool cuda_backend_registered = torchlet::cuda::register_backend();
}  // namespace
