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
//
// The work per tap is one multiply-add, so the functors are written for few instructions per tap:
// the kernel volume K and the 16-bit format H are template parameters (with_conv_pool_shape picks
// them), a thread keeps its filter's K taps (and, backward, its K sums) in registers, and each
// tap's offset into the input comes from a table (ConvPoolGeom::tap_off), not from index
// arithmetic per tap. Bounds are checked per tap only when the conv pads.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

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
  // Set by set_taps(), per kernel tap k = (a·kw + b)·c + ci: its input row and column offsets
  // a·dh and b·dw from the conv cell's first tap, and its offset (a·dh·w + b·dw)·c + ci into x.
  int32_t tap_dy[kConvPoolMaxK] = {}, tap_dx[kConvPoolMaxK] = {}, tap_off[kConvPoolMaxK] = {};
  bool padded = true;  // some conv cell has a tap outside the input (set_taps())
  GENRELAB_HD int32_t k() const { return kh * kw * c; }
  void set_taps() {
    for (int32_t a = 0; a < kh; ++a)
      for (int32_t b = 0; b < kw; ++b)
        for (int32_t ci = 0; ci < c; ++ci) {
          const int32_t t = (a * kw + b) * c + ci;
          tap_dy[t] = a * dh;
          tap_dx[t] = b * dw;
          tap_off[t] = (a * dh * w + b * dw) * c + ci;
        }
    padded = top > 0 || left > 0 || int64_t(oh - 1) * sh + int64_t(kh - 1) * dh >= h ||
             int64_t(ow - 1) * sw + int64_t(kw - 1) * dw >= w;
  }
};

// The conv layer and pool as the functors see them. x: (n, h, w, c); kernel: (f, kh, kw, c);
// bias: (f) or null.
struct ConvPoolCell {
  ConvPoolGeom g;
  const float* x;
  const float* kernel;
  const float* bias;
  int act;
  float alpha;
  int half;  // ops::kHalf*: operands and z rounded to it

  // The pooled window of output (qy, qx): conv rows [y0, y1) and columns [x0, x1), clipped.
  GENRELAB_HD void window(int32_t qy, int32_t qx, int32_t& y0, int32_t& y1, int32_t& x0, int32_t& x1) const {
    y0 = qy * g.psh - g.ptop;
    x0 = qx * g.psw - g.pleft;
    y1 = y0 + g.ph < g.oh ? y0 + g.ph : g.oh;
    x1 = x0 + g.pw < g.ow ? x0 + g.pw : g.ow;
    y0 = y0 > 0 ? y0 : 0;
    x0 = x0 > 0 ? x0 : 0;
  }
};

// One filter of a ConvPoolCell with K taps and 16-bit format H, as a thread uses it: the taps
// rounded once and held in registers.
template <int K, int H>
struct ConvPoolFilter {
  const ConvPoolCell& cell;
  float w[K];
  float b;
  GENRELAB_HD ConvPoolFilter(const ConvPoolCell& c, int32_t fi) : cell(c) {
    const float* kf = c.kernel + int64_t(fi) * K;
    GENRELAB_UNROLL
    for (int k = 0; k < K; ++k) w[k] = round_to_half(kf[k], H);
    b = c.bias ? c.bias[fi] : 0.0f;
  }
  // Conv cell (e, yy, xx)'s first tap in x and that tap's input row and column (under padding it
  // may lie outside the input: taps there are skipped, they add zeros).
  GENRELAB_HD const float* first_tap(int64_t e, int32_t yy, int32_t xx, int32_t& iy0, int32_t& ix0) const {
    const ConvPoolGeom& g = cell.g;
    iy0 = yy * g.sh - g.top;
    ix0 = xx * g.sw - g.left;
    return cell.x + ((e * g.h + iy0) * g.w + ix0) * g.c;
  }
  GENRELAB_HD bool inside(int k, int32_t iy0, int32_t ix0) const {
    const ConvPoolGeom& g = cell.g;
    return uint32_t(iy0 + g.tap_dy[k]) < uint32_t(g.h) && uint32_t(ix0 + g.tap_dx[k]) < uint32_t(g.w);
  }
  // Calls f(k, x_k) for the taps of the cell whose first tap is xc, in kernel order, x_k rounded
  // (taps outside the input skipped: a uniform branch, no checks without padding).
  template <typename F>
  GENRELAB_HD void for_each_tap(const float* xc, int32_t iy0, int32_t ix0, F&& f) const {
    const ConvPoolGeom& g = cell.g;
    if (!g.padded) {
      GENRELAB_UNROLL
      for (int k = 0; k < K; ++k) f(k, round_to_half(xc[g.tap_off[k]], H));
    } else {
      GENRELAB_UNROLL
      for (int k = 0; k < K; ++k)
        if (inside(k, iy0, ix0)) f(k, round_to_half(xc[g.tap_off[k]], H));
    }
  }
  // act(round(Σ x·W) + b) of the cell whose first tap is xc, in float32 from the rounded operands.
  GENRELAB_HD float value(const float* xc, int32_t iy0, int32_t ix0) const {
    float z = 0.0f;
    for_each_tap(xc, iy0, ix0, [&](int k, float xk) { z += xk * w[k]; });
    z = round_to_half(z, H);
    return activate<float>(cell.act, cell.bias ? z + b : z, cell.alpha);
  }
  // The pooled window's first maximum (row-major, strict >) and its cell's first tap (`at` null when
  // every cell is NaN or the window is empty: the pool then outputs −∞ and passes no gradient).
  GENRELAB_HD float window_max(int64_t e, int32_t qy, int32_t qx, const float*& at, int32_t& at_iy0,
                               int32_t& at_ix0) const {
    int32_t y0, y1, x0, x1;
    cell.window(qy, qx, y0, y1, x0, x1);
    float best = -INFINITY;
    at = nullptr;
    at_iy0 = at_ix0 = 0;
    for (int32_t yy = y0; yy < y1; ++yy)
      for (int32_t xx = x0; xx < x1; ++xx) {
        int32_t iy0, ix0;
        const float* xc = first_tap(e, yy, xx, iy0, ix0);
        const float v = value(xc, iy0, ix0);
        if (v > best) {
          best = v;
          at = xc;
          at_iy0 = iy0;
          at_ix0 = ix0;
        }
      }
    return best;
  }
};

