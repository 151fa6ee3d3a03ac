#pragma once
/// \file Reading a data file that may be gzip-compressed (zlib's gz* API reads plain files unchanged), with
/// one-line IOErrors naming the file.
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "torchlet/core/error.hpp"

namespace torchlet::data::detail {

/// A file opened for reading through zlib: gzip data is inflated, anything else is read as it is.
class ByteReader {
 public:
  /// Opens `path`; `op` names the caller in error messages.
  ByteReader(const std::string& path, const char* op) : path_(path), op_(op) {
    std::error_code ec;
    TORCHLET_CHECK(std::filesystem::is_regular_file(path, ec), IOError, "[", op_, "] cannot open ", path, ": ",
                   std::filesystem::exists(path, ec) ? "not a regular file" : "no such file");
    file_ = gzopen(path.c_str(), "rb");
    TORCHLET_CHECK(file_ != nullptr, IOError, "[", op_, "] cannot open ", path, ": ", std::strerror(errno));
    gzbuffer(file_, 1 << 17);
  }
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;
  ~ByteReader() {
    if (file_) gzclose(file_);
  }

  /// Reads up to `n` bytes into `dst`; returns how many were read (fewer only at the end of the data).
  size_t read_some(void* dst, size_t n) {
    size_t done = 0;
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, 1u << 30));
      const int got = gzread(file_, static_cast<char*>(dst) + done, chunk);
      if (got < 0) {
        int err = 0;
        const char* msg = gzerror(file_, &err);
        TORCHLET_THROW(IOError, "[", op_, "] ", path_, ": corrupt or truncated compressed data after ", offset_ + done,
                       " bytes (zlib: ", (msg ? msg : "error"), ")");
      }
      if (got == 0) {
        int err = 0;
        const char* msg = gzerror(file_, &err);
        TORCHLET_CHECK(err == Z_OK || err == Z_STREAM_END, IOError, "[", op_, "] ", path_,
                       ": corrupt or truncated compressed data after ", offset_ + done, " bytes (zlib: ", msg, ")");
        break;
      }
      done += static_cast<size_t>(got);
    }
    offset_ += done;
    return done;
  }
  /// Reads exactly `n` bytes; `what` says what they are in the error for a short file.
  void read_exact(void* dst, size_t n, const std::string& what) {
    const size_t got = read_some(dst, n);
    TORCHLET_CHECK(got == n, IOError, "[", op_, "] ", path_, ": truncated: ", what, " needs ", n, " bytes at offset ",
                   offset_ - got, ", the file has only ", got);
  }
  /// Reads `n` bytes in chunks, so a header that claims more data than the file holds fails on the missing
  /// bytes instead of allocating the claim up front; `what` names the data in the error.
  std::vector<uint8_t> read_claimed(uint64_t n, const std::string& what) {
    std::vector<uint8_t> out;
    const uint64_t start = offset_;
    while (out.size() < n) {
      const size_t step = static_cast<size_t>(std::min<uint64_t>(n - out.size(), uint64_t{16} << 20));
      const size_t old = out.size();
      out.resize(old + step);
      const size_t got = read_some(out.data() + old, step);
      TORCHLET_CHECK(got == step, IOError, "[", op_, "] ", path_, ": truncated: ", what, " needs ", n,
                     " bytes after the header (offset ", start, "), the file has only ", old + got);
    }
    return out;
  }
  /// True when no data is left.
  bool at_end() {
    char c;
    return read_some(&c, 1) == 0;
  }
  uint64_t offset() const { return offset_; }         ///< Bytes of (inflated) data read so far.
  const std::string& path() const { return path_; }  ///< The file's path.

 private:
  std::string path_;
  const char* op_;
  gzFile file_ = nullptr;
  uint64_t offset_ = 0;
};
}  // namespace torchlet::data::detail
