#pragma once
/// \file MetricsLog: per-epoch training metrics kept as `metrics.csv` and drawn as `metrics.svg` (loss and
/// accuracy per epoch, train and test, in two panels) that any browser opens. A resumed run reads the CSV back
/// and continues it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "torchlet/core/error.hpp"
#include "torchlet/io/atomic_file.hpp"

namespace torchlet::train {

/// One epoch's numbers.
struct EpochMetrics {
  int64_t epoch = 0;         ///< 1-based epoch number over the whole run
  std::string stage;         ///< which part of the run ("source", "head", "finetune", ...)
  double train_loss = NAN;   ///< mean training loss
  double train_acc = NAN;    ///< training accuracy in percent
  double test_loss = NAN;    ///< mean test loss
  double test_acc = NAN;     ///< test accuracy in percent
  double lr = NAN;           ///< learning rate of the first param group
  double seconds = NAN;      ///< wall time of the epoch (train + eval)
  double images_per_s = NAN;  ///< training throughput
};

/// The metrics of a run, written as CSV and SVG after every epoch.
class MetricsLog {
 public:
  /// The CSV header line.
  static constexpr const char* kHeader = "epoch,stage,train_loss,train_acc,test_loss,test_acc,lr,seconds,images_per_s";

  MetricsLog() = default;

