#pragma once
/// \file The zip container of PyTorch checkpoints: a bounds-checked reader (file, mmap or memory) and a writer
/// of PyTorch-style archives (stored entries, data aligned to 64 bytes with an "FB" padding extra field, zip64).
///
/// Depends only on the standard library, POSIX (open/mmap) and zlib. Every offset and size read from the file
/// is checked against the file size with overflow-checked arithmetic before use; errors are IOError subclasses
/// (FormatError: not a zip / unsupported feature, CorruptFileError: truncated or inconsistent records,
/// UnsafeFileError: path-abusing names or prepended data, LimitError: ZipLimits) with one
/// line naming the file, the entry and the offset: `[zip] model.pth: entry 'archive/data/0' ...`.
#include <zlib.h>

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
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "torchlet/core/error.hpp"
#include "torchlet/io/utf8.hpp"

namespace torchlet::io {

/// Limits applied to archives read from untrusted files; exceeding one is a LimitError, never an allocation.
struct ZipLimits {
  /// Most entries an archive may list.
  uint64_t max_entries = 1u << 20;
  /// Longest entry name, in bytes.
  uint64_t max_name_length = 4096;
  /// Largest uncompressed size of one entry.
  uint64_t max_entry_size = uint64_t(1) << 40;
  /// Largest sum of the uncompressed sizes of all entries.
  uint64_t max_total_size = uint64_t(1) << 42;
};

/// How ZipReader::open reads the file.
struct ZipReadOptions {
  /// Memory-map the file (read-only, private) instead of reading it into memory.
  bool mmap = false;
  /// Check each entry's CRC-32 in read() (off by default); entries recording CRC 0 for non-empty data (written
  /// without CRCs) are returned unverified, see ZipReader::unverified_entries().
  bool check_crc = false;
  /// Limits against hostile or corrupt archives.
  ZipLimits limits = {};
};

/// One entry of the central directory, with its data offset resolved from the local header.
struct ZipEntry {
  /// Full name inside the archive, e.g. "archive/data/0".
  std::string name;
  /// Compression method: 0 stored or 8 deflated.
  uint16_t method = 0;
  /// General-purpose flags from the central directory (bit 3: data descriptor, bit 11: UTF-8).
  uint16_t flags = 0;
  /// CRC-32 of the uncompressed data, as recorded in the central directory.
  uint32_t crc32 = 0;
  /// Size of the bytes stored in the file.
  uint64_t compressed_size = 0;
  /// Size once inflated (equal to compressed_size for stored entries).
  uint64_t uncompressed_size = 0;
  /// Offset of the local file header.
  uint64_t local_header_offset = 0;
  /// Offset of the entry's first data byte (from the local header's own name and extra lengths).
  uint64_t data_offset = 0;
};

/// A read-only, zero-copy span of a stored entry's bytes inside the archive.
struct ZipView {
  /// First byte (inside the file bytes kept alive by ZipReader::owner()).
  const uint8_t* data = nullptr;
  /// Number of bytes.
  size_t size = 0;
};

namespace detail {
/// Reads a little-endian u16.
inline uint16_t zip_u16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
/// Reads a little-endian u32.
inline uint32_t zip_u32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
/// Reads a little-endian u64.
inline uint64_t zip_u64(const uint8_t* p) { return uint64_t(zip_u32(p)) | (uint64_t(zip_u32(p + 4)) << 32); }

/// CRC-32 of any number of bytes (zlib takes at most 4 GiB per call).
inline uint32_t zip_crc32(const uint8_t* data, uint64_t size, uint32_t crc = 0) {
  uLong c = crc;
  while (size > 0) {
    const uInt n = uInt(size > (1u << 30) ? (1u << 30) : size);
    c = ::crc32(c, data, n);
    data += n;
    size -= n;
  }
  return uint32_t(c);
}


/// Holds a file mapping and unmaps it when the last borrower lets go.
struct ZipMapping {
  void* addr = nullptr;
  size_t size = 0;
  ~ZipMapping() {
    if (addr && addr != MAP_FAILED) ::munmap(addr, size);
  }
};

/// Record signatures ("PK\3\4", "PK\1\2", "PK\5\6", "PK\6\6", "PK\6\7").
constexpr uint32_t kZipLocalSig = 0x04034b50, kZipCentralSig = 0x02014b50, kZipEocdSig = 0x06054b50,
                   kZip64EocdSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;
/// Extra-field id of PyTorch's alignment padding ("FB").
constexpr uint16_t kZipPaddingId = 0x4246;
/// Extra-field id of the zip64 sizes/offset field.
constexpr uint16_t kZip64ExtraId = 0x0001;
}  // namespace detail

/// Reads a zip archive (PyTorch checkpoint or any zip with stored/deflated entries) from a file or from memory.
/// Opening validates the whole container up front: one end record whose comment ends the file (no appended
/// data), consistent zip64 records, entry names that cannot escape a folder, local headers agreeing with the
/// central directory (flags, method, CRC, sizes; zero local sizes allowed with bit 3), no unknown flag bits, and
/// entries tiling the file from offset 0 to the central directory without overlaps or hidden gaps.
class ZipReader {
 public:
  /// Opens `path`, reading it whole or memory-mapping it (`{.mmap = true}`), and parses the central directory.
  static ZipReader open(const std::string& path, const ZipReadOptions& options = {}) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    TORCHLET_CHECK(fd >= 0, IOError, "[zip] ", path, ": cannot open: ", std::strerror(errno));
    struct FdCloser {
      int fd;
      ~FdCloser() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    TORCHLET_CHECK(::fstat(fd, &st) == 0, IOError, "[zip] ", path, ": cannot stat: ", std::strerror(errno));
    TORCHLET_CHECK(S_ISREG(st.st_mode), IOError, "[zip] ", path, ": not a regular file");
    const uint64_t size = uint64_t(st.st_size);
    TORCHLET_CHECK(size > 0, CorruptFileError, "[zip] ", path, ": the file is empty (was the save interrupted?)");
    std::shared_ptr<const uint8_t> owner;
    if (options.mmap) {
      auto map = std::make_shared<detail::ZipMapping>();
      map->size = size_t(size);
      map->addr = ::mmap(nullptr, map->size, PROT_READ, MAP_PRIVATE, fd, 0);
      TORCHLET_CHECK(map->addr != MAP_FAILED, IOError, "[zip] ", path, ": cannot mmap ", size,
                     " bytes: ", std::strerror(errno));
      owner = std::shared_ptr<const uint8_t>(map, static_cast<const uint8_t*>(map->addr));
    } else {
      auto buf = std::make_shared<std::vector<uint8_t>>(size_t(size));
      uint64_t done = 0;
      while (done < size) {
        const ssize_t n = ::pread(fd, buf->data() + done, size_t(size - done), off_t(done));
        if (n < 0 && errno == EINTR) continue;
        TORCHLET_CHECK(n >= 0, IOError, "[zip] ", path, ": read failed at offset ", done, ": ",
                       std::strerror(errno));
        TORCHLET_CHECK(n > 0, IOError, "[zip] ", path, ": file shrank while reading (offset ", done, ")");
        done += uint64_t(n);
      }
      owner = std::shared_ptr<const uint8_t>(buf, buf->data());
    }
    return ZipReader(std::move(owner), size, path, options);
  }

