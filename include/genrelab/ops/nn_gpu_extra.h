// Element-wise work of the GPU network that cuDNN and cuBLAS do not cover, as gather functors
// (one call = one output element) so CPU tests run the same arithmetic: asymmetric padding copies
// (Keras "same" pads the odd element bottom/right, cuDNN only symmetrically), average pooling that
// counts only valid elements, max pooling that keeps its argmax for a one-pass backward, global average pooling, batch-norm moving statistics, and the clip
// scale read from device memory (so the clip-norm step never synchronises the host).
#pragma once

#include <cmath>
#include <cstdint>

#include "genrelab/common.h"
#include "genrelab/ops/lanes.h"

namespace genrelab::ops {

// out (n, h + pad_top + pad_bottom, w + pad_left + pad_right, c) = in (n, h, w, c) placed at
// (pad_top, pad_left), `fill` elsewhere (0 for convolution, −inf for max pooling).
template <typename T>
struct PadNhwc {
  const T* in;
  T* out;
  int64_t h, w, c;  // input spatial size and channels
  int64_t hp, wp;   // padded size
  int64_t top, left;
  T fill;
  GENRELAB_HD void operator()(int64_t i) const {
    const Coords4 pos = unravel4(i, c, wp, hp);  // (n, hp, wp, c)
    const int64_t cc = pos.i0, xw = pos.i1, xh = pos.i2, nn = pos.i3;
    const int64_t sh = xh - top, sw = xw - left;
    out[i] = (sh >= 0 && sh < h && sw >= 0 && sw < w) ? in[((nn * h + sh) * w + sw) * c + cc] : fill;
  }
};

// out (n, h, w, c) = in (n, hp, wp, c) cut at (top, left): the inverse of PadNhwc, used to bring
// the gradient of a padded input back to the unpadded one.
template <typename T>
struct CropNhwc {
  const T* in;
  T* out;
  int64_t h, w, c, hp, wp, top, left;
  GENRELAB_HD void operator()(int64_t i) const {
    const Coords4 pos = unravel4(i, c, w, h);  // (n, h, w, c)
    const int64_t cc = pos.i0, xw = pos.i1, xh = pos.i2, nn = pos.i3;
    out[i] = in[((nn * hp + xh + top) * wp + xw + left) * c + cc];
  }
};

// Window geometry of a pooling layer on an unpadded input; pads are Keras's (top/left the smaller).
struct PoolGeom {
  int64_t h, w, c, oh, ow, kh, kw, sh, sw, top, left;

  // The windows that contain an input cell, [lo, hi] along one axis: o·stride − pad ≤ i <
  // o·stride − pad + k, clipped to the output. For the backward gathers.
  struct Span { int64_t lo, hi; };
  GENRELAB_HD static Span covering(int64_t i, int64_t pad, int64_t k, int64_t stride, int64_t out) {
    const int64_t p = i + pad;
    return {p - k + 1 > 0 ? ceil_div(p - k + 1, stride) : 0, p / stride < out - 1 ? p / stride : out - 1};
  }
  GENRELAB_HD Span rows_covering(int64_t yy) const { return covering(yy, top, kh, sh, oh); }
  GENRELAB_HD Span cols_covering(int64_t xx) const { return covering(xx, left, kw, sw, ow); }

