// A first conv2d layer fused with the max pool after it (train.fuse_conv_pool), and with the
// dropout after the pool when there is one, shared by both backends in gather form. The
// baseline's first conv (1 input channel, 2×2 kernel, 64 filters on 128×1206) writes 1.25 GB per
// batch of 32 that the pool reads back and halves twice, and its dropout then reads and writes the
// pooled 311 MB once more forward and once more backward: pure memory traffic. Fused, the forward
// computes each pooled output from the input (a few multiply-adds per window cell) and writes only
// the dropout's output (or the pooled map) and, when training, a byte per output naming the window
// cell of its maximum, or that the dropout dropped it; the backward recomputes that one cell's
// value (for the activation's derivative) and sums the weight and bias gradients, so neither the
// conv output nor the pooled map is stored, and the dropout needs no pass of its own.
//
// Same semantics as conv2d (its activation, bias and Keras padding) followed by maxpool2d and
// dropout: every window cell is the conv layer's output act(z + b) (z rounded to the 16-bit format
// first under bf16/fp16, as cuDNN writes it), the pooled value is the first maximum in row-major
// order (cells outside the conv map do not count), the dropout's mask and scaling are
// DropoutApply's (the same element words, so fused and unfused runs draw the same masks), and the
// gradient flows to the maximum's cell only, through the mask. The conv's sum runs over (a, b, c)
// in kernel order, in float32 from the rounded operands.
//
// The work per tap is one multiply-add, so the functors are written for few instructions per tap:
// the kernel volume K and the 16-bit format H are template parameters (with_conv_pool_shape picks
// them), a thread keeps its filters' K taps (and, backward, its K sums) in registers, and each
// tap's offset into the input comes from a table (ConvPoolGeom::tap_off), not from index
// arithmetic per tap. Bounds are checked per tap only when the conv pads. A forward call computes
// up to four consecutive filters over a few consecutive positions: the filters share each cell's
// index arithmetic and loads, the dropout's Philox block and one 16-byte store, and the positions
// share the call's setup (its filters' taps, the divisions that find its first position). A
// backward call takes one filter (consecutive calls, consecutive filters: coalesced reads of dy
// and the argmax bytes) over a chunk of positions, with few registers, and issues the reads of
// several positions before it uses them (the loop is bound by memory latency, not by bandwidth).
// The relu path, the baseline's, has its activation resolved at compile time; any other
// activation is dispatched once per cell.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "genrelab/common.h"
#include "genrelab/ops/im2col.h"
#include "genrelab/ops/lanes.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_activation.h"

namespace genrelab::ops {

// The largest kernel volume kh·kw·c fused: a thread keeps that many taps (and, backward, sums) per
// filter in registers.
inline constexpr int kConvPoolMaxK = 16;
// The argmax byte of a pooled output: (row << 4) | column of its maximum's cell in the pool window
// (unclipped, so pool windows of at most kConvPoolMaxWindow rows and columns), or kConvPoolNoMax
// when no gradient flows back through it: the window has no maximum (every cell NaN, or none
// inside the conv map), or the fused dropout dropped the output.
inline constexpr int kConvPoolMaxWindow = 15;
inline constexpr uint8_t kConvPoolNoMax = 0xff;

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
  // The first conv row and column of output (qy, qx)'s pool window, unclipped (the origin of its
  // argmax byte; under padding it may lie outside the conv map).
  GENRELAB_HD int32_t window_row(int32_t qy) const { return qy * g.psh - g.ptop; }
  GENRELAB_HD int32_t window_col(int32_t qx) const { return qx * g.psw - g.pleft; }
  // The pooled window of output (qy, qx): conv rows [y0, y1) and columns [x0, x1), clipped.
  GENRELAB_HD void window(int32_t qy, int32_t qx, int32_t& y0, int32_t& y1, int32_t& x0, int32_t& x1) const {
    y0 = window_row(qy);
    x0 = window_col(qx);
    y1 = y0 + g.ph < g.oh ? y0 + g.ph : g.oh;
    x1 = x0 + g.pw < g.ow ? x0 + g.pw : g.ow;
    y0 = y0 > 0 ? y0 : 0;
    x0 = x0 > 0 ? x0 : 0;
  }
};

// The activation code a functor was compiled for (kActRelu: the baseline's, resolved at compile
// time), or kActAny: the cell's act, dispatched at run time.
inline constexpr int kActAny = -1;