  /// Parses an archive held in memory (the bytes are moved in and kept alive by owner()).
  static ZipReader from_buffer(std::vector<uint8_t> bytes, std::string name = "<memory>",
                               const ZipReadOptions& options = {}) {
    auto buf = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
    const uint64_t size = buf->size();
    std::shared_ptr<const uint8_t> owner(buf, buf->data());
    return ZipReader(std::move(owner), size, std::move(name), options);
  }

  /// Parses `size` bytes at `data`, which `owner` keeps alive (e.g. a buffer shared with other readers).
  static ZipReader from_shared(std::shared_ptr<const uint8_t> data, uint64_t size, std::string name = "<memory>",
                               const ZipReadOptions& options = {}) {
    return ZipReader(std::move(data), size, std::move(name), options);
  }

  /// Entries in central-directory (archive) order.
  const std::vector<ZipEntry>& entries() const { return entries_; }
  /// The entry called `name`, or nullptr.
  const ZipEntry* find(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &entries_[it->second];
  }
  /// The entry called `name`; CorruptFileError if there is none (e.g. a storage record the pickle names).
  const ZipEntry& entry(std::string_view name) const {
    const ZipEntry* e = find(name);
    TORCHLET_CHECK(e != nullptr, CorruptFileError, "[zip] ", name_, ": no entry '", name, "' in the archive");
    return *e;
  }

  /// The uncompressed bytes of entry `name` (deflated entries are inflated and their size checked).
  std::vector<uint8_t> read(std::string_view name) const { return read(entry(name)); }
  /// The uncompressed bytes of `e` (an entry of this reader). With check_crc, a CRC mismatch is a
  /// CorruptFileError; an entry whose recorded CRC is 0 (a writer that skipped CRCs) is returned unverified.
  std::vector<uint8_t> read(const ZipEntry& e) const {
    const uint8_t* src = data_ + e.data_offset;
    std::vector<uint8_t> out;
    if (e.method == 0) {
      out.assign(src, src + e.compressed_size);
    } else {  // grows as data arrives: a lying size claim never allocates more than the data really holds
      out.reserve(size_t(std::min<uint64_t>(e.uncompressed_size, uint64_t(1) << 26)));
      inflate_stream(e, [&](const uint8_t* p, size_t n) { out.insert(out.end(), p, p + n); });
    }
    if (check_crc_ && crc_recorded(e)) {
      const uint32_t crc = detail::zip_crc32(out.data(), out.size());
      TORCHLET_CHECK(crc == e.crc32, CorruptFileError, "[zip] ", name_, ": entry '", e.name, "' at offset ",
                     e.local_header_offset, ": CRC-32 mismatch: expected ", hex(e.crc32), ", got ", hex(crc),
                     " (the file is corrupt)");
    }
    return out;
  }

  /// Zero-copy view of a stored entry's bytes; FormatError for a compressed entry (use read()).
  ZipView view(std::string_view name) const {
    const ZipEntry& e = entry(name);
    TORCHLET_CHECK(e.method == 0, FormatError, "[zip] ", name_, ": entry '", e.name,
                   "' is compressed (method ", e.method, "): it cannot be viewed in place, read() it");
    return {data_ + e.data_offset, size_t(e.compressed_size)};
  }

  /// True when entry `name`'s data matches the CRC-32 in the central directory.
  bool verify_crc(std::string_view name) const {
    const ZipEntry& e = entry(name);
    if (e.method == 0) return detail::zip_crc32(data_ + e.data_offset, e.compressed_size) == e.crc32;
    uint32_t crc = 0;
    inflate_stream(e, [&](const uint8_t* p, size_t n) { crc = detail::zip_crc32(p, n, crc); });
    return crc == e.crc32;
  }

  /// False when the entry records CRC-32 0 for non-empty data: the writer skipped CRCs (PyTorch's
  /// `compute_crc32=False`), so the data cannot be verified.
  static bool crc_recorded(const ZipEntry& e) { return e.crc32 != 0 || e.uncompressed_size == 0; }
  /// Names of the entries whose data cannot be CRC-verified (see crc_recorded), in archive order.
  std::vector<std::string> unverified_entries() const {
    std::vector<std::string> out;
    for (const ZipEntry& e : entries_)
      if (!crc_recorded(e)) out.push_back(e.name);
    return out;
  }

  /// PyTorch's archive folder: the first entry's name up to the first '/' (e.g. "archive").
  std::string root() const {
    TORCHLET_CHECK(!entries_.empty(), FormatError, "[zip] ", name_, ": the archive has no entries");
    const std::string& first = entries_.front().name;
    const size_t slash = first.find('/');
    TORCHLET_CHECK(slash != std::string::npos, FormatError, "[zip] ", name_,
                   ": file in archive is not in a subdirectory: ", first);
    return first.substr(0, slash);
  }

  /// Checks that this is a PyTorch checkpoint archive and returns its folder: every entry lies under one
  /// top-level folder that holds `data.pkl`; TorchScript archives (`constants.pkl`, `code/`) are refused.
  /// FormatError names the problem (ArchiveLayout / TorchScriptNotSupported).
  std::string checkpoint_root() const {
    const std::string r = root();
    for (const ZipEntry& e : entries_) {
      TORCHLET_CHECK(e.name.size() > r.size() && e.name.compare(0, r.size() + 1, r + "/") == 0, FormatError,
                     "[zip] ", name_, ": entry '", e.name, "' is outside the archive folder '", r,
                     "/': a checkpoint has exactly one top-level folder (archive layout)");
      const std::string_view rel = std::string_view(e.name).substr(r.size() + 1);
      TORCHLET_CHECK(rel != "constants.pkl" && rel.rfind("code/", 0) != 0, FormatError, "[zip] ", name_,
                     ": this is a TorchScript archive (entry '", e.name, "'), written by torch.jit.save: ",
                     "TorchScript is not supported (it holds code); save a state_dict with torch.save instead");
    }
    TORCHLET_CHECK(find(r + "/data.pkl") != nullptr, FormatError, "[zip] ", name_, ": no '", r,
                   "/data.pkl' in the archive: not a torch.save checkpoint (archive layout)");
    return r;
  }

