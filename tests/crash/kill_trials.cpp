// kill -9 trials of the atomic save (issue 8): a saver process (save_loop.cpp) is SIGKILLed, and after each kill
// the target must load with every CRC verified as exactly the old or the new generation, never a partial file,
// and a stale temporary file left by the kill must be gone after the next save. Three kinds of trials:
//
//   random   `save_loop loop` killed after a random delay (0 to 2 save durations): lands wherever it lands,
//            in proportion to the time each part takes (building the value, pickling, write(2), fsync, ...);
//            where it landed is read from the saver's progress record
//   hooked   `save_loop once` killing itself from the fault hook at each step: before the first write, between
//            writes, between write and fsync, between fsync and close/rename, between rename and the
//            directory fsync (the windows a random kill seldom hits)
//   manager  `save_loop manager` (CheckpointManager, keep_last 2) killed at random: resume(last.pth) must give
//            the old or the new epoch with nothing skipped, and every epoch file, last.pth and model_best.pth
//            under its real name must be complete
//
// Usage: kill_trials SAVE_LOOP [--random N] [--hooked N] [--manager N] [--seed S] [--keep]
// Exit status 0 when every trial passed; the statistics say where the kills landed.
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "generation.hpp"
#include "torchlet/train/checkpoint_manager.hpp"

namespace {
using namespace crash;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string g_save_loop;
std::vector<std::string> g_failures;

void fail(const std::string& trial, const std::string& what) {
  g_failures.push_back(trial + ": " + what);
  if (g_failures.size() <= 20) std::fprintf(stderr, "FAIL %s: %s\n", trial.c_str(), what.c_str());
}

/// Starts `save_loop ARGS...` and returns its pid.
pid_t spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  std::string exe = g_save_loop;
  argv.push_back(exe.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execv(exe.c_str(), argv.data());
    std::perror("kill_trials: execv");
    ::_exit(127);
  }
  return pid;
}

/// Waits for `pid` and returns its wait status.
int reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

/// Waits until the saver stored `token` in p->ready (it is about to save); false after 20 s or when it died.
bool wait_ready(Progress* p, int64_t token, pid_t pid) {
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (p->ready.load() != token) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return false;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

/// Resets the progress record to generation `on_disk`, starts the saver in `mode` with start token `token` and
/// waits until it runs; -1 (and a recorded failure) when it did not start.
pid_t start_saver(Progress* p, int64_t on_disk, const std::string& mode, const std::string& dir, int64_t token,
                  const std::string& trial) {
  p->committed.store(on_disk);
  p->attempting.store(on_disk);
  p->where.store(kIdle);
  p->saves.store(0);
  p->ready.store(0);
  const pid_t pid = spawn({mode, dir, std::to_string(token)});
  if (wait_ready(p, token, pid)) return pid;
  ::kill(pid, SIGKILL);
  reap(pid);
  fail(trial, "the saver did not start");
  return -1;
}

/// The temporary files of `target` in its directory.
std::set<std::string> temporaries(const std::string& dir, const std::string& target) {
  std::set<std::string> out;
  const std::string prefix = "." + target + ".tmp-";
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0) out.insert(n);
  }
  return out;
}

/// Mean duration of one save by `save_loop MODE` over its first three saves (at most 3 s), capped at
/// `cap_us` so that a slow disk cannot stretch the trials beyond their time budget.
double measure_save_us(const std::string& mode, const std::string& dir, Progress* p, double cap_us) {
  p->saves.store(0);
  p->ready.store(0);
  const pid_t pid = spawn({mode, dir, "999999"});
  if (!wait_ready(p, 999999, pid)) {
    ::kill(pid, SIGKILL);
    reap(pid);
    return cap_us;
  }
  const auto t0 = Clock::now();
  while (p->saves.load() < 3 && Clock::now() - t0 < std::chrono::seconds(3))
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  const int64_t n = p->saves.load();
  const double us = double(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
  ::kill(pid, SIGKILL);
  reap(pid);
  return std::min(n > 0 ? us / double(n) : us, cap_us);
}

/// Kills `pid` after `delay_us`; returns false (and records a failure) when it had already exited.
bool kill_after(pid_t pid, int64_t delay_us, const std::string& trial) {
  std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
  ::kill(pid, SIGKILL);
  const int status = reap(pid);
  if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
    fail(trial, "the saver exited by itself (status " + std::to_string(status) + ") instead of being killed");
    return false;
  }
  return true;
}

