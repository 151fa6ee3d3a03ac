#pragma once
/// \file Image files (PNG, JPEG, BMP, TGA, GIF, PNM via stb_image) and ImageFolder: one sub-folder per class,
/// like torchvision.datasets.ImageFolder.
///
/// Decoding uses Debian's stb_image (`libstb-dev`, `<stb/stb_image.h>`). stb's functions need their
/// implementation compiled exactly once in a program; a header-only library cannot do that by itself without
/// breaking the one-definition rule, so the program chooses ONE of:
///   - define `TORCHLET_STB_IMPLEMENTATION` before including this header in exactly one .cpp file
///     (torchlet then compiles stb_image's implementation there), or
///   - link Debian's prebuilt stb (`pkg-config --libs stb`, i.e. `-lstb`), or your own stb_image build.
/// Programs that include this header but never decode an image need neither (nothing refers to stb then).
/// Without stb_image.h on the include path the header still compiles, and read_image raises an IOError.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#if __has_include(<stb/stb_image.h>)
#define TORCHLET_STB_IMAGE_HEADER <stb/stb_image.h>
#elif __has_include(<stb_image.h>)
#define TORCHLET_STB_IMAGE_HEADER <stb_image.h>
#endif

#if defined(TORCHLET_STB_IMAGE_HEADER)
#define TORCHLET_HAS_STB_IMAGE 1  ///< 1 when stb_image.h was found (image decoding available).
#if defined(TORCHLET_STB_IMPLEMENTATION) && !defined(STB_IMAGE_IMPLEMENTATION)
#define STB_IMAGE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wconversion"
#endif
#include TORCHLET_STB_IMAGE_HEADER
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#else
#include TORCHLET_STB_IMAGE_HEADER
#endif
#else
#define TORCHLET_HAS_STB_IMAGE 0  ///< 0: no stb_image.h; read_image raises an IOError saying so.
#endif

#include "torchlet/data/dataset.hpp"

namespace torchlet::data {

/// Decodes an image file into uint8 [C,H,W]. `channels`: 3 = RGB (grey images are replicated, alpha dropped;
/// the default, like torchvision's loader converting to RGB), 1 = grey (stb's luma weights 77/150/29 out of
/// 256 for colour files; PIL's "L" uses 299/587/114 out of 1000, so values may differ by 1), 4 = RGBA,
/// 0 = as stored (1, 2, 3 or 4 channels). Raises an IOError naming the file when it cannot be read or decoded.
inline Tensor read_image(const std::string& path, int channels = 3) {
  TORCHLET_CHECK(channels == 0 || channels == 1 || channels == 3 || channels == 4, ValueError,
                 "[read_image] channels must be 0 (as stored), 1, 3 or 4, got ", channels);
#if !TORCHLET_HAS_STB_IMAGE
  TORCHLET_THROW(IOError, "[read_image] cannot decode ", path, ": torchlet was compiled without stb_image.h "
                 "(Debian: apt-get install libstb-dev)");
#else
  std::ifstream f(path, std::ios::binary);
  TORCHLET_CHECK(f.good(), IOError, "[read_image] cannot open ", path);
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  TORCHLET_CHECK(!bytes.empty(), IOError, "[read_image] ", path, " is empty");
  TORCHLET_CHECK(bytes.size() <= size_t{INT32_MAX}, IOError, "[read_image] ", path, " is larger than 2 GiB");
  int w = 0, h = 0, stored = 0;
  unsigned char* pixels =
      stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &stored, channels);
  TORCHLET_CHECK(pixels != nullptr, IOError, "[read_image] cannot decode ", path, ": ", stbi_failure_reason());
  const int c = channels ? channels : stored;
  Tensor out = empty({c, h, w}, kUInt8);
  uint8_t* dst = out.data<uint8_t>();
  const int64_t plane = int64_t{h} * w;
  for (int64_t p = 0; p < plane; ++p)
    for (int k = 0; k < c; ++k) dst[k * plane + p] = pixels[p * c + k];  // HWC -> CHW
  stbi_image_free(pixels);
  return out;
#endif
}

/// Options of ImageFolder.
struct ImageFolderOptions {
  int channels = 3;  ///< Channels of every decoded image, as in read_image (3 = RGB).
  /// File name endings (case-insensitive) that count as images; torchvision's IMG_EXTENSIONS that stb decodes.
  std::vector<std::string> extensions = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tga", ".gif"};
};

