// The bad-input corpus (../shared/reference/bad-inputs.md section 6.1): every hostile or broken file in
// tests/fixtures/bad/ (written by tests/fixtures/gen/bad_inputs.py) must fail fast with a one-line error of the
// right IOError subclass naming the problem; the compatibility positives (ok_*.pt) must load with the right values.
// Levels: the zip container (io::ZipReader), the checkpoint as a loader reads it (ZipReader::checkpoint_root,
// io::unpickle with a storage resolver, unreferenced_entries), bare pickles (io::unpickle), and the whole-file
// loader torchlet::load (file-level cases: truncation, not-a-checkpoint, LFS pointer, TorchScript, polyglots).
#include <doctest/doctest.h>

#include <time.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "torchlet/io/load.hpp"
#include "torchlet/io/unpickler.hpp"
#include "torchlet/io/zip.hpp"

using namespace torchlet;
using io::ZipReader;

namespace {

/// How much slower a sanitizer build runs (the time limits scale with it).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr double kSlowdown = 10;
#else
constexpr double kSlowdown = 1;
#endif
/// Each case must be refused within this much CPU time (the plan: 100 ms) ...
constexpr double kMaxCpuMs = 100 * kSlowdown;
/// ... and this much wall-clock time (a generous margin: the test machines are shared and loaded).
constexpr double kMaxMs = 1000 * kSlowdown;

/// CPU time of the calling thread, in milliseconds.
double thread_cpu_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
}

std::string bad_path(const std::string& name) { return std::string(TORCHLET_FIXTURES) + "/bad/" + name; }

std::vector<uint8_t> bad_bytes(const std::string& name) {
  std::ifstream f(bad_path(name), std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "missing fixture bad/", name, " (run /usr/bin/python3 tests/fixtures/make_fixtures.py "
                  "bad_inputs)");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

/// The error classes of core/error.hpp, most specific first.
enum class Kind { None, Format, Corrupt, Unsafe, Limit, IO };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "nothing thrown";
    case Kind::Format: return "FormatError";
    case Kind::Corrupt: return "CorruptFileError";
    case Kind::Unsafe: return "UnsafeFileError";
    case Kind::Limit: return "LimitError";
    case Kind::IO: return "IOError";
  }
  return "?";
}

/// What running a reader on a bad input gave.
struct Outcome {
  Kind kind = Kind::None;
  std::string message;
  double ms = 0;      // wall clock
  double cpu_ms = 0;  // CPU time of this thread
};

template <class F>
Outcome outcome_of(F&& f) {
  Outcome o;
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = thread_cpu_ms();
  try {
    f();
  } catch (const FormatError& e) {
    o = {Kind::Format, e.what()};
  } catch (const CorruptFileError& e) {
    o = {Kind::Corrupt, e.what()};
  } catch (const UnsafeFileError& e) {
    o = {Kind::Unsafe, e.what()};
  } catch (const LimitError& e) {
    o = {Kind::Limit, e.what()};
  } catch (const IOError& e) {
    o = {Kind::IO, e.what()};
  } catch (const std::exception& e) {
    FAIL_CHECK("a bad input raised a non-IOError exception: ", e.what());
    o = {Kind::IO, e.what()};
  }
  o.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  o.cpu_ms = thread_cpu_ms() - c0;
  return o;
}

/// The slowest case seen (reported at the end of the run).
Outcome& slowest() {
  static Outcome o;
  return o;
}

/// Checks the error kind, that the message is one line holding every part, and the time taken.
void expect(const Outcome& o, Kind kind, std::initializer_list<std::string> parts) {
  INFO("message: ", o.message);
  CHECK_MESSAGE(o.kind == kind, "expected ", kind_name(kind), ", got ", kind_name(o.kind));
  CHECK(o.message.find('\n') == std::string::npos);
  for (const std::string& p : parts) CHECK_MESSAGE(o.message.find(p) != std::string::npos, "missing '", p, "'");
  CHECK_MESSAGE(o.cpu_ms < kMaxCpuMs, "took ", o.cpu_ms, " ms of CPU time");
  CHECK_MESSAGE(o.ms < kMaxMs, "took ", o.ms, " ms");
  if (o.cpu_ms > slowest().cpu_ms) slowest() = o;
}

