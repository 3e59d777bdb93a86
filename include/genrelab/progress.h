// A progress bar for long steps, on stderr: rate and ETA, redrawn in place on a terminal; on a
// pipe or log file it prints at most one line per 10 % so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace genrelab {

class Progress {
 public:
  // `terminal_only`: draw nothing unless stderr is a terminal (for many short repeated bars,
  // such as the steps of each epoch, whose summary line is printed anyway).
  Progress(std::string label, int64_t total, std::string unit, bool terminal_only = false);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(int64_t n = 1);  // thread-safe
  void finish();                // prints the final line (idempotent)
  double seconds() const;

  // Progress output can be silenced globally (tests, --quiet).
  static void set_enabled(bool enabled);

 private:
  void draw(bool final_line);
  std::string label_, unit_;
  int64_t total_, done_ = 0;
  int last_decile_ = -1;
  bool tty_, terminal_only_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mu_;
};

}  // namespace genrelab
