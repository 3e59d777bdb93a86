// Augmentation kernels in gather form (one call = one output element), shared by the CPU
// reference (host/augment.cpp, cpu_for_*) and the GPU (cuda/augment.cu, launch_*): Gaussian noise,
// gain, time shift, SpecAugment masks, and the pieces of librosa's phase-vocoder time stretch /
// pitch shift (phase advance, synthesis, inverse-STFT overlap-add, per-clip resampling).
// Batches carry per-row parameters, so one launch serves clips with different draws.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "genrelab/common.h"
#include "genrelab/ops/philox.h"
#include "genrelab/ops/resample.h"

namespace genrelab {

// ---- element-wise waveform augmentations -------------------------------------------------------

// audiomentations AddGaussianNoise: y = x + amplitude·N(0, 1), the normal number j of the row's
// Philox stream, written as one explicit fma so host and device give identical bits. One call
// produces the four samples 4q .. 4q+3 that share a Philox block (cols = ⌈n/4⌉).
struct NoiseFunctor {
  const float* x;                // x: (batch, n)
  float* y;                      // y: (batch, n); may alias x
  const float* amplitude;        // amplitude: (batch,), 0 = leave the row unchanged
  const PhiloxStream* streams;   // streams: (batch,), keyed (seed, noise, clip, epoch)
  int64_t n;

  GENRELAB_HD void operator()(int64_t row, int64_t q) const {
    const float a = amplitude[row];
    float z[4];
    if (a != 0.0f) streams[row].normal4(uint64_t(q), z);
    for (int l = 0; l < 4; ++l) {
      const int64_t j = 4 * q + l;
      if (j >= n) break;
      const int64_t i = row * n + j;
      y[i] = a == 0.0f ? x[i] : exact::fma(a, z[l], x[i]);
    }
  }
  static int64_t cols(int64_t n) { return (n + 3) / 4; }
};

// Gain: y = x · factor (factor = 10^(dB/20), computed on the host).
struct GainFunctor {
  const float* x;        // x: (batch, n)
  float* y;              // y: (batch, n); may alias x
  const float* factor;   // factor: (batch,)
  int64_t n;

  GENRELAB_HD void operator()(int64_t row, int64_t j) const { y[row * n + j] = x[row * n + j] * factor[row]; }
};

// Time shift like audiomentations Shift (no fade): numpy.roll(x, shift); without rollover the
// samples that wrapped around are zeros. Must not alias (it gathers from other positions).
struct ShiftFunctor {
  const float* x;        // x: (batch, n)
  float* y;              // y: (batch, n)
  const int64_t* shift;  // shift: (batch,) in samples, positive = later
  int64_t n;
  bool rollover;

  GENRELAB_HD void operator()(int64_t row, int64_t j) const {
    int64_t src = j - shift[row];
    float v;
    if (src >= 0 && src < n) v = x[row * n + src];
    else if (rollover) {
      src %= n;
      if (src < 0) src += n;
      v = x[row * n + src];
    } else v = 0.0f;
    y[row * n + j] = v;
  }
};

// ---- SpecAugment ---------------------------------------------------------------------------------

// Mask geometry of one clip, drawn from its Philox stream (seed, spec_mask, clip, epoch) with
// double uniforms (IEEE on both backends): time mask j has width w = ⌊u·(W_t+1)⌋ (capped at the
// frame count) and start ⌊u'·(n_frames − w + 1)⌋, from uniforms 2j and 2j+1; frequency mask j
// likewise over mel bands from uniforms 2(n_time + j) and 2(n_time + j) + 1.
struct SpecMaskGeometry {
  int time_masks, max_time_width, freq_masks, max_freq_width;

