// Progress bar on stderr (see progress.h).
#include "genrelab/progress.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace genrelab {

namespace {
std::atomic<bool> g_enabled{true};

std::string format_seconds(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return buf;
}
}  // namespace

void Progress::set_enabled(bool enabled) { g_enabled = enabled; }

Progress::Progress(std::string label, int64_t total, std::string unit, bool terminal_only)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(::isatty(2) != 0), terminal_only_(terminal_only),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() { finish(); }

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::advance(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ += n;
  draw(false);
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void Progress::draw(bool final_line) {
  if (!g_enabled || (terminal_only_ && !tty_)) return;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? done_ / elapsed : 0;
  const double frac = total_ > 0 ? double(done_) / total_ : 1.0;
  if (!final_line) {
    if (tty_) {
      if (std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
    } else {
      const int decile = int(frac * 10);
      if (decile == last_decile_ || decile >= 10) return;
      last_decile_ = decile;
    }
  }
  last_draw_ = now;
  char line[256];
  const int width = 24, filled = int(frac * width + 0.5);
  std::string bar(size_t(filled), '#');
  bar.resize(width, '.');
  const double eta = rate > 0 && total_ > done_ ? (total_ - done_) / rate : 0;
  std::snprintf(line, sizeof line, "%-10s [%s] %lld/%lld %s  %.1f %s/s  %s %s", label_.c_str(), bar.c_str(),
                (long long)done_, (long long)total_, unit_.c_str(), rate, unit_.c_str(),
                final_line ? "in" : "ETA", format_seconds(final_line ? elapsed : eta).c_str());
  if (tty_) std::fprintf(stderr, "\r%s\033[K%s", line, final_line ? "\n" : "");
  else std::fprintf(stderr, "%s\n", line);
  std::fflush(stderr);
}

}  // namespace genrelab