  // Output element o = (n, oy, ox, c) of a window layer: its window's top-left input cell
  // (y0, x0), possibly in the padding, and the in-bounds part of it, rows [a0, a1) and columns
  // [b0, b1) as offsets within the window.
  struct Window { int64_t n, c, y0, x0, a0, a1, b0, b1; };
  GENRELAB_HD Window window_of_output(int64_t o) const {
    const Coords4 pos = unravel4(o, c, ow, oh);  // (n, oh, ow, c)
    const int64_t y0 = pos.i2 * sh - top, x0 = pos.i1 * sw - left;
    return {pos.i3, pos.i0, y0, x0, y0 < 0 ? -y0 : 0, y0 + kh < h ? kh : h - y0,
            x0 < 0 ? -x0 : 0, x0 + kw < w ? kw : w - x0};
  }
};

// Keras/TensorFlow average pooling: the mean over the window's elements that lie inside the
// input (padding is not counted). y: (n, oh, ow, c); x: (n, h, w, c).
template <typename T>
struct AvgPoolForward {
  const T* x;
  T* y;
  PoolGeom g;
  GENRELAB_HD void operator()(int64_t i) const {
    const Coords4 pos = unravel4(i, g.c, g.ow, g.oh);  // (n, oh, ow, c)
    const int64_t cc = pos.i0, ox = pos.i1, oy = pos.i2, nn = pos.i3;
    const int64_t y0 = oy * g.sh - g.top, x0 = ox * g.sw - g.left;
    T sum = T(0);
    int64_t count = 0;
    for (int64_t a = 0; a < g.kh; ++a) {
      const int64_t yy = y0 + a;
      if (yy < 0 || yy >= g.h) continue;
      for (int64_t b = 0; b < g.kw; ++b) {
        const int64_t xx = x0 + b;
        if (xx < 0 || xx >= g.w) continue;
        sum += x[((nn * g.h + yy) * g.w + xx) * g.c + cc];
        ++count;
      }
    }
    y[i] = count ? sum / T(count) : T(0);
  }
};

// dx (n, h, w, c): each input element gathers dy / count over the windows that contain it.
template <typename T>
struct AvgPoolBackward {
  const T* dy;
  T* dx;
  PoolGeom g;
  GENRELAB_HD int64_t count(int64_t oy, int64_t ox) const {
    const int64_t y0 = oy * g.sh - g.top, x0 = ox * g.sw - g.left;
    const int64_t ch = (y0 + g.kh < g.h ? y0 + g.kh : g.h) - (y0 > 0 ? y0 : 0);
    const int64_t cw = (x0 + g.kw < g.w ? x0 + g.kw : g.w) - (x0 > 0 ? x0 : 0);
    return ch * cw;
  }
  GENRELAB_HD void operator()(int64_t i) const {
    const Coords4 pos = unravel4(i, g.c, g.w, g.h);  // (n, h, w, c)
    const int64_t cc = pos.i0, xx = pos.i1, yy = pos.i2, nn = pos.i3;
    const PoolGeom::Span rows = g.rows_covering(yy), cols = g.cols_covering(xx);
    T sum = T(0);
    for (int64_t oy = rows.lo; oy <= rows.hi; ++oy)
      for (int64_t ox = cols.lo; ox <= cols.hi; ++ox)
        sum += dy[((nn * g.oh + oy) * g.ow + ox) * g.c + cc] / T(count(oy, ox));
    dx[i] = sum;
  }
};

// Pooling moves four consecutive channels as one access (ops/lanes.h) where it can. The max-pooling
// forward and per-window backward are bound by their index arithmetic, not by memory, with one
// call per element (H200: the baseline's second pooling forward at 72 % of SM throughput and 21 %
// of memory throughput). L = 4 needs the channels in multiples of 4 and 16-byte aligned floats
// (4-byte aligned argmax bytes): pool_lanes().
// The channels a pooling call takes: 4 when the layer's buffers allow it, else 1.
inline int pool_lanes(int64_t channels, const void* x, const void* y, const void* argmax) {
  auto aligned = [](const void* p, uintptr_t a) { return !p || reinterpret_cast<uintptr_t>(p) % a == 0; };
  return channels % 4 == 0 && aligned(x, 16) && aligned(y, 16) && aligned(argmax, 4) ? 4 : 1;
}

// Keras/TensorFlow max pooling: the max over the window's elements inside the input (padding never
// wins). With `argmax` set (training), also records the row-major offset a·kw + b of the window's
// first maximum, the element TensorFlow's gradient goes to; MaxPoolBackward reads it back instead
// of re-reading x (1 byte per output instead of kh·kw floats). Windows have at most 256 elements.
// An all-NaN window gives −inf and offset of its first in-bounds element, like the CPU layer.
// One call per L channels of an output (n, oy, ox, c … c + L − 1): call q starts at element L·q.
template <int L>
struct MaxPoolForward {
  const float* x;
  float* y;
  uint8_t* argmax;  // argmax: (n, oh, ow, c) or nullptr
  PoolGeom g;
  GENRELAB_HD void operator()(int64_t q) const {
    const int64_t i = L * q;
    const PoolGeom::Window win = g.window_of_output(i);
    Lanes<float, L> best;
    Lanes<uint8_t, L> at;
    for (int l = 0; l < L; ++l) {
      best.v[l] = -INFINITY;
      at.v[l] = uint8_t(win.a0 * g.kw + win.b0);
    }
    for (int64_t a = win.a0; a < win.a1; ++a) {
      const float* row = x + ((win.n * g.h + win.y0 + a) * g.w + win.x0) * g.c + win.c;
      for (int64_t b = win.b0; b < win.b1; ++b) {
        const auto v = load_lanes<Lanes<float, L>>(row + b * g.c);
        for (int l = 0; l < L; ++l)
          if (v.v[l] > best.v[l]) {
            best.v[l] = v.v[l];
            at.v[l] = uint8_t(a * g.kw + b);
          }
      }
    }
    store_lanes(y + i, best);
    if (argmax) store_lanes(argmax + i, at);
  }
};

// dx (n, h, w, c): each input element gathers dy of the windows whose recorded maximum it is
// (windows in ascending (oy, ox) order, the order of the CPU layer's scatter, so sums agree).
template <typename T>
struct MaxPoolBackward {
  const T* dy;
  const uint8_t* argmax;  // argmax: (n, oh, ow, c) from the training forward
  T* dx;
  PoolGeom g;
  GENRELAB_HD void operator()(int64_t i) const {
    const Coords4 pos = unravel4(i, g.c, g.w, g.h);  // (n, h, w, c)
    const int64_t cc = pos.i0, xx = pos.i1, yy = pos.i2, nn = pos.i3;
    const PoolGeom::Span rows = g.rows_covering(yy), cols = g.cols_covering(xx);
    T sum = T(0);
    for (int64_t oy = rows.lo; oy <= rows.hi; ++oy)
      for (int64_t ox = cols.lo; ox <= cols.hi; ++ox) {
        const int64_t o = ((nn * g.oh + oy) * g.ow + ox) * g.c + cc;
        const int64_t offset = (yy + g.top - oy * g.sh) * g.kw + (xx + g.left - ox * g.sw);
        if (int64_t(argmax[o]) == offset) sum += dy[o];
      }
    dx[i] = sum;
  }
};

// The same gradient for windows that do not overlap (stride ≥ size, the usual case), one call per
// window (n, oy, ox) and L channels: it owns the window's in-bounds cells and writes dy to the
// recorded maximum, 0 to the others. A quarter of the calls of MaxPoolBackward for 2×2 windows, and no
// search for covering windows (the gather form's index arithmetic, not memory, bounded it: 6.5 ms
// against 4.8 ms for cuDNN on the baseline's first pooling layer, H200). Cells outside every
// window (what floor division leaves at the bottom/right) must be zeroed first unless
// covers_input().
template <int L>
struct MaxPoolBackwardDisjoint {
  const float* dy;
  const uint8_t* argmax;  // argmax: (n, oh, ow, c) from the training forward
  float* dx;              // dx: (n, h, w, c)
  PoolGeom g;
  GENRELAB_HD static bool applies(const PoolGeom& g) { return g.sh >= g.kh && g.sw >= g.kw; }
  GENRELAB_HD static bool covers_input(const PoolGeom& g) {
    return g.sh == g.kh && g.sw == g.kw && g.top >= 0 && g.left >= 0 && g.oh * g.sh - g.top >= g.h &&
           g.ow * g.sw - g.left >= g.w;
  }
  GENRELAB_HD void operator()(int64_t q) const {  // the window's L channels starting at element L·q
    const int64_t o = L * q;
    const PoolGeom::Window win = g.window_of_output(o);
    const auto v = load_lanes<Lanes<float, L>>(dy + o);
    const auto at = load_lanes<Lanes<uint8_t, L>>(argmax + o);
    for (int64_t a = win.a0; a < win.a1; ++a) {
      float* row = dx + ((win.n * g.h + win.y0 + a) * g.w + win.x0) * g.c + win.c;
      for (int64_t b = win.b0; b < win.b1; ++b) {
        const int64_t cell = a * g.kw + b;
        Lanes<float, L> d;
        for (int l = 0; l < L; ++l) d.v[l] = cell == int64_t(at.v[l]) ? v.v[l] : 0.0f;
        store_lanes(row + b * g.c, d);
      }
    }
  }
};

// y (n, c) = mean of x (n, hw, c) over the hw positions.
template <typename T>
struct GlobalAvgPoolForward {
  const T* x;
  T* y;
  int64_t hw, c;
  GENRELAB_HD void operator()(int64_t i) const {
    const int64_t nn = i / c, cc = i % c;
    T sum = T(0);
    for (int64_t p = 0; p < hw; ++p) sum += x[(nn * hw + p) * c + cc];
    y[i] = sum / T(hw);
  }
};

// dx (n, hw, c) = dy (n, c) / hw.
template <typename T>
struct GlobalAvgPoolBackward {
  const T* dy;
  T* dx;
  int64_t hw, c;
  GENRELAB_HD void operator()(int64_t i) const {
    const int64_t cc = i % c, nn = i / (hw * c);
    dx[i] = dy[nn * c + cc] / T(hw);
  }
};

// Keras moving statistics from this batch's mean and variance over m = n·h·w values per channel:
// moving = momentum·moving + (1 − momentum)·batch, with the biased (divide by m) batch variance.
// `batch_var_unbiased` holds cuDNN's running-variance output with an averaging factor of 1 (the
// batch variance with Bessel's correction, m/(m − 1)), so the biased one is it · (m − 1)/m;
// null when m = 1 (the biased variance is then 0, the unbiased one undefined).
template <typename T>
struct BatchNormMoving {
  T* moving_mean;
  T* moving_var;
  const T* batch_mean;
  const T* batch_var_unbiased;
  T momentum;
  T unbias_to_bias;  // (m − 1) / m
  GENRELAB_HD void operator()(int64_t c) const {
    moving_mean[c] = momentum * moving_mean[c] + (T(1) - momentum) * batch_mean[c];
    const T var = batch_var_unbiased ? batch_var_unbiased[c] * unbias_to_bias : T(0);
    moving_var[c] = momentum * moving_var[c] + (T(1) - momentum) * var;
  }
};

// out[r·out_r + c·out_c] (+)= in[r·in_r + c·in_c] over a rows × cols index space, one output
// element per call (the mapping must be one-to-one): moves gate blocks between Keras recurrent
// kernels (in, G·units) and cuDNN's per-gate (units, in) matrices, in either direction.
template <typename T>
struct StridedCopy2d {
  const T* in;
  T* out;
  int64_t cols;
  int64_t in_r, in_c, out_r, out_c;
  bool accumulate;
  GENRELAB_HD void operator()(int64_t i) const {
    const int64_t r = i / cols, c = i % cols;
    const T v = in[r * in_r + c * in_c];
    T& o = out[r * out_r + c * out_c];
    o = accumulate ? o + v : v;
  }
};

// The recurrent layers' time axis (see nn/model.h): seq (T, n, F) time-major, the layout cuDNN's
// packed RNN data takes, from x (n, h, T, c) with F = h·c, seq[t][e][hh·c + cc] = x[e][hh][t][cc].
template <typename T>
struct RnnGatherSequence {
  const T* x;
  T* seq;
  int64_t n, h, steps, c;
  GENRELAB_HD void operator()(int64_t i) const {
    const int64_t F = h * c;
    const int64_t f = i % F, e = (i / F) % n, t = i / (F * n);
    seq[i] = x[((e * h + f / c) * steps + t) * c + f % c];
  }
};

// The inverse: dx (n, h, T, c) from dseq (T, n, F).
template <typename T>
struct RnnScatterSequence {
  const T* seq;
  T* x;
  int64_t n, h, steps, c;
  GENRELAB_HD void operator()(int64_t i) const {
    const int64_t cc = i % c, t = (i / c) % steps, hh = (i / (c * steps)) % h, e = i / (c * steps * h);
    x[i] = seq[(t * n + e) * (h * c) + hh * c + cc];
  }
};

}  // namespace genrelab::ops