struct Stats {
  std::map<std::string, int> where;  // where the kill landed -> count
  int old_kept = 0, new_found = 0, stale_left = 0, stale_removed = 0;
};

/// Random kills of `save_loop loop`; returns the statistics.
Stats random_trials(const std::string& dir, int trials, std::mt19937_64& rng) {
  Stats st;
  const std::string target = dir + "/target.pth";
  Progress* p = map_progress(dir + "/progress");
  save(target, generation(0));
  p->committed.store(0);
  const double save_us = measure_save_us("loop", dir, p, 40000);
  std::printf("random: one save of %.1f MiB takes %.0f us (capped at 40 ms)\n", double(kElements * 4) / (1 << 20),
              save_us);
  std::string why;
  int64_t on_disk = load_generation(target, why);
  if (on_disk < 0) fail("random calibration", "target unreadable: " + why);
  std::set<std::string> stale = temporaries(dir, "target.pth");  // left by earlier kills, not yet removed
  st.stale_left += int(stale.size());
  std::uniform_int_distribution<int64_t> delay(0, int64_t(save_us * 2.0) + 1);
  for (int t = 0; t < trials; ++t) {
    const std::string name = "random " + std::to_string(t);
    const pid_t pid = start_saver(p, on_disk, "loop", dir, t + 1, name);
    if (pid < 0) continue;
    if (!kill_after(pid, delay(rng), name)) continue;
    const int64_t c = p->committed.load(), a = p->attempting.load();
    const int32_t where = p->where.load(), index = p->index.load();
    const std::string landed = where_name(where, index);
    st.where[landed]++;
    const int64_t got = load_generation(target, why);
    if (got < 0) {
      fail(name, "killed at " + landed + ": the target is not a complete checkpoint: " + why);
      continue;
    }
    // What the target may hold, from where the saver was.
    std::vector<int64_t> allowed;
    if (where == kStepBase + int(io::FileStep::Rename)) allowed = {c, a};  // just before or just after rename(2)
    else if (where == kStepBase + int(io::FileStep::SyncDir) || where == kCommitted) allowed = {a};
    else allowed = {c};  // between saves, or before the rename
    if (std::find(allowed.begin(), allowed.end(), got) == allowed.end()) {
      fail(name, "killed at " + landed + " (committed " + std::to_string(c) + ", writing " + std::to_string(a) +
                     "): the target holds generation " + std::to_string(got));
    }
    (got == c ? st.old_kept : st.new_found)++;
    // Stale temporaries of earlier kills must be gone once this saver committed a save.
    const std::set<std::string> now = temporaries(dir, "target.pth");
    if (p->saves.load() > 0) {
      for (const auto& s : stale) {
        if (now.count(s)) fail(name, "stale temporary " + s + " survived a completed save");
        else st.stale_removed++;
      }
      stale.clear();
    }
    for (const auto& n : now) {
      if (!stale.count(n)) st.stale_left++;
      stale.insert(n);
    }
    on_disk = got;
  }
  // One last save removes whatever the kills left.
  save(target, generation(on_disk + 1));
  if (!temporaries(dir, "target.pth").empty()) fail("random cleanup", "a save left stale temporaries behind");
  else st.stale_removed += int(stale.size());
  if (load_generation(target, why) != on_disk + 1) fail("random cleanup", "the final save did not land: " + why);
  ::munmap(p, sizeof(Progress));
  return st;
}

