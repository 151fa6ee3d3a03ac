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
/// Not a PyTorch checkpoint, or one using a layout or feature torchlet does not read (PNG, Git LFS pointer,
/// TorchScript archive, encrypted or bzip2 entries, unknown byteorder, unsupported dtype or pickle protocol).
struct FormatError : IOError { using IOError::IOError; };
/// A checkpoint whose bytes are damaged or inconsistent: truncated (an interrupted save), CRC mismatch, local and
/// central headers that disagree, overlapping or duplicate entries, a corrupt pickle, storage sizes or tensor
/// views that do not fit.
struct CorruptFileError : IOError { using IOError::IOError; };
/// A file built to make a reader do something it must not: a pickle global, opcode or BUILD target outside the
/// allowlist, entry names or storage keys that escape a folder, data prepended to the archive (polyglot).
struct UnsafeFileError : IOError { using IOError::IOError; };
/// A resource limit of the reader was reached (entry count or size, nesting depth, memo size, expansion, total
/// tensor bytes); raise the limit in the options if the file is trusted.
struct LimitError : IOError { using IOError::IOError; };

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

#if !defined(TORCHLET_NOEXCEPTION) && (defined(__cpp_exceptions) || defined(__EXCEPTIONS))
namespace torchlet {
/// Rethrows `e` as the same IOError subclass (FormatError, CorruptFileError, UnsafeFileError, LimitError or plain
/// IOError) with `prefix` put before its message: for loaders that add the file and entry name to a lower-level
/// error without losing its type.
[[noreturn]] inline void rethrow_io_error(const IOError& e, const std::string& prefix) {
  const std::string m = prefix + e.what();
  if (dynamic_cast<const FormatError*>(&e)) throw FormatError(m);
  if (dynamic_cast<const CorruptFileError*>(&e)) throw CorruptFileError(m);
  if (dynamic_cast<const UnsafeFileError*>(&e)) throw UnsafeFileError(m);
  if (dynamic_cast<const LimitError*>(&e)) throw LimitError(m);
  throw IOError(m);
}
}  // namespace torchlet
#endif

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
