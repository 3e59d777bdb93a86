// conv2d's epilogue fused with the max pooling and dropout after it (train.fuse_conv_epilogue),
// shared by both backends in gather form. Run one by one, the layers after a convolution's product
// z (n, h, w, c) pass over its output four more times: bias + activation reads and rewrites it, the
// pooling reads it once more, and backward the pooling writes a full-size gradient that the
// activation's backward reads back with the activated output. The baseline's second and third
// convolutions move about 5 GB a batch of 32 that way. Fused, the forward reads z once and writes
// only the pooled map (and the dropout's output), and the backward reads the pooled gradient and
// writes dz once.
//
// Results equal the layers run one by one bit for bit: every window cell is activated as
// BiasActivation (float z) or HalfBiasActivation (the 16-bit z of bf16/fp16) does it, the maximum
// is compared as MaxPoolForward compares it (the first maximum in row-major order, NaN never wins),
// the mask and scaling are DropoutApply's, and the gradient at the recorded maximum is
// dy · act'(pooled), as ActivationBackward computes it from the activated output there. Cells that
// are not a window's maximum get +0 (the one-by-one path gets 0 · act'(y), also +0 for finite y).
//
// Under an activation whose derivative depends only on the sign of its output (none, relu, leaky
// relu: sign_coded) the argmax byte's top bit records pooled > 0, all the backward needs of the
// pooled value; a training forward whose next layer reads the fused dropout's output then writes
// no pooled map at all (for the baseline's second conv, 152 MB a batch of 32 written and read back).
//
// Pooling windows must tile the map: stride = window and no padding (Keras "valid", the pooling
// default), so a window's cells are its own; the bottom rows and right columns that no window
// covers (floor division) belong to the last window of their row or column in the backward, which
// writes their zeros.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "genrelab/common.h"
#include "genrelab/ops/fast_div.h"
#include "genrelab/ops/im2col.h"
#include "genrelab/ops/lanes.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/nn_activation.h"

namespace genrelab::ops {

// The conv output (h, w, c) and the pooling windows (kh, kw) that tile it into (oh, ow).
struct ConvEpilogueGeom {
  int64_t h = 0, w = 0, c = 0;
  int64_t kh = 1, kw = 1;
  int64_t oh = 0, ow = 0;
  FastDiv groups, cols, rows;  // c / L, ow, oh: one call's window and channel group from its index

  // Whether pooling (kernel kh × kw, stride sh × sw, padding top/left, output oh × ow) over an
  // h × w map tiles it: what the fusion needs.
  static bool tiles(int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t top,
                    int64_t left, int64_t oh, int64_t ow) {
    return sh == kh && sw == kw && top == 0 && left == 0 && kh * kw <= 256 && oh == h / kh && ow == w / kw &&
           oh >= 1 && ow >= 1;
  }
  // L: the channels per call (4 when c is a multiple of 4 and the buffers are aligned, else 1).
  ConvEpilogueGeom(int64_t h_, int64_t w_, int64_t c_, int64_t kh_, int64_t kw_, int lanes)
      : h(h_), w(w_), c(c_), kh(kh_), kw(kw_), oh(h_ / kh_), ow(w_ / kw_),
        groups(c_ / lanes), cols(w_ / kw_), rows(h_ / kh_) {
    GENRELAB_CHECK(c % lanes == 0, "ConvEpilogueGeom: ", c, " channels in calls of ", lanes);
  }
  ConvEpilogueGeom() = default;
  // Whether the argmax byte carries pooled > 0 in its top bit (kEpiloguePositive) for `act`: the
  // derivative depends on nothing else, and the window's offsets fit the other seven bits.
  GENRELAB_HD static bool sign_coded(int act, int64_t kh, int64_t kw) {
    return (act == kActNone || act == kActRelu || act == kActLeakyRelu) && kh * kw <= 128;
  }
  GENRELAB_HD bool sign_coded(int act) const { return sign_coded(act, kh, kw); }
  // Calls for n examples (one per window and channel group), and the most examples one launch
  // takes (its call indices stay below 2^31).
  int64_t calls(int64_t n, int lanes) const { return n * oh * ow * (c / lanes); }
  int64_t examples_per_launch(int lanes) const { return std::max<int64_t>(1, ((int64_t(1) << 31) - 1) / calls(1, lanes)); }