// Pooled positions (example, qy, qx) of one launch in order, from position p on, stepped through
// without dividing: xe is the position's example input.
struct ConvPoolWalk {
  const float* xe;
  int32_t e, qy, qx;  // example (from the launch's first), pooled row and column
  GENRELAB_HD ConvPoolWalk(const ConvPoolCell& cell, int64_t p) {
    const ConvPoolGeom& g = cell.g;
    const uint32_t u = uint32_t(p), r = u / uint32_t(g.qw);  // p < 2^31: see conv_pool_examples_per_launch
    qx = int32_t(u - r * uint32_t(g.qw));
    qy = int32_t(r % uint32_t(g.qh));
    e = int32_t(r / uint32_t(g.qh));
    xe = cell.x + int64_t(e) * (int64_t(g.h) * g.w * g.c);
  }
  GENRELAB_HD void next(const ConvPoolGeom& g) {
    if (++qx == g.qw) {
      qx = 0;
      if (++qy == g.qh) {
        qy = 0;
        ++e;
        xe += int64_t(g.h) * g.w * g.c;
      }
    }
  }
};

// G filters of a ConvPoolCell with K taps and 16-bit format H, as a thread uses them: their taps
// rounded once and held in registers. Filters fi, fi + stride, …; past the last filter a thread
// computes a copy of it, which it does not store.
template <int K, int H, int G = 1>
struct ConvPoolFilters {
  const ConvPoolCell& cell;
  float w[G][K];
  float b[G];
  GENRELAB_HD ConvPoolFilters(const ConvPoolCell& c, int32_t fi, int32_t stride) : cell(c) {
    GENRELAB_UNROLL
    for (int j = 0; j < G; ++j) {
      const int32_t f = fi + j * stride < c.g.f ? fi + j * stride : c.g.f - 1;
      const float* kf = c.kernel + int64_t(f) * K;
      GENRELAB_UNROLL
      for (int k = 0; k < K; ++k) w[j][k] = round_to_half(kf[k], H);
      b[j] = c.bias ? c.bias[f] : 0.0f;
    }
  }
  // The offset into its example's input of conv cell (yy, xx)'s first tap, and that tap's input
  // row and column (under padding it may lie outside the input: taps there are skipped, they add
  // zeros). 32 bits: one example's input is below 2^31 values (conv_pool_fusable).
  GENRELAB_HD int32_t first_tap(int32_t yy, int32_t xx, int32_t& iy0, int32_t& ix0) const {
    const ConvPoolGeom& g = cell.g;
    iy0 = yy * g.sh - g.top;
    ix0 = xx * g.sw - g.left;
    return (iy0 * g.w + ix0) * g.c;
  }
  GENRELAB_HD bool inside(int k, int32_t iy0, int32_t ix0) const {
    const ConvPoolGeom& g = cell.g;
    return uint32_t(iy0 + g.tap_dy[k]) < uint32_t(g.h) && uint32_t(ix0 + g.tap_dx[k]) < uint32_t(g.w);
  }
  // The taps of the cell whose first tap is at offset o of example input xe, in kernel order,
  // rounded; under padding a tap outside the input is 0 here and skipped by for_inside (no checks
  // without padding, where the cell's first tap is always inside the input).
  GENRELAB_HD void load_taps(const float* xe, int32_t o, int32_t iy0, int32_t ix0, float (&xs)[K]) const {
    const ConvPoolGeom& g = cell.g;
    if (!g.padded) {  // the cell's first tap is inside the input, and so are the others
      // Offsets into the example are non-negative here: in unsigned 32 bits an address is an add and
      // one wide multiply-add, where a signed index is widened to 64 bits first.
      GENRELAB_UNROLL
      for (int k = 0; k < K; ++k) xs[k] = round_to_half(xe[uint32_t(o) + uint32_t(g.tap_off[k])], H);
    } else {
      GENRELAB_UNROLL
      for (int k = 0; k < K; ++k) xs[k] = inside(k, iy0, ix0) ? round_to_half(xe[o + g.tap_off[k]], H) : 0.0f;
    }
  }
  // Calls f(k) for the cell's taps inside the input, in kernel order (a uniform branch).
  template <typename F>
  GENRELAB_HD void for_inside(int32_t iy0, int32_t ix0, F&& f) const {
    if (!cell.g.padded) {
      GENRELAB_UNROLL
      for (int k = 0; k < K; ++k) f(k);
    } else {
      GENRELAB_UNROLL
      for (int k = 0; k < K; ++k)
        if (inside(k, iy0, ix0)) f(k);
    }
  }
  // Each filter's act(round(Σ x·W) + b) at the cell of taps xs (load_taps), in float32 from the
  // rounded operands; A: the activation (kActAny: cell.act).
  template <int A>
  GENRELAB_HD void values(const float (&xs)[K], int32_t iy0, int32_t ix0, float (&v)[G]) const {
    float z[G];
    GENRELAB_UNROLL
    for (int j = 0; j < G; ++j) z[j] = 0.0f;
    for_inside(iy0, ix0, [&](int k) {
      GENRELAB_UNROLL
      for (int j = 0; j < G; ++j) z[j] += xs[k] * w[j][k];
    });
    GENRELAB_UNROLL
    for (int j = 0; j < G; ++j) {
      const float zr = round_to_half(z[j], H);
      v[j] = cell.bias ? zr + b[j] : zr;
    }
    if constexpr (A == kActAny) {
      activate_each(cell.act, v, cell.alpha);
    } else {
      GENRELAB_UNROLL
      for (int j = 0; j < G; ++j) v[j] = activate<float>(A, v[j], cell.alpha);
    }
  }
  // Each filter's first maximum over the pooled window (row-major, strict >) and its cell's
  // argmax byte (kConvPoolNoMax when every cell is NaN or the window is empty: the pool then
  // outputs −∞ and passes no gradient). xe: the position's example input.
  template <int A>
  GENRELAB_HD void window_max(const float* xe, int32_t qy, int32_t qx, float (&best)[G], uint8_t (&code)[G]) const {
    int32_t y0, y1, x0, x1;
    cell.window(qy, qx, y0, y1, x0, x1);
    const int32_t wy = cell.window_row(qy), wx = cell.window_col(qx);
    GENRELAB_UNROLL
    for (int j = 0; j < G; ++j) {
      best[j] = -INFINITY;
      code[j] = kConvPoolNoMax;
    }
    for (int32_t yy = y0; yy < y1; ++yy)
      for (int32_t xx = x0; xx < x1; ++xx) {
        int32_t iy0, ix0;
        const int32_t o = first_tap(yy, xx, iy0, ix0);
        float xs[K], v[G];
        load_taps(xe, o, iy0, ix0, xs);
        values<A>(xs, iy0, ix0, v);
        const uint8_t here = uint8_t(((yy - wy) << 4) | (xx - wx));
        GENRELAB_UNROLL
        for (int j = 0; j < G; ++j)
          if (v[j] > best[j]) {
            best[j] = v[j];
            code[j] = here;
          }
      }
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
// most 65 535 · 8 rows of them (cuda/launch.cuh's 2-D grid with 32 or more filter columns; fewer
// take more rows), so one example's qh·qw may not exceed kConvPoolMaxPositions.
constexpr int64_t kConvPoolSpan = 64;
constexpr int64_t kConvPoolMaxPositions = int64_t(65535) * 8 * kConvPoolSpan;

// The filters one forward call computes for kernel volume K: they share the position's index
// arithmetic and input loads, and hold G·K taps in registers.
constexpr int conv_pool_filters_per_call(int K) { return K <= 4 ? 4 : K <= 9 ? 2 : 1; }
// The consecutive pooled positions one forward call computes its filters at (its setup, the
// filters' taps and the division that finds its first position, done once for all of them).
constexpr int64_t kConvPoolForwardSpan = 4;
// The positions whose dy and argmax reads one backward call issues together before using them:
// four (a warp's reads of four positions in flight instead of one) where the unrolled loop stays
// small, two for the largest kernel volumes.
constexpr int conv_pool_backward_batch(int K) { return K <= 8 ? 4 : 2; }

// Callers launch (or loop over) chunks of examples whose index spaces stay below 2^31, so that
// the index arithmetic below runs in 32 bits (a 64-bit division costs several times as much).
inline int64_t conv_pool_examples_per_launch(const ConvPoolGeom& g) {
  const int64_t per_example = int64_t(g.qh) * g.qw * g.f;
  const int64_t m = ((int64_t(1) << 31) - 1) / (per_example > 0 ? per_example : 1);
  return m > 0 ? m : 1;
}

// Calls run<kActRelu>() when act is relu, else run<kActAny>(): the functors' relu path has its
// activation (and derivative) resolved at compile time.
template <typename F>
GENRELAB_HD void with_conv_pool_activation(int act, F&& run) {
  if (act == kActRelu)
    run(std::integral_constant<int, kActRelu>());
  else
    run(std::integral_constant<int, kActAny>());
}

// Forward: y (n, qh, qw, f) = the pooled conv layer output or, with `dropout` on (training, with
// the dropout fused), the dropout's output, written to y and/or into the next convolution's
// columns (next: im2col fused; y null: not written); and (when argmax is not null, for a
// backward) argmax (n, qh, qw, f) the argmax bytes, kConvPoolNoMax where the dropout dropped the
// output. K = cell.g.k(), H = cell.half. A call computes G consecutive filters G·j … G·j + G − 1
// (they share their index arithmetic, input loads and Philox block) at kConvPoolForwardSpan
// consecutive pooled positions (or up to the last): calls(n) of them, call i at span i / groups,
// j = i % groups, so consecutive calls write consecutive outputs. i < 2^31: see
// conv_pool_examples_per_launch.
template <int K, int H>
struct ConvPoolForward {
  static constexpr int G = conv_pool_filters_per_call(K);
  ConvPoolCell cell;
  float* y;  // null where `next` takes the output instead
  uint8_t* argmax;
  EpilogueDropout dropout;  // off: y is the pooled map
  int64_t first = 0;        // the launch's first output, counted from the batch's first (the mask's element index)
  int64_t positions;        // the launch's pooled positions, n · qh · qw (positions_of)
  ColumnsOut next{};        // the next convolution's columns from the launch's first example (cols null: none)
  GENRELAB_HD static int32_t groups(int32_t filters) { return (filters + G - 1) / G; }
  static int64_t positions_of(const ConvPoolGeom& g, int64_t n) { return n * g.qh * g.qw; }
  static int64_t calls(const ConvPoolGeom& g, int64_t n) {
    return ceil_div(positions_of(g, n), kConvPoolForwardSpan) * groups(g.f);
  }
  GENRELAB_HD void operator()(int64_t i) const {
    with_conv_pool_activation(cell.act, [&](auto act) { run<decltype(act)::value>(i); });
  }
  template <int A>
  GENRELAB_HD void run(int64_t i) const {
    const ConvPoolGeom& g = cell.g;
    const uint32_t u = uint32_t(i), fg = uint32_t(groups(g.f)), span = u / fg;
    const int32_t f0 = int32_t(u - span * fg) * G;
    const ConvPoolFilters<K, H, G> filters(cell, f0, 1);
    // Positions and outputs in 32 bits (the launch's outputs number below 2^31).
    const uint32_t p0 = span * uint32_t(kConvPoolForwardSpan);
    const uint32_t p1 =
        int64_t(p0) + kConvPoolForwardSpan < positions ? p0 + uint32_t(kConvPoolForwardSpan) : uint32_t(positions);
    ConvPoolWalk at(cell, p0);
    // (The step after the last position leaves xe at most one past the end of the launch's input.)
    for (uint32_t p = p0; p < p1; ++p, at.next(g)) {
      Lanes<float, G> best;
      Lanes<uint8_t, G> code;
      filters.template window_max<A>(at.xe, at.qy, at.qx, best.v, code.v);
      const uint32_t out = p * uint32_t(g.f) + uint32_t(f0);
      if (dropout.on) {
        bool kept[G];
        dropout.apply<G>(first + int64_t(out), best.v, kept);
        GENRELAB_UNROLL
        for (int m = 0; m < G; ++m)
          if (!kept[m]) code.v[m] = kConvPoolNoMax;
      }
      if (next.cols) next.store<G>(at.e, at.qy, at.qx, f0, best, f0 + G <= g.f ? G : g.f - f0);
      // All G filters at once where they exist and the buffers are aligned for it (the baseline's
      // 64 filters: one 16-byte store of values, one 4-byte store of argmax bytes).
      if (f0 + G <= g.f && (!y || lanes_aligned<Lanes<float, G>>(y + out)) &&
          (!argmax || lanes_aligned<Lanes<uint8_t, G>>(argmax + out))) {
        if (y) store_lanes(y + out, best);
        if (argmax) store_lanes(argmax + out, code);
        continue;
      }
      GENRELAB_UNROLL
      for (int m = 0; m < G; ++m)
        if (f0 + m < g.f) {
          if (y) y[out + m] = best.v[m];
          if (argmax) argmax[out + m] = code.v[m];
        }
    }
  }
};

// Backward, first stage: the weight and bias gradient sums of one filter over one chunk of `span`
// pooled positions (e, qy, qx) in order: call (chunk, filter), launched chunks × f. dy: (n, qh,
// qw, f) the gradient of the pooled output, or of the fused dropout's output (then scale is the
// dropout's 1 / (1 − rate), and the forward marked the dropped outputs in argmax); argmax: the
// forward's bytes for the same x and kernel.
// partial: (chunks, f, k + 1), per filter the k kernel sums then the bias sum. The gradient at a
// window's maximum is dz = dy · act'(its value), recomputed from that cell's taps as the forward
// computed it; the bias sum takes dz in float32, the kernel sums take dz and x rounded to the
// 16-bit format (cuDNN's 16-bit dz and x). The positions are read conv_pool_backward_batch(K) at a
// time and summed in order.
template <int K, int H>
struct ConvPoolGradPartial {
  static constexpr int B = conv_pool_backward_batch(K);
  ConvPoolCell cell;
  const float* dy;
  const uint8_t* argmax;
  int64_t positions;  // n · qh · qw (positions · f < 2^31: see conv_pool_examples_per_launch)
  int64_t span;
  float* partial;
  float scale = 1.0f;  // the fused dropout's scaling of dy (1: no dropout)
  GENRELAB_HD void operator()(int64_t chunk, int64_t column) const {
    with_conv_pool_activation(cell.act, [&](auto act) { run<decltype(act)::value>(chunk, column); });
  }
  template <int A>
  GENRELAB_HD void run(int64_t chunk, int64_t column) const {
    const ConvPoolGeom& g = cell.g;
    const int32_t fi = int32_t(column);
    const ConvPoolFilters<K, H, 1> filter(cell, fi, 1);
    const int act = A == kActAny ? cell.act : A;
    float acc[K + 1];  // the K kernel sums, then the bias sum (registers on the GPU)
    GENRELAB_UNROLL
    for (int k = 0; k <= K; ++k) acc[k] = 0.0f;
    const int64_t p0 = chunk * span, p1 = p0 + span < positions ? p0 + span : positions;
    ConvPoolWalk at(cell, p0);
    for (int64_t pb = p0; pb < p1; pb += B) {
      // The batch's reads first, all in flight at once; past the chunk's end nothing flows back.
      float d[B];
      uint8_t code[B];
      GENRELAB_UNROLL
      for (int b = 0; b < B; ++b) {
        const bool in = pb + b < p1;
        const uint32_t o = in ? uint32_t(pb + b) * uint32_t(g.f) + uint32_t(fi) : 0;  // below 2^31
        d[b] = in ? dy[o] : 0.0f;
        code[b] = in ? argmax[o] : kConvPoolNoMax;
      }
      GENRELAB_UNROLL
      for (int b = 0; b < B; ++b) {
        // Dropout's zeros (dropped by a dropout layer's pass, or marked by the fused forward) and
        // windows without a maximum add nothing.
        if (d[b] != 0.0f && code[b] != kConvPoolNoMax) {
          const int32_t yy = cell.window_row(at.qy) + (code[b] >> 4), xx = cell.window_col(at.qx) + (code[b] & 15);
          int32_t iy0, ix0;
          const int32_t o = filter.first_tap(yy, xx, iy0, ix0);
          float xs[K], v[1];
          filter.load_taps(at.xe, o, iy0, ix0, xs);
          filter.template values<A>(xs, iy0, ix0, v);
          // As the dropout's backward (DropoutApply: dy · scale) and then the pool's would compute it.
          const float dz = d[b] * scale * activation_grad<float>(act, v[0], cell.alpha);
          acc[K] += dz;
          const float dzr = round_to_half(dz, H);
          filter.for_inside(iy0, ix0, [&](int k) { acc[k] += dzr * xs[k]; });
        }
        if (pb + b + 1 < p1) at.next(g);  // (never past the launch's last example)
      }
    }
    float* out = partial + (chunk * g.f + fi) * (K + 1);
    GENRELAB_UNROLL
    for (int k = 0; k <= K; ++k) out[k] = acc[k];
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
