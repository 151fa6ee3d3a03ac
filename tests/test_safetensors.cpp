// safetensors read/write (files written from the spec by tests/fixtures/gen/safetensors.py), the JSON reader,
// malformed headers, and SHA-256 against the FIPS 180-4 / NIST test vectors.
#include "torchlet/io/safetensors.hpp"
#include "torchlet/io/sha256.hpp"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "helpers.hpp"

using namespace torchlet;
using torchlet::io::sha256_hex;

using testing::file_bytes;
using testing::fixture_path;

namespace {

std::string tensor_sha(const Tensor& t) {
  const Tensor c = t.contiguous();
  return sha256_hex(c.data_ptr(), size_t(c.nbytes()));
}

/// One line of st_<name>.txt: name, DTYPE, shape (JSON), sha256; the name may hold tabs, so split from the right.
struct Listed {
  std::string name, dtype, shape, sha;
};
std::vector<Listed> listing(const std::string& file) {
  std::ifstream f(fixture_path(file));
  REQUIRE(f.good());
  std::vector<Listed> out;
  std::string line;
  while (std::getline(f, line)) {
    Listed l;
    size_t t3 = line.rfind('\t'), t2 = line.rfind('\t', t3 - 1), t1 = line.rfind('\t', t2 - 1);
    l.name = line.substr(0, t1);
    l.dtype = line.substr(t1 + 1, t2 - t1 - 1);
    l.shape = line.substr(t2 + 1, t3 - t2 - 1);
    l.sha = line.substr(t3 + 1);
    out.push_back(l);
  }
  return out;
}

std::string shape_json(const Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

/// A safetensors file from a header text and data bytes.
std::vector<uint8_t> st_file(const std::string& header, size_t data_bytes, uint64_t declared = UINT64_MAX) {
  const uint64_t n = declared == UINT64_MAX ? header.size() : declared;
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0);
  return out;
}

/// The one-line message load_safetensors_from_bytes raises for `bytes` (fails the test when it loads).
std::string load_error(const std::vector<uint8_t>& bytes) {
  try {
    load_safetensors_from_bytes(bytes, {}, "bad.safetensors");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.find('\n') == std::string::npos, "multi-line error: ", m);
    CHECK_MESSAGE(m.rfind("[safetensors] bad.safetensors", 0) == 0, "error does not name the file: ", m);
    return m;
  }
  FAIL("expected an error");
  return {};
}

