// im2col and col2im, which turn a convolution into matrix products, in gather form for both
// backends: the CPU conv2d runs every convolution this way, the GPU's GEMM engine
// (train.conv_engine, cuda/nn/conv_gemm.cu) the ones where it beats cuDNN.
//
// cols (m·oh·ow, K = kh·kw·c), row (e, y, x) and column (a, b, ci) in the kernel's (kh, kw, c)
// order, so that y (m·oh·ow, f) = cols · kernelᵀ for the (f, kh, kw, c) kernel:
//   cols[(e, y, x), (a, b, ci)] = x[e, y·sh − top + a·dh, x·sw − left + b·dw, ci]  (0 outside the map)
// col2im is its transpose: each input element sums the columns that copied it,
//   dx[e, i, j, ci] = Σ over (a, b) with y·sh − top + a·dh = i and x·sw − left + b·dw = j of dcols[(e, y, x), (a, b, ci)],
// in (a, b) order from zero (no atomics).
//
// Both are 2-D: a row of cols (or a pixel of dx) by a group of L consecutive channels (L = 4 when
// c is a multiple of 4 and the buffers are 16-byte aligned: one vector load and store on the GPU,
// where consecutive threads take consecutive groups of a row). The row's index arithmetic is
// FastDiv multiplies (and hoisted out of the CPU's inner loop over groups). `first` offsets the
// row (pixel) index, so the GPU can launch a large matrix in row ranges; every index of a call
// stays below 2^31 (cols_fit_indices).
//
// Either pass can also happen inside the neighbouring fused pass instead of a launch of its own:
// ColumnsOut, the pass below a convolution storing its output straight into that convolution's
// columns, and ColumnsGrad, the pass below reading its dy as Col2Im::sum of the input-gradient
// columns (the GPU's fused conv + pool and conv epilogue; nothing then writes x or dx).
#pragma once

#include <cstdint>
#include <type_traits>

#include "genrelab/common.h"
#include "genrelab/ops/fast_div.h"
#include "genrelab/ops/lanes.h"
#include "genrelab/ops/low_precision.h"

namespace genrelab::ops {

struct ConvColsGeom {
  int32_t h = 0, w = 0, c = 0;                             // input map (h, w, c)
  int32_t oh = 0, ow = 0;                                  // output map
  int32_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;  // kernel, stride, dilation
  int32_t top = 0, left = 0;                               // padding before the first row / column
  GENRELAB_HD int64_t k() const { return int64_t(kh) * kw * c; }  // columns of a row
  int64_t positions() const { return int64_t(oh) * ow; }   // rows per example
  int64_t in_size() const { return int64_t(h) * w * c; }   // input elements per example
  // 1×1, stride 1, no padding: the column matrix is x itself, and dx is dcols.
  bool identity() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && top == 0 && left == 0 && oh == h && ow == w; }
};

// Whether m examples keep every row, pixel and column index of the functors below 2^31.
inline bool cols_fit_indices(const ConvColsGeom& g, int64_t m) {
  const int64_t limit = int64_t(1) << 31;
  return m * g.positions() < limit && m * g.h * g.w < limit && g.k() < limit;
}

// cols (rows, K) of x: call (r, q) writes columns [q·L, q·L + L) of row first + r.
template <typename T, int L>
struct Im2Col {
  using Lane = Lanes<T, L>;
  int32_t h, w, c, sh, sw, dh, dw, top, left;
  int64_t k;
  FastDiv per_tap, kw, positions, ow;  // c/L, kw, oh·ow, ow
  const T* x;                          // (m, h, w, c)
  T* cols;                             // (m·oh·ow, K)
  int64_t first;                       // row of call row 0

  Im2Col(const ConvColsGeom& g, const T* x_, T* cols_, int64_t first_ = 0)
      : h(g.h), w(g.w), c(g.c), sh(g.sh), sw(g.sw), dh(g.dh), dw(g.dw), top(g.top), left(g.left), k(g.k()),
        per_tap(g.c / L), kw(g.kw), positions(g.positions()), ow(g.ow), x(x_), cols(cols_), first(first_) {}

  static int64_t groups(const ConvColsGeom& g) { return g.k() / L; }  // calls per row

  GENRELAB_HD void operator()(int64_t r, int64_t q) const {
    const int64_t row = first + r;
    uint32_t e, p, oy, ox, tap, cl, a, b;
    positions.divmod(uint32_t(row), e, p);
    ow.divmod(p, oy, ox);
    per_tap.divmod(uint32_t(q), tap, cl);
    kw.divmod(tap, a, b);
    const int32_t iy = int32_t(oy) * sh - top + int32_t(a) * dh, ix = int32_t(ox) * sw - left + int32_t(b) * dw;
    Lane v;
    if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
      GENRELAB_UNROLL
      for (int l = 0; l < L; ++l) v.v[l] = T(0);
    } else {
      v = load_lanes<Lane>(x + ((int64_t(e) * h + iy) * w + ix) * c + int64_t(cl) * L);
    }
    store_lanes(cols + row * k + q * L, v);
  }
};

// dx (m, h, w, c) of dcols: call (r, q) writes channels [q·L, q·L + L) of pixel first + r. A
// reader of dx may instead take each pixel's sum where it needs it (sum(); dx then stays unwritten:
// ConvEpilogueBackward's dy).
template <typename T, int L>
struct Col2Im {
  using Lane = Lanes<T, L>;
  int32_t oh = 0, ow = 0, c = 0, kh = 0, kwn = 0, dh = 1, dw = 1, top = 0, left = 0;
  int64_t k = 0;  // columns of a dcols row
  FastDiv w, h, sh, sw;
  const T* dcols = nullptr;  // (m·oh·ow, K)
  T* dx = nullptr;           // (m, h, w, c)
  int64_t first = 0;         // pixel of call row 0

