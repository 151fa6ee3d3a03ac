// torchlet: inspect, convert and compare checkpoint files (.pth from torch.save, .safetensors); run, check and
// describe ResNets (model_commands.cpp).
//
//   torchlet ls FILE [--json]   every tensor (dotted key, dtype, shape, SHA-256 of its contiguous little-endian
//                               bytes) and every other leaf value (epoch, best_acc, lr, ...)
//   torchlet convert IN OUT     .pth <-> .safetensors, chosen by OUT's extension (.safetensors, or .pth/.pt/.bin/
//                               .ckpt); every tensor kept, in order
//   torchlet diff A B           keys only in A / only in B, dtype and shape differences, max |a - b| of common
//                               tensors, differing values
//
// Exit status: 0 success (diff: identical), 1 a refused file or failed operation (one line on stderr; diff:
// the files differ), 2 wrong usage (diff: an error, as diff(1) does).
//
// Keys: nested dict keys and list/tuple indices joined by '.', e.g. `optimizer.state.0.momentum_buffer`; a
// pickled whole module (`torch.save(model)`) contributes its state_dict keys; `__attributes__` entries (an
// OrderedDict's `_metadata`) are skipped; a safetensors file's `__metadata__` entries are values.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model_commands.hpp"
#include "torchlet/io/json.hpp"
#include "torchlet/io/safetensors.hpp"
#include "torchlet/io/sha256.hpp"
#include "torchlet/io/unpickler.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/tensor/tensor.hpp"
#if __has_include("torchlet/io/load.hpp")
#include "torchlet/io/load.hpp"
#define TORCHLET_CLI_HAS_LOAD 1
#endif
#if __has_include("torchlet/io/save.hpp")
#include "torchlet/io/save.hpp"
#define TORCHLET_CLI_HAS_SAVE 1
#endif

