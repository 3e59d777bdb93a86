// libFuzzer target: the manifest split-list parser (make_split with kind "manifest") over a fixed
// list of twelve clips in three classes; the input is the train list file, fixed valid/test lists
// name a few clips. ConfigError/RuntimeError are expected outcomes; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_temp.h"
#include "genrelab/common.h"
#include "genrelab/split.h"

namespace {

struct Fixture {
  std::string dir, train, valid, test;
  std::vector<genrelab::Clip> clips;
  std::vector<genrelab::SkippedFile> skipped;
};

void write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture f;
    f.dir = genrelab::fuzz::fuzz_temp("manifest", true);
    if (f.dir.empty()) f.dir = "/tmp";
    f.train = f.dir + "/train.txt";
    f.valid = f.dir + "/valid.txt";
    f.test = f.dir + "/test.txt";
    const char* classes[3] = {"blues", "jazz", "rock"};
    for (int c = 0; c < 3; ++c) {
      for (int i = 0; i < 4; ++i) {
        const std::string file = std::string(classes[c]) + ".0000" + std::to_string(i) + (i % 2 ? ".flac" : ".wav");
        const std::string name = std::string(classes[c]) + "/" + file;
        f.clips.push_back({f.dir + "/" + name, name, c});
      }
    }
    genrelab::SkippedFile skip;
    skip.path = f.dir + "/jazz/jazz.00009.wav";
    skip.name = "jazz/jazz.00009.wav";
    skip.reason = "truncated";
    f.skipped.push_back(skip);
    write(f.valid, "blues/blues.00003.flac\n# comment\n\njazz/jazz.00003\n");
    write(f.test, "rock/rock.00003.flac\nblues/blues.00002.wav\n");
    return f;
  }();
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Fixture& f = fixture();
  write(f.train, std::string(reinterpret_cast<const char*>(data), size));
  genrelab::SplitOptions options;
  options.kind = "manifest";
  options.train_list = f.train;
  options.valid_list = f.valid;
  options.test_list = f.test;
  try {
    genrelab::Split split = genrelab::make_split(f.clips, 3, options, f.skipped);
    for (int64_t i : split.train) {
      if (i < 0 || i >= int64_t(f.clips.size())) __builtin_trap();  // indices must index the clips
    }
  } catch (const genrelab::ConfigError&) {
  } catch (const genrelab::RuntimeError&) {
  }
  return 0;
}
