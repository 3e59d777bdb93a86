// Run directories: `<parent>/<name>-<UTC timestamp>/` holding config.json, run.json (command
// line, overrides, versions), metrics.jsonl (one object per epoch), summary.json, checkpoints and
// SVG plots. Every file is written as NAME.tmp and renamed, so a killed run never leaves a
// half-written file; two runs started in the same second get distinct directories.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "genrelab/common.h"
#include "genrelab/config.h"
#include "genrelab/features.h"

namespace genrelab {

struct EpochMetrics {
  int epoch = 0;  // 1-based
  double train_loss = 0, train_accuracy = 0;
  double test_loss = 0, test_accuracy = 0;
  std::optional<double> valid_loss, valid_accuracy;
  double seconds = 0, samples_per_second = 0;  // the epoch's training steps
  double lr = 0;
  double evaluate_seconds = 0;  // the evaluation after them (test, and valid when there is one)
};

json to_json(const EpochMetrics& m);
// Throws RuntimeError naming `source` when a required key is missing or mistyped.
EpochMetrics metrics_from_json(const json& j, const std::string& source);

// Confusion counts: rows = true class, columns = predicted class.
using ConfusionMatrix = std::vector<std::vector<int64_t>>;

// Where one `train` process's wall time went (summary.json "time_seconds"; a resumed run counts
// from its resumption): before its first epoch (data, augmentation, features, network), each epoch's
// preparation (online augmentation and features, the shuffle), its training steps and evaluation,
// the end-of-epoch writes (metrics, plots, a checkpoint handed to
// its background writer) of all epochs but the last, and the last epoch's, whose checkpoint is
// written before the process ends (with any earlier one still being written). The last four are
// parts of those, not more of the wall time: within before_training, the data (scan, decode,
// split), the examples (augmentation and features of the sets) and the wait for the network (built
// beside the data) with its checkpoint restored; within training and evaluation, the GPU backend's
// algorithm choices (cuDNN's searches, the GEMM engine's and GEMM kernels' timings; 0 on the CPU).
struct RunTime {
  double before_training = 0, preparing = 0, training = 0, evaluation = 0, saving = 0, last_checkpoint = 0;
  double data = 0, examples = 0, network = 0, tuning = 0;
};

struct RunSummary {
  double best_test_accuracy = 0;
  int best_epoch = 0;                 // selected on valid accuracy when a valid split exists
  std::string best_epoch_selected_by;  // "test" | "valid"
  double final_test_accuracy = 0;
  std::vector<std::string> classes;
  std::vector<double> per_class_accuracy;  // recall per true class, final epoch
  ConfusionMatrix confusion_matrix;        // final epoch
  double wall_seconds = 0;
  RunTime time;  // its parts (train sets them after summarize)
  std::string device;
  json versions;
};

// Builds the summary from the epoch metrics and the final confusion matrix.
RunSummary summarize(const std::vector<EpochMetrics>& metrics, const ConfusionMatrix& confusion,
                     const std::vector<std::string>& classes, double wall_seconds, const std::string& device);
json to_json(const RunSummary& s);

// Library and build versions recorded with every run.
json version_info();

// split.json: the classes in label order, the folder holding the class folders, and the clips
// ("class/file") of each set ("train", "valid", "test").
struct RunSplit {
  std::vector<std::string> classes;
  std::string class_root;
  std::map<std::string, std::vector<std::string>> sets;
};

class RunDir {
 public:
  // Creates a fresh `<parent>/<name>-<YYYYmmddTHHMMSSZ>` (adding -2, -3, ... when taken).
  // Throws RuntimeError when the parent cannot be created or written.
  static RunDir create(const std::string& parent, const std::string& name);
  // Opens an existing run directory (for resume, eval, report).
  static RunDir open(const std::string& path);

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const;

  void write_json(const std::string& name, const json& doc) const;  // atomic
  json read_json(const std::string& name) const;                    // a JSON object; else RuntimeError naming the file
  bool has(const std::string& name) const;
  // The error for a file of the run that is not as genrelab writes it: names the file, says what
  // is wrong and that the run directory is damaged.
  RuntimeError damaged(const std::string& name, const std::string& what) const;

  // split.json and feature_stats.json (n_mels bands), their structure checked (damaged() if not).
  RunSplit read_split() const;
  MelBandStats read_feature_stats(int64_t n_mels) const;

  // metrics.jsonl: rewritten whole (atomically) with every epoch so far.
  void write_metrics(const std::vector<EpochMetrics>& metrics) const;
  std::vector<EpochMetrics> read_metrics() const;

 private:
  explicit RunDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// UTC timestamp "YYYYmmddTHHMMSSZ".
std::string utc_timestamp();

}  // namespace genrelab
