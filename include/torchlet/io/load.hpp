#pragma once
/// \file torchlet::load: reads what torch.save wrote (the zip format of PyTorch >= 1.6 and the legacy stream
/// format) into a Value tree, exactly as the pickle holds it (a state_dict's `_metadata` in `"__attributes__"`).
///
/// Copy mode (default) reads the file once, with one read, into torchlet's own memory, and the storages are slices
/// of it (deflated, misaligned or byte-swapped records get their own copy). Zero-copy mode (`{.mmap = true}`) maps the
/// file (private, copy-on-write) and lets tensors borrow its bytes: the mapping lives as long as any tensor uses
/// it. Entries that cannot be borrowed (deflated, or not aligned to their element size) are copied; big-endian
/// archives are refused in zero-copy mode and byte-swapped in copy mode (by the element size of each storage's
/// `<X>Storage` type; an `UntypedStorage` of a big-endian file is left as is). Errors are one-line IOErrors
/// (FormatError: not a checkpoint or an unsupported kind; CorruptFileError: damaged or inconsistent;
/// UnsafeFileError, LimitError from the unpickler) naming the file and the entry or offset:
/// `[load] model.pth: storage record 'archive/data/3' is missing (the pickle refers to storage '3')`.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "torchlet/core/device.hpp"
#include "torchlet/core/dtype.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/io/legacy.hpp"
#include "torchlet/io/unpickler.hpp"
#include "torchlet/core/threads.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/io/zip.hpp"
#include "torchlet/tensor/storage.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {

/// How load() reads a checkpoint.
struct LoadFileOptions {
  /// Zero-copy: memory-map the file and let tensors borrow its bytes (stored, aligned, little-endian entries).
  bool mmap = false;
  /// Check every record's CRC-32 against the zip central directory (PyTorch never does; off by default).
  bool verify_crc = false;
  /// Limits on the zip container (entries, entry sizes).
  io::ZipLimits zip_limits = {};
  /// Limits on the pickle (size, depth, memo, total tensor bytes).
  io::UnpickleOptions unpickle = {};
  /// Where the tensors go, like torch.load's map_location: unset or the CPU keeps them in host memory whatever
  /// device the file names (a tensor saved from cuda:0 loads on the CPU, in a CPU-only build too); a device
  /// copies each storage there once, so views and tied weights still share one storage.
  std::optional<Device> map_location = std::nullopt;
};

/// What load() found in a file; pass a pointer to receive it (diagnostics, tests).
struct LoadInfo {
  /// "zip" or "legacy".
  std::string format;
  /// The zip archive folder ("archive", or the saved file's base name); empty for legacy files.
  std::string archive;
  /// The `version` record (zip), or the legacy protocol version 1001.
  int64_t version = 0;
  /// "little" or "big" (a zip file without a `byteorder` record is little-endian).
  std::string byteorder = "little";
  /// The `.storage_alignment` record, 0 when absent.
  int64_t storage_alignment = 0;
  /// The `.format_version` record, 0 when absent.
  int64_t format_version = 0;
  /// Distinct storages read.
  size_t storages = 0;
  /// Storages whose tensors borrow the file's bytes (zero-copy mode).
  size_t borrowed_storages = 0;
  /// Storages copied into their own memory.
  size_t copied_storages = 0;
  /// Records under the archive folder that nothing used (e.g. a hidden extra pickle); load() does not read them.
  std::vector<std::string> unreferenced_records;
  /// First byte of the file's bytes in memory (the mapping in zero-copy mode); only valid while borrowed.
  const uint8_t* file_data = nullptr;
  /// Size of the file in bytes.
  uint64_t file_size = 0;
};

/// The kinds of file load() tells apart from their first bytes.
enum class CheckpointFormat { Zip, Legacy, LegacyTar, Safetensors, GitLfsPointer, Empty, Unknown };

/// The format of a file from its first bytes (the first 512 are enough).
inline CheckpointFormat detect_checkpoint_format(std::span<const uint8_t> head) {
  if (head.empty()) return CheckpointFormat::Empty;
  if (head.size() >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4)
    return CheckpointFormat::Zip;
  if (head.size() >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 5 && head[3] == 6)
    return CheckpointFormat::Zip;  // an empty zip: refused later with a clear message
  static constexpr std::string_view kLfs = "version https://git-lfs";
  if (head.size() >= kLfs.size() && std::memcmp(head.data(), kLfs.data(), kLfs.size()) == 0)
    return CheckpointFormat::GitLfsPointer;
  if (io::is_legacy_checkpoint(head)) return CheckpointFormat::Legacy;
  if (io::is_tar_archive(head)) return CheckpointFormat::LegacyTar;
  if (head.size() >= 10 && head[8] == '{') {  // u64 little-endian header length, then a JSON object
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | head[static_cast<size_t>(i)];
    if (n >= 2 && n < (uint64_t(1) << 32)) return CheckpointFormat::Safetensors;
  }
  return CheckpointFormat::Unknown;
}