/// Reads a checkpoint archive the way a loader does: the zip, its layout, data.pkl and each storage record.
struct Checkpoint {
  Value value;
  std::string root;
  std::vector<std::string> keys;           // storages resolved, in order
  std::vector<std::string> unreferenced;   // entries nobody used
  std::vector<std::string> unverified;     // entries without a CRC
};

Checkpoint read_checkpoint(std::vector<uint8_t> bytes, const std::string& name, const io::ZipReadOptions& zo = {},
                           const io::UnpickleOptions& uo = {}) {
  const ZipReader z = ZipReader::from_buffer(std::move(bytes), name, zo);
  Checkpoint c;
  c.root = z.checkpoint_root();
  const std::vector<uint8_t> pkl = z.read(c.root + "/data.pkl");
  c.value = io::unpickle(pkl, uo, [&](const std::string& key, DType dtype, int64_t numel, const std::string&) {
    const io::ZipEntry& e = z.entry(c.root + "/data/" + key);  // CorruptFileError when missing
    const uint64_t nbytes = uint64_t(numel) * uint64_t(element_size(dtype));
    TORCHLET_CHECK(e.uncompressed_size == nbytes, CorruptFileError, "[test] storage record '", e.name, "' holds ",
                   e.uncompressed_size, " bytes, expected ", nbytes, ": storage size mismatch");
    const std::vector<uint8_t> data = z.read(e);
    Storage s = Storage::allocate(data.size());
    if (!data.empty()) std::memcpy(s.data(), data.data(), data.size());
    c.keys.push_back(key);
    return s;
  });
  c.unreferenced = z.unreferenced_entries(c.root, c.keys);
  c.unverified = z.unverified_entries();
  return c;
}

/// Unpickles bytes with a resolver that hands out zeroed storages and counts its calls.
Value unpickle_counting(const std::vector<uint8_t>& bytes, int& calls, const io::UnpickleOptions& uo = {}) {
  return io::unpickle(bytes, uo, [&](const std::string&, DType dtype, int64_t numel, const std::string&) {
    ++calls;
    return Storage::allocate(size_t(numel * element_size(dtype)));
  });
}

std::vector<double> floats(const Value& v) {
  const Tensor t = v.as_tensor().contiguous();
  REQUIRE(t.dtype() == kFloat32);
  const float* p = t.data<float>();
  return std::vector<double>(p, p + t.numel());
}

/// The values every positive holds: w = arange(6).reshape(2, 3), b = [1.5, -2].
void check_values(const Value& v) {
  REQUIRE(v.is_dict());
  CHECK(v.at("w").as_tensor().sizes() == Shape{2, 3});
  CHECK(floats(v.at("w")) == std::vector<double>{0, 1, 2, 3, 4, 5});
  CHECK(floats(v.at("b")) == std::vector<double>{1.5, -2});
}

struct Case {
  const char* file;
  Kind kind;
  std::initializer_list<std::string> parts;
};

}  // namespace

