/// \file libFuzzer harness: write -> read round trip of checkpoints (io/save.hpp, io/load.hpp).
/// The Value to save comes from the input: a pickle (inputs starting with PROTO 0x80) run through the unpickler,
/// or else a small structured decoder (FuzzedDataProvider) that builds None/bool/int/float/str, tensors of every
/// dtype (fresh, or views sharing an earlier tensor's storage), lists, tuples and dicts with str or int keys.
/// Checks: save_to_bytes() output loads back (copy and zero-copy modes) equal to what was saved (kinds, numbers
/// bit for bit, strings, tensor dtype/sizes/strides/offset and every element, storage sharing), and saving the
/// loaded value again gives identical bytes. A value the pickler refuses (torchlet::Error) is not a finding.
#include <fuzzer/FuzzedDataProvider.h>

#include <bit>
#include <map>

#include "fuzz_common.hpp"
#include "torchlet/io/save.hpp"

namespace {
using torchlet::DType;
using torchlet::Shape;
using torchlet::Storage;
using torchlet::Tensor;
using torchlet::Value;

constexpr DType kAllDtypes[] = {
    DType::Bool,    DType::UInt8,   DType::Int8,    DType::Int16,         DType::Int32,         DType::Int64,
    DType::Float16, DType::BFloat16, DType::Float32, DType::Float64,      DType::UInt16,        DType::UInt32,
    DType::UInt64,  DType::Float8_e4m3fn, DType::Float8_e5m2, DType::Float8_e4m3fnuz, DType::Float8_e5m2fnuz};

/// Builds a Value from fuzz bytes.
struct Decoder {
  FuzzedDataProvider& p;
  std::vector<Tensor> pool;
  size_t values = 0;

  Tensor tensor() {
    if (!pool.empty() && p.ConsumeBool()) {  // a view of an earlier tensor's storage
      const Tensor& base = pool[p.ConsumeIntegralInRange<size_t>(0, pool.size() - 1)];
      const int64_t elems = static_cast<int64_t>(base.storage().nbytes()) / base.element_size();
      const auto nd = p.ConsumeIntegralInRange<size_t>(0, 3);
      Shape sizes(nd), strides(nd);
      for (size_t d = 0; d < nd; ++d) {
        sizes[d] = p.ConsumeIntegralInRange<int64_t>(0, 4);
        strides[d] = p.ConsumeIntegralInRange<int64_t>(0, 5);
      }
      const int64_t offset = p.ConsumeIntegralInRange<int64_t>(0, std::max<int64_t>(elems, 0));
      try {
        Tensor t(base.storage(), base.dtype(), sizes, strides, offset);
        pool.push_back(t);
        return t;
      } catch (const torchlet::Error&) {  // does not fit the storage: make a fresh one instead
      }
    }
    const DType dtype = kAllDtypes[p.ConsumeIntegralInRange<size_t>(0, std::size(kAllDtypes) - 1)];
    const auto nd = p.ConsumeIntegralInRange<size_t>(0, 3);
    Shape sizes(nd), strides(nd);
    int64_t numel = 1;
    for (size_t d = 0; d < nd; ++d) numel *= (sizes[d] = p.ConsumeIntegralInRange<int64_t>(0, 5));
    for (int64_t d = static_cast<int64_t>(nd) - 1, s = 1; d >= 0; --d) {
      strides[static_cast<size_t>(d)] = s;
      s *= std::max<int64_t>(sizes[static_cast<size_t>(d)], 1);
    }
    const int64_t extra = p.ConsumeIntegralInRange<int64_t>(0, 3);  // storage larger than the tensor
    const int64_t offset = p.ConsumeIntegralInRange<int64_t>(0, extra);
    const auto nbytes = static_cast<size_t>((numel + extra) * torchlet::element_size(dtype));
    Storage s = Storage::allocate(nbytes);
    const std::vector<uint8_t> bytes = p.ConsumeBytes<uint8_t>(nbytes);
    auto* dst = static_cast<uint8_t*>(s.data());
    for (size_t i = 0; i < nbytes; ++i) dst[i] = i < bytes.size() ? bytes[i] : static_cast<uint8_t>(i * 37 + 11);
    Tensor t(s, dtype, sizes, strides, offset);
    pool.push_back(t);
    return t;
  }

  Value value(int depth) {
    ++values;
    const int top = depth < 6 && values < 2000 ? 9 : 5;
    switch (p.ConsumeIntegralInRange<int>(0, top)) {
      case 0: return Value();
      case 1: return Value(p.ConsumeBool());
      case 2: return Value(p.ConsumeIntegral<int64_t>());
      case 3: return Value(std::bit_cast<double>(p.ConsumeIntegral<uint64_t>()));
      case 4: return Value(p.ConsumeRandomLengthString(64));
      case 5: return Value(tensor());
      case 6:
      case 7: {
        Value::List items;
        const auto n = p.ConsumeIntegralInRange<size_t>(0, 6);
        for (size_t i = 0; i < n && p.remaining_bytes(); ++i) items.push_back(value(depth + 1));
        return p.ConsumeBool() ? Value::list(std::move(items)) : Value::tuple(std::move(items));
      }
      default: {
        torchlet::ValueDict d;
        const bool int_keys = p.ConsumeBool();
        const auto n = p.ConsumeIntegralInRange<size_t>(0, 6);
        for (size_t i = 0; i < n && p.remaining_bytes(); ++i) {
          Value k = int_keys ? Value(p.ConsumeIntegral<int64_t>()) : Value(p.ConsumeRandomLengthString(16));
          d.set(std::move(k), value(depth + 1));
        }
        return Value(std::move(d));
      }
    }
  }
};

/// Deep comparison of a saved Value and the Value loaded back; `storages` maps saved storages to loaded ones.
struct Comparer {
  std::map<const void*, const void*> storages;
  std::string path;

