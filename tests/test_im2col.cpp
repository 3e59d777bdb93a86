// The convolution-as-GEMM functors (ops/im2col.h) and their index arithmetic (ops/fast_div.h),
// which the CPU conv2d runs and the GPU's GEMM engine (train.conv_engine) launches: FastDiv
// against the / operator, im2col against its definition, col2im against the scatter-add it
// replaces, for strides, dilations, Keras padding, one and four channels a call, float and double.
// Then the engine's cuBLAS calls (nn/conv_gemm_plan.h) through a plain column-major GEMM against
// the CPU conv2d layer, so that their transposes, leading dimensions and row ranges are checked
// without a GPU: in fp32, and in bf16/fp16 with the engine's 16-bit operands and rounding points.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "genrelab/common.h"
#include "genrelab/config.h"
#include "genrelab/nn/conv_gemm_plan.h"
#include "genrelab/nn/cpu_layers.h"
#include "genrelab/nn/model.h"
#include "genrelab/nn/network.h"
#include "genrelab/ops/fast_div.h"
#include "genrelab/ops/im2col.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/parallel_for.h"
#include "nn_fixtures.h"

using namespace genrelab;

TEST_CASE("FastDiv divides like the / operator", "[nn][im2col]") {
  std::vector<int64_t> divisors;
  for (int64_t d = 1; d <= 300; ++d) divisors.push_back(d);
  for (int k = 1; k < 31; ++k) {
    divisors.push_back(int64_t(1) << k);
    divisors.push_back((int64_t(1) << k) + 1);
    if (k > 1) divisors.push_back((int64_t(1) << k) - 1);
  }
  for (const int64_t d : {1205, 601, 37632, 1000003, 77158656, 2147483629, 2147483647}) divisors.push_back(d);
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> any(0, (uint32_t(1) << 31) - 1);
  int64_t checked = 0;
  for (const int64_t d : divisors) {
    const ops::FastDiv f(d);
    std::vector<uint32_t> ns = {0, 1, 2, (uint32_t(1) << 31) - 1, (uint32_t(1) << 31) - 2};
    for (int i = 0; i < 400; ++i) ns.push_back(any(rng));
    // multiples of d and their neighbours, where a rounding error would show first
    for (uint64_t q : {uint64_t(1), uint64_t(2), uint64_t(3), uint64_t(1000), ((uint64_t(1) << 31) - 1) / uint64_t(d)}) {
      const uint64_t m = q * uint64_t(d);
      for (const int64_t e : {-1, 0, 1}) {
        const int64_t v = int64_t(m) + e;
        if (v >= 0 && v < (int64_t(1) << 31)) ns.push_back(uint32_t(v));
      }
    }
    for (const uint32_t n : ns) {
      uint32_t q = 0, r = 0;
      f.divmod(n, q, r);
      if (q != n / uint32_t(d) || r != n % uint32_t(d) || f.div(n) != q) {
        FAIL("FastDiv(" << d << "): " << n << " -> " << q << " r " << r << ", expected " << n / uint32_t(d) << " r "
                        << n % uint32_t(d));
      }
      ++checked;
    }
  }
  CHECK(checked > 100000);
  CHECK_THROWS(ops::FastDiv(0));
  CHECK_THROWS(ops::FastDiv(int64_t(1) << 31));
}