namespace {
using namespace torchlet;

constexpr const char* kUsage =
    "usage: torchlet ls FILE [--json]\n"
    "       torchlet convert IN OUT      (.pth <-> .safetensors, by OUT's extension)\n"
    "       torchlet diff A B            (exit 0: identical, 1: different, 2: error)\n"
    "       torchlet predict --arch ARCH --weights FILE [--num-classes N] [--rename 'REGEX=>REPL']... [--non-strict]\n"
    "                        --input X.npy --output Y.npy [--device cpu] [--batch-size B]\n"
    "       torchlet check FILE --arch ARCH [--num-classes N] [--rename 'REGEX=>REPL']...   (exit 0: loads strictly)\n"
    "       torchlet info --arch ARCH [--num-classes N]\n";

/// Exit with status 2 after printing the usage.
[[noreturn]] void usage_error(const std::string& why) {
  std::cerr << "torchlet: " << why << "\n" << kUsage;
  std::exit(2);
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// A file read whole: its format ("safetensors", "pth" for torch.save's zip, "pth-legacy") and its Value.
struct Loaded {
  std::string format;
  Value value;
};

/// The first bytes of a file (up to 512).
std::vector<uint8_t> head_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  TORCHLET_CHECK(f.good(), IOError, "[torchlet] ", path, ": cannot open: ", std::strerror(errno));
  std::vector<uint8_t> head(512);
  f.read(reinterpret_cast<char*>(head.data()), std::streamsize(head.size()));
  head.resize(size_t(f.gcount()));
  return head;
}

/// True when `head` starts like a safetensors file: a plausible header length, then '{'.
bool looks_like_safetensors(const std::vector<uint8_t>& head) {
  if (head.size() < 10 || head[8] != '{') return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | head[size_t(i)];
  return n >= 2 && n <= 100'000'000;
}

Loaded load_any(const std::string& path) {
  const std::vector<uint8_t> head = head_of(path);
  if (looks_like_safetensors(head)) return {"safetensors", load_safetensors(path)};
#ifdef TORCHLET_CLI_HAS_LOAD
  LoadInfo info;
  Value v = torchlet::load(path, {}, &info);
  return {info.format == "legacy" ? "pth-legacy" : "pth", std::move(v)};
#else
  TORCHLET_THROW(IOError, "[torchlet] ", path,
                 ": not a safetensors file, and this build has no .pth reader (torchlet/io/load.hpp)");
#endif
}

/// Tensors and other leaves of a Value tree under dotted keys, in walk order.
struct Flat {
  std::vector<std::pair<std::string, Tensor>> tensors;
  ValueDict values;  ///< dotted key -> None/bool/int/float/str, or an empty list/dict
};

std::string key_text(const Value& k) {
  if (k.is_string()) return k.as_string();
  if (k.is_int()) return std::to_string(k.as_int());
  return k.repr();
}

std::string join(const std::string& prefix, const std::string& k) { return prefix.empty() ? k : prefix + "." + k; }

void flatten(const Value& v, const std::string& key, Flat& out) {
  switch (v.kind()) {
    case Value::Kind::Tensor: out.tensors.emplace_back(key, v.as_tensor()); return;
    case Value::Kind::Dict: {
      if (!io::pickled_class(v).empty() && v.contains(Value("_modules"))) {  // torch.save(model)
        flatten(io::module_state_dict(v), key, out);
        return;
      }
      bool any = false;
      for (const auto& [k, x] : v.as_dict()) {
        if (k.is_string() && k.as_string() == "__attributes__") continue;
        any = true;
        flatten(x, join(key, key_text(k)), out);
      }
      if (!any) out.values.set(Value(key), Value(ValueDict()));
      return;
    }
    case Value::Kind::List:
    case Value::Kind::Tuple: {
      const auto& l = v.as_list();
      if (l.empty()) out.values.set(Value(key), Value::list());
      for (size_t i = 0; i < l.size(); ++i) flatten(l[i], join(key, std::to_string(i)), out);
      return;
    }
    default: out.values.set(Value(key), v); return;
  }
}

Flat flatten(const Value& v) {
  Flat f;
  flatten(v, "", f);
  return f;
}

std::string torch_dtype(DType t) { return "torch." + std::string(dtype_name(t)); }

std::string shape_text(const Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

/// The tensor's bytes, contiguous, on the CPU.
Tensor cpu_contiguous(const Tensor& t) { return t.to(kCPU).contiguous(); }

std::string tensor_sha256(const Tensor& t) {
  const Tensor c = cpu_contiguous(t);
  return io::sha256_hex(c.data_ptr(), size_t(c.nbytes()));
}

// ---- ls -----------------------------------------------------------------------------------------------------
int cmd_ls(const std::string& path, bool json) {
  const Loaded in = load_any(path);
  const Flat f = flatten(in.value);
  if (json) {
    Value::List tensors;
    for (const auto& [k, t] : f.tensors) {
      Value::List shape;
      for (int64_t d : t.sizes()) shape.emplace_back(d);
      tensors.push_back(Value::dict({{"key", k},
                                     {"dtype", torch_dtype(t.dtype())},
                                     {"shape", Value::list(std::move(shape))},
                                     {"sha256", tensor_sha256(t)}}));
    }
    const Value doc = Value::dict(
        {{"format", in.format}, {"tensors", Value::list(std::move(tensors))}, {"values", Value(f.values)}});
    std::cout << io::to_json(doc) << "\n";
    return 0;
  }
  size_t wk = 3, wd = 5, ws = 5;
  std::vector<std::string> shapes;
  for (const auto& [k, t] : f.tensors) {
    shapes.push_back(shape_text(t));
    wk = std::max(wk, k.size());
    wd = std::max(wd, torch_dtype(t.dtype()).size());
    ws = std::max(ws, shapes.back().size());
  }
  auto pad = [](const std::string& s, size_t w) { return s + std::string(w > s.size() ? w - s.size() : 0, ' '); };
  std::cout << path << ": " << in.format << ", " << f.tensors.size() << " tensors, " << f.values.size()
            << " values\n";
  if (!f.tensors.empty()) std::cout << pad("key", wk) << "  " << pad("dtype", wd) << "  " << pad("shape", ws) << "  sha256\n";
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    const auto& [k, t] = f.tensors[i];
    std::cout << pad(k, wk) << "  " << pad(torch_dtype(t.dtype()), wd) << "  " << pad(shapes[i], ws) << "  "
              << tensor_sha256(t) << "\n";
  }
  for (const auto& [k, v] : f.values) std::cout << k.as_string() << " = " << v.repr() << "\n";
  return 0;
}

// ---- convert ------------------------------------------------------------------------------------------------
int cmd_convert(const std::string& in_path, const std::string& out_path) {
  const bool to_st = ends_with(out_path, ".safetensors");
  const bool to_pth = ends_with(out_path, ".pth") || ends_with(out_path, ".pt") || ends_with(out_path, ".bin") ||
                      ends_with(out_path, ".ckpt");
  TORCHLET_CHECK(to_st || to_pth, ValueError, "[torchlet convert] cannot tell the output format of ", out_path,
                 " from its extension (.safetensors, .pth, .pt, .bin, .ckpt)");
  const Loaded in = load_any(in_path);
  if (to_st) {
    // a state_dict as it is; anything else flattened to dotted keys (tensors only)
    const Flat f = flatten(in.value);
    ValueDict out;
    if (in.format == "safetensors") {
      if (const Value* m = in.value.find(Value("__metadata__"))) out.set(Value("__metadata__"), *m);
    } else {
      out.set(Value("__metadata__"), Value::dict({{"format", "pt"}}));
    }
    for (const auto& [k, t] : f.tensors) {
      TORCHLET_CHECK(!out.contains(Value(k)), ValueError, "[torchlet convert] ", in_path, ": two tensors map to the key \"",
                     k, "\"");
      out.set(Value(k), Value(t));
    }
    size_t dropped = 0;
    std::string names;
    for (const auto& [k, v] : f.values) {
      if (in.format == "safetensors" && k.as_string().rfind("__metadata__.", 0) == 0) continue;
      if (dropped < 5) names += (dropped ? ", " : "") + k.as_string();
      ++dropped;
    }
    save_safetensors(out_path, Value(std::move(out)), Value(), {.order = SafetensorsOrder::Insertion});
    if (dropped > 0)
      std::cerr << "torchlet convert: note: " << dropped << " non-tensor value" << (dropped > 1 ? "s" : "")
                << " not stored (safetensors holds tensors only): " << names << (dropped > 5 ? ", ..." : "") << "\n";
    return 0;
  }
#ifdef TORCHLET_CLI_HAS_SAVE
  if (in.format == "safetensors") {  // an OrderedDict state_dict, as model.state_dict() gives
    ValueDict sd;
    for (const auto& [k, v] : in.value.as_dict())
      if (v.is_tensor()) sd.set(k, v);
    sd.set(Value("__attributes__"), Value(ValueDict()));
    torchlet::save(out_path, Value(std::move(sd)));
  } else {
    torchlet::save(out_path, in.value);
  }
  return 0;
#else
  TORCHLET_THROW(IOError, "[torchlet convert] this build has no .pth writer (torchlet/io/save.hpp)");
#endif
}

// ---- diff ---------------------------------------------------------------------------------------------------
/// max |a - b| over the elements, NaN when exactly one side is NaN at some element; nullopt when the dtypes
/// have no arithmetic here (storage-only dtypes).
std::optional<double> max_abs_diff(const Tensor& a, const Tensor& b) {
  if (!has_kernels(a.dtype()) || !has_kernels(b.dtype())) return std::nullopt;
  const Tensor x = cpu_contiguous(a).to(kFloat64).contiguous(), y = cpu_contiguous(b).to(kFloat64).contiguous();
  const double* p = x.data<double>();
  const double* q = y.data<double>();
  double m = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (std::isnan(p[i]) || std::isnan(q[i])) {
      if (std::isnan(p[i]) != std::isnan(q[i])) return std::nan("");
      continue;
    }
    const double d = p[i] == q[i] ? 0.0 : std::fabs(p[i] - q[i]);  // inf == inf counts as equal
    m = std::max(m, d);
  }
  return m;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor x = cpu_contiguous(a), y = cpu_contiguous(b);
  return x.nbytes() == y.nbytes() && std::memcmp(x.data_ptr(), y.data_ptr(), size_t(x.nbytes())) == 0;
}

