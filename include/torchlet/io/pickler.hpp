#pragma once
/// \file A pickler that writes a Value as `torch.save` writes `data.pkl`: pickle protocol 2, the opcodes and memo
/// (BINPUT/BINGET) CPython's pickler emits, tensors as `torch._utils._rebuild_tensor_v2(storage, offset, size,
/// stride, requires_grad, OrderedDict())` whose storage is a persistent id `('storage', torch.<X>Storage, key,
/// 'cpu', numel)`, one key per distinct Storage ("0", "1", ... in first-seen order).
///
/// Mapping from Value:
///  * None, bool, int (BININT1/BININT2/BININT, LONG1 beyond 32 bits), float (BINFLOAT), str (BINUNICODE, bytes
///    kept verbatim), list (APPENDS in batches of 1000), tuple (EMPTY_TUPLE/TUPLE1-3/MARK..TUPLE), dict
///    (EMPTY_DICT + SETITEMS in batches of 1000), batched exactly as CPython's C pickler does.
///  * A dict whose last entry has the key `"__attributes__"` (what io::unpickle makes of an OrderedDict with
///    attributes, e.g. a state_dict's `_metadata`) becomes `collections.OrderedDict` + SETITEMS + BUILD with those
///    attributes (no BUILD when they are empty); a dict under the attribute `_metadata` is itself written as an
///    OrderedDict, as `Module.state_dict()` makes it.
///  * Tensors of float32/64, float16, bfloat16, int8/16/32/64, uint8 and bool use `_rebuild_tensor_v2` and the
///    typed storage classes (readable by PyTorch 1.6+); uint16/32/64 and the float8 types use
///    `_rebuild_tensor_v3(..., torch.<dtype>)` on a `torch.UntypedStorage` whose numel is its byte count, as
///    PyTorch 2.x writes them (PyTorch 1.x cannot read those dtypes at all).
///  * The memo follows CPython, which memoizes by object identity; a Value has no identity, so equal strings and
///    equal tuples of scalars (floats compared by their bits) are written once and fetched with BINGET afterwards
///    (what CPython does for interned strings and shared tuples such as Adam's `betas`), the same Tensor handle is
///    written once, and size/stride tuples and storage keys are never shared — byte-for-byte what PyTorch 1.13
///    writes for state_dicts, optimizer state_dicts and training checkpoints.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "torchlet/core/dtype.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/io/utf8.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::io {

/// One storage the pickle refers to by persistent id; its bytes go to the archive record `data/<key>`.
struct PickledStorage {
  /// The persistent-id key: "0", "1", ... in the order storages are first met.
  std::string key;
  /// The storage (on any device; the writer copies it to the CPU).
  Storage storage;
  /// Element type the persistent id names (uint8 for `torch.UntypedStorage`).
  DType dtype = kUInt8;
  /// Number of `dtype` elements the persistent id declares (bytes for an UntypedStorage).
  int64_t numel = 0;
  /// Bytes of the record: numel * element_size(dtype) (a trailing partial element of the storage is dropped).
  int64_t nbytes() const { return numel * element_size(dtype); }
};

/// The pickle bytes and the storages they reference, in key order.
struct Pickled {
  /// The `data.pkl` bytes.
  std::vector<uint8_t> bytes;
  /// Storages in key order ("0", "1", ...).
  std::vector<PickledStorage> storages;
};

/// Limits of pickle().
struct PickleOptions {
  /// Deepest container nesting written (the same default io::unpickle accepts).
  int64_t max_depth = 1000;
};

/// The storage class PyTorch pickles a tensor of `dtype` with ("FloatStorage", ...), or "UntypedStorage" for the
/// dtypes PyTorch 2.x writes with `_rebuild_tensor_v3` (uint16/32/64, float8).
constexpr std::string_view storage_class_name(DType dtype) {
  switch (dtype) {
    case DType::Float64: return "DoubleStorage";
    case DType::Float32: return "FloatStorage";
    case DType::Float16: return "HalfStorage";
    case DType::BFloat16: return "BFloat16Storage";
    case DType::Int64: return "LongStorage";
    case DType::Int32: return "IntStorage";
    case DType::Int16: return "ShortStorage";
    case DType::Int8: return "CharStorage";
    case DType::UInt8: return "ByteStorage";
    case DType::Bool: return "BoolStorage";
    default: return "UntypedStorage";
  }
}

