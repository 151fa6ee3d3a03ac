#pragma once
/// \file A restricted, iterative pickle interpreter for the `data.pkl` inside PyTorch checkpoints (protocols 2-5).
/// It never executes code from the file: globals resolve against an allowlist (OrderedDict, the tensor rebuild
/// functions, `torch.<X>Storage`, dtypes, torch.Size, set/frozenset, ...); every other class becomes an inert
/// object (a dict) that can only be instantiated with NEWOBJ and filled with BUILD; any other call is refused.
///
/// Mapping to Value:
///  * dict / OrderedDict -> dict (order kept). Attributes set on an OrderedDict by BUILD (PyTorch's `_metadata`)
///    go to a trailing entry with the reserved key `"__attributes__"` (see pickled_attributes()).
///  * inert objects (`torch.save(model)`: torch.nn.modules.*, user classes) -> dict whose first entry is
///    `"__class__": "module.Name"`, followed by the entries of the BUILD state (`__dict__`).
///  * set / frozenset -> list; bytes -> str holding the raw bytes; torch.Size -> tuple; dtype globals -> str
///    ("torch.float32"); tensors -> Tensor views of shared storages (one storage per persistent-id key).
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "torchlet/core/dtype.hpp"
#include "torchlet/core/error.hpp"
#include "torchlet/io/utf8.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::io {

/// Limits that bound the work and memory one pickle may cause; each exceeded limit raises LimitError.
struct UnpickleOptions {
  size_t max_pickle_bytes = size_t{1} << 30;         ///< largest accepted pickle
  int64_t max_depth = 1000;                          ///< deepest container nesting in the result
  size_t max_memo_entries = size_t{1} << 20;         ///< most memo slots (BINPUT/MEMOIZE)
  size_t max_container_size = size_t{1} << 24;       ///< most elements of one list/tuple/dict/set
  size_t max_stack = size_t{1} << 17;                ///< most items on the interpreter stack
  /// Most objects the pickle may create, and most values in the result. torch.save of a ResNet-152 state_dict
  /// creates ~16,000 and of the whole model ~32,000; each live object costs ~250 bytes while loading, so the
  /// default bounds that memory to ~0.5 GiB (popped objects nothing refers to any more are freed as it goes).
  size_t max_nodes = size_t{1} << 21;
  size_t max_expansion = 64;  ///< most result values per pickle object, beyond 4096 (memo replay: billion laughs)
  int64_t max_total_tensor_bytes = int64_t{1} << 40;  ///< most bytes of all distinct storages together
  /// Most bytes of str/bytes in the result, values and dict keys, counted at every place they appear: a string
  /// stored once in the memo and fetched N times is copied N times (memo replay of a long string). Checked
  /// before the result is built, so a refused pickle allocates nothing for it.
  size_t max_result_bytes = size_t{256} << 20;
  bool allow_objects = true;  ///< turn unknown classes into inert dicts (needed for `torch.save(model)`)
};

/// Supplies the bytes of storage `key` (archive/data/<key>): `dtype` and `numel` come from the persistent id
/// ('storage', <X>Storage, key, location, numel); the returned Storage must hold numel * element_size(dtype) bytes.
using StorageResolver =
    std::function<Storage(const std::string& key, DType dtype, int64_t numel, const std::string& location)>;

namespace detail::pk {

struct Node;
using NodeP = std::shared_ptr<Node>;

/// One object on the interpreter's stack or memo (shared, so mutations after BINPUT are seen by BINGET).
struct Node {
  enum class K : uint8_t { Leaf, List, Tuple, Dict, Set, Object, Global, Storage, Tensor };
  K k = K::Leaf;
  Value leaf;                                 // Leaf: None/bool/int/float/str/Tensor
  std::vector<NodeP> items;                   // List, Tuple, Set
  std::vector<std::pair<NodeP, NodeP>> entries;  // Dict, Object (state)
  std::string name;                           // Global: "module.name"; Object: class; Dict: "" or OrderedDict
  NodeP attrs;                                // Dict: BUILD state; Object: non-dict BUILD state
  int64_t depth = 0;                          // lower bound of container nesting (1 for a container; checked early)
  DType dtype = kUInt8;                       // Global (storage type, dtype), Storage, Tensor
  std::unique_ptr<struct NodeExtra> x;        // Storage and Tensor only (keeps the common node small)
};

/// The fields of Storage and Tensor nodes.
struct NodeExtra {
  // Storage (resolved lazily, once the whole pickle was accepted):
  Storage storage;
  bool resolved = false;
  int64_t numel = 0;
  std::string key;
  std::string location;
  // Tensor (a view of the Storage node `base`, built when converting; the node's `leaf` caches it):
  NodeP base;
  Shape sizes, strides;
  int64_t offset = 0;
};

/// What kind of error a check raises (maps to the IOError subclasses of core/error.hpp).
enum class EK : uint8_t { Corrupt, Unsafe, Limit, Format };

enum class G : uint8_t {
  OrderedDict, RebuildV2, RebuildV3, RebuildV1, RebuildParam, RebuildParamState, RebuildFromType, Size, Set,
  FrozenSet, CodecsEncode, Reconstructor, Object, Device, StorageType, DType, TensorType, Class
};

inline bool is_identifier(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return !std::isdigit(static_cast<unsigned char>(s[0]));
}

inline const char* opcode_name(uint8_t op) {
  switch (op) {
    case '(': return "MARK"; case '.': return "STOP"; case '0': return "POP"; case '1': return "POP_MARK";
    case '2': return "DUP"; case 'F': return "FLOAT"; case 'I': return "INT"; case 'J': return "BININT";
    case 'K': return "BININT1"; case 'L': return "LONG"; case 'M': return "BININT2"; case 'N': return "NONE";
    case 'P': return "PERSID"; case 'Q': return "BINPERSID"; case 'R': return "REDUCE"; case 'S': return "STRING";
    case 'T': return "BINSTRING"; case 'U': return "SHORT_BINSTRING"; case 'V': return "UNICODE";
    case 'X': return "BINUNICODE"; case 'a': return "APPEND"; case 'b': return "BUILD"; case 'c': return "GLOBAL";
    case 'd': return "DICT"; case '}': return "EMPTY_DICT"; case 'e': return "APPENDS"; case 'g': return "GET";
    case 'h': return "BINGET"; case 'i': return "INST"; case 'j': return "LONG_BINGET"; case 'l': return "LIST";
    case ']': return "EMPTY_LIST"; case 'o': return "OBJ"; case 'p': return "PUT"; case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT"; case 's': return "SETITEM"; case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE"; case 'u': return "SETITEMS"; case 'G': return "BINFLOAT";
    case 'B': return "BINBYTES"; case 'C': return "SHORT_BINBYTES";
    case 0x80: return "PROTO"; case 0x81: return "NEWOBJ"; case 0x82: return "EXT1"; case 0x83: return "EXT2";
    case 0x84: return "EXT4"; case 0x85: return "TUPLE1"; case 0x86: return "TUPLE2"; case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE"; case 0x89: return "NEWFALSE"; case 0x8a: return "LONG1"; case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE"; case 0x8d: return "BINUNICODE8"; case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET"; case 0x90: return "ADDITEMS"; case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX"; case 0x93: return "STACK_GLOBAL"; case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME"; case 0x96: return "BYTEARRAY8"; case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
  }
  return "unknown";
}

/// Modules whose globals are always refused by name (code execution, I/O, introspection).
inline bool is_dangerous_module(std::string_view module) {
  const std::string_view top = module.substr(0, module.find('.'));
  static constexpr std::string_view always_bad[] = {
      "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "pickle", "_pickle",
      "marshal", "ctypes", "code", "codeop", "pty", "webbrowser", "multiprocessing", "signal", "platform",
      "pathlib", "io", "_io", "tempfile", "threading", "_thread", "asyncio", "http", "urllib", "ftplib", "smtplib",
      "telnetlib", "timeit", "pdb", "bdb", "commands", "popen2", "operator", "functools", "types", "inspect", "gc",
      "dill", "cloudpickle", "posixpath", "ntpath", "glob", "zipimport", "pkgutil", "site", "ast", "linecache"};
  for (auto b : always_bad)
    if (top == b) return true;
  return false;
}

/// The interpreter state for one unpickle() call.
class Machine {
 public:
  Machine(std::span<const uint8_t> b, const UnpickleOptions& o, StorageResolver r)
      : b_(b), o_(o), resolve_(std::move(r)) {}
  ~Machine() { teardown(); }
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  /// Runs to STOP; with `trailing_ok`, bytes after STOP are left for the caller (see consumed()).
  Value run(bool trailing_ok = false) {
    TORCHLET_CHECK(b_.size() <= o_.max_pickle_bytes, LimitError, "[unpickle] pickle of ", b_.size(),
                   " bytes exceeds max_pickle_bytes ", o_.max_pickle_bytes);
    TORCHLET_CHECK(!b_.empty(), CorruptFileError, "[unpickle] empty pickle (no PROTO/STOP)");
    NodeP result;
    while (!result) {
      TORCHLET_CHECK(pos_ < b_.size(), CorruptFileError, "[unpickle] truncated pickle: no STOP opcode before offset ",
                     pos_, " (the save was probably interrupted)");
      op_pos_ = pos_;
      op_ = b_[pos_++];
      result = step();
    }
    TORCHLET_CHECK(trailing_ok || pos_ == b_.size(), CorruptFileError, "[unpickle] ", b_.size() - pos_,
                   " trailing bytes after STOP at offset ", op_pos_, " (trailing data: refused)");
    return convert(result);
  }
  /// Bytes interpreted so far (after run(): the offset just past STOP).
  size_t consumed() const { return pos_; }

