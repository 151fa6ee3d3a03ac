// The zip container: archives written by PyTorch and Python's zipfile, our writer read back, and hostile inputs.
#include "torchlet/io/zip.hpp"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "helpers.hpp"

using torchlet::IOError;
using namespace torchlet::io;

using testing::file_bytes;
using testing::fixture_path;

namespace {

/// One line of a zip_*_entries.txt listing written by Python's zipfile.
struct Listed {
  std::string name;
  uint64_t method, csize, usize, crc, data_offset, flags;
};
std::vector<Listed> listing(const std::string& file) {
  std::ifstream f(fixture_path(file));
  REQUIRE(f.good());
  std::vector<Listed> out;
  Listed l;
  while (f >> l.name >> l.method >> l.csize >> l.usize >> l.crc >> l.data_offset >> l.flags) out.push_back(l);
  return out;
}

/// Checks the reader's entries against Python's view of the same archive, and that every entry reads and
/// verifies.
void check_against_listing(const ZipReader& z, const std::string& list_file) {
  const auto expected = listing(list_file);
  REQUIRE(z.entries().size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const ZipEntry& e = z.entries()[i];
    const Listed& l = expected[i];
    INFO("entry ", l.name);
    CHECK(e.name == l.name);
    CHECK(e.method == l.method);
    CHECK(e.compressed_size == l.csize);
    CHECK(e.uncompressed_size == l.usize);
    CHECK(e.crc32 == l.crc);
    CHECK(e.data_offset == l.data_offset);
    CHECK(e.flags == l.flags);
    CHECK(z.find(l.name) == &e);
    CHECK(z.read(l.name).size() == l.usize);
    CHECK(z.verify_crc(l.name));
  }
}

/// The payloads of gen/zip.py's _contents().
std::vector<std::pair<std::string, std::vector<uint8_t>>> contents() {
  std::vector<uint8_t> text, bytes;
  for (int i = 0; i < 100; ++i)
    for (char c : std::string("hello zip\n")) text.push_back(uint8_t(c));
  for (int r = 0; r < 4; ++r)
    for (int i = 0; i < 256; ++i) bytes.push_back(uint8_t(i));
  return {{"d/text.txt", text}, {"d/bytes.bin", bytes}, {"d/empty", {}}};
}

/// Runs f and returns the IOError's message ("" and a failed check if nothing or something else was thrown).
std::string io_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const IOError& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL_CHECK("expected IOError, got another exception: ", e.what());
    return "";
  }
  FAIL_CHECK("expected IOError, nothing was thrown");
  return "";
}

/// Parses `bytes` and, when that succeeds, reads every entry with CRC checks: any failure must be an IOError.
/// Returns the error message, or "" if the archive was accepted whole.
std::string parse_all(std::vector<uint8_t> bytes, const ZipLimits& limits = {}) {
  try {
    const ZipReader z = ZipReader::from_buffer(std::move(bytes), "bad.pth", {.check_crc = true, .limits = limits});
    for (const ZipEntry& e : z.entries()) (void)z.read(e);
    (void)z.root();
  } catch (const IOError& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL_CHECK("a corrupt archive raised a non-IOError: ", e.what());
    return "?";
  }
  return "";
}

void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = uint8_t(v >> (8 * i));
}
void put64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  put32(b, at, uint32_t(v));
  put32(b, at + 4, uint32_t(v >> 32));
}
size_t find_sig(const std::vector<uint8_t>& b, uint32_t sig, size_t nth = 0) {
  for (size_t i = 0; i + 4 <= b.size(); ++i)
    if (torchlet::io::detail::zip_u32(b.data() + i) == sig && nth-- == 0) return i;
  FAIL("signature not found");
  return 0;
}
constexpr uint32_t kLocal = 0x04034b50, kCentral = 0x02014b50, kEocd = 0x06054b50, kEocd64 = 0x06064b50,
                   kLocator = 0x07064b50;

std::vector<uint8_t> tensor_bytes(const std::string& npy) {
  const torchlet::Tensor t = testing::fixture(npy);
  const auto* p = static_cast<const uint8_t*>(t.data_ptr());
  return std::vector<uint8_t>(p, p + t.nbytes());
}

std::string temp_path(const std::string& tag) {
  return (std::filesystem::temp_directory_path() /
          ("torchlet_test_zip_" + tag + "_" + std::to_string(::getpid())))
      .string();
}

}  // namespace

