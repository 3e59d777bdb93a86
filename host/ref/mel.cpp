// Mel filterbank construction (librosa.filters.mel, step by step in double precision) and the
// per-band statistics accumulator used by feature standardisation (see ops/mel.h).
#include "genrelab/ops/mel.h"

#include <algorithm>
#include <cmath>

namespace genrelab {

namespace {
constexpr double kSlaneyFsp = 200.0 / 3.0;  // Hz per mel in the linear region
constexpr double kSlaneyMinLogHz = 1000.0;  // start of the log region
const double kSlaneyLogStep = std::log(6.4) / 27.0;
}  // namespace

double hz_to_mel(double hz, bool htk) {
  if (htk) return 2595.0 * std::log10(1.0 + hz / 700.0);
  const double min_log_mel = kSlaneyMinLogHz / kSlaneyFsp;
  if (hz >= kSlaneyMinLogHz) return min_log_mel + std::log(hz / kSlaneyMinLogHz) / kSlaneyLogStep;
  return hz / kSlaneyFsp;
}

double mel_to_hz(double mel, bool htk) {
  if (htk) return 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0);
  const double min_log_mel = kSlaneyMinLogHz / kSlaneyFsp;
  if (mel >= min_log_mel) return kSlaneyMinLogHz * std::exp(kSlaneyLogStep * (mel - min_log_mel));
  return kSlaneyFsp * mel;
}

std::vector<float> MelFilterbank::dense() const {
  std::vector<float> d(size_t(n_mels) * size_t(n_bins), 0.0f);
  for (int m = 0; m < n_mels; ++m)
    for (int j = 0; j < count[size_t(m)]; ++j)
      d[size_t(m) * size_t(n_bins) + size_t(start[size_t(m)] + j)] = weights[size_t(offset[size_t(m)] + j)];
  return d;
}

MelFilterbank make_mel_filterbank(const MelFilterbankSpec& spec) {
  GENRELAB_CHECK(spec.sample_rate > 0 && spec.n_fft >= 2 && spec.n_mels >= 1,
                 "bad mel filterbank: sr=", spec.sample_rate, " n_fft=", spec.n_fft, " n_mels=", spec.n_mels);
  const double fmax = spec.fmax < 0 ? spec.sample_rate / 2.0 : spec.fmax;
  GENRELAB_CHECK(spec.fmin >= 0 && fmax > spec.fmin, "mel filterbank needs 0 <= fmin < fmax (fmin=", spec.fmin,
                 ", fmax=", fmax, ")");
  const int n_bins = spec.n_fft / 2 + 1;
  const int n_mels = spec.n_mels;

  // fft_frequencies = np.fft.rfftfreq(n_fft, 1/sr): k * (1 / (n_fft * (1/sr))).
  const double bin_hz = 1.0 / (double(spec.n_fft) * (1.0 / spec.sample_rate));
  std::vector<double> fftfreqs(static_cast<size_t>(n_bins));
  for (int k = 0; k < n_bins; ++k) fftfreqs[size_t(k)] = double(k) * bin_hz;

  // mel_frequencies(n_mels + 2): np.linspace(hz_to_mel(fmin), hz_to_mel(fmax)) then mel_to_hz.
  const int n_pts = n_mels + 2;
  const double lo = hz_to_mel(spec.fmin, spec.htk), hi = hz_to_mel(fmax, spec.htk);
  const double step = (hi - lo) / double(n_pts - 1);
  std::vector<double> mel_f(static_cast<size_t>(n_pts));
  for (int i = 0; i < n_pts; ++i) mel_f[size_t(i)] = mel_to_hz(i == n_pts - 1 ? hi : double(i) * step + lo, spec.htk);

  MelFilterbank fb;
  fb.n_mels = n_mels;
  fb.n_bins = n_bins;
  fb.start.assign(size_t(n_mels), 0);
  fb.count.assign(size_t(n_mels), 0);
  fb.offset.assign(size_t(n_mels), 0);
  std::vector<float> row(static_cast<size_t>(n_bins));
  for (int i = 0; i < n_mels; ++i) {
    const double fdiff_lo = mel_f[size_t(i) + 1] - mel_f[size_t(i)];
    const double fdiff_hi = mel_f[size_t(i) + 2] - mel_f[size_t(i) + 1];
    // librosa stores the triangle in the float32 matrix first, then scales it in place by the
    // float64 Slaney factor: two roundings, reproduced here.
    const double enorm = spec.norm == MelNorm::slaney ? 2.0 / (mel_f[size_t(i) + 2] - mel_f[size_t(i)]) : 1.0;
    int first = -1, last = -1;
    for (int k = 0; k < n_bins; ++k) {
      const double lower = -(mel_f[size_t(i)] - fftfreqs[size_t(k)]) / fdiff_lo;
      const double upper = (mel_f[size_t(i) + 2] - fftfreqs[size_t(k)]) / fdiff_hi;
      const float tri = float(std::max(0.0, std::min(lower, upper)));
      const float w = spec.norm == MelNorm::slaney ? float(double(tri) * enorm) : tri;
      row[size_t(k)] = w;
      if (w != 0.0f) {
        if (first < 0) first = k;
        last = k;
      }
    }
    fb.offset[size_t(i)] = int(fb.weights.size());
    if (first >= 0) {
      fb.start[size_t(i)] = first;
      fb.count[size_t(i)] = last - first + 1;
      fb.weights.insert(fb.weights.end(), row.begin() + first, row.begin() + last + 1);
    }
  }
  return fb;
}

