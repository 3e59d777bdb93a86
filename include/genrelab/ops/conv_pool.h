// A first conv2d layer fused with the max pool after it (train.fuse_conv_pool), shared by both
// backends in gather form. The baseline's first conv (1 input channel, 2×2 kernel, 64 filters on
// 128×1206) writes 1.25 GB per batch of 32 that the pool reads back and halves twice: pure memory
// traffic. Fused, the forward computes each pooled output from the input (a few multiply-adds
// per window cell) and writes only the pooled map; the backward recomputes the window to find its
// argmax and sums the weight and bias gradients, so the conv output is never stored.
//
// Same semantics as conv2d (its activation, bias and Keras padding) followed by maxpool2d: every
// window cell is the conv layer's output act(z + b) (z rounded to the 16-bit format first under
// bf16/fp16, as cuDNN writes it), the pooled value is the first maximum in row-major order (cells
// outside the conv map do not count), and the gradient flows to that cell only. The conv's sum
// runs over (a, b, c) in kernel order, in float32 from the rounded operands.
#pragma once

#include <cmath>
#include <cstdint>

#include "genrelab/common.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_activation.h"

namespace genrelab::ops {

// The largest kernel volume kh·kw·c fused: the backward keeps that many sums per thread.
inline constexpr int kConvPoolMaxK = 16;

struct ConvPoolGeom {
  int32_t h = 0, w = 0, c = 0, f = 0;                       // input (h, w, c), filters f
  int32_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;  // conv kernel, stride, dilation
  int32_t top = 0, left = 0;                                // conv padding before the first row / column
  int32_t oh = 0, ow = 0;                                   // conv output map
  int32_t ph = 1, pw = 1, psh = 1, psw = 1;                 // pool window and stride
  int32_t ptop = 0, pleft = 0;                              // pool padding
  int32_t qh = 0, qw = 0;                                   // pooled map
  GENRELAB_HD int32_t k() const { return kh * kw * c; }
};

// Calls f(xs, k0) for each kernel tap (a, b) of conv output (yy, xx) of example e that falls
// inside the input: xs = the input's c channels there, k0 = (a·kw + b)·c, the tap's first index
// into a filter's kernel (padding taps are skipped: they add zeros).
template <typename F>
GENRELAB_HD void for_each_input_tap(const ConvPoolGeom& g, const float* x, int64_t e, int32_t yy, int32_t xx, F&& f) {
  for (int32_t a = 0; a < g.kh; ++a) {
    const int32_t iy = yy * g.sh - g.top + a * g.dh;
    if (iy < 0 || iy >= g.h) continue;
    for (int32_t b = 0; b < g.kw; ++b) {
      const int32_t ix = xx * g.sw - g.left + b * g.dw;
      if (ix < 0 || ix >= g.w) continue;
      f(x + ((e * g.h + iy) * g.w + ix) * g.c, (a * g.kw + b) * g.c);
    }
  }
}

// One cell of the conv layer's output: act(round(Σ x·W) + b) at (e, y, x) for filter fi.
// x: (n, h, w, c); kernel: (f, kh, kw, c); bias: (f) or null.
struct ConvPoolCell {
  ConvPoolGeom g;
  const float* x;
  const float* kernel;
  const float* bias;
  int act;
  float alpha;
  int half;  // ops::kHalf*: operands and z rounded to it
  GENRELAB_HD float operator()(int64_t e, int32_t yy, int32_t xx, int32_t fi) const {
    float z = 0.0f;
    const float* wf = kernel + int64_t(fi) * g.k();
    const int h = half;
    const int32_t channels = g.c;
    for_each_input_tap(g, x, e, yy, xx, [&](const float* xs, int32_t k0) {
      for (int32_t ci = 0; ci < channels; ++ci) z += round_to_half(xs[ci], h) * round_to_half(wf[k0 + ci], h);
    });
    z = round_to_half(z, half);
    return activate<float>(act, bias ? z + bias[fi] : z, alpha);
  }
  // The pooled window of output (qy, qx): conv rows [y0, y1) and columns [x0, x1), clipped.
  GENRELAB_HD void window(int32_t qy, int32_t qx, int32_t& y0, int32_t& y1, int32_t& x0, int32_t& x1) const {
    y0 = qy * g.psh - g.ptop;
    x0 = qx * g.psw - g.pleft;
    y1 = y0 + g.ph < g.oh ? y0 + g.ph : g.oh;
    x1 = x0 + g.pw < g.ow ? x0 + g.pw : g.ow;
    y0 = y0 > 0 ? y0 : 0;
    x0 = x0 > 0 ? x0 : 0;
  }
  // The window's first maximum (row-major, strict >): its value and cell (−1 when every cell is
  // NaN or the window is empty: the pool then outputs −∞ and passes no gradient).
  GENRELAB_HD float window_max(int64_t e, int32_t qy, int32_t qx, int32_t fi, int32_t& at_y, int32_t& at_x) const {
    int32_t y0, y1, x0, x1;
    window(qy, qx, y0, y1, x0, x1);
    float best = -INFINITY;
    at_y = at_x = -1;
    for (int32_t yy = y0; yy < y1; ++yy)
      for (int32_t xx = x0; xx < x1; ++xx) {
        const float v = (*this)(e, yy, xx, fi);
        if (v > best) {
          best = v;
          at_y = yy;
          at_x = xx;
        }
      }
    return best;
  }
};

// The GPU backward gives each thread a span of kConvPoolSpan pooled positions and launches at
// most 65 535 · 8 rows of them (cuda/launch.cuh's 2-D grid), so one example's qh·qw may not
// exceed kConvPoolMaxPositions.
constexpr int64_t kConvPoolSpan = 64;
constexpr int64_t kConvPoolMaxPositions = int64_t(65535) * 8 * kConvPoolSpan;

// Callers launch (or loop over) chunks of examples whose index spaces stay below 2^31, so that
// the index arithmetic below runs in 32 bits (a 64-bit division costs several times as much).
inline int64_t conv_pool_examples_per_launch(const ConvPoolGeom& g) {
  const int64_t per_example = int64_t(g.qh) * g.qw * g.f;
  const int64_t m = ((int64_t(1) << 31) - 1) / (per_example > 0 ? per_example : 1);
  return m > 0 ? m : 1;
}

// Forward: y (n, qh, qw, f) = the pooled conv layer output. One call per output element
// (i < 2^31: see conv_pool_examples_per_launch).
struct ConvPoolForward {
  ConvPoolCell cell;
  float* y;
  GENRELAB_HD void operator()(int64_t i) const {
    const ConvPoolGeom& g = cell.g;
    const uint32_t u = uint32_t(i), f = uint32_t(g.f), qw = uint32_t(g.qw), qh = uint32_t(g.qh);
    const uint32_t r = u / f, t = r / qw;
    int32_t ay, ax;
    y[i] = cell.window_max(int64_t(t / qh), int32_t(t % qh), int32_t(r % qw), int32_t(u % f), ay, ax);
  }
};

// Backward, first stage: the weight and bias gradient sums of one filter over one chunk of
// `span` pooled positions (e, qy, qx) in order. dy: (n, qh, qw, f) the gradient of the pooled
// output. partial: (chunks, f, k + 1), per filter the k kernel sums then the bias sum. The
// gradient at a window's argmax is dz = dy · act'(cell value); the bias sum takes dz in float32,
// the kernel sums take dz and x rounded to the 16-bit format (cuDNN's 16-bit dz and x).
struct ConvPoolGradPartial {
  ConvPoolCell cell;
  const float* dy;
  int64_t positions;  // n · qh · qw (positions · f < 2^31: see conv_pool_examples_per_launch)
  int64_t span;
  float* partial;
  GENRELAB_HD void operator()(int64_t chunk, int64_t fcol) const {
    const ConvPoolGeom& g = cell.g;
    const int32_t fi = int32_t(fcol);
    const int32_t K = g.k();
    float acc[kConvPoolMaxK + 1];
    for (int32_t k = 0; k <= kConvPoolMaxK; ++k) acc[k] = 0.0f;
    const int64_t p1 = (chunk + 1) * span < positions ? (chunk + 1) * span : positions;
    for (int64_t p = chunk * span; p < p1; ++p) {
      const float d = dy[p * g.f + fi];
      if (d == 0.0f) continue;  // dropout's zeros and relu's dead windows: nothing to add
      const uint32_t u = uint32_t(p), qw = uint32_t(g.qw), qh = uint32_t(g.qh), r = u / qw;
      const int32_t qx = int32_t(u % qw), qy = int32_t(r % qh);
      const int64_t e = int64_t(r / qh);
      int32_t ay, ax;
      const float best = cell.window_max(e, qy, qx, fi, ay, ax);
      if (ay < 0) continue;
      const float dz = d * activation_grad<float>(cell.act, best, cell.alpha);
      acc[K] += dz;
      const float dzr = round_to_half(dz, cell.half);
      const int h = cell.half;
      const int32_t channels = g.c;
      for_each_input_tap(g, cell.x, e, ay, ax, [&](const float* xs, int32_t k0) {
        for (int32_t ci = 0; ci < channels; ++ci) acc[k0 + ci] += dzr * round_to_half(xs[ci], h);
      });
    }
    float* out = partial + (chunk * g.f + fi) * (K + 1);
    for (int32_t k = 0; k <= K; ++k) out[k] = acc[k];
  }
};

// Backward, last stage, after the chunks' sums were added up (sums: (f, k + 1)): adds them to the
// conv layer's gradients. The kernel sums are rounded to the 16-bit format once (cuDNN's 16-bit
// dW). grad_kernel: (f, k); grad_bias: (f) or null. One call per (filter, k + 1) entry.
struct ConvPoolGradFinish {
  const float* sums;
  int32_t k;
  int half;
  float* grad_kernel;
  float* grad_bias;
  GENRELAB_HD void operator()(int64_t i) const {
    const int64_t fi = i / (k + 1), j = i % (k + 1);
    if (j < k) grad_kernel[fi * k + j] += round_to_half(sums[i], half);
    else if (grad_bias) grad_bias[fi] += sums[i];
  }
};

}  // namespace genrelab::ops
