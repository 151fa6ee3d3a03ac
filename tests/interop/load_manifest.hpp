#pragma once
// The manifest of a loaded Value tree, line for line as tests/fixtures/gen/checkpoints.py::manifest() writes it
// from the Python object: one line per node in walk order, `<path>\t<kind>[\t<fields>]`, where a path is
// `/s:<str key>`, `/i:<int key>` or `/[<index>]` per level; floats are their IEEE bits in hex, strings their
// bytes in hex, and a tensor line is `tensor\t<dtype>\t<sizes>\t<strides>\t<offset>\t<storage id>` (storage ids
// number distinct storages in order of first use), followed in the expected file by one payload column.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "torchlet/io/value.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace load_manifest {

/// Lines (tensor lines without the payload column) and the tensors in walk order.
struct Manifest {
  std::vector<std::string> lines;
  std::vector<torchlet::Tensor> tensors;
  std::vector<size_t> tensor_line;  ///< index into lines of each tensor
};

inline std::string hex_bytes(const std::string& s) {
  std::string out;
  char buf[3];
  for (unsigned char c : s) {
    std::snprintf(buf, sizeof buf, "%02x", c);
    out += buf;
  }
  return out;
}

inline std::string join(const torchlet::Shape& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s;
}

/// The manifest of `root`.
inline Manifest manifest(const torchlet::Value& root) {
  using torchlet::Value;
  Manifest m;
  std::vector<torchlet::Storage> storages;
  struct Item {
    const Value* v;
    std::string path;
  };
  std::vector<Item> todo{{&root, ""}};
  while (!todo.empty()) {
    Item it = std::move(todo.back());
    todo.pop_back();
    const Value& v = *it.v;
    std::string line = it.path + "\t";
    switch (v.kind()) {
      case Value::Kind::None: line += "None"; break;
      case Value::Kind::Bool: line += std::string("bool\t") + (v.as_bool() ? "1" : "0"); break;
      case Value::Kind::Int: line += "int\t" + std::to_string(v.as_int()); break;
      case Value::Kind::Double: {
        const double d = v.as_double();
        uint64_t bits;
        std::memcpy(&bits, &d, 8);
        char buf[20];
        std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(bits));
        line += std::string("float\t") + buf;
        break;
      }
      case Value::Kind::String: line += "str\t" + hex_bytes(v.as_string()); break;
      case Value::Kind::Tensor: {
        const torchlet::Tensor& t = v.as_tensor();
        size_t sid = 0;
        while (sid < storages.size() && !storages[sid].is_same(t.storage())) ++sid;
        if (sid == storages.size()) storages.push_back(t.storage());
        line += "tensor\t" + std::string(torchlet::dtype_name(t.dtype())) + "\t" + join(t.sizes()) + "\t" +
                join(t.strides()) + "\t" + std::to_string(t.storage_offset()) + "\t" + std::to_string(sid);
        m.tensor_line.push_back(m.lines.size());
        m.tensors.push_back(t);
        break;
      }
      case Value::Kind::List:
      case Value::Kind::Tuple: {
        line += std::string(v.is_list() ? "list\t" : "tuple\t") + std::to_string(v.size());
        const auto& items = v.as_list();
        for (size_t i = items.size(); i-- > 0;) todo.push_back({&items[i], it.path + "/[" + std::to_string(i) + "]"});
        break;
      }
      case Value::Kind::Dict: {
        line += "dict\t" + std::to_string(v.size());
        const auto& e = v.as_dict().entries();
        for (size_t i = e.size(); i-- > 0;) {
          const Value& k = e[i].first;
          todo.push_back({&e[i].second, it.path + (k.is_int() ? "/i:" + std::to_string(k.as_int())
                                                              : "/s:" + (k.is_string() ? k.as_string() : k.repr()))});
        }
        break;
      }
    }
    m.lines.push_back(std::move(line));
  }
  return m;
}

/// An expected manifest file: its lines with the payload column split off tensor lines.
struct Expected {
  std::vector<std::string> lines;
  std::vector<std::string> payloads;  ///< one per tensor line, in order
};

inline Expected read_expected(const std::string& path) {
  Expected e;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.find("\ttensor\t") != std::string::npos) {
      const size_t tab = line.rfind('\t');
      e.payloads.push_back(line.substr(tab + 1));
      line.resize(tab);
    }
    e.lines.push_back(line);
  }
  return e;
}

}  // namespace load_manifest
