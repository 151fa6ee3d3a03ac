#pragma once
/// \file Seedable random numbers: a Generator, manual_seed, rand / randn / randint and in-place uniform_ / normal_.
/// Streams are reproducible across platforms for a given seed (they do not reproduce PyTorch's own streams).
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>

#include "torchlet/tensor/factory.hpp"

namespace torchlet {

/// A random stream (64-bit Mersenne Twister). Not safe to share between threads without a lock.
class Generator {
 public:
  /// A generator seeded with `seed`.
  explicit Generator(uint64_t seed = 67280421310721ull) { manual_seed(seed); }
  /// Restarts the stream from `seed`.
  void manual_seed(uint64_t seed) {
    seed_ = seed;
    engine_.seed(seed);
    has_spare_normal_ = false;
  }
  uint64_t initial_seed() const { return seed_; }  ///< The last seed given.
  uint64_t next_u64() { return engine_(); }       ///< 64 random bits.
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  /// Standard normal (Box-Muller; the second value of each pair is kept for the next call).
  double normal() {
    if (has_spare_normal_) {
      has_spare_normal_ = false;
      return spare_normal_;
    }
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_normal_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_normal_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }
  /// Uniform integer in [low, high).
  int64_t integer(int64_t low, int64_t high) {
    const auto range = static_cast<uint64_t>(high - low);
    const uint64_t limit = UINT64_MAX - UINT64_MAX % range;  // reject the biased tail
    uint64_t x;
    do x = next_u64(); while (x >= limit);
    return low + static_cast<int64_t>(x % range);
  }
  /// The complete state, to save and restore a stream exactly (e.g. in a training checkpoint).
  std::string state() const {
    std::ostringstream os;
    os << seed_ << ' ' << has_spare_normal_ << ' ' << std::bit_cast<uint64_t>(spare_normal_) << ' ' << engine_;
    return os.str();
  }
  /// Restores a state from state().
  void set_state(const std::string& s) {
    std::istringstream is(s);
    uint64_t spare_bits = 0;
    is >> seed_ >> has_spare_normal_ >> spare_bits >> engine_;
    TORCHLET_CHECK(!is.fail(), ValueError, "[Generator] malformed generator state");
    spare_normal_ = std::bit_cast<double>(spare_bits);
  }

 private:
  std::mt19937_64 engine_;
  uint64_t seed_ = 0;
  bool has_spare_normal_ = false;
  double spare_normal_ = 0;
};

/// The generator used when none is passed.
inline Generator& default_generator() {
  static Generator g;
  return g;
}
/// Seeds the default generator, like torch.manual_seed.
inline void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

namespace detail {
// Fills `t` (any layout, any device) with values from `next()` in row-major order. A device tensor gets the values
// drawn on the CPU with the CPU generator and copied over: the same values as a CPU tensor for the same seed.
template <class Next>
Tensor& fill_random(Tensor& t, const char* op, Next&& next) {
  Tensor buf = t.is_cpu() && t.is_contiguous() ? t : empty(t.sizes(), t.dtype());
  dispatch_all(t.dtype(), op, [&]<class T>() {
    T* p = buf.data<T>();
    for (int64_t i = 0, n = buf.numel(); i < n; ++i) p[i] = convert<T>(next());
  });
  if (!buf.is_same(t)) t.copy_(buf);
  return t;
}
}  // namespace detail

/// Fills `t` with uniform values in [low, high). On a device, like every function here, the values are drawn on
/// the CPU with the CPU generator and copied there, so a seed gives the same values on every device.
inline Tensor& uniform_(Tensor& t, double low = 0, double high = 1, Generator& gen = default_generator()) {
  return detail::fill_random(t, "uniform_", [&] { return low + (high - low) * gen.uniform(); });
}
/// Fills `t` with normal values of the given mean and standard deviation.
inline Tensor& normal_(Tensor& t, double mean = 0, double std = 1, Generator& gen = default_generator()) {
  return detail::fill_random(t, "normal_", [&] { return mean + std * gen.normal(); });
}
/// Uniform values in [0, 1).
inline Tensor rand(const Shape& sizes, TensorOptions options = {}, Generator& gen = default_generator()) {
  TORCHLET_CHECK(is_floating_point(options.dtype), DTypeError, "[rand] expected a floating dtype, got ",
                 options.dtype);
  Tensor t = empty(sizes, options);
  return uniform_(t, 0, 1, gen);
}
/// Standard normal values.
inline Tensor randn(const Shape& sizes, TensorOptions options = {}, Generator& gen = default_generator()) {
  TORCHLET_CHECK(is_floating_point(options.dtype), DTypeError, "[randn] expected a floating dtype, got ",
                 options.dtype);
  Tensor t = empty(sizes, options);
  return normal_(t, 0, 1, gen);
}
/// Uniform integers in [low, high), int64 unless options say otherwise.
inline Tensor randint(int64_t low, int64_t high, const Shape& sizes, TensorOptions options = TensorOptions(kInt64),
                      Generator& gen = default_generator()) {
  TORCHLET_CHECK(low < high, ValueError, "[randint] expected low < high, got low ", low, ", high ", high);
  Tensor t = empty(sizes, options);
  return detail::fill_random(t, "randint", [&] { return gen.integer(low, high); });
}
/// A random permutation of 0..n-1 (int64).
inline Tensor randperm(int64_t n, Generator& gen = default_generator()) {
  Tensor t = arange(n);
  int64_t* p = t.data<int64_t>();
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[gen.integer(0, i + 1)]);
  return t;
}
}  // namespace torchlet
