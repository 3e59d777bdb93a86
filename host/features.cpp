// MelExtractor: parameters from the config, the backend switch, and the CPU backend (FFTW for
// the FFTs, the ops/stft.h + ops/mel.h functors looped on the host for everything else). The CPU
// backend frames and transforms in double precision, like librosa (numpy windows and FFTs in
// float64), so it stays the accurate oracle even 80 dB below a frame's peak.
#include "genrelab/features.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "genrelab/config.h"
#include "genrelab/parallel_for.h"

namespace genrelab {

// ---- parameters ------------------------------------------------------------------------------

MelParams MelParams::from_config(const Config& c) {
  MelParams p;
  p.sample_rate = int(c.get_int("dataset.sample_rate"));
  p.n_fft = int(c.get_int("features.n_fft"));
  p.hop_length = int(c.get_int("features.hop_length"));
  p.win_length = int(c.get_optional_int("features.win_length").value_or(p.n_fft));
  p.n_mels = int(c.get_int("features.n_mels"));
  p.power = float(c.get_number("features.power"));
  p.center = c.get_bool("features.center");
  p.pad_mode = c.get_string("features.pad_mode") == "constant" ? PadMode::constant : PadMode::reflect;
  p.htk = c.get_bool("features.htk");
  p.norm = c.get_string("features.norm") == "none" ? MelNorm::none : MelNorm::slaney;
  p.fmin = c.get_number("features.fmin");
  p.fmax = c.get_optional_number("features.fmax").value_or(p.sample_rate / 2.0);
  p.db = c.get_bool("features.db");
  const json& ref = c.at("features.ref");
  if (ref.is_string()) {
    p.db_params.ref_is_max = true;  // the schema only lets "max" through
  } else {
    p.db_params.ref = float(c.get_number("features.ref"));
    if (p.db_params.ref <= 0.0f) c.fail("features.ref", "must be positive or \"max\"");
  }
  p.db_params.amin = float(c.get_number("features.amin"));
  if (p.db_params.amin <= 0.0f)
    c.fail("features.amin", "must be strictly positive (librosa's power_to_db requires it)");
  const auto top = c.get_optional_number("features.top_db");
  p.db_params.use_top_db = top.has_value();
  p.db_params.top_db = float(top.value_or(0.0));
  p.standardize = c.get_bool("features.standardize");
  p.validate();
  return p;
}

void MelParams::validate() const {
  auto bad = [](const std::string& m) { throw ConfigError("features: " + m); };
  if (sample_rate <= 0) bad("sample_rate must be positive");
  if (n_fft < 2) bad("n_fft must be at least 2");
  if (hop_length < 1) bad("hop_length must be at least 1");
  if (win_length < 1 || win_length > n_fft) bad("win_length must lie in [1, n_fft]");
  if (n_mels < 1) bad("n_mels must be at least 1");
  if (power != 1.0f && power != 2.0f) bad("power must be 1 or 2");
  if (!(fmin >= 0 && fmax > fmin)) bad("need 0 <= fmin < fmax");
  if (db && !(db_params.amin > 0)) bad("amin must be positive");
  if (db && db_params.use_top_db && db_params.top_db < 0) bad("top_db must be non-negative");
}

MelFilterbankSpec MelParams::filterbank_spec() const {
  MelFilterbankSpec s;
  s.sample_rate = sample_rate;
  s.n_fft = n_fft;
  s.n_mels = n_mels;
  s.fmin = fmin;
  s.fmax = fmax;
  s.htk = htk;
  s.norm = norm;
  return s;
}

double mel_pipeline_bytes(const MelParams& p, int64_t batch, int64_t n_samples) {
  const double frames = double(batch) * double(p.n_frames(n_samples));
  const double audio = 4.0 * double(batch) * double(n_samples);
  const double framed = 4.0 * frames * p.n_fft * 2;       // written by framing, read by the FFT
  const double spectrum = 8.0 * frames * p.n_bins() * 2;  // written by the FFT, read by the power step
  const double power = 4.0 * frames * p.n_bins() * 2;     // written, then read by the filterbank
  const double mel = 4.0 * frames * p.n_mels * (p.db ? 3 : 1);
  return audio + framed + spectrum + power + mel;
}

// ---- CPU backend -----------------------------------------------------------------------------

namespace {

// Runs f(row, col) over rows x cols in tiles of 32 columns, rows inner: for the transposing
// power functor this reads each spectrum cache line once and writes 32 contiguous floats a row.
template <typename F>
void for_2d_column_tiles(int64_t rows, int64_t cols, const F& f) {
  constexpr int64_t kTile = 32;
  for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
    const int64_t c1 = std::min(cols, c0 + kTile);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) f(r, c);
  }
}