TEST_CASE("bad_inputs: the zip container refuses broken and hostile archives") {
  const Case cases[] = {
      // 1/2. truncation: no end record, or an entry running past the end
      {"bad_trunc_half.pt", Kind::Corrupt, {"end of central directory not found", "was the save interrupted?"}},
      {"bad_trunc_minus1.pt", Kind::Corrupt, {"end of central directory not found", "was the save interrupted?"}},
      {"bad_trunc_empty.pt", Kind::Corrupt, {"the file is empty", "was the save interrupted?"}},
      {"bad_trunc_after_local_header.pt", Kind::Corrupt, {"truncated", "was the save interrupted?"}},
      {"bad_entry_data_oob.pt", Kind::Corrupt, {"entry 'archive/data/0'", "runs past the end of the file"}},
      // 15/16. local vs central header
      {"bad_local_name_mismatch.pt", Kind::Corrupt, {"entry 'archive/data.pkl'", "names a different file",
                                                     "header mismatch"}},
      {"bad_local_method_mismatch.pt", Kind::Corrupt, {"entry 'archive/data.pkl'", "compression method 8",
                                                       "header mismatch"}},
      {"bad_local_size_mismatch.pt", Kind::Corrupt, {"entry 'archive/data/0'", "compressed size", "header mismatch"}},
      {"bad_local_crc_mismatch.pt", Kind::Corrupt, {"entry 'archive/data.pkl'", "CRC-32 3735928559",
                                                    "header mismatch"}},
      // 14/17. duplicates and overlaps
      {"bad_duplicate_entry.pt", Kind::Corrupt, {"entry 'archive/data.pkl' appears twice", "duplicate"}},
      {"bad_overlap_entries.pt", Kind::Corrupt, {"'archive/data/0'", "'archive/data/1'", "overlap"}},
      {"bad_overlap_central_directory.pt", Kind::Corrupt, {"'archive/version'", "overlaps the central directory"}},
      {"bad_shared_local_header.pt", Kind::Corrupt, {"entry 'archive/data/1'", "names a different file"}},
      // 18. deflate bomb claim
      {"bad_deflate_ratio.pt", Kind::Limit, {"'archive/data/0'", "claims 4294967280 bytes", "zip bomb"}},
      // 19. flag bits
      {"bad_flag_0x01.pt", Kind::Format, {"entry 'archive/data.pkl'", "encrypted"}},
      {"bad_flag_0x20.pt", Kind::Format, {"entry 'archive/data.pkl'", "unsupported general-purpose flags 0x00000820"}},
      {"bad_flag_0x40.pt", Kind::Format, {"entry 'archive/data.pkl'", "unsupported general-purpose flags 0x00000840"}},
      {"bad_flag_local_only.pt", Kind::Format, {"entry 'archive/data.pkl'", "local header at offset 0",
                                                "unsupported general-purpose flags"}},
      // 20. polyglots
      {"bad_prepended_pickle.pt", Kind::Unsafe, {"bytes of other data precede the archive", "offset 0", "polyglot"}},
      {"bad_prepended_zip64.pt", Kind::Unsafe, {"18 bytes of other data precede the archive", "polyglot"}},
      {"bad_appended_junk.pt", Kind::Corrupt, {"32 trailing bytes after the end of the archive", "appended"}},
      // 21. zip64
      {"bad_zip64_locator_past_eof.pt", Kind::Corrupt, {"zip64 end of central directory offset", "out of bounds",
                                                        "invalid zip64"}},
      {"bad_zip64_count_mismatch.pt", Kind::Corrupt, {"zip64 end record", "disagrees", "invalid zip64"}},
      {"bad_zip64_extra_len7.pt", Kind::Corrupt, {"entry 'archive/data.pkl'", "zip64 extra field of 7 bytes"}},
      {"bad_zip64_missing_extra.pt", Kind::Corrupt, {"entry 'archive/data.pkl'", "needs a zip64 extra field"}},
      // 22. names
      {"bad_name_dotdot.pt", Kind::Unsafe, {"invalid name 'archive/../x'", "'..' path component"}},
      {"bad_name_absolute.pt", Kind::Unsafe, {"invalid name '/archive/x'", "absolute path"}},
      {"bad_name_backslash.pt", Kind::Unsafe, {"invalid name 'archive\\x'", "backslash"}},
      {"bad_name_nul.pt", Kind::Unsafe, {"invalid name 'archive/x\\x00.pkl'", "NUL"}},
      {"bad_name_bad_utf8.pt", Kind::Unsafe, {"invalid name 'archive/\\xff\\xfe'", "UTF-8"}},
      {"bad_name_long.pt", Kind::Limit, {"has a name of 5008 bytes", "limit of 4096"}},
      // 28. not a checkpoint
      {"bad_png.pt", Kind::Format, {"not a PyTorch checkpoint", "PNG image"}},
      {"bad_lfs_pointer.pt", Kind::Format, {"Git LFS pointer", "git lfs pull"}},
      {"bad_safetensors.pt", Kind::Format, {"not a PyTorch checkpoint", "safetensors"}},
      {"bad_legacy_tar.pt", Kind::Format, {"not a PyTorch checkpoint", "tar archive"}},
      {"bad_legacy_magic_nonliteral.pt", Kind::Format, {"not a PyTorch checkpoint", "bare pickle stream"}},
  };
  for (const Case& c : cases) {
    const std::string fixture_name = c.file;
    INFO("fixture bad/", fixture_name);
    std::vector<uint8_t> bytes = bad_bytes(c.file);
    const Outcome o = outcome_of([&] {
      const ZipReader z = ZipReader::from_buffer(std::move(bytes), c.file, {.check_crc = true});
      for (const io::ZipEntry& e : z.entries()) (void)z.read(e);
    });
    expect(o, c.kind, c.parts);
    CHECK(o.message.find(c.file) != std::string::npos);  // names the file
  }
  // The same checks reading from disk, whole and memory-mapped (the empty file too).
  for (const bool mmap : {false, true}) {
    expect(outcome_of([&] { (void)ZipReader::open(bad_path("bad_trunc_half.pt"), {.mmap = mmap}); }), Kind::Corrupt,
           {"bad_trunc_half.pt", "was the save interrupted?"});
    expect(outcome_of([&] { (void)ZipReader::open(bad_path("bad_trunc_empty.pt"), {.mmap = mmap}); }), Kind::Corrupt,
           {"the file is empty", "was the save interrupted?"});
    expect(outcome_of([&] { (void)ZipReader::open(bad_path("bad_overlap_entries.pt"), {.mmap = mmap}); }),
           Kind::Corrupt, {"overlap"});
  }
}