MelBandStatsAccumulator::MelBandStatsAccumulator(int n_mels)
    : count_(size_t(n_mels), 0.0), mean_(size_t(n_mels), 0.0), m2_(size_t(n_mels), 0.0) {
  GENRELAB_CHECK(n_mels >= 1, "n_mels must be positive");
}

void MelBandStatsAccumulator::add_row(int m, double count, double mean, double m2) {
  GENRELAB_CHECK(m >= 0 && m < n_mels(), "mel band ", m, " outside [0, ", n_mels(), ")");
  if (count <= 0) return;
  double& n = count_[size_t(m)];
  double& mu = mean_[size_t(m)];
  const double total = n + count;
  const double delta = mean - mu;
  mu += delta * count / total;
  m2_[size_t(m)] += m2 + delta * delta * n * count / total;
  n = total;
}

void MelBandStatsAccumulator::add(const float* mel, int64_t batch, int64_t n_frames) {
  const int nm = n_mels();
  for (int64_t b = 0; b < batch; ++b)
    for (int m = 0; m < nm; ++m) {
      const float* r = mel + (b * nm + m) * n_frames;
      double s = 0;
      for (int64_t t = 0; t < n_frames; ++t) s += r[t];
      const double mean = n_frames > 0 ? s / double(n_frames) : 0.0;
      double m2 = 0;
      for (int64_t t = 0; t < n_frames; ++t) m2 += (r[t] - mean) * (r[t] - mean);
      add_row(m, double(n_frames), mean, m2);
    }
}

MelBandStatsAccumulator::Result MelBandStatsAccumulator::finish() const {
  Result r;
  for (int m = 0; m < n_mels(); ++m) {
    GENRELAB_CHECK(count_[size_t(m)] > 0, "mel band statistics need at least one frame");
    r.mean.push_back(float(mean_[size_t(m)]));
    r.std.push_back(float(std::sqrt(m2_[size_t(m)] / count_[size_t(m)])));
    // Standardising by them would turn every example into NaNs, and training would go on silently.
    if (!std::isfinite(r.mean.back()) || !std::isfinite(r.std.back()))
      throw RuntimeError("the training clips' mel band statistics are not finite (band " + std::to_string(m) +
                         "): some clip's features overflow float32; find it with genrelab data check");
  }
  return r;
}

std::vector<float> inverse_std(const std::vector<float>& std) {
  std::vector<float> inv(std.size());
  for (size_t i = 0; i < std.size(); ++i) inv[i] = std[i] > 0.0f ? 1.0f / std[i] : 1.0f;
  return inv;
}

}  // namespace genrelab