class CpuMelBackend final : public MelExtractor::Backend {
 public:
  CpuMelBackend(const MelParams& p, const MelFilterbank& fb)
      : p_(p), fb_(fb), window_(hann_window_f64(p.n_fft, p.win_length)) {}

  void mel(const float* audio, int64_t batch, int64_t n_samples, float* mel, bool standardize, CUstream_st*) override {
    const int64_t n_frames = p_.n_frames(n_samples);
    if (batch == 0 || n_frames == 0) return;
    const CpuRealFft64& fft = plan_for(n_frames);
    const int n_fft = p_.n_fft, n_bins = p_.n_bins(), n_mels = p_.n_mels;
    // Clips run in parallel, each through the whole chain with its own workspace (it stays in
    // cache); a single clip instead spreads each functor loop over the threads.
    // Workspaces persist across calls (one per thread), so repeated batches do not page-fault.
    if (workspaces_.size() < size_t(omp_get_max_threads())) workspaces_.resize(size_t(omp_get_max_threads()));
#pragma omp parallel if (batch > 1)
    {
      Workspace& ws = workspaces_[size_t(omp_get_thread_num())];
      ws.frames.resize(size_t(n_frames) * size_t(n_fft));  // frames: (n_frames, n_fft)
      ws.spec.resize(size_t(n_frames) * size_t(n_bins));   // spec: (n_frames, n_bins)
      ws.power.resize(size_t(n_bins) * size_t(n_frames));  // power: (n_bins, n_frames)
      std::vector<double>& frames = ws.frames;
      std::vector<std::complex<double>>& spec = ws.spec;
      std::vector<float>& power = ws.power;
      float clip_max = 0, ref_db = 0, floor_db = 0;
#pragma omp for schedule(dynamic)
      for (int64_t b = 0; b < batch; ++b) {
        float* out = mel + b * n_mels * n_frames;  // out: (n_mels, n_frames)
        cpu_for_2d(n_frames, n_fft,
                   BasicFrameFunctor<double>{audio + b * n_samples, window_.data(), frames.data(), n_samples, n_frames,
                                             n_fft, p_.hop_length, n_fft, p_.center, p_.pad_mode});
        fft.forward(frames.data(), spec.data());
        for_2d_column_tiles(n_bins, n_frames,
                            BasicPowerSpectrumFunctor<double>{reinterpret_cast<const double*>(spec.data()),
                                                              power.data(), n_frames, n_bins, p_.power});
        cpu_for_2d(n_mels, n_frames,
                   MelFilterbankFunctor{power.data(), fb_.start.data(), fb_.count.data(), fb_.offset.data(),
                                        fb_.weights.data(), out, n_frames, n_bins, n_mels});
        if (p_.db) {
          clip_max = *std::max_element(out, out + n_mels * n_frames);
          DbClipFunctor{&clip_max, &ref_db, &floor_db, p_.db_params}(0);
          cpu_for_2d(1, n_mels * n_frames,
                     PowerToDbFunctor{out, &ref_db, &floor_db, n_mels * n_frames, p_.db_params.amin});
        }
        if (standardize)
          cpu_for_2d(n_mels, n_frames, StandardizeFunctor{out, mean_.data(), inv_std_.data(), n_frames, n_mels});
      }
    }
  }

