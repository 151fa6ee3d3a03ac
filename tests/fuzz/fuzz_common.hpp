#pragma once
/// \file Shared pieces of torchlet's libFuzzer harnesses: conservative reader limits (well below libFuzzer's
/// -rss_limit_mb=2048 / -malloc_limit_mb=512), a walk that touches every element of every tensor of a Value
/// tree (checking each view against its storage by hand, since storages may be slices of one arena where
/// AddressSanitizer cannot see an overrun), and the policy for exceptions.
///
/// Policy: an IOError (FormatError, CorruptFileError, UnsafeFileError, LimitError) from a reader is the expected
/// way to refuse a file. Any other torchlet::Error is accepted too, but its kind and message prefix are printed
/// once per distinct prefix (a reader should raise IOError subclasses only; the README lists what was seen).
/// Anything else escaping (std::bad_alloc, std::out_of_range, ...) is a finding: the harness aborts.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <set>
#include <string>
#include <typeinfo>

#include "torchlet/core/error.hpp"
#include "torchlet/io/load.hpp"
#include "torchlet/io/unpickler.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/io/zip.hpp"

namespace torchlet_fuzz {

using torchlet::Tensor;
using torchlet::Value;

/// Unpickler limits for fuzzing: each one far below what would approach 2 GiB of RSS.
inline torchlet::io::UnpickleOptions pickle_limits() {
  torchlet::io::UnpickleOptions o;
  o.max_pickle_bytes = size_t{16} << 20;
  o.max_depth = 200;
  o.max_memo_entries = size_t{1} << 16;
  o.max_container_size = size_t{1} << 20;
  o.max_stack = size_t{1} << 16;
  o.max_nodes = size_t{1} << 20;
  o.max_expansion = 64;
  o.max_total_tensor_bytes = int64_t{64} << 20;
  o.max_result_bytes = size_t{64} << 20;
  return o;
}

/// Zip limits for fuzzing: no entry (or all of them) may inflate past what the harness can hold.
inline torchlet::io::ZipLimits zip_limits() {
  torchlet::io::ZipLimits l;
  l.max_entries = 1u << 14;
  l.max_name_length = 4096;
  l.max_entry_size = uint64_t{64} << 20;
  l.max_total_size = uint64_t{256} << 20;
  return l;
}

/// True when TORCHLET_FUZZ_STRICT=1: the harnesses then also fail on the known, unfixed bugs they skip by default.
inline bool strict() {
  static const bool s = [] {
    const char* e = std::getenv("TORCHLET_FUZZ_STRICT");
    return e && e[0] == '1';
  }();
  return s;
}

/// Stops the process with a one-line reason: libFuzzer records the input as a crash.
[[noreturn]] inline void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "FUZZ FINDING: %s: %s\n", what, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

/// Prints a non-IOError torchlet::Error once per distinct (type, message prefix).
inline void note_other_error(const torchlet::Error& e) {
  static std::set<std::string> seen;
  std::string key = std::string(typeid(e).name()) + " " + std::string(e.what()).substr(0, 48);
  if (seen.size() < 200 && seen.insert(key).second)
    std::fprintf(stderr, "FUZZ NOTE: non-IOError %s: %.200s\n", typeid(e).name(), e.what());
}

/// Runs `f`, applying the policy above.
template <class F>
void guarded(const char* harness, F&& f) {
  try {
    f();
  } catch (const torchlet::IOError&) {
  } catch (const torchlet::Error& e) {
    note_other_error(e);
  } catch (const std::exception& e) {
    finding(harness, std::string("non-torchlet exception ") + typeid(e).name() + ": " + e.what());
  } catch (...) {
    finding(harness, "unknown exception type");
  }
}

/// Reads every element of `t` through its sizes/strides, after checking by hand that the view lies inside its
/// storage; returns a checksum so the reads cannot be optimised away. Views with more than `cap` elements
/// (stride-0 expansions can be huge and are legal) are checked at their corners and walked up to `cap`.
inline uint64_t walk_tensor(const Tensor& t, int64_t cap = int64_t{1} << 22) {
  if (!t.defined()) return 0;
  const auto& sizes = t.sizes();
  const auto& strides = t.strides();
  if (sizes.size() != strides.size()) finding("walk_tensor", "sizes and strides differ in length");
  const int64_t es = t.element_size();
  const uint64_t nbytes = t.storage().nbytes();
  bool empty = false;
  __int128 lo = t.storage_offset(), hi = t.storage_offset();
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] < 0) finding("walk_tensor", "negative size");
    if (sizes[d] == 0) empty = true;
    const __int128 span = static_cast<__int128>(sizes[d] - 1) * strides[d];
    (span >= 0 ? hi : lo) += span;
  }
  if (t.storage_offset() < 0) finding("walk_tensor", "negative storage offset");
  if (empty) return 0;
  if (lo < 0 || (hi + 1) * es > static_cast<__int128>(nbytes))
    finding("walk_tensor", "tensor view outside its storage: offset " + std::to_string(t.storage_offset()) +
                               " storage bytes " + std::to_string(nbytes) + " dim " + std::to_string(sizes.size()));
  if (nbytes > 0 && t.storage().data() == nullptr) finding("walk_tensor", "storage with bytes but no data");
  const auto* base = static_cast<const uint8_t*>(t.storage().data());
  uint64_t sum = 0;
  std::vector<int64_t> idx(sizes.size(), 0);
  int64_t done = 0;
  while (done < cap) {
    int64_t off = t.storage_offset();
    for (size_t d = 0; d < sizes.size(); ++d) off += idx[d] * strides[d];
    const uint8_t* p = base + off * es;
    for (int64_t b = 0; b < es; ++b) sum = sum * 131 + p[b];
    ++done;
    size_t d = sizes.size();
    while (d > 0) {
      --d;
      if (++idx[d] < sizes[d]) break;
      idx[d] = 0;
      if (d == 0) return sum;
    }
    if (sizes.empty()) return sum;
  }
  return sum;
}

/// Walks a Value tree: every tensor (walk_tensor), every string, and the tree's repr and a deep copy.
inline uint64_t walk_value(const Value& v, int depth = 0) {
  if (depth > 10000) finding("walk_value", "Value nesting deeper than 10000 (the reader's depth limit leaked)");
  uint64_t sum = static_cast<uint64_t>(v.kind());
  switch (v.kind()) {
    case Value::Kind::Tensor: sum += walk_tensor(v.as_tensor()); break;
    case Value::Kind::String: sum += v.as_string().size(); break;
    case Value::Kind::List:
    case Value::Kind::Tuple:
      for (const Value& x : v.as_list()) sum = sum * 7 + walk_value(x, depth + 1);
      break;
    case Value::Kind::Dict:
      for (const auto& [k, x] : v.as_dict()) sum = sum * 7 + walk_value(k, depth + 1) + walk_value(x, depth + 1);
      break;
    default: break;
  }
  return sum;
}

/// The full check of a value a reader returned: walk it, copy it, compare the copy, print it.
inline void check_value(const Value& v) {
  volatile uint64_t s = walk_value(v);
  (void)s;
  const Value copy = v;
  if (copy.repr() != v.repr()) finding("check_value", "a deep copy of the loaded Value prints differently");
}

}  // namespace torchlet_fuzz
