// The restricted unpickler against real torch.save output of PyTorch 1.13 (fixtures from
// tests/fixtures/gen/unpickle.py: pk_<case>.pkl is archive/data.pkl, pk_<case>_<key>.bin the storage records),
// and against hostile or corrupt pickles, which must fail with one-line IOErrors naming the opcode and offset.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "torchlet/io/unpickler.hpp"

using namespace torchlet;
using testing::check_equal;
using testing::fixture;
using testing::values;
using namespace std::string_literals;

namespace {

std::vector<uint8_t> read_bytes(const std::string& name) {
  std::ifstream f(std::string(TORCHLET_FIXTURES) + "/" + name, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "missing fixture ", name);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

/// Loads pk_<name>.pkl, resolving storages from pk_<name>_<key>.bin; counts resolver calls per key.
struct Loaded {
  Value v;
  std::map<std::string, int> calls;
};

Loaded load(const std::string& name, const io::UnpickleOptions& opt = {}) {
  Loaded out;
  const auto pkl = read_bytes("pk_" + name + ".pkl");
  out.v = io::unpickle(pkl, opt, [&](const std::string& key, DType dtype, int64_t numel, const std::string& loc) {
    CHECK(loc == "cpu");
    ++out.calls[key];
    const auto bytes = read_bytes("pk_" + name + "_" + key + ".bin");
    CHECK(static_cast<int64_t>(bytes.size()) == numel * element_size(dtype));
    Storage s = Storage::allocate(bytes.size());
    if (!bytes.empty()) std::memcpy(s.data(), bytes.data(), bytes.size());
    return s;
  });
  return out;
}

std::vector<std::string> keys_of(const Value& d) {
  std::vector<std::string> k;
  for (const auto& [key, v] : d.as_dict()) k.push_back(key.is_string() ? key.as_string() : key.repr());
  return k;
}

/// The IOError message of unpickling `bytes` (fails the test when it does not throw IOError).
std::string error_of(const std::vector<uint8_t>& bytes, const io::UnpickleOptions& opt = {}) {
  return testing::io_error_of([&] {
    io::unpickle(bytes, opt, [](const std::string&, DType dtype, int64_t numel, const std::string&) {
      return Storage::allocate(static_cast<size_t>(numel * element_size(dtype)));
    });
  });
}

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
/// The bytes of a string literal, embedded NULs included.
template <size_t N>
std::vector<uint8_t> bytes_of(const char (&s)[N]) {
  return std::vector<uint8_t>(s, s + N - 1);
}

void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
}

}  // namespace

TEST_CASE("unpickle: shared storages and views are rebuilt exactly (protocol 2 and 4)") {
  for (const char* name : {"views", "views_p4"}) {
    CAPTURE(name);
    const Loaded l = load(name);
    const Value& sd = l.v;
    CHECK(keys_of(sd) == std::vector<std::string>{"base", "slice", "t", "scalar"});
    CHECK(l.calls.size() == 2);
    for (const auto& [k, n] : l.calls) CHECK(n == 1);  // resolved once per key
    const Tensor base = sd.at("base").as_tensor(), sl = sd.at("slice").as_tensor(), t = sd.at("t").as_tensor();
    CHECK(base.sizes() == Shape{12});
    CHECK(sl.sizes() == Shape{4});
    CHECK(sl.storage_offset() == 2);
    CHECK(t.sizes() == Shape{4, 3});
    CHECK(t.strides() == Shape{1, 4});
    CHECK(t.storage_offset() == 0);
    CHECK(base.storage().is_same(sl.storage()));
    CHECK(base.storage().is_same(t.storage()));
    CHECK(values(sl) == std::vector<double>{2, 3, 4, 5});
    CHECK(values(t)[1] == 4.0);  // t[0][1] = base[4]
    const Tensor s = sd.at("scalar").as_tensor();
    CHECK(s.dim() == 0);
    CHECK(s.dtype() == kInt64);
    CHECK(values(s) == std::vector<double>{7});
    // OrderedDict state_dict BUILD state is kept as attributes (here no _metadata: a plain OrderedDict).
  }
}