TEST_CASE("zip: a state_dict written by torch.save (read whole and mmapped)") {
  for (const bool mmap : {false, true}) {
    INFO("mmap ", mmap);
    const ZipReader z = ZipReader::open(fixture_path("zip_state_dict.pth"), {.mmap = mmap});
    check_against_listing(z, "zip_state_dict_entries.txt");
    CHECK(z.root() == "zip_state_dict");
    CHECK(z.entries().front().name == "zip_state_dict/data.pkl");
    CHECK(z.entries().back().name == "zip_state_dict/version");
    for (const ZipEntry& e : z.entries()) {
      CHECK(e.method == 0);
      CHECK(e.data_offset % 64 == 0);  // PyTorch's FB padding
    }
    const auto version = z.read("zip_state_dict/version");
    CHECK(std::string(version.begin(), version.end()) == "3\n");
    // data/<k> in pickling order: w, b, n, e, h
    const char* keys[] = {"w", "b", "n", "e", "h"};
    for (int k = 0; k < 5; ++k) {
      const std::string entry = "zip_state_dict/data/" + std::to_string(k);
      INFO(entry);
      const ZipView v = z.view(entry);
      const auto expected = tensor_bytes(std::string("zip_state_dict_") + keys[k]);
      REQUIRE(v.size == expected.size());
      CHECK(std::equal(v.data, v.data + v.size, expected.begin()));
      CHECK(v.data == z.data() + z.find(entry)->data_offset);  // zero-copy
      CHECK(z.read(entry) == expected);
    }
    CHECK(z.find("zip_state_dict/data/5") == nullptr);
    CHECK(io_error([&] { (void)z.read("nope"); }).find("no entry 'nope'") != std::string::npos);
  }
}

TEST_CASE("zip: view bytes outlive the reader through owner()") {
  std::shared_ptr<const uint8_t> keep;
  ZipView v;
  {
    const ZipReader z = ZipReader::open(fixture_path("zip_state_dict.pth"), {.mmap = true});
    keep = z.owner();
    v = z.view("zip_state_dict/data/0");
  }
  CHECK(std::vector<uint8_t>(v.data, v.data + v.size) == tensor_bytes("zip_state_dict_w"));
}

TEST_CASE("zip: CRC checks on read are optional") {
  auto bytes = file_bytes(fixture_path("zip_state_dict.pth"));
  const auto expected = listing("zip_state_dict_entries.txt");
  bytes[expected[1].data_offset + 5] ^= 0x40;  // flip a bit inside data/0
  const ZipReader lax = ZipReader::from_buffer(bytes, "flip.pth");
  CHECK(lax.read("zip_state_dict/data/0").size() == 48);  // PyTorch's default: no check
  CHECK_FALSE(lax.verify_crc("zip_state_dict/data/0"));
  CHECK(lax.verify_crc("zip_state_dict/data/1"));
  const ZipReader strict = ZipReader::from_buffer(bytes, "flip.pth", {.check_crc = true});
  const std::string msg = io_error([&] { (void)strict.read("zip_state_dict/data/0"); });
  CHECK(msg.find("[zip] flip.pth: entry 'zip_state_dict/data/0' at offset") != std::string::npos);
  CHECK(msg.find("CRC-32 mismatch") != std::string::npos);
  CHECK(strict.read("zip_state_dict/data/1").size() == 40);
}

TEST_CASE("zip: deflated, data-descriptor and zip64 archives from Python's zipfile") {
  for (const char* name : {"zip_deflated", "zip_descriptor", "zip_zip64"}) {
    INFO(name);
    const ZipReader z = ZipReader::open(fixture_path(std::string(name) + ".zip"));
    check_against_listing(z, std::string(name) + "_entries.txt");
    for (const auto& [entry, data] : contents()) {
      INFO(entry);
      CHECK(z.read(entry) == data);
      if (z.find(entry)->method == 0) {
        const ZipView v = z.view(entry);
        CHECK(std::vector<uint8_t>(v.data, v.data + v.size) == data);
      } else {
        CHECK(io_error([&] { (void)z.view(entry); }).find("is compressed") != std::string::npos);
      }
    }
    CHECK(z.root() == "d");
    const ZipReader strict = ZipReader::open(fixture_path(std::string(name) + ".zip"), {.check_crc = true});
    for (const ZipEntry& e : strict.entries()) CHECK(strict.read(e).size() == e.uncompressed_size);
  }
}