  [[noreturn]] void differ(const std::string& what) {
    torchlet_fuzz::finding("fuzz_roundtrip", "saved and loaded values differ at '" + path + "': " + what);
  }

  void tensors(const Tensor& a, const Tensor& b) {
    if (a.dtype() != b.dtype()) differ("dtype");
    if (a.sizes() != b.sizes()) differ("sizes");
    if (a.numel() > 1 && a.strides() != b.strides()) differ("strides");
    if (a.numel() > 0 && a.storage_offset() != b.storage_offset()) differ("storage offset");
    const void* ka = a.storage().data();
    const void* kb = b.storage().data();
    if (a.numel() > 0 && a.storage().nbytes() > 0) {
      const auto [it, fresh] = storages.emplace(ka, kb);
      if (!fresh && it->second != kb) differ("a shared storage was not shared after loading");
    }
    if (torchlet_fuzz::walk_tensor(a) != torchlet_fuzz::walk_tensor(b)) differ("tensor elements");
  }

  void values(const Value& a, const Value& b) {
    if (a.kind() != b.kind()) differ(std::string("kind ") + a.kind_name() + " vs " + b.kind_name());
    switch (a.kind()) {
      case Value::Kind::None: break;
      case Value::Kind::Bool: if (a.as_bool() != b.as_bool()) differ("bool"); break;
      case Value::Kind::Int: if (a.as_int() != b.as_int()) differ("int"); break;
      case Value::Kind::Double:
        // bit for bit, NaN payloads and signs included (the pickler's tuple memo keys floats on their bits)
        if (std::bit_cast<uint64_t>(a.as_double()) != std::bit_cast<uint64_t>(b.as_double())) differ("float bits");
        break;
      case Value::Kind::String: if (a.as_string() != b.as_string()) differ("str"); break;
      case Value::Kind::Tensor: tensors(a.as_tensor(), b.as_tensor()); break;
      case Value::Kind::List:
      case Value::Kind::Tuple: {
        const auto& x = a.as_list();
        const auto& y = b.as_list();
        if (x.size() != y.size()) differ("length");
        const std::string here = path;
        for (size_t i = 0; i < x.size(); ++i) {
          path = here + "." + std::to_string(i);
          values(x[i], y[i]);
        }
        path = here;
        break;
      }
      case Value::Kind::Dict: {
        const auto& x = a.as_dict().entries();
        const auto& y = b.as_dict().entries();
        if (x.size() != y.size()) differ("entry count");
        const std::string here = path;
        for (size_t i = 0; i < x.size(); ++i) {
          path = here + "[" + std::to_string(i) + "]";
          values(x[i].first, y[i].first);
          values(x[i].second, y[i].second);
        }
        path = here;
        break;
      }
    }
  }
};

/// A Value from a pickle input: storages are filled with a pattern.
Value from_pickle(const uint8_t* data, size_t size) {
  using namespace torchlet;
  auto resolve = [](const std::string& key, DType dtype, int64_t numel, const std::string&) -> Storage {
    const auto nbytes = static_cast<size_t>(numel * element_size(dtype));
    Storage s = Storage::allocate(nbytes);
    auto* p = static_cast<uint8_t*>(s.data());
    for (size_t i = 0; i < nbytes; ++i) p[i] = static_cast<uint8_t>(i * 131 + key.size());
    return s;
  };
  return io::unpickle(std::span<const uint8_t>(data, size), torchlet_fuzz::pickle_limits(), resolve);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace torchlet;
  Value v;
  bool ok = false;
  if (size > 0 && data[0] == 0x80) {
    torchlet_fuzz::guarded("fuzz_roundtrip", [&] {
      v = from_pickle(data, size);
      ok = true;
    });
  } else {
    FuzzedDataProvider p(data, size);
    Decoder d{p};
    v = d.value(0);
    ok = true;
  }
  if (!ok) return 0;
  std::vector<uint8_t> first;
  try {
    first = save_to_bytes(v);
  } catch (const Error& e) {  // a value the pickler refuses
    torchlet_fuzz::note_other_error(e);
    return 0;
  }
  LoadFileOptions o;
  o.zip_limits = torchlet_fuzz::zip_limits();
  o.verify_crc = true;
  for (const bool mmap : {false, true}) {
    o.mmap = mmap;
    Value back;
    try {
      back = load_from_bytes(first, o, "saved");
    } catch (const std::exception& e) {
      torchlet_fuzz::finding("fuzz_roundtrip", std::string("a saved checkpoint does not load back: ") + e.what());
    }
    Comparer c;
    c.values(v, back);
    std::vector<uint8_t> second;
    try {
      second = save_to_bytes(back);
    } catch (const std::exception& e) {
      torchlet_fuzz::finding("fuzz_roundtrip", std::string("a loaded checkpoint cannot be saved again: ") + e.what());
    }
    if (second != first) torchlet_fuzz::finding("fuzz_roundtrip", "re-saving the loaded value gives different bytes");
  }
  return 0;
}