  GENRELAB_HD static void interval(const PhiloxStream& s, uint64_t u, int max_width, int64_t extent, int64_t* start,
                                   int64_t* width) {
    int64_t w = int64_t(std::floor(s.uniform_double(u) * double(max_width + 1)));
    if (w > extent) w = extent;
    *start = int64_t(std::floor(s.uniform_double(u + 1) * double(extent - w + 1)));
    *width = w;
  }
  GENRELAB_HD bool masked(const PhiloxStream& s, int64_t band, int64_t frame, int64_t n_bands, int64_t n_frames) const {
    int64_t a, w;
    for (int m = 0; m < time_masks; ++m) {
      interval(s, 2 * uint64_t(m), max_time_width, n_frames, &a, &w);
      if (frame >= a && frame < a + w) return true;
    }
    for (int m = 0; m < freq_masks; ++m) {
      interval(s, 2 * uint64_t(time_masks + m), max_freq_width, n_bands, &a, &w);
      if (band >= a && band < a + w) return true;
    }
    return false;
  }
};

// Sets masked mel cells to `fill` (0: silence for a power mel) in place; rows not applied are
// left untouched. row = b·n_mels + m, col = frame.
struct SpecMaskFunctor {
  float* mel;                    // mel: (batch, n_mels, n_frames)
  const uint8_t* applied;        // applied: (batch,)
  const PhiloxStream* streams;   // streams: (batch,)
  SpecMaskGeometry geometry;
  int64_t n_mels, n_frames;
  float fill;

  GENRELAB_HD void operator()(int64_t row, int64_t t) const {
    const int64_t b = row / n_mels, m = row % n_mels;
    if (!applied[b]) return;
    if (geometry.masked(streams[b], m, t, n_mels, n_frames)) mel[row * n_frames + t] = fill;
  }
};

// ---- phase vocoder (librosa.phase_vocoder) -------------------------------------------------------
//
// Output frame t of a clip stretched by `rate` reads input frames i0 = ⌊t·rate⌋ and i0 + 1
// (zeros past the end). Its magnitude interpolates linearly between them; its phase is
//   phase[t] = angle(D[0]) + Σ_{s<t} (φ + princarg(angle(D[i0_s+1]) − angle(D[i0_s]) − φ)),
// φ = hop·2πk/n_fft, a scan over t per bin: PhaseAdvanceFunctor writes the increments,
// a prefix sum per (clip, bin) row (plain loop on the CPU, CUB/Thrust on the GPU) accumulates
// them, PvSynthFunctor builds the complex frames (PolarFunctor first turns the input STFT into
// magnitude and angle once). Spectra are interleaved (re, im) floats.

// numpy.round of a double (nearest integer, ties to even), as std::nearbyint in the default
// rounding mode. The device has an instruction for it; an x86-64 host without SSE4.1 in its
// baseline makes nearbyint a libm call, so the host adds and subtracts 2^52 instead (below 2^52
// the sum's ulp is 1, so the addition rounds to the nearest integer, ties to even, and the
// subtraction is exact; the sign is put back so that −0.3 still gives −0).
GENRELAB_HD double round_half_even(double x) {
#if defined(__CUDA_ARCH__)
  return nearbyint(x);
#else
  const double a = std::fabs(x);
  if (!(a < 4503599627370496.0)) return x;  // 2^52 and above are integers already; NaN stays NaN
  return std::copysign((a + 4503599627370496.0) - 4503599627370496.0, x);
#endif
}

struct PvGeometry {
  int n_fft, hop, bins;     // bins = n_fft/2 + 1
  int64_t n_frames;         // input frames per clip
  int64_t t_out_max;        // output frames allocated per clip
  // Layout of the increment / accumulated-phase array of a clip (bins · t_out_max values):
  // element (k, t) at k·stride_k + t·stride_t. The GPU uses (t_out_max, 1) so that each bin's
  // scan is one contiguous segment; the CPU uses (1, bins) so that its scan loop over t runs
  // over all bins of a frame at once, contiguously.
  int64_t stride_k, stride_t;

  GENRELAB_HD int64_t at(int64_t b, int64_t k, int64_t t) const {
    return b * int64_t(bins) * t_out_max + k * stride_k + t * stride_t;
  }

  GENRELAB_HD double phi(int k) const { return double(hop) * (2.0 * M_PI * double(k) / double(n_fft)); }
};

// polar[b, t, k] = (|D|, angle(D)) of every input bin, computed once (the advance and synthesis
// read each input bin several times). row = b·n_frames + t, col = k. Float precision, as numpy's
// abs/angle of librosa's complex64 STFT: stored as floats (the readers widen them to double
// exactly), half the bytes of double pairs.
struct PolarFunctor {
  const float* spec;   // spec: (batch, n_frames, bins, 2)
  float* polar;        // polar: (batch, n_frames, bins, 2) magnitude, angle
  int bins;

