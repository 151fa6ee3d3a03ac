#pragma once
/// \file Build-time configuration and the library version.

#define TORCHLET_VERSION_MAJOR 0
#define TORCHLET_VERSION_MINOR 1
#define TORCHLET_VERSION_PATCH 0

namespace torchlet {
/// The library version as "major.minor.patch".
inline constexpr const char* version = "0.1.0";
}  // namespace torchlet
