#pragma once
/// \file The safetensors format (Hugging Face): read and write.
///
/// Layout: 8-byte little-endian header length N, N bytes of JSON
/// `{"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}`
/// (padded with spaces), then the data buffer; offsets are relative to the buffer, tensors are C-order and
/// little-endian.
///
/// Reading validates as the reference implementation (safetensors' Rust crate) does: header length at most
/// 100,000,000 bytes and inside the file, strict JSON (our own bounded parser, io/json.hpp), known dtypes, the
/// tensors' byte ranges contiguous and non-overlapping from 0 and covering the whole buffer, each range exactly
/// shape x element size. It is stricter in two points: duplicate names and non-string `__metadata__` values
/// are refused (the reference keeps the last duplicate). Unknown fields of a tensor entry are ignored, as there.
///
/// What load_safetensors() returns: a dict Value, `"__metadata__"` first when the file has one (a dict of
/// str -> str, in file order), then name -> Tensor in header order (the reference writer's header order is
/// the data order). save_safetensors() takes the same shape back (an explicit `metadata` argument wins over a
/// `"__metadata__"` entry; a trailing `"__attributes__"` entry of a state_dict is skipped).
///
/// Writing mirrors the reference writer byte for byte with the default SafetensorsOrder::Reference: tensors
/// sorted by dtype alignment (largest first, the reference's dtype order) then by name, compact JSON
/// (`{"__metadata__":{...},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`), header padded with spaces
/// to a multiple of 8. The reference keeps `__metadata__` in a hash map, so its key order is unspecified; we
/// write the user's order. SafetensorsOrder::Insertion keeps the dict's order instead (used by
/// `torchlet convert` so that a round trip keeps the order; such files are valid, merely not aligned).
///
/// dtypes: BOOL U8 I8 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64 F8_E4M3 (torch.float8_e4m3fn) F8_E5M2. Other
/// names (newer F8_E8M0, F4, C64, ...) raise DTypeError naming the tensor. Big-endian hosts are refused.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "torchlet/core/dtype.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/io/atomic_file.hpp"
#include "torchlet/io/json.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {

/// How load_safetensors() reads.
struct SafetensorsLoadOptions {
  /// Zero-copy: map the file (copy-on-write, so in-place changes never reach the file) and let tensors borrow
  /// the mapping; a tensor whose bytes are not aligned to its element size is copied instead.
  bool mmap = false;
  uint64_t max_header_bytes = 100'000'000;  ///< the reference's limit on the JSON header
};

/// The order of tensors in a written file.
enum class SafetensorsOrder {
  Reference,  ///< as the reference writer: dtype alignment descending, then name (bytewise)
  Insertion,  ///< the order of the dict
};

/// How save_safetensors() writes.
struct SafetensorsSaveOptions {
  SafetensorsOrder order = SafetensorsOrder::Reference;  ///< tensor order in header and buffer
};