  void set_band_stats(const std::vector<float>& mean, const std::vector<float>& inv_std) override {
    mean_ = mean;
    inv_std_ = inv_std;
  }

  void accumulate(const float* mel, int64_t batch, int64_t n_frames, MelBandStatsAccumulator& acc,
                  CUstream_st*) override {
    acc.add(mel, batch, n_frames);
  }

  std::vector<float> mel_host(const std::vector<float>& audio, int64_t batch, int64_t n_samples,
                              bool standardize) override {
    std::vector<float> out(size_t(batch) * size_t(p_.n_mels) * size_t(p_.n_frames(n_samples)));
    mel(audio.data(), batch, n_samples, out.data(), standardize, nullptr);
    return out;
  }

  void accumulate_host(const std::vector<float>& audio, int64_t batch, int64_t n_samples,
                       MelBandStatsAccumulator& acc) override {
    const std::vector<float> m = mel_host(audio, batch, n_samples, false);  // (batch, n_mels, n_frames)
    acc.add(m.data(), batch, p_.n_frames(n_samples));
  }

 private:
  // One FFTW plan (all frames of a clip) per frame count, shared by the threads (execution of a
  // plan is thread-safe; planning is not, hence the lock).
  const CpuRealFft64& plan_for(int64_t n_frames) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = plans_.find(n_frames);
    if (it == plans_.end())
      it = plans_.emplace(n_frames, std::make_unique<CpuRealFft64>(p_.n_fft, n_frames, p_.n_fft)).first;
    return *it->second;
  }

  MelParams p_;
  MelFilterbank fb_;
  std::vector<double> window_;  // window: (n_fft,)
  std::vector<float> mean_, inv_std_;
  std::mutex mu_;
  std::map<int64_t, std::unique_ptr<CpuRealFft64>> plans_;
  struct Workspace {
    std::vector<double> frames;
    std::vector<std::complex<double>> spec;
    std::vector<float> power;
  };
  std::vector<Workspace> workspaces_;  // one per OpenMP thread
};

}  // namespace

std::unique_ptr<MelExtractor::Backend> make_cpu_mel_backend(const MelParams& params, const MelFilterbank& fb) {
  return std::make_unique<CpuMelBackend>(params, fb);
}

#if !GENRELAB_HAVE_CUDA
std::unique_ptr<MelExtractor::Backend> make_cuda_mel_backend(const MelParams&, const MelFilterbank&) {
  throw RuntimeError("this genrelab was built without the CUDA backend; use --device cpu");
}
#endif

// ---- MelExtractor ----------------------------------------------------------------------------

namespace {
// As librosa warns: mel filters that cover no FFT bin (more mels than the FFT resolves between
// fmin and fmax) give bands that are zero for every clip. Once per process and setting.
void warn_empty_bands(const MelParams& p, const MelFilterbank& fb) {
  int empty = 0;
  for (int m = 0; m < fb.n_mels; ++m)
    if (std::all_of(fb.weights.begin() + fb.offset[size_t(m)],
                    fb.weights.begin() + fb.offset[size_t(m)] + fb.count[size_t(m)], [](float w) { return w == 0.0f; }))
      ++empty;
  if (empty == 0) return;
  static std::mutex m;
  static std::set<std::string> warned;
  const std::string setting = std::to_string(p.n_mels) + " mel bands (n_fft " + std::to_string(p.n_fft) + ", " +
                              std::to_string(p.sample_rate) + " Hz)";
  std::lock_guard<std::mutex> lock(m);
  if (!warned.insert(setting).second) return;
  std::cerr << "warning: features: " << empty << " of the " << setting
            << " have empty filters (no FFT bin between their edges): those bands are zero for every clip; use "
               "fewer features.n_mels, a larger features.n_fft or a wider fmin-fmax\n";
}
}  // namespace