namespace detail {

/// A private, copy-on-write mapping of a whole file, unmapped when the last borrower lets go.
struct LoadMapping {
  void* addr = MAP_FAILED;
  size_t size = 0;
  ~LoadMapping() {
    if (addr != MAP_FAILED) ::munmap(addr, size);
  }
};

/// Up to 16 bytes as hex ("89 50 4e 47 ...").
inline std::string load_hex_head(std::span<const uint8_t> b) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < std::min<size_t>(b.size(), 16); ++i) {
    std::snprintf(buf, sizeof buf, i ? " %02x" : "%02x", b[i]);
    s += buf;
  }
  return s;
}

/// Parses a small decimal record ("3\n"); -1 when it is not a number.
inline int64_t load_parse_decimal(const std::vector<uint8_t>& bytes) {
  size_t n = bytes.size();
  while (n > 0 && (bytes[n - 1] == '\n' || bytes[n - 1] == '\r' || bytes[n - 1] == ' ')) --n;
  if (n == 0 || n > 18) return -1;
  int64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    if (bytes[i] < '0' || bytes[i] > '9') return -1;
    v = v * 10 + (bytes[i] - '0');
  }
  return v;
}

/// Reverses the byte order of each `element_size`-byte element of `nbytes` bytes at `p`.
inline void load_byteswap(uint8_t* p, size_t nbytes, size_t element_size) {
  if (element_size <= 1) return;
  for (size_t i = 0; i + element_size <= nbytes; i += element_size) std::reverse(p + i, p + i + element_size);
}

/// Runs `f`; an IOError from the unpickler gets `prefix` (file and entry) put before its message, keeping its type.
template <class F>
Value load_with_prefix(const std::string& prefix, F&& f) {
#if !defined(TORCHLET_NOEXCEPTION) && (defined(__cpp_exceptions) || defined(__EXCEPTIONS))
  try {
    return f();
  } catch (const IOError& e) {
    if (std::string_view(e.what()).rfind("[unpickle]", 0) != 0) throw;
    rethrow_io_error(e, prefix);
  }
#else
  (void)prefix;
  return f();
#endif
}