namespace detail::pkw {

/// A lazily formatted path into the Value being pickled ("optimizer.state.0.momentum_buffer"), for errors.
struct Path {
  const Path* parent = nullptr;
  const Value* key = nullptr;  // dict key, or nullptr for a list/tuple index
  size_t index = 0;
  std::string str() const {
    std::vector<const Path*> chain;
    for (const Path* p = this; p && p->parent; p = p->parent) chain.push_back(p);
    std::string out;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      if (!out.empty()) out += '.';
      const Path& p = **it;
      if (!p.key) out += std::to_string(p.index);
      else if (p.key->is_string()) out += p.key->as_string();
      else out += p.key->repr();
    }
    return out.empty() ? "<root>" : out;
  }
};

/// True for a Value CPython would treat as immutable and that we may share by value: scalars, and tuples of them.
inline bool shareable(const Value& v, int depth = 0) {
  if (depth > 8) return false;
  switch (v.kind()) {
    case Value::Kind::None: case Value::Kind::Bool: case Value::Kind::Int: case Value::Kind::Double:
    case Value::Kind::String: return true;
    case Value::Kind::Tuple:
      for (const Value& e : v.as_list())
        if (!shareable(e, depth + 1)) return false;
      return true;
    default: return false;
  }
}

/// Appends to `out` the memo key of a shareable() value: its kind and exact contents, floats by their bits (so
/// NaNs of another sign or payload, and 0.0 and -0.0, are never fetched for each other), strs length-prefixed.
inline void memo_key(const Value& v, std::string& out) {
  switch (v.kind()) {
    case Value::Kind::None: out += 'N'; return;
    case Value::Kind::Bool: out += v.as_bool() ? 'T' : 'F'; return;
    case Value::Kind::Int: out += 'i' + std::to_string(v.as_int()) + ';'; return;
    case Value::Kind::Double: {
      const double d = v.as_double();
      char bits[8];
      std::memcpy(bits, &d, 8);
      out += 'f';
      out.append(bits, 8);
      return;
    }
    case Value::Kind::String: out += 's' + std::to_string(v.as_string().size()) + ':' + v.as_string(); return;
    case Value::Kind::Tuple:
      out += '(';
      for (const Value& e : v.as_list()) memo_key(e, out);
      out += ')';
      return;
    default: out += '?'; return;  // not shareable: never asked
  }
}

/// True for a Value Python can use as a dict key (not a list or dict, nor a tuple holding one).
inline bool hashable(const Value& v, int depth = 0) {
  if (v.is_list() || v.is_dict() || depth > 64) return false;
  if (v.is_tuple())
    for (const Value& e : v.as_list())
      if (!hashable(e, depth + 1)) return false;
  return true;
}

/// The writer state of one pickle() call.
class Writer {
 public:
  explicit Writer(const PickleOptions& o) : o_(o) {}

  Pickled run(const Value& v) {
    out_.push_back(0x80);  // PROTO 2
    out_.push_back(2);
    Path root;
    save(v, root, 0);
    out_.push_back('.');  // STOP
    Pickled p;
    p.bytes = std::move(out_);
    p.storages = std::move(storages_);
    return p;
  }

 private:
  [[noreturn]] void fail(const Path& at, const std::string& what) const {
    TORCHLET_THROW(ValueError, "[pickle] cannot save the value at \"", at.str(), "\": ", what);
  }

  // ---- raw output -------------------------------------------------------------------------------------------
  void op(uint8_t c) { out_.push_back(c); }
  void u32(uint32_t x) {
    for (int i = 0; i < 4; ++i) out_.push_back(uint8_t(x >> (8 * i)));
  }
  uint32_t memoize() {
    const uint32_t id = memo_++;
    if (id < 256) {
      op('q');  // BINPUT
      op(uint8_t(id));
    } else {
      op('r');  // LONG_BINPUT
      u32(id);
    }
    return id;
  }
  void get(uint32_t id) {
    if (id < 256) {
      op('h');  // BINGET
      op(uint8_t(id));
    } else {
      op('j');  // LONG_BINGET
      u32(id);
    }
  }

