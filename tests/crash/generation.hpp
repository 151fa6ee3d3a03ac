#pragma once
// What the kill -9 trials save and check: generation g is a checkpoint whose every byte follows from g (an int, a
// string and a float tensor), and a small shared record (a memory-mapped file that outlives a killed writer)
// where the saver says which generation it is writing, which one it last committed, and which step of the
// atomic write it is at.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>

#include "torchlet/io/load.hpp"
#include "torchlet/io/save.hpp"
#include "torchlet/io/value.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace crash {
using namespace torchlet;

/// Elements of the tensor in a generation's checkpoint (2 MiB of float32: the archive takes several write(2)s).
inline constexpr int64_t kElements = int64_t{1} << 19;

/// The value element `i` of generation `gen` holds (exact in float32).
inline float element(int64_t gen, int64_t i) { return float((i * 7 + gen * 13) % 65536); }

/// The checkpoint of generation `gen`.
inline Value generation(int64_t gen) {
  Tensor w = empty({kElements}, kFloat32);
  float* p = w.data<float>();
  for (int64_t i = 0; i < kElements; ++i) p[i] = element(gen, i);
  return Value::dict({{"gen", gen}, {"note", "generation " + std::to_string(gen)}, {"weight", w}});
}

/// Checks that `v` is exactly a generation's checkpoint and returns that generation; "" in `why` when it is,
/// else what is wrong.
inline int64_t generation_of(const Value& v, std::string& why) {
  why.clear();
  if (!v.is_dict() || !v.at("gen").is_int()) {
    why = "not a generation checkpoint";
    return -1;
  }
  const int64_t gen = v.at("gen").as_int();
  if (v.at("note").as_string() != "generation " + std::to_string(gen)) why = "note does not match gen";
  const Tensor& w = v.at("weight").as_tensor();
  if (w.dtype() != kFloat32 || w.numel() != kElements) {
    why = "weight has the wrong dtype or size";
    return -1;
  }
  const float* p = w.contiguous().data<float>();
  for (int64_t i = 0; i < kElements; ++i) {
    if (p[i] != element(gen, i)) {
      why = "weight[" + std::to_string(i) + "] does not belong to generation " + std::to_string(gen);
      return -1;
    }
  }
  return gen;
}

/// Loads `path` with every CRC checked and returns its generation, or -1 with the reason in `why`.
inline int64_t load_generation(const std::string& path, std::string& why) {
  try {
    LoadFileOptions o;
    o.verify_crc = true;
    return generation_of(load(path, o), why);
  } catch (const Error& e) {
    why = e.what();
    return -1;
  }
}

/// Where a saver is: outside a save, at a step of the atomic write (hook called for it), or past commit().
enum Where : int32_t {
  kIdle = 0,          ///< between saves (before the first one, or after recording a commit)
  kStepBase = 1,      ///< kStepBase + FileStep: the fault hook was called for that step
  kCommitted = 20,    ///< save() returned, the commit is not recorded yet
  kManagerSave = 21,  ///< inside CheckpointManager::save (the manager has no fault hook)
};

/// The record a saver keeps in `DIR/progress` (shared memory: it survives the saver's SIGKILL).
struct Progress {
  std::atomic<int64_t> committed;   ///< the last generation save() returned for (-1: none)
  std::atomic<int64_t> attempting;  ///< the generation being saved
  std::atomic<int32_t> where;       ///< a Where value
  std::atomic<int32_t> index;       ///< the step's index (write(2) number)
  std::atomic<int64_t> saves;       ///< saves completed by this saver
  std::atomic<int64_t> ready;       ///< the token the driver gave the saver, once it starts saving
};

/// Maps `path` (created zeroed when missing) as a shared Progress record.
inline Progress* map_progress(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return nullptr;
  if (::ftruncate(fd, sizeof(Progress)) != 0) {
    ::close(fd);
    return nullptr;
  }
  void* p = ::mmap(nullptr, sizeof(Progress), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  return p == MAP_FAILED ? nullptr : static_cast<Progress*>(p);
}

/// The name of a Where value with its index, for the trial statistics.
inline std::string where_name(int32_t where, int32_t index) {
  if (where == kIdle) return "between saves";
  if (where == kCommitted) return "after commit";
  if (where == kManagerSave) return "in the manager";
  const auto step = static_cast<io::FileStep>(where - kStepBase);
  std::string s = io::file_step_name(step);
  if (step == io::FileStep::Write) s += " " + std::to_string(index);
  return s;
}

}  // namespace crash