TEST_CASE("zip: archive root folder (PyTorch's rule)") {
  const ZipReader weird = ZipReader::open(fixture_path("zip_weird_prefix.pth"));
  check_against_listing(weird, "zip_weird_prefix_entries.txt");
  CHECK(weird.root() == "weird_prefix");
  CHECK(weird.read("weird_prefix/data/0") == tensor_bytes("zip_state_dict_w"));
  const ZipReader flat = ZipReader::open(fixture_path("zip_flat.zip"));
  CHECK(io_error([&] { (void)flat.root(); }) ==
        "[zip] " + fixture_path("zip_flat.zip") + ": file in archive is not in a subdirectory: data.pkl");
}

TEST_CASE("zip: not an archive, or an unsupported one") {
  const std::string bz = io_error([] { (void)ZipReader::open(fixture_path("zip_bzip2.zip")); });
  CHECK(bz.find("entry 'a/b.txt' uses compression method 12") != std::string::npos);
  const std::string lfs = io_error([] { (void)ZipReader::open(fixture_path("zip_lfs_pointer.pth"), {.mmap = true}); });
  CHECK(lfs.find("zip_lfs_pointer.pth: this is a Git LFS pointer file") != std::string::npos);
  CHECK(io_error([] { (void)ZipReader::from_buffer({}, "model.pth"); }) ==
        "[zip] model.pth: the file is empty (was the save interrupted?)");
  const std::string empty_path = temp_path("empty");
  { std::ofstream(empty_path).flush(); }
  for (const bool mmap : {false, true})
    CHECK(io_error([&] { (void)ZipReader::open(empty_path, {.mmap = mmap}); }).find("the file is empty") !=
          std::string::npos);
  std::filesystem::remove(empty_path);
  CHECK(io_error([] { (void)ZipReader::open("/nonexistent/model.pth"); }) ==
        "[zip] /nonexistent/model.pth: cannot open: No such file or directory");
  CHECK(io_error([] { (void)ZipReader::open("/tmp"); }).find("not a regular file") != std::string::npos);
  const std::string png = "\x89PNG\r\n\x1a\n and then some more bytes of an image";
  CHECK(io_error([&] { (void)ZipReader::from_buffer(std::vector<uint8_t>(png.begin(), png.end()), "cat.pth"); }) ==
        "[zip] cat.pth: not a PyTorch checkpoint: this looks like a PNG image");
}

TEST_CASE("zip: truncated at every length") {
  for (const char* file : {"zip_state_dict.pth", "zip_deflated.zip", "zip_zip64.zip", "zip_descriptor.zip"}) {
    INFO(file);
    const auto bytes = file_bytes(fixture_path(file));
    for (size_t n = 0; n < bytes.size(); ++n) {
      INFO("length ", n);
      const std::string msg = parse_all(std::vector<uint8_t>(bytes.begin(), bytes.begin() + ptrdiff_t(n)));
      CHECK(!msg.empty());
      if (n > 0) CHECK(msg.find("truncated") != std::string::npos);
    }
  }
  const auto bytes = file_bytes(fixture_path("zip_state_dict.pth"));
  CHECK(parse_all(std::vector<uint8_t>(bytes.begin(), bytes.begin() + ptrdiff_t(bytes.size() / 2))) ==
        "[zip] bad.pth: end of central directory not found: the file is truncated or not a zip archive (was the "
        "save interrupted?)");
}

TEST_CASE("zip: every single-byte corruption is accepted or a clean IOError") {
  for (const char* file : {"zip_state_dict.pth", "zip_deflated.zip", "zip_zip64.zip", "zip_descriptor.zip"}) {
    INFO(file);
    const auto bytes = file_bytes(fixture_path(file));
    size_t rejected = 0;
    for (size_t i = 0; i < bytes.size(); ++i)
      for (const uint8_t x : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xFF)}) {
        auto b = bytes;
        b[i] ^= x;
        rejected += !parse_all(std::move(b)).empty();
      }
    CHECK(rejected > 0);
  }
}