int cmd_diff(const std::string& a_path, const std::string& b_path) {
  const Loaded a = load_any(a_path), b = load_any(b_path);
  const Flat fa = flatten(a.value), fb = flatten(b.value);
  ValueDict ib;  // key -> index into fb.tensors
  for (size_t i = 0; i < fb.tensors.size(); ++i) ib.set(Value(fb.tensors[i].first), Value(int64_t(i)));
  ValueDict ia;
  for (size_t i = 0; i < fa.tensors.size(); ++i) ia.set(Value(fa.tensors[i].first), Value(int64_t(i)));
  size_t differences = 0, common = 0;
  double overall = 0;
  bool overall_nan = false;
  auto describe = [](const Tensor& t) { return torch_dtype(t.dtype()) + " " + shape_text(t); };
  for (const auto& [k, t] : fa.tensors) {
    const Value* j = ib.find(Value(k));
    if (!j) {
      std::cout << "only in A: " << k << "  " << describe(t) << "\n";
      ++differences;
      continue;
    }
    ++common;
    const Tensor& u = fb.tensors[size_t(j->as_int())].second;
    if (t.sizes() != u.sizes()) {
      std::cout << "shape differs: " << k << ": " << shape_text(t) << " vs " << shape_text(u) << "\n";
      ++differences;
      continue;
    }
    const bool dtype_same = t.dtype() == u.dtype();
    if (!dtype_same) {
      std::cout << "dtype differs: " << k << ": " << torch_dtype(t.dtype()) << " vs " << torch_dtype(u.dtype()) << "\n";
      ++differences;
    }
    if (dtype_same && same_bytes(t, u)) continue;
    const auto m = max_abs_diff(t, u);
    if (m && std::isnan(*m)) overall_nan = true;
    else if (m) overall = std::max(overall, *m);
    if (dtype_same) {
      ++differences;
      std::cout << "values differ: " << k << ": "
                << (m ? "max abs diff " + detail::py_float_repr(*m) : std::string("bytes differ")) << "\n";
    } else if (m) {
      std::cout << "  max abs diff after conversion to float64: " << detail::py_float_repr(*m) << "\n";
    }
  }
  for (const auto& [k, t] : fb.tensors)
    if (!ia.contains(Value(k))) {
      std::cout << "only in B: " << k << "  " << describe(t) << "\n";
      ++differences;
    }
  for (const auto& [k, v] : fa.values) {
    const Value* w = fb.values.find(k);
    if (!w) {
      std::cout << "only in A: " << k.as_string() << " = " << v.repr() << "\n";
      ++differences;
    } else if (!(v == *w) && !(v.is_double() && w->is_double() && std::isnan(v.as_double()) &&
                              std::isnan(w->as_double()))) {
      std::cout << "value differs: " << k.as_string() << ": " << v.repr() << " vs " << w->repr() << "\n";
      ++differences;
    }
  }
  for (const auto& [k, v] : fb.values)
    if (!fa.values.contains(k)) {
      std::cout << "only in B: " << k.as_string() << " = " << v.repr() << "\n";
      ++differences;
    }
  if (differences == 0) {
    std::cout << "identical: " << fa.tensors.size() << " tensors, " << fa.values.size() << " values\n";
    return 0;
  }
  std::cout << differences << " difference" << (differences > 1 ? "s" : "") << "; max abs diff over " << common
            << " common tensors: " << (overall_nan ? std::string("nan") : detail::py_float_repr(overall)) << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) usage_error("missing command");
  const std::string cmd = args[0];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  const bool is_diff = cmd == "diff";
  try {
    if (cmd == "ls") {
      bool json = false;
      std::vector<std::string> files;
      for (size_t i = 1; i < args.size(); ++i) {
        if (args[i] == "--json") json = true;
        else if (args[i].rfind("--", 0) == 0) usage_error("unknown option " + args[i]);
        else files.push_back(args[i]);
      }
      if (files.size() != 1) usage_error("ls takes one FILE");
      return cmd_ls(files[0], json);
    }
    if (cmd == "convert") {
      if (args.size() != 3) usage_error("convert takes IN and OUT");
      return cmd_convert(args[1], args[2]);
    }
    if (is_diff) {
      if (args.size() != 3) usage_error("diff takes A and B");
      return cmd_diff(args[1], args[2]);
    }
    if (cmd == "predict" || cmd == "check" || cmd == "info") return torchlet::cli::run_model_command(args);
    usage_error("unknown command '" + cmd + "'");
  } catch (const torchlet::cli::UsageError& e) {
    usage_error(e.what());
  } catch (const torchlet::Error& e) {
    std::cout.flush();
    std::cerr << "torchlet " << cmd << ": " << e.what() << "\n";
    return is_diff ? 2 : 1;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "torchlet " << cmd << ": " << e.what() << "\n";
    return is_diff ? 2 : 1;
  }
}