  GENRELAB_HD void operator()(int64_t row, int64_t k) const {
    const float* c = spec + 2 * (row * bins + k);
    float* o = polar + 2 * (row * bins + k);
    o[0] = std::sqrt(c[0] * c[0] + c[1] * c[1]);
    o[1] = std::atan2(c[1], c[0]);
  }
};

// Field f (0 magnitude, 1 angle) of input frame `frame` of a clip's polar array, as a double; zero
// past the end (librosa pads D with two zero columns).
GENRELAB_HD double pv_polar(const float* polar, int64_t frame, int64_t n_frames, int bins, int k, int f) {
  return frame < n_frames ? double(polar[2 * (frame * bins + k) + f]) : 0.0;
}

// incr[b, k, t] = phase increment after output frame t (0 for t ≥ t_out[b]). row = b·bins + k.
struct PhaseAdvanceFunctor {
  const float* polar;      // polar: (batch, n_frames, bins, 2) from PolarFunctor
  double* incr;            // incr: (batch, bins · t_out_max) laid out by g.stride_k, g.stride_t
  const double* rate;      // rate: (batch,)
  const int64_t* t_out;    // t_out: (batch,) output frames = ⌈n_frames / rate⌉
  PvGeometry g;

  GENRELAB_HD void operator()(int64_t row, int64_t t) const {
    const int64_t b = row / g.bins;
    const int k = int(row % g.bins);
    double v = 0.0;
    if (t < t_out[b]) {
      const double step = double(t) * rate[b];
      const int64_t i0 = int64_t(step);
      const float* s = polar + b * g.n_frames * g.bins * 2;
      const double phi = g.phi(k);
      double d = pv_polar(s, i0 + 1, g.n_frames, g.bins, k, 1) - pv_polar(s, i0, g.n_frames, g.bins, k, 1) - phi;
      d -= 2.0 * M_PI * round_half_even(d * (0.5 / M_PI));  // numpy.round
      v = phi + d;
    }
    incr[g.at(b, k, t)] = v;
  }
};

// out[b, t, k] = mag · e^{i·phase}, phase = angle(D[b, 0, k]) + acc[b, k, t] (acc = exclusive
// prefix sum of incr along t). The phase is reduced to [−π, π] in double precision, then its
// cosine and sine are taken in float (librosa itself keeps the phase in float32). row =
// b·t_out_max + t, col = k.
struct PvSynthFunctor {
  const float* polar;      // polar: (batch, n_frames, bins, 2) from PolarFunctor
  const double* acc;       // acc: (batch, bins · t_out_max) laid out by g.stride_k, g.stride_t
  float* out;              // out: (batch, t_out_max, bins, 2)
  const double* rate;      // rate: (batch,)
  const int64_t* t_out;    // t_out: (batch,)
  PvGeometry g;

  GENRELAB_HD void operator()(int64_t row, int64_t k) const {
    const int64_t b = row / g.t_out_max, t = row % g.t_out_max;
    float* o = out + 2 * (row * g.bins + k);
    if (t >= t_out[b] || g.n_frames == 0) { o[0] = 0.0f; o[1] = 0.0f; return; }
    const float* s = polar + b * g.n_frames * g.bins * 2;
    const double step = double(t) * rate[b];
    const int64_t i0 = int64_t(step);
    const double alpha = step - double(i0);
    const double mag = (1.0 - alpha) * pv_polar(s, i0, g.n_frames, g.bins, int(k), 0) +
                       alpha * pv_polar(s, i0 + 1, g.n_frames, g.bins, int(k), 0);
    double phase = pv_polar(s, 0, g.n_frames, g.bins, int(k), 1) + acc[g.at(b, k, t)];
    phase -= 2.0 * M_PI * round_half_even(phase * (0.5 / M_PI));
    const float ph = float(phase), m = float(mag);
    float sn, cs;
#if defined(__CUDA_ARCH__)
    sincosf(ph, &sn, &cs);
#else
    sn = std::sin(ph);
    cs = std::cos(ph);
#endif
    o[0] = m * cs;
    o[1] = m * sn;
  }
};

// Frames librosa.istft uses for an output of `length` samples (centred): ⌈(length + 2·⌊n_fft/2⌋)/hop⌉,
// at most the frames available.
GENRELAB_HD int64_t istft_frames(int64_t available, int64_t length, int n_fft, int hop) {
  const int64_t need = ceil_div<int64_t>(length + 2 * int64_t(n_fft / 2), hop);
  return need < available ? need : available;
}

// librosa.istft (centred, Hann window) as a gather: output sample j sums the windowed inverse
// FFTs of the frames that cover padded position p = j + n_fft/2 and divides by the sum of the
// squared window over those same frames (librosa.filters.window_sumsquare), where that sum
// exceeds the smallest normal float. Past `length[b]` (up to `stride`) it writes zeros, which is
// librosa.util.fix_length's padding. row = b, col = j.
struct OverlapAddFunctor {
  const float* frames;     // frames: (batch, t_out_max, n_fft) unnormalised inverse FFTs
  const float* window;     // window: (n_fft,)
  float* y;                // y: (batch, stride)
  const int64_t* t_out;    // t_out: (batch,) frames available
  const int64_t* length;   // length: (batch,) istft length
  int64_t t_out_max, stride;
  int n_fft, hop;

