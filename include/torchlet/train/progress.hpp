#pragma once
/// \file ProgressBar: one epoch's progress on a terminal (a bar redrawn in place with loss, accuracy, images/s and
/// ETA) or, when the output is not a terminal, a few plain lines — so logs and CI output stay readable.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace torchlet::train {

/// Formats seconds as `m:ss` or `h:mm:ss`.
inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<int64_t>(seconds + 0.5);
  const int64_t h = total / 3600, m = (total / 60) % 60, s = total % 60;
  char buf[32];
  if (h > 0) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(h), static_cast<long long>(m),
                  static_cast<long long>(s));
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(m), static_cast<long long>(s));
  }
  return buf;
}

/// Progress of one pass over `total` samples: call update() after each batch and finish() at the end.
/// On a terminal the bar is redrawn in place (at most 10 times a second); otherwise about ten plain lines are
/// printed per pass.
class ProgressBar {
 public:
  /// A bar titled `title` (e.g. "epoch 3/10 train") over `total` samples, written to `out`.
  ProgressBar(std::string title, int64_t total, std::FILE* out = stdout)
      : title_(std::move(title)), total_(std::max<int64_t>(total, 1)), out_(out),
        tty_(isatty(fileno(out)) != 0), start_(Clock::now()), last_draw_(start_) {}

  /// Records `batch_size` more samples whose mean loss is `loss` and of which `correct` were classified right.
  void update(int64_t batch_size, double loss, int64_t correct) {
    seen_ += batch_size;
    loss_sum_ += loss * static_cast<double>(batch_size);
    correct_ += correct;
    const auto now = Clock::now();
    if (tty_) {
      if (now - last_draw_ >= std::chrono::milliseconds(100) || seen_ >= total_) draw(now, false);
    } else {
      const int64_t tenth = (seen_ * 10) / total_;
      if (tenth > printed_tenths_ && seen_ < total_) {
        printed_tenths_ = tenth;
        draw(now, false);
      }
    }
  }

  /// Prints the final line of the pass (with a newline) and returns the elapsed seconds.
  double finish() {
    const auto now = Clock::now();
    draw(now, true);
    return seconds_since_start(now);
  }

  double mean_loss() const { return seen_ ? loss_sum_ / static_cast<double>(seen_) : 0.0; }  ///< Mean loss so far.
  /// Accuracy so far, in percent.
  double accuracy() const { return seen_ ? 100.0 * static_cast<double>(correct_) / static_cast<double>(seen_) : 0.0; }
  int64_t seen() const { return seen_; }  ///< Samples recorded so far.
  /// Samples per second so far.
  double rate() const { return static_cast<double>(seen_) / std::max(seconds_since_start(Clock::now()), 1e-9); }

 private:
  using Clock = std::chrono::steady_clock;

  double seconds_since_start(Clock::time_point now) const {
    return std::chrono::duration<double>(now - start_).count();
  }

  void draw(Clock::time_point now, bool final_line) {
    last_draw_ = now;
    const double elapsed = seconds_since_start(now);
    const double per_second = static_cast<double>(seen_) / std::max(elapsed, 1e-9);
    const double eta = per_second > 0 ? static_cast<double>(total_ - seen_) / per_second : NAN;
    const double fraction = std::min(1.0, static_cast<double>(seen_) / static_cast<double>(total_));
    char stats[160];
    std::snprintf(stats, sizeof stats, "loss %.4f  acc %5.2f%%  %6.0f img/s  %s %s", mean_loss(), accuracy(),
                  per_second, final_line ? "took" : "ETA", format_duration(final_line ? elapsed : eta).c_str());
    if (tty_) {
      constexpr int kWidth = 24;
      const int filled = static_cast<int>(fraction * kWidth);
      std::string bar(static_cast<size_t>(filled), '#');
      bar.resize(kWidth, '.');
      std::fprintf(out_, "\r%s [%s] %3.0f%%  %s\033[K%s", title_.c_str(), bar.c_str(), fraction * 100.0, stats,
                   final_line ? "\n" : "");
    } else {
      std::fprintf(out_, "%s %3.0f%%  %s\n", title_.c_str(), fraction * 100.0, stats);
    }
    std::fflush(out_);
  }

  std::string title_;
  int64_t total_;
  std::FILE* out_;
  bool tty_;
  Clock::time_point start_, last_draw_;
  int64_t seen_ = 0, correct_ = 0, printed_tenths_ = 0;
  double loss_sum_ = 0.0;
};

}  // namespace torchlet::train