TEST_CASE("zip: random multi-byte corruption of the records is accepted or a clean IOError") {
  std::mt19937_64 rng(12345);
  for (const char* file : {"zip_state_dict.pth", "zip_zip64.zip", "zip_descriptor.zip"}) {
    INFO(file);
    const auto bytes = file_bytes(fixture_path(file));
    for (int iter = 0; iter < 3000; ++iter) {
      auto b = bytes;
      const int changes = 1 + int(rng() % 6);
      for (int k = 0; k < changes; ++k) {
        // mostly the central directory and end records at the tail, sometimes anywhere
        const size_t span = (rng() % 4) ? std::min<size_t>(b.size(), 400) : b.size();
        const size_t at = b.size() - 1 - size_t(rng() % span);
        b[at] = (rng() % 3) ? uint8_t(rng()) : uint8_t(0xFF);
      }
      (void)parse_all(std::move(b));
    }
  }
}

TEST_CASE("zip: corrupt records give precise errors") {
  const auto good = file_bytes(fixture_path("zip_state_dict.pth"));
  const size_t eocd = find_sig(good, kEocd), eocd64 = find_sig(good, kEocd64), locator = find_sig(good, kLocator);
  const size_t central0 = find_sig(good, kCentral), central1 = find_sig(good, kCentral, 1);
  auto has = [](const std::string& msg, const std::string& part) {
    INFO(msg);
    CHECK(msg.find(part) != std::string::npos);
  };
  {
    auto b = good;
    b[eocd] = 'X';
    has(parse_all(b), "end of central directory not found");
  }
  {
    auto b = good;
    b[central1] = 'X';
    has(parse_all(b), "bad central directory signature for entry 1 at offset " + std::to_string(central1));
  }
  {
    auto b = good;  // local header of data/0
    b[torchlet::io::detail::zip_u32(good.data() + central1 + 42)] ^= 0xFF;
    has(parse_all(b), "entry 'zip_state_dict/data/0': no local file header at offset");
  }
  {
    auto b = good;  // local header offset past the end
    put32(b, central1 + 42, 0xFFFFFFF0u);
    has(parse_all(b), "entry 'zip_state_dict/data/0': local header offset 4294967280 is past the end of the file");
  }
  {
    auto b = good;  // 0xFFFFFFFF sentinel without a zip64 extra field
    put32(b, central1 + 42, 0xFFFFFFFFu);
    has(parse_all(b), "needs a zip64 extra field but has none");
  }
  {
    auto b = good;  // huge stored size
    put32(b, central1 + 20, 0x7FFFFFFF);
    put32(b, central1 + 24, 0x7FFFFFFF);
    has(parse_all(b), "entry 'zip_state_dict/data/0': data at offset 640 (2147483647 bytes) runs past the end");
  }
  {
    auto b = good;  // stored sizes that disagree
    put32(b, central1 + 20, 47);
    has(parse_all(b), "has compressed size 47 != uncompressed size 48");
  }
  {
    auto b = good;  // unknown method
    b[central0 + 10] = 14;
    has(parse_all(b), "entry 'zip_state_dict/data.pkl' uses compression method 14");
  }
  {
    auto b = good;  // encrypted
    b[central0 + 8] |= 1;
    has(parse_all(b), "is encrypted");
  }
  {
    auto b = good;  // name length runs past the central directory
    b[central0 + 28] = 0xFF;
    b[central0 + 29] = 0xFF;
    has(parse_all(b), "runs past the central directory");
  }
  {
    auto b = good;  // entry count overflow in the zip64 record
    put64(b, eocd64 + 24, uint64_t(1) << 40);
    put64(b, eocd64 + 32, uint64_t(1) << 40);
    b[eocd + 8] = b[eocd + 9] = b[eocd + 10] = b[eocd + 11] = 0xFF;  // the classic record defers to zip64
    has(parse_all(b), "the archive lists 1099511627776 entries, more than the limit");
  }
  {
    auto b = good;  // more entries than the central directory can hold
    put64(b, eocd64 + 24, 1000);
    put64(b, eocd64 + 32, 1000);
    b[eocd + 8] = b[eocd + 9] = b[eocd + 10] = b[eocd + 11] = 0xFF;
    has(parse_all(b), "claims 1000 entries but its central directory");
  }
  {
    auto b = good;  // central directory offset that overflows
    put64(b, eocd64 + 48, ~uint64_t(0) - 10);
    put32(b, eocd + 16, 0xFFFFFFFFu);
    has(parse_all(b), "overflows");
  }
  {
    auto b = good;  // central directory past its end record
    put64(b, eocd64 + 48, 1u << 20);
    put32(b, eocd + 16, 0xFFFFFFFFu);
    has(parse_all(b), "central directory [1048576,");
  }
  {
    auto b = good;  // zip64 locator pointing past the end
    put64(b, locator + 8, uint64_t(1) << 50);
    has(parse_all(b), "zip64 end of central directory offset 1125899906842624");
  }
  {
    auto b = good;  // zip64 locator pointing at garbage
    put64(b, locator + 8, 0);
    has(parse_all(b), "no zip64 end of central directory record at offset 0");
  }
  {
    auto b = good;  // multi-disk
    b[eocd + 4] = 1;
    has(parse_all(b), "multi-disk");
  }
  // the classic EOCD alone (no zip64): entry count overflow
  auto plain = file_bytes(fixture_path("zip_deflated.zip"));
  const size_t peocd = find_sig(plain, kEocd);
  {
    auto b = plain;
    b[peocd + 8] = b[peocd + 9] = b[peocd + 10] = b[peocd + 11] = 0xFF;
    has(parse_all(b), "claims 65535 entries");
  }
  // deflated entries whose sizes lie
  const size_t pcentral0 = find_sig(plain, kCentral);
  {
    auto b = plain;
    put32(b, pcentral0 + 24, 999);
    put32(b, 22, 999);  // the local header agrees
    has(parse_all(b), "entry 'd/text.txt' inflates to more than its declared 999 bytes");
  }
  {
    auto b = plain;
    put32(b, pcentral0 + 24, 1001);
    put32(b, 22, 1001);
    has(parse_all(b), "entry 'd/text.txt' inflates to 1000 bytes, but its declared size is 1001");
  }
  {
    auto b = plain;  // a deflate bomb claim
    put32(b, pcentral0 + 24, 0xFFFFFFF0u);
    has(parse_all(b), "claims 4294967280 bytes from 21 compressed bytes");
  }
  {
    auto b = plain;  // corrupt deflate stream
    for (size_t i = 40; i < 61; ++i) b[i] = 0xFF;
    has(parse_all(b), "entry 'd/text.txt' (offset 0) cannot be inflated");
  }
  // limits
  has(parse_all(good, {.max_entries = 3}), "the archive lists 7 entries, more than the limit of 3");
  has(parse_all(good, {.max_entry_size = 100}), "entry 'zip_state_dict/data.pkl' is 446 bytes, more than the limit");
  has(parse_all(good, {.max_total_size = 500}), "entries total more than 500 bytes");
  has(parse_all(good, {.max_name_length = 10}), "has a name of 23 bytes");
}

