#pragma once
/// \file Value: an inert tree of what a PyTorch pickle holds (None, bool, int, float, str, Tensor, list, tuple,
/// and insertion-ordered dicts with str or int keys). Checkpoints, optimizer and scheduler state_dicts use it:
/// `{'epoch': 3, 'state_dict': {...}, 'optimizer': {'state': {0: {...}}, 'param_groups': [...]}}`.
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "torchlet/core/error.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet {

class Value;

namespace detail {
/// A heap box with deep-copy semantics, so a Value can hold lists and dicts of Values.
template <class T>
class ValueBox {
 public:
  ValueBox() : p_(std::make_unique<T>()) {}
  explicit ValueBox(T v) : p_(std::make_unique<T>(std::move(v))) {}
  ValueBox(const ValueBox& o) : p_(std::make_unique<T>(*o.p_)) {}
  ValueBox(ValueBox&&) noexcept = default;
  ValueBox& operator=(const ValueBox& o) {
    if (this != &o) p_ = std::make_unique<T>(*o.p_);
    return *this;
  }
  ValueBox& operator=(ValueBox&&) noexcept = default;
  T& operator*() const { return *p_; }
  T* operator->() const { return p_.get(); }

 private:
  std::unique_ptr<T> p_;
};

/// Python's repr() of a float: the shortest round-trip digits, fixed notation for exponents in [-4, 16),
/// otherwise scientific with a two-digit exponent ('0.1', '1.0', '1e-08', '1e+16', 'nan', 'inf').
inline std::string py_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // e.g. "-1.2345e-05"
  const size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  const int exp10 = std::stoi(sci.substr(e + 1));
  const bool neg = !mant.empty() && mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out;
  if (exp10 >= -4 && exp10 < 16) {
    if (exp10 < 0) {
      out = "0." + std::string(static_cast<size_t>(-exp10 - 1), '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exp10 + 1) {
      out = digits + std::string(static_cast<size_t>(exp10 + 1 - static_cast<int>(digits.size())), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<size_t>(exp10 + 1)) + "." + digits.substr(static_cast<size_t>(exp10 + 1));
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    const int a = exp10 < 0 ? -exp10 : exp10;
    out += std::string("e") + (exp10 < 0 ? "-" : "+") + (a < 10 ? "0" : "") + std::to_string(a);
  }
  return neg ? "-" + out : out;
}
}  // namespace detail

/// An insertion-ordered dict whose keys are Values (str and int keys are looked up in O(1)).
class ValueDict;

/// A node of a pickle-like tree: None, bool, int (int64), float (double), str, Tensor, list, tuple or dict.
/// Values copy deeply, except tensors, which are handles (a copy shares the tensor, as in Python).
class Value {
 public:
  /// What a Value holds; the names are Python's (see kind_name()).
  enum class Kind : uint8_t { None, Bool, Int, Double, String, Tensor, List, Tuple, Dict };
  /// The elements of a list or tuple.
  using List = std::vector<Value>;
  /// The entries of a dict.
  using Dict = ValueDict;

  /// None.
  Value() = default;
  /// None.
  Value(std::nullptr_t) {}  // NOLINT(google-explicit-constructor)
  /// A bool (for `bool`) or an int (for every other integer type).
  template <std::integral I>
  Value(I v) {  // NOLINT(google-explicit-constructor)
    if constexpr (std::is_same_v<I, bool>) v_ = v;
    else v_ = static_cast<int64_t>(v);
  }
  /// A float.
  template <std::floating_point F>
  Value(F v) : v_(static_cast<double>(v)) {}  // NOLINT(google-explicit-constructor)
  /// A str.
  Value(const char* s) : v_(std::string(s)) {}  // NOLINT(google-explicit-constructor)
  /// A str.
  Value(std::string s) : v_(std::move(s)) {}  // NOLINT(google-explicit-constructor)
  /// A str.
  Value(std::string_view s) : v_(std::string(s)) {}  // NOLINT(google-explicit-constructor)
  /// A tensor (shared, not copied).
  Value(Tensor t) : v_(std::move(t)) {}  // NOLINT(google-explicit-constructor)
  /// A dict.
  Value(ValueDict d);  // NOLINT(google-explicit-constructor)

