// libFuzzer target: the experiment-config loader. The input is "<json>\n--set a=b\n--set c=d...":
// the JSON goes to a temporary experiment file for Config::load, the --set lines become overrides
// (apply_override). ConfigError is the expected outcome; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_temp.h"
#include "genrelab/common.h"
#include "genrelab/config.h"

namespace {

const std::string& temp_file() {
  static const std::string path = genrelab::fuzz::fuzz_temp("config", false);
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string doc = input;
  std::vector<std::string> overrides;
  const std::string marker = "\n--set ";
  size_t pos = input.find(marker);
  if (pos != std::string::npos) {
    doc = input.substr(0, pos);
    while (pos != std::string::npos) {
      const size_t start = pos + marker.size();
      const size_t next = input.find(marker, start);
      overrides.push_back(input.substr(start, next == std::string::npos ? std::string::npos : next - start));
      pos = next;
    }
  }
  {
    std::ofstream out(temp_file(), std::ios::binary | std::ios::trunc);
    out.write(doc.data(), std::streamsize(doc.size()));
  }
  try {
    genrelab::Config config = genrelab::Config::load(temp_file(), overrides);
    // Exercise the typed getters and path resolution on what loaded.
    (void)config.resolved_for_saving();
  } catch (const genrelab::ConfigError&) {
  }
  try {
    // Overrides alone on the schema defaults (apply_override one by one).
    genrelab::Config defaults;
    for (const auto& o : overrides) defaults.apply_override(o);
  } catch (const genrelab::ConfigError&) {
  }
  return 0;
}
