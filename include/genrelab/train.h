// Training jobs and trained models: `genrelab train` (decode → split → augment → features →
// shuffled batches → train → evaluate every epoch, with checkpoints, resume and clean stops on
// SIGINT/SIGTERM) and the trained-model side used by `eval` and `predict` (window-averaged
// clip probabilities).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "genrelab/config.h"
#include "genrelab/device.h"
#include "genrelab/features.h"
#include "genrelab/nn/network.h"
#include "genrelab/run.h"

namespace genrelab {

struct TrainRequest {
  std::string experiment;              // EXPERIMENT.json ("" when resuming)
  std::vector<std::string> overrides;  // --set key=value
  std::string device;                  // --device cuda|cpu ("" = auto)
  std::string out;                     // --out DIR ("" = output.dir)
  std::string resume;                  // --resume RUN_DIR
  int profile_steps = 0;               // --profile N: N steps after warm-up, then stop
  bool quiet = false;                  // no progress bars
};

// Runs a training job; returns the process exit code (0 success, 1 runtime error, 130/143
// after a clean stop on SIGINT/SIGTERM with a checkpoint written). Config errors throw ConfigError.
int run_training(const TrainRequest& request);

// Window layout of a clip: `window` samples every `hop`. A clip of n ≤ window samples gives one
// window (zero-padded); a longer one floor((n − window) / hop) + 1 windows.
struct WindowSpec {
  int64_t window = 0;  // samples per window (the network's input length)
  int64_t hop = 0;
  static WindowSpec from_config(const Config& config);  // ConfigError when no length is configured
  std::vector<int64_t> starts(int64_t n) const;
};

// The per-epoch shuffle of n examples: Fisher–Yates driven by a Philox stream keyed by
// (seed, shuffle, epoch), identical on every machine and backend.
std::vector<int64_t> epoch_permutation(int64_t n, uint32_t seed, uint32_t epoch);

// Accuracy, loss and confusion counts of clip-level predictions.
struct ClipScores {
  int64_t clips = 0;
  double loss = 0;      // mean −log p(true class) of the window-averaged probabilities
  double accuracy = 0;
  ConfusionMatrix confusion;
};
// probs: (n_windows, classes) window probabilities; group[w] = clip index of window w;
// labels[c] = true class of clip c. Averages each clip's windows, then scores.
ClipScores score_clips(const std::vector<float>& probs, int64_t classes, const std::vector<int64_t>& group,
                       const std::vector<int32_t>& labels);

// A trained model loaded from a run directory (config.json, feature_stats.json, checkpoint).
class TrainedModel {
 public:
  static TrainedModel load(const std::string& run_dir, Device device);
  TrainedModel(TrainedModel&&) noexcept;
  ~TrainedModel();

  const Config& config() const { return config_; }
  const std::vector<std::string>& classes() const { return classes_; }
  const WindowSpec& windows() const { return windows_; }
  int sample_rate() const { return mel_params_.sample_rate; }

  // Class probabilities of one clip (any length), averaged over its windows: (classes,)
  std::vector<float> classify(const std::vector<float>& audio);
  // Window probabilities for a batch of windows. windows: (n, window) host → (n, classes) host
  std::vector<float> predict_windows(const std::vector<float>& windows, int64_t n);

 private:
  TrainedModel() = default;
  Config config_;
  std::vector<std::string> classes_;
  WindowSpec windows_;
  MelParams mel_params_;
  Device device_ = Device::cpu;
  std::unique_ptr<MelExtractor> mel_;
  std::unique_ptr<nn::Network> net_;
};

}  // namespace genrelab