  /// Entries under `root`/ that a loader which read the storages `keys` did not use: anything but data.pkl,
  /// version, byteorder, .format_version, .storage_alignment, .data/version, .data/serialization_id and
  /// data/<key>. Non-empty for hidden records (e.g. an extra pickle in `data/999`).
  std::vector<std::string> unreferenced_entries(const std::string& root, const std::vector<std::string>& keys) const {
    static constexpr std::string_view known[] = {"data.pkl", "version", "byteorder", ".format_version",
                                                 ".storage_alignment", ".data/version", ".data/serialization_id"};
    std::vector<std::string> out;
    for (const ZipEntry& e : entries_) {
      const bool inside = e.name.size() > root.size() && e.name.compare(0, root.size() + 1, root + "/") == 0;
      const std::string_view rel = inside ? std::string_view(e.name).substr(root.size() + 1) : std::string_view();
      bool used = false;
      for (auto k : known) used = used || rel == k;
      if (!used && rel.rfind("data/", 0) == 0)
        used = std::find(keys.begin(), keys.end(), rel.substr(5)) != keys.end();
      if (!used) out.push_back(e.name);
    }
    return out;
  }

  /// The file's name as used in error messages.
  const std::string& name() const { return name_; }
  /// All the file's bytes.
  const uint8_t* data() const { return data_; }
  /// The file's size in bytes.
  uint64_t size() const { return size_; }
  /// Shared owner of the file bytes (the mapping or buffer): hold it to borrow view() bytes beyond the reader.
  const std::shared_ptr<const uint8_t>& owner() const { return owner_; }

 private:
  ZipReader(std::shared_ptr<const uint8_t> owner, uint64_t size, std::string name, const ZipReadOptions& options)
      : owner_(std::move(owner)), data_(owner_.get()), size_(size), name_(std::move(name)),
        limits_(options.limits), check_crc_(options.check_crc) {
    parse();
  }

  static std::string hex(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
  }

  uint64_t add(uint64_t a, uint64_t b, const char* what, uint64_t at) const {
    uint64_t r = 0;
    TORCHLET_CHECK(!__builtin_add_overflow(a, b, &r), CorruptFileError, "[zip] ", name_, ": ", what,
                   " overflows at offset ", at, " (the file is corrupt)");
    return r;
  }
  // Checks that [off, off + len) lies inside the file.
  void need(uint64_t off, uint64_t len, const char* what) const {
    const uint64_t end = add(off, len, what, off);
    TORCHLET_CHECK(end <= size_, CorruptFileError, "[zip] ", name_, ": ", what, " at offset ", off, " (", len,
                   " bytes) runs past the end of the file (", size_, " bytes): the file is truncated or corrupt");
  }