/// Images in one sub-folder per class (`root/<class>/**/<file>`), like torchvision's ImageFolder: classes are
/// the sub-folder names in sorted order, label = index in that order; files are found recursively, folder by
/// folder in sorted order with each folder's files sorted. Images are decoded in get(), as uint8 [C,H,W].
class ImageFolder : public Dataset {
 public:
  /// Scans `root`. Raises an IOError when root is not a folder, has no class sub-folder, or a class has no image.
  explicit ImageFolder(const std::string& root, ImageFolderOptions options = {})
      : root_(root), options_(std::move(options)) {
    namespace fs = std::filesystem;
    std::error_code ec;
    TORCHLET_CHECK(fs::is_directory(root, ec), IOError, "[ImageFolder] ", root, " is not a folder");
    for (const auto& e : fs::directory_iterator(root, fs::directory_options::follow_directory_symlink, ec))
      if (e.is_directory(ec)) classes_.push_back(e.path().filename().string());
    TORCHLET_CHECK(!ec, IOError, "[ImageFolder] cannot list ", root, ": ", ec.message());
    std::sort(classes_.begin(), classes_.end());
    TORCHLET_CHECK(!classes_.empty(), IOError, "[ImageFolder] ", root, " has no class sub-folders (expected "
                   "root/<class>/<image>)");
    for (size_t c = 0; c < classes_.size(); ++c) {
      const auto before = samples_.size();
      add_folder(fs::path(root) / classes_[c], static_cast<int64_t>(c));
      TORCHLET_CHECK(samples_.size() > before, IOError, "[ImageFolder] found no image file for class '", classes_[c],
                     "' in ", (fs::path(root) / classes_[c]).string(), " (extensions: ", extension_list(), ")");
    }
  }

  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }  ///< Number of images.
  /// Decodes image `index`: uint8 [C,H,W] and its label.
  Example get(int64_t index) const override {
    TORCHLET_CHECK(index >= 0 && index < size(), IndexError, "[ImageFolder] index ", index,
                   " is out of range for a dataset of ", size(), " images");
    const auto& s = samples_[static_cast<size_t>(index)];
    return {read_image(s.first, options_.channels), s.second};
  }
  std::vector<std::string> classes() const override { return classes_; }  ///< Class names (sorted folder names).
  /// The label of image `index`, without decoding it.
  int64_t label(int64_t index) const override {
    TORCHLET_CHECK(index >= 0 && index < size(), IndexError, "[ImageFolder] index ", index,
                   " is out of range for a dataset of ", size(), " images");
    return samples_[static_cast<size_t>(index)].second;
  }
  /// Class name -> label.
  std::map<std::string, int64_t> class_to_idx() const {
    std::map<std::string, int64_t> m;
    for (size_t i = 0; i < classes_.size(); ++i) m[classes_[i]] = static_cast<int64_t>(i);
    return m;
  }
  /// (path, label) of every image, in dataset order.
  const std::vector<std::pair<std::string, int64_t>>& samples() const { return samples_; }
  const std::string& root() const { return root_; }  ///< The folder scanned.

 private:
  bool is_image(const std::string& name) const {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
    for (const auto& ext : options_.extensions)
      if (lower.size() >= ext.size() && lower.compare(lower.size() - ext.size(), ext.size(), ext) == 0) return true;
    return false;
  }
  std::string extension_list() const {
    std::string s;
    for (const auto& e : options_.extensions) s += (s.empty() ? "" : " ") + e;
    return s;
  }
  // One folder's files (sorted), then its sub-folders (sorted by name), like sorted(os.walk(...)).
  void add_folder(const std::filesystem::path& dir, int64_t label) {
    namespace fs = std::filesystem;
    std::error_code ec;
    std::vector<std::string> files, dirs;
    for (const auto& e : fs::directory_iterator(dir, fs::directory_options::follow_directory_symlink, ec)) {
      if (e.is_directory(ec)) dirs.push_back(e.path().filename().string());
      else if (is_image(e.path().filename().string())) files.push_back(e.path().filename().string());
    }
    TORCHLET_CHECK(!ec, IOError, "[ImageFolder] cannot list ", dir.string(), ": ", ec.message());
    std::sort(files.begin(), files.end());
    std::sort(dirs.begin(), dirs.end());
    for (const auto& f : files) samples_.emplace_back((dir / f).string(), label);
    for (const auto& d : dirs) add_folder(dir / d, label);
  }

  std::string root_;
  ImageFolderOptions options_;
  std::vector<std::string> classes_;
  std::vector<std::pair<std::string, int64_t>> samples_;
};
}  // namespace torchlet::data