  /// A list of the given elements: `Value::list({0, 1, 2})`.
  static Value list(List items = {}) { return Value(std::move(items), false); }
  /// A tuple of the given elements: `Value::tuple({0.9, 0.999})`.
  static Value tuple(List items = {}) { return Value(std::move(items), true); }
  /// A list of numbers, strings or tensors from a vector.
  template <class T>
  static Value list_of(const std::vector<T>& items) {
    List l;
    l.reserve(items.size());
    for (const T& x : items) l.emplace_back(x);
    return list(std::move(l));
  }
  /// A dict of the given entries, in order: `Value::dict({{"lr", 0.1}, {"momentum", 0.9}})`.
  static Value dict(std::initializer_list<std::pair<Value, Value>> entries = {});

  // ---- kind ------------------------------------------------------------------------------------------
  /// What this Value holds.
  Kind kind() const { return static_cast<Kind>(v_.index()); }
  /// Python's name of the kind: NoneType, bool, int, float, str, Tensor, list, tuple, dict.
  const char* kind_name() const { return kind_name(kind()); }
  /// Python's name of a kind.
  static const char* kind_name(Kind k) {
    switch (k) {
      case Kind::None: return "NoneType";
      case Kind::Bool: return "bool";
      case Kind::Int: return "int";
      case Kind::Double: return "float";
      case Kind::String: return "str";
      case Kind::Tensor: return "Tensor";
      case Kind::List: return "list";
      case Kind::Tuple: return "tuple";
      case Kind::Dict: return "dict";
    }
    return "?";
  }
  bool is_none() const { return kind() == Kind::None; }      ///< True for None.
  bool is_bool() const { return kind() == Kind::Bool; }      ///< True for a bool.
  bool is_int() const { return kind() == Kind::Int; }        ///< True for an int (not a bool).
  bool is_double() const { return kind() == Kind::Double; }  ///< True for a float.
  bool is_number() const { return is_int() || is_double(); }  ///< True for an int or a float.
  bool is_string() const { return kind() == Kind::String; }  ///< True for a str.
  bool is_tensor() const { return kind() == Kind::Tensor; }  ///< True for a tensor.
  bool is_list() const { return kind() == Kind::List; }      ///< True for a list.
  bool is_tuple() const { return kind() == Kind::Tuple; }    ///< True for a tuple.
  bool is_sequence() const { return is_list() || is_tuple(); }  ///< True for a list or a tuple.
  bool is_dict() const { return kind() == Kind::Dict; }      ///< True for a dict.

  // ---- scalars (raise ValueError on the wrong kind) ----------------------------------------------------
  /// The bool.
  bool as_bool() const { return std::get<bool>(expect(Kind::Bool, "bool").v_); }
  /// The int.
  int64_t as_int() const { return std::get<int64_t>(expect(Kind::Int, "int").v_); }
  /// The number as a double: a float, or an int converted (PyTorch checkpoints mix `0` and `0.0`).
  double as_double() const {
    if (is_int()) return static_cast<double>(std::get<int64_t>(v_));
    return std::get<double>(expect(Kind::Double, "float").v_);
  }
  /// The str.
  const std::string& as_string() const { return std::get<std::string>(expect(Kind::String, "str").v_); }
  /// The tensor.
  const Tensor& as_tensor() const { return std::get<Tensor>(expect(Kind::Tensor, "Tensor").v_); }

  // ---- lists and tuples ----------------------------------------------------------------------------
  /// The elements of a list or tuple.
  const List& as_list() const {
    if (is_list()) return *std::get<static_cast<size_t>(Kind::List)>(v_);
    if (!is_tuple()) type_error("list or tuple", *this, {});
    return *std::get<static_cast<size_t>(Kind::Tuple)>(v_);
  }
  /// The elements of a list or tuple, mutable.
  List& as_list() { return const_cast<List&>(std::as_const(*this).as_list()); }
  /// Appends to a list.
  void push_back(Value v) {
    if (!is_list()) type_error("list", *this, {});
    as_list().push_back(std::move(v));
  }

  // ---- dicts -----------------------------------------------------------------------------------------
  /// The dict.
  const ValueDict& as_dict() const;
  /// The dict, mutable.
  ValueDict& as_dict();

