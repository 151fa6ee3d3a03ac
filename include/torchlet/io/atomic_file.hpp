#pragma once
/// \file Atomic, durable file replacement: write into a temporary file next to the target, fsync it, rename it
/// over the target, fsync the directory. A crash or an error at any point leaves either the old file or the new
/// one under the target's name, never a half-written one; on failure the temporary file is removed and an
/// IOError says why (`No space left on device`, `Permission denied`, `Read-only file system`, ...).
///
/// POSIX only (open/write/fsync/rename/flock). The temporary file is `.<target>.tmp-XXXXXX` in the target's
/// directory, created with O_EXCL and mode 0666 minus the umask (like a plain open()), or with the mode of the
/// file it replaces. It holds an exclusive flock while being written, so a later successful save can tell a
/// stale one (left by a killed process: no lock) from one another process is still writing, and removes it.
/// Like any rename-based save, a symbolic link at the target is replaced by the new regular file.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "torchlet/core/error.hpp"

namespace torchlet::io {

/// The steps of an atomic write where a test can inject a failure.
enum class FileStep : uint8_t {
  Create,   ///< creating the temporary file
  Write,    ///< one write(2) call (index counts them from 0)
  Sync,     ///< fsync of the temporary file
  Close,    ///< close of the temporary file
  Rename,   ///< rename over the target
  SyncDir,  ///< fsync of the directory
};

/// Name of a step, for messages ("write", "fsync", ...).
constexpr const char* file_step_name(FileStep s) {
  switch (s) {
    case FileStep::Create: return "create";
    case FileStep::Write: return "write";
    case FileStep::Sync: return "fsync";
    case FileStep::Close: return "close";
    case FileStep::Rename: return "rename";
    case FileStep::SyncDir: return "directory fsync";
  }
  return "?";
}

/// Test seam: called before each step with the step and how many times that step ran before (0 for the first
/// write); returning an errno value (e.g. ENOSPC) makes the step fail with that error, 0 lets it run.
using FaultHook = std::function<int(FileStep step, uint64_t index)>;

/// How an AtomicFile writes.
struct AtomicFileOptions {
  /// fsync the file before the rename and the directory after it (off: atomic, but not crash-durable).
  bool durable = true;
  /// Bytes gathered before a write(2); 0 writes every chunk straight through.
  size_t buffer_size = size_t{1} << 20;
  /// Failure injection for tests; empty in normal use.
  FaultHook fault = {};
};

namespace detail {
/// The directory part of `path` ("." when none) and the file name part.
inline std::pair<std::string, std::string> split_path(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

/// Six random characters from [A-Za-z0-9] for a temporary name.
inline std::string random_suffix() {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng([] {
    std::random_device rd;
    const uint64_t t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    return (uint64_t(rd()) << 32) ^ rd() ^ t ^ (uint64_t(::getpid()) << 16);
  }());
  std::string s(6, 'X');
  for (char& c : s) c = alphabet[rng() % (sizeof(alphabet) - 1)];
  return s;
}
}  // namespace detail

/// A file written under a temporary name and moved over `path` by commit(); destroyed without commit(), it
/// removes the temporary file and leaves `path` as it was.
class AtomicFile {
 public:
  /// Checks that `path`'s directory exists and is writable, then creates the temporary file; raises IOError
  /// naming the file and the reason otherwise.
  explicit AtomicFile(std::string path, AtomicFileOptions options = {})
      : path_(std::move(path)), opt_(std::move(options)) {
    auto [dir, base] = detail::split_path(path_);
    dir_ = std::move(dir);
    base_ = std::move(base);
    TORCHLET_CHECK(!base_.empty() && base_ != "." && base_ != "..", IOError, "[save] '", path_,
                   "' is not a file name");
    struct stat st {};
    if (::stat(dir_.c_str(), &st) != 0) {
      const int e = errno;
      TORCHLET_THROW(IOError, "[save] cannot write '", path_, "': directory '", dir_, "' ",
                     e == ENOENT ? "does not exist" : "is not accessible", " (", std::strerror(e), ")");
    }
    TORCHLET_CHECK(S_ISDIR(st.st_mode), IOError, "[save] cannot write '", path_, "': '", dir_,
                   "' is not a directory");
    if (::access(dir_.c_str(), W_OK | X_OK) != 0) {
      const int e = errno;
      TORCHLET_THROW(IOError, "[save] cannot write '", path_, "': directory '", dir_, "' is not writable (",
                     std::strerror(e), ")");
    }
    mode_t mode = 0666;  // reduced by the umask in open()
    bool keep_mode = false;
    if (::stat(path_.c_str(), &st) == 0) {
      TORCHLET_CHECK(!S_ISDIR(st.st_mode), IOError, "[save] cannot write '", path_, "': it is a directory");
      mode = st.st_mode & 07777;
      keep_mode = true;
    }
    for (int attempt = 0;; ++attempt) {
      tmp_ = (dir_ == "/" ? "/" : dir_ + "/") + "." + base_ + ".tmp-" + detail::random_suffix();
      int e = inject(FileStep::Create);
      if (e == 0) {
        fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd_ >= 0) break;
        e = errno;
      }
      if (e == EEXIST && attempt < 100) continue;
      tmp_.clear();
      TORCHLET_THROW(IOError, "[save] cannot write '", path_, "': creating a temporary file in '", dir_,
                     "' failed: ", std::strerror(e));
    }
    ::flock(fd_, LOCK_EX | LOCK_NB);  // marks the temporary file as in use (see remove_stale_temporaries)
    if (keep_mode && ::fchmod(fd_, mode) != 0) {
      const int e = errno;
      discard();
      TORCHLET_THROW(IOError, "[save] cannot write '", path_, "': setting the mode of the temporary file failed: ",
                     std::strerror(e));
    }
    if (opt_.buffer_size) buf_.reserve(opt_.buffer_size);
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  /// Removes the temporary file unless commit() succeeded.
  ~AtomicFile() { discard(); }

