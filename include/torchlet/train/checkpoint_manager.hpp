#pragma once
/// \file CheckpointManager: a training run's checkpoints in one folder — `epoch_NNNN.pth` for the last N epochs,
/// `last.pth` and `model_best.pth` — each written atomically, verified by reading it back before anything older
/// is pruned, and a resume that falls back to the newest good checkpoint when the asked-for one is damaged.
///
/// The manager only ever deletes epoch files listed in its manifest (`DIR/.torchlet-checkpoints`, one file name
/// per line), i.e. files it wrote itself.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "torchlet/core/error.hpp"
#include "torchlet/io/atomic_file.hpp"
#include "torchlet/io/load.hpp"
#include "torchlet/io/save.hpp"
#include "torchlet/io/value.hpp"

namespace torchlet::train {

/// A checkpoint read back for resuming, with the files skipped on the way and why.
struct ResumedCheckpoint {
  Value checkpoint;                   ///< the checkpoint's contents
  std::string path;                   ///< the file it came from
  std::vector<std::string> skipped;   ///< "FILE: reason" for each damaged file passed over
};

/// Test seam of CheckpointManager: called before each step of each atomic write with the file name in the folder
/// ("epoch_0003.pth", ".torchlet-checkpoints", "last.pth", "model_best.pth"), the step and how many times that
/// step ran before in that write (see io::FaultHook); returning an errno value (e.g. EIO) makes the step fail
/// with it, 0 lets it run.
using CheckpointFaultHook = std::function<int(const std::string& file, io::FileStep step, uint64_t index)>;

/// Writes and prunes a run's checkpoints in `dir`.
class CheckpointManager {
 public:
  /// Manages `dir` (created if missing), keeping the newest `keep_last` epoch files (at least 1).
  /// Raises IOError at once when the folder cannot be created or written, before any training happens.
  explicit CheckpointManager(std::string dir, int keep_last = 3) : dir_(std::move(dir)), keep_(std::max(keep_last, 1)) {
    if (::mkdir(dir_.c_str(), 0777) != 0 && errno != EEXIST) {
      TORCHLET_THROW(IOError, "[checkpoint] cannot create folder ", dir_, ": ", std::strerror(errno));
    }
    struct stat st {};
    TORCHLET_CHECK(::stat(dir_.c_str(), &st) == 0 && S_ISDIR(st.st_mode), IOError, "[checkpoint] ", dir_,
                   " is not a folder");
    TORCHLET_CHECK(::access(dir_.c_str(), W_OK | X_OK) == 0, IOError, "[checkpoint] folder ", dir_,
                   " is not writable: ", std::strerror(errno));
    manifest_ = read_manifest();
  }

