// Times torchlet::load on a checkpoint file: copy mode (owned tensors, one read per storage) or zero-copy mode
// (tensors borrow the memory-mapped file), and the peak memory the load adds. bench/compare_load.py runs it next to
// torch.load on the same file.
//
// usage: load_checkpoint FILE [--mode copy|mmap] [--min-time SECONDS] [--json PATH]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "torchlet/io/load.hpp"

using namespace torchlet;

namespace {

// A field of /proc/self/status in bytes (VmRSS, VmHWM), or -1.
int64_t proc_status_bytes(const char* field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field, 0) == 0) return std::atoll(line.c_str() + std::strlen(field) + 1) * 1024;
  }
  return -1;
}

// Sum of the bytes of every tensor in a Value tree; with `touch`, reads one byte per page (so that lazily mapped
// tensors are faulted in).
void walk(const Value& v, int64_t& bytes, uint64_t& checksum, bool touch = false) {
  if (v.is_tensor()) {
    const Tensor& t = v.as_tensor();
    const auto n = static_cast<int64_t>(t.numel() * element_size(t.dtype()));
    bytes += n;
    const auto* p = static_cast<const uint8_t*>(t.data_ptr());
    if (touch) {
      for (int64_t i = 0; i < n; i += 4096) checksum += p[i];
    }
  } else if (v.is_sequence()) {
    for (const Value& x : v.as_list()) walk(x, bytes, checksum, touch);
  } else if (v.is_dict()) {
    for (const auto& [k, x] : v.as_dict()) walk(x, bytes, checksum, touch);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: load_checkpoint FILE [--mode copy|mmap] [--min-time SECONDS] [--json PATH]\n");
    return 1;
  }
  const std::string file = argv[1];
  std::string mode = "copy", json;
  double min_time = 2.0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string f = argv[i];
    if (f == "--mode") mode = argv[i + 1];
    else if (f == "--min-time") min_time = std::atof(argv[i + 1]);
    else if (f == "--json") json = argv[i + 1];
  }
  LoadFileOptions options;
  options.mmap = mode == "mmap";

  try {
    // the first load, in a fresh process: the anonymous memory it adds (file pages of a mapping are the page
    // cache's, shared, not counted); with --touch every tensor's pages are read once
    const int64_t rss_before = proc_status_bytes("RssAnon:");
    int64_t tensor_bytes = 0;
    uint64_t checksum = 0;
    double first_ms = 0;
    int64_t peak_extra = 0;
    {
      const auto t0 = std::chrono::steady_clock::now();
      Value v = load(file, options);
      walk(v, tensor_bytes, checksum, true);
      peak_extra = proc_status_bytes("RssAnon:") - rss_before;
      first_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }

    std::vector<double> runs;
    const auto start = std::chrono::steady_clock::now();
    while (runs.size() < 3 ||
           (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < min_time &&
            runs.size() < 200)) {
      const auto t0 = std::chrono::steady_clock::now();
      Value v = load(file, options);
      int64_t b = 0;
      walk(v, b, checksum);
      runs.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    double best = runs[0];
    for (double r : runs) best = std::min(best, r);
    std::printf("torchlet::load (%s): best %.2f ms over %zu runs, first %.2f ms; %.1f MB of tensors; peak extra "
                "memory %.1f MB (checksum %llu)\n",
                mode.c_str(), best, runs.size(), first_ms, tensor_bytes / 1e6, peak_extra / 1e6,
                static_cast<unsigned long long>(checksum));
    if (!json.empty()) {
      std::FILE* f = std::fopen(json.c_str(), "w");
      if (f == nullptr) {
        std::fprintf(stderr, "load_checkpoint: cannot write %s\n", json.c_str());
        return 1;
      }
      std::fprintf(f, "{\"mode\": \"%s\", \"best_ms\": %.4f, \"first_ms\": %.4f, \"tensor_bytes\": %lld, "
                   "\"peak_extra_bytes\": %lld}\n", mode.c_str(), best, first_ms,
                   static_cast<long long>(tensor_bytes), static_cast<long long>(peak_extra));
      std::fclose(f);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "load_checkpoint: %s\n", e.what());
    return 1;
  }
  return 0;
}