namespace {

struct ColsCase {
  int32_t h, w, c, kh, kw, sh, sw, dh, dw, top, left, bottom, right;
  int64_t n;
};

ops::ConvColsGeom geom_of(const ColsCase& k) {
  ops::ConvColsGeom g;
  g.h = k.h, g.w = k.w, g.c = k.c, g.kh = k.kh, g.kw = k.kw, g.sh = k.sh, g.sw = k.sw, g.dh = k.dh, g.dw = k.dw;
  g.top = k.top, g.left = k.left;
  g.oh = (k.h + k.top + k.bottom - (k.kh - 1) * k.dh - 1) / k.sh + 1;
  g.ow = (k.w + k.left + k.right - (k.kw - 1) * k.dw - 1) / k.sw + 1;
  return g;
}

// The definitions as loops over (example, output position, tap): visit(row, column, i) for every
// entry of the column matrix, i the input element it copies (-1 outside the map). im2col copies
// x[i]; col2im scatters each column entry back onto x[i].
template <typename Visit>
void for_each_column_entry(const ops::ConvColsGeom& g, int64_t n, Visit visit) {
  for (int64_t e = 0; e < n; ++e)
    for (int32_t oy = 0; oy < g.oh; ++oy)
      for (int32_t ox = 0; ox < g.ow; ++ox)
        for (int32_t a = 0; a < g.kh; ++a)
          for (int32_t b = 0; b < g.kw; ++b)
            for (int32_t ci = 0; ci < g.c; ++ci) {
              const int32_t iy = oy * g.sh - g.top + a * g.dh, ix = ox * g.sw - g.left + b * g.dw;
              const bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
              visit((e * g.oh + oy) * g.ow + ox, (int64_t(a) * g.kw + b) * g.c + ci,
                    inside ? ((e * g.h + iy) * g.w + ix) * g.c + ci : int64_t(-1));
            }
}

template <typename T>
std::vector<T> im2col_reference(const ops::ConvColsGeom& g, const std::vector<T>& x, int64_t n) {
  std::vector<T> cols(size_t(n * g.positions() * g.k()), T(-99));
  for_each_column_entry(g, n, [&](int64_t row, int64_t col, int64_t i) {
    cols[size_t(row * g.k() + col)] = i < 0 ? T(0) : x[size_t(i)];
  });
  return cols;
}

template <typename T>
std::vector<T> col2im_reference(const ops::ConvColsGeom& g, const std::vector<T>& dcols, int64_t n) {
  std::vector<T> dx(size_t(n * g.in_size()), T(0));
  for_each_column_entry(g, n, [&](int64_t row, int64_t col, int64_t i) {
    if (i >= 0) dx[size_t(i)] += dcols[size_t(row * g.k() + col)];
  });
  return dx;
}

// Small integers: every sum is exact in float, so any summation order gives the same bits.
template <typename T>
std::vector<T> small_integers(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-8, 8);
  std::vector<T> v(count);
  for (auto& e : v) e = T(d(rng));
  return v;
}

// f's calls (r, q) over `rows` rows in two ranges, the second starting at row `split` (the GPU
// launches a large matrix in row ranges through the functors' `first`).
template <typename Make>
void run_in_two_ranges(int64_t rows, int64_t groups, int64_t split, Make make) {
  for (const auto& [first, count] : {std::pair<int64_t, int64_t>{0, split}, {split, rows - split}}) {
    const auto f = make(first);
    cpu_for_2d(count, groups, f);
  }
}

