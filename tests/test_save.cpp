// The checkpoint writer: io::pickle byte-for-byte against the data.pkl real PyTorch 1.13 wrote for the same
// structure (fixtures from tests/fixtures/gen/save.py, prefix sv_), round trips through io::unpickle and ZipReader
// for every dtype, shared storages and views, determinism, and the atomic file's failure paths (injected ENOSPC,
// EIO, EACCES, ...), which must leave the previous file untouched and no temporary file behind.
#include <doctest/doctest.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "fixture_files.hpp"
#include "torchlet/io/atomic_file.hpp"
#include "torchlet/io/load.hpp"
#include "torchlet/io/pickler.hpp"
#include "torchlet/io/save.hpp"
#include "torchlet/io/unpickler.hpp"
#include "torchlet/io/zip.hpp"
#include "torchlet/tensor/factory.hpp"

using namespace torchlet;

using testing::io_error_of;

namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot read ", path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}
std::vector<uint8_t> fixture_bytes(const std::string& name) {
  return read_file(std::string(TORCHLET_FIXTURES) + "/" + name);
}
std::vector<std::string> fixture_lines(const std::string& name) {
  std::ifstream f(std::string(TORCHLET_FIXTURES) + "/" + name);
  REQUIRE(f.good());
  std::vector<std::string> out;
  for (std::string l; std::getline(f, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

/// Checks two pickles are identical, reporting the first differing offset.
void check_same_pickle(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want, const std::string& what) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  CHECK_MESSAGE(got == want, what, ": pickles differ at offset ", i, " (got ", got.size(), " bytes, want ",
                want.size(), ")");
}

/// A tensor of `sizes` whose bytes are i*37+5 (bools 0/1), for any dtype.
Tensor patterned(DType dt, const Shape& sizes) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  const size_t nb = size_t(n * element_size(dt));
  Storage s = Storage::allocate(nb);
  auto* p = static_cast<uint8_t*>(s.data());
  for (size_t i = 0; i < nb; ++i) p[i] = dt == kBool ? uint8_t(i % 3 == 0) : uint8_t(i * 37 + 5);
  Shape strides(sizes.size(), 1);
  for (int64_t d = int64_t(sizes.size()) - 2; d >= 0; --d) strides[size_t(d)] = strides[size_t(d) + 1] * sizes[size_t(d) + 1];
  return Tensor(s, dt, sizes, strides, 0);
}

/// A Value read back from save_to_bytes() output with the zip reader and the unpickler (CRCs checked).
Value load_back(const std::vector<uint8_t>& bytes, std::vector<std::string>* keys = nullptr) {
  io::ZipReadOptions ro;
  ro.check_crc = true;
  auto zr = io::ZipReader::from_buffer(bytes, "<saved>", ro);
  const auto pkl = zr.read("archive/data.pkl");
  return io::unpickle(pkl, {}, [&](const std::string& key, DType, int64_t, const std::string& loc) {
    CHECK(loc == "cpu");
    if (keys) keys->push_back(key);
    const auto b = zr.read("archive/data/" + key);
    Storage s = Storage::allocate(b.size());
    if (!b.empty()) std::memcpy(s.data(), b.data(), b.size());
    return s;
  });
}

/// The bytes of a tensor's elements in row-major order.
std::vector<uint8_t> element_bytes(const Tensor& t) {
  std::vector<uint8_t> out;
  const int64_t es = t.element_size();
  const auto* base = static_cast<const uint8_t*>(t.storage().data());
  std::vector<int64_t> idx(size_t(t.dim()), 0);
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t off = t.storage_offset();
    for (int64_t d = 0; d < t.dim(); ++d) off += idx[size_t(d)] * t.strides()[size_t(d)];
    out.insert(out.end(), base + off * es, base + (off + 1) * es);
    for (int64_t d = t.dim() - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < t.sizes()[size_t(d)]) break;
      idx[size_t(d)] = 0;
    }
  }
  return out;
}

Value views_value() {
  Tensor base = arange(0, 12, 1, kFloat32);
  Tensor other = arange(4);
  return Value::dict({{"base", base},
                      {"slice", base.slice(0, 2, 6)},
                      {"t", base.view({3, 4}).t()},
                      {"other", other},
                      {"again", base},
                      {"tail", other.slice(0, 1, 4)},
                      {"scalar", scalar_tensor(7, kInt64)},
                      {"empty", zeros({0}, kFloat32)}});
}