// Calls f(std::integral_constant<int, K>(), std::integral_constant<int, H>()) for kernel volume
// k = K (1 … kConvPoolMaxK) and 16-bit format half = H: the functors below take both as template
// parameters.
template <int K = 1, typename F>
void with_conv_pool_shape(int k, int half, F&& f) {
  if constexpr (K < kConvPoolMaxK) {
    if (k != K) return with_conv_pool_shape<K + 1>(k, half, std::forward<F>(f));
  }
  GENRELAB_CHECK(k == K, "fused conv+pool: kernel volume ", k, " is not 1 to ", kConvPoolMaxK);
  if (half == kHalfBf16) f(std::integral_constant<int, K>(), std::integral_constant<int, kHalfBf16>());
  else if (half == kHalfFp16) f(std::integral_constant<int, K>(), std::integral_constant<int, kHalfFp16>());
  else f(std::integral_constant<int, K>(), std::integral_constant<int, kHalfNone>());
}

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
// (i < 2^31: see conv_pool_examples_per_launch). K = cell.g.k(), H = cell.half.
template <int K, int H>
struct ConvPoolForward {
  ConvPoolCell cell;
  float* y;
  GENRELAB_HD void operator()(int64_t i) const {
    const ConvPoolGeom& g = cell.g;
    const uint32_t u = uint32_t(i), f = uint32_t(g.f), qw = uint32_t(g.qw), qh = uint32_t(g.qh);
    const uint32_t r = u / f, t = r / qw;
    const ConvPoolFilter<K, H> filter(cell, int32_t(u - r * f));
    const float* at;
    int32_t iy0, ix0;
    y[i] = filter.window_max(int64_t(t / qh), int32_t(t % qh), int32_t(r - t * qw), at, iy0, ix0);
  }
};

// Backward, first stage: the weight and bias gradient sums of one filter over one chunk of
// `span` pooled positions (e, qy, qx) in order. dy: (n, qh, qw, f) the gradient of the pooled
// output. partial: (chunks, f, k + 1), per filter the k kernel sums then the bias sum. The
// gradient at a window's argmax is dz = dy · act'(cell value); the bias sum takes dz in float32,
// the kernel sums take dz and x rounded to the 16-bit format (cuDNN's 16-bit dz and x).
template <int K, int H>
struct ConvPoolGradPartial {
  ConvPoolCell cell;
  const float* dy;
  int64_t positions;  // n · qh · qw (positions · f < 2^31: see conv_pool_examples_per_launch)
  int64_t span;
  float* partial;
  GENRELAB_HD void operator()(int64_t chunk, int64_t fcol) const {
    const ConvPoolGeom& g = cell.g;
    const int32_t fi = int32_t(fcol);
    const ConvPoolFilter<K, H> filter(cell, fi);
    float acc[K], acc_bias = 0.0f;  // registers on the GPU (the loops over K unroll)
    GENRELAB_UNROLL
    for (int k = 0; k < K; ++k) acc[k] = 0.0f;
    const int64_t p1 = (chunk + 1) * span < positions ? (chunk + 1) * span : positions;
    for (int64_t p = chunk * span; p < p1; ++p) {
      const float d = dy[p * g.f + fi];
      if (d == 0.0f) continue;  // dropout's zeros and relu's dead windows: nothing to add
      const uint32_t u = uint32_t(p), qw = uint32_t(g.qw), qh = uint32_t(g.qh), r = u / qw;
      const float* at;
      int32_t iy0, ix0;
      const float best = filter.window_max(int64_t(r / qh), int32_t(r % qh), int32_t(u - r * qw), at, iy0, ix0);
      if (!at) continue;
      const float dz = d * activation_grad<float>(cell.act, best, cell.alpha);
      acc_bias += dz;
      const float dzr = round_to_half(dz, H);
      filter.for_each_tap(at, iy0, ix0, [&](int k, float xk) { acc[k] += dzr * xk; });
    }
    float* out = partial + (chunk * g.f + fi) * (K + 1);
    GENRELAB_UNROLL
    for (int k = 0; k < K; ++k) out[k] = acc[k];
    out[K] = acc_bias;
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
