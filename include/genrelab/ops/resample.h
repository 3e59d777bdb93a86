// Band-limited resampling by a Kaiser-windowed sinc, in gather form: one functor call computes
// one output sample from the input taps around its position. Used to decode clips at another
// rate and to bring time-stretched audio back to length in the pitch shift. The filter is
// tabulated on the host (ResampleFilter) and passed to the functor by pointer.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "genrelab/common.h"
#include "genrelab/ops/philox.h"

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
// The same table, made once per design and kept for the process.
const std::vector<float>& resample_table(const ResampleFilterDesign& design);

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

// Tap m of row p of that bank: scale · h(|p/phases + half − 1 − m| · scale zero crossings), h
// the table (`last` = zeros · per points, then 0) interpolated linearly. Each operation rounds
// once on host and device alike (ops::exact), so both backends build the same bank bit for bit.
GENRELAB_HD float polyphase_tap(const float* table, int64_t last, int per, double scale, int phases, int half, int p,
                                int m) {
  const double off = exact::add(double(p) / phases, double(half - 1 - m));  // t − k for this tap
  const double u = exact::mul(exact::mul(std::fabs(off), scale), double(per));
  const int64_t i = int64_t(u);
  if (i >= last) return 0.0f;
  const float rise = table[i + 1] - table[i];
  return float(exact::mul(exact::add(double(table[i]), exact::mul(exact::add(u, -double(i)), double(rise))), scale));
}

// The banks of a batch of rows, one filter scale each, in gather form: call (row b, i) writes
// tap i % taps of row i / taps of row b's bank. All rows share `taps` = 2 · half (the widest
// row's; a narrower filter's extra taps are zeros).
struct PolyphaseBankFunctor {
  const float* table;   // table: (last + 2), resample_table's
  const double* scale;  // scale: (batch,)
  float* bank;          // bank: (batch, phases + 1, taps)
  int64_t last;         // zeros · per
  int per, phases, half;

  // The functor for `design`'s filter (table: resample_table(design), host or device copy).
  static PolyphaseBankFunctor of(const ResampleFilterDesign& design, const float* table, const double* scale,
                                 float* bank, int phases, int half) {
    return {table,  scale, bank, int64_t(design.zero_crossings) * design.per_crossing, design.per_crossing,
            phases, half};
  }

  GENRELAB_HD void operator()(int64_t b, int64_t i) const {
    const int taps = 2 * half;
    const int p = int(i / taps), m = int(i - int64_t(p) * taps);
    bank[b * int64_t(phases + 1) * taps + i] = polyphase_tap(table, last, per, scale[b], phases, half, p, m);
  }
};

// The same filter in polyphase form, for a rational ratio out_rate / in_rate = up / down (lowest
// terms): output j sits at input position (j·down) / up = base + phase / up, and row `phase` of
// `coef` holds the (scaled) filter taps for inputs base - left .. base - left + taps - 1. The taps
// are the table interpolation ResampleFunctor evaluates, computed once per phase instead of once
// per output sample, so both give the same result up to float rounding of the taps (≈1e-7).
struct PolyphaseResampleFunctor {
  const float* x;     // x: (batch, n_in)
  float* y;           // y: (batch, n_out)
  const float* coef;  // coef: (up, taps)
  int64_t n_in, n_out, up, down;
  int taps, left;

  GENRELAB_HD void operator()(int64_t row, int64_t j) const {
    const int64_t pos = j * down;
    const int64_t base = pos / up, phase = pos - base * up;
    const int64_t k0 = base - left;
    const float* c = coef + phase * taps;
    const float* xr = x + row * n_in;
    // Four partial sums: independent chains the compiler can overlap.
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    if (k0 >= 0 && k0 + taps <= n_in) {
      const float* xs = xr + k0;
      int m = 0;
      for (; m + 4 <= taps; m += 4) {
        a0 += c[m] * xs[m];
        a1 += c[m + 1] * xs[m + 1];
        a2 += c[m + 2] * xs[m + 2];
        a3 += c[m + 3] * xs[m + 3];
      }
      for (; m < taps; ++m) a0 += c[m] * xs[m];
    } else {  // near the edges: inputs outside the signal count as zero
      for (int m = 0; m < taps; ++m) {
        const int64_t k = k0 + m;
        if (k >= 0 && k < n_in) a0 += c[m] * xr[k];
      }
    }
    y[row * n_out + j] = (a0 + a1) + (a2 + a3);
  }
};

// Polyphase taps for in_rate → out_rate when both are integers whose reduced ratio has
// up <= max_up; otherwise `up` is 0 (use ResampleFunctor).
struct PolyphasePlan {
  int64_t up = 0, down = 0;
  int taps = 0, left = 0;
  std::vector<float> coef;  // coef: (up, taps)
};
PolyphasePlan make_polyphase_plan(double in_rate, double out_rate, const ResampleFilterDesign& design = {},
                                  int64_t max_up = 4096);

// CPU resampling of one signal: the polyphase functor for integer rates with a small reduced ratio
// (e.g. 44100 → 22050, 48000 → 22050, 16000 → 22050), the general functor otherwise.
std::vector<float> resample(const std::vector<float>& x, double in_rate, double out_rate,
                            const ResampleFilterDesign& design = {});
// The general functor only (any ratio); the reference the polyphase path is tested against.
std::vector<float> resample_direct(const std::vector<float>& x, double in_rate, double out_rate,
                                   const ResampleFilterDesign& design = {});

}  // namespace genrelab
