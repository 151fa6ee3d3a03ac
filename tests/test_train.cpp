// The checkpoint manager (include/torchlet/train/checkpoint_manager.hpp): retention of the last N epochs and the
// best, never deleting a file it did not write, pruning only after the new checkpoint is verified, resuming from
// the newest good file past truncated and bit-flipped ones (saying which it skipped and why), and failed saves
// (a full tmpfs, a file size limit) that leave every file as it was and let the retry succeed. The kill -9
// trials of the same code live in tests/crash/.
#include <doctest/doctest.h>

#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "fixture_files.hpp"
#include "torchlet/io/load.hpp"
#include "torchlet/tensor/tensor.hpp"
#include "torchlet/train/checkpoint_manager.hpp"

using namespace torchlet;
using testing::io_error_of;
namespace fs = std::filesystem;

namespace {

/// Elements of the tensor in each test checkpoint (64 KiB of float32: 16 pages of a tmpfs).
constexpr int64_t kElements = 16384;

/// The checkpoint of `epoch`: its number, and a tensor whose every element follows from it.
Value checkpoint(int64_t epoch) {
  Tensor w = empty({kElements}, kFloat32);
  float* p = w.data<float>();
  for (int64_t i = 0; i < kElements; ++i) p[i] = float(epoch * 1000 + i % 997);
  return Value::dict({{"epoch", epoch}, {"weight", w}});
}

/// The epoch a checkpoint read back holds, after checking its tensor element by element (-1 when it is off).
int64_t epoch_of(const Value& v) {
  const int64_t epoch = v.at("epoch").as_int();
  const Tensor& w = v.at("weight").as_tensor();
  if (w.numel() != kElements) return -1;
  const float* p = w.contiguous().data<float>();
  for (int64_t i = 0; i < kElements; ++i)
    if (p[i] != float(epoch * 1000 + i % 997)) return -1;
  return epoch;
}

/// The epoch in the file at `path`, read with every CRC checked.
int64_t epoch_in(const std::string& path) {
  LoadFileOptions o;
  o.verify_crc = true;
  return epoch_of(load(path, o));
}

/// A fresh empty folder under /tmp, removed with everything in it at the end of the scope.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/torchlet_train_XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

/// The names in `dir`, sorted.
std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint8_t> bytes_of(const std::string& path) { return testing::file_bytes(path); }

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(f.good());
}
void write_text(const std::string& path, const std::string& text) {
  write_bytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}
std::string read_text(const std::string& path) {
  const auto b = bytes_of(path);
  return std::string(b.begin(), b.end());
}

/// Every file in `dir` with its bytes.
std::map<std::string, std::vector<uint8_t>> snapshot(const std::string& dir) {
  std::map<std::string, std::vector<uint8_t>> out;
  for (const auto& n : names_in(dir)) out[n] = bytes_of(dir + "/" + n);
  return out;
}

/// The temporary files (`.NAME.tmp-XXXXXX`) in `dir`.
std::vector<std::string> temporaries_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& n : names_in(dir))
    if (n.find(".tmp-") != std::string::npos) out.push_back(n);
  return out;
}

/// A tmpfs of `size` mounted on a fresh folder for the scope (needs root or CAP_SYS_ADMIN; `mounted` says
/// whether it worked, and `why` why not).
struct Tmpfs {
  TempDir dir;
  bool mounted = false;
  std::string why;
  explicit Tmpfs(const std::string& options) {
    if (::mount("tmpfs", dir.path.c_str(), "tmpfs", 0, options.c_str()) == 0) mounted = true;
    else why = std::strerror(errno);
  }
  ~Tmpfs() {
    if (mounted) ::umount2(dir.path.c_str(), MNT_DETACH);
  }
  /// Bytes still free for an unprivileged writer.
  uint64_t free_bytes() const {
    struct statvfs s {};
    REQUIRE(::statvfs(dir.path.c_str(), &s) == 0);
    return uint64_t(s.f_bavail) * s.f_bsize;
  }
};