/// Reads a zip checkpoint held by `owner` (file mapping or buffer).
inline Value load_zip(const std::shared_ptr<const uint8_t>& owner, bool owned, uint64_t size, const std::string& name,
                      const LoadFileOptions& opt, LoadInfo& info) {
  io::ZipReadOptions zo;
  zo.check_crc = opt.verify_crc;
  zo.limits = opt.zip_limits;
  const io::ZipReader zip = io::ZipReader::from_shared(owner, size, name, zo);

  // The archive folder: the one top-level folder, holding data.pkl (TorchScript archives are refused).
  const std::string root = zip.checkpoint_root();
  const std::string pkl_name = root + "/data.pkl";
  const io::ZipEntry* pkl = &zip.entry(pkl_name);
  info.format = "zip";
  info.archive = root;

  const io::ZipEntry* ver = zip.find(root + "/version");
  if (!ver) ver = zip.find(root + "/.data/version");
  TORCHLET_CHECK(ver != nullptr, CorruptFileError, "[load] ", name, ": the archive has no '", root,
                 "/version' record (not a complete torch.save checkpoint)");
  TORCHLET_CHECK(ver->uncompressed_size <= 64, FormatError, "[load] ", name, ": entry '", ver->name, "' is ",
                 ver->uncompressed_size, " bytes, not a version number");
  info.version = load_parse_decimal(zip.read(*ver));
  TORCHLET_CHECK(info.version >= 1 && info.version <= 10, FormatError, "[load] ", name, ": entry '", ver->name,
                 "': unsupported file format version ", info.version < 0 ? std::string("(not a number)")
                                                                          : std::to_string(info.version),
                 " (1..10 are supported)");
  if (const io::ZipEntry* bo = zip.find(root + "/byteorder")) {
    TORCHLET_CHECK(bo->uncompressed_size <= 16, FormatError, "[load] ", name, ": entry '", bo->name, "' is ",
                   bo->uncompressed_size, " bytes, expected 'little' or 'big'");
    const auto b = zip.read(*bo);
    info.byteorder.assign(b.begin(), b.end());
    TORCHLET_CHECK(info.byteorder == "little" || info.byteorder == "big", FormatError, "[load] ", name, ": entry '",
                   bo->name, "': unknown byte order '", info.byteorder, "' (expected 'little' or 'big')");
  }
  for (auto [rec, field] : {std::pair{"/.storage_alignment", &info.storage_alignment},
                            std::pair{"/.format_version", &info.format_version}}) {
    if (const io::ZipEntry* e = zip.find(root + rec)) {
      TORCHLET_CHECK(e->uncompressed_size <= 64, FormatError, "[load] ", name, ": entry '", e->name, "' is ",
                     e->uncompressed_size, " bytes, not a number");
      *field = load_parse_decimal(zip.read(*e));
      TORCHLET_CHECK(*field >= 0, FormatError, "[load] ", name, ": entry '", e->name, "' is not a number");
    }
  }
  const bool big = info.byteorder == "big";
  TORCHLET_CHECK(!(big && opt.mmap), FormatError, "[load] ", name,
                 ": the checkpoint is big-endian (byteorder 'big'): it cannot be loaded zero-copy; load it "
                 "without mmap to byte-swap it");

  // refused before it is inflated: a small deflated record could otherwise claim and fill up to 1032x its size
  TORCHLET_CHECK(pkl->uncompressed_size <= opt.unpickle.max_pickle_bytes, LimitError, "[load] ", name, ": ",
                 pkl_name, " holds ", pkl->uncompressed_size, " bytes, more than max_pickle_bytes ",
                 opt.unpickle.max_pickle_bytes);
  const std::vector<uint8_t> pickle = zip.read(*pkl);
  std::shared_ptr<void> keep_alive(owner, const_cast<uint8_t*>(owner.get()));
  std::vector<std::string> keys;
  // Copy mode: one allocation (huge-page backed when large) holds every stored storage record, each at a 64-byte
  // aligned offset: one page-fault-friendly block instead of hundreds of fresh allocations. Its size is bounded by
  // the file's (stored records lie inside the file); deflated records get their own memory.
  std::unordered_map<const io::ZipEntry*, size_t> arena_offsets;
  std::shared_ptr<void> arena;
  if (!opt.mmap && !owned) {
    const std::string prefix = root + "/data/";
    size_t total = 0;
    for (const io::ZipEntry& e : zip.entries()) {
      // empty records get no slot (their storages are empty allocations): with only those there is no arena
      if (e.method != 0 || e.uncompressed_size == 0 || e.name.compare(0, prefix.size(), prefix) != 0) continue;
      arena_offsets.emplace(&e, total);
      total += static_cast<size_t>((e.uncompressed_size + kStorageAlignment - 1) / kStorageAlignment *
                                   kStorageAlignment);
    }
    if (total > 0) arena = std::make_shared<Storage>(Storage::allocate(total));
  }
  auto resolve = [&](const std::string& key, DType dtype, int64_t numel, const std::string&) -> Storage {
    const std::string rec = root + "/data/" + key;
    const io::ZipEntry* e = zip.find(rec);
    TORCHLET_CHECK(e != nullptr, CorruptFileError, "[load] ", name, ": storage record '", rec,
                   "' is missing (the pickle refers to storage '", key, "')");
    const int64_t es = element_size(dtype);
    const auto nbytes = static_cast<uint64_t>(numel) * static_cast<uint64_t>(es);
    TORCHLET_CHECK(e->uncompressed_size == nbytes, CorruptFileError, "[load] ", name, ": storage record '", rec,
                   "' holds ", e->uncompressed_size, " bytes, but the pickle expects ", numel, " x ",
                   dtype_name(dtype), " = ", nbytes, " bytes");
    ++info.storages;
    keys.push_back(key);
    const uint8_t* src = zip.data() + e->data_offset;
    const bool aligned = reinterpret_cast<uintptr_t>(src) % static_cast<uintptr_t>(es) == 0;
    if (opt.verify_crc && e->method == 0 && io::ZipReader::crc_recorded(*e)) {
      const uint32_t crc = io::detail::zip_crc32(src, nbytes);
      TORCHLET_CHECK(crc == e->crc32, CorruptFileError, "[load] ", name, ": storage record '", rec, "' at offset ",
                     e->data_offset, ": CRC-32 mismatch (the file is corrupt)");
    }
    if (opt.mmap && e->method == 0 && aligned) {
      ++info.borrowed_storages;
      return Storage::borrow(const_cast<uint8_t*>(src), static_cast<size_t>(nbytes), keep_alive);
    }
    ++info.copied_storages;
    if (owned && e->method == 0 && aligned && !big) {
      // the file was read into torchlet's own memory: the storage is a slice of it, no second copy
      return Storage::part_of(const_cast<uint8_t*>(src), static_cast<size_t>(nbytes), keep_alive);
    }
    const auto slot = arena_offsets.find(e);
    Storage s = slot != arena_offsets.end()
                    ? Storage::part_of(static_cast<uint8_t*>(static_cast<Storage*>(arena.get())->data()) + slot->second,
                                       static_cast<size_t>(nbytes), arena)
                    : Storage::allocate(static_cast<size_t>(nbytes));
    if (e->method == 0) {
      if (nbytes) std::memcpy(s.data(), src, static_cast<size_t>(nbytes));
    } else {
      const std::vector<uint8_t> bytes = zip.read(*e);
      if (nbytes) std::memcpy(s.data(), bytes.data(), static_cast<size_t>(nbytes));
    }
    if (big) load_byteswap(static_cast<uint8_t*>(s.data()), static_cast<size_t>(nbytes), static_cast<size_t>(es));
    return s;
  };
  Value v = load_with_prefix("[load] " + name + ": entry '" + pkl_name + "': ",
                             [&] { return io::unpickle(pickle, opt.unpickle, resolve); });
  info.unreferenced_records = zip.unreferenced_entries(root, keys);
  return v;
}

