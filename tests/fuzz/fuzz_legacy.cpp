/// \file libFuzzer harness: the legacy (pre-1.6, pickle-chain) checkpoint reader (io/legacy.hpp) on raw bytes,
/// called directly (load() only reaches it for files that start with the magic number pickle), then a walk over
/// every tensor.
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace torchlet;
  torchlet_fuzz::guarded("fuzz_legacy", [&] {
    size_t storages = 0;
    const Value v = io::read_legacy_checkpoint(std::span<const uint8_t>(data, size), "fuzz",
                                               torchlet_fuzz::pickle_limits(), &storages);
    torchlet_fuzz::check_value(v);
  });
  return 0;
}