// Runs both functors over `in` / `dcols` placed `offset` elements into their buffers (an offset
// that is not a multiple of 4 elements takes the one-lane path for channels in multiples of 4).
template <typename T>
void check_case(const ColsCase& k, size_t offset) {
  const ops::ConvColsGeom g = geom_of(k);
  INFO("in " << k.h << "x" << k.w << "x" << k.c << " kernel " << k.kh << "x" << k.kw << " stride " << k.sh << "," << k.sw
             << " dilation " << k.dh << "," << k.dw << " pad " << k.top << "," << k.left << "," << k.bottom << ","
             << k.right << " out " << g.oh << "x" << g.ow << " n " << k.n << " offset " << offset << " sizeof(T) "
             << sizeof(T));
  REQUIRE(g.oh > 0);
  REQUIRE(g.ow > 0);
  const int64_t n = k.n, ncols = n * g.positions() * g.k(), nx = n * g.in_size();
  const std::vector<T> x = small_integers<T>(size_t(nx), 3);
  std::vector<T> xbuf(size_t(nx) + offset + 4), cols(size_t(ncols) + offset + 4, T(-99));
  std::copy(x.begin(), x.end(), xbuf.begin() + long(offset));
  const T* xs = xbuf.data() + offset;
  T* cs = cols.data() + offset;
  int lanes_used = 0;
  ops::with_cols_lanes<T>(g.c, [&](auto lanes) {
    using F = ops::Im2Col<T, lanes()>;
    lanes_used = lanes();
    const int64_t rows = n * g.positions();
    run_in_two_ranges(rows, F::groups(g), rows / 3, [&](int64_t first) { return F{g, xs, cs, first}; });
  }, xs, static_cast<const T*>(cs));
  const bool aligned = reinterpret_cast<uintptr_t>(xs) % (4 * sizeof(T)) == 0 &&
                       reinterpret_cast<uintptr_t>(cs) % (4 * sizeof(T)) == 0;
  CHECK(lanes_used == (k.c % 4 == 0 && aligned ? 4 : 1));
  const std::vector<T> want = im2col_reference(g, x, n);
  for (int64_t i = 0; i < ncols; ++i)
    if (cols[size_t(i) + offset] != want[size_t(i)]) FAIL("cols[" << i << "] = " << cols[size_t(i) + offset] << ", want " << want[size_t(i)]);
  CHECK(cols[size_t(ncols) + offset] == T(-99));  // nothing written past the end

  const std::vector<T> dcols = small_integers<T>(size_t(ncols), 4);
  std::vector<T> dbuf(size_t(ncols) + offset + 4), dx(size_t(nx) + offset + 4, T(-99));
  std::copy(dcols.begin(), dcols.end(), dbuf.begin() + long(offset));
  const T* ds = dbuf.data() + offset;
  T* dxs = dx.data() + offset;
  ops::with_cols_lanes<T>(g.c, [&](auto lanes) {
    using F = ops::Col2Im<T, lanes()>;
    const int64_t pixels = n * g.h * g.w;
    run_in_two_ranges(pixels, F::groups(g), pixels / 2 + 1, [&](int64_t first) { return F{g, ds, dxs, first}; });
  }, ds, static_cast<const T*>(dxs));
  const std::vector<T> dx_want = col2im_reference(g, dcols, n);
  for (int64_t i = 0; i < nx; ++i)
    if (dx[size_t(i) + offset] != dx_want[size_t(i)]) FAIL("dx[" << i << "] = " << dx[size_t(i) + offset] << ", want " << dx_want[size_t(i)]);
  CHECK(dx[size_t(nx) + offset] == T(-99));
}

}  // namespace

