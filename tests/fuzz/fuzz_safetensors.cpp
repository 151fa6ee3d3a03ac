/// \file libFuzzer harness: the safetensors reader (io/safetensors.hpp) on raw bytes, from memory and from a file
/// in zero-copy mode, then a walk over every tensor and a re-save (whose output must load back).
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.hpp"
#include "torchlet/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace torchlet;
  static const int fd = ::memfd_create("fuzz_st", MFD_CLOEXEC);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  SafetensorsLoadOptions o;
  o.max_header_bytes = 1u << 20;
  torchlet_fuzz::guarded("fuzz_safetensors", [&] {
    const Value v = load_safetensors_from_bytes(std::span<const uint8_t>(data, size), o, "fuzz");
    torchlet_fuzz::check_value(v);
    // What we read, we can write; and what we write, we read back the same.
    std::vector<uint8_t> out;
    try {
      out = save_safetensors_to_bytes(v);
    } catch (const Error& e) {
      torchlet_fuzz::note_other_error(e);
      return;
    }
    const Value back = load_safetensors_from_bytes(out, o, "resaved");
    torchlet_fuzz::check_value(back);
    if (back.size() != v.size()) torchlet_fuzz::finding("fuzz_safetensors", "re-saved file has a different entry count");
  });
  if (fd >= 0 && ::ftruncate(fd, 0) == 0 && ::pwrite(fd, data, size, 0) == static_cast<ssize_t>(size)) {
    torchlet_fuzz::guarded("fuzz_safetensors", [&] {
      SafetensorsLoadOptions m = o;
      m.mmap = true;
      torchlet_fuzz::check_value(load_safetensors(path, m));
    });
  }
  return 0;
}
