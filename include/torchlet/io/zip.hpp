#pragma once
/// \file The zip container of PyTorch checkpoints: a bounds-checked reader (file, mmap or memory) and a writer
/// of PyTorch-style archives (stored entries, data aligned to 64 bytes with an "FB" padding extra field, zip64).
///
/// Depends only on the standard library, POSIX (open/mmap) and zlib. Every offset and size read from the file
/// is checked against the file size with overflow-checked arithmetic before use; errors are IOError with one
/// line naming the file, the entry and the offset: `[zip] model.pth: entry 'archive/data/0' ...`.
#include <zlib.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

namespace torchlet::io {

/// Limits applied to archives read from untrusted files; exceeding one is an IOError, never an allocation.
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
  /// Check each entry's CRC-32 in read() (PyTorch itself never does; off by default).
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
    TORCHLET_CHECK(size > 0, IOError, "[zip] ", path, ": the file is empty (was the save interrupted?)");
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
  /// The entry called `name`; IOError if there is none.
  const ZipEntry& entry(std::string_view name) const {
    const ZipEntry* e = find(name);
    TORCHLET_CHECK(e != nullptr, IOError, "[zip] ", name_, ": no entry '", name, "' in the archive");
    return *e;
  }

  /// The uncompressed bytes of entry `name` (deflated entries are inflated and their size checked).
  std::vector<uint8_t> read(std::string_view name) const { return read(entry(name)); }
  /// The uncompressed bytes of `e` (an entry of this reader).
  std::vector<uint8_t> read(const ZipEntry& e) const {
    const uint8_t* src = data_ + e.data_offset;
    std::vector<uint8_t> out;
    if (e.method == 0) {
      out.assign(src, src + e.compressed_size);
    } else {
      out.resize(size_t(e.uncompressed_size));
      inflate_into(e, src, out.data());
    }
    if (check_crc_) {
      const uint32_t crc = detail::zip_crc32(out.data(), out.size());
      TORCHLET_CHECK(crc == e.crc32, IOError, "[zip] ", name_, ": entry '", e.name, "' at offset ",
                     e.local_header_offset, ": CRC-32 mismatch: expected ", hex(e.crc32), ", got ", hex(crc),
                     " (the file is corrupt)");
    }
    return out;
  }

  /// Zero-copy view of a stored entry's bytes; IOError for a compressed entry (use read()).
  ZipView view(std::string_view name) const {
    const ZipEntry& e = entry(name);
    TORCHLET_CHECK(e.method == 0, IOError, "[zip] ", name_, ": entry '", e.name,
                   "' is compressed (method ", e.method, "): it cannot be viewed in place, read() it");
    return {data_ + e.data_offset, size_t(e.compressed_size)};
  }

  /// True when entry `name`'s data matches the CRC-32 in the central directory.
  bool verify_crc(std::string_view name) const {
    const ZipEntry& e = entry(name);
    if (e.method == 0) return detail::zip_crc32(data_ + e.data_offset, e.compressed_size) == e.crc32;
    std::vector<uint8_t> out(size_t(e.uncompressed_size));
    inflate_into(e, data_ + e.data_offset, out.data());
    return detail::zip_crc32(out.data(), out.size()) == e.crc32;
  }

  /// PyTorch's archive folder: the first entry's name up to the first '/' (e.g. "archive").
  std::string root() const {
    TORCHLET_CHECK(!entries_.empty(), IOError, "[zip] ", name_, ": the archive has no entries");
    const std::string& first = entries_.front().name;
    const size_t slash = first.find('/');
    TORCHLET_CHECK(slash != std::string::npos, IOError, "[zip] ", name_,
                   ": file in archive is not in a subdirectory: ", first);
    return first.substr(0, slash);
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
    TORCHLET_CHECK(!__builtin_add_overflow(a, b, &r), IOError, "[zip] ", name_, ": ", what,
                   " overflows at offset ", at, " (the file is corrupt)");
    return r;
  }
  // Checks that [off, off + len) lies inside the file.
  void need(uint64_t off, uint64_t len, const char* what) const {
    const uint64_t end = add(off, len, what, off);
    TORCHLET_CHECK(end <= size_, IOError, "[zip] ", name_, ": ", what, " at offset ", off, " (", len,
                   " bytes) runs past the end of the file (", size_, " bytes): the file is truncated or corrupt");
  }

