// A trained model from a run directory: config, classes, feature statistics and checkpoint,
// classifying clips of any length by averaging the probabilities of their windows.
#include <algorithm>

#include "examples.h"
#include "genrelab/common.h"
#include "genrelab/nn/checkpoint.h"
#include "genrelab/train.h"

namespace genrelab {

TrainedModel::TrainedModel(TrainedModel&&) noexcept = default;
TrainedModel::~TrainedModel() = default;

TrainedModel TrainedModel::load(const std::string& run_dir, Device device) {
  const RunDir run = RunDir::open(run_dir);
  TrainedModel m;
  m.device_ = device;
  m.config_ = Config::from_resolved(run.read_json("config.json"), run.file("config.json"));
  if (!run.has("split.json")) throw RuntimeError(run_dir + ": no split.json; was the run stopped before its data loaded?");
  m.classes_ = run.read_split().classes;
  m.windows_ = WindowSpec::from_config(m.config_);
  m.mel_params_ = MelParams::from_config(m.config_);
  m.mel_ = std::make_unique<MelExtractor>(m.mel_params_, device);
  if (m.mel_params_.standardize) {
    if (!run.has("feature_stats.json")) throw RuntimeError(run_dir + ": features.standardize is on but feature_stats.json is missing");
    m.mel_->set_band_stats(run.read_feature_stats(m.mel_params_.n_mels));
  }
  const int64_t frames = m.mel_params_.n_frames(m.windows_.window);
  const nn::ModelPlan plan = nn::plan_model(m.config_, nn::Shape3{m.mel_params_.n_mels, frames, 1}, int64_t(m.classes_.size()));
  if (!run.has("checkpoint.bin")) throw RuntimeError(run_dir + ": no checkpoint.bin yet; the run has not finished an epoch");
  m.net_ = nn::make_network(device, plan, nn::TrainHyper::from_config(m.config_));
  nn::restore_checkpoint(run.file("checkpoint.bin"), *m.net_);
  return m;
}

std::vector<float> TrainedModel::predict_windows(const std::vector<float>& windows, int64_t n) {
  const int64_t classes = int64_t(classes_.size());
  const int64_t frames = mel_->n_frames(windows_.window), fsize = mel_params_.n_mels * frames;
  std::vector<float> probs(size_t(n * classes));
  const int64_t chunk = 32;
  BackendArray<float> audio(device_), features(device_);
  audio.resize(size_t(chunk * windows_.window));
  features.resize(size_t(chunk * fsize));
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t count = std::min(chunk, n - first);
    audio.upload(0, windows.data() + first * windows_.window, size_t(count * windows_.window));
    mel_->compute(audio.data(), count, windows_.window, features.data());
    net_->predict(features.data(), count, probs.data() + first * classes);
  }
  return probs;
}

std::vector<float> TrainedModel::classify(const std::vector<float>& x) {
  const std::vector<int64_t> starts = windows_.starts(int64_t(x.size()));
  const int64_t w = windows_.window, n = int64_t(starts.size()), classes = int64_t(classes_.size());
  std::vector<float> win(size_t(n * w), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t take = std::max<int64_t>(0, std::min(w, int64_t(x.size()) - starts[size_t(i)]));
    std::copy(x.begin() + starts[size_t(i)], x.begin() + starts[size_t(i)] + take, win.begin() + i * w);
  }
  const std::vector<float> probs = predict_windows(win, n);
  std::vector<float> avg(size_t(classes), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < classes; ++k) avg[size_t(k)] += probs[size_t(i * classes + k)] / float(n);
  return avg;
}

}  // namespace genrelab