/// Fills the file system of `dir` with `dir/filler` until about `leave` bytes are left free.
void fill_leaving(const Tmpfs& t, uint64_t leave) {
  const std::string filler = t.dir / "filler";
  ::unlink(filler.c_str());
  const uint64_t free = t.free_bytes();
  REQUIRE(free > leave);
  write_bytes(filler, std::vector<uint8_t>(size_t(free - leave), 0xAB));
}

}  // namespace

TEST_SUITE("train") {

TEST_CASE("checkpoint manager: keeps the newest keep_last epoch files, last.pth and the best") {
  TempDir d;
  const std::string run = d / "run";  // created by the manager
  {
    train::CheckpointManager m(run, 2);
    for (int64_t e = 1; e <= 5; ++e) {
      const std::string p = m.save(checkpoint(e), e, e == 2 || e == 4);
      CHECK(p == run + "/" + train::CheckpointManager::epoch_file(e));
    }
    CHECK(m.epoch_files() == std::vector<std::string>{"epoch_0004.pth", "epoch_0005.pth"});
  }
  CHECK(names_in(run) == std::vector<std::string>{".torchlet-checkpoints", "epoch_0004.pth", "epoch_0005.pth",
                                                  "last.pth", "model_best.pth"});
  CHECK(read_text(run + "/.torchlet-checkpoints") == "epoch_0004.pth\nepoch_0005.pth\n");
  CHECK(bytes_of(run + "/last.pth") == bytes_of(run + "/epoch_0005.pth"));
  CHECK(epoch_in(run + "/last.pth") == 5);
  CHECK(epoch_in(run + "/model_best.pth") == 4);
  CHECK(epoch_in(run + "/epoch_0004.pth") == 4);

  // A resumed run (a new manager on the same folder) goes on pruning the files of the earlier one.
  train::CheckpointManager again(run, 2);
  CHECK(again.epoch_files() == std::vector<std::string>{"epoch_0004.pth", "epoch_0005.pth"});
  again.save(checkpoint(6), 6, false);
  CHECK(again.epoch_files() == std::vector<std::string>{"epoch_0005.pth", "epoch_0006.pth"});
  CHECK(!fs::exists(run + "/epoch_0004.pth"));
  CHECK(epoch_in(run + "/model_best.pth") == 4);

  // Saving an epoch again replaces its file without listing it twice; keep_last below 1 keeps 1.
  again.save(checkpoint(6), 6, true);
  CHECK(read_text(run + "/.torchlet-checkpoints") == "epoch_0005.pth\nepoch_0006.pth\n");
  train::CheckpointManager one(run, 0);
  one.save(checkpoint(7), 7, false);
  CHECK(one.epoch_files() == std::vector<std::string>{"epoch_0007.pth"});
  CHECK(names_in(run) == std::vector<std::string>{".torchlet-checkpoints", "epoch_0007.pth", "last.pth",
                                                  "model_best.pth"});
  CHECK(epoch_in(run + "/model_best.pth") == 6);
}

// Skipped until include/torchlet/train/checkpoint_manager.hpp orders epoch files by number: today it sorts the
// names as text, so "epoch_10000.pth" < "epoch_9999.pth" and saving epoch 10000 prunes the file it just wrote,
// and resume falls back to epoch 9999 first.
TEST_CASE("checkpoint manager: epochs past 9999 are newer than 9999") {
  TempDir d;
  const std::string run = d / "run";
  train::CheckpointManager m(run, 2);
  for (int64_t e : {9998, 9999, 10000}) m.save(checkpoint(e), e, false);
  CHECK(m.epoch_files() == std::vector<std::string>{"epoch_9999.pth", "epoch_10000.pth"});
  CHECK(fs::exists(run + "/epoch_10000.pth"));
  CHECK(!fs::exists(run + "/epoch_9998.pth"));
  fs::remove(run + "/last.pth");
  CHECK(train::CheckpointManager::resume(run + "/last.pth").path == run + "/epoch_10000.pth");
}

TEST_CASE("checkpoint manager: never deletes a file it did not write") {
  TempDir d;
  const std::string run = d / "run";
  REQUIRE(fs::create_directory(run));
  // Files of someone else: a checkpoint named like an epoch file, notes, a backup, and a file outside.
  torchlet::save(run + "/epoch_0001.pth", checkpoint(1));
  write_text(run + "/notes.txt", "keep me");
  write_text(run + "/epoch_0002.pth.bak", "keep me too");
  write_text(d / "outside.pth", "outside");
  // A manifest naming paths outside the folder (edited by hand, or planted): such lines are ignored.
  write_text(run + "/.torchlet-checkpoints",
             "../outside.pth\n" + d.path + "/outside.pth\nepoch_0000.pth/../../outside.pth\n");
  {
    train::CheckpointManager m(run, 1);
    CHECK(m.epoch_files().empty());
    for (int64_t e = 2; e <= 4; ++e) m.save(checkpoint(e), e, false);
    CHECK(m.epoch_files() == std::vector<std::string>{"epoch_0004.pth"});
  }
  CHECK(names_in(run) == std::vector<std::string>{".torchlet-checkpoints", "epoch_0001.pth", "epoch_0002.pth.bak",
                                                  "epoch_0004.pth", "last.pth", "notes.txt"});
  CHECK(epoch_in(run + "/epoch_0001.pth") == 1);
  CHECK(read_text(run + "/notes.txt") == "keep me");
  CHECK(read_text(run + "/epoch_0002.pth.bak") == "keep me too");
  CHECK(read_text(d / "outside.pth") == "outside");
  CHECK(read_text(run + "/.torchlet-checkpoints") == "epoch_0004.pth\n");
}

TEST_CASE("checkpoint manager: a checkpoint that cannot be saved prunes nothing and replaces nothing") {
  TempDir d;
  const std::string run = d / "run";
  train::CheckpointManager m(run, 2);
  m.save(checkpoint(1), 1, true);
  m.save(checkpoint(2), 2, false);
  const auto before = snapshot(run);
  // A value that cannot be saved (an undefined tensor): the save fails before any file is written, and nothing
  // changes.
  Value bad = checkpoint(3);
  bad.as_dict().set(Value("note"), Value(Tensor()));
  CHECK_THROWS_AS(m.save(bad, 3, true), Error);
  CHECK(m.epoch_files() == std::vector<std::string>{"epoch_0001.pth", "epoch_0002.pth"});
  for (const auto& [name, bytes] : before) {
    CAPTURE(name);
    CHECK(bytes_of(run + "/" + name) == bytes);
  }
  CHECK(temporaries_in(run).empty());
  // The next good save goes on as if the bad one had not happened.
  m.save(checkpoint(3), 3, false);
  CHECK(m.epoch_files() == std::vector<std::string>{"epoch_0002.pth", "epoch_0003.pth"});
  CHECK(epoch_in(run + "/last.pth") == 3);
  CHECK(epoch_in(run + "/model_best.pth") == 1);
}

TEST_CASE("checkpoint manager: resume takes the newest good file and says what it skipped and why") {
  TempDir d;
  const std::string run = d / "run";
  {
    train::CheckpointManager m(run, 4);
    for (int64_t e = 1; e <= 4; ++e) m.save(checkpoint(e), e, false);
  }
  // Undamaged: last.pth itself, nothing skipped.
  {
    const auto r = train::CheckpointManager::resume(run + "/last.pth");
    CHECK(r.path == run + "/last.pth");
    CHECK(r.skipped.empty());
    CHECK(epoch_of(r.checkpoint) == 4);
  }
  // last.pth cut in half, epoch 4 cut to its first 100 bytes, one bit of epoch 3's tensor data flipped.
  auto last = bytes_of(run + "/last.pth");
  last.resize(last.size() / 2);
  write_bytes(run + "/last.pth", last);
  auto e4 = bytes_of(run + "/epoch_0004.pth");
  e4.resize(100);
  write_bytes(run + "/epoch_0004.pth", e4);
  auto e3 = bytes_of(run + "/epoch_0003.pth");
  const float marker = float(3 * 1000 + 500);  // element 500 of epoch 3
  const auto* mb = reinterpret_cast<const uint8_t*>(&marker);
  const auto at = std::search(e3.begin(), e3.end(), mb, mb + sizeof marker);
  REQUIRE(at != e3.end());
  at[1] ^= 0x10;
  write_bytes(run + "/epoch_0003.pth", e3);

  const auto r = train::CheckpointManager::resume(run + "/last.pth");
  CHECK(r.path == run + "/epoch_0002.pth");
  CHECK(epoch_of(r.checkpoint) == 2);
  REQUIRE(r.skipped.size() == 3);
  CHECK(r.skipped[0].rfind(run + "/last.pth: ", 0) == 0);
  CHECK(r.skipped[1].rfind(run + "/epoch_0004.pth: ", 0) == 0);
  CHECK(r.skipped[2].rfind(run + "/epoch_0003.pth: ", 0) == 0);
  CHECK_MESSAGE(r.skipped[0].find("truncated") != std::string::npos, r.skipped[0]);
  CHECK_MESSAGE(r.skipped[1].find("truncated") != std::string::npos, r.skipped[1]);
  CHECK_MESSAGE(r.skipped[2].find("CRC-32 mismatch") != std::string::npos, r.skipped[2]);
  for (const auto& s : r.skipped) CHECK(s.find('\n') == std::string::npos);

  // A missing last.pth (a crash before the first one was written) falls back the same way.
  fs::remove(run + "/last.pth");
  const auto r2 = train::CheckpointManager::resume(run + "/last.pth");
  CHECK(r2.path == run + "/epoch_0002.pth");
  REQUIRE(r2.skipped.size() == 3);
  CHECK(r2.skipped[0].rfind(run + "/last.pth: ", 0) == 0);

  // Nothing readable left: an IOError that lists every file and its reason.
  write_text(run + "/epoch_0002.pth", "not a checkpoint");
  write_bytes(run + "/epoch_0001.pth", {});
  const std::string m = io_error_of([&] { train::CheckpointManager::resume(run + "/last.pth"); });
  CHECK(m.find("no readable checkpoint") != std::string::npos);
  for (const char* f : {"last.pth", "epoch_0004.pth", "epoch_0003.pth", "epoch_0002.pth", "epoch_0001.pth"}) {
    CHECK_MESSAGE(m.find(run + "/" + f + ": ") != std::string::npos, f, " missing from: ", m);
  }
}

TEST_CASE("checkpoint manager: a full disk (tmpfs) fails the save, keeps every file, prunes nothing; the retry works") {
  Tmpfs t("size=2m,mode=0755");
  if (!t.mounted) {
    MESSAGE("skipped: cannot mount a tmpfs here (" << t.why << "); the file size limit case covers this path");
    return;
  }
  const std::string run = t.dir / "run";
  train::CheckpointManager m(run, 2);
  m.save(checkpoint(1), 1, true);
  m.save(checkpoint(2), 2, false);
  const auto before = snapshot(run);
  const uint64_t file_size = before.at("last.pth").size();
  const uint64_t page = 4096, file_pages = (file_size + page - 1) / page;

  // Space left: none; part of the epoch file; the epoch file and the manifest but not last.pth.
  struct Case {
    uint64_t leave;
    const char* failing;  // the file whose write runs out of space
  };
  for (const Case c : {Case{0, "epoch_0003.pth"}, Case{5 * page, "epoch_0003.pth"},
                       Case{(file_pages + 2) * page, "last.pth"}}) {
    CAPTURE(c.leave);
    fill_leaving(t, c.leave);
    const std::string msg = io_error_of([&] { m.save(checkpoint(3), 3, true); });
    CHECK_MESSAGE(msg.find("No space left on device") != std::string::npos, msg);
    CHECK_MESSAGE(msg.find(run + "/" + c.failing) != std::string::npos, msg);
    CHECK(fs::exists(run + "/epoch_0003.pth") == (std::string(c.failing) == "last.pth"));
    // Every earlier file is as it was (the manifest may list epoch 3 once its file is complete); nothing was
    // pruned; no temporary file is left.
    for (const auto& [name, bytes] : before) {
      CAPTURE(name);
      REQUIRE(fs::exists(run + "/" + name));
      if (name == ".torchlet-checkpoints" && fs::exists(run + "/epoch_0003.pth")) {
        CHECK(read_text(run + "/" + name) == "epoch_0001.pth\nepoch_0002.pth\nepoch_0003.pth\n");
      } else {
        CHECK(bytes_of(run + "/" + name) == bytes);
      }
    }
    CHECK(temporaries_in(run).empty());
    // The only new file may be epoch 3 itself, and then only complete (it was verified before anything else).
    for (const auto& n : names_in(run)) {
      if (before.count(n)) continue;
      CHECK(n == "epoch_0003.pth");
      CHECK(epoch_in(run + "/" + n) == 3);
    }
    CHECK(train::CheckpointManager::resume(run + "/last.pth").skipped.empty());
  }
  // Space again: the same save succeeds and prunes epoch 1.
  fs::remove(t.dir / "filler");
  m.save(checkpoint(3), 3, true);
  CHECK(m.epoch_files() == std::vector<std::string>{"epoch_0002.pth", "epoch_0003.pth"});
  CHECK(names_in(run) == std::vector<std::string>{".torchlet-checkpoints", "epoch_0002.pth", "epoch_0003.pth",
                                                  "last.pth", "model_best.pth"});
  CHECK(epoch_in(run + "/last.pth") == 3);
  CHECK(epoch_in(run + "/model_best.pth") == 3);
  CHECK(temporaries_in(run).empty());
}

TEST_CASE("checkpoint manager: a failing write (file size limit) keeps every file, prunes nothing; the retry works") {
  // RLIMIT_FSIZE makes write(2) past the limit fail with EFBIG: a writer failure injected without privileges.
  TempDir d;
  const std::string run = d / "run";
  train::CheckpointManager m(run, 1);
  m.save(checkpoint(1), 1, true);
  const auto before = snapshot(run);
  struct rlimit old {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  struct rlimit small = old;
  small.rlim_cur = before.at("last.pth").size() / 2;
  auto* const old_handler = std::signal(SIGXFSZ, SIG_IGN);
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string msg;
  try {
    m.save(checkpoint(2), 2, true);
  } catch (const IOError& e) {
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  CHECK_MESSAGE(msg.find("File too large") != std::string::npos, msg);
  CHECK(msg.find(run + "/epoch_0002.pth") != std::string::npos);
  CHECK(snapshot(run) == before);
  CHECK(m.epoch_files() == std::vector<std::string>{"epoch_0001.pth"});
  m.save(checkpoint(2), 2, true);
  CHECK(m.epoch_files() == std::vector<std::string>{"epoch_0002.pth"});
  CHECK(epoch_in(run + "/last.pth") == 2);
  CHECK(names_in(run) == std::vector<std::string>{".torchlet-checkpoints", "epoch_0002.pth", "last.pth",
                                                  "model_best.pth"});
}

TEST_CASE("checkpoint manager: EIO on the fsync of a new epoch file keeps every file, prunes nothing; retry works") {
  TempDir d;
  const std::string run = d / "run";
  train::CheckpointManager m(run, 2);
  m.save(checkpoint(1), 1, true);
  m.save(checkpoint(2), 2, false);
  const auto before = snapshot(run);
  std::vector<std::string> steps;
  m.set_fault_hook([&](const std::string& file, io::FileStep step, uint64_t) {
    steps.push_back(file + " " + io::file_step_name(step));
    return file == "epoch_0003.pth" && step == io::FileStep::Sync ? EIO : 0;
  });
  std::string msg;
  try {
    m.save(checkpoint(3), 3, true);
  } catch (const IOError& e) {
    msg = e.what();
  }
  CHECK_MESSAGE(msg.find(std::strerror(EIO)) != std::string::npos, msg);
  CHECK(msg.find(run + "/epoch_0003.pth") != std::string::npos);
  CHECK(msg.find('\n') == std::string::npos);
  // Nothing after the failed fsync ran: no rename, no manifest, no last.pth, no pruning.
  REQUIRE(!steps.empty());
  CHECK(steps.back() == "epoch_0003.pth fsync");
  CHECK(snapshot(run) == before);  // the manifest included
  CHECK(temporaries_in(run).empty());
  CHECK(m.epoch_files() == std::vector<std::string>{"epoch_0001.pth", "epoch_0002.pth"});

  // The retry (the fault gone) saves, and only then prunes epoch 1; every file goes through the hook, in order.
  steps.clear();
  m.set_fault_hook([&](const std::string& file, io::FileStep step, uint64_t) {
    if (step == io::FileStep::Rename) steps.push_back(file);
    return 0;
  });
  m.save(checkpoint(3), 3, true);
  CHECK(steps == std::vector<std::string>{"epoch_0003.pth", ".torchlet-checkpoints", "last.pth", "model_best.pth",
                                          ".torchlet-checkpoints"});
  m.set_fault_hook(nullptr);
  CHECK(m.epoch_files() == std::vector<std::string>{"epoch_0002.pth", "epoch_0003.pth"});
  CHECK(!fs::exists(run + "/epoch_0001.pth"));
  CHECK(read_text(run + "/.torchlet-checkpoints") == "epoch_0002.pth\nepoch_0003.pth\n");
  CHECK(epoch_in(run + "/last.pth") == 3);
  CHECK(epoch_in(run + "/model_best.pth") == 3);
  CHECK(epoch_in(run + "/epoch_0002.pth") == 2);
}

TEST_CASE("checkpoint manager: a missing, misplaced or read-only folder is an error before any work") {
  TempDir d;
  // A missing folder is created; a missing parent is an error.
  { train::CheckpointManager m(d / "new"); }
  CHECK(fs::is_directory(d / "new"));
  const std::string missing = io_error_of([&] { train::CheckpointManager m(d / "no/such/run"); });
  CHECK(missing.find(d / "no/such/run") != std::string::npos);
  CHECK(missing.find("No such file or directory") != std::string::npos);
  // A file where the folder should be.
  write_text(d / "file", "x");
  const std::string notdir = io_error_of([&] { train::CheckpointManager m(d / "file"); });
  CHECK(notdir.find("not a folder") != std::string::npos);
  // A read-only folder: a read-only tmpfs when we may mount one (root ignores directory permissions), else
  // a folder without write permission.
  Tmpfs ro("size=64k,mode=0755");
  if (ro.mounted) {
    REQUIRE(::mount("tmpfs", ro.dir.path.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, "size=64k") == 0);
    const std::string m = io_error_of([&] { train::CheckpointManager mgr(ro.dir.path); });
    CHECK(m.find("not writable") != std::string::npos);
    CHECK(m.find("Read-only file system") != std::string::npos);
  } else if (::geteuid() != 0) {
    REQUIRE(::mkdir((d / "ro").c_str(), 0555) == 0);
    const std::string m = io_error_of([&] { train::CheckpointManager mgr(d / "ro"); });
    CHECK(m.find("not writable") != std::string::npos);
  } else {
    MESSAGE("skipped the read-only case: root without a mountable tmpfs");
  }
}

}  // TEST_SUITE
