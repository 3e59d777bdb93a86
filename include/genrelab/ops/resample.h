// Band-limited resampling by a Kaiser-windowed sinc, in gather form: one functor call computes
// one output sample from the input taps around its position. Used to decode clips at another
// rate and to bring time-stretched audio back to length in the pitch shift. The filter is
// tabulated on the host (ResampleFilter) and passed to the functor by pointer.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "genrelab/common.h"

namespace genrelab {

// Filter design: `zero_crossings` lobes each side, `per_crossing` table points per lobe,
// Kaiser window with `beta`, passband `rolloff` of the lower Nyquist frequency.
struct ResampleFilterDesign {
  int zero_crossings = 32;
  int per_crossing = 512;
  double beta = 9.0;
  double rolloff = 0.945;
};

// table[k] = windowed sinc at offset k / per_crossing zero crossings, k = 0 .. zeros*per+1.
std::vector<float> make_resample_table(const ResampleFilterDesign& design);

// Output length for n input samples: ceil(n * out_rate / in_rate).
int64_t resampled_length(int64_t n, double in_rate, double out_rate);

// The band-limited value of x (n_in samples) at input position t, for a filter `scale`
// (rolloff · min(1, out_rate / in_rate)): the table-interpolated windowed sinc summed over the
// taps within `zeros / scale` samples of t.
GENRELAB_HD float resample_at(const float* x, int64_t n_in, double t, double scale, const float* table, int zeros,
                              int per) {
  const double reach = zeros / scale;  // taps on each side
  int64_t k0 = int64_t(std::ceil(t - reach)), k1 = int64_t(std::floor(t + reach));
  if (k0 < 0) k0 = 0;
  if (k1 > n_in - 1) k1 = n_in - 1;
  double acc = 0.0;
  for (int64_t k = k0; k <= k1; ++k) {
    const double u = std::fabs(t - double(k)) * scale * per;  // table position
    const int64_t i = int64_t(u);
    if (i >= int64_t(zeros) * per) continue;
    const double frac = u - double(i);
    const double h = table[i] + frac * (table[i + 1] - table[i]);
    acc += h * x[k];
  }
  return float(acc * scale);
}

struct ResampleFunctor {
  const float* x;      // x: (batch, n_in)
  float* y;            // y: (batch, n_out)
  const float* table;  // (zeros * per + 2)
  int64_t n_in, n_out;
  double step;         // input samples per output sample = in_rate / out_rate
  double scale;        // filter scale = rolloff * min(1, out_rate / in_rate)
  int zeros, per;

  // One output sample (row = clip, col = output index).
  GENRELAB_HD void operator()(int64_t row, int64_t j) const {
    y[row * n_out + j] = resample_at(x + row * n_in, n_in, double(j) * step, scale, table, zeros, per);
  }
};

// A polyphase bank of the windowed sinc for one filter `scale` (rolloff · min(1, out/in)):
// (phases + 1) rows of 2·half floats; row p, tap m = scale · h((p/phases + half − 1 − m)·scale),
// the weight of input ⌊t⌋ − half + 1 + m for an output at t = ⌊t⌋ + p/phases. h is the tabulated
// windowed sinc (zero beyond `zeros` crossings). `half` must be at least polyphase_half(design,
// scale) (a batch of rates shares the largest).
int polyphase_half(const ResampleFilterDesign& design, double scale);
std::vector<float> make_polyphase_bank(const ResampleFilterDesign& design, double scale, int phases, int half);

// CPU resampling of one signal (the functor looped over on the host).
std::vector<float> resample(const std::vector<float>& x, double in_rate, double out_rate,
                            const ResampleFilterDesign& design = {});

}  // namespace genrelab