namespace detail {

/// One safetensors dtype: its name, torchlet's dtype, and its rank in the reference's (alignment) order.
struct StDtype {
  std::string_view name;
  DType dtype;
  int rank;
};
inline constexpr StDtype kStDtypes[] = {
    {"BOOL", DType::Bool, 0},           {"U8", DType::UInt8, 1},   {"I8", DType::Int8, 2},
    {"F8_E5M2", DType::Float8_e5m2, 3}, {"F8_E4M3", DType::Float8_e4m3fn, 4},
    {"I16", DType::Int16, 5},           {"U16", DType::UInt16, 6}, {"F16", DType::Float16, 7},
    {"BF16", DType::BFloat16, 8},       {"I32", DType::Int32, 9},  {"U32", DType::UInt32, 10},
    {"F32", DType::Float32, 11},        {"F64", DType::Float64, 12}, {"I64", DType::Int64, 13},
    {"U64", DType::UInt64, 14},
};

/// The table row of a safetensors dtype name, or nullptr.
inline const StDtype* st_dtype_by_name(std::string_view name) {
  for (const auto& d : kStDtypes)
    if (d.name == name) return &d;
  return nullptr;
}
/// The table row of a torchlet dtype; raises DTypeError naming the tensor when safetensors has no such dtype.
inline const StDtype& st_dtype_of(DType t, std::string_view tensor) {
  for (const auto& d : kStDtypes)
    if (d.dtype == t) return d;
  TORCHLET_THROW(DTypeError, "[save_safetensors] tensor \"", tensor, "\" has dtype ", t,
                 ", which safetensors cannot store");
}

/// One tensor entry of a parsed header.
struct StEntry {
  std::string name;
  DType dtype = kFloat32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};
/// A parsed and validated header.
struct StHeader {
  std::vector<StEntry> entries;  ///< header order
  std::optional<ValueDict> metadata;
};

/// Parses and validates the JSON header against a data buffer of `data_size` bytes; `what` names the file.
inline StHeader st_parse_header(std::string_view json, uint64_t data_size, const std::string& what) {
  const std::string ctx = "[safetensors] " + what + ": ";
  TORCHLET_CHECK(!json.empty() && json[0] == '{', IOError, ctx, "the header does not start with '{'");
  Value root = io::parse_json(json, what + ": header JSON", {.max_bytes = json.size(), .max_depth = 8}, "safetensors");
  TORCHLET_CHECK(root.is_dict(), IOError, ctx, "the header is not a JSON object");
  StHeader h;
  for (const auto& [k, v] : root.as_dict()) {
    const std::string& name = k.as_string();
    if (name == "__metadata__") {
      TORCHLET_CHECK(v.is_dict(), IOError, ctx, "__metadata__ must be an object of strings, got ", io::to_json(v));
      for (const auto& [mk, mv] : v.as_dict())
        TORCHLET_CHECK(mv.is_string(), IOError, ctx, "__metadata__ value of \"", mk.as_string(),
                       "\" must be a string, got ", io::to_json(mv));
      h.metadata = v.as_dict();
      continue;
    }
    const std::string tctx = ctx + "tensor \"" + name + "\": ";
    TORCHLET_CHECK(v.is_dict(), IOError, tctx, "expected an object with dtype, shape and data_offsets");
    const Value* dt = v.find(Value("dtype"));
    const Value* sh = v.find(Value("shape"));
    const Value* off = v.find(Value("data_offsets"));
    TORCHLET_CHECK(dt && sh && off, IOError, tctx, "missing ", !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    TORCHLET_CHECK(dt->is_string(), IOError, tctx, "dtype must be a string, got ", io::to_json(*dt));
    const StDtype* sd = st_dtype_by_name(dt->as_string());
    TORCHLET_CHECK(sd != nullptr, DTypeError, tctx, "unsupported dtype \"", dt->as_string(),
                   "\" (supported: BOOL U8 I8 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64 F8_E4M3 F8_E5M2)");
    StEntry e;
    e.name = name;
    e.dtype = sd->dtype;
    TORCHLET_CHECK(sh->is_list(), IOError, tctx, "shape must be an array of integers, got ", io::to_json(*sh));
    uint64_t numel = 1;
    bool overflow = false;
    for (const Value& d : sh->as_list()) {
      TORCHLET_CHECK(d.is_int() && d.as_int() >= 0, IOError, tctx,
                     "shape must hold non-negative integers, got ", io::to_json(*sh));
      const auto n = static_cast<uint64_t>(d.as_int());
      if (n != 0 && numel > UINT64_MAX / n) overflow = true;
      else numel *= n;
      e.shape.push_back(d.as_int());
    }
    const auto esize = static_cast<uint64_t>(element_size(e.dtype));
    if (!overflow && numel > UINT64_MAX / esize) overflow = true;
    TORCHLET_CHECK(!overflow, IOError, tctx, "shape ", io::to_json(*sh), " overflows the byte count");
    TORCHLET_CHECK(off->is_list() && off->size() == 2 && off->as_list()[0].is_int() && off->as_list()[1].is_int() &&
                       off->as_list()[0].as_int() >= 0 && off->as_list()[1].as_int() >= 0,
                   IOError, tctx, "data_offsets must be two non-negative integers, got ", io::to_json(*off));
    e.begin = static_cast<uint64_t>(off->as_list()[0].as_int());
    e.end = static_cast<uint64_t>(off->as_list()[1].as_int());
    TORCHLET_CHECK(e.end >= e.begin, IOError, tctx, "data_offsets [", e.begin, ", ", e.end, "] end before they begin");
    TORCHLET_CHECK(e.end - e.begin == numel * esize, IOError, tctx, "shape ", shape_str(e.shape), " of ",
                   sd->name, " needs ", numel * esize, " bytes, but data_offsets [", e.begin, ", ", e.end,
                   "] span ", e.end - e.begin);
    h.entries.push_back(std::move(e));
  }
  // contiguous, non-overlapping, covering the buffer (checked in offset order, as the reference does)
  std::vector<const StEntry*> by_offset;
  for (const auto& e : h.entries) by_offset.push_back(&e);
  std::stable_sort(by_offset.begin(), by_offset.end(), [](const StEntry* a, const StEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t at = 0;
  for (const StEntry* e : by_offset) {
    TORCHLET_CHECK(e->begin == at, IOError, ctx, "tensor \"", e->name, "\": data_offsets [", e->begin, ", ", e->end,
                   "] ", e->begin < at ? "overlap the previous tensor, which ends at " : "leave a gap after byte ",
                   at, " (tensors must be contiguous)");
    at = e->end;
  }
  TORCHLET_CHECK(at == data_size, IOError, ctx, "the tensors cover ", at, " bytes of data but the file holds ",
                 data_size, at < data_size ? " (trailing bytes)" : " (truncated file)");
  return h;
}

/// Reads the 8-byte header length and checks it against the limit and the file size.
inline uint64_t st_header_length(const uint8_t* first8, uint64_t file_size, uint64_t limit, const std::string& what) {
  TORCHLET_CHECK(std::endian::native == std::endian::little, IOError, "[safetensors] ", what,
                 ": this host is big-endian; torchlet reads little-endian safetensors data only");
  TORCHLET_CHECK(file_size >= 8, IOError, "[safetensors] ", what, ": file of ", file_size,
                 " bytes is too small for the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | first8[i];
  TORCHLET_CHECK(n <= limit, IOError, "[safetensors] ", what, ": header length ", n, " exceeds the limit of ",
                 limit, " bytes");
  TORCHLET_CHECK(n <= file_size - 8, IOError, "[safetensors] ", what, ": header length ", n,
                 " runs past the end of the file (", file_size, " bytes)");
  return n;
}

/// Builds the result dict; `make` gives each entry's tensor.
template <class MakeTensor>
Value st_build(const StHeader& h, MakeTensor&& make) {
  ValueDict out;
  if (h.metadata) out.set(Value("__metadata__"), Value(*h.metadata));
  for (const auto& e : h.entries) out.set(Value(e.name), Value(make(e)));
  return Value(std::move(out));
}

/// A new contiguous CPU tensor for `e`, filled by `fill(dst, nbytes)`.
template <class Fill>
Tensor st_new_tensor(const StEntry& e, Fill&& fill) {
  Storage s = Storage::allocate(static_cast<size_t>(e.end - e.begin));
  if (e.end > e.begin) fill(s.data(), static_cast<size_t>(e.end - e.begin));
  return Tensor(std::move(s), e.dtype, e.shape, contiguous_strides(e.shape));
}

/// A memory mapping that unmaps when the last tensor borrowing it is gone.
struct StMapping {
  void* addr = nullptr;
  size_t size = 0;
  ~StMapping() {
    if (addr && addr != MAP_FAILED) ::munmap(addr, size);
  }
};

/// Reads exactly `n` bytes at `offset` of `fd`.
inline void st_pread(int fd, void* dst, size_t n, uint64_t offset, const std::string& what) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, static_cast<char*>(dst) + done, n - done, off_t(offset + done));
    if (r < 0 && errno == EINTR) continue;
    TORCHLET_CHECK(r >= 0, IOError, "[safetensors] ", what, ": read failed at offset ", offset + done, ": ",
                   std::strerror(errno));
    TORCHLET_CHECK(r > 0, IOError, "[safetensors] ", what, ": file shrank while reading (offset ", offset + done, ")");
    done += size_t(r);
  }
}

/// The contiguous little-endian CPU bytes of a tensor (any layout, any device a copy to the CPU supports).
inline Tensor st_contiguous_cpu(const Tensor& t) { return t.to(kCPU).contiguous(); }

/// The entries of a tensor dict to write, in file order, each with its header JSON; header text padded to 8.
struct StPlan {
  std::string header;                              ///< padded JSON
  std::vector<std::pair<std::string, Tensor>> tensors;  ///< in data order (contiguous CPU tensors)
};

/// Checks the dict and metadata, orders the tensors and builds the padded header JSON.
inline StPlan st_plan(const Value& dict, const Value& metadata, const SafetensorsSaveOptions& options) {
  TORCHLET_CHECK(std::endian::native == std::endian::little, IOError,
                 "[save_safetensors] this host is big-endian; torchlet writes little-endian safetensors data only");
  TORCHLET_CHECK(dict.is_dict(), ValueError, "[save_safetensors] expected a dict of name -> tensor, got ",
                 dict.kind_name());
  const Value* meta = metadata.is_none() ? dict.find(Value("__metadata__")) : &metadata;
  struct Item {
    std::string name;
    Tensor t;
    int rank;
  };
  std::vector<Item> items;
  for (const auto& [k, v] : dict.as_dict()) {
    TORCHLET_CHECK(k.is_string(), ValueError, "[save_safetensors] keys must be str, got ", k.kind_name(), " key ",
                   k.repr());
    const std::string& name = k.as_string();
    if (name == "__metadata__" || name == "__attributes__") continue;
    TORCHLET_CHECK(v.is_tensor() && v.as_tensor().defined(), ValueError, "[save_safetensors] entry \"", name,
                   "\" is a ", v.kind_name(), ", not a tensor (safetensors holds tensors only)");
    items.push_back({name, v.as_tensor(), st_dtype_of(v.as_tensor().dtype(), name).rank});
  }
  if (options.order == SafetensorsOrder::Reference)
    std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
      return a.rank != b.rank ? a.rank > b.rank : a.name < b.name;
    });
  StPlan plan;
  std::string& j = plan.header;
  j += '{';
  bool first = true;
  if (meta) {
    TORCHLET_CHECK(meta->is_dict(), ValueError, "[save_safetensors] metadata must be a dict of str -> str, got ",
                   meta->kind_name());
    j += "\"__metadata__\":{";
    bool mfirst = true;
    for (const auto& [mk, mv] : meta->as_dict()) {
      TORCHLET_CHECK(mk.is_string() && mv.is_string(), ValueError,
                     "[save_safetensors] metadata must map str -> str, got ", mk.repr(), ": ", mv.repr());
      if (!mfirst) j += ',';
      mfirst = false;
      io::json_quote_into(j, mk.as_string());
      j += ':';
      io::json_quote_into(j, mv.as_string());
    }
    j += '}';
    first = false;
  }
  uint64_t offset = 0;
  for (auto& it : items) {
    if (!first) j += ',';
    first = false;
    io::json_quote_into(j, it.name);
    j += ":{\"dtype\":\"";
    j += st_dtype_of(it.t.dtype(), it.name).name;
    j += "\",\"shape\":[";
    for (int64_t d = 0; d < it.t.dim(); ++d) {
      if (d) j += ',';
      j += std::to_string(it.t.size(d));
    }
    const auto n = static_cast<uint64_t>(it.t.nbytes());
    j += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + n) + "]}";
    offset += n;
    plan.tensors.emplace_back(std::move(it.name), std::move(it.t));
  }
  j += '}';
  j.append((8 - j.size() % 8) % 8, ' ');
  return plan;
}
}  // namespace detail

