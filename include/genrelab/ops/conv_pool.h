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
// them), a thread keeps its filters' K taps (and, backward, its K sums) in registers, and each
// tap's offset into the input comes from a table (ConvPoolGeom::tap_off), not from index
// arithmetic per tap. Bounds are checked per tap only when the conv pads. A call computes several
// consecutive filters of its position (16 forward and 8 backward for the baseline's 2×2 kernel),
// which share the index arithmetic, in 32 bits, and the loads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "genrelab/common.h"
#include "genrelab/ops/fast_div.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_activation.h"

namespace genrelab::ops {

// The largest kernel volume kh·kw·c fused: a thread keeps that many taps (and, backward, sums) per
// filter in registers.
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

// G consecutive filters f0 … f0 + G − 1 of a ConvPoolCell with K taps and 16-bit format H, as a
// thread uses them: their taps rounded once and held in registers. Past the last filter a thread
// computes a copy of it, which it does not store. Offsets into x are 32-bit: a launch's input
// stays below 2^31 elements (conv_pool_examples_per_launch).
template <int K, int H, int G>
struct ConvPoolFilters {
  const ConvPoolCell& cell;
  float w[G][K];
  float b[G];
  GENRELAB_HD ConvPoolFilters(const ConvPoolCell& c, int32_t f0) : cell(c) {
    GENRELAB_UNROLL
    for (int j = 0; j < G; ++j) {
      const int32_t f = f0 + j < c.g.f ? f0 + j : c.g.f - 1;
      const float* kf = c.kernel + int64_t(f) * K;
      GENRELAB_UNROLL
      for (int k = 0; k < K; ++k) w[j][k] = round_to_half(kf[k], H);
      b[j] = c.bias ? c.bias[f] : 0.0f;
    }
  }
  // The offset into x of conv cell (e, yy, xx)'s first tap, and that tap's input row and column
  // (under padding it may lie outside the input: taps there are skipped, they add zeros).
  GENRELAB_HD int32_t first_tap(int32_t e, int32_t yy, int32_t xx, int32_t& iy0, int32_t& ix0) const {
    const ConvPoolGeom& g = cell.g;
    iy0 = yy * g.sh - g.top;
    ix0 = xx * g.sw - g.left;
    return ((e * g.h + iy0) * g.w + ix0) * g.c;
  }
  GENRELAB_HD bool inside(int k, int32_t iy0, int32_t ix0) const {
    const ConvPoolGeom& g = cell.g;
    return uint32_t(iy0 + g.tap_dy[k]) < uint32_t(g.h) && uint32_t(ix0 + g.tap_dx[k]) < uint32_t(g.w);
  }
  // The K taps of the cell whose first tap is at offset o, in kernel order, rounded; taps outside
  // the input are 0 (a uniform branch: without padding the cell's taps are always inside).
  GENRELAB_HD void taps(int32_t o, int32_t iy0, int32_t ix0, float (&xk)[K]) const {
    const ConvPoolGeom& g = cell.g;
    const float* xc = cell.x + o;
    if (!g.padded) {
      GENRELAB_UNROLL
      for (int k = 0; k < K; ++k) xk[k] = round_to_half(xc[g.tap_off[k]], H);
    } else {
      GENRELAB_UNROLL
      for (int k = 0; k < K; ++k) xk[k] = inside(k, iy0, ix0) ? round_to_half(cell.x[o + g.tap_off[k]], H) : 0.0f;
    }
  }
  // Each filter's act(round(Σ x·W) + b) at a cell from its taps, in float32 from the rounded
  // operands (a tap outside the input adds 0 · w, +0 or −0, as skipping it would for finite w).
  GENRELAB_HD void values(const float (&xk)[K], float (&v)[G]) const {
    GENRELAB_UNROLL
    for (int j = 0; j < G; ++j) {
      float z = 0.0f;
      GENRELAB_UNROLL
      for (int k = 0; k < K; ++k) z += xk[k] * w[j][k];
      const float zr = round_to_half(z, H);
      v[j] = cell.bias ? zr + b[j] : zr;
    }
    activate_each(cell.act, v, cell.alpha);
  }
  // Calls f(cell, o, iy0, ix0) for the conv cells of pooled window (e, qy, qx) in row-major order,
  // cell counting them from 0, o the cell's first tap offset.
  template <typename F>
  GENRELAB_HD void for_each_cell(int32_t e, int32_t qy, int32_t qx, F&& f) const {
    int32_t y0, y1, x0, x1;
    cell.window(qy, qx, y0, y1, x0, x1);
    int32_t n = 0;
    for (int32_t yy = y0; yy < y1; ++yy)
      for (int32_t xx = x0; xx < x1; ++xx, ++n) {
        int32_t iy0, ix0;
        const int32_t o = first_tap(e, yy, xx, iy0, ix0);
        f(n, o, iy0, ix0);
      }
  }
  // Each filter's first maximum over the pooled window (row-major, strict >) and its cell's number
  // in the window (`at` −1 when every cell is NaN or the window is empty: the pool then outputs −∞
  // and passes no gradient).
  GENRELAB_HD void window_max(int32_t e, int32_t qy, int32_t qx, float (&best)[G], int32_t (&at)[G]) const {
    GENRELAB_UNROLL
    for (int j = 0; j < G; ++j) {
      best[j] = -INFINITY;
      at[j] = -1;
    }
    for_each_cell(e, qy, qx, [&](int32_t n, int32_t o, int32_t iy0, int32_t ix0) {
      float xk[K], v[G];
      taps(o, iy0, ix0, xk);
      values(xk, v);
      GENRELAB_UNROLL
      for (int j = 0; j < G; ++j)
        if (v[j] > best[j]) {
          best[j] = v[j];
          at[j] = n;
        }
    });
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
constexpr int64_t kConvPoolSpan = 32;
constexpr int64_t kConvPoolMaxPositions = int64_t(65535) * 8 * kConvPoolSpan;

// The consecutive filters one call of the functors below computes for kernel volume K. They share
// the position's index arithmetic and input loads, so more filters a call means fewer instructions
// a filter (the forward of a 2×2 single-channel conv is bound by instruction issue, not memory);
// a thread holds G·K taps, and backward also G·(K + 1) sums, in registers.
constexpr int conv_pool_forward_filters(int K) { return K <= 4 ? 16 : K <= 9 ? 4 : 2; }
constexpr int conv_pool_backward_filters(int K) { return K <= 4 ? 8 : K <= 9 ? 2 : 1; }

// Callers launch (or loop over) chunks of examples whose index spaces (the pooled output and the
// input) stay below 2^31, so that the index arithmetic below runs in 32 bits (a 64-bit division
// or product costs several times as much).
inline int64_t conv_pool_examples_per_launch(const ConvPoolGeom& g) {
  const int64_t per_example =
      std::max<int64_t>({int64_t(g.qh) * g.qw * g.f, int64_t(g.h) * g.w * g.c, int64_t(1)});
  const int64_t m = ((int64_t(1) << 31) - 1) / per_example;
  return m > 0 ? m : 1;
}

// Forward: y (n, qh, qw, f) = the pooled conv layer output. K = cell.g.k(), H = cell.half. A call
// computes G consecutive filters of one pooled position (so they share its index arithmetic and
// input loads): calls(n) of them, call i at position i / groups, filters from (i % groups)·G, so
// consecutive calls write consecutive outputs. i < 2^31: see conv_pool_examples_per_launch.
template <int K, int H>
struct ConvPoolForward {
  static constexpr int G = conv_pool_forward_filters(K);
  ConvPoolCell cell;
  float* y;
  FastDiv groups_div, qw_div, qh_div;  // by groups(f), qw and qh
  ConvPoolForward(const ConvPoolCell& c, float* out)
      : cell(c), y(out), groups_div(groups(c.g.f)), qw_div(c.g.qw), qh_div(c.g.qh) {}
  GENRELAB_HD static int32_t groups(int32_t filters) { return (filters + G - 1) / G; }
  static int64_t calls(const ConvPoolGeom& g, int64_t n) { return n * g.qh * g.qw * groups(g.f); }
  GENRELAB_HD void operator()(int64_t i) const {
    const ConvPoolGeom& g = cell.g;
    uint32_t r, j, t, qx, e, qy;
    groups_div.divmod(uint32_t(i), r, j);  // i = r · groups + j
    qw_div.divmod(r, t, qx);               // r = t · qw + qx
    qh_div.divmod(t, e, qy);               // t = e · qh + qy
    const int32_t f0 = int32_t(j) * G;
    const ConvPoolFilters<K, H, G> filters(cell, f0);
    float best[G];
    int32_t at[G];
    filters.window_max(int32_t(e), int32_t(qy), int32_t(qx), best, at);
    float* out = y + int64_t(r) * g.f + f0;
    GENRELAB_UNROLL
    for (int m = 0; m < G; ++m)
      if (f0 + m < g.f) out[m] = best[m];
  }
};

// Backward, first stage: the weight and bias gradient sums of G consecutive filters over one chunk
// of `span` pooled positions (e, qy, qx) in order: call (chunk, j) takes filters from j·G (launch
// chunks × groups(f)). dy: (n, qh, qw, f) the gradient of the pooled output. partial: (chunks, f,
// k + 1), per filter the k kernel sums then the bias sum. The gradient at a window's argmax is
// dz = dy · act'(cell value); the bias sum takes dz in float32, the kernel sums take dz and x
// rounded to the 16-bit format (cuDNN's 16-bit dz and x). A position's window is read twice: once
// for each filter's maximum, once more to add the taps of the cell each filter's gradient goes to.
template <int K, int H>
struct ConvPoolGradPartial {
  static constexpr int G = conv_pool_backward_filters(K);
  ConvPoolCell cell;
  const float* dy;
  int64_t positions;  // n · qh · qw (positions · f < 2^31: see conv_pool_examples_per_launch)
  int64_t span;
  float* partial;
  FastDiv qw_div, qh_div;  // by qw and qh
  ConvPoolGradPartial(const ConvPoolCell& c, const float* dy_, int64_t positions_, int64_t span_, float* partial_)
      : cell(c), dy(dy_), positions(positions_), span(span_), partial(partial_), qw_div(c.g.qw), qh_div(c.g.qh) {}
  GENRELAB_HD static int32_t groups(int32_t filters) { return (filters + G - 1) / G; }
  GENRELAB_HD void operator()(int64_t chunk, int64_t column) const {
    const ConvPoolGeom& g = cell.g;
    const int32_t f0 = int32_t(column) * G;
    const ConvPoolFilters<K, H, G> filters(cell, f0);
    float acc[G][K + 1];  // per filter the K kernel sums, then the bias sum (registers on the GPU)
    GENRELAB_UNROLL
    for (int m = 0; m < G; ++m) {
      GENRELAB_UNROLL
      for (int k = 0; k <= K; ++k) acc[m][k] = 0.0f;
    }
    const int64_t p1 = (chunk + 1) * span < positions ? (chunk + 1) * span : positions;
    for (int64_t p = chunk * span; p < p1; ++p) {
      float d[G];
      bool any = false;
      GENRELAB_UNROLL
      for (int m = 0; m < G; ++m) {
        d[m] = f0 + m < g.f ? dy[p * g.f + f0 + m] : 0.0f;
        any = any || d[m] != 0.0f;
      }
      if (!any) continue;  // dropout's zeros: nothing to add
      uint32_t t, qx, e, qy;
      qw_div.divmod(uint32_t(p), t, qx);
      qh_div.divmod(t, e, qy);
      float best[G];
      int32_t at[G];
      filters.window_max(int32_t(e), int32_t(qy), int32_t(qx), best, at);
      float dzr[G];
      GENRELAB_UNROLL
      for (int m = 0; m < G; ++m) {
        dzr[m] = 0.0f;
        if (d[m] == 0.0f || at[m] < 0) {
          at[m] = -1;  // no gradient from this filter here
          continue;
        }
        const float dz = d[m] * activation_grad<float>(cell.act, best[m], cell.alpha);
        acc[m][K] += dz;
        dzr[m] = round_to_half(dz, H);
      }
      filters.for_each_cell(int32_t(e), int32_t(qy), int32_t(qx), [&](int32_t n, int32_t o, int32_t iy0, int32_t ix0) {
        bool mine = false;
        GENRELAB_UNROLL
        for (int m = 0; m < G; ++m) mine = mine || at[m] == n;
        if (!mine) return;
        float xk[K];
        filters.taps(o, iy0, ix0, xk);
        GENRELAB_UNROLL
        for (int m = 0; m < G; ++m)
          if (at[m] == n) {
            GENRELAB_UNROLL
            for (int k = 0; k < K; ++k) acc[m][k] += dzr[m] * xk[k];
          }
      });
    }
    GENRELAB_UNROLL
    for (int m = 0; m < G; ++m) {
      if (f0 + m >= g.f) continue;
      float* out = partial + (chunk * g.f + f0 + m) * (K + 1);
      GENRELAB_UNROLL
      for (int k = 0; k <= K; ++k) out[k] = acc[m][k];
    }
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
