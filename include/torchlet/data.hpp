#pragma once
/// \file The data pipeline: datasets (Fashion-MNIST / MNIST IDX, CIFAR-10 binary, image folders), transforms and
/// the seeded, prefetching DataLoader. Image decoding needs stb_image's implementation once per program: see
/// torchlet/data/image_folder.hpp (define TORCHLET_STB_IMPLEMENTATION in one .cpp, or link -lstb).
#include "torchlet/data/byte_reader.hpp"
#include "torchlet/data/cifar10.hpp"
#include "torchlet/data/dataloader.hpp"
#include "torchlet/data/dataset.hpp"
#include "torchlet/data/idx.hpp"
#include "torchlet/data/image_folder.hpp"
#include "torchlet/data/subset.hpp"
#include "torchlet/data/transforms.hpp"