 private:
  // ---- errors --------------------------------------------------------------------------------------------
  template <class... A>
  [[noreturn]] void fail_as(EK k, const A&... a) const {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", op_);
    const std::string at = ::torchlet::detail::cat(" (opcode ", opcode_name(op_), " ", buf, " at offset ", op_pos_, ")");
    switch (k) {
      case EK::Unsafe: TORCHLET_THROW(UnsafeFileError, "[unpickle] ", a..., at);
      case EK::Limit: TORCHLET_THROW(LimitError, "[unpickle] ", a..., at);
      case EK::Format: TORCHLET_THROW(FormatError, "[unpickle] ", a..., at);
      case EK::Corrupt: break;
    }
    TORCHLET_THROW(CorruptFileError, "[unpickle] ", a..., at);
  }
  /// A corrupt pickle (CorruptFileError).
  template <class... A>
  [[noreturn]] void fail(const A&... a) const {
    fail_as(EK::Corrupt, a...);
  }
  template <class... A>
  void check(bool c, const A&... a) const {
    if (!c) fail_as(EK::Corrupt, a...);
  }
  template <class... A>
  void check_as(bool c, EK k, const A&... a) const {
    if (!c) fail_as(k, a...);
  }

  /// Best effort: " for key ['state_dict']['w']", the dict keys / list indices of the value being built, read from
  /// the containers that MARKs are filling (SETITEMS / APPENDS batches); "" when none is known.
  std::string where() const {
    std::string path;
    for (size_t i = 0; i < marks_.size(); ++i) {
      const size_t m = marks_[i];
      if (m == 0 || m > stack_.size()) continue;
      const Node& c = *stack_[m - 1];
      const size_t end = i + 1 < marks_.size() ? std::min(marks_[i + 1], stack_.size()) : stack_.size();
      if (end <= m) continue;
      const size_t n = end - m;  // items pushed since the MARK (the last one may be the pending value)
      if (c.k == Node::K::Dict || c.k == Node::K::Object) {
        const Node& key = *stack_[m + ((n - 1) & ~size_t{1})];
        if (key.k != Node::K::Leaf || !(key.leaf.is_string() || key.leaf.is_int())) continue;
        path += key.leaf.is_string() ? "['" + key.leaf.as_string() + "']" : "[" + key.leaf.repr() + "]";
      } else if (c.k == Node::K::List) {
        path += "[" + std::to_string(c.items.size() + n - 1) + "]";
      }
    }
    return path.empty() || path.size() > 512 ? std::string() : " for key " + path;
  }