MelExtractor::MelExtractor(const MelParams& params, Device device)
    : params_(params), device_(device), filterbank_(make_mel_filterbank(params.filterbank_spec())) {
  params_.validate();
  warn_empty_bands(params_, filterbank_);
  backend_ =
      device == Device::cuda ? make_cuda_mel_backend(params_, filterbank_) : make_cpu_mel_backend(params_, filterbank_);
}

MelExtractor::~MelExtractor() = default;

namespace {
void check_clip_shape(const MelParams& p, int64_t batch, int64_t n_samples) {
  GENRELAB_CHECK(batch >= 0, "negative batch");
  if (n_samples < 1) throw RuntimeError("cannot compute a mel spectrogram of an empty clip");
  if (!p.center && n_samples < p.n_fft)
    throw RuntimeError("a clip of " + std::to_string(n_samples) + " samples is shorter than features.n_fft=" +
                       std::to_string(p.n_fft) + " with features.center=false (no frame fits)");
}
}  // namespace

void MelExtractor::compute(const float* audio, int64_t batch, int64_t n_samples, float* mel, CUstream_st* stream) {
  check_clip_shape(params_, batch, n_samples);
  if (params_.standardize && !has_stats_)
    throw RuntimeError(
        "features.standardize is true but no band statistics were given (they come from the training set)");
  backend_->mel(audio, batch, n_samples, mel, params_.standardize, stream);
}

void MelExtractor::compute_unstandardized(const float* audio, int64_t batch, int64_t n_samples, float* mel,
                                          CUstream_st* stream) {
  check_clip_shape(params_, batch, n_samples);
  backend_->mel(audio, batch, n_samples, mel, false, stream);
}

std::vector<float> MelExtractor::compute_host(const std::vector<float>& audio, int64_t batch, int64_t n_samples) {
  check_clip_shape(params_, batch, n_samples);
  GENRELAB_CHECK(int64_t(audio.size()) == batch * n_samples, "audio holds ", audio.size(), " samples, expected ", batch,
                 " x ", n_samples);
  if (params_.standardize && !has_stats_)
    throw RuntimeError(
        "features.standardize is true but no band statistics were given (they come from the training set)");
  return backend_->mel_host(audio, batch, n_samples, params_.standardize);
}

void MelExtractor::set_band_stats(const MelBandStats& stats) {
  GENRELAB_CHECK(int(stats.mean.size()) == params_.n_mels && int(stats.std.size()) == params_.n_mels,
                 "band statistics for ", stats.mean.size(), " bands, features.n_mels is ", params_.n_mels);
  backend_->set_band_stats(stats.mean, inverse_std(stats.std));
  has_stats_ = true;
}

void MelExtractor::accumulate_band_stats(const float* mel, int64_t batch, int64_t n_frames,
                                         MelBandStatsAccumulator& acc, CUstream_st* stream) {
  GENRELAB_CHECK(acc.n_mels() == params_.n_mels, "accumulator has ", acc.n_mels(), " bands, features.n_mels is ",
                 params_.n_mels);
  if (batch == 0 || n_frames == 0) return;
  backend_->accumulate(mel, batch, n_frames, acc, stream);
}

void MelExtractor::accumulate_band_stats_host(const std::vector<float>& audio, int64_t batch, int64_t n_samples,
                                              MelBandStatsAccumulator& acc) {
  check_clip_shape(params_, batch, n_samples);
  GENRELAB_CHECK(int64_t(audio.size()) == batch * n_samples, "audio holds ", audio.size(), " samples, expected ", batch,
                 " x ", n_samples);
  GENRELAB_CHECK(acc.n_mels() == params_.n_mels, "accumulator has ", acc.n_mels(), " bands, features.n_mels is ",
                 params_.n_mels);
  if (batch > 0) backend_->accumulate_host(audio, batch, n_samples, acc);
}

}  // namespace genrelab
