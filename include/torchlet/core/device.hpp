#pragma once
/// \file Where a tensor's bytes live: the CPU or a CUDA device with an index.
#include <ostream>
#include <string>
#include <string_view>

#include "torchlet/core/error.hpp"

namespace torchlet {

/// The kind of device.
enum class DeviceType : uint8_t { CPU, CUDA };

/// A device: `cpu` or `cuda:N`, written and parsed as PyTorch writes them.
struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;  ///< always 0 for the CPU

  constexpr Device() = default;
  /// A device of the given type and index.
  constexpr Device(DeviceType t, int i = 0) : type(t), index(t == DeviceType::CPU ? 0 : i) {}  // NOLINT
  /// Parses "cpu", "cuda" (= cuda:0) or "cuda:N".
  explicit Device(std::string_view s) {
    if (s == "cpu") return;
    if (s.substr(0, 4) == "cuda") {
      type = DeviceType::CUDA;
      if (s.size() == 4) return;
      if (s[4] == ':' && s.size() > 5 && s.size() < 9) {
        int v = 0;
        for (char c : s.substr(5)) {
          if (c < '0' || c > '9') goto bad;
          v = v * 10 + (c - '0');
        }
        index = v;
        return;
      }
    }
  bad:
    TORCHLET_THROW(ValueError, "[Device] expected \"cpu\", \"cuda\" or \"cuda:N\", got \"", s, "\"");
  }
  bool is_cpu() const { return type == DeviceType::CPU; }    ///< True for the CPU.
  bool is_cuda() const { return type == DeviceType::CUDA; }  ///< True for a CUDA device.
  /// "cpu" or "cuda:N".
  std::string str() const { return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index); }
  friend bool operator==(const Device&, const Device&) = default;
};

/// Streams "cpu" or "cuda:N".
inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

inline constexpr Device kCPU{};  ///< The CPU device.
}  // namespace torchlet