TEST_CASE("unpickle: every dtype and Python scalar (protocol 2 and 4)") {
  for (const char* name : {"dtypes", "dtypes_p4"}) {
    CAPTURE(name);
    const Value d = load(name).v;
    const std::map<std::string, DType> dts = {{"float32", kFloat32}, {"float64", kFloat64}, {"float16", kFloat16},
                                              {"bfloat16", kBFloat16}, {"int8", kInt8}, {"int16", kInt16},
                                              {"int32", kInt32}, {"int64", kInt64}, {"uint8", kUInt8},
                                              {"bool", kBool}};
    for (const auto& [n, dt] : dts) {
      CAPTURE(n);
      const Tensor t = d.at(std::string_view(n)).as_tensor();
      CHECK(t.dtype() == dt);
      CHECK(t.sizes() == Shape{2, 3});
      if (dt == kBool) CHECK(values(t) == std::vector<double>{1, 0, 1, 0, 0, 1});
      else if (is_floating_point(dt)) CHECK(values(t) == std::vector<double>{-1, -0.5, 0, 0.5, 1, 1.5});
      else if (dt == kUInt8) CHECK(values(t) == std::vector<double>{0, 1, 2, 3, 4, 5});
      else CHECK(values(t) == std::vector<double>{-2, -1, 0, 1, 2, 3});
    }
    CHECK(d.at("int").as_int() == 7);
    CHECK(d.at("neg").as_int() == -5);
    CHECK(d.at("big").as_int() == (int64_t{1} << 40));
    CHECK(d.at("bigneg").as_int() == -(int64_t{1} << 62));
    CHECK(d.at("float").as_double() == 2.5);
    CHECK(d.at("str").as_string() == "h\xc3\xa9llo");
    CHECK(d.at("none").is_none());
    CHECK(d.at("yes").as_bool() == true);
    CHECK(d.at("no").as_bool() == false);
    CHECK(d.at("tuple") == Value::tuple({1, 2.0, "x"}));
    CHECK(d.at("list") == Value::list({1, Value::list({2, Value::list({3})})}));
    CHECK(d.at("set") == Value::list({3}));
    CHECK(d.at("bytes").as_string() == std::string("\x00\xff" "ab", 4));
    CHECK(d.at("intkeys").at(0).as_string() == "a");
    CHECK(d.at("intkeys").at(1).as_string() == "b");
  }
}

TEST_CASE("unpickle: training checkpoints with SGD and Adam state") {
  for (const char* opt : {"sgd", "adam"}) {
    CAPTURE(opt);
    const Value c = load(std::string("ckpt_") + opt).v;
    CHECK(keys_of(c) == std::vector<std::string>{"epoch", "state_dict", "best_acc", "optimizer"});
    CHECK(c.at("epoch").as_int() == 3);
    CHECK(c.at("best_acc").as_double() == 71.5);
    const Value& sd = c.at("state_dict");
    CHECK(keys_of(sd) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "2.running_mean",
                                                  "2.running_var", "2.num_batches_tracked", "__attributes__"});
    check_equal(sd.at("0.weight").as_tensor(), fixture(std::string("pk_ckpt_") + opt + "_w0"));
    check_equal(sd.at("2.running_var").as_tensor(), fixture(std::string("pk_ckpt_") + opt + "_rv"));
    CHECK(values(sd.at("2.num_batches_tracked").as_tensor()) == std::vector<double>{2});
    const Value* attrs = io::pickled_attributes(sd);
    REQUIRE(attrs != nullptr);
    const Value& meta = attrs->at("_metadata");
    CHECK(keys_of(meta) == std::vector<std::string>{"", "0", "1", "2"});
    CHECK(meta.at("2").at("version").as_int() == 2);
    const Value& o = c.at("optimizer");
    const Value& st = o.at("state");
    CHECK(st.size() == 4);
    const Value& g = o.at("param_groups").at(0);
    CHECK(g.at("params") == Value::list({0, 1, 2, 3}));
    if (std::string(opt) == "sgd") {
      CHECK(g.at("lr").as_double() == 0.1);
      CHECK(g.at("momentum").as_double() == 0.9);
      CHECK(g.at("nesterov").as_bool() == false);
      CHECK(g.at("foreach").is_none());
      check_equal(st.at(0).at("momentum_buffer").as_tensor(), fixture("pk_ckpt_sgd_s0"));
    } else {
      CHECK(g.at("lr").as_double() == 1e-3);
      CHECK(g.at("betas") == Value::tuple({0.9, 0.999}));
      CHECK(g.at("eps").as_double() == 1e-8);
      const Tensor step = st.at(0).at("step").as_tensor();
      CHECK(step.dim() == 0);
      CHECK(step.dtype() == kFloat32);
      CHECK(values(step) == std::vector<double>{2});
      check_equal(st.at(0).at("exp_avg_sq").as_tensor(), fixture("pk_ckpt_adam_s0"));
      CHECK(keys_of(st.at(0)) == std::vector<std::string>{"step", "exp_avg", "exp_avg_sq"});
    }
    // Optimizer state shares no storage with the model.
    CHECK(!st.at(0).at(std::string(opt) == "sgd" ? "momentum_buffer" : "exp_avg").as_tensor().storage().is_same(
        sd.at("0.weight").as_tensor().storage()));
  }
}

