#pragma once
/// \file Image transforms on tensors [..., H, W] (channels first), like torchvision.transforms on tensors:
/// the functions (to_float_image, resize, normalize, grayscale_to_rgb, pad, crop, hflip) and composable
/// transforms with torchvision's names (transforms::ToTensor, Resize, Normalize, RandomCrop, ...).
///
/// Random transforms draw from the Generator passed in (the DataLoader gives each sample its own, seeded from
/// (seed, epoch, sample index)), so a run is reproducible from its seed. They do not reproduce PyTorch's
/// random streams.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "torchlet/tensor/random.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::data {

namespace detail {
// Number of images of size [H,W] in a tensor [..., H, W].
inline int64_t planes(const Tensor& t) {
  int64_t n = 1;
  for (int64_t d = 0; d + 2 < t.dim(); ++d) n *= t.size(d);
  return n;
}
inline void check_image(const Tensor& t, const char* op, bool floating) {
  TORCHLET_CHECK(t.defined() && t.dim() >= 2, ShapeError, "[", op, "] expected an image tensor [..., H, W], got ",
                 t.defined() ? shape_str(t.sizes()) : std::string("an undefined tensor"));
  TORCHLET_CHECK(t.is_cpu(), DeviceError, "[", op, "] expected a CPU tensor, got ", t.device());
  if (floating)
    TORCHLET_CHECK(t.dtype() == kFloat32 || t.dtype() == kFloat64, DTypeError, "[", op,
                   "] expected a float32 or float64 image, got ", t.dtype());
}
// One axis of bilinear interpolation with align_corners=False, computed as PyTorch's CPU upsample kernel does
// (in the element type T): source index, the two neighbours and their weights.
template <class T>
struct LinearAxis {
  std::vector<int64_t> i0, i1;
  std::vector<T> w0, w1;
  LinearAxis(int64_t in, int64_t out) : i0(out), i1(out), w0(out), w1(out) {
    const T scale = static_cast<T>(in) / static_cast<T>(out);
    for (int64_t o = 0; o < out; ++o) {
      if (in == out) {
        i0[o] = i1[o] = o;
        w0[o] = 1;
        w1[o] = 0;
        continue;
      }
      T src = scale * (static_cast<T>(o) + static_cast<T>(0.5)) - static_cast<T>(0.5);
      if (src < 0) src = 0;
      i0[o] = static_cast<int64_t>(src);
      i1[o] = i0[o] + (i0[o] < in - 1 ? 1 : 0);
      T l1 = src - static_cast<T>(i0[o]);
      l1 = l1 < 0 ? T(0) : (l1 > 1 ? T(1) : l1);
      w1[o] = l1;
      w0[o] = static_cast<T>(1) - l1;
    }
  }
};
// Copies the h x w window at (top, left) of every plane of contiguous `src` to (dtop, dleft) of contiguous `dst`
// (same leading dims).
inline void copy_window(const Tensor& src, const Tensor& dst, int64_t top, int64_t left, int64_t dtop, int64_t dleft,
                        int64_t h, int64_t w) {
  const int64_t H = src.size(-2), W = src.size(-1), DH = dst.size(-2), DW = dst.size(-1), es = src.element_size();
  const auto* s = static_cast<const char*>(src.data_ptr());
  auto* d = static_cast<char*>(dst.data_ptr());
  for (int64_t p = 0, n = planes(src); p < n; ++p)
    for (int64_t y = 0; y < h; ++y)
      std::memcpy(d + ((p * DH + dtop + y) * DW + dleft) * es, s + ((p * H + top + y) * W + left) * es,
                  static_cast<size_t>(w * es));
}
}  // namespace detail

/// uint8 [..., H, W] to float32 with values / 255 (torchvision's to_tensor / ConvertImageDtype); a 2-D image
/// [H, W] becomes [1, H, W]. Float images are returned as they are.
inline Tensor to_float_image(const Tensor& image) {
  detail::check_image(image, "to_float_image", false);
  Tensor img = image.dim() == 2 ? image.unsqueeze(0) : image;
  if (img.is_floating_point()) return img;
  TORCHLET_CHECK(img.dtype() == kUInt8, DTypeError, "[to_float_image] expected a uint8 or floating image, got ",
                 img.dtype());
  Tensor src = img.contiguous();
  Tensor out = empty(src.sizes(), kFloat32);
  const uint8_t* s = src.data<uint8_t>();
  float* d = out.data<float>();
  for (int64_t i = 0, n = src.numel(); i < n; ++i) d[i] = static_cast<float>(s[i]) / 255.0f;
  return out;
}