/// Kills from the fault hook at each step of the atomic write, `rounds` times each.
Stats hooked_trials(const std::string& dir, int rounds) {
  Stats st;
  const std::string target = dir + "/target.pth";
  Progress* p = map_progress(dir + "/progress");
  save(target, generation(100));
  int64_t on_disk = 100;
  struct Point {
    const char* step;
    const char* index;
    bool lands;  // the new generation is under the target's name after the kill
    bool leaves_temp;
  };
  const Point points[] = {
      {"create", "0", false, false},  // before the temporary file exists
      {"write", "0", false, true},    // before the first write(2)
      {"write", "1", false, true},    // between write(2)s: a partial temporary file
      {"write", "2", false, true},    // before the last write(2)
      {"fsync", "0", false, true},    // between the last write and fsync
      {"close", "0", false, true},    // after fsync
      {"rename", "0", false, true},   // between fsync and rename
      {"dirsync", "0", true, false},  // between rename and the directory fsync
  };
  std::string why;
  for (int r = 0; r < rounds; ++r) {
    for (const Point& pt : points) {
      const std::string name = std::string("hooked ") + pt.step + " " + pt.index + " round " + std::to_string(r);
      p->committed.store(on_disk);
      const pid_t pid = spawn({"once", dir, pt.step, pt.index});
      const int status = reap(pid);
      if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
        fail(name, "the saver was not killed at that step (wait status " + std::to_string(status) + ")");
        continue;
      }
      st.where[std::string(pt.step) + " " + pt.index]++;
      const int64_t want = pt.lands ? on_disk + 1 : on_disk;
      const int64_t got = load_generation(target, why);
      if (got != want) {
        fail(name, "the target holds generation " + std::to_string(got) + " (" + why + "), expected " +
                       std::to_string(want));
        continue;
      }
      (pt.lands ? st.new_found : st.old_kept)++;
      const std::set<std::string> left = temporaries(dir, "target.pth");
      if (left.size() != (pt.leaves_temp ? 1u : 0u)) {
        fail(name, std::to_string(left.size()) + " temporary files after the kill");
      }
      st.stale_left += int(left.size());
      // The next save removes the stale temporary file.
      save(target, generation(got + 1));
      if (!temporaries(dir, "target.pth").empty()) fail(name, "the next save left the stale temporary file");
      else st.stale_removed += int(left.size());
      on_disk = load_generation(target, why);
      if (on_disk != got + 1) fail(name, "the next save did not land: " + why);
    }
  }
  ::munmap(p, sizeof(Progress));
  return st;
}

