/// \file libFuzzer harness: the zip container reader (io/zip.hpp) on raw bytes: central directory and local
/// header validation, then bounded reads of every entry (with and without CRC checks), views of stored entries,
/// and the checkpoint-layout queries load() uses.
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace torchlet;
  for (const bool crc : {false, true}) {
    torchlet_fuzz::guarded("fuzz_zip", [&] {
      io::ZipReadOptions zo;
      zo.check_crc = crc;
      zo.limits = torchlet_fuzz::zip_limits();
      const io::ZipReader zip = io::ZipReader::from_buffer(std::vector<uint8_t>(data, data + size), "fuzz", zo);
      uint64_t sum = 0;
      for (const io::ZipEntry& e : zip.entries()) {
        if (e.data_offset > size || (e.method == 0 && e.compressed_size > size - e.data_offset))
          torchlet_fuzz::finding("fuzz_zip", "stored entry '" + e.name + "' lies outside the file");
        torchlet_fuzz::guarded("fuzz_zip", [&] {
          const std::vector<uint8_t> bytes = zip.read(e);
          if (bytes.size() != e.uncompressed_size)
            torchlet_fuzz::finding("fuzz_zip", "read() of '" + e.name + "' returned " +
                                                   std::to_string(bytes.size()) + " bytes, the entry claims " +
                                                   std::to_string(e.uncompressed_size));
          for (uint8_t b : bytes) sum += b;
        });
        torchlet_fuzz::guarded("fuzz_zip", [&] { sum += zip.verify_crc(e.name); });
        if (e.method == 0)
          torchlet_fuzz::guarded("fuzz_zip", [&] {
            const io::ZipView v = zip.view(e.name);
            for (size_t i = 0; i < v.size; ++i) sum += v.data[i];
          });
      }
      sum += zip.unverified_entries().size();
      torchlet_fuzz::guarded("fuzz_zip", [&] {
        const std::string root = zip.checkpoint_root();
        sum += zip.unreferenced_entries(root, {"0", "1"}).size();
      });
      volatile uint64_t keep = sum;
      (void)keep;
    });
  }
  return 0;
}