  void parse() {
    static constexpr std::string_view kLfs = "version https://git-lfs";
    TORCHLET_CHECK(size_ > 0, CorruptFileError, "[zip] ", name_, ": the file is empty (was the save interrupted?)");
    TORCHLET_CHECK(!(size_ >= kLfs.size() && std::memcmp(data_, kLfs.data(), kLfs.size()) == 0), FormatError,
                   "[zip] ", name_,
                   ": this is a Git LFS pointer file, not the archive itself (fetch it with `git lfs pull`)");

    // --- end of central directory: search backwards within the 64 KiB comment window. Its comment must reach
    // the end of the file exactly: bytes appended after the archive are refused.
    constexpr uint64_t kEocd = 22;
    if (size_ < kEocd) not_found();
    uint64_t eocd = UINT64_MAX, loose = UINT64_MAX;
    constexpr uint64_t kWindow = 0xFFFF + (uint64_t(1) << 20);  // the comment window, and more to name appended data
    const uint64_t lowest = size_ - kEocd > kWindow ? size_ - kEocd - kWindow : 0;
    for (uint64_t p = size_ - kEocd + 1; p-- > lowest;) {
      if (detail::zip_u32(data_ + p) != detail::kZipEocdSig) continue;
      const uint64_t end = p + kEocd + detail::zip_u16(data_ + p + 20);
      if (end == size_ && size_ - p - kEocd <= 0xFFFF) {
        eocd = p;
        break;
      }
      if (end < size_ && loose == UINT64_MAX && plausible_eocd(p)) loose = p;
    }
    if (eocd == UINT64_MAX && loose != UINT64_MAX) {
      const uint64_t end = loose + kEocd + detail::zip_u16(data_ + loose + 20);
      TORCHLET_THROW(CorruptFileError, "[zip] ", name_, ": ", size_ - end, " trailing bytes after the end of the ",
                     "archive at offset ", end, " (data appended to the checkpoint: refused)");
    }
    if (eocd == UINT64_MAX) not_found();
    const uint8_t* e = data_ + eocd;
    TORCHLET_CHECK(detail::zip_u16(e + 4) == 0 && detail::zip_u16(e + 6) == 0 &&
                       detail::zip_u16(e + 8) == detail::zip_u16(e + 10),
                   FormatError, "[zip] ", name_, ": multi-disk (spanned) archives are not supported (offset ", eocd,
                   ")");
    const uint64_t count32 = detail::zip_u16(e + 10), size32 = detail::zip_u32(e + 12), off32 = detail::zip_u32(e + 16);
    uint64_t count = count32, cd_size = size32, cd_off = off32;
    uint64_t cd_limit = eocd;  // the central directory ends right before this offset

    // --- zip64 locator (20 bytes right before the EOCD) and zip64 EOCD record
    if (eocd >= 20 && detail::zip_u32(data_ + eocd - 20) == detail::kZip64LocatorSig) {
      const uint64_t loc_at = eocd - 20;
      const uint8_t* loc = data_ + loc_at;
      const uint64_t rec = detail::zip_u64(loc + 8);
      TORCHLET_CHECK(detail::zip_u32(loc + 4) == 0 && detail::zip_u32(loc + 16) <= 1, FormatError, "[zip] ", name_,
                     ": multi-disk (spanned) zip64 archives are not supported (offset ", loc_at, ")");
      TORCHLET_CHECK(rec <= loc_at && loc_at - rec >= 56, CorruptFileError, "[zip] ", name_,
                     ": zip64 end of central directory offset ", rec, " (from the locator at offset ", loc_at,
                     ") is out of bounds: invalid zip64 records, the file is corrupt");
      if (detail::zip_u32(data_ + rec) != detail::kZip64EocdSig && loc_at >= 56 && loc_at - 56 > rec &&
          detail::zip_u32(data_ + loc_at - 56) == detail::kZip64EocdSig &&
          detail::zip_u32(data_ + (loc_at - 56 - rec)) == detail::kZipLocalSig)
        prepended(loc_at - 56 - rec, rec);
      const uint8_t* z = data_ + rec;
      TORCHLET_CHECK(detail::zip_u32(z) == detail::kZip64EocdSig, CorruptFileError, "[zip] ", name_,
                     ": no zip64 end of central directory record at offset ", rec, ": the file is corrupt");
      const uint64_t rec_size = detail::zip_u64(z + 4);
      TORCHLET_CHECK(rec_size >= 44 && rec_size == loc_at - rec - 12, CorruptFileError, "[zip] ", name_,
                     ": zip64 end of central directory record at offset ", rec, " declares ", rec_size,
                     " bytes but its locator is at offset ", loc_at, ": invalid zip64 records, the file is corrupt");
      TORCHLET_CHECK(detail::zip_u32(z + 16) == 0 && detail::zip_u32(z + 20) == 0, FormatError, "[zip] ", name_,
                     ": multi-disk (spanned) archives are not supported (offset ", rec, ")");
      count = detail::zip_u64(z + 32);
      cd_size = detail::zip_u64(z + 40);
      cd_off = detail::zip_u64(z + 48);
      TORCHLET_CHECK(detail::zip_u64(z + 24) == count, FormatError, "[zip] ", name_,
                     ": multi-disk (spanned) archives are not supported (offset ", rec, ")");
      TORCHLET_CHECK((count32 == 0xFFFF || count32 == count) && (size32 == 0xFFFFFFFF || size32 == cd_size) &&
                         (off32 == 0xFFFFFFFF || off32 == cd_off),
                     CorruptFileError, "[zip] ", name_, ": the zip64 end record at offset ", rec, " (", count,
                     " entries, central directory of ", cd_size, " bytes at offset ", cd_off,
                     ") disagrees with the end record at offset ", eocd, " (", count32, " entries, ", size32,
                     " bytes at offset ", off32, "): invalid zip64 records, the file is corrupt");
      cd_limit = rec;
    }
    TORCHLET_CHECK(count <= limits_.max_entries, LimitError, "[zip] ", name_, ": the archive lists ", count,
                   " entries, more than the limit of ", limits_.max_entries, " (offset ", eocd, ")");
    const uint64_t cd_end = add(cd_off, cd_size, "central directory end", eocd);
    TORCHLET_CHECK(cd_end <= cd_limit, CorruptFileError, "[zip] ", name_, ": central directory [", cd_off, ", ",
                   cd_end, ") runs past its end record at offset ", cd_limit, ": the file is truncated or corrupt");
    if (cd_end < cd_limit) {
      const uint64_t gap = cd_limit - cd_end;
      if (cd_size >= 4 && detail::zip_u32(data_ + cd_off + gap) == detail::kZipCentralSig &&
          detail::zip_u32(data_ + gap) == detail::kZipLocalSig)
        prepended(gap, cd_off);
      TORCHLET_THROW(CorruptFileError, "[zip] ", name_, ": ", gap, " unaccounted bytes between the central directory [",
                     cd_off, ", ", cd_end, ") and its end record at offset ", cd_limit, ": the file is corrupt");
    }
    TORCHLET_CHECK(count <= cd_size / 46, CorruptFileError, "[zip] ", name_, ": the archive claims ", count,
                   " entries but its central directory at offset ", cd_off, " has only ", cd_size,
                   " bytes: the file is corrupt");

    // --- central directory
    entries_.reserve(size_t(count));
    index_.reserve(size_t(count));
    uint64_t p = cd_off, total = 0;
    for (uint64_t i = 0; i < count; ++i) {
      TORCHLET_CHECK(p + 46 <= cd_end, CorruptFileError, "[zip] ", name_, ": central directory entry ", i,
                     " at offset ", p, " runs past the central directory: the file is corrupt");
      const uint8_t* c = data_ + p;
      TORCHLET_CHECK(detail::zip_u32(c) == detail::kZipCentralSig, CorruptFileError, "[zip] ", name_,
                     ": bad central directory signature for entry ", i, " at offset ", p, ": the file is corrupt");
      ZipEntry en;
      en.flags = detail::zip_u16(c + 8);
      en.method = detail::zip_u16(c + 10);
      en.crc32 = detail::zip_u32(c + 16);
      en.compressed_size = detail::zip_u32(c + 20);
      en.uncompressed_size = detail::zip_u32(c + 24);
      const uint64_t name_len = detail::zip_u16(c + 28), extra_len = detail::zip_u16(c + 30),
                     comment_len = detail::zip_u16(c + 32);
      TORCHLET_CHECK(detail::zip_u16(c + 34) == 0 || detail::zip_u16(c + 34) == 0xFFFF, FormatError, "[zip] ",
                     name_, ": entry ", i, " at offset ", p, " is on another disk: multi-disk archives are not supported");
      en.local_header_offset = detail::zip_u32(c + 42);
      const uint64_t next = p + 46 + name_len + extra_len + comment_len;
      TORCHLET_CHECK(next <= cd_end, CorruptFileError, "[zip] ", name_, ": central directory entry ", i,
                     " at offset ", p, " runs past the central directory: the file is corrupt");
      TORCHLET_CHECK(name_len <= limits_.max_name_length, LimitError, "[zip] ", name_, ": entry ", i, " at offset ",
                     p, " has a name of ", name_len, " bytes, more than the limit of ", limits_.max_name_length);
      en.name.assign(reinterpret_cast<const char*>(c + 46), size_t(name_len));
      check_name(en.name, i, p);
      parse_zip64_extra(en, c + 46 + name_len, extra_len, p);
      check_entry(en, p);
      total = add(total, en.uncompressed_size, "total size", p);
      TORCHLET_CHECK(total <= limits_.max_total_size, LimitError, "[zip] ", name_, ": entries total more than ",
                     limits_.max_total_size, " bytes (limit), at entry '", en.name, "' (offset ", p, ")");
      const bool fresh = index_.emplace(en.name, entries_.size()).second;
      TORCHLET_CHECK(fresh, CorruptFileError, "[zip] ", name_, ": entry '", en.name, "' appears twice (offset ", p,
                     "): duplicate entry names make the archive ambiguous");
      entries_.push_back(std::move(en));
      p = next;
    }
    TORCHLET_CHECK(p == cd_end, CorruptFileError, "[zip] ", name_, ": the central directory holds ", cd_end - p,
                   " bytes after its last (", count, "th) entry at offset ", p,
                   ": more entries than the end record claims, the file is corrupt");
    check_layout(cd_off);
  }

  // Throws the error for a file without an end of central directory record, naming what the file looks like.
  [[noreturn]] void not_found() const {
    auto starts = [&](std::string_view magic, uint64_t at = 0) {
      return size_ >= at + magic.size() && std::memcmp(data_ + at, magic.data(), magic.size()) == 0;
    };
    const char* what = nullptr;
    if (starts("\x89PNG\r\n\x1a\n")) what = "a PNG image";
    else if (starts("\xff\xd8\xff")) what = "a JPEG image";
    else if (starts("\x1f\x8b")) what = "a gzip file";
    else if (starts("ustar", 257)) what = "a tar archive (the pre-1.6 tar checkpoint format is not supported)";
    else if (starts("\x89HDF")) what = "an HDF5 file (Keras?)";
    else if (starts("\x93NUMPY")) what = "a NumPy .npy file";
    else if (starts("\x7f" "ELF")) what = "an executable";
    else if (starts("<!DOCTYPE") || starts("<html") || starts("<HTML")) what = "an HTML page (a download error page?)";
    else if (starts("\x80") && size_ >= 2 && data_[1] >= 2 && data_[1] <= 5)
      what = "a bare pickle stream (a pre-1.6 legacy torch.save file or a plain pickle), not a zip archive";
    else if (size_ >= 10 && data_[8] == '{' && detail::zip_u64(data_) > 0 && detail::zip_u64(data_) <= size_ - 8)
      what = "a safetensors file";
    if (what)
      TORCHLET_THROW(FormatError, "[zip] ", name_, ": not a PyTorch checkpoint: this looks like ", what);
    const bool zipish = starts(std::string_view("PK\x03\x04", std::min<uint64_t>(size_, 4)));
    if (zipish)
      TORCHLET_THROW(CorruptFileError, "[zip] ", name_, ": end of central directory not found: the file is ",
                     "truncated or not a zip archive (was the save interrupted?)");
    TORCHLET_THROW(FormatError, "[zip] ", name_, ": end of central directory not found: the file is truncated ",
                   "or not a zip archive (was the save interrupted?)");
  }

