// `genrelab features FILE... --out OUT.npy`: mel spectrograms of audio files as a .npy array,
// with the experiment's `features` settings (the baseline's by default), for parity checks and
// for use outside GenreLab. Files are decoded on parallel host threads.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "genrelab/audio.h"
#include "genrelab/cli.h"
#include "genrelab/config.h"
#include "genrelab/features.h"
#include "genrelab/npy.h"
#include "genrelab/progress.h"

namespace genrelab::cli {
namespace {

// Decodes every file on up to hardware_concurrency threads. Every failure is collected, so one
// run names all unusable files.
std::vector<Audio> decode_all(const std::vector<std::string>& files, const DecodeOptions& opt) {
  std::vector<Audio> clips(files.size());
  std::vector<std::string> errors(files.size());
  std::atomic<size_t> next{0};
  Progress progress("decode", int64_t(files.size()), "files");
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < files.size();) {
      try {
        clips[i] = decode_audio(files[i], opt);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
      progress.advance();
    }
  };
  const size_t n_threads = std::min<size_t>(files.size(), std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < n_threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  progress.finish();
  std::string message;
  size_t bad = 0;
  for (const auto& e : errors)
    if (!e.empty()) {
      message += "\n  " + e;
      ++bad;
    }
  if (bad)
    throw RuntimeError("cannot decode " + std::to_string(bad) + " of " + std::to_string(files.size()) +
                       " files:" + message);
  return clips;
}

int run_features(const Args& args) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::string>& files = args.positional();
  if (files.empty()) args.usage_error("give at least one audio file");
  const auto out = args.get("--out");
  if (!out || out->empty()) args.usage_error("--out OUT.npy is required");

  const Config config = Config::load_or_defaults(args.get_or("--config", ""), args.all("--set"));
  const MelParams params = MelParams::from_config(config);
  if (params.standardize)
    throw ConfigError(
        "features.standardize is true: standardisation needs the band statistics of a training set, which "
        "`genrelab features` does not have (it writes the mels before standardisation); add --set "
        "features.standardize=false");
  const std::optional<int64_t> clip_samples = config.get_optional_int("dataset.clip_samples");
  const Device device = resolve_device(args.get_or("--device", ""));

  DecodeOptions opt;
  opt.sample_rate = params.sample_rate;
  opt.length = clip_samples;
  const std::vector<Audio> clips = decode_all(files, opt);

  const int64_t n_samples = int64_t(clips[0].samples.size());
  for (size_t i = 1; i < clips.size(); ++i)
    if (int64_t(clips[i].samples.size()) != n_samples)
      throw ConfigError("clips have different lengths (" + files[0] + ": " + std::to_string(n_samples) + " samples, " +
                        files[i] + ": " + std::to_string(clips[i].samples.size()) + " samples at " +
                        std::to_string(params.sample_rate) +
                        " Hz); cut or pad them to one length with --set dataset.clip_samples=N");
  if (!params.center && n_samples < params.n_fft)
    throw ConfigError("features.center=false needs clips of at least features.n_fft=" + std::to_string(params.n_fft) +
                      " samples; " + files[0] + " has " + std::to_string(n_samples));

  const int64_t batch = int64_t(clips.size());
  std::vector<float> audio(size_t(batch) * size_t(n_samples));  // audio: (batch, n_samples)
  for (int64_t b = 0; b < batch; ++b)
    std::copy(clips[size_t(b)].samples.begin(), clips[size_t(b)].samples.end(), audio.begin() + b * n_samples);

  MelExtractor extractor(params, device);
  const std::vector<float> mel = extractor.compute_host(audio, batch, n_samples);  // (batch, n_mels, n_frames)
  const int64_t n_frames = extractor.n_frames(n_samples);
  std::vector<int64_t> shape{params.n_mels, n_frames};
  if (batch > 1) shape.insert(shape.begin(), batch);
  write_npy(*out, mel.data(), shape);

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string dims;
  for (int64_t d : shape) dims += (dims.empty() ? "" : " x ") + std::to_string(d);
  char line[256];
  std::snprintf(line, sizeof line, " (%s mel spectrogram%s, %s) in %.2f s on %s", dims.c_str(), batch > 1 ? "s" : "",
                params.db ? "dB" : (params.power == 2.0f ? "power" : "magnitude"), secs, device_name(device));
  std::cerr << "genrelab features: wrote " << *out << line << "\n";
  return 0;
}

CommandRegistrar reg{
    {"features",
     "mel spectrograms of audio files as a .npy array (librosa-compatible)",
     "usage: genrelab features FILE... --out OUT.npy [--config EXPERIMENT.json] [--set key=value ...]\n"
     "                         [--device cuda|cpu]\n\n"
     "Computes librosa.feature.melspectrogram of each file with the experiment's `features` settings\n"
     "(default: the baseline's: n_fft 1024, hop 512, 128 Slaney mels, power 2, centred reflect padding,\n"
     "no dB) at dataset.sample_rate, and writes float32 .npy: (n_mels, frames) for one file,\n"
     "(N, n_mels, frames) for several. The whole file is used unless dataset.clip_samples is set\n"
     "(files of different lengths need it). Example:\n"
     "  genrelab features blues.00000.wav --out mel.npy --set dataset.clip_samples=617400\n",
     {{"--out", true, false, "output .npy file (written atomically)"}, config_option(), set_option(), device_option()},
     run_features}};

}  // namespace
}  // namespace genrelab::cli