  /// Appends `n` bytes; on failure removes the temporary file and raises IOError (e.g. "No space left on device").
  void write(const void* data, size_t n) {
    TORCHLET_CHECK(fd_ >= 0, IOError, "[save] '", path_, "': write after commit() or after a failure");
    const auto* p = static_cast<const uint8_t*>(data);
    if (opt_.buffer_size && buf_.size() + n <= opt_.buffer_size) {
      buf_.insert(buf_.end(), p, p + n);
      return;
    }
    flush();
    if (opt_.buffer_size && n <= opt_.buffer_size) buf_.insert(buf_.end(), p, p + n);
    else write_through(p, n);
  }
  /// Appends the bytes of `bytes`.
  void write(std::span<const uint8_t> bytes) { write(bytes.data(), bytes.size()); }

  /// Flushes, fsyncs (when durable), closes and renames the temporary file over the target, fsyncs the
  /// directory, then removes stale temporary files of the same target left by killed saves.
  void commit() {
    TORCHLET_CHECK(fd_ >= 0, IOError, "[save] '", path_, "': commit() after commit() or after a failure");
    flush();
    if (opt_.durable) step(FileStep::Sync, [&] { return ::fsync(fd_); }, "fsync of the temporary file");
    {
      const int fd = fd_;
      fd_ = -1;
      int e = inject(FileStep::Close);
      if (e == 0 && ::close(fd) != 0) e = errno;
      else if (e != 0) ::close(fd);
      if (e != 0) fail(e, "closing the temporary file");
    }
    {
      int e = inject(FileStep::Rename);
      if (e == 0 && ::rename(tmp_.c_str(), path_.c_str()) != 0) e = errno;
      if (e != 0) fail(e, "renaming the temporary file over it");
    }
    tmp_.clear();  // it is the target now
    committed_ = true;
    if (opt_.durable) {
      int e = inject(FileStep::SyncDir);
      if (e == 0) {
        const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) e = errno;
        else {
          if (::fsync(dfd) != 0 && errno != EINVAL) e = errno;  // some file systems cannot fsync a directory
          ::close(dfd);
        }
      }
      TORCHLET_CHECK(e == 0, IOError, "[save] '", path_, "' was written, but the fsync of directory '", dir_,
                     "' failed, so the rename may not survive a crash: ", std::strerror(e));
    }
    cleanup_stale();
  }