  // Call q of a launch whose first example is n0: its example, window row and column, first
  // channel, and its first pooled element (n, oy, ox, c0) counted from the batch's start.
  struct Window {
    int64_t n, oy, ox, c0, o;
  };
  template <int L>
  GENRELAB_HD Window window(int64_t q, int64_t n0) const {
    uint32_t a, g, b, x, nn, y;
    groups.divmod(uint32_t(q), a, g);  // q = a · (c/L) + g
    cols.divmod(a, b, x);              // a = b · ow + x
    rows.divmod(b, nn, y);             // b = n · oh + y
    const int64_t c0 = int64_t(g) * L, e = n0 + nn;
    return {e, y, x, c0, ((e * oh + y) * ow + x) * c + c0};
  }
  // The first element of cell (row r, column s) of the map, example n, channel c0.
  GENRELAB_HD int64_t cell(int64_t n, int64_t r, int64_t s, int64_t c0) const { return ((n * h + r) * w + s) * c + c0; }
};

// The argmax byte's bit for pooled > 0 (ConvEpilogueGeom::sign_coded).
constexpr uint8_t kEpiloguePositive = 0x80;

// Where a forward writes, given the run's buffers (dropped: the dropout's output, null without a
// dropout): training records the argmax and writes dropped, and the pooled map where the backward
// reads it (not sign_coded) or no dropout follows; inference writes the pooled map straight into
// the dropout's output when there is one (the dropout is then the identity). Where the next
// convolution's columns are written instead, the run's output itself is not.
struct EpilogueOutputs {
  float* pooled;
  uint8_t* argmax;
  float* dropped;
  // cols_written: the next convolution's columns take the run's output instead (ColumnsOut).
  static EpilogueOutputs of(bool training, float* pooled, float* dropped, uint8_t* argmax, bool sign_coded,
                            bool cols_written = false) {
    if (training)
      return {!sign_coded || (!dropped && !cols_written) ? pooled : nullptr, argmax, cols_written ? nullptr : dropped};
    return {cols_written ? nullptr : dropped ? dropped : pooled, nullptr, nullptr};
  }
  // Whether any forward of a run writes its pooled map (of() above, training or not): not where a
  // dropout follows and the argmax bytes carry the sign (its buffer is then never needed).
  static bool pooled_ever_written(bool has_dropout, bool sign_coded) { return !has_dropout || !sign_coded; }
};

// Forward, one call per window and L channels (a launch of m examples from n0: geom.calls(m, L) calls):
// pooled = max over the window of act(z + b); dropped = the dropout of pooled; the run's output
// (dropped, or pooled without a dropout) also, or instead, into the next convolution's columns.
// Z: float (z as the product wrote it) or uint16_t (the 16-bit z of bf16/fp16, `format`).
template <int L, typename Z>
struct ConvEpilogueForward {
  const Z* z;          // z: (n, h, w, c), the product without bias
  int format;          // kHalfNone for float z, else kHalfBf16 | kHalfFp16
  const float* bias;   // (c) or null
  int act;
  float alpha;
  float* pooled;    // pooled: (n, oh, ow, c), the pooling layer's output; null = not written
  uint8_t* argmax;  // argmax: (n, oh, ow, c), offset a·kw + b of each first maximum (| kEpiloguePositive
                    // where sign_coded and > 0); null = not recorded
  EpilogueDropout dropout;
  float* dropped;      // dropped: (n, oh, ow, c), the dropout layer's output; null when dropout is not fused
  ConvEpilogueGeom g;
  int64_t n0 = 0;      // the launch's first example
  ColumnsOut next{};   // the next convolution's columns, which take the run's output (cols null: none)