/// Parses a whole safetensors file held in memory (tensors are copied out). See the file comment for the
/// returned dict; `name` names the source in errors.
inline Value load_safetensors_from_bytes(std::span<const uint8_t> bytes, const SafetensorsLoadOptions& options = {},
                                         const std::string& name = "<memory>") {
  const uint64_t n = detail::st_header_length(bytes.data(), bytes.size(), options.max_header_bytes, name);
  const std::string_view json(reinterpret_cast<const char*>(bytes.data()) + 8, size_t(n));
  const uint64_t data_size = bytes.size() - 8 - n;
  const detail::StHeader h = detail::st_parse_header(json, data_size, name);
  const uint8_t* data = bytes.data() + 8 + n;
  return detail::st_build(h, [&](const detail::StEntry& e) {
    return detail::st_new_tensor(e, [&](void* dst, size_t len) { std::memcpy(dst, data + e.begin, len); });
  });
}

/// Reads a .safetensors file: a dict with `"__metadata__"` (when present) then name -> Tensor in header order.
/// Raises IOError (or DTypeError for an unknown dtype) with one line naming the file and the problem.
inline Value load_safetensors(const std::string& path, const SafetensorsLoadOptions& options = {}) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TORCHLET_CHECK(fd >= 0, IOError, "[safetensors] ", path, ": cannot open: ", std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  TORCHLET_CHECK(::fstat(fd, &st) == 0, IOError, "[safetensors] ", path, ": cannot stat: ", std::strerror(errno));
  TORCHLET_CHECK(S_ISREG(st.st_mode), IOError, "[safetensors] ", path, ": not a regular file");
  const auto size = static_cast<uint64_t>(st.st_size);
  uint8_t first8[8] = {};
  if (size >= 8) detail::st_pread(fd, first8, 8, 0, path);
  const uint64_t n = detail::st_header_length(first8, size, options.max_header_bytes, path);
  const uint64_t data_at = 8 + n, data_size = size - data_at;
  if (options.mmap) {
    auto map = std::make_shared<detail::StMapping>();
    map->size = size_t(size);
    map->addr = ::mmap(nullptr, map->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    TORCHLET_CHECK(map->addr != MAP_FAILED, IOError, "[safetensors] ", path, ": cannot mmap ", size,
                   " bytes: ", std::strerror(errno));
    auto* base = static_cast<uint8_t*>(map->addr);
    const detail::StHeader h =
        detail::st_parse_header(std::string_view(reinterpret_cast<const char*>(base) + 8, size_t(n)), data_size, path);
    std::shared_ptr<void> keep(map, map->addr);
    return detail::st_build(h, [&](const detail::StEntry& e) {
      uint8_t* p = base + data_at + e.begin;
      if (reinterpret_cast<uintptr_t>(p) % uintptr_t(element_size(e.dtype)) != 0 || e.end == e.begin)
        return detail::st_new_tensor(e, [&](void* dst, size_t len) { std::memcpy(dst, p, len); });
      return Tensor(Storage::borrow(p, size_t(e.end - e.begin), keep), e.dtype, e.shape, contiguous_strides(e.shape));
    });
  }
  std::string json(size_t(n), '\0');
  detail::st_pread(fd, json.data(), json.size(), 8, path);
  const detail::StHeader h = detail::st_parse_header(json, data_size, path);
  return detail::st_build(h, [&](const detail::StEntry& e) {
    return detail::st_new_tensor(e, [&](void* dst, size_t len) { detail::st_pread(fd, dst, len, data_at + e.begin, path); });
  });
}

/// The bytes of a safetensors file holding the tensors of `tensors` (a dict name -> Tensor; `"__metadata__"`
/// gives the metadata unless `metadata` is a dict; `"__attributes__"` is skipped). Raises ValueError for a
/// non-tensor entry and DTypeError for a dtype safetensors lacks, naming the entry.
inline std::vector<uint8_t> save_safetensors_to_bytes(const Value& tensors, const Value& metadata = Value(),
                                                      const SafetensorsSaveOptions& options = {}) {
  const detail::StPlan plan = detail::st_plan(tensors, metadata, options);
  uint64_t total = 8 + plan.header.size();
  for (const auto& [name, t] : plan.tensors) total += uint64_t(t.nbytes());
  std::vector<uint8_t> out;
  out.reserve(size_t(total));
  const uint64_t n = plan.header.size();
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(n >> (8 * i)));
  out.insert(out.end(), plan.header.begin(), plan.header.end());
  for (const auto& [name, t] : plan.tensors) {
    const Tensor c = detail::st_contiguous_cpu(t);
    const auto* p = static_cast<const uint8_t*>(c.data_ptr());
    out.insert(out.end(), p, p + c.nbytes());
  }
  return out;
}

/// Writes `tensors` as a .safetensors file at `path` (see save_safetensors_to_bytes()), atomically and durably
/// (io/atomic_file.hpp): the file appears complete under its name or not at all. Raises IOError naming the file.
inline void save_safetensors(const std::string& path, const Value& tensors, const Value& metadata = Value(),
                             const SafetensorsSaveOptions& options = {}) {
  const detail::StPlan plan = detail::st_plan(tensors, metadata, options);
  io::AtomicFile file(path);
  uint8_t len[8];
  const uint64_t n = plan.header.size();
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
  file.write(len, 8);
  file.write(plan.header.data(), plan.header.size());
  for (const auto& [name, t] : plan.tensors) {
    const Tensor c = detail::st_contiguous_cpu(t);
    file.write(c.data_ptr(), size_t(c.nbytes()));
  }
  file.commit();
}

}  // namespace torchlet