  // True when the EOCD candidate at p points at a central directory that starts with a central header.
  bool plausible_eocd(uint64_t p) const {
    const uint64_t off = detail::zip_u32(data_ + p + 16);
    return off + 4 <= p && detail::zip_u32(data_ + off) == detail::kZipCentralSig;
  }

  [[noreturn]] void prepended(uint64_t n, uint64_t at) const {
    TORCHLET_THROW(UnsafeFileError, "[zip] ", name_, ": ", n, " bytes of other data precede the archive (its records ",
                   "are shifted by ", n, " bytes, e.g. the central directory claimed at offset ", at,
                   "): the archive does not start at offset 0 (a polyglot file?); refused");
  }

  // Entry names that could escape a folder, hide characters or confuse other tools are refused.
  void check_name(const std::string& n, uint64_t i, uint64_t at) const {
    auto bad = [&](const char* why) {
      std::string shown;
      for (char ch : n.substr(0, 80)) {
        const auto u = static_cast<unsigned char>(ch);
        if (u < 0x20 || u >= 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", u);
          shown += buf;
        } else {
          shown += ch;
        }
      }
      TORCHLET_THROW(UnsafeFileError, "[zip] ", name_, ": entry ", i, " at offset ", at, " has an invalid name '",
                     shown, n.size() > 80 ? "...'" : "'", ": ", why);
    };
    if (n.empty()) bad("empty name");
    if (n[0] == '/') bad("absolute path");
    if (n.size() >= 2 && n[1] == ':') bad("drive letter");
    for (char ch : n) {
      const auto u = static_cast<unsigned char>(ch);
      if (u == 0) bad("embedded NUL byte");
      if (u < 0x20 || u == 0x7f) bad("control character");
      if (ch == '\\') bad("backslash in the path");
    }
    for (size_t s = 0; s <= n.size();) {
      size_t e = n.find('/', s);
      if (e == std::string::npos) e = n.size();
      const std::string_view comp(n.data() + s, e - s);
      if (comp == "..") bad("'..' path component");
      if (comp == ".") bad("'.' path component");
      if (comp.empty() && e != n.size()) bad("empty path component");
      s = e + 1;
    }
    if (!is_utf8(n)) bad("not valid UTF-8");
  }

  // Entries must tile the bytes before the central directory: first one at offset 0, no overlaps, no gaps
  // except data descriptors.
  void check_layout(uint64_t cd_off) const {
    std::vector<const ZipEntry*> order;
    order.reserve(entries_.size());
    for (const ZipEntry& en : entries_) order.push_back(&en);
    std::sort(order.begin(), order.end(),
              [](const ZipEntry* a, const ZipEntry* b) { return a->local_header_offset < b->local_header_offset; });
    uint64_t pos = 0;
    const ZipEntry* prev = nullptr;
    for (size_t k = 0; k <= order.size(); ++k) {
      const uint64_t start = k < order.size() ? order[k]->local_header_offset : cd_off;
      if (start < pos) {
        if (k < order.size())
          TORCHLET_THROW(CorruptFileError, "[zip] ", name_, ": entries '", prev->name, "' (offset ",
                         prev->local_header_offset, ") and '", order[k]->name, "' (offset ", start,
                         ") overlap: overlapping entries (a zip bomb or a corrupt file)");
        TORCHLET_THROW(CorruptFileError, "[zip] ", name_, ": entry '", prev->name, "' (offset ",
                       prev->local_header_offset, ") overlaps the central directory at offset ", cd_off,
                       ": overlapping entries (a zip bomb or a corrupt file)");
      }
      uint64_t gap = start - pos;
      if (prev == nullptr && gap > 0) {
        if (detail::zip_u32(data_) == detail::kZipLocalSig || k == order.size())
          TORCHLET_THROW(CorruptFileError, "[zip] ", name_, ": ", gap, " bytes at offset 0 belong to no entry",
                         ": the file is corrupt");
        prepended(gap, start);
      }
      if (prev != nullptr && gap > 0) {
        TORCHLET_CHECK((prev->flags & 8) != 0 && check_descriptor(*prev, pos, gap), CorruptFileError, "[zip] ",
                       name_, ": ", gap, " unaccounted bytes at offset ", pos, " after entry '", prev->name,
                       "': hidden data between entries, the file is corrupt");
      }
      if (k == order.size()) break;
      prev = order[k];
      pos = prev->data_offset + prev->compressed_size;
    }
  }

  // True when the `gap` bytes at `at` are a data descriptor agreeing with the central directory.
  bool check_descriptor(const ZipEntry& en, uint64_t at, uint64_t gap) const {
    const uint8_t* d = data_ + at;
    uint64_t q = 0;
    if (gap == 16 || gap == 24) {
      if (detail::zip_u32(d) != 0x08074b50) return false;
      q = 4;
    } else if (gap != 12 && gap != 20) {
      return false;
    }
    const bool wide = gap - q == 20;
    const uint64_t c = wide ? detail::zip_u64(d + q + 4) : detail::zip_u32(d + q + 4);
    const uint64_t u = wide ? detail::zip_u64(d + q + 12) : detail::zip_u32(d + q + 8);
    TORCHLET_CHECK(detail::zip_u32(d + q) == en.crc32 && c == en.compressed_size && u == en.uncompressed_size,
                   CorruptFileError, "[zip] ", name_, ": entry '", en.name, "': its data descriptor at offset ", at,
                   " disagrees with the central directory (CRC or sizes): header mismatch, the file is corrupt");
    return true;
  }

