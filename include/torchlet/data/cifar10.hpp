#pragma once
/// \file CIFAR-10 in its binary format: `data_batch_1.bin` .. `data_batch_5.bin` (training) and `test_batch.bin`,
/// each a run of 3073-byte records: one label byte (0..9), then 3072 bytes of a 32x32 image in CHW order
/// (1024 red, 1024 green, 1024 blue, rows top to bottom). Files may also be gzip-compressed.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "torchlet/data/byte_reader.hpp"
#include "torchlet/data/dataset.hpp"

namespace torchlet::data {

/// The ten CIFAR-10 class names, index = label (torchvision's CIFAR10.classes).
inline std::vector<std::string> cifar10_classes() {
  return {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
}

/// Reads CIFAR-10 binary batch files, in the given order, into uint8 images [N,3,32,32] and int64 labels [N].
/// Raises an IOError naming the file when its length is not a whole number of records or a label is not 0..9.
inline TensorDataset read_cifar10_batches(const std::vector<std::string>& files) {
  constexpr int64_t kImage = 3 * 32 * 32, kRecord = kImage + 1;
  std::vector<uint8_t> all;
  std::vector<int64_t> counts;
  for (const std::string& path : files) {
    detail::ByteReader in(path, "cifar10");
    std::vector<uint8_t> bytes;
    uint8_t buf[1 << 16];
    for (size_t got; (got = in.read_some(buf, sizeof buf)) > 0;) bytes.insert(bytes.end(), buf, buf + got);
    const auto n = static_cast<int64_t>(bytes.size());
    TORCHLET_CHECK(n > 0 && n % kRecord == 0, IOError, "[cifar10] ", path, ": ", n, " bytes is not a whole number of "
                   "3073-byte records (1 label byte + 3x32x32 image bytes)");
    for (int64_t r = 0; r < n / kRecord; ++r)
      TORCHLET_CHECK(bytes[static_cast<size_t>(r * kRecord)] < 10, IOError, "[cifar10] ", path, ": record ", r,
                     " (offset ", r * kRecord, ") has label ", int(bytes[static_cast<size_t>(r * kRecord)]),
                     ", expected 0..9");
    all.insert(all.end(), bytes.begin(), bytes.end());
    counts.push_back(n / kRecord);
  }
  const int64_t total = static_cast<int64_t>(all.size()) / kRecord;
  Tensor images = empty({total, 3, 32, 32}, kUInt8);
  Tensor labels = empty({total}, kInt64);
  auto* img = images.data<uint8_t>();
  auto* lab = labels.data<int64_t>();
  for (int64_t r = 0; r < total; ++r) {
    const uint8_t* rec = all.data() + r * kRecord;
    lab[r] = rec[0];
    std::memcpy(img + r * kImage, rec + 1, kImage);
  }
  return TensorDataset(images, labels, cifar10_classes());
}

/// CIFAR-10 from `root` (the folder holding the `.bin` files, or its parent holding `cifar-10-batches-bin/`):
/// train = data_batch_1..5.bin (50000 images), test = test_batch.bin (10000).
inline TensorDataset cifar10(const std::string& root, bool train = true) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path dir = root;
  if (!fs::exists(dir / "test_batch.bin", ec) && !fs::exists(dir / "data_batch_1.bin", ec) &&
      fs::is_directory(dir / "cifar-10-batches-bin", ec))
    dir /= "cifar-10-batches-bin";
  std::vector<std::string> files;
  if (train)
    for (int i = 1; i <= 5; ++i) files.push_back((dir / ("data_batch_" + std::to_string(i) + ".bin")).string());
  else
    files.push_back((dir / "test_batch.bin").string());
  for (const std::string& f : files)
    TORCHLET_CHECK(fs::exists(f, ec), IOError, "[cifar10] missing ", f, " (expected the binary version's ",
                   train ? "data_batch_1..5.bin" : "test_batch.bin", " in ", root, ")");
  return read_cifar10_batches(files);
}
}  // namespace torchlet::data