/// Bilinear resize of an image [..., H, W] to [..., h, w] with align_corners=False and no antialiasing:
/// torch.nn.functional.interpolate(mode='bilinear') and torchvision's Resize on tensors with antialias=False.
/// float32 / float64 images are interpolated in their dtype (equal to PyTorch's within a few float ulps);
/// uint8 images in float32, then rounded half to even back to uint8 as torchvision does (a value within an
/// ulp of .5 may then round one level apart from PyTorch's).
inline Tensor resize(const Tensor& image, int64_t h, int64_t w) {
  if (image.defined() && image.dtype() == kUInt8 && image.dim() >= 2) {
    const Tensor f = resize(image.to(kFloat32), h, w);
    Tensor out = empty(f.sizes(), kUInt8);
    const float* s = f.data<float>();
    uint8_t* d = out.data<uint8_t>();
    for (int64_t i = 0, n = f.numel(); i < n; ++i)
      d[i] = static_cast<uint8_t>(std::clamp(std::nearbyint(s[i]), 0.0f, 255.0f));
    return out;
  }
  detail::check_image(image, "resize", true);
  TORCHLET_CHECK(h > 0 && w > 0, ValueError, "[resize] expected a positive output size, got ", h, "x", w);
  const int64_t H = image.size(-2), W = image.size(-1);
  TORCHLET_CHECK(H > 0 && W > 0, ShapeError, "[resize] cannot resize an empty image ", shape_str(image.sizes()));
  Shape shape = image.sizes();
  shape[shape.size() - 2] = h;
  shape[shape.size() - 1] = w;
  Tensor src = image.contiguous();
  Tensor out = empty(shape, image.dtype());
  const int64_t n = detail::planes(src);
  auto run = [&]<class T>() {
    const detail::LinearAxis<T> ay(H, h), ax(W, w);
    const T* s = src.data<T>();
    T* d = out.data<T>();
    for (int64_t p = 0; p < n; ++p, s += H * W, d += h * w)
      for (int64_t y = 0; y < h; ++y) {
        const T* r0 = s + ay.i0[y] * W;
        const T* r1 = s + ay.i1[y] * W;
        for (int64_t x = 0; x < w; ++x) {
          const T t0 = r0[ax.i0[x]] * ax.w0[x] + r0[ax.i1[x]] * ax.w1[x];
          const T t1 = r1[ax.i0[x]] * ax.w0[x] + r1[ax.i1[x]] * ax.w1[x];
          d[y * w + x] = t0 * ay.w0[y] + t1 * ay.w1[y];
        }
      }
  };
  if (image.dtype() == kFloat32) run.template operator()<float>();
  else run.template operator()<double>();
  return out;
}

/// torchvision's Resize(size) with one int: the shorter side becomes `size`, the longer one
/// int(size * long / short) (truncated), then the bilinear resize above.
inline Tensor resize(const Tensor& image, int64_t size) {
  detail::check_image(image, "resize", false);
  TORCHLET_CHECK(size > 0, ValueError, "[resize] expected a positive size, got ", size);
  const int64_t h = image.size(-2), w = image.size(-1);
  TORCHLET_CHECK(h > 0 && w > 0, ShapeError, "[resize] cannot resize an empty image ", shape_str(image.sizes()));
  const int64_t s = std::min(h, w), l = std::max(h, w);
  const auto long_side = static_cast<int64_t>(static_cast<double>(size) * static_cast<double>(l) / static_cast<double>(s));
  return w <= h ? resize(image, long_side, size) : resize(image, size, long_side);
}

