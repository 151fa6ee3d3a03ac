// torchlet::load against checkpoint files written by real PyTorch 1.13 (tests/fixtures/gen/checkpoints.py,
// prefix ck_): every file is loaded in copy and in zero-copy mode and compared, node by node, with the manifest
// PyTorch wrote (ck_<expect>.txt), and each tensor bit for bit with its .npy. Then the error cases: files that
// are not checkpoints, TorchScript, truncated or inconsistent archives, and legacy streams.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "interop/load_manifest.hpp"
#include "fixture_files.hpp"
#include "torchlet/io/load.hpp"
#include "torchlet/io/npy.hpp"
#include "torchlet/tensor/copy.hpp"

using namespace torchlet;

using testing::file_bytes;
using testing::fixture_path;

namespace {

/// Writes `bytes` to a fresh file under /tmp and returns its path.
std::string temp_file(const std::string& tag, const std::vector<uint8_t>& bytes) {
  const std::string path = "/tmp/torchlet_test_load_" + std::to_string(::getpid()) + "_" + tag;
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

/// True when the tensor's bytes (bfloat16 widened to float32, which is exact) equal the .npy's bit for bit.
void check_bits(const Tensor& actual, const std::string& npy, const std::string& where) {
  const Tensor expected = load_npy(fixture_path(npy + ".npy"));
  Tensor a = actual.dtype() == kBFloat16 ? actual.to(kFloat32) : actual;
  REQUIRE_MESSAGE(a.dtype() == expected.dtype(), where, ": dtype ", dtype_name(a.dtype()), " vs expected ",
                  dtype_name(expected.dtype()));
  REQUIRE_MESSAGE(a.sizes() == expected.sizes(), where, ": shape differs");
  a = a.contiguous();
  const Tensor e = expected.contiguous();
  CHECK_MESSAGE((a.nbytes() == 0 || std::memcmp(a.data_ptr(), e.data_ptr(), size_t(a.nbytes())) == 0), where,
                ": values differ from ", npy, ".npy");
}

/// Compares a loaded tree with the manifest ck_<expect>.txt and every tensor with its .npy.
void check_against(const Value& v, const std::string& expect) {
  const auto exp = load_manifest::read_expected(fixture_path("ck_" + expect + ".txt"));
  const auto got = load_manifest::manifest(v);
  REQUIRE(!exp.lines.empty());
  const size_t n = std::min(exp.lines.size(), got.lines.size());
  for (size_t i = 0; i < n; ++i)
    REQUIRE_MESSAGE(got.lines[i] == exp.lines[i], "ck_", expect, " line ", i + 1, ": got '", got.lines[i],
                    "', expected '", exp.lines[i], "'");
  REQUIRE(got.lines.size() == exp.lines.size());
  REQUIRE(got.tensors.size() == exp.payloads.size());
  for (size_t i = 0; i < got.tensors.size(); ++i)
    check_bits(got.tensors[i], exp.payloads[i], got.lines[got.tensor_line[i]]);
}

/// Every tensor of a tree (walk order).
std::vector<Tensor> tensors_of(const Value& v) { return load_manifest::manifest(v).tensors; }

/// The IOError text of loading `path` (fails the test if it loads or throws something else).
std::string load_error(const std::string& path, const LoadFileOptions& opt = {}) {
  try {
    load(path, opt);
  } catch (const IOError& e) {
    return e.what();
  }
  FAIL("loading ", path, " did not raise IOError");
  return {};
}

std::string bytes_error(std::vector<uint8_t> bytes, const std::string& name, const LoadFileOptions& opt = {}) {
  try {
    load_from_bytes(std::move(bytes), opt, name);
  } catch (const IOError& e) {
    return e.what();
  }
  FAIL("loading ", name, " did not raise IOError");
  return {};
}

bool has(const std::string& msg, const std::string& part) { return msg.find(part) != std::string::npos; }

/// A copy of zip fixture `src` rebuilt with torchlet's ZipWriter, with `edit(name, bytes)` deciding each entry
/// (return false to drop it) and `extra` entries appended.
std::vector<uint8_t> rebuild_zip(const std::string& src,
                                 const std::function<bool(const std::string&, std::vector<uint8_t>&)>& edit,
                                 const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  const io::ZipReader r = io::ZipReader::open(fixture_path(src));
  std::vector<uint8_t> out;
  io::ZipWriter w(out);
  for (const auto& e : r.entries()) {
    std::vector<uint8_t> b = r.read(e);
    if (edit(e.name, b)) w.add(e.name, std::span<const uint8_t>(b));
  }
  for (const auto& [n, t] : extra) w.add(n, std::string_view(t));
  w.finish();
  return out;
}

struct Case {
  const char* file;
  const char* expect;
  bool aligned;  // every storage record stored and 64-byte aligned (torch.save's own layout)
  const char* format;
};

const Case kCases[] = {
    {"sgd", "sgd", true, "zip"},           {"sgd_p4", "sgd", true, "zip"},
    {"sgd_folder", "sgd", true, "zip"},    {"sgd_deflate", "sgd", false, "zip"},
    {"sgd_unaligned", "sgd", false, "zip"}, {"sgd_legacy", "sgd", false, "legacy"},
    {"adam", "adam", true, "zip"},         {"dp", "dp", true, "zip"},
    {"half", "half", true, "zip"},         {"views", "views", true, "zip"},
    {"views_legacy", "views", false, "legacy"}, {"dtypes", "dtypes", true, "zip"},
    {"dtypes_p4", "dtypes", true, "zip"},  {"dtypes_legacy", "dtypes", false, "legacy"},
};

}  // namespace

TEST_SUITE("load") {

TEST_CASE("every PyTorch 1.13 fixture loads bit-exactly in copy mode") {
  for (const Case& c : kCases) {
    CAPTURE(c.file);
    LoadInfo info;
    const Value v = load(fixture_path("ck_" + std::string(c.file) + ".pth"), {}, &info);
    CHECK(info.format == c.format);
    CHECK(info.borrowed_storages == 0);
    CHECK(info.copied_storages == info.storages);
    CHECK(info.storages > 0);
    for (const Tensor& t : tensors_of(v)) CHECK(!t.storage().is_borrowed());
    check_against(v, c.expect);
  }
}

TEST_CASE("zero-copy mode borrows the mapped file for stored, aligned records and copies the rest") {
  for (const Case& c : kCases) {
    CAPTURE(c.file);
    LoadFileOptions opt;
    opt.mmap = true;
    LoadInfo info;
    const Value v = load(fixture_path("ck_" + std::string(c.file) + ".pth"), opt, &info);
    check_against(v, c.expect);
    CHECK(info.borrowed_storages + info.copied_storages == info.storages);
    if (c.aligned) {
      CHECK(info.borrowed_storages == info.storages);
      for (const Tensor& t : tensors_of(v)) {
        CHECK(t.storage().is_borrowed());
        const auto* p = static_cast<const uint8_t*>(t.storage().data());
        if (t.storage().nbytes() > 0) {
          CHECK(p >= info.file_data);
          CHECK(p + t.storage().nbytes() <= info.file_data + info.file_size);
          CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);  // torch.save aligns every record to 64 bytes
        }
      }
    }
    if (std::string(c.file) == "sgd_deflate" || std::string(c.format) == "legacy") {
      CHECK(info.borrowed_storages == 0);  // deflated records and legacy streams are copied
    }
  }
  // The unaligned re-zip has records at odd offsets: those must be copied, the rest may be borrowed.
  LoadFileOptions opt;
  opt.mmap = true;
  LoadInfo info;
  const Value v = load(fixture_path("ck_sgd_unaligned.pth"), opt, &info);
  CHECK(info.copied_storages > 0);
  for (const Tensor& t : tensors_of(v))
    CHECK(reinterpret_cast<uintptr_t>(t.storage().data()) % size_t(t.element_size()) == 0);
}

TEST_CASE("zero-copy tensors keep the mapping alive and stay private on write") {
  LoadFileOptions opt;
  opt.mmap = true;
  Tensor w;
  {
    const Value v = load(fixture_path("ck_sgd.pth"), opt);
    w = v.at("state_dict").at("fc.weight").as_tensor();
    CHECK(w.storage().is_borrowed());
  }  // the Value and the loader are gone; `w` alone holds the mapping
  check_bits(w, "ck_sgd_7", "fc.weight after the loader returned");
  // copy-on-write: an in-place change is visible through the tensor but never reaches the file
  const float before = w.data<float>()[0];
  w.data<float>()[0] = before + 1.0f;
  CHECK(w.data<float>()[0] == before + 1.0f);
  const Value again = load(fixture_path("ck_sgd.pth"));
  check_bits(again.at("state_dict").at("fc.weight").as_tensor(), "ck_sgd_7", "fc.weight reloaded");
}

TEST_CASE("load_from_bytes: copy mode, and zero-copy borrowing the buffer") {
  const auto bytes = file_bytes(fixture_path("ck_views.pth"));
  check_against(load_from_bytes(bytes), "views");
  LoadFileOptions opt;
  opt.mmap = true;
  LoadInfo info;
  const Value v = load_from_bytes(bytes, opt, "views.pth", &info);
  check_against(v, "views");
  CHECK(info.borrowed_storages == info.storages);
  const auto* p = static_cast<const uint8_t*>(v.at("base").as_tensor().storage().data());
  CHECK((p >= info.file_data && p < info.file_data + info.file_size));
}

TEST_CASE("shared storages and views stay shared, with PyTorch's offsets and strides") {
  for (const char* file : {"ck_views.pth", "ck_views_legacy.pth"}) {
    for (bool mmap : {false, true}) {
      CAPTURE(file);
      CAPTURE(mmap);
      LoadFileOptions opt;
      opt.mmap = mmap;
      const Value v = load(fixture_path(file), opt);
      const Tensor& base = v.at("base").as_tensor();
      for (const char* k : {"rows", "col", "t", "flat_tail", "elem", "again"})
        CHECK_MESSAGE(v.at(k).as_tensor().storage().is_same(base.storage()), k);
      CHECK(v.at("strided").as_tensor().storage().is_same(v.at("other").as_tensor().storage()));
      CHECK(!v.at("other").as_tensor().storage().is_same(base.storage()));
      const Tensor& col = v.at("col").as_tensor();
      CHECK(col.storage_offset() == 2);
      CHECK(col.strides() == Shape{6});
      CHECK(v.at("t").as_tensor().strides() == Shape{1, 6});
      CHECK(v.at("elem").as_tensor().dim() == 0);
      CHECK(v.at("elem").as_tensor().storage_offset() == 7);
      CHECK(v.at("expand").as_tensor().strides() == Shape{0, 1});
      // a write through one view is seen by the others, as in PyTorch
      base.data<float>()[7] = 100.0f;
      CHECK(v.at("elem").as_tensor().data<float>()[0] == 100.0f);
      CHECK(v.at("rows").as_tensor().data<float>()[1] == 100.0f);
    }
  }
}

TEST_CASE("what load() reports: archive folder, version, byte order") {
  LoadInfo info;
  load(fixture_path("ck_sgd.pth"), {}, &info);
  CHECK(info.archive == "ck_sgd");
  CHECK(info.version == 3);
  CHECK(info.byteorder == "little");
  CHECK(info.storages == 15);
  CHECK(info.unreferenced_records.empty());
  load_from_bytes(rebuild_zip("ck_sgd.pth", [](const std::string&, std::vector<uint8_t>&) { return true; },
                              {{"ck_sgd/data/999", "hidden"}}),
                  {}, "hidden.pth", &info);
  CHECK(info.unreferenced_records == std::vector<std::string>{"ck_sgd/data/999"});
  // records of newer writers (PyTorch 2.7+): read and reported
  load_from_bytes(rebuild_zip("ck_sgd.pth", [](const std::string&, std::vector<uint8_t>&) { return true; },
                              {{"ck_sgd/.format_version", "1"}, {"ck_sgd/.storage_alignment", "64"},
                               {"ck_sgd/byteorder", "little"}}),
                  {}, "new.pth", &info);
  CHECK(info.format_version == 1);
  CHECK(info.storage_alignment == 64);
  CHECK(info.byteorder == "little");
  load(fixture_path("ck_sgd_folder.pth"), {}, &info);
  CHECK(info.archive == "my.ckpt");  // torch.save names the folder after the file: my.ckpt.pth -> my.ckpt
  load(fixture_path("ck_sgd_legacy.pth"), {}, &info);
  CHECK(info.format == "legacy");
  CHECK(info.version == 1001);
  CHECK(info.storages == 15);
  CHECK(info.archive.empty());
}

TEST_CASE("state_dict metadata stays in __attributes__") {
  const Value v = load(fixture_path("ck_sgd.pth"));
  const Value* attrs = io::pickled_attributes(v.at("state_dict"));
  REQUIRE(attrs != nullptr);
  CHECK(attrs->at("_metadata").at("bn").at("version").as_int() == 2);
  CHECK(attrs->at("_metadata").at("").at("version").as_int() == 1);
  const Value dp = load(fixture_path("ck_dp.pth"));
  CHECK(dp.as_dict().entries().front().first.as_string() == "module.conv.weight");
}

TEST_CASE("big-endian archive: byte-swapped in copy mode, refused zero-copy") {
  LoadInfo info;
  const Value v = load(fixture_path("ck_sgd_bigendian.pth"), {}, &info);
  CHECK(info.byteorder == "big");
  check_against(v, "sgd");
  LoadFileOptions opt;
  opt.mmap = true;
  const std::string msg = load_error(fixture_path("ck_sgd_bigendian.pth"), opt);
  CHECK(has(msg, "big-endian"));
  CHECK(has(msg, "ck_sgd_bigendian.pth"));
}

TEST_CASE("pickled whole models: read inertly, state_dict via io::module_state_dict") {
  struct Model {
    const char* file;
    const char* expect;
    const char* cls;
  };
  for (const Model& c : {Model{"model_net", "model_net", "gen.checkpoints.Net"},
                         Model{"model_seq", "model_seq", "torch.nn.modules.container.Sequential"},
                         Model{"model_seq_legacy", "model_seq", "torch.nn.modules.container.Sequential"}}) {
    for (bool mmap : {false, true}) {
      CAPTURE(c.file);
      LoadFileOptions opt;
      opt.mmap = mmap;
      const Value m = load(fixture_path("ck_" + std::string(c.file) + ".pth"), opt);
      CHECK(io::pickled_class(m) == c.cls);
      const Value sd = io::module_state_dict(m);
      // the expectation is model.state_dict(), whose _metadata a module object does not carry
      const auto exp = load_manifest::read_expected(fixture_path("ck_" + std::string(c.expect) + ".txt"));
      const auto got = load_manifest::manifest(sd);
      std::vector<std::string> want;
      for (size_t i = 1; i < exp.lines.size(); ++i)
        if (exp.lines[i].rfind("/s:__attributes__", 0) != 0) want.push_back(exp.lines[i]);
      REQUIRE(got.lines.size() == want.size() + 1);
      for (size_t i = 0; i < want.size(); ++i) CHECK(got.lines[i + 1] == want[i]);
      REQUIRE(got.tensors.size() == exp.payloads.size());
      for (size_t i = 0; i < got.tensors.size(); ++i)
        check_bits(got.tensors[i], exp.payloads[i], got.lines[got.tensor_line[i]]);
    }
  }
}

TEST_CASE("complex tensors are refused with a clear error") {
  const std::string msg = load_error(fixture_path("ck_complex.pth"));
  CHECK(has(msg, "complex"));
  CHECK(has(msg, "for key ['state_dict']['z']"));
  CHECK(has(msg, "ck_complex.pth"));
  CHECK_THROWS_AS(load(fixture_path("ck_complex.pth")), FormatError);
  CHECK(has(msg, "data.pkl"));
  CHECK(msg.find('\n') == std::string::npos);
}

TEST_CASE("files that are not checkpoints") {
  SUBCASE("empty file") {
    const std::string path = temp_file("empty", {});
    const std::string msg = load_error(path);
    std::remove(path.c_str());
    CHECK(has(msg, "empty"));
    CHECK(has(msg, path));
    CHECK(has(bytes_error({}, "e.pth"), "empty"));
  }
  SUBCASE("Git LFS pointer") {
    const std::string msg = load_error(fixture_path("zip_lfs_pointer.pth"));
    CHECK(has(msg, "Git LFS pointer"));
    CHECK(has(msg, "git lfs pull"));
    CHECK(has(msg, "zip_lfs_pointer.pth"));
  }
  SUBCASE("truncated zip: no end record") {
    auto b = file_bytes(fixture_path("ck_sgd.pth"));
    b.resize(b.size() / 2);
    const std::string msg = bytes_error(b, "half.pth");
    CHECK_THROWS_AS(load_from_bytes(b), CorruptFileError);
    CHECK(has(msg, "half.pth"));
    CHECK(has(msg, "interrupted"));
  }
  SUBCASE("safetensors") {
    const std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    std::vector<uint8_t> b(8, 0);
    b[0] = uint8_t(header.size());
    b.insert(b.end(), header.begin(), header.end());
    b.insert(b.end(), 4, 0);
    const std::string msg = bytes_error(b, "m.safetensors");
    CHECK(has(msg, "safetensors"));
    CHECK(has(msg, "m.safetensors"));
  }
  SUBCASE("a PNG renamed .pth") {
    const std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    const std::string msg = bytes_error(png, "img.pth");
    CHECK_THROWS_AS(load_from_bytes(png), FormatError);
    CHECK(has(msg, "not a PyTorch checkpoint"));
    CHECK(has(msg, "89 50 4e 47"));
  }
  SUBCASE("legacy tar format") {
    std::vector<uint8_t> tar(1024, 0);
    std::memcpy(tar.data(), "sys_info", 8);
    std::memcpy(tar.data() + 257, "ustar", 5);
    CHECK(has(bytes_error(tar, "old.pth"), "legacy tar checkpoints (PyTorch < 0.1.10) are not supported"));
  }
  SUBCASE("a missing file") { CHECK(has(load_error("/nonexistent/x.pth"), "cannot open")); }
}

TEST_CASE("detect_checkpoint_format tells the kinds apart from the first bytes") {
  auto head = [](const std::string& file) {
    auto b = file_bytes(fixture_path(file));
    b.resize(std::min<size_t>(b.size(), 512));
    return detect_checkpoint_format(b);
  };
  CHECK(head("ck_sgd.pth") == CheckpointFormat::Zip);
  CHECK(head("ck_sgd_legacy.pth") == CheckpointFormat::Legacy);
  CHECK(head("ck_dtypes_p4.pth") == CheckpointFormat::Zip);
  CHECK(head("zip_lfs_pointer.pth") == CheckpointFormat::GitLfsPointer);
  CHECK(detect_checkpoint_format({}) == CheckpointFormat::Empty);
  const std::vector<uint8_t> pickle = {0x80, 0x02, 'N', '.'};  // a plain pickle is not a legacy checkpoint
  CHECK(detect_checkpoint_format(pickle) == CheckpointFormat::Unknown);
  CHECK(has(bytes_error(pickle, "p.pkl"), "first bytes: 80 02 4e 2e"));
}

TEST_CASE("inconsistent zip archives") {
  auto keep = [](const std::string&, std::vector<uint8_t>&) { return true; };
  SUBCASE("TorchScript archive") {
    const auto b = rebuild_zip("ck_sgd.pth", keep, {{"ck_sgd/constants.pkl", "x"}});
    const std::string msg = bytes_error(b, "script.pt");
    CHECK(has(msg, "TorchScript"));
    CHECK(has(msg, "not supported"));
    CHECK(has(msg, "script.pt"));
    const auto c = rebuild_zip("ck_sgd.pth", keep, {{"ck_sgd/code/__torch__.py", "x"}});
    CHECK(has(bytes_error(c, "script.pt"), "TorchScript"));
  }
  SUBCASE("rebuilt by torchlet's ZipWriter it still loads") {
    check_against(load_from_bytes(rebuild_zip("ck_sgd.pth", keep)), "sgd");
  }
  SUBCASE("missing storage record") {
    const auto b = rebuild_zip("ck_sgd.pth", [](const std::string& n, std::vector<uint8_t>&) {
      return n != "ck_sgd/data/3";
    });
    const std::string msg = bytes_error(b, "m.pth");
    CHECK_THROWS_AS(load_from_bytes(b), CorruptFileError);
    CHECK(has(msg, "storage record 'ck_sgd/data/3' is missing"));
    CHECK(has(msg, "m.pth"));
  }
  SUBCASE("storage record of the wrong size") {
    const auto b = rebuild_zip("ck_sgd.pth", [](const std::string& n, std::vector<uint8_t>& d) {
      if (n == "ck_sgd/data/0") d.resize(d.size() - 4);
      return true;
    });
    CHECK(has(bytes_error(b, "m.pth"), "'ck_sgd/data/0' holds 68 bytes, but the pickle expects 18 x float32 = 72"));
  }
  SUBCASE("unknown byte order, bad version, no version, no data.pkl, two folders") {
    auto edit_rec = [](const std::string& rec, const std::string& text) {
      return [rec, text](const std::string& n, std::vector<uint8_t>& d) {
        if (n == rec) d.assign(text.begin(), text.end());
        return true;
      };
    };
    CHECK(has(bytes_error(rebuild_zip("ck_sgd.pth", keep, {{"ck_sgd/byteorder", "middle"}}), "m.pth"),
              "unknown byte order 'middle'"));
    CHECK(has(bytes_error(rebuild_zip("ck_sgd.pth", edit_rec("ck_sgd/version", "99\n")), "m.pth"),
              "unsupported file format version 99"));
    CHECK(has(bytes_error(rebuild_zip("ck_sgd.pth", edit_rec("ck_sgd/version", "x")), "m.pth"),
              "(not a number)"));
    CHECK(has(bytes_error(rebuild_zip("ck_sgd.pth", [](const std::string& n, std::vector<uint8_t>&) {
                            return n != "ck_sgd/version";
                          }), "m.pth"),
              "no 'ck_sgd/version' record"));
    CHECK(has(bytes_error(rebuild_zip("ck_sgd.pth", [](const std::string& n, std::vector<uint8_t>&) {
                            return n != "ck_sgd/data.pkl";
                          }), "m.pth"),
              "ck_sgd/data.pkl"));
    CHECK(has(bytes_error(rebuild_zip("ck_sgd.pth", keep, {{"other/data.pkl", "x"}}), "m.pth"),
              "outside the archive folder"));
  }
  SUBCASE("CRC check is optional and catches a flipped bit") {
    auto b = file_bytes(fixture_path("ck_sgd.pth"));
    const io::ZipReader r = io::ZipReader::from_buffer(b);
    b[size_t(r.entry("ck_sgd/data/7").data_offset) + 5] ^= 0x10;
    CHECK_NOTHROW(load_from_bytes(b));
    LoadFileOptions opt;
    opt.verify_crc = true;
    const std::string msg = bytes_error(b, "flip.pth", opt);
    CHECK(has(msg, "CRC-32 mismatch"));
    CHECK(has(msg, "ck_sgd/data/7"));
  }
}

TEST_CASE("broken legacy streams") {
  const auto good = file_bytes(fixture_path("ck_sgd_legacy.pth"));
  SUBCASE("truncated inside the last storage") {
    auto b = good;
    b.resize(b.size() - 3);
    const std::string msg = bytes_error(b, "old.pth");
    CHECK(has(msg, "legacy checkpoint"));
    CHECK_THROWS_AS(load_from_bytes(b), CorruptFileError);
    CHECK(has(msg, "runs past the end of the file"));
    CHECK(has(msg, "old.pth"));
  }
  SUBCASE("truncated inside the main pickle") {
    auto b = good;
    b.resize(200);
    const std::string msg = bytes_error(b, "old.pth");
    CHECK(has(msg, "main pickle starting at offset"));
  }
  SUBCASE("trailing bytes") {
    auto b = good;
    b.push_back(0);
    CHECK(has(bytes_error(b, "old.pth"), "unexpected bytes after the last storage"));
  }
  SUBCASE("wrong protocol version") {
    auto b = good;
    // the protocol-version pickle follows the 15-byte magic pickle: 80 02 4d e9 03 2e (1001)
    REQUIRE(b[15] == 0x80);
    REQUIRE(b[17] == 0x4d);
    b[18] = 0xea;
    CHECK(has(bytes_error(b, "old.pth"), "protocol version 1002 is not supported"));
  }
}

}  // TEST_SUITE