  /// Reads `csv_path` (written by write()) keeping the epochs up to `last_epoch` — what a resumed run continues.
  /// A missing file gives an empty log; a malformed line raises IOError naming the file and line.
  static MetricsLog read(const std::string& csv_path, int64_t last_epoch) {
    MetricsLog log;
    std::ifstream in(csv_path);
    if (!in) return log;
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line_no == 1 || line.empty()) continue;
      std::vector<std::string> f;
      std::stringstream ss(line);
      for (std::string cell; std::getline(ss, cell, ',');) f.push_back(cell);
      TORCHLET_CHECK(f.size() == 9, IOError, "[metrics] ", csv_path, " line ", line_no, ": expected 9 fields, got ",
                     f.size());
      EpochMetrics m;
      try {
        m.epoch = std::stoll(f[0]);
        m.stage = f[1];
        double* numbers[] = {&m.train_loss, &m.train_acc, &m.test_loss, &m.test_acc, &m.lr, &m.seconds,
                             &m.images_per_s};
        for (int i = 0; i < 7; ++i) *numbers[i] = f[2 + i].empty() ? NAN : std::stod(f[2 + i]);
      } catch (const std::exception&) {
        TORCHLET_THROW(IOError, "[metrics] ", csv_path, " line ", line_no, ": not a number in '", line, "'");
      }
      if (m.epoch <= last_epoch) log.rows_.push_back(m);
    }
    return log;
  }

  /// Appends an epoch.
  void add(const EpochMetrics& m) { rows_.push_back(m); }
  /// All epochs in order.
  const std::vector<EpochMetrics>& rows() const { return rows_; }

  /// The CSV text.
  std::string csv() const {
    std::string out = std::string(kHeader) + "\n";
    for (const auto& m : rows_) {
      out += std::to_string(m.epoch) + "," + m.stage;
      for (double v : {m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.lr, m.seconds, m.images_per_s}) {
        out += ",";
        if (std::isfinite(v)) out += number(v);
      }
      out += "\n";
    }
    return out;
  }

  /// A self-contained SVG: loss (top) and accuracy (bottom) per epoch, train solid and test dashed, stages
  /// separated by vertical lines.
  std::string svg() const {
    constexpr double W = 720, H = 520, left = 60, right = 20, top = 30, panel = 200, gap = 60;
    std::ostringstream o;
    o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    const int64_t first = rows_.empty() ? 1 : rows_.front().epoch;
    const int64_t last = rows_.empty() ? 1 : std::max(rows_.back().epoch, first + 1);
    auto x_of = [&](int64_t e) {
      return left + (W - left - right) * static_cast<double>(e - first) / static_cast<double>(last - first);
    };
    struct Series { double EpochMetrics::*field; const char* name; const char* color; bool dashed; };
    auto draw_panel = [&](double y0, const char* title, Series a, Series b, bool percent) {
      double lo = INFINITY, hi = -INFINITY;
      for (const auto& m : rows_) {
        for (double v : {m.*a.field, m.*b.field}) {
          if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
        }
      }
      if (!std::isfinite(lo)) lo = 0, hi = 1;
      if (percent) lo = std::max(0.0, std::floor(lo / 10) * 10), hi = std::min(100.0, std::ceil(hi / 10) * 10);
      if (hi - lo < 1e-9) hi = lo + 1;
      auto y_of = [&](double v) { return y0 + panel - panel * (v - lo) / (hi - lo); };
      o << "<text x=\"" << left << "\" y=\"" << y0 - 10 << "\" font-weight=\"bold\">" << title << "</text>\n";
      o << "<rect x=\"" << left << "\" y=\"" << y0 << "\" width=\"" << W - left - right << "\" height=\"" << panel
        << "\" fill=\"none\" stroke=\"#888\"/>\n";
      for (int t = 0; t <= 4; ++t) {
        const double v = lo + (hi - lo) * t / 4.0, y = y_of(v);
        o << "<line x1=\"" << left << "\" x2=\"" << W - right << "\" y1=\"" << y << "\" y2=\"" << y
          << "\" stroke=\"#eee\"/><text x=\"" << left - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">"
          << number(v, 3) << "</text>\n";
      }
      for (const Series& s : {a, b}) {
        std::string points;
        for (const auto& m : rows_) {
          const double v = m.*s.field;
          if (std::isfinite(v)) points += number(x_of(m.epoch)) + "," + number(y_of(v)) + " ";
        }
        if (points.empty()) continue;
        o << "<polyline fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"2\""
          << (s.dashed ? " stroke-dasharray=\"6,4\"" : "") << " points=\"" << points << "\"/>\n";
        for (const auto& m : rows_) {
          const double v = m.*s.field;
          if (std::isfinite(v)) {
            o << "<circle cx=\"" << number(x_of(m.epoch)) << "\" cy=\"" << number(y_of(v)) << "\" r=\"3\" fill=\""
              << s.color << "\"><title>epoch " << m.epoch << " " << s.name << " " << number(v) << "</title></circle>\n";
          }
        }
      }
      const double ly = y0 + 14;
      double lx = W - right - 220;
      for (const Series& s : {a, b}) {
        o << "<line x1=\"" << lx << "\" x2=\"" << lx + 24 << "\" y1=\"" << ly << "\" y2=\"" << ly << "\" stroke=\""
          << s.color << "\" stroke-width=\"2\"" << (s.dashed ? " stroke-dasharray=\"6,4\"" : "") << "/><text x=\""
          << lx + 30 << "\" y=\"" << ly + 4 << "\">" << s.name << "</text>\n";
        lx += 110;
      }
      for (size_t i = 1; i < rows_.size(); ++i) {
        if (rows_[i].stage == rows_[i - 1].stage) continue;
        const double x = (x_of(rows_[i].epoch) + x_of(rows_[i - 1].epoch)) / 2;
        o << "<line x1=\"" << x << "\" x2=\"" << x << "\" y1=\"" << y0 << "\" y2=\"" << y0 + panel
          << "\" stroke=\"#999\" stroke-dasharray=\"2,3\"/><text x=\"" << x + 4 << "\" y=\"" << y0 + panel - 6
          << "\" fill=\"#666\">" << rows_[i].stage << "</text>\n";
      }
    };
    draw_panel(top, "loss", {&EpochMetrics::train_loss, "train loss", "#1f77b4", false},
               {&EpochMetrics::test_loss, "test loss", "#ff7f0e", true}, false);
    draw_panel(top + panel + gap, "accuracy (%)", {&EpochMetrics::train_acc, "train acc", "#1f77b4", false},
               {&EpochMetrics::test_acc, "test acc", "#ff7f0e", true}, true);
    const double axis_y = top + 2 * panel + gap + 18;
    for (const auto& m : rows_) {
      o << "<text x=\"" << number(x_of(m.epoch)) << "\" y=\"" << axis_y << "\" text-anchor=\"middle\">" << m.epoch
        << "</text>\n";
    }
    o << "<text x=\"" << (W + left) / 2 << "\" y=\"" << axis_y + 18 << "\" text-anchor=\"middle\">epoch</text>\n";
    o << "</svg>\n";
    return o.str();
  }

  /// Writes `dir/metrics.csv` and `dir/metrics.svg` (each replaced atomically; not fsynced: they are rewritten
  /// every epoch and can be rebuilt from the checkpoints' epochs).
  void write(const std::string& dir) const {
    write_text(dir + "/metrics.csv", csv());
    write_text(dir + "/metrics.svg", svg());
  }

 private:
  static std::string number(double v, int digits = 6) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    return buf;
  }
  static void write_text(const std::string& path, const std::string& text) {
    io::write_file_atomic(path, {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, {.durable = false});
  }

  std::vector<EpochMetrics> rows_;
};

}  // namespace torchlet::train