/// (image - mean[c]) / std[c] per channel of a float image [C, H, W] or [N, C, H, W], computed in the image's
/// dtype like torchvision's normalize. One mean/std value applies to every channel.
inline Tensor normalize(const Tensor& image, const std::vector<double>& mean, const std::vector<double>& std) {
  detail::check_image(image, "normalize", true);
  TORCHLET_CHECK(image.dim() >= 3, ShapeError, "[normalize] expected [C, H, W] or [N, C, H, W], got ",
                 shape_str(image.sizes()));
  const int64_t C = image.size(-3);
  TORCHLET_CHECK(!mean.empty() && !std.empty() && (mean.size() == 1 || static_cast<int64_t>(mean.size()) == C) &&
                     (std.size() == 1 || static_cast<int64_t>(std.size()) == C),
                 ShapeError, "[normalize] expected 1 or ", C, " mean and std values for ", C, " channels, got ",
                 mean.size(), " and ", std.size());
  for (double v : std) TORCHLET_CHECK(v != 0, ValueError, "[normalize] std evaluated to zero, leading to division by zero");
  Tensor src = image.contiguous();
  Tensor out = empty(src.sizes(), src.dtype());
  const int64_t plane = image.size(-1) * image.size(-2), n = detail::planes(src);
  auto run = [&]<class T>() {
    const T* s = src.data<T>();
    T* d = out.data<T>();
    for (int64_t p = 0; p < n; ++p) {
      const auto c = static_cast<size_t>(p % C);
      const T m = static_cast<T>(mean.size() == 1 ? mean[0] : mean[c]);
      const T sd = static_cast<T>(std.size() == 1 ? std[0] : std[c]);
      for (int64_t i = 0; i < plane; ++i) d[p * plane + i] = (s[p * plane + i] - m) / sd;
    }
  };
  if (image.dtype() == kFloat32) run.template operator()<float>();
  else run.template operator()<double>();
  return out;
}

/// A one-channel image [1, H, W] (or [N, 1, H, W]) repeated to three channels; three-channel images pass through
/// (torchvision's Grayscale(num_output_channels=3) on an already grey image; ResNet wants 3 channels).
inline Tensor grayscale_to_rgb(const Tensor& image) {
  detail::check_image(image, "grayscale_to_rgb", false);
  TORCHLET_CHECK(image.dim() >= 3 && (image.size(-3) == 1 || image.size(-3) == 3), ShapeError,
                 "[grayscale_to_rgb] expected [1, H, W] or [N, 1, H, W] (or already 3 channels), got ",
                 shape_str(image.sizes()));
  if (image.size(-3) == 3) return image;
  Shape shape = image.sizes();
  shape[shape.size() - 3] = 3;
  const Tensor src = image.contiguous();
  Tensor out = empty(shape, src.dtype());
  const auto plane = static_cast<size_t>(src.size(-1) * src.size(-2) * src.element_size());
  const auto* s = static_cast<const char*>(src.data_ptr());
  auto* d = static_cast<char*>(out.data_ptr());
  for (int64_t p = 0, n = detail::planes(src); p < n; ++p)
    for (int k = 0; k < 3; ++k) std::memcpy(d + (3 * p + k) * plane, s + p * plane, plane);
  return out;
}

/// Pads the last two dims by `padding` on every side with the constant `fill` (torchvision's pad, constant mode).
inline Tensor pad(const Tensor& image, int64_t padding, double fill = 0) {
  detail::check_image(image, "pad", false);
  TORCHLET_CHECK(padding >= 0, ValueError, "[pad] expected padding >= 0, got ", padding);
  if (padding == 0) return image;
  Shape shape = image.sizes();
  shape[shape.size() - 2] += 2 * padding;
  shape[shape.size() - 1] += 2 * padding;
  Tensor out = empty(shape, image.dtype());
  if (fill == 0) std::memset(out.data_ptr(), 0, static_cast<size_t>(out.nbytes()));  // all dtypes: 0 is all-zero bits
  else out.fill_(fill);
  detail::copy_window(image.contiguous(), out, 0, 0, padding, padding, image.size(-2), image.size(-1));
  return out;
}

/// The window of `h` x `w` pixels at (top, left) of an image [..., H, W] (a copy); it must lie inside the image.
inline Tensor crop(const Tensor& image, int64_t top, int64_t left, int64_t h, int64_t w) {
  detail::check_image(image, "crop", false);
  const int64_t H = image.size(-2), W = image.size(-1);
  TORCHLET_CHECK(top >= 0 && left >= 0 && h >= 0 && w >= 0 && top + h <= H && left + w <= W, ValueError,
                 "[crop] window ", h, "x", w, " at (", top, ", ", left, ") is outside the ", H, "x", W, " image");
  Shape shape = image.sizes();
  shape[shape.size() - 2] = h;
  shape[shape.size() - 1] = w;
  Tensor out = empty(shape, image.dtype());
  detail::copy_window(image.contiguous(), out, top, left, 0, 0, h, w);
  return out;
}