TEST_CASE("bad_inputs: checkpoint archives: layout, storages, hostile pickles, hidden records") {
  const Case cases[] = {
      // 4. os.system after a tensor: refused before any storage is read
      {"bad_os_system.pt", Kind::Unsafe, {"refusing to load global posix.system", "opcode GLOBAL"}},
      // 7. trailing bytes after STOP in data.pkl
      {"bad_pkl_trailing.pt", Kind::Corrupt, {"4 trailing bytes after STOP", "trailing data"}},
      // 8. TorchScript
      {"bad_torchscript.pt", Kind::Format, {"TorchScript", "not supported"}},
      // 11. storage sizes and records
      {"bad_storage_numel_larger.pt", Kind::Corrupt, {"archive/data/0", "holds 24 bytes, expected 28",
                                                      "storage size mismatch"}},
      // (smaller: the 2x3 view no longer fits, found while parsing, before the record is read)
      {"bad_storage_numel_smaller.pt", Kind::Corrupt, {"out of bounds of storage '0' with 5 elements"}},
      {"bad_storage_missing.pt", Kind::Corrupt, {"no entry 'archive/data/0'"}},
      // 13. more tensor bytes than the limit, refused before reading
      {"bad_storage_huge_numel.pt", Kind::Limit, {"storage '0'", "max_total_tensor_bytes", "opcode BINPERSID"}},
      // 18. a deflated storage holding more than its tensor: refused from the sizes, before inflating
      {"bad_deflate_storage.pt", Kind::Corrupt, {"archive/data/0", "holds 8388608 bytes, expected 24",
                                                 "storage size mismatch"}},
      // 23. layout
      {"bad_two_roots.pt", Kind::Format, {"entry 'b/data/0' is outside the archive folder 'a/'", "archive layout"}},
      {"bad_no_data_pkl.pt", Kind::Format, {"no 'archive/data.pkl'", "archive layout"}},
  };
  for (const Case& c : cases) {
    const std::string fixture_name = c.file;
    INFO("fixture bad/", fixture_name);
    Value result = Value("untouched");
    const Outcome o = outcome_of([&] { result = read_checkpoint(bad_bytes(c.file), c.file).value; });
    expect(o, c.kind, c.parts);
    CHECK(result.is_string());  // no partial result
  }
  // 4. The malicious global comes after a tensor in the pickle, yet no storage is ever requested.
  {
    const ZipReader z = ZipReader::from_buffer(bad_bytes("bad_os_system.pt"), "bad_os_system.pt");
    const auto pkl = z.read("archive/data.pkl");
    int calls = 0;
    expect(outcome_of([&] { (void)unpickle_counting(pkl, calls); }), Kind::Unsafe, {"posix.system"});
    CHECK(calls == 0);
  }
  // 3. A flipped storage byte: found with CRC checks, silently loaded without (PyTorch does not check).
  {
    expect(outcome_of([&] { (void)read_checkpoint(bad_bytes("bad_bitflip.pt"), "bad_bitflip.pt", {.check_crc = true}); }),
           Kind::Corrupt, {"entry 'archive/data/0'", "CRC-32 mismatch"});
    const Checkpoint c = read_checkpoint(bad_bytes("bad_bitflip.pt"), "bad_bitflip.pt");
    CHECK(floats(c.value.at("w"))[1] != 1.0);
  }
  // 29. Hidden records: loaded, and reported as unreferenced.
  {
    const Checkpoint c = read_checkpoint(bad_bytes("bad_hidden_records.pt"), "bad_hidden_records.pt");
    check_values(c.value);
    CHECK(c.unreferenced == std::vector<std::string>{"archive/data/999", "archive/extra.pkl"});
  }
}

