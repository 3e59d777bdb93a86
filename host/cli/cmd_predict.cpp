// `genrelab predict RUN_DIR FILE... [--json]`: genre probabilities of audio files of any length
// (windows of the training length, probabilities averaged), top 3 per file.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <numeric>

#include "genrelab/audio.h"
#include "genrelab/cli.h"
#include "genrelab/common.h"
#include "genrelab/train.h"

namespace genrelab::cli {
namespace {

int run_predict(const Args& args) {
  if (args.positional().size() < 2) args.usage_error("expects RUN_DIR and at least one audio FILE");
  const int64_t top_asked = args.get_int("--top", 3, 1);
  const Device device = resolve_device(args.get_or("--device", ""));
  TrainedModel model = TrainedModel::load(args.positional()[0], device);
  const auto& classes = model.classes();
  const int top = int(std::min<int64_t>(top_asked, int64_t(classes.size())));  // more than there are: all
  DecodeOptions decode;
  decode.sample_rate = model.sample_rate();
  json files = json::array();
  int failures = 0;
  for (size_t i = 1; i < args.positional().size(); ++i) {
    const std::string& path = args.positional()[i];
    try {
      const Audio a = decode_audio(path, decode);
      const std::vector<float> p = model.classify(a.samples);
      std::vector<size_t> order(p.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return p[x] > p[y]; });
      if (args.has("--json")) {
        json probs = json::object(), best = json::array();
        for (size_t k = 0; k < classes.size(); ++k) probs[classes[k]] = p[k];
        for (int k = 0; k < top; ++k) best.push_back({classes[order[size_t(k)]], p[order[size_t(k)]]});
        files.push_back({{"file", path}, {"seconds", double(a.samples.size()) / a.sample_rate},
                         {"windows", model.windows().starts(int64_t(a.samples.size())).size()},
                         {"probabilities", probs}, {"top", best}});
      } else {
        std::cout << path;
        for (int k = 0; k < top; ++k) {
          char cell[64];
          std::snprintf(cell, sizeof cell, "\t%s %.3f", classes[order[size_t(k)]].c_str(), p[order[size_t(k)]]);
          std::cout << cell;
        }
        std::cout << "\n";
      }
    } catch (const AudioError& e) {
      std::cerr << "genrelab predict: " << e.what() << "\n";
      if (args.has("--json")) files.push_back({{"file", path}, {"error", e.reason}});
      ++failures;
    }
  }
  if (args.has("--json")) std::cout << json{{"model", args.positional()[0]}, {"classes", classes}, {"files", files}}.dump() << "\n";
  return failures ? 1 : 0;
}

CommandRegistrar reg{{"predict", "genre probabilities of audio files with a trained run",
                      "usage: genrelab predict RUN_DIR FILE... [--json] [--top K] [--device cuda|cpu]\n\n"
                      "Decodes each file (any length, any rate libsndfile reads), cuts it into windows of the\n"
                      "training length, averages the window probabilities and prints the top K (default 3)\n"
                      "classes per file, tab-separated; --json prints one JSON object with every probability.\n"
                      "Files that cannot be decoded are reported on stderr and make the exit code 1.\n",
                      {device_option(), {"--json", false, false, "print one JSON object"},
                       {"--top", true, false, "how many classes to print per file (default 3)"}},
                      run_predict}};

}  // namespace
}  // namespace genrelab::cli