  void parse() {
    static constexpr std::string_view kLfs = "version https://git-lfs";
    TORCHLET_CHECK(size_ > 0, IOError, "[zip] ", name_, ": the file is empty (was the save interrupted?)");
    TORCHLET_CHECK(!(size_ >= kLfs.size() && std::memcmp(data_, kLfs.data(), kLfs.size()) == 0), IOError,
                   "[zip] ", name_,
                   ": this is a Git LFS pointer file, not the archive itself (fetch it with `git lfs pull`)");

    // --- end of central directory: search backwards within the 64 KiB comment window
    constexpr uint64_t kEocd = 22;
    TORCHLET_CHECK(size_ >= kEocd, IOError, "[zip] ", name_, ": end of central directory not found: the file (",
                   size_, " bytes) is truncated or not a zip archive (was the save interrupted?)");
    uint64_t eocd = UINT64_MAX, loose = UINT64_MAX;
    const uint64_t lowest = size_ - kEocd > 0xFFFF ? size_ - kEocd - 0xFFFF : 0;
    for (uint64_t p = size_ - kEocd + 1; p-- > lowest;) {
      if (detail::zip_u32(data_ + p) != detail::kZipEocdSig) continue;
      const uint64_t end = p + kEocd + detail::zip_u16(data_ + p + 20);
      if (end == size_) {
        eocd = p;
        break;
      }
      if (end <= size_ && loose == UINT64_MAX) loose = p;
    }
    if (eocd == UINT64_MAX) eocd = loose;
    TORCHLET_CHECK(eocd != UINT64_MAX, IOError, "[zip] ", name_,
                   ": end of central directory not found: the file is truncated or not a zip archive"
                   " (was the save interrupted?)");
    const uint8_t* e = data_ + eocd;
    TORCHLET_CHECK(detail::zip_u16(e + 4) == 0 && detail::zip_u16(e + 6) == 0 &&
                       detail::zip_u16(e + 8) == detail::zip_u16(e + 10),
                   IOError, "[zip] ", name_, ": multi-disk (spanned) archives are not supported (offset ", eocd, ")");
    uint64_t count = detail::zip_u16(e + 10), cd_size = detail::zip_u32(e + 12), cd_off = detail::zip_u32(e + 16);
    uint64_t cd_limit = eocd;  // the central directory ends before this offset

    // --- zip64 locator (20 bytes right before the EOCD) and zip64 EOCD record
    if (eocd >= 20 && detail::zip_u32(data_ + eocd - 20) == detail::kZip64LocatorSig) {
      const uint8_t* loc = data_ + eocd - 20;
      const uint64_t rec = detail::zip_u64(loc + 8);
      TORCHLET_CHECK(rec <= eocd - 20 && eocd - 20 - rec >= 56, IOError, "[zip] ", name_,
                     ": zip64 end of central directory offset ", rec, " (from the locator at offset ", eocd - 20,
                     ") is out of bounds: the file is corrupt");
      const uint8_t* z = data_ + rec;
      TORCHLET_CHECK(detail::zip_u32(z) == detail::kZip64EocdSig, IOError, "[zip] ", name_,
                     ": no zip64 end of central directory record at offset ", rec, ": the file is corrupt");
      count = detail::zip_u64(z + 32);
      cd_size = detail::zip_u64(z + 40);
      cd_off = detail::zip_u64(z + 48);
      TORCHLET_CHECK(detail::zip_u64(z + 24) == count, IOError, "[zip] ", name_,
                     ": multi-disk (spanned) archives are not supported (offset ", rec, ")");
      cd_limit = rec;
    }
    TORCHLET_CHECK(count <= limits_.max_entries, IOError, "[zip] ", name_, ": the archive lists ", count,
                   " entries, more than the limit of ", limits_.max_entries, " (offset ", eocd, ")");
    const uint64_t cd_end = add(cd_off, cd_size, "central directory end", eocd);
    TORCHLET_CHECK(cd_end <= cd_limit, IOError, "[zip] ", name_, ": central directory [", cd_off, ", ", cd_end,
                   ") runs past its end record at offset ", cd_limit, ": the file is truncated or corrupt");
    TORCHLET_CHECK(count <= cd_size / 46, IOError, "[zip] ", name_, ": the archive claims ", count,
                   " entries but its central directory at offset ", cd_off, " has only ", cd_size,
                   " bytes: the file is corrupt");

    // --- central directory
    entries_.reserve(size_t(count));
    index_.reserve(size_t(count));
    uint64_t p = cd_off, total = 0;
    for (uint64_t i = 0; i < count; ++i) {
      TORCHLET_CHECK(p + 46 <= cd_end, IOError, "[zip] ", name_, ": central directory entry ", i, " at offset ",
                     p, " runs past the central directory: the file is corrupt");
      const uint8_t* c = data_ + p;
      TORCHLET_CHECK(detail::zip_u32(c) == detail::kZipCentralSig, IOError, "[zip] ", name_,
                     ": bad central directory signature for entry ", i, " at offset ", p, ": the file is corrupt");
      ZipEntry en;
      en.flags = detail::zip_u16(c + 8);
      en.method = detail::zip_u16(c + 10);
      en.crc32 = detail::zip_u32(c + 16);
      en.compressed_size = detail::zip_u32(c + 20);
      en.uncompressed_size = detail::zip_u32(c + 24);
      const uint64_t name_len = detail::zip_u16(c + 28), extra_len = detail::zip_u16(c + 30),
                     comment_len = detail::zip_u16(c + 32);
      en.local_header_offset = detail::zip_u32(c + 42);
      const uint64_t next = p + 46 + name_len + extra_len + comment_len;
      TORCHLET_CHECK(next <= cd_end, IOError, "[zip] ", name_, ": central directory entry ", i, " at offset ", p,
                     " runs past the central directory: the file is corrupt");
      TORCHLET_CHECK(name_len <= limits_.max_name_length, IOError, "[zip] ", name_, ": entry ", i, " at offset ",
                     p, " has a name of ", name_len, " bytes, more than the limit of ", limits_.max_name_length);
      en.name.assign(reinterpret_cast<const char*>(c + 46), size_t(name_len));
      parse_zip64_extra(en, c + 46 + name_len, extra_len, p);
      check_entry(en, p);
      total = add(total, en.uncompressed_size, "total size", p);
      TORCHLET_CHECK(total <= limits_.max_total_size, IOError, "[zip] ", name_, ": entries total more than ",
                     limits_.max_total_size, " bytes (limit), at entry '", en.name, "' (offset ", p, ")");
      const bool fresh = index_.emplace(en.name, entries_.size()).second;
      TORCHLET_CHECK(fresh, IOError, "[zip] ", name_, ": entry '", en.name, "' appears twice (offset ", p,
                     "): the archive is ambiguous");
      entries_.push_back(std::move(en));
      p = next;
    }
  }