  GENRELAB_HD void operator()(int64_t q) const {
    const ConvEpilogueGeom::Window win = g.window<L>(q, n0);
    float b[L];
    for (int l = 0; l < L; ++l) b[l] = bias ? bias[win.c0 + l] : 0.0f;
    Lanes<float, L> best;
    Lanes<uint8_t, L> at;
    for (int l = 0; l < L; ++l) {
      best.v[l] = -INFINITY;
      at.v[l] = 0;
    }
    for (int64_t a = 0; a < g.kh; ++a) {
      const Z* row = z + g.cell(win.n, win.oy * g.kh + a, win.ox * g.kw, win.c0);
      for (int64_t bb = 0; bb < g.kw; ++bb) {
        const auto raw = load_lanes<Lanes<Z, L>>(row + bb * g.c);
        float v[L];
        for (int l = 0; l < L; ++l) {
          const float zl = to_float(raw.v[l]);
          v[l] = bias ? zl + b[l] : zl;
        }
        activate_each<float, L>(act, v, alpha);
        for (int l = 0; l < L; ++l)
          if (v[l] > best.v[l]) {
            best.v[l] = v[l];
            at.v[l] = uint8_t(a * g.kw + bb);
          }
      }
    }
    if (pooled) store_lanes(pooled + win.o, best);
    if (argmax) {
      if (g.sign_coded(act))
        for (int l = 0; l < L; ++l) at.v[l] |= best.v[l] > 0.0f ? kEpiloguePositive : uint8_t(0);
      store_lanes(argmax + win.o, at);
    }
    if (!dropped && !next.cols) return;
    if (dropout.on) {
      bool kept[L];
      dropout.apply<L>(win.o, best.v, kept);
    }
    if (dropped) store_lanes(dropped + win.o, best);
    if (next.cols) next.store<L>(win.n, int32_t(win.oy), int32_t(win.ox), win.c0, best);
  }

 private:
  GENRELAB_HD float to_float(float v) const { return v; }
  GENRELAB_HD float to_float(uint16_t v) const { return half_bits_to_float(v, format); }
};

// Backward, one call per window and L channels (launched as the forward): dz over the
// window's cells (and, for the last window of a row or column, the uncovered cells beyond it) is
// d = g · act'(pooled) at the recorded maximum and +0 elsewhere, with g = dy, or dy through the
// dropout's mask. dy is read, or summed from the next convolution's input-gradient columns (its
// col2im done here: for the baseline's third conv 152 MB of dx neither written nor read back).
// Under bf16/fp16 also dz rounded to 16 bits (dz16), what the product's backward reads (dz itself
// may then be null). dpool (optional) gets each window's d: the only non-zero values of dz, so the
// bias gradient (their sum per channel) can read a quarter of the data or less.
template <int L>
struct ConvEpilogueBackward {
  const float* dy;        // dy: (n, oh, ow, c), the gradient of `dropped` (dropout fused) or of `pooled`
  const float* pooled;    // pooled: (n, oh, ow, c) from the training forward; not read where sign_coded
  const uint8_t* argmax;  // argmax: (n, oh, ow, c) from the training forward
  EpilogueDropout dropout;
  int act;
  float alpha;
  float* dz;              // dz: (n, h, w, c)
  uint16_t* dz16;         // dz16: (n, h, w, c) in `format`, or null
  int format;
  float* dpool;           // dpool: (n, oh, ow, c), or null
  ConvEpilogueGeom g;
  int64_t n0 = 0;         // the launch's first example
  // dy summed from the next convolution's input-gradient columns instead of read (dy_cols.dcols
  // non-null; that convolution's dx is then never stored), and rounded as its engine rounds dx.
  Col2Im<float, L> dy_cols{};
  int dy_round = kHalfNone;

