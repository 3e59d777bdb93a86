// Mel spectrogram ops after the STFT, in gather form (one output element per call): power
// spectrum, mel filterbank (built on the host exactly like librosa.filters.mel and stored as each
// filter's band of non-zero bins), power_to_db and per-band standardisation.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "genrelab/common.h"

namespace genrelab {

// ---- mel scale and filterbank (host) ---------------------------------------------------------

// librosa.hz_to_mel / mel_to_hz: HTK (2595 log10(1 + f/700)) or Slaney (linear below 1 kHz, log above).
double hz_to_mel(double hz, bool htk);
double mel_to_hz(double mel, bool htk);

enum class MelNorm { none, slaney };

struct MelFilterbankSpec {
  double sample_rate = 22050;
  int n_fft = 1024;
  int n_mels = 128;
  double fmin = 0.0;
  double fmax = -1.0;  // < 0: sample_rate / 2
  bool htk = false;
  MelNorm norm = MelNorm::slaney;
};

// The filterbank as bands: filter m has `count[m]` non-zero weights for FFT bins
// start[m] .. start[m] + count[m] - 1, stored at weights[offset[m] ...]. Zero weights inside a
// band are kept, so a band is one contiguous run of bins.
struct MelFilterbank {
  int n_mels = 0;
  int n_bins = 0;              // n_fft / 2 + 1
  std::vector<int> start;      // start: (n_mels,)
  std::vector<int> count;      // count: (n_mels,)
  std::vector<int> offset;     // offset: (n_mels,) into weights
  std::vector<float> weights;  // weights: (sum of count,)

  // The dense matrix librosa.filters.mel returns: (n_mels, n_bins), row-major.
  std::vector<float> dense() const;
};

// librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk, norm), computed in double precision
// like numpy and rounded to float32 once. Filters that come out empty (too many mels for the
// FFT resolution) keep count 0, as librosa keeps an all-zero row.
MelFilterbank make_mel_filterbank(const MelFilterbankSpec& spec);

// ---- functors --------------------------------------------------------------------------------

GENRELAB_HD float real_sqrt(float v) { return sqrtf(v); }
GENRELAB_HD double real_sqrt(double v) { return sqrt(v); }

// |X|^power from one complex value, computed in the spectrum's precision and rounded to float
// once (like librosa's np.abs(stft) ** power): power 2 needs no square root, power 1 is the
// magnitude.
template <typename Real>
GENRELAB_HD float spectral_power(Real re, Real im, float power) {
  const Real p2 = re * re + im * im;
  if (power == 2.0f) return float(p2);
  const Real mag = real_sqrt(p2);
  if (power == 1.0f) return float(mag);
  return powf(float(mag), power);
}

// power[b, f, t] = |spec[b, t, f]|^power. The transpose puts frames innermost so that the mel
// functor's reads along a band are contiguous across neighbouring frames. Real is the spectrum's
// precision (float from cuFFT, double in the CPU reference).
template <typename Real>
struct BasicPowerSpectrumFunctor {
  const Real* spec;  // spec: (batch, n_frames, n_bins) complex as interleaved (re, im)
  float* power;      // power: (batch, n_bins, n_frames)
  int64_t n_frames;
  int n_bins;
  float exponent;

  // row = b * n_bins + f, col = t
  GENRELAB_HD void operator()(int64_t row, int64_t t) const {
    const int64_t b = row / n_bins, f = row % n_bins;
    const Real* z = spec + 2 * ((b * n_frames + t) * n_bins + f);
    power[row * n_frames + t] = spectral_power(z[0], z[1], exponent);
  }
};
using PowerSpectrumFunctor = BasicPowerSpectrumFunctor<float>;

// mel[b, m, t] = sum over the band of filter m of weights * power[b, f, t].
struct MelFilterbankFunctor {
  const float* power;    // power: (batch, n_bins, n_frames)
  const int* start;      // start: (n_mels,)
  const int* count;      // count: (n_mels,)
  const int* offset;     // offset: (n_mels,)
  const float* weights;  // weights: (sum of count,)
  float* mel;            // mel: (batch, n_mels, n_frames)
  int64_t n_frames;
  int n_bins, n_mels;