  // ---- reading ---------------------------------------------------------------------------------------------
  const uint8_t* take(uint64_t n) {
    check(n <= b_.size() - pos_, "truncated pickle: operand of ", n, " bytes runs past the end (", b_.size() - pos_,
          " left)");
    check(pos_ >= frame_end_ || n <= frame_end_ - pos_, "operand of ", n, " bytes straddles the end of the frame at ",
          "offset ", frame_end_, " (frame mismatch)");
    const uint8_t* p = b_.data() + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  uint64_t le(int n) {
    const uint8_t* p = take(static_cast<uint64_t>(n));
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }
  std::string line() {
    const size_t start = pos_;
    while (pos_ < b_.size() && b_[pos_] != '\n') ++pos_;
    check(pos_ < b_.size(), "truncated pickle: no newline after text operand");
    check(start >= frame_end_ || pos_ < frame_end_, "text operand straddles the end of the frame at offset ",
          frame_end_, " (frame mismatch)");
    check_as(pos_ - start <= 1024, EK::Limit, "text operand longer than 1024 bytes");
    std::string s(reinterpret_cast<const char*>(b_.data() + start), pos_ - start);
    ++pos_;
    return s;
  }

  // ---- nodes -----------------------------------------------------------------------------------------------
  NodeP make(Node::K k) {
    check_as(created_ < o_.max_nodes, EK::Limit, "more than max_nodes ", o_.max_nodes,
             " objects (UnpickleOptions::max_nodes)");
    ++created_;
    if (arena_.size() >= next_sweep_) sweep();
    auto n = std::make_shared<Node>();
    n->k = k;
    // the same count the pickler uses: a container is one level, a scalar (or tensor) inside it none
    n->depth = k == Node::K::List || k == Node::K::Tuple || k == Node::K::Dict || k == Node::K::Set ||
                       k == Node::K::Object ? 1 : 0;
    arena_.push_back(n);
    return n;
  }
  /// Cuts the links of a node (so that destroying it never recurses).
  static void unlink(Node& n) {
    n.items.clear();
    n.entries.clear();
    n.attrs.reset();
    if (n.x) n.x->base.reset();
  }
  /// Frees the nodes only the arena still holds (popped, and no stack slot, memo slot or other node refers to
  /// them), so that garbage such as EMPTY_LIST POP repeated costs no memory. Each is unlinked first: every node
  /// is in the arena, so unlinking drops no node and no destructor recurses. Amortized O(1) per node.
  void sweep() {
    size_t keep = 0;
    for (size_t i = 0; i < arena_.size(); ++i) {
      if (arena_[i].use_count() == 1) {
        unlink(*arena_[i]);
        arena_[i].reset();
      } else {
        if (keep != i) arena_[keep] = std::move(arena_[i]);
        ++keep;
      }
    }
    arena_.resize(keep);
    next_sweep_ = std::max(kMinSweep, 2 * keep);
  }
  NodeP leaf(Value v) {
    NodeP n = make(Node::K::Leaf);
    n->leaf = std::move(v);
    return n;
  }
  void push(NodeP n) {
    check_as(stack_.size() < o_.max_stack, EK::Limit, "stack deeper than max_stack ", o_.max_stack);
    stack_.push_back(std::move(n));
  }
  NodeP pop() {
    check(stack_.size() > base(), "stack underflow");
    NodeP n = std::move(stack_.back());
    stack_.pop_back();
    return n;
  }
  NodeP& top() {
    check(stack_.size() > base(), "stack underflow");
    return stack_.back();
  }
  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<NodeP> pop_mark() {
    check(!marks_.empty(), "no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<NodeP> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(m)),
                             std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }
  void child_added(Node& parent, const Node& child, size_t size) {
    check_as(size <= o_.max_container_size, EK::Limit, "container of more than max_container_size ",
             o_.max_container_size, " elements");
    parent.depth = std::max(parent.depth, child.depth + 1);
    check_as(parent.depth <= o_.max_depth, EK::Limit, "nesting deeper than max_depth ", o_.max_depth);
  }
  void add_item(Node& c, NodeP v) {
    check(c.k == Node::K::List || c.k == Node::K::Set, "APPEND/ADDITEMS target is a ", kind(c), ", not a list/set");
    child_added(c, *v, c.items.size() + 1);
    c.items.push_back(std::move(v));
  }
  void set_item(Node& d, NodeP k, NodeP v) {
    check(d.k == Node::K::Dict, "SETITEM target is a ", kind(d), ", not a dict");
    check(k->k == Node::K::Leaf || k->k == Node::K::Tuple || k->k == Node::K::Tensor, "unhashable dict key of kind ",
          kind(*k));
    child_added(d, *k, d.entries.size() + 1);
    child_added(d, *v, d.entries.size() + 1);
    d.entries.emplace_back(std::move(k), std::move(v));
  }
  NodeP tuple(std::vector<NodeP> items) {
    NodeP t = make(Node::K::Tuple);
    check_as(items.size() <= o_.max_container_size, EK::Limit, "tuple of more than max_container_size elements");
    for (auto& i : items) t->depth = std::max(t->depth, i->depth + 1);
    check_as(t->depth <= o_.max_depth, EK::Limit, "nesting deeper than max_depth ", o_.max_depth);
    t->items = std::move(items);
    return t;
  }
  static const char* kind(const Node& n) {
    switch (n.k) {
      case Node::K::Leaf: return n.leaf.kind_name();
      case Node::K::List: return "list";
      case Node::K::Tuple: return "tuple";
      case Node::K::Dict: return "dict";
      case Node::K::Set: return "set";
      case Node::K::Object: return "object";
      case Node::K::Global: return "global";
      case Node::K::Storage: return "storage";
      case Node::K::Tensor: return "tensor";
    }
    return "?";
  }

  // ---- memo ------------------------------------------------------------------------------------------------
  void put(uint64_t idx) {
    check(!stack_.empty(), "stack underflow");
    check_as(idx < o_.max_memo_entries, EK::Limit, "memo index ", idx, " is not below max_memo_entries ",
             o_.max_memo_entries);
    if (idx >= memo_.size()) memo_.resize(static_cast<size_t>(idx) + 1);  // indices are dense in real pickles
    if (!memo_[idx]) ++memo_count_;
    memo_[idx] = stack_.back();
  }
  void get(uint64_t idx) {
    check(idx < memo_.size() && memo_[static_cast<size_t>(idx)], "memo index ", idx, " was never stored");
    push(memo_[static_cast<size_t>(idx)]);
  }

  // ---- globals ---------------------------------------------------------------------------------------------
  [[noreturn]] void refuse(const std::string& full) const {
    fail_as(EK::Unsafe, "refusing to load global ", full, ": torchlet never executes code from a file");
  }
  NodeP global(std::string module, const std::string& name) {
    if (module == "__builtin__") module = "builtins";
    if (module == "copy_reg") module = "copyreg";
    const std::string full = module + "." + name;
    check_as(module.size() + name.size() <= 512, EK::Unsafe, "global name too long");
    bool mod_ok = !module.empty();
    for (size_t s = 0, e; mod_ok && s <= module.size(); s = e + 1) {
      e = module.find('.', s);
      if (e == std::string::npos) e = module.size();
      mod_ok = is_identifier(std::string_view(module).substr(s, e - s));
    }
    if (!mod_ok || !is_identifier(name) || is_dangerous_module(module) || name.find("__") != std::string::npos)
      refuse(full);
    NodeP g = make(Node::K::Global);
    g->name = full;
    auto set = [&](G kind) {
      g->leaf = static_cast<int64_t>(kind);
      return g;
    };
    if (full == "collections.OrderedDict") return set(G::OrderedDict);
    if (full == "torch._utils._rebuild_tensor_v2") return set(G::RebuildV2);
    if (full == "torch._utils._rebuild_tensor_v3") return set(G::RebuildV3);
    if (full == "torch._utils._rebuild_tensor") return set(G::RebuildV1);
    if (full == "torch._utils._rebuild_parameter") return set(G::RebuildParam);
    if (full == "torch._utils._rebuild_parameter_with_state") return set(G::RebuildParamState);
    if (full == "torch._tensor._rebuild_from_type_v2") return set(G::RebuildFromType);
    if (full == "torch.Size") return set(G::Size);
    if (full == "torch.device") return set(G::Device);
    if (full == "torch.Tensor" || full == "torch.nn.parameter.Parameter" || full == "torch.nn.Parameter")
      return set(G::TensorType);  // only as _rebuild_from_type_v2's new_type; never called
    if (full == "builtins.set") return set(G::Set);
    if (full == "builtins.frozenset") return set(G::FrozenSet);
    if (full == "builtins.object") return set(G::Object);
    if (full == "_codecs.encode") return set(G::CodecsEncode);
    if (full == "copyreg._reconstructor") return set(G::Reconstructor);
    const bool torchish = module == "torch" || module.rfind("torch.", 0) == 0;
    if (torchish && name.find("Storage") != std::string::npos) {
      static const std::pair<std::string_view, DType> storages[] = {
          {"DoubleStorage", kFloat64}, {"FloatStorage", kFloat32}, {"HalfStorage", kFloat16},
          {"BFloat16Storage", kBFloat16}, {"LongStorage", kInt64}, {"IntStorage", kInt32},
          {"ShortStorage", kInt16}, {"CharStorage", kInt8}, {"ByteStorage", kUInt8}, {"BoolStorage", kBool},
          {"UntypedStorage", kUInt8}, {"_UntypedStorage", kUInt8}};
      for (const auto& [n, dt] : storages)
        if (name == n) {
          g->dtype = dt;
          return set(G::StorageType);
        }
      fail_as(EK::Format, "storage type ", full, " is not supported (complex, quantized or unknown storage)", where());
    }
    if (module == "torch") {
      try {
        const DType dt = dtype_from_name(name);
        if (dtype_name(dt) == name) {  // exact names only ("float32", "uint16", "float8_e4m3fn", ...)
          g->dtype = dt;
          return set(G::DType);
        }
      } catch (const DTypeError&) {
      }
      if (name.rfind("complex", 0) == 0 || name.rfind("qint", 0) == 0 || name.rfind("quint", 0) == 0 ||
          name == "cfloat" || name == "cdouble" || name == "chalf")
        fail_as(EK::Format, "dtype torch.", name, " is not supported (complex and quantized tensors)", where());
    }
    if (module == "torch._utils" && name.rfind("_rebuild_", 0) == 0)
      fail_as(EK::Format, "tensor kind ", full, " is not supported (quantized, sparse, meta, nested or device tensors)",
              where());
    // An unknown class: inert, usable only by NEWOBJ / copyreg._reconstructor and BUILD, never called.
    const bool class_like = std::isupper(static_cast<unsigned char>(name[0])) != 0;
    const bool torch_core = module == "torch" || module == "torch._utils" || module == "torch._tensor" ||
                            module == "torch.serialization" || module == "torch.storage" || module == "builtins" ||
                            module == "copyreg" || module == "_codecs" || module == "collections";
    if (o_.allow_objects && class_like && !torch_core) {
      set(G::Class);
      return g;
    }
    refuse(full);
  }
  static G gkind(const Node& n) { return static_cast<G>(n.leaf.as_int()); }

  // ---- helpers for call arguments ---------------------------------------------------------------------------
  const std::vector<NodeP>& tuple_args(const Node& args, size_t lo, size_t hi, const std::string& who) const {
    check(args.k == Node::K::Tuple, who, ": arguments are a ", kind(args), ", not a tuple");
    check(args.items.size() >= lo && args.items.size() <= hi, who, ": ", args.items.size(),
          " arguments, expected ", lo, (lo == hi ? "" : "..") , (lo == hi ? std::string() : std::to_string(hi)));
    return args.items;
  }
  int64_t int_of(const Node& n, const char* what) const {
    check(n.k == Node::K::Leaf && n.leaf.is_int(), what, " must be an int, got ", kind(n));
    return n.leaf.as_int();
  }
  std::vector<int64_t> ints_of(const Node& n, const char* what) const {
    check(n.k == Node::K::Tuple || n.k == Node::K::List, what, " must be a tuple of ints, got ", kind(n));
    std::vector<int64_t> v;
    for (const auto& i : n.items) v.push_back(int_of(*i, what));
    return v;
  }

  // ---- tensors ----------------------------------------------------------------------------------------------
  NodeP rebuild_tensor(const Node& args, G g) {
    const char* who = g == G::RebuildV3 ? "_rebuild_tensor_v3" : g == G::RebuildV1 ? "_rebuild_tensor"
                                                                                  : "_rebuild_tensor_v2";
    const auto& a = g == G::RebuildV3 ? tuple_args(args, 7, 8, who)
                    : g == G::RebuildV1 ? tuple_args(args, 4, 4, who)
                                        : tuple_args(args, 6, 7, who);
    check(a[0]->k == Node::K::Storage, who, ": first argument is a ", kind(*a[0]), ", not a storage");
    const Node& st = *a[0];
    DType dtype = st.dtype;
    int64_t storage_numel = st.x->numel;
    if (g == G::RebuildV3) {
      check(a[6]->k == Node::K::Global && gkind(*a[6]) == G::DType, who, ": dtype argument is not a torch dtype");
      dtype = a[6]->dtype;
      const int64_t es = element_size(dtype);
      const int64_t nbytes = st.x->numel * element_size(st.dtype);
      check(nbytes % es == 0, who, ": storage '", st.x->key, "' of ", nbytes, " bytes is not a whole number of ",
            dtype_name(dtype), " elements");
      storage_numel = nbytes / es;
    } else {
      check(dtype == st.dtype, who, ": internal dtype mismatch");
    }
    const int64_t offset = int_of(*a[1], "storage_offset");
    const auto sizes = ints_of(*a[2], "size");
    const auto strides = ints_of(*a[3], "stride");
    check(sizes.size() == strides.size(), who, ": ", sizes.size(), " sizes but ", strides.size(), " strides");
    check_as(sizes.size() <= 64, EK::Limit, who, ": more than 64 dimensions");
    check(offset >= 0, who, ": negative storage offset ", offset);
    int64_t numel = 1, hi = offset;
    for (size_t d = 0; d < sizes.size(); ++d) {
      check(sizes[d] >= 0, who, ": negative size ", sizes[d], " in dim ", d);
      check(strides[d] >= 0, who, ": negative stride ", strides[d], " in dim ", d, " (not supported)");
      check(!__builtin_mul_overflow(numel, sizes[d], &numel), who, ": element count overflows int64");
    }
    if (numel > 0) {
      for (size_t d = 0; d < sizes.size(); ++d) {
        int64_t ext;
        check(!__builtin_mul_overflow(sizes[d] - 1, strides[d], &ext) && !__builtin_add_overflow(hi, ext, &hi),
              who, ": view extent overflows int64");
      }
      check(hi < storage_numel, who, ": view (offset ", offset, ", last element ", hi, ") is out of bounds of storage '",
            st.x->key, "' with ", storage_numel, " elements");
    }
    NodeP t = make(Node::K::Tensor);
    t->dtype = dtype;
    t->x = std::make_unique<NodeExtra>();
    t->x->base = a[0];
    t->x->sizes = Shape(sizes.begin(), sizes.end());
    t->x->strides = Shape(strides.begin(), strides.end());
    t->x->offset = offset;
    return t;
  }

  NodeP storage_from_pid(const Node& pid) {
    check(pid.k == Node::K::Tuple, "invalid persistent id: a ", kind(pid), ", not a tuple");
    const auto& a = pid.items;
    // legacy torch.save(model): ('module', <class>, source_file, source) stands for a module's class (kept inert)
    if (a.size() == 4 && a[0]->k == Node::K::Leaf && a[0]->leaf.is_string() && a[0]->leaf.as_string() == "module" &&
        a[1]->k == Node::K::Global && gkind(*a[1]) == G::Class)
      return a[1];
    check(a.size() == 5 || a.size() == 6, "invalid persistent id: persistent id has ", a.size(),
          " fields, expected 5 ('storage', type, key, location, numel)");
    check(a[0]->k == Node::K::Leaf && a[0]->leaf.is_string() && a[0]->leaf.as_string() == "storage",
          "invalid persistent id: it does not start with 'storage'");
    check(a[1]->k == Node::K::Global && gkind(*a[1]) == G::StorageType,
          "invalid persistent id: the storage type is a ", kind(*a[1]), ", not a torch storage class");
    check(a[2]->k == Node::K::Leaf && a[2]->leaf.is_string(), "invalid persistent id: the key is not a str");
    check(a[3]->k == Node::K::Leaf && a[3]->leaf.is_string(), "invalid persistent id: the location is not a str");
    const std::string& key = a[2]->leaf.as_string();
    check_as(!key.empty() && key.size() <= 64 &&
                 std::all_of(key.begin(), key.end(),
                             [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }),
             EK::Unsafe, "invalid storage key '", key.substr(0, 64), "' (must match [0-9A-Za-z_]+)");
    check(a[4]->k == Node::K::Leaf && a[4]->leaf.is_int(), "invalid persistent id: storage numel must be an int, got ",
          kind(*a[4]));
    const int64_t numel = a[4]->leaf.as_int();
    check(numel >= 0, "invalid persistent id: negative storage numel ", numel);
    if (a.size() == 6)
      check_as(a[5]->k == Node::K::Leaf && a[5]->leaf.is_none(), EK::Format, "legacy storage views are not supported");
    const DType dtype = a[1]->dtype;
    if (auto it = storages_.find(key); it != storages_.end()) {
      check(it->second->dtype == dtype && it->second->x->numel == numel, "storage '", key,
            "' referenced again with a different dtype or size");
      return it->second;
    }
    int64_t nbytes;
    check_as(!__builtin_mul_overflow(numel, element_size(dtype), &nbytes) &&
                 !__builtin_add_overflow(total_bytes_, nbytes, &total_bytes_) &&
                 total_bytes_ <= o_.max_total_tensor_bytes,
             EK::Limit, "storage '", key, "' (", numel, " x ", dtype_name(dtype),
             "): storages exceed max_total_tensor_bytes ", o_.max_total_tensor_bytes);
    NodeP n = make(Node::K::Storage);
    n->dtype = dtype;
    n->x = std::make_unique<NodeExtra>();
    n->x->numel = numel;
    n->x->key = key;
    n->x->location = a[3]->leaf.as_string();
    storages_.emplace(key, n);
    return n;
  }

  // Loads the bytes of a storage node through the resolver (once), after the whole pickle was accepted.
  const Storage& resolve_storage(Node& st) {
    if (st.x->resolved) return st.x->storage;
    check(static_cast<bool>(resolve_), "no storage resolver to load storage '", st.x->key, "'");
    const int64_t nbytes = st.x->numel * element_size(st.dtype);
    Storage s = resolve_(st.x->key, st.dtype, st.x->numel, st.x->location);
    TORCHLET_CHECK(static_cast<int64_t>(s.nbytes()) == nbytes, CorruptFileError, "[unpickle] storage '", st.x->key,
                   "' has ", s.nbytes(), " bytes, expected ", nbytes, " (", st.x->numel, " x ", dtype_name(st.dtype),
                   "): storage size mismatch");
    st.x->storage = std::move(s);
    st.x->resolved = true;
    return st.x->storage;
  }

  // ---- calls ------------------------------------------------------------------------------------------------
  NodeP call(const Node& f, const Node& args) {
    check(f.k == Node::K::Global, "REDUCE on a ", kind(f), ", not a global");
    const G g = gkind(f);
    switch (g) {
      case G::OrderedDict: {
        const auto& a = tuple_args(args, 0, 1, f.name);
        NodeP d = make(Node::K::Dict);
        d->name = "collections.OrderedDict";
        if (a.size() == 1) {
          check(a[0]->k == Node::K::List || a[0]->k == Node::K::Tuple, "OrderedDict argument is not a list");
          for (const auto& p : a[0]->items) {
            check(p->k == Node::K::Tuple && p->items.size() == 2, "OrderedDict item is not a pair");
            set_item(*d, p->items[0], p->items[1]);
          }
        }
        return d;
      }
      case G::RebuildV1: case G::RebuildV2: case G::RebuildV3: return rebuild_tensor(args, g);
      case G::RebuildParam: case G::RebuildParamState: {
        const auto& a = g == G::RebuildParam ? tuple_args(args, 3, 3, f.name) : tuple_args(args, 4, 4, f.name);
        check(a[0]->k == Node::K::Tensor, f.name, ": data is not a tensor");
        return a[0];
      }
      case G::RebuildFromType: {
        const auto& a = tuple_args(args, 4, 4, f.name);
        check(a[0]->k == Node::K::Global, f.name, ": func is not a global");
        const G inner = gkind(*a[0]);
        check(inner == G::RebuildV1 || inner == G::RebuildV2 || inner == G::RebuildV3 || inner == G::RebuildParam,
              f.name, ": func ", a[0]->name, " is not a tensor rebuild function");
        return call(*a[0], *a[2]);
      }
      case G::Size: {
        const auto& a = tuple_args(args, 0, 1, f.name);
        if (a.empty()) return tuple({});
        ints_of(*a[0], "torch.Size");
        return tuple(a[0]->items);
      }
      case G::Device: {
        const auto& a = tuple_args(args, 1, 2, f.name);
        check(a[0]->k == Node::K::Leaf && a[0]->leaf.is_string(), "torch.device argument is not a str");
        std::string s = a[0]->leaf.as_string();
        if (a.size() == 2) s += ":" + std::to_string(int_of(*a[1], "device index"));
        return leaf(Value(s));
      }
      case G::Set: case G::FrozenSet: {
        const auto& a = tuple_args(args, 0, 1, f.name);
        NodeP s = make(Node::K::Set);
        if (a.size() == 1) {
          check(a[0]->k == Node::K::List || a[0]->k == Node::K::Tuple, f.name, " argument is not a list");
          for (const auto& i : a[0]->items) add_item(*s, i);
        }
        return s;
      }
      case G::CodecsEncode: {
        const auto& a = tuple_args(args, 2, 2, f.name);
        check(a[0]->k == Node::K::Leaf && a[0]->leaf.is_string() && a[1]->k == Node::K::Leaf &&
                  a[1]->leaf.is_string() && a[1]->leaf.as_string() == "latin1",
              "_codecs.encode is only supported as (str, 'latin1') for bytes");
        const std::string& u = a[0]->leaf.as_string();
        std::string out;
        for (size_t i = 0; i < u.size(); ++i) {
          const auto c = static_cast<uint8_t>(u[i]);
          if (c < 0x80) out += static_cast<char>(c);
          else {
            check((c == 0xC2 || c == 0xC3) && i + 1 < u.size(), "_codecs.encode: text is not latin-1");
            out += static_cast<char>(((c & 0x03) << 6) | (static_cast<uint8_t>(u[++i]) & 0x3F));
          }
        }
        return leaf(Value(std::move(out)));
      }
      case G::Reconstructor: {
        const auto& a = tuple_args(args, 3, 3, f.name);
        check(a[1]->k == Node::K::Global && gkind(*a[1]) == G::Object && a[2]->k == Node::K::Leaf &&
                  a[2]->leaf.is_none(),
              "copyreg._reconstructor is only supported as (cls, object, None)");
        return new_object(*a[0]);
      }
      default: break;
    }
    fail_as(EK::Unsafe, "refusing to call global ", f.name, ": torchlet never executes code from a file");
  }
  NodeP new_object(const Node& cls) {
    check_as(cls.k == Node::K::Global, EK::Unsafe, "NEWOBJ on a ", kind(cls), ", not a class");
    const G g = gkind(cls);
    if (g == G::OrderedDict) {
      NodeP d = make(Node::K::Dict);
      d->name = "collections.OrderedDict";
      return d;
    }
    if (g == G::Set || g == G::FrozenSet) return make(Node::K::Set);
    check_as(g == G::Class, EK::Unsafe, "refusing to instantiate global ", cls.name,
             ": torchlet never executes code from a file");
    NodeP o = make(Node::K::Object);
    o->name = cls.name;
    return o;
  }
  void build(Node& obj, NodeP state) {
    if (obj.k == Node::K::Object) {
      NodeP dict = state;
      if (state->k == Node::K::Tuple && state->items.size() == 2) {  // (state, slotstate)
        if (state->items[1]->k == Node::K::Dict)
          for (auto& e : state->items[1]->entries) set_item_obj(obj, e.first, e.second);
        dict = state->items[0];
      }
      if (dict->k == Node::K::Dict) {
        for (auto& e : dict->entries) set_item_obj(obj, e.first, e.second);
      } else if (!(dict->k == Node::K::Leaf && dict->leaf.is_none())) {
        child_added(obj, *dict, obj.entries.size() + 1);
        obj.attrs = dict;
      }
      return;
    }
    if (obj.k == Node::K::Dict) {
      check(state->k == Node::K::Dict || (state->k == Node::K::Leaf && state->leaf.is_none()),
            "BUILD state of a dict is a ", kind(*state), ", not a dict");
      if (state->k == Node::K::Dict && !state->entries.empty()) {  // empty attributes: nothing to keep
        child_added(obj, *state, obj.entries.size() + 1);
        obj.attrs = state;
      }
      return;
    }
    if (obj.k == Node::K::Tensor) return;  // tensor __dict__ / hooks: ignored
    fail_as(EK::Unsafe, "BUILD on a ", kind(obj), " is not allowed (disallowed BUILD target)");
  }
  void set_item_obj(Node& o, NodeP k, NodeP v) {
    check(k->k == Node::K::Leaf && k->leaf.is_string(), "object attribute name is not a str");
    child_added(o, *v, o.entries.size() + 1);
    o.entries.emplace_back(std::move(k), std::move(v));
  }

  // ---- the opcode loop --------------------------------------------------------------------------------------
  std::string text(uint64_t n) {
    const uint8_t* p = take(n);
    return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }
  NodeP str_leaf(uint64_t n, bool utf8 = false) {
    check(n <= b_.size() - pos_, "truncated pickle: string of ", n, " bytes runs past the end (", b_.size() - pos_,
          " left)");
    std::string s = text(n);
    check(!utf8 || is_utf8(s, /*allow_surrogates=*/true), "string of ", n, " bytes is not valid UTF-8");
    return leaf(Value(std::move(s)));
  }
  NodeP long_leaf(uint64_t n) {
    const uint8_t* p = take(n);
    if (n == 0) return leaf(Value(int64_t{0}));
    // Two's complement little-endian; accept any length whose value fits int64.
    const bool neg = (p[n - 1] & 0x80) != 0;
    size_t len = static_cast<size_t>(n);
    while (len > 1 && p[len - 1] == (neg ? 0xFF : 0x00) && (((p[len - 2] & 0x80) != 0) == neg)) --len;
    check(len <= 8, "integer of ", n, " bytes does not fit int64");
    uint64_t v = neg ? ~uint64_t{0} : 0;
    for (size_t i = 0; i < len; ++i) {
      v &= ~(uint64_t{0xFF} << (8 * i));
      v |= uint64_t{p[i]} << (8 * i);
    }
    return leaf(Value(static_cast<int64_t>(v)));
  }

  NodeP step() {
    switch (op_) {
      case 0x80: {  // PROTO
        const uint8_t v = *take(1);
        check(op_pos_ == 0, "PROTO not at the start");
        check_as(v >= 2 && v <= 5, EK::Format, "unsupported pickle protocol ", int(v), " (2..5 are supported)");
        return nullptr;
      }
      case 0x95: {  // FRAME
        check(pos_ >= frame_end_, "FRAME before the end of the current frame at offset ", frame_end_,
              " (frame mismatch)");
        const uint64_t n = le(8);
        check(n <= b_.size() - pos_, "frame of ", n, " bytes runs past the end");
        frame_end_ = pos_ + static_cast<size_t>(n);
        return nullptr;
      }
      case '.': {
        check(marks_.empty(), "STOP inside an unclosed MARK");
        check(stack_.size() == 1, "STOP with ", stack_.size(), " items on the stack (expected 1)");
        return stack_.back();
      }
      case '(':  // one MARK per container level, and two more for a tensor's arguments and persistent id
        check_as(marks_.size() < static_cast<size_t>(o_.max_depth) + kMarkSlack, EK::Limit,
                 "MARKs nested deeper than max_depth ", o_.max_depth, " + ", kMarkSlack);
        marks_.push_back(stack_.size());
        return nullptr;
      case '0': pop(); return nullptr;
      case '1': pop_mark(); return nullptr;
      case '2': push(top()); return nullptr;
      case 'N':  // one shared node: leaves are never mutated
        if (!none_) none_ = leaf(Value());
        push(none_);
        return nullptr;
      case 0x88: push(leaf(Value(true))); return nullptr;
      case 0x89: push(leaf(Value(false))); return nullptr;
      case 'J': push(leaf(Value(static_cast<int64_t>(static_cast<int32_t>(static_cast<uint32_t>(le(4))))))); return nullptr;
      case 'K': push(leaf(Value(static_cast<int64_t>(le(1))))); return nullptr;
      case 'M': push(leaf(Value(static_cast<int64_t>(le(2))))); return nullptr;
      case 0x8a: { const uint64_t n = le(1); push(long_leaf(n)); return nullptr; }
      case 0x8b: {
        const uint64_t n = le(4);
        check(n <= 8 || n <= b_.size() - pos_, "truncated pickle: LONG4 of ", n, " bytes runs past the end");
        check(n <= 64, "integer of ", n, " bytes does not fit int64");
        push(long_leaf(n));
        return nullptr;
      }
      case 'G': {
        const uint8_t* p = take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];  // big-endian
        double d;
        std::memcpy(&d, &bits, 8);
        push(leaf(Value(d)));
        return nullptr;
      }
      case 'X': { const uint64_t n = le(4); push(str_leaf(n, true)); return nullptr; }
      case 0x8c: { const uint64_t n = le(1); push(str_leaf(n, true)); return nullptr; }
      case 0x8d: { const uint64_t n = le(8); push(str_leaf(n, true)); return nullptr; }
      case 'U': case 'C': { const uint64_t n = le(1); push(str_leaf(n)); return nullptr; }
      case 'T': case 'B': { const uint64_t n = le(4); push(str_leaf(n)); return nullptr; }
      case 0x8e: { const uint64_t n = le(8); push(str_leaf(n)); return nullptr; }
      case ']': push(make(Node::K::List)); return nullptr;
      case '}': push(make(Node::K::Dict)); return nullptr;
      case ')': push(tuple({})); return nullptr;
      case 0x8f: push(make(Node::K::Set)); return nullptr;
      case 'l': {
        auto items = pop_mark();
        NodeP l = make(Node::K::List);
        for (auto& i : items) add_item(*l, std::move(i));
        push(l);
        return nullptr;
      }
      case 't': push(tuple(pop_mark())); return nullptr;
      case 0x91: {
        auto items = pop_mark();
        NodeP s = make(Node::K::Set);
        for (auto& i : items) add_item(*s, std::move(i));
        push(s);
        return nullptr;
      }
      case 0x85: case 0x86: case 0x87: {
        const size_t n = op_ - 0x84u;
        check(stack_.size() >= base() + n, "stack underflow");
        std::vector<NodeP> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
        stack_.resize(stack_.size() - n);
        push(tuple(std::move(items)));
        return nullptr;
      }
      case 'd': {
        auto items = pop_mark();
        check(items.size() % 2 == 0, "odd number of items for DICT");
        NodeP d = make(Node::K::Dict);
        for (size_t i = 0; i < items.size(); i += 2) set_item(*d, items[i], items[i + 1]);
        push(d);
        return nullptr;
      }
      case 'a': { NodeP v = pop(); add_item(*top(), std::move(v)); return nullptr; }
      case 'e': case 0x90: {
        auto items = pop_mark();
        Node& l = *top();
        for (auto& i : items) add_item(l, std::move(i));
        return nullptr;
      }
      case 's': {
        NodeP v = pop();
        NodeP k = pop();
        set_item(*top(), std::move(k), std::move(v));
        return nullptr;
      }
      case 'u': {
        auto items = pop_mark();
        check(items.size() % 2 == 0, "odd number of items for SETITEMS");
        Node& d = *top();
        for (size_t i = 0; i < items.size(); i += 2) set_item(d, items[i], items[i + 1]);
        return nullptr;
      }
      case 'q': put(le(1)); return nullptr;
      case 'r': put(le(4)); return nullptr;
      case 0x94: put(memo_count_); return nullptr;
      case 'h': get(le(1)); return nullptr;
      case 'j': get(le(4)); return nullptr;
      case 'c': {
        std::string module = line();
        std::string name = line();
        push(global(std::move(module), name));
        return nullptr;
      }
      case 0x93: {
        NodeP name = pop();
        NodeP module = pop();
        check_as(name->k == Node::K::Leaf && name->leaf.is_string() && module->k == Node::K::Leaf &&
                     module->leaf.is_string(),
                 EK::Unsafe, "STACK_GLOBAL operands are not strs (disallowed opcode use)");
        push(global(module->leaf.as_string(), name->leaf.as_string()));
        return nullptr;
      }
      case 'R': {
        NodeP args = pop();
        NodeP f = pop();
        push(call(*f, *args));
        return nullptr;
      }
      case 0x81: {
        NodeP args = pop();
        NodeP cls = pop();
        check(args->k == Node::K::Tuple, "NEWOBJ arguments are not a tuple");
        push(new_object(*cls));
        return nullptr;
      }
      case 0x92: {
        NodeP kwargs = pop();
        NodeP args = pop();
        NodeP cls = pop();
        check(args->k == Node::K::Tuple && kwargs->k == Node::K::Dict, "NEWOBJ_EX arguments are not (tuple, dict)");
        push(new_object(*cls));
        return nullptr;
      }
      case 'b': {
        NodeP state = pop();
        build(*top(), std::move(state));
        return nullptr;
      }
      case 'Q': {
        NodeP pid = pop();
        push(storage_from_pid(*pid));
        return nullptr;
      }
      case 'P': fail_as(EK::Unsafe, "disallowed opcode: text persistent ids are refused");
      case 'i': case 'o':
        fail_as(EK::Unsafe, "disallowed opcode ", opcode_name(op_), " (instantiates arbitrary classes) is refused");
      case 0x82: case 0x83: case 0x84: fail_as(EK::Unsafe, "disallowed opcode: extension registry opcodes are refused");
      case 0x96: case 0x97: case 0x98: fail_as(EK::Format, "out-of-band buffers are not supported");
      case 'F': case 'I': case 'L': case 'S': case 'V': case 'g': case 'p':
        fail_as(EK::Unsafe, "disallowed opcode: protocol-0 text opcode ", opcode_name(op_), " is refused");
      default: fail("unknown opcode");
    }
  }

  // ---- conversion to Value (iterative) ----------------------------------------------------------------------
  /// The result: a first walk only counts (values, depth, cycles, str bytes), so that every limit fires before
  /// anything is copied; the second builds the Value tree.
  Value convert(const NodeP& root) {
    (void)walk(root, false);
    return walk(root, true);
  }
  /// One iterative depth-first walk from `root` checking the limits; builds the Value only when `build`.
  Value walk(const NodeP& root, bool build) {
    struct Frame {
      const Node* n;
      Value v;
      size_t i = 0;   // next child
      Value key;      // pending dict key
    };
    std::vector<Frame> frames;
    std::unordered_set<const Node*> on_path;
    size_t built = 0, text_bytes = 0;
    const size_t expansion_cap = 4096 + o_.max_expansion * created_;
    Value result;
    auto open = [&](const Node* n) -> bool {  // true when n needs a frame; else its value comes from scalar()
      check_as(++built <= o_.max_nodes, EK::Limit, "result has more than max_nodes ", o_.max_nodes, " values");
      check_as(built <= expansion_cap, EK::Limit, "result would hold more than ", expansion_cap, " values from ",
               created_, " pickle objects (memo replay bomb; max_expansion ", o_.max_expansion, ")");
      return n->k == Node::K::List || n->k == Node::K::Tuple || n->k == Node::K::Set || n->k == Node::K::Dict ||
             n->k == Node::K::Object;
    };
    auto count_text = [&](size_t n) {
      text_bytes += n;
      check_as(text_bytes <= o_.max_result_bytes, EK::Limit, "result would hold more than max_result_bytes ",
               o_.max_result_bytes, " bytes of str/bytes (a long string fetched from the memo again and again?); ",
               "raise UnpickleOptions::max_result_bytes to load it");
    };
    auto scalar = [&](const Node* n) -> Value {
      if (n->k == Node::K::Leaf) {
        if (n->leaf.is_string()) count_text(n->leaf.as_string().size());
        return build ? n->leaf : Value();
      }
      if (n->k == Node::K::Global) {
        count_text(n->name.size());
        return build ? Value(n->name) : Value();
      }
      if (n->k == Node::K::Tensor) return build ? tensor_value(const_cast<Node&>(*n)) : Value();
      fail_as(EK::Format, "a bare storage '", n->x->key, "' outside a tensor is not supported");
    };
    auto start = [&](const Node* n) {
      check_as(frames.size() < static_cast<size_t>(o_.max_depth), EK::Limit, "nesting deeper than max_depth ",
               o_.max_depth);
      check_as(on_path.insert(n).second, EK::Limit,
               "recursive (self-containing) structure is not supported (infinitely deep)");
      Frame f{n, Value(), 0, Value()};
      if (n->k == Node::K::Object) count_text(n->name.size());
      if (build) {
        if (n->k == Node::K::List || n->k == Node::K::Set) f.v = Value::list();
        else if (n->k == Node::K::Tuple) f.v = Value::tuple();
        else {
          f.v = Value(ValueDict());
          if (n->k == Node::K::Object) f.v.as_dict().set(Value("__class__"), Value(n->name));
        }
      }
      frames.push_back(std::move(f));
    };
    auto deliver = [&](Value v) {
      if (!build) return;
      if (frames.empty()) {
        result = std::move(v);
        return;
      }
      Frame& p = frames.back();
      const Node* n = p.n;
      if (n->k == Node::K::Dict || n->k == Node::K::Object) {
        const size_t ne = n->entries.size();
        if (p.i <= 2 * ne) {
          if (p.i % 2 == 1) p.key = std::move(v);
          else p.v.as_dict().set(p.key, std::move(v));
        } else {
          p.v.as_dict().set(Value(n->k == Node::K::Dict ? "__attributes__" : "__state__"), std::move(v));
        }
      } else {
        p.v.as_list().push_back(std::move(v));
      }
    };
    if (open(root.get())) start(root.get());
    else return scalar(root.get());
    while (!frames.empty()) {
      Frame& f = frames.back();
      const Node* n = f.n;
      const Node* next = nullptr;
      if (n->k == Node::K::Dict || n->k == Node::K::Object) {
        const size_t ne = n->entries.size();
        if (f.i < 2 * ne) {
          next = f.i % 2 == 0 ? n->entries[f.i / 2].first.get() : n->entries[f.i / 2].second.get();
          ++f.i;
        } else if (f.i == 2 * ne && n->attrs) {
          next = n->attrs.get();
          ++f.i;
        }
      } else if (f.i < n->items.size()) {
        next = n->items[f.i++].get();
      }
      if (next) {
        if (open(next)) start(next);
        else deliver(scalar(next));
        continue;
      }
      Value done = std::move(f.v);
      on_path.erase(n);
      frames.pop_back();
      deliver(std::move(done));
    }
    return result;
  }

  // The Tensor of a tensor node, viewing its storage (resolved on first use); the same Tensor for every reference.
  Value tensor_value(Node& t) {
    if (!t.leaf.is_tensor()) {
      const Storage& s = resolve_storage(*t.x->base);
      t.leaf = Value(Tensor(s, t.dtype, t.x->sizes, t.x->strides, t.x->offset));
    }
    return t.leaf;
  }

  // Breaks every reference between nodes so that destruction never recurses (even with cycles).
  void teardown() {
    stack_.clear();
    memo_.clear();
    none_.reset();
    storages_.clear();
    for (auto& n : arena_) unlink(*n);
    arena_.clear();
  }

  static constexpr size_t kMinSweep = size_t{1} << 16;  // arena size below which sweep() is not worth it
  static constexpr size_t kMarkSlack = 8;                // MARKs allowed beyond max_depth (tensor arguments)

  std::span<const uint8_t> b_;
  const UnpickleOptions& o_;
  StorageResolver resolve_;
  size_t pos_ = 0, op_pos_ = 0, frame_end_ = 0;
  uint8_t op_ = 0;
  std::vector<NodeP> stack_;
  std::vector<size_t> marks_;
  std::vector<NodeP> memo_;  // slot i: the object stored at memo index i (null: never stored)
  size_t memo_count_ = 0;     // slots stored (MEMOIZE's next index)
  std::unordered_map<std::string, NodeP> storages_;
  std::vector<NodeP> arena_;  // every node not yet swept (see sweep())
  size_t created_ = 0;        // nodes made so far (checked against max_nodes)
  size_t next_sweep_ = kMinSweep;
  NodeP none_;
  int64_t total_bytes_ = 0;
};

}  // namespace detail::pk

/// Interprets a pickle (protocols 2-5) as an inert Value tree without executing anything; `resolve` supplies the
/// storage of each persistent id, once per key, so tensors sharing a storage are views of one Storage. Raises
/// "[unpickle] <what> (opcode <NAME> 0x.. at offset N)" as UnsafeFileError (refused globals, opcodes, BUILD
/// targets, storage keys), CorruptFileError (corrupt pickle, bad persistent id or view), LimitError (options) or
/// FormatError (unsupported protocol, dtype or tensor kind). The whole pickle is interpreted and checked before
/// `resolve` is called for any storage: a refused file never allocates tensor memory.
inline Value unpickle(std::span<const uint8_t> bytes, const UnpickleOptions& options, StorageResolver resolve) {
  detail::pk::Machine m(bytes, options, std::move(resolve));
  return m.run();
}

/// Like unpickle(), for a stream of pickles (the legacy torch.save format): interprets the pickle at the start
/// of `bytes`, stops after its STOP opcode and stores in `consumed` how many bytes it took.
inline Value unpickle_prefix(std::span<const uint8_t> bytes, const UnpickleOptions& options, StorageResolver resolve,
                             size_t& consumed) {
  detail::pk::Machine m(bytes, options, std::move(resolve));
  Value v = m.run(true);
  consumed = m.consumed();
  return v;
}

/// The attributes BUILD set on a pickled OrderedDict (e.g. `{'_metadata': ...}` of a state_dict), or nullptr.
inline const Value* pickled_attributes(const Value& dict) {
  if (!dict.is_dict()) return nullptr;
  const Value* a = dict.find(Value("__attributes__"));
  return a && a->is_dict() ? a : nullptr;
}

/// The class name of an inert pickled object (`"torch.nn.modules.linear.Linear"`), or "" for other values.
inline std::string pickled_class(const Value& v) {
  if (!v.is_dict()) return {};
  const Value* c = v.find(Value("__class__"));
  return c && c->is_string() ? c->as_string() : std::string();
}

/// The state_dict of a pickled whole module (`torch.save(model)`): an ordered dict of dotted keys -> tensors,
/// walking `_parameters`, then persistent `_buffers` (skipping `_non_persistent_buffers_set` and None entries),
/// then `_modules` recursively, as Module.state_dict() orders them. Iterative; raises ValueError when `module`
/// is not a pickled module object, or naming the key and where it is when a name is not a str.
inline Value module_state_dict(const Value& module) {
  TORCHLET_CHECK(!pickled_class(module).empty() && module.contains(Value("_modules")), ValueError,
                 "[unpickle] module_state_dict: the value is not a pickled torch.nn.Module object");
  // The name `k` of an entry of `prefix` + `table` (e.g. "layer1.0." + "_parameters"), which must be a str.
  auto name = [](const Value& k, const std::string& prefix, const char* table) -> const std::string& {
    if (!k.is_string()) {
      const std::string owner =
          prefix.empty() ? std::string("the module's ") : "module '" + prefix.substr(0, prefix.size() - 1) + "' ";
      TORCHLET_THROW(ValueError, "[unpickle] module_state_dict: key ", k.repr().substr(0, 200), " in ", owner, table,
                     ": expected a str, got ", k.kind_name());
    }
    return k.as_string();
  };
  ValueDict out;
  struct Item {
    const Value* m;
    std::string prefix;
  };
  std::vector<Item> todo{{&module, ""}};
  while (!todo.empty()) {
    Item it = std::move(todo.back());
    todo.pop_back();
    const Value& m = *it.m;
    if (const Value* p = m.find(Value("_parameters")); p && p->is_dict())
      for (const auto& [k, v] : p->as_dict())
        if (v.is_tensor()) out.set(Value(it.prefix + name(k, it.prefix, "_parameters")), v);
    std::vector<std::string> skip;
    if (const Value* np = m.find(Value("_non_persistent_buffers_set")); np && np->is_sequence())
      for (const auto& s : np->as_list())
        if (s.is_string()) skip.push_back(s.as_string());
    if (const Value* b = m.find(Value("_buffers")); b && b->is_dict())
      for (const auto& [k, v] : b->as_dict())
        if (v.is_tensor() && std::find(skip.begin(), skip.end(), name(k, it.prefix, "_buffers")) == skip.end())
          out.set(Value(it.prefix + k.as_string()), v);
    if (const Value* mods = m.find(Value("_modules")); mods && mods->is_dict()) {
      const auto& e = mods->as_dict().entries();
      for (auto r = e.rbegin(); r != e.rend(); ++r)  // reversed, so the stack pops them in order
        if (r->second.is_dict())
          todo.push_back({&r->second, it.prefix + name(r->first, it.prefix, "_modules") + "."});
    }
  }
  return Value(std::move(out));
}

}  // namespace torchlet::io