  /// Removes the temporary file (if any) and leaves the target untouched; never throws.
  void discard() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
    tmp_.clear();
  }

  /// The target path.
  const std::string& path() const { return path_; }
  /// The temporary file's path ("" once committed or discarded).
  const std::string& temp_path() const { return tmp_; }
  /// Bytes written so far (buffered ones included).
  uint64_t size() const { return written_ + buf_.size(); }
  /// Whether commit() succeeded.
  bool committed() const { return committed_; }

  /// Removes `.<name>.tmp-*` files next to `path` that no process holds open for writing (left by a killed
  /// save); returns how many were removed.
  static size_t remove_stale_temporaries(const std::string& path) {
    auto [dir, base] = detail::split_path(path);
    const std::string prefix = "." + base + ".tmp-";
    DIR* d = ::opendir(dir.c_str());
    if (!d) return 0;
    std::vector<std::string> stale;
    while (const dirent* e = ::readdir(d)) {
      const std::string_view name(e->d_name);
      if (name.size() != prefix.size() + 6 || name.substr(0, prefix.size()) != prefix) continue;
      stale.emplace_back(name);
    }
    ::closedir(d);
    size_t removed = 0;
    for (const std::string& name : stale) {
      const std::string full = (dir == "/" ? "/" : dir + "/") + name;
      const int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) continue;
      struct stat st {};
      // Only regular files nobody holds the writer's lock on (a live save keeps LOCK_EX until it commits).
      if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::flock(fd, LOCK_EX | LOCK_NB) == 0) {
        if (::unlink(full.c_str()) == 0) ++removed;
      }
      ::close(fd);
    }
    return removed;
  }

 private:
  int inject(FileStep s) {
    const uint64_t i = counts_[static_cast<size_t>(s)]++;
    return opt_.fault ? opt_.fault(s, i) : 0;
  }
  [[noreturn]] void fail(int e, const char* what) {
    discard();
    TORCHLET_THROW(IOError, "[save] cannot write '", path_, "': ", what, " failed: ", std::strerror(e),
                   " (the previous file, if any, is untouched)");
  }
  template <class F>
  void step(FileStep s, F&& f, const char* what) {
    int e = inject(s);
    if (e == 0 && f() != 0) e = errno;
    if (e != 0) fail(e, what);
  }
  void flush() {
    if (buf_.empty()) return;
    write_through(buf_.data(), buf_.size());
    buf_.clear();
  }
  void write_through(const uint8_t* p, size_t n) {
    while (n > 0) {
      int e = inject(FileStep::Write);
      ssize_t w = -1;
      if (e == 0) {
        w = ::write(fd_, p, n > (size_t{1} << 30) ? (size_t{1} << 30) : n);
        if (w < 0) {
          if (errno == EINTR) continue;
          e = errno;
        } else if (w == 0) {
          e = EIO;
        }
      }
      if (e != 0) {
        const std::string what = "writing " + std::to_string(n) + " bytes at offset " + std::to_string(written_);
        fail(e, what.c_str());
      }
      p += w;
      n -= static_cast<size_t>(w);
      written_ += static_cast<uint64_t>(w);
    }
  }
  void cleanup_stale() { remove_stale_temporaries(path_); }

  std::string path_, dir_, base_, tmp_;
  AtomicFileOptions opt_;
  int fd_ = -1;
  bool committed_ = false;
  uint64_t written_ = 0;
  std::vector<uint8_t> buf_;
  uint64_t counts_[6] = {};
};

/// Replaces `path` atomically (and durably, unless options.durable is false) with `bytes`.
inline void write_file_atomic(const std::string& path, std::span<const uint8_t> bytes,
                              const AtomicFileOptions& options = {}) {
  AtomicFile f(path, options);
  f.write(bytes);
  f.commit();
}

}  // namespace torchlet::io