TEST_CASE("unpickle: BatchNorm state_dict keeps _metadata") {
  const Value sd = load("bn").v;
  CHECK(keys_of(sd) == std::vector<std::string>{"weight", "bias", "running_mean", "running_var",
                                                "num_batches_tracked", "__attributes__"});
  CHECK(values(sd.at("running_mean").as_tensor()) == std::vector<double>{0.5, -1.0, 2.0});
  CHECK(io::pickled_attributes(sd)->at("_metadata").at("").at("version").as_int() == 2);
}

TEST_CASE("unpickle: a whole pickled nn.Sequential becomes inert objects and a state_dict") {
  for (const char* name : {"model", "model_p4"}) {
    CAPTURE(name);
    const Value m = load(name).v;
    CHECK(io::pickled_class(m) == "torch.nn.modules.container.Sequential");
    const Value& mods = m.at("_modules");
    CHECK(io::pickled_class(mods.at("0")) == "torch.nn.modules.linear.Linear");
    CHECK(io::pickled_class(mods.at("1")) == "torch.nn.modules.activation.ReLU");
    CHECK(mods.at("1").at("inplace").as_bool() == false);
    CHECK(mods.at("0").at("in_features").as_int() == 3);
    const Value sd = io::module_state_dict(m);
    CHECK(keys_of(sd) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "2.running_mean",
                                                  "2.running_var", "2.num_batches_tracked"});
    check_equal(sd.at("0.weight").as_tensor(), fixture("pk_model_w0"));
    check_equal(sd.at("0.bias").as_tensor(), fixture("pk_model_b0"));
    CHECK(values(sd.at("2.running_var").as_tensor()) == std::vector<double>{1, 1});
  }
  CHECK_THROWS_AS(io::module_state_dict(Value::dict({{"a", 1}})), ValueError);
}

TEST_CASE("unpickle: module_state_dict names a key that is not a str and where it is") {
  auto message = [](const Value& m) -> std::string {
    try {
      (void)io::module_state_dict(m);
    } catch (const ValueError& e) {
      return e.what();
    }
    FAIL("no ValueError");
    return {};
  };
  auto module = [](Value params, Value modules) {
    return Value::dict({{"__class__", "torch.nn.modules.linear.Linear"}, {"_parameters", std::move(params)},
                        {"_buffers", Value::dict({})}, {"_modules", std::move(modules)}});
  };
  ValueDict bad_params;
  bad_params.set(Value::tuple({1, 2}), Value(Tensor(Storage::allocate(4), kFloat32, {1}, {1})));
  const Value inner = module(Value(std::move(bad_params)), Value::dict({}));
  const std::string a = message(module(Value::dict({}), Value::dict({{"layer1", Value::dict({})}, {"fc", inner}})));
  CHECK_MESSAGE(a.find("key (1, 2) in module 'fc' _parameters: expected a str, got tuple") != std::string::npos, a);
  ValueDict bad_modules;
  bad_modules.set(Value(7), inner);
  const std::string b = message(module(Value::dict({}), Value(std::move(bad_modules))));
  CHECK_MESSAGE(b.find("key 7 in the module's _modules: expected a str, got int") != std::string::npos, b);
}