  GENRELAB_HD void operator()(int64_t b, int64_t j) const {
    float* yo = y + b * stride + j;
    if (j >= length[b]) { *yo = 0.0f; return; }
    const int64_t nfr = istft_frames(t_out[b], length[b], n_fft, hop);
    const int64_t p = j + n_fft / 2;
    int64_t f_hi = p / hop;
    if (f_hi > nfr - 1) f_hi = nfr - 1;
    const int64_t f_lo = p >= n_fft ? (p - n_fft) / hop + 1 : 0;
    double acc = 0.0, wss = 0.0;
    const float* fb = frames + b * t_out_max * n_fft;
    for (int64_t f = f_lo; f <= f_hi; ++f) {
      const int64_t k = p - f * hop;
      const double w = window[k];
      acc += w * double(fb[f * n_fft + k]);
      wss += w * w;
    }
    acc /= double(n_fft);
    if (float(wss) > FLT_MIN) acc /= double(float(wss));
    *yo = float(acc);
  }
};

// Band-limited resampling with per-row rates (pitch shift: from sr/rate back to sr), writing
// `n_out` samples per row with zeros past each row's resampled length (librosa.util.fix_length).
// The windowed sinc of ResampleFunctor, re-tabulated per rate as a polyphase bank
// (make_polyphase_bank): bank row p holds the taps for an output that falls p/phases of a sample
// after input sample k_base = ⌊t⌋, tap m weighting input k_base − half + m. An output blends
// the two neighbouring phase rows linearly; both dot products run over contiguous memory.
struct PolyphaseBank {
  int phases = 0;   // rows − 1
  int taps = 0;     // taps per row
  int half = 0;     // taps before k_base + 1
};

struct ResampleRowsFunctor {
  const float* x;            // x: (batch, x_stride), row b holds n_in[b] samples
  float* y;                  // y: (batch, n_out)
  const float* bank;         // bank: (batch, phases + 1, taps) per-row polyphase filters
  const int64_t* n_in;       // n_in: (batch,)
  const int64_t* n_valid;    // n_valid: (batch,) resampled length ⌈n_in·out/in⌉
  const double* step;        // step: (batch,) input samples per output sample
  int64_t x_stride, n_out;
  PolyphaseBank geo;

  GENRELAB_HD void operator()(int64_t b, int64_t j) const {
    float v = 0.0f;
    if (j < n_valid[b]) {
      const double t = double(j) * step[b];
      const int64_t kb = int64_t(std::floor(t));
      const double pos = (t - double(kb)) * geo.phases;
      int p = int(pos);
      if (p > geo.phases - 1) p = geo.phases - 1;
      const float w = float(pos - double(p));
      const float* f0 = bank + (b * int64_t(geo.phases + 1) + p) * geo.taps;
      const float* f1 = f0 + geo.taps;
      const int64_t first = kb - geo.half + 1;  // input index of tap 0
      int m0 = 0, m1 = geo.taps;
      if (first < 0) m0 = int(-first);
      if (first + m1 > n_in[b]) m1 = int(n_in[b] - first);
      const float* xr = x + b * x_stride + first;
      float a0 = 0.0f, a1 = 0.0f;
#if defined(_OPENMP) && !defined(__CUDA_ARCH__)
#pragma omp simd reduction(+ : a0, a1)
#endif
      for (int m = m0; m < m1; ++m) {
        a0 += f0[m] * xr[m];
        a1 += f1[m] * xr[m];
      }
      v = a0 + w * (a1 - a0);
    }
    y[b * n_out + j] = v;
  }
};

}  // namespace genrelab
