#pragma once
/// \file Typed errors and the one macro every failure goes through.
///
/// Messages follow one format: `[op] what failed: expected X, got Y`.
/// Define TORCHLET_NOEXCEPTION to build without exceptions: errors then go to
/// torchlet::detail::on_fatal_error (prints and aborts), or define TORCHLET_THROW
/// yourself before including any torchlet header.
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace torchlet {

/// Base of every error torchlet raises.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
/// Wrong shape, wrong number of dimensions, or shapes that do not broadcast.
struct ShapeError : Error { using Error::Error; };
/// A dtype an operation cannot take, or two dtypes that do not fit together.
struct DTypeError : Error { using Error::Error; };
/// A tensor on a device this build or this operation cannot use.
struct DeviceError : Error { using Error::Error; };
/// A dimension or element index out of range.
struct IndexError : Error { using Error::Error; };
/// An argument with an invalid value (negative size, bad option, ...).
struct ValueError : Error { using Error::Error; };
/// A file that cannot be opened, read, written or parsed.
struct IOError : Error { using Error::Error; };

namespace detail {
/// Called instead of throwing when exceptions are disabled.
[[noreturn]] inline void on_fatal_error(const char* kind, const std::string& message) {
  std::fprintf(stderr, "torchlet %s: %s\n", kind, message.c_str());
  std::abort();
}

/// Concatenates any streamable values into one string.
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail
}  // namespace torchlet

#ifndef TORCHLET_THROW
#if defined(TORCHLET_NOEXCEPTION) || !(defined(__cpp_exceptions) || defined(__EXCEPTIONS))
/// Raises an error of type `kind` with the message built from the remaining arguments.
#define TORCHLET_THROW(kind, ...) ::torchlet::detail::on_fatal_error(#kind, ::torchlet::detail::cat(__VA_ARGS__))
#else
/// Raises an error of type `kind` with the message built from the remaining arguments.
#define TORCHLET_THROW(kind, ...) throw ::torchlet::kind(::torchlet::detail::cat(__VA_ARGS__))
#endif
#endif

/// Raises `kind` with the given message parts when `cond` is false.
#define TORCHLET_CHECK(cond, kind, ...) \
  do {                                  \
    if (!(cond)) TORCHLET_THROW(kind, __VA_ARGS__); \
  } while (0)