TEST_CASE("unpickle: hostile globals are refused by name, never executed") {
  const std::string a = error_of(read_bytes("pk_hostile_os_system.pkl"));
  CHECK(a.find("refusing to load global posix.system: torchlet never executes code from a file") !=
        std::string::npos);
  CHECK(a.find("GLOBAL") != std::string::npos);
  CHECK(a.find("offset 2") != std::string::npos);
  CHECK(error_of(read_bytes("pk_hostile_eval.pkl")).find("builtins.eval") != std::string::npos);
  CHECK(error_of(read_bytes("pk_hostile_posix_system_p4.pkl")).find("posix.system") != std::string::npos);
  CHECK(error_of(read_bytes("pk_hostile_subprocess.pkl")).find("subprocess.Popen") != std::string::npos);
  for (const char* g : {"os\nsystem", "nt\nsystem", "sys\nexit", "builtins\nexec", "__builtin__\ngetattr",
                        "builtins\n__import__", "builtins\ncompile", "builtins\nopen", "torch\nload",
                        "torch.serialization\nload", "builtins\nprint.__class__", "collections\nnamedtuple"}) {
    CAPTURE(g);
    const std::string e = error_of(bytes_of(std::string("\x80\x02" "c") + g + "\n)R."));
    std::string dotted = g;
    dotted[dotted.find('\n')] = '.';
    if (dotted.rfind("__builtin__", 0) == 0) dotted.replace(0, 11, "builtins");
    CHECK(e.find("refusing to load global " + dotted) != std::string::npos);
  }
  // An unknown class may become an inert object, but calling it is refused.
  CHECK(error_of(bytes_of("\x80\x02" "cmymodule\nEvil\n)R.")).find("refusing to call global mymodule.Evil") !=
        std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02" "cmymodule\nEvil\n)\x81."), io::UnpickleOptions{.allow_objects = false})
            .find("refusing to load global mymodule.Evil") != std::string::npos);
  // Obfuscation: STACK_GLOBAL with non-str operands, INST/OBJ, extension codes.
  CHECK(error_of(bytes_of("\x80\x04K\x01K\x02\x93.")).find("STACK_GLOBAL operands") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02(ios\nsystem\n.")).find("INST") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02\x82\x01.")).find("EXT1") != std::string::npos);
  // Unsupported tensor kinds and storages are named.
  CHECK(error_of(bytes_of("\x80\x02" "ctorch._utils\n_rebuild_qtensor\n.")).find("_rebuild_qtensor") !=
        std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02" "ctorch\nComplexFloatStorage\n.")).find("not supported") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02" "ctorch\ncomplex64\n.")).find("not supported") != std::string::npos);
}

TEST_CASE("unpickle: corrupt pickles fail with typed one-line errors naming opcode and offset") {
  // Every truncation of a real checkpoint.
  const auto good = read_bytes("pk_ckpt_adam.pkl");
  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    CHECK(!error_of(cut).empty());  // error_of FAILs unless an IOError is thrown; never crashes
  }
  CHECK(error_of(bytes_of("\x80\x02\xff.")).find("unknown opcode (opcode unknown 0xff at offset 2)") !=
        std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02" "R.")).find("stack underflow (opcode REDUCE 0x52 at offset 2)") !=
        std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02h\x05.")).find("memo index 5 was never stored") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02j\xff\xff\xff\xff.")).find("memo index 4294967295") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02\x8b\xf0\xff\xff\xff")).find("LONG4") != std::string::npos);
  CHECK(error_of(bytes_of(std::string("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", 14)))
            .find("does not fit int64") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02X\xf0\xff\xff\xff" "abc")).find("BINUNICODE") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff")).find("past the end") !=
        std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02]K\x01K\x02s.")).find("SETITEM target is a list") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02N.garbage")).find("trailing bytes") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02NN.")).find("STOP with 2 items") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02N")).find("no STOP") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x09N.")).find("protocol 9") != std::string::npos);
  CHECK(error_of({}).find("empty") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02" "e.")).find("no MARK") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02]q\x00h\x00" "a.")).find("recursive") != std::string::npos);
}