/// Dispatches on the format of the bytes held by `owner`.
inline Value load_bytes(const std::shared_ptr<const uint8_t>& owner, bool owned, uint64_t size, const std::string& name,
                        const LoadFileOptions& opt, LoadInfo* info_out) {
  LoadInfo info;
  info.file_data = owner.get();
  info.file_size = size;
  const std::span<const uint8_t> bytes(owner.get(), static_cast<size_t>(size));
  Value v;
  switch (detect_checkpoint_format(bytes.first(std::min<size_t>(bytes.size(), 512)))) {
    case CheckpointFormat::Zip: v = load_zip(owner, owned, size, name, opt, info); break;
    case CheckpointFormat::Legacy:
      info.format = "legacy";
      info.version = 1001;
      v = io::read_legacy_checkpoint(bytes, name, opt.unpickle, &info.storages);
      info.copied_storages = info.storages;
      break;
    case CheckpointFormat::Empty:
      TORCHLET_THROW(CorruptFileError, "[load] ", name,
                     ": the file is empty (0 bytes): not a PyTorch checkpoint (was the save interrupted?)");
    case CheckpointFormat::GitLfsPointer:
      TORCHLET_THROW(FormatError, "[load] ", name, ": this is a Git LFS pointer file, not the checkpoint itself: "
                     "run `git lfs pull` to fetch the real file");
    case CheckpointFormat::LegacyTar:
      TORCHLET_THROW(FormatError, "[load] ", name, ": legacy tar checkpoints (PyTorch < 0.1.10) are not supported");
    case CheckpointFormat::Safetensors:
      TORCHLET_THROW(FormatError, "[load] ", name, ": this is a safetensors file, not a torch.save checkpoint: "
                     "read it with the safetensors reader (torchlet/io/safetensors.hpp)");
    case CheckpointFormat::Unknown:
      TORCHLET_THROW(FormatError, "[load] ", name, ": not a PyTorch checkpoint (neither a zip archive nor the legacy "
                     "format); first bytes: ", load_hex_head(bytes));
  }
  if (info_out) *info_out = std::move(info);
  return v;
}

/// Moves every tensor of `v` to `device` (map_location), copying each storage once (`moved` maps a host storage's
/// bytes to its device copy) so that tensors sharing a storage share one on the device.
inline void load_map_location(Value& v, Device device, std::unordered_map<const void*, Storage>& moved) {
  if (v.is_tensor()) {
    const Tensor t = v.as_tensor();
    if (!t.defined() || t.device() == device) return;
    const Storage& host = t.storage();
    const auto nbytes = static_cast<int64_t>(host.nbytes());
    Storage dev;
    if (auto it = moved.find(host.data()); nbytes > 0 && it != moved.end() && it->second.nbytes() == host.nbytes()) {
      dev = it->second;
    } else {
      dev = Tensor(host, kUInt8, Shape{nbytes}, Shape{1}, 0).to(device).storage();
      if (nbytes > 0) moved[host.data()] = dev;
    }
    Tensor out(dev, t.dtype(), t.sizes(), t.strides(), t.storage_offset());
    if (t.requires_grad()) out.requires_grad_();
    v = Value(out);
  } else if (v.is_list() || v.is_tuple()) {
    for (Value& e : v.as_list()) load_map_location(e, device, moved);
  } else if (v.is_dict()) {
    for (auto& entry : v.as_dict()) load_map_location(entry.second, device, moved);
  }
}