TEST_CASE("bad_inputs: compatibility positives load with the right values") {
  for (const char* file : {"ok_torch.pt", "ok_crc0.pt", "ok_streamed.pt", "ok_align4096.pt", "ok_zip64_extra.pt"}) {
    const std::string fixture_name = file;
    INFO("fixture bad/", fixture_name);
    for (const bool crc : {false, true}) {
      const Checkpoint c = read_checkpoint(bad_bytes(file), file, {.check_crc = crc});
      check_values(c.value);
      CHECK(c.root == "archive");
      CHECK(c.keys == std::vector<std::string>{"0", "1"});
      CHECK(c.unreferenced.empty());
      // a file written without CRCs is readable with CRC checks on, and says which entries are unverified
      CHECK(c.unverified.empty() == (std::string(file) != "ok_crc0.pt"));
    }
  }
  const ZipReader z = ZipReader::from_buffer(bad_bytes("ok_align4096.pt"), "ok_align4096.pt");
  CHECK(z.find("archive/data/0")->data_offset % 4096 == 0);
  const ZipReader s = ZipReader::from_buffer(bad_bytes("ok_streamed.pt"), "ok_streamed.pt");
  CHECK((s.find("archive/data/0")->flags & 8) != 0);
}

TEST_CASE("bad_inputs: hostile and corrupt pickles") {
  const Case cases[] = {
      // 5. obfuscated globals
      {"bad_obf_memo_stack_global.pkl", Kind::Unsafe, {"refusing to load global posix.system", "STACK_GLOBAL"}},
      {"bad_obf_string_opcode.pkl", Kind::Unsafe, {"disallowed opcode", "STRING", "offset 2"}},
      {"bad_obf_dotted_name.pkl", Kind::Unsafe, {"refusing to load global builtins.print.__class__"}},
      {"bad_obf_pathlib.pkl", Kind::Unsafe, {"refusing to load global pathlib.Path"}},
      {"bad_obf_ext1.pkl", Kind::Unsafe, {"disallowed opcode", "EXT1"}},
      {"bad_obf_stack_global_int.pkl", Kind::Unsafe, {"STACK_GLOBAL operands are not strs"}},
      {"bad_obf_builtins_getattr.pkl", Kind::Unsafe, {"refusing to load global builtins.getattr"}},
      // 6. instantiation and BUILD
      {"bad_inst.pkl", Kind::Unsafe, {"disallowed opcode INST"}},
      {"bad_obj.pkl", Kind::Unsafe, {"disallowed opcode OBJ"}},
      {"bad_newobj_ex_tensor.pkl", Kind::Unsafe, {"refusing to instantiate global torch.Tensor", "NEWOBJ_EX"}},
      {"bad_newobj_ex_object.pkl", Kind::Unsafe, {"refusing to instantiate global builtins.object"}},
      {"bad_build_list.pkl", Kind::Unsafe, {"BUILD on a list", "disallowed BUILD target"}},
      {"bad_build_global.pkl", Kind::Unsafe, {"BUILD on a global", "disallowed BUILD target"}},
      // 7. payload then garbage
      {"bad_trailing_garbage.pkl", Kind::Corrupt, {"33 trailing bytes after STOP at offset 3"}},
      {"bad_second_pickle.pkl", Kind::Corrupt, {"trailing bytes after STOP"}},
      {"bad_malicious_then_garbage.pkl", Kind::Unsafe, {"posix.system"}},
      // 10. SETITEM targets
      {"bad_setitem_list.pkl", Kind::Corrupt, {"SETITEM target is a list", "opcode SETITEM"}},
      {"bad_setitems_tuple.pkl", Kind::Corrupt, {"SETITEM target is a tuple", "opcode SETITEMS"}},
      {"bad_setitem_tensor.pkl", Kind::Corrupt, {"SETITEM target is a tensor"}},
      // 12. views
      {"bad_view_offset_huge.pkl", Kind::Corrupt, {"out of bounds of storage '0'"}},
      {"bad_view_size_huge.pkl", Kind::Corrupt, {"element count overflows int64"}},
      {"bad_view_negative_stride.pkl", Kind::Corrupt, {"negative stride -1"}},
      {"bad_view_extent_overflow.pkl", Kind::Corrupt, {"view extent overflows int64"}},
      {"bad_view_past_end.pkl", Kind::Corrupt, {"last element 4", "out of bounds of storage '0' with 4 elements"}},
      // 13. limits
      {"bad_storage_too_big.pkl", Kind::Limit, {"max_total_tensor_bytes"}},
      // 22. storage key
      {"bad_storage_key_traversal.pkl", Kind::Unsafe, {"invalid storage key '../../etc/passwd'"}},
      // 24. structure
      {"bad_reduce_empty_stack.pkl", Kind::Corrupt, {"stack underflow (opcode REDUCE 0x52 at offset 2)"}},
      {"bad_appends_no_mark.pkl", Kind::Corrupt, {"no MARK", "APPENDS"}},
      {"bad_binget_undefined.pkl", Kind::Corrupt, {"memo index 5 was never stored", "BINGET"}},
      {"bad_long_binput_huge.pkl", Kind::Limit, {"memo index 4294967295", "LONG_BINPUT"}},
      {"bad_binunicode_truncated.pkl", Kind::Corrupt, {"truncated pickle", "BINUNICODE"}},
      {"bad_binunicode_bad_utf8.pkl", Kind::Corrupt, {"not valid UTF-8", "BINUNICODE"}},
      {"bad_proto_twice.pkl", Kind::Corrupt, {"PROTO not at the start", "offset 2"}},
      {"bad_proto_misplaced.pkl", Kind::Corrupt, {"PROTO not at the start", "offset 1"}},
      {"bad_unknown_opcode.pkl", Kind::Corrupt, {"unknown opcode", "0xff at offset 2"}},
      {"bad_missing_stop.pkl", Kind::Corrupt, {"no STOP opcode", "interrupted"}},
      // 25. resources
      {"bad_binunicode_huge.pkl", Kind::Corrupt, {"string of 4294967280 bytes runs past the end"}},
      {"bad_billion_laughs.pkl", Kind::Limit, {"memo replay bomb"}},
      {"bad_dup_laughs.pkl", Kind::Limit, {"memo replay bomb"}},
      {"bad_binpersid_chain.pkl", Kind::Corrupt, {"invalid persistent id", "BINPERSID"}},
      {"bad_cyclic_memo.pkl", Kind::Limit, {"recursive (self-containing) structure"}},
      // 26. frames
      {"bad_frame_straddle.pkl", Kind::Corrupt, {"straddles the end of the frame", "frame mismatch"}},
      {"bad_frame_nested.pkl", Kind::Corrupt, {"FRAME before the end of the current frame", "frame mismatch"}},
      // 27. persistent ids
      {"bad_pid_module.pkl", Kind::Corrupt, {"invalid persistent id", "2 fields"}},
      {"bad_pid_dict.pkl", Kind::Corrupt, {"invalid persistent id: a dict, not a tuple"}},
      {"bad_pid_7_tuple.pkl", Kind::Corrupt, {"invalid persistent id", "7 fields"}},
      {"bad_pid_str_type.pkl", Kind::Corrupt, {"invalid persistent id", "storage type is a str"}},
      {"bad_pid_unknown_storage.pkl", Kind::Format, {"storage type torch.EvilStorage is not supported"}},
  };
  for (const Case& c : cases) {
    const std::string fixture_name = c.file;
    INFO("fixture bad/", fixture_name);
    const auto bytes = bad_bytes(c.file);
    int calls = 0;
    Value result = Value("untouched");
    expect(outcome_of([&] { result = unpickle_counting(bytes, calls); }), c.kind, c.parts);
    CHECK(result.is_string());
    CHECK(c.parts.size() > 0);
  }
  // allow_objects = false refuses unknown classes outright.
  {
    const std::string s = "\x80\x02" "cmymodule\nEvil\n)\x81.";
    int calls = 0;
    expect(outcome_of([&] {
             (void)unpickle_counting(std::vector<uint8_t>(s.begin(), s.end()), calls, {.allow_objects = false});
           }),
           Kind::Unsafe, {"refusing to load global mymodule.Evil"});
  }
}