struct TempDir {
  std::filesystem::path dir;
  TempDir() {
    dir = std::filesystem::temp_directory_path() / ("torchlet_st_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
  }
  ~TempDir() { std::filesystem::remove_all(dir); }
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

}  // namespace

TEST_CASE("sha256: FIPS 180-4 / NIST vectors") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
                   "mnopqrstnopqrstu") == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  const std::string million(1000000, 'a');
  CHECK(sha256_hex(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // the same million fed in uneven pieces (crossing block boundaries every way)
  io::Sha256 h;
  size_t done = 0, step = 1;
  while (done < million.size()) {
    const size_t n = std::min(step, million.size() - done);
    h.update(million.data() + done, n);
    done += n;
    step = step * 7 % 131 + 1;
  }
  CHECK(h.hexdigest() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // 55, 56 and 64 bytes: the padding edge cases (values from Python's hashlib)
  CHECK(sha256_hex(std::string(55, 'a')) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  CHECK(sha256_hex(std::string(56, 'a')) == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  CHECK(sha256_hex(std::string(64, 'a')) == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST_CASE("json: values, strictness and limits") {
  const Value v = io::parse_json(R"( {"a": [1, -2, 3.5e2, true, false, null], "s": "q\"\\\/\n\u00e9\ud83d\ude00"} )");
  CHECK(v.at("a").at(0).as_int() == 1);
  CHECK(v.at("a").at(1).as_int() == -2);
  CHECK(v.at("a").at(2).as_double() == 350.0);
  CHECK(v.at("a").at(3).as_bool());
  CHECK(v.at("a").at(5).is_none());
  CHECK(v.at("s").as_string() == "q\"\\/\n\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(io::to_json(v) == R"({"a": [1, -2, 350.0, true, false, null], "s": "q\"\\/\n)"
                          "\xc3\xa9\xf0\x9f\x98\x80\"}");
  CHECK(io::to_json(v, {.compact = true}).substr(0, 13) == R"({"a":[1,-2,35)");
  for (const char* bad : {"{\"a\":1,}", "[1,]", "01", "{\"a\":1,\"a\":2}", "\"\\ud800\"", "\"a\x01\"", "[1] x",
                          "nul", "{'a':1}", "1.", "-", "\"\xc3\"", "\"\xed\xa0\x80\"", "99999999999999999999", ""}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(io::parse_json(bad), IOError);
  }
  std::string deep(100, '[');
  deep += std::string(100, ']');
  CHECK_THROWS_WITH_AS(io::parse_json(deep), doctest::Contains("nesting deeper than the limit of 64"), IOError);
  CHECK_THROWS_WITH_AS(io::parse_json("[1, 2]", "x", {.max_bytes = 3}), doctest::Contains("exceeds the limit"),
                       IOError);
  CHECK_THROWS_WITH_AS(io::parse_json("{\"k\": 1, \"k\": 2}", "h.json"),
                       doctest::Contains("[json] h.json: duplicate key \"k\" at byte 9"), IOError);
}

TEST_CASE("safetensors: every dtype read as the spec-written fixture holds it") {
  for (bool mmap : {false, true}) {
    CAPTURE(mmap);
    const Value d = load_safetensors(fixture_path("st_dtypes.safetensors"), {.mmap = mmap});
    const auto expected = listing("st_dtypes.txt");
    REQUIRE(d.size() == expected.size() + 1);
    const auto& entries = d.as_dict().entries();
    CHECK(entries[0].first.as_string() == "__metadata__");
    CHECK(io::to_json(entries[0].second) == R"({"format": "pt", "note": "all dtypes"})");
    for (size_t i = 0; i < expected.size(); ++i) {
      const auto& [k, v] = entries[i + 1];
      CAPTURE(expected[i].name);
      CHECK(k.as_string() == expected[i].name);  // header order
      const Tensor& t = v.as_tensor();
      CHECK(detail::st_dtype_of(t.dtype(), "").name == expected[i].dtype);
      CHECK(shape_json(t) == expected[i].shape);
      CHECK(tensor_sha(t) == expected[i].sha);
      if (mmap && t.numel() > 0) CHECK(t.storage().is_borrowed());  // header padded to 8: all aligned
    }
    // values, checked directly
    CHECK(testing::values(d.at("f32").as_tensor()) == std::vector<double>{-1, -0.5, 0, 0.5, 1, 1.5});
    CHECK(testing::values(d.at("bf16").as_tensor()) == std::vector<double>{0, -2, -4, -6, -8, -10});
    CHECK(testing::values(d.at("f16").as_tensor()) == std::vector<double>{0, 0.25, 0.5, 0.75, 1, 1.25});
    CHECK(d.at("i64").as_tensor().data<int64_t>()[5] == 5 * 1000000007LL - 3);
    CHECK(d.at("u64").as_tensor().data<uint64_t>()[3] == 3ULL << 62);
    CHECK(d.at("u16").as_tensor().data<uint16_t>()[5] == 50000);
    CHECK(d.at("u32").as_tensor().data<uint32_t>()[5] == 4000000000u);
    CHECK(d.at("bool").as_tensor().data<bool>()[1]);
    CHECK(d.at("f8_e4m3").as_tensor().dtype() == DType::Float8_e4m3fn);
    CHECK(d.at("f8_e5m2").as_tensor().dtype() == DType::Float8_e5m2);
    CHECK(d.at("scalar").as_tensor().dim() == 0);
    CHECK(d.at("scalar").as_tensor().item<float>() == 2.5f);
    CHECK(d.at("empty").as_tensor().sizes() == Shape{0, 3});
  }
}

TEST_CASE("safetensors: our writer reproduces the reference layout byte for byte") {
  for (const char* name : {"st_dtypes.safetensors", "st_state_dict.safetensors", "cli_sd.safetensors"}) {
    CAPTURE(name);
    const auto bytes = file_bytes(fixture_path(name));
    const Value d = load_safetensors_from_bytes(bytes);
    CHECK(save_safetensors_to_bytes(d) == bytes);
    // the same tensors given in another order, and with non-contiguous views, still give the same file
    ValueDict rev;
    const auto& e = d.as_dict().entries();
    for (auto it = e.rbegin(); it != e.rend(); ++it) {
      Value v = it->second;
      if (v.is_tensor() && v.as_tensor().dim() == 2 && v.as_tensor().dtype() == kFloat32)
        v = Value(v.as_tensor().t().contiguous().t());  // same values, transposed layout
      rev.set(it->first, v);
    }
    CHECK(save_safetensors_to_bytes(Value(rev)) == bytes);
  }
  // a state_dict's trailing __attributes__ is skipped; explicit metadata wins over __metadata__
  Value sd = Value::dict({{"w", arange(4).to(kFloat32)}, {"__attributes__", Value::dict({{"_metadata", 1}})}});
  const auto b = save_safetensors_to_bytes(sd, Value::dict({{"format", "pt"}}));
  const std::string header(b.begin() + 8, b.begin() + 8 + int64_t(b[0]));
  CHECK(header == R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}  )");
  CHECK(header.size() % 8 == 0);
  // the reference's own serialization test: {"attn.0": F32 [1, 2, 3]} -> 64-byte header
  Value attn = Value::dict({{"attn.0", arange(6).to(kFloat32).view({1, 2, 3})}});
  const auto a = save_safetensors_to_bytes(attn);
  CHECK(a[0] == 64);
  CHECK(a.size() == 8 + 64 + 24);
  CHECK(save_safetensors_to_bytes(Value::dict({})) ==
        std::vector<uint8_t>{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '});
}

TEST_CASE("safetensors: round trip through a file, insertion order, unaligned data") {
  TempDir tmp;
  Value d = Value::dict({{"z.bias", arange(3).to(kFloat64)},
                         {"a.mask", tensor<bool>({true, false, true}, {3})},
                         {"m.weight", tensor<float>({0, 0.5f, 1, 1.5f, 2, 2.5f}, {2, 3})},
                         {"__metadata__", Value::dict({{"b", "2"}, {"a", "1"}})}});
  const std::string path = tmp.file("rt.safetensors");
  save_safetensors(path, d);
  const Value ref = load_safetensors(path);
  std::vector<std::string> keys;
  for (const auto& [k, v] : ref.as_dict()) keys.push_back(k.as_string());
  CHECK(keys == std::vector<std::string>{"__metadata__", "z.bias", "m.weight", "a.mask"});  // F64, F32, BOOL
  CHECK(io::to_json(ref.at("__metadata__")) == R"({"b": "2", "a": "1"})");  // the user's order
  save_safetensors(path, d, Value(), {.order = SafetensorsOrder::Insertion});
  for (bool mmap : {false, true}) {
    const Value ins = load_safetensors(path, {.mmap = mmap});
    keys.clear();
    for (const auto& [k, v] : ins.as_dict()) keys.push_back(k.as_string());
    CHECK(keys == std::vector<std::string>{"__metadata__", "z.bias", "a.mask", "m.weight"});
    // m.weight starts at byte 27 of the data: not 4-aligned, so mmap copies it
    CHECK(testing::values(ins.at("m.weight").as_tensor()) == std::vector<double>{0, 0.5, 1, 1.5, 2, 2.5});
    CHECK(testing::values(ins.at("z.bias").as_tensor()) == std::vector<double>{0, 1, 2});
    CHECK(testing::values(ins.at("a.mask").as_tensor()) == std::vector<double>{1, 0, 1});
    if (mmap) {
      CHECK(!ins.at("m.weight").as_tensor().storage().is_borrowed());
      CHECK(ins.at("z.bias").as_tensor().storage().is_borrowed());
      // copy-on-write: writing a borrowed tensor leaves the file alone
      Tensor zb = ins.at("z.bias").as_tensor();
      zb.fill_(7.0);
      CHECK(zb.data<double>()[0] == 7.0);
      CHECK(load_safetensors(path).at("z.bias").as_tensor().data<double>()[0] == 0.0);
    }
  }
  size_t files = 0;  // no temporary file left behind
  for (const auto& f : std::filesystem::directory_iterator(tmp.dir)) files += f.is_regular_file();
  CHECK(files == 1);
  // a header listing tensors in name order while the data is in another order is valid
  const Value no = load_safetensors(fixture_path("st_name_order.safetensors"));
  CHECK(no.as_dict().entries()[0].first.as_string() == "a");
  CHECK(testing::values(no.at("a").as_tensor()) == std::vector<double>{0, 1, 2});
  CHECK(testing::values(no.at("b").as_tensor()) == std::vector<double>{1, 1});
}

TEST_CASE("safetensors: what the writer refuses") {
  CHECK_THROWS_WITH_AS(save_safetensors_to_bytes(Value::dict({{"epoch", 3}})),
                       "[save_safetensors] entry \"epoch\" is a int, not a tensor (safetensors holds tensors only)",
                       ValueError);
  Tensor fnuz = empty({2}, DType::Float8_e4m3fnuz);
  CHECK_THROWS_WITH_AS(save_safetensors_to_bytes(Value::dict({{"q", fnuz}})),
                       "[save_safetensors] tensor \"q\" has dtype float8_e4m3fnuz, which safetensors cannot store",
                       DTypeError);
  CHECK_THROWS_AS(save_safetensors_to_bytes(Value::dict({{"w", zeros({1})}}), Value::dict({{"k", 1}})), ValueError);
  CHECK_THROWS_AS(save_safetensors("/nonexistent-dir/x.safetensors", Value::dict({})), IOError);
}

TEST_CASE("safetensors: malformed files give one-line errors") {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK_NOTHROW(load_safetensors_from_bytes(st_file(ok, 8)));
  struct Case {
    std::vector<uint8_t> bytes;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {{1, 2, 3}, "file of 3 bytes is too small for the 8-byte header length"},
      {st_file(ok, 8, 100'000'001), "header length 100000001 exceeds the limit of 100000000 bytes"},
      {st_file(ok, 8, 1000), "header length 1000 runs past the end of the file"},
      {st_file(" " + ok, 8), "the header does not start with '{'"},
      {st_file("[1]", 0), "the header does not start with '{'"},
      {st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},})", 8), "expected a string key"},
      {st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} x)", 8), "unexpected data after"},
      {st_file(R"({"a":{"dtype":"C64","shape":[2],"data_offsets":[0,8]}})", 8),
       "tensor \"a\": unsupported dtype \"C64\""},
      {st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],)"
               R"("data_offsets":[8,16]}})", 16),
       "duplicate key \"a\""},
      {st_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
       "tensor \"a\": shape [3] of F32 needs 12 bytes, but data_offsets [0, 8] span 8"},
      {st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "end before they begin"},
      {st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],)"
               R"("data_offsets":[4,12]}})", 12),
       "tensor \"b\": data_offsets [4, 12] overlap the previous tensor, which ends at 8"},
      {st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
       "tensor \"a\": data_offsets [4, 12] leave a gap after byte 0"},
      {st_file(ok, 12), "the tensors cover 8 bytes of data but the file holds 12 (trailing bytes)"},
      {st_file(ok, 4), "the tensors cover 8 bytes of data but the file holds 4 (truncated file)"},
      {st_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "shape must hold non-negative"},
      {st_file(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8), "shape must hold non-negative"},
      {st_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8),
       "overflows the byte count"},
      {st_file(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "tensor \"a\": missing data_offsets"},
      {st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), "data_offsets must be two"},
      {st_file(R"({"a":[1]})", 0), "tensor \"a\": expected an object"},
      {st_file(R"({"__metadata__":{"k":1}})", 0), "__metadata__ value of \"k\" must be a string, got 1"},
      {st_file(R"({"__metadata__":[]})", 0), "__metadata__ must be an object of strings"},
      {st_file("{\"a\xff\":1}", 0), "invalid UTF-8 byte"},
      {st_file(std::string(70, '[') , 0), "the header does not start with '{'"},
      {st_file("{\"a\":" + std::string(70, '['), 0), "nesting deeper than the limit of 8"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.expect);
    const std::string m = load_error(c.bytes);
    CHECK_MESSAGE(m.find(c.expect) != std::string::npos, m);
  }
  CHECK_THROWS_AS(load_safetensors_from_bytes(st_file(R"({"a":{"dtype":"X","shape":[],"data_offsets":[0,0]}})", 0)),
                  DTypeError);
  CHECK_THROWS_WITH_AS(load_safetensors("/nonexistent/x.safetensors"),
                       doctest::Contains("[safetensors] /nonexistent/x.safetensors: cannot open"), IOError);
  // every truncation of a valid file is refused cleanly
  const auto full = file_bytes(fixture_path("st_state_dict.safetensors"));
  for (size_t n = 0; n < full.size(); ++n)
    CHECK_THROWS_AS(load_safetensors_from_bytes(std::span<const uint8_t>(full.data(), n)), Error);
}
