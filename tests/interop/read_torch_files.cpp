// PyTorch -> torchlet interop: reads the files tests/interop/write_torch_files.py wrote with real PyTorch, in copy
// and in zero-copy mode, and checks every node of each tree against <name>.manifest and every tensor's contiguous
// bytes against its SHA-256. usage: read_torch_files DIR   (exit 0: all identical, 1: a difference or an error)
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "load_manifest.hpp"
#include "torchlet/io/load.hpp"
#include "torchlet/io/sha256.hpp"
#include "torchlet/tensor/copy.hpp"

using namespace torchlet;

namespace {

/// Compares one loaded file with its manifest; prints the first difference. True when identical.
bool check(const std::string& dir, const std::string& name, bool mmap) {
  const char* mode = mmap ? "zero-copy" : "copy";
  LoadFileOptions opt;
  opt.mmap = mmap;
  LoadInfo info;
  Value v;
  try {
    v = load(dir + "/" + name + ".pth", opt, &info);
  } catch (const std::exception& e) {
    std::printf("FAIL %s (%s): %s\n", name.c_str(), mode, e.what());
    return false;
  }
  const auto exp = load_manifest::read_expected(dir + "/" + name + ".manifest");
  const auto got = load_manifest::manifest(v);
  if (got.lines.size() != exp.lines.size() || got.tensors.size() != exp.payloads.size()) {
    std::printf("FAIL %s (%s): %zu nodes and %zu tensors, expected %zu and %zu\n", name.c_str(), mode,
                got.lines.size(), got.tensors.size(), exp.lines.size(), exp.payloads.size());
    return false;
  }
  for (size_t i = 0; i < got.lines.size(); ++i)
    if (got.lines[i] != exp.lines[i]) {
      std::printf("FAIL %s (%s): line %zu is '%s', expected '%s'\n", name.c_str(), mode, i + 1, got.lines[i].c_str(),
                  exp.lines[i].c_str());
      return false;
    }
  int64_t bytes = 0;
  for (size_t i = 0; i < got.tensors.size(); ++i) {
    const Tensor c = got.tensors[i].contiguous();
    const std::string h = io::sha256_hex(c.data_ptr(), static_cast<size_t>(c.nbytes()));
    bytes += c.nbytes();
    if (h != exp.payloads[i]) {
      std::printf("FAIL %s (%s): tensor %s: sha256 %s, expected %s\n", name.c_str(), mode,
                  got.lines[got.tensor_line[i]].c_str(), h.c_str(), exp.payloads[i].c_str());
      return false;
    }
  }
  std::printf("ok   %-16s %-9s %-6s %3zu tensors, %10lld bytes, %zu storages (%zu borrowed)\n", name.c_str(), mode,
              info.format.c_str(), got.tensors.size(), static_cast<long long>(bytes), info.storages,
              info.borrowed_storages);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR (written by write_torch_files.py)\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  std::ifstream list(dir + "/files.txt");
  std::string name;
  int files = 0, failed = 0;
  while (std::getline(list, name)) {
    if (name.empty()) continue;
    ++files;
    for (bool mmap : {false, true}) failed += check(dir, name, mmap) ? 0 : 1;
  }
  if (files == 0) {
    std::printf("FAIL: no files listed in %s/files.txt\n", dir.c_str());
    return 1;
  }
  std::printf("%d files, %d failures\n", files, failed);
  return failed == 0 ? 0 : 1;
}
