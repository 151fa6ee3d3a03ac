#pragma once
// Light test helpers for the io tests (fixture files, error messages; no tensor code: cheap to include).
#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "torchlet/core/error.hpp"

namespace testing {

/// The path of `file` in tests/fixtures.
inline std::string fixture_path(const std::string& file) { return std::string(TORCHLET_FIXTURES) + "/" + file; }

/// All bytes of the file at `path` (fails the test when it cannot be read).
inline std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot open ", path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

/// The text of fixture `name`.txt (written by a generator in tests/fixtures/gen).
inline std::string text_fixture(const std::string& name) {
  std::ifstream f(fixture_path(name + ".txt"));
  REQUIRE_MESSAGE(f.good(), "missing fixture ", name);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// The one-line message of the torchlet::IOError that `f` throws (fails the test when it throws none, or a
/// message of several lines).
template <class F>
std::string io_error_of(F&& f) {
  try {
    f();
  } catch (const torchlet::IOError& e) {
    const std::string m = e.what();
    CHECK(m.find('\n') == std::string::npos);
    return m;
  }
  FAIL("no IOError");
  return {};
}

}  // namespace testing
