#pragma once
/// \file torchlet::save: writes a Value (a state_dict, an optimizer state_dict, a training checkpoint) as the zip
/// file `torch.save` writes, which `torch.load(path, weights_only=True)` opens in PyTorch 2.x (and plain
/// `torch.load` in 1.6-1.13; `weights_only=True` there too when the value holds no Python floats).
///
/// Layout (PyTorch 1.13 / 2.x): `<archive>/data.pkl` (pickle protocol 2, see io/pickler.hpp),
/// `<archive>/byteorder` ("little"), `<archive>/data/0`, `data/1`, ... (raw little-endian storage bytes, in
/// numeric key order, whole storages: views and shared storages stay shared), `<archive>/version` ("3\n").
/// Entries are stored (not compressed), their data 64-byte aligned with PyTorch's "FB" padding field, CRC-32
/// computed, and the zip64 end records always present. Not written: `.data/serialization_id` (2.x writes a hash
/// of the records there; readers treat it as optional) and `.format_version` / `.storage_alignment` (2.7+;
/// they would promise miniz's exact layout). The output is deterministic: saving the same Value twice gives the
/// same bytes (no timestamps, no random ids).
///
/// save() writes atomically and durably (io/atomic_file.hpp): the previous file survives any failure.
///
/// Device tensors are copied to the CPU and recorded with location 'cpu', so the file is byte for byte the one
/// their CPU copies give. PyTorch would record 'cuda:0' for a tensor on cuda:0; torchlet writes 'cpu' because the
/// file then loads everywhere (torch.load on a machine without CUDA raises for 'cuda:0' unless given
/// map_location), and where tensors go is the loader's choice (LoadFileOptions::map_location, torch.load's
/// map_location).
#include <bit>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "torchlet/core/error.hpp"
#include "torchlet/io/atomic_file.hpp"
#include "torchlet/io/pickler.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/io/zip.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {

/// How save() and save_to_bytes() write a checkpoint.
struct SaveOptions {
  /// The folder every record sits in inside the zip (PyTorch: "archive" for buffers, the file's stem for paths;
  /// any name loads).
  std::string archive_name = "archive";
  /// fsync the file and its directory (save() only); off still replaces the file atomically.
  bool durable = true;
  /// Alignment of every record's data in the file (PyTorch: 64).
  uint64_t alignment = 64;
  /// Limits of the pickler.
  io::PickleOptions pickle = {};
  /// Failure injection for tests (see io::FaultHook); empty in normal use.
  io::FaultHook fault = {};
};

namespace detail {
/// Writes the checkpoint archive of `value`, handing each finished chunk of bytes to `sink(const uint8_t*, size_t)`
/// so that a large checkpoint never sits in memory twice.
template <class Sink>
void write_checkpoint(const Value& value, const SaveOptions& o, Sink&& sink) {
  TORCHLET_CHECK(std::endian::native == std::endian::little, IOError,
                 "[save] this host is big-endian; torchlet writes little-endian checkpoints only");
  TORCHLET_CHECK(!o.archive_name.empty() && o.archive_name.size() <= 1024 &&
                     o.archive_name.find('/') == std::string::npos && o.archive_name != "." &&
                     o.archive_name != "..",
                 ValueError, "[save] archive_name must be a non-empty folder name without '/', got '",
                 o.archive_name, "'");
  const io::Pickled pk = io::pickle(value, o.pickle);
  std::vector<uint8_t> buf;
  io::ZipWriteOptions zo;
  zo.alignment = o.alignment;
  io::ZipWriter zip(buf, zo);
  // The writer only appends to `buf` and counts offsets itself, so each finished chunk can be handed on.
  auto drain = [&] {
    if (!buf.empty()) sink(buf.data(), buf.size());
    buf.clear();
  };
  const std::string dir = o.archive_name + "/";
  zip.add(dir + "data.pkl", std::span<const uint8_t>(pk.bytes));
  zip.add(dir + "byteorder", std::string_view("little"));
  drain();
  for (const io::PickledStorage& s : pk.storages) {
    const size_t n = static_cast<size_t>(s.nbytes());
    const uint8_t* data = nullptr;
    Tensor cpu;  // keeps a CPU copy of a device storage alive
    if (n > 0) {
      if (s.storage.device().is_cpu()) {
        data = static_cast<const uint8_t*>(s.storage.data());
      } else {
        cpu = Tensor(s.storage, kUInt8, Shape{static_cast<int64_t>(s.storage.nbytes())}, Shape{1}, 0).to(kCPU);
        data = static_cast<const uint8_t*>(cpu.data_ptr());
      }
    }
    zip.add(dir + "data/" + s.key, data, n);
    drain();
  }
  zip.add(dir + "version", std::string_view("3\n"));
  zip.finish();
  drain();
}
}  // namespace detail

/// The bytes `torch.save(value, io.BytesIO())` would hold for `value` (see the file comment for the layout).
/// Raises ValueError for a value that cannot be pickled, naming its path.
inline std::vector<uint8_t> save_to_bytes(const Value& value, const SaveOptions& options = {}) {
  std::vector<uint8_t> out;
  detail::write_checkpoint(value, options,
                           [&](const uint8_t* p, size_t n) { out.insert(out.end(), p, p + n); });
  return out;
}

/// Writes `value` to `path` as `torch.save(value, path)` would, atomically: the file appears complete under its
/// name or not at all, and the previous file survives any failure. Raises IOError naming the file and the
/// reason (missing or read-only directory, no space left, ...), or ValueError for a value that cannot be pickled.
inline void save(const std::string& path, const Value& value, const SaveOptions& options = {}) {
  io::AtomicFileOptions fo;
  fo.durable = options.durable;
  fo.fault = options.fault;
  io::AtomicFile file(path, std::move(fo));  // checks the directory before any work
  detail::write_checkpoint(value, options, [&](const uint8_t* p, size_t n) { file.write(p, n); });
  file.commit();
}

}  // namespace torchlet