/// The epoch files listed in a manager folder's manifest.
std::vector<std::string> manifest_of(const std::string& run) {
  std::vector<std::string> out;
  std::ifstream in(run + "/.torchlet-checkpoints");
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

/// Random kills of `save_loop manager`.
Stats manager_trials(const std::string& dir, int trials, std::mt19937_64& rng) {
  Stats st;
  const std::string run = dir + "/run";
  Progress* p = map_progress(dir + "/progress");
  p->committed.store(0);
  const double save_us = measure_save_us("manager", dir, p, 120000);
  std::printf("manager: one CheckpointManager::save takes %.0f us (capped at 120 ms)\n", save_us);
  std::uniform_int_distribution<int64_t> delay(0, int64_t(save_us * 2.0) + 1);
  std::string why;
  int64_t on_disk = p->committed.load();
  size_t listed_before = manifest_of(run).size();
  for (int t = 0; t < trials; ++t) {
    const std::string name = "manager " + std::to_string(t);
    const pid_t pid = start_saver(p, on_disk, "manager", dir, t + 1, name);
    if (pid < 0) continue;
    if (!kill_after(pid, delay(rng), name)) continue;
    const int64_t c = p->committed.load(), a = p->attempting.load();
    st.where[where_name(p->where.load(), 0)]++;
    // last.pth: the old or the new epoch, read without skipping anything (absent only before the first save).
    if (!fs::exists(run + "/last.pth")) {
      if (c > 0) fail(name, "last.pth is missing after epoch " + std::to_string(c) + " was saved");
      st.old_kept++;
    } else {
      try {
        const train::ResumedCheckpoint r = train::CheckpointManager::resume(run + "/last.pth");
        const int64_t got = generation_of(r.checkpoint, why);
        if (!r.skipped.empty()) fail(name, "resume skipped " + r.skipped.front());
        if (r.path != run + "/last.pth") fail(name, "resume read " + r.path + " instead of last.pth");
        if (got != c && got != a) {
          fail(name, "last.pth holds epoch " + std::to_string(got) + " (" + why + "), expected " +
                         std::to_string(c) + " or " + std::to_string(a));
        }
        (got == c ? st.old_kept : st.new_found)++;
        on_disk = std::max<int64_t>(got, 0);
      } catch (const Error& e) {
        fail(name, std::string("resume failed: ") + e.what());
      }
    }
    // Every file under a real name is complete; the manifest lists at most keep_last + 1 epochs, all present.
    // A save prunes at its end, so a kill before that leaves one epoch more than keep_last, and a run of kills
    // that each land in a saver's first save let the excess grow by one each; one completed save trims it again.
    const auto listed = manifest_of(run);
    const size_t limit = p->saves.load() > 0 ? 3 : listed_before + 1;
    if (listed.size() > limit) {
      fail(name, std::to_string(listed.size()) + " epochs in the manifest, at most " + std::to_string(limit) +
                     " expected (keep_last is 2)");
    }
    listed_before = listed.size();
    for (const auto& e : fs::directory_iterator(run)) {
      const std::string n = e.path().filename().string();
      if (n.empty() || n[0] == '.') continue;
      const int64_t g = load_generation(e.path().string(), why);
      if (g < 0) fail(name, n + " is not a complete checkpoint: " + why);
      else if (n == "model_best.pth" && g % 3 != 0) fail(name, "model_best.pth holds epoch " + std::to_string(g));
      else if (n.rfind("epoch_", 0) == 0 && n != train::CheckpointManager::epoch_file(g))
        fail(name, n + " holds epoch " + std::to_string(g));
    }
    for (const auto& n : listed) {
      if (!fs::exists(run + "/" + n)) fail(name, "the manifest lists " + n + ", which does not exist");
    }
  }
  // One complete save (a best one: it writes every kind of file) removes the temporaries the kills left of the
  // files it writes; only one of an epoch file that is never saved again may stay (reported, not a failure).
  {
    train::CheckpointManager m(run, 2);
    m.save(generation(on_disk + 1), on_disk + 1, true);
    for (const auto& e : fs::directory_iterator(run)) {
      const std::string n = e.path().filename().string();
      if (n.find(".tmp-") == std::string::npos) continue;
      st.stale_left++;
      if (n.rfind(".epoch_", 0) == 0 && n.rfind("." + train::CheckpointManager::epoch_file(on_disk + 1), 0) != 0) {
        std::printf("manager: %s stays: a killed save of an epoch that is never saved again leaves it\n", n.c_str());
      } else {
        fail("manager cleanup", n + " survived a complete save of its file");
      }
    }
  }
  ::munmap(p, sizeof(Progress));
  return st;
}

void print(const char* kind, const Stats& st, double secs) {
  std::printf("%s (%.1f s): target kept the old generation %d times, held the new one %d times; %d stale "
              "temporary files left by kills, %d removed by a later save\n  kills landed at:",
              kind, secs, st.old_kept, st.new_found, st.stale_left, st.stale_removed);
  for (const auto& [w, n] : st.where) std::printf(" %s %d,", w.c_str(), n);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: kill_trials SAVE_LOOP [--random N] [--hooked N] [--manager N] [--seed S] [--keep]\n");
    return 2;
  }
  g_save_loop = argv[1];
  int random = 200, hooked = 3, manager = 30;
  uint64_t seed = uint64_t(Clock::now().time_since_epoch().count());
  bool keep = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--keep") keep = true;
    else if (i + 1 < argc && a == "--random") random = std::atoi(argv[++i]);
    else if (i + 1 < argc && a == "--hooked") hooked = std::atoi(argv[++i]);
    else if (i + 1 < argc && a == "--manager") manager = std::atoi(argv[++i]);
    else if (i + 1 < argc && a == "--seed") seed = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr, "kill_trials: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  std::printf("kill_trials: seed %llu (rerun with --seed to repeat the delays)\n", (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/torchlet_kill_XXXXXX";
  if (!::mkdtemp(tmpl.data())) {
    std::perror("kill_trials: mkdtemp");
    return 2;
  }
  const std::string root = tmpl;
  const auto t0 = Clock::now();
  try {
    fs::create_directories(root + "/random");
    fs::create_directories(root + "/hooked");
    fs::create_directories(root + "/manager");
    auto timed = [](const char* kind, auto&& run) {
      const auto start = Clock::now();
      const Stats st = run();
      print(kind, st, std::chrono::duration<double>(Clock::now() - start).count());
    };
    if (random > 0) timed("random", [&] { return random_trials(root + "/random", random, rng); });
    if (hooked > 0) timed("hooked", [&] { return hooked_trials(root + "/hooked", hooked); });
    if (manager > 0) timed("manager", [&] { return manager_trials(root + "/manager", manager, rng); });
  } catch (const std::exception& e) {
    fail("driver", e.what());
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  const int total = random + hooked * 8 + manager;
  std::printf("kill_trials: %d trials in %.1f s, %zu failures\n", total, secs, g_failures.size());
  if (keep || !g_failures.empty()) std::printf("kill_trials: files kept in %s\n", root.c_str());
  else fs::remove_all(root);
  return g_failures.empty() ? 0 : 1;
}