TEST_CASE("bad_inputs: resource exhaustion is stopped fast, without recursion in parse or destruction") {
  auto run = [](const std::string& s, const io::UnpickleOptions& uo = {}) {
    int calls = 0;
    const std::vector<uint8_t> bytes(s.begin(), s.end());  // built outside the timed part
    return outcome_of([&] { (void)unpickle_counting(bytes, calls, uo); });
  };
  // 10^7 NONEs: the stack limit stops it after 2^17.
  expect(run("\x80\x02" + std::string(10000000, 'N') + "."), Kind::Limit, {"max_stack"});
  // 100k nested EMPTY_LIST/APPEND, and 100k MARKs.
  expect(run("\x80\x02" + std::string(100000, ']') + std::string(99999, 'a') + "."), Kind::Limit, {"max_depth"});
  expect(run("\x80\x02" + std::string(100000, '(') + "."), Kind::Limit, {"MARKs nested deeper than max_depth"});
  // A 100k-deep chain built top-down through the memo (the depth is only seen at the end): no recursion when
  // the chain is refused, nor when it is destroyed.
  {
    std::string s = "\x80\x02]r";
    auto u32 = [&](uint32_t v) {
      for (int i = 0; i < 4; ++i) s += char((v >> (8 * i)) & 0xFF);
    };
    u32(0);
    s += "0";
    for (uint32_t i = 0; i < 100000; ++i) {
      s += "j";
      u32(i);
      s += "]r";
      u32(i + 1);
      s += "a0";
    }
    s += "j";
    u32(0);
    s += ".";
    expect(run(s), Kind::Limit, {"max_depth"});
  }
  // 50k-deep nested dicts through SETITEM (bottom-up): stopped at max_depth.
  {
    std::string s = "\x80\x02";
    for (int i = 0; i < 50000; ++i) s += "}K\x01";
    s += "}" + std::string(50000, 's') + ".";
    expect(run(s), Kind::Limit, {"nesting deeper than max_depth", "SETITEM"});
  }
  // A long BINPERSID chain and 1e6 memo PUTs with a small memo limit.
  expect(run("\x80\x02N" + std::string(100000, 'Q') + "."), Kind::Corrupt, {"invalid persistent id"});
  {
    std::string s = "\x80\x02N";
    for (int i = 0; i < 100; ++i) s += "\x94";
    s += ".";
    expect(run(s, {.max_memo_entries = 10}), Kind::Limit, {"max_memo_entries"});
  }
  // The deepest accepted nesting (max_depth: 1000 lists, the innermost holding an int) converts and is destroyed
  // without trouble; one level more is refused.
  {
    const std::string s = "\x80\x02" + std::string(1000, ']') + "K\x07" + std::string(1000, 'a') + ".";
    int calls = 0;
    const Value v = unpickle_counting(std::vector<uint8_t>(s.begin(), s.end()), calls);
    CHECK(v.is_list());
    expect(run("\x80\x02" + std::string(1001, ']') + "K\x07" + std::string(1001, 'a') + "."), Kind::Limit,
           {"nesting deeper than max_depth 1000"});
  }
  // Memo replay of a long string (README finding R2): a 1 MiB str fetched 3000 times would be 3 GiB of copies;
  // refused before the first copy.
  {
    std::string s = "\x80\x02](X";
    const uint32_t len = 1u << 20;
    for (int i = 0; i < 4; ++i) s += char((len >> (8 * i)) & 0xFF);
    s += std::string(len, 'a') + "q";
    s += '\0';
    for (int i = 1; i < 3000; ++i) {
      s += 'h';
      s += '\0';
    }
    s += "e.";
    expect(run(s), Kind::Limit, {"max_result_bytes 268435456", "UnpickleOptions::max_result_bytes"});
  }
}