Value scalars_value() {
  const std::string uni = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xf0\x9f\x8e\x89";
  Value ints = Value::list({0, 1, 255, 256, 65535, 65536, -1, -256, int64_t(2147483647), int64_t(2147483648LL),
                            int64_t(-2147483648LL), int64_t(-2147483649LL), int64_t(1) << 40, INT64_MAX, INT64_MIN,
                            128, -128, 1 << 15, int64_t(1) << 47, -(int64_t(1) << 39)});
  Value floats = Value::list({0.0, -0.0, 1e-08, 1.5, -2.25, 1e300, std::numeric_limits<double>::infinity(),
                              -std::numeric_limits<double>::infinity()});
  Value nested = Value::list({Value::list(), Value::dict(), Value::list({1, Value::list({2, Value::list({3})})}),
                              Value::dict({{1, "x"}, {-7, "y"}})});
  return Value::dict({{"none", nullptr},
                      {"yes", true},
                      {"no", false},
                      {"ints", ints},
                      {"floats", floats},
                      {"str", uni},
                      {"empty_str", ""},
                      {"t0", Value::tuple()},
                      {"t1", Value::tuple({1})},
                      {"t2", Value::tuple({1, "a"})},
                      {"t3", Value::tuple({1, 2.5, nullptr})},
                      {"t4", Value::tuple({1, 2, 3, 4})},
                      {"nested", nested},
                      {"repeat", Value::list({"a", "a", uni})}});
}

Value range_list(int64_t n, int64_t sign = 1) {
  Value::List l;
  for (int64_t i = 0; i < n; ++i) l.emplace_back(sign * i);
  return Value::list(std::move(l));
}

const char* const kFixtureCases[] = {"tiny", "views", "dtypes", "scalars", "batches", "state_dict",
                                     "ckpt", "adam", "bn", "intkeys"};

std::string temp_dir() {
  char tmpl[] = "/tmp/torchlet_save_XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  return tmpl;
}
std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  REQUIRE(d != nullptr);
  while (const dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) out.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}
void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}
std::string read_text(const std::string& path) {
  const auto b = read_file(path);
  return std::string(b.begin(), b.end());
}
void remove_tree(const std::string& dir) {
  for (const auto& n : list_dir(dir)) ::unlink((dir + "/" + n).c_str());
  ::rmdir(dir.c_str());
}


}  // namespace