  // Replaces 0xFFFFFFFF sizes/offset with the values of the zip64 extra field (id 0x0001), in the spec's order.
  void parse_zip64_extra(ZipEntry& en, const uint8_t* x, uint64_t len, uint64_t at) const {
    const bool need_u = en.uncompressed_size == 0xFFFFFFFF, need_c = en.compressed_size == 0xFFFFFFFF,
               need_o = en.local_header_offset == 0xFFFFFFFF;
    bool found = false;
    for (uint64_t q = 0; q + 4 <= len;) {
      const uint16_t id = detail::zip_u16(x + q), n = detail::zip_u16(x + q + 2);
      TORCHLET_CHECK(q + 4 + n <= len, CorruptFileError, "[zip] ", name_, ": entry '", en.name,
                     "' has an extra field running past its end (offset ", at, "): the file is corrupt");
      if (id == detail::kZip64ExtraId) {
        TORCHLET_CHECK(!found, CorruptFileError, "[zip] ", name_, ": entry '", en.name,
                       "' has two zip64 extra fields (offset ", at, "): invalid zip64 records, the file is corrupt");
        found = true;
        TORCHLET_CHECK(n % 4 == 0 && n <= 28, CorruptFileError, "[zip] ", name_, ": entry '", en.name,
                       "' has a zip64 extra field of ", n, " bytes (offset ", at,
                       "): invalid zip64 records, the file is corrupt");
        const uint8_t* f = x + q + 4;
        uint64_t k = 0;
        auto take = [&](uint64_t& v) {
          TORCHLET_CHECK(k + 8 <= n, CorruptFileError, "[zip] ", name_, ": entry '", en.name,
                         "' has a zip64 extra field too short for its sizes (offset ", at,
                         "): invalid zip64 records, the file is corrupt");
          v = detail::zip_u64(f + k);
          k += 8;
        };
        if (need_u) take(en.uncompressed_size);
        if (need_c) take(en.compressed_size);
        if (need_o) take(en.local_header_offset);
      }
      q += 4 + n;
    }
    TORCHLET_CHECK(found || !(need_u || need_c || need_o), CorruptFileError, "[zip] ", name_, ": entry '", en.name,
                   "' needs a zip64 extra field but has none (offset ", at,
                   "): invalid zip64 records, the file is corrupt");
  }

  // Validates an entry and resolves its data offset from the local header, which must agree with the central one.
  void check_entry(ZipEntry& en, uint64_t at) {
    TORCHLET_CHECK((en.flags & 1) == 0, FormatError, "[zip] ", name_, ": entry '", en.name,
                   "' is encrypted (offset ", at, "): not supported");
    TORCHLET_CHECK((en.flags & ~uint16_t(0x080E)) == 0, FormatError, "[zip] ", name_, ": entry '", en.name,
                   "' has unsupported general-purpose flags ", hex(en.flags), " (offset ", at,
                   "; only bits 1-3 and 11 are read): refused");
    TORCHLET_CHECK(en.method == 0 || en.method == 8, FormatError, "[zip] ", name_, ": entry '", en.name,
                   "' uses compression method ", en.method, " (offset ", at,
                   "); only 0 (stored) and 8 (deflated) are supported");
    TORCHLET_CHECK(en.method != 0 || en.compressed_size == en.uncompressed_size, CorruptFileError, "[zip] ", name_,
                   ": stored entry '", en.name, "' has compressed size ", en.compressed_size,
                   " != uncompressed size ", en.uncompressed_size, " (offset ", at, "): the file is corrupt");
    TORCHLET_CHECK(en.uncompressed_size <= limits_.max_entry_size, LimitError, "[zip] ", name_, ": entry '",
                   en.name, "' is ", en.uncompressed_size, " bytes, more than the limit of ",
                   limits_.max_entry_size, " (offset ", at, ")");
    // deflate never expands more than ~1032:1; a larger claim is a bomb or a corrupt size
    TORCHLET_CHECK(en.method != 8 || en.uncompressed_size / 1032 <= en.compressed_size + 1, LimitError, "[zip] ",
                   name_, ": deflated entry '", en.name, "' claims ", en.uncompressed_size, " bytes from ",
                   en.compressed_size, " compressed bytes (offset ", at,
                   "): more than deflate's 1032:1 ratio, a zip bomb or a corrupt size");
    const uint64_t lh = en.local_header_offset;
    TORCHLET_CHECK(lh < size_ && size_ - lh >= 30, CorruptFileError, "[zip] ", name_, ": entry '", en.name,
                   "': local header offset ", lh, " is past the end of the file (", size_,
                   " bytes): the file is truncated or corrupt");
    const uint8_t* l = data_ + lh;
    TORCHLET_CHECK(detail::zip_u32(l) == detail::kZipLocalSig, CorruptFileError, "[zip] ", name_, ": entry '",
                   en.name, "': no local file header at offset ", lh, ": the file is corrupt");
    const uint64_t lname = detail::zip_u16(l + 26), lextra = detail::zip_u16(l + 28);
    need(lh, 30 + lname + lextra, "local header");
    TORCHLET_CHECK(lname == en.name.size() && std::memcmp(l + 30, en.name.data(), size_t(lname)) == 0,
                   CorruptFileError, "[zip] ", name_, ": entry '", en.name, "': the local header at offset ", lh,
                   " names a different file: header mismatch, the file is corrupt");
    check_local(en, l, lh);
    en.data_offset = lh + 30 + lname + lextra;
    const uint64_t end = add(en.data_offset, en.compressed_size, "entry data end", lh);
    TORCHLET_CHECK(end <= size_, CorruptFileError, "[zip] ", name_, ": entry '", en.name, "': data at offset ",
                   en.data_offset, " (", en.compressed_size, " bytes) runs past the end of the file (", size_,
                   " bytes): the file is truncated or corrupt");
  }