  /// Number of elements of a list/tuple, or of entries of a dict.
  size_t size() const;
  /// True when a dict has `key` (false for other kinds).
  bool contains(const Value& key) const;
  /// `self[key]`: a dict entry by key (str, int, ...), or a list/tuple element by integer index (negative
  /// counts from the end). Raises ValueError for a missing key, IndexError for an index out of range.
  const Value& at(const Value& key) const;
  /// Mutable at().
  Value& at(const Value& key) { return const_cast<Value&>(std::as_const(*this).at(key)); }
  /// at() with an int: a dict's int key, or a list/tuple index.
  template <std::integral I>
  const Value& at(I key) const { return at(Value(static_cast<int64_t>(key))); }
  /// Mutable at() with an int.
  template <std::integral I>
  Value& at(I key) { return at(Value(static_cast<int64_t>(key))); }
  /// at() with a str key (avoids building a Value).
  const Value& at(std::string_view key) const { return at(Value(key)); }
  /// Mutable at() with a str key.
  Value& at(std::string_view key) { return at(Value(key)); }
  /// at() with a C string key.
  const Value& at(const char* key) const { return at(Value(key)); }
  /// Mutable at() with a C string key.
  Value& at(const char* key) { return at(Value(key)); }
  /// The dict entry for `key`, inserted as None when missing (Python's `d[key] = ...`); makes None a dict.
  Value& operator[](const Value& key);
  /// The dict entry for `key`, or nullptr when absent (or when this is not a dict).
  const Value* find(const Value& key) const;

  // ---- comparison and printing -----------------------------------------------------------------------
  /// Deep equality; tensors compare equal when they are the same tensor (not merely equal values).
  bool operator==(const Value& o) const;
  /// Python-style repr: `{'lr': 0.1, 'betas': (0.9, 0.999), 'state': {0: tensor(shape=[2, 3], dtype=float32)}}`.
  std::string repr() const {
    std::string out;
    repr_into(out);
    return out;
  }

  /// Internal: raises ValueError `[Value] expected <what> at "<path>", got <kind>`.
  [[noreturn]] static void type_error(std::string_view what, const Value& got, std::string_view path) {
    TORCHLET_THROW(ValueError, "[Value] expected ", what, path.empty() ? "" : " at \"", path,
                   path.empty() ? "" : "\"", ", got ", got.kind_name());
  }

 private:
  Value(List items, bool tuple) {
    if (tuple) v_.emplace<static_cast<size_t>(Kind::Tuple)>(std::move(items));
    else v_.emplace<static_cast<size_t>(Kind::List)>(std::move(items));
  }
  const Value& expect(Kind k, const char* what) const {
    if (kind() != k) type_error(what, *this, {});
    return *this;
  }
  void repr_into(std::string& out) const;

  std::variant<std::monostate, bool, int64_t, double, std::string, Tensor, detail::ValueBox<List>,
               detail::ValueBox<List>, detail::ValueBox<ValueDict>>
      v_;
};

class ValueDict {
 public:
  /// One entry: key and value.
  using Entry = std::pair<Value, Value>;

  ValueDict() = default;
  /// The given entries in order (a repeated key keeps its first position and takes the last value).
  ValueDict(std::initializer_list<Entry> entries) {
    for (const auto& e : entries) set(e.first, e.second);
  }

  size_t size() const { return entries_.size(); }     ///< Number of entries.
  bool empty() const { return entries_.empty(); }     ///< True without entries.
  auto begin() const { return entries_.begin(); }     ///< Entries in insertion order.
  auto end() const { return entries_.end(); }         ///< End of the entries.
  auto begin() { return entries_.begin(); }           ///< Entries in insertion order (values mutable).
  auto end() { return entries_.end(); }               ///< End of the entries.
  const std::vector<Entry>& entries() const { return entries_; }  ///< All entries in insertion order.

  /// The position of `key`, or -1.
  int64_t index_of(const Value& key) const {
    if (key.is_string()) {
      auto it = str_index_.find(key.as_string());
      return it == str_index_.end() ? -1 : static_cast<int64_t>(it->second);
    }
    if (key.is_int()) {
      auto it = int_index_.find(key.as_int());
      return it == int_index_.end() ? -1 : static_cast<int64_t>(it->second);
    }
    for (size_t i = 0; i < entries_.size(); ++i)
      if (entries_[i].first == key) return static_cast<int64_t>(i);
    return -1;
  }
  /// True when `key` is present.
  bool contains(const Value& key) const { return index_of(key) >= 0; }
  /// The value for `key`, or nullptr.
  const Value* find(const Value& key) const {
    const int64_t i = index_of(key);
    return i < 0 ? nullptr : &entries_[static_cast<size_t>(i)].second;
  }
  /// The value for `key`, or nullptr (mutable).
  Value* find(const Value& key) {
    const int64_t i = index_of(key);
    return i < 0 ? nullptr : &entries_[static_cast<size_t>(i)].second;
  }
  /// The value for `key`; raises ValueError naming the key when absent.
  const Value& at(const Value& key) const {
    const Value* v = find(key);
    TORCHLET_CHECK(v != nullptr, ValueError, "[Value] key ", key.repr(), " not found");
    return *v;
  }
  /// Sets `key` to `value` (appended when new, replaced in place otherwise); returns the stored value.
  Value& set(const Value& key, Value value) {
    if (Value* v = find(key)) return *v = std::move(value);
    const size_t i = entries_.size();
    if (key.is_string()) str_index_.emplace(key.as_string(), i);
    else if (key.is_int()) int_index_.emplace(key.as_int(), i);
    entries_.emplace_back(key, std::move(value));
    return entries_.back().second;
  }
  /// The value for `key`, inserted as None when absent.
  Value& operator[](const Value& key) {
    if (Value* v = find(key)) return *v;
    return set(key, Value());
  }
  /// Removes `key`; returns whether it was present.
  bool erase(const Value& key) {
    const int64_t i = index_of(key);
    if (i < 0) return false;
    entries_.erase(entries_.begin() + i);
    reindex();
    return true;
  }
  /// The keys in order.
  std::vector<Value> keys() const {
    std::vector<Value> k;
    for (const auto& e : entries_) k.push_back(e.first);
    return k;
  }
  /// Deep equality, order included.
  bool operator==(const ValueDict& o) const { return entries_ == o.entries_; }