TEST_CASE("zip: the comment window and trailing bytes") {
  auto b = file_bytes(fixture_path("zip_deflated.zip"));
  const size_t eocd = find_sig(b, kEocd);
  // a comment holding a fake end record: the real one (whose comment reaches the end) wins
  std::string comment = "comment PK\x05\x06 with a fake end record";
  comment += std::string(22, 'x');
  b[eocd + 20] = uint8_t(comment.size());
  b[eocd + 21] = 0;
  b.insert(b.end(), comment.begin(), comment.end());
  const ZipReader z = ZipReader::from_buffer(b, "comment.zip");
  CHECK(z.read("d/text.txt") == contents()[0].second);
  // a comment longer than the file
  auto c = file_bytes(fixture_path("zip_deflated.zip"));
  c[eocd + 20] = 0xFF;
  CHECK(parse_all(c).find("end of central directory not found") != std::string::npos);
}

TEST_CASE("zip: ZipWriter output is aligned, checksummed and reads back") {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> records;
  for (const size_t n : {0, 1, 63, 64, 65, 1000, 4097}) {
    std::vector<uint8_t> d(n);
    for (size_t i = 0; i < n; ++i) d[i] = uint8_t(i * 31 + n);
    records.emplace_back("archive/data/" + std::to_string(n), d);
  }
  records.insert(records.begin(), {"archive/data.pkl", {0x80, 0x02, '}', '.'}});
  records.emplace_back("archive/version", std::vector<uint8_t>{'3', '\n'});
  for (const ZipWriteOptions opt : {ZipWriteOptions{}, ZipWriteOptions{.always_zip64_eocd = false},
                                    ZipWriteOptions{.force_zip64 = true}, ZipWriteOptions{.alignment = 1},
                                    ZipWriteOptions{.alignment = 4096, .always_zip64_eocd = false}}) {
    INFO("alignment ", opt.alignment, " zip64 eocd ", opt.always_zip64_eocd, " force_zip64 ", opt.force_zip64);
    std::vector<uint8_t> out;
    ZipWriter w(out, opt);
    for (const auto& [name, data] : records) w.add(name, std::span<const uint8_t>(data));
    w.finish();
    CHECK(w.bytes_written() == out.size());
    CHECK(out[0] == 'P');
    CHECK(out[1] == 'K');
    const bool has_zip64 = std::search(out.begin(), out.end(), "PK\x06\x06", "PK\x06\x06" + 4) != out.end();
    CHECK(has_zip64 == (opt.always_zip64_eocd || opt.force_zip64));
    const ZipReader z = ZipReader::from_buffer(out, "written.pth", {.check_crc = true});
    REQUIRE(z.entries().size() == records.size());
    CHECK(z.root() == "archive");
    for (size_t i = 0; i < records.size(); ++i) {
      const ZipEntry& e = z.entries()[i];
      INFO(e.name);
      CHECK(e.name == records[i].first);
      CHECK(e.data_offset % opt.alignment == 0);
      CHECK(e.method == 0);
      CHECK(e.crc32 == torchlet::io::detail::zip_crc32(records[i].second.data(), records[i].second.size()));
      CHECK(z.verify_crc(e.name));
      CHECK(z.read(e) == records[i].second);
      const ZipView v = z.view(e.name);
      CHECK(std::vector<uint8_t>(v.data, v.data + v.size) == records[i].second);
    }
    // truncations of our own output are caught too
    for (size_t n = 0; n < out.size(); n += 7)
      CHECK(!parse_all(std::vector<uint8_t>(out.begin(), out.begin() + ptrdiff_t(n))).empty());
  }
}