TEST_CASE("im2col and col2im functors match their definitions", "[nn][im2col]") {
  const std::vector<ColsCase> cases = {
      // h  w  c kh kw sh sw dh dw top left bottom right n
      {9, 11, 1, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0, 3},    // the baseline's first conv, smaller
      {13, 17, 4, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0, 2},   // four channels a call
      {7, 9, 8, 3, 2, 1, 1, 1, 1, 0, 0, 0, 0, 2},
      {8, 10, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2},    // stride 2, "same" (symmetric)
      {6, 7, 4, 2, 2, 2, 2, 1, 1, 0, 0, 1, 1, 3},     // "same", even kernel: pad bottom/right only
      {9, 8, 2, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1},     // dilation 2, "same"
      {5, 9, 1, 2, 3, 1, 2, 1, 1, 0, 0, 0, 0, 4},     // stride (1, 2)
      {4, 5, 12, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2},    // 1×1
      {3, 3, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     // every output touches the padding
      {11, 6, 8, 4, 2, 3, 1, 2, 1, 1, 0, 2, 1, 2},    // stride 3 with dilation: rows no output reads
  };
  for (const auto& k : cases) {
    check_case<float>(k, 0);
    check_case<float>(k, 1);  // misaligned: one lane
    check_case<double>(k, 0);
  }
}

TEST_CASE("train.conv_engine takes every precision and names the engines it knows", "[nn][im2col][config]") {
  CHECK(nn::TrainHyper::from_config(Config::load_or_defaults("", {})).conv_engine == "auto");
  for (const char* precision : {"train.precision=fp32", "train.precision=tf32", "train.precision=bf16", "train.precision=fp16"})
    CHECK(nn::TrainHyper::from_config(Config::load_or_defaults("", {"train.conv_engine=gemm", precision})).conv_engine ==
          "gemm");
}

namespace {

using test::gemm_column_major;

// im2col of x (m, h, w, c) as the engine launches it: four channels a call when c and the buffers allow.
template <typename T>
std::vector<T> columns_of(const ops::ConvColsGeom& g, const std::vector<T>& x, int64_t rows) {
  std::vector<T> cols(static_cast<size_t>(rows * g.k()));
  ops::with_cols_lanes<T>(g.c, [&](auto lanes) {
    using F = ops::Im2Col<T, lanes()>;
    cpu_for_2d(rows, F::groups(g), F{g, x.data(), cols.data()});
  }, x.data(), static_cast<const T*>(cols.data()));
  return cols;
}

// The engine's sequence of calls in `format` against the CPU conv2d layer set to the same matmul
// format. fp32 (ops::kHalfNone): float operands. bf16/fp16: the 16-bit copies of x, the kernel and
// dz, im2col over x's 16-bit values, and results rounded where cuda/nn/conv_gemm.cu rounds them:
// y in the 16-bit type, this call's dW once complete (one product or the partials' sum) before it
// is added, dx after the column sums. Small integers keep every float sum exact, so both sides
// agree bit for bit while the 16-bit roundings still bite (sums beyond 256 under bf16).
void check_engine_products(int format) {
  using json = nlohmann::json;
  struct Case {
    json conv;
    nn::Shape3 in;
    int64_t n;
  };
  const std::vector<Case> cases = {
      {{{"type", "conv2d"}, {"filters", 5}, {"kernel", 2}}, {9, 11, 1}, 3},
      {{{"type", "conv2d"}, {"filters", 6}, {"kernel", json::array({3, 2})}}, {7, 9, 4}, 2},
      {{{"type", "conv2d"}, {"filters", 4}, {"kernel", 2}, {"stride", 2}, {"padding", "same"}}, {6, 7, 3}, 2},
      {{{"type", "conv2d"}, {"filters", 3}, {"kernel", 3}, {"dilation", 2}, {"padding", "same"}}, {8, 5, 4}, 2},
      {{{"type", "conv2d"}, {"filters", 7}, {"kernel", 1}}, {3, 4, 8}, 2},  // 1×1: x is its own column matrix
  };
  const auto rounded = [format](std::vector<float> v) {
    for (float& e : v) e = ops::round_to_half(e, format);
    return v;
  };
  for (const auto& k : cases) {
    json conv = k.conv;
    conv["use_bias"] = false;  // the products alone: bias and activation are the epilogue's
    const nn::ModelPlan plan = nn::plan_layers(
        json::array({conv, {{"type", "flatten"}}, {{"type", "dense"}, {"units", "classes"}, {"activation", "softmax"}}}),
        k.in, 3);
    const nn::LayerDesc& d = plan.layers[0];
    INFO("conv " << conv.dump() << " in " << k.in.str() << " n " << k.n << " format " << format);
    auto layer = nn::make_cpu_layer<float>(d);
    layer->set_matmul_format(format);
    layer->params()[0] = small_integers<float>(size_t(d.params[0].size()), 5);
    const int64_t n = k.n;
    const std::vector<float> x = small_integers<float>(size_t(n * d.in.size()), 6);
    const std::vector<float> dy = small_integers<float>(size_t(n * d.out.size()), 7);
    std::vector<float> y_ref(dy.size()), dx_ref(x.size());
    const nn::StepKey key{};
    layer->forward(x.data(), y_ref.data(), n, true, key);
    layer->zero_grads();
    layer->backward(x.data(), y_ref.data(), dy.data(), dx_ref.data(), n, key);

    const ops::ConvColsGeom g = nn::conv_cols_geom(d);
    const int64_t rows = n * g.positions(), K = g.k(), F = d.out.c;
    const bool direct = g.identity();
    std::vector<float> cols;
    if (format == ops::kHalfNone) {
      cols = columns_of(g, x, rows);
      if (direct) CHECK(cols == x);
    } else {
      std::vector<uint16_t> x16(x.size());
      for (size_t i = 0; i < x.size(); ++i) x16[i] = ops::float_to_half_bits(x[i], format);
      const std::vector<uint16_t> cols16 = columns_of(g, x16, rows);
      if (direct) CHECK(cols16 == x16);
      for (const uint16_t v : cols16) cols.push_back(ops::half_bits_to_float(v, format));
    }
    const std::vector<float> kernel = rounded(layer->params()[0]);
    const std::vector<float> dz = rounded(dy);

    std::vector<float> y(dy.size(), -1.0f);
    gemm_column_major(nn::conv_forward_gemm(rows, K, F), kernel.data(), cols.data(), y.data());
    CHECK(rounded(y) == y_ref);

    // The kernel gradient in one product (fp32: accumulating onto a gradient already there) and
    // over row ranges with and without a tail, the partials added up as the matrix-vector product
    // does.
    for (const int64_t splits : {int64_t(1), int64_t(2), int64_t(3), rows}) {
      INFO("splits " << splits);
      const nn::RowRanges r = nn::conv_filter_ranges(rows, splits);
      CHECK(r.splits * r.span + r.tail == rows);
      std::vector<float> dw(size_t(F * K), 1.0f);
      if (r.parts() == 1 && format == ops::kHalfNone) {
        gemm_column_major(nn::conv_filter_gemm(0, rows, K, F, true), cols.data(), dz.data(), dw.data());
      } else {
        std::vector<float> partial(size_t(r.parts() * F * K), -5.0f), product(size_t(F * K), 0.0f);
        for (int64_t s = 0; s < r.parts(); ++s) {
          const int64_t first = s * r.span, count = s < r.splits ? r.span : r.tail;
          gemm_column_major(nn::conv_filter_gemm(first, count, K, F, false), cols.data(), dz.data(),
                            partial.data() + s * F * K);
        }
        for (int64_t s = 0; s < r.parts(); ++s)
          for (int64_t i = 0; i < F * K; ++i) product[size_t(i)] += partial[size_t(s * F * K + i)];
        product = rounded(product);
        for (size_t i = 0; i < dw.size(); ++i) dw[i] += product[i];
      }
      for (size_t i = 0; i < dw.size(); ++i) dw[i] -= 1.0f;
      CHECK(dw == layer->grads()[0]);
    }

    std::vector<float> dcols(size_t(rows * K), -1.0f);
    gemm_column_major(nn::conv_data_gemm(rows, K, F), kernel.data(), dz.data(), dcols.data());
    std::vector<float> dx(x.size(), -1.0f);
    if (direct)
      dx = dcols;
    else
      cpu_for_2d(n * g.h * g.w, ops::Col2Im<float, 1>::groups(g), ops::Col2Im<float, 1>{g, dcols.data(), dx.data()});
    CHECK(rounded(dx) == dx_ref);
  }
}

}  // namespace

TEST_CASE("the GEMM engine's matrix products compute the conv2d layer", "[nn][im2col]") {
  check_engine_products(ops::kHalfNone);
}

TEST_CASE("the GEMM engine's 16-bit products compute the bf16 and fp16 conv2d layer", "[nn][im2col]") {
  check_engine_products(ops::kHalfBf16);
  check_engine_products(ops::kHalfFp16);
}