 private:
  void reindex() {
    str_index_.clear();
    int_index_.clear();
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].first.is_string()) str_index_.emplace(entries_[i].first.as_string(), i);
      else if (entries_[i].first.is_int()) int_index_.emplace(entries_[i].first.as_int(), i);
    }
  }
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> str_index_;
  std::unordered_map<int64_t, size_t> int_index_;
};

inline Value::Value(ValueDict d) { v_.emplace<static_cast<size_t>(Kind::Dict)>(std::move(d)); }

inline Value Value::dict(std::initializer_list<std::pair<Value, Value>> entries) { return Value(ValueDict(entries)); }

inline const ValueDict& Value::as_dict() const {
  if (!is_dict()) type_error("dict", *this, {});
  return *std::get<detail::ValueBox<ValueDict>>(v_);
}
inline ValueDict& Value::as_dict() {
  if (!is_dict()) type_error("dict", *this, {});
  return *std::get<detail::ValueBox<ValueDict>>(v_);
}

inline size_t Value::size() const {
  if (is_dict()) return as_dict().size();
  if (is_sequence()) return as_list().size();
  type_error("list, tuple or dict", *this, {});
}

inline bool Value::contains(const Value& key) const { return is_dict() && as_dict().contains(key); }

inline const Value* Value::find(const Value& key) const { return is_dict() ? as_dict().find(key) : nullptr; }

inline const Value& Value::at(const Value& key) const {
  if (is_dict()) return as_dict().at(key);
  if (is_sequence()) {
    if (!key.is_int()) type_error("an int index", key, {});
    const auto& l = as_list();
    const int64_t n = static_cast<int64_t>(l.size());
    int64_t i = key.as_int();
    TORCHLET_CHECK(i >= -n && i < n, IndexError, "[Value] index ", i, " out of range for a ", kind_name(),
                   " of size ", n);
    if (i < 0) i += n;
    return l[static_cast<size_t>(i)];
  }
  type_error("list, tuple or dict", *this, {});
}

inline Value& Value::operator[](const Value& key) {
  if (is_none()) *this = Value(ValueDict());
  if (is_sequence()) return at(key);
  return as_dict()[key];
}

inline bool Value::operator==(const Value& o) const {
  if (kind() != o.kind()) return false;
  switch (kind()) {
    case Kind::None: return true;
    case Kind::Bool: return as_bool() == o.as_bool();
    case Kind::Int: return as_int() == o.as_int();
    case Kind::Double: return as_double() == o.as_double();
    case Kind::String: return as_string() == o.as_string();
    case Kind::Tensor: return as_tensor().is_same(o.as_tensor());
    case Kind::List:
    case Kind::Tuple: return as_list() == o.as_list();
    case Kind::Dict: return as_dict() == o.as_dict();
  }
  return false;
}

