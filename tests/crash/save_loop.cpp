// The process the kill -9 trials kill (driven by kill_trials.cpp): it saves generation after generation of a
// known checkpoint (generation.hpp) and records in DIR/progress what it is doing, so that after a SIGKILL the
// driver knows which generations the target may hold.
//
//   save_loop loop DIR TOKEN      save DIR/target.pth with generations committed+1, committed+2, ... until killed
//   save_loop once DIR STEP INDEX save generation committed+1 once, raising SIGKILL in the fault hook when the
//                                 atomic write reaches STEP (create|write|fsync|close|rename|dirsync) number INDEX;
//                                 exits 3 when the save finishes without reaching it
//   save_loop manager DIR TOKEN   CheckpointManager(DIR/run, keep_last 2).save(generation e, epoch e) for
//                                 e = committed+1, ... until killed
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "generation.hpp"
#include "torchlet/train/checkpoint_manager.hpp"

namespace {
using namespace crash;

int usage() {
  std::fprintf(stderr, "usage: save_loop loop|manager DIR TOKEN | save_loop once DIR STEP INDEX\n");
  return 2;
}

bool parse_step(const std::string& s, io::FileStep& step) {
  const std::pair<const char*, io::FileStep> names[] = {
      {"create", io::FileStep::Create}, {"write", io::FileStep::Write},   {"fsync", io::FileStep::Sync},
      {"close", io::FileStep::Close},   {"rename", io::FileStep::Rename}, {"dirsync", io::FileStep::SyncDir}};
  for (const auto& [n, st] : names) {
    if (s == n) {
      step = st;
      return true;
    }
  }
  return false;
}

/// A fault hook that records each step in `p` and, when `kill_step` is set, kills the process at that step.
io::FaultHook recording_hook(Progress* p, int kill_step = -1, uint64_t kill_index = 0) {
  return [=](io::FileStep s, uint64_t i) {
    p->index.store(int32_t(i));
    p->where.store(kStepBase + int32_t(s));
    if (int(s) == kill_step && i == kill_index) ::raise(SIGKILL);
    return 0;
  };
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage();
  const std::string mode = argv[1], dir = argv[2];
  Progress* p = map_progress(dir + "/progress");
  if (!p) {
    std::perror("save_loop: progress");
    return 2;
  }
  try {
    if (mode == "loop") {
      SaveOptions o;
      o.fault = recording_hook(p);
      p->ready.store(std::atoll(argv[3]));
      for (int64_t gen = p->committed.load() + 1;; ++gen) {
        const Value v = generation(gen);
        p->attempting.store(gen);
        p->where.store(kIdle);
        save(dir + "/target.pth", v, o);
        p->where.store(kCommitted);
        p->committed.store(gen);
        p->saves.fetch_add(1);
        p->where.store(kIdle);
      }
    }
    if (mode == "once") {
      io::FileStep step{};
      if (argc != 5 || !parse_step(argv[3], step)) return usage();
      SaveOptions o;
      o.fault = recording_hook(p, int(step), std::strtoull(argv[4], nullptr, 10));
      const int64_t gen = p->committed.load() + 1;
      p->attempting.store(gen);
      save(dir + "/target.pth", generation(gen), o);
      p->committed.store(gen);
      std::fprintf(stderr, "save_loop: the save finished without reaching %s %s\n", argv[3], argv[4]);
      return 3;
    }
    if (mode == "manager") {
      train::CheckpointManager manager(dir + "/run", 2);
      p->ready.store(std::atoll(argv[3]));
      for (int64_t epoch = p->committed.load() + 1;; ++epoch) {
        const Value v = generation(epoch);
        p->attempting.store(epoch);
        p->where.store(kManagerSave);
        manager.save(v, epoch, epoch % 3 == 0);
        p->where.store(kCommitted);
        p->committed.store(epoch);
        p->saves.fetch_add(1);
        p->where.store(kIdle);
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "save_loop: %s\n", e.what());
    return 1;
  }
  return usage();
}