  Col2Im() = default;  // no columns (dcols null)
  Col2Im(const ConvColsGeom& g, const T* dcols_, T* dx_, int64_t first_ = 0)
      : oh(g.oh), ow(g.ow), c(g.c), kh(g.kh), kwn(g.kw), dh(g.dh), dw(g.dw), top(g.top), left(g.left), k(g.k()),
        w(g.w), h(g.h), sh(g.sh), sw(g.sw), dcols(dcols_), dx(dx_), first(first_) {}

  static int64_t groups(const ConvColsGeom& g) { return g.c / L; }  // calls per pixel

  GENRELAB_HD void operator()(int64_t r, int64_t q) const {
    const int64_t pix = first + r;
    store_lanes(dx + pix * c + q * L, sum(pix, q));
  }

  // Channels [q·L, q·L + L) of dx's pixel `pix` (counted from the batch's start).
  GENRELAB_HD Lane sum(int64_t pix, int64_t q) const {
    uint32_t rest, ix, e, iy;
    w.divmod(uint32_t(pix), rest, ix);
    h.divmod(rest, e, iy);
    Lane acc;
    GENRELAB_UNROLL
    for (int l = 0; l < L; ++l) acc.v[l] = T(0);
    for (int32_t a = 0; a < kh; ++a) {
      const int32_t ty = int32_t(iy) + top - a * dh;
      if (ty < 0) break;  // ty falls as a grows
      uint32_t oy, ry;
      sh.divmod(uint32_t(ty), oy, ry);
      if (ry != 0 || int32_t(oy) >= oh) continue;
      for (int32_t b = 0; b < kwn; ++b) {
        const int32_t tx = int32_t(ix) + left - b * dw;
        if (tx < 0) break;
        uint32_t ox, rx;
        sw.divmod(uint32_t(tx), ox, rx);
        if (rx != 0 || int32_t(ox) >= ow) continue;
        const Lane s = load_lanes<Lane>(dcols + ((int64_t(e) * oh + oy) * ow + ox) * k + (int64_t(a) * kwn + b) * c +
                                        q * L);
        GENRELAB_UNROLL
        for (int l = 0; l < L; ++l) acc.v[l] += s.v[l];
      }
    }
    return acc;
  }
};

// An input gradient left as its columns: dcols (m·oh·ow, K) of the convolution with geometry g,
// each pixel's sum (Col2Im::sum) taken by the layer below where it reads it, rounded to `round`
// where the engine rounds dx (bf16/fp16; kHalfNone: not). dcols null: dx was written instead.
struct ColumnsGrad {
  const float* dcols = nullptr;
  ConvColsGeom g;
  int round = kHalfNone;
};

// The next convolution's columns, written by the layer below in place of its output x (im2col
// fused into the pass that computes x): each computed element of x is stored into every column
// cell that copies it. Only where every cell copies some element of x (writable: stride 1, no
// padding), so no cell is left for zeros. cols null: x is written as usual.
struct ColumnsOut {
  float* cols = nullptr;  // (m·oh·ow, K) of the convolution with geometry g
  ConvColsGeom g;
  static bool writable(const ConvColsGeom& g) {
    return g.sh == 1 && g.sw == 1 && g.top == 0 && g.left == 0 && g.oh == g.h - (g.kh - 1) * g.dh &&
           g.ow == g.w - (g.kw - 1) * g.dw && g.oh >= 1 && g.ow >= 1;
  }
  // The same columns from example e0 on (for a launch whose examples start there).
  ColumnsOut from_example(int64_t e0) const { return {cols ? cols + e0 * g.positions() * g.k() : nullptr, g}; }
  // Channels [c0, c0 + count) of x's pixel (e, iy, ix), v (count ≤ L), into the cells of rows
  // (e, iy − a·dh, ix − b·dw) and tap (a, b) that exist: one L-lane store each where count = L and
  // the address allows it.
  template <int L>
  GENRELAB_HD void store(int64_t e, int32_t iy, int32_t ix, int64_t c0, const Lanes<float, L>& v, int count = L) const {
    const int64_t k = g.k();
    for (int32_t a = 0; a < g.kh; ++a) {
      const int32_t oy = iy - a * g.dh;
      if (oy < 0) break;  // falls as a grows
      if (oy >= g.oh) continue;
      for (int32_t b = 0; b < g.kw; ++b) {
        const int32_t ox = ix - b * g.dw;
        if (ox < 0) break;
        if (ox >= g.ow) continue;
        float* cell = cols + ((e * g.oh + oy) * g.ow + ox) * k + (int64_t(a) * g.kw + b) * g.c + c0;
        if (count == L && lanes_aligned<Lanes<float, L>>(cell)) {
          store_lanes(cell, v);
        } else {
          for (int l = 0; l < count; ++l) cell[l] = v.v[l];
        }
      }
    }
  }
};

// The Col2Im whose sum() a reader of `grad`'s dx calls (no columns: dcols null).
template <int L>
Col2Im<float, L> columns_grad_sum(const ColumnsGrad& grad) {
  return grad.dcols ? Col2Im<float, L>(grad.g, grad.dcols, nullptr) : Col2Im<float, L>();
}

// f(std::integral_constant<int, L>) with L = 4 when c is a multiple of 4 and every pointer is
// aligned for 4 lanes of T, else L = 1.
template <typename T, typename F, typename... P>
void with_cols_lanes(int32_t c, F&& f, const P*... ptrs) {
  if (c % 4 == 0 && (lanes_aligned<Lanes<T, 4>>(ptrs) && ...))
    f(std::integral_constant<int, 4>{});
  else
    f(std::integral_constant<int, 1>{});
}

}  // namespace genrelab::ops
