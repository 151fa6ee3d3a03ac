#pragma once
/// \file MNIST / Fashion-MNIST: IDX files (gzip or plain) read directly, and the datasets made of them.
///
/// IDX layout (big-endian): 2 zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
/// 0x0D float32, 0x0E float64), a dimension count, one uint32 per dimension, then the data in C order.
/// Debian's `dataset-fashion-mnist` installs the four Fashion-MNIST files in kFashionMnistRoot.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "torchlet/data/byte_reader.hpp"
#include "torchlet/data/dataset.hpp"
#include "torchlet/tensor/factory.hpp"

namespace torchlet::data {

/// Where Debian's `dataset-fashion-mnist` package puts the Fashion-MNIST files.
inline const char* const kFashionMnistRoot = "/usr/share/datasets/fashion-mnist";

namespace detail {
inline uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
inline std::string hex4(const uint8_t* p) {
  static const char* digits = "0123456789abcdef";
  std::string s = "0x";
  for (int i = 0; i < 4; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}
}  // namespace detail

/// Reads an IDX file (gzip-compressed or plain) into a tensor with the file's dimensions and element type
/// (uint8 for MNIST's images and labels). Raises a one-line IOError naming the file on a bad magic number,
/// a dimension count outside 1..8, or data shorter or longer than the header says.
inline Tensor read_idx(const std::string& path) {
  detail::ByteReader in(path, "read_idx");
  uint8_t magic[4];
  const size_t got = in.read_some(magic, 4);
  TORCHLET_CHECK(got == 4, IOError, "[read_idx] ", path, ": not an IDX file: ", got, " bytes, shorter than the "
                 "4-byte magic number");
  DType dtype = kUInt8;
  switch (magic[2]) {
    case 0x08: dtype = kUInt8; break;
    case 0x09: dtype = kInt8; break;
    case 0x0B: dtype = kInt16; break;
    case 0x0C: dtype = kInt32; break;
    case 0x0D: dtype = kFloat32; break;
    case 0x0E: dtype = kFloat64; break;
    default: dtype = DType::Bool;  // marks "unknown"
  }
  TORCHLET_CHECK(magic[0] == 0 && magic[1] == 0 && dtype != DType::Bool, IOError, "[read_idx] ", path,
                 ": not an IDX file: magic number ", detail::hex4(magic), ", expected 0x0000TTNN (TT a type code "
                 "08/09/0b/0c/0d/0e, NN the number of dimensions)");
  const int ndim = magic[3];
  TORCHLET_CHECK(ndim >= 1 && ndim <= 8, IOError, "[read_idx] ", path, ": magic number ", detail::hex4(magic),
                 " says ", ndim, " dimensions, expected 1 to 8");
  std::vector<uint8_t> dims_raw(static_cast<size_t>(ndim) * 4);
  in.read_exact(dims_raw.data(), dims_raw.size(), "the header's " + std::to_string(ndim) + " dimension sizes");
  Shape sizes;
  uint64_t numel = 1;
  for (int d = 0; d < ndim; ++d) {
    const uint32_t s = detail::read_be32(&dims_raw[static_cast<size_t>(d) * 4]);
    sizes.push_back(static_cast<int64_t>(s));
    TORCHLET_CHECK(s == 0 || numel <= (uint64_t{1} << 40) / s, IOError, "[read_idx] ", path, ": header sizes ",
                   shape_str(sizes), "... describe more than 2^40 elements");
    numel *= s;
  }
  const uint64_t esize = static_cast<uint64_t>(element_size(dtype));
  std::vector<uint8_t> bytes =
      in.read_claimed(numel * esize, "data of shape " + shape_str(sizes) + " (" + std::string(dtype_name(dtype)) + ")");
  TORCHLET_CHECK(in.at_end(), IOError, "[read_idx] ", path, ": trailing data: the header's shape ", shape_str(sizes),
                 " ends at byte ", in.offset() - 1, " but the file goes on");
  if (esize > 1) {  // big-endian on disk
    for (size_t i = 0; i < bytes.size(); i += esize)
      for (size_t a = 0, b = esize - 1; a < b; ++a, --b) std::swap(bytes[i + a], bytes[i + b]);
  }
  Tensor out = empty(sizes, dtype);
  if (!bytes.empty()) std::memcpy(out.data_ptr(), bytes.data(), bytes.size());
  return out;
}

/// A dataset from an MNIST-style pair of IDX files: images uint8 [N,H,W] (magic 0x00000803) and labels uint8 [N]
/// (magic 0x00000801), labels stored as int64. Raises an IOError naming the file whose layout is wrong.
inline TensorDataset mnist_from_files(const std::string& images_path, const std::string& labels_path,
                                      std::vector<std::string> class_names = {}) {
  Tensor images = read_idx(images_path);
  TORCHLET_CHECK(images.dtype() == kUInt8 && images.dim() == 3, IOError, "[mnist] ", images_path,
                 ": expected uint8 images [N,H,W] (magic 0x00000803), got ", images.dtype(), " ",
                 shape_str(images.sizes()));
  Tensor labels = read_idx(labels_path);
  TORCHLET_CHECK(labels.dtype() == kUInt8 && labels.dim() == 1, IOError, "[mnist] ", labels_path,
                 ": expected uint8 labels [N] (magic 0x00000801), got ", labels.dtype(), " ",
                 shape_str(labels.sizes()));
  TORCHLET_CHECK(labels.size(0) == images.size(0), IOError, "[mnist] ", labels_path, " holds ", labels.size(0),
                 " labels but ", images_path, " holds ", images.size(0), " images");
  return TensorDataset(images, labels, std::move(class_names));
}

namespace detail {
// root/name.gz if it exists, else root/name; when neither exists, an IOError naming both and `hint`.
inline std::string find_idx_file(const std::string& root, const std::string& name, const char* op,
                                 const std::string& hint) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string gz = (fs::path(root) / (name + ".gz")).string();
  const std::string plain = (fs::path(root) / name).string();
  if (fs::exists(gz, ec)) return gz;
  if (fs::exists(plain, ec)) return plain;
  TORCHLET_THROW(IOError, "[", op, "] missing ", gz, " (or ", name, " uncompressed there)", hint);
}
}  // namespace detail

/// The ten Fashion-MNIST class names, index = label (torchvision's FashionMNIST.classes).
inline std::vector<std::string> fashion_mnist_classes() {
  return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
}

/// Fashion-MNIST from `root` (train: 60000 images, test: 10000; uint8 [N,28,28], labels 0..9), reading
/// `{train,t10k}-{images-idx3,labels-idx1}-ubyte` with or without `.gz`. The default root is where
/// Debian's `dataset-fashion-mnist` puts them; a missing file's error says which package provides them.
inline TensorDataset fashion_mnist(const std::string& root = kFashionMnistRoot, bool train = true) {
  const std::string hint = std::string("; Debian's package dataset-fashion-mnist installs these files in ") +
                           kFashionMnistRoot + ": apt-get install dataset-fashion-mnist";
  const std::string prefix = train ? "train" : "t10k";
  const std::string images = detail::find_idx_file(root, prefix + "-images-idx3-ubyte", "fashion_mnist", hint);
  const std::string labels = detail::find_idx_file(root, prefix + "-labels-idx1-ubyte", "fashion_mnist", hint);
  return mnist_from_files(images, labels, fashion_mnist_classes());
}

/// MNIST digits from `root` (same file names as Fashion-MNIST), classes "0".."9".
inline TensorDataset mnist(const std::string& root, bool train = true) {
  const std::string prefix = train ? "train" : "t10k";
  const std::string images = detail::find_idx_file(root, prefix + "-images-idx3-ubyte", "mnist", "");
  const std::string labels = detail::find_idx_file(root, prefix + "-labels-idx1-ubyte", "mnist", "");
  return mnist_from_files(images, labels, {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"});
}
}  // namespace torchlet::data
