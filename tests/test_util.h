// Shared test helpers: GPU skips, real-audio folder lookup, Python reference runner, and
// tolerance comparison that prints the first mismatches and the maximum error.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <unistd.h>
#include <sys/wait.h>
#include <filesystem>
#include <string>
#include <vector>

#include "genrelab/device.h"

namespace genrelab::test {

// True when a usable GPU is present; otherwise prints "SKIPPED: <reason>" (CTest marks the test
// skipped through SKIP_REGULAR_EXPRESSION) so the caller can `return`.
inline bool gpu_available_or_skip() {
  static const CudaStatus status = query_cuda();
  if (status.usable) return true;
  WARN("SKIPPED: no usable GPU (" << status.reason << ")");
  return false;
}
#define GENRELAB_REQUIRE_GPU() \
  do { if (!::genrelab::test::gpu_available_or_skip()) return; } while (0)

// The real-clip folder from GENRELAB_TEST_AUDIO: "" (and a SKIPPED message) when the variable is
// unset; a test failure when it is set but the folder is missing.
inline std::string test_audio_dir() {
  const char* dir = std::getenv("GENRELAB_TEST_AUDIO");
  if (!dir || !*dir) {
    WARN("SKIPPED: GENRELAB_TEST_AUDIO is not set (point it at ../shared/data/gtzan-mini)");
    return "";
  }
  if (!std::filesystem::is_directory(dir)) FAIL("GENRELAB_TEST_AUDIO=" << dir << " is not a folder");
  return dir;
}
#define GENRELAB_REQUIRE_TEST_AUDIO(var) \
  const std::string var = ::genrelab::test::test_audio_dir(); \
  if (var.empty()) return

// Path of the Python interpreter with the reference libraries (GENRELAB_PYTHON), or "".
inline std::string python() {
  const char* p = std::getenv("GENRELAB_PYTHON");
  return p && *p ? p : "";
}

// Runs a shell command, returns its exit code and stdout.
inline int run_command(const std::string& cmd, std::string* out = nullptr) {
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return -1;
  char buf[4096];
  std::string s;
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  const int rc = pclose(f);
  if (out) *out = s;
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// GENRELAB_PYTHON when it imports `modules` (e.g. "numpy, soundfile"); otherwise prints
// "SKIPPED: <reason>" (as gpu_available_or_skip) and returns "", so the caller can `return`.
inline std::string python_with_or_skip(const std::string& modules) {
  const std::string py = python();
  if (py.empty() || run_command("'" + py + "' -c 'import " + modules + "' 2>/dev/null") != 0) {
    WARN("SKIPPED: GENRELAB_PYTHON is not set or cannot import " << modules);
    return "";
  }
  return py;
}

// The genrelab binary built beside the tests.
inline std::string genrelab_binary() { return GENRELAB_BINARY; }
inline std::string source_dir() { return GENRELAB_SOURCE_DIR; }

// The temporary folders this process made (temp_dir), which tests/main.cpp removes after a run
// whose tests all passed (and keeps, naming them, after a failure).
inline std::vector<std::filesystem::path>& temp_dirs_made() {
  static std::vector<std::filesystem::path> dirs;
  return dirs;
}

// A fresh temporary folder for one test.
inline std::filesystem::path temp_dir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("genrelab-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  std::vector<std::filesystem::path>& made = temp_dirs_made();
  if (std::find(made.begin(), made.end(), p) == made.end()) made.push_back(p);
  return p;
}

// |got - want| <= atol + rtol * |want| elementwise; reports the first mismatches and the max error.
template <typename A, typename B>
void require_close(const A& got, const B& want, double atol, double rtol, const std::string& what = "") {
  REQUIRE(got.size() == want.size());
  double max_err = 0;
  size_t max_at = 0, bad = 0;
  std::string first;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]);
    const double err = std::fabs(g - w);
    if (!(err <= atol + rtol * std::fabs(w))) {
      if (bad < 5) first += "\n  [" + std::to_string(i) + "] got " + std::to_string(g) + " want " + std::to_string(w);
      ++bad;
    }
    if (err > max_err || std::isnan(err)) { max_err = err; max_at = i; }
  }
  INFO(what << ": " << bad << " of " << got.size() << " outside atol " << atol << " + rtol " << rtol
            << "; max error " << max_err << " at " << max_at << first);
  CHECK(bad == 0);
}

}  // namespace genrelab::test
