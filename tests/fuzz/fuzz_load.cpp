/// \file libFuzzer harness: end-to-end checkpoint load (io/load.hpp) on raw bytes, then a walk over every tensor.
/// Three ways in, as a user has them: load_from_bytes() in copy mode (storages are slices of one arena),
/// load_from_bytes() in zero-copy mode (tensors borrow the buffer), and load() of a file (a memfd, read whole
/// into torchlet's own memory: storages are slices of the file buffer). Odd-length inputs also verify CRCs.
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.hpp"

namespace {
/// A memory file reused by every run: the path load() opens.
struct MemFile {
  int fd = -1;
  std::string path;
  MemFile() {
    fd = ::memfd_create("fuzz_load", MFD_CLOEXEC);
    if (fd < 0) torchlet_fuzz::finding("fuzz_load", "memfd_create failed");
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  void fill(const uint8_t* data, size_t size) {
    if (::ftruncate(fd, 0) != 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0)
      torchlet_fuzz::finding("fuzz_load", "ftruncate failed");
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
      if (n <= 0) torchlet_fuzz::finding("fuzz_load", "pwrite failed");
      done += static_cast<size_t>(n);
    }
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace torchlet;
  static MemFile file;
  LoadFileOptions o;
  o.zip_limits = torchlet_fuzz::zip_limits();
  o.unpickle = torchlet_fuzz::pickle_limits();
  o.verify_crc = size % 2 == 1;
  auto run = [&](auto&& load_it) {
    torchlet_fuzz::guarded("fuzz_load", [&] {
      LoadInfo info;
      const Value v = load_it(info);
      torchlet_fuzz::check_value(v);
      if (info.storages != info.borrowed_storages + info.copied_storages)
        torchlet_fuzz::finding("fuzz_load", "LoadInfo storage counts do not add up");
    });
  };
  run([&](LoadInfo& info) {
    LoadFileOptions c = o;
    c.mmap = false;
    return load_from_bytes(std::vector<uint8_t>(data, data + size), c, "fuzz", &info);
  });
  run([&](LoadInfo& info) {
    LoadFileOptions m = o;
    m.mmap = true;
    return load_from_bytes(std::vector<uint8_t>(data, data + size), m, "fuzz", &info);
  });
  file.fill(data, size);
  run([&](LoadInfo& info) { return load(file.path, o, &info); });
  return 0;
}
