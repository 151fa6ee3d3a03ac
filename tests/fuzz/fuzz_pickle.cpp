/// \file libFuzzer harness: the restricted pickle interpreter alone (io/unpickler.hpp), on raw bytes.
/// Persistent ids resolve to zero-filled storages of the requested size (bounded by max_total_tensor_bytes),
/// so tensor views are built and walked. Odd-length inputs run with allow_objects = false.
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace torchlet;
  torchlet_fuzz::guarded("fuzz_pickle", [&] {
    io::UnpickleOptions o = torchlet_fuzz::pickle_limits();
    o.allow_objects = size % 2 == 0;
    int64_t handed_out = 0;
    auto resolve = [&](const std::string&, DType dtype, int64_t numel, const std::string&) -> Storage {
      if (numel < 0) torchlet_fuzz::finding("fuzz_pickle", "resolver called with a negative numel");
      const int64_t nbytes = numel * element_size(dtype);
      handed_out += nbytes;
      if (handed_out > o.max_total_tensor_bytes)
        torchlet_fuzz::finding("fuzz_pickle", "resolver asked for more than max_total_tensor_bytes in total");
      Storage s = Storage::allocate(static_cast<size_t>(nbytes));
      if (nbytes) std::memset(s.data(), 0x5a, static_cast<size_t>(nbytes));
      return s;
    };
    const Value v = io::unpickle(std::span<const uint8_t>(data, size), o, resolve);
    torchlet_fuzz::check_value(v);
    if (const Value* a = io::pickled_attributes(v)) torchlet_fuzz::walk_value(*a);
    (void)io::pickled_class(v);
    if (!io::pickled_class(v).empty() && v.contains(Value("_modules"))) {
      try {  // documented to raise ValueError for what is not a well-formed pickled module
        torchlet_fuzz::check_value(io::module_state_dict(v));
      } catch (const ValueError&) {
      }
    }
    size_t used = 0;
    (void)io::unpickle_prefix(std::span<const uint8_t>(data, size), o, resolve, used);
    if (used > size) torchlet_fuzz::finding("fuzz_pickle", "unpickle_prefix consumed more bytes than given");
  });
  return 0;
}
