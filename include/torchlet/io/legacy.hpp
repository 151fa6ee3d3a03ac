#pragma once
/// \file The legacy torch.save format (PyTorch < 1.6, or `_use_new_zipfile_serialization=False`): a stream of
/// pickles and raw storages in one file, read into owned memory.
///
/// Layout: pickle(magic number 0x1950a86a20f9469cfc6c), pickle(protocol version 1001), pickle(sys_info dict),
/// the main pickle (persistent ids `('storage', <X>Storage, key, location, numel, view_metadata)`), the pickled
/// list of storage keys, then for each listed key an int64 little-endian element count and the raw
/// little-endian bytes. The older tar-based format (PyTorch < 0.1.10) is detected and refused.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "torchlet/core/dtype.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/io/unpickler.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/tensor/storage.hpp"

namespace torchlet::io {

/// True when `bytes` start with the legacy format's magic-number pickle (any protocol 2-5).
inline bool is_legacy_checkpoint(std::span<const uint8_t> bytes, size_t* magic_end = nullptr) {
  static constexpr uint8_t kMagic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
  if (bytes.size() < 2 || bytes[0] != 0x80 || bytes[1] < 2 || bytes[1] > 5) return false;
  size_t p = 2;
  if (bytes.size() >= p + 9 && bytes[p] == 0x95) p += 9;  // FRAME (protocol 4+)
  if (bytes.size() < p + sizeof kMagic || std::memcmp(bytes.data() + p, kMagic, sizeof kMagic) != 0) return false;
  if (magic_end) *magic_end = p + sizeof kMagic;
  return true;
}

/// True when `bytes` look like a tar archive (the PyTorch < 0.1.10 checkpoint format): "ustar" at offset 257.
inline bool is_tar_archive(std::span<const uint8_t> bytes) {
  return bytes.size() >= 262 && std::memcmp(bytes.data() + 257, "ustar", 5) == 0;
}

/// Reads a legacy-format checkpoint held in `bytes` (`name` is used in errors) into a Value whose tensors own
/// their memory; `storage_count`, when given, receives the number of distinct storages. Raises FormatError or
/// CorruptFileError "[load] <name>: legacy checkpoint: ..." naming the offset.
inline Value read_legacy_checkpoint(std::span<const uint8_t> bytes, const std::string& name,
                                    const UnpickleOptions& options = {}, size_t* storage_count = nullptr) {
  size_t pos = 0;
  TORCHLET_CHECK(!is_tar_archive(bytes), FormatError, "[load] ", name,
                 ": legacy tar checkpoints (PyTorch < 0.1.10) are not supported");
  TORCHLET_CHECK(is_legacy_checkpoint(bytes, &pos), FormatError, "[load] ", name,
                 ": legacy checkpoint: the file does not start with the magic number 0x1950a86a20f9469cfc6c");
  // Runs one pickle starting at `pos` (bounded by max_pickle_bytes) and advances past its STOP.
  auto next = [&](const char* what, const StorageResolver& resolve) {
    const size_t left = bytes.size() - pos;
    TORCHLET_CHECK(left > 0, CorruptFileError, "[load] ", name, ": legacy checkpoint: the file ends at offset ", pos,
                   " before the ", what, " (truncated?)");
    const auto span = bytes.subspan(pos, std::min(left, options.max_pickle_bytes));
    size_t used = 0;
    Value v;
#if !defined(TORCHLET_NOEXCEPTION) && (defined(__cpp_exceptions) || defined(__EXCEPTIONS))
    try {
      v = unpickle_prefix(span, options, resolve, used);
    } catch (const IOError& e) {
      if (std::string_view(e.what()).rfind("[unpickle]", 0) != 0) throw;
      rethrow_io_error(e, "[load] " + name + ": legacy checkpoint: in the " + what + " starting at offset " +
                              std::to_string(pos) + ": ");
    }
#else
    v = unpickle_prefix(span, options, resolve, used);
#endif
    pos += used;
    return v;
  };
  const Value proto = next("protocol version", nullptr);
  TORCHLET_CHECK(proto.is_int() && proto.as_int() == 1001, FormatError, "[load] ", name,
                 ": legacy checkpoint: protocol version ", proto.repr(), " is not supported (expected 1001)");
  const Value sys_info = next("sys_info", nullptr);
  TORCHLET_CHECK(sys_info.is_dict(), CorruptFileError, "[load] ", name, ": legacy checkpoint: sys_info is a ",
                 sys_info.kind_name(), ", not a dict");

  struct Pending {
    Storage storage;
    int64_t element_size = 1;
    bool filled = false;
  };
  // (sys_info's little_endian is not needed: torch.save writes legacy storages little-endian on every host.)
  std::unordered_map<std::string, Pending> storages;
  uint64_t claimed = 0;
  Value result = next("main pickle", [&](const std::string& key, DType dtype, int64_t numel, const std::string&) {
    Pending p;
    p.element_size = element_size(dtype);
    const uint64_t left = bytes.size() - pos - std::min<uint64_t>(claimed, bytes.size() - pos);
    // compared by division so that a huge numel cannot overflow the product
    const bool fits = numel >= 0 && static_cast<uint64_t>(numel) <= left / static_cast<uint64_t>(p.element_size);
    if (fits) claimed += static_cast<uint64_t>(numel) * static_cast<uint64_t>(p.element_size);
    TORCHLET_CHECK(fits, CorruptFileError, "[load] ", name, ": legacy checkpoint: storage '",
                   key, "' of ", numel, " x ", dtype_name(dtype), " does not fit in the ", bytes.size(),
                   "-byte file (corrupt storage size)");
    p.storage = Storage::allocate(static_cast<size_t>(numel * p.element_size));
    Storage s = p.storage;
    storages.emplace(key, std::move(p));
    return s;
  });
  const size_t keys_at = pos;
  const Value keys = next("list of storage keys", nullptr);
  TORCHLET_CHECK(keys.is_list(), CorruptFileError, "[load] ", name,
                 ": legacy checkpoint: the storage key list at offset ", keys_at, " is a ", keys.kind_name(),
                 ", not a list");
  for (const Value& k : keys.as_list()) {
    TORCHLET_CHECK(k.is_string(), CorruptFileError, "[load] ", name, ": legacy checkpoint: storage key ", k.repr(),
                   " at offset ", keys_at, " is not a str");
    const std::string& key = k.as_string();
    const auto it = storages.find(key);
    TORCHLET_CHECK(it != storages.end(), CorruptFileError, "[load] ", name, ": legacy checkpoint: storage '", key,
                   "' (listed at offset ", keys_at, ") is not used by any tensor");
    Pending& p = it->second;
    TORCHLET_CHECK(!p.filled, CorruptFileError, "[load] ", name, ": legacy checkpoint: storage '", key,
                   "' is listed twice");
    TORCHLET_CHECK(bytes.size() - pos >= 8, CorruptFileError, "[load] ", name, ": legacy checkpoint: storage '", key,
                   "' at offset ", pos, ": the file ends before its size (truncated?)");
    int64_t count = 0;
    for (int i = 7; i >= 0; --i) count = static_cast<int64_t>((static_cast<uint64_t>(count) << 8) | bytes[pos + i]);
    const auto nbytes = static_cast<int64_t>(p.storage.nbytes());
    TORCHLET_CHECK(count >= 0 && count <= nbytes && count * p.element_size == nbytes, CorruptFileError, "[load] ", name,
                   ": legacy checkpoint: storage '", key, "' at offset ", pos, " holds ", count,
                   " elements, but the pickle expects ", nbytes / p.element_size);
    pos += 8;
    TORCHLET_CHECK(static_cast<uint64_t>(nbytes) <= bytes.size() - pos, CorruptFileError, "[load] ", name,
                   ": legacy checkpoint: storage '", key, "' at offset ", pos, " (", nbytes,
                   " bytes) runs past the end of the file (", bytes.size(), " bytes): the file is truncated");
    if (nbytes > 0) std::memcpy(p.storage.data(), bytes.data() + pos, static_cast<size_t>(nbytes));
    pos += static_cast<size_t>(nbytes);
    p.filled = true;
  }
  for (const auto& [key, p] : storages)
    TORCHLET_CHECK(p.filled, CorruptFileError, "[load] ", name, ": legacy checkpoint: storage '", key,
                   "' is used by a tensor but missing from the storage list at offset ", keys_at);
  TORCHLET_CHECK(pos == bytes.size(), CorruptFileError, "[load] ", name, ": legacy checkpoint: ", bytes.size() - pos,
                 " unexpected bytes after the last storage at offset ", pos);
  if (storage_count) *storage_count = storages.size();
  return result;
}

}  // namespace torchlet::io
