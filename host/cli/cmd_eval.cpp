// `genrelab eval RUN_DIR [--data ROOT] [--split test|valid|train] [--json]`: re-evaluates a
// trained model on its own split or on any folder-per-class collection, averaging the window
// probabilities of each clip.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "genrelab/audio.h"
#include "genrelab/cli.h"
#include "genrelab/common.h"
#include "genrelab/dataset.h"
#include "genrelab/progress.h"
#include "genrelab/run.h"
#include "genrelab/train.h"

namespace fs = std::filesystem;

namespace genrelab::cli {
namespace {

int run_eval(const Args& args) {
  if (args.positional().size() != 1) args.usage_error("expects one RUN_DIR");
  const std::string run_dir = args.positional()[0];
  const Device device = resolve_device(args.get_or("--device", ""));
  TrainedModel model = TrainedModel::load(run_dir, device);
  const auto& classes = model.classes();
  DecodeOptions decode;
  decode.sample_rate = model.sample_rate();

  std::vector<std::string> paths, names;
  std::vector<int32_t> labels;
  std::vector<json> skipped;
  if (const auto root = args.get("--data")) {
    if (args.has("--split")) args.usage_error("--split applies to the run's own data, not to --data");
    DatasetOptions opt;
    opt.root = *root;
    const Dataset ds = scan_dataset(opt);
    for (const auto& c : ds.classes)
      if (std::find(classes.begin(), classes.end(), c) == classes.end())
        throw ConfigError("genrelab eval: class folder '" + c + "' of " + *root + " is not one of the model's classes");
    for (const auto& clip : ds.clips) {
      paths.push_back(clip.path);
      names.push_back(clip.name);
      const std::string cls = ds.classes[size_t(clip.label)];
      labels.push_back(int32_t(std::find(classes.begin(), classes.end(), cls) - classes.begin()));
    }
  } else {
    const std::string which = args.get_or("--split", "test");
    if (which != "test" && which != "valid" && which != "train")
      args.usage_error("--split must be test, valid or train");
    // The run's own clips as training cut them (dataset.clip_samples), so that the accuracy is the
    // run's; clips of --data are whole, their windows averaged.
    if (const auto clip = model.config().get_optional_int("dataset.clip_samples")) decode.length = *clip;
    const RunSplit split = RunDir::open(run_dir).read_split();
    for (const std::string& name : split.sets.at(which)) {
      const std::string cls = name.substr(0, name.find('/'));
      paths.push_back((fs::path(split.class_root) / name).string());
      names.push_back(name);
      labels.push_back(int32_t(std::find(classes.begin(), classes.end(), cls) - classes.begin()));
    }
    if (paths.empty()) throw ConfigError("genrelab eval: the run's " + which + " split is empty");
  }

  std::vector<float> probs;
  std::vector<int64_t> group;
  std::vector<int32_t> clip_labels;
  Progress bar("eval", int64_t(paths.size()), "clips");
  for (size_t i = 0; i < paths.size(); ++i) {
    try {
      const Audio a = decode_audio(paths[i], decode);
      const std::vector<float> p = model.classify(a.samples);
      probs.insert(probs.end(), p.begin(), p.end());
      group.push_back(int64_t(clip_labels.size()));
      clip_labels.push_back(labels[i]);
    } catch (const AudioError& e) {
      std::cerr << "warning: " << e.what() << " (skipped)\n";
      skipped.push_back({{"file", names[i]}, {"reason", e.reason}});
    }
    bar.advance();
  }
  bar.finish();
  if (clip_labels.empty()) throw RuntimeError("genrelab eval: no clip could be decoded");
  const ClipScores s = score_clips(probs, int64_t(classes.size()), group, clip_labels);
  json per_class = json::object();
  for (size_t k = 0; k < classes.size(); ++k) {
    int64_t total = 0;
    for (int64_t c : s.confusion[k]) total += c;
    per_class[classes[k]] = total ? double(s.confusion[k][k]) / double(total) : 0.0;
  }
  if (args.has("--json")) {
    std::cout << json{{"accuracy", s.accuracy}, {"loss", s.loss}, {"clips", s.clips}, {"per_class_accuracy", per_class},
                      {"confusion_matrix", s.confusion}, {"classes", classes}, {"skipped", skipped}}
                     .dump()
              << "\n";
    return 0;
  }
  char line[160];
  std::snprintf(line, sizeof line, "accuracy %.1f %% (%lld clips), loss %.4f\n", 100.0 * s.accuracy, (long long)s.clips, s.loss);
  std::cout << line;
  for (size_t k = 0; k < classes.size(); ++k) {
    std::snprintf(line, sizeof line, "  %-12s %5.1f %%\n", classes[k].c_str(), 100.0 * per_class[classes[k]].get<double>());
    std::cout << line;
  }
  return 0;
}

CommandRegistrar reg{
    {"eval",
     "re-evaluate a trained run on its split or on another collection",
     "usage: genrelab eval RUN_DIR [--data ROOT] [--split test|valid|train] [--json] [--device cuda|cpu]\n\n"
     "Classifies every clip (window probabilities averaged per clip) and prints the accuracy, the\n"
     "per-class accuracy and, with --json, one JSON object with the confusion matrix. The run's own\n"
     "clips are cut to dataset.clip_samples as in training; the clips of --data are taken whole.\n",
     {device_option(),
      {"--data", true, false, "a folder-per-class collection to evaluate on"},
      {"--split", true, false, "the run's own split to evaluate (default test)"},
      {"--json", false, false, "print one JSON object"}},
     run_eval}};

}  // namespace
}  // namespace genrelab::cli