TEST_CASE("unpickle: bad persistent ids and tensor views") {
  auto pid = [](const std::string& type, const std::string& key, int numel) {
    std::string s = "(X";
    put_u32(s, 7);
    s += "storagec" + type + "\nX";
    put_u32(s, static_cast<uint32_t>(key.size()));
    s += key + "X";
    put_u32(s, 3);
    s += "cpuK" + std::string(1, static_cast<char>(numel)) + "tQ";
    return s;
  };
  CHECK(error_of(bytes_of("\x80\x02" + pid("torch\nEvilStorage", "0", 1) + ".")).find("torch.EvilStorage") !=
        std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02" + pid("torch\nFloatStorage", "../../etc/passwd", 1) + "."))
            .find("invalid storage key") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02(X\x06\x00\x00\x00moduletQ.")).find("persistent id has 1 fields") !=
        std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02" + pid("torch\nFloatStorage", "0", 1) + "."))
            .find("bare storage") != std::string::npos);
  // _rebuild_tensor_v2(storage(4 floats), offset, size, stride, False, OrderedDict())
  auto rebuild = [&](const std::string& offset, const std::string& size, const std::string& stride) {
    return bytes_of("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n(" + pid("torch\nFloatStorage", "0", 4) + offset +
                    size + stride + "\x89" "ccollections\nOrderedDict\n)Rt" "R.");
  };
  CHECK(error_of(rebuild("K\x01", "K\x04\x85", "K\x01\x85")).find("out of bounds of storage '0'") !=
        std::string::npos);
  CHECK(error_of(rebuild("K\x00"s, "J\xff\xff\xff\x7fJ\xff\xff\xff\x7f\x86", "J\xff\xff\xff\x7fK\x01\x86"))
            .find("out of bounds") != std::string::npos);
  CHECK(error_of(rebuild("K\x00"s, "K\x02\x85", "J\xff\xff\xff\xff\x85")).find("negative stride") !=
        std::string::npos);
  CHECK(error_of(rebuild("K\x00"s, "\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40K\x04\x86"s, "K\x01K\x01\x86"))
            .find("overflows") != std::string::npos);
  // _rebuild_from_type_v2(_rebuild_tensor_v2, torch.Tensor, (args...), {}) is rebuilt as the inner call.
  {
    const std::string inner = "(" + pid("torch\nFloatStorage", "0", 4) + "K\x01K\x02\x85K\x01\x85\x89" +
                              "ccollections\nOrderedDict\n)Rt";
    const auto b = bytes_of("\x80\x02" "ctorch._tensor\n_rebuild_from_type_v2\n(" +
                            "ctorch._utils\n_rebuild_tensor_v2\nctorch\nTensor\n"s + inner + "}tR.");
    const Value v = io::unpickle(b, {}, [](const std::string&, DType dt, int64_t n, const std::string&) {
      return Storage::allocate(static_cast<size_t>(n * element_size(dt)));
    });
    CHECK(v.as_tensor().storage_offset() == 1);
    CHECK(v.as_tensor().sizes() == Shape{2});
    CHECK(error_of(bytes_of("\x80\x02" "ctorch\nTensor\n)R.")).find("refusing to call global torch.Tensor") !=
          std::string::npos);
  }
  // A good one: 4 floats, a 2x2 view with stride (1, 2).
  const auto ok = rebuild("K\x00"s, "K\x02K\x02\x86", "K\x01K\x02\x86");
  const Value v = io::unpickle(ok, {}, [](const std::string&, DType dt, int64_t n, const std::string&) {
    return Storage::allocate(static_cast<size_t>(n * element_size(dt)));
  });
  CHECK(v.as_tensor().strides() == Shape{1, 2});
  // The resolver must return the promised size; the total storage bytes are limited.
  CHECK_THROWS_AS(io::unpickle(ok, {}, [](const std::string&, DType, int64_t, const std::string&) {
                    return Storage::allocate(3);
                  }),
                  IOError);
  CHECK(error_of(ok, io::UnpickleOptions{.max_total_tensor_bytes = 15}).find("max_total_tensor_bytes") !=
        std::string::npos);
}

TEST_CASE("unpickle: limits stop deep nesting, memo replay and huge inputs without recursion") {
  // 1e6 nested lists built on the stack: the stack limit trips first.
  {
    std::string s = "\x80\x02" + std::string(1000000, ']') + std::string(999999, 'a') + ".";
    CHECK(error_of(bytes_of(s)).find("max_stack") != std::string::npos);
    io::UnpickleOptions big;
    big.max_stack = 2000000;
    CHECK(error_of(bytes_of(s), big).find("max_depth") != std::string::npos);
  }
  // 1e6 MARKs.
  CHECK(error_of(bytes_of("\x80\x02" + std::string(1000000, '(') + ".")).find("MARKs nested") !=
        std::string::npos);
  // A 200000-long chain through the memo (each list appended into its parent after the parent was complete):
  // only the final conversion sees the depth; destruction of the chain must not recurse.
  {
    std::string s = "\x80\x02]r";
    put_u32(s, 0);
    s += "0";
    for (uint32_t i = 0; i < 200000; ++i) {
      s += "j";
      put_u32(s, i);
      s += "]r";
      put_u32(s, i + 1);
      s += "a0";
    }
    s += "j";
    put_u32(s, 0);
    s += ".";
    CHECK(error_of(bytes_of(s)).find("max_depth") != std::string::npos);
  }
  // Billion laughs through BINGET: each level holds the previous one twice.
  {
    std::string s = "\x80\x02]r";
    put_u32(s, 0);
    for (uint32_t i = 0; i < 60; ++i) {
      s += "0(j";
      put_u32(s, i);
      s += "j";
      put_u32(s, i);
      s += "lr";
      put_u32(s, i + 1);
    }
    s += ".";
    CHECK(error_of(bytes_of(s), io::UnpickleOptions{.max_nodes = 100000, .max_expansion = size_t{1} << 20})
              .find("max_nodes") != std::string::npos);
    CHECK(error_of(bytes_of(s)).find("memo replay bomb") != std::string::npos);  // the default expansion cap
  }
  // Memo, container and size limits.
  CHECK(error_of(bytes_of("\x80\x02Nq\x00q\x01q\x02."), io::UnpickleOptions{.max_memo_entries = 2})
            .find("max_memo_entries") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02](NNNNe."), io::UnpickleOptions{.max_container_size = 3})
            .find("max_container_size") != std::string::npos);
  CHECK(error_of(bytes_of("\x80\x02N."), io::UnpickleOptions{.max_pickle_bytes = 3}).find("max_pickle_bytes") !=
        std::string::npos);
  // 1e6 NONEs on the stack.
  CHECK(error_of(bytes_of("\x80\x02" + std::string(1000000, 'N') + ".")).find("max_stack") != std::string::npos);
}

namespace {

/// Bytes read from a "Vm...:   N kB" line of /proc/self/status, or -1.
int64_t status_bytes(const char* field) {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(std::strlen(field))) * 1024;
  return -1;
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

/// How far the resident set grew above where it was while `f` ran (the peak is reset first through
/// /proc/self/clear_refs), or -1 where it cannot be measured: Linux does not allow it, or AddressSanitizer keeps
/// freed memory in quarantine.
template <class F>
int64_t peak_growth(F&& f) {
  if (kAsan) {
    f();
    return -1;
  }
  const int64_t before = status_bytes("VmRSS:");
  std::ofstream reset("/proc/self/clear_refs");
  reset << "5" << std::flush;
  const bool ok = reset.good() && before > 0 && status_bytes("VmHWM:") <= before + (int64_t{4} << 20);
  f();
  return ok ? status_bytes("VmHWM:") - before : -1;
}

/// `\x80\x02` + a list holding `n` references (BINGET) to one str of `len` bytes.
std::string replayed_string(size_t len, size_t n) {
  std::string s = "\x80\x02](X";
  put_u32(s, static_cast<uint32_t>(len));
  s += std::string(len, 'a') + "q\x00"s;
  for (size_t i = 1; i < n; ++i) s += "h\x00"s;
  return s + "e.";
}

}  // namespace

TEST_CASE("unpickle: memo replay of a long string is refused before it is copied (max_result_bytes)") {
  // 1 MiB str fetched 3000 times: 3 GiB if converted; the default budget (256 MiB) refuses it before any copy.
  const auto bomb = bytes_of(replayed_string(size_t{1} << 20, 3000));
  std::string msg;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t grew = peak_growth([&] { msg = error_of(bomb); });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK_MESSAGE(msg.find("max_result_bytes 268435456") != std::string::npos, msg);
  CHECK(msg.find("UnpickleOptions::max_result_bytes") != std::string::npos);
  CHECK(msg.find('\n') == std::string::npos);
  CHECK_MESSAGE(secs < 5.0, secs);
  if (grew >= 0) CHECK_MESSAGE(grew < (int64_t{32} << 20), "grew by ", grew, " bytes");
  else MESSAGE("peak memory not measured (/proc/self/clear_refs not writable)");

  // Many references to short strings (what real checkpoints hold) load, each a copy of the original.
  const Value ok = io::unpickle(bytes_of(replayed_string(100, 4000)), {}, nullptr);
  REQUIRE(ok.size() == 4000);
  CHECK(ok.as_list()[3999].as_string() == std::string(100, 'a'));

  // The budget counts every copy, dict keys included; exactly the limit passes.
  io::UnpickleOptions small;
  small.max_result_bytes = 300;
  CHECK_NOTHROW(io::unpickle(bytes_of(replayed_string(100, 3)), small, nullptr));
  CHECK(error_of(bytes_of(replayed_string(100, 4)), small).find("max_result_bytes 300") != std::string::npos);
  small.max_result_bytes = 5;
  CHECK_NOTHROW(io::unpickle(bytes_of("\x80\x02}X\x05\x00\x00\x00" "abcdeK\x01s."), small, nullptr));
  CHECK(error_of(bytes_of("\x80\x02}X\x06\x00\x00\x00" "abcdefK\x01s."), small).find("max_result_bytes") !=
        std::string::npos);
}

TEST_CASE("unpickle: objects a pickle creates and drops cost no memory, and max_nodes bounds the rest") {
  // README finding R4: EMPTY_LIST POP repeated. Below the default max_nodes (2 Mi) it loads, and the popped lists
  // are freed as it goes (they once stayed until the end: ~250 bytes each).
  auto garbage = [](size_t n) {
    std::string s = "\x80\x02";
    s.reserve(2 * n + 4);
    for (size_t i = 0; i < n; ++i) s += "]0";
    return bytes_of(s + "N.");
  };
  {
    const auto many = garbage(1500000);
    Value v = Value(1);
    const int64_t grew = peak_growth([&] { v = io::unpickle(many, {}, nullptr); });
    CHECK(v.is_none());
    if (grew >= 0) CHECK_MESSAGE(grew < (int64_t{64} << 20), "grew by ", grew, " bytes");
  }
  // Past it (the README's 32 KB zip made 16 Mi of them and 3.4 GB): refused, in bounded memory.
  {
    const auto too_many = garbage(size_t{1} << 22);
    std::string msg;
    const int64_t grew = peak_growth([&] { msg = error_of(too_many); });
    CHECK_MESSAGE(msg.find("more than max_nodes 2097152 objects (UnpickleOptions::max_nodes)") != std::string::npos,
                  msg);
    if (grew >= 0) CHECK_MESSAGE(grew < (int64_t{64} << 20), "grew by ", grew, " bytes");
  }
  // Objects that stay alive count too: 5 lists in a list with max_nodes 6 load, with 5 the sixth is refused.
  const auto six = bytes_of("\x80\x02](]]]]]e.");
  CHECK(io::unpickle(six, io::UnpickleOptions{.max_nodes = 6}, nullptr).size() == 5);
  CHECK(error_of(six, io::UnpickleOptions{.max_nodes = 5}).find("max_nodes 5") != std::string::npos);
}