TEST_CASE("bad_inputs: whole files through torchlet::load") {
  // Every refused file raises a typed one-line error naming the file.
  const Case refused[] = {
      {"bad_trunc_half.pt", Kind::Corrupt, {"was the save interrupted?"}},
      {"bad_trunc_minus1.pt", Kind::Corrupt, {"was the save interrupted?"}},
      {"bad_trunc_after_local_header.pt", Kind::Corrupt, {"was the save interrupted?"}},
      {"bad_trunc_empty.pt", Kind::Corrupt, {"empty"}},
      {"bad_lfs_pointer.pt", Kind::Format, {"Git LFS pointer"}},
      {"bad_torchscript.pt", Kind::Format, {"TorchScript"}},
      {"bad_png.pt", Kind::Format, {"not a PyTorch checkpoint"}},
      {"bad_safetensors.pt", Kind::Format, {"safetensors"}},
      {"bad_legacy_tar.pt", Kind::Format, {"tar"}},
      {"bad_legacy_magic_nonliteral.pt", Kind::Format, {"not a PyTorch checkpoint"}},
      {"bad_prepended_pickle.pt", Kind::Format, {"not a PyTorch checkpoint"}},
      {"bad_prepended_zip64.pt", Kind::Format, {"not a PyTorch checkpoint"}},
      {"bad_appended_junk.pt", Kind::Corrupt, {"trailing bytes"}},
      {"bad_os_system.pt", Kind::Unsafe, {"posix.system"}},
      {"bad_pkl_trailing.pt", Kind::Corrupt, {"trailing bytes after STOP"}},
      {"bad_storage_missing.pt", Kind::Corrupt, {"archive/data/0"}},
      {"bad_storage_numel_larger.pt", Kind::Corrupt, {"archive/data/0"}},
      {"bad_storage_huge_numel.pt", Kind::Limit, {"max_total_tensor_bytes"}},
      {"bad_two_roots.pt", Kind::Format, {"archive folder"}},
      {"bad_no_data_pkl.pt", Kind::Format, {"data.pkl"}},
      {"bad_byteorder_middle.pt", Kind::Format, {"middle"}},
      {"bad_version_99.pt", Kind::Format, {"version"}},
      {"bad_version_text.pt", Kind::Format, {"version"}},
      {"bad_duplicate_entry.pt", Kind::Corrupt, {"appears twice"}},
      {"bad_overlap_entries.pt", Kind::Corrupt, {"overlap"}},
      {"bad_flag_0x40.pt", Kind::Format, {"flags"}},
      {"bad_name_dotdot.pt", Kind::Unsafe, {"'..' path component"}},
      {"bad_deflate_ratio.pt", Kind::Limit, {"zip bomb"}},
  };
  for (const Case& c : refused) {
    const std::string fixture_name = c.file;
    INFO("fixture bad/", fixture_name);
    for (const bool mmap : {false, true}) {
      Value result = Value("untouched");
      const Outcome o = outcome_of([&] { result = load(bad_path(c.file), {.mmap = mmap}); });
      expect(o, c.kind, c.parts);
      CHECK(o.message.find(c.file) != std::string::npos);
      CHECK(result.is_string());  // no partial result
    }
  }
  // The fuzzers' reproducer of README finding R2: a 15.5 KB file whose data.pkl fetches one 15 MiB str 1000 times
  // (15 GiB of copies). Refused before any copy; not timed with the rest, since inflating and checking the 15 MiB
  // of UTF-8 alone takes ~80 ms.
  {
    const std::string r2 = std::string(TORCHLET_FIXTURES) + "/../fuzz/regressions/fuzz_load/r2_string_memo_replay.pt";
    const Outcome o = outcome_of([&] { (void)load(r2); });
    INFO("message: ", o.message);
    CHECK(o.kind == Kind::Limit);
    CHECK(o.message.find("max_result_bytes") != std::string::npos);
    CHECK(o.message.find("r2_string_memo_replay.pt") != std::string::npos);
  }
  // The positives, copied and zero-copy; big-endian ones are byte-swapped (copy mode only).
  for (const char* file : {"ok_torch.pt", "ok_crc0.pt", "ok_streamed.pt", "ok_align4096.pt", "ok_zip64_extra.pt",
                           "ok_bigendian.pt"}) {
    const std::string fixture_name = file;
    INFO("fixture bad/", fixture_name);
    check_values(load(bad_path(file)));
    if (std::string(file) != "ok_bigendian.pt") check_values(load(bad_path(file), {.mmap = true}));
  }
}

TEST_CASE("bad_inputs: the slowest rejection") {
  MESSAGE("slowest rejection: ", slowest().cpu_ms, " ms CPU, ", slowest().ms, " ms wall (limits ", kMaxCpuMs, ", ",
          kMaxMs, "): ", slowest().message.substr(0, 100));
  CHECK(slowest().cpu_ms < kMaxCpuMs);
}