  GENRELAB_HD void operator()(int64_t q) const {
    const ConvEpilogueGeom::Window win = g.window<L>(q, n0);
    Lanes<float, L> dyv;
    if (dy_cols.dcols) {
      dyv = dy_cols.sum((win.n * g.oh + win.oy) * g.ow + win.ox, win.c0 / L);
      for (int l = 0; l < L; ++l) dyv.v[l] = round_to_half(dyv.v[l], dy_round);
    } else {
      dyv = load_lanes<Lanes<float, L>>(dy + win.o);
    }
    auto at = load_lanes<Lanes<uint8_t, L>>(argmax + win.o);
    // act'(pooled) as ActivationBackward computes it: from the value, or (sign_coded) from its
    // sign, then the argmax byte's offset alone.
    float y[L];
    if (g.sign_coded(act)) {
      for (int l = 0; l < L; ++l) {
        y[l] = (at.v[l] & kEpiloguePositive) ? 1.0f : 0.0f;
        at.v[l] &= uint8_t(~kEpiloguePositive);
      }
    } else {
      const auto yv = load_lanes<Lanes<float, L>>(pooled + win.o);
      for (int l = 0; l < L; ++l) y[l] = yv.v[l];
    }
    float d[L];
    for (int l = 0; l < L; ++l) d[l] = dyv.v[l];
    if (dropout.on) {
      bool kept[L];
      dropout.apply<L>(win.o, d, kept);
    }
    Lanes<float, L> dv;
    for (int l = 0; l < L; ++l) d[l] = dv.v[l] = d[l] * activation_grad<float>(act, y[l], alpha);
    if (dpool) store_lanes(dpool + win.o, dv);
    const int64_t r0 = win.oy * g.kh, s0 = win.ox * g.kw;
    const int64_t r1 = win.oy == g.oh - 1 ? g.h : r0 + g.kh, s1 = win.ox == g.ow - 1 ? g.w : s0 + g.kw;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t first = g.cell(win.n, r, s0, win.c0);
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t off = (r - r0) * g.kw + (s - s0);  // ≥ kh·kw outside the window: never a maximum
        const bool inside = r - r0 < g.kh && s - s0 < g.kw;
        Lanes<float, L> out;
        for (int l = 0; l < L; ++l) out.v[l] = inside && off == int64_t(at.v[l]) ? d[l] : 0.0f;
        if (dz) store_lanes(dz + first + (s - s0) * g.c, out);
        if (dz16) {
          Lanes<uint16_t, L> h;
          for (int l = 0; l < L; ++l) h.v[l] = float_to_half_bits(out.v[l], format);
          store_lanes(dz16 + first + (s - s0) * g.c, h);
        }
      }
    }
  }
};

// f(std::integral_constant<int, L>()) with L = lanes (4 or 1, conv_epilogue_lanes()).
template <typename F>
void with_epilogue_lanes(int lanes, F&& f) {
  if (lanes == 4) f(std::integral_constant<int, 4>());
  else f(std::integral_constant<int, 1>());
}

// f(n0, m) for each launch of a batch of n: m examples from n0, at most examples_per_launch.
template <typename F>
void for_each_conv_epilogue_launch(const ConvEpilogueGeom& g, int lanes, int64_t n, F&& f) {
  const int64_t per = g.examples_per_launch(lanes);
  for (int64_t n0 = 0; n0 < n; n0 += per) f(n0, std::min(per, n - n0));
}

// The channels a call takes: 4 when the channels are a multiple of 4 and every buffer is aligned
// for it (16 bytes for floats, 8 for 16-bit values, 4 for the argmax bytes), else 1.
inline int conv_epilogue_lanes(int64_t channels, std::initializer_list<const float*> floats,
                               std::initializer_list<const uint16_t*> halves, const uint8_t* argmax) {
  if (channels % 4 != 0) return 1;
  auto aligned = [](const void* p, uintptr_t a) { return !p || reinterpret_cast<uintptr_t>(p) % a == 0; };
  for (const float* p : floats)
    if (!aligned(p, 16)) return 1;
  for (const uint16_t* p : halves)
    if (!aligned(p, 8)) return 1;
  return aligned(argmax, 4) ? 4 : 1;
}

}  // namespace genrelab::ops