  // ---- scalars ----------------------------------------------------------------------------------------------
  void save_int(int64_t x) {
    if (x >= 0 && x <= 0xFF) {
      op('K');
      op(uint8_t(x));
    } else if (x >= 0 && x <= 0xFFFF) {
      op('M');
      op(uint8_t(x));
      op(uint8_t(x >> 8));
    } else if (x >= INT32_MIN && x <= INT32_MAX) {
      op('J');
      u32(uint32_t(int32_t(x)));
    } else {
      // LONG1: little-endian two's complement, the fewest bytes that keep the sign (Python's encode_long).
      uint8_t b[8];
      for (int i = 0; i < 8; ++i) b[i] = uint8_t(uint64_t(x) >> (8 * i));
      int n = 8;
      while (n > 1 && ((b[n - 1] == 0x00 && !(b[n - 2] & 0x80)) || (b[n - 1] == 0xFF && (b[n - 2] & 0x80)))) --n;
      op(0x8a);
      op(uint8_t(n));
      out_.insert(out_.end(), b, b + n);
    }
  }
  void save_float(double d) {
    uint64_t bits;
    std::memcpy(&bits, &d, 8);
    op('G');  // BINFLOAT, big-endian
    for (int i = 7; i >= 0; --i) out_.push_back(uint8_t(bits >> (8 * i)));
  }
  void write_unicode(std::string_view s, const Path& at) {
    if (s.size() > 0xFFFFFFFFull) fail(at, "a str of " + std::to_string(s.size()) + " bytes is longer than 4 GiB");
    op('X');  // BINUNICODE
    u32(uint32_t(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  /// A str, fetched from the memo when an equal one was written before. Text that is not UTF-8 (a Python `bytes`
  /// value loads as such a str) is written as CPython's protocol 2 writes bytes, _codecs.encode(latin-1 text,
  /// 'latin1'), so that it reads back as the same bytes; as BINUNICODE neither Python nor torchlet could decode it.
  void save_str(std::string_view s, const Path& at) {
    if (auto it = strings_.find(std::string(s)); it != strings_.end()) return get(it->second);
    if (is_utf8(s, /*allow_surrogates=*/true)) {
      write_unicode(s, at);
    } else {
      std::string latin1;  // each byte as the code point of the same value, in UTF-8
      for (const char ch : s) {
        const auto c = static_cast<uint8_t>(ch);
        if (c < 0x80) {
          latin1 += ch;
        } else {
          latin1 += static_cast<char>(0xC0 | (c >> 6));
          latin1 += static_cast<char>(0x80 | (c & 0x3F));
        }
      }
      save_global("_codecs", "encode");
      write_unicode(latin1, at);
      memoize();
      save_str("latin1", at);
      op('\x86');  // TUPLE2
      memoize();
      op('R');  // REDUCE
    }
    strings_.emplace(std::string(s), memoize());
  }
  /// GLOBAL 'module\nname\n', memoized.
  void save_global(std::string_view module, std::string_view name) {
    std::string key = std::string(module) + "\n" + std::string(name) + "\n";
    if (auto it = globals_.find(key); it != globals_.end()) return get(it->second);
    op('c');
    out_.insert(out_.end(), key.begin(), key.end());
    globals_.emplace(std::move(key), memoize());
  }
  /// A tuple of ints that is never shared (a tensor's size or stride).
  void save_int_tuple(const Shape& v) {
    if (v.empty()) return op(')');
    if (v.size() > 3) op('(');
    for (int64_t x : v) save_int(x);
    op(v.size() == 1 ? 0x85 : v.size() == 2 ? 0x86 : v.size() == 3 ? 0x87 : 't');
    memoize();
  }

  // ---- containers -------------------------------------------------------------------------------------------
  void save(const Value& v, const Path& at, int64_t depth) {
    switch (v.kind()) {
      case Value::Kind::None: return op('N');
      case Value::Kind::Bool: return op(v.as_bool() ? 0x88 : 0x89);
      case Value::Kind::Int: return save_int(v.as_int());
      case Value::Kind::Double: return save_float(v.as_double());
      case Value::Kind::String: return save_str(v.as_string(), at);
      case Value::Kind::Tensor: return save_tensor(v.as_tensor(), at);
      case Value::Kind::List: return save_list(v, at, depth + 1);
      case Value::Kind::Tuple: return save_tuple(v, at, depth + 1);
      case Value::Kind::Dict: return save_dict(v, at, depth + 1, false);
    }
  }
  void check_depth(const Path& at, int64_t depth) const {
    if (depth > o_.max_depth)
      fail(at, "containers nested deeper than max_depth " + std::to_string(o_.max_depth));
  }
  void save_list(const Value& v, const Path& at, int64_t depth) {
    check_depth(at, depth);
    op(']');  // EMPTY_LIST
    memoize();
    const auto& items = v.as_list();
    if (items.size() == 1) {  // CPython's batch_list_exact: APPEND only for a list of one
      save(items[0], Path{&at, nullptr, 0}, depth);
      return op('a');
    }
    for (size_t i = 0; i < items.size(); i += kBatch) {  // every batch, even a last one of one, is MARK..APPENDS
      op('(');
      for (size_t j = i; j < std::min(items.size(), i + kBatch); ++j) save(items[j], Path{&at, nullptr, j}, depth);
      op('e');
    }
  }
  void save_tuple(const Value& v, const Path& at, int64_t depth) {
    check_depth(at, depth);
    const auto& items = v.as_list();
    if (items.empty()) return op(')');  // EMPTY_TUPLE, never memoized
    const bool share = shareable(v);
    std::string key;
    if (share) {
      memo_key(v, key);
      if (auto it = tuples_.find(key); it != tuples_.end()) return get(it->second);
    }
    if (items.size() > 3) op('(');
    for (size_t j = 0; j < items.size(); ++j) save(items[j], Path{&at, nullptr, j}, depth);
    op(items.size() == 1 ? 0x85 : items.size() == 2 ? 0x86 : items.size() == 3 ? 0x87 : 't');
    const uint32_t id = memoize();
    if (share) tuples_.emplace(std::move(key), id);
  }
  /// A dict; `ordered` writes it as collections.OrderedDict. A trailing "__attributes__" entry makes it an
  /// OrderedDict whose attributes are set by BUILD.
  void save_dict(const Value& v, const Path& at, int64_t depth, bool ordered) {
    check_depth(at, depth);
    const auto& entries = v.as_dict().entries();
    size_t n = entries.size();
    const Value* attrs = nullptr;
    if (n > 0 && entries.back().first.is_string() && entries.back().first.as_string() == "__attributes__") {
      attrs = &entries.back().second;
      Path ap{&at, &entries.back().first, 0};
      if (!attrs->is_dict())
        fail(ap, std::string("the attributes of an OrderedDict must be a dict, got ") + attrs->kind_name());
      --n;
      ordered = true;
    }
    if (ordered) {
      save_global("collections", "OrderedDict");
      op(')');  // EMPTY_TUPLE
      op('R');  // REDUCE
    } else {
      op('}');  // EMPTY_DICT
    }
    memoize();
    setitems(entries, n, ordered, at, depth, false);
    if (attrs && attrs->size() > 0) {
      const Path ap{&at, &entries.back().first, 0};
      save_attributes(*attrs, ap, depth + 1);
      op('b');  // BUILD
    }
  }
  /// The entries [0, n) of a dict in batches as CPython's C pickler writes them. A plain dict
  /// (batch_dict_exact): one entry is a SETITEM; otherwise MARK..SETITEMS batches of 1000 for as long as the
  /// previous batch was full (so 1000 entries end with an empty MARK SETITEMS). An OrderedDict (batch_dict over
  /// an iterator): batches of 1000, a batch of one is a SETITEM, no empty batch. `metadata` writes a `_metadata`
  /// dict value as an OrderedDict (the BUILD state of a state_dict).
  void setitems(const std::vector<ValueDict::Entry>& entries, size_t n, bool ordered, const Path& at, int64_t depth,
                bool metadata) {
    auto item = [&](size_t j) {
      const Path p{&at, &entries[j].first, 0};
      if (!hashable(entries[j].first))
        fail(p, std::string("a dict key that is a ") + entries[j].first.kind_name() +
                    " (or holds one) cannot be a Python dict key");
      save(entries[j].first, p, depth);
      const Value& val = entries[j].second;
      if (metadata && val.is_dict() && entries[j].first.is_string() && entries[j].first.as_string() == "_metadata")
        save_dict(val, p, depth + 1, true);
      else
        save(val, p, depth);
    };
    if (n == 0) return;
    if (ordered || n == 1) {
      for (size_t i = 0; i < n; i += kBatch) {
        const size_t m = std::min(kBatch, n - i);
        if (m > 1) op('(');
        for (size_t j = i; j < i + m; ++j) item(j);
        op(m > 1 ? 'u' : 's');  // SETITEMS / SETITEM
      }
      return;
    }
    size_t i = 0, m = 0;
    do {
      op('(');
      for (m = 0; m < kBatch && i < n; ++m, ++i) item(i);
      op('u');
    } while (m == kBatch);
  }
  /// The BUILD state of an OrderedDict: a plain dict whose `_metadata` dict is an OrderedDict.
  void save_attributes(const Value& attrs, const Path& at, int64_t depth) {
    check_depth(at, depth);
    op('}');
    memoize();
    const auto& entries = attrs.as_dict().entries();
    setitems(entries, entries.size(), false, at, depth, true);
  }

  // ---- tensors ----------------------------------------------------------------------------------------------
  /// The index of `t`'s storage in storages_, registering it on first sight.
  size_t storage_index(const Tensor& t, const Path& at) {
    const Storage& s = t.storage();
    const DType dt = t.dtype();
    const bool untyped = storage_class_name(dt) == "UntypedStorage";
    const DType sdt = untyped ? kUInt8 : dt;
    if (s.defined()) {
      auto& bucket = by_ptr_[s.data()];
      for (size_t i : bucket)
        if (storages_[i].storage.is_same(s)) {
          const PickledStorage& p = storages_[i];
          if (p.dtype != sdt)
            fail(at, "its storage is also viewed as " + std::string(dtype_name(p.dtype)) + " (storage '" + p.key +
                         "'), and PyTorch cannot save one storage as two element types; clone() one of them");
          return i;
        }
      bucket.push_back(storages_.size());
    }
    PickledStorage p;
    p.key = std::to_string(storages_.size());
    p.storage = s;
    p.dtype = sdt;
    p.numel = static_cast<int64_t>(s.nbytes()) / element_size(sdt);
    storages_.push_back(std::move(p));
    key_memo_.push_back(UINT32_MAX);
    return storages_.size() - 1;
  }

  void save_tensor(const Tensor& t, const Path& at) {
    if (!t.defined()) fail(at, "the tensor is undefined (a default-constructed Tensor)");
    const auto* id = &t.unsafe_impl();
    if (auto it = tensors_.find(id); it != tensors_.end()) return get(it->second);
    const DType dt = t.dtype();
    const bool v3 = storage_class_name(dt) == "UntypedStorage";
    const size_t si = storage_index(t, at);
    // The view must lie inside the storage (a corrupt tensor would otherwise make an unreadable file).
    if (t.numel() > 0) {
      const int64_t es = element_size(dt);
      int64_t last = t.storage_offset();
      for (int64_t d = 0; d < t.dim(); ++d) {
        if (t.strides()[d] < 0) fail(at, "negative strides cannot be saved");
        last += (t.sizes()[d] - 1) * t.strides()[d];
      }
      if ((last + 1) * es > static_cast<int64_t>(t.storage().nbytes()))
        fail(at, "the view (offset " + std::to_string(t.storage_offset()) + ", last element " + std::to_string(last) +
                     ") lies outside its storage of " + std::to_string(t.storage().nbytes()) + " bytes");
    }
    save_global("torch._utils", v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2");
    op('(');  // MARK: the arguments
    {
      // Persistent id ('storage', torch.<X>Storage, key, 'cpu', numel), then BINPERSID.
      op('(');
      save_str("storage", at);
      save_global("torch", storage_class_name(dt));
      PickledStorage& ps = storages_[si];
      if (key_memo_[si] == UINT32_MAX) {
        write_unicode(ps.key, at);
        key_memo_[si] = memoize();
      } else {
        get(key_memo_[si]);
      }
      save_str("cpu", at);
      save_int(ps.numel);
      op('t');
      memoize();
      op('Q');  // BINPERSID
    }
    save_int(t.storage_offset());
    save_int_tuple(t.sizes());
    save_int_tuple(t.strides());
    op(t.requires_grad() ? 0x88 : 0x89);
    save_global("collections", "OrderedDict");  // backward_hooks = OrderedDict()
    op(')');
    op('R');
    memoize();
    if (v3) save_global("torch", dtype_name(dt));
    op('t');
    memoize();
    op('R');
    tensors_.emplace(id, memoize());
  }

  static constexpr size_t kBatch = 1000;  // CPython's pickler batches APPENDS/SETITEMS by 1000
  const PickleOptions& o_;
  std::vector<uint8_t> out_;
  uint32_t memo_ = 0;
  std::unordered_map<std::string, uint32_t> strings_, globals_, tuples_;
  std::unordered_map<const void*, uint32_t> tensors_;
  std::unordered_map<const void*, std::vector<size_t>> by_ptr_;
  std::vector<PickledStorage> storages_;
  std::vector<uint32_t> key_memo_;
};

}  // namespace detail::pkw

/// Pickles `value` (protocol 2) as `torch.save` writes `data.pkl`; the result lists the storages the pickle
/// references by key. Raises ValueError naming the path ("state_dict.fc.weight") for what cannot be saved: an
/// undefined tensor, one storage viewed as two element types, a list or dict used as a dict key, nesting deeper
/// than max_depth, or a non-dict `"__attributes__"` entry.
inline Pickled pickle(const Value& value, const PickleOptions& options = {}) {
  detail::pkw::Writer w(options);
  return w.run(value);
}

}  // namespace torchlet::io