  // The local header's flags, method, CRC and sizes must agree with the central directory; with bit 3 (data
  // descriptor, PyTorch's streamed layout) the local CRC and sizes may be zero.
  void check_local(const ZipEntry& en, const uint8_t* l, uint64_t lh) const {
    const uint16_t lflags = detail::zip_u16(l + 6), lmethod = detail::zip_u16(l + 8);
    auto mismatch = [&](const char* what, uint64_t local, uint64_t central) {
      TORCHLET_THROW(CorruptFileError, "[zip] ", name_, ": entry '", en.name, "': the local header at offset ", lh,
                     " has ", what, " ", local, " but the central directory has ", central,
                     ": header mismatch, the file is corrupt");
    };
    TORCHLET_CHECK((lflags & ~uint16_t(0x080E)) == 0, FormatError, "[zip] ", name_, ": entry '", en.name,
                   "': the local header at offset ", lh, " has unsupported general-purpose flags ", hex(lflags),
                   " (encrypted or patched data): refused");
    if ((lflags & 0x0809) != (en.flags & 0x0809)) mismatch("flags", lflags, en.flags);
    if (lmethod != en.method) mismatch("compression method", lmethod, en.method);
    const uint32_t lcrc = detail::zip_u32(l + 14);
    uint64_t lc = detail::zip_u32(l + 18), lu = detail::zip_u32(l + 22);
    if (lc == 0xFFFFFFFF || lu == 0xFFFFFFFF) {  // zip64 local sizes: both, uncompressed first
      const uint64_t lname = detail::zip_u16(l + 26), lextra = detail::zip_u16(l + 28);
      const uint8_t* x = l + 30 + lname;
      bool found = false;
      for (uint64_t q = 0; q + 4 <= lextra;) {
        const uint16_t id = detail::zip_u16(x + q), n = detail::zip_u16(x + q + 2);
        TORCHLET_CHECK(q + 4 + n <= lextra, CorruptFileError, "[zip] ", name_, ": entry '", en.name,
                       "': the local header at offset ", lh, " has an extra field running past its end");
        if (id == detail::kZip64ExtraId && !found) {
          found = true;
          uint64_t k = 0;
          for (uint64_t* v : {&lu, &lc}) {
            if (*v != 0xFFFFFFFF) continue;
            TORCHLET_CHECK(k + 8 <= n, CorruptFileError, "[zip] ", name_, ": entry '", en.name,
                           "': the local zip64 extra field at offset ", lh,
                           " is too short: invalid zip64 records, the file is corrupt");
            *v = detail::zip_u64(x + q + 4 + k);
            k += 8;
          }
        }
        q += 4 + n;
      }
      if (!found && (en.flags & 8) == 0)
        TORCHLET_THROW(CorruptFileError, "[zip] ", name_, ": entry '", en.name, "': the local header at offset ", lh,
                       " has 0xFFFFFFFF sizes but no zip64 extra field: invalid zip64 records, the file is corrupt");
    }
    if (en.flags & 8) {  // streamed: zero (or the real values) in the local header
      if (lcrc != 0 && lcrc != en.crc32) mismatch("CRC-32", lcrc, en.crc32);
      if (lc != 0 && lc != 0xFFFFFFFF && lc != en.compressed_size) mismatch("compressed size", lc, en.compressed_size);
      if (lu != 0 && lu != 0xFFFFFFFF && lu != en.uncompressed_size)
        mismatch("uncompressed size", lu, en.uncompressed_size);
      return;
    }
    if (lcrc != en.crc32) mismatch("CRC-32", lcrc, en.crc32);
    if (lc != en.compressed_size) mismatch("compressed size", lc, en.compressed_size);
    if (lu != en.uncompressed_size) mismatch("uncompressed size", lu, en.uncompressed_size);
  }

  // Raw-inflates entry `e`, handing the output to `sink(ptr, n)` in chunks; the output must be exactly
  // e.uncompressed_size bytes (checked as it goes, so a lying size fails as soon as it is exceeded).
  template <class Sink>
  void inflate_stream(const ZipEntry& e, Sink&& sink) const {
    z_stream zs{};
    TORCHLET_CHECK(inflateInit2(&zs, -MAX_WBITS) == Z_OK, IOError, "[zip] ", name_,
                   ": zlib inflateInit2 failed for entry '", e.name, "'");
    struct End {
      z_stream* z;
      ~End() { inflateEnd(z); }
    } end{&zs};
    const uint8_t* src = data_ + e.data_offset;
    uint64_t in_left = e.compressed_size, produced = 0;
    constexpr uint64_t kChunk = uint64_t(1) << 30;
    std::vector<uint8_t> buf(size_t(1) << 16);
    zs.next_in = const_cast<Bytef*>(src);
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      if (zs.avail_in == 0 && in_left > 0) {
        zs.avail_in = uInt(in_left > kChunk ? kChunk : in_left);
        in_left -= zs.avail_in;
      }
      zs.next_out = buf.data();
      zs.avail_out = uInt(buf.size());
      const uInt before_in = zs.avail_in;
      rc = ::inflate(&zs, Z_NO_FLUSH);
      TORCHLET_CHECK(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR, CorruptFileError, "[zip] ", name_,
                     ": entry '", e.name, "' (offset ", e.local_header_offset, ") cannot be inflated: ",
                     (zs.msg ? zs.msg : "corrupt deflate data"));
      const size_t n = buf.size() - zs.avail_out;
      TORCHLET_CHECK(produced + n <= e.uncompressed_size, CorruptFileError, "[zip] ", name_, ": entry '", e.name,
                     "' inflates to more than its declared ", e.uncompressed_size, " bytes (offset ",
                     e.local_header_offset, "): the file is corrupt");
      produced += n;
      if (n > 0) sink(buf.data(), n);
      TORCHLET_CHECK(rc == Z_STREAM_END || zs.avail_in != before_in || n > 0, CorruptFileError, "[zip] ", name_,
                     ": entry '", e.name, "' (offset ", e.local_header_offset,
                     ") cannot be inflated: the deflate data ends early (truncated or corrupt)");
    }
    TORCHLET_CHECK(produced == e.uncompressed_size, CorruptFileError, "[zip] ", name_, ": entry '", e.name,
                   "' inflates to ", produced, " bytes, but its declared size is ", e.uncompressed_size,
                   " (offset ", e.local_header_offset, "): the file is corrupt");
  }

  std::shared_ptr<const uint8_t> owner_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  std::string name_;
  ZipLimits limits_;
  bool check_crc_ = false;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
};

/// How ZipWriter lays out entries.
struct ZipWriteOptions {
  /// Each entry's data starts at a multiple of this (PyTorch: 64); 1 disables padding. At most 4096.
  uint64_t alignment = 64;
  /// Write the zip64 end records even for small archives, as PyTorch does.
  bool always_zip64_eocd = true;
  /// Give every entry zip64 sizes/offset extra fields, even when small (for testing the zip64 paths).
  bool force_zip64 = false;
};

/// Writes a PyTorch-style zip archive (stored entries, 64-byte-aligned data) to a std::FILE* or to memory.
class ZipWriter {
 public:
  /// Writes to `file` (not closed by the writer); `name` is used in error messages.
  explicit ZipWriter(std::FILE* file, std::string name = "<file>", const ZipWriteOptions& options = {})
      : file_(file), name_(std::move(name)), opt_(options) {
    TORCHLET_CHECK(file_ != nullptr, IOError, "[zip] ", name_, ": no file to write to");
    check_options();
  }
  /// Appends to `out` (which must outlive the writer).
  explicit ZipWriter(std::vector<uint8_t>& out, const ZipWriteOptions& options = {})
      : buffer_(&out), name_("<memory>"), opt_(options), pos_(out.size()) {
    check_options();
  }