TEST_SUITE("save") {

TEST_CASE("pickle: structures built in C++ give the bytes PyTorch 1.13 writes") {
  SUBCASE("tiny") {
    Value v = Value::dict({{"x", ones({1}, kFloat32)}});
    check_same_pickle(io::pickle(v).bytes, fixture_bytes("sv_tiny.pkl"), "tiny");
  }
  SUBCASE("shared storages, views, a repeated tensor, 0-dim and empty tensors") {
    const io::Pickled p = io::pickle(views_value());
    check_same_pickle(p.bytes, fixture_bytes("sv_views.pkl"), "views");
    REQUIRE(p.storages.size() == 4);
    CHECK(p.storages[0].key == "0");
    CHECK(p.storages[0].numel == 12);
    CHECK(p.storages[0].dtype == kFloat32);
    CHECK(p.storages[1].numel == 4);
    CHECK(p.storages[1].dtype == kInt64);
    CHECK(p.storages[2].numel == 1);
    CHECK(p.storages[3].numel == 0);
  }
  SUBCASE("every dtype PyTorch 1.13 has") {
    Value d = Value::dict();
    for (DType dt : {kFloat32, kFloat64, kFloat16, kBFloat16, kInt8, DType::Int16, kInt32, kInt64, kUInt8, kBool})
      d[std::string(dtype_name(dt))] = zeros({2, 3}, dt);
    check_same_pickle(io::pickle(d).bytes, fixture_bytes("sv_dtypes.pkl"), "dtypes");
  }
  SUBCASE("scalars: ints of every width, floats, unicode, tuples, nesting, repeated strings") {
    check_same_pickle(io::pickle(scalars_value()).bytes, fixture_bytes("sv_scalars.pkl"), "scalars");
  }
  SUBCASE("APPENDS/SETITEMS batches of 1000 and single APPEND/SETITEM") {
    ValueDict d1001;
    for (int64_t i = 0; i < 1001; ++i) d1001.set(i, -i);
    Value v = Value::dict({{"l1", Value::list({7})},
                           {"l1000", range_list(1000)},
                           {"l1001", range_list(1001)},
                           {"l2500", range_list(2500)},
                           {"d1", Value::dict({{0, 0}})},
                           {"d1001", Value(std::move(d1001))}});
    check_same_pickle(io::pickle(v).bytes, fixture_bytes("sv_batches.pkl"), "batches");
  }
  SUBCASE("OrderedDict batches: a trailing batch of one is a SETITEM, no empty batch") {
    ValueDict o1001, o1000, d1000;
    for (int64_t i = 0; i < 1001; ++i) o1001.set(i, i);
    for (int64_t i = 0; i < 1000; ++i) o1000.set(i, i);
    for (int64_t i = 0; i < 1000; ++i) d1000.set(i, i);
    o1001.set("__attributes__", Value::dict());
    o1000.set("__attributes__", Value::dict());
    Value v = Value::dict({{"o1001", Value(std::move(o1001))}, {"o1000", Value(std::move(o1000))},
                           {"d1000", Value(std::move(d1000))}});
    check_same_pickle(io::pickle(v).bytes, fixture_bytes("sv_od_batches.pkl"), "od_batches");
  }
  SUBCASE("int keys (optimizer state)") {
    Value v = Value::dict({{0, Value::dict({{"step", 3}})}, {1, Value::dict({{"step", 4}})}});
    check_same_pickle(io::pickle(v).bytes, fixture_bytes("sv_intkeys.pkl"), "intkeys");
  }
  SUBCASE("an empty \"__attributes__\" makes an OrderedDict without BUILD") {
    Value v = Value::dict({{"a", 1}, {"b", ones({2}, kFloat32)}, {"__attributes__", Value::dict()}});
    check_same_pickle(io::pickle(v).bytes, fixture_bytes("sv_ordered.pkl"), "ordered");
  }
}

TEST_CASE("pickle: unpickling PyTorch's data.pkl and pickling it again gives the same bytes") {
  for (const std::string name : kFixtureCases) {
    CAPTURE(name);
    const auto want = fixture_bytes(std::string("sv_") + name + ".pkl");
    const Value v = io::unpickle(want, {}, [](const std::string&, DType dt, int64_t numel, const std::string&) {
      return Storage::allocate(size_t(numel * element_size(dt)));
    });
    check_same_pickle(io::pickle(v).bytes, want, name);
    // The archive holds the records PyTorch 1.13 wrote (plus byteorder), storages in numeric order.
    std::vector<std::string> torch_names = fixture_lines(std::string("sv_") + name + "_entries.txt"), ours;
    const auto zr = io::ZipReader::from_buffer(save_to_bytes(v));
    for (const auto& e : zr.entries()) ours.push_back(e.name);
    CHECK(ours.size() == torch_names.size() + 1);
    CHECK(ours[1] == "archive/byteorder");
    for (size_t i = 2; i + 1 < ours.size(); ++i) CHECK(ours[i] == "archive/data/" + std::to_string(i - 2));
    ours.erase(ours.begin() + 1);
    std::sort(ours.begin(), ours.end());
    std::sort(torch_names.begin(), torch_names.end());
    CHECK(ours == torch_names);
  }
}

TEST_CASE("pickle: a state_dict's _metadata round-trips as OrderedDict + BUILD") {
  const auto want = fixture_bytes("sv_state_dict.pkl");
  const Value v = io::unpickle(want, {}, [](const std::string&, DType dt, int64_t numel, const std::string&) {
    return Storage::allocate(size_t(numel * element_size(dt)));
  });
  const Value* attrs = io::pickled_attributes(v);
  REQUIRE(attrs != nullptr);
  const Value& md = attrs->at("_metadata");
  CHECK(md.at("1").at("version").as_int() == 2);  // BatchNorm2d
  CHECK(md.at("").at("version").as_int() == 1);
  // The same structure built by hand.
  Value sd = Value::dict();
  for (const auto& [k, t] : v.as_dict())
    if (k.as_string() != "__attributes__") sd[k] = zeros(t.as_tensor().sizes(), t.as_tensor().dtype());
  ValueDict meta;
  for (const char* m : {"", "0", "1", "2", "3"}) meta.set(m, Value::dict({{"version", std::string(m) == "1" ? 2 : 1}}));
  sd["__attributes__"] = Value::dict({{"_metadata", Value(std::move(meta))}});
  check_same_pickle(io::pickle(sd).bytes, want, "state_dict built by hand");
}

TEST_CASE("pickle: storage-only dtypes use _rebuild_tensor_v3 and UntypedStorage, as PyTorch 2.x") {
  Tensor u = patterned(DType::UInt16, {2, 3});
  const io::Pickled p = io::pickle(Value::dict({{"u", u}}));
  const std::string s(p.bytes.begin(), p.bytes.end());
  CHECK(s.find("torch._utils\n_rebuild_tensor_v3\n") != std::string::npos);
  CHECK(s.find("torch\nUntypedStorage\n") != std::string::npos);
  CHECK(s.find("torch\nuint16\n") != std::string::npos);
  REQUIRE(p.storages.size() == 1);
  CHECK(p.storages[0].numel == 12);  // bytes
  CHECK(p.storages[0].dtype == kUInt8);
  CHECK(io::storage_class_name(kBFloat16) == "BFloat16Storage");
  CHECK(io::storage_class_name(DType::Float8_e4m3fn) == "UntypedStorage");
}

TEST_CASE("pickle: a str that is not UTF-8 (Python bytes) is written as CPython writes bytes and reads back") {
  // b'\x00\xffab' in a checkpoint loads as a str holding those bytes; saving it again must give a readable file
  const std::string raw("\x00\xff" "ab\x80", 5);
  const Value v = Value::dict({{"bytes", raw}, {"again", raw}, {"text", std::string("caf\xc3\xa9")}});
  const std::vector<uint8_t> pkl = io::pickle(v).bytes;
  const std::string text(pkl.begin(), pkl.end());
  CHECK(text.find("c_codecs\nencode\n") != std::string::npos);
  CHECK(text.find("latin1") != std::string::npos);
  const std::vector<uint8_t> file = save_to_bytes(v);
  const Value back = load_back(file);
  CHECK(back.at("bytes").as_string() == raw);
  CHECK(back.at("again").as_string() == raw);
  CHECK(back.at("text").as_string() == "caf\xc3\xa9");
  CHECK(save_to_bytes(back) == file);
}

TEST_CASE("pickle: values that cannot be saved raise one-line errors naming the path") {
  auto msg = [](const Value& v, const io::PickleOptions& o = {}) -> std::string {
    try {
      io::pickle(v, o);
    } catch (const ValueError& e) {
      return e.what();
    }
    FAIL("no ValueError");
    return {};
  };
  const std::string undefined = msg(Value::dict({{"state_dict", Value::dict({{"fc.weight", Tensor()}})}}));
  CHECK(undefined.find("\"state_dict.fc.weight\"") != std::string::npos);
  CHECK(undefined.find("undefined") != std::string::npos);

  Tensor f = zeros({4}, kFloat32);
  Tensor as_int(f.storage(), kInt32, {4}, {1}, 0);
  const std::string two = msg(Value::dict({{"a", f}, {"b", Value::list({as_int})}}));
  CHECK(two.find("\"b.0\"") != std::string::npos);
  CHECK(two.find("float32") != std::string::npos);

  Value deep = Value::list();
  for (int i = 0; i < 20; ++i) deep = Value::list({deep});
  io::PickleOptions shallow;
  shallow.max_depth = 10;
  CHECK(msg(deep, shallow).find("max_depth 10") != std::string::npos);
  CHECK_NOTHROW(io::pickle(deep));
  // The default limit matches what io::unpickle accepts: 1000 nested lists are written and read back.
  Value d1000 = Value::list();
  for (int i = 1; i < 1000; ++i) d1000 = Value::list({std::move(d1000)});
  const auto bytes = io::pickle(d1000).bytes;
  CHECK_NOTHROW(io::unpickle(bytes, {}, nullptr));
  CHECK(msg(Value::list({std::move(d1000)})).find("max_depth 1000") != std::string::npos);

  ValueDict bad_key;
  bad_key.set(Value::tuple({1, Value::list()}), 2);
  const std::string key = msg(Value::dict({{"d", Value(std::move(bad_key))}}));
  CHECK(key.find("cannot be a Python dict key") != std::string::npos);

  const std::string attrs = msg(Value::dict({{"a", 1}, {"__attributes__", 3}}));
  CHECK(attrs.find("\"__attributes__\"") != std::string::npos);
}

TEST_CASE("pickle: pickler and unpickler agree on max_depth (the limit passes both ways, one more neither)") {
  // `levels` containers nested (lists, tuples and dicts in turn), each with a second item so that lists and dicts
  // are written with a MARK; the innermost list holds `leaf`.
  auto nest = [](int levels, const Value& leaf) {
    Value v = Value::list({leaf, Value(1)});
    for (int i = 1; i < levels; ++i) {
      if (i % 3 == 0) v = Value::dict({{"k", std::move(v)}, {"n", 2}});
      else if (i % 3 == 1) v = Value::tuple({std::move(v), Value(2)});
      else v = Value::list({std::move(v), Value(2)});
    }
    return v;
  };
  // The innermost value, and how many containers lie above it.
  auto innermost = [](const Value& v) {
    const Value* p = &v;
    int levels = 0;
    while (p->is_list() || p->is_tuple() || p->is_dict()) {
      ++levels;
      p = p->is_dict() ? &p->at("k") : &p->as_list()[0];
    }
    return std::make_pair(levels, *p);
  };
  auto read = [](const std::vector<uint8_t>& file, int64_t max_depth) {
    LoadFileOptions o;
    o.unpickle.max_depth = max_depth;
    return load_from_bytes(file, o);
  };
  Tensor t = zeros({3}, kFloat32);
  t.data<float>()[1] = 2.5f;  // a tensor adds two MARKs (its arguments and its persistent id)
  for (const Value& leaf : {Value(7), Value(t), Value("text"), Value(0.25)}) {
    CAPTURE(leaf.repr());
    const std::vector<uint8_t> file = save_to_bytes(nest(1000, leaf));
    const auto [levels, back] = innermost(read(file, 1000));
    CHECK(levels == 1000);
    if (leaf.is_tensor()) CHECK(back.as_tensor().data<float>()[1] == 2.5f);
    else CHECK(back == leaf);

    const Value deeper = nest(1001, leaf);
    std::string refused;
    try {
      (void)save_to_bytes(deeper);
    } catch (const ValueError& e) {
      refused = e.what();
    }
    CHECK_MESSAGE(refused.find("containers nested deeper than max_depth 1000") != std::string::npos, refused);
    SaveOptions allow;
    allow.pickle.max_depth = 1001;
    const std::vector<uint8_t> written = save_to_bytes(deeper, allow);
    std::string msg;
    try {
      (void)read(written, 1000);
    } catch (const LimitError& e) {
      msg = e.what();
    }
    CHECK_MESSAGE(msg.find("deeper than max_depth 1000") != std::string::npos, msg);
    CHECK(innermost(read(written, 1001)).first == 1001);
  }
}

TEST_CASE("pickle: equal tuples are shared, but floats by their bits: NaNs of other payloads round-trip exactly") {
  auto nan_with = [](uint64_t bits) { return std::bit_cast<double>(bits); };
  const double quiet = nan_with(0x7ff8000000000000ull), negative = nan_with(0xfff8000000000000ull),
               payload = nan_with(0x7ff8000000000123ull), signalling = nan_with(0x7ff0000000000001ull);
  const Value v = Value::list({Value::tuple({quiet, 1}), Value::tuple({negative, 1}), Value::tuple({payload, 1}),
                               Value::tuple({signalling, 1}), Value::tuple({0.0, 1}), Value::tuple({-0.0, 1}),
                               Value::tuple({quiet, 1})});
  const Value back = io::unpickle(io::pickle(v).bytes, {}, nullptr);
  REQUIRE(back.size() == 7);
  for (size_t i = 0; i < 7; ++i) {
    CAPTURE(i);
    CHECK(std::bit_cast<uint64_t>(back.as_list()[i].as_list()[0].as_double()) ==
          std::bit_cast<uint64_t>(v.as_list()[i].as_list()[0].as_double()));
  }
  // Still one tuple for equal ones: the last is a BINGET of the first (7 tuples, 6 written).
  const std::vector<uint8_t> bytes = io::pickle(v).bytes;
  CHECK(std::count(bytes.begin(), bytes.end(), uint8_t{0x86}) == 6);  // TUPLE2
}

TEST_CASE("save_to_bytes: PyTorch's records, in order, aligned, with CRCs; reads back") {
  const auto bytes = save_to_bytes(views_value());
  auto zr = io::ZipReader::from_buffer(bytes);
  std::vector<std::string> names;
  for (const auto& e : zr.entries()) {
    names.push_back(e.name);
    CHECK(e.method == 0);
    CHECK(e.data_offset % 64 == 0);
    CHECK(zr.verify_crc(e.name));
  }
  CHECK(names == std::vector<std::string>{"archive/data.pkl", "archive/byteorder", "archive/data/0",
                                          "archive/data/1", "archive/data/2", "archive/data/3", "archive/version"});
  const auto bo = zr.read("archive/byteorder");
  CHECK(std::string(bo.begin(), bo.end()) == "little");
  const auto ver = zr.read("archive/version");
  CHECK(std::string(ver.begin(), ver.end()) == "3\n");
  check_same_pickle(zr.read("archive/data.pkl"), fixture_bytes("sv_views.pkl"), "data.pkl in the archive");
  // The whole storage is written, not just the viewed part.
  CHECK(zr.entry("archive/data/0").uncompressed_size == 48);

  const Value v = load_back(bytes);
  const Tensor base = v.at("base").as_tensor(), slice = v.at("slice").as_tensor(), t = v.at("t").as_tensor();
  CHECK(slice.storage().is_same(base.storage()));
  CHECK(t.storage().is_same(base.storage()));
  CHECK(v.at("again").as_tensor().storage().is_same(base.storage()));
  CHECK(slice.storage_offset() == 2);
  CHECK(t.strides() == Shape{1, 4});
  CHECK(element_bytes(t) == element_bytes(views_value().at("t").as_tensor()));
  CHECK(v.at("tail").as_tensor().storage().is_same(v.at("other").as_tensor().storage()));
  CHECK(v.at("scalar").as_tensor().dim() == 0);
  CHECK(v.at("empty").as_tensor().numel() == 0);
}

TEST_CASE("save_to_bytes: every dtype round-trips bit for bit") {
  const DType all[] = {kBool,    kUInt8,   kInt8,          DType::Int16,        kInt32,
                       kInt64,   kFloat16, kBFloat16,      kFloat32,            kFloat64,
                       DType::UInt16, DType::UInt32, DType::UInt64, DType::Float8_e4m3fn, DType::Float8_e5m2,
                       DType::Float8_e4m3fnuz, DType::Float8_e5m2fnuz};
  Value d = Value::dict();
  for (DType dt : all) d[std::string(dtype_name(dt))] = patterned(dt, {2, 3});
  // A transposed view of a uint32 storage and a slice of a float8 one keep their layout.
  Tensor u32 = patterned(DType::UInt32, {3, 4});
  d["u32_t"] = u32.t();
  d["u32"] = u32;
  const auto bytes = save_to_bytes(d);
  std::vector<std::string> keys;
  const Value back = load_back(bytes, &keys);
  CHECK(keys.size() == std::size(all) + 1);
  for (DType dt : all) {
    CAPTURE(dtype_name(dt));
    const Tensor t = back.at(Value(std::string(dtype_name(dt)))).as_tensor();
    CHECK(t.dtype() == dt);
    CHECK(t.sizes() == Shape{2, 3});
    CHECK(element_bytes(t) == element_bytes(d.at(Value(std::string(dtype_name(dt)))).as_tensor()));
  }
  CHECK(back.at("u32_t").as_tensor().storage().is_same(back.at("u32").as_tensor().storage()));
  CHECK(element_bytes(back.at("u32_t").as_tensor()) == element_bytes(u32.t()));
}

TEST_CASE("save_to_bytes: a training checkpoint with nested dicts, int keys and _metadata round-trips") {
  Tensor w = patterned(kFloat32, {3, 2}), b = patterned(kFloat32, {3}), nbt = scalar_tensor(5, kInt64);
  ValueDict meta;
  meta.set("", Value::dict({{"version", 1}}));
  meta.set("bn", Value::dict({{"version", 2}}));
  Value sd = Value::dict({{"fc.weight", w},
                          {"fc.bias", b},
                          {"bn.num_batches_tracked", nbt},
                          {"__attributes__", Value::dict({{"_metadata", Value(std::move(meta))}})}});
  Value opt = Value::dict(
      {{"state", Value::dict({{0, Value::dict({{"momentum_buffer", patterned(kFloat32, {3, 2})}})},
                              {1, Value::dict({{"momentum_buffer", nullptr}})}})},
       {"param_groups", Value::list({Value::dict({{"lr", 0.1},
                                                  {"betas", Value::tuple({0.9, 0.999})},
                                                  {"nesterov", false},
                                                  {"foreach", nullptr},
                                                  {"params", Value::list({0, 1})}})})}});
  Value ckpt = Value::dict({{"epoch", 7},
                            {"arch", "resnet18"},
                            {"state_dict", sd},
                            {"optimizer", opt},
                            {"best_acc1", 71.5},
                            {"history", Value::list({Value::tuple({1, 0.5}), Value::tuple({2, 0.25})})},
                            {"big", int64_t(1) << 50}});
  const Value back = load_back(save_to_bytes(ckpt));
  CHECK(back.at("epoch").as_int() == 7);
  CHECK(back.at("arch").as_string() == "resnet18");
  CHECK(back.at("best_acc1").as_double() == 71.5);
  CHECK(back.at("big").as_int() == (int64_t(1) << 50));
  CHECK(back.at("history").repr() == "[(1, 0.5), (2, 0.25)]");
  CHECK(back.at("optimizer").at("param_groups").at(0).at("betas").repr() == "(0.9, 0.999)");
  CHECK(back.at("optimizer").at("state").at(1).at("momentum_buffer").is_none());
  CHECK(back.at("optimizer").at("state").at(0).at("momentum_buffer").as_tensor().sizes() == Shape{3, 2});
  const Value& bsd = back.at("state_dict");
  CHECK(element_bytes(bsd.at("fc.weight").as_tensor()) == element_bytes(w));
  CHECK(bsd.at("bn.num_batches_tracked").as_tensor().dim() == 0);
  const Value* attrs = io::pickled_attributes(bsd);
  REQUIRE(attrs != nullptr);
  CHECK(attrs->at("_metadata").at("bn").at("version").as_int() == 2);
  // Keys: first-seen order, one per storage.
  const auto pk = io::pickle(ckpt);
  REQUIRE(pk.storages.size() == 4);
  CHECK(pk.storages[3].key == "3");
}

TEST_CASE("save_to_bytes: deterministic; options change the archive folder and alignment") {
  const Value v = views_value();
  CHECK(save_to_bytes(v) == save_to_bytes(v));
  SaveOptions o;
  o.archive_name = "my_model";
  o.alignment = 4096;
  auto zr = io::ZipReader::from_buffer(save_to_bytes(v, o));
  for (const auto& e : zr.entries()) {
    CHECK(e.name.rfind("my_model/", 0) == 0);
    CHECK(e.data_offset % 4096 == 0);
  }
  o.archive_name = "a/b";
  CHECK_THROWS_AS(save_to_bytes(v, o), ValueError);
}

TEST_CASE("save: writes the same bytes as save_to_bytes, keeps the mode, removes stale temporaries") {
  const std::string dir = temp_dir();
  const std::string path = dir + "/model.pth";
  const Value v = views_value();
  save(path, v);
  CHECK(read_file(path) == save_to_bytes(v));
  CHECK(list_dir(dir) == std::vector<std::string>{"model.pth"});

  // An existing file's mode is kept.
  REQUIRE(::chmod(path.c_str(), 0640) == 0);
  save(path, Value::dict({{"x", 1}}));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);

  // A stale temporary from a killed save is removed; one another writer holds locked is not.
  write_text(dir + "/.model.pth.tmp-AbC123", "half a checkpoint");
  const std::string live = dir + "/.model.pth.tmp-Live01";
  write_text(live, "being written");
  const int fd = ::open(live.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
  write_text(dir + "/.other.pth.tmp-AbC123", "not ours");
  save(path, v);
  CHECK(list_dir(dir) == std::vector<std::string>{".model.pth.tmp-Live01", ".other.pth.tmp-AbC123", "model.pth"});
  ::close(fd);
  CHECK(io::AtomicFile::remove_stale_temporaries(path) == 1);
  remove_tree(dir);
}

TEST_CASE("save: failures leave the previous file untouched and no temporary file") {
  const std::string dir = temp_dir();
  const std::string path = dir + "/ckpt.pth";
  write_text(path, "previous checkpoint");
  const Value v = views_value();

  struct Case {
    io::FileStep step;
    uint64_t index;
    int err;
    const char* text;
  };
  const Case cases[] = {
      {io::FileStep::Create, 0, EACCES, "Permission denied"},
      {io::FileStep::Create, 0, EROFS, "Read-only file system"},
      {io::FileStep::Write, 0, ENOSPC, "No space left on device"},
      {io::FileStep::Write, 2, ENOSPC, "No space left on device"},
      {io::FileStep::Write, 1, EIO, "Input/output error"},
      {io::FileStep::Sync, 0, EIO, "Input/output error"},
      {io::FileStep::Close, 0, EDQUOT, "quota exceeded"},
      {io::FileStep::Rename, 0, EXDEV, "cross-device link"},
  };
  for (const Case& c : cases) {
    CAPTURE(io::file_step_name(c.step));
    CAPTURE(c.index);
    SaveOptions o;
    o.fault = [&](io::FileStep s, uint64_t i) { return s == c.step && i == c.index ? c.err : 0; };
    const std::string m = io_error_of([&] {
      // Small buffers, so that the archive takes several write(2) calls.
      io::AtomicFileOptions fo;
      fo.fault = o.fault;
      fo.buffer_size = 0;
      io::AtomicFile f(path, fo);
      const auto bytes = save_to_bytes(v);
      for (size_t off = 0; off < bytes.size(); off += 100) f.write(bytes.data() + off, std::min<size_t>(100, bytes.size() - off));
      f.commit();
    });
    CHECK_MESSAGE(m.find(c.text) != std::string::npos, m);
    CHECK(m.find(path) != std::string::npos);
    CHECK(read_text(path) == "previous checkpoint");
    CHECK(list_dir(dir) == std::vector<std::string>{"ckpt.pth"});
    // The same through save() itself (its 1 MiB buffer makes this archive a single write(2) call).
    if (c.step == io::FileStep::Write && c.index > 0) continue;
    const std::string m2 = io_error_of([&] { save(path, v, o); });
    CHECK(m2.find(c.text) != std::string::npos);
    CHECK(read_text(path) == "previous checkpoint");
    CHECK(list_dir(dir) == std::vector<std::string>{"ckpt.pth"});
  }

  // After the rename, a failing directory fsync is reported, but the new file is in place.
  SaveOptions o;
  o.fault = [](io::FileStep s, uint64_t) { return s == io::FileStep::SyncDir ? EIO : 0; };
  const std::string m = io_error_of([&] { save(path, v, o); });
  CHECK(m.find("was written") != std::string::npos);
  CHECK(read_file(path) == save_to_bytes(v));

  // A value that cannot be pickled: ValueError, nothing written.
  write_text(path, "previous checkpoint");
  CHECK_THROWS_AS(save(path, Value::dict({{"t", Tensor()}})), ValueError);
  CHECK(read_text(path) == "previous checkpoint");
  CHECK(list_dir(dir) == std::vector<std::string>{"ckpt.pth"});
  remove_tree(dir);
}

TEST_CASE("save: a missing or unusable directory is reported before any work") {
  const std::string dir = temp_dir();
  const std::string missing = io_error_of([&] { save(dir + "/nope/model.pth", Value(1)); });
  CHECK(missing.find("does not exist") != std::string::npos);
  CHECK(missing.find(dir + "/nope") != std::string::npos);
  write_text(dir + "/file", "x");
  const std::string notdir = io_error_of([&] { save(dir + "/file/model.pth", Value(1)); });
  CHECK(notdir.find("not a directory") != std::string::npos);
  ::mkdir((dir + "/sub").c_str(), 0755);
  const std::string isdir = io_error_of([&] { save(dir + "/sub", Value(1)); });
  CHECK(isdir.find("is a directory") != std::string::npos);
  ::rmdir((dir + "/sub").c_str());
  if (::geteuid() != 0) {  // root ignores directory permissions
    ::mkdir((dir + "/ro").c_str(), 0555);
    const std::string ro = io_error_of([&] { save(dir + "/ro/model.pth", Value(1)); });
    CHECK(ro.find("not writable") != std::string::npos);
    ::rmdir((dir + "/ro").c_str());
  }
  remove_tree(dir);
}

TEST_CASE("atomic file: a file without a directory part lands in the working directory") {
  const std::string dir = temp_dir();
  char old[4096];
  REQUIRE(::getcwd(old, sizeof(old)) != nullptr);
  REQUIRE(::chdir(dir.c_str()) == 0);
  const std::vector<uint8_t> data{1, 2, 3};
  io::write_file_atomic("plain.bin", data);
  CHECK(read_file("plain.bin") == data);
  REQUIRE(::chdir(old) == 0);
  remove_tree(dir);
}

}  // TEST_SUITE