  // Replaces 0xFFFFFFFF sizes/offset with the values of the zip64 extra field (id 0x0001), in the spec's order.
  void parse_zip64_extra(ZipEntry& en, const uint8_t* x, uint64_t len, uint64_t at) const {
    const bool need_u = en.uncompressed_size == 0xFFFFFFFF, need_c = en.compressed_size == 0xFFFFFFFF,
               need_o = en.local_header_offset == 0xFFFFFFFF;
    bool found = false;
    for (uint64_t q = 0; q + 4 <= len;) {
      const uint16_t id = detail::zip_u16(x + q), n = detail::zip_u16(x + q + 2);
      TORCHLET_CHECK(q + 4 + n <= len, IOError, "[zip] ", name_, ": entry '", en.name,
                     "' has an extra field running past its end (offset ", at, "): the file is corrupt");
      if (id == detail::kZip64ExtraId) {
        found = true;
        const uint8_t* f = x + q + 4;
        uint64_t k = 0;
        auto take = [&](uint64_t& v) {
          TORCHLET_CHECK(k + 8 <= n, IOError, "[zip] ", name_, ": entry '", en.name,
                         "' has a zip64 extra field too short for its sizes (offset ", at, "): the file is corrupt");
          v = detail::zip_u64(f + k);
          k += 8;
        };
        if (need_u) take(en.uncompressed_size);
        if (need_c) take(en.compressed_size);
        if (need_o) take(en.local_header_offset);
        break;
      }
      q += 4 + n;
    }
    TORCHLET_CHECK(found || !(need_u || need_c || need_o), IOError, "[zip] ", name_, ": entry '", en.name,
                   "' needs a zip64 extra field but has none (offset ", at, "): the file is corrupt");
  }

