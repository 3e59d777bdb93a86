// The libFuzzer targets' scratch space: a temporary file or folder made once per process under
// /tmp/genrelab-fuzz-NAME-XXXXXX and removed when the fuzzer's runs end (exit).
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace genrelab::fuzz {

// What fuzz_temp made (never destroyed: the exit handler reads it after static destructors).
inline std::vector<std::string>& fuzz_temps() {
  static auto* made = new std::vector<std::string>;
  return *made;
}

// A new empty file (folder = false) or folder; empty where it cannot be made.
inline std::string fuzz_temp(const std::string& name, bool folder) {
  std::string tmpl = "/tmp/genrelab-fuzz-" + name + "-XXXXXX";
  if (folder) {
    if (!mkdtemp(tmpl.data())) return {};
  } else {
    const int fd = mkstemp(tmpl.data());
    if (fd < 0) return {};
    close(fd);
  }
  if (fuzz_temps().empty())
    std::atexit([] {
      for (const std::string& p : fuzz_temps()) {
        std::error_code ec;
        std::filesystem::remove_all(p, ec);
      }
    });
  fuzz_temps().push_back(tmpl);
  return tmpl;
}

}  // namespace genrelab::fuzz