  /// Adds a stored entry called `name` holding `size` bytes at `data`, aligned and with its CRC-32.
  void add(std::string_view name, const void* data, uint64_t size) {
    TORCHLET_CHECK(!finished_, IOError, "[zip] ", name_, ": add('", name, "') after finish()");
    TORCHLET_CHECK(!name.empty() && name.size() <= 0xFFFF, IOError, "[zip] ", name_, ": bad entry name length ",
                   name.size());
    for (const Record& r : records_)
      TORCHLET_CHECK(r.name != name, IOError, "[zip] ", name_, ": entry '", name, "' written twice");
    const auto* bytes = static_cast<const uint8_t*>(data);
    Record r{std::string(name), detail::zip_crc32(bytes, size), size, pos_};
    const bool z64 = opt_.force_zip64 || size >= 0xFFFFFFFF;
    const uint64_t z64_len = z64 ? 20 : 0;
    const uint64_t start = pos_ + 30 + name.size() + z64_len + 4;
    const uint64_t pad = (opt_.alignment - start % opt_.alignment) % opt_.alignment;
    std::vector<uint8_t> h;
    h.reserve(size_t(30 + name.size() + z64_len + 4 + pad));
    put32(h, detail::kZipLocalSig);
    put16(h, z64 ? 45 : 20);  // version needed
    put16(h, 0x0800);         // UTF-8 names
    put16(h, 0);              // stored
    put32(h, 0);              // time, date
    put32(h, r.crc);
    put32(h, z64 ? 0xFFFFFFFF : uint32_t(size));
    put32(h, z64 ? 0xFFFFFFFF : uint32_t(size));
    put16(h, uint16_t(name.size()));
    put16(h, uint16_t(z64_len + 4 + pad));
    h.insert(h.end(), name.begin(), name.end());
    if (z64) {
      put16(h, detail::kZip64ExtraId);
      put16(h, 16);
      put64(h, size);
      put64(h, size);
    }
    put16(h, detail::kZipPaddingId);
    put16(h, uint16_t(pad));
    h.insert(h.end(), size_t(pad), uint8_t('Z'));
    write(h.data(), h.size());
    write(bytes, size);
    records_.push_back(std::move(r));
  }
  /// Adds a stored entry holding `bytes`.
  void add(std::string_view name, std::span<const uint8_t> bytes) { add(name, bytes.data(), bytes.size()); }
  /// Adds a stored entry holding the characters of `text`.
  void add(std::string_view name, std::string_view text) { add(name, text.data(), text.size()); }

  /// Writes the central directory and end records (zip64 ones when needed) and flushes a FILE*.
  void finish() {
    TORCHLET_CHECK(!finished_, IOError, "[zip] ", name_, ": finish() called twice");
    const uint64_t cd_off = pos_;
    std::vector<uint8_t> h;
    for (const Record& r : records_) {
      h.clear();
      const bool big_size = opt_.force_zip64 || r.size >= 0xFFFFFFFF;
      const bool big_off = opt_.force_zip64 || r.offset >= 0xFFFFFFFF;
      const uint16_t z64_len = uint16_t((big_size || big_off) ? 4 + (big_size ? 16 : 0) + (big_off ? 8 : 0) : 0);
      put32(h, detail::kZipCentralSig);
      put16(h, (3 << 8) | 45);  // made by: unix, zip 4.5
      put16(h, z64_len ? 45 : 20);
      put16(h, 0x0800);
      put16(h, 0);
      put32(h, 0);
      put32(h, r.crc);
      put32(h, big_size ? 0xFFFFFFFF : uint32_t(r.size));
      put32(h, big_size ? 0xFFFFFFFF : uint32_t(r.size));
      put16(h, uint16_t(r.name.size()));
      put16(h, z64_len);
      put16(h, 0);  // comment
      put16(h, 0);  // disk
      put16(h, 0);  // internal attributes
      put32(h, 0644u << 16);  // external attributes: -rw-r--r--
      put32(h, big_off ? 0xFFFFFFFF : uint32_t(r.offset));
      h.insert(h.end(), r.name.begin(), r.name.end());
      if (z64_len) {
        put16(h, detail::kZip64ExtraId);
        put16(h, uint16_t(z64_len - 4));
        if (big_size) {
          put64(h, r.size);
          put64(h, r.size);
        }
        if (big_off) put64(h, r.offset);
      }
      write(h.data(), h.size());
    }
    const uint64_t cd_size = pos_ - cd_off, n = records_.size();
    const bool z64 = opt_.always_zip64_eocd || opt_.force_zip64 || n >= 0xFFFF || cd_off >= 0xFFFFFFFF ||
                     cd_size >= 0xFFFFFFFF;
    h.clear();
    if (z64) {
      const uint64_t rec = pos_;
      put32(h, detail::kZip64EocdSig);
      put64(h, 44);
      put16(h, (3 << 8) | 45);
      put16(h, 45);
      put32(h, 0);
      put32(h, 0);
      put64(h, n);
      put64(h, n);
      put64(h, cd_size);
      put64(h, cd_off);
      put32(h, detail::kZip64LocatorSig);
      put32(h, 0);
      put64(h, rec);
      put32(h, 1);
    }
    put32(h, detail::kZipEocdSig);
    put16(h, 0);
    put16(h, 0);
    put16(h, uint16_t(n >= 0xFFFF ? 0xFFFF : n));
    put16(h, uint16_t(n >= 0xFFFF ? 0xFFFF : n));
    put32(h, cd_size >= 0xFFFFFFFF ? 0xFFFFFFFF : uint32_t(cd_size));
    put32(h, cd_off >= 0xFFFFFFFF ? 0xFFFFFFFF : uint32_t(cd_off));
    put16(h, 0);
    write(h.data(), h.size());
    if (file_) TORCHLET_CHECK(std::fflush(file_) == 0, IOError, "[zip] ", name_, ": flush failed: ",
                              std::strerror(errno));
    finished_ = true;
  }

  /// Bytes written so far (the offset of the next byte).
  uint64_t bytes_written() const { return pos_; }
  /// Whether finish() has run.
  bool finished() const { return finished_; }

 private:
  struct Record {
    std::string name;
    uint32_t crc;
    uint64_t size;
    uint64_t offset;
  };

  void check_options() const {
    TORCHLET_CHECK(opt_.alignment >= 1 && opt_.alignment <= 4096, IOError, "[zip] ", name_,
                   ": alignment must be in [1, 4096], got ", opt_.alignment);
  }
  static void put16(std::vector<uint8_t>& v, uint16_t x) {
    v.push_back(uint8_t(x));
    v.push_back(uint8_t(x >> 8));
  }
  static void put32(std::vector<uint8_t>& v, uint32_t x) {
    put16(v, uint16_t(x));
    put16(v, uint16_t(x >> 16));
  }
  static void put64(std::vector<uint8_t>& v, uint64_t x) {
    put32(v, uint32_t(x));
    put32(v, uint32_t(x >> 32));
  }
  void write(const uint8_t* p, uint64_t n) {
    if (n == 0) return;
    if (buffer_) {
      buffer_->insert(buffer_->end(), p, p + n);
    } else {
      errno = 0;
      const size_t w = std::fwrite(p, 1, size_t(n), file_);
      TORCHLET_CHECK(w == n, IOError, "[zip] ", name_, ": write of ", n, " bytes at offset ", pos_, " failed: ",
                     errno ? std::strerror(errno) : "short write");
    }
    pos_ += n;
  }

  std::FILE* file_ = nullptr;
  std::vector<uint8_t>* buffer_ = nullptr;
  std::string name_;
  ZipWriteOptions opt_;
  uint64_t pos_ = 0;
  bool finished_ = false;
  std::vector<Record> records_;
};

}  // namespace torchlet::io