/// `v` with its tensors on options.map_location (unchanged without one, or for the CPU).
inline Value load_to_device(Value v, const LoadFileOptions& options) {
  if (options.map_location && !options.map_location->is_cpu()) {
    std::unordered_map<const void*, Storage> moved;
    load_map_location(v, *options.map_location, moved);
  }
  return v;
}
}  // namespace detail

/// Reads a checkpoint file written by torch.save (zip or legacy format) into a Value tree; `info`, when given,
/// receives what was found. Raises IOError naming the file and the entry or offset.
inline Value load(const std::string& path, const LoadFileOptions& options = {}, LoadInfo* info = nullptr) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TORCHLET_CHECK(fd >= 0, IOError, "[load] ", path, ": cannot open: ", std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  TORCHLET_CHECK(::fstat(fd, &st) == 0, IOError, "[load] ", path, ": cannot stat: ", std::strerror(errno));
  TORCHLET_CHECK(S_ISREG(st.st_mode), IOError, "[load] ", path, ": not a regular file");
  const auto size = static_cast<uint64_t>(st.st_size);
  TORCHLET_CHECK(size > 0, CorruptFileError, "[load] ", path,
                 ": the file is empty (0 bytes): not a PyTorch checkpoint (was the save interrupted?)");
  // Copy mode reads the whole file with one read into torchlet's own memory (huge-page backed when large), and the
  // storages are slices of it: one copy from the page cache, nothing else. Zero-copy mode maps the file lazily
  // (copy-on-write, so in-place edits of tensors stay private) and tensors borrow the mapping.
  std::shared_ptr<const uint8_t> owner;
  bool owned = false;
  if (options.mmap) {
    auto map = std::make_shared<detail::LoadMapping>();
    map->size = static_cast<size_t>(size);
    map->addr = ::mmap(nullptr, map->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (map->addr != MAP_FAILED) owner = std::shared_ptr<const uint8_t>(map, static_cast<const uint8_t*>(map->addr));
  }
  if (!owner) {
    auto buf = std::make_shared<Storage>(Storage::allocate(static_cast<size_t>(size)));
    auto* data = static_cast<uint8_t*>(buf->data());
    // large files are read in parallel chunks: the kernel's copy from the page cache (and its zeroing of fresh
    // pages) is the whole cost of a copy-mode load, and it scales with the threads
    constexpr uint64_t kChunk = uint64_t{8} << 20;
    const auto chunks = static_cast<int64_t>((size + kChunk - 1) / kChunk);
    std::vector<std::string> errors(static_cast<size_t>(chunks));
    detail::parallel_for(chunks, chunks > 1, [&](int64_t c) {
      {
        uint64_t done = static_cast<uint64_t>(c) * kChunk;
        const uint64_t stop = std::min(size, done + kChunk);
        while (done < stop) {
          const ssize_t n = ::pread(fd, data + done, static_cast<size_t>(stop - done), static_cast<off_t>(done));
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) {
            errors[static_cast<size_t>(c)] = "read failed at offset " + std::to_string(done) + ": " +
                                             (n < 0 ? std::strerror(errno) : "the file shrank while reading");
            break;
          }
          done += static_cast<uint64_t>(n);
        }
      }
    });
    for (const auto& e : errors) TORCHLET_CHECK(e.empty(), CorruptFileError, "[load] ", path, ": ", e);
    owner = std::shared_ptr<const uint8_t>(buf, data);
    owned = true;
  }
  return detail::load_to_device(detail::load_bytes(owner, owned, size, path, options, info), options);
}

/// Reads a checkpoint held in memory (`name` is used in errors). With `options.mmap`, tensors borrow the bytes
/// (kept alive by the tensors) instead of copying them.
inline Value load_from_bytes(std::vector<uint8_t> bytes, const LoadFileOptions& options = {},
                             const std::string& name = "<memory>", LoadInfo* info = nullptr) {
  auto buf = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  const uint64_t size = buf->size();
  std::shared_ptr<const uint8_t> owner(buf, buf->data());
  return detail::load_to_device(detail::load_bytes(owner, false, size, name, options, info), options);
}

}  // namespace torchlet