inline void Value::repr_into(std::string& out) const {
  switch (kind()) {
    case Kind::None: out += "None"; return;
    case Kind::Bool: out += as_bool() ? "True" : "False"; return;
    case Kind::Int: out += std::to_string(as_int()); return;
    case Kind::Double: out += detail::py_float_repr(as_double()); return;
    case Kind::String: {
      out += '\'';
      for (char c : as_string()) {
        if (c == '\'' || c == '\\') out += '\\';
        out += c;
      }
      out += '\'';
      return;
    }
    case Kind::Tensor: {
      const Tensor& t = as_tensor();
      if (!t.defined()) {
        out += "tensor(undefined)";
        return;
      }
      out += "tensor(shape=" + shape_str(t.sizes()) + ", dtype=" + std::string(dtype_name(t.dtype())) + ")";
      return;
    }
    case Kind::List:
    case Kind::Tuple: {
      const auto& l = as_list();
      out += is_list() ? '[' : '(';
      for (size_t i = 0; i < l.size(); ++i) {
        if (i) out += ", ";
        l[i].repr_into(out);
      }
      if (is_tuple() && l.size() == 1) out += ',';
      out += is_list() ? ']' : ')';
      return;
    }
    case Kind::Dict: {
      out += '{';
      bool first = true;
      for (const auto& [k, v] : as_dict()) {
        if (!first) out += ", ";
        first = false;
        k.repr_into(out);
        out += ": ";
        v.repr_into(out);
      }
      out += '}';
      return;
    }
  }
}

/// A read-only view of a Value that remembers the path it was reached by, so that errors name it:
/// `ValueRef(sd).at("param_groups").at(0).at("lr").as_double()` raises
/// `[Value] expected float at "param_groups.0.lr", got str`.
class ValueRef {
 public:
  /// A view of `v` (the root, or a node reached by `path`).
  explicit ValueRef(const Value& v, std::string path = {}) : v_(&v), path_(std::move(path)) {}

  const Value& value() const { return *v_; }         ///< The viewed Value.
  const std::string& path() const { return path_; }  ///< Dotted path from the root ("" for the root).

  /// The child at `key` (dict key, or list/tuple index); raises naming the path when absent.
  ValueRef at(const Value& key) const {
    const std::string child = join(key);
    if (v_->is_dict()) {
      const Value* c = v_->as_dict().find(key);
      TORCHLET_CHECK(c != nullptr, ValueError, "[Value] missing key ", key.repr(),
                     path_.empty() ? "" : " in \"", path_, path_.empty() ? "" : "\"");
      return ValueRef(*c, child);
    }
    if (v_->is_sequence()) {
      if (!key.is_int()) Value::type_error("an int index", key, child);
      const int64_t n = static_cast<int64_t>(v_->as_list().size());
      TORCHLET_CHECK(key.as_int() >= -n && key.as_int() < n, IndexError, "[Value] index ", key.as_int(),
                     " out of range at \"", path_, "\" (a ", v_->kind_name(), " of size ", n, ")");
      return ValueRef(v_->at(key), child);
    }
    Value::type_error("list, tuple or dict", *v_, path_);
  }
  /// at() with a str key.
  ValueRef at(const char* key) const { return at(Value(key)); }
  /// at() with an int: a dict's int key, or a list/tuple index.
  template <std::integral I>
  ValueRef at(I key) const { return at(Value(static_cast<int64_t>(key))); }
  /// The child at `key`, or nullopt when a dict lacks it.
  std::optional<ValueRef> get(const Value& key) const {
    if (!v_->is_dict()) Value::type_error("dict", *v_, path_);
    const Value* c = v_->as_dict().find(key);
    if (!c) return std::nullopt;
    return ValueRef(*c, join(key));
  }
  /// Number of elements or entries.
  size_t size() const {
    if (!v_->is_dict() && !v_->is_sequence()) Value::type_error("list, tuple or dict", *v_, path_);
    return v_->size();
  }
  bool as_bool() const { return check(v_->is_bool(), "bool").as_bool(); }            ///< The bool.
  int64_t as_int() const { return check(v_->is_int(), "int").as_int(); }             ///< The int.
  double as_double() const { return check(v_->is_number(), "float").as_double(); }   ///< A number as double.
  const std::string& as_string() const { return check(v_->is_string(), "str").as_string(); }  ///< The str.
  const Tensor& as_tensor() const { return check(v_->is_tensor(), "Tensor").as_tensor(); }    ///< The tensor.
  const Value::List& as_list() const { return check(v_->is_sequence(), "list or tuple").as_list(); }  ///< Elements.
  const ValueDict& as_dict() const { return check(v_->is_dict(), "dict").as_dict(); }  ///< The dict.

  /// The path of a child.
  std::string join(const Value& key) const {
    std::string k = key.is_string() ? key.as_string() : key.repr();
    return path_.empty() ? k : path_ + "." + k;
  }

 private:
  const Value& check(bool ok, const char* what) const {
    if (!ok) Value::type_error(what, *v_, path_);
    return *v_;
  }
  const Value* v_;
  std::string path_;
};
}  // namespace torchlet