  /// The folder.
  const std::string& dir() const { return dir_; }
  /// `dir/name`.
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  /// The epoch file name for `epoch`: `epoch_0007.pth`.
  static std::string epoch_file(int64_t epoch) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "epoch_%04lld.pth", static_cast<long long>(epoch));
    return buf;
  }

  /// Saves `checkpoint` for `epoch`: writes the epoch file, reads it back (CRC-checked), then replaces
  /// `last.pth` (and `model_best.pth` when `is_best`) with the same bytes, and only then prunes epoch files
  /// beyond the newest `keep_last`. Returns the epoch file's path. On failure nothing older is touched.
  std::string save(const Value& checkpoint, int64_t epoch, bool is_best) {
    const std::vector<uint8_t> bytes = torchlet::save_to_bytes(checkpoint);
    const std::string name = epoch_file(epoch);
    {  // bytes that would not read back replace nothing (an earlier save of this epoch stays)
      LoadFileOptions o;
      o.verify_crc = true;
      (void)torchlet::load_from_bytes(bytes, o);
    }
    write_atomic(name, bytes);
    try {
      verify(path(name));
    } catch (...) {
      std::remove(path(name).c_str());  // what reached the disk is not what was written: keep no broken file
      throw;
    }
    if (std::find(manifest_.begin(), manifest_.end(), name) == manifest_.end()) manifest_.push_back(name);
    write_manifest();
    write_atomic("last.pth", bytes);
    if (is_best) write_atomic("model_best.pth", bytes);
    prune();
    return path(name);
  }

  /// Reads `file` for resuming. When it is damaged (truncated, corrupt, not a checkpoint), falls back to the
  /// newest readable epoch file of the same folder's manifest, recording what it skipped and why. Raises
  /// IOError when nothing readable is left.
  static ResumedCheckpoint resume(const std::string& file) {
    ResumedCheckpoint out;
    std::vector<std::string> candidates{file};
    const auto slash = file.find_last_of('/');
    const std::string folder = slash == std::string::npos ? "." : file.substr(0, slash);
    std::vector<std::string> listed = read_manifest_of(folder);
    std::sort(listed.begin(), listed.end(), [](const auto& a, const auto& b) { return older(b, a); });  // newest first
    for (const auto& n : listed) {
      const std::string p = folder + "/" + n;
      if (p != file) candidates.push_back(p);
    }
    for (const auto& p : candidates) {
      try {
        out.checkpoint = load_verified(p);
        out.path = p;
        return out;
      } catch (const Error& e) {
        out.skipped.push_back(p + ": " + e.what());
      }
    }
    std::string why;
    for (const auto& s : out.skipped) why += (why.empty() ? "" : "; ") + s;
    TORCHLET_THROW(IOError, "[checkpoint] no readable checkpoint to resume from (", why, ")");
  }

  /// The epoch files this manager wrote that still exist, oldest first.
  std::vector<std::string> epoch_files() const { return manifest_; }

  /// For tests: injects failures into the atomic writes of save() (see CheckpointFaultHook); empty to stop.
  void set_fault_hook(CheckpointFaultHook hook) { fault_ = std::move(hook); }

 private:
  static Value load_verified(const std::string& file) {
    LoadFileOptions o;
    o.verify_crc = true;
    return torchlet::load(file, o);
  }
  static void verify(const std::string& file) { (void)load_verified(file); }
  /// The epoch of an `epoch_NNNN.pth` name (any number of digits).
  static int64_t epoch_number(const std::string& name) { return std::strtoll(name.c_str() + 6, nullptr, 10); }
  /// Epoch order of epoch file names (numeric: epoch_10000 comes after epoch_9999).
  static bool older(const std::string& a, const std::string& b) {
    const int64_t x = epoch_number(a), y = epoch_number(b);
    return x != y ? x < y : a < b;
  }

  static std::vector<std::string> read_manifest_of(const std::string& folder) {
    std::vector<std::string> names;
    std::ifstream in(folder + "/.torchlet-checkpoints");
    for (std::string line; std::getline(in, line);) {
      // only plain epoch file names: never a path that could point elsewhere
      if (line.rfind("epoch_", 0) == 0 && line.find('/') == std::string::npos) names.push_back(line);
    }
    return names;
  }
  std::vector<std::string> read_manifest() const {
    std::vector<std::string> names;
    for (const auto& n : read_manifest_of(dir_)) {
      if (::access(path(n).c_str(), F_OK) == 0) names.push_back(n);
    }
    std::sort(names.begin(), names.end(), older);
    return names;
  }
  void write_manifest() const {
    std::string text;
    for (const auto& n : manifest_) text += n + "\n";
    write_atomic(".torchlet-checkpoints",
                 std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  }
  /// Replaces `dir/name` atomically and durably with `bytes`, through the fault hook when one is set.
  void write_atomic(const std::string& name, std::span<const uint8_t> bytes) const {
    io::AtomicFileOptions o;
    if (fault_) o.fault = [this, name](io::FileStep step, uint64_t index) { return fault_(name, step, index); };
    io::write_file_atomic(path(name), bytes, o);
  }
  void prune() {
    std::sort(manifest_.begin(), manifest_.end(), older);
    while (manifest_.size() > static_cast<size_t>(keep_)) {
      const std::string victim = manifest_.front();
      manifest_.erase(manifest_.begin());
      write_manifest();  // forget it first: a crash leaves an orphan file, never a dangling manifest entry
      std::remove(path(victim).c_str());
    }
  }

  std::string dir_;
  int keep_;
  std::vector<std::string> manifest_;
  CheckpointFaultHook fault_;
};

}  // namespace torchlet::train