  // row = b * n_mels + m, col = t
  GENRELAB_HD void operator()(int64_t row, int64_t t) const {
    const int64_t b = row / n_mels;
    const int m = int(row % n_mels);
    const float* w = weights + offset[m];
    const float* p = power + (b * n_bins + start[m]) * n_frames + t;
    float acc = 0.0f;
    for (int j = 0; j < count[m]; ++j) acc += w[j] * p[int64_t(j) * n_frames];
    mel[row * n_frames + t] = acc;
  }
};

// ---- power_to_db -----------------------------------------------------------------------------

// librosa.power_to_db(S, ref, amin, top_db) applied to each clip separately:
//   db = 10 log10(max(amin, S)) - 10 log10(max(amin, ref)),  then db = max(db, max(db) - top_db).
// `ref` is a number or the clip's maximum (ref=np.max); max(db) comes from the clip's maximum
// power, because log10 is monotonic.
struct DbParams {
  bool ref_is_max = false;
  float ref = 1.0f;
  float amin = 1e-10f;
  bool use_top_db = true;
  float top_db = 80.0f;
};

// Per clip: ref_db[b] (the subtracted reference in dB) and floor_db[b] (the top_db floor, or
// -inf without top_db) from clip_max[b] = max over the clip's mel power.
struct DbClipFunctor {
  const float* clip_max;  // clip_max: (batch,)
  float* ref_db;          // ref_db: (batch,)
  float* floor_db;        // floor_db: (batch,)
  DbParams p;

  GENRELAB_HD void operator()(int64_t b) const {
    const float ref = p.ref_is_max ? clip_max[b] : fabsf(p.ref);
    const float r = 10.0f * log10f(fmaxf(p.amin, ref));
    ref_db[b] = r;
    const float top = 10.0f * log10f(fmaxf(p.amin, clip_max[b])) - r;
    floor_db[b] = p.use_top_db ? top - p.top_db : -INFINITY;
  }
};

// In place: x[b, i] = max(10 log10(max(amin, x[b, i])) - ref_db[b], floor_db[b]).
struct PowerToDbFunctor {
  float* x;               // x: (batch, per_clip) — a clip's (n_mels, n_frames)
  const float* ref_db;    // ref_db: (batch,)
  const float* floor_db;  // floor_db: (batch,)
  int64_t per_clip;
  float amin;

  // row = b, col = i
  GENRELAB_HD void operator()(int64_t b, int64_t i) const {
    float& v = x[b * per_clip + i];
    const float db = 10.0f * log10f(fmaxf(amin, v)) - ref_db[b];
    v = fmaxf(db, floor_db[b]);
  }
};

// ---- per-band standardisation ----------------------------------------------------------------

// In place: x[b, m, t] = (x[b, m, t] - mean[m]) * inv_std[m].
struct StandardizeFunctor {
  float* x;              // x: (batch, n_mels, n_frames)
  const float* mean;     // mean: (n_mels,)
  const float* inv_std;  // inv_std: (n_mels,)
  int64_t n_frames;
  int n_mels;

  // row = b * n_mels + m, col = t
  GENRELAB_HD void operator()(int64_t row, int64_t t) const {
    const int m = int(row % n_mels);
    float& v = x[row * n_frames + t];
    v = (v - mean[m]) * inv_std[m];
  }
};

// Mean and (population) standard deviation of every mel band over a training set: all clips and
// all frames. Accumulated per (clip, band) row with Chan's parallel update in double precision,
// so batches can be added in any order and the result does not depend on the batch size.
class MelBandStatsAccumulator {
 public:
  explicit MelBandStatsAccumulator(int n_mels);
  // mel: (batch, n_mels, n_frames) on the host.
  void add(const float* mel, int64_t batch, int64_t n_frames);
  // One row's count, mean and sum of squared deviations (what the GPU reduction hands back).
  void add_row(int m, double count, double mean, double m2);
  int n_mels() const { return int(count_.size()); }
  double count(int m) const { return count_[size_t(m)]; }
  double mean(int m) const { return mean_[size_t(m)]; }
  double m2(int m) const { return m2_[size_t(m)]; }  // sum of squared deviations from mean(m)

  struct Result {
    std::vector<float> mean;  // mean: (n_mels,)
    std::vector<float> std;   // std: (n_mels,), population (ddof 0)
  };
  Result finish() const;

 private:
  std::vector<double> count_, mean_, m2_;
};

// 1 / std per band, with a band of zero spread mapped to 1 (it is only centred).
std::vector<float> inverse_std(const std::vector<float>& std);

}  // namespace genrelab