TEST_CASE("zip: ZipWriter to a FILE*, and its errors") {
  const std::string path = temp_path("written");
  std::FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  {
    ZipWriter w(f, path);
    w.add("model/data.pkl", std::string_view("pickle"));
    w.add("model/data/0", std::string_view("0123456789abcdef"));
    CHECK(io_error([&] { w.add("model/data/0", std::string_view("again")); }).find("written twice") !=
          std::string::npos);
    w.finish();
    CHECK(io_error([&] { w.add("model/late", std::string_view("x")); }).find("after finish()") !=
          std::string::npos);
    CHECK(io_error([&] { w.finish(); }).find("finish() called twice") != std::string::npos);
  }
  std::fclose(f);
  for (const bool mmap : {false, true}) {
    const ZipReader z = ZipReader::open(path, {.mmap = mmap});
    CHECK(z.root() == "model");
    const auto d = z.read("model/data/0");
    CHECK(std::string(d.begin(), d.end()) == "0123456789abcdef");
    CHECK(z.find("model/data/0")->data_offset % 64 == 0);
  }
  std::filesystem::remove(path);

  std::vector<uint8_t> sink;
  CHECK(io_error([&] { ZipWriter w(sink, {.alignment = 0}); }).find("alignment must be in [1, 4096]") !=
        std::string::npos);
  if (std::FILE* full = std::fopen("/dev/full", "wb")) {
    std::string msg = io_error([&] {
      ZipWriter w(full, "/dev/full");
      w.add("a/small", std::string_view("tiny"));
      w.finish();  // buffered: the error shows at the flush
    });
    CHECK(msg.find("No space left on device") != std::string::npos);
    std::clearerr(full);
    std::vector<uint8_t> big(1 << 20, 7);
    msg = io_error([&] {
      ZipWriter w(full, "/dev/full");
      w.add("a/big", big.data(), big.size());
    });
    CHECK(msg.find("[zip] /dev/full: write of") != std::string::npos);
    CHECK(msg.find("No space left on device") != std::string::npos);
    std::fclose(full);
  }
}

TEST_CASE("zip: duplicate names are rejected") {
  std::vector<uint8_t> out;
  ZipWriter w(out);
  w.add("x/a", std::string_view("1"));
  w.add("x/b", std::string_view("2"));
  w.finish();
  for (size_t i = 0; i + 3 <= out.size(); ++i)
    if (out[i] == 'x' && out[i + 1] == '/' && out[i + 2] == 'b') out[i + 2] = 'a';
  CHECK(parse_all(out).find("entry 'x/a' appears twice") != std::string::npos);
}