/// The image mirrored left-right (torchvision's hflip).
inline Tensor hflip(const Tensor& image) {
  detail::check_image(image, "hflip", false);
  Tensor src = image.contiguous();
  Tensor out = empty(src.sizes(), src.dtype());
  const int64_t W = src.size(-1), rows = src.numel() / std::max<int64_t>(W, 1);
  auto run = [&]<class T>() {
    const T* s = static_cast<const T*>(src.data_ptr());
    T* d = static_cast<T*>(out.data_ptr());
    for (int64_t r = 0; r < rows; ++r) std::reverse_copy(s + r * W, s + (r + 1) * W, d + r * W);
  };
  switch (src.element_size()) {
    case 1: run.template operator()<uint8_t>(); break;
    case 2: run.template operator()<uint16_t>(); break;
    case 4: run.template operator()<uint32_t>(); break;
    default:
      TORCHLET_CHECK(src.element_size() == 8, DTypeError, "[hflip] unsupported dtype ", src.dtype());
      run.template operator()<uint64_t>();
  }
  return out;
}

/// A transform: image in, image out, drawing any randomness from the generator.
using Transform = std::function<Tensor(const Tensor&, Generator&)>;

/// Transforms applied in order, like torchvision.transforms.Compose.
class Compose {
 public:
  Compose() = default;  ///< No transform (the identity).
  /// The given transforms, applied first to last.
  Compose(std::initializer_list<Transform> steps) : steps_(steps) {}
  /// The given transforms, applied first to last.
  explicit Compose(std::vector<Transform> steps) : steps_(std::move(steps)) {}
  /// Appends a transform.
  Compose& add(Transform t) {
    steps_.push_back(std::move(t));
    return *this;
  }
  /// Applies every transform to `image`.
  Tensor operator()(const Tensor& image, Generator& gen) const {
    Tensor x = image;
    for (const auto& t : steps_) x = t(x, gen);
    return x;
  }
  bool empty() const { return steps_.empty(); }                                ///< True when there is no step.
  size_t size() const { return steps_.size(); }                                ///< Number of steps.

 private:
  std::vector<Transform> steps_;
};

/// Composable transforms with torchvision's names.
namespace transforms {
/// uint8 [C, H, W] (or [H, W]) to float32 in [0, 1] (to_float_image).
inline Transform ToTensor() {
  return [](const Tensor& x, Generator&) { return to_float_image(x); };
}
/// Shorter side to `size`, keeping the aspect ratio (bilinear, antialias=False).
inline Transform Resize(int64_t size) {
  return [size](const Tensor& x, Generator&) { return resize(x, size); };
}
/// To exactly h x w (bilinear, antialias=False).
inline Transform Resize(int64_t h, int64_t w) {
  return [h, w](const Tensor& x, Generator&) { return resize(x, h, w); };
}
/// Per-channel (x - mean) / std.
inline Transform Normalize(std::vector<double> mean, std::vector<double> std) {
  return [mean = std::move(mean), std = std::move(std)](const Tensor& x, Generator&) { return normalize(x, mean, std); };
}
/// One channel repeated to three (Grayscale(num_output_channels=3) on a grey image).
inline Transform GrayscaleToRgb() {
  return [](const Tensor& x, Generator&) { return grayscale_to_rgb(x); };
}
/// Pads by `padding` (constant `fill`), then crops a random h x w window (torchvision's RandomCrop: top drawn
/// uniformly from 0..H-h, then left from 0..W-w). Raises a ValueError when the window is larger than the image.
inline Transform RandomCrop(std::pair<int64_t, int64_t> size, int64_t padding = 0, double fill = 0) {
  const auto [h, w] = size;
  TORCHLET_CHECK(h > 0 && w > 0 && padding >= 0, ValueError, "[RandomCrop] expected a positive size and padding >= 0, "
                 "got ", h, "x", w, " and padding ", padding);
  return [=](const Tensor& x, Generator& gen) {
    Tensor p = pad(x, padding, fill);
    const int64_t H = p.size(-2), W = p.size(-1);
    TORCHLET_CHECK(H >= h && W >= w, ValueError, "[RandomCrop] required crop size ", h, "x", w,
                   " is larger than the input image size ", H, "x", W);
    if (H == h && W == w) return p;
    const int64_t top = gen.integer(0, H - h + 1);
    const int64_t left = gen.integer(0, W - w + 1);
    return crop(p, top, left, h, w);
  };
}
/// A random size x size window after padding (see the {h, w} overload).
inline Transform RandomCrop(int64_t size, int64_t padding = 0, double fill = 0) {
  return RandomCrop(std::pair<int64_t, int64_t>{size, size}, padding, fill);
}
/// Mirrors the image left-right with probability p (one uniform draw per image).
inline Transform RandomHorizontalFlip(double p = 0.5) {
  return [p](const Tensor& x, Generator& gen) { return gen.uniform() < p ? hflip(x) : x; };
}
}  // namespace transforms
}  // namespace torchlet::data