  // Validates an entry and resolves its data offset from the local header.
  void check_entry(ZipEntry& en, uint64_t at) {
    TORCHLET_CHECK((en.flags & 1) == 0, IOError, "[zip] ", name_, ": entry '", en.name,
                   "' is encrypted (offset ", at, "): not supported");
    TORCHLET_CHECK(en.method == 0 || en.method == 8, IOError, "[zip] ", name_, ": entry '", en.name,
                   "' uses compression method ", en.method, " (offset ", at,
                   "); only 0 (stored) and 8 (deflated) are supported");
    TORCHLET_CHECK(en.method != 0 || en.compressed_size == en.uncompressed_size, IOError, "[zip] ", name_,
                   ": stored entry '", en.name, "' has compressed size ", en.compressed_size,
                   " != uncompressed size ", en.uncompressed_size, " (offset ", at, "): the file is corrupt");
    TORCHLET_CHECK(en.uncompressed_size <= limits_.max_entry_size, IOError, "[zip] ", name_, ": entry '",
                   en.name, "' is ", en.uncompressed_size, " bytes, more than the limit of ",
                   limits_.max_entry_size, " (offset ", at, ")");
    // deflate never expands more than ~1032:1; a larger claim is a bomb or a corrupt size
    TORCHLET_CHECK(en.method != 8 || en.uncompressed_size / 1032 <= en.compressed_size + 1, IOError, "[zip] ",
                   name_, ": deflated entry '", en.name, "' claims ", en.uncompressed_size, " bytes from ",
                   en.compressed_size, " compressed bytes (offset ", at, "): the file is corrupt");
    const uint64_t lh = en.local_header_offset;
    TORCHLET_CHECK(lh < size_ && size_ - lh >= 30, IOError, "[zip] ", name_, ": entry '", en.name,
                   "': local header offset ", lh, " is past the end of the file (", size_,
                   " bytes): the file is truncated or corrupt");
    const uint8_t* l = data_ + lh;
    TORCHLET_CHECK(detail::zip_u32(l) == detail::kZipLocalSig, IOError, "[zip] ", name_, ": entry '", en.name,
                   "': no local file header at offset ", lh, ": the file is corrupt");
    const uint64_t lname = detail::zip_u16(l + 26), lextra = detail::zip_u16(l + 28);
    need(lh, 30 + lname + lextra, "local header");
    TORCHLET_CHECK(lname == en.name.size() && std::memcmp(l + 30, en.name.data(), size_t(lname)) == 0, IOError,
                   "[zip] ", name_, ": entry '", en.name, "': the local header at offset ", lh,
                   " names a different file: the file is corrupt");
    en.data_offset = lh + 30 + lname + lextra;
    const uint64_t end = add(en.data_offset, en.compressed_size, "entry data end", lh);
    TORCHLET_CHECK(end <= size_, IOError, "[zip] ", name_, ": entry '", en.name, "': data at offset ",
                   en.data_offset, " (", en.compressed_size, " bytes) runs past the end of the file (", size_,
                   " bytes): the file is truncated or corrupt");
  }

  // Raw-inflates entry `e` from `src` into exactly e.uncompressed_size bytes at `dst`.
  void inflate_into(const ZipEntry& e, const uint8_t* src, uint8_t* dst) const {
    z_stream zs{};
    TORCHLET_CHECK(inflateInit2(&zs, -MAX_WBITS) == Z_OK, IOError, "[zip] ", name_,
                   ": zlib inflateInit2 failed for entry '", e.name, "'");
    struct End {
      z_stream* z;
      ~End() { inflateEnd(z); }
    } end{&zs};
    uint64_t in_left = e.compressed_size, out_left = e.uncompressed_size;
    zs.next_in = const_cast<Bytef*>(src);
    zs.next_out = dst;
    constexpr uint64_t kChunk = uint64_t(1) << 30;
    uint8_t probe = 0;
    bool probing = false;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      if (zs.avail_in == 0 && in_left > 0) {
        zs.avail_in = uInt(in_left > kChunk ? kChunk : in_left);
        in_left -= zs.avail_in;
      }
      if (zs.avail_out == 0) {
        if (out_left > 0) {
          zs.avail_out = uInt(out_left > kChunk ? kChunk : out_left);
          out_left -= zs.avail_out;
        } else {  // the declared size is used up: any further byte is one too many
          TORCHLET_CHECK(!probing, IOError, "[zip] ", name_, ": entry '", e.name,
                         "' inflates to more than its declared ", e.uncompressed_size, " bytes (offset ",
                         e.local_header_offset, "): the file is corrupt");
          probing = true;
          zs.next_out = &probe;
          zs.avail_out = 1;
        }
      }
      const uInt before_in = zs.avail_in, before_out = zs.avail_out;
      rc = ::inflate(&zs, Z_NO_FLUSH);
      TORCHLET_CHECK(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR, IOError, "[zip] ", name_,
                     ": entry '", e.name, "' (offset ", e.local_header_offset, ") cannot be inflated: ",
                     (zs.msg ? zs.msg : "corrupt deflate data"));
      TORCHLET_CHECK(!(probing && zs.avail_out == 0), IOError, "[zip] ", name_, ": entry '", e.name,
                     "' inflates to more than its declared ", e.uncompressed_size, " bytes (offset ",
                     e.local_header_offset, "): the file is corrupt");
      TORCHLET_CHECK(rc == Z_STREAM_END || zs.avail_in != before_in || zs.avail_out != before_out, IOError,
                     "[zip] ", name_, ": entry '", e.name, "' (offset ", e.local_header_offset,
                     ") cannot be inflated: the deflate data ends early (truncated or corrupt)");
    }
    const uint64_t produced = uint64_t(zs.total_out);
    TORCHLET_CHECK(produced == e.uncompressed_size, IOError, "[zip] ", name_, ": entry '", e.name,
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
